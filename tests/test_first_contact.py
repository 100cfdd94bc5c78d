"""First contact as a user has it: relative paths from any folder, and runs that measured nothing never exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from tests import projects
from tests.conftest import commit, git

IDNA = Path(__file__).parent / "data" / "idna"
WORK = {"parse": 20000, "join": 15000}
# Few short rounds: these tests are about paths and exit codes, not about detection.
QUICK = ["--measure", "walltime", "--walltime-engine", "rounds", "--rounds", "2", "--budget", "0", "--no-profile", "--quiet"]


def bolt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed `bolt` command, as a user types it, started in `cwd`."""
    return subprocess.run([sys.executable, "-m", "bolt_bot", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)


def empty_round(path: Path) -> Path:
    """A pytest-benchmark JSON file of a round that benchmarked nothing."""
    data = json.loads((IDNA / "base-1.json").read_text())
    data["benchmarks"] = []
    path.write_text(json.dumps(data))
    return path


def test_compare_that_measured_nothing_fails_and_still_prints_its_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty_round(tmp_path / "base.json")
    empty_round(tmp_path / "head.json")
    # Relative file names, resolved against the folder Bolt was started in.
    result = CliRunner().invoke(main, ["compare", "--base", "base.json", "--head", "head.json", "--format", "json"])
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["verdict"] == "failed"
    assert result.stderr.count("\n") == 1 and "nothing was measured" in result.stderr
    gate = CliRunner().invoke(main, ["compare", "--base", "base.json", "--head", "head.json", "--fail-on-regression"])
    assert gate.exit_code == 1 and "⚡ no benchmarks measured" in gate.stdout


def test_a_comparison_that_worked_still_exits_0():
    argv = ["compare", "--fail-on-regression"]
    for i in range(1, 6):
        argv += ["--base", str(IDNA / f"base-{i}.json"), "--head", str(IDNA / f"head-{i}.json")]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_run_with_relative_repo_and_out_from_another_folder(tmp_path):
    repo, base, head = projects.pipeline_repo(tmp_path / "project", WORK, dict(WORK, parse=30000))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = bolt("run", "--repo", "../project", "--base", base, "--head", head, "--out", "rel/results", *QUICK,
                cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    out = elsewhere / "rel" / "results"
    results = json.loads((out / "results.json").read_text())
    assert {s["verdict"] for s in results["stages"]} - {"regressed", "unchanged", "inconclusive"} == set(), results
    assert len(results["stages"]) == len(WORK)
    assert sorted(p.name for p in (out / "rounds" / "base").glob("*.json"))
    assert str(out / "comment.md") in proc.stdout  # the path printed is where the file is
    assert git(repo, "status", "--porcelain") == "", "nothing was written into the measured repository"


def broken_head_repo(where: Path) -> tuple[Path, str, str]:
    """A head that does not import: every stage fails on head."""
    repo, base, _ = projects.pipeline_repo(where, WORK, WORK)
    head = commit(repo, {"minipipe.py": "raise ImportError('head is broken')\n"}, "break the head")
    return repo, base, head


@pytest.mark.slow
def test_run_in_which_every_stage_failed_exits_2_or_1_with_the_gate(tmp_path):
    repo, base, head = broken_head_repo(tmp_path / "project")
    for flags, expected in (([], 2), (["--fail-on-regression"], 1)):
        out = tmp_path / f"out-{expected}"
        proc = bolt("run", "--repo", str(repo), "--base", base, "--head", head, "--out", str(out), *QUICK, *flags,
                    cwd=tmp_path)
        assert proc.returncode == expected, proc.stderr
        results = json.loads((out / "results.json").read_text())  # written before the exit
        assert results["verdict"] == "failed"
        assert {s["verdict"] for s in results["stages"]} == {"failed"}
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("bolt: error: the run failed: every stage failed (2)") and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_run_that_selected_no_benchmark_is_failed_not_a_success(tmp_path):
    repo, base, head = projects.pipeline_repo(tmp_path / "project", WORK, dict(WORK, parse=30000))
    out = tmp_path / "out"
    proc = bolt("run", "--repo", str(repo), "--base", base, "--head", head, "--out", str(out), *QUICK,
                "--pytest-args", "-k no_such_benchmark", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert json.loads((out / "results.json").read_text())["verdict"] == "failed"
    assert "nothing was measured" in proc.stderr.strip().splitlines()[-1]
    assert "no benchmarks measured" in (out / "comment.md").read_text()


def test_relative_cache_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOLT_CACHE_DIR", "cache")
    CliRunner().invoke(main, ["compare", "--base", str(IDNA / "base-1.json"), "--head", str(IDNA / "head-1.json")])
    assert os.environ["BOLT_CACHE_DIR"] == str(tmp_path / "cache")


def test_a_stage_that_failed_on_base_only_does_not_fail_the_run():
    """fastjsonschema's base breaks 4 benchmarks that head fixes: reported failed, but the change broke nothing."""
    from bolt_bot.decide.compare import run_verdict
    from bolt_bot.model import SideSummary, StageComparison

    fixed = StageComparison(name="t::fixed", verdict="failed", base=SideSummary(error="AssertionError"),
                            head=SideSummary(rounds=3))
    same = StageComparison(name="t::same", verdict="unchanged")
    broken = StageComparison(name="t::broken", verdict="failed", base=SideSummary(rounds=3),
                             head=SideSummary(error="ImportError"))
    assert run_verdict([fixed, same]) == "unchanged"
    assert run_verdict([fixed]) == "failed"  # every stage failed
    assert run_verdict([fixed, same, broken]) == "failed"  # head broke one
    assert run_verdict([]) == "failed"
