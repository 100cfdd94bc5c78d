"""A pytest plugin run inside the measured environment: reports each test's outcome as it happens.

Standalone on purpose (it imports nothing from Bolt): the measured project's environment has pytest and
pytest-benchmark but not Bolt. Events are JSON lines flushed at once, so a round that hangs or crashes
still tells which stage it was running and which had failed.

With BOLT_SPEED_PROBE set (Bolt's rounds), each test call is bracketed by a speed probe: a fixed
pure-Python loop timed just before and just after the stage is measured. Some virtual machines switch
between full speed and a phase 1.5-2x slower, for 50 ms up to seconds; the probes tell Bolt which
measurements ran at full speed (see bolt_bot/measure/speedgate.py).

With BOLT_CALL_EVIDENCE naming a file (Bolt's discovery rounds), each test call also writes what
`--measure auto` routes stages by (bolt_bot/measure/routing.py): the CPU time of the benchmark's own thread and
of the whole process, the times the thread blocked (voluntary context switches) and the threads alive.
These are counts and CPU clocks of one process, not a CPU/wall ratio, which a VM's clocks make unreliable.
"""

from __future__ import annotations

import json
import os
import threading
import time

try:
    import resource  # not on Windows: no context-switch counts there
except ImportError:
    resource = None

import pytest
from bolt_shard_select import keep_shard  # PYTHONPATH holds this folder
from bolt_speed_probe import speed_probe

_EVENTS = os.environ.get("BOLT_ROUND_EVENTS")
_PROBE = bool(os.environ.get("BOLT_SPEED_PROBE"))
_EVIDENCE = os.environ.get("BOLT_CALL_EVIDENCE")
_EXCERPT = 600


def _emit(_path=None, **event):
    path = _path or _EVENTS
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\n")
        out.flush()


def _threads() -> int:
    # /proc/self/task also lists threads Python did not start (native pools); elsewhere Python's own count.
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _blocked() -> tuple[int, int]:
    """(voluntary, involuntary) context switches of this thread: it blocked (I/O, sleep, a lock), or was preempted."""
    try:
        usage = resource.getrusage(resource.RUSAGE_THREAD)
    except (AttributeError, OSError):
        return 0, 0
    return usage.ru_nvcsw, usage.ru_nivcsw


def _snapshot() -> tuple:
    return time.perf_counter(), time.process_time(), time.thread_time(), *_blocked(), _threads()


def _calls(item) -> int:
    """How many times the benchmark called the stage in its measured rounds (calibration not included)."""
    metadata = getattr(getattr(item, "funcargs", {}).get("benchmark"), "stats", None)  # pytest-benchmark's
    try:
        return int(metadata.stats.rounds) * int(metadata.iterations)
    except (AttributeError, TypeError, ValueError):
        return 0


def _evidence(item, before: tuple, after: tuple) -> None:
    wall, cpu, own, voluntary, involuntary, _ = (a - b for a, b in zip(after, before))
    _emit(_EVIDENCE, event="call", nodeid=item.nodeid, wall=wall, cpu=cpu, thread_cpu=own, voluntary=voluntary,
          involuntary=involuntary, threads_before=before[-1], threads_after=after[-1], calls=_calls(item))


def _excerpt(report) -> str:
    text = getattr(report, "longreprtext", "") or str(getattr(report, "longrepr", "") or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.lstrip().startswith("E ")]
    picked = (errors or lines)[-3:]
    return " | ".join(line.strip() for line in picked)[-_EXCERPT:]


def pytest_addoption(parser):
    parser.addoption("--bolt-select", default=None,
                     help="file with one node id per line: run only these (and what they name, as pytest does)")


def _selected(nodeid: str, wanted: set) -> bool:
    # As on pytest's command line, "f.py::test_x" also names test_x[...] and a class names its tests;
    # but an id whose parameters hold "::" or brackets is matched here, where pytest's parser cannot.
    if nodeid in wanted:
        return True
    return any(nodeid.startswith(w + "::") or nodeid.startswith(w + "[") for w in wanted)


def pytest_collection_modifyitems(config, items):
    keep_shard(config, items)
    path = config.getoption("bolt_select", None)
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        wanted = {line.rstrip("\n") for line in f if line.strip()}
    keep = [item for item in items if _selected(item.nodeid, wanted)]
    if len(keep) != len(items):
        kept = {id(item) for item in keep}
        config.hook.pytest_deselected(items=[item for item in items if id(item) not in kept])
        items[:] = keep


def pytest_runtest_logstart(nodeid, location):
    _emit(event="start", nodeid=nodeid)


def pytest_runtest_logreport(report):
    if report.failed:
        _emit(event="failed", nodeid=report.nodeid, when=report.when, excerpt=_excerpt(report))


def pytest_collectreport(report):
    if report.failed:
        _emit(event="collect_error", nodeid=report.nodeid, excerpt=_excerpt(report))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if not _PROBE and not _EVIDENCE:
        yield
        return
    before = speed_probe() if _PROBE else None
    started = _snapshot() if _EVIDENCE else None
    yield
    if started is not None:
        _evidence(item, started, _snapshot())
    if _PROBE:
        _emit(event="speed", nodeid=item.nodeid, before=before, after=speed_probe())
