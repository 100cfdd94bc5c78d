"""The one way Bolt runs a measured process: its own process group, killed whole on timeout or interrupt."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bolt_bot.errors import BoltError


@dataclass
class Finished:
    returncode: int  # -9 when Bolt killed it for taking too long
    output: str  # stdout and stderr together
    timed_out: bool
    seconds: float


class PassStopped(Exception):
    """A process was killed by stop_all(): the run it belongs to was interrupted.

    Not a BoltError: nothing reports it, the interruption that caused it is what propagates.
    """


class _LiveProcesses:
    """The process groups running now, whichever thread started them.

    Ctrl-C and SIGTERM reach only the main thread, while the instruction counts of base and head run in
    worker threads: this registry lets the main thread kill their valgrind runs (minutes long) at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.stops = 0  # stop() calls so far: a measurement compares it with the count when it began

    def start(self, since: int, cmd: list[str], **popen) -> subprocess.Popen:
        """Popen and register, at once: a stop() either refuses the start or finds the process."""
        with self._lock:
            self.check(since)  # a worker between two of its processes when the stop came
            proc = subprocess.Popen(cmd, **popen)
            self._procs.add(proc)
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        """Called once `proc` is reaped: its process group id may be reused from then on."""
        with self._lock:
            self._procs.discard(proc)

    def check(self, since: int) -> None:
        if self.stops != since:
            raise PassStopped("the measured process was stopped: Bolt was interrupted")

    def stop(self) -> None:
        with self._lock:
            self.stops += 1
            for proc in self._procs:
                _kill_group(proc, wait=False)  # the thread waiting for it reaps it


_live = _LiveProcesses()


def generation() -> int:
    """A mark to pass as `since` to run(): a stop_all() after it ends every later run() with PassStopped."""
    return _live.stops


def start(since: int, cmd: list[str], **popen) -> subprocess.Popen:
    """Popen a measured process that stop_all() can reach (for callers that talk to it while it runs)."""
    return _live.start(since, cmd, **popen)


def check(since: int) -> None:
    """PassStopped if stop_all() came after `since`."""
    _live.check(since)


def release(proc: subprocess.Popen) -> None:
    """Kill `proc`'s process group, reap it, and let stop_all() forget it."""
    _kill_group(proc)
    _live.forget(proc)


def stop_all() -> None:
    """Kill the process groups of every running measured process (valgrind and its children), from any thread."""
    _live.stop()


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float, *, log: Path | None = None,
        memory_mb: int | None = None, since: int | None = None) -> Finished:
    """Run `cmd` in its own process group, its output into `log` (or a temporary file); kill the group on
    timeout, on Ctrl-C/SIGTERM, and its leftovers once it ends. PassStopped if stop_all() came after `since`."""
    since = generation() if since is None else since
    started = time.monotonic()
    with (open(log, "w+b") if log is not None else tempfile.TemporaryFile()) as out:
        try:
            proc = _live.start(since, cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True,
                               preexec_fn=limits(memory_mb))
        except OSError as exc:
            raise BoltError(f"cannot start {cmd[0]}: {exc.strerror or exc}") from None
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:  # Ctrl-C, SIGTERM: leave no benchmark running behind us
            _kill_group(proc)
            raise
        finally:
            _kill_group(proc, wait=False)  # whatever it started and left behind
            _live.forget(proc)
        _live.check(since)
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    code = proc.returncode if proc.returncode is not None else -9
    return Finished(code, output, timed_out, time.monotonic() - started)


def limits(memory_mb: int | None):
    """The child's preexec_fn: no core dumps, and an address-space cap when `memory_mb` is set."""

    def apply() -> None:
        import resource  # in the child only: the module exists on POSIX alone

        # valgrind writes vgcore.<pid> into the cwd (the checkout) on a fatal signal unless this is 0.
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ValueError, OSError):
            pass
        if memory_mb and memory_mb > 0:
            # An allocation bomb fails that stage, not the machine.
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = memory_mb * 1024 * 1024
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)  # an unprivileged process may not raise its hard limit
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    return apply


def _kill_group(proc: subprocess.Popen, wait: bool = True) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if wait:
            proc.kill()
    if wait:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


_CAUSE = re.compile(r"Error|error:|No module named|unrecognized arguments")


def error_line(output: str, limit: int = 300) -> str:
    """The line of a process's output that names why it failed, not "usage: pytest [options]" or a rule.

    argparse prints "<prog>: error: unrecognized arguments: -n0" after the usage line; a node id pytest
    cannot find prints "ERROR: not found: ..."; an exception shows on an "E " line; else the last line
    that looks like an error, else the last line.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.startswith(("==", "--"))]
    lines = [line for line in lines if not set(line) <= set("=-_ ")]
    for line in lines:
        if ": error: " in line:
            return line.split(": error: ", 1)[1][:limit]
    for line in reversed(lines):
        if line.startswith("E ") and len(line) > 2:
            return line[1:].strip()[:limit]
    for line in lines:
        if line.startswith("ERROR:") and not line.startswith("ERROR: usage:"):
            return line[len("ERROR:"):].strip()[:limit]
    for line in reversed(lines):
        if _CAUSE.search(line):
            return line[:limit]
    return (lines[-1] if lines else "no output")[:limit]


def in_parallel(fn: Callable[[str], None], sides: list[str]) -> None:
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
        stop_all()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def read_events(path: Path) -> list[dict]:
    """The JSON-lines events a probe plugin wrote, [] when it wrote none; a line cut by a crash is skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out
