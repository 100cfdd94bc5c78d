"""Why `--measure auto` sends a stage to wall time: waiting or threads, seen in what a discovery call did.

Instruction counts miss the time a stage waits (I/O, sleep, locks) and what threads cost beyond their
instructions (measurement-facts.md), so such stages are timed. On these VMs the process clock against the
wall clock of one short call says nothing: preemption and steal time move it from 10 % to 500 %. The
round plugin therefore reports, over the whole discovery call of a stage (every call pytest-benchmark
made), evidence that no clock drift moves: how often the benchmark's thread blocked (voluntary context
switches, counted by the kernel), and how much CPU time the process spent outside that thread (two CPU
clocks of the same process, read together). A single-threaded computation shows neither, however short.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

EVIDENCE_VARIABLE = "BOLT_CALL_EVIDENCE"  # the plugin writes one line per test call to the file it names
# A stage that blocks at least every other call waits by design (a sleep or read per call blocks once
# or more each time); computation blocks about never: 0 in hundreds of thousands of calls here.
BLOCKS_PER_CALL = 0.5
# CPU time outside the benchmark's thread, as a share of the process's: threads that compute. Below
# MIN_OTHER_CPU seconds in the whole discovery call there is too little to say anything.
OTHER_THREADS = 0.25
MIN_OTHER_CPU = 0.002


@dataclass(frozen=True)
class CallEvidence:
    """What one discovery call of a stage did, summed over all the calls pytest-benchmark made."""

    wall: float = 0.0  # seconds
    cpu: float = 0.0  # process CPU seconds, every thread
    thread_cpu: float = 0.0  # CPU seconds of the thread that ran the benchmark
    voluntary: int = 0  # times that thread blocked
    involuntary: int = 0  # times it was preempted (load, steal: no property of the stage)
    threads_before: int = 1
    threads_after: int = 1
    calls: int = 0  # calls of the stage in the measured rounds (0: unknown)

    @property
    def blocks_per_call(self) -> float:
        return self.voluntary / max(self.calls, 1)

    @property
    def other_cpu(self) -> float:
        return max(self.cpu - self.thread_cpu, 0.0)


def evidence_file(workdir: Path) -> Path:
    return workdir / "calls.jsonl"


def read_evidence(path: Path) -> dict[str, CallEvidence]:
    """Stage → evidence, from the plugin's file; lines that do not parse are skipped (a crash mid-write)."""
    found: dict[str, CallEvidence] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            event = json.loads(line)
            if event.get("event") != "call":
                continue
            found[str(event["nodeid"])] = CallEvidence(
                wall=float(event["wall"]), cpu=float(event["cpu"]), thread_cpu=float(event["thread_cpu"]),
                voluntary=int(event["voluntary"]), involuntary=int(event.get("involuntary", 0)),
                threads_before=int(event.get("threads_before", 1)), threads_after=int(event.get("threads_after", 1)),
                calls=int(event.get("calls", 0)))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def judge(evidence: CallEvidence) -> str | None:
    """Why this stage belongs on the wall-time path, or None when it computes on one thread."""
    if evidence.other_cpu >= MIN_OTHER_CPU and evidence.other_cpu >= OTHER_THREADS * evidence.cpu:
        threads = max(evidence.threads_before, evidence.threads_after)
        seen = f", {threads} threads alive" if threads > 1 else ""
        return (f"computes on several threads ({evidence.other_cpu / evidence.cpu * 100:.0f} % of its CPU time was "
                f"spent outside the benchmark's thread{seen}); callgrind runs threads one at a time")
    if evidence.voluntary >= 2 and evidence.blocks_per_call >= BLOCKS_PER_CALL:
        per_call = f"{evidence.blocks_per_call:.1f} times per call" if evidence.calls else f"{evidence.voluntary} times"
        return (f"waits: its thread blocked {per_call} (I/O, sleep or a lock); instruction counts do not see "
                "time spent waiting")
    return None


def judge_sides(evidence: dict[str, dict[str, CallEvidence]], name: str, order: tuple[str, ...]) -> str | None:
    """The first side (in `order`) on which the stage waits or uses threads, named in the reason."""
    for side in order:
        found = evidence.get(side, {}).get(name)
        reason = judge(found) if found is not None else None
        if reason is not None:
            return f"{reason} (seen on {side})"
    return None
