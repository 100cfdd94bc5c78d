"""The plain-text view of results for a terminal or a log: a stage table, the regressed stages' profiles, the notices."""

from __future__ import annotations

import math
from pathlib import Path

from bolt_bot.model import FAILED, INSTRUCTIONS, REGRESSED, Results, StageComparison
from bolt_bot.report.render import (
    Sections,
    format_amount,
    format_change,
    format_interval,
    format_size,
    in_warning_band,
)
from bolt_bot.report.memory import change_text as memory_change
from bolt_bot.report.textfilter import shorten
from bolt_bot.words import visible

UNCHANGED_ROWS = 20  # a long suite's unchanged stages would bury the rest; results.json has them all
NAME_LIMIT = 120
PROFILE_ROWS = 12
MEASURES = {"walltime": "wall time", INSTRUCTIONS: "instructions"}  # a stage's measure, in the table
HOW = {"walltime": "wall time", INSTRUCTIONS: "instruction counts (callgrind)",
       "mixed": "instruction counts (callgrind) and wall time"}  # the run's, in the footer
def plain(value: object, limit: int = 300) -> str:
    """Project text fit for a terminal: visible, on one line, at most `limit` characters."""
    return shorten(" ".join(visible(value).split()), limit)


def _table(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> list[str]:
    """Columns padded to their widest cell (numbers in `right` aligned right), two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]


def _side(summary) -> str:
    return format_amount(summary.center, summary.unit) if summary and summary.center is not None else "–"


def _verdict(stage: StageComparison) -> str:
    text = stage.verdict
    if in_warning_band(stage):
        text += " (warning band)"
    if stage.low_confidence:
        text += " (low confidence)"
    return text


def _interval(stage: StageComparison) -> str:
    if stage.measure == INSTRUCTIONS and stage.ci and stage.ci[0] == stage.ci[1]:
        return "exact count"
    return format_interval(stage.ci)


def _change(stage: StageComparison) -> str:
    text = format_change(stage.ratio) if stage.ratio is not None else ""
    size = format_size(stage.wall_size) if stage.wall_size else ""
    return f"{text} (wall time {size})" if size else text


def stage_rows(stages: list[StageComparison]) -> list[str]:
    rows = [("stage", "verdict", "base", "head", "change", "95 % interval", "measure")]
    for s in stages:
        rows.append((plain(s.name, NAME_LIMIT), _verdict(s), _side(s.base), _side(s.head), _change(s),
                     _interval(s), MEASURES.get(s.measure, plain(s.measure, 20))))
    return _table(rows, right=(2, 3))


def memory_line(stage: StageComparison) -> str | None:
    """One line on a stage's memory when the memory pass found it moved (or could not measure it)."""
    memory = stage.memory
    if memory is None or not (memory.moved or (memory.verdict == FAILED and memory.note)):
        return None
    # The comment's words and units (KiB, MiB; 12.3 k allocations), made plain for a terminal.
    detail = plain(memory_change(stage), 300) or plain(memory.note, 200)
    return f"{plain(stage.name, NAME_LIMIT)}: {plain(memory.verdict, 20)}, {detail}"


def profile_section(stage: StageComparison) -> list[str]:
    """What got slower in a regressed stage: its profile's functions as given, or why there are none."""
    title = f"What got slower in {plain(stage.name, NAME_LIMIT)}"
    if not stage.profile:
        why = plain(stage.profile_note, 400) if stage.profile_note else "the profile is empty"
        return [f"{title}: no function to show: {why}."]
    rows = [("function", "base", "head", "Δ own time", "calls (base → head)")]
    for line in stage.profile[:PROFILE_ROWS]:
        rows.append((plain(line.function, 160) + (" (new)" if line.new else ""),
                     "–" if line.new else format_amount(line.base), format_amount(line.head),
                     "+" + format_amount(line.delta), f"{line.base_calls} → {line.head_calls}"))
    more = len(stage.profile) - PROFILE_ROWS
    tail = [f"  …and {more} more in comment.md"] if more > 0 else []
    return [f"{title} (own time per call of the stage):", *("  " + row for row in _table(rows, (1, 2, 3))), *tail]


def footer(results: Results) -> str:
    env, settings = results.environment, results.settings
    how = HOW.get(results.measure, plain(results.measure, 40))
    paired = env.get("paired")
    if isinstance(paired, dict):
        how += f": base and head paired on one CPU, {plain(paired.get('pairs'), 20)} process pairs"
    elif env.get("rounds"):
        plan = f" {plain(env['plan'], 40)}" if env.get("plan") else ""
        how += f": {plain(env['rounds'], 20)}{plan} round{'s' if env['rounds'] != 1 else ''} per side"
    floors = []
    if results.measure != INSTRUCTIONS:
        floors.append(f"floor {plain(settings.get('threshold', 3), 20)} % (wall time)")
    if results.measure != "walltime":
        floors.append(f"floor {plain(settings.get('instr_threshold', 1), 20)} % (instruction counts)")
    if results.measure != INSTRUCTIONS:
        floors.append(f"false discovery rate {plain(settings.get('alpha', 0.05), 20)}")
    duration = env.get("duration")
    took = f"; {duration:.0f} s" if isinstance(duration, (int, float)) and math.isfinite(duration) else ""
    runner = f"; on {plain(env['runner'], 100)}" if env.get("runner") else ""
    return f"Measured with {how}; {', '.join(floors)}{runner}{took}."


def _commits(results: Results) -> str | None:
    def one(side) -> str:
        sha = plain(side.sha, 40)[:7]
        ref = plain(side.ref, 60)
        return f"{sha} ({ref})" if sha and ref and not sha.startswith(ref[:7]) else sha or ref or "?"

    if not (results.base.sha or results.base.ref or results.head.sha or results.head.ref):
        return None
    return f"base {one(results.base)} → head {one(results.head)}"


def _routing(results: Results, most: int = 5) -> list[str]:
    discovery = results.environment.get("discovery")
    why = discovery.get("walltime_reasons") if isinstance(discovery, dict) else None
    if not isinstance(why, dict) or not why:
        return []
    lines = [f"{len(why)} stage{'s' if len(why) != 1 else ''} measured by wall time instead of instruction counts:"]
    lines += [f"  {plain(name, NAME_LIMIT)}: {plain(reason, 200)}" for name, reason in sorted(why.items())[:most]]
    if len(why) > most:
        lines.append(f"  …and {len(why) - most} more (environment.discovery.walltime_reasons in results.json)")
    return lines


def render_text(results: Results, comment: Path | None = None) -> str:
    """The results as plain text: every line free of markup and of anything a terminal would act on.

    Reads `results` only; `comment` is where the markdown comment was written, named at the end."""
    sections = Sections.of(results)
    lines = [sections.verdict_line]
    commits = _commits(results)
    if commits:
        lines.append(commits)
    if results.approval:
        approval = results.approval
        lines.append(f"Approved by {plain(approval.get('user'), 60)} for {plain(approval.get('sha'), 40)[:7]}: "
                     f"{plain(approval.get('reason'), 300)}")
    lines.append("")
    shown = sections.changed + sections.others + sections.unchanged[:UNCHANGED_ROWS]
    if not results.stages:
        lines += ["No benchmark was measured. Check the benchmark paths and the pytest arguments.", ""]
    else:
        lines += stage_rows(shown)
        hidden = len(sections.unchanged) - UNCHANGED_ROWS
        if hidden > 0:
            lines.append(f"…and {hidden} more unchanged stage{'s' if hidden != 1 else ''} (all in results.json)")
        lines.append("")
    # One round (file) on a side: what that can tell is said once, under the table.
    single = [s for s in results.stages if s.low_confidence]
    if single:
        lines += ["Low confidence: one round (file) on a side, so a stage counts as changed only past what one "
                  "process moves by on its own here (25 % or more); measure more rounds: `bolt run`, or several "
                  "JSON files per side.", ""]
    notes = [f"  {plain(s.name, NAME_LIMIT)}: {plain(s.note, 300)}" for s in sections.others if s.note]
    # A counted change whose wall-time size could not be measured says why here, not in its table row.
    notes += [f"  {plain(s.name, NAME_LIMIT)}: wall time not measured ({plain(s.wall_size.note, 200)})"
              for s in sections.changed if s.wall_size and not format_size(s.wall_size) and s.wall_size.note]
    if notes:
        lines += ["Notes:", *notes, ""]
    memory = [line for s in shown if (line := memory_line(s))]
    if memory:
        lines += ["Memory (one traced call per side):", *("  " + line for line in memory), ""]
    for stage in sections.changed:
        if stage.verdict == REGRESSED and (stage.profile or stage.profile_note):
            lines += [*profile_section(stage), ""]
    routing = _routing(results)
    if routing:
        lines += [*routing, ""]
    lines.append(footer(results))
    lines += [f"Warning: {plain(notice, 500)}" for notice in results.notices]
    if comment is not None:
        lines += ["", f"The pull request comment (markdown): {visible(comment)}"]
    return "\n".join(lines) + "\n"
