"""The paired wall-time engine: base and head workers on one CPU, short blocks of calls alternated, per-pair log-ratios.

A vCPU here switches between full speed and a phase 1.5-2x slower for 50 ms up to whole rounds
(measurement-facts.md); two vCPUs do so independently, one vCPU does so for both of its processes. So a
base worker and a head worker share one CPU and take turns in blocks of a few milliseconds, far shorter
than a phase: a phase slows both members of a pair of adjacent blocks and their ratio cancels it. A pair
straddling a switch shows in its speed probes, which then disagree, and is dropped, never scaled. The
variance between processes (layout, allocator) stays, so K fresh process pairs are started, pair i on
CPU i % ncpu; each gives one sample of a stage. This module only measures; decide/paired.py judges.

Defaults are sensible guesses, not tuned: the detection benchmark measures them on a quiet machine.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bolt_bot.errors import BoltError
from bolt_bot.measure import pytestcmd, sandbox
from bolt_bot.measure.routing import OTHER_THREADS
from bolt_bot.measure.pairedwire import PLUGIN, Worker, away_from, quiet_cpu
from bolt_bot.measure.sides import BASE, HEAD
from bolt_bot.measure.walltime import SideSetup
from bolt_bot.progress import Progress

SCHEMA = "bolt/paired/v1"
CALIBRATE_SHARE = 0.1  # calibration grows the calls until a block takes this share of block_ms
MAX_ATTEMPTS = 2  # at most this many times `blocks` block pairs are tried, when phase switches drop some


@dataclass
class PairedPlan:
    pairs: int = 6             # K fresh process pairs; pair i shares CPU i % ncpu
    block_ms: float = 5.0      # target duration of one block of calls, calibrated per stage
    blocks: int = 24           # adjacent block pairs (base block + head block) per stage per process pair
    max_call_ms: float = 20.0  # a stage whose single call is longer than this is "too long for blocks"
    probe_tolerance: float = 1.3   # a block is kept only if its probes (before/after) agree within this ratio
    # True: the workers keep ASLR (each process pair gets its own layout, so a layout's bias becomes spread
    # the test across pairs sees). False turns it off (personality ADDR_NO_RANDOMIZE). Measured A/A on this
    # VM (benchmarks/paired_facts.py, 20 pairs a setting): off did not lower the between-process spread
    # (0.8-1.6 % off against 0.6-2.7 % on), so issue 15's rule keeps ASLR on.
    aslr: bool = True
    timeout: float = 600.0     # per worker
    memory_mb: int = 4096
    targets: list[str] = field(default_factory=list)      # paths / node ids given to pytest
    pytest_args: list[str] = field(default_factory=list)  # user's args (-k, -m, deselects); cleaned by pytestcmd


@dataclass
class PairSample:              # one stage in one process pair
    cpu: int
    calls: int                 # calls per block (calibrated)
    base: list[float]          # seconds PER CALL of each kept base block, in order
    head: list[float]          # seconds PER CALL of each kept head block, same length as base
    log_ratios: list[float]    # log(head/base) of each kept adjacent block pair
    dropped: int = 0           # block pairs dropped because a probe disagreed (phase switch)
    preempted: int = 0         # block pairs dropped because another process took the CPU inside a block


@dataclass
class PairedRun:
    stages: dict[str, list[PairSample]]                                # stage → one sample per pair
    too_long: dict[str, str] = field(default_factory=dict)             # stage → why it falls back to rounds
    failed: dict[str, dict[str, str]] = field(default_factory=dict)    # side → stage → error excerpt
    only: dict[str, list[str]] = field(default_factory=dict)           # side → stages only that side has
    groups: dict[str, dict] = field(default_factory=dict)              # stage → {"group":..., "params":...}
    seconds: float = 0.0
    aslr_off: bool = False                                             # whether ASLR was really off in the workers
    notices: list[str] = field(default_factory=list)


class _StageError(Exception):
    def __init__(self, side: str, excerpt: str):
        super().__init__(excerpt)
        self.side, self.excerpt = side, excerpt


class _Pair:
    """One base worker and one head worker on one CPU, walking the same stages in the same order."""

    def __init__(self, index: int, cpu: int, workers: dict[str, Worker], plan: PairedPlan, run: PairedRun):
        self.index, self.cpu, self.workers, self.plan, self.run = index, cpu, workers, plan, run
        self.finished: set[str] = set()  # sides whose pytest session ended
        self.failures: dict[str, dict[str, str]] = {BASE: {}, HEAD: {}}
        self.told: set[str] = set()  # sides whose early end is already a notice
        self.other_threads: dict[str, float] = {}  # side → largest share of CPU on other threads, this stage

    def _event(self, side: str, name: str) -> dict | None:
        """The worker's next message about `name`; failures are noted on the way; None once it finished."""
        if side in self.finished:
            return None
        message = self.workers[side].recv()
        kind = message.get("ev")
        if kind == "failed" and message.get("nodeid"):
            self.failures[side].setdefault(message["nodeid"], message.get("excerpt") or "failed")
        elif kind == "finished":
            self.finished.add(side)
            return None
        return message

    def _await_stage(self, side: str, name: str) -> dict | None:
        """The stage announcement of `name`, or None when its test ended without calling the benchmark."""
        while (message := self._event(side, name)) is not None:
            if message.get("ev") == "stage":
                if message.get("name") == name:
                    return message
                self.workers[side].send(cmd="skip")  # a stage under another name: not paired
            elif message.get("ev") == "end" and message.get("nodeid") == name:
                return None
        return None

    def _await_end(self, side: str, name: str) -> None:
        while (message := self._event(side, name)) is not None:
            if message.get("ev") == "stage":
                self.workers[side].send(cmd="skip")
            elif message.get("ev") == "end" and message.get("nodeid") == name:
                return

    def block(self, side: str, calls: int) -> tuple[float, list[float], float, int]:
        """(seconds in the calls, the probes around the block, seconds of the whole block with any setup, the
        times the scheduler took the worker's CPU inside the block)."""
        worker = self.workers[side]
        worker.send(cmd="block", calls=calls)
        while True:
            message = worker.recv()
            if message.get("ev") == "block":
                seconds = float(message["seconds"])
                self.other_threads[side] = max(self.other_threads.get(side, 0.0), _other_threads(message.get("cpu")))
                return (seconds, [float(p) for p in message.get("probe") or []], float(message.get("wall") or seconds),
                        int(message.get("preempted") or 0))
            if message.get("ev") == "error":
                raise _StageError(side, message.get("excerpt") or "failed")
            if message.get("ev") == "failed" and message.get("nodeid"):
                self.failures[side].setdefault(message["nodeid"], message.get("excerpt") or "failed")

    def stage(self, name: str) -> None:
        for worker in self.workers.values():
            worker.stage = name
        announced = {side: self._await_stage(side, name) for side in (BASE, HEAD)}
        ended = {side for side, message in announced.items() if message is None}
        for message in announced.values():
            if message is not None:
                self.run.groups[name] = {"group": message.get("group"), "params": message.get("params")}
        measured: PairSample | None = None
        if not ended:
            try:
                measured = self._measure(name)
            except _StageError as exc:
                self.failures[exc.side][name] = exc.excerpt
                ended.add(exc.side)  # its test goes on failing by itself
            for side in (BASE, HEAD):
                if side not in ended:
                    self.workers[side].send(cmd="done")
        else:
            for side in (BASE, HEAD):
                if side not in ended:
                    self.workers[side].send(cmd="skip")
        for side in (BASE, HEAD):
            if announced[side] is not None:
                self._await_end(side, name)
            self.workers[side].stage = None
        failed = False
        for side in (BASE, HEAD):
            if name in self.failures[side]:
                self.run.failed.setdefault(side, {}).setdefault(name, self.failures[side][name])
                failed = True
        if measured is not None and not failed:
            self.run.stages.setdefault(name, []).append(measured)
        elif not failed and name not in self.run.too_long:
            early = [side for side in (BASE, HEAD) if announced[side] is None and side in self.finished]
            for side in set(early) - self.told:  # pytest stopped (-x, an internal error): one notice, not one per stage
                self.told.add(side)
                _notice(self.run, f"the {side} worker's pytest session ended early: stages from {name} on "
                                  f"were not measured in pair {self.index + 1}")
            skipped = [side for side in (BASE, HEAD) if announced[side] is None and side not in early]
            if skipped:  # pytest.skip() inside the test, before its benchmark call
                _notice(self.run, f"{name} called no benchmark on {' and '.join(skipped)}: not measured")

    def _measure(self, name: str) -> PairSample | None:
        """Calibrate one number of calls for both sides, then alternate blocks A B B A A B ..."""
        plan = self.plan
        self.other_threads = {}
        single = {side: self.block(side, 1)[0] for side in (BASE, HEAD)}  # also the warm-up call
        if max(single.values()) * 1000 > plan.max_call_ms:  # a cold first call (imports, caches) gets a second chance
            single = {side: min(took, self.block(side, 1)[0]) for side, took in single.items()}
        longest = max(single.values())
        if longest * 1000 > plan.max_call_ms:
            self.run.too_long.setdefault(name, f"one call takes {longest * 1000:.0f} ms, too long for blocks of "
                                               f"calls (limit {plan.max_call_ms:g} ms)")
            return None
        target = plan.block_ms / 1000
        calls = 1
        # Grow tenfold until a block is long enough to estimate one call (as pytest-benchmark does). By
        # the block's whole span: a pedantic setup runs inside it too, and the span is what must stay
        # shorter than a phase.
        while True:
            took = {side: self.block(side, calls)[2] for side in (BASE, HEAD)}
            if min(took.values()) >= CALIBRATE_SHARE * target or calls >= 10 ** 7:
                break
            calls *= 10
        threaded = max(self.other_threads.get(BASE, 0.0), self.other_threads.get(HEAD, 0.0))
        if threaded >= OTHER_THREADS:  # auto's rule; pinned to one CPU its threads would queue: rounds time it
            self.run.too_long.setdefault(name, f"{threaded:.0%} of its CPU time is spent on other threads, which "
                                               "one CPU would serialise")
            return None
        per_call = math.sqrt(max(took[BASE], 1e-9) * max(took[HEAD], 1e-9)) / calls
        calls = max(1, round(target / per_call))
        sample = PairSample(cpu=self.cpu, calls=calls, base=[], head=[], log_ratios=[])
        attempt = 0
        while len(sample.log_ratios) < plan.blocks and attempt < MAX_ATTEMPTS * plan.blocks:
            order = (BASE, HEAD) if attempt % 2 == 0 else (HEAD, BASE)  # A B, B A, A B, ...
            attempt += 1
            got = {side: self.block(side, calls) for side in order}
            probes = [p for _, around, _, _ in got.values() for p in around]
            if any(switched for *_, switched in got.values()):
                sample.preempted += 1  # another process's time slice inside a block: drop, never scale
                continue
            if not probes or min(probes) <= 0 or max(probes) > plan.probe_tolerance * min(probes):
                sample.dropped += 1  # a phase switch inside this pair of blocks: drop, never scale
                continue
            base, head = got[BASE][0] / calls, got[HEAD][0] / calls
            if base <= 0 or head <= 0:
                sample.dropped += 1
                continue
            sample.base.append(base)
            sample.head.append(head)
            sample.log_ratios.append(math.log(head / base))
        return sample


def _command(setup: SideSetup, plan: PairedPlan) -> list[str]:
    # A file that fails to import on one side fails its stages there; the other files are still measured.
    # `-s`: what a stage prints before it kills its worker reaches the log, for the error line.
    return [str(setup.python), "-m", "pytest", *pytestcmd.pytest_args(
        plan.pytest_args, plugin=PLUGIN, targets=plan.targets, bolt_flags=["--continue-on-collection-errors", "-s"])]


def _start(side: str, index: int, cpu: int, setups: dict[str, SideSetup], plan: PairedPlan, workdir: Path) -> Worker:
    setup = setups[side]
    return Worker(f"{side} (pair {index + 1})", _command(setup, plan), setup.checkout, sandbox.measured(setup.env),
                  log=workdir / f"pair-{index + 1:02d}-{side}.log", timeout=plan.timeout, cpu=cpu,
                  aslr_off=not plan.aslr, memory_mb=plan.memory_mb)


def _hello(worker: Worker) -> dict:
    message = worker.recv()
    if message.get("ev") != "hello":
        worker.fail("did not start as a paired worker")
    return message


def _collected(worker: Worker) -> tuple[list[dict], dict[str, str]]:
    """(the benchmark tests it collected, {file or node it could not collect: why})."""
    errors: dict[str, str] = {}
    while True:
        message = worker.recv()
        if message.get("ev") == "collect_error":
            errors[str(message.get("nodeid") or "")] = str(message.get("excerpt") or "could not be collected")
        elif message.get("ev") == "collected":
            return list(message.get("items") or []), errors
        elif message.get("ev") == "finished":
            first = next(iter(errors.items()), None)
            worker.fail("ended before collecting its benchmarks", first and f"{first[0]}: {first[1]}"[:300])


def _under(nodeid: str, errors: dict[str, str]) -> str | None:
    """Why `nodeid` could not be collected, when it lives in a file or node that failed to collect."""
    for where, why in errors.items():
        if not where or nodeid == where or nodeid.startswith((where + "::", where + "/")):
            return f"{where}: {why}" if where else why
    return None


def _one_pair(index: int, cpu: int, setups: dict[str, SideSetup], plan: PairedPlan, workdir: Path,
              run: PairedRun, wanted: set[str] | None, skip: set[str], info: list[dict]) -> None:
    workers: dict[str, Worker] = {}
    try:
        for side in (BASE, HEAD):
            workers[side] = _start(side, index, cpu, setups, plan, workdir)
        for side, worker in workers.items():
            hello = _hello(worker)
            info.append({"pair": index, "side": side, "cpu": cpu, "pid": hello.get("pid"), "cpus": hello.get("cpus"),
                         "aslr_off": bool(hello.get("aslr_off")), "pytest_benchmark": hello.get("pytest_benchmark")})
            if hello.get("cpus") != [cpu]:
                _notice(run, f"the workers could not be pinned to one CPU (they may run on {hello.get('cpus')})")
        collected = {side: _collected(worker) for side, worker in workers.items()}
        items = {side: found for side, (found, _) in collected.items()}
        names = {side: [item["nodeid"] for item in items[side]] for side in items}
        present = {side: set(found) for side, found in names.items()}
        for side, other in ((BASE, HEAD), (HEAD, BASE)):
            alone = []
            for name in names[side]:
                if name in present[other] or (wanted is not None and name not in wanted):
                    continue
                why = _under(name, collected[other][1])
                if why is None:
                    alone.append(name)
                else:  # in a file the other side cannot import: failed there, not added or removed
                    run.failed.setdefault(other, {}).setdefault(name, why)
            if alone:
                run.only[side] = sorted(set(run.only.get(side, [])) | set(alone))
            for item in items[side]:
                run.groups.setdefault(item["nodeid"], {"group": item.get("group"), "params": item.get("params")})
        order = [n for n in names[BASE] if n in present[HEAD] and (wanted is None or n in wanted) and n not in skip]
        for worker in workers.values():
            worker.send(cmd="select", stages=order)
        pair = _Pair(index, cpu, workers, plan, run)
        for name in order:
            pair.stage(name)
        for side, worker in workers.items():
            pair._await_end(side, "")  # to the end of its session
            worker.finish()
    finally:
        for worker in workers.values():
            worker.close()


def _other_threads(cpu: object) -> float:
    """The share of a block's process CPU time spent on other threads, from the worker's [thread, process]."""
    try:
        thread, process = (float(x) for x in cpu)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, process - thread) / process if process > 0 else 0.0


def _notice(run: PairedRun, text: str) -> None:
    if text not in run.notices:
        run.notices.append(text)


def measure_paired(setups: dict[str, SideSetup], plan: PairedPlan, workdir: Path,
                   progress: Progress | None = None, only: list[str] | None = None) -> PairedRun:
    """Measure every stage both sides have (or just those in `only`) in `plan.pairs` fresh process pairs.

    Writes the raw data to workdir/paired.json (PairedRun as JSON) before returning, so rules can be
    replayed. A stage failing in a worker lands in `failed`; a worker that cannot start, dies or hangs
    raises BoltError with one line.
    """
    progress = progress or Progress(quiet=True)
    started = time.monotonic()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = [0]
    run = PairedRun(stages={})
    info: list[dict] = []
    wanted = set(only) if only is not None else None
    with progress.bar(plan.pairs, "measuring base and head in pairs"):
        for index in range(plan.pairs):
            # Stages already too long for blocks or failed are not run again: rounds measure the first.
            skip = set(run.too_long) | {name for side in run.failed.values() for name in side}
            cpu, busy = quiet_cpu(cpus, cpus[index % len(cpus)])
            if busy is not None:
                _notice(run, f"CPU {busy} was busy with other work when a pair was due on it, so that pair "
                             f"ran on CPU {cpu}")
            with away_from(cpu, cpus):
                _one_pair(index, cpu, setups, plan, workdir, run, wanted, skip, info)
            progress.step(f"pair {index + 1} of {plan.pairs} on CPU {cpu}")
    for name in [n for side in run.failed.values() for n in side] + list(run.too_long):
        run.stages.pop(name, None)
    run.aslr_off = bool(info) and all(w["aslr_off"] for w in info)
    if not plan.aslr and not run.aslr_off:
        _notice(run, "ASLR could not be turned off for the workers")
    run.seconds = time.monotonic() - started
    write_paired(run, workdir / "paired.json", workers=info)
    return run


def write_paired(run: PairedRun, path: Path, workers: list[dict] | None = None) -> None:
    data = {"schema": SCHEMA, **asdict(run), "workers": workers or []}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)


def read_paired(path: Path) -> PairedRun:
    """Read workdir/paired.json back (replay); one clear BoltError when it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} file")
        stages = {name: [PairSample(**sample) for sample in samples] for name, samples in data["stages"].items()}
        return PairedRun(stages=stages, too_long=dict(data.get("too_long") or {}),
                         failed={side: dict(v) for side, v in (data.get("failed") or {}).items()},
                         only={side: list(v) for side, v in (data.get("only") or {}).items()},
                         groups=dict(data.get("groups") or {}), seconds=float(data.get("seconds") or 0.0),
                         aslr_off=bool(data.get("aslr_off")), notices=list(data.get("notices") or []))
    except OSError as exc:
        raise BoltError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BoltError(f"{path} is not a paired-timing file: {exc}") from None
