"""Standalone pytest plugin: one call of each benchmark traced by memray (allocations, bytes, peak, top lines).

Runs inside the measured environment (pytest, pytest-benchmark and memray; nothing of Bolt). Loaded with
`-p bolt_memory_plugin`; events are JSON lines flushed at once to BOLT_MEMORY_EVENTS, so a crash loses
nothing already reported. pytest-benchmark's `benchmark(fn, *a, **kw)` and `benchmark.pedantic(...)` are
replaced for the whole (dedicated) process: one untraced warm-up call (imports, caches, lazy set-up),
`gc.collect()`, then ONE call under `memray.Tracker(trace_python_allocators=True)`, whose records are read
back at once. The test's own asserts run on the traced call's result as they would on pytest-benchmark's.

Why memray and not tracemalloc (docs/measurement.md, "Memory"): tracemalloc sees only the blocks alive
when it is asked, so a call that allocates a million temporaries and frees them counts as nothing; memray
records every allocation and free in order. What is counted is what the Python allocators and malloc were
asked for; the mmap/munmap of pymalloc's arenas are left out, as their number depends on where earlier
objects lie (the heap layout), not on the stage's code.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time

import pytest
from bolt_pedantic import pedantic_arguments  # PYTHONPATH holds this folder
from bolt_shard_select import keep_shard  # PYTHONPATH holds this folder

_EVENTS = os.environ.get("BOLT_MEMORY_EVENTS")
_TOP = int(os.environ.get("BOLT_MEMORY_TOP") or 10)
_HERE = os.path.abspath(__file__)
_root: list[str] = []  # the checkout (pytest's rootdir): allocating lines are named relative to it
_out: list = []  # the events file, opened once


def _emit(**event):
    if not _EVENTS:
        return
    if not _out:
        _out.append(open(_EVENTS, "a", encoding="utf-8"))
    _out[0].write(json.dumps(event) + "\n")
    _out[0].flush()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    _root.append(os.path.realpath(str(config.rootpath)))
    # pytest-benchmark configures after this: it must neither time, save nor compare anything here, and
    # its storage folder goes to a temporary place, not into the checkout.
    for name, value in (("benchmark_disable", True), ("benchmark_enable", False), ("benchmark_only", False),
                        ("benchmark_skip", False), ("benchmark_autosave", None), ("benchmark_save", None),
                        ("benchmark_compare", []), ("benchmark_compare_fail", None), ("benchmark_histogram", []),
                        ("benchmark_cprofile", None), ("benchmark_json", None),
                        ("benchmark_storage", "file://" + os.path.join(tempfile.gettempdir(), "bolt-memory-benchmarks"))):
        if hasattr(config.option, name):
            setattr(config.option, name, value)
    _patch_fixture()


def pytest_collection_modifyitems(session, config, items):
    keep = [i for i in items if "benchmark" in getattr(i, "fixturenames", ())]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if "benchmark" not in getattr(i, "fixturenames", ())])
        items[:] = keep
    keep_shard(config, items)


def pytest_collection_finish(session):
    _emit(ev="collected", n=len(session.items), nodeids=[i.nodeid for i in session.items])


def pytest_collectreport(report):
    if report.failed:
        _emit(ev="collect_error", nodeid=report.nodeid, text=_excerpt(report))


def pytest_runtest_logstart(nodeid, location):
    _emit(ev="start", nodeid=nodeid)


def pytest_runtest_logreport(report):
    if report.failed:
        _emit(ev="failed", nodeid=report.nodeid, when=report.when, text=_excerpt(report))


def pytest_runtest_logfinish(nodeid, location):
    _emit(ev="finish", nodeid=nodeid)


def _excerpt(report):
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    text = getattr(crash, "message", None)
    if not text:
        lines = [l for l in str(getattr(report, "longreprtext", "") or report.longrepr).splitlines() if l.strip()]
        text = lines[-1] if lines else "failed"
    return text[:2000]


def _patch_fixture():
    from pytest_benchmark.fixture import BenchmarkFixture

    if getattr(BenchmarkFixture, "_bolt_memory_patched", False):
        return

    def __call__(self, function_to_benchmark, *args, **kwargs):
        self._mode = "benchmark(...)"
        return _measure(self, function_to_benchmark, lambda: (args, kwargs), None)

    def pedantic(self, target, args=(), kwargs=None, setup=None, teardown=None, rounds=1, warmup_rounds=0,
                 iterations=1):
        self._mode = "benchmark.pedantic(...)"
        return _measure(self, target, pedantic_arguments(args, kwargs or {}, setup), teardown)

    BenchmarkFixture.__call__ = __call__
    BenchmarkFixture.pedantic = pedantic
    BenchmarkFixture._bolt_memory_patched = True


def _measure(fixture, target, arguments, teardown):
    import memray  # here, not at the top: `--collect-only` and a missing memray still report the stages

    stage = getattr(fixture, "fullname", None) or fixture.name
    args, kwargs = arguments()
    target(*args, **kwargs)  # warm-up, not traced
    if teardown is not None:
        teardown(*args, **kwargs)
    args, kwargs = arguments()
    gc.collect()
    fd, path = tempfile.mkstemp(prefix="bolt-memory-", suffix=".bin")
    os.close(fd)
    os.unlink(path)  # memray refuses to overwrite a file
    started = time.perf_counter()
    try:
        with memray.Tracker(path, native_traces=False, trace_python_allocators=True, follow_fork=False,
                            file_format=memray.FileFormat.ALL_ALLOCATIONS):
            result = _bolt_traced_call(target, args, kwargs)
        traced = time.perf_counter() - started
        record = _read(memray, path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    if teardown is not None:
        teardown(*args, **kwargs)
    _emit(ev="memory", nodeid=stage, seconds=traced, **record)
    return result


def _bolt_traced_call(target, args, kwargs):
    # The records whose stack holds this frame are the call's; the tracker's own start and stop are not.
    return target(*args, **kwargs)


_ALLOCATING = {"MALLOC", "CALLOC", "REALLOC", "POSIX_MEMALIGN", "ALIGNED_ALLOC", "MEMALIGN", "VALLOC", "PVALLOC",
               "PYMALLOC_MALLOC", "PYMALLOC_CALLOC", "PYMALLOC_REALLOC"}


def _read(memray, path):
    reader = memray.FileReader(path)
    try:
        allocating = {int(kind) for kind in memray.AllocatorType if kind.name in _ALLOCATING}
        stacks: dict = {}  # (thread, stack id) -> [the line charged, through the traced call?, allocations, bytes]
        for rec in reader.get_allocation_records():
            if int(rec.allocator) not in allocating:
                continue
            key = (rec.tid, rec.stack_id)
            if key not in stacks:
                stacks[key] = [*_site(rec.stack_trace()), 0, 0]
            stacks[key][2] += rec.n_allocations
            stacks[key][3] += rec.size
        peak = int(reader.metadata.peak_memory)
    finally:
        reader.close()
    # The calling thread's allocations outside the traced call are the tracker's own; every other thread's
    # were made while the call ran (a pool the stage uses), so they count.
    calling = {tid for (tid, _), (_, through, _, _) in stacks.items() if through}
    lines: dict = {}  # (where, function) -> [allocations, bytes]
    count = total = 0
    for (tid, _), (site, through, n, size) in stacks.items():
        if through or tid not in calling:
            count += n
            total += size
            line = lines.setdefault(site, [0, 0])
            line[0] += n
            line[1] += size
    top = sorted(lines.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))[:_TOP]
    return {"allocations": count, "allocated": total, "peak": peak,
            "top": [{"where": w, "function": f, "allocations": n, "allocated": b} for (w, f), (n, b) in top]}


def _site(stack):
    """((where, function) of the line charged with an allocation, whether its stack passes through the traced
    call): the innermost frame in the checkout below that call, else the innermost frame."""
    through = False
    for depth, (function, filename, _) in enumerate(stack):
        if function == "_bolt_traced_call" and os.path.abspath(filename) == _HERE:
            stack, through = stack[:depth], True
            break
    if not stack:
        return ("<the call itself>" if through else "<no Python frame>", None), through
    root = _root[0] if _root else os.getcwd()
    for function, filename, lineno in stack:
        if not os.path.isabs(filename):
            continue  # "<string>" (exec'd code), "<frozen importlib._bootstrap>": not a file of the checkout
        real = os.path.realpath(filename)
        if real.startswith(root + os.sep) and f"{os.sep}site-packages{os.sep}" not in real:
            return (f"{os.path.relpath(real, root)}:{lineno}", function), through
    function, filename, lineno = stack[0]
    where = f"{filename}:{lineno}" if filename.startswith("<") else f"<{_module_path(filename)}>:{lineno}"
    return (where, function), through


def _module_path(filename):
    """A file outside the checkout named by its path below site-packages or the standard library."""
    parts = filename.replace(os.sep, "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1:])
    return "/".join(parts[-2:]) if len(parts) > 1 else filename
