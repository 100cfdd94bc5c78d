"""The wall-time engine setting and the paired engine inside `bolt run`: which engine times which stage, the
rounds fallback for stages too long for blocks, and the wall-time size beside a counted change."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bolt_bot import pipeline
from bolt_bot.cli import main
from bolt_bot.decide import walltime as wall_verdicts
from bolt_bot.decide.measured import judge_measured
from bolt_bot.errors import BoltError
from bolt_bot.measure import plan as measuring
from bolt_bot.measure import timing
from bolt_bot.measure.counts import InstructionRun
from bolt_bot.measure.rounds import RoundResult
from bolt_bot.model import INSTRUCTIONS, REGRESSED, BenchmarkRound, CommitRef, Results, StageComparison, WallSize
from bolt_bot.report.render import render_comment
from bolt_bot.settings import Settings, settings_from_pyproject
from tests.container import load_action
from tests.test_instrplan import SETUPS, wall_run
from tests.test_paired_decide import run_of
from tests.test_reliability import _fake_env, _tiny_repo


def _never(*args, **kw):
    raise AssertionError("the paired engine must not run")


def test_the_setting_is_read_from_flags_tool_bolt_and_action_inputs(tmp_path, monkeypatch):
    assert Settings().walltime_engine == "rounds"  # benchmarks/README.md: rounds won the detection run
    pyproject = '[tool.bolt]\nwalltime-engine = "paired"\n'
    assert settings_from_pyproject(pyproject, "base:pyproject.toml").walltime_engine == "paired"
    with pytest.raises(BoltError, match=r"walltime-engine must be one of paired, rounds, not 'fast'"):
        settings_from_pyproject('[tool.bolt]\nwalltime-engine = "fast"\n', "base:pyproject.toml")
    assert Settings().updated({"walltime-engine": "paired"}, "inputs").walltime_engine == "paired"
    assert "walltime-engine" in load_action()["inputs"]
    repo, sha = _tiny_repo(tmp_path)
    plans = []
    monkeypatch.setattr(pipeline, "execute", lambda plan, out, progress=None, **_: plans.append(plan) or Results([], "unchanged"))
    args = ["run", "--quiet", "--repo", str(repo), "--base", sha, "--head", sha, "--out", str(tmp_path / "out")]
    CliRunner().invoke(main, [*args, "--walltime-engine", "paired"])
    assert [p.settings.walltime_engine for p in plans] == ["paired"]
    result = CliRunner().invoke(main, [*args, "--walltime-engine", "fast"])
    assert result.exit_code == 2 and "'fast' is not one of 'paired', 'rounds'" in result.output
    assert len(plans) == 1


def test_rounds_engine_reaches_the_old_engine_through_the_cli(tmp_path, monkeypatch):
    """A real `bolt run` (the test's own interpreter as both environments): whole rounds, no paired pass."""
    repo, sha = _tiny_repo(tmp_path)
    _fake_env(monkeypatch)
    monkeypatch.setattr(measuring, "measure_paired", _never)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--quiet", "--repo", str(repo), "--base", sha, "--head", sha,
                                       "--measure", "walltime", "--walltime-engine", "rounds", "--rounds", "2",
                                       "--budget", "0", "--no-profile", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["environment"]["walltime_engine"] == "rounds" and results["environment"]["rounds"] == 2
    assert [s["name"] for s in results["stages"]] == ["bench/test_b.py::test_b"]
    assert len(list((out / "rounds" / "base").glob("round-*.json"))) == 2 and not (out / "paired").exists()
    assert "2 interleaved rounds per side" in (out / "comment.md").read_text()


def test_the_paired_engine_times_every_stage_and_rounds_only_those_too_long_for_blocks(tmp_path):
    seen = {}

    def paired_fn(setups, plan, workdir, progress, only=None):
        seen["paired"] = (plan.targets, plan.pytest_args, plan.memory_mb, only)
        run = run_of({"t::a": [1.06] * 6, "t::b": [1.0] * 6}, too_long={"t::long": "one call takes 180 ms"},
                     only={"head": ["t::new"]}, failed={"base": {"t::fixed": "boom"}})
        run.notices.append("ASLR stayed on")
        return run

    def rounds_fn(setups, plan, workdir, progress, judge):
        seen["rounds"] = plan.pytest_args
        return wall_run(["t::long"])

    settings = Settings(measure="walltime", walltime_engine="paired", pytest_args=["-k", "x"], round_memory_mb=512, memory="off")
    measured = measuring.measure(settings, SETUPS, tmp_path, judge=wall_verdicts.judge, walltime_fn=rounds_fn,
                                 paired_fn=paired_fn, round_fn=lambda *a, **k: RoundResult(), valgrind=lambda: None)
    assert seen["paired"] == ([], ["-k", "x"], 512, None)
    # The rounds pass is told which stages to leave out, never which to run.
    assert seen["rounds"] == ["-k", "x", *[a for n in ("t::a", "t::b", "t::fixed", "t::new") for a in ("--deselect", n)]]
    judged = judge_measured(measured)
    stages = {s.name: s for s in judged.stages}
    assert {n: s.verdict for n, s in stages.items()} == {"t::a": "regressed", "t::b": "unchanged", "t::fixed": "failed",
                                                         "t::long": "unchanged", "t::new": "added"}
    assert stages["t::a"].extra_info["engine"] == "paired"
    assert stages["t::long"].note == "timed by whole rounds, not paired blocks: one call takes 180 ms"
    assert any("1 stage was timed by whole rounds instead of paired blocks" in n and "t::long (one call takes 180 ms)"
               in n for n in judged.notices), judged.notices
    assert "ASLR stayed on" in judged.notices
    env = judged.environment
    assert env["walltime_engine"] == "paired" and env["paired"]["too_long"] == {"t::long": "one call takes 180 ms"}
    results = Results(stages=judged.stages, verdict="regressed", measure=judged.measure, settings=settings.to_dict(),
                      environment=env, notices=judged.notices)
    text = render_comment(results)
    assert "base and head paired on one CPU, 6 process pairs, and 10 interleaved rounds per side for the stages too long" in text
    assert "timed by whole rounds instead of paired blocks" in text


def test_stages_only_one_side_has_run_once_there_so_a_broken_new_one_is_failed_not_added(tmp_path):
    calls = []

    def paired_fn(setups, plan, workdir, progress, only=None):
        return run_of({"t::a": [1.0] * 6}, only={"head": ["t::broken", "t::hangs", "t::new"], "base": ["t::gone"]})

    def round_fn(python, checkout, targets, workdir, *, label, pytest_args, env, timeout, memory_mb):
        calls.append((checkout.name, list(targets), label, timeout))
        if checkout.name == "base":
            return RoundResult(records=[BenchmarkRound(name="t::gone", median=0.001)])
        return RoundResult(failed={"t::broken": "ZeroDivisionError: division by zero",
                                   "t::hangs": "timed out after 20 s (stopped)"}, error="timed out after 20 s")

    settings = Settings(measure="walltime", walltime_engine="paired", round_timeout=20, memory="off")
    judged = judge_measured(measuring.measure(settings, SETUPS, tmp_path, judge=wall_verdicts.judge,
                                              walltime_fn=_never, paired_fn=paired_fn, round_fn=round_fn,
                                              valgrind=lambda: None))
    assert calls == [("base", ["t::gone"], "base-only", 20), ("head", ["t::broken", "t::hangs", "t::new"], "head-only", 20)]
    stages = {s.name: s for s in judged.stages}
    assert {n: s.verdict for n, s in stages.items()} == {"t::a": "unchanged", "t::broken": "failed", "t::hangs": "failed",
                                                         "t::new": "added", "t::gone": "removed"}
    assert stages["t::broken"].note == "failed on head: ZeroDivisionError: division by zero"
    assert "timed out" in stages["t::hangs"].note and stages["t::hangs"].head.error


def test_a_paired_engine_that_cannot_start_leaves_every_stage_to_rounds(tmp_path):
    def paired_fn(*args, **kw):
        raise BoltError("the base worker did not start: no pytest")

    measured = measuring.measure(Settings(measure="walltime", walltime_engine="paired", memory="off"), SETUPS, tmp_path, judge=wall_verdicts.judge,
                                 walltime_fn=lambda *a, **k: wall_run(["t::a"]), paired_fn=paired_fn,
                                 valgrind=lambda: None)
    judged = judge_measured(measured)
    assert [s.name for s in judged.stages] == ["t::a"] and judged.environment["walltime_engine"] == "rounds"
    assert any("paired wall-time engine could not run (the base worker did not start" in n for n in judged.notices)


def _counted(base: dict[str, int], head: dict[str, int]):
    runs = {side: InstructionRun(counts=dict(c), failed={}, log_excerpt="")
            for side, c in (("base", base), ("head", head), (measuring.REPEAT, head))}
    return measuring.Measured(counts=measuring.CountRun(runs=runs), count_plan=measuring.CountPlan())


@pytest.mark.parametrize("engine", ["paired", "rounds"])
def test_counted_changes_get_their_paired_wall_time_beside_the_count(tmp_path, monkeypatch, engine):
    repo, sha = _tiny_repo(tmp_path)
    _fake_env(monkeypatch)
    asked = []

    def paired_fn(setups, plan, workdir, progress, only=None):
        asked.append(only)
        return run_of({"t::fast": [0.54] * 6})

    monkeypatch.setattr(pipeline.measuring, "measure", lambda *a, **k: _counted(
        {"t::fast": 12_300_000, "t::same": 5_000_000}, {"t::fast": 9_940_000, "t::same": 5_000_000}))
    monkeypatch.setattr(pipeline, "measure_sizes", lambda *a: timing.measure_sizes(*a, paired_fn=paired_fn))
    plan = pipeline.Plan(repo, CommitRef("main", sha), CommitRef("head", sha), Settings(walltime_engine=engine))
    pipeline.execute(plan, tmp_path / "out")
    results = Results.read(tmp_path / "out" / "results.json")
    fast = {s.name: s for s in results.stages}["t::fast"]
    comment = (tmp_path / "out" / "comment.md").read_text()
    assert asked == [["t::fast"]]  # only the counted stage that moved
    assert fast.measure == INSTRUCTIONS and fast.verdict == "improved"  # the count decides
    assert fast.wall_size.pairs == 6 and fast.wall_size.ci[0] < 0.54 < fast.wall_size.ci[1]
    assert "**-19.2 %** instructions, -46 % [" in comment and "] wall time |" in comment
    assert results.environment["sizes"] == {"engine": "paired", "stages": 1, "seconds": 0.0}


def test_no_wall_sizes_skips_the_paired_size_and_the_count_still_decides(tmp_path, monkeypatch):
    repo, sha = _tiny_repo(tmp_path)
    _fake_env(monkeypatch)
    asked = []
    monkeypatch.setattr(pipeline.measuring, "measure", lambda *a, **k: _counted(
        {"t::fast": 12_300_000, "t::same": 5_000_000}, {"t::fast": 9_940_000, "t::same": 5_000_000}))
    monkeypatch.setattr(pipeline, "measure_sizes", lambda *a: asked.append(a))
    settings = Settings().updated({"wall-sizes": False}, "--no-wall-sizes")
    pipeline.execute(pipeline.Plan(repo, CommitRef("main", sha), CommitRef("head", sha), settings), tmp_path / "out")
    fast = {s.name: s for s in Results.read(tmp_path / "out" / "results.json").stages}["t::fast"]
    assert asked == [] and fast.wall_size is None and fast.verdict == "improved"


def test_wall_size_renders_reads_back_and_old_results_still_read(tmp_path):
    stage = StageComparison("t::x", REGRESSED, measure=INSTRUCTIONS, ratio=0.808, ci=[0.808, 0.808],
                            wall_size=WallSize(ratio=0.54, ci=[0.52, 0.56], pairs=6))
    none = StageComparison("t::y", REGRESSED, measure=INSTRUCTIONS, ratio=1.05, ci=[1.05, 1.05],
                           wall_size=WallSize(pairs=2, note="only 2 usable process pairs"))
    small = StageComparison("t::z", REGRESSED, measure=INSTRUCTIONS, ratio=1.05, ci=[1.05, 1.05],
                            wall_size=WallSize(ratio=1.046, ci=[1.04, 1.051], pairs=6))
    results = Results(stages=[stage, none, small], verdict="regressed", measure=INSTRUCTIONS)
    text = render_comment(results)
    assert "| **-19.2 %** instructions, -46 % [-48, -44] wall time | exact count |" in text
    assert "**+5.0 %** instructions; wall time not measured (only 2 usable process pairs) |" in text
    assert "**+5.0 %** instructions, +4.6 % [+4.0, +5.1] wall time |" in text
    path = tmp_path / "results.json"
    results.write(path)
    assert Results.read(path).stages[0].wall_size == stage.wall_size
    data = json.loads(path.read_text())
    for s in data["stages"]:
        del s["wall_size"]  # written before the field existed
    path.write_text(json.dumps(data))
    assert Results.read(path).stages[0].wall_size is None
    data["stages"][0]["wall_size"] = {"ratio": 0.5, "ci": [0.4]}
    path.write_text(json.dumps(data))
    with pytest.raises(BoltError, match=r"wall_size.ci has 1 numbers"):
        Results.read(path)
