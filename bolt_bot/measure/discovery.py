"""`--measure auto`'s discovery: one short wall-time round per side chooses each stage's measure, and says why."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.measure import routing, sandbox
from bolt_bot.measure.rounds import RoundResult, run_round
from bolt_bot.measure.walltime import BASE, HEAD, SideSetup
from bolt_bot.progress import Progress
from bolt_bot.settings import Settings
from bolt_bot.words import plural

SHORT_CALL = 0.1  # seconds: stages whose call takes longer are timed (callgrind costs about 70x)
# The discovery round: as short as pytest-benchmark allows; one call is enough to see a long stage.
DISCOVERY_ARGS = ["--benchmark-max-time=0.02", "--benchmark-min-rounds=1"]


@dataclass
class Split:
    """The per-stage choice of `--measure auto`."""

    counted: list[str] = field(default_factory=list)  # node ids measured by instruction counts
    timed: list[str] = field(default_factory=list)  # node ids measured by wall time
    reasons: dict[str, str] = field(default_factory=dict)  # timed stage → why
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # side → stage → discovery median


def discover(settings: Settings, setups: dict[str, SideSetup], workdir: Path, progress: Progress,
             round_fn: Callable[..., RoundResult] = run_round) -> Split:
    """One short wall-time round per side: which stage goes where, and why each timed stage left counts.

    A stage is counted when its call takes at most SHORT_CALL on every side it exists on, it matches
    no `walltime_stages` pattern, and on neither side did it wait or compute on other threads
    (bolt_bot/measure/routing.py: blocking and per-thread CPU seen by the round plugin, never a CPU/wall ratio,
    so the same commits route the same stages on every try). Failed or hung stages are timed: the
    wall-time path reports them as usual.
    """
    calls: dict[str, float] = {}
    reasons: dict[str, str] = {}
    seconds: dict[str, dict[str, float]] = {}
    evidence: dict[str, dict[str, routing.CallEvidence]] = {}
    broken: set[str] = set()
    for side, setup in setups.items():
        found = routing.evidence_file(workdir / side)
        found.parent.mkdir(parents=True, exist_ok=True)
        found.unlink(missing_ok=True)
        env = dict(setup.env) if setup.env is not None else sandbox.side_environ()
        env[routing.EVIDENCE_VARIABLE] = str(found)
        result = _discovery_round(round_fn, SideSetup(setup.python, setup.checkout, env), settings,
                                  [*settings.benchmarks], workdir / side, "wall")
        progress.step(f"discovery {side}: {plural(len(result.records), 'stage')} in {result.seconds:.1f} s")
        seconds[side] = {r.name: r.median for r in result.records}
        evidence[side] = routing.read_evidence(found)
        for record in result.records:
            calls[record.name] = max(calls.get(record.name, 0.0), record.median)
        broken |= set(result.failed) | ({result.hung} if result.hung else set())
    for name in sorted(broken):
        reasons[name] = "failed or hung in the discovery round"
    for name, took in sorted(calls.items()):
        if name in reasons:
            continue
        # An exact node id matches too: its "[param]" would otherwise read as a character class.
        pattern = next((p for p in settings.walltime_stages if p == name or fnmatch.fnmatchcase(name, p)), None)
        if pattern is not None:
            reasons[name] = f"matches walltime_stages {pattern!r}"
        elif took > SHORT_CALL:
            reasons[name] = (f"one call takes {took * 1000:.0f} ms (instruction counts are for calls of "
                             f"{SHORT_CALL * 1000:.0f} ms or less)")
        else:
            why = routing.judge_sides(evidence, name, (HEAD, BASE))
            if why is not None:
                reasons[name] = why
    _untangle(calls, reasons)
    counted = sorted(n for n in calls if n not in reasons)
    timed = sorted(reasons)
    for name in timed:
        progress.note(f"wall time for {name}: {reasons[name]}")
    return Split(counted=counted, timed=timed, reasons=reasons, seconds=seconds)


def _untangle(calls: dict[str, float], reasons: dict[str, str]) -> None:
    """Time a counted stage whose node id starts with a timed one's, or the reverse: pytest's
    --deselect matches prefixes, so deselecting one would silently drop the other."""
    changed = True
    while changed:
        changed = False
        timed = set(reasons)
        for name in sorted(n for n in calls if n not in reasons):
            other = next((t for t in timed if name.startswith(t) or t.startswith(name)), None)
            if other is not None:
                reasons[name] = f"its node id and {other}'s start alike (pytest deselects by prefix)"
                changed = True


def _discovery_round(round_fn, setup: SideSetup, settings: Settings, targets: list[str], workdir: Path,
                     label: str) -> RoundResult:
    args = [*settings.pytest_args, *DISCOVERY_ARGS]
    return round_fn(setup.python, setup.checkout, targets, workdir, label=f"discovery-{label}", pytest_args=args,
                    env=setup.env, timeout=settings.round_timeout, memory_mb=settings.round_memory_mb)
