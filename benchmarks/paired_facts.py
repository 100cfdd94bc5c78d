"""What limits the paired wall-time engine on this machine: pair correlation, between-process spread, dropped blocks.

    python benchmarks/paired_facts.py                 # ~2-3 min on a 2-vCPU VM
    python benchmarks/paired_facts.py --trials 10 --pairs 10 --repeats 2 --json facts.json

Three measurements on a small synthetic suite (benchmarks/detection's stages), the figures issue 15's closing note
quotes when a target is missed:

1. Pair correlation of adjacent block times. Two worker processes run blocks of the same stage (same code on both
   sides: a base block, then the head block next to it, ABBA), both pinned to ONE CPU, or each to its own CPU; the
   configurations alternate trial by trial on the same two workers. Printed: the correlation of log block times
   (base block vs its head block), the spread of the blocks' log-ratios, and the share of block pairs whose speed
   probes (before and after each block) disagree by more than PairedPlan's probe_tolerance.
2. Between-process spread: Bolt's own measure_paired on two identical checkouts (an A/A run), K fresh process pairs,
   with ASLR off (the default) and on, alternating. Printed per stage: the spread of one process pair's mean
   log-ratio across the K pairs (the between-process CV, in %), next to the within-pair standard error.
3. Blocks dropped for a probe disagreement in those runs, and the engine's own pair correlation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, for `detection.*`

from bolt_bot.measure.paired import PairedPlan, PairedRun, measure_paired
from bolt_bot.measure.walltime import SideSetup
from bolt_bot.progress import Progress
from detection import suite

HERE = Path(__file__).resolve().parent
STAGES = ("cpu_sum", "alloc_lists", "str_split")  # a CPU loop, allocation, string work
BLOCK_SECONDS = PairedPlan().block_ms / 1000

# One worker: runs a block of calls of a stage when told, with a speed probe right before and after it.
_WORKER = r"""
import gc, json, sys, time
sys.path[:0] = [sys.argv[1]]
import synth_stages
from bolt_bot.measure.probe.bolt_speed_probe import speed_probe
for line in sys.stdin:
    name, calls, units = line.split()
    fn, calls, units = getattr(synth_stages, name), int(calls), int(units)
    gc.disable()
    before = speed_probe()
    started = time.perf_counter()
    for _ in range(calls):
        fn(units)
    seconds = time.perf_counter() - started
    after = speed_probe()
    gc.enable()
    print(json.dumps([seconds / calls, before, after]), flush=True)
"""


class Worker:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(HERE / "detection")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def pin(self, cpu: int) -> None:
        os.sched_setaffinity(self.proc.pid, {cpu})

    def block(self, name: str, calls: int, units: int) -> tuple[float, float, float]:
        self.proc.stdin.write(f"{name} {calls} {units}\n")
        self.proc.stdin.flush()
        return tuple(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def correlation(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3 or statistics.pstdev(x) == 0 or statistics.pstdev(y) == 0:
        return None
    return float(np.corrcoef(np.log(x), np.log(y))[0, 1])


def _agree(probes: tuple[float, ...], tolerance: float) -> bool:
    return max(probes) / min(probes) <= tolerance


def adjacent_blocks(stages: list[suite.Stage], trials: int, blocks: int, tolerance: float) -> dict:
    """Part 1: the same code on both workers, one CPU shared vs one CPU each, trial by trial."""
    cpus = sorted(os.sched_getaffinity(0))
    base, head = Worker(), Worker()
    out: dict[str, dict[str, list]] = {"one CPU": {}, "two CPUs": {}}
    try:
        calls = {}
        for stage in stages:  # calibrate once: calls per block of about PairedPlan's block_ms
            per_call = min(base.block(stage.name, 1, stage.units)[0] for _ in range(5))
            calls[stage.name] = max(1, round(BLOCK_SECONDS / per_call))
        for trial in range(2 * trials):
            config = "one CPU" if trial % 2 == 0 else "two CPUs"
            shared = cpus[(trial // 2) % len(cpus)]
            base.pin(shared)
            head.pin(shared if config == "one CPU" or len(cpus) < 2 else next(c for c in cpus if c != shared))
            for stage in stages:
                rows = out[config].setdefault(stage.name, [])
                pairs = []
                for i in range(blocks + 2):  # the first two after re-pinning are warm-up
                    first, second = (base, head) if i % 2 == 0 else (head, base)
                    a = first.block(stage.name, calls[stage.name], stage.units)
                    b = second.block(stage.name, calls[stage.name], stage.units)
                    got = {id(first): a, id(second): b}
                    if i >= 2:
                        pairs.append((got[id(base)], got[id(head)]))
                rows.append(pairs)
    finally:
        base.close()
        head.close()
    summary: dict[str, dict[str, dict]] = {}
    for config, per_stage in out.items():
        for name, trials_rows in per_stage.items():
            corr, kept_corr, spread, dropped, total = [], [], [], 0, 0
            for pairs in trials_rows:
                b, h = [p[0][0] for p in pairs], [p[1][0] for p in pairs]
                keep = [_agree(p[0][1:] + p[1][1:], tolerance) for p in pairs]
                corr.append(correlation(b, h))
                kb, kh = [x for x, k in zip(b, keep) if k], [x for x, k in zip(h, keep) if k]
                kept_corr.append(correlation(kb, kh))
                spread += [math.log(y / x) for x, y in zip(kb, kh)]
                dropped += keep.count(False)
                total += len(keep)
            summary.setdefault(config, {})[name] = {
                "corr": _median(corr), "corr_kept": _median(kept_corr),
                "log_ratio_sd_pct": 100 * statistics.stdev(spread) if len(spread) > 1 else None,
                "dropped": dropped, "blocks": total, "calls": calls[name]}
    return summary


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread_of(run: PairedRun) -> dict[str, dict]:
    """Part 2 and 3 from one A/A run of the engine, per stage (short names)."""
    out = {}
    for name, samples in run.stages.items():
        means = [statistics.fmean(s.log_ratios) for s in samples if s.log_ratios]
        within = [statistics.stdev(s.log_ratios) / math.sqrt(len(s.log_ratios)) for s in samples if len(s.log_ratios) > 1]
        kept = sum(len(s.log_ratios) for s in samples)
        dropped = sum(s.dropped for s in samples)
        out[suite.stage_of(name)] = {
            "pair_means": means,
            "between_pct": 100 * statistics.stdev(means) if len(means) > 1 else None,
            "within_se_pct": 100 * statistics.median(within) if within else None,
            "pair_corr": _median([correlation(s.base, s.head) for s in samples]),
            "dropped": dropped, "blocks": kept + dropped, "calls": [s.calls for s in samples]}
    return out


def aslr_runs(python: Path, workdir: Path, stages: list[suite.Stage], pairs: int, repeats: int, verbose: bool) -> dict:
    """Part 2: measure_paired on two identical checkouts, ASLR off and on alternating, `repeats` runs each."""
    trees = {side: suite.write_project(workdir / name, stages) for side, name in (("base", "00"), ("head", "01"))}
    for tree in trees.values():
        suite.compile_checkout(python, tree)
    setups = {side: SideSetup(python=python, checkout=tree, env=suite.environ(python)) for side, tree in trees.items()}
    results: dict[str, list] = {"ASLR off": [], "ASLR on": []}
    for i in range(2 * repeats):
        label = "ASLR off" if i % 2 == 0 else "ASLR on"
        plan = PairedPlan(pairs=pairs, aslr=label == "ASLR on")
        started = time.monotonic()
        run = measure_paired(setups, plan, workdir / f"run-{i}", Progress(quiet=not verbose))
        results[label].append({"aslr_off": run.aslr_off, "seconds": time.monotonic() - started,
                               "too_long": run.too_long, "failed": run.failed, "stages": spread_of(run)})
    return results


def report(blocks: dict, aslr: dict, tolerance: float) -> list[str]:
    pct = lambda v: "–" if v is None else f"{v:.2f} %"  # noqa: E731
    num = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    load = os.getloadavg()[0]
    lines = [f"machine: {os.cpu_count()} CPUs, load {load:.1f}, CPython {platform.python_version()}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
             + (" (busy: these figures describe the other processes' time slices, not the VM's phases)"
                if load > 0.5 * (os.cpu_count() or 1) else ""), "",
             f"1. adjacent blocks of ~{BLOCK_SECONDS * 1e3:g} ms, same code on both sides (median over trials; "
             f"probes must agree within {tolerance}x)",
             "| stage | workers on | corr. of log block times | same, kept blocks only | SD of block log-ratios (kept) | dropped |",
             "|---|---|---|---|---|---|"]
    for config, per_stage in blocks.items():
        for name, r in per_stage.items():
            lines.append(f"| {name} | {config} | {num(r['corr'])} | {num(r['corr_kept'])} | {pct(r['log_ratio_sd_pct'])} "
                         f"| {r['dropped']}/{r['blocks']} |")
    if not aslr:
        return lines + ["", "2. between-process spread: skipped (--skip-engine)"]
    lines += ["", "2. between-process spread, Bolt's measure_paired on identical checkouts (A/A)",
              "| stage | setting | SD of a pair's mean log-ratio across pairs (between-process CV) | within-pair SE (median) "
              "| engine's pair corr. (median) | blocks dropped |", "|---|---|---|---|---|---|"]
    for label, runs in aslr.items():
        names = sorted({n for run in runs for n in run["stages"]})
        for name in names:
            means = [m for run in runs for m in run["stages"].get(name, {}).get("pair_means", [])]
            within = _median([run["stages"].get(name, {}).get("within_se_pct") for run in runs])
            corr = _median([run["stages"].get(name, {}).get("pair_corr") for run in runs])
            dropped = sum(run["stages"].get(name, {}).get("dropped", 0) for run in runs)
            total = sum(run["stages"].get(name, {}).get("blocks", 0) for run in runs)
            between = 100 * statistics.stdev(means) if len(means) > 1 else None
            really = "" if all(run["aslr_off"] == (label == "ASLR off") for run in runs) else " (not as asked!)"
            lines.append(f"| {name} | {label}{really} | {pct(between)} ({len(means)} pairs) | {pct(within)} | {num(corr)} "
                         f"| {dropped}/{total} ({100 * dropped / total if total else 0:.0f} %) |")
        for run in runs:
            if run["too_long"] or run["failed"]:
                lines.append(f"  {label}: too long {run['too_long']}, failed {run['failed']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", default=",".join(STAGES), help=f"stages of the synthetic suite (default {','.join(STAGES)})")
    p.add_argument("--trials", type=int, default=6, help="trials per CPU configuration in part 1 (default 6)")
    p.add_argument("--blocks", type=int, default=30, help="block pairs per stage and trial in part 1 (default 30)")
    p.add_argument("--pairs", type=int, default=PairedPlan().pairs, help="process pairs per engine run in part 2")
    p.add_argument("--repeats", type=int, default=1, help="engine runs per ASLR setting, alternating (default 1)")
    p.add_argument("--python", type=Path, help="an environment with pytest and pytest-benchmark (default: made with uv)")
    p.add_argument("--skip-engine", action="store_true", help="part 1 only (no environment, no measure_paired)")
    p.add_argument("--json", type=Path, help="also write every figure as JSON here")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("paired_facts: needs at least 2 CPUs to compare one shared CPU with two", file=sys.stderr)
        return 2
    stages = suite.stages_by_name(args.stages.split(","))
    tolerance = PairedPlan().probe_tolerance
    blocks = adjacent_blocks(stages, args.trials, args.blocks, tolerance)
    aslr: dict = {}
    if not args.skip_engine:
        workdir = Path(tempfile.mkdtemp(prefix="bolt-paired-facts-"))
        try:
            python = args.python or suite.make_env(workdir / "env", codspeed=False)
            aslr = aslr_runs(python, workdir, stages, args.pairs, args.repeats, args.verbose)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(report(blocks, aslr, tolerance)))
    if args.json:
        args.json.write_text(json.dumps({"blocks": blocks, "aslr": aslr}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
