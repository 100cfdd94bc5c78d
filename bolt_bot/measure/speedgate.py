"""Which wall-time measurements ran at full speed, and the per-round values Bolt compares.

Some virtual machines (this project's CI VMs among them) switch between full speed and a phase 1.5-2x
slower, each vCPU on its own, for 50 ms up to whole rounds; the mix drifts over minutes. Per-round
medians then fall into two clusters and a 5 % change drowns. Waiting for the fast phase, moving to the
other vCPU or keeping the vCPUs busy did not raise the full-speed share (benchmarks/README.md), so
Bolt measures as usual and the round plugin times a fixed loop just before and just after each stage
("probes").

A stage's round counts as *at full speed* when one of its probes is within `SLOW_FACTOR` of the
reference, the 5th percentile of every probe of both sides (a low quantile, not the minimum: one freak
probe must not make everything look slow). Checked against a stage's own two clusters of times, 99 % of
the rounds kept this way were fast ones and 95 % of the fast ones were kept; the probe just before a
stage often reads slow after pytest's set-up, so asking both probes to be fast kept only 70 %.

Where both sides have at least `MIN_FAST_ROUNDS` such rounds of a stage, only those are compared, by
their median call. (Not the fastest call: for an allocation-heavy stage it depends on the heap that
earlier stages left, and a change to those stages moved it by 9 % while the median stayed put.) A long
stage can straddle a switch, its probes reading fast while it ran slowed: a full-speed round more than
`STRAY_FACTOR` above the lower quartile of its side's full-speed rounds (the same code every time, so
no change explains it) is set aside too.

Where too few rounds ran at full speed but at least as many ran slowed on both sides, the stage is
compared between its slowed rounds only (`Selection.slowed`): noisier, as the slow phase itself varies
from 1.5 to 2x, but the same phase on both sides (replayed on four recorded runs: no false alarm in
313 unchanged stages, a few more changes found). Otherwise the stage keeps every round's median, as
without probes (files from `bolt compare`, or a machine that is never fast); but where some of its
rounds were slowed, the slow phase may have fallen mostly on one side, so such a stage is never called
regressed or improved (`Selection.mixed`). Nothing here knows which
side is which: the probes do not depend on the code under test, so the selection favours neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bolt_bot.model import BenchmarkRound

SLOW_FACTOR = 1.3
MIN_FAST_ROUNDS = 3
STRAY_FACTOR = 1.25  # a full-speed round this far above its side's lower quartile straddled a phase switch
MIN_PROBES = 20  # fewer probes than this give no trustworthy reference
REFERENCE_QUANTILE = 0.05

Rounds = Sequence[Sequence[BenchmarkRound]]


def reference(*sides: Rounds) -> float | None:
    """The full-speed probe time: a low quantile of all probes, or None when there are too few."""
    probes = [t for side in sides for one in side for r in one if r.probe for t in r.probe]
    if len(probes) < MIN_PROBES:
        return None
    return float(np.quantile(probes, REFERENCE_QUANTILE))


def at_full_speed(record: BenchmarkRound, ref: float | None) -> bool:
    return bool(ref and record.probe and min(record.probe) <= SLOW_FACTOR * ref)


@dataclass
class Selection:
    """The per-round {stage: value} of both sides, and what the gate did."""

    base: list[dict[str, float]]
    head: list[dict[str, float]]
    dropped: int = 0  # stage-rounds set aside
    total: int = 0
    # Stages whose rounds were partly slowed but too few ran at full speed to gate them: a change seen in
    # them may be the phases falling unevenly on the two sides. Name → (fast rounds, rounds) per side.
    mixed: dict[str, tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=dict)
    # Stages with too few full-speed rounds but enough slowed ones on both sides: compared between
    # slowed rounds only (noisier, as the slow phase itself varies, but the same phase on both sides).
    slowed: set[str] = field(default_factory=set)


def round_values(base: Rounds, head: Rounds, ref: float | None = None, min_fast: int = MIN_FAST_ROUNDS) -> Selection:
    """Choose each stage's values: its full-speed rounds where it can, else its slowed rounds, else every
    round; the median call of each.

    `ref` defaults to the reference of these very rounds; pass the whole run's reference when these
    rounds are a subset of it (the confirmation pass, which also asks for fewer fast rounds).
    """
    ref = reference(base, head) if ref is None else ref
    if not ref:  # no probes (files from `bolt compare`): every round's median, as before the gate
        medians = [[{r.name: r.median for r in one} for one in side] for side in (base, head)]
        return Selection(medians[0], medians[1], total=sum(len(one) for side in (base, head) for one in side))
    gated: set[str] = set()
    mixed: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
    counts = [_fast_counts(side, ref) for side in (base, head)]
    for name in set(counts[0]) & set(counts[1]):
        (fast_b, n_b), (fast_h, n_h) = counts[0][name], counts[1][name]
        if fast_b >= min_fast and fast_h >= min_fast:
            gated.add(name)
        elif fast_b + fast_h > 0 and (fast_b, fast_h) != (n_b, n_h):
            mixed[name] = ((fast_b, n_b), (fast_h, n_h))
    out: list[list[dict[str, float]]] = []
    kept = [_kept(side, gated, ref) for side in (base, head)]
    left = [_tally(side) for side in kept]
    for name in list(gated):
        if min(left[0].get(name, 0), left[1].get(name, 0)) < min_fast:  # too few once the strays went
            gated.discard(name)
            mixed[name] = ((left[0].get(name, 0), counts[0][name][1]), (left[1].get(name, 0), counts[1][name][1]))
    slowed = {name for name in mixed if min(n - fast for fast, n in (counts[0][name], counts[1][name])) >= min_fast}
    for name in slowed:
        del mixed[name]
    dropped = total = 0
    for side, fast in zip((base, head), kept):
        rounds = []
        for one, fast_one in zip(side, fast):
            values = {}
            for record in one:
                total += 1
                if record.name in slowed:
                    if at_full_speed(record, ref):
                        dropped += 1
                    else:
                        values[record.name] = record.median
                elif record.name not in gated:
                    values[record.name] = record.median
                elif record.name in fast_one:
                    values[record.name] = fast_one[record.name]
                else:
                    dropped += 1
            rounds.append(values)
        out.append(rounds)
    return Selection(out[0], out[1], dropped, total, mixed, slowed)


def _kept(side: Rounds, gated: set[str], ref: float) -> list[dict[str, float]]:
    """Per round, the gated stages' values that ran at full speed and are no stray."""
    fast = [{r.name: r.median for r in one if r.name in gated and at_full_speed(r, ref) and r.median > 0} for one in side]
    columns: dict[str, list[float]] = {}
    for one in fast:
        for name, value in one.items():
            columns.setdefault(name, []).append(value)
    # Strays are slowed rounds whose probes read fast: only ever too slow, so they are measured
    # from the side's lower quartile, which lies among the true full-speed rounds.
    limit = {name: float(np.quantile(v, 0.25)) * STRAY_FACTOR for name, v in columns.items()}
    return [{name: value for name, value in one.items() if value <= limit[name]} for one in fast]


def _tally(rounds: Sequence[dict[str, float]]) -> dict[str, int]:
    """Stage → in how many of these rounds it has a value."""
    tally: dict[str, int] = {}
    for one in rounds:
        for name in one:
            tally[name] = tally.get(name, 0) + 1
    return tally


def _fast_counts(side: Rounds, ref: float) -> dict[str, tuple[int, int]]:
    """Stage → (rounds at full speed, rounds)."""
    counts: dict[str, tuple[int, int]] = {}
    for one in side:
        for record in one:
            fast, n = counts.get(record.name, (0, 0))
            counts[record.name] = (fast + at_full_speed(record, ref), n + 1)
    return counts
