"""pytest fixtures for the GitHub double behind prism. ``tests/conftest.py`` does
``from tests.ghdouble.fixtures import *``.

- ``github_double`` (session): the double and ``prism proxy`` in front of it, started once.
- ``gh`` (function): a :class:`GhSession` on fresh state; at teardown it asserts that prism
  reported no spec violation for any exchange of the test (minus the allowed known ones).
- ``webhook`` (function): :func:`tests.ghdouble.webhooks.load_event`, for event payloads.

Example::

    def test_sticky_comment(gh):
        pr = gh.seed_pr()                                # repo, users, tokens, an open PR
        g = gh.client(pr.token)                          # PyGithub through prism
        issue = g.get_repo(pr.repo).get_issue(pr.number)
        issue.create_comment("hi")
        assert [c.body for c in gh.comments(pr.repo, pr.number)] == ["hi"]

The :class:`GhSession` passes unknown attributes to the :class:`GitHubDouble`, so ``gh.fail(...)``,
``gh.requests``, ``gh.add_pull(...)``, ``gh.comments(...)`` all work on it directly.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from .prism import PRISM_BIN, Exchange, Prism, Violation
from .server import GitHubDouble, fake_sha
from .spec import OPENAPI_FILE
from . import webhooks as _webhooks

__all__ = ["github_double", "gh", "webhook", "GhSession", "SeededPR", "KNOWN_VIOLATIONS",
           "DEFAULT_ALLOWED", "make_client"]


@dataclass(frozen=True)
class KnownViolation:
    method: str  # regex on the upper-case method
    path: str  # regex on the request path (no query)
    message: str  # regex on "location: message"
    why: str


# Violations that are the spec's fault (or a deliberate choice), by name. Each is narrow: a method,
# a path and a message. Allow one in a test with ``gh.allow_violations(name)``.
KNOWN_VIOLATIONS: dict[str, KnownViolation] = {
    # GitHub's description of "Add labels" / "Set labels" (@octokit/openapi 23.0.2) only has the
    # object form {"labels": [...]} in its schema, while its own text says "You can also pass an
    # array of labels directly", and GitHub accepts it. PyGithub's Issue.add_to_labels() and
    # set_labels() send a bare array. The spec is wrong, so this one is allowed by default.
    "labels-bare-array": KnownViolation(
        "POST|PUT", r"/repos/[^/]+/[^/]+/issues/\d+/labels",
        r"^request\.body: Request body must (be object|match exactly one schema in oneOf)",
        "the labels schema lacks the bare-array form its own description allows (PyGithub sends it)"),
    # PyGithub's Commit.get_statuses() calls GET /repos/{owner}/{repo}/statuses/{sha}: an
    # undocumented alias GitHub still serves (the double serves it too). The documented endpoint is
    # GET /repos/{owner}/{repo}/commits/{ref}/statuses. Bolt should prefer get_combined_status() or
    # the documented path; a test that exercises get_statuses() must opt in.
    "legacy-statuses-get": KnownViolation(
        "GET", r"/repos/[^/]+/[^/]+/statuses/[^/]+", r"^request: Selected route not found",
        "PyGithub's Commit.get_statuses() uses an undocumented alias"),
}
DEFAULT_ALLOWED = ("labels-bare-array",)


def make_client(base_url: str, token: str | None, *, retry: Any = 0, timeout: float = 10,
                **kwargs: Any):
    """A PyGithub client for tests: no throttling; ``retry`` as for ``Github(retry=...)``
    (default 0: no retries, so a fault surfaces at once; pass a ``GithubRetry`` to test retries)."""
    from github import Auth, Github

    auth = Auth.Token(token) if token else None
    return Github(base_url=base_url, auth=auth, seconds_between_requests=0,
                  seconds_between_writes=0, retry=retry, timeout=timeout, **kwargs)


@dataclass
class SeededPR:
    """What :meth:`GhSession.seed_pr` created."""

    repo: str
    number: int
    head_sha: str
    base_sha: str
    head_ref: str
    base_ref: str
    head_repo: str  # == repo unless fork=True
    owner: str  # admin of the repo
    maintainer: str  # write
    author: str  # the PR's author (read)
    token: str  # Actions GITHUB_TOKEN: App token that may write (statuses, comments, labels, checks)
    read_token: str  # Actions GITHUB_TOKEN on a fork PR: read-only
    maintainer_token: str  # the maintainer's personal access token (write, no check runs)
    author_token: str  # the author's personal access token (may comment, no push access)
    run_id: int | None = None  # a workflow run for head_sha, when seeded


class GhSession:
    """The double with fresh state for one test, plus the URL and helpers to talk to it."""

    def __init__(self, double: GitHubDouble, prism: Prism):
        self.double = double
        self.prism = prism
        self.base_url = prism.url  # give this to Github(base_url=...)
        self.direct_url = double.url  # the double without prism (no validation): avoid
        self._mark = prism.mark()
        self._allowed: list[tuple[str, KnownViolation]] = [(n, KNOWN_VIOLATIONS[n]) for n in DEFAULT_ALLOWED]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.double, name)

    # ----------------------------------------------------------------------- clients

    def client(self, token: str | None, **kwargs: Any):
        """``Github(base_url=self.base_url, auth=Auth.Token(token), ...)``; see :func:`make_client`."""
        return make_client(self.base_url, token, **kwargs)

    # ----------------------------------------------------------------------- seeding

    def seed_pr(self, repo: str = "octo-org/bolt-demo", number: int = 7, *, fork: bool = False,
                author: str = "contributor", maintainer: str = "maintainer",
                head_sha: str | None = None, base_sha: str | None = None,
                head_ref: str = "faster-parser", base_ref: str = "main",
                labels: tuple[str, ...] = (), title: str = "Speed up the parser",
                workflow_run: bool = False, run_event: str = "pull_request",
                run_conclusion: str | None = "success") -> SeededPR:
        """A repo with an owner (admin), a maintainer (write), an author (read) and their tokens,
        and an open PR from the author (from a fork ``author/<name>`` if ``fork``). With
        ``workflow_run`` also a completed run on the head sha; from a fork its ``pull_requests``
        is empty, as on GitHub."""
        d = self.double
        owner = repo.split("/")[0]
        d.add_repo(repo)
        d.set_permission(repo, maintainer, "write")
        d.set_permission(repo, author, "read")
        head_repo = f"{author}/{repo.split('/')[1]}" if fork else repo
        pr = d.add_pull(repo, number, user=author, head_sha=head_sha or fake_sha(f"{repo}:head"),
                        base_sha=base_sha or fake_sha(f"{repo}:base"), head_ref=head_ref,
                        base_ref=base_ref, head_repo=head_repo, labels=labels, title=title)
        d.add_token("ghs_actions_write", "github-actions[bot]", app=True)
        d.add_token("ghs_actions_read", "github-actions[bot]", app=True, write=False)
        d.add_token("ghp_maintainer", maintainer)
        d.add_token("ghp_author", author)
        run_id = None
        if workflow_run:
            run = d.add_workflow_run(repo, head_sha=pr.head_sha, event=run_event,
                                     conclusion=run_conclusion, head_branch=head_ref,
                                     head_repo=head_repo, actor=author,
                                     pull_requests=() if fork else (pr.number,))
            run_id = run.id
        return SeededPR(repo=repo, number=pr.number, head_sha=pr.head_sha, base_sha=pr.base_sha,
                        head_ref=head_ref, base_ref=base_ref, head_repo=head_repo, owner=owner,
                        maintainer=maintainer, author=author, token="ghs_actions_write",
                        read_token="ghs_actions_read", maintainer_token="ghp_maintainer",
                        author_token="ghp_author", run_id=run_id)

    # ----------------------------------------------------------------------- malformed answers

    def answer_html(self, method: str, pattern: str | re.Pattern[str], *args: Any, **kwargs: Any):
        """:meth:`GitHubDouble.answer_html`, with prism's complaints about that answer allowed."""
        rule = self.double.answer_html(method, pattern, *args, **kwargs)
        self._allow_answers(method, pattern, "a deliberate HTML answer")
        return rule

    def answer_truncated(self, method: str, pattern: str | re.Pattern[str], *args: Any, **kwargs: Any):
        """:meth:`GitHubDouble.answer_truncated`, with prism's complaints about that answer allowed."""
        rule = self.double.answer_truncated(method, pattern, *args, **kwargs)
        self._allow_answers(method, pattern, "a deliberately truncated answer")
        return rule

    def _allow_answers(self, method: str, pattern: str | re.Pattern[str], why: str) -> None:
        path = pattern.pattern if isinstance(pattern, re.Pattern) else fnmatch.translate(pattern)
        self.allow(".*" if method == "*" else method.upper(), path, r"^response", why)

    # ----------------------------------------------------------------------- violations

    def allow_violations(self, *names: str) -> None:
        """Allow listed :data:`KNOWN_VIOLATIONS` for this test."""
        for name in names:
            self._allowed.append((name, KNOWN_VIOLATIONS[name]))

    def allow(self, method: str, path: str, message: str, why: str) -> None:
        """Allow an ad-hoc violation (regexes on method, path, "location: message"); say why."""
        self._allowed.append(("ad-hoc", KnownViolation(method, path, message, why)))

    def settle(self) -> None:
        """Wait until prism has answered every request the double received in this test.
        Needed after a client timeout on a delayed request: prism answers the next request
        only once the delayed one is done."""
        slow = max((f.delay for f in self.double.faults), default=0.0)
        self.prism.settle(len(self.double.requests), self._mark, timeout=2.0 + slow)

    def exchanges(self) -> list[Exchange]:
        """What prism saw during this test so far (waits for its log to catch up)."""
        self.settle()
        return self.prism.exchanges(self._mark)

    def _is_allowed(self, ex: Exchange, v: Violation) -> bool:
        text = f"{v.location}: {v.message}"
        return any(re.fullmatch(k.method, ex.method.upper()) and re.fullmatch(k.path, ex.path.split("?")[0])
                   and re.search(k.message, text) for _, k in self._allowed)

    def violations(self) -> list[tuple[Exchange, Violation]]:
        """Violations of this test that are not allowed."""
        return [(ex, v) for ex in self.exchanges() for v in ex.violations if not self._is_allowed(ex, v)]

    def assert_no_violations(self) -> None:
        bad = self.violations()
        if bad:
            lines = [f"  {ex}: {v}" for ex, v in bad[:40]]
            more = f"\n  ... and {len(bad) - 40} more" if len(bad) > 40 else ""
            pytest.fail("prism found GitHub OpenAPI violations:\n" + "\n".join(lines) + more,
                        pytrace=False)


def _prism_available() -> bool:
    return PRISM_BIN.exists() and OPENAPI_FILE.exists()


@pytest.fixture(scope="session")
def github_double() -> Iterator[tuple[GitHubDouble, Prism]]:
    """The double and prism in front of it, for the whole session: ``(double, prism)``."""
    if not _prism_available():
        message = "prism / @octokit/openapi missing: run .ci/install-node"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    double = GitHubDouble().start()
    prism = Prism(double.url)
    try:
        prism.start()
        double.set_public_url(prism.url)
        yield double, prism
    finally:
        prism.stop()
        double.stop()


@pytest.fixture
def gh(github_double: tuple[GitHubDouble, Prism]) -> Iterator[GhSession]:
    """Fresh double state for this test; fails the test if prism reported a violation."""
    double, prism = github_double
    double.reset()
    session = GhSession(double, prism)
    yield session
    try:
        session.assert_no_violations()
    finally:
        double.reset()


@pytest.fixture
def webhook():
    """``webhook(event, action=None, **adapt)``: a real example payload, adapted
    (see :func:`tests.ghdouble.webhooks.load_event`)."""
    return _webhooks.load_event
