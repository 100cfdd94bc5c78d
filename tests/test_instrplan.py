"""Instruction-count verdicts, merging the runs into stages, and the per-stage choice of `--measure auto` (no valgrind needed)."""

from __future__ import annotations

import json
import threading

from pathlib import Path

import pytest

from bolt_bot.measure import plan as instrplan
from bolt_bot.measure import routing, sandbox
from bolt_bot.errors import BoltError
from bolt_bot.measure.counts import InstructionRun, codspeed_requirement
from bolt_bot.decide.compare import build_results
from bolt_bot.model import BenchmarkRound, Results
from bolt_bot.report.render import render_comment
from bolt_bot.measure.rounds import RoundResult
from bolt_bot.settings import Settings
from bolt_bot.decide.stats import decide_counts, estimate_counts
from bolt_bot.measure.walltime import SideSetup, WalltimeRun
from bolt_bot.measure.sides import SideRounds
from bolt_bot.decide import walltime as wall_verdicts
from bolt_bot.decide.counts import counts_to_stages
from bolt_bot.decide.measured import judge_measured

T, W = 0.01, 0.005


@pytest.mark.parametrize("head, repeat, verdict, note", [
    (1_000_000, 0.0, "unchanged", None),
    (1_004_000, 0.0, "unchanged", None),  # +0.4 %: below the warning band
    (1_007_000, 0.0, "unchanged", "warning: +0.7 % (within the 0.5-1 % band)"),
    (993_000, 0.0, "unchanged", "warning: -0.7 % (within the 0.5-1 % band)"),
    (1_010_000, 0.0, "regressed", None),
    (1_026_000, 0.001, "regressed", None),
    (985_000, 0.0, "improved", None),
    (1_026_000, 0.006, "regressed", None),  # the passes differ, but the whole interval is beyond the floor
    (1_012_000, 0.006, "inconclusive", "did not repeat"),  # +1.2 %, the interval reaches +0.6 %
    (1_000_000, -0.02, "inconclusive", "did not repeat"),
    (1_026_000, None, "inconclusive", "repeat run could not measure"),
])
def test_decide_counts_bands(head, repeat, verdict, note):
    passes = [head] if repeat is None else [head, round(head * (1 + repeat))]
    got, why = decide_counts(estimate_counts([1_000_000], passes), T, W, repeated=repeat is not None)
    assert got == verdict
    if note is None:
        assert why is None
    else:
        assert note in why


def test_decide_counts_no_counts_is_inconclusive():
    assert estimate_counts([0], [5, 5]) is None
    assert decide_counts(None, T, W)[0] == "inconclusive"


def test_counts_are_exact_only_when_they_repeated_else_the_passes_spread_is_the_interval():
    assert estimate_counts([95_000_000], [97_000_000, 97_000_000]).ci == (97 / 95, 97 / 95)
    # The head seen in the field: two passes 0.29 % apart. Base, counted once, is given the same spread.
    seen = estimate_counts([96_000_000], [96_955_349, 97_237_167])
    assert not seen.exact and seen.spread == pytest.approx(0.0029067, rel=1e-4)
    assert seen.ci[0] == pytest.approx(96_955_349 / (96_000_000 * 1.0029067))
    assert seen.ci[1] == pytest.approx(97_237_167 * 1.0029067 / 96_000_000)
    assert seen.ci[0] < seen.ratio < seen.ci[1]
    # +1.14 % whose interval reaches +0.7 %: not a regression at a 1 % floor.
    assert decide_counts(seen, T, W)[0] == "inconclusive"


def run(counts, failed=None):
    return InstructionRun(counts=dict(counts), failed=dict(failed or {}), log_excerpt="")


def test_counts_to_stages_merges_sides_failures_and_repeat():
    runs = {
        "base": run({"a": 1000, "b": 1000, "c": 1000, "gone": 50}, {"crash": "the process crashed (SIGSEGV)"}),
        "head": run({"a": 1030, "b": 1007, "c": 1000, "new": 70, "crash": 900}),
        instrplan.REPEAT: run({"a": 1030, "b": 1007, "c": 1020, "new": 70, "crash": 900}),
    }
    stages = {s.name: s for s in counts_to_stages(runs, {}, T, W)}
    assert {n: s.verdict for n, s in stages.items()} == {
        "a": "regressed", "b": "unchanged", "c": "inconclusive", "crash": "failed", "gone": "removed", "new": "added"}
    a = stages["a"]
    assert a.measure == "instructions" and a.ratio == pytest.approx(1.03) and a.ci == [a.ratio, a.ratio] and a.p is None
    assert a.base.unit == a.head.unit == "instr" and a.base.center == a.base.median == 1000
    assert a.head.values == [1030.0, 1030.0] and a.head.rounds == 2
    assert "warning: +0.7 %" in stages["b"].note
    assert "did not repeat" in stages["c"].note
    assert stages["crash"].note == "failed on base: the process crashed (SIGSEGV)"


def test_a_side_that_cannot_run_fails_its_stages():
    runs = {"base": run({"a": 10, "b": 20})}
    stages = counts_to_stages(runs, {"head": "collection error in tests/x.py: boom"}, T, W)
    assert {s.verdict for s in stages} == {"failed"}
    assert all("boom" in s.note for s in stages)


def test_measure_counts_runs_base_head_then_head_again_with_equal_length_workdirs(tmp_path):
    calls = []
    base_started = threading.Event()  # base and head are counted side by side: number the passes base first

    def fake(python, checkout, args, *, env, timeout, workdir):
        if Path(checkout).name == "head":
            base_started.wait(5)
        calls.append((Path(checkout).name, Path(workdir).name, list(args)))
        number = len(calls)
        if Path(checkout).name == "base":
            base_started.set()
        (workdir / "callgrind").mkdir(parents=True)
        dump = workdir / "callgrind" / "callgrind.out.1.1"
        dump.write_text(f"pass {number}")
        result = run({"t::a": 100, "t::b": 200} if Path(checkout).name == "base" else {"t::a": 103, "t::b": 200})
        result.dumps = {"t::a": dump}
        return result

    setups = {side: SideSetup(Path("py"), Path(side), {}) for side in ("base", "head")}
    plan = instrplan.CountPlan(pytest_args=["t::a", "t::b"])
    result = instrplan.measure_counts(setups, plan, tmp_path, counts_fn=fake)
    # The repeat runs in the same workdir as head's first pass; both passes' files are kept.
    assert [(c, w) for c, w, _ in calls] == [("base", "base"), ("head", "head"), ("head", "head")]
    assert "stages" not in vars(result)  # measuring returns counts; the verdicts are decide/counts.py's
    assert {s.name: s.verdict for s in counts_to_stages(result.runs, result.errors, T, W)} == {"t::a": "regressed", "t::b": "unchanged"}
    assert result.runs["head"].dumps["t::a"].read_text() == "pass 2"
    assert result.runs[instrplan.REPEAT].dumps["t::a"].read_text() == "pass 3"
    assert result.runs["base"].dumps["t::a"].read_text() == "pass 1"


def test_measure_counts_both_sides_broken_raises(tmp_path):
    def fake(*a, **k):
        raise BoltError("pytest-codspeed is not installed")

    setups = {side: SideSetup(Path("py"), Path(side), {}) for side in ("base", "head")}
    with pytest.raises(BoltError, match="both sides"):
        instrplan.measure_counts(setups, instrplan.CountPlan(), tmp_path, counts_fn=fake)


# --- auto: discovery, split, merging ------------------------------------------------------------

def record(name, median, minimum=None):
    return BenchmarkRound(name=name, median=median, min=median if minimum is None else minimum)


class FakeRounds:
    """Wall-time discovery rounds give `wall` (seconds per call); the plugin's call evidence comes from `evidence`
    (per stage, or per side then stage; a plain single-threaded computation where not given)."""

    def __init__(self, wall, evidence=None, failed=None, missing=None):
        self.wall, self.evidence, self.failed, self.calls = wall, evidence or {}, failed or {}, []
        self.missing = missing or {}  # side → stages that side does not have

    def __call__(self, python, checkout, targets, workdir, *, label, pytest_args, env, timeout, **_):
        side = Path(checkout).name
        self.calls.append((side, label, list(targets), "CODSPEED_ENV" in sandbox.measured(env)))  # what the process gets
        names = [n for n in targets or list(self.wall) if n not in self.missing.get(side, ())]
        with open(env[routing.EVIDENCE_VARIABLE], "a", encoding="utf-8") as out:
            for name in names:
                seen = self.evidence.get(name, {})
                if set(seen) & {"base", "head"}:
                    seen = seen.get(side, {})
                out.write(json.dumps({"event": "call", "nodeid": name, **PLAIN, **seen}) + "\n")
        return RoundResult(records=[record(n, self.wall[n]) for n in names if n in self.wall], failed=dict(self.failed))


# A single-threaded computation as the plugin sees it: CPU all on the benchmark's thread, never blocked.
PLAIN = {"wall": 0.02, "cpu": 0.02, "thread_cpu": 0.02, "voluntary": 0, "involuntary": 3, "calls": 20000}
SLEEPS = {"wall": 0.02, "cpu": 0.0004, "thread_cpu": 0.0004, "voluntary": 9, "involuntary": 0, "calls": 7}
THREADS = {"wall": 0.06, "cpu": 0.057, "thread_cpu": 0.0013, "voluntary": 42, "calls": 1, "threads_after": 5}
SETUPS = {side: SideSetup(Path("py"), Path(side), {"CODSPEED_ENV": "x"}) for side in ("base", "head")}


def test_discover_routes_by_blocking_and_other_threads_not_by_a_cpu_wall_ratio(tmp_path):
    # The misroutes seen on this VM: CPU 190 % and 502 % of wall time on single-threaded sub-µs stages,
    # 10 % on a computation. None of them blocked or used another thread: all are counted.
    evidence = {"t::contains": {"wall": 0.02, "cpu": 0.1, "thread_cpu": 0.1, "calls": 300000},
                "t::busy_vm": {"wall": 0.02, "cpu": 0.002, "thread_cpu": 0.002, "involuntary": 40, "calls": 900},
                "t::sleepy": SLEEPS, "t::threads": THREADS, "t::one_block": {"voluntary": 1, "calls": 5000},
                "t::sleeps_on_head": {"head": SLEEPS}}
    wall = {"t::contains": 2.45e-7, "t::busy_vm": 2e-5, "t::sleepy": 0.002, "t::threads": 0.02, "t::one_block": 1e-5,
            "t::sleeps_on_head": 0.002}
    split = instrplan.discover(Settings(), SETUPS, tmp_path, instrplan.Progress(quiet=True), FakeRounds(wall, evidence))
    assert split.counted == ["t::busy_vm", "t::contains", "t::one_block"]
    assert split.timed == ["t::sleeps_on_head", "t::sleepy", "t::threads"]
    assert "blocked 1.3 times per call" in split.reasons["t::sleepy"] and "(seen on head)" in split.reasons["t::sleepy"]
    assert "several threads (98 % of its CPU time" in split.reasons["t::threads"] and "5 threads" in split.reasons["t::threads"]
    assert split.seconds["base"]["t::contains"] == 2.45e-7


def test_discover_splits_by_call_time_pattern_evidence_and_failures(tmp_path):
    wall = {"t::fast": 0.002, "t::slow": 0.5, "t::io": 0.01, "t::threads": 0.01, "t::net_fetch": 0.001, "t::edge": 0.1}
    rounds = FakeRounds(wall, {"t::io": SLEEPS, "t::threads": THREADS}, failed={"t::broken": "ZeroDivisionError"})
    settings = Settings(walltime_stages=["*net_*"])
    split = instrplan.discover(settings, SETUPS, tmp_path, instrplan.Progress(quiet=True), rounds)
    assert split.counted == ["t::edge", "t::fast"]
    assert set(split.timed) == {"t::slow", "t::io", "t::threads", "t::net_fetch", "t::broken"}
    assert "500 ms" in split.reasons["t::slow"] and "I/O" in split.reasons["t::io"]
    assert "threads" in split.reasons["t::threads"] and "*net_*" in split.reasons["t::net_fetch"]
    # One wall round per side and nothing more; never with CODSPEED_ENV.
    assert [(c, label) for c, label, _, _ in rounds.calls] == [("base", "discovery-wall"), ("head", "discovery-wall")]
    assert not any(has for *_, has in rounds.calls)


def test_discover_keeps_prefix_clashes_apart(tmp_path):
    wall = {"t::io": 0.001, "t::io_fast": 0.001, "t::only_base": 0.001, "t::x[1]": 0.001, "t::x[10]": 0.001}
    rounds = FakeRounds(wall)
    split = instrplan.discover(Settings(walltime_stages=["t::io", "t::x[1]"]), SETUPS, tmp_path,
                               instrplan.Progress(quiet=True), rounds)
    # --deselect t::io would also drop t::io_fast; t::x[1] is no prefix of t::x[10] ("]" ends it).
    assert "start alike" in split.reasons["t::io_fast"]
    assert split.counted == ["t::only_base", "t::x[10]"]


def wall_run(names, **more):
    """A wall-time run whose stages all ran the same on both sides: unchanged."""
    def side():
        return SideRounds(rounds=[[BenchmarkRound(name=n, median=0.01, mean=0.01, min=0.01, max=0.01, samples=5)
                                   for n in names] for _ in range(4)])
    return WalltimeRun(sides={"base": side(), "head": side()}, rounds={}, **more)


def measure(*args, **kwargs):
    """`bolt run`'s measure step and its verdicts, as pipeline.py chains them."""
    return judge_measured(instrplan.measure(*args, judge=wall_verdicts.judge, **kwargs))


def test_auto_measures_each_stage_its_way_and_merges(tmp_path):
    rounds = FakeRounds({"t::fast": 0.002, "t::slow": 0.5})
    seen = {}

    def counts_fn(python, checkout, args, *, env, timeout, workdir):
        seen.setdefault("counts", []).append(list(args))
        return run({"t::fast": 1000})

    def walltime_fn(setups, plan, workdir, progress, judge):
        seen["targets"], seen["wall_args"] = plan.targets, plan.pytest_args
        seen["wall_env"] = [s.env for s in setups.values()]
        return wall_run(["t::slow"], extra_pairs=1)

    measured = measure(Settings(walltime_engine="rounds", memory="off"), SETUPS, tmp_path, round_fn=rounds, walltime_fn=walltime_fn,
                                 counts_fn=counts_fn, valgrind=lambda: "/usr/bin/valgrind")
    assert measured.measure == "mixed"
    assert [(s.name, s.measure) for s in measured.stages] == [("t::fast", "instructions"), ("t::slow", "walltime")]
    # Each group is the whole suite minus the other group: node ids missing on one side are never named.
    assert seen["targets"] == [] and seen["wall_args"] == ["--deselect", "t::fast"]
    assert all(a == ["--deselect", "t::slow"] for a in seen["counts"])
    assert all("CODSPEED_ENV" not in sandbox.measured(env) for env in seen["wall_env"])
    assert measured.environment["discovery"]["walltime"] == 1 and measured.environment["extra_rounds"] == 1
    assert measured.environment["instructions"]["repeated_identically"] == 1
    assert measured.notices == []


def test_no_valgrind_falls_back_to_wall_time_with_a_notice(tmp_path):
    def walltime_fn(setups, plan, workdir, progress, judge):
        return wall_run(["t::a"])

    for mode in ("auto", "instructions"):
        measured = measure(Settings(measure=mode, walltime_engine="rounds", memory="off"), SETUPS, tmp_path, walltime_fn=walltime_fn,
                                     valgrind=lambda: None)
        assert measured.measure == "walltime" and len(measured.notices) == 1 and "valgrind" in measured.notices[0]


def test_requirements_add_codspeed_only_when_counts_may_be_used(monkeypatch):
    assert codspeed_requirement() in instrplan.requirements(Settings(measure="instructions"))
    assert codspeed_requirement() not in instrplan.requirements(Settings(measure="walltime"))
    monkeypatch.setattr(instrplan, "valgrind_available", lambda: None)
    assert codspeed_requirement() not in instrplan.requirements(Settings(measure="auto"))


def test_walltime_stages_setting_reads_patterns():
    assert Settings().updated({"walltime-stages": "*io* tests/net.py::*"}, "x").walltime_stages == ["*io*", "tests/net.py::*"]


def test_comment_shows_counts_and_the_warning_band_stage(tmp_path):
    runs = {"base": run({"t::reg": 12_300_000, "t::warn": 1_000_000, "t::same": 5_000}),
            "head": run({"t::reg": 12_620_000, "t::warn": 1_007_000, "t::same": 5_000})}
    runs[instrplan.REPEAT] = runs["head"]
    stages = counts_to_stages(runs, {}, T, W)
    results = Results(stages=stages, verdict="regressed", measure="instructions",
                      settings=Settings().to_dict(), environment={})
    text = render_comment(results)
    assert "| 12.3 M instr | 12.62 M instr | **+2.6 %** | exact count |" in text
    others = text.split("in the warning band</summary>")[1].split("</details>")[0]
    assert "t::warn" in others and "warning: +0.7 % (within the 0.5-1 % band)" in others and "🟡" in others
    unchanged = text.split("unchanged stage</summary>")[1]
    assert "t::same" in unchanged and "t::warn" not in unchanged
    assert "floor 1.0 % (instruction counts), warning band from 0.5 %" in text


def test_comment_says_why_each_stage_left_counts(tmp_path):
    rounds = FakeRounds({"t::fast": 0.002, "t::slow": 0.5, "t::sleepy": 0.002, "t::pool": 0.01},
                        {"t::sleepy": SLEEPS, "t::pool": THREADS})

    def walltime_fn(setups, plan, workdir, progress, judge):
        return wall_run(["t::pool", "t::sleepy", "t::slow"])

    measured = measure(Settings(walltime_engine="rounds", memory="off"), SETUPS, tmp_path, round_fn=rounds, walltime_fn=walltime_fn,
                                 counts_fn=lambda *a, **k: run({"t::fast": 1000}), valgrind=lambda: "valgrind")
    results = Results(stages=measured.stages, verdict="unchanged", measure=measured.measure,
                      settings=Settings().to_dict(), environment=measured.environment)
    text = render_comment(results)
    assert "3 stages measured by wall time instead of instruction counts</summary>" in text
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| t::")
            and "Why" not in line and " | " in line and line.count("|") == 3}
    assert "one call takes 500 ms" in rows["t::slow"]
    assert "blocked 1.3 times per call" in rows["t::sleepy"] and "several threads" in rows["t::pool"]
    assert "t::fast" not in rows


def test_a_head_whose_passes_differ_is_shown_with_their_interval_not_as_exact():
    runs = {"base": run({"t::big": 95_000_000}), "head": run({"t::big": 96_955_349}),
            instrplan.REPEAT: run({"t::big": 97_237_167})}
    (big,) = counts_to_stages(runs, {}, T, W)
    assert big.verdict == "regressed" and big.head.values == [96_955_349.0, 97_237_167.0]
    assert big.head.min == 96_955_349 and big.head.max == 97_237_167 and big.head.center == 97_096_258
    assert "passes of one side differed by 0.29 %" in big.note  # no wall time to look at: said so
    text = render_comment(Results(stages=[big], verdict="regressed", measure="instructions",
                                  settings=Settings().to_dict(), environment={}))
    row = next(line for line in text.splitlines() if "t::big" in line)
    assert "exact count" not in row and "[+1.8, +2.7] %" in row


def discovered(base, head):
    return {"base": base, "head": head}


def test_a_count_change_in_a_stage_whose_counts_wander_needs_wall_time_behind_it():
    base = {"t::tiny": 8_000, "t::tiny_big_change": 8_000, "t::wanders": 2_000_000, "t::wanders_slower": 2_000_000,
            "t::plain": 2_000_000}
    head = {"t::tiny": 8_184, "t::tiny_big_change": 11_200, "t::wanders": 2_060_000, "t::wanders_slower": 2_060_000,
            "t::plain": 2_060_000}
    again = dict(head, **{"t::wanders": 2_070_000, "t::wanders_slower": 2_070_000, "t::plain": 2_060_100})
    walls = discovered({"t::tiny": 4.1e-6, "t::tiny_big_change": 4.1e-6, "t::wanders": 1e-3, "t::wanders_slower": 1e-3,
                        "t::plain": 1e-3},
                       {"t::tiny": 4.1e-6, "t::tiny_big_change": 5.6e-6, "t::wanders": 1.01e-3,
                        "t::wanders_slower": 1.2e-3, "t::plain": 1e-3})
    runs = {"base": run(base), "head": run(head), instrplan.REPEAT: run(again)}
    stages = {s.name: s for s in counts_to_stages(runs, {}, T, W, walls)}
    # +2.3 % on a 4 µs single-shot call whose wall time did not move: not a regression, and it says why.
    assert stages["t::tiny"].verdict == "inconclusive"
    assert stages["t::tiny"].note == ("+2.3 % in instructions, but a call of 4.1 µs is tiny enough for its counts to "
                                      "wander and the wall time did not confirm it (discovery timed 4.1 µs → 4.1 µs "
                                      "(+0.0 %); one round per side shows only moves beyond ±10 %)")
    # +40 % with wall time +37 %: confirmed.
    assert stages["t::tiny_big_change"].verdict == "regressed"
    assert "confirmed by wall time" in stages["t::tiny_big_change"].note
    # Head's passes differed: the change is checked the same way.
    assert stages["t::wanders"].verdict == "inconclusive" and "differed by 0.49 %" in stages["t::wanders"].note
    assert stages["t::wanders_slower"].verdict == "regressed"
    # Passes 0.005 % apart under a +3 % change, in a stage that is not tiny: no look needed.
    assert stages["t::plain"].verdict == "regressed" and stages["t::plain"].note is None


def test_a_tiny_count_change_does_not_head_the_comment_of_a_pr_that_made_other_stages_faster(tmp_path):
    wall = {"t::tiny": 4.1e-6, "t::load": 0.004}
    rounds = FakeRounds(wall)
    passes = {"base": {"t::tiny": 8_000, "t::load": 14_000_000}, "head": {"t::tiny": 8_184, "t::load": 10_000_000}}

    def counts_fn(python, checkout, args, *, env, timeout, workdir):
        return run(passes[Path(checkout).name])

    measured = measure(Settings(memory="off"), SETUPS, tmp_path, round_fn=rounds, counts_fn=counts_fn,
                                 valgrind=lambda: "valgrind")
    results = build_results(measured.stages, measure=measured.measure, settings=Settings().to_dict(),
                            environment=measured.environment)
    assert {s.name: s.verdict for s in results.stages} == {"t::load": "improved", "t::tiny": "inconclusive"}
    assert results.verdict == "improved"
    text = render_comment(results)
    assert text.index("t::load") < text.index("t::tiny") and "did not confirm it" in text
