"""Bolt's own speed: `compare` + render of 10,000 stages, 10 rounds per side (target: under 1 s here).

Run: python benchmarks/bench_compare_render.py
It prints the time of each step and the total, best of 3 runs, and the size of the comment.
"""

from __future__ import annotations

import time

import numpy as np

from bolt_bot.decide.compare import SideRounds, build_results, compare_sides
from bolt_bot.model import BenchmarkRound
from bolt_bot.report.render import render_comment, render_summary

STAGES, ROUNDS = 10_000, 10


def side(rng: np.random.Generator, shift: float) -> SideRounds:
    out = SideRounds()
    for _ in range(ROUNDS):
        medians = 1e-3 * np.exp(rng.normal(0, 0.03, STAGES))
        medians[:50] *= 1 + shift  # 50 stages changed
        out.rounds.append([BenchmarkRound(name=f"benchmarks/test_big.py::test_stage[{i}]", median=m, mean=m, min=m, max=m, samples=5)
                           for i, m in enumerate(medians)])
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    base, head = side(rng, 0.0), side(rng, 0.15)
    best = {}
    for _ in range(3):
        t0 = time.perf_counter()
        results = build_results(compare_sides(base, head, threshold=3.0))
        t1 = time.perf_counter()
        comment = render_comment(results)
        t2 = time.perf_counter()
        render_summary(results)
        t3 = time.perf_counter()
        for key, value in (("compare", t1 - t0), ("comment", t2 - t1), ("summary", t3 - t2), ("total", t3 - t0)):
            best[key] = min(best.get(key, value), value)
    print(f"{STAGES} stages x {ROUNDS} rounds per side: " + ", ".join(f"{k} {v:.3f} s" for k, v in best.items()))
    print(f"comment: {len(comment)} characters, {results.count('regressed')} regressed")


if __name__ == "__main__":
    main()
