"""The Action's metadata, its Dockerfile, and its image built and run the way the runner runs it."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from pathlib import Path

import pytest

from tests.container import (
    ACTION_YML,
    DEFAULT_IMAGE,
    ROOT,
    RUNNER_UID,
    build_image,
    container_skip_reason,
    input_env_name,
    load_action,
    parse_key_values,
    resolve_inputs,
    run_action_container,
)

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

EXPECTED_INPUTS = {
    "github-token",
    "base",
    "benchmarks",
    "measure",
    "threshold",
    "fail-on-regression",
    "comment",
    "perf-label",
    "approval-label",
    "install",
    "python",
    "pytest-args",
    "mode",
    "results-dir",
}
EXPECTED_OUTPUTS = {"verdict", "regressions", "comment-url", "results-dir"}


def _tool(name: str, module: str | None = None) -> list[str]:
    """The command for a PyPI-installed tool: on PATH, or beside this Python."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return [found]
    pytest.skip(f"{name} not installed (pip install '.[test]')")


# ---------------------------------------------------------------------------------------------------------
# action.yml


@pytest.fixture(scope="module")
def action() -> dict:
    return load_action()


def test_action_yml_matches_the_github_actions_schema():
    proc = subprocess.run(
        [*_tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(ACTION_YML)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_action_runs_the_dockerfile_with_bolt_action(action):
    assert action["runs"]["using"] == "docker"
    assert action["runs"]["image"] == "Dockerfile"
    assert action["runs"]["args"] == ["action"]
    assert "entrypoint" not in action["runs"], "the image's ENTRYPOINT [bolt] is the entry point"
    assert action["branding"] == {"icon": "zap", "color": "yellow"}
    assert action["name"] and action["description"]


def test_inputs_are_kebab_case_and_documented(action):
    inputs = action["inputs"]
    assert EXPECTED_INPUTS <= set(inputs), EXPECTED_INPUTS - set(inputs)
    for name, spec in inputs.items():
        assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name), f"{name}: not kebab-case"
        assert len((spec.get("description") or "").strip()) >= 20, f"{name}: no real description"
        assert spec.get("required", False) is False, f"{name}: every input must be optional"
        assert "default" in spec, f"{name}: give a default (an empty one lets [tool.bolt] apply)"


def test_input_defaults(action):
    inputs = action["inputs"]
    assert inputs["github-token"]["default"] == "${{ github.token }}"
    assert inputs["results-dir"]["default"] == "bolt-results"
    assert inputs["mode"]["default"] == ""
    # Settings [tool.bolt] can also give: empty, so the project's table applies unless the workflow sets them;
    # the description names the built-in default.
    for name, builtin in {
        "measure": "auto",
        "threshold": "3",
        "fail-on-regression": "false",
        "comment": "on-change",
        "perf-label": "perf",
        "approval-label": "perf-approved",
    }.items():
        assert inputs[name]["default"] == "", name
        assert f"Default: {builtin}." in " ".join(inputs[name]["description"].split()), name


def test_outputs_are_documented(action):
    outputs = action["outputs"]
    assert set(outputs) == EXPECTED_OUTPUTS
    for name, spec in outputs.items():
        assert (spec.get("description") or "").strip(), f"{name}: no description"


def test_runner_input_variable_names_keep_hyphens():
    assert input_env_name("github-token") == "INPUT_GITHUB-TOKEN"
    assert input_env_name("fail-on-regression") == "INPUT_FAIL-ON-REGRESSION"
    assert input_env_name("results dir") == "INPUT_RESULTS_DIR"


def test_defaults_are_applied_and_evaluated(action):
    resolved = resolve_inputs({"threshold": "5", "unknown": "x"}, action, {"token": "t0ken"})
    assert resolved["github-token"] == "t0ken"
    assert resolved["threshold"] == "5"
    assert resolved["results-dir"] == "bolt-results"
    assert resolved["unknown"] == "x"


def test_output_file_parsing():
    text = "verdict=regressed\nregressions=2\nbody<<EOF_1\nline one\nline=two\nEOF_1\nempty=\n"
    assert parse_key_values(text) == {
        "verdict": "regressed",
        "regressions": "2",
        "body": "line one\nline=two",
        "empty": "",
    }
    with pytest.raises(ValueError):
        parse_key_values("x<<EOF\nno end\n")


# ---------------------------------------------------------------------------------------------------------
# Dockerfile


def test_dockerfile_passes_hadolint():
    proc = subprocess.run([*_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile_follows_githubs_rules_for_action_images():
    instructions = _instructions(DOCKERFILE.read_text())
    words = [w for w, _ in instructions]
    assert "USER" not in words, "GitHub: container actions run as root; no USER"
    assert "WORKDIR" not in words, "GitHub: the runner sets /github/workspace; avoid WORKDIR"
    assert instructions[-1] == ("ENTRYPOINT", '["bolt"]') or ("ENTRYPOINT", '["bolt"]') in instructions
    first_from = next(rest for w, rest in instructions if w == "FROM").split()[0]
    # A public image GitHub's runner can pull; here .ci/image/make-base stands in for it.
    assert not first_from.startswith("localhost/"), first_from
    assert ":" in first_from and not first_from.endswith(":latest"), "pin the base image's tag"
    text = DOCKERFILE.read_text()
    assert "safe.directory" in text, "the workspace belongs to uid 1001: git needs safe.directory"
    for tool in ("git", "valgrind", "python3"):
        assert re.search(rf"\b{tool}\b", text), tool


def test_dockerignore_lets_in_everything_the_wheel_needs():
    lines = [s for s in (line.strip() for line in DOCKERIGNORE.read_text().splitlines()) if s and not s.startswith("#")]
    assert lines[0] == "*", "an allow-list: everything out, then what the build needs back in"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject["project"].get("readme", "README.md")}
    needed |= {p.rstrip("/").split("/")[0] for p in wheel.get("packages", [])}
    needed |= {p.rstrip("/").split("/")[0] for p in wheel.get("force-include", {})}
    missing = sorted(n for n in needed if n not in allowed)
    assert not missing, f".dockerignore keeps out what the wheel build needs: add !{', !'.join(missing)}"


# ---------------------------------------------------------------------------------------------------------
# the image, built and run like the runner does


@pytest.fixture(scope="module")
def image() -> str:
    reason = container_skip_reason()
    if reason:
        pytest.skip(reason)
    return build_image(DEFAULT_IMAGE)


def _git_repo(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(path), "-c", "user.name=Bolt Test", "-c", "user.email=bolt@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (path / "README.md").write_text("hello\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.container
def test_bolt_version_inside(image, tmp_path):
    from bolt_bot import __version__

    run = run_action_container(image, tmp_path / "ws", args=["--version"], runner_temp=tmp_path / "temp")
    assert run.returncode == 0, run.stderr
    assert __version__ in run.stdout


@pytest.mark.container
def test_git_sees_the_workspace_owned_by_the_runner_user(image, tmp_path):
    workspace = tmp_path / "ws"
    head = _git_repo(workspace)
    script = (
        "stat -c %u /github/workspace; id -u; pwd; "
        "git -C /github/workspace rev-parse HEAD; git rev-parse HEAD; "
        # Without the image's system-wide safe.directory the same command must fail: proof that the
        # ownership check really triggers here, as on GitHub.
        "GIT_CONFIG_NOSYSTEM=1 git -C /github/workspace rev-parse HEAD 2>&1 && echo UNEXPECTED || true"
    )
    run = run_action_container(
        image, workspace, "push", {}, entrypoint="sh", args=["-c", script], runner_temp=tmp_path / "temp"
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == str(RUNNER_UID), "the workspace must belong to the runner's uid"
    assert lines[1] == "0", "the container runs as root"
    assert lines[2] == "/github/workspace"
    assert lines[3] == head and lines[4] == head
    assert "dubious ownership" in run.stdout
    assert "UNEXPECTED" not in run.stdout


@pytest.mark.container
def test_tools_in_the_image(image, tmp_path):
    script = (
        "set -e; valgrind --version; uv --version; python3 --version; git --version; "
        "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out true 2>/tmp/vg.err; "
        "grep -q '^summary:' /tmp/cg.out && echo CALLGRIND_OK; "
        "command -v bolt; python3 -c 'import numpy' 2>/dev/null && echo LEAK || echo CLEAN_PYTHON"
    )
    run = run_action_container(
        image, tmp_path / "ws", entrypoint="sh", args=["-c", script], runner_temp=tmp_path / "temp"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^valgrind-3\.", run.stdout, re.M)
    assert re.search(r"^uv \d", run.stdout, re.M)
    assert re.search(r"^Python 3\.11", run.stdout, re.M)
    assert "CALLGRIND_OK" in run.stdout, "callgrind must count instructions inside the container"
    assert "/usr/local/bin/bolt" in run.stdout
    assert "CLEAN_PYTHON" in run.stdout, "the image's python3 must not carry Bolt's dependencies"


PROBE = r"""
import json, os, pathlib, sys, urllib.request
env = {k: v for k, v in os.environ.items() if k.startswith(("INPUT_", "GITHUB_", "RUNNER_", "HOME", "CI"))}
event = json.loads(pathlib.Path(os.environ["GITHUB_EVENT_PATH"]).read_text())
with open(os.environ["GITHUB_OUTPUT"], "a") as out:
    out.write("verdict=unchanged\n")
    out.write("multi<<EOF_X\nfirst\nsecond\nEOF_X\n")
with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as summary:
    summary.write("## Bolt\n")
body = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode() if len(sys.argv) > 1 else ""
print(json.dumps({"env": env, "event": event, "cwd": os.getcwd(), "argv": sys.argv[1:], "server": body,
                  "runner_temp_exists": os.path.exists(os.environ["RUNNER_TEMP"]),
                  "home_writable": os.access(os.environ["HOME"], os.W_OK)}))
"""


@pytest.fixture
def local_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"hello from 127.0.0.1"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.mark.container
def test_runner_environment_arrives(image, tmp_path, local_server):
    workspace = tmp_path / "ws"
    head = _git_repo(workspace)
    event = {
        "action": "opened",
        "number": 7,
        "pull_request": {"number": 7, "head": {"ref": "feature"}, "base": {"ref": "main"}},
        "repository": {"full_name": "octo/app", "id": 99},
        "sender": {"login": "alice"},
    }
    run = run_action_container(
        image,
        workspace,
        "pull_request",
        event,
        inputs={"fail-on-regression": "true", "pytest-args": "-k 'not slow'"},
        env={"GITHUB_API_URL": local_server.rstrip("/")},
        entrypoint="python3",
        args=["-c", PROBE, local_server],
        token="ghs_secret",
        runner_temp=tmp_path / "temp",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout)
    env = seen["env"]
    # Inputs: hyphens kept, defaults from action.yml, github.token evaluated.
    assert env["INPUT_GITHUB-TOKEN"] == "ghs_secret"
    assert env["INPUT_FAIL-ON-REGRESSION"] == "true"
    assert env["INPUT_PYTEST-ARGS"] == "-k 'not slow'"
    assert env["INPUT_RESULTS-DIR"] == "bolt-results"
    assert env["INPUT_MEASURE"] == ""
    assert set(load_action()["inputs"]) == {k[len("INPUT_"):].lower() for k in env if k.startswith("INPUT_")}
    # The GitHub environment.
    assert env["GITHUB_EVENT_NAME"] == "pull_request"
    assert env["GITHUB_EVENT_PATH"] == "/github/workflow/event.json"
    assert seen["event"] == event
    assert env["GITHUB_WORKSPACE"] == "/github/workspace" == seen["cwd"]
    assert env["GITHUB_REPOSITORY"] == "octo/app"
    assert env["GITHUB_REF"] == "refs/pull/7/merge"
    assert env["GITHUB_SHA"] == head
    assert env["GITHUB_ACTIONS"] == "true" and env["CI"] == "true"
    assert env["HOME"] == "/github/home" and seen["home_writable"]
    assert re.fullmatch(r"/github/file_commands/set_output_[0-9a-f-]{36}", env["GITHUB_OUTPUT"])
    assert re.fullmatch(r"/github/file_commands/step_summary_[0-9a-f-]{36}", env["GITHUB_STEP_SUMMARY"])
    assert env["GITHUB_API_URL"] == local_server.rstrip("/")
    # As on GitHub, RUNNER_TEMP names a host path that is not mounted into the container.
    assert env["RUNNER_TEMP"] == "/home/runner/work/_temp" and not seen["runner_temp_exists"]
    # File commands come back, and --network host reaches 127.0.0.1.
    assert run.outputs == {"verdict": "unchanged", "multi": "first\nsecond"}
    assert run.summary == "## Bolt\n"
    assert seen["server"] == "hello from 127.0.0.1"


@pytest.mark.container
def test_default_args_run_bolt_action(image, tmp_path):
    """action.yml's args make the entry point run `bolt action` (whatever that command then decides)."""
    run = run_action_container(
        image, tmp_path / "ws", "workflow_dispatch", {}, args=None, runner_temp=tmp_path / "temp",
        env={"GITHUB_API_URL": "http://127.0.0.1:9"},
    )
    assert "No such command" not in run.stderr, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
