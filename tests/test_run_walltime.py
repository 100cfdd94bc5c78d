"""`bolt run --measure walltime` on real repositories it has never seen, in real virtual environments."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from tests import projects
from tests.conftest import commit, git

pytestmark = pytest.mark.slow

BASE_WORK = {"ingest": 20000, "parse": 30000, "clean": 4000, "join": 25000, "render": 3000, "export": 20000}


def pipeline_repo(tmp_path, head_work):
    """Six stages of plain CPU and string work, never seen before by Bolt."""
    return projects.pipeline_repo(tmp_path / "never-seen", BASE_WORK, head_work, strings=("clean", "render"))


def run_cli(*args):
    result = CliRunner().invoke(main, ["run", "--quiet", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_finds_both_slowdowns_and_flags_nothing_else(tmp_path):
    head_work = dict(BASE_WORK, parse=int(30000 * 1.10), join=int(25000 * 1.09))
    repo, base, head = pipeline_repo(tmp_path, head_work)
    # A shared VM can switch between two speeds 1.7x apart for seconds at a time; then Bolt says
    # "inconclusive" instead of guessing, and a maintainer measures again. The test does the same, once.
    # A false alarm is never excused: every attempt must flag nothing but the two slowed stages.
    for attempt in (1, 2):
        out = tmp_path / f"out{attempt}"
        code, output = run_cli("--repo", str(repo), "--base", base, "--head", head, "--measure", "walltime",
                               "--out", str(out))
        assert code == 0, output
        results = json.loads((out / "results.json").read_text())
        verdicts = {s["name"].split("[")[1].rstrip("]"): s["verdict"] for s in results["stages"]}
        flagged = {name for name, v in verdicts.items() if v in ("regressed", "improved")}
        assert flagged <= {"parse", "join"}, verdicts
        assert all(v in ("regressed", "inconclusive") for n, v in verdicts.items() if n in ("parse", "join")), verdicts
        if flagged == {"parse", "join"}:
            break
    else:
        # Seen on this VM: both attempts in the slow/fast flip-flop. Bolt did what it promises (no false
        # alarm, "inconclusive" with the noise named); the detection claim is then not testable here.
        pytest.xfail(f"the runner was too noisy for wall time in both attempts: {verdicts}")
    assert verdicts["parse"] == "regressed" and verdicts["join"] == "regressed", verdicts
    comment = (out / "comment.md").read_text()
    assert "2 stages slower" in comment and "test_stage&#91;parse&#93;" in comment
    # The working tree was not touched, and no worktree is left behind.
    assert git(repo, "status", "--porcelain") == ""
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert list((out / "rounds" / "base").glob("round-*.json")), "raw rounds are kept"


def test_failing_hanging_and_added_stages_do_not_stop_the_comparison(tmp_path):
    repo, base, _ = pipeline_repo(tmp_path, BASE_WORK)
    head = commit(repo, {"bench/test_more.py": textwrap.dedent('''
        import time


        def test_broken(benchmark):
            benchmark(lambda: 1 / 0)


        def test_hangs(benchmark):
            benchmark(time.sleep, 3600)


        def test_new(benchmark):
            benchmark(sum, range(100))
    ''')}, "head with trouble")
    out = tmp_path / "out"
    code, output = run_cli("--repo", str(repo), "--base", base, "--head", head, "--measure", "walltime",
                           "--rounds", "2", "--budget", "0", "--round-timeout", "20", "--out", str(out))
    assert code == 2, output  # a run with failed stages and no regression is `failed`: never a success
    stages = {s["name"].split("::")[-1]: s for s in json.loads((out / "results.json").read_text())["stages"]}
    assert stages["test_broken"]["verdict"] == "failed" and "ZeroDivisionError" in stages["test_broken"]["note"]
    assert stages["test_hangs"]["verdict"] == "failed" and "timed out" in stages["test_hangs"]["note"]
    assert stages["test_new"]["verdict"] == "added"
    assert all(stages[f"test_stage[{s}]"]["verdict"] not in ("failed", "added", "removed") for s in BASE_WORK)


def test_a_suite_that_cannot_import_fails_its_stages_with_the_error(tmp_path):
    repo, base, _ = pipeline_repo(tmp_path, BASE_WORK)
    head = commit(repo, {"minipipe.py": "raise ImportError('the head is broken')\n"}, "broken head")
    out = tmp_path / "out"
    code, output = run_cli("--repo", str(repo), "--base", base, "--head", head, "--measure", "walltime",
                           "--rounds", "2", "--budget", "0", "--out", str(out))
    assert code == 2, output
    results = json.loads((out / "results.json").read_text())
    assert results["verdict"] == "failed"
    assert {s["verdict"] for s in results["stages"]} == {"failed"}
    assert any("broken" in (s["note"] or "") for s in results["stages"])


def test_missing_commit_exits_2_with_one_line(tmp_path):
    repo, base, _ = pipeline_repo(tmp_path, BASE_WORK)
    proc = subprocess.run([sys.executable, "-m", "bolt_bot", "run", "--repo", str(repo), "--base", "deadbeef" * 5,
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "deadbeef" in proc.stderr and "Traceback" not in proc.stderr
