"""`bolt action`: read the GitHub Actions environment and event into one config, pick an activity, run it."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bolt_bot.errors import EXIT_OK, EXIT_REGRESSION, BoltError
from bolt_bot.model import FAILED, Results
from bolt_bot.measure.sandbox import forbidden
from bolt_bot.settings import Settings

DEFAULT_RESULTS_DIR = "bolt-results"
# An artifact from an unprivileged run is untrusted: no file in it may be larger than this.
MAX_ARTIFACT_FILE = 8 * 1024 * 1024
MAX_PR_JSON = 64 * 1024
# Inputs that steer the action itself rather than the measurement settings.
ACTION_INPUTS = ("github-token", "base", "mode", "results-dir", "ref", "filter", "bot-login")
MODES = ("measure", "label", "publish", "profile", "command")
PR_MEASURE_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")
SHA = re.compile(r"^[0-9a-f]{40}$")
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
        return {name: value for name, value in self.inputs.items()
                if name not in ACTION_INPUTS and name.replace("-", "_") in known}

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


def project_settings(config: ActionConfig, base: str | None = None) -> Settings:
    """Defaults < [tool.bolt] < the inputs. The table is the base commit's (`base`, else the event's pull request
    base) when the checkout holds it, so that a pull request cannot choose its own approvers, labels or install
    command; else the workspace's pyproject.toml (the default branch, for comments and workflow_run)."""
    from bolt_bot.measure.gitrepo import file_at, try_resolve
    from bolt_bot.settings import load_settings, read_project_settings_text

    pr = config.event.get("pull_request") if isinstance(config.event.get("pull_request"), dict) else {}
    base = base or str((pr.get("base") or {}).get("sha") or "") or None
    sha = try_resolve(config.workspace, base) if base and (config.workspace / ".git").exists() else None
    if sha:
        source = f"{sha[:7]}:pyproject.toml"
        table = read_project_settings_text(file_at(config.workspace, sha, "pyproject.toml"), source)
        return Settings().updated(table, f"{source} [tool.bolt]").updated(config.overrides, "inputs")
    project = config.workspace if (config.workspace / "pyproject.toml").is_file() else None
    return load_settings(project, config.overrides)


def choose_activity(config: ActionConfig) -> tuple[str, str]:
    """(activity, why): measure | publish | profile | command | ignore | refuse."""
    name = config.event_name
    settings = project_settings(config)  # the labels as [tool.bolt] names them, in every mode
    perf_label, approval_label = settings.perf_label, settings.approval_label
    if config.mode == "publish":
        return "publish", "mode: publish"
    if config.mode == "profile":
        return "profile", "mode: profile"
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


# ---------------------------------------------------------------------------------------------------------
# what is passed in: GitHub, measurement, output


@dataclass
class MeasureRequest:
    """What the measure step is asked: compare `head` against the merge-base of `base` and `head`."""

    repo: Path
    base: str | None
    head: str
    overrides: dict[str, Any]
    out: Path
    base_label: str | None = None  # e.g. the PR's base branch, for the comment
    head_label: str | None = None


def measure_with_runner(request: MeasureRequest) -> tuple[Results, Settings]:
    """The real measurement: the merge-base of the PR's base and head, then `bolt run`'s plan and execute."""
    from bolt_bot.measure import gitrepo
    from bolt_bot.progress import Progress
    from bolt_bot.pipeline import execute, make_plan

    repo = gitrepo.toplevel(request.repo)
    head_sha = gitrepo.resolve(repo, request.head)  # fetches it when the checkout is shallow
    base = base_sha = None
    if request.base:
        base_sha = gitrepo.resolve(repo, request.base)
        base = gitrepo.merge_base(repo, base_sha, head_sha)
    plan = make_plan(repo, base, head_sha, request.overrides)
    if request.base_label:
        plan.base.ref = request.base_label if base == base_sha else f"merge-base with {request.base_label}"
    if request.head_label:
        plan.head.ref = request.head_label
    return execute(plan, request.out, Progress()), plan.settings


Measure = Callable[[MeasureRequest], "tuple[Results, Settings]"]


def default_client_factory(config: ActionConfig):
    from bolt_bot.github.client import Client, ClientOptions

    client = Client(config.token, config.repository, ClientOptions.from_env(config.environ))
    # A GitHub App's installation token writes as "<slug>[bot]" and may not ask GET /user: the input says.
    client.bot_login = config.input("bot-login")
    return client


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


@dataclass
class Runtime:
    """What `run_action` is given, so that tests can replace each part."""

    measure: Measure = measure_with_runner
    client_factory: Callable[[ActionConfig], Any] = default_client_factory
    environ: MutableMapping[str, str] | None = None  # for safe.directory; os.environ when None
    stdout: TextIO | None = None
    stderr: TextIO | None = None


def run_action(config: ActionConfig, runtime: Runtime | None = None) -> int:
    """Run the activity the event asks for; returns the exit code (errors raise BoltError/PublishError)."""
    runtime = runtime or Runtime()
    out = runtime.stdout or sys.stdout
    # Before any git call (settings are read from the base commit): the container runs as root in the
    # runner's workspace.
    configure_safe_directory(config.workspace, runtime.environ if runtime.environ is not None else os.environ)
    activity, why = choose_activity(config)
    print(f"bolt: {activity} ({why})", file=runtime.stderr or sys.stderr)
    if activity == "measure":
        return _measure_activity(config, runtime)
    if activity == "publish":
        return _publish_activity(config, runtime)
    if activity == "profile":
        return _profile_activity(config, runtime)
    if activity == "command":
        return _command_activity(config, runtime)
    if activity == "refuse":
        raise BoltError(why)
    print(f"::notice title=Bolt::nothing to do for {_one_line(why)}", file=out)
    return EXIT_OK


def _one_line(text: str) -> str:
    from bolt_bot.github.publish import escape_data

    return escape_data(" ".join(str(text).split()))


def _exit_code(results: Results, settings: Settings) -> int:
    """1 for a failed measurement or a regression nobody approved (results.approval is set only by publish,
    from Bolt's own comment), when asked to fail on one."""
    if not settings.fail_on_regression:
        return EXIT_OK
    if results.verdict == FAILED or (results.regressions and not results.approval):
        return EXIT_REGRESSION
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------------
# measure (pull_request, push)


def _measure_activity(config: ActionConfig, runtime: Runtime) -> int:
    from bolt_bot.github import publish as pub
    from bolt_bot.github.client import ReadOnlyToken

    event = config.event
    environ = runtime.environ if runtime.environ is not None else os.environ
    configure_safe_directory(config.workspace, environ)
    pr = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    number: int | None = None
    fork = False
    if pr is not None:
        number = int(event.get("number") or pr.get("number"))
        head, base = pr["head"]["sha"], config.input("base") or pr["base"]["sha"]
        head_label, base_label = pr["head"].get("ref"), pr["base"].get("ref")
        head_repo = ((pr["head"].get("repo") or {}).get("full_name"))
        fork = head_repo != ((pr["base"].get("repo") or {}).get("full_name") or config.repository)
        if fork:
            # Decided before any of the fork's code runs: no client is made and no token is kept for it. The
            # measured processes start from an allow-list anyway (bolt_bot.measure.sandbox); this is one more wall.
            config = dataclasses.replace(config, token="")
            for name in [name for name in environ if forbidden(name)]:
                del environ[name]
    else:
        head = str(event.get("after") or config.environ.get("GITHUB_SHA") or "HEAD")
        before = str(event.get("before") or "")
        base = config.input("base") or (before if before.strip("0") else None)
        head_label, base_label = config.environ.get("GITHUB_REF_NAME"), None
    out = config.results_dir
    results, settings = runtime.measure(MeasureRequest(config.workspace, base, head, config.overrides, out,
                                                       base_label=base_label, head_label=head_label))
    results.pull_request = number
    results.repository = config.repository
    results.write(out / "results.json")
    if number is not None:
        # For a second, privileged workflow (fork PRs): which PR and commit these results belong to.
        (out / "pr.json").write_text(json.dumps({"number": number, "head_sha": results.head.sha,
                                                 "repository": config.repository}) + "\n", encoding="utf-8")
    common = {"results": results, "environ": config.environ, "run_url": config.run_url,
              "results_dir_output": config.results_dir_input, "stdout": runtime.stdout}
    if fork or not config.token:
        reason = "the pull request comes from a fork" if fork else "no token was given"
        pub.publish(out, None, config.repository, number, settings, **common)
        _artifact_instructions(config, reason, runtime)
        return EXIT_OK
    client = runtime.client_factory(config)
    try:
        pub.publish(out, client, config.repository, number, settings, **common)
    except ReadOnlyToken as exc:
        _artifact_instructions(config, str(exc), runtime)
        return EXIT_OK
    return _exit_code(results, settings)


def _artifact_instructions(config: ActionConfig, reason: str, runtime: Runtime) -> None:
    from bolt_bot.github.publish import append_summary, escape_data

    text = (f"Bolt measured this pull request but cannot publish from here ({reason}). "
            f"The results are in {config.results_dir_input}/. To post them, upload that directory with "
            "actions/upload-artifact and add a workflow_run workflow that downloads it and runs Bolt with "
            "`mode: publish` (the two-workflow setup in Bolt's README); it never runs the pull request's code.")
    print(f"::notice title=Bolt: results kept for a second workflow::{escape_data(text)}", file=runtime.stdout or sys.stdout)
    append_summary(config.environ, f"\n> [!NOTE]\n> {text}\n")


# ---------------------------------------------------------------------------------------------------------
# publish (workflow_run): an artifact from an unprivileged run, validated without running any of its code


def _refuse(reason: str) -> BoltError:
    return BoltError(f"refusing to publish the artifact: {reason}")


def _read_small(path: Path, limit: int) -> str:
    size = path.lstat().st_size
    if size > limit:
        raise _refuse(f"{path.name} is {size} bytes (at most {limit} allowed)")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise _refuse(f"{path.name} grew beyond {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(f"{path.name} is not UTF-8 text") from None


def validate_artifact(folder: Path, max_file: int = MAX_ARTIFACT_FILE) -> tuple[Results, dict[str, Any]]:
    """results.json and pr.json of a downloaded results directory, refusing symlinks, escapes and big files."""
    if folder.is_symlink():
        raise _refuse(f"{folder.name} is a symbolic link")
    if not folder.is_dir():
        raise _refuse(f"{folder} does not exist (did actions/download-artifact run with this path?)")
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(folder)
            if path.is_symlink():
                raise _refuse(f"{rel} is a symbolic link (to {os.readlink(path)!r})")
            if not path.resolve().is_relative_to(root):
                raise _refuse(f"{rel} lies outside the results directory")
            if path.is_file() and path.lstat().st_size > max_file:
                raise _refuse(f"{rel} is {path.lstat().st_size} bytes (at most {max_file} allowed)")
    for required in ("results.json", "pr.json"):
        if not (folder / required).is_file():
            raise _refuse(f"{required} is missing from {folder.name}/")
    _read_small(folder / "results.json", max_file)  # refuses a file that grew past the limit
    try:
        # The same reader as everywhere: it refuses NaN, deep nesting and every malformed field in one line.
        results = Results.read(folder / "results.json")
    except BoltError as exc:
        raise _refuse(str(exc)) from None
    try:
        pr_info = json.loads(_read_small(folder / "pr.json", MAX_PR_JSON))
    except (ValueError, RecursionError) as exc:
        raise _refuse(f"pr.json is not valid JSON ({' '.join(str(exc).split())[:120]})") from None
    number = pr_info.get("number") if isinstance(pr_info, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise _refuse(f"pr.json holds no valid pull request number ({number!r})")
    if not SHA.match(str(pr_info.get("head_sha") or "")):
        raise _refuse("pr.json holds no valid head_sha")
    if not SHA.match(str(results.head.sha or "")):
        raise _refuse("results.json holds no valid head sha")
    return results, pr_info


def _publish_activity(config: ActionConfig, runtime: Runtime) -> int:
    from bolt_bot.github import publish as pub
    from bolt_bot.errors import PublishError

    folder = config.results_dir
    results, pr_info = validate_artifact(folder)
    number = pr_info["number"]
    if pr_info.get("repository") not in (None, config.repository):
        raise _refuse(f"pr.json names repository {pr_info.get('repository')!r}, not {config.repository}")
    run = config.event.get("workflow_run") if isinstance(config.event.get("workflow_run"), dict) else None
    run_head = str(run.get("head_sha") or "") if run else None
    if run is not None:
        listed = [p.get("number") for p in run.get("pull_requests") or [] if isinstance(p, dict)]
        if listed and number not in listed:
            raise _refuse(f"pr.json names #{number}, but the workflow run belongs to {', '.join(f'#{n}' for n in listed)}")
    client = runtime.client_factory(config)
    try:
        actual = client.head_sha(number)
    except PublishError as exc:
        if "404" in str(exc):
            raise _refuse(f"pull request #{number} does not exist in {config.repository}") from None
        raise
    if run_head is not None and actual != run_head:
        raise _refuse(f"pull request #{number} is at {actual[:7]}, but the workflow run measured {run_head[:7]}")
    if results.head.sha != actual or pr_info["head_sha"] != actual:
        raise _refuse(f"the results are for {str(results.head.sha)[:7]} (pr.json: {pr_info['head_sha'][:7]}), "
                      f"but pull request #{number} is at {actual[:7]}")
    # Settings come from this (trusted) workflow and workspace, never from the artifact.
    settings = project_settings(config)
    results.pull_request, results.repository = number, config.repository
    pub.publish(folder, client, config.repository, number, settings, results=results, environ=config.environ,
                run_url=config.run_url, results_dir_output=config.results_dir_input, stdout=runtime.stdout)
    return _exit_code(results, settings)


# ---------------------------------------------------------------------------------------------------------
# profile (workflow_dispatch) and commands (approvals)


def _optional_module(name: str):
    """Another part of Bolt that may not be in this version yet: the module, or None."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def _profile_activity(config: ActionConfig, runtime: Runtime) -> int:
    from bolt_bot.github.publish import append_summary, write_outputs

    report = _optional_module("bolt_bot.profiling.fullreport")
    profile_report = getattr(report, "profile_report", None)
    if profile_report is None:
        raise BoltError("the full profile (workflow_dispatch) is not available in this version of Bolt "
                        "(bolt_bot.profiling.fullreport.profile_report is missing)")
    inputs = config.event.get("inputs") if isinstance(config.event.get("inputs"), dict) else {}
    ref = config.input("ref") or str(inputs.get("ref") or "") or config.environ.get("GITHUB_SHA") or "HEAD"
    filter_ = config.input("filter") or str(inputs.get("filter") or "") or None
    environ = runtime.environ if runtime.environ is not None else os.environ
    configure_safe_directory(config.workspace, environ)
    profile_report(config.workspace, ref, filter_, config.results_dir)
    report_md = config.results_dir / "report.md"
    if report_md.is_file():
        append_summary(config.environ, report_md.read_text(encoding="utf-8"))
    write_outputs(config.environ, {"results-dir": config.results_dir_input})
    return EXIT_OK


def _command_activity(config: ActionConfig, runtime: Runtime) -> int:
    approval = _optional_module("bolt_bot.github.approval")
    handle = getattr(approval, "handle", None)
    if handle is None:
        print(f"::notice title=Bolt::{_one_line(config.event_name)} acknowledged: approvals are not available "
              "in this version of Bolt; nothing to do", file=runtime.stdout or sys.stdout)
        return EXIT_OK
    # approval.handle(config, client_factory) -> exit code (None means 0)
    code = handle(config, lambda: runtime.client_factory(config), rerun=lambda again: _measure_activity(again, runtime))
    return EXIT_OK if code is None else int(code)
