"""Build Bolt's Action image and run it the way the GitHub Actions runner runs a Docker container action.

No Docker daemon here: the image is built with buildah (root, chroot isolation, runc) by the scripts in
.ci/image/, and run with podman. What the runner does (actions/runner, ContainerActionHandler.cs and
Handler.cs), and what `run_action_container` reproduces:

- every input of action.yml becomes `INPUT_<NAME>`: the name upper-cased, spaces turned into `_`, hyphens
  KEPT (`INPUT_GITHUB-TOKEN`); inputs the workflow does not give get action.yml's default, with
  `${{ github.token }}` evaluated; the variables reach `docker run` as `-e NAME`, values from its environment;
- `runs.args` evaluated with the `inputs` context, each argument quoted (an empty one stays `""`);
  `runs.entrypoint`, when set, replaces the image's ENTRYPOINT;
- mounts `/github/home` (HOME), `/github/workflow` (event.json), `/github/file_commands` (GITHUB_OUTPUT,
  GITHUB_STEP_SUMMARY, GITHUB_ENV, GITHUB_PATH, GITHUB_STATE, each `<kind>_<guid>`), `/github/workspace`
  (the working directory); the runner's directories belong to the runner's user (uid 1001), the container runs
  as root, so git's "dubious ownership" check really triggers;
- environment variables holding a host path under a mount are translated to the container path; the
  others keep the host path: RUNNER_TEMP stays `/home/runner/work/_temp`, which does NOT exist inside
  the container (as on GitHub).

Example::

    from tests.container import build_image, run_action_container

    image = build_image()                       # or skip: container_skip_reason()
    run = run_action_container(
        image,
        workspace=repo_dir,                     # a git repository; chowned to uid 1001
        event_name="pull_request",
        event={"number": 7, "pull_request": {...}, "repository": {"full_name": "octo/app"}},
        inputs={"fail-on-regression": "true"},  # the workflow's `with:`; action.yml defaults fill the rest
        env={"GITHUB_API_URL": "http://127.0.0.1:8123"},
    )                                           # args: action.yml's runs.args, i.e. ["action"]
    assert run.returncode == 0, run.stderr
    assert run.outputs["verdict"] == "unchanged"
    print(run.summary)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACTION_YML = ROOT / "action.yml"
IMAGE_SCRIPTS = ROOT / ".ci" / "image"
DEFAULT_IMAGE = os.environ.get("BOLT_IMAGE", "localhost/bolt-action:test")

# The runner's user on GitHub-hosted runners owns the workspace and the runner's temp directories.
RUNNER_UID = 1001
# Host-side paths as GitHub-hosted runners have them; only those under a mount are translated.
HOST_TEMP = "/home/runner/work/_temp"
HOST_WORKSPACE = "/home/runner/work/{name}/{name}"

# This machine refuses rlimits above these (podman's defaults are higher, and runc then fails).
ULIMITS = ("nofile=20000:20000", "nproc=4096:4096")
CONTAINER_TOOLS = ("buildah", "podman", "runc")


@dataclass
class ContainerRun:
    """What one run of the container left behind."""

    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]  # parsed from the GITHUB_OUTPUT file
    summary: str  # the GITHUB_STEP_SUMMARY file
    env: dict[str, str]  # the environment the container was given (INPUT_*, GITHUB_*, ...)
    command: list[str]  # the podman command line (values of -e NAME are in `env`)
    runner_temp: Path  # host directory holding _github_home, _github_workflow, _runner_file_commands
    exported_env: dict[str, str] = field(default_factory=dict)  # parsed from the GITHUB_ENV file
    added_path: list[str] = field(default_factory=list)  # lines of the GITHUB_PATH file

    @property
    def home(self) -> Path:
        """Host directory mounted on /github/home."""
        return self.runner_temp / "_github_home"

    @property
    def commands(self) -> list[tuple[str, str, str]]:
        """Workflow commands printed on stdout, as (command, properties, message): `::error file=x::msg`."""
        found = []
        for line in self.stdout.splitlines():
            m = re.match(r"^::([a-zA-Z-]+)(?: ([^:]*))?::(.*)$", line)
            if m:
                found.append((m.group(1), m.group(2) or "", m.group(3)))
        return found


# ---------------------------------------------------------------------------------------------------------
# availability and building


def container_skip_reason() -> str | None:
    """Why the image cannot be built or run on this machine, or None when it can."""
    missing = [tool for tool in CONTAINER_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (.ci/image/install-tools installs them)"
    if os.geteuid() != 0:
        return "building and running the image needs root (buildah/podman with chroot isolation)"
    return None


def tools_available() -> bool:
    return container_skip_reason() is None


def image_available(image: str = DEFAULT_IMAGE) -> bool:
    """True when the container tools are there and `image` is in local storage."""
    if shutil.which("podman") is None:
        return False
    return subprocess.run(["podman", "image", "exists", image], capture_output=True).returncode == 0


def build_image(image: str = DEFAULT_IMAGE, *, rebuild: bool = True, timeout: float = 1200) -> str:
    """Make the base image if missing, then build `image` from the repository (buildah layer cache: a rebuild
    with unchanged sources takes seconds). With rebuild=False an existing image is used as it is."""
    reason = container_skip_reason()
    if reason:
        raise RuntimeError(reason)
    if not rebuild and image_available(image):
        return image
    for script, args in (("make-base", []), ("build", [image])):
        proc = subprocess.run(
            ["bash", str(IMAGE_SCRIPTS / script), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f".ci/image/{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
    return image


# ---------------------------------------------------------------------------------------------------------
# action.yml


def load_action(path: Path = ACTION_YML) -> dict[str, Any]:
    """action.yml as plain data (ruamel.yaml, which check-jsonschema brings, or PyYAML)."""
    text = path.read_text(encoding="utf-8")
    try:
        from ruamel.yaml import YAML
    except ImportError:
        import yaml  # type: ignore[import-untyped]

        return yaml.safe_load(text)
    return _plain(YAML(typ="safe", pure=True).load(text))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def input_env_name(name: str) -> str:
    """The runner's variable for an input: `github-token` -> `INPUT_GITHUB-TOKEN` (hyphens kept)."""
    return "INPUT_" + name.replace(" ", "_").upper()


_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _evaluate(template: str, contexts: dict[str, dict[str, str]]) -> str:
    """The small part of the expression language action.yml uses: `${{ ctx.name }}` and `${{ ctx['name'] }}`."""

    def one(m: re.Match[str]) -> str:
        expr = m.group(1)
        ref = re.fullmatch(r"(\w+)\.([\w-]+)|(\w+)\[\s*'([^']+)'\s*\]", expr)
        if not ref:
            raise ValueError(f"expression not supported by the test harness: {expr!r}")
        ctx, key = (ref.group(1), ref.group(2)) if ref.group(1) else (ref.group(3), ref.group(4))
        return str(contexts.get(ctx, {}).get(key, ""))

    return _EXPR.sub(one, template)


def resolve_inputs(
    given: dict[str, str], action: dict[str, Any], github: dict[str, str]
) -> dict[str, str]:
    """The workflow's `with:` values, completed with action.yml's defaults (evaluated against `github`)."""
    declared = action.get("inputs") or {}
    resolved: dict[str, str] = {}
    for name, spec in declared.items():
        if name in given:
            continue
        default = (spec or {}).get("default")
        if default is not None:
            resolved[name] = _evaluate(str(default), {"github": github})
    # The runner passes undeclared inputs too (with a warning); keep them.
    resolved.update({k: "" if v is None else str(v) for k, v in given.items()})
    return resolved


# ---------------------------------------------------------------------------------------------------------
# the GitHub environment


def _git_head(workspace: Path) -> str:
    proc = subprocess.run(
        ["git", "-c", f"safe.directory={workspace}", "-C", str(workspace), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else "0" * 40


def github_environment(
    event_name: str, event: dict[str, Any], workspace: Path, files: dict[str, str]
) -> dict[str, str]:
    """The variables the runner sets for a step, with paths as the container sees them."""
    repo = (event.get("repository") or {}).get("full_name") or "octo-org/octo-repo"
    owner, _, name = repo.partition("/")
    sender = (event.get("sender") or {}).get("login") or "octocat"
    sha = _git_head(workspace)
    ref = "refs/heads/main"
    env: dict[str, str] = {}
    pr = event.get("pull_request")
    if event_name in ("pull_request", "pull_request_target") and pr:
        env["GITHUB_HEAD_REF"] = (pr.get("head") or {}).get("ref", "")
        env["GITHUB_BASE_REF"] = (pr.get("base") or {}).get("ref", "")
        if event_name == "pull_request":
            ref = f"refs/pull/{event.get('number', pr.get('number', 1))}/merge"
        else:
            ref = "refs/heads/" + env["GITHUB_BASE_REF"]
    elif event_name == "push":
        ref = event.get("ref") or ref
        sha = event.get("after") or sha
    elif event_name == "workflow_run":
        ref = "refs/heads/" + ((event.get("repository") or {}).get("default_branch") or "main")
    elif "ref" in event and isinstance(event["ref"], str):
        ref = event["ref"] if event["ref"].startswith("refs/") else f"refs/heads/{event['ref']}"
    ref_name = ref.split("/", 2)[2] if ref.count("/") >= 2 else ref
    env.update(
        {
            "HOME": "/github/home",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_ACTION": "__octo-org_bolt",
            "GITHUB_ACTION_PATH": "",
            "GITHUB_ACTION_REPOSITORY": "",
            "GITHUB_ACTOR": sender,
            "GITHUB_ACTOR_ID": "1",
            "GITHUB_API_URL": "https://api.github.com",
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": "/github/workflow/event.json",
            "GITHUB_GRAPHQL_URL": "https://api.github.com/graphql",
            "GITHUB_JOB": "bolt",
            "GITHUB_REF": ref,
            "GITHUB_REF_NAME": ref_name,
            "GITHUB_REF_PROTECTED": "false",
            "GITHUB_REF_TYPE": "tag" if ref.startswith("refs/tags/") else "branch",
            "GITHUB_REPOSITORY": repo,
            "GITHUB_REPOSITORY_ID": str((event.get("repository") or {}).get("id", 1)),
            "GITHUB_REPOSITORY_OWNER": owner,
            "GITHUB_REPOSITORY_OWNER_ID": "1",
            "GITHUB_RETENTION_DAYS": "90",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_RUN_NUMBER": "7",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_SHA": sha,
            "GITHUB_TRIGGERING_ACTOR": sender,
            "GITHUB_WORKFLOW": "bolt",
            "GITHUB_WORKFLOW_REF": f"{repo}/.github/workflows/bolt.yml@{ref}",
            "GITHUB_WORKFLOW_SHA": sha,
            "GITHUB_WORKSPACE": "/github/workspace",
            "GITHUB_OUTPUT": files["output"],
            "GITHUB_STEP_SUMMARY": files["summary"],
            "GITHUB_ENV": files["env"],
            "GITHUB_PATH": files["path"],
            "GITHUB_STATE": files["state"],
            "RUNNER_ARCH": "X64",
            "RUNNER_ENVIRONMENT": "github-hosted",
            "RUNNER_NAME": "GitHub Actions 1",
            "RUNNER_OS": "Linux",
            # Not under a mount, so the runner leaves the host path: it does not exist in the container.
            "RUNNER_TEMP": HOST_TEMP,
            "RUNNER_TOOL_CACHE": "/opt/hostedtoolcache",
            "RUNNER_WORKSPACE": f"/home/runner/work/{name or 'repo'}",
        }
    )
    return env


# ---------------------------------------------------------------------------------------------------------
# file commands


def parse_key_values(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV syntax: `name=value` lines and `name<<DELIM` ... `DELIM` blocks."""
    result: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        heredoc = re.match(r"^([^=<]+)<<(.+)$", line)
        eq = line.find("=")
        if heredoc and (eq < 0 or line.find("<<") < eq):
            key, delim = heredoc.group(1), heredoc.group(2)
            body: list[str] = []
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ValueError(f"matching delimiter {delim!r} not found for {key!r}")
            i += 1
            result[key] = "\n".join(body)
        elif eq > 0:
            result[line[:eq]] = line[eq + 1 :]
        else:
            raise ValueError(f"invalid format {line!r}")
    return result


# ---------------------------------------------------------------------------------------------------------
# running


def run_action_container(
    image: str = DEFAULT_IMAGE,
    workspace: Path | None = None,
    event_name: str = "workflow_dispatch",
    event: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    *,
    entrypoint: str | None = None,
    apply_defaults: bool = True,
    workspace_owner: int | None = RUNNER_UID,
    network: str = "host",
    timeout: float = 1800,
    token: str = "ghs_bolt_test_token",
    runner_temp: Path | None = None,
) -> ContainerRun:
    """Run `image` as the runner runs a container action of this repository's action.yml.

    workspace: host directory mounted on /github/workspace (the working directory); chowned recursively to
        `workspace_owner` (the runner's uid 1001; None leaves it alone). A fresh empty one when None.
    event: the webhook payload, written to /github/workflow/event.json.
    inputs: the workflow's `with:` (kebab-case names as in action.yml); action.yml's defaults complete them
        unless apply_defaults is False; `${{ github.token }}` becomes `token`.
    env: extra or overriding variables (e.g. GITHUB_API_URL of a local server, GITHUB_SHA).
    args: the container's arguments; None means action.yml's `runs.args` evaluated against the inputs.
    entrypoint: replaces the image's ENTRYPOINT (None: action.yml's `runs.entrypoint`, else the image's).
    network: podman network mode; "host" lets the container reach servers on 127.0.0.1.
    runner_temp: host directory for the runner's _github_home, _github_workflow and _runner_file_commands
        (pass a pytest tmp_path); a new temporary directory when None, left for the caller
        (ContainerRun.runner_temp, ContainerRun.home).
    """
    event = event or {}
    action = load_action()
    runs = action.get("runs") or {}

    if runner_temp is None:
        temp = Path(tempfile.mkdtemp(prefix="bolt-runner-temp-"))
    else:
        temp = runner_temp
        temp.mkdir(parents=True, exist_ok=True)
    if workspace is None:
        workspace = temp / "_workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    workspace = workspace.resolve()
    home = temp / "_github_home"
    workflow = temp / "_github_workflow"
    file_commands = temp / "_runner_file_commands"
    for d in (home, workflow, file_commands):
        d.mkdir()
    guid = str(uuid.uuid4())
    names = {
        "output": f"set_output_{guid}",
        "summary": f"step_summary_{guid}",
        "env": f"set_env_{guid}",
        "path": f"add_path_{guid}",
        "state": f"save_state_{guid}",
    }
    for filename in names.values():
        (file_commands / filename).touch()
    (workflow / "event.json").write_text(json.dumps(event, indent=2), encoding="utf-8")
    if workspace_owner is not None:
        for d in (temp, home, workflow, file_commands):
            os.chown(d, workspace_owner, workspace_owner)
        for filename in names.values():
            os.chown(file_commands / filename, workspace_owner, workspace_owner)
        os.chown(workflow / "event.json", workspace_owner, workspace_owner)
        _chown_tree(workspace, workspace_owner)

    container_env = github_environment(
        event_name, event, workspace, {k: f"/github/file_commands/{v}" for k, v in names.items()}
    )
    github_ctx = {"token": token, "event_name": event_name, "repository": container_env["GITHUB_REPOSITORY"]}
    resolved = resolve_inputs(inputs or {}, action, github_ctx) if apply_defaults else dict(inputs or {})
    for name, value in resolved.items():
        container_env[input_env_name(name)] = value
    container_env.update(env or {})

    if args is None:
        args = [_evaluate(str(a), {"inputs": resolved, "github": github_ctx}) for a in runs.get("args") or []]
    if entrypoint is None:
        entrypoint = runs.get("entrypoint") or None

    cmd = [
        "podman",
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        network,
        "--workdir",
        "/github/workspace",
        *[f"--ulimit={u}" for u in ULIMITS],
    ]
    # As the runner does: `-e NAME`, the value taken from the environment of the docker (here podman) process.
    for name in container_env:
        cmd += ["-e", name]
    cmd += [
        "-v",
        f"{home}:/github/home",
        "-v",
        f"{workflow}:/github/workflow",
        "-v",
        f"{file_commands}:/github/file_commands",
        "-v",
        f"{workspace}:/github/workspace",
    ]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    cmd += [image, *args]

    process_env = {k: v for k, v in os.environ.items() if k not in container_env}
    process_env.update(container_env)
    try:
        proc = subprocess.run(cmd, env=process_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"container did not finish within {timeout} s: {' '.join(cmd)}") from exc

    def read(kind: str) -> str:
        return (file_commands / names[kind]).read_text(encoding="utf-8", errors="replace")

    run = ContainerRun(
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
        outputs=parse_key_values(read("output")),
        summary=read("summary"),
        env=container_env,
        command=cmd,
        runner_temp=temp,
        exported_env=parse_key_values(read("env")),
        added_path=[line for line in read("path").splitlines() if line.strip()],
    )
    return run


def _chown_tree(path: Path, uid: int) -> None:
    os.chown(path, uid, uid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for entry in dirnames + filenames:
            os.chown(os.path.join(dirpath, entry), uid, uid, follow_symlinks=False)
