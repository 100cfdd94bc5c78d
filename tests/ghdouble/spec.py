"""The subset of GitHub's OpenAPI description that prism validates Bolt's exchanges against.

GitHub's full description (npm ``@octokit/openapi``, ``generated/api.github.com.json``, 13 MB and
800+ paths) makes prism start in ~10 s and use 300-400 MB. Bolt uses a handful of endpoints, so we
keep only those operations (:data:`OPERATIONS`, exactly the methods the double serves) plus the
transitive closure of the ``$ref``s they reach into ``components``. Media-type ``examples`` are
dropped: prism's proxy mode never serves them and some of GitHub's own examples fail its schemas.

The subset is cached under ``<repo>/.cache/ghdouble/`` keyed by the openapi package's version and a
hash of :data:`OPERATIONS`, so a bump of either rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = REPO_ROOT / ".ci" / "node"
NODE_MODULES = NODE_DIR / "node_modules"
OPENAPI_PACKAGE = NODE_MODULES / "@octokit" / "openapi"
OPENAPI_FILE = OPENAPI_PACKAGE / "generated" / "api.github.com.json"
CACHE_DIR = REPO_ROOT / ".cache" / "ghdouble"

# (spec path, methods): every operation the double serves, and nothing else. A request prism
# cannot match to one of these is reported as a violation, so a new endpoint in bolt_bot/github/client.py
# needs an entry here and a handler in server.py.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "/user": ("get",),
    "/rate_limit": ("get",),
    "/repos/{owner}/{repo}": ("get",),
    "/repos/{owner}/{repo}/pulls/{pull_number}": ("get",),
    "/repos/{owner}/{repo}/issues/{issue_number}": ("get",),
    "/repos/{owner}/{repo}/issues/{issue_number}/comments": ("get", "post"),
    "/repos/{owner}/{repo}/issues/comments/{comment_id}": ("get", "patch", "delete"),
    "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": ("get", "post"),
    "/repos/{owner}/{repo}/issues/{issue_number}/labels": ("get", "post", "put"),
    "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}": ("delete",),
    "/repos/{owner}/{repo}/statuses/{sha}": ("post",),
    "/repos/{owner}/{repo}/commits/{ref}": ("get",),
    "/repos/{owner}/{repo}/commits/{ref}/statuses": ("get",),
    "/repos/{owner}/{repo}/commits/{ref}/status": ("get",),
    "/repos/{owner}/{repo}/check-runs": ("post",),
    "/repos/{owner}/{repo}/check-runs/{check_run_id}": ("get", "patch"),
    "/repos/{owner}/{repo}/commits/{ref}/check-runs": ("get",),
    "/repos/{owner}/{repo}/collaborators/{username}/permission": ("get",),
    "/repos/{owner}/{repo}/actions/runs/{run_id}": ("get",),
}

_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def openapi_version() -> str:
    """Version of the installed ``@octokit/openapi`` package."""
    meta = json.loads((OPENAPI_PACKAGE / "package.json").read_text(encoding="utf-8"))
    return str(meta["version"])


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _drop_examples(operation: dict[str, Any]) -> None:
    """Remove media-type/parameter ``examples`` (not schema keywords) from one operation."""
    for param in operation.get("parameters", []):
        if isinstance(param, dict):
            param.pop("examples", None)
            param.pop("example", None)
    body = operation.get("requestBody")
    if isinstance(body, dict):
        for media in body.get("content", {}).values():
            media.pop("examples", None)
            media.pop("example", None)
    for response in operation.get("responses", {}).values():
        if isinstance(response, dict):
            for media in response.get("content", {}).values():
                media.pop("examples", None)
                media.pop("example", None)
            for header in response.get("headers", {}).values():
                if isinstance(header, dict):
                    header.pop("example", None)


def build_subset(full: dict[str, Any], operations: dict[str, tuple[str, ...]] = OPERATIONS) -> dict[str, Any]:
    """Return a valid OpenAPI document with only ``operations`` and the components they reach."""
    paths: dict[str, Any] = {}
    for path, methods in operations.items():
        item = full["paths"].get(path)
        if item is None:
            raise KeyError(f"{path} is not in GitHub's OpenAPI description")
        kept: dict[str, Any] = {}
        for key, value in item.items():
            if key in _HTTP_METHODS:
                if key in methods:
                    op = json.loads(json.dumps(value))
                    _drop_examples(op)
                    kept[key] = op
            else:
                kept[key] = value  # path-level parameters, summary, ...
        missing = set(methods) - set(kept)
        if missing:
            raise KeyError(f"{path} has no {sorted(missing)} operation in GitHub's OpenAPI description")
        paths[path] = kept

    components: dict[str, dict[str, Any]] = {}
    pending = list(_refs(paths))
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        if not ref.startswith("#/components/"):
            raise ValueError(f"unsupported $ref {ref!r}")
        _, _, section, name = ref.split("/", 3)
        target = full["components"][section][name]
        components.setdefault(section, {})[name] = target
        pending.extend(_refs(target))

    return {
        "openapi": full["openapi"],
        "info": {**full["info"], "title": full["info"].get("title", "GitHub") + " (Bolt subset)"},
        "servers": full.get("servers", []),
        "paths": paths,
        "components": {k: dict(sorted(v.items())) for k, v in sorted(components.items())},
    }


def subset_path(cache_dir: Path | None = None) -> Path:
    """Path of the cached subset, building it first if needed. Needs ``npm ci --prefix .ci/node``."""
    if not OPENAPI_FILE.exists():
        raise FileNotFoundError(
            f"{OPENAPI_FILE} is missing: run .ci/install-node (npm ci --prefix .ci/node)"
        )
    cache_dir = cache_dir or CACHE_DIR
    key = hashlib.sha256(json.dumps(OPERATIONS, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_dir / f"github-openapi-{openapi_version()}-{key}.json"
    if target.exists():
        return target
    full = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    subset = build_subset(full)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(subset, indent=1, sort_keys=False), encoding="utf-8")
    os.replace(tmp, target)  # atomic: parallel test workers never read half a file
    return target


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.ghdouble.spec
    print(subset_path())
