"""Verdicts from the paired engine's samples (decide/paired.py), on constructed runs: nothing is measured."""

from __future__ import annotations

import math
import random

from bolt_bot.decide.paired import flagged, noise_notice, paired_stages, sizes
from bolt_bot.measure.paired import PairedRun, PairSample
from bolt_bot.model import (ADDED, FAILED, IMPROVED, INCONCLUSIVE, INSTRUCTIONS, REGRESSED, REMOVED, UNCHANGED,
                            StageComparison)

THRESHOLD, ALPHA = 3.0, 0.05


def pair(ratio: float, rng: random.Random, *, cpu: int = 0, blocks: int = 24, block_noise: float = 0.01,
         per_call: float = 1e-3) -> PairSample:
    """One process pair whose head blocks take `ratio` times the base blocks, each block pair with its own noise
    (a phase slows both members of a pair alike, so it moves the times but not the ratio)."""
    base, head, logs = [], [], []
    for _ in range(blocks):
        phase = rng.choice((1.0, 1.7))
        b = per_call * phase * math.exp(rng.gauss(0, block_noise))
        h = b * ratio * math.exp(rng.gauss(0, block_noise))
        base.append(b)
        head.append(h)
        logs.append(math.log(h / b))
    return PairSample(cpu=cpu, calls=5, base=base, head=head, log_ratios=logs)


def run_of(stages: dict[str, list[float]], seed: int = 1, between: float = 0.004, **kw) -> PairedRun:
    """A PairedRun with one pair per listed ratio; `between` is the spread of the pairs' own ratios
    (layout and allocator differ between processes)."""
    rng = random.Random(seed)
    return PairedRun(stages={name: [pair(r * math.exp(rng.gauss(0, between)), rng, cpu=i % 2)
                                    for i, r in enumerate(ratios)] for name, ratios in stages.items()}, **kw)


def by_name(stages: list[StageComparison]) -> dict[str, StageComparison]:
    return {s.name: s for s in stages}


def test_a_consistent_six_percent_over_six_pairs_is_regressed_and_its_interval_holds_it():
    stages = by_name(paired_stages(run_of({"t::slow": [1.06] * 6, "t::same": [1.0] * 6}), THRESHOLD, ALPHA))
    slow = stages["t::slow"]
    assert slow.verdict == REGRESSED, slow
    assert slow.ci[0] <= 1.06 <= slow.ci[1] and 1.04 < slow.ratio < 1.08, slow
    assert slow.measure == "walltime" and slow.extra_info["engine"] == "paired" and slow.extra_info["pairs"] == 6
    assert slow.q is not None and slow.q >= slow.p
    assert slow.base.rounds == 6 and slow.head.center > slow.base.center
    assert stages["t::same"].verdict == UNCHANGED, stages["t::same"]


def test_noise_around_zero_is_unchanged_over_many_stages():
    ratios = {f"t::stage{i}": [1.0] * 6 for i in range(10)}
    stages = paired_stages(run_of(ratios, seed=7), THRESHOLD, ALPHA)
    assert {s.verdict for s in stages} == {UNCHANGED}, [(s.name, s.ratio, s.note) for s in stages]


def test_an_improvement_is_improved():
    stages = by_name(paired_stages(run_of({"t::fast": [0.9] * 6}), THRESHOLD, ALPHA))
    assert stages["t::fast"].verdict == IMPROVED


def test_pairs_that_disagree_wildly_are_not_regressed():
    # Every block pair inside a process pair agrees, but the process pairs do not: the mean is +7 %, the
    # evidence is not there.
    wild = [1.25, 0.85, 1.30, 0.90, 1.20, 0.95]
    stage = paired_stages(run_of({"t::wild": wild}, between=0.0), THRESHOLD, ALPHA)[0]
    assert stage.ratio > 1.03 and stage.verdict == INCONCLUSIVE, stage
    assert "paired, 6 process pairs" in stage.note


def test_fewer_than_three_usable_pairs_is_inconclusive_with_a_note():
    run = run_of({"t::two": [1.2, 1.2], "t::gutted": [1.2] * 6})
    for sample in run.stages["t::gutted"][2:]:
        sample.log_ratios = sample.log_ratios[:2]  # the rest straddled a speed change and were dropped
        sample.dropped = 22
    stages = by_name(paired_stages(run, THRESHOLD, ALPHA))
    two, gutted = stages["t::two"], stages["t::gutted"]
    assert two.verdict == INCONCLUSIVE and "only 2 of 2 process pairs" in two.note and two.ci is None, two
    assert gutted.verdict == INCONCLUSIVE and "only 2 of 6 process pairs" in gutted.note, gutted
    assert "88 block pairs straddled" in gutted.note


def test_failed_added_removed_and_too_long_stages():
    run = run_of({"t::ok": [1.0] * 6}, failed={"head": {"t::boom": "ZeroDivisionError: division by zero\n"},
                                                "base": {"t::fixed": "AssertionError"}},
                 only={"head": ["t::new"], "base": ["t::gone"]}, too_long={"t::long": "one call takes 180 ms"},
                 groups={"t::ok": {"group": "g", "params": {"n": 1}}})
    stages = by_name(paired_stages(run, THRESHOLD, ALPHA))
    assert set(stages) == {"t::ok", "t::boom", "t::fixed", "t::new", "t::gone"}  # rounds times t::long
    assert stages["t::boom"].verdict == FAILED and stages["t::boom"].note == "failed on head: ZeroDivisionError: division by zero"
    assert stages["t::boom"].head.error and stages["t::boom"].base.error is None
    assert stages["t::fixed"].verdict == FAILED and stages["t::fixed"].base.error == "AssertionError"
    assert stages["t::new"].verdict == ADDED and stages["t::gone"].verdict == REMOVED
    assert stages["t::ok"].group == "g" and stages["t::ok"].params == {"n": 1}


def test_benjamini_hochberg_runs_across_stages():
    # A borderline stage alone, then among many unchanged ones: its q can only grow.
    alone = paired_stages(run_of({"t::edge": [1.04] * 6}, seed=3, between=0.02), THRESHOLD, ALPHA)[0]
    crowd = {"t::edge": [1.04] * 6, **{f"t::u{i}": [1.0] * 6 for i in range(20)}}
    among = by_name(paired_stages(run_of(crowd, seed=3, between=0.02), THRESHOLD, ALPHA))["t::edge"]
    assert alone.q == alone.p and among.q > among.p


def test_sizes_of_counted_stages():
    run = run_of({"t::a": [0.54] * 6}, too_long={"t::b": "one call takes 180 ms"},
                 failed={"head": {"t::c": "boom"}})
    got = sizes(run)
    assert got["t::a"].ci[0] <= 0.54 <= got["t::a"].ci[1] and got["t::a"].pairs == 6
    assert got["t::b"].ratio is None and "180 ms" in got["t::b"].note
    assert got["t::c"].ratio is None and "boom" in got["t::c"].note
    stages = [StageComparison("x", REGRESSED, measure=INSTRUCTIONS), StageComparison("y", UNCHANGED, measure=INSTRUCTIONS),
              StageComparison("z", IMPROVED, measure="walltime"), StageComparison("w", IMPROVED, measure=INSTRUCTIONS)]
    assert flagged(stages, INSTRUCTIONS) == ["x", "w"]


def test_many_inconclusive_stages_get_a_notice_with_the_block_and_pair_spread():
    quiet = run_of({f"t::s{i}": [1.0] * 6 for i in range(5)})
    assert noise_notice(quiet, paired_stages(quiet, THRESHOLD, ALPHA)) == []
    busy = run_of({f"t::s{i}": [1.0] * 6 for i in range(5)}, between=0.08)
    for samples in busy.stages.values():  # other work on the CPU: one block in a pair runs much longer
        for sample in samples:
            sample.log_ratios = [r + (0.5 if k % 3 == 0 else -0.5 if k % 3 == 1 else 0) for k, r in
                                 enumerate(sample.log_ratios)]
    stages = paired_stages(busy, THRESHOLD, ALPHA)
    (notice,) = noise_notice(busy, stages)
    assert notice.startswith(f"{sum(s.verdict == INCONCLUSIVE for s in stages)} of 5 stages timed in pairs are inconclusive")
    assert "between adjacent blocks on one CPU by ±4" in notice and "and between process pairs by ±" in notice
