"""`bolt action` end to end, run as the runner runs it: a real repository, a real pull_request payload, real
measurements, the GitHub double; once as a subprocess and once through the Action's image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("github")

from tests import projects
from tests.container import (
    container_skip_reason,
    input_env_name,
    load_action,
    parse_key_values,
    resolve_inputs,
)
from tests.ghdouble.webhooks import load_event, write_event

_conftest = Path(__file__).with_name("conftest.py")
if not (_conftest.exists() and "ghdouble.fixtures" in _conftest.read_text(encoding="utf-8")):
    from tests.ghdouble.fixtures import gh, github_double, webhook  # noqa: F401

# Three stages of plain CPU work; the head commit makes `parse` do 50 % more.
BASE_WORK = {"ingest": 20000, "parse": 30000, "render": 20000}
HEAD_WORK = dict(BASE_WORK, parse=45000)


def make_pr_repo(path: Path) -> tuple[str, str]:
    """main: the pipeline; branch slower-parse: one commit that slows `parse` by 50 %. Returns (base, head)."""
    _, base, head = projects.pipeline_repo(path, BASE_WORK, HEAD_WORK, branch="slower-parse",
                                           tool_bolt='\n[tool.bolt]\nbenchmarks = ["bench"]\n')
    return base, head


def seed(gh, tmp_path: Path):
    workspace = tmp_path / "workspace"
    base, head = make_pr_repo(workspace)
    pr = gh.seed_pr(head_sha=head, base_sha=base, head_ref="slower-parse", base_ref="main")
    event = load_event("pull_request", "synchronize", repo=pr.repo, number=pr.number, head_sha=head,
                       base_sha=base, head_ref="slower-parse", base_ref="main")
    return workspace, pr, event


def assert_published(gh, pr, summary: str, outputs: dict[str, str]) -> None:
    comments = gh.comments(pr.repo, pr.number)
    assert len(comments) == 1, [c.body[:80] for c in comments]
    assert "test_stage&#91;parse&#93;" in comments[0].body, comments[0].body
    assert "1 stage slower" in comments[0].body, comments[0].body
    statuses = gh.statuses(pr.repo, pr.head_sha)
    assert statuses and {s.state for s in statuses} == {"failure"}
    # "+52.1 %" or "2.01x": how much slower depends on the machine's load, not whether
    assert statuses[-1].description.startswith("1 stage slower: test_stage[parse] ")
    assert gh.labels(pr.repo, pr.number) == ["perf-regression"]
    assert "1 stage slower" in summary
    assert outputs["verdict"] == "regressed" and outputs["regressions"] == "1"
    assert outputs["comment-url"].endswith(f"#issuecomment-{comments[0].id}")


@pytest.mark.slow
def test_bolt_action_on_a_pull_request_twice_as_the_runner_runs_it(gh, tmp_path):
    workspace, pr, event = seed(gh, tmp_path)
    inputs = resolve_inputs({"rounds": "3", "budget": "30"}, load_action(), {"token": pr.token})
    for attempt in (1, 2):
        files = tmp_path / f"file_commands_{attempt}"
        files.mkdir()
        (files / "output").touch()
        (files / "summary").touch()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
        env.update({input_env_name(name): value for name, value in inputs.items()})
        env.update({
            "GITHUB_ACTIONS": "true", "CI": "true",
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_EVENT_PATH": str(write_event(files, event)),
            "GITHUB_REPOSITORY": pr.repo,
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_SHA": pr.head_sha,
            "GITHUB_API_URL": gh.base_url,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_RUN_ID": str(100 + attempt),
            "GITHUB_OUTPUT": str(files / "output"),
            "GITHUB_STEP_SUMMARY": str(files / "summary"),
            "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0",
            "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0",
        })
        assert env["INPUT_GITHUB-TOKEN"] == pr.token and env["INPUT_RESULTS-DIR"] == "bolt-results"
        proc = subprocess.run([sys.executable, "-m", "bolt_bot", "action"], cwd=workspace, env=env, check=False,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "::warning file=bench/test_bench.py" in proc.stdout
        assert_published(gh, pr, (files / "summary").read_text(), parse_key_values((files / "output").read_text()))
        assert (workspace / "bolt-results" / "results.json").is_file()
    assert len(gh.requests_matching("POST", "/repos/*/*/issues/*/comments")) == 1
    assert len(gh.requests_matching("PATCH", "/repos/*/*/issues/comments/*")) == 1


@pytest.mark.container
def test_bolt_action_on_a_pull_request_in_the_image(gh, tmp_path):
    from tests.container import build_image, run_action_container

    reason = container_skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        image = build_image()
    except RuntimeError as exc:
        pytest.skip(f"the image cannot be built here: {str(exc).splitlines()[0]}")
    workspace, pr, event = seed(gh, tmp_path)
    env = {"GITHUB_API_URL": gh.base_url, "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0",
           "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0"}
    # This machine reaches the package index through its own CA (GitHub's runners do not need this): uv inside
    # the container, making the measured environments, gets the host's bundle from a file git ignores.
    host_ca = os.environ.get("SSL_CERT_FILE")
    if host_ca and Path(host_ca).is_file():
        shutil.copyfile(host_ca, workspace / ".git" / "host-ca.crt")
        env["SSL_CERT_FILE"] = "/github/workspace/.git/host-ca.crt"
    run = run_action_container(
        image, workspace, "pull_request", event, inputs={"rounds": "3", "budget": "30"}, env=env,
        token=pr.token, runner_temp=tmp_path / "runner", timeout=1500,
    )
    if run.returncode != 0 and any(m in run.stderr for m in ("Could not fetch", "error sending request", "certificate")):
        pytest.skip("the container cannot reach the package index to build the measured environments")
    assert run.returncode == 0, run.stderr[-3000:]
    # The slowed stage allocates more too: its title may add ", using more memory".
    assert any(c[0] == "warning" and c[1].startswith("file=bench/test_bench.py,title=Bolt%3A slower benchmark")
               for c in run.commands)
    assert_published(gh, pr, run.summary, run.outputs)


ENV_BENCH = '''import json
import os

import minipipe


def test_stage(benchmark):
    with open({dump!r}, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(os.environ)) + "\\n")
    benchmark(minipipe.parse)
'''


RECORD_ENV = '''import json
import os

with open({dump!r}, "a", encoding="utf-8") as f:
    f.write(json.dumps(dict(os.environ, BOLT_TEST_STEP="install")) + "\\n")
'''


@pytest.mark.slow
def test_no_secret_reaches_the_measured_code_under_bolt_action(gh, tmp_path):
    """A suite that records its environment, measured by `bolt action` on a pull_request with every token set."""
    from tests.conftest import commit, git, make_repo

    dump = tmp_path / "environ.jsonl"
    # The install command records its environment too (and installs nothing: the benchmarks import the
    # package from the checkout).
    files = projects.pipeline_files(BASE_WORK, tool_bolt='\n[tool.bolt]\nbenchmarks = ["bench"]\n'
                                                         'install = "python record_env.py"\n')
    files["bench/test_bench.py"] = ENV_BENCH.format(dump=str(dump))
    files["record_env.py"] = RECORD_ENV.format(dump=str(dump))
    workspace = make_repo(tmp_path / "workspace", files)
    base = git(workspace, "rev-parse", "HEAD")
    git(workspace, "checkout", "--quiet", "-b", "docs")
    head = commit(workspace, {"README.md": "hello\n"}, "head")
    pr = gh.seed_pr(head_sha=head, base_sha=base, head_ref="docs", base_ref="main")
    event = load_event("pull_request", "synchronize", repo=pr.repo, number=pr.number, head_sha=head,
                       base_sha=base, head_ref="docs", base_ref="main")
    secrets = {"INPUT_GITHUB-TOKEN": pr.token, "GITHUB_TOKEN": pr.token, "ACTIONS_RUNTIME_TOKEN": "rt-secret-4242",
               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc-secret-4242"}
    (tmp_path / "output").touch()
    (tmp_path / "summary").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "ACTIONS_"))}
    env.update(secrets)
    env.update({
        "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(write_event(tmp_path, event)), "GITHUB_REPOSITORY": pr.repo,
        "GITHUB_WORKSPACE": str(workspace), "GITHUB_SHA": head, "GITHUB_API_URL": gh.base_url,
        "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "INPUT_ROUNDS": "3", "INPUT_BUDGET": "10",
        "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0", "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0",
    })
    proc = subprocess.run([sys.executable, "-m", "bolt_bot", "action"], cwd=workspace, env=env, check=False,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [json.loads(line) for line in dump.read_text(encoding="utf-8").splitlines()]
    assert len([e for e in seen if e.get("BOLT_TEST_STEP") == "install"]) == 2  # the install command, each side
    measured = [e for e in seen if e.get("BOLT_TEST_STEP") != "install"]
    assert len([e for e in measured if "CODSPEED_ENV" in e]) >= 3  # the count passes: base, head, head again
    assert len([e for e in measured if "CODSPEED_ENV" not in e]) >= 2  # the discovery (or wall-time) rounds
    for environ in seen:
        assert not set(secrets) & set(environ), sorted(environ)
        assert not any(value in text for value in secrets.values() for text in environ.values())
        assert not [k for k in environ if k.startswith(("INPUT_", "ACTIONS_"))]
    assert len(gh.comments(pr.repo, pr.number)) <= 1 and gh.statuses(pr.repo, head)  # and it published
