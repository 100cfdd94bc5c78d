"""Standalone pytest plugin: cProfile a fixed number of calls of each benchmarked function."""

# This module runs inside the *measured* project's virtual environment, which has pytest and
# pytest-benchmark but not Bolt: it must import nothing from bolt_bot, and only the standard
# library, pytest and pytest-benchmark. Load it with
#     PYTHONPATH=<this folder> python -m pytest -p bolt_profile_plugin --bolt-profile-dir DIR ...
# (or BOLT_PROFILE_DIR=DIR in the environment instead of the option).
#
# How a stage is profiled: pytest-benchmark's own loop calibrates how many times it calls the
# function, so the number of calls differs between base and head and with machine load. Instead
# this plugin replaces `BenchmarkFixture.__call__` and `BenchmarkFixture.pedantic` for the whole
# (dedicated) pytest process: each benchmark makes one unprofiled warm-up call (imports, caches,
# lazy initialisation happen there, as they do in pytest-benchmark's warm-up), then exactly
# `--bolt-profile-calls` calls under one cProfile.Profile that is enabled only around the target
# itself (never around a pedantic `setup`/`teardown`). The index records the number of calls so
# readers normalise every number to "per call of the stage". An optional time budget can stop
# early for very slow stages; the per-call normalisation keeps both sides comparable then too.

from __future__ import annotations

import contextlib
import cProfile
import gc
import hashlib
import json
import os
import re
import time
import tracemalloc
from pathlib import Path

import pytest
from bolt_pedantic import pedantic_arguments  # PYTHONPATH holds this folder
from bolt_shard_select import keep_shard  # PYTHONPATH holds this folder

INDEX_NAME = "index.json"
SIDECAR_SUFFIX = ".stage.json"
DEFAULT_CALLS = 10
ENV_DIR = "BOLT_PROFILE_DIR"
ENV_CALLS = "BOLT_PROFILE_CALLS"
ENV_MAX_SECONDS = "BOLT_PROFILE_MAX_SECONDS"
ENV_SELECT = "BOLT_PROFILE_SELECT"
MEMORY_TOP = 10  # allocating lines kept per stage


def pytest_addoption(parser):
    group = parser.getgroup("bolt-profile", "Bolt: cProfile each benchmark for a fixed number of calls")
    group.addoption("--bolt-profile-dir", default=None, help=f"write one .pstats per benchmark here (or ${ENV_DIR})")
    group.addoption("--bolt-profile-calls", type=int, default=None, help=f"profiled calls per benchmark (default {DEFAULT_CALLS})")
    group.addoption("--bolt-profile-max-seconds", type=float, default=None, help="stop profiling a benchmark after this much time (at least one call)")
    group.addoption("--bolt-profile-select", default=None, help="file with one node id per line: profile only these")
    group.addoption("--bolt-profile-memory", action="store_true", default=False,
                    help="also trace one call of each benchmark with tracemalloc (its allocating lines)")


class _Settings:
    def __init__(self, out_dir: Path, calls: int, max_seconds: float | None, select: set[str] | None,
                 memory: bool = False):
        self.out_dir = out_dir
        self.memory = memory
        self.calls = calls
        self.max_seconds = max_seconds
        self.select = select


_settings: _Settings | None = None


def _option(config, name: str, env: str):
    value = config.getoption(name)
    return value if value is not None else os.environ.get(env) or None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    global _settings
    out = _option(config, "bolt_profile_dir", ENV_DIR)
    if not out:
        return  # loaded but not asked to profile: stay inert
    calls = int(_option(config, "bolt_profile_calls", ENV_CALLS) or DEFAULT_CALLS)
    if calls < 1:
        raise pytest.UsageError("--bolt-profile-calls must be at least 1")
    max_seconds = _option(config, "bolt_profile_max_seconds", ENV_MAX_SECONDS)
    select_file = _option(config, "bolt_profile_select", ENV_SELECT)
    select = None
    if select_file:
        lines = Path(select_file).read_text(encoding="utf-8").splitlines()
        select = {line.strip() for line in lines if line.strip()}
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    _settings = _Settings(out_dir, calls, float(max_seconds) if max_seconds else None, select,
                          bool(config.getoption("bolt_profile_memory")))
    _neutralise_benchmark_options(config, out_dir)
    _patch_fixture()


def _neutralise_benchmark_options(config, out_dir: Path):
    # This runs before pytest-benchmark builds its session (it configures trylast), so the project's
    # addopts cannot make it time, save, compare or fail anything in a profiling run; --benchmark-only
    # would clash with --benchmark-disable, and non-benchmark tests are deselected below instead.
    overrides = {
        "benchmark_disable": True,
        "benchmark_enable": False,
        "benchmark_only": False,
        "benchmark_skip": False,
        "benchmark_autosave": None,
        "benchmark_save": None,
        "benchmark_compare": [],
        "benchmark_compare_fail": None,
        "benchmark_histogram": [],
        "benchmark_cprofile": None,
        # pytest-benchmark creates its storage folder even when disabled; keep the checkout clean
        "benchmark_storage": "file://" + str(out_dir / ".benchmarks"),
    }
    for name, value in overrides.items():
        if hasattr(config.option, name):
            setattr(config.option, name, value)
    handle = getattr(config.option, "benchmark_json", None)
    if handle is not None:
        with contextlib.suppress(Exception):  # a stray file handle must not stop profiling
            handle.close()
        config.option.benchmark_json = None


def pytest_collection_modifyitems(session, config, items):
    keep_shard(config, items)
    if _settings is None:
        return
    keep, drop = [], []
    for item in items:
        uses_benchmark = "benchmark" in getattr(item, "fixturenames", ())
        wanted = _settings.select is None or item.nodeid in _settings.select
        (keep if uses_benchmark and wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _patch_fixture():
    from pytest_benchmark.fixture import BenchmarkFixture

    if getattr(BenchmarkFixture, "_bolt_patched", False):
        return

    def __call__(self, function_to_benchmark, *args, **kwargs):
        self._mode = "benchmark(...)"
        return _profile(self, function_to_benchmark, lambda: (args, kwargs), None, "call")

    def pedantic(self, target, args=(), kwargs=None, setup=None, teardown=None, rounds=1, warmup_rounds=0, iterations=1):
        self._mode = "benchmark.pedantic(...)"
        kwargs = kwargs or {}

        arguments = pedantic_arguments(args, kwargs, setup)

        return _profile(self, target, arguments, teardown, "pedantic")

    BenchmarkFixture.__call__ = __call__
    BenchmarkFixture.pedantic = pedantic
    BenchmarkFixture._bolt_patched = True


def _profile(fixture, target, arguments, teardown, mode):
    settings = _settings
    stage = getattr(fixture, "fullname", None) or fixture.name
    args, kwargs = arguments()
    result = target(*args, **kwargs)  # warm-up, not profiled
    if teardown is not None:
        teardown(*args, **kwargs)
    profiler = cProfile.Profile()
    calls = 0
    spent = 0.0
    while calls < settings.calls:
        args, kwargs = arguments()
        started = time.perf_counter()
        profiler.enable()
        try:
            result = target(*args, **kwargs)
        finally:
            profiler.disable()
        spent += time.perf_counter() - started
        calls += 1
        if teardown is not None:
            teardown(*args, **kwargs)
        if settings.max_seconds is not None and spent >= settings.max_seconds:
            break
    memory = _trace_memory(target, arguments, teardown) if settings.memory else None
    _dump(stage, profiler, calls, spent, mode, settings.out_dir, memory)
    return result


def _trace_memory(target, arguments, teardown) -> dict:
    """The stage's memory picture, after the profiled calls: one warm-up, gc.collect(), then one call under
    tracemalloc. Its snapshot, taken as the call returns (its result still alive), holds the blocks the call
    allocated and still holds, by line; the peak is the most in use during the call above its start, so it
    counts temporaries the snapshot no longer sees. Files stay absolute: Bolt makes them relative."""
    try:
        args, kwargs = arguments()
        target(*args, **kwargs)  # warm-up: caches and lazy imports fill here, not in the traced call
        if teardown is not None:
            teardown(*args, **kwargs)
        args, kwargs = arguments()
        gc.collect()
        if tracemalloc.is_tracing():  # PYTHONTRACEMALLOC: start afresh, this process is Bolt's alone
            tracemalloc.stop()
        tracemalloc.start()
        try:
            start, _ = tracemalloc.get_traced_memory()
            result = target(*args, **kwargs)
            snapshot = tracemalloc.take_snapshot()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del result
        if teardown is not None:
            teardown(*args, **kwargs)
    except Exception as exc:  # the profile stands without it; say why there is no memory picture
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, __file__),
                                       tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snapshot.statistics("lineno")
    top = [{"file": s.traceback[0].filename, "line": s.traceback[0].lineno, "allocations": s.count,
            "bytes": s.size} for s in stats[:MEMORY_TOP]]
    return {"held_blocks": sum(s.count for s in stats), "held_bytes": sum(s.size for s in stats),
            "peak": max(peak - start, 0), "top": top}


def _file_stem(stage: str) -> str:
    # Readable and filesystem-safe, with a hash so that different ids never collide.
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", stage).strip("._")[:80] or "stage"
    digest = hashlib.sha1(stage.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def _dump(stage, profiler, calls, spent, mode, out_dir: Path, memory: dict | None = None):
    stem = _file_stem(stage)
    pstats_path = out_dir / f"{stem}.pstats"
    profiler.dump_stats(str(pstats_path))
    record = {
        "stage": stage,
        "file": pstats_path.name,
        "calls": calls,
        "profiled_seconds": spent,
        "mode": mode,
    }
    if memory is not None:
        record["memory"] = memory
    # One sidecar per stage, written atomically: safe under pytest-xdist workers and readable even
    # when the process is killed by a timeout before the session finishes.
    tmp = out_dir / f".{stem}.tmp"
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(out_dir / f"{stem}{SIDECAR_SUFFIX}")


def read_index(out_dir: Path) -> dict:
    """Stage id -> record, gathered from the per-stage sidecar files."""
    stages = {}
    for path in sorted(Path(out_dir).glob(f"*{SIDECAR_SUFFIX}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        stages[record["stage"]] = {k: v for k, v in record.items() if k != "stage"}
    return stages


def pytest_sessionfinish(session, exitstatus):
    if _settings is None or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    index = {"version": 1, "calls": _settings.calls, "stages": read_index(_settings.out_dir)}
    tmp = _settings.out_dir / f".{INDEX_NAME}.tmp"
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(_settings.out_dir / INDEX_NAME)
