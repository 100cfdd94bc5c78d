"""The Action's merge mode: the shards' results directories found, checked as untrusted files, and merged once."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from bolt_bot.decide.merge import merge_dirs
from bolt_bot.errors import BoltError
from bolt_bot.github.artifact import MAX_PR_JSON, check_tree, read_small
from bolt_bot.model import Results


def shard_dirs(workspace: Path, merge_from: str | None, out: Path) -> list[Path]:
    """The directories the `merge-from` input names: globs relative to the workspace, separated by spaces
    (`bolt-shards/*`, as actions/download-artifact lays them out), without the output directory itself."""
    patterns = shlex.split(merge_from or "")
    if not patterns:
        raise BoltError("mode: merge needs the merge-from input: the shards' results directories, e.g. bolt-shards/*")
    found: set[Path] = set()
    for pattern in patterns:
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise BoltError(f"merge-from {pattern!r}: give paths inside the workspace, relative to it")
        found.update(p for p in workspace.glob(pattern) if p.is_dir() and not p.is_symlink())
    dirs = sorted(p for p in found if p.resolve() != out.resolve())
    if not dirs:
        raise BoltError(f"merge-from {merge_from!r} matched no directory in {workspace} "
                        "(did actions/download-artifact run with this path?)")
    return dirs


def shared_pr(dirs: list[Path]) -> dict[str, Any] | None:
    """The pull request every shard's pr.json names (the same in all, or none has one)."""
    seen: dict[str, Any] | None = None
    for folder in dirs:
        path = folder / "pr.json"
        if not path.is_file():
            continue
        try:
            info = json.loads(read_small(path, MAX_PR_JSON))
        except (ValueError, RecursionError):
            raise BoltError(f"{path} is not valid JSON") from None
        if not isinstance(info, dict):
            raise BoltError(f"{path} is not a JSON object")
        key = {k: info.get(k) for k in ("number", "head_sha", "repository")}
        if seen is not None and key != seen:
            raise BoltError(f"{path} names pull request #{key['number']} at {str(key['head_sha'])[:7]}, another shard "
                            f"#{seen['number']} at {str(seen['head_sha'])[:7]}: shards of different runs")
        seen = key
    return seen


def merge_shards(workspace: Path, merge_from: str | None, out: Path) -> tuple[Results, dict[str, Any] | None]:
    """Merge the shards (each checked like an artifact first: no symbolic links, no file beyond the size bound)."""
    dirs = shard_dirs(workspace, merge_from, out)
    for folder in dirs:
        check_tree(folder)
    pr_info = shared_pr(dirs)
    return merge_dirs(dirs, out), pr_info
