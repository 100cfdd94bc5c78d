"""Maintainer approvals and `/bolt` commands: who may approve, what needs approval, how one survives a push."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from bolt_bot.report import render
from bolt_bot.errors import EXIT_OK, BoltError, PublishError
from bolt_bot.model import FAILED, IMPROVED, INSTRUCTIONS, REGRESSED, Results
from bolt_bot.settings import Settings
from bolt_bot.report.textfilter import inert

# The approval section of the sticky comment sits between these, so a command can rewrite it in place
# without the results (which live in the measuring job's artifact, not in the comment).
BLOCK_START = "<!-- bolt:approval -->"
BLOCK_END = "<!-- /bolt:approval -->"
# State keys this module owns (publish carries them over untouched; see publish.OWN_STATE_KEYS).
STATE_KEYS = ("approval", "approval_note", "regressed", "perf", "claim")
# A command is a line of its own that starts with /bolt; Bolt's replies quote commands in backticks,
# so a reply can never be read as a command.
COMMAND_LINE = re.compile(r"^[ \t]*/bolt(?:[ \t]+(?P<name>\S+))?[ \t]*(?P<args>[^\r\n]*)$", re.MULTILINE | re.IGNORECASE)
COMMANDS = ("approve", "run", "profile", "help")
APPROVERS = {"write": ("write", "admin"), "admin": ("admin",)}  # maintain is reported as write
REASON_LIMIT = 500
NO_IMPROVEMENT = "no measurable improvement"
PROFILE_EXCERPT = 6000  # characters of report.md quoted in the reply to `/bolt profile`


# ---------------------------------------------------------------------------------------------------------
# what needs approval, and whether an approval survives a new measurement


def claim_text(results: Results, limit: int = 3) -> str:
    """What Bolt measured of a perf-labelled PR's claimed improvement: "-44.4 % in parse" or none."""
    faster = sorted((s for s in results.stages if s.verdict == IMPROVED and s.ratio), key=lambda s: s.ratio)
    if not faster:
        return NO_IMPROVEMENT
    parts = [f"{render.format_change(s.ratio)} in {_short(s.name)}" for s in faster[:limit]]  # the comment's style
    more = len(faster) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _short(name: str) -> str:
    return " ".join(str(name).rsplit("::", 1)[-1].split()) or "?"


def needs_approval(verdict: str | None, regressed: bool, perf: bool) -> bool:
    """A regression, or a perf-labelled change, waits for a maintainer; a failed measurement is an error instead."""
    return verdict != FAILED and (regressed or perf)


def carry_over(old_state: Mapping[str, Any] | None, results: Results, threshold: float,
               instr_threshold: float | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """(the approval that still stands, or None; why it was cleared, or None).

    An approval stands when the stages regressed now are among those regressed when it was given and none
    got worse, relative to its ratio at approval time, by more than the threshold (percent). The ratios at
    approval time are kept, so that small steps cannot add up to a large unapproved regression."""
    approval = (old_state or {}).get("approval")
    if not isinstance(approval, dict) or not approval.get("user"):
        return None, None
    stages = approval.get("stages") if isinstance(approval.get("stages"), dict) else {}
    approved: dict[str, float | None] = {}
    for name, ratio in stages.items():
        numeric = isinstance(ratio, (int, float)) and not isinstance(ratio, bool)
        approved[str(name)] = float(ratio) if numeric else None
    problems = []
    for stage in sorted(results.regressions, key=lambda s: s.name):
        before = approved.get(render.state_name(stage.name))
        limit = instr_threshold if stage.measure == INSTRUCTIONS and instr_threshold is not None else threshold
        if render.state_name(stage.name) not in approved:
            problems.append(f"{_short(stage.name)} regressed ({render.format_change(stage.ratio)}), "
                            "which the approval did not cover")
        elif stage.ratio is not None and before and before > 0 and (stage.ratio / before - 1) * 100 > limit:
            problems.append(f"{_short(stage.name)} got worse ({render.format_change(before)} → "
                            f"{render.format_change(stage.ratio)}, more than the {limit:g} % threshold)")
    if not problems:
        kept = dict(approval)
        kept["holds_for"] = results.head.sha
        return kept, None
    note = (f"the approval by {approval.get('user')} for {str(approval.get('sha') or '')[:7]} was cleared by the "
            f"measurement of {str(results.head.sha or '')[:7]}: " + "; ".join(problems))
    return None, note


@dataclass
class Gate:
    """What approval means for one publish: the perf label, the approval that stands, why one was cleared."""

    perf: bool = False
    claim: str = ""
    approval: dict[str, Any] | None = None
    note: str | None = None
    old_note: str | None = None

    def needed(self, results: Results) -> bool:
        return needs_approval(results.verdict, bool(results.regressions), self.perf)

    def state_keys(self, results: Results) -> dict[str, Any]:
        """This module's part of the comment's hidden state: enough to re-render the approval block and the
        status from a command, without the results."""
        needed = self.needed(results)
        return {
            "approval": self.approval,
            # A cleared approval's reason stays visible until someone approves again or nothing needs it.
            "approval_note": None if self.approval or not needed else (self.note or self.old_note),
            # Keyed by a short form of each name, so that the state stays small whatever the names are.
            "regressed": dict(sorted((render.state_name(s.name), s.ratio) for s in results.regressions)[: render.STATE_STAGES_LIMIT]),
            "perf": self.perf,
            "claim": self.claim if self.perf else None,
        }


def gate_for_publish(results: Results, client: Any, pr_number: int, settings: Settings,
                     old_state: Mapping[str, Any] | None, labels: list[str] | None = None) -> Gate:
    """Carry the stored approval over to `results` (or clear it), for publish. `labels` are the PR's, when
    the caller has already read the pull request (publish has: it checks the head), else read here."""
    if labels is None:
        labels = pr_labels(client, pr_number)
    gate = Gate(perf=settings.perf_label in labels, claim=claim_text(results),
                old_note=(old_state or {}).get("approval_note"))
    revoked = approver_lost_permission(client, old_state, settings)
    if revoked:
        old_state = {**(old_state or {}), "approval": None}
    gate.approval, gate.note = carry_over(old_state, results, settings.threshold, settings.instr_threshold)
    gate.note = gate.note or revoked
    results.approval = gate.approval if gate.approval and gate.needed(results) else None
    if gate.note and settings.approval_label in labels:
        # The label means "approved": it must not outlive the approval it stood for.
        client.remove_label(pr_number, settings.approval_label)
    return gate


def approver_lost_permission(client: Any, state: Mapping[str, Any] | None, settings: Settings) -> str | None:
    """Why the approval stored in Bolt's comment no longer counts (its approver may not approve now), or None.

    Asked of the permission API every time: the state says who approved, never that they still may."""
    approval = (state or {}).get("approval")
    if not isinstance(approval, dict) or not approval.get("user"):
        return None
    user = str(approval["user"])
    role = permission(client, user)
    if role in APPROVERS[settings.approvers]:
        return None
    return f"the approval by {user} no longer counts: {user} has {role} permission on this repository"


def status_for(results: Results, gate: Gate, settings: Settings) -> tuple[str, str]:
    """The bolt/performance status: approved → success; regressed → failure; perf label → pending."""
    from bolt_bot.github import publish
    from bolt_bot.github.client import short_description

    state, description = publish.status_for(results)
    if not gate.needed(results):
        return state, description
    if results.approval:
        return "success", approved_description(results.approval)
    if results.verdict == REGRESSED and results.regressions:
        return state, description
    return "pending", short_description(f"{settings.perf_label} label: {gate.claim}; waiting for a maintainer's "
                                        f"approval (/bolt approve <reason>)")


def approved_description(approval: Mapping[str, Any]) -> str:
    from bolt_bot.github.client import short_description

    return short_description(f"approved by {approval.get('user')}: {approval.get('reason')}")


# ---------------------------------------------------------------------------------------------------------
# the approval block of the comment


def block(state: Mapping[str, Any], settings: Settings) -> str:
    """The markdown between BLOCK_START and BLOCK_END, from the hidden state alone."""
    lines = []
    approval = state.get("approval") if isinstance(state.get("approval"), dict) else None
    regressed = bool(state.get("regressed")) or state.get("verdict") == REGRESSED
    perf = bool(state.get("perf"))
    if perf and state.get("claim"):
        claim = str(state["claim"])
        said = claim if claim == NO_IMPROVEMENT else f"measured {claim}"
        lines.append(f"🏷️ Labelled `{inert(settings.perf_label, 50)}`: {inert(said, 300)}.")
    if approval:
        when = f" on {inert(approval.get('at'), 40)}" if approval.get("at") else ""
        via = {"label": f" (the `{inert(settings.approval_label, 50)}` label)",
               "review": " (an approving review)"}.get(str(approval.get("via")), "")
        line = (f"✅ **Approved** by {inert(approval.get('user'), 60)} for `{inert(str(approval.get('sha'))[:7])}`"
                f"{when}{via}: {inert(approval.get('reason'), REASON_LIMIT)}")
        holds = str(approval.get("holds_for") or "")
        if holds and holds != approval.get("sha"):
            line += (f" — still holds for `{inert(holds[:7])}`: the same or fewer stages regressed, "
                     "none got worse beyond the threshold.")
        lines.append(line)
    elif needs_approval(state.get("verdict"), regressed, perf):
        if state.get("approval_note"):
            lines.append(f"⚠️ **Approval cleared**: {inert(state['approval_note'], 1000)}.")
        what = "This regression" if regressed else "This perf-labelled change"
        lines.append(f"⏳ {what} needs a maintainer's approval before the `bolt/performance` check turns green: "
                     f"comment `/bolt approve <reason>` or add the `{inert(settings.approval_label, 50)}` label.")
    return "\n\n".join(lines)


def with_block(body: str, state: Mapping[str, Any], settings: Settings) -> str:
    """`body` with its approval section replaced by the one the state describes (inserted when missing)."""
    text = block(state, settings)
    section = f"{BLOCK_START}\n" + (f"{text}\n\n" if text else "") + BLOCK_END
    start = body.find(BLOCK_START)
    end = body.find(BLOCK_END, start + 1) if start >= 0 else -1
    if start >= 0 and end >= 0:
        new = body[:start] + section + body[end + len(BLOCK_END):]
    else:
        # First time (templates leave the section to this function): under the verdict heading, else at the top.
        match = re.search(r"^### .*\n(?:[ \t]*\n)*", body, re.MULTILINE)
        at = match.end() if match else _after_hidden_lines(body)
        new = body[:at] + section + "\n\n" + body[at:]
    return _fit(new)


def _after_hidden_lines(body: str) -> int:
    at = 0
    for line in body.splitlines(keepends=True):
        if not line.startswith("<!--"):
            break
        at += len(line)
    return at


_TABLE_ROW = re.compile(r"^\| \S+ \| .*\n", re.MULTILINE)


def _fit(body: str) -> str:
    """Within GitHub's size limit: a comment rendered right up to it loses rows from its last table."""
    while len(body) > render.COMMENT_LIMIT:
        rows = [m for m in _TABLE_ROW.finditer(body) if not m.group(0).startswith("| | ")]
        if not rows:
            break
        last = rows[-1]
        body = body[:last.start()] + body[last.end():]
    return body


def replace_state(body: str, state: Mapping[str, Any]) -> str:
    """`body` with its hidden state line replaced."""
    start = body.find(render.STATE_PREFIX)
    end = body.find(render.STATE_SUFFIX, start + len(render.STATE_PREFIX)) if start >= 0 else -1
    line = render.state_comment(dict(state))
    if start < 0 or end < 0:
        marker = body.find(render.MARKER)
        at = marker + len(render.MARKER) + 1 if marker >= 0 else 0
        return body[:at] + line + "\n" + body[at:]
    return body[:start] + line + body[end + len(render.STATE_SUFFIX):]


# ---------------------------------------------------------------------------------------------------------
# events → requests


@dataclass
class Request:
    """One thing someone asked of Bolt outside a measurement."""

    kind: str  # approve | revoke | run | profile | help | unknown
    number: int
    user: str
    via: str  # comment | label | review
    reason: str = ""
    args: str = ""
    comment_id: int | None = None
    url: str | None = None
    labels: list[str] | None = None  # the PR's labels as the event saw them
    name: str = ""  # the command word as typed


def parse_command(body: str) -> tuple[str, str] | None:
    """(command, rest of its line) for the first `/bolt` line of a comment, or None."""
    match = COMMAND_LINE.search(body or "")
    if match is None:
        return None
    return (match.group("name") or "help").lower(), " ".join((match.group("args") or "").split())


def request_from_event(event_name: str, event: Mapping[str, Any], settings: Settings) -> tuple[Request | None, str]:
    """(what the event asks, or None; why)."""
    action = event.get("action")
    if event_name == "issue_comment":
        issue, comment = event.get("issue") or {}, event.get("comment") or {}
        if action != "created":
            return None, f"issue_comment {action}"
        if not issue.get("pull_request"):
            return None, "a comment on an issue, not on a pull request"
        user = comment.get("user") or {}
        if user.get("type") == "Bot":
            return None, "a comment by a bot"
        parsed = parse_command(str(comment.get("body") or ""))
        if parsed is None:
            return None, "no /bolt command in the comment"
        name, args = parsed
        kind = name if name in COMMANDS else "unknown"
        return Request(kind=kind, number=int(issue["number"]), user=str(user.get("login")), via="comment",
                       reason=args if kind == "approve" else "", args=args, comment_id=comment.get("id"),
                       url=comment.get("html_url"), labels=_label_names(issue.get("labels")), name=name), "comment"
    if event_name in ("pull_request", "pull_request_target") and action in ("labeled", "unlabeled"):
        if str((event.get("label") or {}).get("name")) != settings.approval_label:
            return None, "another label"
        sender = event.get("sender") or {}
        if sender.get("type") == "Bot":
            return None, "a label change by a bot (Bolt's own)"
        pr = event.get("pull_request") or {}
        kind = "approve" if action == "labeled" else "revoke"
        return Request(kind=kind, number=int(event.get("number") or pr.get("number")), user=str(sender.get("login")),
                       via="label", reason=f"added the {settings.approval_label} label",
                       url=pr.get("html_url"), labels=_label_names(pr.get("labels"))), f"label {action}"
    if event_name == "pull_request_review":
        review, pr = event.get("review") or {}, event.get("pull_request") or {}
        if action != "submitted" or str(review.get("state")).lower() != "approved":
            return None, f"a review that does not approve ({review.get('state')})"
        if not settings.approve_by_review:
            return None, "approving reviews do not approve performance changes (approve_by_review is off)"
        user = review.get("user") or {}
        reason = " ".join(str(review.get("body") or "").split()) or "approving review"
        return Request(kind="approve", number=int(pr.get("number")), user=str(user.get("login")), via="review",
                       reason=reason, url=review.get("html_url"), labels=_label_names(pr.get("labels"))), "review"
    return None, f"event {event_name} {action or ''}".strip()


def _label_names(labels: Any) -> list[str] | None:
    if not isinstance(labels, list):
        return None
    return [str(lb.get("name")) for lb in labels if isinstance(lb, dict)]


# ---------------------------------------------------------------------------------------------------------
# talking to GitHub beyond bolt_bot.github.client.Client's calls


def pr_labels(client: Any, number: int) -> list[str]:
    from bolt_bot.github.client import calling

    with calling(f"reading the labels of #{number}", client.options):
        return [label.name for label in client.repo.get_issue(number).get_labels()]


def permission(client: Any, login: str) -> str:
    """admin | write | read | none, from the API every time (never from the event's author_association)."""
    try:
        return client.permission(login)
    except PublishError as exc:
        if "404" in str(exc):  # not a user, or not visible: no permission
            return "none"
        raise


def react(client: Any, number: int, comment_id: int | None, content: str, out: TextIO) -> None:
    """A reaction on the command's comment; only a courtesy, so a failure is a warning."""
    from bolt_bot.github.client import calling

    if not comment_id:
        return
    try:
        with calling(f"reacting to comment {comment_id}", client.options):
            client.repo.get_issue(number).get_comment(int(comment_id)).create_reaction(content)
    except PublishError as exc:
        print(f"::warning title=Bolt::{_escape(str(exc))}", file=out)


def _escape(text: str) -> str:
    from bolt_bot.github.publish import escape_data

    return escape_data(" ".join(text.split()))


# ---------------------------------------------------------------------------------------------------------
# handling a request


def help_text(settings: Settings) -> str:
    by_review = ", or an approving review" if settings.approve_by_review else ""
    who = "admin" if settings.approvers == "admin" else "write (or maintain, or admin)"
    return (
        "**Bolt commands** (for people with write permission on this repository):\n\n"
        f"- `/bolt approve <reason>`: accept this pull request's performance change (a regression, or a change "
        f"labelled `{inert(settings.perf_label, 50)}`) for the head commit Bolt measured; needs {who} permission. "
        f"The `{inert(settings.approval_label, 50)}` label does the same{by_review}. A later push keeps the "
        "approval only if the same or fewer stages regress and none gets worse beyond the threshold.\n"
        "- `/bolt run`: how to measure again.\n"
        "- `/bolt profile [-k FILTER]`: profile every stage of this pull request's head and post a summary.\n"
        "- `/bolt help`: this list.\n"
    )


RUN_REPLY = (
    "Bolt cannot measure this head here: a fork's code never runs in the workflow that handles comments (it "
    "holds a write token), and for a branch of this repository that workflow must check out the pull "
    "request's head (`ref: refs/pull/<number>/head`). "
    "To measure again, re-run the Bolt job from the pull request's Checks tab{checks}, or push a commit. "
    "A stored approval stays if the new measurement finds the same or fewer regressions and none worse."
)


@dataclass
class Handler:
    """One request against one repository's API, with what it needs to answer."""

    config: Any  # bolt_bot.github.action.ActionConfig
    client: Any
    settings: Settings
    out: TextIO
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    rerun: Callable[[Any], int] | None = None  # the measure activity, for `/bolt run`

    def reply(self, number: int, text: str) -> None:
        """A new comment, never an edit: a failed reply must leave Bolt's report as it is (exit 3)."""
        try:
            self.client.post_comment(number, text)
        except PublishError as exc:
            # The server may have acted before failing: then the reply is there and all is well.
            try:
                mine = self.client.whoami().lower()
                if any(c.body == text and str(getattr(c.user, "login", "")).lower() == mine
                       for c in self.client.list_comments(number)):
                    return
            except PublishError:
                pass
            raise PublishError(f"could not reply on #{number} (Bolt's report is unchanged): {exc}") from None

    def notice(self, text: str) -> None:
        print(f"::notice title=Bolt::{_escape(text)}", file=self.out)

    def permitted(self, login: str, approvers: str) -> tuple[bool, str]:
        role = permission(self.client, login)
        return role in APPROVERS[approvers], role

    # ------------------------------------------------------------------ approvals

    def approve(self, req: Request) -> int:
        allowed, role = self.permitted(req.user, self.settings.approvers)
        who = "admin" if self.settings.approvers == "admin" else "write"
        if not allowed:
            return self._refuse_approval(req, role, who)
        if req.via == "comment" and not req.reason:
            react(self.client, req.number, req.comment_id, "confused", self.out)
            self.reply(req.number, f"@{req.user}, please say why with the approval: `/bolt approve <reason>` "
                                   "(the reason is shown in Bolt's comment and in the commit status).")
            return EXIT_OK
        existing = self.client.find_comment(req.number)
        state = render.read_state(existing.body or "") if existing is not None else None
        if not state or not state.get("head_sha"):
            if req.via == "label":
                self.client.remove_label(req.number, self.settings.approval_label)
            if req.via != "review":
                react(self.client, req.number, req.comment_id, "confused", self.out)
                self.reply(req.number, f"@{req.user}, Bolt has not reported on this pull request yet, so there is "
                                       "nothing to approve; please approve again after its report.")
            return EXIT_OK
        sha = str(state["head_sha"])
        current = state.get("approval") if isinstance(state.get("approval"), dict) else {}
        if req.via == "label" and sha in (current.get("sha"), current.get("holds_for")):
            # Bolt adds the label itself after `/bolt approve`: that must not replace the written reason.
            self.notice(f"#{req.number}: already approved by {current.get('user')} for {sha[:7]}")
            return EXIT_OK
        approval = {
            "user": req.user, "reason": req.reason[:REASON_LIMIT], "sha": sha, "via": req.via,
            "at": self.now().strftime("%Y-%m-%d %H:%M UTC"), "permission": role, "url": req.url,
            "stages": dict(state.get("regressed") or {}),
        }
        state = {**state, "approval": approval, "approval_note": None}
        body = with_block(replace_state(existing.body or "", state), state, self.settings)
        # A run for a newer head may rewrite the comment while this one writes: editing then would put the old
        # report back over the new one. A newer head's run writes only once the pull request is at that head, so
        # the head is checked first, then the comment read again right before writing (compare, then swap);
        # the newer head's run reads its comment back after writing and writes again if an old report landed.
        pull_head = self.client.pull(req.number).head.sha
        fresh = self.client.find_comment(req.number) if pull_head == sha else None
        fresh_state = render.read_state(fresh.body or "") if fresh is not None else None
        if pull_head != sha or fresh is None or (fresh.body or "") != (existing.body or ""):
            moved = pull_head if pull_head != sha else str((fresh_state or {}).get("head_sha") or "")
            return self._changed_meanwhile(req, moved)
        self.client.edit_comment(fresh, body)
        after = self.client.find_comment(req.number)
        after_state = (render.read_state(after.body or "") or {}) if after is not None else {}
        kept = after_state.get("approval") if isinstance(after_state.get("approval"), dict) else {}
        if after_state.get("head_sha") != sha and kept.get("user") != req.user:
            # A newer head's report landed right after this write, without this approval: say so.
            return self._changed_meanwhile(req, str(after_state.get("head_sha") or ""))
        if self._needed(state, req):
            self.client.set_status(sha, "success", approved_description(approval), target_url=req.url)
        if req.via == "comment":
            # The label makes the approval visible in the list of pull requests.
            self.client.add_label(req.number, self.settings.approval_label)
            react(self.client, req.number, req.comment_id, "+1", self.out)
        self.notice(f"#{req.number}: approved by {req.user} for {sha[:7]}: {req.reason}")
        return EXIT_OK

    def _changed_meanwhile(self, req: Request, moved: str) -> int:
        react(self.client, req.number, req.comment_id, "confused", self.out)
        self.reply(req.number, f"@{req.user}, Bolt's report changed while this approval was being recorded "
                               f"(now for {moved[:7] or 'another run'}); nothing was approved. Please read the "
                               "new report and approve again.")
        self.notice(f"#{req.number}: approval by {req.user} not recorded: the report changed meanwhile")
        return EXIT_OK

    def _refuse_approval(self, req: Request, role: str, who: str) -> int:
        self.notice(f"#{req.number}: {req.user} ({role}) may not approve; nothing changed")
        if req.via == "review":
            return EXIT_OK  # reviews from anyone are common: not worth a reply each
        if req.via == "label":
            self.client.remove_label(req.number, self.settings.approval_label)
            self.reply(req.number, f"@{req.user}, thanks for looking at this. Bolt removed the "
                                   f"`{inert(self.settings.approval_label, 50)}` label: only people with {who} "
                                   "permission on this repository can approve performance changes. "
                                   "A maintainer can approve with `/bolt approve <reason>`.")
            return EXIT_OK
        react(self.client, req.number, req.comment_id, "confused", self.out)
        self.reply(req.number, f"@{req.user}, thanks for looking at this. Only people with {who} permission on this "
                               "repository can approve performance changes, so nothing changed. "
                               "A maintainer can approve with `/bolt approve <reason>`.")
        return EXIT_OK

    def revoke(self, req: Request) -> int:
        allowed, _ = self.permitted(req.user, self.settings.approvers)
        existing = self.client.find_comment(req.number)
        state = render.read_state(existing.body or "") if existing is not None else None
        if not allowed or not state or not isinstance(state.get("approval"), dict):
            self.notice(f"#{req.number}: the {self.settings.approval_label} label was removed; nothing to withdraw")
            return EXIT_OK
        old = state["approval"]
        state = {**state, "approval": None,
                 "approval_note": f"{req.user} withdrew the approval by {old.get('user')} "
                                  f"(removed the {self.settings.approval_label} label)"}
        self.client.edit_comment(existing, with_block(replace_state(existing.body or "", state), state, self.settings))
        if self._needed(state, req):
            self.client.set_status(str(state["head_sha"]), *self._unapproved_status(state), target_url=req.url)
        self.notice(f"#{req.number}: {req.user} withdrew the approval")
        return EXIT_OK

    def _needed(self, state: Mapping[str, Any], req: Request) -> bool:
        perf = self.settings.perf_label in req.labels if req.labels is not None else bool(state.get("perf"))
        return needs_approval(state.get("verdict"), bool(state.get("regressed")), perf)

    def _unapproved_status(self, state: Mapping[str, Any]) -> tuple[str, str]:
        from bolt_bot.github.client import short_description

        regressed = state.get("regressed") or {}
        if regressed:
            worst = sorted(regressed.items(), key=lambda kv: -(kv[1] or 1.0))
            listing = ", ".join(f"{_short(n)} {render.format_change(r)}" for n, r in worst)
            return "failure", short_description(f"{len(worst)} stage{'s' if len(worst) != 1 else ''} slower: {listing}")
        return "pending", short_description(f"{self.settings.perf_label} label: {state.get('claim') or 'no measurable improvement'}; "
                                            "waiting for a maintainer's approval (/bolt approve <reason>)")

    # ------------------------------------------------------------------ other commands

    def command(self, req: Request) -> int:
        allowed, role = self.permitted(req.user, "write")
        if not allowed:
            react(self.client, req.number, req.comment_id, "confused", self.out)
            self.reply(req.number, f"@{req.user}, thanks for the interest. Bolt's commands are for people with write "
                                   "permission on this repository; nothing was done.")
            self.notice(f"#{req.number}: /bolt {req.name} from {req.user} ({role}) ignored")
            return EXIT_OK
        if req.kind == "help":
            react(self.client, req.number, req.comment_id, "+1", self.out)
            self.reply(req.number, help_text(self.settings))
            return EXIT_OK
        if req.kind == "unknown":
            react(self.client, req.number, req.comment_id, "confused", self.out)
            self.reply(req.number, f"Bolt does not know `/bolt {inert(req.name, 40)}`.\n\n" + help_text(self.settings))
            return EXIT_OK
        if req.kind == "run":
            return self.run_again(req)
        return self.profile(req)

    def _local_head(self, pull: Any) -> bool:
        """Whether the workflow's checkout holds the pull request's head (a fork's code is never run here)."""
        from bolt_bot.github.action import configure_safe_directory
        from bolt_bot.measure.gitrepo import try_resolve

        workspace = Path(self.config.workspace)
        if not (workspace / ".git").exists():
            return False
        # The container runs as root in the runner's workspace: git must be told to trust it.
        configure_safe_directory(workspace, os.environ)
        return try_resolve(workspace, pull.head.sha) is not None

    @staticmethod
    def _from_fork(pull: Any, repository: str) -> bool:
        return (pull.head.repo.full_name if pull.head.repo is not None else None) != repository

    def _base_overrides(self, pull: Any) -> dict[str, Any]:
        """Every setting as the base's [tool.bolt] and the workflow's inputs give it, for profiling the head: the
        pull request's own [tool.bolt] (its `install` command above all) must not choose what runs here."""
        from bolt_bot.github.action import project_settings
        from bolt_bot.measure.gitrepo import resolve

        base = resolve(Path(self.config.workspace), pull.base.sha)  # fetched when the checkout is shallow
        settings = project_settings(self.config, base)
        # profile_report applies the profiled commit's table first, then these: each is given ("" for none).
        return {name: "" if value is None else value for name, value in settings.to_dict().items()}

    def run_again(self, req: Request) -> int:
        """`/bolt run`: measure again here when the checkout holds this repository's PR head, else say how."""
        pull = self.client.pull(req.number)
        if self.rerun is None or self._from_fork(pull, self.config.repository) or not self._local_head(pull):
            react(self.client, req.number, req.comment_id, "eyes", self.out)
            html = str((self.config.event.get("issue") or {}).get("html_url") or "")
            checks = f" ({html}/checks)" if "/pull/" in html else ""
            self.reply(req.number, RUN_REPLY.format(checks=checks))
            return EXIT_OK
        react(self.client, req.number, req.comment_id, "eyes", self.out)
        # The same activity as a pull_request event for this head: measure, then publish the sticky comment.
        event = {"number": req.number, "pull_request": {
            "number": req.number,
            "head": {"sha": pull.head.sha, "ref": pull.head.ref, "repo": {"full_name": self.config.repository}},
            "base": {"sha": pull.base.sha, "ref": pull.base.ref, "repo": {"full_name": self.config.repository}},
        }}
        code = self.rerun(dataclasses.replace(self.config, event_name="pull_request", event=event))
        react(self.client, req.number, req.comment_id, "+1" if code in (0, 1) else "confused", self.out)
        return code

    def profile(self, req: Request) -> int:
        from bolt_bot.github.action import _optional_module

        pull = self.client.pull(req.number)
        sha = pull.head.sha
        if self._from_fork(pull, self.config.repository):
            react(self.client, req.number, req.comment_id, "confused", self.out)
            self.reply(req.number, "This pull request comes from a fork: Bolt does not run a fork's code in a "
                                   "workflow that holds a write token. Profile it with the **Bolt profile** "
                                   f"workflow (`workflow_dispatch`, ref `{sha[:7]}`) instead.")
            return EXIT_OK
        report_module = _optional_module("bolt_bot.profiling.fullreport")
        profile_report = getattr(report_module, "profile_report", None)
        workspace = Path(self.config.workspace)
        checkout = self._local_head(pull)
        if profile_report is None or not checkout:
            react(self.client, req.number, req.comment_id, "confused", self.out)
            why = ("this version of Bolt has no profile report" if profile_report is None else
                   f"the workflow's checkout does not hold {sha[:7]}: check out the pull request's head "
                   f"(`ref: refs/pull/{req.number}/head`) in the workflow that handles comments")
            self.reply(req.number, f"Bolt cannot profile {sha[:7]} here: {why}.")
            return EXIT_OK
        react(self.client, req.number, req.comment_id, "eyes", self.out)
        filter_ = req.args[3:].strip() if req.args.startswith("-k ") else (req.args or None)
        try:
            report = profile_report(workspace, sha, filter_, self.config.results_dir, self._base_overrides(pull))
        except BoltError as exc:
            self.reply(req.number, f"Bolt could not profile {sha[:7]}: {inert(str(exc), 500)}")
            return exc.exit_code
        path = Path(report) if report else Path(self.config.results_dir) / "report.md"
        # profile_report has put the whole report in the job summary already.
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        self.reply(req.number, _profile_reply(text, sha, self.config.run_url))
        react(self.client, req.number, req.comment_id, "+1", self.out)
        return EXIT_OK


def _profile_reply(report: str, sha: str, run_url: str | None) -> str:
    """The report's head (time per stage, top bottlenecks), without the per-stage details."""
    cut = report.find("## Hot functions per stage")
    excerpt = (report[:cut] if cut >= 0 else report).strip()
    if len(excerpt) > PROFILE_EXCERPT:
        excerpt = excerpt[:PROFILE_EXCERPT].rsplit("\n", 1)[0] + "\n\n…"
    where = f"the [workflow run]({run_url})" if run_url else "the workflow run"
    head = excerpt or f"Profiled {sha[:7]}."
    # The report's own title is an h1: one level down in a reply.
    head = re.sub(r"^# ", "#### ", head, count=1)
    return (f"{head}\n\nHot functions per stage, flame graphs and pstats files: in the job summary and the "
            f"results directory of {where}.")


def _settings(config: Any) -> Settings:
    from bolt_bot.github.action import project_settings

    return project_settings(config)  # the base's [tool.bolt] when the event names a base the checkout holds


def handle(config: Any, client_factory: Callable[[], Any], *, out: TextIO | None = None,
           now: Callable[[], datetime] | None = None, rerun: Callable[[Any], int] | None = None) -> int:
    """The `command` activity: an issue comment, an approval label change, or a review. Never measures."""
    out = out or sys.stdout
    settings = _settings(config)
    req, why = request_from_event(config.event_name, config.event, settings)
    if req is None:
        print(f"::notice title=Bolt::nothing to do: {_escape(why)}", file=out)
        return EXIT_OK
    handler = Handler(config, client_factory(), settings, out, rerun=rerun)
    if now is not None:
        handler.now = now
    if req.kind == "approve":
        return handler.approve(req)
    if req.kind == "revoke":
        return handler.revoke(req)
    return handler.command(req)
