"""Comparing the rounds of both sides: stages matched by name, estimated, tested and given verdicts."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import replace

from bolt_bot.measure import speedgate
from bolt_bot.measure.sides import SideRounds, columns  # noqa: F401  (columns: re-exported for callers)
from bolt_bot.decide import stats
from bolt_bot.jsondata import gc_paused
from bolt_bot.model import (
    ADDED,
    FAILED,
    IMPROVED,
    INCONCLUSIVE,
    REGRESSED,
    REMOVED,
    UNCHANGED,
    WALLTIME,
    BenchmarkRound,
    CommitRef,
    ProfileLine,
    Results,
    SideSummary,
    StageComparison,
)

# The run verdict is the most urgent stage verdict, in this order.
_URGENCY = (REGRESSED, FAILED, IMPROVED, INCONCLUSIVE)
SUITE_FAILED = "the benchmark suite failed before measuring anything on "


_MIN, _MAX = operator.attrgetter("min"), operator.attrgetter("max")


def summarize(records: Sequence[BenchmarkRound], error: str | None = None, values: list[float] | None = None) -> SideSummary:
    values = [r.median for r in records] if values is None else values
    if not values:
        return SideSummary(error=error)
    center, spread = stats.center_and_spread(values)
    n, ordered = len(values), sorted(values)
    # statistics.median's own rule, without its overhead (20,000 calls for 10,000 stages).
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return SideSummary(
        rounds=n,
        center=center,
        median=median,
        mean=math.fsum(values) / n,
        rel_stddev=spread,
        min=min(map(_MIN, records)),
        max=max(map(_MAX, records)),
        unit=records[0].unit,
        values=values,
        error=error,
    )


def _within_run(base: Sequence[BenchmarkRound], head: Sequence[BenchmarkRound]) -> stats.Estimate | None:
    """The low-confidence fallback when both sides have a single round."""
    if len(base) > 1 or len(head) > 1:
        return None
    b, h = base[0], head[0]
    return stats.estimate_within_run(b.data, h.data, (b.mean, b.stddev, b.samples), (h.mean, h.stddev, h.samples))


@gc_paused()  # builds tens of thousands of objects that all stay alive (bolt_bot.jsondata.gc_paused)
def compare_sides(
    base: SideRounds,
    head: SideRounds,
    *,
    threshold: float,
    alpha: float = 0.05,
    measure: str = WALLTIME,
    normalise: bool = True,
    notices: list[str] | None = None,
) -> list[StageComparison]:
    """One StageComparison per stage seen on either side. `threshold` is in percent."""
    base_stages, head_stages = base.by_stage(), head.by_stage()
    chosen = speedgate.round_values(base.rounds, head.rounds)
    base_rounds, head_rounds = chosen.base, chosen.head
    if chosen.dropped and notices is not None:
        notices.append(f"the machine ran below full speed during {chosen.dropped} of {chosen.total} stage "
                       f"measurements ({chosen.dropped / chosen.total:.0%}); those were set aside")
    if chosen.slowed and notices is not None:
        notices.append(f"{len(chosen.slowed)} stage(s) ran at full speed too rarely and were compared between "
                       f"slowed rounds only, which is noisier")
    if normalise:
        normal_base, normal_head, f_base, f_head = stats.normalise_rounds(base_rounds, head_rounds)
        # Stages that moved between the sides pull every round's factor their way (and so move the
        # unchanged stages the other way): the factors are taken again without them.
        moved = stats.moved_stages(normal_base, normal_head, threshold / 100.0)
        if moved:
            normal_base, normal_head, f_base, f_head = stats.normalise_rounds(base_rounds, head_rounds, exclude=moved)
        shift = stats.suite_shift(f_base, f_head)
        if shift is not None and shift.p < alpha and abs(shift.ratio - 1) * 100 >= threshold:
            # Interleaved rounds spread machine noise over both sides alike: a shift of every stage that is
            # this consistent is the code's, so it must not be normalised away.
            if notices is not None:
                notices.append(f"the whole suite ran {(shift.ratio - 1) * 100:+.1f} % on head, all stages together")
        else:
            base_rounds, head_rounds = normal_base, normal_head
    base_values, head_values = columns(base_rounds), columns(head_rounds)
    names = sorted(set(base_stages) | set(head_stages) | set(base.failed) | set(head.failed))
    if not names and notices is not None:
        # Nothing to match: the reason is the suites' own error (a conftest the installed pytest rejects,
        # an import error), not the benchmark paths.
        notices.extend(f"{SUITE_FAILED}{label}: {side.error}" for label, side in (("base", base), ("head", head)) if side.error)
    floor = threshold / 100.0
    comparisons: list[StageComparison] = []
    pending: list[tuple[StageComparison, list[BenchmarkRound], list[BenchmarkRound]]] = []
    for name in names:
        b, h = base_stages.get(name, []), head_stages.get(name, [])
        first = (h or b or [BenchmarkRound(name=name)])[0]
        stage = StageComparison(
            name=name,
            verdict=UNCHANGED,
            group=first.group,
            params=first.params,
            measure=measure,
            extra_info=first.extra_info,
            base=summarize(b, base.failed.get(name), base_values.get(name)),
            head=summarize(h, head.failed.get(name), head_values.get(name)),
        )
        comparisons.append(stage)
        if name in head.failed or name in base.failed:
            side = "head" if name in head.failed else "base"
            stage.verdict = FAILED
            stage.note = f"failed on {side}: {(head.failed.get(name) or base.failed.get(name) or '').strip()}"
            continue
        if not b or not h:
            broken = base if not b else head
            if broken.error:
                stage.verdict = FAILED
                stage.note = f"failed on {'base' if broken is base else 'head'}: {broken.error}"
                (stage.base if broken is base else stage.head).error = broken.error
            else:
                stage.verdict = ADDED if not b else REMOVED
            continue
        pending.append((stage, b, h))
    estimates = stats.estimate_many_from_rounds([(base_values[s.name], head_values[s.name]) for s, _, _ in pending])
    tested: list[tuple[StageComparison, stats.Estimate]] = []
    for (stage, b, h), est in zip(pending, estimates):
        est = est or _within_run(b, h)
        if est is None:
            stage.verdict = INCONCLUSIVE
            stage.note = "not enough samples to compare"
            continue
        stage.ratio, stage.ci, stage.p = est.ratio, list(est.ci), est.p
        stage.low_confidence = est.low_confidence
        tested.append((stage, est))
    qvalues = stats.adjust_pvalues([est.p for _, est in tested])
    for (stage, est), q in zip(tested, qvalues):
        stage.q = q
        stage.verdict, stage.note = stats.decide(est, q, floor, alpha)
        if stage.verdict in (REGRESSED, IMPROVED) and stage.name in chosen.mixed:
            (fast_b, n_b), (fast_h, n_h) = chosen.mixed[stage.name]
            stage.verdict = INCONCLUSIVE
            stage.note = (f"{(est.ratio - 1) * 100:+.1f} %, but only {fast_b} of {n_b} base and {fast_h} of {n_h} head "
                          f"rounds ran at full speed, so the machine's slow phases may explain it")
        if est.low_confidence and stage.note is None:
            stage.note = "one round per side: low confidence"
    return comparisons


def run_verdict(stages: Sequence[StageComparison]) -> str:
    """The most urgent stage verdict, a stage regressed in memory counting as regressed; `failed` when nothing
    was measured, every stage failed, or a stage failed on head; `inconclusive` when every stage was only added or removed. A stage that failed on base only (the change fixed or added it) is reported as failed
    but does not fail the run: the change did not break it."""
    verdicts = {s.verdict for s in stages if not _failed_on_base_only(s)}
    if not stages or not verdicts or verdicts <= {FAILED, ADDED, REMOVED} and FAILED in verdicts:
        return FAILED
    if verdicts <= {ADDED, REMOVED}:
        return INCONCLUSIVE  # nothing exists on both sides (a renamed suite): nothing was compared
    if any(s.memory_regressed for s in stages):
        return REGRESSED  # a memory regression gates like a time one (StageComparison.regressed)
    for verdict in _URGENCY:
        if verdict in verdicts:
            return verdict
    return UNCHANGED


def _failed_on_base_only(stage: StageComparison) -> bool:
    return stage.verdict == FAILED and stage.head.error is None and stage.base.error is not None


def unmatched_notice(stages: Sequence[StageComparison]) -> list[str]:
    """A notice when both commits have benchmarks but none in common: nothing was compared.

    Stages are matched by their full pytest name only; a suite renamed between the commits leaves
    every stage added or removed, which must not read as "no change" (peers.md: renames compared as
    unrelated went unnoticed).
    """
    added = sum(1 for s in stages if s.verdict == ADDED)
    removed = sum(1 for s in stages if s.verdict == REMOVED)
    if not added or not removed or added + removed != len(stages):
        return []
    return [f"no benchmark exists under the same name on both commits ({removed} removed, {added} added), so "
            "nothing was compared: if they were renamed, base and head cannot be matched by name"]


def build_results(
    stages: list[StageComparison],
    *,
    measure: str = WALLTIME,
    settings: Mapping[str, object] | None = None,
    base: CommitRef | None = None,
    head: CommitRef | None = None,
    environment: Mapping[str, object] | None = None,
    notices: Sequence[str] = (),
    profiles: Mapping[str, tuple[list[ProfileLine], str | None]] | None = None,
) -> Results:
    """The run's Results, made once: its verdict from the stages', and each profiled stage's slot
    (`profiles`: stage → (the functions that grew, why there are none)) filled in."""
    notices = list(notices)
    stages = [replace(s, profile=list(profiles[s.name][0]), profile_note=profiles[s.name][1])
              if profiles and s.name in profiles else s for s in stages]
    if not stages and not any(n.startswith(SUITE_FAILED) for n in notices):
        notices.append("no benchmarks were found on either side: check the benchmark paths and pytest arguments")
    notices += unmatched_notice(stages)
    return Results(
        stages=stages,
        verdict=run_verdict(stages),
        measure=measure,
        settings=dict(settings or {}),
        base=base or CommitRef(),
        head=head or CommitRef(),
        environment=dict(environment or {}),
        notices=notices,
    )
