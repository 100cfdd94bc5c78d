"""Wall-time verdicts from the paired engine: each process pair is one sample, tested across pairs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from bolt_bot.decide import stats
from bolt_bot.measure.paired import PairedRun, PairSample
from bolt_bot.measure.sides import BASE, HEAD
from bolt_bot.model import (
    ADDED,
    FAILED,
    IMPROVED,
    INCONCLUSIVE,
    REGRESSED,
    REMOVED,
    UNCHANGED,
    WALLTIME,
    SideSummary,
    StageComparison,
    WallSize,
)
from bolt_bot.words import plural

MIN_PAIRS = 3  # a test across fewer process pairs has one or no degree of freedom: no interval worth reading
MIN_BLOCKS = 3  # a process pair that kept fewer block pairs (most straddled a phase switch) is no sample
# Each pair's value is the trimmed mean of its block log-ratios: a block pair hit by a short interruption
# (an interrupt, a page fault storm) does not move it, and the rest of the blocks still average out.
BLOCK_TRIM = 0.2


def pair_value(sample: PairSample) -> float | None:
    """One process pair's log(head/base): the trimmed mean of its kept block log-ratios; None if too few."""
    ratios = [r for r in sample.log_ratios if math.isfinite(r)]
    if len(ratios) < MIN_BLOCKS:
        return None
    return float(sps.trim_mean(np.asarray(ratios, float), BLOCK_TRIM))


def estimate_pairs(values: Sequence[float]) -> stats.Estimate | None:
    """The ratio exp(mean of the pairs' log-ratios), its 95 % interval and p from a one-sample t-test across
    pairs (the pair, not the block, is the independent sample: measurement-facts.md); None under MIN_PAIRS."""
    if len(values) < MIN_PAIRS:
        return None
    logs = np.asarray(values, float)
    mean = float(logs.mean())
    if float(logs.std()) == 0.0:
        ratio = math.exp(mean)  # every pair agreed exactly: nothing to test against
        return stats.Estimate(ratio, (ratio, ratio), 1.0 if mean == 0.0 else 0.0)
    test = sps.ttest_1samp(logs, 0.0)
    ci = test.confidence_interval(stats.CONFIDENCE)
    return stats.Estimate(math.exp(mean), (math.exp(float(ci.low)), math.exp(float(ci.high))), float(test.pvalue))


def _summary(samples: list[PairSample], side: str) -> SideSummary:
    """One side's seconds per call: the median block of each pair is that pair's value."""
    blocks = [s.base if side == BASE else s.head for s in samples]
    values = [statistics.median(b) for b in blocks if b]
    if not values:
        return SideSummary()
    every = [v for b in blocks for v in b]
    center, spread = stats.center_and_spread(values)
    return SideSummary(rounds=len(values), center=center, median=statistics.median(values),
                       mean=math.fsum(values) / len(values), rel_stddev=spread, min=min(every), max=max(every),
                       values=values)


def _names(run: PairedRun) -> list[str]:
    seen = set(run.stages)
    for side in run.failed.values():
        seen.update(side)
    for side in run.only.values():
        seen.update(side)
    return sorted(seen - set(run.too_long))


def paired_stages(run: PairedRun, threshold: float, alpha: float) -> list[StageComparison]:
    """One StageComparison per stage the paired engine measured, failed or saw on one side only; the stages
    it left to rounds (`run.too_long`) are not among them. `threshold` is in percent."""
    floor = threshold / 100.0
    only = {side: set(names) for side, names in run.only.items()}
    comparisons: list[StageComparison] = []
    tested: list[tuple[StageComparison, stats.Estimate]] = []
    for name in _names(run):
        info = run.groups.get(name, {})
        samples = run.stages.get(name, [])
        stage = StageComparison(name=name, verdict=UNCHANGED, group=info.get("group"), params=info.get("params"),
                                measure=WALLTIME, base=_summary(samples, BASE), head=_summary(samples, HEAD))
        comparisons.append(stage)
        failed_side = next((side for side in (HEAD, BASE) if name in run.failed.get(side, {})), None)
        if failed_side is not None:
            error = run.failed[failed_side][name].strip()
            stage.verdict, stage.note = FAILED, f"failed on {failed_side}: {error}"
            (stage.head if failed_side == HEAD else stage.base).error = error
            continue
        if name in only.get(HEAD, ()) or name in only.get(BASE, ()):
            stage.verdict = ADDED if name in only.get(HEAD, ()) else REMOVED
            continue
        values = [v for v in map(pair_value, samples) if v is not None]
        kept = sum(len(s.log_ratios) for s in samples)
        dropped = sum(s.dropped for s in samples)
        preempted = sum(s.preempted for s in samples)
        stage.extra_info = {"engine": "paired", "pairs": len(values), "of_pairs": len(samples),
                            "blocks": kept, "dropped_blocks": dropped, "preempted_blocks": preempted}
        estimate = estimate_pairs(values)
        if estimate is None:
            if values:
                stage.ratio = math.exp(math.fsum(values) / len(values))
            stage.verdict = INCONCLUSIVE
            stage.note = (f"paired: only {len(values)} of {len(samples)} process pairs gave a usable sample "
                          f"(at least {MIN_PAIRS} are needed; {dropped} block pairs straddled a speed change, "
                          f"{preempted} were interrupted by another process)")
            continue
        stage.ratio, stage.ci, stage.p = estimate.ratio, list(estimate.ci), estimate.p
        tested.append((stage, estimate))
    for (stage, estimate), q in zip(tested, stats.adjust_pvalues([e.p for _, e in tested])):
        stage.q = q
        stage.verdict, stage.note = stats.decide(estimate, q, floor, alpha)
        if stage.note:
            stage.note = f"paired, {stage.extra_info['pairs']} process pairs: {stage.note}"
    return comparisons


INCONCLUSIVE_SHARE = 0.1  # issue 15's target: at most this share of unchanged stages inconclusive


def noise_notice(run: PairedRun, stages: Sequence[StageComparison]) -> list[str]:
    """When many paired stages are inconclusive, how far their blocks and their process pairs disagreed: wide
    blocks mean other work shared the CPU, wide pairs that the processes differ (layout, allocator)."""
    paired = [s for s in stages if s.name in run.stages]
    unclear = [s for s in paired if s.verdict == INCONCLUSIVE]
    if not paired or len(unclear) <= INCONCLUSIVE_SHARE * len(paired):
        return []
    blocks = [statistics.stdev(s.log_ratios) for samples in run.stages.values() for s in samples
              if len(s.log_ratios) > 1]
    values = ([v for v in map(pair_value, samples) if v is not None] for samples in run.stages.values())
    pairs = [statistics.stdev(v) for v in values if len(v) > 1]
    spread = [f"{what} by ±{statistics.median(sd) * 100:.1f} %" for what, sd in
              (("adjacent blocks on one CPU", blocks), ("process pairs", pairs)) if sd]
    are = "is" if len(unclear) == 1 else "are"
    return [f"{len(unclear)} of {plural(len(paired), 'stage')} timed in pairs {are} inconclusive"
            + (f"; their log-ratios differed between {' and between '.join(spread)} (median standard deviations)"
               if spread else "")]


def sizes(run: PairedRun) -> dict[str, WallSize]:
    """stage → its paired wall-time change, for stages another measure decided (instruction counts): the
    size of the change beside the count, never a verdict."""
    out: dict[str, WallSize] = {}
    for name in sorted(set(run.stages) | set(run.too_long)):
        if name in run.too_long:
            out[name] = WallSize(note=f"not timed by pairs: {run.too_long[name]}")
            continue
        values = [v for v in map(pair_value, run.stages[name]) if v is not None]
        estimate = estimate_pairs(values)
        if estimate is None:
            out[name] = WallSize(pairs=len(values), note=f"only {len(values)} usable process pairs")
        else:
            out[name] = WallSize(ratio=estimate.ratio, ci=list(estimate.ci), pairs=len(values))
    for side in run.failed.values():
        for name, error in side.items():
            out.setdefault(name, WallSize(note=f"the paired engine could not time it: {error.strip()[:200]}"))
    return out


def flagged(stages: Sequence[StageComparison], measure: str) -> list[str]:
    """The stages measured by `measure` that moved (regressed or improved): those that get a size."""
    return [s.name for s in stages if s.measure == measure and s.verdict in (REGRESSED, IMPROVED)]
