"""Publishing a results directory: the one sticky comment, the commit status, the label, outputs, summary, annotations."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from bolt_bot.decide import gate as gates
from bolt_bot.errors import BoltError, PublishError
from bolt_bot.github import checkrun
from bolt_bot.github.client import Client, ReadOnlyToken
from bolt_bot.github.workflow import annotate, append_summary, escape_data, notice, write_outputs
from bolt_bot.model import INCONCLUSIVE, REGRESSED, UNCHANGED, Results
from bolt_bot.report import messages, render
from bolt_bot.report.state import (
    COMMENT_LIMIT,
    MARKER,
    STATE_STAGES_LIMIT,
    STATE_VERSION,
    read_state,
    state_comment,
    state_name,
)
from bolt_bot.settings import Settings

__all__ = ["Outcome", "annotate", "escape_data", "publish", "write_outputs"]  # the runner's helpers, for callers
# Keys of the hidden state that publish owns; any other key (approvals...) is carried over from the old comment.
OWN_STATE_KEYS = ("v", "head_sha", "base_sha", "run_at", "verdict", "regressions")
QUIET_VERDICTS = (UNCHANGED, INCONCLUSIVE)  # `comment: on-change` stays silent on these until a comment exists
WRITE_ATTEMPTS = 3  # writes of the comment when another run's older report keeps landing on this one


@dataclass
class Outcome:
    """What publish did, for the caller's messages and for tests."""

    comment: str = "none"  # created | updated | skipped-quiet | skipped-never | skipped-stale | none
    comment_url: str = ""
    status: str | None = None  # the commit status state set, if any
    check_run: str | None = None  # the conclusion of the check run Bolt completed, if any
    label: str | None = None  # added | removed | None
    notices: list[str] = field(default_factory=list)
    # The approval in force for these results (from Bolt's own comment, never from results.json): the caller's
    # exit code counts a regression as blocking only without one.
    approval: dict[str, Any] | None = None


def publish(
    results_dir: Path,
    client: Client | None,
    repo: str,
    pr_number: int | None,
    settings: Settings,
    *,
    results: Results | None = None,
    environ: Mapping[str, str] | None = None,
    run_url: str | None = None,
    results_dir_output: str | None = None,
    state_extra: dict[str, Any] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    stdout: TextIO | None = None,
    read_file: checkrun.ReadFile | None = None,
) -> Outcome:
    """Post `results_dir/results.json` (already on disk) to GitHub: comment, status, label.

    The job summary, the annotations and the step outputs are written first and last, so that a
    failing GitHub call (a PublishError, exit 3) still leaves them. `client` is None to write only the local
    parts. `state_extra` adds keys to the comment's hidden state. `results` is read, never changed. `read_file`
    reads a file of the head commit (the check run's annotations point at the benchmark's line with it)."""
    environ = os.environ if environ is None else environ
    stdout = stdout or sys.stdout
    results = results if results is not None else Results.read(results_dir / "results.json")
    # An approval comes only from Bolt's own comment (the gate below) or a live command, never from the file:
    # results.json may come from an artifact that the pull request's code wrote. A copy, to render without it.
    results = dataclasses.replace(results, approval=None)
    outcome = Outcome()
    append_summary(environ, render.render_summary(results, settings.template_dir))
    annotate(results, stdout)
    try:
        if client is not None:
            _publish_to_github(results, client, pr_number, settings, outcome, run_url, state_extra, now, read_file)
    finally:
        write_outputs(environ, {
            "verdict": results.verdict,
            "regressions": str(len(results.regressions)),
            "comment-url": outcome.comment_url,
            "results-dir": results_dir_output if results_dir_output is not None else str(results_dir),
        })
    for text in outcome.notices:
        notice(text, stdout)
    return outcome


def _publish_to_github(results: Results, client: Client, pr_number: int | None, settings: Settings, outcome: Outcome,
                       run_url: str | None, state_extra: dict[str, Any] | None,
                       now: Callable[[], datetime], read_file: checkrun.ReadFile | None = None) -> None:
    head_sha = results.head.sha
    if not head_sha:
        raise BoltError("results.json names no head commit: cannot publish it")
    gate = None  # without a comment there is no state to keep an approval in: no approval, no gate
    if pr_number is not None:
        if settings.comment == "never":
            outcome.comment = "skipped-never"
        else:
            gate = _write_comment(results, client, pr_number, settings, outcome, state_extra, now)
            if outcome.comment == "skipped-stale":
                if checkrun.wants_check(settings):
                    _close_stale_check_run(results, client, outcome)
                return
    outcome.approval = gate.in_force if gate is not None else None
    state, description = gates.status_for(results, gate, settings.perf_label)
    if checkrun.wants_status(settings):
        client.set_status(head_sha, state, description, target_url=run_url)
        outcome.status = state
    if checkrun.wants_check(settings):
        conclusion = checkrun.conclusion_for(state, results.verdict, approvable=gate is not None)
        summary = checkrun.summary_text(results, settings.template_dir)
        try:
            checkrun.complete(client, results, conclusion, description, summary, run_url,
                              checkrun.annotations(results, read_file))
        except ReadOnlyToken as exc:
            if outcome.comment in ("created", "updated") or outcome.status:
                # The token wrote the comment or the status: it is not read-only, it lacks `checks: write`.
                raise PublishError(str(exc)) from None
            raise
        outcome.check_run = conclusion
    if pr_number is not None and settings.regression_label:
        if results.verdict == REGRESSED and results.regressions:
            client.add_label(pr_number, settings.regression_label)
            outcome.label = "added"
        elif client.remove_label(pr_number, settings.regression_label):
            outcome.label = "removed"


def _close_stale_check_run(results: Results, client: Client, outcome: Outcome) -> None:
    """A check run this job started for a head the pull request has left must not stay in progress."""
    sha = str(results.head.sha)
    for run in client.own_check_runs(sha, checkrun.CHECK_NAME)[:1]:
        if run.status != "completed":
            title = f"not published: the pull request moved on from {sha[:7]}"
            client.update_check_run(run, status="completed", conclusion="neutral",
                                    output={"title": title, "summary": " ".join(outcome.notices) or title})
            outcome.check_run = "neutral"


def _gate(results: Results, client: Client, pr_number: int, settings: Settings, old_state: dict[str, Any] | None,
          labels: list[str]) -> gates.Gate:
    """The approval gate for these results: the permission of the stored approval's approver is asked of the API
    every time (the state says who approved, never that they still may)."""
    stored = gates.stored_approval(old_state)
    role = client.role(str(stored["user"])) if stored else None
    gate = gates.decide(results, old_state, perf=settings.perf_label in labels, approver_role=role,
                        approvers=settings.approvers, threshold=settings.threshold,
                        instr_threshold=settings.instr_threshold)
    if gate.note and settings.approval_label in labels:
        # The label means "approved": it must not outlive the approval it stood for.
        client.remove_label(pr_number, settings.approval_label)
    return gate


def _write_comment(results: Results, client: Client, pr_number: int, settings: Settings, outcome: Outcome,
                   state_extra: dict[str, Any] | None, now: Callable[[], datetime]) -> gates.Gate | None:
    """Write the sticky comment (read, check the head, write, read again); returns the approval gate."""
    head_sha = results.head.sha
    gate = None
    for attempt in range(WRITE_ATTEMPTS):
        existing = client.find_comment(pr_number)
        old_state = read_state(existing.body or "") if existing is not None else None
        # Runs can finish out of order: only the PR's current head may speak, whether or not a newer run
        # has commented yet (under on-change it may have stayed quiet).
        pull = client.pull(pr_number)
        current = pull.head.sha
        if current != head_sha:
            if attempt == 0:
                outcome.comment = "skipped-stale"
                reported = f" and its comment reports {str(old_state.get('head_sha'))[:7]}" if old_state else ""
                outcome.notices.append(f"not publishing: these results are for {head_sha[:7]}, but pull request "
                                       f"#{pr_number} is now at {str(current)[:7]}{reported}")
            return gate  # moved on while this run wrote: the newer head's run writes next
        # Keep the stored approval only if its approver still may approve and this measurement is no worse.
        gate = _gate(results, client, pr_number, settings, old_state, [label.name for label in pull.labels])
        if existing is None and settings.comment == "on-change" and results.verdict in QUIET_VERDICTS \
                and not gate.needed:
            outcome.comment = "skipped-quiet"
            return gate
        state = _state(results, old_state, {**gates.state_keys(gate, results), **(state_extra or {})}, now)
        body = messages.with_block(comment_body(results, settings.template_dir, state), state, settings, gate.needed)
        if existing is None:
            comment = _converge(client, pr_number, client.create_comment(pr_number, body), body)
            outcome.comment = "created"
        else:
            comment = client.edit_comment(existing, body) if existing.body != body else existing
            outcome.comment = "updated"
        outcome.comment_url = comment.html_url or ""
        # Read it back: a command that read the comment before this write (an approval of an older head) may
        # have written its older report over this one since. Then the report is written again, with what
        # that write stored (its approval counts if it holds for this head).
        there = client.find_comment(pr_number)
        reported = (read_state(there.body or "") or {}).get("head_sha") if there is not None else None
        if there is not None and reported == head_sha:
            return gate
        outcome.notices.append(f"#{pr_number}: Bolt's comment reported {str(reported)[:7] or 'nothing'} right after "
                               f"this run wrote its report for {head_sha[:7]}; writing it again")
    raise PublishError(f"Bolt's comment on #{pr_number} kept changing under this run ({WRITE_ATTEMPTS} writes); "
                       "run the job again")


def _converge(client: Client, number: int, mine: Any, body: str) -> Any:
    """Two runs that both found no comment have both created one: keep the oldest of Bolt's own, carrying
    the newest report, and delete the others. Every run but the one that made the oldest sees it, so one is left."""
    own = client.own_comments(number)
    if len(own) <= 1:
        return own[0] if own else mine
    keep = own[0]
    if keep.id != mine.id and keep.body != body:
        theirs, ours = read_state(keep.body or "") or {}, read_state(body) or {}
        # This run read the PR's head just now; an equal run_at (same second) is as new.
        if str(theirs.get("run_at") or "") <= str(ours.get("run_at") or ""):
            keep = client.edit_comment(keep, body)
    for extra in own[1:]:
        client.delete_comment(extra)
    return keep


def _state(results: Results, old: dict[str, Any] | None, extra: dict[str, Any] | None,
           now: Callable[[], datetime]) -> dict[str, Any]:
    """The comment's hidden state: what this run reported, plus what others keep there (approvals)."""
    state = {k: v for k, v in (old or {}).items() if k not in OWN_STATE_KEYS}
    state.update({
        "v": STATE_VERSION,
        "head_sha": results.head.sha,
        "base_sha": results.base.sha,
        "run_at": now().isoformat(timespec="seconds"),
        "verdict": results.verdict,
        "regressions": sorted(state_name(s.name) for s in results.regressions)[: STATE_STAGES_LIMIT],
    })
    state.update(extra or {})
    return state


def comment_body(results: Results, template_dir: str | None, state: dict[str, Any]) -> str:
    """The rendered comment, with the marker and the state even when a custom template leaves them out."""
    body = render.render_comment(results, template_dir, state=state)
    header = ""
    if MARKER not in body:
        header += MARKER + "\n"
    if read_state(body) is None:
        header += state_comment(state) + "\n"
    if not header:
        return body
    body = render.render_limited("comment.md.j2", results, limit=COMMENT_LIMIT - len(header),
                                 template_dir=template_dir, state=state)
    return header + body


def settings_from_results(results: Results, overrides: dict[str, Any] | None = None) -> Settings:
    """The settings a local results directory was measured with (yours: trusted), plus overrides."""
    known = {f.name for f in dataclasses.fields(Settings)}
    recorded = {k: v for k, v in (results.settings or {}).items() if k in known}
    return Settings().updated(recorded, "results.json settings").updated(overrides or {}, "options")
