"""Choosing the measure per stage (instruction counts or wall time) and measuring instruction counts for `bolt run`.

`measure()` is what the runner calls: it returns the stages of both measures merged into one list.
Counts come from bolt_bot.instructions (callgrind via pytest-codspeed): base once, head once, then head
again to show that the counts repeat. `--measure auto` first times one short discovery round per side and
sends only short, CPU-bound stages to callgrind (measurement-facts.md: counts miss I/O, threads, caches).
"""

from __future__ import annotations

import concurrent.futures

import fnmatch
import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot import pytestcmd, sandbox, stats
from bolt_bot.errors import BoltError
from bolt_bot.instructions import (
    InstructionRun,
    codspeed_requirement,
    measure_instructions,
    stop_passes,
    valgrind_available,
)
from bolt_bot.model import (
    ADDED,
    FAILED,
    INSTRUCTIONS,
    REMOVED,
    UNCHANGED,
    WALLTIME,
    SideSummary,
    StageComparison,
)
from bolt_bot.progress import Progress
from bolt_bot.rounds import RoundResult, run_round
from bolt_bot.settings import Settings
from bolt_bot.walltime import BASE, HEAD, SideSetup, WalltimePlan, measure_walltime

MIXED = "mixed"
REPEAT = "head-repeat"  # head's second pass: its key in CountRun.runs, and where its files are kept afterwards
SHORT_CALL = 0.1  # seconds: stages whose call takes longer are timed (callgrind costs about 70x)
# CPU time / wall time of a stage's fastest call: below this it waits (I/O, sleep, locks), above
# the upper bound several threads compute at once. Mins, not medians: the least-preempted call of a
# busy machine is the one where wall time is closest to the CPU time of single-threaded code.
CPU_SHARE = (0.35, 1.6)  # relative to the reference share of plain computation on this machine
# The discovery round: as short as pytest-benchmark allows; one call is enough to see a long stage.
DISCOVERY_ARGS = ["--benchmark-max-time=0.02", "--benchmark-min-rounds=1"]
CPU_TIMER = "--benchmark-timer=time.process_time"


@dataclass
class CountPlan:
    threshold: float = 1.0  # percent
    warning: float = 0.5  # percent: the warning band is [warning, threshold)
    pytest_args: list[str] = field(default_factory=list)  # selection: paths, node ids, -k, -m
    timeout: float = 600.0  # per valgrind run


@dataclass
class CountRun:
    stages: list[StageComparison]
    runs: dict[str, InstructionRun]  # "base", "head" and REPEAT (head's second pass)
    errors: dict[str, str] = field(default_factory=dict)  # side → why its whole suite could not run
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)


@dataclass
class Measured:
    """What the runner needs from the measuring step."""

    stages: list[StageComparison]
    measure: str  # "instructions", "walltime" or "mixed"
    environment: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


@dataclass
class Split:
    """The per-stage choice of `--measure auto`."""

    counted: list[str] = field(default_factory=list)  # node ids measured by instruction counts
    timed: list[str] = field(default_factory=list)  # node ids measured by wall time
    reasons: dict[str, str] = field(default_factory=dict)  # timed stage → why


def requirements(settings: Settings) -> list[str]:
    """What both sides' environments need: pytest-codspeed too when instruction counts may be used."""
    from bolt_bot.envs import BENCH_REQUIREMENTS

    reqs = list(BENCH_REQUIREMENTS)
    if settings.measure == INSTRUCTIONS or (settings.measure == "auto" and valgrind_available()):
        reqs.append(codspeed_requirement())
    return reqs


def measure(settings: Settings, setups: dict[str, SideSetup], out: Path, progress: Progress | None = None, *,
            round_fn: Callable[..., RoundResult] = run_round,
            walltime_fn: Callable[..., object] = measure_walltime,
            counts_fn: Callable[..., InstructionRun] = measure_instructions,
            valgrind: Callable[[], str | None] = valgrind_available) -> Measured:
    """Measure both sides the way `settings.measure` asks; falls back to wall time without valgrind."""
    progress = progress or Progress(quiet=True)
    notices: list[str] = []
    ignored = pytestcmd.clean(settings.pytest_args)[1]
    if ignored:
        progress.note(f"ignored in every measured pass (they fight measurement): {', '.join(ignored)}")
    mode = settings.measure
    if mode != WALLTIME and valgrind() is None:
        notices.append("valgrind is not installed, so every stage was measured by wall time instead of instruction counts")
        progress.warn(notices[-1])
        mode = WALLTIME
    if mode == WALLTIME:
        return _walltime_only(settings, setups, out, progress, walltime_fn, notices)
    plan = CountPlan(threshold=settings.instr_threshold, warning=settings.instr_warning,
                     pytest_args=[*settings.benchmarks, *settings.pytest_args], timeout=settings.round_timeout)
    environment: dict = {}
    counted: list[str] | None = None  # None: every stage (`--measure instructions`, no discovery)
    timed: list[str] = []
    if mode != INSTRUCTIONS:
        with progress.group("Timing one discovery round per side to choose each stage's measure"):
            split = discover(settings, setups, out / "discovery", progress, round_fn)
        if not split.counted and not split.timed:
            # Discovery found nothing: let the wall-time path report what is wrong with the suite.
            return _walltime_only(settings, setups, out, progress, walltime_fn, notices)
        environment["discovery"] = {"instructions": len(split.counted), "walltime": len(split.timed),
                                    "walltime_reasons": split.reasons}
        counted, timed = split.counted, split.timed
    stages: list[StageComparison] = []
    fallback: dict[str, str] = {}  # stage → why its count failed: measured by wall time instead
    failed_counts: dict[str, StageComparison] = {}
    if counted is None or counted:
        # Each side runs only what it has: the other group is deselected, never named (a node id
        # missing on one side is a pytest usage error there).
        plan.pytest_args = [*settings.benchmarks, *settings.pytest_args, *_deselect(timed)]
        title = ("Measuring instruction counts under callgrind: base, head, head again" if counted is None
                 else f"Measuring instruction counts of {len(counted)} short stage(s) under callgrind")
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
                return _walltime_only(settings, setups, out, progress, walltime_fn, notices)
            fallback = {name: f"instruction counts failed on both sides: {exc}" for name in counted}
        else:
            notices += run.notices
            environment.update(_count_environment(run, len(counted if counted is not None else run.stages), len(timed)))
            for stage in run.stages:
                if stage.verdict == FAILED:
                    fallback[stage.name], failed_counts[stage.name] = stage.note or "its count failed", stage
                else:
                    stages.append(stage)
            for name in counted or ():
                if name not in fallback and all(s.name != name for s in stages):
                    fallback[name] = "no instruction count was recorded"
    if timed or fallback:
        wall = _walltime(settings, setups, out, progress, walltime_fn, targets=list(settings.benchmarks),
                         extra_args=_deselect([s.name for s in stages]))
        stages += _fell_back(wall.stages, fallback, failed_counts, notices, environment)
        notices += wall.notices
        environment.update(wall.environment)
    kinds = {s.measure for s in stages}
    name = MIXED if len(kinds) > 1 else (kinds.pop() if kinds else WALLTIME)
    stages.sort(key=lambda s: s.name)
    return Measured(stages, name, environment, notices)


def _fell_back(wall: list[StageComparison], fallback: dict[str, str], failed_counts: dict[str, StageComparison],
               notices: list[str], environment: dict) -> list[StageComparison]:
    """The wall-time stages, those whose count failed said so; a failed count wall time did not reach stays."""
    measured = {s.name for s in wall}
    moved = sorted(n for n in fallback if n in measured)
    for stage in wall:
        if stage.name in fallback:
            why = f"measured by wall time: {fallback[stage.name]}"
            stage.note = f"{why}; {stage.note}" if stage.note else why
    if moved:
        shown = ", ".join(moved[:5]) + (f" and {len(moved) - 5} more" if len(moved) > 5 else "")
        notices.append(f"{len(moved)} stage(s) whose instruction count failed were measured by wall time instead: {shown}")
        if "discovery" in environment:
            environment["discovery"]["walltime_reasons"].update(
                {n: f"its instruction count failed ({fallback[n]})" for n in moved})
        environment["count_fallback"] = {n: fallback[n] for n in moved}
    return [*wall, *(failed_counts[n] for n in sorted(failed_counts) if n not in measured)]


def discover(settings: Settings, setups: dict[str, SideSetup], workdir: Path, progress: Progress,
             round_fn: Callable[..., RoundResult] = run_round) -> Split:
    """One short wall-time round per side, then one CPU-time round of the short stages: which stage goes where.

    A stage is counted when its call takes at most SHORT_CALL on every side it exists on, it matches
    no `walltime_stages` pattern, and its CPU time is close to its wall time (not waiting on I/O or
    sleeping, not computing on several threads). Failed or hung stages are timed: the wall-time path
    reports them as usual.
    """
    calls: dict[str, float] = {}
    reasons: dict[str, str] = {}
    head_wall_min: dict[str, float] = {}  # compared with head's CPU time: the same code
    seen: dict[str, set[str]] = {}
    broken: set[str] = set()
    for side, setup in setups.items():
        result = _discovery_round(round_fn, setup, settings, [*settings.benchmarks], workdir / side, "wall")
        progress.step(f"discovery {side}: {len(result.records)} stages in {result.seconds:.1f} s")
        seen[side] = {r.name for r in result.records}
        for record in result.records:
            calls[record.name] = max(calls.get(record.name, 0.0), record.median)
            if side == HEAD:
                head_wall_min[record.name] = record.min
        broken |= set(result.failed) | ({result.hung} if result.hung else set())
    for name in sorted(broken):
        reasons[name] = "failed or hung in the discovery round"
    for name, seconds in calls.items():
        if name in reasons:
            continue
        # An exact node id matches too: its "[param]" would otherwise read as a character class.
        pattern = next((p for p in settings.walltime_stages if p == name or fnmatch.fnmatchcase(name, p)), None)
        if pattern is not None:
            reasons[name] = f"matches walltime_stages {pattern!r}"
        elif seconds > SHORT_CALL:
            reasons[name] = f"one call takes {seconds * 1000:.0f} ms (instruction counts are for calls of {SHORT_CALL * 1000:.0f} ms or less)"
    short = sorted(n for n in calls if n not in reasons and n in seen.get(HEAD, ()))
    if short:
        # CPU time per call of the short stages, on head (the side being judged), timed by process_time.
        try:
            result = _discovery_round(round_fn, setups[HEAD], settings, short, workdir / HEAD, "cpu", cpu=True)
        except BoltError as exc:
            progress.warn(f"the CPU-time discovery round failed ({exc}); choosing by call time only")
            result = RoundResult()
        cpu_min = {r.name: r.min for r in result.records}
        shares = {n: cpu_min[n] / head_wall_min[n] for n in short if n in cpu_min and head_wall_min.get(n)}
        # What plain single-threaded computation shows here: on this kind of VM the process clock ran
        # at about half the wall clock even for a pure loop, so shares are judged against a reference:
        # the suite's median share, or Bolt's own busy loop if higher (a suite that mostly waits).
        reference = max(statistics.median(shares.values()) if shares else 0.0, cpu_reference())
        for name, share in shares.items():
            relative = share / reference if reference > 0 else 1.0
            seen_as = f"CPU {share * 100:.0f} % of wall time, against {reference * 100:.0f} % for plain computation"
            if relative < CPU_SHARE[0]:
                reasons[name] = f"waits for most of its time ({seen_as}): I/O or sleeping"
            elif relative > CPU_SHARE[1]:
                reasons[name] = f"computes on several threads ({seen_as})"
    _untangle(calls, reasons)
    counted = sorted(n for n in calls if n not in reasons)
    timed = sorted(reasons)
    for name in timed:
        progress.note(f"wall time for {name}: {reasons[name]}")
    return Split(counted=counted, timed=timed, reasons=reasons)


def cpu_reference(loops: int = 5, seconds: float = 0.01) -> float:
    """CPU time / wall time of a pure-Python busy loop in this process: the median of a few short tries."""
    shares = []
    for _ in range(loops):
        wall, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - wall < seconds:
            sum(i * i for i in range(200))
        took = time.perf_counter() - wall
        shares.append((time.process_time() - cpu) / took if took > 0 else 1.0)
    return statistics.median(shares)


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


def _deselect(names: list[str]) -> list[str]:
    return [arg for name in names for arg in ("--deselect", name)]


def _discovery_round(round_fn, setup: SideSetup, settings: Settings, targets: list[str], workdir: Path, label: str,
                     cpu: bool = False) -> RoundResult:
    args = [*settings.pytest_args, *DISCOVERY_ARGS, *([CPU_TIMER] if cpu else [])]
    return round_fn(setup.python, setup.checkout, targets, workdir, label=f"discovery-{label}", pytest_args=args,
                    env=_without_codspeed(setup.env), timeout=settings.round_timeout, memory_mb=settings.round_memory_mb)


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
        progress.step(f"{'head again' if side == REPEAT else side}: {len(run.counts)} stages counted, "
                      f"{len(run.failed)} failed, in {run.seconds:.1f} s")

    # Counts do not depend on load, so base and head are counted at the same time, one core each.
    _in_parallel(count, [BASE, HEAD])
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
    stages = counts_to_stages(runs, errors, plan.threshold / 100, plan.warning / 100)
    notices = _package_drift(setups)
    return CountRun(stages=stages, runs=runs, errors=errors, seconds=time.monotonic() - started, notices=notices)


def _in_parallel(fn: Callable[[str], None], sides: list[str]) -> None:
    """fn(side) for every side, each in a thread of its own; an exception here stops them all at once.

    Ctrl-C and SIGTERM (made an exception by gitrepo.terminate_as_exception) reach only this thread:
    the workers' valgrind passes are killed and the workers not waited for, so the exception reaches
    the caller's cleanup in seconds, not when the passes end. The killed workers end with PassStopped,
    which nobody reads.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(sides))
    try:
        for future in [pool.submit(fn, side) for side in sides]:
            future.result()
    except BaseException:
        stop_passes()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


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


def counts_to_stages(runs: dict[str, InstructionRun], errors: dict[str, str], threshold: float,
                     warning: float) -> list[StageComparison]:
    """Stage verdicts from the runs (`threshold`, `warning` as fractions)."""
    empty = InstructionRun(counts={}, failed={}, log_excerpt="")
    base, head, repeat = runs.get(BASE, empty), runs.get(HEAD, empty), runs.get(REPEAT, empty)
    names = sorted(set(base.counts) | set(base.failed) | set(head.counts) | set(head.failed))
    stages = []
    for name in names:
        b, h = base.counts.get(name), head.counts.get(name)
        stage = StageComparison(name=name, verdict=UNCHANGED, measure=INSTRUCTIONS,
                                base=_summary(b, base.failed.get(name) or errors.get(BASE)),
                                head=_summary(h, head.failed.get(name) or errors.get(HEAD)))
        stages.append(stage)
        failed_side = next((side for side, run in ((HEAD, head), (BASE, base)) if name in run.failed), None)
        if failed_side is not None:
            stage.verdict = FAILED
            stage.note = f"failed on {failed_side}: {runs[failed_side].failed[name]}"
        elif b is None or h is None:
            missing = BASE if b is None else HEAD
            if missing in errors:
                stage.verdict, stage.note = FAILED, f"failed on {missing}: {errors[missing]}"
            else:
                stage.verdict = ADDED if b is None else REMOVED
        else:
            again = repeat.counts.get(name)
            delta = None if again is None else again / h - 1.0
            stage.ratio = h / b
            stage.ci = [stage.ratio, stage.ratio]
            stage.verdict, stage.note = stats.decide_counts(b, h, delta, threshold, warning)
            if again is not None:
                stage.head.values.append(float(again))
                stage.head.rounds = 2
    return stages


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
    return [(f"the base and head environments differ in {len(differ)} package(s) ({shown}): "
             "instruction counts may move for that reason alone")]


def _summary(count: int | None, error: str | None) -> SideSummary:
    if count is None:
        return SideSummary(unit="instr", error=error)
    value = float(count)
    return SideSummary(rounds=1, center=value, median=value, mean=value, min=value, max=value, unit="instr",
                       values=[value], error=error)


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


def _walltime(settings: Settings, setups: dict[str, SideSetup], out: Path, progress: Progress, walltime_fn,
              targets: list[str], extra_args: list[str] = ()) -> Measured:
    plan = WalltimePlan(rounds=settings.rounds, threshold=settings.threshold, alpha=settings.alpha, budget=settings.budget,
                        timeout=settings.round_timeout, memory_mb=settings.round_memory_mb, targets=targets,
                        pytest_args=[*settings.pytest_args, *extra_args])
    clean = {side: SideSetup(s.python, s.checkout, _without_codspeed(s.env)) for side, s in setups.items()}
    with progress.group(f"Measuring wall time: {settings.rounds} interleaved rounds per side"):
        run = walltime_fn(clean, plan, out / "rounds", progress)
    environment = {"rounds": settings.rounds, "plan": "interleaved", "extra_rounds": run.extra_pairs,
                   "confirmation_rounds": run.confirm_pairs}
    return Measured(run.stages, WALLTIME, environment, list(run.notices))


def _walltime_only(settings, setups, out, progress, walltime_fn, notices) -> Measured:
    wall = _walltime(settings, setups, out, progress, walltime_fn, targets=list(settings.benchmarks))
    wall.notices = notices + wall.notices
    return wall


def _without_codspeed(env: dict[str, str] | None) -> dict[str, str]:
    # pytest-codspeed is installed next to pytest-benchmark; a CODSPEED_ENV left in the environment
    # (as on CodSpeed's own runners) would switch it on and take the `benchmark` fixture in timed rounds.
    clean = dict(env if env is not None else sandbox.side_environ())
    clean.pop("CODSPEED_ENV", None)
    return clean
