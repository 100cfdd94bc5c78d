"""What Bolt believes of GitHub's answers: JSON that parses, the fields Bolt reads, listings that end, bounded waits."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bolt_bot.errors import PublishError

PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
STATUS_STATES = ("error", "failure", "pending", "success")
CHECK_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class GitHubStop(PublishError):
    """A failure after which asking again cannot help, and could write twice: never retried."""

    retriable = False
    wait = 0.0
    answered = True  # the server may well have acted


class MalformedAnswer(GitHubStop):
    """GitHub (or a proxy in front of it) answered something Bolt cannot believe: stop, never guess."""


class TooManyPages(GitHubStop):
    """A listing whose `rel="next"` does not end within the bound."""


class WaitBudgetSpent(GitHubStop):
    """Rate limits and retries would make Bolt wait longer in total than it is allowed to."""


class WaitBudget:
    """The seconds one command may spend waiting for GitHub in all (rate limits, Retry-After, backoff)."""

    def __init__(self, limit: float):
        self.limit = limit
        self.spent = 0.0

    def spend(self, seconds: float, what: str = "GitHub") -> None:
        if seconds > 0 and self.spent + seconds > self.limit:
            raise WaitBudgetSpent(f"{what} asked Bolt to wait {seconds:.0f} s more after {self.spent:.0f} s of "
                                  f"waiting; the bound is {self.limit:.0f} s in all (BOLT_GITHUB_MAX_TOTAL_WAIT)")
        self.spent += max(seconds, 0.0)


# --------------------------------------------------------------------------------------------- shapes
# Each checker returns what is wrong with a parsed answer, or None. Only the fields Bolt reads are checked.


def _fields(data: Any, **wanted: Any) -> str | None:
    if not isinstance(data, dict):
        return f"{_kind(data)} instead of an object"
    for name, kind in wanted.items():
        if name not in data:
            return f"no {name!r}"
        value = data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            return f"{name!r} is {_kind(value)}"
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(type(value), type(value).__name__)


def _each(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def listing(data: Any) -> str | None:
        if not isinstance(data, list):
            return f"{_kind(data)} instead of a list"
        for i, item in enumerate(data):
            problem = check(item)
            if problem:
                return f"item {i}: {problem}"
        return None
    return listing


def _comment(data: Any) -> str | None:
    return _fields(data, id=int, body=str, html_url=str, user=(dict, type(None)))


def _listed_comment(data: Any) -> str | None:
    return _fields(data, id=int, body=(str, type(None)), user=(dict, type(None)))


def _pull(data: Any) -> str | None:
    problem = _fields(data, number=int, head=dict, base=dict, labels=list)
    return problem or _fields(data["head"], sha=str) or _each(_label)(data["labels"])


def _status(data: Any) -> str | None:
    problem = _fields(data, state=str)
    return problem or (None if data["state"] in STATUS_STATES else f"state {data['state'][:40]!r}")


def _check_run(data: Any) -> str | None:
    """A check run: its id, name, head commit, status and the App that wrote it (how Bolt finds its own)."""
    problem = _fields(data, id=int, name=str, head_sha=str, status=str, app=(dict, type(None)))
    if problem:
        return problem
    if data["status"] not in CHECK_STATUSES:
        return f"status {data['status'][:40]!r}"
    return _fields(data["app"], slug=str) if data["app"] is not None else None


def _check_runs(data: Any) -> str | None:
    problem = _fields(data, total_count=int, check_runs=list)
    return problem or _each(_check_run)(data["check_runs"])


def _permission(data: Any) -> str | None:
    problem = _fields(data, permission=str)
    return problem or (None if data["permission"] in PERMISSIONS else f"permission {data['permission'][:40]!r}")


def _label(data: Any) -> str | None:
    return _fields(data, name=str)


_REPO = r"/repos/[^/]+/[^/]+"
SHAPES: list[tuple[str, re.Pattern[str], Callable[[Any], str | None]]] = [
    (verb, re.compile(_REPO + path), check) for verb, path, check in (
        ("POST", r"/issues/\d+/comments", _comment),
        ("PATCH", r"/issues/comments/\d+", _comment),
        ("GET", r"/issues/comments/\d+", _comment),
        ("GET", r"/issues/\d+/comments", _each(_listed_comment)),
        ("GET", r"/pulls/\d+", _pull),
        ("POST", r"/statuses/[^/]+", _status),
        ("POST", r"/check-runs", _check_run),
        ("PATCH", r"/check-runs/\d+", _check_run),
        ("GET", r"/commits/[^/]+/check-runs", _check_runs),
        ("POST", r"/issues/\d+/labels", _each(_label)),
        ("PUT", r"/issues/\d+/labels", _each(_label)),
        ("GET", r"/issues/\d+/labels", _each(_label)),
        ("GET", r"/collaborators/[^/]+/permission", _permission),
        ("GET", r"/actions/runs/\d+", lambda d: _fields(d, head_sha=str)),
        ("POST", r"/issues/comments/\d+/reactions", lambda d: _fields(d, id=int, content=str)),
    )
] + [("GET", re.compile(r"/user"), lambda d: _fields(d, login=str))]


def _not_json_hint(text: str) -> str:
    start = text.lstrip()[:1]
    if start == "<":
        return "HTML page?"
    if start in ("{", "["):
        return "cut short?"
    return f"{len(text)} characters"


class AnswerChecks:
    """Wraps a PyGithub Requester's `requestJson` (the one way its JSON calls go) with the checks above.

    PyGithub builds objects from whatever parsed, lazily: a missing `id` or an HTML page from a proxy would
    only surface later as a KeyError, or never (a comment "created" from a 200 HTML body). Checking here,
    before PyGithub sees the answer, makes every call Bolt makes (publish, approvals, actions) believe only
    answers of the right shape, and names the endpoint in the one line it fails with."""

    def __init__(self, base_url: str, max_pages: int):
        self.base_path = urlsplit(base_url).path.rstrip("/")
        self.max_pages = max_pages
        self.depth: dict[str, int] = {}  # a listing's page URL -> which page of it that is

    def install(self, requester: Any) -> None:
        original = requester.requestJson

        def request_json(verb: str, url: str, parameters: Any = None, headers: Any = None, input: Any = None,
                         *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any], str]:
            key = self._key(url, parameters)
            self._count_page(verb, key)
            status, response_headers, output = original(verb, url, parameters, headers, input, *args, **kwargs)
            return status, response_headers, self.check(verb, key, status, response_headers, output)

        requester.requestJson = request_json  # an instance attribute: requestJsonAndCheck looks it up on self

    def _key(self, url: str, parameters: Any) -> str:
        parts = urlsplit(url)
        path = parts.path
        if self.base_path and path.startswith(self.base_path + "/"):
            path = path[len(self.base_path):]
        query = "&".join(filter(None, [parts.query, *(f"{k}={v}" for k, v in sorted((parameters or {}).items()))]))
        return path + (f"?{query}" if query else "")

    def _count_page(self, verb: str, key: str) -> None:
        page = self.depth.get(key, 1)
        if verb == "GET" and page > self.max_pages:
            raise TooManyPages(f"GitHub's listing GET {key.split('?')[0]} had more than {self.max_pages} pages "
                               "(a next page that never ends?): giving up (BOLT_GITHUB_MAX_PAGES raises the bound)")

    def check(self, verb: str, key: str, status: int, headers: dict[str, Any], output: str) -> str:
        """The body PyGithub may parse: unchanged when believable; raises MalformedAnswer otherwise."""
        path = key.split("?")[0]
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else (output or "")
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            if status >= 400:  # an error page: keep the status (retries, 404s...) and drop the page
                return json.dumps({"message": f"(a body that is not JSON: {_not_json_hint(text)})"})
            raise MalformedAnswer(f"GitHub answered {verb} {path} with a body that is not JSON "
                                  f"({_not_json_hint(text)})") from None
        if status >= 400:
            return text
        for shape_verb, pattern, shape in SHAPES:
            if shape_verb == verb and pattern.fullmatch(path):
                problem = shape(data)
                if problem:
                    raise MalformedAnswer(f"GitHub answered {verb} {path} with {status} but not what Bolt "
                                          f"reads there: {problem}")
                break
        if verb == "GET":
            link = {k.lower(): v for k, v in headers.items()}.get("link", "")
            found = _NEXT_LINK.search(link)
            if found:
                self.depth[self._key(found.group(1), None)] = self.depth.get(key, 1) + 1
        return text
