"""Memory in the report: units that read well, what grew in a stage, and where the comment places such stages."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable

from bolt_bot.model import IMPROVED, MEMORY_KINDS, REGRESSED, UNCHANGED, MemoryComparison, StageComparison

KINDS = MEMORY_KINDS
# Keys of the headline's count beside the time verdicts, for a stage whose time is unchanged and whose memory moved.
MEMORY_REGRESSED = "memory-regressed"
MEMORY_IMPROVED = "memory-improved"

_BYTE_UNITS = ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def format_bytes(value: float | None, signed: bool = False) -> str:
    """512 B, 1.5 KiB, 2.1 MiB (three digits at most, binary units); "+2.1 MiB" when `signed`."""
    if value is None or not math.isfinite(value):
        return "–"
    sign = ("+" if value > 0 else "-" if value < 0 else "±") if signed else ("-" if value < 0 else "")
    size = abs(value)
    for scale, unit in _BYTE_UNITS:
        # Choose the unit after rounding, so 1023.9 KiB reads "1.0 MiB" rather than "1024 KiB".
        if float(f"{size / scale:.3g}") >= 1 and size >= scale * 0.9995:
            scaled = size / scale
            number = f"{scaled:.1f}" if scaled < 100 else f"{scaled:.0f}"
            return f"{sign}{number} {unit}"
    return f"{sign}{size:.0f} B"


def format_count(value: float | None, signed: bool = False) -> str:
    """Allocation counts: 1,234 up to 9,999 (every block visible), then 12.3 k, 1.23 M."""
    if value is None or not math.isfinite(value):
        return "–"
    sign = ("+" if value > 0 else "-" if value < 0 else "±") if signed else ("-" if value < 0 else "")
    size = abs(value)
    if size < 10_000:
        return f"{sign}{size:,.0f}"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= scale:
            return f"{sign}{float(f'{size / scale:.3g}'):g} {unit}"
    return f"{sign}{size:,.0f}"  # pragma: no cover - unreachable above 10,000


def amount(value: float | None, kind: str) -> str:
    """A side's value of one kind: allocations as a count, allocated and peak as bytes."""
    return format_count(value) if kind == "allocations" else format_bytes(value)


def percent(ratio: float | None) -> str:
    """+98 %, -12.5 %: whole percents from 10 % on, where a tenth says nothing; a factor from 10x on
    (a peak from 602 B to 70 KiB reads "118×", not "+11683 %")."""
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return "n/a"
    if ratio >= 10:
        return f"{ratio:.0f}×"
    change = (ratio - 1) * 100
    digits = 0 if abs(change) >= 10 else 1
    return f"{round(change, digits) + 0.0:+.{digits}f} %"


def moved(stage: StageComparison) -> bool:
    """The stage's memory passed a floor, up or down: only then does it take room in the comment."""
    memory = stage.memory
    return memory is not None and (memory.verdict in (REGRESSED, IMPROVED) or bool(memory.moved))


def kind_change(memory: MemoryComparison, kind: str) -> str:
    """ "allocations +98 % (1,020 → 2,020)", "allocated +2.1 MiB (+105 %)": one kind, as a regression names it."""
    base, head = memory.values(kind)
    if base is None or head is None:
        return f"{kind} n/a"
    if kind == "allocations":
        return f"{kind} {percent(memory.ratio(kind))} ({format_count(base)} → {format_count(head)})"
    ratio = memory.ratio(kind)
    return f"{kind} {format_bytes(head - base, signed=True)}" + (f" ({percent(ratio)})" if ratio else "")


def change_text(stage: StageComparison) -> str:
    """What moved in the stage's memory, the kinds that regressed first; "" when nothing did."""
    memory = stage.memory
    if memory is None or not moved(stage):
        return ""
    kinds = [k for k in KINDS if k in memory.regressed] + [k for k in KINDS if k in memory.moved
                                                            and k not in memory.regressed]
    if not kinds:  # a verdict without the kinds behind it: show what can be computed
        kinds = [k for k in KINDS if memory.ratio(k) not in (None, 1.0)]
    return ", ".join(kind_change(memory, k) for k in kinds)


def side_cell(stage: StageComparison, kind: str) -> str:
    """ "1,020 → 2,020 (+98 %)" for the memory table; "–" when a side has no number."""
    memory = stage.memory
    if memory is None:
        return "–"
    base, head = memory.values(kind)
    if base is None and head is None:
        return "–"
    text = f"{amount(base, kind)} → {amount(head, kind)}"
    ratio = memory.ratio(kind)
    return text + (f" ({percent(ratio)})" if ratio is not None and ratio != 1.0 else "")


def section_verdict(stage: StageComparison) -> str:
    """Where the comment lists a stage: a regression in time or memory among the regressions, a stage whose
    only change is less memory among the improvements, everything else by its time verdict."""
    if stage.regressed:
        return REGRESSED
    if stage.verdict == UNCHANGED and stage.memory is not None and stage.memory.verdict == IMPROVED:
        return IMPROVED
    return stage.verdict


def verdict_count(stages: Iterable[StageComparison]) -> collections.Counter[str]:
    """The headline's count, each stage once: by its time verdict when its memory did not move, by its memory
    when its time is unchanged, and under a combined key ("slower and using more memory") when both moved."""
    count: collections.Counter[str] = collections.Counter()
    for stage in stages:
        memory = stage.memory.verdict if stage.memory is not None else None
        if memory not in (REGRESSED, IMPROVED):
            count[stage.verdict] += 1
        elif stage.verdict == UNCHANGED:
            count[MEMORY_REGRESSED if memory == REGRESSED else MEMORY_IMPROVED] += 1
        elif stage.verdict in (REGRESSED, IMPROVED):
            count[f"{stage.verdict}+{memory}"] += 1
        else:  # failed, inconclusive...: the time verdict says more, the memory one is in the table
            count[stage.verdict] += 1
    return count


# The combined keys of verdict_count and their words, for render's headline.
BOTH_WORDS = ((f"{REGRESSED}+{REGRESSED}", "slower and using more memory"),
              (f"{REGRESSED}+{IMPROVED}", "slower but using less memory"),
              (f"{IMPROVED}+{REGRESSED}", "faster but using more memory"),
              (f"{IMPROVED}+{IMPROVED}", "faster and using less memory"))


def regression_message(stage: StageComparison, time_text: str) -> tuple[str, str]:
    """(title, message) of a regressed stage's annotation: slower, using more memory, or both."""
    memory = change_text(stage) if stage.memory_regressed else ""
    parts = [time_text] if stage.verdict == REGRESSED else []
    if memory:
        parts.append(f"uses more memory: {memory}")
    title = {(True, False): "Bolt: slower benchmark", (False, True): "Bolt: benchmark uses more memory",
             (True, True): "Bolt: slower benchmark, using more memory"}.get(
        (stage.verdict == REGRESSED, bool(memory)), "Bolt: slower benchmark")
    return title, f"{stage.name} " + ("; ".join(parts) or "regressed")
