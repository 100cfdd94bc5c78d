"""Run ``prism proxy`` (npm @stoplight/prism-cli) in front of the GitHub double and collect the
spec violations it reports.

Prism runs WITHOUT ``--errors``: with it, a bad response would become prism's own 500 and a bad
request a 422, which would also rewrite the double's deliberate faults (a 502 with its headers, a
403 with Retry-After) into something else. Without it, prism forwards the exchange unchanged and
logs each violation; we parse its log into :class:`Exchange` records and the fixtures assert that
there are none (see :func:`Exchange.failures`).

How prism 5.16 judges a response (``prism-http/dist/validator/index.js``): a status the operation
does not document is a violation "Unable to match the returned status code ..." of severity
*Error* for 2xx and *Warning* otherwise, and then nothing else of that response is checked. GitHub's
description documents only some error statuses per operation (e.g. none for POST .../statuses), yet
the real API answers 401/403/404/422/5xx everywhere; the double only sends such statuses on
purpose. So a non-2xx "Unable to match" warning is *tolerated* (kept in ``Exchange.tolerated`` for
inspection) and everything else counts: request violations, body/header violations of documented
statuses (error bodies included), undocumented 2xx statuses and "Selected route not found" (an
endpoint missing from ``spec.OPERATIONS``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .spec import NODE_MODULES, subset_path

PRISM_BIN = NODE_MODULES / ".bin" / "prism"

_REQUEST = re.compile(r"\[HTTP SERVER\] (\w+) (\S+) .*Request received")
_UPSTREAM = re.compile(r"The upstream call to (\S+) has returned (\d+)")
_VIOLATION = re.compile(r"\[VALIDATOR\] \S+\s+(error|warning|info)\s+Violation: (\S+) (.*)$")
_UNMATCHED = "Unable to match the returned status code"


@dataclass
class Violation:
    severity: str  # "error" | "warning"
    location: str  # "request.body", "response", "response.body.user", ...
    message: str

    def __str__(self) -> str:
        return f"{self.severity} {self.location}: {self.message}"


@dataclass
class Exchange:
    """One request as prism saw it, with what it reported."""

    method: str
    path: str
    status: int | None = None
    violations: list[Violation] = field(default_factory=list)
    tolerated: list[Violation] = field(default_factory=list)

    def add(self, violation: Violation) -> None:
        if (violation.location == "response" and violation.message.startswith(_UNMATCHED)
                and self.status is not None and not 200 <= self.status < 300):
            self.tolerated.append(violation)  # see the module docstring
        else:
            self.violations.append(violation)

    def failures(self, allowed: "list[re.Pattern[str] | str]" = ()) -> list[Violation]:
        """Violations not matched by any ``allowed`` regex (searched in "location: message")."""
        out = []
        for v in self.violations:
            text = f"{v.location}: {v.message}"
            if not any(re.search(a, text) for a in allowed):
                out.append(v)
        return out

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path} -> {self.status}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Prism:
    """``prism proxy`` on a free loopback port, forwarding to ``upstream``."""

    def __init__(self, upstream: str, *, spec: Path | None = None, host: str = "127.0.0.1",
                 port: int | None = None, startup_timeout: float = 60.0):
        self.upstream = upstream
        self.spec = spec
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "Prism":
        if not PRISM_BIN.exists():
            raise FileNotFoundError(f"{PRISM_BIN} is missing: run .ci/install-node")
        spec = self.spec or subset_path()
        env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0", "SCARF_ANALYTICS": "false",
               "DO_NOT_TRACK": "1"}
        for attempt in range(3):  # a free port can be taken between probe and bind
            self.port = self.port or free_port(self.host)
            cmd = [str(PRISM_BIN), "proxy", str(spec), self.upstream, "--host", self.host,
                   "--port", str(self.port), "--cors", "false", "--errors", "false"]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, text=True, env=env,
                                         encoding="utf-8", errors="replace")
            self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True,
                                            name="prism-log")
            self._reader.start()
            if self._wait_ready():
                return self
            self.stop()
            self.port = None
        raise RuntimeError("prism did not start:\n" + self.log_text()[-4000:])

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            with self._lock:
                listening = any("Prism is listening" in line for line in self.lines)
            if listening:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            self.proc = None
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None

    def __enter__(self) -> "Prism":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------- the log

    def mark(self) -> int:
        """A position in the log; :meth:`exchanges` reads from one."""
        with self._lock:
            return len(self.lines)

    def log_text(self, since: int = 0) -> str:
        with self._lock:
            return "\n".join(self.lines[since:])

    def settle(self, expected: int, since: int = 0, timeout: float = 2.0) -> None:
        """Wait until prism logged ``expected`` forwarded responses since ``since`` and its log
        went quiet (violations are logged just after the response line)."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            with self._lock:
                lines = self.lines[since:]
            done = sum(1 for line in lines if _UPSTREAM.search(line))
            if done >= expected and len(lines) == last:
                return
            last = len(lines)
            time.sleep(0.05)

    def exchanges(self, since: int = 0) -> list[Exchange]:
        """Parse the log from ``since`` into exchanges (requests are sequential in our tests;
        with concurrent requests a violation may be attributed to a neighbour, never lost)."""
        with self._lock:
            lines = self.lines[since:]
        out: list[Exchange] = []
        for line in lines:
            m = _REQUEST.search(line)
            if m:
                out.append(Exchange(method=m.group(1), path=m.group(2)))
                continue
            m = _UPSTREAM.search(line)
            if m and out:
                out[-1].status = int(m.group(2))
                continue
            m = _VIOLATION.search(line)
            if m:
                if not out:
                    out.append(Exchange(method="?", path="?"))
                out[-1].add(Violation(severity=m.group(1), location=m.group(2), message=m.group(3)))
        return out
