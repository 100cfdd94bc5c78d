"""Profile excerpts that explain themselves: names as Python writes them, times scaled to the stage, the first
excerpt open, and an empty one that says why."""

from __future__ import annotations

import cProfile
import pstats
import re
from pathlib import Path

import pytest

from bolt_bot.model import ProfileLine, Results, StageComparison
from bolt_bot.profiling.collect import FunctionStats, FunctionTable, load_profile
from bolt_bot.profiling.diff import diff_profiles, why_empty
from bolt_bot.profiling.flamegraph import display_name
from bolt_bot.report.funcnames import format_function
from bolt_bot.report.render import render_comment

ROOT = Path(__file__).resolve().parents[1]
WORDS = re.compile(r"\w+")


def tiny(names):
    """Builtins of every kind cProfile labels: a builtin function, a str method, a compiled pattern's method."""
    cleaned = [name.strip().title() for name in names]
    total = sum(len(name) for name in cleaned)
    return sorted(cleaned), WORDS.sub("x", " ".join(cleaned)), total


def _profiled_table() -> FunctionTable:
    profiler = cProfile.Profile()
    profiler.enable()
    tiny([" oslo ", "bergen", " tromsø"])
    profiler.disable()
    return load_profile(pstats.Stats(profiler), ROOT)


def test_builtins_are_named_as_python_writes_them_on_real_cprofile_output():
    table = _profiled_table()
    names = {format_function(key) for key in table.functions}
    assert {"str.title", "str.strip", "len", "sorted", "re.Pattern.sub", "str.join"} <= names, names
    tiny_line = tiny.__code__.co_firstlineno
    assert f"tests/test_profile_explain.py:{tiny_line} tiny" in names
    # nothing of cProfile's private notation is left
    assert not [n for n in names if n.startswith("~") or "<method" in n or "<built-in" in n], names
    # the flame graph's frames and `bolt profile`'s rows use the same builtin names
    shown = {display_name(f) for f in table.functions.values()}
    assert {"str.title", "len", "sorted", "re.Pattern.sub"} <= shown


def test_a_formatted_name_stays_as_it_is_and_bound_builtins_lose_their_address():
    assert format_function("pipeline/parse.py:40 _clean_city") == "pipeline/parse.py:40 _clean_city"
    assert format_function("str.title") == "str.title"
    assert format_function("~:0(<built-in method __new__ of type object at 0x7f12ab>)") == "type.__new__"
    assert format_function(":1(structure_Row)") == "structure_Row (generated code, no source file)"
    assert format_function("<frozen importlib._bootstrap>:1165(_find_and_load)") == \
        "<frozen importlib._bootstrap>:1165 _find_and_load"


def test_the_excerpt_names_functions_readably():
    base = _profiled_table()
    head = _profiled_table()
    key = next(k for k in head.functions if k.endswith("(<method 'title' of 'str' objects>)"))
    head.functions[key].own += 1.0  # head spends a second more in str.title
    lines = diff_profiles(base, head)
    assert lines[0].function == "str.title"


def _table(*functions: tuple[str, int, str, float, float, float, dict]) -> FunctionTable:
    table = {}
    for file, line, name, own, cum, calls, callers in functions:
        key = f"{file}:{line}({name})"
        table[key] = FunctionStats(key=key, file=file, line=line, name=name, own=own, cum=cum, calls=calls,
                                   callers=callers)
    return FunctionTable(functions=table)


def _many_small_calls(own_each: float) -> FunctionTable:
    # Under cProfile: 4.83 ms in _clean_city's 1000 calls, in a stage that takes 2.52 ms without it.
    called = {"p.py:1(parse)": (1000, 1000 * own_each, 1000 * own_each)}
    return _table(("p.py", 1, "parse", 3e-4, 3e-4 + 1000 * own_each + 1e-3, 1, {}),
                  ("p.py", 9, "_clean_city", 1000 * own_each, 1000 * own_each, 1000, called),
                  ("~", 0, "<method 'title' of 'str' objects>", 1e-3, 1e-3, 1000,
                   {"p.py:9(_clean_city)": (1000, 1e-3, 1e-3)}))


def test_scaled_times_add_up_to_the_stage_and_call_counts_stay():
    table = _many_small_calls(4.83e-6)
    assert table.total == pytest.approx(6.13e-3)
    scaled = table.scaled_to(2.52e-3)
    assert scaled.total == pytest.approx(2.52e-3)
    assert scaled.profiled_total == pytest.approx(6.13e-3)
    clean = scaled.functions["p.py:9(_clean_city)"]
    assert clean.own < 2.52e-3 and clean.cum <= scaled.functions["p.py:1(parse)"].cum <= 2.52e-3 * 1.0001
    assert clean.calls == 1000 and clean.callers["p.py:1(parse)"][0] == 1000
    # scaling again starts from the profiler's times, not from the scaled ones
    again = scaled.scaled_to(1e-3)
    assert again.total == pytest.approx(1e-3) and again.scale == pytest.approx(1e-3 / 6.13e-3)
    assert table.scaled_to(None) is table and table.scaled_to(0.0) is table


def test_excerpt_lines_add_up_to_at_most_the_stage_time():
    base = _table(("p.py", 1, "parse", 1.8e-3, 1.8e-3, 1, {})).scaled_to(1.81e-3)
    head = _many_small_calls(4.83e-6).scaled_to(2.52e-3)
    lines = diff_profiles(base, head)
    assert lines and sum(line.head for line in lines) <= 2.52e-3 * 1.0001
    assert next(line for line in lines if line.function == "p.py:9 _clean_city").head < 2.52e-3


def test_a_profile_where_head_was_not_slower_says_so():
    base = _table(("p.py", 1, "stage", 0.01, 1.0, 1, {}),
                  ("p.py", 5, "step", 0.99, 0.99, 1, {"p.py:1(stage)": (1, 0.99, 0.99)})).scaled_to(1.0)
    faster = _table(("p.py", 1, "stage", 0.01, 0.9, 1, {}),
                    ("p.py", 5, "step", 0.89, 0.89, 1, {"p.py:1(stage)": (1, 0.89, 0.89)})).scaled_to(0.9)
    assert diff_profiles(base, faster) == []
    why = why_empty(base, faster)
    assert why.startswith("in the profiling run the stage took 1 s on base and 900 ms on head per call "
                          "(without the profiler): head was not slower there")
    assert "noise" in why and "C code" in why


def _regressed(name: str, profile, note=None, ratio=1.3) -> StageComparison:
    return StageComparison(name=name, verdict="regressed", measure="walltime", ratio=ratio,
                           ci=[ratio - 0.05, ratio + 0.05], p=0.001, profile=profile, profile_note=note)


def _blocks(text: str) -> dict[str, str]:
    found = re.findall(r"<details( open)?><summary>What got slower in (\S+)</summary>(.*?)</details>", text, re.S)
    return {name: (opened, body) for opened, name, body in found}


def test_the_first_regressed_stage_is_open_and_every_regressed_stage_says_something():
    line = ProfileLine("pipeline/parse.py:40 _clean_city", 0.0, 7e-4, 7e-4, 0.0, 7e-4, 0, 1000, True)
    stages = [
        _regressed("t::first", [line], ratio=1.5),
        _regressed("t::second", [line], ratio=1.4),
        _regressed("t::noisy", [], "in the profiling run the stage took 1 ms on base and 0.9 ms on head per call "
                                   "(without the profiler): head was not slower there", ratio=1.3),
        _regressed("t::bare", [], ratio=1.2),  # an empty profile without a note (an older results.json) is not silent either
    ]
    text = render_comment(Results(stages=stages, verdict="regressed", measure="walltime"))
    blocks = _blocks(text)
    assert list(blocks) == ["t::first", "t::second", "t::noisy", "t::bare"]
    assert blocks["t::first"][0] == " open" and not any(blocks[n][0] for n in ("t::second", "t::noisy", "t::bare"))
    first = blocks["t::first"][1]
    assert "Own time per call of the stage, scaled to the stage's time without the profiler " \
           "(cProfile's overhead removed)." in first
    assert "| pipeline/parse.py:40 &#95;clean_city **new** | – | 700 µs | +700 µs | 0 → 1000 |" in first
    assert "No function to show: in the profiling run the stage took 1 ms on base and 0.9 ms on head per call " \
           "(without the profiler): head was not slower there." in blocks["t::noisy"][1]
    assert "No function to show: the profile is empty." in blocks["t::bare"][1]


def test_an_unprofiled_regression_from_compare_gets_no_empty_block():
    # `bolt compare` never profiles (profile None): no "What got slower" section to fill.
    text = render_comment(Results(stages=[_regressed("t::x", None)], verdict="regressed", measure="walltime"))
    assert "What got slower" not in text
