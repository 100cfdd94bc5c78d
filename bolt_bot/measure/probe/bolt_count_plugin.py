"""A pytest plugin run under callgrind (instruction counts): reports the stages, their codspeed uris and outcomes.

Standalone on purpose (it imports nothing from Bolt). Loaded with `-p bolt_count_plugin`, found through
PYTHONPATH, whose entry it takes out of sys.path again at once: a path more in sys.path moved a stage's
count between runs. Events are JSON lines flushed after each one (to BOLT_COUNT_EVENTS), so a crash loses
nothing already reported.

With pytest-benchmark blocked (`-p no:benchmark`: loaded, it runs git/hg/file subprocesses at start-up,
which made reruns differ by a few hundred instructions), its options (e.g. in the project's addopts) and
hooks (in its conftest.py) are still made known, and `benchmark` is pytest-codspeed's fixture.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from bolt_shard_select import keep_shard  # imported while PYTHONPATH's entry is still in sys.path

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
_EVENTS = os.environ.get("BOLT_COUNT_EVENTS")


class _BenchmarkStubs:
    # Registered from pytest_addoption, after the rewrite hook is set up, so importing pytest_benchmark
    # here does not trigger "already imported" warnings.
    @pytest.hookimpl(tryfirst=True)
    def pytest_load_initial_conftests(self, early_config, parser, args):
        try:
            import pytest_benchmark.hookspec as spec

            early_config.pluginmanager.add_hookspecs(spec)
        except Exception:
            pass
        try:
            import pytest_benchmark.plugin as plugin

            plugin.get_tag = lambda *a, **k: "bolt"  # no git/hg subprocess at start-up
            plugin.pytest_addoption(parser)
        except Exception:
            pass

    @pytest.fixture
    def benchmark(self, codspeed_benchmark):
        # pytest < 9.1: pytest-codspeed swaps an existing `benchmark` fixture for its own.
        return codspeed_benchmark


def pytest_addoption(parser, pluginmanager):
    if pluginmanager.is_blocked("benchmark") and not pluginmanager.has_plugin("bolt-benchmark-stubs"):
        pluginmanager.register(_BenchmarkStubs(), "bolt-benchmark-stubs")


_out = []  # the events file, opened once: the same work around every stage


def _emit(**event):
    if not _EVENTS:
        return
    if not _out:
        _out.append(open(_EVENTS, "a", encoding="utf-8"))
    _out[0].write(json.dumps(event) + "\n")
    _out[0].flush()


def _warm_up_first():
    # pytest-codspeed calls a benchmark once before the counted call only where Python has the perf
    # trampoline (3.12+); elsewhere the count is of the cold first call: caches filled, lazy imports,
    # unspecialised bytecode. A change that adds a cache then reads as a regression (statemachine's
    # "cache signature binding results": +5.4 % counted, 1.03x in wall time). One warm-up everywhere.
    try:
        import pytest_codspeed.instruments.analysis as analysis
        analysis.SUPPORTS_PERF_TRAMPOLINE = True  # read there only for the warm-up and a log line
    except Exception:
        pass


def _codspeed_markers(items):
    # pytest-codspeed reads pytest-benchmark's own `benchmark` marker and raises on its options
    # (`@pytest.mark.benchmark(min_rounds=20)`: "Unknown kwargs passed to benchmark marker"). Its own
    # marker takes precedence, so each such item gets one holding only the options codspeed knows.
    try:
        import dataclasses
        from pytest_codspeed.config import BenchmarkMarkerOptions
        known = {f.name for f in dataclasses.fields(BenchmarkMarkerOptions)}
    except Exception:
        known = {"group"}
    for item in items:
        marker = item.get_closest_marker("benchmark")
        if marker is None or item.get_closest_marker("codspeed_benchmark") is not None:
            continue
        if marker.args or set(marker.kwargs) - known:
            item.add_marker(pytest.mark.codspeed_benchmark(**{k: v for k, v in marker.kwargs.items() if k in known}))


@pytest.hookimpl(hookwrapper=True)
def pytest_collection_modifyitems(session, config, items):
    yield
    # Only tests using the `benchmark` fixture are stages (as on the wall-time path);
    # codspeed would otherwise also measure whole tests marked `benchmark`.
    keep = [i for i in items if "benchmark" in getattr(i, "fixturenames", ())]
    if len(keep) != len(items):
        drop = [i for i in items if "benchmark" not in getattr(i, "fixturenames", ())]
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    keep_shard(config, items)
    _codspeed_markers(items)


def pytest_collection_finish(session):
    _warm_up_first()
    try:
        from pytest_codspeed.utils import get_git_relative_uri_and_name as uri_of
    except Exception:
        uri_of = None
    root = session.config.rootpath
    for item in session.items:
        uri = None
        if uri_of is not None:
            try:
                uri = uri_of(item.nodeid, root)[0]
            except Exception:
                uri = None
        _emit(ev="item", nodeid=item.nodeid, uri=uri)
    _emit(ev="collected", n=len(session.items), rootdir=str(root))


def pytest_collectreport(report):
    if report.failed:
        _emit(ev="collect_error", nodeid=report.nodeid, text=_excerpt(report))


def pytest_runtest_logstart(nodeid, location):
    _emit(ev="start", nodeid=nodeid)


def pytest_runtest_logreport(report):
    if report.failed:
        _emit(ev="failed", nodeid=report.nodeid, when=report.when, text=_excerpt(report))
    elif report.skipped:
        _emit(ev="skipped", nodeid=report.nodeid, when=report.when)


def pytest_runtest_logfinish(nodeid, location):
    _emit(ev="finish", nodeid=nodeid)


def _excerpt(report):
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    text = getattr(crash, "message", None)
    if not text:
        lines = [l for l in str(getattr(report, "longreprtext", "") or report.longrepr).splitlines() if l.strip()]
        text = lines[-1] if lines else "failed"
    return text[:2000]
