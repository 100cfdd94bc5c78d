"""Memory verdicts: allocations and bytes of one call past a tight floor, the peak past a wide margin.

Allocation counts and allocated bytes of one traced call repeat exactly for the same code (same commit,
several runs, checkouts under other folder names: docs/measurement.md, "Memory"), so a change of 1 % is a
change of the code; the absolute minimums keep a tiny stage from going red for an object or two (a new
small dict is 1 allocation and about 200 bytes). The peak depends on the allocator (where a block fits,
when an arena is taken), so it moves only past its own, wider margin.
"""

from __future__ import annotations

from dataclasses import dataclass

from bolt_bot.measure.memory import TOP_LINES, MemoryRun
from bolt_bot.measure.sides import BASE, HEAD
from bolt_bot.model import (
    ADDED,
    FAILED,
    IMPROVED,
    MEMORY_KINDS,
    REGRESSED,
    REMOVED,
    UNCHANGED,
    AllocLine,
    MemoryComparison,
    MemorySide,
    StageComparison,
)

KINDS = MEMORY_KINDS


@dataclass(frozen=True)
class MemoryRule:
    """Each kind moves when head differs from base by at least the relative floor AND the absolute minimum."""

    threshold: float = 0.01  # fraction, allocations and allocated bytes
    min_allocations: int = 64
    min_bytes: int = 4096
    peak_threshold: float = 0.10  # fraction
    peak_min_bytes: int = 65536

    @classmethod
    def of(cls, settings) -> MemoryRule:
        """The rule from Settings (percent there, fractions here)."""
        return cls(settings.memory_threshold / 100, settings.memory_min_allocations, settings.memory_min_bytes,
                   settings.peak_threshold / 100, settings.peak_min_bytes)

    def floor(self, kind: str, base: int) -> float:
        """The smallest change of `kind` that counts, from base's value."""
        if kind == "peak":
            return max(self.peak_threshold * base, self.peak_min_bytes, 1)
        minimum = self.min_allocations if kind == "allocations" else self.min_bytes
        return max(self.threshold * base, minimum, 1)


def compare_memory(base: MemorySide, head: MemorySide, rule: MemoryRule) -> MemoryComparison:
    """The verdict of a stage both sides traced: regressed when a kind grew past its floor, improved when one
    shrank past it and none grew, else unchanged."""
    moved, regressed = [], []
    for kind in KINDS:
        b, h = getattr(base, kind), getattr(head, kind)
        if b is None or h is None or abs(h - b) < rule.floor(kind, b):
            continue
        moved.append(kind)
        if h > b:
            regressed.append(kind)
    verdict = REGRESSED if regressed else IMPROVED if moved else UNCHANGED
    return MemoryComparison(verdict=verdict, moved=moved, regressed=regressed, base=base, head=head,
                            lines=alloc_lines(base, head))


def alloc_lines(base: MemorySide, head: MemorySide) -> list[AllocLine]:
    """The lines where head allocates more than base (bytes, then count), most first. `new` only where base's
    list was complete: a line missing from a cut list may allocate there all the same."""
    # Lines are matched by file, function and text: a line that only moved (code added above it) is the same
    # line, and another statement now at its number is not. Without text (no source), by file and number.
    by_text = {(_file(s.where), s.function, s.code): s for s in base.top if s.code}
    by_where = {(s.where, s.function): s for s in base.top if not s.code}
    complete = len(base.top) < TOP_LINES
    out = []
    for site in head.top:
        old = (by_text.get((_file(site.where), site.function, site.code)) if site.code
               else by_where.get((site.where, site.function)))
        b_n, b_bytes = (old.allocations, old.allocated) if old else (0, 0)
        if site.allocated > b_bytes or site.allocations > b_n:
            out.append(AllocLine(where=site.where, function=site.function, base_allocations=b_n,
                                 head_allocations=site.allocations, base_bytes=b_bytes, head_bytes=site.allocated,
                                 new=old is None and complete, code=site.code))
    out.sort(key=lambda line: (-(line.head_bytes - line.base_bytes), -(line.head_allocations - line.base_allocations),
                               line.where))
    return out


def _file(where: str) -> str:
    return where.rsplit(":", 1)[0]


def memory_comparisons(run: MemoryRun, rule: MemoryRule) -> dict[str, MemoryComparison]:
    """stage -> its memory verdict, for every stage either side's pass saw (a side whose whole pass failed
    gives no verdicts: run_notices says why)."""
    if run.errors:
        return {}
    base, head = run.passes.get(BASE), run.passes.get(HEAD)
    if base is None or head is None:
        return {}
    out = {}
    for name in sorted({*base.stages, *base.failed, *head.stages, *head.failed}):
        failed = next(((side, p.failed[name]) for side, p in ((HEAD, head), (BASE, base)) if name in p.failed), None)
        b, h = base.stages.get(name), head.stages.get(name)
        if failed is not None:
            out[name] = MemoryComparison(verdict=FAILED, base=b, head=h, note=f"failed on {failed[0]}: {failed[1]}")
        elif b is None or h is None:
            out[name] = MemoryComparison(verdict=ADDED if b is None else REMOVED, base=b, head=h)
        else:
            out[name] = compare_memory(b, h, rule)
    return out


def add_memory(stages: list[StageComparison], run: MemoryRun | None, rule: MemoryRule) -> list[str]:
    """Each stage's `memory` filled from the pass; the notices the run should show."""
    if run is None:
        return []
    found = memory_comparisons(run, rule)
    for stage in stages:
        stage.memory = found.get(stage.name)
    return run_notices(run)


def run_notices(run: MemoryRun) -> list[str]:
    notices = [f"the memory pass failed on {side}, so no memory was compared: {why}" for side, why in run.errors.items()]
    if run.skipped:
        shown = ", ".join(sorted(run.skipped)[:3]) + (f" and {len(run.skipped) - 3} more" if len(run.skipped) > 3 else "")
        notices.append(f"{len(run.skipped)} stage(s) too long to trace were left out of the memory pass: {shown}")
    return notices
