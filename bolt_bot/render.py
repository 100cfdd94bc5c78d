"""Rendering results as markdown from jinja2 templates, within GitHub's comment size limit."""

from __future__ import annotations

import functools
import hashlib
import json
import math
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
from bolt_bot.textfilter import chart_label, inert

COMMENT_LIMIT = 65_536  # GitHub's limit on an issue comment body, in characters
MARKER = "<!-- bolt:comment -->"
STATE_PREFIX = "<!-- bolt:state "
STATE_SUFFIX = " -->"


def builtin_template_dir() -> Path:
    """templates/ inside the installed wheel, or at the project root in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
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
        short_sha=lambda sha: (sha or "")[:7],
    )
    return env


def format_change(ratio: float | None) -> str:
    if ratio is None or not math.isfinite(ratio):
        return "n/a"
    if ratio >= 2 or (ratio > 0 and ratio <= 0.5):
        return f"{ratio:.2f}x" if ratio >= 2 else f"{1 / ratio:.2f}x faster"
    return f"{(ratio - 1) * 100:+.1f} %"


def format_interval(ci: list[float] | None) -> str:
    if not ci:
        return ""
    low, high = ci
    return f"[{(low - 1) * 100:+.1f}, {(high - 1) * 100:+.1f}] %"


def format_amount(value: float | None, unit: str = "s") -> str:
    """12.3 ms, 450 µs, 12.3 M instr."""
    if value is None:
        return "–"
    if unit == "instr":  # four digits: counts repeat exactly, so a 0.5 % change must stay visible
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if value >= scale:
                return f"{value / scale:.4g} {suffix} instr"
        return f"{value:.0f} instr"
    for scale, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value / 1e-9:.3g} ns"


def verdict_line(results: Results) -> str:
    """⚡ 2 stages slower, 1 faster, 27 unchanged."""
    parts = []
    for verdict, word in (
        (REGRESSED, "slower"),
        (IMPROVED, "faster"),
        (FAILED, "failed"),
        (INCONCLUSIVE, "inconclusive"),
        (ADDED, "added"),
        (REMOVED, "removed"),
        (UNCHANGED, "unchanged"),
    ):
        n = results.count(verdict)
        if n:
            parts.append(f"{n} {word}")
    if not parts:
        return "⚡ no benchmarks measured"
    first, *rest = parts
    n = int(first.split()[0])
    first = f"{n} stage{'s' if n != 1 else ''} {first.split(' ', 1)[1]}"
    return "⚡ " + ", ".join([first, *rest])


@dataclass
class Limits:
    """How much of each section fits; None means all of it."""

    changed: int | None = None
    others: int | None = None
    unchanged: int | None = None
    profiles: bool = True


def _sorted(stages: list[StageComparison], verdict: str) -> list[StageComparison]:
    chosen = [s for s in stages if s.verdict == verdict]
    if verdict == IMPROVED:
        return sorted(chosen, key=lambda s: (s.ratio or 1.0, s.name))
    if verdict == REGRESSED:
        return sorted(chosen, key=lambda s: (-(s.ratio or 1.0), s.name))
    return sorted(chosen, key=lambda s: s.name)


def context(results: Results, limits: Limits, state: dict[str, Any] | None = None) -> dict[str, Any]:
    stages = results.stages
    changed = _sorted(stages, REGRESSED) + _sorted(stages, IMPROVED)
    others = _sorted(stages, FAILED) + _sorted(stages, INCONCLUSIVE) + _sorted(stages, ADDED) + _sorted(stages, REMOVED)
    unchanged = _sorted(stages, UNCHANGED)

    def cut(items: list[StageComparison], limit: int | None) -> tuple[list[StageComparison], int]:
        if limit is None or limit >= len(items):
            return items, 0
        return items[:limit], len(items) - limit

    shown_changed, hidden_changed = cut(changed, limits.changed)
    shown_others, hidden_others = cut(others, limits.others)
    shown_unchanged, hidden_unchanged = cut(unchanged, limits.unchanged)
    chart = [s for s in shown_changed if s.ratio is not None][:12]
    return {
        "results": results,
        "verdict_line": verdict_line(results),
        "changed": shown_changed,
        "hidden_changed": hidden_changed,
        "others": shown_others,
        "hidden_others": hidden_others,
        "unchanged": shown_unchanged,
        "hidden_unchanged": hidden_unchanged,
        "show_profiles": limits.profiles,
        "chart": chart,
        "chart_bound": max([abs((s.ratio or 1.0) - 1) * 100 for s in chart] + [1.0]) * 1.2,
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
    limits = Limits(changed=most, others=most, unchanged=most)

    def attempt() -> str:
        return render_template(name, context(results, limits, state), template_dir)

    text = attempt()
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
    while rows > 0:
        setattr(limits, section, rows)
        text = attempt()
        if len(text) <= limit:
            return text
        rows = int(rows * 0.97) - 1  # rows differ in length: step down a little and retry
    setattr(limits, section, 0)
    return empty


def state_comment(state: dict[str, Any]) -> str:
    """The hidden state as one HTML comment line; "--" would end the comment early, so it is escaped."""
    data = json.dumps(state, separators=(",", ":"), sort_keys=True, ensure_ascii=False).replace("--", "\\u002d\\u002d")
    return f"{STATE_PREFIX}{data}{STATE_SUFFIX}"


STATE_NAME_LIMIT = 80
STATE_STAGES_LIMIT = 100


def state_name(name: str) -> str:
    """A stage's key in the comment's hidden state: short enough that hundreds fit, still unique."""
    if len(name) <= STATE_NAME_LIMIT:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{name[: STATE_NAME_LIMIT - 14]}~{digest}"


def read_state(comment_body: str) -> dict[str, Any] | None:
    """The hidden state stored in a Bolt comment (approvals, head sha), or None."""
    start = comment_body.find(STATE_PREFIX)
    if start < 0:
        return None
    end = comment_body.find(STATE_SUFFIX, start + len(STATE_PREFIX))
    if end < 0:
        return None
    try:
        data = json.loads(comment_body[start + len(STATE_PREFIX) : end])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def render_comment(results: Results, template_dir=None, state: dict[str, Any] | None = None) -> str:
    return render_limited("comment.md.j2", results, template_dir=template_dir, state=state)


SUMMARY_LIMIT = 200_000  # the job summary allows 1 MiB; keep it readable rather than complete


def render_summary(results: Results, template_dir=None) -> str:
    return render_limited("summary.md.j2", results, limit=SUMMARY_LIMIT, template_dir=template_dir)


def render_text(results: Results) -> str:
    """A plain terminal table, for `bolt compare --format text`."""
    rows = [("stage", "verdict", "base", "head", "change", "95% CI")]
    for stage in sorted(results.stages, key=lambda s: (list(_ORDER).index(s.verdict), s.name)):
        unit = (stage.head or stage.base).unit if (stage.head or stage.base) else "s"
        rows.append(
            (
                stage.name,
                stage.verdict + (" (low confidence)" if stage.low_confidence else ""),
                format_amount(stage.base.center if stage.base else None, unit),
                format_amount(stage.head.center if stage.head else None, unit),
                format_change(stage.ratio),
                format_interval(stage.ci),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return verdict_line(results) + "\n\n" + "\n".join(lines) + "\n"


_ORDER = (REGRESSED, FAILED, IMPROVED, INCONCLUSIVE, ADDED, REMOVED, UNCHANGED)
