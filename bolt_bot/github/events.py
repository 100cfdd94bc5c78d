"""What `bolt action` is asked: the environment and event read once, and the one dispatcher (activity or command)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from bolt_bot.errors import BoltError
from bolt_bot.measure.gitrepo import file_at, try_resolve
from bolt_bot.settings import Settings, load_settings, settings_from_pyproject

DEFAULT_RESULTS_DIR = "bolt-results"
# Inputs that steer the action itself rather than the measurement settings.
ACTION_INPUTS = ("github-token", "base", "mode", "results-dir", "ref", "filter", "bot-login", "shard", "durations",
                 "merge-from")
# Inputs named as the ecosystem names them, for a setting of another name: actions/setup-python's `python-version`
# is Bolt's `python` (the old input name, deprecated, still read when `python-version` is not given).
INPUT_ALIASES = {"python-version": "python"}
MODES = ("measure", "label", "publish", "profile", "command", "merge")
PR_MEASURE_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")
# A command is a line of its own that starts with /bolt; Bolt's replies quote commands in backticks,
# so a reply can never be read as a command.
COMMAND_LINE = re.compile(r"^[ \t]*/bolt(?:[ \t]+(?P<name>\S+))?[ \t]*(?P<args>[^\r\n]*)$", re.MULTILINE | re.IGNORECASE)
COMMANDS = ("approve", "run", "profile", "help")
PR_TARGET_REFUSAL = ("pull_request_target runs with a write token and secrets: Bolt never measures a pull request's "
                     "code there; measure on pull_request and publish with a workflow_run workflow (see docs/action.md)")


@dataclass
class ActionConfig:
    """Everything `bolt action` reads from its environment, typed, read once."""

    event_name: str
    event: dict[str, Any]
    repository: str
    workspace: Path
    token: str
    inputs: dict[str, str]  # the inputs given (non-empty), by their kebab-case names
    results_dir: Path
    results_dir_input: str  # as given, relative to the workspace: the `results-dir` output
    environ: Mapping[str, str] = field(default_factory=dict)

    def input(self, name: str, default: str | None = None) -> str | None:
        return self.inputs.get(name, default)

    @property
    def mode(self) -> str:
        return (self.input("mode") or "").strip().lower()

    @property
    def overrides(self) -> dict[str, Any]:
        """Inputs that are settings (`fail-on-regression` -> fail_on_regression); the rest is the action's own."""
        known = {f.name for f in dataclasses.fields(Settings)}
        settings = {name: value for name, value in self.inputs.items()
                    if name not in ACTION_INPUTS and name.replace("-", "_") in known}
        for alias, name in INPUT_ALIASES.items():
            if alias in self.inputs:
                settings[name] = self.inputs[alias]
        return settings

    @property
    def run_url(self) -> str | None:
        server, run_id = self.environ.get("GITHUB_SERVER_URL"), self.environ.get("GITHUB_RUN_ID")
        return f"{server.rstrip('/')}/{self.repository}/actions/runs/{run_id}" if server and run_id else None


def read_config(environ: Mapping[str, str]) -> ActionConfig:
    """The runner's variables: GITHUB_*, and inputs as INPUT_<NAME> with hyphens kept (`INPUT_GITHUB-TOKEN`)."""
    inputs: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("INPUT_") and value.strip() != "":
            # The runner keeps hyphens; other runners (act) turn them into underscores: accept both.
            inputs[key[len("INPUT_"):].lower().replace("_", "-")] = value
    event_name = environ.get("GITHUB_EVENT_NAME", "").strip()
    if not event_name and not inputs.get("mode"):
        raise BoltError("GITHUB_EVENT_NAME is not set: `bolt action` runs inside GitHub Actions "
                        "(use bolt run / bolt publish elsewhere)")
    event: dict[str, Any] = {}
    event_path = environ.get("GITHUB_EVENT_PATH", "").strip()
    if event_path:
        try:
            event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise BoltError(f"cannot read the event payload {event_path}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BoltError(f"the event payload {event_path} is not valid JSON: {exc}") from None
        if not isinstance(event, dict):
            raise BoltError(f"the event payload {event_path} is not a JSON object")
    repository = environ.get("GITHUB_REPOSITORY", "").strip() or str(
        (event.get("repository") or {}).get("full_name") or "")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise BoltError(f"GITHUB_REPOSITORY is {repository!r}, expected OWNER/NAME")
    workspace = Path(environ.get("GITHUB_WORKSPACE", "").strip() or os.getcwd())
    results_input = inputs.get("results-dir", DEFAULT_RESULTS_DIR)
    results_dir = Path(results_input) if Path(results_input).is_absolute() else workspace / results_input
    token = inputs.get("github-token") or environ.get("GITHUB_TOKEN", "")
    config = ActionConfig(event_name=event_name, event=event, repository=repository, workspace=workspace,
                          token=token.strip(), inputs=inputs, results_dir=results_dir,
                          results_dir_input=results_input, environ=environ)
    if config.mode and config.mode not in MODES:
        raise BoltError(f"input mode must be one of {', '.join(MODES)} or empty, not {config.mode!r}")
    return config


# ---------------------------------------------------------------------------------------------------------
# choosing the activity


class Choice(NamedTuple):
    """What `bolt action` does for this event, why, and for a command what it asks."""

    activity: str  # measure | merge | publish | profile | command | ignore | refuse
    why: str
    request: Request | None = None


def project_settings(config: ActionConfig, base: str | None = None) -> Settings:
    """Defaults < [tool.bolt] < the inputs. The table is the base commit's (`base`, else the event's pull request
    base) when the checkout holds it, so that a pull request cannot choose its own approvers, labels or install
    command; else the workspace's pyproject.toml (the default branch, for comments and workflow_run)."""
    pr = config.event.get("pull_request") if isinstance(config.event.get("pull_request"), dict) else {}
    base = base or str((pr.get("base") or {}).get("sha") or "") or None
    sha = try_resolve(config.workspace, base) if base and (config.workspace / ".git").exists() else None
    if sha:
        return settings_from_pyproject(file_at(config.workspace, sha, "pyproject.toml"), f"{sha[:7]}:pyproject.toml",
                                       config.overrides, "inputs")
    project = config.workspace if (config.workspace / "pyproject.toml").is_file() else None
    return load_settings(project, config.overrides)


def choose_activity(config: ActionConfig, settings: Settings) -> tuple[str, str]:
    """(activity, why): measure | merge | publish | profile | command | ignore | refuse, from the event and mode."""
    name = config.event_name
    perf_label, approval_label = settings.perf_label, settings.approval_label  # as [tool.bolt] names them
    if config.mode == "publish":
        return "publish", "mode: publish"
    if config.mode == "profile":
        return "profile", "mode: profile"
    if config.mode == "merge":
        return "merge", "mode: merge"
    if config.mode == "command":
        return "command", "mode: command"
    if name in ("pull_request", "pull_request_target") and config.mode in ("", "measure", "label"):
        activity, why = _pull_request_activity(config, perf_label, approval_label)
        if name == "pull_request_target" and activity == "measure":
            return "refuse", PR_TARGET_REFUSAL  # the event's token may write: the PR's code never runs with it
        return activity, why
    if name == "push" or config.mode == "measure":
        return "measure", name or "mode: measure"
    if name == "workflow_run":
        return "publish", "workflow_run"
    if name == "workflow_dispatch":
        return "profile", "workflow_dispatch"
    if name in ("issue_comment", "pull_request_review"):
        return "command", name
    return "ignore", f"event {name!r}"


def dispatch(config: ActionConfig, settings: Settings) -> Choice:
    """The one dispatcher: the activity, and for a command what it asks (a `/bolt` comment, an approval label
    added or removed, an approving review); a command event that asks nothing is ignored here."""
    activity, why = choose_activity(config, settings)
    if activity != "command":
        return Choice(activity, why)
    request, reason = request_from_event(config.event_name, config.event, settings)
    if request is None:
        return Choice("ignore", reason)
    return Choice("command", why, request)


def _pull_request_activity(config: ActionConfig, perf_label: str, approval_label: str) -> tuple[str, str]:
    event = config.event
    action = event.get("action")
    label = str((event.get("label") or {}).get("name") or "")
    if action in ("labeled", "unlabeled") and label == approval_label:
        return "command", f"pull_request {action} {label!r}"
    if config.mode == "label":
        labels = [str(lb.get("name")) for lb in (event.get("pull_request") or {}).get("labels") or []]
        if perf_label not in labels:
            return "ignore", f"the pull request has no {perf_label!r} label (mode: label)"
        if action in PR_MEASURE_ACTIONS or (action == "labeled" and label == perf_label):
            return "measure", f"pull_request {action} with the {perf_label!r} label"
        return "ignore", f"pull_request {action}"
    if action in PR_MEASURE_ACTIONS or (action == "labeled" and label == perf_label):
        return "measure", f"pull_request {action}"
    return "ignore", f"pull_request {action}" + (f" {label!r}" if label else "")


def configure_safe_directory(workspace: Path, environ: MutableMapping[str, str]) -> None:
    """The workspace belongs to the runner's user, the container runs as root: tell git to trust it.

    Through GIT_CONFIG_COUNT/KEY/VALUE, so every git Bolt and its children run sees it, without
    touching a config file."""
    try:
        count = int(environ.get("GIT_CONFIG_COUNT", "0") or 0)
    except ValueError:
        count = 0
    for i in range(count):
        if environ.get(f"GIT_CONFIG_KEY_{i}") == "safe.directory" and \
                environ.get(f"GIT_CONFIG_VALUE_{i}") in (str(workspace), "*"):
            return
    environ[f"GIT_CONFIG_KEY_{count}"] = "safe.directory"
    # "*": the worktrees Bolt makes for base and head live elsewhere and belong to the same user.
    environ[f"GIT_CONFIG_VALUE_{count}"] = "*"
    environ["GIT_CONFIG_COUNT"] = str(count + 1)


# ---------------------------------------------------------------------------------------------------------
# events -> command requests


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
    """(what the event asks, or None; why nothing)."""
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
        return Request(kind=kind, number=_number(issue.get("number")), user=str(user.get("login")), via="comment",
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
        return Request(kind=kind, number=_number(event.get("number") or pr.get("number")), user=str(sender.get("login")),
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
        return Request(kind="approve", number=_number(pr.get("number")), user=str(user.get("login")), via="review",
                       reason=reason, url=review.get("html_url"), labels=_label_names(pr.get("labels"))), "review"
    return None, f"event {event_name} {action or ''}".strip()


def _number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BoltError(f"the event names no valid pull request number ({str(value)[:40]!r})")
    return value


def _label_names(labels: Any) -> list[str] | None:
    if not isinstance(labels, list):
        return None
    return [str(lb.get("name")) for lb in labels if isinstance(lb, dict)]


def optional_module(name: str) -> ModuleType | None:
    """A part of Bolt that an installation may lack (the profile report needs extra tools): the module, or None."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the module is there but one of its own imports is missing: a real error
            raise
        return None
