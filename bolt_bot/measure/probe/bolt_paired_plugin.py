"""A pytest plugin that turns one long-lived pytest process into a paired-timing worker driven by Bolt over a pipe.

Standalone on purpose (it imports nothing from Bolt): the measured environment has pytest and
pytest-benchmark only. Bolt starts the process with two inherited file descriptors named in
BOLT_PAIRED_FDS ("<commands in>,<events out>"); every message is one JSON line (bolt_bot/measure/pairedwire.py
is the other end).

The worker says hello (its pid, the CPUs it may run on, whether ASLR is off), sends the benchmark tests
it collected and runs those Bolt selects, in Bolt's order, so a base worker and a head worker walk the
same stages. When a test calls `benchmark(fn, ...)` or `benchmark.pedantic(...)`, the worker announces
the stage and serves Bolt's commands:

- `block` N: call the function N times, timed with perf_counter, a speed probe just before and just
  after; with a pedantic `setup` or `teardown` they run around each call and only the calls are timed;
- `done`: the test gets the function's return value and goes on (its asserts still run);
- `skip`: call the function once and return (the stage is not measured on this pair).

A call that raises is reported (`error`) and re-raised, so the test fails as it would under
pytest-benchmark. Bolt ending the pipe ends the worker at once.

Garbage collection is left as pytest-benchmark leaves it: on, unless the fixture was told to disable
it (`--benchmark-disable-gc` or the `benchmark(disable_gc=True)` marker), and then off only around
the timed calls. A change that makes more garbage costs its users collection time, and pytest-benchmark's
numbers (what users read) include it. Not measured yet: the collector's noise should fall within pairs
of adjacent blocks and average out over many of them (Bolt's rounds engine turns GC off instead,
measurement-facts.md); the detection benchmark can tell.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

try:
    import resource  # not on Windows: no context-switch counts there
except ImportError:
    resource = None

import pytest
from bolt_pedantic import pedantic_arguments  # PYTHONPATH holds this folder
from bolt_shard_select import keep_shard  # PYTHONPATH holds this folder
from bolt_speed_probe import speed_probe  # PYTHONPATH holds this folder

ENV_FDS = "BOLT_PAIRED_FDS"
ADDR_NO_RANDOMIZE = 0x0040000
_EXCERPT = 600
_NOTHING = object()


class _Wire:
    def __init__(self, spec: str):
        read_fd, write_fd = (int(part) for part in spec.split(","))
        self._in = os.fdopen(read_fd, "r", encoding="utf-8")
        self._out = os.fdopen(write_fd, "w", encoding="utf-8")

    def send(self, **event) -> None:
        try:
            self._out.write(json.dumps(event, default=repr) + "\n")
            self._out.flush()
        except (BrokenPipeError, OSError):
            os._exit(70)  # Bolt is gone: running the rest of the suite would measure nothing

    def recv(self) -> dict:
        line = self._in.readline()
        if not line:
            os._exit(70)
        return json.loads(line)


_wire: _Wire | None = None


def _aslr_off() -> bool:
    try:
        with open("/proc/self/personality", encoding="ascii") as f:
            if int(f.read().strip(), 16) & ADDR_NO_RANDOMIZE:
                return True
        with open("/proc/sys/kernel/randomize_va_space", encoding="ascii") as f:
            return f.read().strip() == "0"
    except (OSError, ValueError):
        return False


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def _jsonable(params) -> dict | None:
    if not params:
        return None
    plain = (str, int, float, bool, type(None))
    return {str(k): v if isinstance(v, plain) else repr(v) for k, v in dict(params).items()}


def _excerpt_of(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:_EXCERPT]


def _report_excerpt(report) -> str:
    # The crash line names the exception and its message ("AssertionError: the result changed");
    # the "E" lines of a rewritten assert end with its diff, which says less.
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    message = getattr(crash, "message", None)
    if message:
        return " | ".join(line.strip() for line in message.splitlines() if line.strip())[:_EXCERPT]
    text = getattr(report, "longreprtext", "") or str(getattr(report, "longrepr", "") or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.lstrip().startswith("E ")]
    picked = (errors or lines)[-3:]
    return " | ".join(line.strip() for line in picked)[-_EXCERPT:]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    global _wire
    spec = os.environ.get(ENV_FDS)
    if not spec or _wire is not None:
        return  # loaded but not driven by Bolt: stay inert
    _wire = _Wire(spec)
    _patch_fixture()
    try:
        from importlib.metadata import version
        benchmark_version = version("pytest-benchmark")
    except Exception:
        benchmark_version = None
    _wire.send(ev="hello", pid=os.getpid(), cpus=_cpus(), aslr_off=_aslr_off(), python=sys.version.split()[0],
               pytest_benchmark=benchmark_version)


def pytest_collectreport(report):
    if _wire is not None and report.failed:
        _wire.send(ev="collect_error", nodeid=report.nodeid, excerpt=_report_excerpt(report))


def _collected_group(item):
    marker = item.get_closest_marker("benchmark")
    return marker.kwargs.get("group") if marker is not None else None


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    yield  # the outermost wrapper: Bolt's order is the last word
    if _wire is None:
        return
    keep_shard(config, items)  # a shard's worker sees only its share (BOLT_SHARD_SELECT)
    # Only tests that use the `benchmark` fixture are stages; Bolt picks which run, and in what order.
    stages = [item for item in items if "benchmark" in getattr(item, "fixturenames", ())]
    _wire.send(ev="collected", items=[{"nodeid": item.nodeid, "group": _collected_group(item),
                                       "params": _jsonable(getattr(getattr(item, "callspec", None), "params", None))}
                                      for item in stages])
    command = _wire.recv()
    by_id = {item.nodeid: item for item in stages}
    chosen = [by_id[nodeid] for nodeid in command.get("stages", []) if nodeid in by_id]
    kept = {id(item) for item in chosen}
    dropped = [item for item in items if id(item) not in kept]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = chosen


def pytest_runtest_logreport(report):
    if _wire is not None and report.failed:
        _wire.send(ev="failed", nodeid=report.nodeid, when=report.when, excerpt=_report_excerpt(report))


def pytest_runtest_logfinish(nodeid, location):
    if _wire is not None:
        _wire.send(ev="end", nodeid=nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _wire is not None:
        _wire.send(ev="finished", status=int(exitstatus))


def _patch_fixture():
    from pytest_benchmark.fixture import BenchmarkFixture, FixtureAlreadyUsed

    if getattr(BenchmarkFixture, "_bolt_paired", False):
        return

    def claim(fixture, mode):
        if fixture._mode:
            fixture.has_error = True
            raise FixtureAlreadyUsed(f"Fixture can only be used once. Previously it was used in {fixture._mode} mode.")
        fixture._mode = mode

    def __call__(self, function_to_benchmark, *args, **kwargs):
        claim(self, "benchmark(...)")
        return _serve(self, function_to_benchmark, lambda: (args, kwargs), None, False)

    def pedantic(self, target, args=(), kwargs=None, setup=None, teardown=None, rounds=1, warmup_rounds=0,
                 iterations=1):
        claim(self, "benchmark.pedantic(...)")
        kwargs = kwargs or {}
        # The same checks as pytest-benchmark's, so a test that fails there fails here too.
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError("Must have positive int for `iterations`.")
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError("Must have positive int for `rounds`.")
        if not isinstance(warmup_rounds, int) or warmup_rounds < 0:
            raise ValueError("Must have positive int for `warmup_rounds`.")
        if iterations > 1 and setup:
            raise ValueError("Can't use more than 1 `iterations` with a `setup` function.")

        arguments = pedantic_arguments(args, kwargs, setup)

        # Bolt decides how many calls a block makes; rounds, iterations and warmup_rounds are pytest-benchmark's.
        return _serve(self, target, arguments, teardown, setup is not None or teardown is not None)

    BenchmarkFixture.__call__ = __call__
    BenchmarkFixture.pedantic = pedantic
    BenchmarkFixture._bolt_paired = True


def _serve(fixture, fn, arguments, teardown, per_call):
    """Announce the stage, then obey Bolt until it says done or skip."""
    wire = _wire
    wire.send(ev="stage", name=fixture.fullname, group=fixture.group, params=_jsonable(fixture.params),
              mode=fixture._mode)
    result = _NOTHING
    while True:
        command = wire.recv()
        kind = command.get("cmd")
        if kind == "block":
            before = speed_probe()
            cpu_before = (time.thread_time(), time.process_time())
            switched = _preemptions()
            try:
                seconds, wall, result = _block(fn, arguments, teardown, per_call, int(command["calls"]),
                                         bool(getattr(fixture, "_disable_gc", False)))
            except Exception as exc:
                fixture.has_error = True
                wire.send(ev="error", name=fixture.fullname, excerpt=_excerpt_of(exc))
                raise
            # CPU time of this thread and of the whole process over the block: a stage whose work runs on
            # other threads must not be timed pinned to one CPU (Bolt sends it to whole rounds).
            thread_cpu, process_cpu = time.thread_time() - cpu_before[0], time.process_time() - cpu_before[1]
            # Times the scheduler took the CPU from this thread inside the block: another process's time
            # slice is then part of the block's time, which no probe before or after it can see.
            preempted = _preemptions() - switched
            wire.send(ev="block", seconds=seconds, wall=wall, probe=[before, speed_probe()],
                      cpu=[thread_cpu, process_cpu], preempted=preempted)
        elif kind == "done" and result is not _NOTHING:
            return result
        else:  # skip, or done before any block: one plain call, as pytest-benchmark's disabled mode does
            args, kwargs = arguments()
            result = fn(*args, **kwargs)
            if teardown is not None:
                teardown(*args, **kwargs)
            return result


def _preemptions() -> int:
    """Involuntary context switches of this thread so far (0 where the count is not available)."""
    try:
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    except (AttributeError, OSError):
        return 0


def _block(fn, arguments, teardown, per_call, calls, disable_gc):
    """(seconds spent in the calls, seconds of the whole block with setup and teardown, the last call's value)."""
    gc_was_on = gc.isenabled()
    if disable_gc:
        gc.disable()
    try:
        if not per_call:
            args, kwargs = arguments()
            started = time.perf_counter()
            for _ in range(calls):
                result = fn(*args, **kwargs)
            spent = time.perf_counter() - started
            return spent, spent, result
        spent = 0.0
        began = time.perf_counter()
        for _ in range(calls):
            args, kwargs = arguments()
            started = time.perf_counter()
            result = fn(*args, **kwargs)
            spent += time.perf_counter() - started
            if teardown is not None:
                teardown(*args, **kwargs)
        return spent, time.perf_counter() - began, result
    finally:
        if disable_gc and gc_was_on:
            gc.enable()
