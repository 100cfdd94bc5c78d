"""Bolt's own speed at 10,000 stages (target: under 1 s here for each of the two paths below).

1. compare + render: `compare` of 10 rounds per side, then the comment and the job summary.
2. merge: the same 10,000 stages as 4 shard results directories, as `bolt run --shard K/4` leaves them; read
   them all, decide once over the whole suite (Benjamini-Hochberg q, then stats.decide per stage), write
   results.json, render comment + summary. Timed step by step through plain functions, then as `bolt merge`
   does it all (bolt_bot.decide.merge.merge_dirs, which also checks that the shards belong together).

Run: python benchmarks/bench_compare_render.py
It prints the time of each step and the total of each path, best of 3 runs, and the size of the comment.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from bolt_bot import __version__
from bolt_bot.decide import stats
from bolt_bot.decide.compare import SideRounds, build_results, compare_sides
from bolt_bot.decide.merge import merge_dirs
from bolt_bot.measure import shard as sharding
from bolt_bot.model import WALLTIME, BenchmarkRound, Results
from bolt_bot.report.output import write_markdown
from bolt_bot.report.render import render_comment, render_summary

STAGES, ROUNDS, SHARDS, THRESHOLD, ALPHA = 10_000, 10, 4, 3.0, 0.05


def side(rng: np.random.Generator, shift: float) -> SideRounds:
    out = SideRounds()
    for _ in range(ROUNDS):
        medians = 1e-3 * np.exp(rng.normal(0, 0.03, STAGES))
        medians[:50] *= 1 + shift  # 50 stages changed
        # Python floats, as read from pytest-benchmark's JSON files.
        out.rounds.append([BenchmarkRound(name=f"benchmarks/test_big.py::test_stage[{i}]", median=m, mean=m, min=m, max=m, samples=5)
                           for i, m in enumerate(medians.tolist())])
    return out


def best_of_3(steps: list[tuple[str, Callable[[], object]]]) -> dict[str, tuple[float, float]]:
    """Each step's best (wall, CPU) seconds over 3 runs of the whole sequence, and the best total. The CPU
    time of this process shows what the wall time would be on a quiet machine when others share it."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(3):
        total = (0.0, 0.0)
        for name, step in steps:
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            took = (time.perf_counter() - wall, time.process_time() - cpu)
            total = (total[0] + took[0], total[1] + took[1])
            best[name] = tuple(map(min, best.get(name, took), took))
        best["total"] = tuple(map(min, best.get("total", total), total))
    return best


def shown(best: dict[str, tuple[float, float]]) -> str:
    return ", ".join(f"{k} {wall:.3f} s (CPU {cpu:.3f})" for k, (wall, cpu) in best.items())


def shard_dirs(results: Results, folder: Path) -> list[Path]:
    """The stages as `bolt run --shard K/SHARDS` leaves them: the partition of the stage list (every stage
    weighing the same), each share decided over itself only, and environment.shard for `bolt merge`."""
    names = [s.name for s in results.stages]
    by_name = {s.name: s for s in results.stages}
    dirs = []
    for k in range(1, SHARDS + 1):
        plan = sharding.plan_shard(sharding.ShardSpec(k, SHARDS), names, None)
        stages = [replace(by_name[name]) for name in plan.share]
        decide_once(stages)
        notice = f"shard {k}/{SHARDS} measured {len(stages)} of the suite's {len(names)} stages"
        record = {**plan.record(), "bolt_version": __version__, "notice": notice}
        build_results(stages, settings=results.settings, environment={"shard": record},
                      notices=[notice]).write(folder / f"shard-{k}" / "results.json")
        dirs.append(folder / f"shard-{k}")
    return dirs


def decide_once(stages: list) -> None:
    """Benjamini-Hochberg over every tested wall-time stage, then each decided again with its q."""
    tested = [s for s in stages if s.measure == WALLTIME and s.p is not None and s.ratio is not None and s.ci]
    for stage, q in zip(tested, stats.adjust_pvalues([s.p for s in tested])):
        estimate = stats.Estimate(stage.ratio, (stage.ci[0], stage.ci[1]), stage.p, stage.low_confidence)
        stage.q = q
        stage.verdict, stage.note = stats.decide(estimate, q, THRESHOLD / 100, ALPHA)


def main() -> None:
    rng = np.random.default_rng(0)
    base, head = side(rng, 0.0), side(rng, 0.15)
    made: dict[str, Results] = {}

    def compare() -> None:
        made["results"] = build_results(compare_sides(base, head, threshold=THRESHOLD), settings={"threshold": THRESHOLD})

    best = best_of_3([("compare", compare), ("comment", lambda: render_comment(made["results"])),
                      ("summary", lambda: render_summary(made["results"]))])
    results = made["results"]
    print(f"compare + render, {STAGES} stages x {ROUNDS} rounds per side: {shown(best)}")
    print(f"  comment: {len(render_comment(results))} characters, {results.count('regressed')} regressed")

    with tempfile.TemporaryDirectory(prefix="bolt-bench-merge-") as tmp:
        dirs, out = shard_dirs(results, Path(tmp)), Path(tmp) / "merged"
        paths = [folder / "results.json" for folder in dirs]
        merged: dict[str, object] = {}

        def read() -> None:
            merged["shards"] = [Results.read(path) for path in paths]

        def decide() -> None:
            stages = sorted((s for shard in merged["shards"] for s in shard.stages), key=lambda s: s.name)
            decide_once(stages)
            merged["results"] = build_results(stages, settings=merged["shards"][0].settings)

        steps = [("read", read), ("decide", decide), ("write", lambda: merged["results"].write(out / "results.json")),
                 ("render", lambda: write_markdown(merged["results"], out))]
        best = best_of_3(steps)
        sizes = sum(p.stat().st_size for p in paths) / 1e6
        print(f"merge, {SHARDS} shard files of {STAGES} stages in all ({sizes:.1f} MB): {shown(best)}")
        verdicts = {v: merged["results"].count(v) for v in ("regressed", "improved", "inconclusive")}
        print(f"  merged: {verdicts}, same verdicts as one compare: "
              f"{[s.verdict for s in merged['results'].stages] == [s.verdict for s in results.stages]}")

        best = best_of_3([("bolt merge", lambda: merged.update(real=merge_dirs(dirs, Path(tmp) / "bolt-merge")))])
        (wall, cpu), real = best["bolt merge"], merged["real"]
        # merge_dirs makes a stage that only the suite-wide q finds significant inconclusive (its shard did
        # not flag it, so nothing confirmed it): the only verdicts that may differ from one compare's.
        differ = [s for s, one in zip(real.stages, results.stages) if s.verdict != one.verdict]
        print(f"bolt merge (merge_dirs: read, check, decide, write, render): {wall:.3f} s (CPU {cpu:.3f}); "
              f"{len(differ)} verdict(s) differ from one compare's"
              + "".join(f"\n  {s.name}: {s.verdict}, {s.note}" for s in differ[:3]))


if __name__ == "__main__":
    main()
