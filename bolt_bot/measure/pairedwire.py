"""Bolt's end of the paired workers' pipe: start a pinned pytest worker, JSON lines both ways, kill it whole.

The worker is bolt_bot/measure/probe/bolt_paired_plugin.py inside a pytest process. It inherits two
pipe ends (pass_fds), named in its environment; its own output goes to a log file, read only to explain
a failure in one line (process.error_line).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import NoReturn

from bolt_bot.errors import BoltError
from bolt_bot.measure import process

ENV_FDS = "BOLT_PAIRED_FDS"  # the plugin's name for it too
PLUGIN = "bolt_paired_plugin"
ADDR_NO_RANDOMIZE = 0x0040000
_PROGRESS = re.compile(r"[.FEsxXp]*( *\[ *\d+%\])?")
_QUERY_PERSONALITY = 0xFFFFFFFF

try:  # loaded before any fork: the child's preexec_fn only calls it
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _LIBC.personality.argtypes = [ctypes.c_ulong]
    _LIBC.personality.restype = ctypes.c_int
except (OSError, AttributeError):
    _LIBC = None


def _preexec(cpu: int | None, aslr_off: bool, memory_mb: int | None):
    """The child's set-up before exec: process.run's limits, one CPU, and ASLR off when asked (both inherited by exec)."""
    limits = process.limits(memory_mb)

    def apply() -> None:
        limits()
        if cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {cpu})
        if aslr_off and _LIBC is not None:
            # What `setarch -R` does. A seccomp filter (a container's default profile) may refuse it:
            # the worker reports whether it took.
            current = _LIBC.personality(_QUERY_PERSONALITY)
            if current != -1:
                _LIBC.personality(current | ADDR_NO_RANDOMIZE)

    return apply


class Worker:
    """One pytest worker process: its pipe, its log, how long it may stay silent.

    `timeout` bounds each wait for an answer, not the worker's life: a worker serves a whole suite, two
    sides' worth of blocks, and a suite of thousands of stages must not be cut off for its size.
    """

    def __init__(self, label: str, cmd: list[str], cwd: Path, env: dict[str, str], *, log: Path, timeout: float,
                 cpu: int | None, aslr_off: bool, memory_mb: int | None):
        self.label = label
        self.stage: str | None = None  # what it was doing, for the error line
        self.timeout = timeout
        self._buf = b""
        self._log = open(log, "w+b")
        cmd_read, cmd_write = os.pipe()
        event_read, event_write = os.pipe()
        self._write, self._read = cmd_write, event_read
        self.proc: subprocess.Popen | None = None
        self.since = process.generation()
        try:
            self.proc = process.start(
                self.since, cmd, cwd=cwd, env={**env, ENV_FDS: f"{cmd_read},{event_write}"},
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                pass_fds=(cmd_read, event_write), preexec_fn=_preexec(cpu, aslr_off, memory_mb))
        except OSError as exc:
            self.close()
            raise BoltError(f"paired timing: cannot start the {label} worker ({cmd[0]}): {exc.strerror or exc}") from None
        except BaseException:
            self.close()
            raise
        finally:
            os.close(cmd_read)
            os.close(event_write)

    def send(self, **command) -> None:
        data = (json.dumps(command) + "\n").encode("utf-8")
        try:
            while data:
                data = data[os.write(self._write, data):]
        except OSError:
            self.fail("stopped answering")

    def recv(self) -> dict:
        """The worker's next message; one clear BoltError if it dies, stays silent too long or talks nonsense."""
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"timed out: no answer for {self.timeout:.0f} s")
            ready, _, _ = select.select([self._read], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self._read, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.fail(self._death())
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            self.fail("sent a message Bolt cannot read")
        if not isinstance(message, dict):
            self.fail("sent a message Bolt cannot read")
        return message

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "closed its pipe"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"was killed by {signal.Signals(-code).name}"
            return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def output(self) -> str:
        try:
            self._log.flush()
            self._log.seek(0)
            return self._log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def fail(self, what: str, excerpt: str | None = None) -> NoReturn:
        where = f" in {self.stage}" if self.stage else ""
        excerpt = excerpt or process.error_line(self.output())
        self.close()
        process.check(self.since)  # killed by stop_all(): the interruption propagates, not this
        if _PROGRESS.fullmatch(excerpt) or excerpt == "no output":
            excerpt = ""  # pytest's progress dots say nothing
        raise BoltError(f"paired timing: the {self.label} worker {what}{where}" + (f": {excerpt}" if excerpt else ""))

    def finish(self, wait: float = 10.0) -> int | None:
        """Wait a little for a worker that has said it finished, then close it."""
        code = None
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(timeout=wait)
        self.close()
        return code

    def close(self) -> None:
        """Kill the worker's process group and reap it; close the pipe ends. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None:
            process.release(proc)
        for fd in (self._write, self._read):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._write = self._read = -1
        if not self._log.closed:
            self._log.close()


# A pair is moved off its CPU when that CPU was idle this much less of the time than the idlest one: another
# process's time slices inside the blocks would be dropped block by block (preemptions), leaving too few.
BUSY_MARGIN = 0.3
IDLE_WINDOW = 0.1  # seconds over which the CPUs' idle time is read before each pair


def _cpu_times() -> dict[int, tuple[int, int]]:
    """cpu → (idle ticks, all ticks) from /proc/stat; empty where there is none."""
    out: dict[int, tuple[int, int]] = {}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(fields) >= 5:
            ticks = [int(f) for f in fields[:8]]
            out[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))  # idle + iowait
    return out


def quiet_cpu(cpus: list[int], preferred: int) -> tuple[int, int | None]:
    """(the CPU a pair runs on, the preferred CPU when it was passed over as busy, else None).

    The pairs take turns on the CPUs; a CPU that another process keeps busy (a neighbour's job, a CPU hog)
    is passed over for the idlest one, measured over IDLE_WINDOW just before the pair starts."""
    before = _cpu_times()
    if len(cpus) < 2 or not before:
        return preferred, None
    time.sleep(IDLE_WINDOW)
    after = _cpu_times()
    idle = {}
    for cpu in cpus:
        if cpu in before and cpu in after and after[cpu][1] > before[cpu][1]:
            idle[cpu] = (after[cpu][0] - before[cpu][0]) / (after[cpu][1] - before[cpu][1])
    if preferred not in idle:
        return preferred, None
    idlest = max(sorted(idle), key=lambda cpu: idle[cpu])
    if idle[idlest] - idle[preferred] >= BUSY_MARGIN:
        return idlest, preferred
    return preferred, None


@contextlib.contextmanager
def away_from(cpu: int, cpus: list[int]):
    """Bolt's own thread off the pair's CPU while the pair runs: woken by a worker's answer, it would
    otherwise take the CPU back from the other worker in the middle of its block."""
    others = set(cpus) - {cpu}
    try:
        before = os.sched_getaffinity(0)
        if others:
            os.sched_setaffinity(0, others)
    except (AttributeError, OSError):
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, before)
