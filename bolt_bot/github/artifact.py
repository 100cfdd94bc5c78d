"""A results directory from an unprivileged run (fork pull requests), checked without running any of its code."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from bolt_bot.errors import BoltError
from bolt_bot.model import Results

# An artifact from an unprivileged run is untrusted: no file in it may be larger than this.
MAX_ARTIFACT_FILE = 8 * 1024 * 1024
MAX_PR_JSON = 64 * 1024
SHA = re.compile(r"^[0-9a-f]{40}$")


def refuse(reason: str) -> BoltError:
    return BoltError(f"refusing to publish the artifact: {reason}")


def read_small(path: Path, limit: int) -> str:
    size = path.lstat().st_size
    if size > limit:
        raise refuse(f"{path.name} is {size} bytes (at most {limit} allowed)")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise refuse(f"{path.name} grew beyond {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse(f"{path.name} is not UTF-8 text") from None


def check_tree(folder: Path, max_file: int = MAX_ARTIFACT_FILE) -> None:
    """Refuse a downloaded directory holding symbolic links, paths that escape it, or files beyond the bound."""
    if folder.is_symlink():
        raise refuse(f"{folder.name} is a symbolic link")
    if not folder.is_dir():
        raise refuse(f"{folder} does not exist (did actions/download-artifact run with this path?)")
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(folder)
            if path.is_symlink():
                raise refuse(f"{rel} is a symbolic link (to {os.readlink(path)!r})")
            if not path.resolve().is_relative_to(root):
                raise refuse(f"{rel} lies outside the results directory")
            if path.is_file() and path.lstat().st_size > max_file:
                raise refuse(f"{rel} is {path.lstat().st_size} bytes (at most {max_file} allowed)")


def validate_artifact(folder: Path, max_file: int = MAX_ARTIFACT_FILE) -> tuple[Results, dict[str, Any]]:
    """results.json and pr.json of a downloaded results directory, refusing symlinks, escapes and big files."""
    check_tree(folder, max_file)
    for required in ("results.json", "pr.json"):
        if not (folder / required).is_file():
            raise refuse(f"{required} is missing from {folder.name}/")
    read_small(folder / "results.json", max_file)  # refuses a file that grew past the limit
    try:
        # The same reader as everywhere: it refuses NaN, deep nesting and every malformed field in one line.
        results = Results.read(folder / "results.json")
    except BoltError as exc:
        raise refuse(str(exc)) from None
    try:
        pr_info = json.loads(read_small(folder / "pr.json", MAX_PR_JSON))
    except (ValueError, RecursionError) as exc:
        raise refuse(f"pr.json is not valid JSON ({' '.join(str(exc).split())[:120]})") from None
    number = pr_info.get("number") if isinstance(pr_info, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise refuse(f"pr.json holds no valid pull request number ({number!r})")
    if not SHA.match(str(pr_info.get("head_sha") or "")):
        raise refuse("pr.json holds no valid head_sha")
    if not SHA.match(str(results.head.sha or "")):
        raise refuse("results.json holds no valid head sha")
    return results, pr_info
