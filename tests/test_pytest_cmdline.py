"""One pytest command line for every measured pass: a project's addopts, xdist, cov, randomly and friends never
stop Bolt, and a usage error names its cause."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from bolt_bot.measure import process, pytestcmd
from bolt_bot.cli import main
from bolt_bot.measure.counts import valgrind_available
from tests import projects
from tests.conftest import commit, make_repo


@pytest.mark.parametrize("args, kept", [
    (["-n0"], []),
    (["-n", "0"], []),
    (["-n=4", "bench"], ["bench"]),
    (["--numprocesses=auto", "--dist", "loadscope", "-k", "fast"], ["-k", "fast"]),
    (["-p", "xdist", "-p", "no:xdist", "-pxdist", "-p", "myplugin"], ["-p", "myplugin"]),
    (["--cov", "-m", "bench"], ["-m", "bench"]),
    (["--cov", "src", "--cov-report=term", "--cov-report", "xml", "--no-cov"], []),
    (["-p", "no:randomly", "--randomly-seed", "12", "--randomly-dont-reorganize", "-p", "sugar"], []),
    (["--benchmark-autosave", "--benchmark-json", "x.json", "--benchmark-skip", "--benchmark-disable"], []),
    (["--benchmark-compare", "--benchmark-compare", "0001", "--benchmark-min-rounds=9"], ["--benchmark-min-rounds=9"]),
    (["--pdbcls=pdbr:RichPdb", "--pdb", "--lf", "--sw", "-x"], ["-x"]),
    (["-o", "addopts=-n auto", "-o", "log_level=DEBUG"], ["-o", "log_level=DEBUG"]),
    (["tests/bench.py::test_a[x-1]", "-m", "not slow"], ["tests/bench.py::test_a[x-1]", "-m", "not slow"]),
])
def test_what_fights_measurement_is_dropped_and_the_selection_kept(args, kept):
    assert pytestcmd.clean(args)[0] == kept


def test_counts_drop_every_benchmark_option_with_its_value():
    kept, dropped = pytestcmd.clean(["--benchmark-min-rounds", "9", "--benchmark-timer=time.process_time", "bench"],
                                    benchmark_options=False)
    assert kept == ["bench"] and dropped == ["--benchmark-min-rounds 9", "--benchmark-timer=time.process_time"]


def test_every_pass_clears_addopts_and_blocks_the_same_plugins():
    args = pytestcmd.pytest_args(["-n0", "bench"], plugin="bolt_round_plugin", bolt_flags=["--benchmark-only"],
                                 targets=["a.py"])
    assert args[0] == "a.py" and args[-1] == "bench" and "-n0" not in args
    assert ["-o", "addopts="] == args[args.index("addopts=") - 1:args.index("addopts=") + 1]
    for plugin in ("xdist", "randomly", "sugar", "cov", "cacheprovider"):
        assert f"no:{plugin}" in args


def _pytest_output(tmp_path, *args):
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_a_usage_error_is_reported_by_the_line_that_names_its_cause(tmp_path):
    output = _pytest_output(tmp_path, "--numprocesses=auto")
    assert "usage:" in output
    assert process.error_line(output) == "unrecognized arguments: --numprocesses=auto"
    output = _pytest_output(tmp_path, "test_x.py::test_y")
    assert process.error_line(output).startswith("not found: ")
    (tmp_path / "conftest.py").write_text("import no_such_module_here\n")
    output = _pytest_output(tmp_path)
    assert "No module named 'no_such_module_here'" in process.error_line(output)


# ---------------------------------------------------------------- real projects through `bolt run`

BASE_WORK = {"ingest": 6000, "parse": 9000, "clean": 3000, "join": 7000}
HEAD_WORK = dict(BASE_WORK, join=10500)  # +50 %: regressed by counts and by wall time alike
PYTEST_CONFIG = '''
[tool.pytest.ini_options]
addopts = "{addopts}"
'''


def _foreign_project(tmp_path, addopts: str, dependencies: list[str]):
    files = projects.pipeline_files(BASE_WORK, strings=("clean",))
    files["pyproject.toml"] = files["pyproject.toml"].replace('version = "0"', f'version = "0"\ndependencies = {dependencies!r}') \
        + PYTEST_CONFIG.format(addopts=addopts)
    repo = make_repo(tmp_path / "never-seen", files)
    head = commit(repo, {"minipipe.py": projects.pipeline_module(HEAD_WORK, ("clean",))}, "head: join does more")
    return repo, head


def _run(*args):
    result = CliRunner().invoke(main, ["run", "--quiet", "--base", "HEAD~1", *args], catch_exceptions=False)
    return result.exit_code, result.output


def _verdicts(out):
    results = json.loads((out / "results.json").read_text())
    return results, {s["name"].split("[")[1].rstrip("]"): s["verdict"] for s in results["stages"]}


def real(test):
    """A test that runs `bolt run` on a real project: slow, and needs valgrind and uv."""
    test = pytest.mark.skipif(valgrind_available() is None, reason="valgrind is not installed")(test)
    test = pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")(test)
    return pytest.mark.slow(test)


@real
@pytest.mark.parametrize("pytest_args", [None, "-n0", "-n 0 -p xdist --numprocesses=0"])
def test_a_project_with_xdist_cov_and_unknown_plugins_in_addopts(tmp_path, pytest_args):
    # xdist is installed (and named in addopts), coverage too; --flake8 belongs to a plugin that is not.
    repo, head = _foreign_project(tmp_path, "--numprocesses=auto -p xdist --cov=minipipe --flake8 --benchmark-skip",
                                  ["pytest-xdist", "pytest-cov"])
    out = tmp_path / "out"
    extra = ["--pytest-args", pytest_args] if pytest_args else []
    code, output = _run("--repo", str(repo), "--head", head, "--benchmarks", "bench", *extra, "--out", str(out))
    assert code == 0, output
    results, verdicts = _verdicts(out)
    assert verdicts == {"ingest": "unchanged", "parse": "unchanged", "clean": "unchanged", "join": "regressed"}, verdicts
    assert results["measure"] == "instructions", results["measure"]
    if pytest_args is None:  # the regression was profiled on both sides, with the same command line
        for side in ("base", "head"):
            assert [p.name for p in (out / "profiles" / side).glob("*.pstats")] == [
                next(p.name for p in (out / "profiles" / side).glob("*join*.pstats"))]
        # A second run meets the cached environments (reused, Bolt's packages installed again): same answer.
        again = tmp_path / "again"
        code, output = _run("--repo", str(repo), "--head", head, "--benchmarks", "bench", "--out", str(again))
        assert code == 0, output
        assert _verdicts(again)[1] == verdicts



@real
@pytest.mark.parametrize("measure", ["auto", "walltime"])
def test_a_project_without_xdist_accepts_its_own_n0(tmp_path, measure):
    # Neither xdist nor pytest-cov is installed: their options in addopts, and the -n0 its CI passes, are
    # what a user copies into pytest-args; Bolt drops them rather than handing pytest a usage error.
    repo, head = _foreign_project(tmp_path, "--numprocesses=auto --cov=minipipe", [])
    out = tmp_path / "out"
    code, output = _run("--repo", str(repo), "--head", head, "--benchmarks", "bench", "--measure", measure,
                        "--pytest-args", "-n0 -p no:xdist --cov-report=term", "--no-profile", "--out", str(out))
    assert code == 0, output
    results, verdicts = _verdicts(out)
    assert results["measure"] == ("instructions" if measure == "auto" else "walltime")
    assert {n: v for n, v in verdicts.items() if n != "join"} == dict.fromkeys(("ingest", "parse", "clean"), "unchanged") \
        or measure == "walltime" and not {"regressed", "improved"} & {v for n, v in verdicts.items() if n != "join"}, verdicts
    assert verdicts["join"] == "regressed", verdicts
