"""Bolt's words outside the report, from templates: the comment's approval section, replies to commands, help."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bolt_bot.model import REGRESSED
from bolt_bot.report.render import render_template
from bolt_bot.report.state import replace_block
from bolt_bot.settings import Settings

REASON_LIMIT = 500
NO_IMPROVEMENT = "no measurable improvement"  # the claim when a perf-labelled change measured no improvement
PROFILE_EXCERPT = 6000  # characters of report.md quoted in the reply to `/bolt profile`


def _labels(settings: Settings) -> dict[str, Any]:
    return {"perf_label": settings.perf_label, "approval_label": settings.approval_label,
            "approvers": settings.approvers, "approve_by_review": settings.approve_by_review}


def approval_block(state: Mapping[str, Any], settings: Settings, needed: bool) -> str:
    """The markdown of the approval section, from the hidden state and whether approval is needed (the gate's
    decision, bolt_bot.decide.gate)."""
    approval = state.get("approval") if isinstance(state.get("approval"), dict) else None
    regressed = bool(state.get("regressed")) or state.get("verdict") == REGRESSED
    perf = bool(state.get("perf"))
    ctx = {
        **_labels(settings),
        "perf": perf,
        "claim": str(state.get("claim") or ""),
        "no_improvement": NO_IMPROVEMENT,
        "approval": approval,
        "holds_for": str((approval or {}).get("holds_for") or ""),
        "reason_limit": REASON_LIMIT,
        "needed": needed,
        "regressed": regressed,
        "note": state.get("approval_note"),
    }
    return render_template("approval.md.j2", ctx, settings.template_dir).strip()


def with_block(body: str, state: Mapping[str, Any], settings: Settings, needed: bool) -> str:
    """`body` with its approval section replaced by the one the state describes (inserted when missing)."""
    return replace_block(body, approval_block(state, settings, needed))


def reply(kind: str, settings: Settings, **values: Any) -> str:
    """One of Bolt's replies (templates/reply.md.j2 names them), e.g. reply("no-reason", settings, user=...)."""
    return render_template("reply.md.j2", {**_labels(settings), "reply": kind, **values}, settings.template_dir).strip()


def help_text(settings: Settings) -> str:
    return render_template("help.md.j2", _labels(settings), settings.template_dir).strip() + "\n"


def profile_reply(report: str, sha: str, run_url: str | None, settings: Settings) -> str:
    """The report's head (time per stage, top bottlenecks), without the per-stage details."""
    cut = report.find("## Hot functions per stage")
    excerpt = (report[:cut] if cut >= 0 else report).strip()
    if len(excerpt) > PROFILE_EXCERPT:
        excerpt = excerpt[:PROFILE_EXCERPT].rsplit("\n", 1)[0] + "\n\n…"
    # The report's own title is an h1: one level down in a reply.
    excerpt = re.sub(r"^# ", "#### ", excerpt or f"Profiled {sha[:7]}.", count=1)
    return reply("profile", settings, excerpt=excerpt, run_url=run_url or "")

