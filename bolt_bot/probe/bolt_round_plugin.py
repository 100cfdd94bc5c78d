"""A pytest plugin run inside the measured environment: reports each test's outcome as it happens.

Standalone on purpose (it imports nothing from Bolt): the measured project's environment has pytest and
pytest-benchmark but not Bolt. Events are JSON lines flushed at once, so a round that hangs or crashes
still tells which stage it was running and which had failed.

With BOLT_SPEED_PROBE set (Bolt's rounds), each test call is bracketed by a speed probe: a fixed
pure-Python loop timed just before and just after the stage is measured. Some virtual machines switch
between full speed and a phase 1.5-2x slower, for 50 ms up to seconds; the probes tell Bolt which
measurements ran at full speed (see bolt_bot/speedgate.py).
"""

from __future__ import annotations

import json
import os

import pytest
from bolt_speed_probe import speed_probe  # PYTHONPATH holds this folder

_EVENTS = os.environ.get("BOLT_ROUND_EVENTS")
_PROBE = bool(os.environ.get("BOLT_SPEED_PROBE"))
_EXCERPT = 600


def _emit(**event):
    if not _EVENTS:
        return
    with open(_EVENTS, "a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\n")
        out.flush()


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
    if not _PROBE:
        yield
        return
    before = speed_probe()
    yield
    _emit(event="speed", nodeid=item.nodeid, before=before, after=speed_probe())
