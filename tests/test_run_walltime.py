"""`bolt run --measure walltime` on real repositories it has never seen, in real virtual environments."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.errors import BoltError
from bolt_bot.model import BenchmarkRound
from bolt_bot.measure.rounds import RoundResult
from bolt_bot.decide import walltime as wall_verdicts
from bolt_bot.measure.walltime import SideSetup, WalltimePlan, measure_walltime
from tests import projects
from tests.conftest import commit, git, make_repo

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
                               "--walltime-engine", "rounds", "--out", str(out))
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


# A stage that vanishes after the planned rounds (here: once its side's fifth process starts). Confirmation
# rounds named it on pytest's command line, pytest answered "not found" (exit 4), and the run ended with
# exit 2 and no results.json. Its ids hold "::", which older pytest cannot parse on the command line either.
VANISHING_BENCH = '''import pathlib

import pytest
import minipipe

_COUNTER = pathlib.Path(__file__).with_name(".processes")
RUNS = int(_COUNTER.read_text()) + 1 if _COUNTER.exists() else 1
_COUNTER.write_text(str(RUNS))
NAMES = [n for n in {names!r} if n != "join" or RUNS <= 4]


@pytest.mark.parametrize("stage", [pytest.param(n, id=n + "::v2") for n in NAMES])
def test_stage(benchmark, stage):
    benchmark(getattr(minipipe, stage))
'''


def test_a_stage_that_vanishes_before_confirmation_is_kept_and_marked(tmp_path):
    work = {"ingest": 20000, "parse": 30000, "join": 25000}
    files = projects.pipeline_files(work)
    files["bench/test_bench.py"] = VANISHING_BENCH.format(names=list(work))
    files[".gitignore"] = ".processes\n"
    repo = make_repo(tmp_path / "odd", files)
    head = commit(repo, {"minipipe.py": projects.pipeline_module(dict(work, join=75000))}, "head: join 3x the work")
    out = tmp_path / "out"
    code, output = run_cli("--repo", str(repo), "--base", "HEAD~1", "--head", head, "--measure", "walltime",
                           "--walltime-engine", "rounds", "--rounds", "4", "--budget", "0", "--no-profile", "--out", str(out))
    assert code == 0, output
    results = json.loads((out / "results.json").read_text())
    stages = {s["name"]: s for s in results["stages"]}
    join = stages["bench/test_bench.py::test_stage[join::v2]"]
    assert results["environment"]["confirmation_rounds"] >= 3  # confirmation ran, without the vanished stage
    assert join["ratio"] > 2 and join["verdict"] == "inconclusive", join  # measured, then not confirmable
    assert "confirmation" in join["note"], join
    assert not {"regressed", "improved"} & {s["verdict"] for name, s in stages.items() if "join" not in name}


def test_a_round_that_cannot_re_select_keeps_what_was_measured_and_marks_the_stages(tmp_path):
    """A confirmation round pytest refuses (say, a stage vanished) no longer aborts the run."""
    def round_fn(python, checkout, targets, workdir, *, label, **kw):
        if label.startswith("confirm"):
            raise BoltError("pytest refused the arguments: not found: t.py::slow[a::b]")
        slow = 1.5 if python == "head" else 1.0
        return RoundResult(records=[BenchmarkRound(name="t.py::slow[a::b]", median=0.01 * slow, min=0.01 * slow),
                                    BenchmarkRound(name="t.py::same", median=0.01, min=0.01)])

    setups = {side: SideSetup(python=side, checkout=tmp_path) for side in ("base", "head")}
    plan = WalltimePlan(rounds=6, budget=0)
    run = measure_walltime(setups, plan, tmp_path, round_fn=round_fn, judge=wall_verdicts.judge(plan))
    stages = {s.name: s for s in wall_verdicts.walltime_stages(run, plan)[0]}
    slow = stages["t.py::slow[a::b]"]
    assert slow.verdict == "inconclusive" and "could not re-select" in slow.note and "not found" in slow.note
    assert slow.ratio and slow.ratio > 1.4  # what the planned rounds measured is kept
    assert stages["t.py::same"].verdict == "unchanged" and "re-select" not in (stages["t.py::same"].note or "")
