"""The wall-time step: the paired engine, and whole rounds for stages too long for its blocks (or every stage).

`Settings.walltime_engine` chooses: "paired" (bolt_bot.measure.paired: base and head alternating in blocks of
a few milliseconds on one CPU, several process pairs) or "rounds" (bolt_bot.measure.walltime: interleaved
pytest rounds). The paired engine hands back the stages whose single call is too long for a block; whole
rounds time those in the same run, and a notice says which and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.errors import BoltError
from bolt_bot.measure import pytestcmd
from bolt_bot.measure.paired import PairedPlan, PairedRun, measure_paired
from bolt_bot.measure.rounds import RoundResult, run_round
from bolt_bot.measure.walltime import HEAD, Judge, SideSetup, WalltimePlan, WalltimeRun, measure_walltime
from bolt_bot.progress import Progress
from bolt_bot.settings import Settings
from bolt_bot.words import plural

PAIRED = "paired"
ROUNDS = "rounds"


@dataclass
class Engines:
    """The two wall-time engines a run may use (tests pass their own)."""

    rounds: Callable[..., WalltimeRun] = measure_walltime
    paired: Callable[..., PairedRun] = measure_paired
    round: Callable[..., RoundResult] = run_round  # one plain round: do the one-sided stages run at all?


@dataclass
class Timed:
    """What the wall-time step measured; decide/measured.py gives the verdicts."""

    walltime: WalltimeRun | None = None
    wall_plan: WalltimePlan | None = None
    paired: PairedRun | None = None
    paired_plan: PairedPlan | None = None
    one_sided_failed: dict[str, dict[str, str]] = field(default_factory=dict)  # side → stage → error
    environment: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def paired_plan(settings: Settings, targets: list[str], extra_args: list[str] = ()) -> PairedPlan:
    return PairedPlan(timeout=settings.round_timeout, memory_mb=settings.round_memory_mb, targets=list(targets),
                      pytest_args=[*settings.pytest_args, *extra_args])


def measure_timed(settings: Settings, setups: dict[str, SideSetup], out: Path, progress: Progress, engines: Engines,
                  judge: Callable[[WalltimePlan], Judge], targets: list[str], extra_args: list[str] = ()) -> Timed:
    """Every timed stage by the paired engine and, by whole rounds, those too long for its blocks; every stage
    by rounds with walltime_engine "rounds", or when the paired engine cannot start at all."""
    if settings.walltime_engine != PAIRED:
        timed = _rounds(settings, setups, out, progress, engines, judge, targets, extra_args)
        timed.environment["walltime_engine"] = ROUNDS
        return timed
    plan = paired_plan(settings, targets, extra_args)
    try:
        with progress.group(f"Measuring wall time: base and head paired on one CPU, {plan.pairs} process pairs"):
            run = engines.paired(setups, plan, out / "paired", progress)
    except BoltError as exc:
        timed = _rounds(settings, setups, out, progress, engines, judge, targets, extra_args)
        timed.environment["walltime_engine"] = ROUNDS
        timed.notices.append(f"the paired wall-time engine could not run ({exc}), so whole rounds timed every stage")
        progress.warn(timed.notices[-1])
        return timed
    environment = {"walltime_engine": PAIRED,
                   "paired": {"pairs": plan.pairs, "aslr_off": run.aslr_off, "seconds": round(run.seconds, 1),
                              **({"too_long": dict(run.too_long)} if run.too_long else {})}}
    timed = Timed(paired=run, paired_plan=plan, environment=environment, notices=list(run.notices),
                  one_sided_failed=_one_sided(run, setups, plan, out, progress, engines.round))
    if run.too_long:
        shown = ", ".join(f"{name} ({why})" for name, why in sorted(run.too_long.items())[:5])
        more = f" and {len(run.too_long) - 5} more" if len(run.too_long) > 5 else ""
        were = "was" if len(run.too_long) == 1 else "were"
        timed.notices.append(f"{plural(len(run.too_long), 'stage')} {were} timed by whole rounds instead of paired blocks "
                             f"on one CPU: {shown}{more}")
        progress.note(timed.notices[-1])
        # Rounds run only the stages too long for blocks: every other stage the paired engine saw is
        # deselected, never named (a node id missing on one side is a pytest usage error there).
        seen = {*run.stages, *(n for side in run.failed.values() for n in side),
                *(n for side in run.only.values() for n in side)} - set(run.too_long)
        wall = _rounds(settings, setups, out, progress, engines, judge, targets, [*extra_args, *pytestcmd.deselect(sorted(seen))])
        timed.walltime, timed.wall_plan = wall.walltime, wall.wall_plan
        environment.update(wall.environment)
    return timed


def _one_sided(run: PairedRun, setups: dict[str, SideSetup], plan: PairedPlan, out: Path, progress: Progress,
               round_fn: Callable[..., RoundResult]) -> dict[str, dict[str, str]]:
    """side → stage → error, for stages only one side has: pairs never run them, so one plain round on their
    side shows whether they work (a new benchmark that fails is `failed`, not `added`)."""
    failed: dict[str, dict[str, str]] = {}
    for side, names in sorted(run.only.items()):
        if not names:
            continue
        setup = setups[side]
        with progress.group(f"Running the {plural(len(names), 'stage')} only {side} has once"):
            result = round_fn(setup.python, setup.checkout, list(names), out / "one-sided" / side, label=f"{side}-only",
                              pytest_args=plan.pytest_args, env=setup.env, timeout=plan.timeout,
                              memory_mb=plan.memory_mb)
        errors = {name: why for name, why in result.failed.items() if name in names}
        if result.error and not result.records and not errors:
            errors = {name: result.error for name in names}  # the whole round failed before any of them ran
        if errors:
            failed[side] = errors
    return failed


def measure_sizes(settings: Settings, setups: dict[str, SideSetup], out: Path, names: list[str],
                  progress: Progress | None = None, paired_fn: Callable[..., PairedRun] = measure_paired) -> PairedRun:
    """The paired engine on just `names` (stages counted and flagged by instruction counts): how much wall time
    moved, shown beside the count. An engine that cannot run leaves them without a size, and says why."""
    progress = progress or Progress(quiet=True)
    plan = paired_plan(settings, list(settings.benchmarks))
    try:
        with progress.group(f"Timing {plural(len(names), 'flagged stage')} paired on one CPU, for the size of the "
                            "change"):
            return paired_fn(setups, plan, out / "sizes", progress, only=list(names))
    except BoltError as exc:
        progress.warn(f"the flagged stages' wall time could not be measured: {exc}")
        return PairedRun(stages={}, failed={HEAD: {name: str(exc) for name in names}})


def _rounds(settings: Settings, setups: dict[str, SideSetup], out: Path, progress: Progress, engines: Engines,
            judge: Callable[[WalltimePlan], Judge], targets: list[str], extra_args: list[str] = ()) -> Timed:
    plan = WalltimePlan(rounds=settings.rounds, threshold=settings.threshold, alpha=settings.alpha, budget=settings.budget,
                        timeout=settings.round_timeout, memory_mb=settings.round_memory_mb, targets=targets,
                        pytest_args=[*settings.pytest_args, *extra_args])
    with progress.group(f"Measuring wall time: {plural(settings.rounds, 'interleaved round')} per side "
                        "(then extra and confirmation rounds where needed)"):
        run = engines.rounds(setups, plan, out / "rounds", progress, judge=judge(plan))
    environment = {"rounds": settings.rounds, "plan": "interleaved",
                   "extra_rounds": run.extra_pairs, "confirmation_rounds": run.confirm_pairs}
    return Timed(walltime=run, wall_plan=plan, environment=environment)
