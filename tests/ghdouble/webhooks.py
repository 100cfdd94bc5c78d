"""Real webhook payloads from npm ``@octokit/webhooks-examples`` (``api.github.com/index.json``),
adapted to a test's repository, PR, shas and users.

    event = load_event("issue_comment", "created", repo="octo-org/bolt-demo", number=7,
                       on_pr=True, commenter="maintainer", body="/bolt run")
    path = write_event(tmp_path, event)          # for GITHUB_EVENT_PATH

None of the upstream ``issue_comment`` examples is on a pull request; ``on_pr=True`` adds the
``issue.pull_request`` object GitHub sends for PR comments. Payloads can be checked against
``@octokit/webhooks-schemas`` (``schema.json``) with :func:`validate_event` (needs ``jsonschema``).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

from .spec import NODE_MODULES

EXAMPLES_INDEX = NODE_MODULES / "@octokit" / "webhooks-examples" / "api.github.com" / "index.json"
SCHEMA_FILE = NODE_MODULES / "@octokit" / "webhooks-schemas" / "schema.json"
_API = "https://api.github.com"
_WEB = "https://github.com"


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, list[dict[str, Any]]]:
    if not EXAMPLES_INDEX.exists():
        raise FileNotFoundError(f"{EXAMPLES_INDEX} is missing: run .ci/install-node")
    data = json.loads(EXAMPLES_INDEX.read_text(encoding="utf-8"))
    return {entry["name"]: entry["examples"] for entry in data}


def events() -> dict[str, list[str | None]]:
    """Event name -> the actions of its examples (in order; ``None`` for action-less events)."""
    return {name: [ex.get("action") for ex in examples] for name, examples in _index().items()}


def example(event: str, action: str | None = None, index: int | None = None) -> dict[str, Any]:
    """A deep copy of the ``index``-th example of ``event`` with ``action`` (any action if None).

    ``index=None``: the first one that passes ``@octokit/webhooks-schemas`` (some older examples
    miss fields the schema requires, e.g. the first issue_comment lacks ``active_lock_reason``)."""
    try:
        examples = _index()[event]
    except KeyError:
        raise KeyError(f"no webhook examples for {event!r}") from None
    matching = [ex for ex in examples if action is None or ex.get("action") == action]
    if not matching:
        raise KeyError(f"no {event!r} example with action {action!r}: "
                       f"{sorted({str(ex.get('action')) for ex in examples})}")
    if index is None:
        index = _first_valid(event, action, len(matching))
    return copy.deepcopy(matching[index])


@functools.lru_cache(maxsize=None)
def _first_valid(event: str, action: str | None, count: int) -> int:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover
        return 0
    for i in range(count):
        try:
            validate_event(event, example(event, action, i))
            return i
        except (jsonschema.ValidationError, KeyError):
            continue
    return 0


def _replace_strings(node: Any, old: str, new: str) -> Any:
    if isinstance(node, str):
        return node.replace(old, new)
    if isinstance(node, dict):
        return {k: _replace_strings(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_strings(v, old, new) for v in node]
    return node


def _renumber(node: Any, old: int, new: int) -> Any:
    """Rewrite ``/pulls/OLD``, ``/issues/OLD``, ``/pull/OLD`` in URLs (whole segment only)."""
    if isinstance(node, str):
        return re.sub(rf"/(pulls|issues|pull)/{old}(?=$|[/#.{{?])", rf"/\g<1>/{new}", node)
    if isinstance(node, dict):
        return {k: _renumber(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_renumber(v, old, new) for v in node]
    return node


def _set_login(user: dict[str, Any] | None, login: str) -> None:
    if not isinstance(user, dict):
        return
    old = user.get("login")
    for key, value in list(user.items()):
        if isinstance(value, str) and old and f"/{old}" in value:
            user[key] = value.replace(f"/{old}", f"/{login}")
    user["login"] = login


def load_event(event: str, action: str | None = None, *, index: int | None = None,
               repo: str | None = None, number: int | None = None,
               head_sha: str | None = None, base_sha: str | None = None,
               head_ref: str | None = None, base_ref: str | None = None,
               sender: str | None = None, commenter: str | None = None,
               body: str | None = None, on_pr: bool | None = None,
               author_association: str | None = None,
               pull_requests: list[dict[str, Any]] | None = None,
               run_id: int | None = None, run_event: str | None = None,
               conclusion: str | None = None, api_url: str | None = None,
               html_url: str | None = None) -> dict[str, Any]:
    """An example payload adapted to the test. Every argument left ``None`` keeps the example's
    value.

    - ``repo``: "owner/name": rewritten everywhere (full_name, name, owner.login, all URLs);
    - ``number``: the PR/issue number (``number``, ``pull_request.number``, ``issue.number``, URLs);
    - ``head_sha``/``base_sha``/``head_ref``/``base_ref``: of ``pull_request`` (and ``after`` for
      synchronize), or ``workflow_run.head_sha``/``head_branch``;
    - ``sender``: ``sender.login``; ``commenter``: ``comment.user.login`` (and sender);
    - ``body``: ``comment.body``; ``author_association``: the comment's;
    - ``on_pr``: for ``issue_comment``, add (True) or remove (False) ``issue.pull_request``;
    - ``pull_requests``/``run_id``/``run_event``/``conclusion``: of ``workflow_run``
      (``pull_requests=[]`` is what GitHub sends for runs of fork PRs);
    - ``api_url``/``html_url``: replace ``https://api.github.com`` / ``https://github.com``
      (e.g. with the double's URL, for code that follows URLs found in the event).
    """
    payload = example(event, action, index)
    old_repo = (payload.get("repository") or {}).get("full_name")
    if repo and old_repo and repo != old_repo:
        old_owner, old_name = old_repo.split("/", 1)
        new_owner, new_name = repo.split("/", 1)
        payload = _replace_strings(payload, f"/{old_repo}", f"/{repo}")
        payload = _replace_strings(payload, f":{old_repo}", f":{repo}")  # git@github.com:o/r.git

        def fix_repo(r: Any) -> None:
            if isinstance(r, dict) and r.get("full_name") == old_repo:
                r["full_name"], r["name"] = repo, new_name
                if isinstance(r.get("owner"), dict) and r["owner"].get("login") == old_owner:
                    _set_login(r["owner"], new_owner)

        fix_repo(payload.get("repository"))
        for side in ("head", "base"):
            fix_repo(((payload.get("pull_request") or {}).get(side) or {}).get("repo"))
        wr = payload.get("workflow_run") or {}
        fix_repo(wr.get("repository"))
        fix_repo(wr.get("head_repository"))
        if isinstance(payload.get("organization"), dict) and payload["organization"].get("login") == old_owner:
            payload["organization"]["login"] = new_owner

    pr = payload.get("pull_request")
    issue = payload.get("issue")
    if number is not None:
        old_numbers = {h["number"] for h in (payload, pr, issue) if isinstance(h, dict) and "number" in h}
        for old in old_numbers:
            payload = _renumber(payload, old, number)
        pr = payload.get("pull_request")
        issue = payload.get("issue")
        for holder in (payload, pr, issue):
            if isinstance(holder, dict) and "number" in holder:
                holder["number"] = number

    if isinstance(pr, dict):
        for side, sha, ref in (("head", head_sha, head_ref), ("base", base_sha, base_ref)):
            if sha is not None:
                pr[side]["sha"] = sha
            if ref is not None:
                pr[side]["ref"] = ref
                owner = pr[side].get("label", ":").split(":")[0]
                pr[side]["label"] = f"{owner}:{ref}"
        if head_sha is not None and "after" in payload:
            payload["after"] = head_sha

    wr = payload.get("workflow_run")
    if isinstance(wr, dict):
        if head_sha is not None:
            wr["head_sha"] = head_sha
            if isinstance(wr.get("head_commit"), dict):
                wr["head_commit"]["id"] = head_sha
        if head_ref is not None:
            wr["head_branch"] = head_ref
        if pull_requests is not None:
            wr["pull_requests"] = pull_requests
        if run_id is not None:
            old_id = wr["id"]
            wr["id"] = run_id
            for key, value in list(wr.items()):
                if isinstance(value, str):
                    wr[key] = value.replace(f"/runs/{old_id}", f"/runs/{run_id}")
        if run_event is not None:
            wr["event"] = run_event
        if conclusion is not None:
            wr["conclusion"] = conclusion

    comment = payload.get("comment")
    if isinstance(comment, dict):
        if commenter is not None:
            _set_login(comment.get("user"), commenter)
            sender = sender or commenter
        if body is not None:
            comment["body"] = body
        if author_association is not None:
            comment["author_association"] = author_association
    if sender is not None:
        _set_login(payload.get("sender"), sender)

    if isinstance(issue, dict) and on_pr is not None:
        if on_pr:
            base = issue["url"].replace("/issues/", "/pulls/")
            html = issue["html_url"].replace("/issues/", "/pull/")
            issue["pull_request"] = {"url": base, "html_url": html, "diff_url": f"{html}.diff",
                                     "patch_url": f"{html}.patch", "merged_at": None}
            issue["html_url"] = html
            if isinstance(comment, dict) and "html_url" in comment:
                comment["html_url"] = comment["html_url"].replace("/issues/", "/pull/")
        else:
            issue.pop("pull_request", None)

    if api_url:
        payload = _replace_strings(payload, _API, api_url.rstrip("/"))
    if html_url:
        payload = _replace_strings(payload, _WEB + "/", html_url.rstrip("/") + "/")
    return payload


def write_event(directory: Path, payload: dict[str, Any], name: str = "event.json") -> Path:
    """Write a payload where ``GITHUB_EVENT_PATH`` can point to."""
    path = Path(directory) / name
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def validate_event(event: str, payload: dict[str, Any]) -> None:
    """Validate ``payload`` against ``@octokit/webhooks-schemas`` for ``event`` (and its action).
    Raises ``jsonschema.ValidationError``."""
    import jsonschema

    schema = _schema()
    action = payload.get("action")
    names = [n for n in schema.get("definitions", {})
             if n == f"{event}$event" or (action and n == f"{event}${action}")]
    if not names:
        raise KeyError(f"no schema for {event}/{action}")
    sub = {**schema, "$ref": f"#/definitions/{names[-1]}"}
    sub.pop("oneOf", None)
    sub.pop("anyOf", None)
    jsonschema.Draft7Validator(sub).validate(payload)
