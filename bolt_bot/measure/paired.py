"""Stand-in for the paired engine (branch `paired` owns the real module): its data classes, no measuring yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.measure.walltime import SideSetup
from bolt_bot.progress import Progress


@dataclass
class PairedPlan:
    pairs: int = 6
    block_ms: float = 5.0
    blocks: int = 24
    max_call_ms: float = 20.0
    probe_tolerance: float = 1.3
    aslr: bool = False
    timeout: float = 600.0
    memory_mb: int = 4096
    targets: list[str] = field(default_factory=list)
    pytest_args: list[str] = field(default_factory=list)


@dataclass
class PairSample:
    cpu: int
    calls: int
    base: list[float]
    head: list[float]
    log_ratios: list[float]
    dropped: int = 0


@dataclass
class PairedRun:
    stages: dict[str, list[PairSample]]
    too_long: dict[str, str] = field(default_factory=dict)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)
    only: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    aslr_off: bool = False
    notices: list[str] = field(default_factory=list)


def measure_paired(setups: dict[str, SideSetup], plan: PairedPlan, workdir: Path,
                   progress: Progress | None = None, only: list[str] | None = None) -> PairedRun:
    raise NotImplementedError("the paired engine lives on branch `paired`")


def read_paired(path: Path) -> PairedRun:
    raise NotImplementedError("the paired engine lives on branch `paired`")
