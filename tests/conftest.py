"""Shared test set-up: the GitHub double's fixtures, a per-session environment cache, git repositories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.ghdouble.fixtures import *  # noqa: F401,F403  (gh, github_double, webhook)


@pytest.fixture(scope="session", autouse=True)
def _bolt_cache(tmp_path_factory):
    """Environments made by tests are cached for the session only, never in the user's ~/.cache."""
    if "BOLT_CACHE_DIR" not in os.environ:
        os.environ["BOLT_CACHE_DIR"] = str(tmp_path_factory.mktemp("bolt-cache"))
    # The paired wall-time size beside a counted change (about 8 s a run) is off for `bolt run` started by
    # the tests unless a test is about it (tests/test_paired_integration.py); the real projects and the
    # quickstart run with every default (they drop this variable).
    os.environ.setdefault("BOLT_WALL_SIZES", "0")
    yield


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str], branch: str = "main") -> Path:
    """A real git repository with one commit holding `files`."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", f"--initial-branch={branch}")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.invalid")
    git(path, "config", "commit.gpgsign", "false")
    commit(path, files, "base")
    return path


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")
