"""The `command` activity: approvals (comment, label, review), their withdrawal, `/bolt run|profile|help`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from bolt_bot.decide import gate as gates
from bolt_bot.errors import EXIT_OK, BoltError, PublishError
from bolt_bot.github import checkrun, events
from bolt_bot.github.client import Client
from bolt_bot.github.events import ActionConfig, Request
from bolt_bot.github.workflow import notice
from bolt_bot.measure.gitrepo import resolve, try_resolve
from bolt_bot.report import messages
from bolt_bot.report.state import read_state, replace_state
from bolt_bot.settings import Settings

PROFILE_MODULE = "bolt_bot.profiling.fullreport"


@dataclass
class Handler:
    """One request against one repository's API, with what it needs to answer."""

    config: ActionConfig
    client: Client
    settings: Settings
    out: TextIO
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    rerun: Callable[[ActionConfig], int] | None = None  # the measure activity, for `/bolt run`

    def reply(self, number: int, kind: str, **values: Any) -> None:
        """A new comment, never an edit: a failed reply must leave Bolt's report as it is (exit 3)."""
        self.post(number, messages.reply(kind, self.settings, **values))

    def post(self, number: int, text: str) -> None:
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

    def react(self, req: Request, content: str) -> None:
        """A reaction on the command's comment; only a courtesy, so a failure is a warning."""
        if not req.comment_id:
            return
        try:
            self.client.react(req.number, req.comment_id, content)
        except PublishError as exc:
            notice(str(exc), self.out, command="warning")

    def notice(self, text: str) -> None:
        notice(text, self.out)

    def permitted(self, login: str, approvers: str) -> tuple[bool, str]:
        role = self.client.role(login)
        return gates.may_approve(role, approvers), role

    def _status(self, sha: str, state: Mapping[str, Any], gate: gates.Gate, url: str | None) -> None:
        measured = gates.Measured.stored(state)
        status, description = gates.status_for(measured, gate, self.settings.perf_label)
        if checkrun.wants_status(self.settings):
            self.client.set_status(sha, status, description, target_url=url)
        if checkrun.wants_check(self.settings):
            # An approval (or its withdrawal) changes the check run's conclusion as it changes the status.
            checkrun.reconclude(self.client, sha, checkrun.conclusion_for(status, measured.verdict, True),
                                description)

    # ------------------------------------------------------------------ approvals

    def approve(self, req: Request) -> int:
        allowed, role = self.permitted(req.user, self.settings.approvers)
        if not allowed:
            return self._refuse_approval(req, role, "admin" if self.settings.approvers == "admin" else "write")
        if req.via == "comment" and not req.reason:
            self.react(req, "confused")
            self.reply(req.number, "no-reason", user=req.user)
            return EXIT_OK
        existing = self.client.find_comment(req.number)
        state = read_state(existing.body or "") if existing is not None else None
        if not state or not state.get("head_sha"):
            if req.via == "label":
                self.client.remove_label(req.number, self.settings.approval_label)
            if req.via != "review":
                self.react(req, "confused")
                self.reply(req.number, "nothing-to-approve", user=req.user)
            return EXIT_OK
        sha = str(state["head_sha"])
        current = state.get("approval") if isinstance(state.get("approval"), dict) else {}
        if req.via == "label" and sha in (current.get("sha"), current.get("holds_for")):
            # Bolt adds the label itself after `/bolt approve`: that must not replace the written reason.
            self.notice(f"#{req.number}: already approved by {current.get('user')} for {sha[:7]}")
            return EXIT_OK
        approval = {
            "user": req.user, "reason": req.reason[:messages.REASON_LIMIT], "sha": sha, "via": req.via,
            "at": self.now().strftime("%Y-%m-%d %H:%M UTC"), "permission": role, "url": req.url,
            "stages": dict(state.get("regressed") or {}),
        }
        state = {**state, "approval": approval, "approval_note": None}
        body = messages.with_block(replace_state(existing.body or "", state), state, self.settings,
                                   gates.stored_gate(state).needed)
        # A run for a newer head may rewrite the comment while this one writes: editing then would put the old
        # report back over the new one. A newer head's run writes only once the pull request is at that head, so
        # the head is checked first, then the comment read again right before writing (compare, then swap);
        # the newer head's run reads its comment back after writing and writes again if an old report landed.
        pull_head = self.client.pull(req.number).head.sha
        fresh = self.client.find_comment(req.number) if pull_head == sha else None
        fresh_state = read_state(fresh.body or "") if fresh is not None else None
        if pull_head != sha or fresh is None or (fresh.body or "") != (existing.body or ""):
            moved = pull_head if pull_head != sha else str((fresh_state or {}).get("head_sha") or "")
            return self._changed_meanwhile(req, moved)
        self.client.edit_comment(fresh, body)
        after = self.client.find_comment(req.number)
        after_state = (read_state(after.body or "") or {}) if after is not None else {}
        kept = after_state.get("approval") if isinstance(after_state.get("approval"), dict) else {}
        if after_state.get("head_sha") != sha and kept.get("user") != req.user:
            # A newer head's report landed right after this write, without this approval: say so.
            return self._changed_meanwhile(req, str(after_state.get("head_sha") or ""))
        gate = gates.stored_gate(state, req.labels, self.settings.perf_label)
        if gate.needed:
            self._status(sha, state, gate, req.url)
        if req.via == "comment":
            # The label makes the approval visible in the list of pull requests.
            self.client.add_label(req.number, self.settings.approval_label)
            self.react(req, "+1")
        self.notice(f"#{req.number}: approved by {req.user} for {sha[:7]}: {req.reason}")
        return EXIT_OK

    def _changed_meanwhile(self, req: Request, moved: str) -> int:
        self.react(req, "confused")
        self.reply(req.number, "changed-meanwhile", user=req.user, moved=moved)
        self.notice(f"#{req.number}: approval by {req.user} not recorded: the report changed meanwhile")
        return EXIT_OK

    def _refuse_approval(self, req: Request, role: str, who: str) -> int:
        self.notice(f"#{req.number}: {req.user} ({role}) may not approve; nothing changed")
        if req.via == "review":
            return EXIT_OK  # reviews from anyone are common: not worth a reply each
        if req.via == "label":
            self.client.remove_label(req.number, self.settings.approval_label)
            self.reply(req.number, "label-removed", user=req.user, who=who)
            return EXIT_OK
        self.react(req, "confused")
        self.reply(req.number, "may-not-approve", user=req.user, who=who)
        return EXIT_OK

    def revoke(self, req: Request) -> int:
        allowed, _ = self.permitted(req.user, self.settings.approvers)
        existing = self.client.find_comment(req.number)
        state = read_state(existing.body or "") if existing is not None else None
        if not allowed or not state or not isinstance(state.get("approval"), dict):
            self.notice(f"#{req.number}: the {self.settings.approval_label} label was removed; nothing to withdraw")
            return EXIT_OK
        old = state["approval"]
        state = {**state, "approval": None,
                 "approval_note": f"{req.user} withdrew the approval by {old.get('user')} "
                                  f"(removed the {self.settings.approval_label} label)"}
        body = messages.with_block(replace_state(existing.body or "", state), state, self.settings,
                                   gates.stored_gate(state).needed)
        self.client.edit_comment(existing, body)
        gate = gates.stored_gate(state, req.labels, self.settings.perf_label)
        if gate.needed:
            self._status(str(state["head_sha"]), state, gate, req.url)
        self.notice(f"#{req.number}: {req.user} withdrew the approval")
        return EXIT_OK

    # ------------------------------------------------------------------ other commands

    def command(self, req: Request) -> int:
        allowed, role = self.permitted(req.user, "write")
        if not allowed:
            self.react(req, "confused")
            self.reply(req.number, "may-not-command", user=req.user)
            self.notice(f"#{req.number}: /bolt {req.name} from {req.user} ({role}) ignored")
            return EXIT_OK
        if req.kind == "help":
            self.react(req, "+1")
            self.post(req.number, messages.help_text(self.settings))
            return EXIT_OK
        if req.kind == "unknown":
            self.react(req, "confused")
            self.reply(req.number, "unknown-command", name=req.name)
            return EXIT_OK
        if req.kind == "run":
            return self.run_again(req)
        return self.profile(req)

    def _local_head(self, pull: Any) -> bool:
        """Whether the workflow's checkout holds the pull request's head (a fork's code is never run here)."""
        workspace = Path(self.config.workspace)
        if not (workspace / ".git").exists():
            return False
        # The container runs as root in the runner's workspace: git must be told to trust it.
        events.configure_safe_directory(workspace, os.environ)
        return try_resolve(workspace, pull.head.sha) is not None

    @staticmethod
    def _from_fork(pull: Any, repository: str) -> bool:
        return (pull.head.repo.full_name if pull.head.repo is not None else None) != repository

    def _base_overrides(self, pull: Any) -> dict[str, Any]:
        """Every setting as the pull request's base gives it, for profiling the head: the pull request's own
        [tool.bolt] (its `install` command above all) must not choose what runs here. The settings of this
        invocation are the default branch's (a comment event names no base); this is the base's table."""
        base = resolve(Path(self.config.workspace), pull.base.sha)  # fetched when the checkout is shallow
        settings = events.project_settings(self.config, base)
        # profile_report applies the profiled commit's table first, then these: each is given ("" for none).
        return {name: "" if value is None else value for name, value in settings.to_dict().items()}

    def run_again(self, req: Request) -> int:
        """`/bolt run`: measure again here when the checkout holds this repository's PR head, else say how."""
        pull = self.client.pull(req.number)
        if self.rerun is None or self._from_fork(pull, self.config.repository) or not self._local_head(pull):
            self.react(req, "eyes")
            html = str((self.config.event.get("issue") or {}).get("html_url") or "")
            self.reply(req.number, "cannot-run", checks_url=f"{html}/checks" if "/pull/" in html else "")
            return EXIT_OK
        self.react(req, "eyes")
        # The same activity as a pull_request event for this head: measure, then publish the sticky comment.
        event = {"number": req.number, "pull_request": {
            "number": req.number,
            "head": {"sha": pull.head.sha, "ref": pull.head.ref, "repo": {"full_name": self.config.repository}},
            "base": {"sha": pull.base.sha, "ref": pull.base.ref, "repo": {"full_name": self.config.repository}},
        }}
        code = self.rerun(dataclasses.replace(self.config, event_name="pull_request", event=event))
        self.react(req, "+1" if code in (0, 1) else "confused")
        return code

    def profile(self, req: Request) -> int:
        pull = self.client.pull(req.number)
        sha = pull.head.sha
        if self._from_fork(pull, self.config.repository):
            self.react(req, "confused")
            self.reply(req.number, "fork-profile", sha=sha)
            return EXIT_OK
        profile_report = getattr(events.optional_module(PROFILE_MODULE), "profile_report", None)
        if profile_report is None or not self._local_head(pull):
            self.react(req, "confused")
            self.reply(req.number, "cannot-profile", sha=sha, no_report=profile_report is None, pr=req.number)
            return EXIT_OK
        self.react(req, "eyes")
        filter_ = req.args[3:].strip() if req.args.startswith("-k ") else (req.args or None)
        try:
            report = profile_report(Path(self.config.workspace), sha, filter_, self.config.results_dir,
                                    self._base_overrides(pull))
        except BoltError as exc:
            self.reply(req.number, "profile-failed", sha=sha, error=str(exc))
            return exc.exit_code
        path = Path(report) if report else Path(self.config.results_dir) / "report.md"
        # profile_report has put the whole report in the job summary already.
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        self.post(req.number, messages.profile_reply(text, sha, self.config.run_url, self.settings))
        self.react(req, "+1")
        return EXIT_OK


def handle(req: Request, config: ActionConfig, settings: Settings, client: Client, *, out: TextIO,
           now: Callable[[], datetime] | None = None, rerun: Callable[[ActionConfig], int] | None = None) -> int:
    """Answer one request that choose_activity found in the event, with this invocation's settings."""
    handler = Handler(config, client, settings, out, rerun=rerun)
    if now is not None:
        handler.now = now
    if req.kind == "approve":
        return handler.approve(req)
    if req.kind == "revoke":
        return handler.revoke(req)
    return handler.command(req)
