"""Memory verdicts: the floors of each kind, the lines that allocate more, the run verdict and the gate, settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bolt_bot.decide.compare import run_verdict
from bolt_bot.decide.gate import status_for
from bolt_bot.decide.memory import MemoryRule, alloc_lines, compare_memory, memory_comparisons
from bolt_bot.errors import BoltError
from bolt_bot.measure.memory import TOP_LINES, MemoryPass, MemoryRun, long_stages, read_pass
from bolt_bot.measure.process import Finished
from bolt_bot.model import AllocSite, MemorySide, Results, StageComparison
from bolt_bot.settings import Settings, settings_from_pyproject

RULE = MemoryRule()


def side(allocations=10_000, allocated=1_000_000, peak=1_000_000, top=()):
    return MemorySide(allocations=allocations, allocated=allocated, peak=peak, top=list(top))


@pytest.mark.parametrize("head, verdict, moved", [
    (side(), "unchanged", []),
    (side(allocations=10_099), "unchanged", []),  # +0.99 %: under the 1 % floor
    (side(allocations=10_100), "regressed", ["allocations"]),  # +1 %, and 100 >= 64
    (side(allocations=9_900), "improved", ["allocations"]),
    (side(allocated=1_010_000), "regressed", ["allocated"]),
    (side(peak=1_099_999), "unchanged", []),  # the peak's margin is 10 %
    (side(peak=1_100_000), "regressed", ["peak"]),
    (side(allocations=9_000, peak=1_200_000), "regressed", ["allocations", "peak"]),  # one worse is enough
])
def test_relative_floors(head, verdict, moved):
    found = compare_memory(side(), head, RULE)
    assert (found.verdict, found.moved) == (verdict, moved)
    assert found.regressed == [k for k in moved if getattr(head, k) > getattr(side(), k)]


def test_absolute_minimums_keep_tiny_stages_quiet():
    tiny = side(allocations=20, allocated=1000, peak=2000)
    # Three times the allocations, bytes and peak of a tiny stage: still under 64 allocations, 4 KiB, 64 KiB.
    assert compare_memory(tiny, side(allocations=60, allocated=3000, peak=6000), RULE).verdict == "unchanged"
    assert compare_memory(tiny, side(allocations=84, allocated=1000, peak=2000), RULE).regressed == ["allocations"]
    assert compare_memory(tiny, side(allocations=20, allocated=5096, peak=2000), RULE).regressed == ["allocated"]
    assert compare_memory(tiny, side(allocations=20, allocated=1000, peak=67536), RULE).regressed == ["peak"]
    # From zero, the minimum alone decides.
    assert compare_memory(side(allocations=0), side(allocations=64), RULE).regressed == ["allocations"]


def test_rule_from_settings_reads_percent():
    rule = MemoryRule.of(Settings(memory_threshold=2.0, peak_threshold=20.0, memory_min_bytes=1, peak_min_bytes=2))
    assert rule == MemoryRule(0.02, 64, 1, 0.20, 2)
    assert MemoryRule.of(Settings()) == RULE


def test_lines_where_head_allocates_more_most_first_new_marked():
    base = side(top=[AllocSite("m.py:3", "f", 100, 5000), AllocSite("m.py:9", "g", 10, 900)])
    head = side(top=[AllocSite("m.py:3", "f", 200, 10000), AllocSite("m.py:9", "g", 10, 900),
                     AllocSite("m.py:12", "h", 50, 20000)])
    lines = alloc_lines(base, head)
    assert [(l.where, l.base_allocations, l.head_allocations, l.base_bytes, l.head_bytes, l.new) for l in lines] == [
        ("m.py:12", 0, 50, 0, 20000, True), ("m.py:3", 100, 200, 5000, 10000, False)]
    # A full base list may have cut the line off: not known to be new.
    full = side(top=[AllocSite(f"m.py:{i}", "f", 1000, 100000) for i in range(100, 100 + TOP_LINES)])
    assert alloc_lines(full, head)[0].new is False


def test_failed_added_removed_and_a_side_that_could_not_run():
    base = MemoryPass(stages={"a": side(), "b": side(), "gone": side()}, failed={})
    head = MemoryPass(stages={"a": side(allocations=20_000), "new": side()}, failed={"b": "assert 1 == 2"})
    found = memory_comparisons(MemoryRun(passes={"base": base, "head": head}), RULE)
    assert {n: c.verdict for n, c in found.items()} == {"a": "regressed", "b": "failed", "gone": "removed",
                                                         "new": "added"}
    assert found["b"].note == "failed on head: assert 1 == 2"
    assert memory_comparisons(MemoryRun(passes={"base": base}, errors={"head": "no memray"}), RULE) == {}


def _stage(name, verdict="unchanged", memory=None):
    return StageComparison(name=name, verdict=verdict, ratio=1.0, memory=memory)


def test_a_memory_regression_makes_the_run_regressed_and_fails_the_status():
    grown = compare_memory(side(), side(allocations=20_000), RULE)
    stages = [_stage("t::a"), _stage("t::b", memory=grown)]
    assert run_verdict(stages) == "regressed"
    results = Results(stages=stages, verdict=run_verdict(stages))
    assert [s.name for s in results.regressions] == ["t::b"]
    state, description = status_for(results)
    assert state == "failure" and "regressed" in description and "slower" not in description
    # Time regressions still read as slower.
    timed = [_stage("t::a", "regressed")]
    assert "slower" in status_for(Results(stages=timed, verdict=run_verdict(timed)))[1]
    # Improved or unchanged memory does not make a run regressed.
    assert run_verdict([_stage("t::a", memory=compare_memory(side(), side(allocations=5000), RULE))]) == "unchanged"


def test_settings_parse_from_pyproject_and_reject_bad_values():
    s = settings_from_pyproject('[tool.bolt]\nmemory = "off"\nmemory-threshold = "2%"\npeak-min-bytes = 1024\n',
                                "p", {"peak-threshold": "15"})
    assert (s.memory, s.memory_threshold, s.peak_min_bytes, s.peak_threshold) == ("off", 2.0, 1024, 15.0)
    assert settings_from_pyproject("[tool.bolt]\nmemory = false\n", "p").memory == "off"
    assert Settings().memory == "auto"
    for bad in ({"memory": "on"}, {"memory-threshold": "-1"}, {"memory-min-bytes": "-5"}):
        with pytest.raises(BoltError):
            Settings().updated(bad, "inputs")


def test_a_pass_read_from_its_events():
    events = [{"ev": "collected", "n": 3, "nodeids": ["a", "b", "c"]},
              {"ev": "memory", "nodeid": "a", "seconds": 0.1, "allocations": 5, "allocated": 50, "peak": 40,
               "top": [{"where": "m.py:1", "function": "f", "allocations": 5, "allocated": 50}]},
              {"ev": "finish", "nodeid": "a"},
              {"ev": "failed", "nodeid": "b", "when": "call", "text": "AssertionError: no\nmore"},
              {"ev": "finish", "nodeid": "b"}, {"ev": "start", "nodeid": "c"}]
    done = read_pass(events, Finished(-9, "", True, 9.0), 9.0)
    assert done.stages["a"].top[0].where == "m.py:1" and done.stages["a"].allocations == 5
    assert done.failed == {"b": "AssertionError: no", "c": "the memory pass timed out after 9 s"}
    with pytest.raises(BoltError, match="collection error in x"):
        read_pass([{"ev": "collect_error", "nodeid": "x", "text": "ImportError"}], Finished(2, "", False, 1), 9)


def test_auto_leaves_out_long_stages():
    assert long_stages({"base": {"a": 0.5, "b": 3.0}, "head": {"a": 2.5}}) == {
        "a": "one call took 2.5 s on head (the memory pass traces stages up to 2 s)",
        "b": "one call took 3.0 s on base (the memory pass traces stages up to 2 s)"}


def test_bolt_merge_keeps_memory_and_its_regression(tmp_path):
    from tests.test_merge import PARTITION, shard_dir, timed  # the shard directories test_merge writes

    grown = timed("b", 1.0, 0.01, 0.8)
    grown.memory = compare_memory(side(), side(allocated=3_000_000), RULE)
    dirs = [shard_dir(tmp_path, 1, PARTITION, [timed("a", 1.0, 0.01, 0.6), timed("c", 1.0, 0.01, 0.7)]),
            shard_dir(tmp_path, 2, PARTITION, [grown, timed("d", 1.0, 0.01, 0.9)])]
    for d, stages in zip(dirs, (2, 2)):  # what each shard's memory pass recorded
        data = json.loads((d / "results.json").read_text())
        data["environment"]["memory"] = {"tool": "memray", "stages": stages, "seconds": {"base": 1.0, "head": 2.0}}
        (d / "results.json").write_text(json.dumps(data))
    out = tmp_path / "merged"
    result = subprocess.run([sys.executable, "-m", "bolt_bot", "merge", *map(str, dirs), "--out", str(out),
                             "--fail-on-regression"], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["verdict"] == "regressed"
    b = next(s for s in data["stages"] if s["name"] == "b")
    assert b["verdict"] == "unchanged" and b["memory"]["verdict"] == "regressed" and b["memory"]["regressed"] == ["allocated"]
    assert data["environment"]["memory"]["stages"] == 4 and data["environment"]["memory"]["seconds"]["head"] == 4.0


def test_annotations_of_a_memory_only_regression_say_memory_not_slower():
    import io

    from bolt_bot.github.checkrun import annotations
    from bolt_bot.github.workflow import annotate

    stages = [_stage("bench/t.py::test_b", memory=compare_memory(side(), side(allocations=20_000), RULE))]
    results = Results(stages=stages, verdict=run_verdict(stages))
    [note] = annotations(results)
    assert note["title"] == "Bolt: benchmark uses more memory" and "allocations +100.0 %" in note["message"]
    out = io.StringIO()
    annotate(results, out)
    assert "uses more memory per call: allocations +100.0 %" in out.getvalue() and "slower" not in out.getvalue()
