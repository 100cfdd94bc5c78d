"""`bolt run`'s measure step: each stage's measure (instruction counts or wall time), and the count passes.

`measure()` is what pipeline.py calls: it returns what both measures measured (decide/measured.py gives
the verdicts). Wall time is bolt_bot/measure/timing.py's step (the paired engine, or whole rounds).
Counts come from bolt_bot.measure.counts (callgrind via pytest-codspeed): base once, head once, then head
again to show that the counts repeat. `--measure auto` first times one short discovery round per side and
sends only short, single-threaded stages that do not wait to callgrind (measurement-facts.md: counts miss
I/O, threads, caches; bolt_bot/measure/routing.py says how waiting and threads are seen).
"""

from __future__ import annotations


import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.measure import process, pytestcmd, sandbox
from bolt_bot.measure.discovery import Split, discover
from bolt_bot.measure.envs import BENCH_REQUIREMENTS
from bolt_bot.measure import memory as memory_pass
from bolt_bot.errors import BoltError
from bolt_bot.measure.counts import (
    InstructionRun,
    codspeed_requirement,
    measure_instructions,
    valgrind_available,
)
from bolt_bot.model import INSTRUCTIONS, WALLTIME
from bolt_bot.progress import Progress
from bolt_bot.measure.paired import PairedPlan, PairedRun, measure_paired
from bolt_bot.measure.timing import Engines, measure_timed
from bolt_bot.measure.rounds import RoundResult, run_round
from bolt_bot.settings import Settings
from bolt_bot.measure.walltime import BASE, HEAD, Judge, SideSetup, WalltimePlan, WalltimeRun, measure_walltime
from bolt_bot.words import plural

REPEAT = "head-repeat"  # head's second pass: its key in CountRun.runs, and where its files are kept afterwards


@dataclass
class CountPlan:
    threshold: float = 1.0  # percent
    warning: float = 0.5  # percent: the warning band is [warning, threshold)
    pytest_args: list[str] = field(default_factory=list)  # selection: paths, node ids, -k, -m
    timeout: float = 600.0  # per valgrind run
    walltimes: dict[str, dict[str, float]] = field(default_factory=dict)  # side → stage → discovery seconds per call


@dataclass
class CountRun:
    runs: dict[str, InstructionRun]  # "base", "head" and REPEAT (head's second pass)
    errors: dict[str, str] = field(default_factory=dict)  # side → why its whole suite could not run
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)


@dataclass
class Measured:
    """What the measuring step measured, before any verdict (decide/measured.py gives those)."""

    counts: CountRun | None = None
    count_plan: CountPlan | None = None
    walltime: WalltimeRun | None = None  # whole rounds: every timed stage, or those too long for paired blocks
    wall_plan: WalltimePlan | None = None
    paired: PairedRun | None = None  # the paired engine (walltime_engine "paired")
    paired_plan: PairedPlan | None = None
    paired_rule: tuple[float, float] = (3.0, 0.05)  # (floor in percent, alpha) for the paired verdicts
    one_sided_failed: dict[str, dict[str, str]] = field(default_factory=dict)  # side → stage → error (paired)
    memory: memory_pass.MemoryRun | None = None  # the memory pass (setting `memory`), None when off
    fallback: dict[str, str] = field(default_factory=dict)  # stage → why its count failed: timed instead
    environment: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def requirements(settings: Settings) -> list[str]:
    """What both sides' environments need: pytest-codspeed too when instruction counts may be used."""
    reqs = list(BENCH_REQUIREMENTS)
    if settings.measure == INSTRUCTIONS or (settings.measure == "auto" and valgrind_available()):
        reqs.append(codspeed_requirement())
    if settings.memory != "off":
        reqs.append(memory_pass.memray_requirement())
    return reqs


def measure(settings: Settings, setups: dict[str, SideSetup], out: Path, progress: Progress | None = None, *,
            judge: Callable[[WalltimePlan], Judge],
            round_fn: Callable[..., RoundResult] = run_round,
            walltime_fn: Callable[..., object] = measure_walltime,
            counts_fn: Callable[..., InstructionRun] = measure_instructions,
            valgrind: Callable[[], str | None] = valgrind_available,
            paired_fn: Callable[..., PairedRun] | None = None, discovered: Split | None = None,
            memory_fn: Callable[..., memory_pass.MemoryPass] = memory_pass.measure_memory) -> Measured:
    """Measure both sides the way `settings.measure` asks; falls back to wall time without valgrind. Then the
    memory pass (setting `memory`), after every timed and counted pass so that it disturbs none.

    `judge(plan)` is the deciding layer's opinion the wall-time loop plans its extra rounds by; `discovered`
    is a discovery round already timed (a shard's, of the whole suite), used instead of timing one."""
    progress = progress or Progress(quiet=True)
    measured = _time_and_count(settings, setups, out, progress, judge, round_fn, walltime_fn, counts_fn, valgrind,
                               paired_fn, discovered)
    if settings.memory != "off":
        skip = memory_pass.long_stages(_call_seconds(measured))
        with progress.group("Tracing one call of each stage for its memory (memray)"):
            measured.memory = memory_pass.measure_sides(
                setups, [*settings.benchmarks, *settings.pytest_args], out / "memory", progress,
                timeout=settings.round_timeout, memory_mb=settings.round_memory_mb or None, skip=skip,
                memory_fn=memory_fn)
        measured.environment["memory"] = measured.memory.environment()
    return measured


def _call_seconds(measured: Measured) -> dict[str, dict[str, float]]:
    """side → stage → seconds per call as the timed passes saw them: discovery's, else the rounds' fastest."""
    if measured.count_plan is not None and measured.count_plan.walltimes:
        return measured.count_plan.walltimes
    if measured.walltime is None:
        return {}
    return {side: {name: min(r.median for r in records) for name, records in rounds.by_stage().items()
                   if records[0].unit == "s"} for side, rounds in measured.walltime.sides.items()}


def _time_and_count(settings: Settings, setups: dict[str, SideSetup], out: Path, progress: Progress, judge, round_fn,
                    walltime_fn, counts_fn, valgrind, paired_fn, discovered) -> Measured:
    notices: list[str] = []
    ignored = pytestcmd.clean(settings.pytest_args)[1]
    if ignored:
        progress.note(f"ignored in every measured pass (they fight measurement): {', '.join(ignored)}")
    mode = settings.measure
    if mode != WALLTIME and valgrind() is None:
        notices.append("valgrind is not installed, so every stage was measured by wall time instead of instruction counts")
        progress.warn(notices[-1])
        mode = WALLTIME
    engines = Engines(walltime_fn, paired_fn or measure_paired, round_fn)
    if mode == WALLTIME:
        return _walltime_only(settings, setups, out, progress, engines, judge, notices)
    plan = CountPlan(threshold=settings.instr_threshold, warning=settings.instr_warning,
                     pytest_args=[*settings.benchmarks, *settings.pytest_args], timeout=settings.round_timeout)
    environment: dict = {}
    counted: list[str] | None = None  # None: every stage (`--measure instructions`, no discovery)
    timed: list[str] = []
    if mode != INSTRUCTIONS:
        split = discovered
        if split is None:
            with progress.group("Timing one discovery round per side to choose each stage's measure"):
                split = discover(settings, setups, out / "discovery", progress, round_fn)
        if not split.counted and not split.timed:
            # Discovery found nothing: let the wall-time path report what is wrong with the suite.
            return _walltime_only(settings, setups, out, progress, engines, judge, notices)
        environment["discovery"] = {"instructions": len(split.counted), "walltime": len(split.timed),
                                    "walltime_reasons": split.reasons}
        counted, timed = split.counted, split.timed
        plan.walltimes = split.seconds  # the wall-time look for counts that wander (stats.check_count_change)
    measured = Measured(environment=environment, notices=notices)
    fallback = measured.fallback  # stage → why its count failed: measured by wall time instead
    counted_ok: list[str] = []
    if counted is None or counted:
        # Each side runs only what it has: the other group is deselected, never named (a node id
        # missing on one side is a pytest usage error there).
        plan.pytest_args = [*settings.benchmarks, *settings.pytest_args, *pytestcmd.deselect(timed)]
        title = ("Measuring instruction counts under callgrind: base, head, head again" if counted is None
                 else f"Measuring instruction counts of {plural(len(counted), 'short stage')} under callgrind")
        try:
            with progress.group(title):
                run = measure_counts(setups, plan, out / "instr", progress, counts_fn)
        except BoltError as exc:
            # Neither side could be counted: wall time still can, in this same run.
            notices.append(f"instruction counts failed on both sides ({exc}), so "
                           f"{'every stage' if counted is None else 'the stages chosen for counts'} "
                           "were measured by wall time instead")
            progress.warn(notices[-1])
            if counted is None:
                return _walltime_only(settings, setups, out, progress, engines, judge, notices)
            fallback.update({name: f"instruction counts failed on both sides: {exc}" for name in counted})
        else:
            measured.counts, measured.count_plan = run, plan
            notices += run.notices
            names = _count_names(run)
            environment.update(_count_environment(run, len(counted if counted is not None else names), len(timed)))
            fallback.update(failed_counts(run.runs, run.errors))
            counted_ok = [n for n in names if n not in fallback]
            for name in counted or ():
                if name not in fallback and name not in names:
                    fallback[name] = "no instruction count was recorded"
    if timed or fallback:
        wall = _walltime(settings, setups, out, progress, engines, judge, targets=list(settings.benchmarks),
                         extra_args=pytestcmd.deselect(counted_ok))
        measured.walltime, measured.wall_plan = wall.walltime, wall.wall_plan
        measured.paired, measured.paired_plan, measured.paired_rule = wall.paired, wall.paired_plan, wall.paired_rule
        measured.one_sided_failed = wall.one_sided_failed
        environment.update(wall.environment)
        notices += wall.notices
    return measured


def _count_names(run: CountRun) -> list[str]:
    """Every stage either side's pass saw, counted or failed."""
    return sorted({n for r in (run.runs.get(BASE), run.runs.get(HEAD)) if r for n in (*r.counts, *r.failed)})


def measure_counts(setups: dict[str, SideSetup], plan: CountPlan, workdir: Path, progress: Progress | None = None,
                   counts_fn: Callable[..., InstructionRun] = measure_instructions) -> CountRun:
    """Counts of base and head (side by side), then head again; one StageComparison per stage on either side."""
    progress = progress or Progress(quiet=True)
    started = time.monotonic()
    runs: dict[str, InstructionRun] = {}
    errors: dict[str, str] = {}

    def count(side: str) -> None:
        setup = setups[HEAD if side == REPEAT else side]
        try:
            runs[side] = counts_fn(setup.python, setup.checkout, list(plan.pytest_args), env=setup.env,
                                   timeout=plan.timeout, workdir=workdir / (HEAD if side == REPEAT else side))
        except BoltError as exc:
            if side == REPEAT:
                runs[side] = InstructionRun(counts={}, failed={}, log_excerpt=str(exc))
            else:
                errors[side] = str(exc)
                progress.warn(f"{side}: instruction counts failed: {exc}")
            return
        run = runs[side]
        progress.step(f"{'head again' if side == REPEAT else side}: {plural(len(run.counts), 'stage')} counted, "
                      f"{len(run.failed)} failed, in {run.seconds:.1f} s")

    # Counts do not depend on load, so base and head are counted at the same time, one core each.
    process.in_parallel(count, [BASE, HEAD])
    if HEAD not in errors and runs[HEAD].counts:
        # The repeat runs in the very same workdir as the first pass (its path is an argument of the
        # measured process: another name of the same length still moved a stage by 15 instructions);
        # the first pass's files are moved aside meanwhile.
        _move(runs[HEAD], workdir / HEAD, workdir / f"{HEAD}-first")
        count(REPEAT)
    if REPEAT in runs:
        _move(runs[REPEAT], workdir / HEAD, workdir / REPEAT)
        _move(runs[HEAD], workdir / f"{HEAD}-first", workdir / HEAD)
    if len(errors) == 2:
        raise BoltError(f"instruction counts failed on both sides: {errors[HEAD]}")
    notices = _package_drift(setups)
    return CountRun(runs=runs, errors=errors, seconds=time.monotonic() - started, notices=notices)


def _move(run: InstructionRun, src: Path, dst: Path) -> None:
    """Move a pass's folder, keeping its dump paths right."""
    if not src.is_dir():
        return
    src = src.resolve()
    dst = dst.resolve()
    shutil.rmtree(dst, ignore_errors=True)
    src.rename(dst)
    run.dumps = {name: dst / Path(path).relative_to(src) if Path(path).is_relative_to(src) else path
                 for name, path in run.dumps.items()}


def failed_counts(runs: dict[str, InstructionRun], errors: dict[str, str]) -> dict[str, str]:
    """stage → why it has no count to compare: its test failed or crashed on a side, or that side could not run."""
    empty = InstructionRun(counts={}, failed={}, log_excerpt="")
    base, head = runs.get(BASE, empty), runs.get(HEAD, empty)
    out = {}
    for name in sorted(set(base.counts) | set(base.failed) | set(head.counts) | set(head.failed)):
        failed_side = next((side for side, run in ((HEAD, head), (BASE, base)) if name in run.failed), None)
        if failed_side is not None:
            out[name] = f"failed on {failed_side}: {runs[failed_side].failed[name]}"
        elif name not in base.counts or name not in head.counts:
            missing = BASE if name not in base.counts else HEAD
            if missing in errors:
                out[name] = f"failed on {missing}: {errors[missing]}"
    return out


# Lists the installed distributions with versions, leaving out local/editable installs (the project).
_PACKAGES = r'''
import json
from importlib import metadata
out = {}
for dist in metadata.distributions():
    url = dist.read_text("direct_url.json") or ""
    if '"dir_info"' not in url:
        out[(dist.metadata["Name"] or "?").lower()] = dist.version
print(json.dumps(out))
'''


def _package_drift(setups: dict[str, SideSetup]) -> list[str]:
    """A notice when base and head environments hold different package versions: that moves counts too."""
    found = {}
    for side, setup in setups.items():
        try:
            proc = subprocess.run([str(setup.python), "-c", _PACKAGES], capture_output=True, text=True, timeout=60,
                                  env=sandbox.measured(setup.env), check=False)
            found[side] = json.loads(proc.stdout)
        except (OSError, subprocess.SubprocessError, ValueError):
            return []
    base, head = found.get(BASE, {}), found.get(HEAD, {})
    differ = sorted(n for n in set(base) | set(head) if base.get(n) != head.get(n))
    if not differ:
        return []
    shown = ", ".join(f"{n} {base.get(n, '-')} → {head.get(n, '-')}" for n in differ[:5])
    return [(f"the base and head environments differ in {plural(len(differ), 'package')} ({shown}): "
             "instruction counts may move for that reason alone")]


def _count_environment(run: CountRun, counted: int, timed: int) -> dict:
    repeat = run.runs.get(REPEAT)
    head = run.runs.get(HEAD)
    same = sum(1 for n, c in (repeat.counts if repeat else {}).items() if head and head.counts.get(n) == c)
    return {
        "instructions": {
            "tool": "valgrind callgrind (pytest-codspeed)",
            "passes": "base, head, head again",
            "stages": counted,
            "repeated_identically": same,
            "seconds": {side: round(r.seconds, 1) for side, r in run.runs.items()},
        },
        **({"walltime_stages": timed} if timed else {}),
    }


def _walltime(settings: Settings, setups: dict[str, SideSetup], out: Path, progress: Progress, engines: Engines, judge,
              targets: list[str], extra_args: list[str] = ()) -> Measured:
    timed = measure_timed(settings, setups, out, progress, engines, judge, targets, extra_args)
    return Measured(walltime=timed.walltime, wall_plan=timed.wall_plan, paired=timed.paired,
                    paired_plan=timed.paired_plan, paired_rule=(settings.threshold, settings.alpha),
                    one_sided_failed=timed.one_sided_failed,
                    environment=timed.environment, notices=timed.notices)


def _walltime_only(settings, setups, out, progress, engines, judge, notices) -> Measured:
    wall = _walltime(settings, setups, out, progress, engines, judge, targets=list(settings.benchmarks))
    wall.notices = [*notices, *wall.notices]
    return wall
