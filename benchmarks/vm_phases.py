"""Does this machine switch between full speed and a slow phase? The probe Bolt's round plugin uses, run
on every CPU at once for a while, reported as phases.

    python benchmarks/vm_phases.py --seconds 20

Prints, per CPU: the share of 50 ms windows at full speed (the fastest probe of the window within
speedgate.SLOW_FACTOR of the reference, the 5th percentile of all probes), how long fast and slow
stretches last, the slow phase's typical slowdown, and how often the CPUs were slow together. A machine
without phases shows one cluster and a full-speed share near 100 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from bolt_bot.measure.probe.bolt_speed_probe import speed_probe
from bolt_bot.measure.speedgate import REFERENCE_QUANTILE, SLOW_FACTOR

WINDOW = 0.05


def sample(cpu: int, start: float, seconds: float) -> list[tuple[float, float]]:
    """(time since start, probe seconds) on one CPU."""
    os.sched_setaffinity(0, {cpu})
    while time.time() < start:
        pass
    out = []
    while (now := time.time()) < start + seconds:
        out.append((now - start, speed_probe()))
    return out


def windows(samples: list[tuple[float, float]], seconds: float) -> list[float]:
    best = [float("inf")] * int(seconds / WINDOW)
    for t, probe in samples:
        i = int(t / WINDOW)
        if i < len(best):
            best[i] = min(best[i], probe)
    return best


def stretches(fast: list[bool]) -> tuple[list[float], list[float]]:
    runs: dict[bool, list[float]] = {True: [], False: []}
    count, current = 0, fast[0]
    for value in fast + [not fast[-1]]:
        if value == current:
            count += 1
        else:
            runs[current].append(count * WINDOW)
            count, current = 1, value
    return runs[True], runs[False]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--worker", nargs=2, type=float, help=argparse.SUPPRESS)  # cpu, start
    args = parser.parse_args(argv)
    if args.worker:
        json.dump(sample(int(args.worker[0]), args.worker[1], args.seconds), sys.stdout)
        return 0
    cpus = sorted(os.sched_getaffinity(0))
    start = time.time() + 1.0
    workers = [subprocess.Popen([sys.executable, __file__, "--seconds", str(args.seconds), "--worker", str(cpu), str(start)],
                                stdout=subprocess.PIPE, text=True) for cpu in cpus]
    results = {cpu: json.loads(w.communicate()[0]) for cpu, w in zip(cpus, workers)}
    ref = float(np.quantile([p for s in results.values() for _, p in s], REFERENCE_QUANTILE))
    print(f"reference probe {ref * 1e6:.0f} µs; a 50 ms window is at full speed when its best probe is within {SLOW_FACTOR}x")
    slow_sets = []
    for cpu, samples in results.items():
        best = windows(samples, args.seconds)
        fast = [b <= SLOW_FACTOR * ref for b in best]
        slow_sets.append(np.array([not f for f in fast]))
        fast_runs, slow_runs = stretches(fast)
        slow_values = [b / ref for b in best if b > SLOW_FACTOR * ref and b != float("inf")]
        print(f"cpu {cpu}: at full speed {sum(fast) / len(fast):.0%} of the time; "
              f"fast stretches median {statistics.median(fast_runs or [0]):.2f} s (max {max(fast_runs or [0]):.1f}), "
              f"slow stretches median {statistics.median(slow_runs or [0]):.2f} s (max {max(slow_runs or [0]):.1f}); "
              f"slow phase {statistics.median(slow_values) if slow_values else 1:.2f}x")
    if len(slow_sets) > 1:
        n = min(len(s) for s in slow_sets)
        together = np.mean(np.logical_and.reduce([s[:n] for s in slow_sets]))
        any_slow = np.mean(np.logical_or.reduce([s[:n] for s in slow_sets]))
        print(f"all CPUs slow together {together:.0%} of the time, at least one slow {any_slow:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
