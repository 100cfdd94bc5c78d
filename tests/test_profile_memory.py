"""`bolt profile`'s memory picture read from the plugin's record: relative files, the function around a line."""

from __future__ import annotations

from pathlib import Path

from bolt_bot.profiling.collect import FunctionStats, FunctionTable
from bolt_bot.model import AllocSite, MemorySide
from bolt_bot.profiling.memory import MEMRAY, TRACEMALLOC, enclosing_function, from_record, from_side


def table() -> FunctionTable:
    funcs = [FunctionStats("p/s.py:4(load)", "p/s.py", 4, "load"),
             FunctionStats("p/s.py:5(<listcomp>)", "p/s.py", 5, "<listcomp>"),
             FunctionStats("p/s.py:9(other)", "p/s.py", 9, "other"),
             FunctionStats("q.py:1(<lambda>)", "q.py", 1, "<lambda>")]
    return FunctionTable(functions={f.key: f for f in funcs})


def test_a_line_is_named_by_the_function_written_around_it():
    assert enclosing_function(table(), "p/s.py", 5) == "load"  # not <listcomp>: 3.12 inlines it anyway
    assert enclosing_function(table(), "p/s.py", 12) == "other"
    assert enclosing_function(table(), "p/s.py", 2) is None  # module level
    assert enclosing_function(table(), "q.py", 1) == "<lambda>"  # nothing named around it
    assert enclosing_function(None, "p/s.py", 5) is None


def test_the_record_reads_with_files_relative_to_the_checkout(tmp_path: Path):
    record = {"peak": 4096, "held_blocks": 3, "held_bytes": 2048,
              "top": [{"file": str(tmp_path / "p" / "s.py"), "line": 5, "allocations": 2, "bytes": 2000},
                      {"file": "/usr/lib/python3.11/json/decoder.py", "line": 353, "allocations": 1, "bytes": 48},
                      {"file": "broken"}]}
    picture = from_record(record, tmp_path, table())
    assert picture is not None and picture.tool == TRACEMALLOC
    assert (picture.peak, picture.allocations, picture.allocated) == (4096, 3, 2048)
    assert [(t.where, t.function, t.allocations, t.bytes, t.project) for t in picture.top] == [
        ("p/s.py:5", "load", 2, 2000, True), ("<stdlib>/json/decoder.py:353", None, 1, 48, False)]
    assert from_record({"error": "MemoryError: "}, tmp_path).error == "MemoryError: "
    assert from_record(None, tmp_path) is None


def test_memray_side_reads_as_the_same_picture():
    side = MemorySide(allocations=9865, allocated=823_000, peak=285_000,
                      top=[AllocSite("pipeline/stages.py:7", "<listcomp>", 4066, 431_000),
                           AllocSite("<the call itself>", None, 2, 296)])
    picture = from_side(side)
    assert (picture.tool, picture.allocations, picture.allocated, picture.peak) == (MEMRAY, 9865, 823_000, 285_000)
    assert [(t.where, t.function, t.project) for t in picture.top] == [
        ("pipeline/stages.py:7", "<listcomp>", True), ("<the call itself>", None, False)]
