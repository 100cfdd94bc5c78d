"""All of Bolt's statistics: the ratio and its interval, the tests, false-discovery control, verdict rules.

Each pytest process (round) is one sample: measurement-facts.md shows that the variance lives between
processes, so the samples inside one process are not independent evidence. With two or more rounds per
side Bolt removes the noise common to a whole round, compares the logarithms of the per-round medians
with Yuen's trimmed t-test (a ratio becomes a difference; the most extreme rounds are trimmed), controls
the false discovery rate across stages with Benjamini-Hochberg, and asks for an effect of at least the
floor. With one or two rounds on a side the spread between processes cannot be estimated:
bolt_bot.decide.single applies a floor that covers between-process noise instead.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from bolt_bot.model import IMPROVED, INCONCLUSIVE, REGRESSED, UNCHANGED
from bolt_bot.report.render import format_amount

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """The estimated head/base ratio of one stage, with its uncertainty."""

    ratio: float
    ci: tuple[float, float]
    p: float
    low_confidence: bool = False

    @property
    def half_width(self) -> float:
        """Half the interval's width, as a relative change (0.03 = ±3 %)."""
        return (self.ci[1] - self.ci[0]) / 2


def center_and_spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Geometric mean (the centre the ratio compares) and the standard deviation of the logs
    (about the coefficient of variation for small spreads)."""
    n = len(values)
    if not n:
        return None, None
    if min(values) <= 0:
        return math.fsum(values) / n, None
    logs = list(map(math.log, values))
    mean = math.fsum(logs) / n
    spread = math.sqrt(math.fsum([(x - mean) ** 2 for x in logs]) / (n - 1)) if n > 1 else None
    return math.exp(mean), spread


def estimate_from_rounds(base: Sequence[float], head: Sequence[float]) -> Estimate | None:
    """Welch's t-test on log per-round medians; None when a side has fewer than two positive rounds."""
    return estimate_many_from_rounds([(base, head)])[0]


TRIM = 0.1  # the share of rounds trimmed from each end (Yuen's test): a few disturbed rounds do not count


def _trimmed_tests(log_b: np.ndarray, log_h: np.ndarray, trim: float) -> list[Estimate]:
    """Yuen's trimmed t-test (Welch's when nothing is trimmed) on rows of logs, through scipy; the ratio
    head/base with its interval. Rows whose kept rounds are identical on each side have no noise: their
    ratio is exact, p 0 or 1."""
    diff = sps.trim_mean(log_h, trim, axis=1) - sps.trim_mean(log_b, trim, axis=1)
    # Yuen's variance is that of the winsorized rows: zero when the kept rounds of a side are all equal.
    spread = [np.sort(x, axis=1) for x in (log_b, log_h)]
    g = [int(math.floor(trim * x.shape[1])) for x in spread]
    noisy = np.zeros(len(diff), bool)
    for x, cut in zip(spread, g):
        noisy |= x[:, cut] != x[:, x.shape[1] - cut - 1]
    out: list[Estimate] = []
    if noisy.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            test = sps.ttest_ind(log_h[noisy], log_b[noisy], equal_var=False, trim=trim, axis=1)
            ci = test.confidence_interval(CONFIDENCE)
        tested = iter(zip(test.pvalue, ci.low, ci.high))
    for j, d in enumerate(diff):
        d = float(d)
        if not noisy[j]:
            ratio = math.exp(d)
            out.append(Estimate(ratio, (ratio, ratio), 1.0 if d == 0.0 else 0.0))
        else:
            p, low, high = next(tested)
            out.append(Estimate(math.exp(d), (math.exp(float(low)), math.exp(float(high))), float(p)))
    return out


def estimate_many_from_rounds(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[Estimate | None]:
    """Yuen's trimmed t-test on log per-round medians for many stages at once, vectorised by round counts.

    Trimming the most extreme rounds on each side (10 %) keeps a disturbed round from moving the verdict,
    where a plain mean breaks down, while keeping a parametric p-value that small round counts can
    still make significant after false-discovery control (a rank test cannot with five rounds). With
    fewer than ten rounds nothing is trimmed and it is Welch's test. Stages whose rounds are identical
    on each side (counted instructions, a coarse clock) have no noise: their ratio is exact, p 0 or 1.
    """
    out: list[Estimate | None] = [None] * len(pairs)
    shapes: dict[tuple[int, int], list[int]] = {}
    for i, (base, head) in enumerate(pairs):
        if len(base) >= 2 and len(head) >= 2 and min(base) > 0 and min(head) > 0:
            shapes.setdefault((len(base), len(head)), []).append(i)
    for index in shapes.values():
        log_b = np.log(np.array([pairs[i][0] for i in index], float))
        log_h = np.log(np.array([pairs[i][1] for i in index], float))
        for i, estimate in zip(index, _trimmed_tests(log_b, log_h, TRIM)):
            out[i] = estimate
    return out


def normalise_rounds(
    base: Sequence[dict[str, float]], head: Sequence[dict[str, float]], min_stages: int = 4,
    exclude: frozenset[str] | set[str] = frozenset(),
) -> tuple[list[dict[str, float]], list[dict[str, float]], list[float], list[float]]:
    """Remove common-mode noise: divide each round by how much slower or faster it ran as a whole.

    A busy neighbour or a slower core moves every stage of a round together. The typical value of each
    stage is taken over the rounds of BOTH sides, and a round's factor is the median over its stages of
    value/typical, so a few changed stages do not move it. A change of the whole suite between base and
    head looks like machine noise to this; `suite_shift` tests the factors for that separately. Rounds
    with fewer than `min_stages` stages carry too little evidence for a factor and are left as they are.
    Stages in `exclude` (those that moved between the sides) are rescaled but do not vote on the factor.
    """
    rounds = [*base, *head]
    names = list(dict.fromkeys(itertools.chain.from_iterable(rounds)))
    column = {name: j for j, name in enumerate(names)}
    values = _matrix(rounds, column)
    factors = [1.0] * len(rounds)
    if names and rounds:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rounds or stages with nothing usable
            typical = np.nanmedian(values, axis=0)
            ratios = values / typical
            for name in exclude:
                if name in column:
                    ratios[:, column[name]] = np.nan
            counts = np.sum(np.isfinite(ratios), axis=1)
            medians = np.nanmedian(np.where(np.isfinite(ratios), ratios, np.nan), axis=1) if counts.max() else counts
        factors = [float(m) if c >= min_stages and np.isfinite(m) and m > 0 else 1.0 for m, c in zip(medians, counts)]
    # A round at a time through numpy (the same division, correctly rounded either way).
    scaled = [dict(zip(one, (np.array(list(one.values()), float) / f).tolist())) for one, f in zip(rounds, factors)]
    return scaled[: len(base)], scaled[len(base) :], factors[: len(base)], factors[len(base) :]


def _matrix(rounds: Sequence[dict[str, float]], column: dict[str, int]) -> np.ndarray:
    """Rounds × stages, NaN where a round lacks a stage or its value is not positive (a row at a time:
    cell by cell took a tenth of a second for 10,000 stages)."""
    values = np.full((len(rounds), len(column)), np.nan)
    order = list(column)
    for i, one in enumerate(rounds):
        if one:
            row = np.array(list(one.values()), float)
            names = list(one)
            # Rounds mostly list the stages in the same order as the columns: then no lookup is needed.
            where = slice(0, len(names)) if names == order[: len(names)] else list(map(column.__getitem__, names))
            values[i, where] = np.where(row > 0, row, np.nan)
    return values


def moved_stages(base: Sequence[dict[str, float]], head: Sequence[dict[str, float]], floor: float) -> set[str]:
    """Stages whose median moved by at least `floor` (a fraction) between the sides, relative to most stages."""
    names = list(dict.fromkeys(itertools.chain.from_iterable([*base, *head])))
    if not names or not base or not head:
        return set()
    column = {name: j for j, name in enumerate(names)}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a stage seen on one side only: an all-NaN column
        ratios = np.nanmedian(_matrix(head, column), axis=0) / np.nanmedian(_matrix(base, column), axis=0)
    usable = np.isfinite(ratios) & (ratios > 0)
    if not usable.any():
        return set()
    # Relative to the bulk of the stages: the changed ones have shifted the rest a little the other way.
    distance = np.where(usable, np.abs(ratios / np.median(ratios[usable]) - 1), -1.0)
    order = np.argsort(-distance)[: int(usable.sum()) // 2]  # never more than half: the factors need voters
    return {names[j] for j in order if distance[j] >= floor}


def suite_shift(f_base: Sequence[float], f_head: Sequence[float]) -> Estimate | None:
    """Did the whole suite run slower on head? The round factors of the two sides, compared like a stage."""
    usable_b = [f for f in f_base if f != 1.0]
    usable_h = [f for f in f_head if f != 1.0]
    return estimate_from_rounds(usable_b, usable_h)


def adjust_pvalues(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values): control of false alarms across many stages."""
    if not pvalues:
        return []
    return [float(q) for q in sps.false_discovery_control(np.asarray(pvalues, float), method="bh")]


def decide(estimate: Estimate, q: float, threshold: float, alpha: float) -> tuple[str, str | None]:
    """The verdict for one stage and, where it is not obvious, why.

    `threshold` is the effect floor as a fraction (0.03 = 3 %). A change must be statistically
    significant after false-discovery control AND at least the floor. A stage whose noise is wider than
    the floor can only be called regressed or improved when the whole interval lies beyond the floor;
    otherwise it is inconclusive, never regressed.
    """
    change = estimate.ratio - 1.0
    low, high = estimate.ci
    noisy = estimate.half_width > threshold
    significant = q < alpha
    noise = f"±{estimate.half_width * 100:.1f} %"
    if significant and change >= threshold:
        if noisy and low < 1.0 + threshold:
            return INCONCLUSIVE, f"{change * 100:+.1f} %, but the noise ({noise}) is wider than the {threshold * 100:g} % floor"
        return REGRESSED, None
    if significant and change <= -threshold:
        if noisy and high > 1.0 - threshold:
            return INCONCLUSIVE, f"{change * 100:+.1f} %, but the noise ({noise}) is wider than the {threshold * 100:g} % floor"
        return IMPROVED, None
    if abs(change) >= threshold:
        return INCONCLUSIVE, f"{change * 100:+.1f} %, not significant (q = {q:.2g})"
    if low < 1.0 - 2 * threshold or high > 1.0 + 2 * threshold:
        return INCONCLUSIVE, f"too noisy ({noise}) to rule out a change beyond the {threshold * 100:g} % floor"
    return UNCHANGED, None


@dataclass(frozen=True)
class CountEstimate:
    """head/base of instruction counts over the passes of each side, and the interval their spread allows."""

    ratio: float
    ci: tuple[float, float]
    exact: bool  # every pass of a side counted the same: the interval is the ratio itself
    spread: float  # the largest relative difference between two passes of one side (0 when they repeated)


def estimate_counts(base: Sequence[float], head: Sequence[float]) -> CountEstimate | None:
    """The ratio of the sides' median passes, and as interval the extremes their passes allow.

    Counts carry no sampling noise; what they can do is wander between passes of the same code
    (allocation-heavy code, tiny single-shot calls). A side counted once cannot show its own wander, so it
    is given the other side's: the base measured once is taken to be as uncertain as head's two passes.
    None when a side has no positive count.
    """
    if not base or not head or min(base) <= 0 or min(head) <= 0:
        return None
    spread = max((max(v) / min(v) - 1.0 for v in (base, head) if len(v) > 1), default=0.0)
    ratio = float(np.median(head)) / float(np.median(base))
    if spread == 0.0:
        return CountEstimate(ratio, (ratio, ratio), True, 0.0)

    def extremes(values: Sequence[float]) -> tuple[float, float]:
        if len(values) == 1:
            return values[0] / (1.0 + spread), values[0] * (1.0 + spread)
        return min(values), max(values)

    (base_low, base_high), (head_low, head_high) = extremes(base), extremes(head)
    return CountEstimate(ratio, (head_low / base_high, head_high / base_low), False, spread)


def decide_counts(estimate: CountEstimate | None, threshold: float, warning: float,
                  repeated: bool = True) -> tuple[str, str | None]:
    """The verdict for one stage measured by instruction counts, and a note where it helps.

    `threshold` and `warning` are fractions (0.01 = 1 %). `repeated` is False when head's second pass
    could not measure the stage: one pass shows nothing about wander. A change whose whole interval lies
    at or beyond the threshold is regressed/improved; an interval inside the threshold is unchanged (with
    a note from the warning level on); an interval that crosses the threshold is inconclusive.
    """
    if estimate is None:
        return INCONCLUSIVE, "no instructions were counted on one side"
    if not repeated:
        return INCONCLUSIVE, "the repeat run could not measure it, so the counts are unconfirmed"
    change = estimate.ratio - 1.0
    low, high = (x - 1.0 for x in estimate.ci)
    if low >= threshold:
        return REGRESSED, None
    if high <= -threshold:
        return IMPROVED, None
    if -threshold < low and high < threshold:
        if abs(change) >= warning:
            return UNCHANGED, f"warning: {change * 100:+.1f} % (within the {warning * 100:g}-{threshold * 100:g} % band)"
        return UNCHANGED, None
    return INCONCLUSIVE, (f"{change * 100:+.1f} %, but the counts did not repeat (passes of one side differed by "
                          f"{estimate.spread * 100:.2f} %), so the change lies between {low * 100:+.1f} % and "
                          f"{high * 100:+.1f} %, across the {threshold * 100:g} % floor")


TINY_CALL = 10e-6  # seconds: a single-shot call this short counts allocator and cache set-up as much as code
TINY_COUNT = 30_000  # instructions: about that call, where no wall time is known (--measure instructions)
WALL_LOOK_FLOOR = 0.10  # one discovery round per side moves by up to 15 % (measurement-facts.md): less is no signal
# Passes of one side that differ by a tenth of the change or more: the change is not far beyond what the
# counts do alone (and base, counted once, may wander more between checkouts than head between passes).
WANDER_SHARE = 0.1


def check_count_change(verdict: str, note: str | None, estimate: CountEstimate, base_count: float,
                       wall: tuple[float, float] | None) -> tuple[str, str | None]:
    """A count change in a stage whose counts are known to wander, checked against its wall time before it stands.

    Wandering: the passes of a side disagreed by WANDER_SHARE of the change or more, or the stage is tiny (a call under TINY_CALL, or under
    TINY_COUNT instructions when its time is unknown). `wall` is the stage's (base, head) seconds per call
    from the discovery rounds, None when there were none. A regressed or improved verdict stands when the
    wall time moved the same way by at least half the count change and by more than one round's noise;
    otherwise the stage is inconclusive, saying why. Without a wall-time look the verdict stands with a note.
    """
    if verdict not in (REGRESSED, IMPROVED):
        return verdict, note
    tiny = wall[0] < TINY_CALL or wall[1] < TINY_CALL if wall else base_count < TINY_COUNT
    change = estimate.ratio - 1.0
    disagree = estimate.spread >= WANDER_SHARE * abs(change)
    if not (disagree or tiny):
        return verdict, note
    if not disagree:
        why = (f"a call of {format_amount(min(wall))} is tiny enough for its counts to wander" if wall else
               f"a stage of {base_count:,.0f} instructions is tiny enough for its counts to wander")
    else:
        why = f"the passes of one side differed by {estimate.spread * 100:.2f} %"
    if wall is None:
        return verdict, f"{why}; not checked against wall time (no discovery round with --measure instructions)"
    moved = wall[1] / wall[0] - 1.0
    seen = f"discovery timed {format_amount(wall[0])} → {format_amount(wall[1])} ({moved * 100:+.1f} %)"
    if moved * change > 0 and abs(moved) >= max(WALL_LOOK_FLOOR, abs(change) / 2):
        return verdict, f"{why}; confirmed by wall time: {seen}"
    return INCONCLUSIVE, (f"{change * 100:+.1f} % in instructions, but {why} and the wall time did not confirm it "
                          f"({seen}; one round per side shows only moves beyond ±{WALL_LOOK_FLOOR * 100:.0f} %)")
