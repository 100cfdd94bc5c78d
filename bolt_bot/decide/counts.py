"""Instruction-count verdicts: base's pass against head's two, within the threshold and warning band."""

from __future__ import annotations

import statistics

from bolt_bot.decide import stats
from bolt_bot.measure.counts import InstructionRun
from bolt_bot.measure.plan import REPEAT, failed_counts
from bolt_bot.measure.sides import BASE, HEAD
from bolt_bot.model import ADDED, FAILED, INSTRUCTIONS, REMOVED, UNCHANGED, SideSummary, StageComparison


def counts_to_stages(runs: dict[str, InstructionRun], errors: dict[str, str], threshold: float,
                     warning: float, walltimes: dict[str, dict[str, float]] | None = None) -> list[StageComparison]:
    """Stage verdicts from the runs (`threshold`, `warning` as fractions).

    The interval is exact only when head's passes counted the same; otherwise it is what the spread of
    the passes allows, and the verdict follows it (stats.estimate_counts). A change in a stage whose
    counts wander is checked against `walltimes` (side → stage → seconds per call, from discovery) before
    it stands (stats.check_count_change).
    """
    empty = InstructionRun(counts={}, failed={}, log_excerpt="")
    base, head, repeat = runs.get(BASE, empty), runs.get(HEAD, empty), runs.get(REPEAT, empty)
    walltimes = walltimes or {}
    failed = failed_counts(runs, errors)
    names = sorted(set(base.counts) | set(base.failed) | set(head.counts) | set(head.failed))
    stages = []
    for name in names:
        b, h = base.counts.get(name), head.counts.get(name)
        again = repeat.counts.get(name) if h is not None else None
        stage = StageComparison(name=name, verdict=UNCHANGED, measure=INSTRUCTIONS,
                                base=_summary([b] if b is not None else [], base.failed.get(name) or errors.get(BASE)),
                                head=_summary([c for c in (h, again) if c is not None],
                                              head.failed.get(name) or errors.get(HEAD)))
        stages.append(stage)
        if name in failed:
            stage.verdict, stage.note = FAILED, failed[name]
        elif b is None or h is None:
            stage.verdict = ADDED if b is None else REMOVED
        else:
            estimate = stats.estimate_counts([b], [c for c in (h, again) if c is not None])
            if estimate is None:
                stage.verdict, stage.note = stats.decide_counts(None, threshold, warning)
                continue
            stage.ratio, stage.ci = estimate.ratio, list(estimate.ci)
            verdict, note = stats.decide_counts(estimate, threshold, warning, repeated=again is not None)
            wall = tuple(walltimes.get(side, {}).get(name, 0.0) for side in (BASE, HEAD))
            stage.verdict, stage.note = stats.check_count_change(verdict, note, estimate, b,
                                                                 wall if min(wall) > 0 else None)
    return stages


def _summary(passes: list[int], error: str | None) -> SideSummary:
    """One side's counts: every pass in `values`, the median as the centre the ratio compares."""
    if not passes:
        return SideSummary(unit="instr", error=error)
    values = [float(c) for c in passes]
    center = float(statistics.median(values))
    return SideSummary(rounds=len(values), center=center, median=center, mean=statistics.fmean(values),
                       min=min(values), max=max(values), unit="instr", values=values, error=error)
