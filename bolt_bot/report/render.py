"""Rendering results as markdown from jinja2 templates, within GitHub's comment size limit."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bolt_bot import __version__
from bolt_bot.errors import BoltError
from bolt_bot.model import (
    ADDED,
    FAILED,
    IMPROVED,
    INCONCLUSIVE,
    INSTRUCTIONS,
    REGRESSED,
    REMOVED,
    UNCHANGED,
    Results,
    StageComparison,
)
from bolt_bot.report import memory
from bolt_bot.report.chart import chart_labels
from bolt_bot.report.funcnames import format_function
from bolt_bot.report.state import COMMENT_LIMIT, MARKER, state_comment
from bolt_bot.report.textfilter import chart_label, inert
from bolt_bot.words import plural

CHART_BARS = 12  # more bars than this and mermaid's labels overlap: the largest changes are charted, and it says so


def builtin_template_dir() -> Path:
    """templates/ inside the installed wheel, or at the project root in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "templates", here.parent.parent / "templates"):
        if (candidate / "comment.md.j2").is_file():
            return candidate
    raise BoltError("Bolt's templates are missing from this installation (reinstall bolt-bot)")


@functools.lru_cache(maxsize=8)
def environment(template_dir: str | Path | None = None) -> jinja2.Environment:
    """A jinja2 environment whose templates a user may override one by one with `template_dir`."""
    paths = []
    if template_dir:
        user_dir = Path(template_dir)
        if not user_dir.is_dir():
            raise BoltError(f"template directory {user_dir} does not exist")
        paths.append(str(user_dir))
    paths.append(str(builtin_template_dir()))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # markdown, not HTML: every project-controlled text goes through `inert`
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        inert=inert,
        chart_label=chart_label,
        change=format_change,
        interval=format_interval,
        amount=format_amount,
        size=format_size,
        function=format_function,
        bytes=memory.format_bytes,
        count=memory.format_count,
        memory_change=memory.change_text,
        memory_side=memory.side_cell,
        short_sha=lambda sha: (sha or "")[:7],
        plural=plural,
    )
    return env


def format_change(ratio: float | None) -> str:
    """The one way Bolt writes a change, in the table, the status, the claims and the notes: a signed percent
    ("+4.2 %", "-43.2 %"); a speed-up of 2x or more also gets its factor ("-87.5 % (8.0× faster)"), which is
    what a reader wants there and what the percent hides."""
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return "n/a"
    change = round((ratio - 1) * 100, 1) + 0.0  # + 0.0: no "-0.0 %"
    text = f"{change:+.1f} %"
    if ratio <= 0.5:
        text += f" ({1 / ratio:.1f}× faster)"
    return text


def format_interval(ci: list[float] | None) -> str:
    if not ci:
        return ""
    low, high = ci
    return f"[{(low - 1) * 100:+.1f}, {(high - 1) * 100:+.1f}] %"


def format_size(size: Any) -> str:
    """A counted stage's wall-time change beside its count: "-46 % [-48, -44]" (whole percents from 10 % on,
    where a tenth says nothing), "-4.6 % [-5.1, -4.0]" below; "" without a ratio."""
    ratio = getattr(size, "ratio", None)
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return ""
    ci = getattr(size, "ci", None) or []
    digits = 0 if abs(ratio - 1) >= 0.1 else 1

    def pct(value: float) -> str:
        return f"{round((value - 1) * 100, digits) + 0.0:+.{digits}f}"

    return f"{pct(ratio)} %" + (f" [{pct(ci[0])}, {pct(ci[1])}]" if len(ci) == 2 else "")


_TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
_COUNT_UNITS = ((1e9, "G instr"), (1e6, "M instr"), (1e3, "k instr"), (1.0, "instr"))


def format_amount(value: float | None, unit: str = "s") -> str:
    """12.3 ms, 450 µs, 1 ms (never "1e+03 µs"); counts always with four digits: 12.00 M instr beside
    31.70 M instr, never "12 M" beside "31.7 M", which reads as a rounder number than it is."""
    if value is None or not math.isfinite(value):
        return "–"
    # Four digits for counts: they repeat exactly, so a 0.5 % change must stay visible.
    counts = unit == "instr"
    digits, units = (4, _COUNT_UNITS) if counts else (3, _TIME_UNITS)
    size = abs(float(f"{value:.{digits}g}"))  # the unit is chosen after rounding: 999.9 µs is "1 ms"
    scale, suffix = next(((sc, su) for sc, su in units if size >= sc), units[-1])
    scaled = value / scale
    if abs(scaled) >= 10 ** digits or (counts and scale == 1.0):  # below a thousand, a count is whole
        number = f"{scaled:.0f}"
    else:
        # "#" keeps a count's trailing zeros (and would leave "1234." with four whole digits: dropped).
        number = f"{scaled:{'#' if counts else ''}.{digits}g}".rstrip(".")
    return f"{number} {suffix}"


def counted(counts: list[tuple[int, str]]) -> str:
    """ "2 stages slower, 1 faster": the noun once, with the first count; zero counts left out."""
    parts = [(n, word) for n, word in counts if n]
    if not parts:
        return ""
    (n, word), *rest = parts
    return ", ".join([f"{n} stage{'s' if n != 1 else ''} {word}", *(f"{m} {w}" for m, w in rest)])


_VERDICT_WORDS = ((REGRESSED, "slower"), *memory.BOTH_WORDS, (memory.MEMORY_REGRESSED, "using more memory"), (IMPROVED, "faster"),
                  (memory.MEMORY_IMPROVED, "using less memory"), (FAILED, "failed"), (INCONCLUSIVE, "inconclusive"),
                  (ADDED, "added"), (REMOVED, "removed"), (UNCHANGED, "unchanged"))


def verdict_line(count: Mapping[str, int]) -> str:
    """⚡ 2 stages slower, 1 faster, 27 unchanged: from the number of stages of each verdict."""
    line = counted([(count.get(verdict, 0), word) for verdict, word in _VERDICT_WORDS])
    return "⚡ " + (line or "no benchmarks measured")


def in_warning_band(stage: StageComparison) -> bool:
    """An instruction-count stage below the floor but in the warning band: still `unchanged`, shown with its note."""
    return stage.verdict == UNCHANGED and bool(stage.note) and stage.measure == INSTRUCTIONS


@dataclass
class Limits:
    """How much of each section fits; None means all of it."""

    changed: int | None = None
    others: int | None = None
    unchanged: int | None = None
    profiles: bool = True


@dataclass
class Sections:
    """The stages sorted into the comment's sections, and what does not depend on how much of them fits:
    worked out once per rendering, not once per attempt to fit (each pass over 10,000 stages counts)."""

    changed: list[StageComparison]
    others: list[StageComparison]
    unchanged: list[StageComparison]
    others_title: str
    verdict_line: str
    chart: list[StageComparison]
    chart_labels: list[str]
    chart_of: int
    chart_bound: float

    @classmethod
    def of(cls, results: Results) -> Sections:
        by_verdict: dict[str, list[StageComparison]] = {}
        for stage in results.stages:  # a regression in memory alone is listed with the regressions
            by_verdict.setdefault(memory.section_verdict(stage), []).append(stage)

        def ordered(verdict: str) -> list[StageComparison]:
            chosen = by_verdict.get(verdict, [])
            if verdict == IMPROVED:
                return sorted(chosen, key=lambda s: (s.ratio or 1.0, s.name))
            if verdict == REGRESSED:
                return sorted(chosen, key=lambda s: (-(s.ratio or 1.0), s.name))
            return sorted(chosen, key=lambda s: s.name)

        changed = ordered(REGRESSED) + ordered(IMPROVED)
        same = ordered(UNCHANGED)
        warned = [s for s in same if in_warning_band(s)]
        others = ordered(FAILED) + ordered(INCONCLUSIVE) + ordered(ADDED) + ordered(REMOVED) + warned
        unchanged = [s for s in same if not in_warning_band(s)] if warned else same
        count = memory.verdict_count(results.stages)
        others_title = counted([(count.get(FAILED, 0), "failed"), (count.get(INCONCLUSIVE, 0), "inconclusive"),
                                (count.get(ADDED, 0), "added"), (count.get(REMOVED, 0), "removed"),
                                (len(warned), "in the warning band")])
        charted = [s for s in changed if s.verdict in (REGRESSED, IMPROVED) and s.ratio is not None and s.ratio > 0]
        # The largest changes, in the table's order, when they do not all fit.
        largest = set(map(id, sorted(charted, key=lambda s: -abs(math.log(s.ratio)))[:CHART_BARS]))
        chart = [s for s in charted if id(s) in largest]
        return cls(changed, others, unchanged, others_title, verdict_line(count), chart,
                   chart_labels([s.name for s in chart]), len(charted),
                   max([abs((s.ratio or 1.0) - 1) * 100 for s in chart] + [1.0]) * 1.2)


def context(results: Results, limits: Limits, state: dict[str, Any] | None = None,
            sections: Sections | None = None) -> dict[str, Any]:
    """What the templates see; `sections` is Sections.of(results), passed in when rendering several times."""
    sections = sections or Sections.of(results)

    def cut(items: list[StageComparison], limit: int | None) -> tuple[list[StageComparison], int]:
        if limit is None or limit >= len(items):
            return items, 0
        return items[:limit], len(items) - limit

    shown_changed, hidden_changed = cut(sections.changed, limits.changed)
    shown_others, hidden_others = cut(sections.others, limits.others)
    shown_unchanged, hidden_unchanged = cut(sections.unchanged, limits.unchanged)
    shown = shown_changed + shown_others + shown_unchanged
    legend = [text for present, text in (
        (any(s.measure == INSTRUCTIONS for s in shown), "ⁱ instruction counts"),
        (any(s.low_confidence for s in shown), "ˡ low confidence (one round per side)"),
    ) if present]
    return {
        "results": results,
        "verdict_line": sections.verdict_line,
        "changed": shown_changed,
        "hidden_changed": hidden_changed,
        "others": shown_others,
        "hidden_others": hidden_others,
        "unchanged": shown_unchanged,
        "hidden_unchanged": hidden_unchanged,
        "others_title": sections.others_title,
        "show_profiles": limits.profiles,
        "memory_moved": [s for s in shown_changed if memory.moved(s)],  # the memory section, only when it moved
        "chart": sections.chart,
        "chart_labels": sections.chart_labels,
        "chart_of": sections.chart_of,
        "chart_bound": sections.chart_bound,
        "legend": legend,
        "marker": MARKER,
        "state_comment": state_comment(state) if state else "",
        "version": __version__,
        "instructions": INSTRUCTIONS,
        "approval": results.approval,
    }


def render_template(name: str, ctx: dict[str, Any], template_dir: str | Path | None = None) -> str:
    try:
        return environment(template_dir).get_template(name).render(**ctx)
    except jinja2.TemplateNotFound as exc:
        raise BoltError(f"template {exc.name} not found") from None
    except jinja2.TemplateError as exc:
        raise BoltError(f"template {name}: {type(exc).__name__}: {exc}") from None


def render_limited(
    name: str,
    results: Results,
    *,
    limit: int = COMMENT_LIMIT,
    template_dir: str | Path | None = None,
    state: dict[str, Any] | None = None,
) -> str:
    """Render, shrinking what is shown (unchanged first, then profiles, then the rest) until it fits."""
    # A table row takes about 100 characters or more: never render more rows than could possibly fit.
    most = max(limit // 100, 1)
    sections = Sections.of(results)
    # Each section at most `most` rows, and never more than it has: _shrink's size of a row is the text a
    # section adds divided by its rows, so that count must be the rows actually shown.
    limits = Limits(changed=min(most, len(sections.changed)), others=min(most, len(sections.others)),
                    unchanged=min(most, len(sections.unchanged)))
    rendered: dict[tuple[int | None, int | None, int | None, bool], str] = {}

    def attempt() -> str:
        key = (limits.changed, limits.others, limits.unchanged, limits.profiles)
        if key not in rendered:  # fitting asks for some texts twice
            rendered[key] = render_template(name, context(results, limits, state, sections), template_dir)
        return rendered[key]

    # More rows never make a text shorter: when it is too long without the unchanged stages, rendering them
    # (the slowest attempt, up to `most` rows more) cannot fit and is skipped.
    shown, limits.unchanged = limits.unchanged, 0
    lean = attempt()
    limits.unchanged = shown
    text = attempt() if len(lean) <= limit else lean
    if len(text) <= limit:
        return text
    # Fold away the least important sections first; regressions stay as long as anything can.
    for section in ("unchanged", "others", "profiles", "changed"):
        if section == "profiles":
            limits.profiles = False
            text = attempt()
        else:
            text = _shrink(section, limits, attempt, limit)
        if len(text) <= limit:
            return text
    raise BoltError(f"{name}: the rendered text does not fit in {limit} characters even with every list cut")


def _shrink(section: str, limits: Limits, attempt, limit: int) -> str:
    """The most rows of `section` that fit, found from the size of one row rather than by bisection."""
    shown = getattr(limits, section)
    setattr(limits, section, 0)
    empty = attempt()
    if len(empty) > limit or not shown:
        return empty
    setattr(limits, section, shown)
    full = attempt()
    per_row = max((len(full) - len(empty)) / shown, 1.0)
    rows = min(shown, int((limit - len(empty)) / per_row))
    tries = 0
    while rows > 0:
        setattr(limits, section, rows)
        text = attempt()
        if len(text) <= limit:
            return text
        # Rows differ in length: estimate again from the rows just rendered, which is usually right at
        # the first retry; should it not be, step down by 3 % so that odd rows cannot cost many attempts.
        tries += 1
        per_row = max((len(text) - len(empty)) / rows, 1.0)
        rows = min(int((limit - len(empty)) / per_row), rows - 1 if tries < 3 else int(rows * 0.97) - 1)
    setattr(limits, section, 0)
    return empty


def render_comment(results: Results, template_dir=None, state: dict[str, Any] | None = None) -> str:
    return render_limited("comment.md.j2", results, template_dir=template_dir, state=state)


SUMMARY_LIMIT = 200_000  # the job summary allows 1 MiB; keep it readable rather than complete


def render_summary(results: Results, template_dir=None) -> str:
    return render_limited("summary.md.j2", results, limit=SUMMARY_LIMIT, template_dir=template_dir)

