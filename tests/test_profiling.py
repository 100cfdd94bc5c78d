"""Profile collection in a real virtual environment, path normalisation and differential profiles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bolt_bot.errors import BoltError
from bolt_bot.measure.probe import PROBE_DIR
from bolt_bot.profiling.memory import TRACEMALLOC, from_record
from bolt_bot.profiling.diff import diff_profiles, match_functions, why_empty
from bolt_bot.profiling.collect import (
    FunctionStats,
    FunctionTable,
    collect_profiles,
    hot_functions,
    load_profile,
    normalise_path,
    profile_index,
    top_bottlenecks,
)

pytestmark = pytest.mark.slow

STAGES_BASE = '''\
"""A toy pipeline: each function is one stage."""

from pipeline.textio import read_lines


def make_records(n):
    return [{"id": i, "name": f"item-{i}", "score": (i * 7919) % 1000} for i in range(n)]


def parse(lines):
    return [line.split(",") for line in lines]


def transform(records):
    return sorted(records, key=lambda r: (r["score"], r["name"]))


def render(records):
    return "\\n".join(f"{r['id']}:{r['name']}:{r['score']}" for r in records)


def load(n):
    return parse(read_lines(n))
'''

# Head: a comment block shifts every line, and transform() calls a new, slow helper.
STAGES_HEAD = STAGES_BASE.replace(
    '"""A toy pipeline: each function is one stage."""\n',
    '"""A toy pipeline: each function is one stage."""\n# head moved things around\n# a bit\n',
).replace(
    "def transform(records):\n    return sorted(",
    "def _normalise_slowly(records):\n"
    "    out = []\n"
    "    for r in records:\n"
    "        for _ in range(20):\n"
    "            name = r[\"name\"].upper().lower()\n"
    "        out.append(dict(r, name=name))\n"
    "    return out\n"
    "\n\n"
    "def transform(records):\n    records = _normalise_slowly(records)\n    return sorted(",
)

TEXTIO = '''\
"""Unchanged between base and head."""


def read_lines(n):
    return [f"{i},{i * 2},{i * 3}" for i in range(n)]
'''

BENCHMARKS = '''\
import pytest

from pipeline import stages


def _make_input():
    return (stages.make_records(3000),), {}


def test_load(benchmark):
    benchmark(stages.load, 2000)


def test_transform(benchmark):
    benchmark.pedantic(stages.transform, setup=_make_input, rounds=5)


@pytest.mark.parametrize("n", [500, 1000])
def test_render(benchmark, n):
    records = stages.make_records(n)
    benchmark(stages.render, records)


def test_not_a_benchmark():
    assert stages.parse(["a,b"]) == [["a", "b"]]
'''

LOAD = "benchmarks/test_pipeline.py::test_load"
TRANSFORM = "benchmarks/test_pipeline.py::test_transform"
RENDER_500 = "benchmarks/test_pipeline.py::test_render[500]"
RENDER_1000 = "benchmarks/test_pipeline.py::test_render[1000]"


def _write_project(root: Path, stages_source: str) -> Path:
    (root / "pipeline").mkdir(parents=True)
    (root / "benchmarks").mkdir()
    (root / "pipeline" / "__init__.py").write_text("")
    (root / "pipeline" / "stages.py").write_text(stages_source)
    (root / "pipeline" / "textio.py").write_text(TEXTIO)
    (root / "benchmarks" / "test_pipeline.py").write_text(BENCHMARKS)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [tool.pytest.ini_options]
            pythonpath = ["."]
            # a project that asks for these must not break profiling
            addopts = "--benchmark-only --benchmark-autosave"
            """
        )
    )
    return root


def _def_line(source: str, name: str) -> int:
    for number, line in enumerate(source.splitlines(), start=1):
        if line.startswith(f"def {name}("):
            return number
    raise AssertionError(name)


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), "pytest", "pytest-benchmark"],
        check=True,
        timeout=600,
    )
    return python


@pytest.fixture(scope="module")
def checkouts(tmp_path_factory) -> tuple[Path, Path]:
    top = tmp_path_factory.mktemp("checkouts")
    return _write_project(top / "base", STAGES_BASE), _write_project(top / "head", STAGES_HEAD)


@pytest.fixture(scope="module")
def base_profiles(venv_python, checkouts, tmp_path_factory) -> dict[str, Path]:
    return collect_profiles(venv_python, checkouts[0], [], tmp_path_factory.mktemp("base-profiles"), calls=5)


@pytest.fixture(scope="module")
def head_profiles(venv_python, checkouts, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("head-profiles")
    return collect_profiles(venv_python, checkouts[1], [], out, stages=[TRANSFORM, LOAD], calls=5)


# ---------------------------------------------------------------- collection


def test_every_benchmark_is_profiled_under_its_pytest_benchmark_fullname(base_profiles, checkouts):
    assert set(base_profiles) == {LOAD, TRANSFORM, RENDER_500, RENDER_1000}
    for path in base_profiles.values():
        assert path.is_file() and path.suffix == ".pstats"
    index = json.loads((base_profiles[LOAD].parent / "index.json").read_text())
    assert index["stages"][LOAD]["calls"] == 5
    assert index["stages"][TRANSFORM]["mode"] == "pedantic"
    # the project's --benchmark-autosave was neutralised: nothing written into the checkout
    assert not (checkouts[0] / ".benchmarks").exists()
    assert not (checkouts[0] / ".pytest_cache").exists()


def test_only_the_selected_stages_run(head_profiles):
    assert set(head_profiles) == {LOAD, TRANSFORM}


def test_numbers_are_per_call_of_the_stage(base_profiles, checkouts):
    table = load_profile(base_profiles[LOAD], checkouts[0])
    assert table.stage_calls == 5
    parse = next(f for f in table.functions.values() if f.name == "parse")
    assert parse.calls == pytest.approx(1.0)  # called once per stage call, whatever the call count
    assert parse.key == f"pipeline/stages.py:{_def_line(STAGES_BASE, 'parse')}(parse)"
    assert table.total > 0
    assert not any("_lsprof" in key for key in table.functions)


def test_pedantic_setup_is_not_profiled(base_profiles, checkouts):
    table = load_profile(base_profiles[TRANSFORM], checkouts[0])
    names = {f.name for f in table.functions.values()}
    assert "transform" in names and "<lambda>" in names
    assert "_make_input" not in names and "make_records" not in names


def test_diff_names_the_new_helper_with_file_and_line(base_profiles, head_profiles, checkouts):
    base = load_profile(base_profiles[TRANSFORM], checkouts[0])
    head = load_profile(head_profiles[TRANSFORM], checkouts[1])
    lines = diff_profiles(base, head, top=5)
    helper_key = f"pipeline/stages.py:{_def_line(STAGES_HEAD, '_normalise_slowly')}(_normalise_slowly)"
    by_name = {line.function: line for line in lines}
    assert helper_key in by_name, [line.function for line in lines]
    assert by_name[helper_key].new and by_name[helper_key].base == 0.0
    assert by_name[helper_key].head_cum > 0.3 * (head.total - base.total)
    assert lines[0].new  # the biggest addition is part of the new code
    assert all(line.delta > 0 or line.head_cum > line.base_cum for line in lines)


def test_unchanged_functions_line_up_across_checkouts_and_moved_lines(base_profiles, head_profiles, checkouts):
    base = load_profile(base_profiles[LOAD], checkouts[0])
    head = load_profile(head_profiles[LOAD], checkouts[1])
    # same file in two different checkout directories: the same key
    read_lines = "pipeline/textio.py:4(read_lines)"
    assert read_lines in base.functions and read_lines in head.functions
    # parse() moved down by the new code above it: matched by file and name, not reported as new
    pairs = {h.key: b for b, h in match_functions(base, head) if h is not None}
    head_parse = f"pipeline/stages.py:{_def_line(STAGES_HEAD, 'parse')}(parse)"
    assert pairs[head_parse] is not None and pairs[head_parse].name == "parse"
    assert all(b is not None for b in pairs.values()), "nothing in load() is new on head"
    assert not any(line.new for line in diff_profiles(base, head))


def test_hot_functions_and_bottlenecks(base_profiles, checkouts):
    tables = {stage: load_profile(path, checkouts[0]) for stage, path in base_profiles.items()}
    hot = hot_functions(tables[TRANSFORM], top=3)
    assert [f.own for f in hot] == sorted((f.own for f in hot), reverse=True)
    assert len(hot) == 3
    worst = top_bottlenecks(tables, top=3)
    assert len(worst) == 3 and worst[0].own >= worst[1].own >= worst[2].own
    assert 0 < sum(b.share for b in worst) <= 1
    assert all(set(b.stages) <= set(tables) for b in worst)


def test_plugin_works_from_its_folder_alone(venv_python, checkouts, tmp_path):
    # What `bolt run` does without collect_profiles: only the probe folder on PYTHONPATH.
    env = dict(os.environ, PYTHONPATH=str(PROBE_DIR), BOLT_PROFILE_DIR=str(tmp_path / "out"))
    done = subprocess.run(
        [str(venv_python), "-m", "pytest", "-q", "-p", "bolt_profile_plugin", "-p", "no:cacheprovider", RENDER_500],
        cwd=checkouts[0], env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(profile_index(tmp_path / "out")) == [RENDER_500]
    assert (tmp_path / "out" / "index.json").is_file()


def test_failures_are_one_line_bolt_errors(venv_python, checkouts, tmp_path):
    with pytest.raises(BoltError) as bad_option:
        collect_profiles(venv_python, checkouts[0], ["--no-such-option"], tmp_path / "a")
    assert "\n" not in str(bad_option.value) and "no-such-option" in str(bad_option.value)
    with pytest.raises(BoltError, match="did not produce"):
        collect_profiles(venv_python, checkouts[0], [], tmp_path / "b", stages=["benchmarks/test_pipeline.py::test_gone"])
    with pytest.raises(BoltError, match="timed out"):
        collect_profiles(venv_python, checkouts[0], [], tmp_path / "c", timeout=0.01)
    with pytest.raises(BoltError, match="cannot start"):
        collect_profiles(tmp_path / "no-python", checkouts[0], [], tmp_path / "d")


# ---------------------------------------------------------------- pure functions


def test_normalise_path(tmp_path):
    root = tmp_path / "checkout"
    assert normalise_path(str(root / "pkg" / "mod.py"), root) == "pkg/mod.py"
    assert normalise_path("/x/.venv/lib/python3.11/site-packages/numpy/core/a.py", root) == "site-packages/numpy/core/a.py"
    # a virtual environment inside the checkout is still a dependency, not project code
    assert normalise_path(str(root / ".venv/lib/python3.11/site-packages/attr/x.py"), root) == "site-packages/attr/x.py"
    assert normalise_path("/usr/lib/python3.11/json/decoder.py", root) == "<stdlib>/json/decoder.py"
    assert normalise_path("~", root) == "~"
    assert normalise_path("<frozen importlib._bootstrap>", root) == "<frozen importlib._bootstrap>"


def _table(*functions: tuple[str, int, str, float, float, dict]) -> FunctionTable:
    table = {}
    for file, line, name, own, cum, callers in functions:
        key = f"{file}:{line}({name})"
        table[key] = FunctionStats(key=key, file=file, line=line, name=name, own=own, cum=cum, calls=1, callers=callers)
    return FunctionTable(functions=table)


def test_anonymous_functions_match_through_their_enclosing_function():
    base = _table(
        ("m.py", 1, "a", 0.1, 0.3, {}),
        ("m.py", 2, "<listcomp>", 0.2, 0.2, {"m.py:1(a)": (1, 0.2, 0.2)}),
    )
    head = _table(
        ("m.py", 1, "helper", 0.1, 0.5, {"m.py:9(a)": (1, 0.5, 0.5)}),
        ("m.py", 2, "<listcomp>", 0.4, 0.4, {"m.py:1(helper)": (1, 0.4, 0.4)}),
        ("m.py", 9, "a", 0.1, 0.8, {}),
        ("m.py", 10, "<listcomp>", 0.2, 0.2, {"m.py:9(a)": (1, 0.2, 0.2)}),
    )
    pairs = {h.key: (b.key if b else None) for b, h in match_functions(base, head) if h}
    assert pairs == {
        "m.py:9(a)": "m.py:1(a)",
        "m.py:10(<listcomp>)": "m.py:2(<listcomp>)",
        "m.py:1(helper)": None,
        "m.py:2(<listcomp>)": None,  # same key as base's, but inside the new helper
    }
    lines = diff_profiles(base, head)
    assert lines[0].function == "m.py:1(helper)" and lines[0].new


def test_diff_points_at_the_caller_when_the_time_is_in_a_builtin():
    base = _table(
        ("p.py", 1, "stage", 0.01, 1.0, {}),
        ("~", 0, "<built-in method builtins.sorted>", 0.99, 0.99, {"p.py:1(stage)": (1, 0.99, 0.99)}),
    )
    head = _table(
        ("p.py", 1, "stage", 0.01, 2.0, {}),
        ("~", 0, "<built-in method builtins.sorted>", 1.99, 1.99, {"p.py:1(stage)": (1, 1.99, 1.99)}),
    )
    lines = diff_profiles(base, head, top=3)
    assert lines[0].function == "~:0(<built-in method builtins.sorted>)"
    assert lines[0].delta == pytest.approx(1.0)
    assert lines[-1].function == "p.py:1(stage)" and lines[-1].head_cum - lines[-1].base_cum == pytest.approx(1.0)
    assert diff_profiles(head, head) == []


def test_an_empty_profile_says_why_it_is_empty():
    base = _table(("p.py", 1, "stage", 0.01, 1.0, {}),
                  ("p.py", 5, "step", 0.99, 0.99, {"p.py:1(stage)": (1, 0.99, 0.99)}))
    same = _table(("p.py", 1, "stage", 0.01, 1.0, {}),
                  ("p.py", 5, "step", 0.995, 0.995, {"p.py:1(stage)": (1, 0.995, 0.995)}))
    assert diff_profiles(base, same) == []
    assert why_empty(base, same) == ("under cProfile the stage took 1 s on base and 1 s on head per call: the change is "
                                     "below the profile's resolution (no function moved by more than 1 % of the "
                                     "stage's time, 10 ms)")
    # 5 % more time, added 0.5 % at a time in ten builtins under generated code: nothing to name, and that is said.
    def spread(each):
        calls = {"<string>:1(stage)": (1, each, each)}
        return _table(("<string>", 1, "stage", 0.0, 10 * each, {}),
                      *[("~", 0, f"<built-in method m{i}>", each, each, calls) for i in range(10)])

    assert diff_profiles(spread(0.1), spread(0.105)) == []
    assert "but the 50 ms added is spread thinly: no function moved by more than 1 % of the stage's time (10.5 ms)" \
        in why_empty(spread(0.1), spread(0.105))


def test_the_comment_shows_why_a_regressed_stage_has_no_profile():
    from bolt_bot.model import Results, StageComparison
    from bolt_bot.report.render import render_comment

    stage = StageComparison(name="t::tiny", verdict="regressed", measure="instructions", ratio=1.05, ci=[1.05, 1.05],
                            profile=[], profile_note="under cProfile the stage took 4 µs on base and 4 µs on head per "
                                                     "call: the change is below the profile's resolution")
    text = render_comment(Results(stages=[stage], verdict="regressed", measure="instructions"))
    block = text.split("<summary>What got slower in t::tiny</summary>")[1].split("</details>")[0]
    assert "No function to show: under cProfile the stage took 4 µs" in block and "| Function" not in block


def test_the_plugin_traces_one_call_with_tracemalloc_when_asked(venv_python, checkouts, tmp_path):
    """`bolt profile`'s fallback without memray: the sidecar holds what one call of the stage still held at its
    return, by line; read back relative to the checkout, with the function the line is written in."""
    files = collect_profiles(venv_python, checkouts[0], [], tmp_path / "mem", stages=[LOAD], calls=2, memory=True)
    record = profile_index(tmp_path / "mem")[LOAD]["memory"]
    picture = from_record(record, checkouts[0], load_profile(files[LOAD], checkouts[0]))
    assert picture is not None and picture.tool == TRACEMALLOC and picture.error is None
    assert picture.allocations >= 2000 and picture.peak >= picture.allocated > 0
    top = picture.top[0]  # parse(): 2000 lists of 3 strings, the call's result
    assert top.where == f"pipeline/stages.py:{_def_line(STAGES_BASE, 'parse') + 1}" and top.function == "parse"
    assert top.allocations >= 2000 and top.project
    plain = collect_profiles(venv_python, checkouts[0], [], tmp_path / "plain", stages=[LOAD], calls=2)
    assert "memory" not in profile_index(tmp_path / "plain")[LOAD] and plain  # not asked: not traced
