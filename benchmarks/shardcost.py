"""The sharding cost model of benchmarks/README.md: one job's time for S stages of summed call time D split over N shards.

    T(N) ≈ E + F_m + (b_m·S + a_m·D) / N

E is the job's set-up (runner, image, environments), F_m what every job pays whatever its share (process
start-ups, valgrind's start-up, the wall-time rule's extra-round budget), b_m the cost per stage and a_m the
cost per second of one call of every stage, for the measure m. The constants are this machine's (2 vCPU KVM
guest, CPython 3.11); `fit` turns the benchmark's measured longest shards into F and the divisible part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LIMIT = 600.0  # seconds: the job length to stay under
PYTEST_START = 0.55  # one pytest process: start-up, collection, JSON (docs/measurement-facts.md)
VALGRIND_START = 4.0  # one pytest process under callgrind before the first stage (detection: ~3.5 s)
DISCOVERY_STAGE = 0.03  # per stage and side: --benchmark-max-time=0.02 plus calibration


@dataclass(frozen=True)
class Measure:
    name: str
    fixed: float  # F_m: seconds every job pays, whatever its share
    per_stage: float  # b_m: seconds per stage
    per_call_second: float  # a_m: seconds per second of one call of every stage


def instructions() -> Measure:
    """Counts: base and head side by side on two cores, then head again (two pass lengths in a row). Each pass
    costs valgrind's start-up, ~0.05 s per stage and ~150x the stage's single-call time (detection: 8 s for
    its ten stages' ~50 ms). The discovery round before it (two plain pytest processes) is in F and b too."""
    return Measure("instructions", fixed=2 * VALGRIND_START + 2 * PYTEST_START + 2.0,  # + profiling, git
                   per_stage=2 * 0.05 + 2 * DISCOVERY_STAGE, per_call_second=2 * 150.0 + 2)


def walltime(rounds: int = 10, budget: float = 120.0) -> Measure:
    """Wall time: 2·rounds pytest processes, each running every stage for max(0.05 s, 5 calls)
    (--benchmark-max-time=0.05 --benchmark-min-rounds=5), bounded above by 0.05 s + 5 calls; plus up to
    `budget` seconds of extra rounds on unclear stages, spent per job (a shard has its own budget)."""
    processes = 2 * rounds
    return Measure("walltime", fixed=processes * PYTEST_START + budget + 2.0,
                   per_stage=processes * 0.05, per_call_second=processes * 5.0)


def job_seconds(measure: Measure, stages: int, call_seconds: float, shards: int, setup: float) -> float:
    """T(N) for a suite of `stages` stages whose single calls add up to `call_seconds`."""
    return setup + measure.fixed + (measure.per_stage * stages + measure.per_call_second * call_seconds) / shards


def shards_needed(measure: Measure, stages: int, call_seconds: float, setup: float, limit: float = LIMIT) -> int | None:
    """The smallest N with T(N) < limit, or None when even one stage per shard cannot get under it."""
    room = limit - setup - measure.fixed
    if room <= 0:
        return None
    n = max(1, math.ceil((measure.per_stage * stages + measure.per_call_second * call_seconds) / room))
    return n if n <= stages else None


def fit(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """Least squares of T = fixed + divisible / N over measured (N, longest shard seconds); None below two N."""
    if len({n for n, _ in points}) < 2:
        return None
    xs, ys = [1 / n for n, _ in points], [t for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def worked_table(setup: float = 90.0, grid: tuple = ((40, 0.2), (200, 1.0), (1000, 2.0), (1000, 10.0), (5000, 10.0))) -> str:
    """Markdown: N for a job under LIMIT, and its T(N), per measure, for a few suites."""
    measures = [instructions(), walltime()]
    lines = [f"| S stages | D (one call of each, s) | {' | '.join(f'{m.name}: N, job s' for m in measures)} |",
             "|---|---|" + "---|" * len(measures)]
    for stages, call in grid:
        cells = []
        for m in measures:
            n = shards_needed(m, stages, call, setup)
            cells.append("no N: F alone is over the limit" if n is None
                         else f"{n}, {job_seconds(m, stages, call, n, setup):.0f} s")
        lines.append(f"| {stages} | {call:g} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(worked_table())
