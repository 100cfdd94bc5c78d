"""`bolt action`: run the activity the event asks for (measure, publish, profile, a command); its exit code."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bolt_bot.errors import EXIT_OK, EXIT_REGRESSION, BoltError, PublishError
from bolt_bot.github import checkrun, commands, events
from bolt_bot.github.merging import merge_shards
from bolt_bot.github.artifact import SHA, refuse, validate_artifact
from bolt_bot.github.client import Client, ClientOptions, ReadOnlyToken
from bolt_bot.github.commands import PROFILE_MODULE
from bolt_bot.github.events import (
    ActionConfig,
    choose_activity,
    configure_safe_directory,
    dispatch,
    project_settings,
    read_config,
)
from bolt_bot.github.publish import publish
from bolt_bot.github.workflow import append_summary, escape_data, notice, write_outputs
from bolt_bot.measure import gitrepo
from bolt_bot.measure.sandbox import forbidden
from bolt_bot.measure.shard import ShardSpec, parse_shard, read_durations
from bolt_bot.model import FAILED, Results
from bolt_bot.pipeline import execute, make_plan
from bolt_bot.progress import Progress
from bolt_bot.settings import Settings
from bolt_bot.words import plural

# What callers and tests take from here: the config and the dispatcher live in events, re-exported.
__all__ = ["ActionConfig", "MeasureRequest", "Runtime", "choose_activity", "configure_safe_directory",
           "project_settings", "read_config", "run_action"]


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
    shard: ShardSpec | None = None  # the `shard` input: measure only this share of the stages
    durations: Path | None = None  # the `durations` input: expected seconds per stage, to balance the shards


def measure_with_runner(request: MeasureRequest) -> tuple[Results, Settings]:
    """The real measurement: the merge-base of the PR's base and head, then `bolt run`'s plan and execute."""
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
    durations = read_durations(request.durations, plan.settings.rounds) if request.durations else None
    return execute(plan, request.out, Progress(), shard=request.shard, durations=durations), plan.settings


Measure = Callable[[MeasureRequest], "tuple[Results, Settings]"]


def default_client_factory(config: ActionConfig) -> Client:
    client = Client(config.token, config.repository, ClientOptions.from_env(config.environ))
    # A GitHub App's installation token writes as "<slug>[bot]" and may not ask GET /user: the input says.
    client.bot_login = config.input("bot-login")
    return client


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
    # The one reading of the settings for this invocation: the base's [tool.bolt] (or the workspace's) and the
    # inputs. Only measuring reads the measured project's own, in its plan.
    settings = project_settings(config)
    activity, why, request = dispatch(config, settings)
    print(f"bolt: {activity} ({why})", file=runtime.stderr or sys.stderr)
    if activity == "measure":
        return _measure_activity(config, runtime)
    if activity == "publish":
        return _publish_activity(config, settings, runtime)
    if activity == "merge":
        return _merge_activity(config, settings, runtime)
    if activity == "profile":
        return _profile_activity(config, runtime)
    if activity == "command" and request is not None:
        return commands.handle(request, config, settings, runtime.client_factory(config), out=out,
                               rerun=lambda again: _measure_activity(again, runtime))
    if activity == "refuse":
        raise BoltError(why)
    notice(f"nothing to do for {why}", out)
    return EXIT_OK


def _exit_code(results: Results, settings: Settings, approval: Mapping[str, Any] | None) -> int:
    """1 for a failed measurement or a regression without an approval in force (publish's outcome, from Bolt's
    own comment), when asked to fail on one."""
    if not settings.fail_on_regression:
        return EXIT_OK
    if results.verdict == FAILED or (results.regressions and not approval):
        return EXIT_REGRESSION
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------------
# measure (pull_request, push)


@dataclass
class Target:
    """What the event asks to measure: the pull request (or push), its commits, and whether it is a fork's."""

    number: int | None
    head: str
    base: str | None
    head_label: str | None
    base_label: str | None
    fork: bool


def event_target(config: ActionConfig, environ: MutableMapping[str, str]) -> tuple[ActionConfig, Target]:
    """The event's target; for a fork's pull request the config comes back without its token, and every token
    variable is removed from Bolt's environment, before any of the fork's code runs."""
    event = config.event
    pr = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    if pr is None:
        before = str(event.get("before") or "")
        return config, Target(None, str(event.get("after") or config.environ.get("GITHUB_SHA") or "HEAD"),
                              config.input("base") or (before if before.strip("0") else None),
                              config.environ.get("GITHUB_REF_NAME"), None, False)
    head_repo = ((pr["head"].get("repo") or {}).get("full_name"))
    fork = head_repo != ((pr["base"].get("repo") or {}).get("full_name") or config.repository)
    if fork:
        # Decided before any of the fork's code runs: no client is made and no token is kept for it. The
        # measured processes start from an allow-list anyway (bolt_bot.measure.sandbox); this is one more wall.
        config = dataclasses.replace(config, token="")
        for name in [name for name in environ if forbidden(name)]:
            del environ[name]
    return config, Target(int(event.get("number") or pr.get("number")), pr["head"]["sha"],
                          config.input("base") or pr["base"]["sha"], pr["head"].get("ref"), pr["base"].get("ref"), fork)


def _measure_activity(config: ActionConfig, runtime: Runtime) -> int:
    """Measure the pull request (or push) and publish; the measurement's settings are the plan's (the measured
    project's [tool.bolt] and the inputs), read once by the pipeline. With the `shard` input, measure that share
    only and publish nothing: `mode: merge` publishes the merged shards."""
    environ = runtime.environ if runtime.environ is not None else os.environ
    configure_safe_directory(config.workspace, environ)
    shard = parse_shard(config.input("shard") or "") if config.input("shard") else None
    durations = config.input("durations")
    if durations and shard is None:
        raise BoltError("the durations input balances shards: give the shard input (K/N) too")
    config, target = event_target(config, environ)
    number, head = target.number, target.head
    out = config.results_dir
    client = None
    started = False
    # One check run for all shards: the first shard starts it, the merge completes it.
    if not target.fork and config.token and (shard is None or shard.index == 1) and SHA.match(head) \
            and checkrun.wants_check(project_settings(config, target.base)):
        client = runtime.client_factory(config)
        started = _start_check_run(client, head, config, runtime)
    try:
        results, settings = runtime.measure(MeasureRequest(
            config.workspace, target.base, head, config.overrides, out, base_label=target.base_label,
            head_label=target.head_label, shard=shard, durations=config.workspace / durations if durations else None))
    except BoltError as exc:
        if started:
            _fail_check_run(client, head, str(exc), config, runtime)
        raise
    results.pull_request = number
    results.repository = config.repository
    results.write(out / "results.json")
    write_pr_json(out, number, results, config)
    if shard is not None:
        write_outputs(config.environ, {"verdict": "", "regressions": "", "comment-url": "",
                                       "results-dir": config.results_dir_input})
        notice(f"shard {shard}: {plural(len(results.stages), 'stage')} measured into {config.results_dir_input}/; "
               "upload it and merge every shard's directory with `mode: merge` (docs/sharding.md)",
               runtime.stdout or sys.stdout)
        return EXIT_OK
    return publish_measured(config, results, settings, target.fork, client, runtime)


def _merge_activity(config: ActionConfig, settings: Settings, runtime: Runtime) -> int:
    """`mode: merge`: the shards' directories (the `merge-from` input) merged into `results-dir`, decided once,
    and published like one measurement: one comment and the check run the first shard started. A fork's pull
    request keeps the merged directory for the workflow_run publisher, as a measurement does. The settings
    are this workflow's and the base's, like measuring's; the shards' own are checked against each other."""
    environ = runtime.environ if runtime.environ is not None else os.environ
    configure_safe_directory(config.workspace, environ)
    config, target = event_target(config, environ)
    try:
        results, pr_info = merge_shards(config.workspace, config.input("merge-from"), config.results_dir)
    except BoltError as exc:
        # Nothing is published, but the check run the first shard started must not stay in progress.
        if config.token and not target.fork and SHA.match(target.head) and checkrun.wants_check(settings):
            try:
                checkrun.fail_in_progress(runtime.client_factory(config), target.head, str(exc))
            except PublishError as error:
                notice(f"could not complete the Bolt check run: {error}", runtime.stdout or sys.stdout,
                       command="warning")
        raise
    number = target.number if target.number is not None else (pr_info or {}).get("number")
    if pr_info is not None and (pr_info.get("number"), pr_info.get("head_sha")) != (number, results.head.sha):
        raise BoltError(f"the shards' pr.json names #{pr_info.get('number')} at {str(pr_info.get('head_sha'))[:7]}, "
                        f"but they measured #{number} at {str(results.head.sha)[:7]}")
    if target.number is not None and results.head.sha != target.head:
        raise BoltError(f"the shards measured {str(results.head.sha)[:7]}, but this pull request's event is for "
                        f"{target.head[:7]}: merge the shards of this run")
    results.pull_request = number
    results.repository = config.repository
    results.write(config.results_dir / "results.json")
    write_pr_json(config.results_dir, number, results, config)
    return publish_measured(config, results, settings, target.fork, None, runtime)


def write_pr_json(out: Path, number: int | None, results: Results, config: ActionConfig) -> None:
    """For a second, privileged workflow (fork PRs): which PR and commit these results belong to."""
    if number is not None:
        (out / "pr.json").write_text(json.dumps({"number": number, "head_sha": results.head.sha,
                                                 "repository": config.repository}) + "\n", encoding="utf-8")


def publish_measured(config: ActionConfig, results: Results, settings: Settings, fork: bool, client: Any,
                     runtime: Runtime) -> int:
    """Publish results measured (or merged) in this job, or keep them for a workflow_run when it may not."""
    out, number = config.results_dir, results.pull_request
    common = {"results": results, "environ": config.environ, "run_url": config.run_url,
              "results_dir_output": config.results_dir_input, "stdout": runtime.stdout,
              "read_file": _head_files(config, results.head.sha)}
    if fork or not config.token:
        reason = "the pull request comes from a fork" if fork else "no token was given"
        publish(out, None, config.repository, number, settings, **common)
        _artifact_instructions(config, reason, runtime)
        return EXIT_OK
    client = client or runtime.client_factory(config)
    try:
        outcome = publish(out, client, config.repository, number, settings, **common)
    except ReadOnlyToken as exc:
        _artifact_instructions(config, str(exc), runtime)
        return EXIT_OK
    return _exit_code(results, settings, outcome.approval)


def _start_check_run(client: Any, head: str, config: ActionConfig, runtime: Runtime) -> bool:
    """The check run `Bolt`, in progress, before measuring. Measuring matters more than the check run: when
    GitHub refuses it (a read-only token, no `checks: write`) a warning says so and publishing tries again."""
    try:
        checkrun.start(client, head, config.run_url)
        return True
    except PublishError as exc:
        notice(f"could not start the Bolt check run: {exc}", runtime.stdout or sys.stdout, command="warning")
        return False


def _fail_check_run(client: Any, head: str, reason: str, config: ActionConfig, runtime: Runtime) -> None:
    """A measurement that stopped with an error completes its check run as failed, never leaves it running."""
    results = Results(stages=[], verdict=FAILED)
    results.head.sha = head
    try:
        checkrun.complete(client, results, "failure", f"measurement failed: {reason}",
                          f"Bolt could not measure {head[:7]}: {reason}", config.run_url)
    except PublishError as exc:
        notice(f"could not complete the Bolt check run: {exc}", runtime.stdout or sys.stdout, command="warning")


def _head_files(config: ActionConfig, sha: str | None) -> Callable[[str], str | None] | None:
    """Reads a file of the head commit from the workspace's git (never runs it): for annotations' lines."""
    if not sha or not (config.workspace / ".git").exists():
        return None
    return lambda path: gitrepo.file_at(config.workspace, sha, path)


def _artifact_instructions(config: ActionConfig, reason: str, runtime: Runtime) -> None:
    text = (f"Bolt measured this pull request but cannot publish from here ({reason}). "
            f"The results are in {config.results_dir_input}/. To post them, upload that directory with "
            "actions/upload-artifact and add a workflow_run workflow that downloads it and runs Bolt with "
            "`mode: publish` (the two-workflow setup in Bolt's docs/action.md); it never runs the pull request's code.")
    print(f"::notice title=Bolt: results kept for a second workflow::{escape_data(text)}", file=runtime.stdout or sys.stdout)
    append_summary(config.environ, f"\n> [!NOTE]\n> {text}\n")


# ---------------------------------------------------------------------------------------------------------
# publish (workflow_run): an artifact from an unprivileged run, validated without running any of its code


# ---------------------------------------------------------------------------------------------------------
# publish (workflow_run): an artifact from an unprivileged run, validated without running any of its code


def _publish_activity(config: ActionConfig, settings: Settings, runtime: Runtime) -> int:
    """Publish an artifact for the pull request it names, once checked against GitHub. The settings are this
    (trusted) workflow's and workspace's, never the artifact's."""
    folder = config.results_dir
    results, pr_info = validate_artifact(folder)
    number = pr_info["number"]
    if pr_info.get("repository") not in (None, config.repository):
        raise refuse(f"pr.json names repository {pr_info.get('repository')!r}, not {config.repository}")
    run = config.event.get("workflow_run") if isinstance(config.event.get("workflow_run"), dict) else None
    run_head = str(run.get("head_sha") or "") if run else None
    if run is not None:
        listed = [p.get("number") for p in run.get("pull_requests") or [] if isinstance(p, dict)]
        if listed and number not in listed:
            raise refuse(f"pr.json names #{number}, but the workflow run belongs to {', '.join(f'#{n}' for n in listed)}")
    client = runtime.client_factory(config)
    try:
        actual = client.head_sha(number)
    except PublishError as exc:
        if "404" in str(exc):
            raise refuse(f"pull request #{number} does not exist in {config.repository}") from None
        raise
    if run_head is not None and actual != run_head:
        raise refuse(f"pull request #{number} is at {actual[:7]}, but the workflow run measured {run_head[:7]}")
    if results.head.sha != actual or pr_info["head_sha"] != actual:
        raise refuse(f"the results are for {str(results.head.sha)[:7]} (pr.json: {pr_info['head_sha'][:7]}), "
                      f"but pull request #{number} is at {actual[:7]}")
    results.pull_request, results.repository = number, config.repository
    outcome = publish(folder, client, config.repository, number, settings, results=results, environ=config.environ,
                      run_url=config.run_url, results_dir_output=config.results_dir_input, stdout=runtime.stdout,
                      read_file=_head_files(config, actual))
    return _exit_code(results, settings, outcome.approval)


# ---------------------------------------------------------------------------------------------------------
# profile (workflow_dispatch)


def _profile_activity(config: ActionConfig, runtime: Runtime) -> int:
    report = events.optional_module(PROFILE_MODULE)
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
