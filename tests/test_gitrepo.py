"""Git plumbing on real repositories: refs, merge-base, shallow clones, worktrees that leave nothing behind."""

from __future__ import annotations

import pytest

from bolt_bot.measure import gitrepo
from bolt_bot.errors import BoltError
from tests.conftest import commit, git, make_repo


def test_merge_base_and_default_branch(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.txt": "1"})
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "--quiet", "-b", "feature")
    head = commit(repo, {"a.txt": "2"}, "feature")
    git(repo, "checkout", "--quiet", "main")
    commit(repo, {"b.txt": "main moved on"}, "main moves")
    assert gitrepo.default_branch(repo) == "main"
    assert gitrepo.merge_base(repo, gitrepo.resolve(repo, "main"), head) == base


def test_missing_ref_is_one_line(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.txt": "1"})
    with pytest.raises(BoltError) as info:
        gitrepo.resolve(repo, "no-such-branch")
    assert "no-such-branch" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(BoltError, match="not a git repository"):
        gitrepo.toplevel(tmp_path)


def test_shallow_clone_fetches_the_missing_base(tmp_path):
    origin = make_repo(tmp_path / "origin", {"a.txt": "1"})
    base = git(origin, "rev-parse", "HEAD")
    head = commit(origin, {"a.txt": "2"}, "head")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", "--depth=1", f"file://{origin}", str(clone))
    assert gitrepo.is_shallow(clone)
    assert gitrepo.try_resolve(clone, base) is None
    assert gitrepo.resolve(clone, base) == base
    assert gitrepo.resolve(clone, "HEAD") == head


def test_worktrees_have_equal_length_paths_and_vanish_even_on_error(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.txt": "1"})
    sha = git(repo, "rev-parse", "HEAD")
    status_before = git(repo, "status", "--porcelain")
    with pytest.raises(RuntimeError):
        with gitrepo.worktrees(repo, {"base": sha, "head": sha}, parent=tmp_path) as trees:
            paths = [t.path for t in trees.values()]
            assert len({len(str(p)) for p in paths}) == 1
            assert all((p / "a.txt").read_text() == "1" for p in paths)
            raise RuntimeError("crash in the middle")
    assert not any(p.exists() for p in paths)
    assert "bolt-" not in git(repo, "worktree", "list")
    assert git(repo, "status", "--porcelain") == status_before
