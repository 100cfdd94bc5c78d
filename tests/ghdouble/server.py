"""A stateful, in-memory double of the parts of GitHub's REST API that Bolt uses.

Stdlib only (``http.server.ThreadingHTTPServer``), JSON in and out. Tests drive it through Python:
seed state (:meth:`GitHubDouble.add_repo`, :meth:`add_user`, :meth:`add_token`, :meth:`add_pull`,
...), inject faults (:meth:`GitHubDouble.fail`, :meth:`rate_limit`, :meth:`answer_html`,
:meth:`answer_truncated`, :meth:`endless_pages`, ...), and read what happened
(:attr:`GitHubDouble.requests`, :meth:`comments`, :meth:`statuses`, ...).

It sits behind ``prism proxy`` (see ``prism.py``), which validates every exchange against GitHub's
OpenAPI description, so every payload here is built to satisfy the spec's response schemas: each
shape is written once, in the ``_*_json`` builders. Every URL in a payload (``url``, ``html_url``,
``issue_url``, ``Link`` headers, ...) starts with :attr:`GitHubDouble.public_url` (the proxy's URL),
because PyGithub refuses to follow URLs whose host or port differ from its ``base_url``.

Served operations are those of ``spec.OPERATIONS`` (plus GET .../statuses/{sha}, an undocumented
alias PyGithub uses); anything else answers 404.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

DOCS = "https://docs.github.com/rest"
PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
# what GET .../collaborators/{username}/permission reports for each role
_REPORTED = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read", "none": "none"}
_WRITE_ROLES = {"admin", "maintain", "write"}
STATUS_STATES = ("error", "failure", "pending", "success")
CHECK_STATUSES = ("queued", "in_progress", "completed")
CHECK_CONCLUSIONS = ("action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out")
ANNOTATION_FIELDS = ("path", "start_line", "end_line", "annotation_level", "message")
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
MAX_COMMENT = 65536
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


class ApiError(Exception):
    """Raised by handlers: becomes an error response with GitHub's error body."""

    def __init__(self, status: int, message: str, *, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None, doc: str = DOCS):
        super().__init__(f"{status} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "documentation_url": doc, "status": str(status)}
        if errors is not None:
            self.body["errors"] = errors
        self.headers = headers or {}


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, ident: int | str) -> str:
    return base64.b64encode(f"0:{kind}{ident}".encode()).decode().rstrip("=")


def fake_sha(seed: str) -> str:
    """A stable 40-hex sha for a readable seed (``fake_sha("head")``)."""
    return hashlib.sha1(seed.encode()).hexdigest()


# --------------------------------------------------------------------------------------- state


@dataclass
class User:
    login: str
    id: int
    type: str = "User"  # "User" | "Bot" | "Organization"
    site_admin: bool = False
    name: str | None = None
    email: str | None = None
    association: str | None = None  # the author_association shown on their comments, whatever their role


ASSOCIATIONS = ("COLLABORATOR", "CONTRIBUTOR", "FIRST_TIMER", "FIRST_TIME_CONTRIBUTOR", "MANNEQUIN", "MEMBER",
                "NONE", "OWNER")
HTML_PAGE = ("<!DOCTYPE html>\n<html><head><title>Unicorn! &middot; GitHub</title></head>\n"
             "<body><h1>No server is currently available to service your request.</h1></body></html>\n")


@dataclass
class RawBody:
    """A response body sent as is (not JSON-encoded): an HTML page, JSON cut short."""

    data: bytes
    content_type: str


@dataclass
class Token:
    token: str
    login: str
    write: bool = True  # False: a read-only token (fork PRs): every write gets 403
    app: bool = False  # an App / Actions GITHUB_TOKEN: may write check runs, has no GET /user
    repos: set[str] | None = None  # App tokens: the repos it is installed on (None: all)


@dataclass
class Label:
    name: str
    id: int
    color: str = "ededed"
    description: str | None = None
    default: bool = False


@dataclass
class Reaction:
    id: int
    content: str
    user: str
    created_at: datetime


@dataclass
class Comment:
    id: int
    repo: str
    issue_number: int
    body: str
    user: str
    created_at: datetime
    updated_at: datetime
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class Issue:
    """An issue or a pull request (they share one number space per repository, as on GitHub)."""

    number: int
    id: int
    title: str
    user: str
    body: str | None = None
    state: str = "open"
    labels: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    updated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    closed_at: datetime | None = None
    locked: bool = False
    # pull request only
    is_pull: bool = False
    head_sha: str = ""
    head_ref: str = ""
    head_repo: str = ""  # full name; differs from the repo for a fork PR
    base_sha: str = ""
    base_ref: str = "main"
    draft: bool = False
    merged: bool = False


@dataclass
class Status:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: datetime
    updated_at: datetime


@dataclass
class CheckRun:
    id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    output: dict[str, Any]
    details_url: str | None
    external_id: str | None
    started_at: datetime | None
    completed_at: datetime | None
    app_owner: str
    app_slug: str = "github-actions"  # the App that wrote it: an Actions token's is github-actions
    annotations: list[dict[str, Any]] = field(default_factory=list)  # appended by every write, as on GitHub
    history: list[tuple[str, str | None]] = field(default_factory=list)  # (status, conclusion) after each write


@dataclass
class WorkflowRun:
    id: int
    head_sha: str
    event: str = "pull_request"
    status: str = "completed"
    conclusion: str | None = "success"
    name: str = "CI"
    head_branch: str | None = None
    head_repo: str = ""  # full name; a fork for fork PRs
    pull_requests: list[int] = field(default_factory=list)
    run_number: int = 1
    run_attempt: int = 1
    workflow_id: int = 1
    path: str = ".github/workflows/ci.yml"
    actor: str = ""
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    private: bool = False
    default_branch: str = "main"
    description: str | None = None
    fork: bool = False
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    permissions: dict[str, str] = field(default_factory=dict)  # login -> role
    issues: dict[int, Issue] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)  # lower-cased name -> label
    statuses: list[Status] = field(default_factory=list)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)
    runs: dict[int, WorkflowRun] = field(default_factory=dict)
    commits: set[str] = field(default_factory=set)
    branches: dict[str, str] = field(default_factory=dict)  # branch -> sha

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class RequestRecord:
    """One request the double received (after prism), with the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int = 0
    token: str | None = None
    injected: str | None = None  # the fault rule that shaped this response, if any
    acted: bool = True  # False when a fault answered without performing the action
    time: float = 0.0

    def __repr__(self) -> str:  # short, for assertion messages
        q = f"?{urlencode(self.query, doseq=True)}" if self.query else ""
        inj = f" [{self.injected}]" if self.injected else ""
        return f"<{self.method} {self.path}{q} -> {self.status}{inj}>"


@dataclass
class FaultRule:
    """Make matching requests fail. See :meth:`GitHubDouble.fail`."""

    method: str
    pattern: str | re.Pattern[str]
    status: int | None = 502
    times: int | None = 1  # None: forever
    after_action: bool = False
    delay: float = 0.0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = "fail"
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method != "*" and self.method.upper() != method:
            return False
        if isinstance(self.pattern, re.Pattern):
            return self.pattern.fullmatch(path) is not None
        return fnmatch.fnmatchcase(path, self.pattern)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


# ------------------------------------------------------------------------------------- routing

_Route = tuple[str, re.Pattern[str], str]


def _route(method: str, spec_path: str, handler: str) -> _Route:
    rx = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", spec_path)
    return method, re.compile(rx), handler


ROUTES: list[_Route] = [
    _route("GET", "/user", "get_user"),
    _route("GET", "/rate_limit", "get_rate_limit"),
    _route("GET", "/repos/{owner}/{repo}", "get_repo"),
    _route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "get_pull"),
    _route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "get_comment"),
    _route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "edit_comment"),
    _route("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "delete_comment"),
    _route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", "list_reactions"),
    _route("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", "create_reaction"),
    _route("GET", "/repos/{owner}/{repo}/issues/{issue_number}", "get_issue"),
    _route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "list_comments"),
    _route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "create_comment"),
    _route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/labels", "list_labels"),
    _route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels", "add_labels"),
    _route("PUT", "/repos/{owner}/{repo}/issues/{issue_number}/labels", "set_labels"),
    _route("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", "remove_label"),
    _route("POST", "/repos/{owner}/{repo}/statuses/{sha}", "create_status"),
    # Undocumented legacy alias that PyGithub's Commit.get_statuses() calls; GitHub serves it but
    # its OpenAPI description has no GET here, so prism reports it (see fixtures.KNOWN_VIOLATIONS).
    _route("GET", "/repos/{owner}/{repo}/statuses/{ref}", "list_statuses"),
    _route("GET", "/repos/{owner}/{repo}/commits/{ref}", "get_commit"),
    _route("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses", "list_statuses"),
    _route("GET", "/repos/{owner}/{repo}/commits/{ref}/status", "combined_status"),
    _route("POST", "/repos/{owner}/{repo}/check-runs", "create_check_run"),
    _route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "get_check_run"),
    _route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", "list_check_runs"),
    _route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "update_check_run"),
    _route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", "get_permission"),
    _route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", "get_run"),
]


@dataclass
class _Ctx:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    token: Token | None

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def int_param(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise not_found() from None


# ---------------------------------------------------------------------------------- the double


class GitHubDouble:
    """The stateful GitHub double. Thread-safe; all state is behind one lock."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, rate_limit: int = 5000):
        self.host = host
        self._port = port
        self.rate_limit_total = rate_limit
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.public_url: str = ""
        self.html_base: str = ""
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        self.reset()

    # -------------------------------------------------------------------------- lifecycle

    def start(self) -> "GitHubDouble":
        double = self

        class Handler(_Handler):
            pass

        Handler.double = double
        self._server = ThreadingHTTPServer((self.host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ghdouble", daemon=True)
        self._thread.start()
        if not self.public_url:
            self.set_public_url(self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "GitHubDouble":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "double not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The double's own URL (prism's upstream). Clients should use :attr:`public_url`."""
        return f"http://{self.host}:{self.port}"

    def set_public_url(self, url: str, html_base: str | None = None) -> None:
        """The URL clients see (prism's): written into every URL in payloads and Link headers."""
        self.public_url = url.rstrip("/")
        self.html_base = (html_base or self.public_url).rstrip("/")

    def reset(self) -> None:
        """Forget all state, faults and recorded requests (keeps the server and public URL)."""
        with self._lock:
            self.users: dict[str, User] = {}
            self.tokens: dict[str, Token] = {}
            self.repos: dict[str, Repo] = {}
            self.comments_by_id: dict[int, Comment] = {}
            self.faults: list[FaultRule] = []
            self.endless: list[tuple[str | re.Pattern[str], bool]] = []
            self.requests: list[RequestRecord] = []
            self._ids = itertools.count(1000001)
            self._used: dict[str | None, int] = {}
            self._reset_at = int(time.time()) + 3600

    def _next_id(self) -> int:
        return next(self._ids)

    # -------------------------------------------------------------------------- seeding

    def add_user(self, login: str, *, type: str = "User", site_admin: bool = False,
                 name: str | None = None, email: str | None = None,
                 association: str | None = None) -> User:
        """A user (kept if known). ``association`` ("MEMBER", "COLLABORATOR", "OWNER", ...) is the
        ``author_association`` of everything they write, in every repo, independent of the role that
        :meth:`set_permission` gives them: an org MEMBER whose permission API answer is ``read``, say.
        Given for a known user, it replaces theirs."""
        if association is not None and association not in ASSOCIATIONS:
            raise ValueError(f"unknown author_association {association!r}")
        with self._lock:
            if login not in self.users:
                self.users[login] = User(login=login, id=self._next_id(), type=type,
                                         site_admin=site_admin, name=name, email=email)
            if association is not None:
                self.users[login].association = association
            return self.users[login]

    def add_token(self, token: str, login: str, *, write: bool = True, app: bool = False,
                  repos: Iterable[str] | None = None) -> Token:
        """Register ``token`` for ``login`` (created if unknown; App tokens default to a Bot).

        ``write=False`` makes a read-only token (every write: 403 "Resource not accessible by
        integration"); ``app=True`` an App/Actions token (may create check runs; GET /user is 403).
        """
        with self._lock:
            self.add_user(login, type="Bot" if app and login.endswith("[bot]") else "User")
            tok = Token(token=token, login=login, write=write, app=app,
                        repos=set(repos) if repos is not None else None)
            self.tokens[token] = tok
            return tok

    def add_repo(self, full_name: str, *, private: bool = False, default_branch: str = "main",
                 description: str | None = None, fork: bool = False) -> Repo:
        with self._lock:
            if full_name in self.repos:
                return self.repos[full_name]
            owner, name = full_name.split("/", 1)
            self.add_user(owner)
            repo = Repo(owner=owner, name=name, id=self._next_id(), private=private,
                        default_branch=default_branch, description=description, fork=fork,
                        created_at=self.clock())
            repo.permissions[owner] = "admin"
            self.repos[full_name] = repo
            return repo

    def set_permission(self, full_name: str, login: str, role: str) -> None:
        """``role``: admin | maintain | write | triage | read | none."""
        if role not in PERMISSIONS:
            raise ValueError(f"unknown role {role!r}")
        with self._lock:
            self.add_user(login)
            self.repo(full_name).permissions[login] = role

    def add_commit(self, full_name: str, sha: str, *, branch: str | None = None) -> str:
        with self._lock:
            repo = self.repo(full_name)
            repo.commits.add(sha)
            if branch:
                repo.branches[branch] = sha
            return sha

    def add_pull(self, full_name: str, number: int | None = None, *, user: str = "contributor",
                 head_sha: str | None = None, head_ref: str = "feature",
                 base_sha: str | None = None, base_ref: str | None = None,
                 head_repo: str | None = None, title: str = "Make it faster",
                 body: str | None = "", state: str = "open", labels: Iterable[str] = (),
                 draft: bool = False) -> Issue:
        """A pull request. ``head_repo`` another full name makes it a fork PR (repo created)."""
        with self._lock:
            repo = self.repo(full_name)
            number = number or self._next_number(repo)
            self.add_user(user)
            head_repo = head_repo or full_name
            if head_repo != full_name:
                self.add_repo(head_repo, fork=True)
            pr = Issue(number=number, id=self._next_id(), title=title, user=user, body=body,
                       state=state, is_pull=True,
                       head_sha=head_sha or fake_sha(f"{full_name}#{number}:head"),
                       head_ref=head_ref, head_repo=head_repo,
                       base_sha=base_sha or fake_sha(f"{full_name}#{number}:base"),
                       base_ref=base_ref or repo.default_branch, draft=draft,
                       created_at=self.clock(), updated_at=self.clock())
            for name in labels:
                pr.labels.append(self._ensure_label(repo, name).name)
            repo.issues[number] = pr
            repo.commits.update({pr.head_sha, pr.base_sha})
            repo.branches.setdefault(pr.base_ref, pr.base_sha)
            if head_repo == full_name:
                repo.branches[pr.head_ref] = pr.head_sha
            return pr

    def add_issue(self, full_name: str, number: int | None = None, *, user: str = "reporter",
                  title: str = "An issue", body: str | None = "", state: str = "open",
                  labels: Iterable[str] = ()) -> Issue:
        with self._lock:
            repo = self.repo(full_name)
            number = number or self._next_number(repo)
            self.add_user(user)
            issue = Issue(number=number, id=self._next_id(), title=title, user=user, body=body,
                          state=state, created_at=self.clock(), updated_at=self.clock())
            for name in labels:
                issue.labels.append(self._ensure_label(repo, name).name)
            repo.issues[number] = issue
            return issue

    def add_comment(self, full_name: str, issue_number: int, body: str, *, user: str,
                    created_at: datetime | None = None) -> Comment:
        with self._lock:
            repo = self.repo(full_name)
            if issue_number not in repo.issues:
                raise KeyError(f"{full_name}#{issue_number} does not exist")
            self.add_user(user)
            now = created_at or self.clock()
            comment = Comment(id=self._next_id(), repo=full_name, issue_number=issue_number,
                              body=body, user=user, created_at=now, updated_at=now)
            self.comments_by_id[comment.id] = comment
            return comment

    def add_label(self, full_name: str, name: str, *, color: str = "ededed",
                  description: str | None = None) -> Label:
        with self._lock:
            return self._ensure_label(self.repo(full_name), name, color=color, description=description)

    def add_status(self, full_name: str, sha: str, state: str, *, context: str = "default",
                   description: str | None = None, target_url: str | None = None,
                   creator: str | None = None) -> Status:
        with self._lock:
            repo = self.repo(full_name)
            repo.commits.add(sha)
            return self._new_status(repo, sha, state, context, description, target_url,
                                    creator or repo.owner)

    def add_workflow_run(self, full_name: str, run_id: int | None = None, *, head_sha: str,
                         event: str = "pull_request", status: str = "completed",
                         conclusion: str | None = "success", pull_requests: Iterable[int] = (),
                         head_branch: str | None = None, head_repo: str | None = None,
                         name: str = "CI", actor: str | None = None) -> WorkflowRun:
        """A workflow run. Pass ``pull_requests=()`` for fork PRs: GitHub lists none there."""
        with self._lock:
            repo = self.repo(full_name)
            run = WorkflowRun(id=run_id or self._next_id(), head_sha=head_sha, event=event,
                              status=status, conclusion=conclusion, name=name,
                              head_branch=head_branch, head_repo=head_repo or full_name,
                              pull_requests=list(pull_requests), run_number=len(repo.runs) + 1,
                              actor=actor or repo.owner, created_at=self.clock())
            if run.head_repo != full_name:
                self.add_repo(run.head_repo, fork=True)
            repo.commits.add(head_sha)
            repo.runs[run.id] = run
            return run

    # -------------------------------------------------------------------------- inspection

    def repo(self, full_name: str) -> Repo:
        try:
            return self.repos[full_name]
        except KeyError:
            raise KeyError(f"no repository {full_name!r} in the double") from None

    def pull(self, full_name: str, number: int) -> Issue:
        return self.repo(full_name).issues[number]

    def comments(self, full_name: str, issue_number: int) -> list[Comment]:
        """The comments on an issue or PR, oldest first."""
        with self._lock:
            return [c for c in self.comments_by_id.values()
                    if c.repo == full_name and c.issue_number == issue_number]

    def labels(self, full_name: str, issue_number: int) -> list[str]:
        with self._lock:
            return list(self.repo(full_name).issues[issue_number].labels)

    def statuses(self, full_name: str, sha: str) -> list[Status]:
        """Statuses on ``sha``, oldest first."""
        with self._lock:
            return [s for s in self.repo(full_name).statuses if s.sha == sha]

    def check_runs(self, full_name: str, head_sha: str | None = None, name: str | None = None) -> list[CheckRun]:
        """Check runs of the repository (on ``head_sha``, named ``name``), oldest first; each keeps its
        ``history`` of (status, conclusion) and every ``annotations`` item it was sent."""
        with self._lock:
            return [r for r in self.repo(full_name).check_runs.values()
                    if head_sha in (None, r.head_sha) and name in (None, r.name)]

    def requests_matching(self, method: str = "*", pattern: str = "*") -> list[RequestRecord]:
        """Recorded requests whose method and path (fnmatch pattern, no query) match."""
        with self._lock:
            return [r for r in self.requests
                    if (method == "*" or r.method == method.upper()) and fnmatch.fnmatchcase(r.path, pattern)]

    # -------------------------------------------------------------------------- faults

    def fail(self, method: str, pattern: str | re.Pattern[str], status: int | None = 502, *,
             times: int | None = 1, after_action: bool = False, delay: float = 0.0,
             body: Any = None, headers: dict[str, str] | None = None,
             kind: str = "fail") -> FaultRule:
        """Answer the next ``times`` requests matching ``method`` ("*" for any) and ``pattern``
        (an fnmatch pattern on the path without query, e.g. ``"/repos/*/*/issues/*/comments"``,
        or a compiled regex) with ``status``.

        ``after_action=True`` performs the request first (the comment IS created) and then
        answers the error: the duplicate-comment trap. ``delay`` sleeps that many seconds first
        (a client timeout); with ``status=None`` the request then proceeds normally. ``times=None``
        fails forever. Rules are tried in the order they were added; the first live one wins.
        """
        rule = FaultRule(method=method, pattern=pattern, status=status, times=times,
                         after_action=after_action, delay=delay, body=body,
                         headers=dict(headers or {}), kind=kind)
        with self._lock:
            self.faults.append(rule)
        return rule

    def delay(self, method: str, pattern: str | re.Pattern[str], seconds: float, *,
              times: int | None = 1) -> FaultRule:
        """Delay matching requests by ``seconds``, then answer normally."""
        return self.fail(method, pattern, None, times=times, delay=seconds, kind="delay")

    def rate_limit(self, method: str, pattern: str | re.Pattern[str], *, times: int | None = 1,
                   reset_in: int = 1) -> FaultRule:
        """Primary rate limit: 403, X-RateLimit-Remaining 0, X-RateLimit-Reset ``reset_in`` s ahead."""
        return self.fail(method, pattern, 403, times=times, kind="primary-rate-limit",
                         body={"message": "API rate limit exceeded for user ID 1.",
                               "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"},
                         headers={"X-RateLimit-Remaining": "0", "_reset_in": str(reset_in)})

    def secondary_rate_limit(self, method: str, pattern: str | re.Pattern[str], *,
                             times: int | None = 1, retry_after: int = 1) -> FaultRule:
        """Secondary rate limit: 403 "You have exceeded a secondary rate limit", Retry-After."""
        return self.fail(method, pattern, 403, times=times, kind="secondary-rate-limit",
                         body={"message": SECONDARY_MESSAGE,
                               "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"},
                         headers={"Retry-After": str(retry_after)})

    def too_many_requests(self, method: str, pattern: str | re.Pattern[str], *,
                          times: int | None = 1, retry_after: int | None = 1) -> FaultRule:
        """429, with Retry-After unless ``retry_after`` is None."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return self.fail(method, pattern, 429, times=times, kind="too-many-requests",
                         body={"message": "Too Many Requests", "documentation_url": DOCS},
                         headers=headers)

    def answer_html(self, method: str, pattern: str | re.Pattern[str], status: int = 200, *,
                    times: int | None = 1, after_action: bool = False) -> FaultRule:
        """Answer an HTML page (a proxy's or GitHub's "Unicorn!" page) with ``status`` (200 by
        default) and ``text/html``. Without ``after_action`` nothing was done."""
        return self.fail(method, pattern, status, times=times, after_action=after_action,
                         kind="html", body=HTML_PAGE)

    def answer_truncated(self, method: str, pattern: str | re.Pattern[str], status: int | None = None,
                         *, times: int | None = 1, after_action: bool = True) -> FaultRule:
        """Cut the JSON answer in half (a broken proxy, a body cut short), sent as ``text/plain``:
        prism would replace a broken ``application/json`` body by its own 500, and PyGithub parses
        the body whatever its type. By default the request IS performed first and the real status kept
        (201 for a created comment); ``status`` overrides it. Without ``after_action`` the cut body
        is that of the error GitHub would have sent."""
        return self.fail(method, pattern, status, times=times, after_action=after_action,
                         kind="truncated")

    def endless_pages(self, pattern: str | re.Pattern[str] = "/repos/*/*/issues/*/comments", *,
                      same_url: bool = False) -> None:
        """Listings (GET) whose path matches ``pattern`` always carry a ``Link: rel="next"``: to
        the following page, or with ``same_url`` to the page itself. Pages past the end repeat the
        last items (PyGithub stops at an empty page), so seed at least one item."""
        with self._lock:
            self.endless.append((pattern, same_url))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()
            self.endless.clear()

    def _take_fault(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self.faults:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    # -------------------------------------------------------------------------- dispatch

    def handle(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
               ) -> tuple[int, Any, dict[str, str]]:
        """Answer one request: (status, JSON-able body or None, headers)."""
        split = urlsplit(raw_path)
        path = split.path.rstrip("/") or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = raw_body.decode("utf-8", "replace")
        record = RequestRecord(method=method, path=path, query=query, body=body, time=time.time())
        auth = headers.get("authorization", "")
        token_value = auth.split(None, 1)[1].strip() if " " in auth else None
        record.token = token_value
        with self._lock:
            self.requests.append(record)

        rule = self._take_fault(method, path)
        if rule is not None:
            record.injected = rule.kind
            if rule.delay:
                time.sleep(rule.delay)
        truncated = rule is not None and rule.kind == "truncated"
        status, out, extra = self._dispatch(method, path, query, body, token_value,
                                            run=rule is None or rule.after_action
                                            or (rule.status is None and not truncated))
        if truncated and rule is not None:
            record.acted = rule.after_action and 200 <= status < 300
            if not rule.after_action:
                status, out = 502, {"message": _REASONS[502], "documentation_url": DOCS, "status": "502"}
            text = json.dumps(out if out is not None else {"message": "(no content)"})
            out = RawBody(text[: len(text) // 2].encode(), "text/plain; charset=utf-8")
            status = rule.status or status
        elif rule is not None and rule.status is not None:
            record.acted = rule.after_action
            status = rule.status
            out = rule.body if rule.body is not None else {
                "message": _REASONS.get(status, "Error"), "documentation_url": DOCS, "status": str(status)}
            if rule.kind == "html":
                out = RawBody(str(rule.body).encode(), "text/html; charset=utf-8")
            extra = {k: v for k, v in rule.headers.items() if not k.startswith("_")}
            if "_reset_in" in rule.headers:
                extra["X-RateLimit-Reset"] = str(math.ceil(time.time()) + int(rule.headers["_reset_in"]))
        if rule is not None and rule.status is None:
            record.injected = rule.kind
        headers_out = self._rate_headers(token_value)
        headers_out.update(extra)
        record.status = status
        return status, out, headers_out

    def _rate_headers(self, token_value: str | None) -> dict[str, str]:
        with self._lock:
            used = self._used[token_value] = self._used.get(token_value, 0) + 1
        limit = self.rate_limit_total if token_value else 60
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(limit - used, 0)),
            "X-RateLimit-Reset": str(self._reset_at),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-GitHub-Request-Id": f"DBL:{len(self.requests):06d}",
        }

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], body: Any,
                  token_value: str | None, *, run: bool) -> tuple[int, Any, dict[str, str]]:
        for route_method, rx, handler in ROUTES:
            match = rx.fullmatch(path)
            if match and route_method == method:
                break
        else:
            return 404, ApiError(404, "Not Found").body, {}
        token = None
        if token_value is not None:
            token = self.tokens.get(token_value)
            if token is None:
                return 401, ApiError(401, "Bad credentials").body, {}
        if not run:
            return 0, None, {}
        params = {k: unquote(v) for k, v in match.groupdict().items()}
        ctx = _Ctx(method=method, path=path, params=params, query=query, body=body, token=token)
        try:
            with self._lock:
                result = getattr(self, "_h_" + handler)(ctx)
        except ApiError as err:
            return err.status, err.body, err.headers
        if len(result) == 2:
            status, out = result
            return status, out, {}
        return result

    # -------------------------------------------------------------------------- helpers

    def _next_number(self, repo: Repo) -> int:
        return max(repo.issues, default=0) + 1

    def _ensure_label(self, repo: Repo, name: str, *, color: str = "ededed",
                      description: str | None = None) -> Label:
        key = name.lower()
        if key not in repo.labels:
            repo.labels[key] = Label(name=name, id=self._next_id(), color=color, description=description)
        return repo.labels[key]

    def _new_status(self, repo: Repo, sha: str, state: str, context: str,
                    description: str | None, target_url: str | None, creator: str) -> Status:
        now = self.clock()
        status = Status(id=self._next_id(), sha=sha, state=state, context=context,
                        description=description, target_url=target_url, creator=creator,
                        created_at=now, updated_at=now)
        repo.statuses.append(status)
        return status

    def _role(self, repo: Repo, login: str | None) -> str:
        if login is None:
            return "read" if not repo.private else "none"
        role = repo.permissions.get(login)
        if role is None:
            return "read" if not repo.private else "none"
        return role

    def _repo_for(self, ctx: _Ctx) -> Repo:
        repo = self.repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}")
        if repo is None:
            raise not_found()
        if ctx.token is not None and ctx.token.app:
            if ctx.token.repos is not None and repo.full_name not in ctx.token.repos:
                raise not_found()
            return repo
        if repo.private and self._role(repo, ctx.token.login if ctx.token else None) == "none":
            raise not_found()
        return repo

    def _require_write(self, ctx: _Ctx, repo: Repo, *, push: bool = True) -> None:
        """A write: needs a token that may write, and (``push``) push access to the repo."""
        if ctx.token is None:
            raise ApiError(401, "Requires authentication")
        if not ctx.token.write:
            raise ApiError(403, "Resource not accessible by integration")
        if push and not ctx.token.app and self._role(repo, ctx.token.login) not in _WRITE_ROLES:
            raise ApiError(403, "Resource not accessible by personal access token")

    def _issue_for(self, ctx: _Ctx, repo: Repo) -> Issue:
        issue = repo.issues.get(ctx.int_param("issue_number"))
        if issue is None:
            raise not_found()
        return issue

    def _comment_for(self, ctx: _Ctx, repo: Repo) -> Comment:
        comment = self.comments_by_id.get(ctx.int_param("comment_id"))
        if comment is None or comment.repo != repo.full_name:
            raise not_found()
        return comment

    def _paginate(self, ctx: _Ctx, items: list[Any]) -> tuple[int, list[Any], dict[str, str]]:
        try:
            per_page = min(max(int(ctx.q("per_page", "30") or 30), 1), 100)
            page = max(int(ctx.q("page", "1") or 1), 1)
        except ValueError:
            raise ApiError(422, "Validation Failed", errors=[{"code": "invalid"}]) from None
        last = max(math.ceil(len(items) / per_page), 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        headers: dict[str, str] = {}
        endless = self._endless(ctx.path)
        if endless is not None:
            chunk = chunk or items[-per_page:]  # past the end: the last items again, as a broken cursor does
            query = {k: v for k, v in ctx.query.items() if k != "page"}
            query["page"] = [str(page if endless else page + 1)]
            headers["Link"] = f'<{self.public_url}{ctx.path}?{urlencode(query, doseq=True)}>; rel="next"'
            return 200, chunk, headers
        if last > 1:
            def link(p: int, rel: str) -> str:
                query = {k: v for k, v in ctx.query.items() if k != "page"}
                query["page"] = [str(p)]
                return f'<{self.public_url}{ctx.path}?{urlencode(query, doseq=True)}>; rel="{rel}"'
            links = []
            if page > 1:
                links += [link(page - 1, "prev")]
            if page < last:
                links += [link(page + 1, "next"), link(last, "last")]
            if page > 1:
                links += [link(1, "first")]
            headers["Link"] = ", ".join(links)
        return 200, chunk, headers

    def _endless(self, path: str) -> bool | None:
        """None: a normal listing; else whether its next page is the page itself (see endless_pages)."""
        for pattern, same_url in self.endless:
            if (pattern.fullmatch(path) if isinstance(pattern, re.Pattern)
                    else fnmatch.fnmatchcase(path, pattern)):
                return same_url
        return None

    def _body_dict(self, ctx: _Ctx) -> dict[str, Any]:
        if not isinstance(ctx.body, dict):
            raise ApiError(400, "Problems parsing JSON")
        return ctx.body

    # -------------------------------------------------------------------------- JSON builders

    def _user_json(self, login: str) -> dict[str, Any]:
        user = self.users.get(login) or User(login=login, id=0)
        api = f"{self.public_url}/users/{quote(login)}"
        return {
            "login": user.login, "id": user.id, "node_id": _node_id("User", user.id),
            "avatar_url": f"{self.html_base}/avatars/u/{user.id}?v=4", "gravatar_id": "",
            "url": api, "html_url": f"{self.html_base}/{quote(login)}",
            "followers_url": f"{api}/followers", "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}", "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events", "type": user.type,
            "site_admin": user.site_admin, "user_view_type": "public",
        }

    def _private_user_json(self, login: str) -> dict[str, Any]:
        user = self.users[login]
        created = _iso(datetime(2020, 1, 1, tzinfo=timezone.utc))
        return {
            **self._user_json(login), "name": user.name, "company": None, "blog": "",
            "location": None, "email": user.email, "hireable": None, "bio": None,
            "twitter_username": None, "public_repos": 1, "public_gists": 0, "followers": 0,
            "following": 0, "created_at": created, "updated_at": created, "private_gists": 0,
            "total_private_repos": 0, "owned_private_repos": 0, "disk_usage": 0,
            "collaborators": 0, "two_factor_authentication": True,
        }

    def _repo_json(self, repo: Repo, *, full: bool = True, login: str | None = None) -> dict[str, Any]:
        """One shape for full-repository, repository and minimal-repository (a superset)."""
        api = f"{self.public_url}/repos/{repo.full_name}"
        html = f"{self.html_base}/{repo.full_name}"
        out: dict[str, Any] = {
            "id": repo.id, "node_id": _node_id("Repository", repo.id), "name": repo.name,
            "full_name": repo.full_name, "private": repo.private, "owner": self._user_json(repo.owner),
            "html_url": html, "description": repo.description, "fork": repo.fork, "url": api,
            "archive_url": f"{api}/{{archive_format}}{{/ref}}", "assignees_url": f"{api}/assignees{{/user}}",
            "blobs_url": f"{api}/git/blobs{{/sha}}", "branches_url": f"{api}/branches{{/branch}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "comments_url": f"{api}/comments{{/number}}", "commits_url": f"{api}/commits{{/sha}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}", "contents_url": f"{api}/contents/{{+path}}",
            "contributors_url": f"{api}/contributors", "deployments_url": f"{api}/deployments",
            "downloads_url": f"{api}/downloads", "events_url": f"{api}/events",
            "forks_url": f"{api}/forks", "git_commits_url": f"{api}/git/commits{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}", "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_url": f"git://example.invalid/{repo.full_name}.git", "hooks_url": f"{api}/hooks",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "issue_events_url": f"{api}/issues/events{{/number}}", "issues_url": f"{api}/issues{{/number}}",
            "keys_url": f"{api}/keys{{/key_id}}", "labels_url": f"{api}/labels{{/name}}",
            "languages_url": f"{api}/languages", "merges_url": f"{api}/merges",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "pulls_url": f"{api}/pulls{{/number}}", "releases_url": f"{api}/releases{{/id}}",
            "ssh_url": f"git@example.invalid:{repo.full_name}.git", "stargazers_url": f"{api}/stargazers",
            "statuses_url": f"{api}/statuses/{{sha}}", "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription", "tags_url": f"{api}/tags",
            "teams_url": f"{api}/teams", "trees_url": f"{api}/git/trees{{/sha}}",
        }
        if not full:
            return out
        stamp = _iso(repo.created_at)
        open_issues = sum(1 for i in repo.issues.values() if i.state == "open")
        out.update({
            "clone_url": f"{html}.git", "mirror_url": None, "svn_url": html, "homepage": None,
            "language": "Python", "forks_count": 0, "forks": 0, "stargazers_count": 0,
            "watchers_count": 0, "watchers": 0, "size": 100, "default_branch": repo.default_branch,
            "open_issues_count": open_issues, "open_issues": open_issues, "is_template": False,
            "topics": [], "has_issues": True, "has_projects": True, "has_wiki": True,
            "has_pages": False, "has_downloads": True, "has_discussions": False, "archived": False,
            "disabled": False, "visibility": "private" if repo.private else "public",
            "pushed_at": stamp, "created_at": stamp, "updated_at": stamp,
            "allow_forking": True, "web_commit_signoff_required": False,
            "network_count": 0, "subscribers_count": 0,
            "license": {"key": "mit", "name": "MIT License", "spdx_id": "MIT",
                        "url": f"{self.public_url}/licenses/mit", "node_id": "MDc6TGljZW5zZTEz"},
        })
        if login is not None:
            role = self._role(repo, login)
            out["permissions"] = {
                "admin": role == "admin", "maintain": role in ("admin", "maintain"),
                "push": role in _WRITE_ROLES, "triage": role in _WRITE_ROLES | {"triage"},
                "pull": role != "none",
            }
        return out

    def _label_json(self, repo: Repo, name: str) -> dict[str, Any]:
        label = self._ensure_label(repo, name)
        return {"id": label.id, "node_id": _node_id("Label", label.id),
                "url": f"{self.public_url}/repos/{repo.full_name}/labels/{quote(label.name)}",
                "name": label.name, "description": label.description, "color": label.color,
                "default": label.default}

    def _reactions_json(self, repo: Repo, comment: Comment) -> dict[str, Any]:
        counts = {c: 0 for c in REACTIONS}
        for r in comment.reactions:
            counts[r.content] += 1
        return {"url": f"{self.public_url}/repos/{repo.full_name}/issues/comments/{comment.id}/reactions",
                "total_count": len(comment.reactions), **counts}

    def _association(self, repo: Repo, login: str) -> str:
        user = self.users.get(login)
        if user is not None and user.association is not None:
            return user.association
        if login == repo.owner:
            return "OWNER"
        if repo.permissions.get(login) in _WRITE_ROLES | {"triage"}:
            return "COLLABORATOR"
        return "CONTRIBUTOR" if any(i.user == login for i in repo.issues.values() if i.is_pull) else "NONE"

    def _comment_json(self, repo: Repo, comment: Comment) -> dict[str, Any]:
        api = f"{self.public_url}/repos/{repo.full_name}"
        kind = "pull" if repo.issues[comment.issue_number].is_pull else "issues"
        return {
            "id": comment.id, "node_id": _node_id("IssueComment", comment.id),
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": f"{self.html_base}/{repo.full_name}/{kind}/{comment.issue_number}#issuecomment-{comment.id}",
            "issue_url": f"{api}/issues/{comment.issue_number}", "body": comment.body,
            "user": self._user_json(comment.user), "created_at": _iso(comment.created_at),
            "updated_at": _iso(comment.updated_at),
            "author_association": self._association(repo, comment.user),
            "performed_via_github_app": None, "reactions": self._reactions_json(repo, comment),
        }

    def _issue_json(self, repo: Repo, issue: Issue) -> dict[str, Any]:
        api = f"{self.public_url}/repos/{repo.full_name}"
        url = f"{api}/issues/{issue.number}"
        html = f"{self.html_base}/{repo.full_name}/{'pull' if issue.is_pull else 'issues'}/{issue.number}"
        n_comments = sum(1 for c in self.comments_by_id.values()
                         if c.repo == repo.full_name and c.issue_number == issue.number)
        out: dict[str, Any] = {
            "id": issue.id, "node_id": _node_id("Issue", issue.id), "url": url,
            "repository_url": api, "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments", "events_url": f"{url}/events", "html_url": html,
            "number": issue.number, "state": issue.state,
            "state_reason": None, "title": issue.title, "body": issue.body,
            "user": self._user_json(issue.user),
            "labels": [self._label_json(repo, name) for name in issue.labels],
            "assignee": None, "assignees": [], "milestone": None, "locked": issue.locked,
            "active_lock_reason": None, "comments": n_comments,
            "closed_at": _iso(issue.closed_at) if issue.closed_at else None,
            "created_at": _iso(issue.created_at), "updated_at": _iso(issue.updated_at),
            "closed_by": None, "author_association": self._association(repo, issue.user),
            "reactions": {"url": f"{url}/reactions", "total_count": 0, **{c: 0 for c in REACTIONS}},
        }
        if issue.is_pull:
            out["draft"] = issue.draft
            out["pull_request"] = {
                "url": f"{api}/pulls/{issue.number}", "html_url": html,
                "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "merged_at": None,
            }
        return out

    def _branch_json(self, repo: Repo, ref: str, sha: str, owner_repo: Repo) -> dict[str, Any]:
        return {"label": f"{owner_repo.owner}:{ref}", "ref": ref, "sha": sha,
                "user": self._user_json(owner_repo.owner), "repo": self._repo_json(owner_repo)}

    def _pull_json(self, repo: Repo, pr: Issue) -> dict[str, Any]:
        api = f"{self.public_url}/repos/{repo.full_name}"
        url = f"{api}/pulls/{pr.number}"
        html = f"{self.html_base}/{repo.full_name}/pull/{pr.number}"
        issue_url = f"{api}/issues/{pr.number}"
        head_repo = self.repos.get(pr.head_repo, repo)
        n_comments = sum(1 for c in self.comments_by_id.values()
                         if c.repo == repo.full_name and c.issue_number == pr.number)
        return {
            "url": url, "id": pr.id, "node_id": _node_id("PullRequest", pr.id), "html_url": html,
            "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": issue_url,
            "commits_url": f"{url}/commits", "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{issue_url}/comments", "statuses_url": f"{api}/statuses/{pr.head_sha}",
            "number": pr.number, "state": pr.state, "locked": pr.locked, "title": pr.title,
            "user": self._user_json(pr.user), "body": pr.body,
            "labels": [self._label_json(repo, name) for name in pr.labels],
            "milestone": None, "active_lock_reason": None,
            "created_at": _iso(pr.created_at), "updated_at": _iso(pr.updated_at),
            "closed_at": _iso(pr.closed_at) if pr.closed_at else None,
            "merged_at": None, "merge_commit_sha": None, "assignee": None, "assignees": [],
            "requested_reviewers": [], "requested_teams": [],
            "head": self._branch_json(repo, pr.head_ref, pr.head_sha, head_repo),
            "base": self._branch_json(repo, pr.base_ref, pr.base_sha, repo),
            "_links": {
                "self": {"href": url}, "html": {"href": html}, "issue": {"href": issue_url},
                "comments": {"href": f"{issue_url}/comments"},
                "review_comments": {"href": f"{url}/comments"},
                "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
                "commits": {"href": f"{url}/commits"},
                "statuses": {"href": f"{api}/statuses/{pr.head_sha}"},
            },
            "author_association": self._association(repo, pr.user), "auto_merge": None,
            "draft": pr.draft, "merged": pr.merged, "mergeable": True, "rebaseable": True,
            "mergeable_state": "clean", "merged_by": None, "comments": n_comments,
            "review_comments": 0, "maintainer_can_modify": False, "commits": 1,
            "additions": 1, "deletions": 1, "changed_files": 1,
        }

    def _pull_minimal_json(self, repo: Repo, pr: Issue) -> dict[str, Any]:
        head_repo = self.repos.get(pr.head_repo, repo)

        def mini(r: Repo) -> dict[str, Any]:
            return {"id": r.id, "url": f"{self.public_url}/repos/{r.full_name}", "name": r.name}

        return {"id": pr.id, "number": pr.number,
                "url": f"{self.public_url}/repos/{repo.full_name}/pulls/{pr.number}",
                "head": {"ref": pr.head_ref, "sha": pr.head_sha, "repo": mini(head_repo)},
                "base": {"ref": pr.base_ref, "sha": pr.base_sha, "repo": mini(repo)}}

    def _status_json(self, repo: Repo, status: Status, *, simple: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": f"{self.public_url}/repos/{repo.full_name}/statuses/{status.sha}",
            "avatar_url": f"{self.html_base}/avatars/u/{self.users[status.creator].id}?v=4"
            if status.creator in self.users else None,
            "id": status.id, "node_id": _node_id("StatusContext", status.id),
            "state": status.state, "description": status.description,
            "target_url": status.target_url, "context": status.context,
            "created_at": _iso(status.created_at), "updated_at": _iso(status.updated_at),
        }
        if not simple:
            out["creator"] = self._user_json(status.creator)
        return out

    def _check_run_json(self, repo: Repo, run: CheckRun) -> dict[str, Any]:
        api = f"{self.public_url}/repos/{repo.full_name}"
        prs = [self._pull_minimal_json(repo, i) for i in repo.issues.values()
               if i.is_pull and i.head_sha == run.head_sha and i.state == "open"]
        app_owner = run.app_owner
        app_id = 15368 if run.app_slug == "github-actions" else 20000 + int(hashlib.sha1(run.app_slug.encode()).hexdigest()[:4], 16)
        stamp = _iso(datetime(2020, 1, 1, tzinfo=timezone.utc))
        return {
            "id": run.id, "node_id": _node_id("CheckRun", run.id), "head_sha": run.head_sha,
            "external_id": run.external_id, "url": f"{api}/check-runs/{run.id}",
            "html_url": f"{self.html_base}/{repo.full_name}/runs/{run.id}",
            "details_url": run.details_url, "status": run.status, "conclusion": run.conclusion,
            "started_at": _iso(run.started_at) if run.started_at else None,
            "completed_at": _iso(run.completed_at) if run.completed_at else None,
            "output": {"title": run.output.get("title"), "summary": run.output.get("summary"),
                       "text": run.output.get("text"), "annotations_count": len(run.annotations),
                       "annotations_url": f"{api}/check-runs/{run.id}/annotations"},
            "name": run.name, "check_suite": {"id": run.id + 1},
            "app": {"id": app_id, "slug": run.app_slug, "node_id": _node_id("App", app_id),
                    "owner": self._user_json(app_owner),
                    "name": "GitHub Actions" if run.app_slug == "github-actions" else run.app_slug,
                    "description": "Automate your workflow from idea to production",
                    "external_url": f"{self.html_base}/features/actions",
                    "html_url": f"{self.html_base}/apps/github-actions",
                    "created_at": stamp, "updated_at": stamp,
                    "permissions": {"checks": "write", "statuses": "write", "issues": "write",
                                    "pull_requests": "write", "metadata": "read"},
                    "events": []},
            "pull_requests": prs,
        }

    def _run_json(self, repo: Repo, run: WorkflowRun) -> dict[str, Any]:
        api = f"{self.public_url}/repos/{repo.full_name}"
        url = f"{api}/actions/runs/{run.id}"
        head_repo = self.repos.get(run.head_repo, repo)
        prs = [self._pull_minimal_json(repo, repo.issues[n]) for n in run.pull_requests
               if n in repo.issues]
        stamp = _iso(run.created_at)
        return {
            "id": run.id, "name": run.name, "node_id": _node_id("WorkflowRun", run.id),
            "check_suite_id": run.id + 1, "check_suite_node_id": _node_id("CheckSuite", run.id + 1),
            "head_branch": run.head_branch, "head_sha": run.head_sha, "path": run.path,
            "display_title": run.name, "run_number": run.run_number, "run_attempt": run.run_attempt,
            "event": run.event, "status": run.status, "conclusion": run.conclusion,
            "workflow_id": run.workflow_id, "url": url,
            "html_url": f"{self.html_base}/{repo.full_name}/actions/runs/{run.id}",
            "pull_requests": prs, "created_at": stamp, "updated_at": stamp,
            "run_started_at": stamp, "actor": self._user_json(run.actor),
            "triggering_actor": self._user_json(run.actor),
            "jobs_url": f"{url}/jobs", "logs_url": f"{url}/logs",
            "check_suite_url": f"{api}/check-suites/{run.id + 1}",
            "artifacts_url": f"{url}/artifacts", "cancel_url": f"{url}/cancel",
            "rerun_url": f"{url}/rerun", "previous_attempt_url": None,
            "workflow_url": f"{api}/actions/workflows/{run.workflow_id}",
            "head_commit": {"id": run.head_sha, "tree_id": fake_sha(run.head_sha + ":tree"),
                            "message": "Make it faster", "timestamp": stamp,
                            "author": {"name": run.actor, "email": f"{run.actor}@example.invalid"},
                            "committer": {"name": run.actor, "email": f"{run.actor}@example.invalid"}},
            "repository": self._repo_json(repo, full=False),
            "head_repository": self._repo_json(head_repo, full=False),
        }

    def _commit_json(self, repo: Repo, sha: str) -> dict[str, Any]:
        api = f"{self.public_url}/repos/{repo.full_name}"
        stamp = _iso(datetime(2024, 1, 1, tzinfo=timezone.utc))
        person = {"name": repo.owner, "email": f"{repo.owner}@example.invalid", "date": stamp}
        return {
            "sha": sha, "node_id": _node_id("Commit", sha), "url": f"{api}/commits/{sha}",
            "html_url": f"{self.html_base}/{repo.full_name}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "commit": {"url": f"{api}/git/commits/{sha}", "author": person, "committer": person,
                       "message": "A commit", "comment_count": 0,
                       "tree": {"sha": fake_sha(sha + ":tree"), "url": f"{api}/git/trees/{fake_sha(sha + ':tree')}"},
                       "verification": {"verified": False, "reason": "unsigned", "payload": None,
                                        "signature": None, "verified_at": None}},
            "author": self._user_json(repo.owner), "committer": self._user_json(repo.owner),
            "parents": [], "stats": {"additions": 1, "deletions": 1, "total": 2}, "files": [],
        }

    def _resolve_ref(self, repo: Repo, ref: str) -> str:
        if ref in repo.branches:
            return repo.branches[ref]
        for prefix in ("refs/heads/", "heads/"):
            if ref.startswith(prefix) and ref[len(prefix):] in repo.branches:
                return repo.branches[ref[len(prefix):]]
        if ref in repo.commits:
            return ref
        if re.fullmatch(r"[0-9a-f]{7,39}", ref):
            full = [c for c in repo.commits if c.startswith(ref)]
            if len(full) == 1:
                return full[0]
        raise ApiError(422, f"No commit found for SHA: {ref}")

    # -------------------------------------------------------------------------- handlers

    def _h_get_user(self, ctx: _Ctx):
        if ctx.token is None:
            raise ApiError(401, "Requires authentication")
        if ctx.token.app:
            raise ApiError(403, "Resource not accessible by integration")
        return 200, self._private_user_json(ctx.token.login)

    def _h_get_rate_limit(self, ctx: _Ctx):
        token_value = next((t for t, tok in self.tokens.items() if tok is ctx.token), None)
        used = self._used.get(token_value, 0)
        limit = self.rate_limit_total if ctx.token else 60
        core = {"limit": limit, "used": used, "remaining": max(limit - used, 0), "reset": self._reset_at}
        other = {"limit": 30, "used": 0, "remaining": 30, "reset": self._reset_at}
        return 200, {"resources": {"core": core, "search": other,
                                   "graphql": {**core, "used": 0, "remaining": limit}},
                     "rate": core}

    def _h_get_repo(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        return 200, self._repo_json(repo, login=ctx.token.login if ctx.token else None)

    def _h_get_pull(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        pr = repo.issues.get(ctx.int_param("pull_number"))
        if pr is None or not pr.is_pull:
            raise not_found()
        return 200, self._pull_json(repo, pr)

    def _h_get_issue(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        return 200, self._issue_json(repo, self._issue_for(ctx, repo))

    def _h_list_comments(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        items = [self._comment_json(repo, c) for c in self.comments(repo.full_name, issue.number)]
        return self._paginate(ctx, items)

    def _comment_body(self, ctx: _Ctx) -> str:
        body = self._body_dict(ctx).get("body")
        if not isinstance(body, str) or not body:
            raise ApiError(422, "Validation Failed", errors=[
                {"resource": "IssueComment", "code": "missing_field", "field": "body"}])
        if len(body) > MAX_COMMENT:
            raise ApiError(422, "Validation Failed", errors=[
                {"resource": "IssueComment", "code": "custom", "field": "body",
                 "message": f"body is too long (maximum is {MAX_COMMENT} characters)"}])
        return body

    def _h_create_comment(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        self._require_write(ctx, repo, push=False)
        if issue.locked and self._role(repo, ctx.token.login) not in _WRITE_ROLES:
            raise ApiError(403, "Unable to create comment because issue is locked.")
        comment = self.add_comment(repo.full_name, issue.number, self._comment_body(ctx),
                                   user=ctx.token.login)
        out = self._comment_json(repo, comment)
        return 201, out, {"Location": out["url"]}

    def _h_get_comment(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        return 200, self._comment_json(repo, self._comment_for(ctx, repo))

    def _may_touch_comment(self, ctx: _Ctx, repo: Repo, comment: Comment) -> None:
        self._require_write(ctx, repo, push=False)
        if ctx.token.login != comment.user and self._role(repo, ctx.token.login) not in _WRITE_ROLES:
            raise ApiError(403, "Must have admin rights to Repository.")

    def _h_edit_comment(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        self._may_touch_comment(ctx, repo, comment)
        comment.body = self._comment_body(ctx)
        comment.updated_at = self.clock()
        return 200, self._comment_json(repo, comment)

    def _h_delete_comment(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        self._may_touch_comment(ctx, repo, comment)
        del self.comments_by_id[comment.id]
        return 204, None

    def _reaction_json(self, reaction: Reaction) -> dict[str, Any]:
        return {"id": reaction.id, "node_id": _node_id("Reaction", reaction.id),
                "user": self._user_json(reaction.user), "content": reaction.content,
                "created_at": _iso(reaction.created_at)}

    def _h_list_reactions(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        content = ctx.q("content")
        items = [self._reaction_json(r) for r in comment.reactions if content in (None, r.content)]
        return self._paginate(ctx, items)

    def _h_create_reaction(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        self._require_write(ctx, repo, push=False)
        content = self._body_dict(ctx).get("content")
        if content not in REACTIONS:
            raise ApiError(422, "Validation Failed", errors=[
                {"resource": "Reaction", "code": "invalid", "field": "content"}])
        for r in comment.reactions:
            if r.user == ctx.token.login and r.content == content:
                return 200, self._reaction_json(r)
        reaction = Reaction(id=self._next_id(), content=content, user=ctx.token.login,
                            created_at=self.clock())
        comment.reactions.append(reaction)
        return 201, self._reaction_json(reaction)

    def _h_list_labels(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        return self._paginate(ctx, [self._label_json(repo, n) for n in issue.labels])

    def _label_names(self, ctx: _Ctx) -> list[str]:
        body = ctx.body
        if isinstance(body, dict):
            body = body.get("labels", [])
        if not isinstance(body, list):
            raise ApiError(422, "Validation Failed", errors=[{"code": "invalid", "field": "labels"}])
        names = []
        for item in body:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str) or not name:
                raise ApiError(422, "Validation Failed", errors=[{"code": "invalid", "field": "labels"}])
            names.append(name)
        return names

    def _h_add_labels(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        self._require_write(ctx, repo)
        for name in self._label_names(ctx):
            label = self._ensure_label(repo, name)
            if label.name not in issue.labels:
                issue.labels.append(label.name)
        return 200, [self._label_json(repo, n) for n in issue.labels]

    def _h_set_labels(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        self._require_write(ctx, repo)
        issue.labels = []
        for name in self._label_names(ctx):
            label = self._ensure_label(repo, name)
            if label.name not in issue.labels:
                issue.labels.append(label.name)
        return 200, [self._label_json(repo, n) for n in issue.labels]

    def _h_remove_label(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        self._require_write(ctx, repo)
        wanted = ctx.params["name"].lower()
        present = [n for n in issue.labels if n.lower() == wanted]
        if not present:
            raise ApiError(404, "Label does not exist")
        issue.labels.remove(present[0])
        return 200, [self._label_json(repo, n) for n in issue.labels]

    def _h_create_status(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        self._require_write(ctx, repo)
        body = self._body_dict(ctx)
        sha = ctx.params["sha"]
        if sha not in repo.commits:
            raise ApiError(422, f"No commit found for SHA: {sha}")
        state = body.get("state")
        if state not in STATUS_STATES:
            raise ApiError(422, "Validation Failed", errors=[
                {"resource": "Status", "code": "custom", "field": "state",
                 "message": "state is not included in the list"}])
        description = body.get("description")
        if isinstance(description, str) and len(description) > 140:
            raise ApiError(422, "Validation Failed", errors=[
                {"resource": "Status", "code": "custom", "field": "description",
                 "message": "description is too long (maximum is 140 characters)"}])
        status = self._new_status(repo, sha, state, body.get("context") or "default",
                                  description, body.get("target_url"), ctx.token.login)
        return 201, self._status_json(repo, status)

    def _h_get_commit(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        return 200, self._commit_json(repo, self._resolve_ref(repo, ctx.params["ref"]))

    def _h_list_statuses(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        try:
            sha = self._resolve_ref(repo, ctx.params["ref"])
        except ApiError:
            return self._paginate(ctx, [])
        items = [self._status_json(repo, s) for s in reversed(self.statuses(repo.full_name, sha))]
        return self._paginate(ctx, items)

    def _h_combined_status(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        try:
            sha = self._resolve_ref(repo, ctx.params["ref"])
        except ApiError:
            raise not_found() from None
        latest: dict[str, Status] = {}
        for s in self.statuses(repo.full_name, sha):
            latest[s.context] = s  # oldest first: the last one per context wins
        states = {s.state for s in latest.values()}
        if states & {"error", "failure"}:
            state = "failure"
        elif not states or "pending" in states:
            state = "pending"
        else:
            state = "success"
        api = f"{self.public_url}/repos/{repo.full_name}"
        return 200, {
            "state": state, "sha": sha, "total_count": len(latest),
            "statuses": [self._status_json(repo, s, simple=True) for s in latest.values()],
            "repository": self._repo_json(repo, full=False),
            "commit_url": f"{api}/commits/{sha}", "url": f"{api}/commits/{sha}/status",
        }

    def _check_run_fields(self, run: CheckRun, body: dict[str, Any]) -> None:
        """Apply a create/update body, refusing what GitHub refuses (422): a `completed` without a conclusion,
        an output without title and summary, more than 50 annotations, an annotation without path or lines."""
        def invalid(message: str) -> ApiError:
            return ApiError(422, "Invalid request.\n\n" + message)
        if "status" in body and body["status"] not in CHECK_STATUSES:
            raise invalid(f"{body['status']!r} is not a member of {list(CHECK_STATUSES)}.")
        if "conclusion" in body and body["conclusion"] is not None and body["conclusion"] not in CHECK_CONCLUSIONS:
            raise invalid(f"{body['conclusion']!r} is not a member of {list(CHECK_CONCLUSIONS)}.")
        if body.get("status") == "completed" and not body.get("conclusion") and run.conclusion is None:
            raise invalid("conclusion wasn't supplied.")
        output = body.get("output")
        annotations: list[dict[str, Any]] = []
        if output is not None:
            if not isinstance(output, dict) or not isinstance(output.get("title"), str) \
                    or not isinstance(output.get("summary"), str):
                raise invalid("\"title\", \"summary\" wasn't supplied.")
            if len(output["summary"]) > 65535 or len(output.get("text") or "") > 65535:
                raise invalid("output.summary is too long (maximum is 65535 characters)")
            annotations = output.get("annotations") or []
            if not isinstance(annotations, list) or len(annotations) > 50:
                raise invalid("Only 50 annotations are allowed per request.")
            for item in annotations:
                if not isinstance(item, dict) or not all(k in item for k in ANNOTATION_FIELDS) \
                        or item["annotation_level"] not in ("notice", "warning", "failure"):
                    raise invalid(f"an annotation needs {', '.join(ANNOTATION_FIELDS)}.")
        if "name" in body:
            run.name = body["name"]
        if "details_url" in body:
            run.details_url = body["details_url"]
        if "external_id" in body:
            run.external_id = body["external_id"]
        if "status" in body:
            run.status = body["status"]
        if isinstance(output, dict):
            run.output.update({k: output.get(k) for k in ("title", "summary", "text") if k in output})
            run.annotations.extend(dict(item) for item in annotations)
        if "started_at" in body and body["started_at"]:
            run.started_at = datetime.fromisoformat(body["started_at"].replace("Z", "+00:00"))
        if body.get("conclusion"):
            run.conclusion = body["conclusion"]
            run.status = "completed"
        if "completed_at" in body and body["completed_at"]:
            run.completed_at = datetime.fromisoformat(body["completed_at"].replace("Z", "+00:00"))
        if run.status == "completed" and run.completed_at is None:
            run.completed_at = self.clock()
        run.history.append((run.status, run.conclusion))

    def _h_create_check_run(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        self._require_write(ctx, repo)
        if not ctx.token.app:
            raise ApiError(403, "You must authenticate via a GitHub App.")
        body = self._body_dict(ctx)
        if not body.get("name") or not body.get("head_sha"):
            raise ApiError(422, "Invalid request.\n\n\"name\", \"head_sha\" wasn't supplied.")
        if body["head_sha"] not in repo.commits:
            raise ApiError(422, "No commit found for SHA: " + str(body["head_sha"]))
        run = CheckRun(id=self._next_id(), name=body["name"], head_sha=body["head_sha"],
                       status="queued", conclusion=None, output={}, details_url=None,
                       external_id=None, started_at=self.clock(), completed_at=None,
                       app_owner="github", app_slug=ctx.token.login.removesuffix("[bot]"))
        self.add_user("github", type="Organization")
        self._check_run_fields(run, body)
        repo.check_runs[run.id] = run
        return 201, self._check_run_json(repo, run)

    def _check_run_for(self, ctx: _Ctx, repo: Repo) -> CheckRun:
        run = repo.check_runs.get(ctx.int_param("check_run_id"))
        if run is None:
            raise not_found()
        return run

    def _h_list_check_runs(self, ctx: _Ctx):
        """GET .../commits/{ref}/check-runs: newest first, filtered by check_name, status, app_id; paginated
        inside {"total_count", "check_runs"} as GitHub does."""
        repo = self._repo_for(ctx)
        try:
            sha = self._resolve_ref(repo, ctx.params["ref"])
        except ApiError:
            sha = ctx.params["ref"]
        name, status = ctx.q("check_name"), ctx.q("status")
        runs = [r for r in reversed(list(repo.check_runs.values())) if r.head_sha == sha
                and name in (None, r.name) and status in (None, r.status)]
        if ctx.q("filter", "latest") == "latest":  # the newest run per name (and App)
            seen: set[tuple[str, str]] = set()
            runs = [r for r in runs if (r.name, r.app_slug) not in seen and not seen.add((r.name, r.app_slug))]
        status_code, page, headers = self._paginate(ctx, [self._check_run_json(repo, r) for r in runs])
        return status_code, {"total_count": len(runs), "check_runs": page}, headers

    def _h_get_check_run(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        return 200, self._check_run_json(repo, self._check_run_for(ctx, repo))

    def _h_update_check_run(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        run = self._check_run_for(ctx, repo)
        self._require_write(ctx, repo)
        if not ctx.token.app:
            raise ApiError(403, "You must authenticate via a GitHub App.")
        self._check_run_fields(run, self._body_dict(ctx))
        return 200, self._check_run_json(repo, run)

    def _h_get_permission(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        login = ctx.params["username"]
        if login not in self.users:
            raise ApiError(404, f"{login} is not a user")
        role = self._role(repo, login)
        user = {**self._user_json(login), "role_name": role,
                "permissions": {"admin": role == "admin", "maintain": role in ("admin", "maintain"),
                                "push": role in _WRITE_ROLES,
                                "triage": role in _WRITE_ROLES | {"triage"}, "pull": role != "none"}}
        return 200, {"permission": _REPORTED[role], "role_name": role, "user": user}

    def _h_get_run(self, ctx: _Ctx):
        repo = self._repo_for(ctx)
        run = repo.runs.get(ctx.int_param("run_id"))
        if run is None:
            raise not_found()
        return 200, self._run_json(repo, run)


_REASONS = {
    400: "Bad Request", 401: "Bad credentials", 403: "Forbidden", 404: "Not Found",
    409: "Conflict", 410: "Gone", 422: "Validation Failed", 429: "Too Many Requests",
    500: "Server Error", 502: "Server Error", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class _Handler(BaseHTTPRequestHandler):
    double: GitHubDouble
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, body, extra = self.double.handle(self.command, self.path, headers, raw)
        except Exception as exc:  # a bug in the double: make it loud, not a hang
            status, body, extra = 500, {"message": f"ghdouble bug: {exc!r}"}, {}
        if isinstance(body, RawBody):
            data, content_type = body.data, body.content_type
        else:
            data = b"" if body is None else json.dumps(body).encode()
            content_type = "application/json; charset=utf-8"
        try:
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
            pass

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve
