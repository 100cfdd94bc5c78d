"""`bolt demo`: Bolt's main job on the bundled example pipeline, in a throwaway git repository."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from bolt_bot.errors import BoltError
from bolt_bot.model import Results
from bolt_bot.progress import Progress
from bolt_bot.pipeline import execute, make_plan


def examples_dir() -> Path:
    """examples/ inside the installed wheel, or at the project root in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "examples", here.parent / "examples"):
        if (candidate / "pipeline" / "pyproject.toml").is_file():
            return candidate
    raise BoltError("the example project is missing from this installation (reinstall bolt-bot)")


def _git(repo: Path, *args: str) -> None:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BoltError(f"demo: git {args[0]} failed: {' '.join(proc.stderr.split())}")


def make_demo_repo(where: Path) -> Path:
    """The example committed on main, and a branch that slows `parse` and speeds up `aggregate`."""
    examples = examples_dir()
    repo = where / "example-pipeline"
    shutil.copytree(examples / "pipeline", repo, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".benchmarks"))
    _git(repo, "init", "--quiet", "--initial-branch=main")
    for key, value in (("user.name", "Bolt demo"), ("user.email", "demo@bolt.invalid"), ("commit.gpgsign", "false")):
        _git(repo, "config", key, value)
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "Example pipeline")
    _git(repo, "checkout", "--quiet", "-b", "faster-aggregate")
    _git(repo, "apply", str(examples / "demo-change.patch"))
    _git(repo, "commit", "--quiet", "-am", "Aggregate with local sums; clean city names while parsing")
    return repo


def run_demo(out: Path, overrides: dict, progress: Progress | None = None, keep: bool = False) -> Results:
    where = Path(tempfile.mkdtemp(prefix="bolt-demo-"))
    try:
        repo = make_demo_repo(where)
        plan = make_plan(repo, "main", "faster-aggregate", overrides)
        return execute(plan, out, progress)
    finally:
        if not keep:
            shutil.rmtree(where, ignore_errors=True)
