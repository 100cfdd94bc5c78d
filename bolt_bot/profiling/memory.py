"""`bolt profile`'s memory picture of a stage: one call traced by tracemalloc, its peak and its allocating lines."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bolt_bot.profiling.collect import FunctionTable, normalise_path


@dataclass
class MemoryLine:
    """One source line's blocks that the traced call allocated and still held when it returned."""

    where: str  # "pipeline/stages.py:12", relative to the checkout as the profiler's files are
    function: str | None  # the profiled function whose body holds the line, when the profile has it
    allocations: int
    bytes: int
    project: bool  # the project's own code (not the standard library or a dependency)


@dataclass
class MemoryPicture:
    """A stage's traced call (bolt_profile_plugin._trace_memory), as the report's templates see it."""

    peak: int = 0  # the most bytes in use during the call, above what was in use at its start
    held_blocks: int = 0  # blocks the call allocated and still held at its return (its result among them)
    held_bytes: int = 0
    top: list[MemoryLine] = field(default_factory=list)  # most bytes first
    error: str | None = None  # why the call could not be traced


def memory_picture(record: Any, root: Path | None, table: FunctionTable | None = None) -> MemoryPicture | None:
    """The plugin's "memory" record of a stage, with files relative to `root`; None when it has none."""
    if not isinstance(record, dict):
        return None
    if record.get("error"):
        return MemoryPicture(error=str(record["error"]))
    top = []
    for site in record.get("top") or []:
        try:
            file, line = normalise_path(str(site["file"]), root), int(site["line"])
            top.append(MemoryLine(f"{file}:{line}", enclosing_function(table, file, line), int(site["allocations"]),
                                  int(site["bytes"]), _is_project(file)))
        except (KeyError, TypeError, ValueError):
            continue  # a malformed entry from a foreign plugin version: the rest still reads
    return MemoryPicture(peak=int(record.get("peak") or 0), held_blocks=int(record.get("held_blocks") or 0),
                         held_bytes=int(record.get("held_bytes") or 0), top=top)


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
