"""`bolt profile`'s memory picture of a stage: one traced call, its allocations, peak and top allocating lines."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bolt_bot.errors import BoltError
from bolt_bot.measure import memory as memory_pass
from bolt_bot.model import MemorySide
from bolt_bot.profiling.collect import FunctionTable, normalise_path
from bolt_bot.progress import Progress

MEMRAY = "memray"  # bolt run's memory pass (measure/memory.py): every allocation of the call, freed or not
TRACEMALLOC = "tracemalloc"  # the profile plugin's fallback: only what the call still held when it returned


@dataclass
class MemoryLine:
    """One source line's allocations in the traced call."""

    where: str  # "pipeline/stages.py:12", relative to the checkout as the profiler's files are
    function: str | None
    allocations: int
    bytes: int
    project: bool  # the project's own code (not the standard library or a dependency)


@dataclass
class MemoryPicture:
    """A stage's traced call as the report's templates see it. With memray the numbers are bolt run's memory
    pass's; with tracemalloc, allocations and bytes are those the call still held at its return."""

    tool: str = MEMRAY
    allocations: int = 0
    allocated: int = 0  # bytes
    peak: int = 0  # the most bytes in use during the call, above what was in use at its start
    top: list[MemoryLine] = field(default_factory=list)  # most bytes first
    error: str | None = None  # why the call could not be traced


def trace_stages(python: Path, checkout: Path, pytest_args: list[str], environ: dict[str, str], workdir: Path,
                 timeout: float, progress: Progress) -> dict[str, MemoryPicture]:
    """Stage -> its call traced by bolt run's memory pass (memray), so the profile's lines are the ones the
    comment names; {} with a warning when the pass cannot run here (no memray: tracemalloc's picture stays)."""
    try:
        done = memory_pass.measure_memory(python, checkout, pytest_args, env=environ, timeout=timeout,
                                          workdir=workdir)
    except BoltError as exc:
        progress.warn(f"memory pass: {exc}; the memory picture is tracemalloc's (what each call still holds)")
        return {}
    for name, why in sorted(done.failed.items()):
        progress.warn(f"memory of {name} not traced by memray: {why}")
    return {name: from_side(side) for name, side in done.stages.items()}


def from_side(side: MemorySide) -> MemoryPicture:
    lines = [MemoryLine(s.where, s.function, s.allocations, s.allocated, _is_project(s.where.rsplit(":", 1)[0]))
             for s in side.top]
    return MemoryPicture(MEMRAY, side.allocations or 0, side.allocated or 0, side.peak or 0, lines, side.error)


def from_record(record: Any, root: Path | None, table: FunctionTable | None = None) -> MemoryPicture | None:
    """The profile plugin's tracemalloc record of a stage, files relative to `root`; None when it has none."""
    if not isinstance(record, dict):
        return None
    if record.get("error"):
        return MemoryPicture(TRACEMALLOC, error=str(record["error"]))
    top = []
    for site in record.get("top") or []:
        try:
            file, line = normalise_path(str(site["file"]), root), int(site["line"])
            top.append(MemoryLine(f"{file}:{line}", enclosing_function(table, file, line), int(site["allocations"]),
                                  int(site["bytes"]), _is_project(file)))
        except (KeyError, TypeError, ValueError):
            continue  # a malformed entry from a foreign plugin version: the rest still reads
    return MemoryPicture(TRACEMALLOC, int(record.get("held_blocks") or 0), int(record.get("held_bytes") or 0),
                         int(record.get("peak") or 0), top)


def enclosing_function(table: FunctionTable | None, file: str, line: int) -> str | None:
    """tracemalloc names lines, not functions: the profiled function of `file` defined last at or before
    `line` is the one whose body holds it (a nested function that never ran is not in the profile). Named
    functions first: a comprehension or lambda (`<listcomp>`, `<genexpr>`) reads better as the function it is
    written in, and Python 3.12 inlines list comprehensions anyway."""
    if table is None:
        return None
    before = [f for f in table.functions.values() if f.file == file and 0 < f.line <= line]
    named = [f for f in before if not f.name.startswith("<")]
    best = max(named or before, key=lambda f: f.line, default=None)
    return best.name if best is not None else None


def _is_project(file: str) -> bool:
    return not (file.startswith(("<", "site-packages/")) or os.path.isabs(file))
