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
