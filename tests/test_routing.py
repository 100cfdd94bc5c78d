"""`--measure auto` routes the same stages the same way on every try, for reasons the comment can show."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bolt_bot.measure import plan as instrplan
from bolt_bot.measure import routing
from bolt_bot.progress import Progress
from bolt_bot.settings import Settings
from bolt_bot.measure.walltime import SideSetup

# Four stages: a sub-µs single-threaded lookup (where a CPU/wall ratio read 502 %), a tiny computation,
# one that sleeps 2 ms a call, and one whose work runs on four threads at once (hashlib lets go of the
# GIL on large buffers). All four take well under SHORT_CALL a call: only evidence can route them.
_MODULE = '''"""Stages for the routing test."""
import hashlib
import threading
import time

WORDS = frozenset(f"w{i}" for i in range(100))
DATA = b"x" * 2_000_000


def contains():
    return "w42" in WORDS


def tiny():
    return sum(i * i for i in range(40))


def sleepy():
    time.sleep(0.002)


def threaded():
    def work():
        for _ in range(4):
            hashlib.sha256(DATA).digest()
    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
'''
_BENCH = '''import pytest
import tinystages


@pytest.mark.parametrize("stage", ["contains", "tiny", "sleepy", "threaded"])
def test_stage(benchmark, stage):
    benchmark(getattr(tinystages, stage))
'''


def _node(stage: str) -> str:
    return f"bench/test_stages.py::test_stage[{stage}]"


@pytest.fixture()
def setups(tmp_path):
    out = {}
    for side in ("base", "head"):
        checkout = tmp_path / side
        (checkout / "bench").mkdir(parents=True)
        (checkout / "tinystages.py").write_text(_MODULE)
        (checkout / "bench" / "test_stages.py").write_text(_BENCH)
        # The interpreter running these tests has pytest-benchmark; the checkout is the folder, so importable.
        out[side] = SideSetup(Path(sys.executable), checkout, {"PATH": "/usr/bin:/bin"})
    return out


@pytest.mark.slow
def test_the_same_commits_route_the_same_stages_on_every_try(setups, tmp_path):
    splits = [instrplan.discover(Settings(), setups, tmp_path / f"try-{i}", Progress(quiet=True)) for i in range(4)]
    for split in splits:
        assert split.counted == [_node("contains"), _node("tiny")], split.reasons
        assert split.timed == [_node("sleepy"), _node("threaded")], split.reasons
        assert "blocked" in split.reasons[_node("sleepy")] and "I/O" in split.reasons[_node("sleepy")]
        assert "several threads" in split.reasons[_node("threaded")]
        assert split.seconds["base"][_node("contains")] < 1e-6  # the sub-µs stage really is one
    # Evidence came from the plugin in the measured process, one line per stage and side.
    seen = routing.read_evidence(routing.evidence_file(tmp_path / "try-0" / "head"))
    assert set(seen) == {_node(s) for s in ("contains", "tiny", "sleepy", "threaded")}
    assert seen[_node("contains")].voluntary == 0 and seen[_node("contains")].calls > 1000


@pytest.mark.slow
def test_walltime_stages_send_a_counted_stage_to_wall_time_with_its_pattern(setups, tmp_path):
    split = instrplan.discover(Settings(walltime_stages=["*tiny*"]), setups, tmp_path, Progress(quiet=True))
    assert split.counted == [_node("contains")]
    assert split.reasons[_node("tiny")] == "matches walltime_stages '*tiny*'"
