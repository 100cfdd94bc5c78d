"""Runs that would measure nothing say so, and the command line speaks in one line and in proper plurals."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.decide.compare import build_results
from bolt_bot.measure.rounds import RoundResult
from bolt_bot.measure.walltime import SideSetup, WalltimePlan, measure_walltime
from bolt_bot.pipeline import make_plan
from bolt_bot.model import INCONCLUSIVE, REGRESSED, UNCHANGED, BenchmarkRound, StageComparison
from bolt_bot.progress import Progress
from bolt_bot.report.render import format_amount, render_comment, render_summary
from bolt_bot.settings import Settings
from tests import projects
from tests.conftest import commit, git, make_repo

IDNA = Path(__file__).parent / "data" / "idna"
WORK = {"parse": 20000, "join": 15000}
QUICK = ["--measure", "walltime", "--walltime-engine", "rounds", "--rounds", "2", "--budget", "0", "--no-profile"]


def bolt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`bolt` as a user types it, started in `cwd`."""
    return subprocess.run([sys.executable, "-m", "bolt_bot", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)


# ---------------------------------------------------------------- base == head


def test_run_on_main_without_base_stops_at_once_with_what_to_pass(tmp_path):
    repo = make_repo(tmp_path / "project", {"a.py": "x = 1\n"})
    started = time.monotonic()
    proc = bolt("run", "--out", str(tmp_path / "out"), cwd=repo)
    assert proc.returncode == 2, proc.stderr
    sha = git(repo, "rev-parse", "--short=7", "HEAD")
    assert proc.stderr.splitlines() == [
        f"bolt: error: base and head are the same commit {sha} (the default base, the head's merge-base with main, "
        "is the head itself): nothing to compare; pass --base REF (e.g. --base main~1) or check out your branch"]
    assert time.monotonic() - started < 30  # no environment was built, nothing was measured
    assert not (tmp_path / "out").exists()


def test_a_base_that_is_the_head_and_uncommitted_edits_are_named(tmp_path):
    repo = make_repo(tmp_path / "project", {"a.py": "x = 1\n"})
    (repo / "a.py").write_text("x = 2\n")
    proc = bolt("run", "--base", "main", cwd=repo)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "(--base main is HEAD): nothing to compare; pass a --base that is not the head (e.g. --base HEAD~1)" \
        in proc.stderr
    assert "uncommitted changes (a.py) are never measured" in proc.stderr


def test_both_sides_given_as_one_commit_is_a_deliberate_a_a_run_and_says_so(tmp_path):
    repo = make_repo(tmp_path / "project", {"a.py": "x = 1\n"})
    proc = bolt("run", "--base", "main", "--head", "main", "--install", "false", "--out", str(tmp_path / "out"),
                cwd=repo)
    sha = git(repo, "rev-parse", "--short=7", "HEAD")
    assert proc.stderr.splitlines()[0] == (f"bolt: warning: base and head are the same commit {sha} (--base main, "
                                           "--head main): an A/A run, so any difference it finds is noise")
    assert "install command for base (false) failed" in proc.stderr  # it went on to measure


# ---------------------------------------------------------------- dirty working tree


def test_uncommitted_changes_are_named_before_anything_is_measured(tmp_path):
    repo, _, _ = projects.pipeline_repo(tmp_path / "project", WORK, dict(WORK, parse=30000))
    (repo / "minipipe.py").write_text((repo / "minipipe.py").read_text() + "\n# an edit not committed\n")
    (repo / "bench" / "test_new.py").write_text("def test_new(benchmark):\n    benchmark(sum, [1])\n")
    (repo / "notes.txt").write_text("untracked, outside the benchmarks: not named\n")
    # The install command fails at once: the warning must already be out by then.
    proc = bolt("run", "--base", "HEAD~1", "--install", "false", "--out", str(tmp_path / "out"), cwd=repo)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == ("bolt: warning: uncommitted changes are not measured: bench/test_new.py, minipipe.py "
                        "(Bolt measures commits: commit them to include them)"), proc.stderr
    assert "notes.txt" not in proc.stderr and "install command for base (false) failed" in lines[-1]


def test_a_head_other_than_the_checked_out_commit_is_not_warned_about(tmp_path):
    repo, base, head = projects.pipeline_repo(tmp_path / "project", WORK, dict(WORK, parse=30000))
    git(repo, "checkout", "--quiet", base)
    (repo / "minipipe.py").write_text("# edited on the base checkout\n")
    proc = bolt("run", "--base", base, "--head", head, "--install", "false", "--out", str(tmp_path / "out"), cwd=repo)
    assert proc.returncode == 2 and "uncommitted" not in proc.stderr, proc.stderr


def test_many_uncommitted_files_are_capped(tmp_path):
    repo = make_repo(tmp_path / "project", {f"m{i}.py": "x = 1\n" for i in range(8)})
    commit(repo, {"m0.py": "x = 2\n"}, "head")
    for i in range(8):
        (repo / f"m{i}.py").write_text("x = 3\n")
    plan = make_plan(repo, "HEAD~1", None)
    assert plan.notices == ["uncommitted changes are not measured: m0.py, m1.py, m2.py, m3.py, m4.py and 3 more "
                            "(Bolt measures commits: commit them to include them)"]


@pytest.mark.slow
def test_the_comment_says_which_uncommitted_changes_were_not_measured(tmp_path):
    repo, _, _ = projects.pipeline_repo(tmp_path / "project", WORK, dict(WORK, parse=30000))
    (repo / "minipipe.py").write_text((repo / "minipipe.py").read_text() + "\n# not committed\n")
    out = tmp_path / "out"
    proc = bolt("run", "--base", "HEAD~1", "--out", str(out), *QUICK, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "bolt: warning: uncommitted changes are not measured: minipipe.py" in proc.stderr
    notices = json.loads((out / "results.json").read_text())["notices"]
    assert any(n.startswith("uncommitted changes are not measured: minipipe.py") for n in notices), notices
    assert "uncommitted changes are not measured: minipipe.py" in (out / "comment.md").read_text()


# ---------------------------------------------------------------- progress labels


def test_extra_and_confirmation_rounds_are_labelled_as_such(tmp_path):
    """Two planned rounds, then extra rounds while `a` is unclear, then confirmation rounds once it is flagged."""
    def round_fn(python, checkout, targets, workdir, *, label, **kw):
        time.sleep(0.05)  # extra rounds may take half the planned rounds' time: give them some
        names = targets or ["t::a", "t::b"]
        return RoundResult(records=[BenchmarkRound(name=n, median=0.01, min=0.01) for n in names], seconds=0.05)

    def judge(base, head):
        verdict = INCONCLUSIVE if len(base.rounds) < 3 else REGRESSED
        return [StageComparison(name="t::a", verdict=verdict, ratio=1.2),
                StageComparison(name="t::b", verdict=UNCHANGED, ratio=1.0)]

    stream = io.StringIO()
    setups = {side: SideSetup(python=Path(side), checkout=tmp_path) for side in ("base", "head")}
    run = measure_walltime(setups, WalltimePlan(rounds=2, budget=60), tmp_path, Progress(stream=stream),
                           round_fn=round_fn, judge=judge)
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("bolt: ")]
    assert run.extra_pairs == 1 and run.confirm_pairs == 3, stream.getvalue()
    assert lines[:4] == ["bolt: round 1/2 base: 2 stages in 0.1 s", "bolt: round 1/2 head: 2 stages in 0.1 s",
                         "bolt: round 2/2 head: 2 stages in 0.1 s", "bolt: round 2/2 base: 2 stages in 0.1 s"]
    assert lines[4].startswith("bolt: 1 stage unclear after 2 rounds: extra rounds of it, at most 10 within ")
    assert lines[5:7] == ["bolt: extra round 1 (1 unclear stage) base: 1 stage in 0.1 s",
                          "bolt: extra round 1 (1 unclear stage) head: 1 stage in 0.1 s"]
    assert lines[7] == ("bolt: 1 stage flagged as slower: 3 confirmation rounds (up to 6) measure it again before "
                        "a regression is reported")
    assert lines[8] == "bolt: confirmation round 1 (1 flagged stage) head: 1 stage in 0.1 s"
    assert lines[-1] == "bolt: confirmation round 3 (1 flagged stage) base: 1 stage in 0.1 s"
    assert not [line for line in lines if line.startswith("bolt: round 3")]


# ---------------------------------------------------------------- one-line usage errors


@pytest.mark.parametrize("argv, line", [
    (["run", "--xyz"], "bolt: error: no such option '--xyz' (see bolt run --help)"),
    (["compare"], "bolt: error: missing option '--base' (see bolt compare --help)"),
    (["compare", "--base"], "bolt: error: option '--base' requires an argument (see bolt compare --help)"),
    (["run", "--rounds", "x"], "bolt: error: invalid value for '--rounds': 'x' is not a valid integer "
                               "(see bolt run --help)"),
    (["merge"], "bolt: error: missing argument 'DIRS...' (see bolt merge --help)"),
    (["nosuch"], "bolt: error: no such command 'nosuch' (see bolt --help)"),
    (["--nope"], "bolt: error: no such option '--nope' (see bolt --help)"),
])
def test_usage_errors_are_one_line_with_exit_code_2(argv, line):
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    assert result.stderr == line + "\n" and result.stdout == ""


def test_a_close_option_name_is_suggested_on_the_same_line():
    result = CliRunner().invoke(main, ["run", "--nope"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "no such option '--nope'; did you mean '--no-profile'? (see bolt run --help)" in result.stderr


def test_help_and_bare_bolt_still_show_the_help():
    helped = CliRunner().invoke(main, ["run", "--help"])
    assert helped.exit_code == 0 and helped.stdout.startswith("Usage: bolt run [OPTIONS]")
    assert "Base and head must be different commits (exit 2 when they are one)" in helped.stdout
    bare = CliRunner().invoke(main, [])
    assert "Usage: bolt [OPTIONS] COMMAND [ARGS]..." in bare.output and "Commands:" in bare.output


# ---------------------------------------------------------------- missing token at the command line


def test_publish_without_a_token_names_the_variable_and_the_flag(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    results = build_results([StageComparison(name="t::a", verdict=UNCHANGED, ratio=1.0)], settings={})
    results.write(folder / "results.json")
    env = {"GITHUB_TOKEN": "", "GITHUB_REPOSITORY": "o/r"}
    result = CliRunner().invoke(main, ["publish", str(folder), "--pr", "1"], env=env)
    assert result.exit_code == 3
    assert result.stderr == ("bolt: error: no GitHub token: set GITHUB_TOKEN, or pass --token-env NAME of the "
                             "variable that holds one\n")
    other = CliRunner().invoke(main, ["publish", str(folder), "--pr", "1", "--token-env", "MY_TOKEN"],
                               env={**env, "MY_TOKEN": ""})
    assert other.exit_code == 3 and "MY_TOKEN (named by --token-env) is not set or empty" in other.stderr
    assert "github-token input" not in result.stderr + other.stderr


# ---------------------------------------------------------------- plurals and units


def test_one_round_and_one_stage_are_singular():
    result = CliRunner().invoke(main, ["compare", "--base", str(IDNA / "base-1.json"), "--head", str(IDNA / "head-1.json"),
                                       "--format", "markdown"])
    assert "wall time: 1 round per side;" in result.stdout and "1 rounds" not in result.stdout
    one = build_results([StageComparison(name="t::a", verdict=UNCHANGED, ratio=1.0),
                         StageComparison(name="t::b", verdict=REGRESSED, ratio=1.5)],
                        settings=Settings().to_dict(), environment={"rounds": 1, "plan": "interleaved"})
    for text in (render_comment(one), render_summary(one)):
        assert "<summary>1 unchanged stage</summary>" in text and "1 interleaved round per side" in text
    paired = build_results([], settings=Settings().to_dict(), environment={"paired": {"pairs": 1}, "rounds": 1})
    assert "paired on one CPU, 1 process pair, and 1 interleaved round per side" in render_comment(paired)


def test_instruction_counts_keep_the_same_number_of_digits():
    assert [format_amount(v, "instr") for v in (12e6, 31.7e6, 1234, 345.4)] == \
        ["12.00 M instr", "31.70 M instr", "1.234 k instr", "345 instr"]
