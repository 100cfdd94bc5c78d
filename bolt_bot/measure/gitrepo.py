"""Git for Bolt: resolving refs, the merge-base, and throwaway worktrees that never touch the user's tree."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bolt_bot.errors import BoltError


def git(repo: Path, *args: str, check: bool = True, timeout: float = 300) -> str:
    """Run git in `repo`; a failure becomes a one-line BoltError."""
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise BoltError("git is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise BoltError(f"git {' '.join(args[:2])} timed out after {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        message = " ".join(proc.stderr.split()) or f"exit code {proc.returncode}"
        raise BoltError(f"git {' '.join(args[:3])}: {message}")
    return proc.stdout.strip()


def toplevel(path: Path) -> Path:
    if not path.exists():
        raise BoltError(f"{path}: no such directory")
    out = git(path, "rev-parse", "--show-toplevel", check=False)
    if not out:
        raise BoltError(f"{path}: not a git repository")
    return Path(out)


def try_resolve(repo: Path, ref: str) -> str | None:
    out = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return out or None


def is_shallow(repo: Path) -> bool:
    return git(repo, "rev-parse", "--is-shallow-repository", check=False) == "true"


def has_remote(repo: Path, name: str = "origin") -> bool:
    return name in git(repo, "remote", check=False).split()


def resolve(repo: Path, ref: str) -> str:
    """The commit sha of `ref`, fetching it from origin when a shallow CI clone lacks it."""
    sha = try_resolve(repo, ref)
    if sha:
        return sha
    if has_remote(repo):
        proc = subprocess.run(
            ["git", "-C", str(repo), "fetch", "--no-tags", "--quiet", "origin", ref.removeprefix("origin/")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode == 0:
            sha = try_resolve(repo, ref) or try_resolve(repo, "FETCH_HEAD")
            if sha:
                return sha
    raise BoltError(
        f"{ref!r} is not a commit in {repo}"
        + (" (this clone is shallow: use fetch-depth: 0 with actions/checkout)" if is_shallow(repo) else "")
    )


def default_branch(repo: Path) -> str:
    """origin's default branch, else a local main or master."""
    head = git(repo, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False)
    if head:
        return head.removeprefix("refs/remotes/")
    for name in ("main", "master", "origin/main", "origin/master"):
        if try_resolve(repo, name):
            return name
    raise BoltError(f"{repo}: cannot tell the default branch; give --base")


def merge_base(repo: Path, a: str, b: str) -> str:
    """The merge-base of two commits, deepening a shallow clone once if needed."""
    out = git(repo, "merge-base", a, b, check=False)
    if not out and is_shallow(repo) and has_remote(repo):
        git(repo, "fetch", "--no-tags", "--quiet", "--unshallow", "origin", check=False, timeout=900)
        out = git(repo, "merge-base", a, b, check=False)
    if not out:
        raise BoltError(f"{a[:12]} and {b[:12]} have no common ancestor in {repo}")
    return out


@dataclass
class Worktree:
    path: Path
    sha: str


class _Terminated(BaseException):
    """Raised on SIGTERM so that the cleanup in `finally` blocks runs (CI cancels with SIGTERM)."""


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    def handler(signum, frame):
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    except _Terminated:
        raise BoltError("terminated (SIGTERM); temporary checkouts removed", exit_code=143) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stable_root(repo: Path, shas: dict[str, str], parent: Path | None) -> Path:
    """The same folder for the same repository and commits, so a rerun measures at the same paths.

    Instruction counts move by a few instructions with the path names the measured code sees; a name
    derived from the inputs keeps reruns identical. A folder left by a run still going (or killed)
    gets a random name instead.
    """
    digest = hashlib.sha1(f"{repo.resolve()}\0{sorted(shas.items())}".encode()).hexdigest()[:10]
    root = Path(parent or tempfile.gettempdir()) / f"bolt-{digest}"
    try:
        root.mkdir(parents=True)
        return root
    except FileExistsError:
        return Path(tempfile.mkdtemp(prefix="bolt-", dir=parent))


@contextlib.contextmanager
def worktrees(repo: Path, shas: dict[str, str], parent: Path | None = None) -> Iterator[dict[str, Worktree]]:
    """Detached worktrees named by side (paths of equal length), removed on every way out."""
    root = _stable_root(repo, shas, parent)
    created: list[Path] = []
    try:
        trees = {}
        names = {side: f"{i:02d}" for i, side in enumerate(shas)}  # equal lengths keep paths comparable
        for side, sha in shas.items():
            path = root / names[side]
            git(repo, "worktree", "add", "--detach", "--quiet", str(path), sha)
            created.append(path)
            trees[side] = Worktree(path, sha)
        yield trees
    finally:
        for path in created:
            git(repo, "worktree", "remove", "--force", str(path), check=False)
        git(repo, "worktree", "prune", check=False)
        shutil.rmtree(root, ignore_errors=True)


def uncommitted(repo: Path, paths: list[str]) -> list[str]:
    """What a run of HEAD leaves out of the working tree: tracked files that differ from HEAD (staged or not),
    and untracked files under `paths` (the benchmark paths; without any, untracked Python files anywhere).

    Bolt measures commits in worktrees of their own, so none of these reach the measured code."""
    changed = git(repo, "diff", "--name-only", "-z", "HEAD", check=False).split("\0")
    specs = [path.split("::", 1)[0] for path in paths] or ["*.py"]
    untracked = git(repo, "ls-files", "--others", "--exclude-standard", "-z", "--", *specs, check=False).split("\0")
    # An environment kept in the tree without a .gitignore holds thousands of files nobody means to commit.
    untracked = [name for name in untracked if "site-packages" not in Path(name).parts]
    return sorted({name for name in changed + untracked if name})


def file_at(repo: Path, sha: str, path: str) -> str | None:
    """A file's text at a commit, or None when it does not exist there."""
    proc = subprocess.run(["git", "-C", str(repo), "show", f"{sha}:{path}"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None
