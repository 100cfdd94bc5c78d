"""Verdicts from one or two rounds on a side: a stage moves only past a floor that covers between-process noise.

One pytest-benchmark process per side shows nothing of how much a stage's median moves from one process to
the next, and the samples inside the process are no evidence of it (measurement-facts.md: the variance lives
between processes). So a stage compared from a single round is called regressed or improved only when it
moved by more than unchanged stages move between two plain processes here. The floor is the widest of:

* SINGLE_RUN_FLOOR, what unchanged stages moved between two plain processes in the recorded data;
* RANGE_FACTOR times how widely the stage's calls spread inside its processes (q3/q1 or median/min, on the
  log scale, counting shorter stages of the same process: `within_process`): a median that can land
  anywhere in that range in the next process moves by about that much with no change to the code;
* SPREAD_FACTOR times the spread of the steady stages' changes in this comparison (most stages of a change
  are unchanged, so their spread is this pair of processes' noise: a disturbed pair widens its own floor);
* the user's `--threshold`.

The derivation and the figures are in docs/measurement.md ("Single runs"); benchmarks/single_runs.py checks them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bolt_bot.model import IMPROVED, INCONCLUSIVE, REGRESSED, BenchmarkRound

# What an unchanged stage moves between two plain processes when nothing inside the processes says otherwise:
# at most 12 % for such stages in 780 recorded pairs here (tests/data/single-runs), and up to 20 % (99th
# percentile; 29 % once, an allocation-heavy stage) in the detection harness's recorded naive runs.
SINGLE_RUN_FLOOR = 0.25
# A pair of processes whose steady stages scatter widely (the VM's slow phases) needs a wider floor: four
# robust standard deviations of their log changes.
SPREAD_FACTOR = 4.0
# On the log scale: a range of 2 inside a process (two clusters of calls a factor 2 apart) gives a floor of
# 2^1.5 - 1 = 183 %; 1.0 would leave a median that lands in the other cluster next time exactly on the floor.
RANGE_FACTOR = 1.5
MIN_STAGES_FOR_SPREAD = 6  # fewer stages than this give no usable spread: the fixed floor alone
# A stage timed fewer times than this inside a process (`pedantic(rounds=1)`, one call) is dominated by its first
# call: recorded single-shot stages moved up to 4.8x unchanged. pytest-benchmark's own default minimum is 5.
MIN_SAMPLES = 5
# Rounds a side needs before the t-test decides. With two, the spread between processes is not estimated:
# two rounds that were both slowed by a neighbour agree closely and make a tight, wrong interval (27 false
# alarms in 6,000 stage comparisons of two recorded files per side), and where they disagree one degree of
# freedom (t = 12.7 at 95 %) leaves a 40 % change inconclusive that one round per side would find.
MIN_ROUNDS_TO_TEST = 3
MORE_ROUNDS = "measure more rounds: `bolt run`, or several JSON files per side"


def spread(ratios: Sequence[float]) -> float | None:
    """Robust standard deviation (1.4826 × median absolute deviation) of the stages' log ratios."""
    logs = sorted(math.log(r) for r in ratios if r and r > 0)
    if len(logs) < MIN_STAGES_FOR_SPREAD:
        return None
    center = _median(logs)
    return 1.4826 * _median(sorted(abs(x - center) for x in logs))


def _median(ordered: Sequence[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _range(r: BenchmarkRound) -> float:
    """How widely one stage's calls spread inside one process, as a ratio: q3/q1 or median/min."""
    widest = 1.0
    if r.quartiles and r.quartiles[0] > 0:
        widest = max(widest, r.quartiles[1] / r.quartiles[0])
    if r.min > 0:
        widest = max(widest, r.median / r.min)
    return widest


def within_process(rounds: Sequence[Sequence[BenchmarkRound]]) -> dict[str, float]:
    """Per stage, the widest spread inside any of its processes, counting its shorter neighbours' too.

    q3/q1 is wide when the calls fall into two clusters; median/min when most calls ran slower than the code
    can (another process took the CPU, the VM's slow phase) and a few ran at full speed. A process sharing its
    CPU slows every call longer than the gaps it gets, so when a stage shows that, every longer stage of the
    same process was exposed at least as much, even one whose fastest call was slowed too and so looks tight."""
    out: dict[str, float] = {}
    for one in rounds:
        exposed = 1.0
        for r in sorted(one, key=lambda r: r.median):
            exposed = max(exposed, _range(r))
            out[r.name] = max(out.get(r.name, 1.0), exposed)
    return out


def steady(inside: float) -> bool:
    """A stage whose calls inside its processes spread too little to widen its own floor: only these
    stages measure the pair's noise (the others already carry theirs, and would count it twice)."""
    return RANGE_FACTOR * math.log(max(inside, 1.0)) <= math.log1p(SINGLE_RUN_FLOOR)


def floor(stage_spread: float | None, inside: float = 1.0, threshold: float = 0.0) -> float:
    """The relative change (0.25 = 25 %) a single-round stage must pass to be called changed.

    `stage_spread` comes from `spread`, `inside` from `within_process`, `threshold` is the user's effect floor
    (a fraction)."""
    widest = max(math.log1p(SINGLE_RUN_FLOOR), SPREAD_FACTOR * (stage_spread or 0.0),
                 RANGE_FACTOR * math.log(max(inside, 1.0)), math.log1p(threshold))
    return math.expm1(widest)


def decide(ratio: float, limit: float, samples: tuple[int, int], rounds: int = 1) -> tuple[str, str]:
    """The verdict and note for a stage compared from `rounds` (fewer than MIN_ROUNDS_TO_TEST) on its thinner
    side; `limit` comes from `floor`.

    Regressed when head/base ≥ 1 + limit, improved when ≤ 1 / (1 + limit) (symmetric on the log scale),
    inconclusive otherwise: one round cannot tell a small change from no change, so it never says unchanged.
    """
    change = (ratio - 1.0) * 100
    known = [n for n in samples if n > 0]  # 0: the file did not say (hand-made files)
    if known and min(known) < MIN_SAMPLES:
        return INCONCLUSIVE, (f"{change:+.1f} %, but a stage timed {min(known)} time(s) in a process moves by far "
                              f"more than that between processes; {MORE_ROUNDS}")
    band = f"{limit * 100:.0f} %"
    few = "one round per side" if rounds == 1 else f"{rounds} rounds per side, too few to test"
    if ratio >= 1.0 + limit:
        return REGRESSED, f"{few}: past the {band} that one process moves by on its own here"
    if ratio <= 1.0 / (1.0 + limit):
        return IMPROVED, f"{few}: past the {band} that one process moves by on its own here"
    return INCONCLUSIVE, f"{change:+.1f} %, but one process per side can move by {band} on its own here; {MORE_ROUNDS}"
