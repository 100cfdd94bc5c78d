"""`bolt run` on real open-source projects (git bundles in ../shared/real/), twice each, as a user would type it.

Each test clones a bundle, runs the real `bolt` command with only the flags a user needs (the benchmark
path, the install command the project's README gives, the two tags, `--out`), then runs it again on the
same cache, so the second run reuses the environments, as every second push in CI does. What each test
asserts is what ../shared/real/README.md states about that project (or $BOLT_REAL_BUNDLES/README.md). The wall-clock time and the verdicts
of every run are printed at the end of the session and written to $BOLT_REAL_FIGURES if it is set.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# CI runs a fresh clone with shared/ beside it; BOLT_REAL_BUNDLES points elsewhere (a scratch worktree).
REAL = Path(os.environ.get("BOLT_REAL_BUNDLES") or Path(__file__).resolve().parent.parent.parent / "shared" / "real")
BIN = Path(sys.executable).parent  # where `pip install` put the `bolt` command (and uv, a dependency)
RUN_TIMEOUT = 900  # seconds for one `bolt run`; the slowest project takes about 1.5 min here
COMPARED = {"regressed", "improved", "unchanged", "inconclusive"}  # verdicts that mean both sides were measured
FLAGGED = {"regressed", "improved"}
FIGURES: list[dict] = []


@dataclass
class Run:
    """One `bolt run`: how it ended, how long it took, and its results.json (None if it wrote none)."""

    label: str
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    results: dict | None
    stages: dict[str, dict] = field(default_factory=dict)

    def verdicts(self) -> dict[str, str]:
        return {name: stage["verdict"] for name, stage in self.stages.items()}

    def why(self) -> str:
        """What to show when an assertion about this run fails."""
        tail = "\n".join(self.stderr.strip().splitlines()[-25:])
        return f"{self.label}: exit {self.returncode} after {self.seconds:.0f} s; stderr ends with:\n{tail}"


def _bundle(name: str) -> Path:
    path = REAL / f"{name}.bundle"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real-project bundles live in ../shared/real/ beside the repository")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    return path


def _clone(bundle: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(bundle), str(where)], check=True, capture_output=True, text=True)
    return where


def _bolt() -> list[str]:
    script = BIN / "bolt"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bolt_bot"]


def _environ(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["BOLT_CACHE_DIR"] = str(cache)
    env.pop("BOLT_WALL_SIZES", None)  # every default, as a user runs it (tests/conftest.py)
    # As in a shell where Bolt was pip-installed: its folder (with uv, a dependency of Bolt) is on PATH.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run_twice(label: str, repo: Path, tmp: Path, args: list[str]) -> tuple[Run, Run]:
    """`bolt run ARGS --out DIR` from inside the clone, twice in a row on one cache folder."""
    cache = tmp / "cache"
    runs = []
    for n in (1, 2):
        out = tmp / f"out-{n}"
        started = time.monotonic()
        proc = subprocess.run([*_bolt(), "run", *args, "--out", str(out)], cwd=repo, env=_environ(cache),
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
        seconds = time.monotonic() - started
        path = out / "results.json"
        results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        run = Run(f"{label} run {n}", proc.returncode, seconds, proc.stdout, proc.stderr, results)
        if results is not None:
            run.stages = {stage["name"]: stage for stage in results["stages"]}
        FIGURES.append({"label": run.label, "seconds": seconds, "returncode": proc.returncode,
                        "verdict": results["verdict"] if results else "no results.json",
                        "measure": results.get("measure") if results else "",
                        "stages": collections.Counter(run.verdicts().values()),
                        "flagged": [f"{name.split('::')[-1]} {(stage['ratio'] - 1) * 100:+.1f} % ({stage['measure']})"
                                    for name, stage in sorted(run.stages.items())
                                    if stage["verdict"] in FLAGGED and stage.get("ratio")]})
        runs.append(run)
    return runs[0], runs[1]


def _completed(run: Run) -> None:
    """A run that finished the way the README says a finished run does: results.json, no traceback, and
    exit 0, or 2 for a `failed` run (the README's exit codes, without --fail-on-regression)."""
    assert "Traceback" not in run.stderr, run.why()
    assert run.results is not None, f"no results.json. {run.why()}"
    assert run.results["schema"] == "bolt/results/v1"
    assert run.returncode == (2 if run.results["verdict"] == "failed" else 0), run.why()


def _reused(second: Run) -> None:
    assert "reused" in second.stderr, f"the second run did not reuse the environments. {second.why()}"


def _untouched(repo: Path) -> None:
    """README: 'your working tree is never touched' (the rounds run in throwaway worktrees)."""
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--ignored"], check=True,
                            capture_output=True, text=True).stdout
    assert status == "", f"bolt run left files in the user's checkout:\n{status}"


def _measured_on_both_sides(run: Run, name: str) -> None:
    stage = run.stages[name]
    for side in ("base", "head"):
        summary = stage.get(side) or {}
        assert summary.get("values"), f"{name}: nothing measured on {side} ({stage['verdict']}: {stage.get('note')}). {run.why()}"


def _two_runs(tmp_path: Path, bundle: str, label: str, tags: tuple[str, str], benchmarks: str, install: str) -> tuple[Run, Run]:
    """Clone the bundle, run bolt twice; both must complete, the second on reused environments, the clone untouched."""
    repo = _clone(_bundle(bundle), tmp_path / bundle)
    args = ["--base", tags[0], "--head", tags[1], "--benchmarks", benchmarks, "--install", install]
    runs = _run_twice(label, repo, tmp_path, args)
    for run in runs:
        _completed(run)
    _reused(runs[1])
    _untouched(repo)
    return runs


@pytest.fixture(scope="module", autouse=True)
def _figures(request):
    """Prints the time and verdicts of every run once the module is done (and writes $BOLT_REAL_FIGURES)."""
    yield
    if not FIGURES:
        return
    lines = ["| run | wall clock | exit | verdict | measure | stage verdicts | regressed or improved |",
             "|---|---|---|---|---|---|---|"]
    for f in FIGURES:
        stages = ", ".join(f"{n} {v}" for v, n in sorted(f["stages"].items()))
        lines.append(f"| {f['label']} | {f['seconds']:.0f} s | {f['returncode']} | {f['verdict']} | {f['measure']} "
                     f"| {stages} | {'; '.join(f['flagged'])} |")
    text = "\n".join(lines) + "\n"
    target = os.environ.get("BOLT_REAL_FIGURES")
    if target:
        Path(target).write_text(text, encoding="utf-8")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when the tests pass
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)


def test_fastjsonschema_failing_base_benchmarks_are_failed_and_the_others_compared(tmp_path):
    """README: on base the 4 test_benchmark_ok_values fail; the 8 test_benchmark_bad_values run on both sides."""
    for run in _two_runs(tmp_path, "python-fastjsonschema", "fastjsonschema", ("bolt-base", "bolt-head"),
                         "tests/benchmarks/test_benchmark.py", "pip install -e . pytest pytest-benchmark"):
        prefix = "tests/benchmarks/test_benchmark.py::"
        ok = {f"{prefix}test_benchmark_ok_values[value{i}]" for i in range(4)}
        bad = {f"{prefix}test_benchmark_bad_values[value{i}]" for i in range(8)}
        assert set(run.stages) == ok | bad, run.why()
        for name in sorted(ok):
            assert run.stages[name]["verdict"] in ("failed", "added"), f"{name}: {run.stages[name]['verdict']}. {run.why()}"
        for name in sorted(bad):
            stage = run.stages[name]
            assert stage["verdict"] in COMPARED, f"{name}: {stage['verdict']} ({stage.get('note')}). {run.why()}"
            _measured_on_both_sides(run, name)
        # The 4 failed on base only (head fixed them): listed as failed, but the change broke nothing.
        assert run.results["verdict"] != "failed", run.why()


def _uv_sync_or_skip() -> None:
    if shutil.which("uv", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}") is None:
        pytest.skip("uv is not installed: python-statemachine installs with `uv sync --frozen`")


def test_statemachine_renamed_benchmarks_are_added_and_removed(tmp_path):
    """README pair 1: head renames every benchmark (2 -> 14), changes log_cli_level; addopts has
    --benchmark-autosave and --pdbcls=pdbr:RichPdb; installed with `uv sync --frozen`."""
    _uv_sync_or_skip()
    for run in _two_runs(tmp_path, "python-statemachine", "statemachine pair 1", ("bolt-base", "bolt-head"),
                         "tests/test_profiling.py", "uv sync --frozen"):
        verdicts = run.verdicts()
        removed = {n for n, v in verdicts.items() if v == "removed"}
        added = {n for n, v in verdicts.items() if v == "added"}
        assert removed == {"tests/test_profiling.py::test_setup_performance",
                           "tests/test_profiling.py::test_event_performance"}, run.why()
        assert len(added) == 14 and all(n.startswith("tests/test_profiling.py::Test") for n in added), run.why()
        assert set(verdicts) == removed | added, f"only renamed stages exist on this pair: {verdicts}"
        # Nothing was compared: a run that says only "unchanged" would hide that (peers.md, renames).
        assert any("nothing was compared" in n for n in run.results["notices"]), run.results["notices"]
        assert run.results["verdict"] not in FLAGGED | {"failed"}, run.why()


def test_statemachine_null_pair_has_no_false_verdict(tmp_path):
    """README pair 2: measured 1.03x / 1.00x, essentially no change; addopts also has --cov."""
    _uv_sync_or_skip()
    names = {"tests/test_profiling.py::test_setup_performance", "tests/test_profiling.py::test_event_performance"}
    for run in _two_runs(tmp_path, "python-statemachine", "statemachine pair 2 (null)", ("bolt-null-base", "bolt-null-head"),
                         "tests/test_profiling.py", "uv sync --frozen"):
        assert set(run.stages) == names, run.why()
        for name in sorted(names):
            stage = run.stages[name]
            _measured_on_both_sides(run, name)
            if stage["verdict"] == "improved" and stage["measure"] == "instructions":
                # Head is "perf: cache signature binding results": fewer instructions, repeated exactly,
                # is true; the README's "essentially no change" is wall time, which cannot see under 3 %.
                assert stage["ratio"] > 0.97, f"{name}: {stage['ratio']:.3f} is not 'essentially no change'"
                continue
            assert stage["verdict"] in COMPARED - FLAGGED, f"{name}: {stage['verdict']} ({stage.get('note')}). {run.why()}"
        assert run.results["verdict"] != "regressed" and run.results["verdict"] != "failed", run.why()


def test_base58_only_decoding_changes(tmp_path):
    """README: head changes only b58decode; inputs are unseeded random; the encode stages are controls."""
    for run in _two_runs(tmp_path, "base58", "base58", ("bolt-base", "bolt-head"), "test_base58.py",
                         "pip install -e . pytest pytest-benchmark PyHamcrest"):
        sizes = (8, 32, 256, 1024)
        encode = {f"test_base58.py::test_encode_random[{n}]" for n in sizes}
        decode = {f"test_base58.py::test_decode_random[{n}]" for n in sizes}
        assert set(run.stages) == encode | decode, run.why()
        for name in sorted(encode):
            stage = run.stages[name]
            assert stage["verdict"] in COMPARED - FLAGGED, f"{name} flagged: {stage['verdict']} ({stage.get('ratio')}). {run.why()}"
            _measured_on_both_sides(run, name)
        for name in sorted(decode):
            stage = run.stages[name]
            assert stage["verdict"] == "improved", f"{name}: {stage['verdict']} ({stage.get('ratio')}, {stage.get('note')}). {run.why()}"
        assert run.results["verdict"] == "improved", run.why()
