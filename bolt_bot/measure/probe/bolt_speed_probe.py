"""The speed probe: a fixed pure-Python loop, timed. Shared by the round plugin (inside the measured
environment) and benchmarks/vm_phases.py; standalone, it imports nothing but `time`."""

from __future__ import annotations

import time


def _loop() -> int:
    total = 0
    for i in range(3000):
        total += i
    return total


def speed_probe() -> float:
    """Seconds for the fixed loop, best of three (about 0.1 ms each at full speed)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        _loop()
        best = min(best, time.perf_counter() - started)
    return best
