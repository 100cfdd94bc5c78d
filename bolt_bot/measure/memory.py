"""The memory pass: one traced call of each stage per side (memray), in a pytest process of its own.

It runs after the wall-time and count passes, never beside a timed one (tracing slows the machine's other
core too). Each side's process loads `probe/bolt_memory_plugin.py`, which replaces pytest-benchmark's
fixture: a warm-up call, `gc.collect()`, then one call under memray with the Python allocators traced
(docs/measurement.md, "Memory": why memray, what repeats, what it costs). Allocation counts and bytes of
one call repeat exactly for the same code and hash seed (PYTHONHASHSEED=0, as every measured pass has);
the peak depends on the allocator and gets a margin in decide/memory.py.

`memory = "auto"` (the default) measures every stage that exists on both sides except those whose one call
took longer than LONG_CALL in the discovery round: their traced call costs several times an untraced one
and they are not the allocation-bound stages this gate is for; `"off"` skips the pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.errors import BoltError
from bolt_bot.measure import process, pytestcmd, sandbox
from bolt_bot.measure.sides import BASE, HEAD
from bolt_bot.model import AllocSite, MemorySide
from bolt_bot.progress import Progress

MEMRAY_VERSION = "1.20.0"  # wheels for CPython 3.9-3.14 on Linux and macOS
PLUGIN = "bolt_memory_plugin"  # measure/probe/bolt_memory_plugin.py
EVENTS_VARIABLE = "BOLT_MEMORY_EVENTS"
TOP_LINES = 20  # allocating lines kept per call: a line missing from a full list is not known to be new
LONG_CALL = 2.0  # seconds per call in the discovery round: longer stages are left out by `auto`
_NO_MEMRAY = "BOLT-NO-MEMRAY"
_CHECK = f"import sys\ntry:\n    import memray\nexcept Exception:\n    print({_NO_MEMRAY!r})\n    sys.exit(3)\n"


def memray_requirement() -> str:
    """What the measured environments need for the pass. memray has wheels for Linux and macOS and CPython
    3.9+ only; elsewhere it is not installed (a source build would fail the whole environment), and the pass
    says it has no memray."""
    return (f"memray=={MEMRAY_VERSION}; python_version >= '3.9' and "
            "(sys_platform == 'linux' or sys_platform == 'darwin')")


@dataclass
class MemoryPass:
    """One side's memory pass: each stage's traced call, or why it has none."""

    stages: dict[str, MemorySide] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # stage -> why (its test failed, the pass crashed)
    seconds: float = 0.0  # wall time of the pass
    traced: float = 0.0  # seconds spent in the traced calls themselves


@dataclass
class MemoryRun:
    """Both sides' memory passes."""

    passes: dict[str, MemoryPass] = field(default_factory=dict)  # "base", "head"
    errors: dict[str, str] = field(default_factory=dict)  # side -> why its whole pass failed
    skipped: dict[str, str] = field(default_factory=dict)  # stage -> why `auto` left it out
    seconds: float = 0.0

    def environment(self) -> dict:
        """What results.json's environment says of the pass."""
        return {"tool": f"memray {MEMRAY_VERSION}, Python allocators traced: the second of two traced calls "
                        "after a warm-up",
                "stages": len({n for p in self.passes.values() for n in p.stages}),
                "skipped": len(self.skipped),
                "seconds": {side: round(p.seconds, 1) for side, p in self.passes.items()},
                **({"errors": dict(self.errors)} if self.errors else {})}


def measure_memory(python: Path, checkout: Path, pytest_args: list[str], *, env: dict[str, str] | None = None,
                   timeout: float = 600.0, workdir: Path, memory_mb: int | None = None) -> MemoryPass:
    """One side's pass: every selected stage traced once. BoltError when the pass cannot run at all (no
    memray in the environment, a collection or usage error), process.PassStopped after process.stop_all()."""
    checkout, workdir = Path(checkout).resolve(), Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    run_env = sandbox.measured(env if env is not None else sandbox.side_environ(python))
    since = process.generation()
    check = process.run([str(python), "-c", _CHECK], checkout, run_env, timeout, since=since)
    if _NO_MEMRAY in check.output:
        raise BoltError(f"memray is not installed in the environment of {python} (install {memray_requirement()})")
    events = workdir / "events.jsonl"
    events.unlink(missing_ok=True)
    args = pytestcmd.pytest_args(pytest_args, plugin=PLUGIN)
    res = process.run([str(python), "-m", "pytest", *args], checkout,
                      {**run_env, EVENTS_VARIABLE: str(events), "BOLT_MEMORY_TOP": str(TOP_LINES)},
                      timeout, log=workdir / "pytest.log", memory_mb=memory_mb, since=since)
    return read_pass(process.read_events(events), res, timeout)


def read_pass(events: list[dict], res: process.Finished, timeout: float) -> MemoryPass:
    """A side's pass from its plugin's events and how its process ended."""
    errors = [e for e in events if e.get("ev") == "collect_error"]
    if errors:
        raise BoltError(f"collection error in {errors[0].get('nodeid') or 'the test session'}: "
                        f"{_first_line(errors[0].get('text'))}")
    collected = next((e for e in events if e.get("ev") == "collected"), None)
    if collected is None:
        if res.timed_out:
            raise BoltError(f"the memory pass timed out after {timeout:.0f} s before collecting")
        if res.returncode == 5:
            return MemoryPass(seconds=res.seconds)
        raise BoltError(f"the memory pass failed before collecting (exit {res.returncode}): "
                        f"{process.error_line(res.output)}")
    out = MemoryPass(seconds=res.seconds)
    for e in events:
        if e.get("ev") == "memory":
            out.stages[e["nodeid"]] = side_from_event(e)
            out.traced += float(e.get("seconds") or 0.0)
        elif e.get("ev") == "failed" and e.get("nodeid") not in out.failed:
            when = e.get("when")
            line = _first_line(e.get("text"))
            out.failed[e["nodeid"]] = line if when in (None, "call") else f"error in {when}: {line}"
    finished = {e.get("nodeid") for e in events if e.get("ev") == "finish"}
    if res.timed_out or res.returncode not in (0, 1):
        reason = f"timed out after {timeout:.0f} s" if res.timed_out else f"pytest stopped early (exit {res.returncode})"
        for name in collected.get("nodeids") or []:
            if name not in out.failed and name not in finished:
                out.failed[name] = f"the memory pass {reason}"
    for name in out.failed:
        out.stages.pop(name, None)  # a call whose test failed afterwards still ran: its numbers stay unused
    return out


def side_from_event(event: dict) -> MemorySide:
    top = [AllocSite(where=str(t["where"]), function=t.get("function"), allocations=int(t["allocations"]),
                     allocated=int(t["allocated"]), code=t.get("code")) for t in event.get("top") or []]
    return MemorySide(allocations=int(event["allocations"]), allocated=int(event["allocated"]),
                      peak=int(event["peak"]), top=top)


def long_stages(walltimes: dict[str, dict[str, float]]) -> dict[str, str]:
    """stage -> why `auto` leaves it out: its call took longer than LONG_CALL on a side (discovery's timings)."""
    out = {}
    for side in (BASE, HEAD):
        for name, seconds in (walltimes.get(side) or {}).items():
            if seconds > LONG_CALL and name not in out:
                out[name] = f"one call took {seconds:.1f} s on {side} (the memory pass traces stages up to {LONG_CALL:.0f} s)"
    return out


def measure_sides(setups: dict, pytest_args: list[str], workdir: Path, progress: Progress | None = None, *,
                  timeout: float = 600.0, memory_mb: int | None = None, skip: dict[str, str] | None = None,
                  memory_fn=measure_memory) -> MemoryRun:
    """Base's and head's passes at the same time, one core each, as counts are: allocation counts, bytes and
    the peak do not depend on load, and nothing in the pass is timed for a verdict. A side that cannot run is
    an error of that side, not of the run."""
    progress = progress or Progress(quiet=True)
    started = time.monotonic()
    run = MemoryRun(skipped=dict(skip or {}))
    args = [*pytest_args, *pytestcmd.deselect(sorted(run.skipped))]

    def trace(side: str) -> None:
        setup = setups[side]
        try:
            done = memory_fn(setup.python, setup.checkout, list(args), env=setup.env, timeout=timeout,
                             workdir=workdir / side, memory_mb=memory_mb)
        except BoltError as exc:
            run.errors[side] = str(exc)
            progress.warn(f"{side}: the memory pass failed: {exc}")
            return
        run.passes[side] = done
        progress.step(f"memory {side}: {len(done.stages)} stages traced, {len(done.failed)} failed, "
                      f"in {done.seconds:.1f} s")

    process.in_parallel(trace, [BASE, HEAD])
    run.passes = {side: run.passes[side] for side in (BASE, HEAD) if side in run.passes}  # base first, always
    run.seconds = time.monotonic() - started
    return run


def _first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = lines[0] if lines else "failed"
    return line if len(line) <= 200 else line[:197] + "..."
