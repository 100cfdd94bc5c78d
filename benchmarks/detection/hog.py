"""A CPU hog on the other core: one process spinning, pinned to the last CPU, bounded in time.

It stops by itself at its deadline or as soon as the harness that started it is gone (its parent pid
changes), so an interrupted benchmark never leaves it spinning; the harness also stops it on every way out.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

_SPIN = r"""
import os, sys, time
cpu, seconds = int(sys.argv[1]), float(sys.argv[2])
parent = os.getppid()
if cpu >= 0 and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {cpu})
deadline = time.monotonic() + seconds
while time.monotonic() < deadline and os.getppid() == parent:
    for _ in range(200_000):
        pass
"""


def other_core() -> int:
    """The last CPU this process may run on, or -1 (not pinned) when there is only one or affinity is unsupported."""
    if not hasattr(os, "sched_getaffinity"):
        return -1
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1] if len(cpus) > 1 else -1


@contextlib.contextmanager
def cpu_hog(seconds: float, cpu: int | None = None) -> Iterator[subprocess.Popen]:
    """Spin on `cpu` (default: the other core) for at most `seconds` while the block runs."""
    cpu = other_core() if cpu is None else cpu
    proc = subprocess.Popen([sys.executable, "-c", _SPIN, str(cpu), str(seconds)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
