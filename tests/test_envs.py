"""Environments: reused after `uv sync` with Bolt's packages in place, a cache key that sees every install
input, parallel runs that never delete each other's environment, the Python kept as chosen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bolt_bot.measure import envs, pythons
from bolt_bot.cli import main
from bolt_bot.measure.counts import codspeed_requirement
from tests.conftest import commit, make_repo

UV = envs.uv_binary()
needs_uv = pytest.mark.skipif(UV is None, reason="uv is not installed")
THIS_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
BOLT_PACKAGES = [*envs.BENCH_REQUIREMENTS, codspeed_requirement()]

PYPROJECT = """\
[project]
name = "tiny"
version = "0.1"
requires-python = ">=3.9"
dependencies = ["six"]

[tool.uv]
package = false
"""
BENCH = """\
import six

def test_join(benchmark):
    benchmark(lambda: "".join(six.text_type(i) for i in range(50)))
"""


def tiny_files(python_version: str | None = None) -> dict[str, str]:
    files = {"pyproject.toml": PYPROJECT, "bench/test_tiny.py": BENCH}
    if python_version:
        files[".python-version"] = f"{python_version}\n"
    return files


def lock(project: Path) -> None:
    """`uv lock` as the project's maintainers would run it (PyPI is reachable; the lock is for six only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    subprocess.run([UV, "lock", "--quiet"], cwd=project, env=env, check=True, capture_output=True, timeout=300)


def tiny_project(where: Path, python_version: str | None = None) -> Path:
    where.mkdir(parents=True)
    for name, text in tiny_files(python_version).items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(text)
    lock(where)
    return where


def missing(env: envs.Env, *modules: str) -> list[str]:
    code = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    out = subprocess.run([str(env.python), "-c", code, *modules], capture_output=True, text=True, check=True).stdout
    return out.split()


def minor(env: envs.Env) -> str:
    return subprocess.run([str(env.python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def other_python(scratch: Path) -> tuple[str, str]:
    """A Python minor version, and its interpreter, that uv finds for a project declaring it, besides the one
    running the tests (looked up from a folder with that `.python-version`, as pyenv's shims need)."""
    for candidate in ("3.12", "3.11", "3.13", "3.10"):
        probe = scratch / f"probe-{candidate}"
        probe.mkdir(parents=True)
        (probe / ".python-version").write_text(candidate + "\n")
        if candidate != THIS_MINOR and (found := pythons.find_python(candidate, UV, probe)):
            return candidate, found
    pytest.skip("no second Python version for uv to find")


# -- the cache key ---------------------------------------------------------------------------------------

def test_key_changes_with_every_install_input(tmp_path):
    project = tmp_path / "p"
    files = {
        "pyproject.toml": PYPROJECT, "uv.lock": "version = 1\n", "poetry.lock": "# x\n", ".python-version": "3.11\n",
        "ci/bench.txt": "-c constraints/pins.txt\nsix\n", "ci/constraints/pins.txt": "six==1.16.0\n",
        "ci/other.txt": "attrs\n", "requirements-dev.txt": "pytest\n", "README.md": "hello\n",
    }
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    spec = envs.EnvSpec(install="pip install -r ci/bench.txt --constraint=ci/other.txt && pip install -e .",
                        requirements=list(BOLT_PACKAGES))
    assert envs.dependency_files(project, spec.install) == [
        ".python-version", "ci/bench.txt", "ci/constraints/pins.txt", "ci/other.txt", "poetry.lock", "pyproject.toml",
        "requirements-dev.txt", "uv.lock"]
    first = spec.key(project)
    (project / "README.md").write_text("changed\n")
    assert spec.key(project) == first, "a file no install reads leaves the key alone"
    keys = [first]

    def changed(what: str) -> None:
        keys.append(spec.key(project))
        assert keys[-1] not in keys[:-1], f"{what} left the key as it was"

    for name in ("uv.lock", "poetry.lock", "ci/bench.txt", "ci/constraints/pins.txt", "ci/other.txt",
                 "requirements-dev.txt", "pyproject.toml"):
        (project / name).write_text((project / name).read_text() + "# changed\n")
        changed(name)
    (project / ".python-version").write_text("3.10\n")
    changed(".python-version")
    spec.requirements = [*envs.BENCH_REQUIREMENTS, "pytest-codspeed==0.0.1"]
    changed("Bolt's pins")
    spec.python = "3.9"
    changed("--python")


@pytest.mark.parametrize("command, named", [
    ("pip install -rreqs/a.txt", ["reqs/a.txt"]),
    ("uv pip install --requirement reqs/a.txt -c 'reqs/b c.txt'", ["reqs/a.txt", "reqs/b c.txt"]),
    ("uv pip sync reqs/a.txt", ["reqs/a.txt"]),
    ("pip install -r ../outside.txt -r /etc/hostname -r missing.txt", []),
    ("pip install -r 'unbalanced", []),
])
def test_files_the_install_command_names(tmp_path, command, named):
    project = tmp_path / "p"
    (project / "reqs").mkdir(parents=True)
    for name in ("reqs/a.txt", "reqs/b c.txt"):
        (project / name).write_text("six\n")
    (tmp_path / "outside.txt").write_text("six\n")
    assert envs.dependency_files(project, command) == named


# -- real installs -------------------------------------------------------------------------------------

@pytest.mark.slow
@needs_uv
@pytest.mark.parametrize("install", ["uv sync --frozen", "uv sync --frozen --active"])
def test_uv_sync_twice_reuses_the_environment_with_bolts_packages(tmp_path, install):
    """The second run used to fail: `uv sync` removed pytest-codspeed and Bolt added it to new environments only
    (and without `--active`, uv installed into the checkout's .venv)."""
    project = tiny_project(tmp_path / "p")
    spec = envs.EnvSpec(install=install, requirements=list(BOLT_PACKAGES))
    with envs.prepare(project, spec, "base", tmp_path / "envs") as first:
        assert not first.reused
        assert missing(first, "six", "pytest", "pytest_benchmark", "pytest_codspeed") == []
        assert not (project / ".venv").exists(), "uv sync installed into Bolt's environment, not the checkout's .venv"
    with envs.prepare(project, spec, "base", tmp_path / "envs") as second:
        assert second.reused and second.path == first.path
        assert missing(second, "six", "pytest", "pytest_benchmark", "pytest_codspeed") == []
        assert "Bolt's own interpreter" in second.python_note and not second.notices


CONCURRENT = """
import json, subprocess, sys, time
from pathlib import Path
from bolt_bot.measure import envs

project, root, me, other = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
with envs.prepare(project, envs.EnvSpec(install="uv sync --frozen"), "base", root) as env:
    (env.path / f"used-by-{me}").write_text(me)
    (root / f"ready-{me}").touch()
    deadline = time.monotonic() + 180
    while not (root / f"ready-{other}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # both environments in use at once
    works = subprocess.run([str(env.python), "-c", "import six, pytest"]).returncode == 0
    users = sorted(p.name for p in env.path.glob("used-by-*"))
    print(json.dumps({"path": str(env.path), "works": works, "users": users}))
"""


@pytest.mark.slow
@needs_uv
def test_two_runs_preparing_one_key_at_once_keep_their_own_environments(tmp_path):
    project = tiny_project(tmp_path / "p")
    root = tmp_path / "envs"
    root.mkdir()
    procs = {me: subprocess.Popen([sys.executable, "-c", CONCURRENT, str(project), str(root), me, other],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me, other in (("a", "b"), ("b", "a"))}
    seen = {}
    for me, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        seen[me] = json.loads(out.strip().splitlines()[-1])
    assert seen["a"]["path"] != seen["b"]["path"], "one environment per run while both are in use"
    for me, result in seen.items():
        assert result["works"], f"{me}'s environment was broken under it"
        assert result["users"] == [f"used-by-{me}"], f"{me}'s environment was deleted or shared: {result}"
    # Both released: the next run reuses the first slot instead of building again.
    with envs.prepare(project, envs.EnvSpec(install="uv sync --frozen"), "base", root) as env:
        assert env.reused and env.path.name.endswith("-base")


@pytest.mark.slow
@needs_uv
def test_the_python_is_the_declared_one_and_uv_sync_keeps_it(tmp_path):
    other, _ = other_python(tmp_path / "probes")
    project = tiny_project(tmp_path / "p", python_version=other)
    root = tmp_path / "envs"
    # `--active` is what users wrote before: uv then replaced Bolt's Python with .python-version's.
    with envs.prepare(project, envs.EnvSpec(install="uv sync --frozen --active", python=THIS_MINOR), "base", root) as env:
        assert minor(env) == THIS_MINOR and not env.notices
        assert f"asked for with python = {THIS_MINOR}" in env.python_note
    with envs.prepare(project, envs.EnvSpec(install="uv sync --frozen"), "base", root) as env:
        assert minor(env) == other
        assert f"from the checkout's .python-version ({other})" in env.python_note and not env.notices


def bolt_run(repo: Path, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", "--quiet", "--repo", str(repo), "--base", "HEAD~1", "--head", "HEAD",
                                       "--benchmarks", "bench", "--measure", "walltime", "--rounds", "2",
                                       "--budget", "0", "--no-profile", "--out", str(out), *args])
    return result.exit_code, result.output


def tiny_repo(where: Path) -> Path:
    repo = make_repo(tiny_project(where), {})  # the base commit holds the project and its uv.lock
    commit(repo, {"bench/test_tiny.py": BENCH.replace("range(50)", "range(60)")}, "head")
    return repo


@pytest.mark.slow
@needs_uv
def test_an_install_into_another_environment_is_named_plainly(tmp_path):
    """Without Bolt's UV_PROJECT_ENVIRONMENT, `uv sync` makes the checkout's .venv; Bolt must say so."""
    repo = tiny_repo(tmp_path / "repo")
    code, output = bolt_run(repo, tmp_path / "out", "--install", "env -u UV_PROJECT_ENVIRONMENT uv sync --frozen")
    assert code == 2, output
    assert "the install command did not install into Bolt's environment (VIRTUAL_ENV=" in output
    assert "/.venv instead" in output and "Traceback" not in output


@pytest.mark.slow
@needs_uv
def test_a_python_replaced_by_the_install_command_is_said_in_results(tmp_path):
    other, interpreter = other_python(tmp_path / "probes")
    repo = tiny_repo(tmp_path / "repo")
    code, output = bolt_run(repo, tmp_path / "out", "--python", THIS_MINOR, "--install",
                            f"uv sync --frozen --python {interpreter}")
    assert code == 0, output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    replaced = [n for n in results["notices"] if "the install command replaced the Python of the" in n]
    assert len(replaced) == 2, results["notices"]  # one line per side
    assert all(f"asked for with python = {THIS_MINOR}" in line for line in replaced)
    assert set(results["environment"]["python"]) == {"base", "head"}
    assert all(note.split(",")[0].rsplit(" ", 1)[1].startswith(other + ".") for note in results["environment"]["python"].values())
    comment = (tmp_path / "out" / "comment.md").read_text()
    assert "the install command replaced the Python" in comment


def test_help_says_what_the_install_command_runs_with():
    text = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    flat = " ".join(text.split())
    for needed in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "uv sync --frozen", "pip install -r requirements.txt"):
        assert needed in flat, needed


def test_env_made_by_hand_needs_no_lock(tmp_path):
    """Callers (and tests) may build an Env themselves; releasing it is then a no-op."""
    with envs.Env(tmp_path, Path(sys.executable), True) as env:
        assert env.lock_fd is None
