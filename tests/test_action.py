"""`bolt action` against the GitHub double, with real webhook payloads and the measure step passed in."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

pytest.importorskip("github")

from click.testing import CliRunner

from bolt_bot.github import action, artifact, commands, events
from bolt_bot.github.action import (
    ActionConfig,
    MeasureRequest,
    Runtime,
    read_config,
    run_action,
)
from bolt_bot.cli import main
from bolt_bot.errors import (
    EXIT_BAD_INPUT,
    EXIT_PUBLISH,
    EXIT_REGRESSION,
    BoltError,
    PublishError,
)
from bolt_bot.model import Results
from bolt_bot.report.output import write_results_dir
from bolt_bot.report.state import read_state
from bolt_bot.settings import Settings
from tests.container import parse_key_values
from tests.ghdouble.webhooks import load_event, write_event
from tests.test_publish import make_results

_conftest = Path(__file__).with_name("conftest.py")
if not (_conftest.exists() and "ghdouble.fixtures" in _conftest.read_text(encoding="utf-8")):
    from tests.ghdouble.fixtures import gh, github_double, webhook  # noqa: F401


def runner_env(gh, tmp_path: Path, event_name: str, event: dict, token: str, **inputs: str) -> dict[str, str]:
    """What the runner gives a container action, with inputs spelled as the runner spells them."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    for name in ("output", "summary"):
        (tmp_path / name).touch()
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(write_event(tmp_path, event)),
        "GITHUB_REPOSITORY": event["repository"]["full_name"],
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_API_URL": gh.base_url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0",
        "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0",
        "BOLT_GITHUB_BACKOFF": "0",
        "BOLT_GITHUB_RETRIES": "1",
        "BOLT_GITHUB_MAX_RATE_WAIT": "2",
        "INPUT_GITHUB-TOKEN": token,
        "INPUT_RESULTS-DIR": "bolt-results",
        "INPUT_COMMENT": "",  # empty: not given
    }
    env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
    return env


class FakeMeasure:
    """Stands in for `bolt run`: writes a hand-made results directory for the commits asked."""

    def __init__(self, verdict: str = "regressed"):
        self.verdict = verdict
        self.requests: list[MeasureRequest] = []

    def __call__(self, request: MeasureRequest) -> tuple[Results, Settings]:
        self.requests.append(request)
        results = make_results(request.head, request.base or "0" * 40, verdict=self.verdict)
        write_results_dir(results, request.out)
        return results, Settings().updated(request.overrides, "inputs")


def run(env: dict[str, str], measure=None) -> tuple[int, str]:
    out = io.StringIO()
    code = run_action(read_config(env), Runtime(measure=measure or FakeMeasure(), environ=dict(env), stdout=out,
                                                 stderr=io.StringIO()))
    return code, out.getvalue()


def pr_event(pr, action_name: str = "synchronize", **kw) -> dict:
    return load_event("pull_request", action_name, repo=pr.repo, number=pr.number, head_sha=pr.head_sha,
                      base_sha=pr.base_sha, head_ref=pr.head_ref, base_ref=pr.base_ref, **kw)


def outputs(tmp_path: Path) -> dict[str, str]:
    return parse_key_values((tmp_path / "output").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ config


def test_inputs_keep_hyphens_and_empty_means_not_given(tmp_path):
    env = {"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "o/r", "GITHUB_WORKSPACE": str(tmp_path),
           "INPUT_GITHUB-TOKEN": "t0ken", "INPUT_FAIL-ON-REGRESSION": "true", "INPUT_THRESHOLD": "",
           "INPUT_PYTEST_ARGS": "-k fast", "INPUT_RESULTS-DIR": "out/here"}
    config = read_config(env)
    assert config.token == "t0ken"
    assert config.overrides == {"fail-on-regression": "true", "pytest-args": "-k fast"}
    assert config.results_dir == tmp_path / "out/here" and config.results_dir_input == "out/here"
    assert Settings().updated(config.overrides, "inputs").fail_on_regression is True
    with pytest.raises(BoltError, match="GITHUB_EVENT_NAME is not set"):
        read_config({})
    with pytest.raises(BoltError, match="mode must be one of"):
        read_config({**env, "INPUT_MODE": "everything"})


@pytest.mark.parametrize("event_name, action_name, label, mode, expected", [
    ("pull_request", "opened", None, "", "measure"),
    ("pull_request", "synchronize", None, "", "measure"),
    ("pull_request", "closed", None, "", "ignore"),
    ("pull_request", "labeled", "perf", "", "measure"),
    ("pull_request", "labeled", "perf-approved", "", "command"),
    ("pull_request", "labeled", "documentation", "", "ignore"),
    ("pull_request", "synchronize", None, "label", "ignore"),
    ("pull_request", "synchronize", None, "publish", "publish"),
    ("workflow_run", None, None, "", "publish"),
    ("workflow_dispatch", None, None, "", "profile"),
    ("issue_comment", "created", None, "", "command"),
    ("pull_request_review", "submitted", None, "", "command"),
    ("push", None, None, "", "measure"),
    ("schedule", None, None, "", "ignore"),
    ("pull_request_target", "opened", None, "", "refuse"),
    ("pull_request_target", "synchronize", None, "measure", "refuse"),
    ("pull_request_target", "labeled", "perf-approved", "", "command"),
    ("pull_request_target", "closed", None, "", "ignore"),
])
def test_activity_from_the_event(tmp_path, event_name, action_name, label, mode, expected):
    event = {"action": action_name, "repository": {"full_name": "o/r"}, "pull_request": {"labels": []}}
    if label:
        event["label"] = {"name": label}
    config = ActionConfig(event_name=event_name, event=event, repository="o/r", workspace=tmp_path, token="t",
                          inputs={"mode": mode} if mode else {}, results_dir=tmp_path, results_dir_input="r")
    assert action.choose_activity(config, action.project_settings(config))[0] == expected


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a repository as another user")
def test_safe_directory_lets_root_use_the_runners_workspace(tmp_path):
    repo = tmp_path / "ws"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    os.chown(repo, 1001, 1001)
    os.chown(repo / ".git", 1001, 1001)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG")}
    env["HOME"] = str(tmp_path)  # no global safe.directory from this machine's config
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    cmd = ["git", "-C", str(repo), "rev-parse", "--git-dir"]
    assert "dubious ownership" in subprocess.run(cmd, env=env, capture_output=True, text=True, check=False).stderr
    action.configure_safe_directory(repo, env)
    action.configure_safe_directory(repo, env)  # idempotent
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert subprocess.run(cmd, env=env, capture_output=True, text=True, check=False).returncode == 0


# ------------------------------------------------------------------------------ pull_request


def test_pull_request_measures_publishes_and_fails_on_regression(gh, tmp_path):
    pr = gh.seed_pr()
    event = pr_event(pr)
    assert event["pull_request"]["head"]["repo"]["full_name"] == pr.repo  # same-repository PR
    env = runner_env(gh, tmp_path, "pull_request", event, pr.token, **{"fail-on-regression": "true", "threshold": "5"})
    measure = FakeMeasure()
    code, stdout = run(env, measure)
    assert code == EXIT_REGRESSION
    request = measure.requests[0]
    assert (request.base, request.head, request.base_label) == (pr.base_sha, pr.head_sha, pr.base_ref)
    assert request.overrides == {"fail-on-regression": "true", "threshold": "5"}
    folder = tmp_path / "workspace" / "bolt-results"
    assert Results.read(folder / "results.json").pull_request == pr.number
    assert json.loads((folder / "pr.json").read_text()) == {"number": pr.number, "head_sha": pr.head_sha,
                                                             "repository": pr.repo}
    assert len(gh.comments(pr.repo, pr.number)) == 1
    assert gh.statuses(pr.repo, pr.head_sha)[-1].state == "failure"
    assert gh.statuses(pr.repo, pr.head_sha)[-1].target_url == f"https://github.com/{pr.repo}/actions/runs/4242"
    assert outputs(tmp_path)["verdict"] == "regressed" and outputs(tmp_path)["results-dir"] == "bolt-results"
    assert "::warning" in stdout
    # a second push event for the same head: still one comment, edited
    code, _ = run(env, FakeMeasure(verdict="unchanged"))
    assert code == 0
    comments = gh.comments(pr.repo, pr.number)
    assert len(comments) == 1 and read_state(comments[0].body)["verdict"] == "unchanged"
    assert gh.labels(pr.repo, pr.number) == []


def test_fork_pull_request_keeps_the_results_and_exits_0(gh, tmp_path):
    pr = gh.seed_pr(fork=True)
    event = pr_event(pr, "opened")
    event["pull_request"]["head"]["repo"]["full_name"] = pr.head_repo
    env = runner_env(gh, tmp_path, "pull_request", event, pr.read_token, **{"fail-on-regression": "true"})
    code, stdout = run(env)
    assert code == 0
    folder = tmp_path / "workspace" / "bolt-results"
    assert (folder / "results.json").is_file() and json.loads((folder / "pr.json").read_text())["number"] == pr.number
    summary = (tmp_path / "summary").read_text()
    assert "1 stage slower" in summary and "workflow_run" in summary
    assert "::notice title=Bolt: results kept for a second workflow::" in stdout
    assert gh.requests == []  # a fork's run does not even try to write
    assert outputs(tmp_path)["comment-url"] == ""


def test_read_only_token_on_a_same_repository_pr_keeps_results_and_exits_0(gh, tmp_path):
    pr = gh.seed_pr()
    env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.read_token)
    code, stdout = run(env)
    assert code == 0
    assert "Resource not accessible by integration" in stdout
    assert "upload-artifact" in (tmp_path / "summary").read_text()
    assert gh.comments(pr.repo, pr.number) == [] and gh.statuses(pr.repo, pr.head_sha) == []


def test_bad_token_exits_3_with_one_line_and_keeps_results(gh, tmp_path):
    pr = gh.seed_pr()
    env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), "ghp_nonsense")
    with pytest.raises(PublishError) as err:
        run(env)
    assert err.value.exit_code == EXIT_PUBLISH and "401 Bad credentials" in str(err.value)
    assert "\n" not in str(err.value)
    assert (tmp_path / "workspace" / "bolt-results" / "results.json").is_file()
    assert outputs(tmp_path)["verdict"] == "regressed"


# ------------------------------------------------------------------------------ workflow_run


def make_artifact(tmp_path: Path, pr, *, number: int | None = None, head_sha: str | None = None) -> Path:
    folder = tmp_path / "workspace" / "bolt-results"
    write_results_dir(make_results(head_sha or pr.head_sha, pr.base_sha), folder)
    (folder / "pr.json").write_text(json.dumps({"number": number or pr.number, "head_sha": head_sha or pr.head_sha,
                                                "repository": pr.repo}))
    return folder


def run_event(pr, **kw) -> dict:
    return load_event("workflow_run", "completed", repo=pr.repo, head_sha=pr.head_sha, pull_requests=[],
                      run_id=pr.run_id, run_event="pull_request", conclusion="success", **kw)


def invoke(env: dict[str, str]):
    """`bolt action` through the CLI, as the container's entry point runs it."""
    return CliRunner().invoke(main, ["action"], env=env, catch_exceptions=False)


def test_workflow_run_publishes_a_fork_prs_results(gh, tmp_path):
    pr = gh.seed_pr(fork=True, workflow_run=True)
    make_artifact(tmp_path, pr)
    env = runner_env(gh, tmp_path, "workflow_run", run_event(pr), pr.token)
    result = invoke(env)
    assert result.exit_code == 0, result.output
    comments = gh.comments(pr.repo, pr.number)
    assert len(comments) == 1 and "test_parse" in comments[0].body
    assert [s.state for s in gh.statuses(pr.repo, pr.head_sha)] == ["failure"]
    assert gh.labels(pr.repo, pr.number) == ["perf-regression"]
    assert outputs(tmp_path)["comment-url"].endswith(f"#issuecomment-{comments[0].id}")


def _oversized(folder: Path) -> None:
    with open(folder / "flame.svg", "wb") as f:
        f.truncate(artifact.MAX_ARTIFACT_FILE + 1)


def _symlink_escape(folder: Path) -> None:
    (folder / "profiles").mkdir()
    (folder / "profiles" / "base.pstats").symlink_to("/etc/passwd")


def _symlinked_results(folder: Path) -> None:
    target = folder.parent / "elsewhere.json"
    (folder / "results.json").rename(target)
    (folder / "results.json").symlink_to(target)


def _bad_schema(folder: Path) -> None:
    data = json.loads((folder / "results.json").read_text())
    data["verdict"] = "splendid"
    (folder / "results.json").write_text(json.dumps(data))


@pytest.mark.parametrize("tamper, reason", [
    ("wrong-pr", "pull request #8 is at"),
    ("missing-pr", "pull request #99 does not exist"),
    ("wrong-sha", "the results are for eeeeeee"),
    ("run-sha", "but the workflow run measured fffffff"),
    ("oversized", "flame.svg is 8388609 bytes"),
    ("symlink", "profiles/base.pstats is a symbolic link"),
    ("symlinked-results", "results.json is a symbolic link"),
    ("schema", "unknown verdict"),
])
def test_workflow_run_refuses_a_tampered_artifact(gh, tmp_path, tamper, reason):
    pr = gh.seed_pr(fork=True, workflow_run=True)
    gh.add_pull(pr.repo, 8, head_sha="8" * 40)
    folder = make_artifact(tmp_path, pr, number={"wrong-pr": 8, "missing-pr": 99}.get(tamper),
                           head_sha="e" * 40 if tamper == "wrong-sha" else None)
    event = run_event(pr)
    if tamper == "run-sha":
        event["workflow_run"]["head_sha"] = "f" * 40
    {"oversized": _oversized, "symlink": _symlink_escape, "symlinked-results": _symlinked_results,
     "schema": _bad_schema}.get(tamper, lambda f: None)(folder)
    result = invoke(runner_env(gh, tmp_path, "workflow_run", event, pr.token))
    assert result.exit_code == EXIT_BAD_INPUT
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("bolt: error: refusing to publish the artifact: "), lines
    assert reason in lines[0] and result.stderr.endswith(lines[0] + "\n")
    assert gh.comments(pr.repo, pr.number) == [] and gh.statuses(pr.repo, pr.head_sha) == []


def test_workflow_run_with_a_bad_token_exits_3_in_one_line(gh, tmp_path):
    pr = gh.seed_pr(fork=True, workflow_run=True)
    folder = make_artifact(tmp_path, pr)
    result = invoke(runner_env(gh, tmp_path, "workflow_run", run_event(pr), "ghp_nonsense"))
    assert result.exit_code == EXIT_PUBLISH
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "401 Bad credentials" in errors[0]
    assert (folder / "results.json").is_file()


# ------------------------------------------------------------------- profile and commands


def test_workflow_dispatch_runs_the_profile_report(gh, tmp_path, monkeypatch):
    calls = []

    def profile_report(repo, ref, filter_, out):
        calls.append((repo, ref, filter_))
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("## Full profile\n\nparse: 40 %\n")

    monkeypatch.setitem(sys.modules, "bolt_bot.profiling.fullreport", types.SimpleNamespace(profile_report=profile_report))
    monkeypatch.setattr(events, "optional_module", lambda name: sys.modules.get(name))
    event = load_event("workflow_dispatch", repo="octo-org/bolt-demo")
    event["inputs"] = {"ref": "v1.2", "filter": "parse"}
    env = runner_env(gh, tmp_path, "workflow_dispatch", event, "t", **{"results-dir": "profile"})
    code, _ = run(env)
    assert code == 0 and calls == [(tmp_path / "workspace", "v1.2", "parse")]
    assert "## Full profile" in (tmp_path / "summary").read_text()
    assert outputs(tmp_path)["results-dir"] == "profile"


def test_workflow_dispatch_without_the_report_module_exits_2(gh, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bolt_bot.profiling.fullreport", None)
    env = runner_env(gh, tmp_path, "workflow_dispatch", load_event("workflow_dispatch"), "t")
    with pytest.raises(BoltError) as err:
        run(env)
    assert err.value.exit_code == EXIT_BAD_INPUT and "not available" in str(err.value)


def test_a_comment_without_a_command_is_ignored_before_any_github_call(gh, tmp_path):
    pr = gh.seed_pr()
    event = load_event("issue_comment", "created", repo=pr.repo, number=pr.number, on_pr=True,
                       commenter=pr.maintainer, body="looks good to me")
    code, stdout = run(runner_env(gh, tmp_path, "issue_comment", event, pr.token))
    assert code == 0 and "nothing to do for no /bolt command in the comment" in stdout
    assert gh.requests == []


def test_comment_commands_are_dispatched_with_the_invocations_settings(gh, tmp_path, monkeypatch):
    seen = []

    def handle(request, config, settings, client, *, out, rerun=None):
        seen.append((request.kind, config.event_name, settings.perf_label, client.repository))
        return 0

    monkeypatch.setattr(commands, "handle", handle)
    pr = gh.seed_pr()
    event = load_event("issue_comment", "created", repo=pr.repo, number=pr.number, on_pr=True,
                       commenter=pr.maintainer, body="/bolt help")
    code, _ = run(runner_env(gh, tmp_path, "issue_comment", event, pr.token, **{"perf-label": "speed"}))
    assert code == 0 and seen == [("help", "issue_comment", "speed", pr.repo)]


# ------------------------------------------------------------------------- documented workflows

WORKFLOWS = sorted((Path(__file__).resolve().parent.parent / "docs" / "workflows").glob("*.yml"))


def test_documented_workflows_match_githubs_schema_and_the_docs():
    import shutil

    from tests.container import load_action

    tool = shutil.which("check-jsonschema") or shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("check-jsonschema is not installed")
    assert {p.name for p in WORKFLOWS} == {"bolt.yml", "bolt-measure.yml", "bolt-publish.yml", "bolt-profile.yml",
                                           "bolt-commands.yml", "bolt-sharded.yml"}
    proc = subprocess.run([tool, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = (WORKFLOWS[0].parent.parent / "action.md").read_text(encoding="utf-8")
    declared = set(load_action()["inputs"])
    from ruamel.yaml import YAML

    sharding = (WORKFLOWS[0].parent.parent / "sharding.md").read_text(encoding="utf-8")
    for path in WORKFLOWS:
        text = path.read_text(encoding="utf-8")
        sharded = path.name == "bolt-sharded.yml"  # shown in docs/sharding.md; the README links to both docs
        for shown, where in ((sharding, "docs/sharding.md"),) if sharded else ((docs, "docs/action.md"),):
            assert f"```yaml\n{text}```" in shown, f"{where} does not show {path.name} as it is"
        steps = [s for job in YAML(typ="safe", pure=True).load(text)["jobs"].values() for s in job["steps"]]
        bolt = [s for s in steps if str(s.get("uses", "")).startswith("OWNER/bolt@")]
        assert len(bolt) == (2 if sharded else 1), path.name  # the shards' step and the merge's
        for step in bolt:
            assert set(step.get("with") or {}) <= declared, (path.name, set(step["with"]) - declared)
        assert not any("checkout" in str(s.get("uses")) for s in steps) or path.name != "bolt-publish.yml"
