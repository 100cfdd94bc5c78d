"""The statistics on synthetic samples with known answers: false alarms, detection, noise handling."""

from __future__ import annotations

import numpy as np
import pytest

from bolt_bot.decide import stats
from bolt_bot.decide.compare import SideRounds, compare_sides, run_verdict
from bolt_bot.model import (
    ADDED,
    FAILED,
    IMPROVED,
    INCONCLUSIVE,
    REGRESSED,
    REMOVED,
    UNCHANGED,
    BenchmarkRound,
)


def rounds_for(stage_medians: dict[str, list[float]]) -> SideRounds:
    """Turn {stage: [median per round]} into the rounds pytest-benchmark would have produced."""
    n = max(len(v) for v in stage_medians.values())
    side = SideRounds()
    for i in range(n):
        side.rounds.append(
            [
                BenchmarkRound(name=name, median=values[i], mean=values[i], min=values[i], max=values[i], samples=5)
                for name, values in stage_medians.items()
                if i < len(values)
            ]
        )
    return side


def simulate(rng, stages: int, rounds: int, cv: float, shift: dict[int, float] | None = None):
    shift = shift or {}
    base, head = {}, {}
    for s in range(stages):
        mean = 1e-3 * (1 + s)
        base[f"t::s{s}"] = list(mean * np.exp(rng.normal(0, cv, rounds)))
        head[f"t::s{s}"] = list(mean * (1 + shift.get(s, 0.0)) * np.exp(rng.normal(0, cv, rounds)))
    return rounds_for(base), rounds_for(head)


def test_false_alarm_rate_over_many_identical_stages():
    rng = np.random.default_rng(1)
    alarms = prs_with_alarm = total = 0
    for _ in range(200):  # 200 PRs of 10 unchanged stages, 10 rounds each, 3 % noise
        base, head = simulate(rng, 10, 10, 0.03)
        verdicts = [s.verdict for s in compare_sides(base, head, threshold=3.0)]
        n = sum(v in (REGRESSED, IMPROVED) for v in verdicts)
        alarms += n
        prs_with_alarm += n > 0
        total += len(verdicts)
    assert alarms / total <= 0.01
    assert prs_with_alarm / 200 <= 0.05


@pytest.mark.parametrize("size, expected_rate", [(0.05, 0.9), (0.10, 0.99)])
def test_detects_known_shifts(size, expected_rate):
    rng = np.random.default_rng(2)
    found = 0
    for _ in range(100):  # 14 rounds: the 10 planned plus the extra rounds `bolt run` gives unclear stages
        base, head = simulate(rng, 10, 14, 0.02, shift={3: size})
        by_name = {s.name: s for s in compare_sides(base, head, threshold=3.0)}
        found += by_name["t::s3"].verdict == REGRESSED
    assert found / 100 >= expected_rate


def test_improvement_is_the_mirror_of_a_regression():
    rng = np.random.default_rng(3)
    base, head = simulate(rng, 3, 8, 0.01, shift={0: 0.2})
    forward = {s.name: s.verdict for s in compare_sides(base, head, threshold=3.0)}
    backward = {s.name: s.verdict for s in compare_sides(head, base, threshold=3.0)}
    assert forward["t::s0"] == REGRESSED and backward["t::s0"] == IMPROVED
    assert forward["t::s1"] == backward["t::s1"] == UNCHANGED


def test_noise_wider_than_the_floor_is_inconclusive_never_regressed():
    rng = np.random.default_rng(4)
    base, head = simulate(rng, 1, 5, 0.15, shift={0: 0.06})
    stage = compare_sides(base, head, threshold=3.0)[0]
    assert stage.verdict == INCONCLUSIVE
    assert stage.note


def test_small_change_below_the_floor_is_unchanged_even_when_significant():
    base = rounds_for({"t::a": [1.000, 1.001, 0.999, 1.000, 1.000]})
    head = rounds_for({"t::a": [1.010, 1.011, 1.009, 1.010, 1.010]})
    stage = compare_sides(base, head, threshold=3.0)[0]
    assert stage.p < 0.001
    assert stage.verdict == UNCHANGED
    assert stage.ratio == pytest.approx(1.01, rel=1e-3)


def test_interval_contains_the_ratio_and_p_is_sane():
    base = rounds_for({"t::a": [1.0, 1.02, 0.98, 1.01, 0.99]})
    head = rounds_for({"t::a": [1.2, 1.22, 1.18, 1.21, 1.19]})
    stage = compare_sides(base, head, threshold=3.0)[0]
    low, high = stage.ci
    assert low < stage.ratio < high
    assert low > 1.15 and high < 1.25
    assert 0 <= stage.p < 1e-4
    assert stage.verdict == REGRESSED


def test_identical_counts_need_no_noise():
    base = rounds_for({"t::a": [100.0, 100.0], "t::b": [50.0, 50.0]})
    head = rounds_for({"t::a": [110.0, 110.0], "t::b": [50.0, 50.0]})
    by_name = {s.name: s for s in compare_sides(base, head, threshold=1.0)}
    assert by_name["t::a"].verdict == REGRESSED
    assert by_name["t::b"].verdict == UNCHANGED


def _one_round(medians: dict[str, float], samples: int = 50) -> SideRounds:
    return SideRounds([[BenchmarkRound(name=n, median=m, min=m * 0.98, samples=samples, quartiles=(m * 0.99, m * 1.01))
                        for n, m in medians.items()]])


def test_one_round_per_side_is_judged_against_the_single_run_floor_not_the_samples():
    # +20 % with tight samples inside each process: the old within-run fallback called it regressed
    # (the samples of one process are no evidence of between-process noise); now it is inconclusive.
    stage = compare_sides(_one_round({"t::a": 1e-3}), _one_round({"t::a": 1.2e-3}), threshold=3.0)[0]
    assert stage.low_confidence and stage.verdict == INCONCLUSIVE
    assert stage.note.startswith("+20.0 %, but one process per side can move by 25 %") and "`bolt run`" in stage.note
    assert stage.ci is None and stage.p is None
    # Past the floor both ways it is a verdict, said to rest on one round.
    slow = compare_sides(_one_round({"t::a": 1e-3}), _one_round({"t::a": 1.4e-3}), threshold=3.0)[0]
    fast = compare_sides(_one_round({"t::a": 1e-3}), _one_round({"t::a": 0.7e-3}), threshold=3.0)[0]
    assert (slow.verdict, fast.verdict) == (REGRESSED, IMPROVED)
    assert "one round per side" in slow.note
    # A tiny change is inconclusive too, never "unchanged": one round cannot rule a change out.
    assert compare_sides(_one_round({"t::a": 1e-3}), _one_round({"t::a": 1.001e-3}), threshold=3.0)[0].verdict == INCONCLUSIVE


def test_single_run_floor_widens_with_the_noise_the_files_show():
    # Calls spread over a factor 2 inside a process (q3/q1): its median can land anywhere in that range.
    wide = SideRounds([[BenchmarkRound(name="t::a", median=1e-3, min=0.9e-3, samples=50, quartiles=(0.8e-3, 1.6e-3))]])
    assert compare_sides(wide, _one_round({"t::a": 1.6e-3}), threshold=3.0)[0].verdict == INCONCLUSIVE
    # The median far above the fastest call: most calls ran slowed (another process had the CPU).
    slowed = SideRounds([[BenchmarkRound(name="t::a", median=3e-3, min=1e-3, samples=50, quartiles=(2.9e-3, 3.1e-3))]])
    assert compare_sides(_one_round({"t::a": 1e-3}), slowed, threshold=3.0)[0].verdict == INCONCLUSIVE
    # Stages that scatter widely in this pair of processes widen every stage's floor.
    scattered = {f"t::{i}": 1e-3 * f for i, f in enumerate([0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.6])}
    base = _one_round({n: 1e-3 for n in scattered})
    assert {s.verdict for s in compare_sides(base, _one_round(scattered), threshold=3.0)} == {INCONCLUSIVE}
    # A stage timed once per process (pedantic(rounds=1)) is never judged from one round.
    once = compare_sides(_one_round({"t::a": 1e-3}, samples=1), _one_round({"t::a": 3e-3}, samples=1), threshold=3.0)[0]
    assert once.verdict == INCONCLUSIVE and "timed 1 time(s)" in once.note
    # A file that does not say how often it timed the stage (no stats.rounds) is judged on the floor.
    unknown = compare_sides(_one_round({"t::a": 1e-3}, samples=0), _one_round({"t::a": 3e-3}, samples=0), threshold=3.0)[0]
    assert unknown.verdict == REGRESSED


def test_one_round_against_several_uses_the_floor_too():
    several = SideRounds([[BenchmarkRound(name="t::a", median=m, min=m, samples=50)] for m in (1e-3, 1.01e-3, 0.99e-3)])
    assert compare_sides(several, _one_round({"t::a": 1.5e-3}), threshold=3.0)[0].verdict == REGRESSED
    assert compare_sides(several, _one_round({"t::a": 1.1e-3}), threshold=3.0)[0].verdict == INCONCLUSIVE


def test_added_removed_failed_and_run_verdict():
    base = rounds_for({"t::kept": [1.0, 1.0], "t::gone": [1.0, 1.0], "t::breaks": [1.0, 1.0]})
    head = rounds_for({"t::kept": [1.0, 1.0], "t::new": [1.0, 1.0]})
    head.failed["t::breaks"] = "AssertionError: boom"
    by_name = {s.name: s for s in compare_sides(base, head, threshold=3.0)}
    assert by_name["t::gone"].verdict == REMOVED
    assert by_name["t::new"].verdict == ADDED
    assert by_name["t::breaks"].verdict == FAILED and "boom" in by_name["t::breaks"].note
    assert run_verdict(list(by_name.values())) == FAILED
    assert run_verdict([]) == FAILED  # nothing benchmarked is never a success


def test_a_disturbed_round_does_not_make_a_regression():
    """A busy neighbour slows one whole round 1.8x: normalisation and trimming keep the verdicts."""
    rng = np.random.default_rng(6)
    base, head = simulate(rng, 8, 10, 0.01)
    for record in head.rounds[4]:
        record.median *= 1.8
    for record in base.rounds[7][:3]:
        record.median *= 1.5  # and a few stages of another round
    assert {s.verdict for s in compare_sides(base, head, threshold=3.0)} == {UNCHANGED}


def test_a_whole_suite_shift_is_reported_as_a_notice():
    rng = np.random.default_rng(7)
    base, head = simulate(rng, 8, 10, 0.01, shift={i: 0.2 for i in range(8)})
    notices: list[str] = []
    verdicts = {s.verdict for s in compare_sides(base, head, threshold=3.0, notices=notices)}
    assert notices and "whole suite" in notices[0]
    assert verdicts == {REGRESSED}  # not normalised away


def test_benjamini_hochberg_matches_the_textbook():
    q = stats.adjust_pvalues([0.01, 0.04, 0.03, 0.005])
    assert q == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_two_rounds_per_side_never_say_less_than_one():
    # Two rounds: Welch's test has one degree of freedom, so a 40 % change with a little noise is not
    # significant; one round per side would call it regressed, so two rounds do too (past the same floor).
    def two(medians: dict[str, tuple[float, float]]) -> SideRounds:
        return SideRounds([[BenchmarkRound(name=n, median=m[i], min=m[i] * 0.98, samples=50) for n, m in medians.items()]
                           for i in range(2)])

    base = two({"t::a": (1e-3, 1.1e-3), "t::b": (1e-3, 1.1e-3)})
    head = two({"t::a": (1.4e-3, 1.65e-3), "t::b": (1.08e-3, 1.12e-3)})
    by_name = {s.name: s for s in compare_sides(base, head, threshold=3.0)}
    assert by_name["t::a"].verdict == REGRESSED and by_name["t::a"].note.startswith("2 rounds per side, too few to test")
    assert by_name["t::a"].ci is not None  # the test's interval is still shown
    assert by_name["t::b"].verdict == INCONCLUSIVE
    # Two rounds that agree closely on each side (both slowed by a neighbour, say) made a tight interval and a
    # verdict; they say nothing of the spread between processes, so the floor decides.
    tight_b = two({"t::a": (1e-3, 1.001e-3)})
    tight_h = two({"t::a": (1.1e-3, 1.1005e-3)})
    stage = compare_sides(tight_b, tight_h, threshold=3.0)[0]
    assert stage.verdict == INCONCLUSIVE and "measure more rounds" in stage.note
