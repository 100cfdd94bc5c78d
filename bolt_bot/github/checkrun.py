"""The check run `Bolt`: in_progress while measuring, completed with the verdict, the summary and annotations."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bolt_bot.decide.gate import regression_text
from bolt_bot.github.client import Client
from bolt_bot.model import FAILED, INCONCLUSIVE, Results
from bolt_bot.report.render import render_limited
from bolt_bot.settings import Settings

CHECK_NAME = "Bolt"
OUTPUT_LIMIT = 65535  # output.summary and output.text, in characters (GitHub's Checks API)
ANNOTATIONS_PER_REQUEST = 50  # GitHub's bound per create/update; more are appended by further updates
MAX_ANNOTATIONS = 250  # the worst regressions; the rest are in the summary (5 requests at most)
TITLE_LIMIT = 200

# How the gate's commit-status state reads as a check run's conclusion (docs/action.md, "Check run"):
#   success -> success (neutral when the run was inconclusive: nothing could be told)
#   failure (a regression without an approval) -> action_required where a maintainer can approve it (a
#           sticky comment keeps approvals), failure where nothing can (comment: never, pushes)
#   pending (a perf-labelled change waiting for an approval) -> action_required
#   error (the measurement failed) -> failure
ReadFile = Callable[[str], "str | None"]


def wants_status(settings: Settings) -> bool:
    return settings.report in ("status", "both")


def wants_check(settings: Settings) -> bool:
    return settings.report in ("check", "both")


def conclusion_for(state: str, verdict: str, approvable: bool) -> str:
    if state == "success":
        return "neutral" if verdict == INCONCLUSIVE else "success"
    if state == "pending":
        return "action_required"
    if state == "failure" and verdict != FAILED:
        return "action_required" if approvable else "failure"
    return "failure"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def start(client: Client, sha: str, details_url: str | None, what: str = "measuring base and head") -> Any:
    """A new check run, in_progress, when measuring starts (each attempt of a job makes its own)."""
    fields: dict[str, Any] = {"status": "in_progress", "started_at": _now(),
                              "output": {"title": f"Bolt is {what}", "summary": f"Bolt is {what} of {sha[:7]}."}}
    if details_url:
        fields["details_url"] = details_url
    return client.create_check_run(sha, CHECK_NAME, **fields)


def summary_text(results: Results, template_dir: str | None) -> str:
    """The job summary, rendered to fit a check run's output (regressions kept longest)."""
    return render_limited("summary.md.j2", results, limit=OUTPUT_LIMIT, template_dir=template_dir)


def stage_line(text: str | None, name: str) -> int:
    """The line of the test function a pytest node id names (`path::Class::test[param]`), or 1."""
    if not text:
        return 1
    function = name.split("::")[-1].split("[", 1)[0]
    found = re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(function)}[ \t]*\(", text, re.MULTILINE)
    return text.count("\n", 0, found.start()) + 1 if found else 1


def annotations(results: Results, read_file: ReadFile | None = None) -> list[dict[str, Any]]:
    """One warning per regressed stage on its benchmark file (worst first), at the test's line when the
    file can be read at the head commit; stages without a file in their name are left to the summary."""
    out: list[dict[str, Any]] = []
    texts: dict[str, str | None] = {}
    for stage in sorted(results.regressions, key=lambda s: -(s.ratio or 1.0)):
        path = stage.name.split("::", 1)[0]
        if "::" not in stage.name or not path.endswith(".py") or path.startswith("/") or ".." in path.split("/"):
            continue
        if path not in texts:
            texts[path] = read_file(path) if read_file is not None else None
        line = stage_line(texts[path], stage.name)
        title, message = regression_text(stage)
        out.append({"path": path, "start_line": line, "end_line": line, "annotation_level": "warning",
                    "title": title, "message": message[:4000]})
        if len(out) == MAX_ANNOTATIONS:
            break
    return out


def complete(client: Client, results: Results, conclusion: str, title: str, summary: str,
             details_url: str | None = None, notes: list[dict[str, Any]] | None = None) -> Any:
    """Complete Bolt's check run on the head commit (the newest one its App wrote, else a new one), sending
    the annotations 50 at a time while it is in progress and the conclusion with the last batch."""
    sha = str(results.head.sha)
    notes = notes or []
    batches = [notes[i:i + ANNOTATIONS_PER_REQUEST] for i in range(0, len(notes), ANNOTATIONS_PER_REQUEST)] or [[]]
    title = title[:TITLE_LIMIT]

    def output(batch: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"title": title, "summary": summary[:OUTPUT_LIMIT]}
        if batch:
            out["annotations"] = batch
        return out

    final: dict[str, Any] = {"status": "completed", "conclusion": conclusion, "completed_at": _now()}
    if details_url:
        final["details_url"] = details_url
    existing = client.own_check_runs(sha, CHECK_NAME)
    if existing:
        run = existing[0]
    elif len(batches) == 1:
        return client.create_check_run(sha, CHECK_NAME, output=output(batches[0]), **final)
    else:
        run = client.create_check_run(sha, CHECK_NAME, status="in_progress", output=output(batches.pop(0)),
                                      **({"details_url": details_url} if details_url else {}))
    for batch in batches[:-1]:
        client.update_check_run(run, output=output(batch))
    return client.update_check_run(run, output=output(batches[-1]), **final)


def reconclude(client: Client, sha: str, conclusion: str, title: str) -> Any | None:
    """After an approval (or its withdrawal): Bolt's newest check run on `sha` gets the new conclusion and title,
    keeping its summary; None when Bolt wrote none there."""
    existing = client.own_check_runs(sha, CHECK_NAME)
    if not existing:
        return None
    run = existing[0]
    summary = str(getattr(run.output, "summary", None) or title)
    return client.update_check_run(run, status="completed", conclusion=conclusion, completed_at=_now(),
                                   output={"title": title[:TITLE_LIMIT], "summary": summary[:OUTPUT_LIMIT]})


def fail_in_progress(client: Client, sha: str, reason: str) -> Any | None:
    """Bolt's check run on `sha`, when one is still in progress (a first shard started it), completed as failed
    with the one line that stopped the run: a merge that refuses its shards must not leave it running."""
    existing = client.own_check_runs(sha, CHECK_NAME)
    if not existing or existing[0].status == "completed":
        return None
    title = reason[:TITLE_LIMIT]
    return client.update_check_run(existing[0], status="completed", conclusion="failure", completed_at=_now(),
                                   output={"title": title, "summary": f"Bolt could not merge the shards: {reason}"})
