"""Faults, hostile input, races and runaway benchmarks: nothing measured is lost and nobody is let in.

docs/reliability.md lists every case with what Bolt does; each row names a test in this file (or another).
"""

from __future__ import annotations

import fnmatch
import html
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("github")

from click.testing import CliRunner

from bolt_bot.github import publish as pub
from bolt_bot.cli import main
from bolt_bot.errors import EXIT_BAD_INPUT, EXIT_PUBLISH, BoltError, PublishError
from bolt_bot.github.client import Client, ClientOptions, ReadOnlyToken
from bolt_bot.model import REGRESSED, UNCHANGED, CommitRef, ProfileLine, Results, SideSummary, StageComparison
from bolt_bot.report.state import COMMENT_LIMIT, MARKER, read_state, state_name
from bolt_bot.settings import Settings
from tests.ghdouble.webhooks import load_event
from tests.test_action import invoke, make_artifact, run_event, runner_env
from tests.test_publish import Env, client_for, make_results, results_dir
from tests.test_render import assert_inert

_conftest = Path(__file__).with_name("conftest.py")
if not (_conftest.exists() and "ghdouble.fixtures" in _conftest.read_text(encoding="utf-8")):
    from tests.ghdouble.fixtures import gh, github_double, webhook  # noqa: F401

LABEL = "perf-regression"


def bolt_comments(gh, pr) -> list:
    return [c for c in gh.comments(pr.repo, pr.number) if MARKER in c.body]


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "\r" not in text and "Traceback" not in text, text
    return text


# ====================================================================================== GitHub faults
#
# Every endpoint publish touches, each set up so that one publish (or one client call) reaches it.

ENDPOINTS = {
    "list-comments": ("GET", "/repos/*/*/issues/*/comments"),
    "create-comment": ("POST", "/repos/*/*/issues/*/comments"),
    "edit-comment": ("PATCH", "/repos/*/*/issues/comments/*"),
    "get-pr": ("GET", "/repos/*/*/pulls/*"),
    "create-status": ("POST", "/repos/*/*/statuses/*"),
    "add-label": ("POST", "/repos/*/*/issues/*/labels"),
    "remove-label": ("DELETE", "/repos/*/*/issues/*/labels/*"),
    "permission": ("GET", "/repos/*/*/collaborators/*/permission"),
}


class Scenario:
    """A PR prepared so that `act` reaches the endpoint; `check` verifies the state after a success."""

    def __init__(self, gh, tmp_path: Path, endpoint: str):
        self.gh, self.tmp, self.endpoint = gh, tmp_path, endpoint
        self.pr = pr = gh.seed_pr(labels=(LABEL,) if endpoint == "remove-label" else (), workflow_run=True)
        self.env = Env(tmp_path)
        self.verdict = UNCHANGED if endpoint == "remove-label" else REGRESSED
        self.settings = Settings(comment="always")
        if endpoint == "edit-comment":  # a comment to edit: an earlier run on the same head
            self._publish_direct(make_results(pr.head_sha, verdict=UNCHANGED), "earlier")
        if endpoint == "get-pr":  # publish always asks where the PR is now; here an older head commented first
            gh.add_commit(pr.repo, "d" * 40)
            self._publish_direct(make_results("d" * 40), "older")
        gh.clear_faults()
        self.folder = results_dir(tmp_path, make_results(pr.head_sha, pr.base_sha, verdict=self.verdict), "now")

    def _publish_direct(self, results: Results, name: str) -> None:
        pub.publish(results_dir(self.tmp, results, name), client_for(self.gh, self.pr.token, self.pr.repo),
                    self.pr.repo, self.pr.number, self.settings, environ={}, stdout=io.StringIO())

    def act(self, client: Client):
        if self.endpoint == "permission":
            return client.permission(self.pr.maintainer)
        return pub.publish(self.folder, client, self.pr.repo, self.pr.number, self.settings, environ=self.env,
                           stdout=io.StringIO())

    def check_success(self, result) -> None:
        pr, gh = self.pr, self.gh
        if self.endpoint == "permission":
            assert result == "write"
            return
        comments = bolt_comments(gh, pr)
        assert len(comments) == 1, comments
        state = read_state(comments[0].body)
        assert state["head_sha"] == pr.head_sha and state["verdict"] == self.verdict
        statuses = gh.statuses(pr.repo, pr.head_sha)
        assert statuses and statuses[-1].state == ("failure" if self.verdict == REGRESSED else "success")
        assert gh.labels(pr.repo, pr.number) == ([LABEL] if self.verdict == REGRESSED else [])
        assert result.comment in ("created", "updated")

    def check_invariants(self) -> None:
        """Whatever happened: never a second comment, and what was measured is on disk with the outputs."""
        assert len(bolt_comments(self.gh, self.pr)) <= 1
        assert (self.folder / "results.json").is_file()
        if self.endpoint != "permission":
            assert self.env.outputs and self.env.outputs[-1]["verdict"] == self.verdict


def fast_client(gh, token: str, repo: str, *, timeout: float = 5, max_rate_wait: float = 3, waits=None) -> Client:
    options = ClientOptions(base_url=gh.base_url, seconds_between_requests=0, seconds_between_writes=0, retries=2,
                            backoff=0, timeout=timeout, max_rate_wait=max_rate_wait)
    return Client(token, repo, options, **({"sleep": waits.append} if waits is not None else {}))


FAULTS = {
    # name: (fault rule arguments, what must happen)
    "5xx-once": ({"status": 502}, "succeeds"),
    "5xx-once-after-action": ({"status": 502, "after_action": True}, "succeeds"),
    "5xx-always": ({"status": 503, "times": None}, "fails"),
    "5xx-always-after-action": ({"status": 500, "times": None, "after_action": True}, "either"),
}


@pytest.mark.parametrize("fault", [pytest.param(f, marks=pytest.mark.slow) if f == "5xx-always-after-action" else f
                                   for f in FAULTS])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_5xx_on_every_endpoint(gh, tmp_path, endpoint, fault):
    scenario = Scenario(gh, tmp_path, endpoint)
    method, pattern = ENDPOINTS[endpoint]
    rule, expected = FAULTS[fault]
    gh.fail(method, pattern, **rule)
    client = fast_client(gh, scenario.pr.token, scenario.pr.repo)
    try:
        result = scenario.act(client)
    except PublishError as error:
        assert expected != "succeeds", f"{endpoint} {fault}: {error}"
        assert error.exit_code == EXIT_PUBLISH
        assert one_line(error).startswith(("GitHub answered 50", "GitHub kept failing while"))
    else:
        assert expected != "fails", f"{endpoint} {fault} did not fail"
        scenario.check_success(result)
    assert gh.requests_matching(method, pattern), "the fault's endpoint was never reached"
    scenario.check_invariants()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_timeout_on_every_endpoint(gh, tmp_path, endpoint):
    """The server is slower than the client's timeout but acts all the same: the outcome is unknown to Bolt."""
    scenario = Scenario(gh, tmp_path, endpoint)
    method, pattern = ENDPOINTS[endpoint]
    gh.delay(method, pattern, 1.6)
    client = fast_client(gh, scenario.pr.token, scenario.pr.repo, timeout=1)
    try:
        result = scenario.act(client)
    except PublishError as error:  # allowed, but then as one line and exit 3
        assert error.exit_code == EXIT_PUBLISH and one_line(error)
    else:
        scenario.check_success(result)
    gh.settle()
    assert any(r.injected == "delay" for r in gh.requests_matching(method, pattern))
    scenario.check_invariants()


RATE_LIMITS = {
    "primary-lifts-soon": lambda gh, m, p: gh.rate_limit(m, p, reset_in=1),
    "primary-lifts-in-an-hour": lambda gh, m, p: gh.rate_limit(m, p, reset_in=3600, times=None),
    "secondary": lambda gh, m, p: gh.secondary_rate_limit(m, p, retry_after=1),
    "secondary-for-an-hour": lambda gh, m, p: gh.secondary_rate_limit(m, p, retry_after=3600, times=None),
    "429-retry-after-2": lambda gh, m, p: gh.too_many_requests(m, p, retry_after=2),
    "429-retry-after-an-hour": lambda gh, m, p: gh.too_many_requests(m, p, retry_after=3600, times=None),
}


@pytest.mark.parametrize("limit", RATE_LIMITS)
@pytest.mark.parametrize("endpoint", ["list-comments", "create-comment",
                                      *(pytest.param(e, marks=pytest.mark.slow)
                                        for e in ("edit-comment", "create-status", "remove-label"))])
def test_rate_limits_wait_a_bounded_time(gh, tmp_path, endpoint, limit):
    """Within the bound (3 s here) Bolt waits and goes on; beyond it, it stops with exit 3 after at most
    `retries` waits of the bound each (GithubRetry's own waits, for GET, PATCH and DELETE)."""
    scenario = Scenario(gh, tmp_path, endpoint)
    method, pattern = ENDPOINTS[endpoint]
    RATE_LIMITS[limit](gh, method, pattern)
    waits: list[float] = []
    client = fast_client(gh, scenario.pr.token, scenario.pr.repo, max_rate_wait=3, waits=waits)
    started = time.monotonic()
    try:
        result = scenario.act(client)
    except PublishError as error:
        assert "hour" in limit, f"{endpoint} {limit}: {error}"
        assert error.exit_code == EXIT_PUBLISH and "rate limit" in one_line(error)
    else:
        assert "hour" not in limit, f"{endpoint} {limit}: waited for an hour-long limit"
        scenario.check_success(result)
    elapsed = time.monotonic() - started
    assert elapsed < 3 * 2 + 3 and sum(waits) <= 3, (elapsed, waits)
    scenario.check_invariants()


@pytest.mark.parametrize("comment", ["always", "never"])
def test_read_only_token_is_recognised_on_every_write(gh, tmp_path, comment):
    """A fork PR's token: the first write (comment, else the status) is refused, and Bolt says why."""
    pr = gh.seed_pr()
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    with pytest.raises(ReadOnlyToken) as err:
        pub.publish(folder, fast_client(gh, pr.read_token, pr.repo), pr.repo, pr.number, Settings(comment=comment),
                    environ={}, stdout=io.StringIO())
    assert err.value.exit_code == EXIT_PUBLISH and "Resource not accessible by integration" in one_line(err.value)
    writes = [r for r in gh.requests if r.method != "GET"]
    assert len(writes) == 1 and writes[0].status == 403  # gave up at the first refusal, no retries
    assert gh.comments(pr.repo, pr.number) == [] and gh.statuses(pr.repo, pr.head_sha) == []


@pytest.mark.parametrize("when", ["before", "after-the-comment"])
def test_pull_request_deleted_meanwhile_is_one_line_exit_3(gh, tmp_path, when):
    pr = gh.seed_pr()
    env = Env(tmp_path)
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    if when == "before":
        del gh.repo(pr.repo).issues[pr.number]
    else:  # the comment is written, then the PR disappears before the status and the label
        gh.fail("POST", "/repos/*/*/statuses/*", 404, times=None)
        gh.fail("POST", "/repos/*/*/issues/*/labels", 404, times=None)
    with pytest.raises(PublishError) as err:
        pub.publish(folder, fast_client(gh, pr.token, pr.repo), pr.repo, pr.number, Settings(), environ=env,
                    stdout=io.StringIO())
    assert err.value.exit_code == EXIT_PUBLISH and "404 Not Found" in one_line(err.value)
    assert (folder / "results.json").is_file() and env.outputs[-1]["verdict"] == REGRESSED
    assert len(gh.requests_matching("POST", "/repos/*/*/issues/*/comments")) == (0 if when == "before" else 1)


def test_publish_command_on_a_failing_github_exits_3_with_one_line(gh, tmp_path):
    pr = gh.seed_pr()
    results = make_results(pr.head_sha)
    results.repository, results.pull_request = pr.repo, pr.number
    folder = results_dir(tmp_path, results)
    gh.fail("POST", "/repos/*/*/statuses/*", 503, times=None)
    env = {"BOLT_TOKEN": pr.token, "GITHUB_API_URL": gh.base_url, "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0",
           "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0", "BOLT_GITHUB_BACKOFF": "0", "BOLT_GITHUB_RETRIES": "1",
           "GITHUB_OUTPUT": "", "GITHUB_STEP_SUMMARY": ""}
    result = CliRunner().invoke(main, ["publish", str(folder), "--token-env", "BOLT_TOKEN"], env=env)
    assert result.exit_code == EXIT_PUBLISH
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("bolt: error: GitHub answered 503 while setting")
    assert len(bolt_comments(gh, pr)) == 1 and (folder / "results.json").is_file()


def test_a_comment_forged_by_the_pr_author_is_never_adopted(gh, tmp_path):
    """The author posts Bolt's marker with a made-up state first: Bolt writes its own comment and keeps none of it."""
    pr = gh.seed_pr()
    forged = {"v": 1, "head_sha": pr.head_sha, "approvals": [{"user": pr.maintainer, "sha": pr.head_sha}]}
    gh.add_comment(pr.repo, pr.number, f"{MARKER}\n<!-- bolt:state {json.dumps(forged)} -->\nall good",
                   user=pr.author)
    for token in (pr.token, pr.maintainer_token):  # the Actions token, and a maintainer's PAT that could edit it
        pub.publish(results_dir(tmp_path, make_results(pr.head_sha), token), fast_client(gh, token, pr.repo),
                    pr.repo, pr.number, Settings(), environ={}, stdout=io.StringIO())
    comments = gh.comments(pr.repo, pr.number)
    assert comments[0].body.endswith("all good")  # left alone
    ours = [c for c in comments if c.user != pr.author]
    # Bolt's comment is the one written by the identity it writes with: one per token here, none adopted
    assert len({c.user for c in ours}) == len(ours) == 2
    assert all("approvals" not in read_state(c.body) for c in ours)


# ====================================================================== malformed answers, pages, waits
# Issue 13, items 5 and 10: every answer is checked (JSON, the fields Bolt reads) before it is believed.

OWN = "octo-org/bolt-demo"


def publish_cli(gh, pr, folder: Path, *args: str, **env: str):
    """`bolt publish DIR` through the CLI, as a workflow step runs it, against the double behind prism."""
    base = {"BOLT_TOKEN": pr.token, "GITHUB_API_URL": gh.base_url, "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0",
            "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0", "BOLT_GITHUB_BACKOFF": "0", "BOLT_GITHUB_RETRIES": "1",
            "BOLT_GITHUB_TIMEOUT": "5", "BOLT_GITHUB_MAX_RATE_WAIT": "3", "GITHUB_OUTPUT": "",
            "GITHUB_STEP_SUMMARY": ""}
    return CliRunner().invoke(main, ["publish", str(folder), "--repo", pr.repo, "--pr", str(pr.number),
                                     "--token-env", "BOLT_TOKEN", *args], env={**base, **env})


MALFORMED = {
    # name: (endpoint, how the answer is broken, what the one line says)
    "comment-post-html": ("create-comment", lambda gh, m, p: gh.answer_html(m, p),
                          f"POST /repos/{OWN}/issues/7/comments with a body that is not JSON (HTML page?)"),
    "comment-post-truncated-after-acting": ("create-comment", lambda gh, m, p: gh.answer_truncated(m, p),
                                            f"POST /repos/{OWN}/issues/7/comments with a body that is not JSON "
                                            "(cut short?)"),
    "comment-post-without-id": ("create-comment", lambda gh, m, p: _wrong_json(gh, m, p, 201, {"body": "ok"}),
                                f"POST /repos/{OWN}/issues/7/comments with 201 but not what Bolt reads there: "
                                "no 'id'"),
    "comment-patch-html": ("edit-comment", lambda gh, m, p: gh.answer_html(m, p),
                           f"PATCH /repos/{OWN}/issues/comments/"),
    "comment-list-truncated": ("list-comments", lambda gh, m, p: gh.answer_truncated(m, p),
                               f"GET /repos/{OWN}/issues/7/comments with a body that is not JSON (cut short?)"),
    "pull-html": ("get-pr", lambda gh, m, p: gh.answer_html(m, p), f"GET /repos/{OWN}/pulls/7 with a body"),
    "status-html": ("create-status", lambda gh, m, p: gh.answer_html(m, p),
                    f"POST /repos/{OWN}/statuses/"),
    "status-truncated-after-acting": ("create-status", lambda gh, m, p: gh.answer_truncated(m, p),
                                      "(cut short?)"),
    "status-without-state": ("create-status", lambda gh, m, p: _wrong_json(gh, m, p, 201, {"id": 1}),
                             "not what Bolt reads there: no 'state'"),
    "label-html": ("add-label", lambda gh, m, p: gh.answer_html(m, p),
                   f"POST /repos/{OWN}/issues/7/labels with a body that is not JSON (HTML page?)"),
    "label-truncated-after-acting": ("add-label", lambda gh, m, p: gh.answer_truncated(m, p), "(cut short?)"),
}


def _wrong_json(gh, method: str, pattern: str, status: int, body: dict):
    gh.allow(method, fnmatch.translate(pattern), r"^response", "a deliberately wrong answer")
    return gh.fail(method, pattern, status, body=body)


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_answer_is_exit_3_with_one_line_naming_the_endpoint(gh, tmp_path, case):
    """Issue 13, 5: an HTML page or a body cut short, with or without the server acting, or JSON without the
    fields Bolt reads: never exit 0 as if it were written, never a traceback or exit 4."""
    endpoint, breaks, says = MALFORMED[case]
    scenario = Scenario(gh, tmp_path, endpoint)
    method, pattern = ENDPOINTS[endpoint]
    breaks(gh, method, pattern)
    result = publish_cli(gh, scenario.pr, scenario.folder, "--comment", "always", **scenario.env)
    assert result.exit_code == EXIT_PUBLISH, (result.exit_code, result.output)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("bolt: error: GitHub answered "), result.stderr
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.stderr
    assert gh.requests_matching(method, pattern)[-1].injected
    scenario.check_invariants()


@pytest.mark.parametrize("status", [403, 502])
def test_an_html_error_page_keeps_its_status_in_one_short_line(gh, tmp_path, status):
    """A proxy's error page instead of GitHub's JSON error: the status still counts (a 502 is retried),
    and the page does not fill the line."""
    pr = gh.seed_pr()
    gh.answer_html("GET", "/repos/*/*/issues/*/comments", status, times=None)
    result = publish_cli(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)))
    assert result.exit_code == EXIT_PUBLISH, result.output
    assert result.stderr.count("\n") == 1 and len(result.stderr) < 300, result.stderr
    assert result.stderr.startswith({403: "bolt: error: GitHub answered 403 while listing the comments of #7: "
                                          "(an HTML page)",
                                     502: "bolt: error: GitHub kept failing while listing the comments of #7"}[status])
    assert "DOCTYPE" not in result.stderr
    assert len(gh.requests_matching("GET", "/repos/*/*/issues/*/comments")) == (1 if status == 403 else 2)


@pytest.mark.parametrize("answer", ["html", "unknown-permission"])
def test_a_malformed_permission_answer_is_exit_3_not_a_crash(gh, tmp_path, answer):
    """Issue 13, 5: `/bolt approve` reads the permission API; a 200 HTML page there was KeyError, exit 4."""
    pr = gh.seed_pr()
    pattern = "/repos/*/*/collaborators/*/permission"
    if answer == "html":
        gh.answer_html("GET", pattern, times=None)
    else:
        _wrong_json(gh, "GET", pattern, 200, {"permission": "superuser", "role_name": "superuser",
                                              "user": None})
    comment = gh.add_comment(pr.repo, pr.number, "/bolt approve worth it", user=pr.maintainer)
    event = load_event("issue_comment", "created", repo=pr.repo, number=pr.number, on_pr=True,
                       commenter=pr.maintainer, body="/bolt approve worth it")
    event["comment"]["id"] = comment.id
    result = invoke(runner_env(gh, tmp_path, "issue_comment", event, pr.token))
    assert result.exit_code == EXIT_PUBLISH, result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(
        f"bolt: error: GitHub answered GET /repos/{OWN}/collaborators/{pr.maintainer}/permission "), errors
    assert ("(HTML page?)" if answer == "html" else "permission 'superuser'") in errors[0]
    assert gh.statuses(pr.repo, pr.head_sha) == [] and gh.labels(pr.repo, pr.number) == []


@pytest.mark.parametrize("content, says", [
    (b"{\"number\": 7", "pr.json is not valid JSON"),
    (b"\xff\xfe", "pr.json is not valid JSON"),
    (b"[7]", "pr.json holds no pull request number"),
    (b"{\"number\": \"7\"}", "pr.json holds no pull request number"),
    (b"{\"number\": true}", "pr.json holds no pull request number"),
])
def test_bolt_publish_refuses_a_broken_pr_json_with_exit_2(gh, tmp_path, content, says):
    """Issue 13, 5: `bolt publish DIR` without --pr reads DIR/pr.json; broken, it was exit 4."""
    pr = gh.seed_pr()
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    (folder / "pr.json").write_bytes(content)
    env = {"BOLT_TOKEN": pr.token, "GITHUB_API_URL": gh.base_url}
    result = CliRunner().invoke(main, ["publish", str(folder), "--repo", pr.repo, "--token-env", "BOLT_TOKEN"],
                                env=env)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert gh.requests == []


def test_a_broken_event_file_is_exit_2_with_one_line(gh, tmp_path):
    pr = gh.seed_pr()
    env = runner_env(gh, tmp_path, "issue_comment", {"repository": {"full_name": pr.repo}}, pr.token)
    Path(env["GITHUB_EVENT_PATH"]).write_bytes(b"{\"action\": \"crea")
    result = invoke(env)
    assert result.exit_code == EXIT_BAD_INPUT and result.stderr.count("\n") == 1
    assert "is not valid JSON" in result.stderr and gh.requests == []


def test_an_approval_without_at_renders_and_publishes(gh, tmp_path):
    """Issue 13, 10: an approval in results.json without `at` (or `reason`) crashed the template, exit 2."""
    pr = gh.seed_pr()
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    doc = json.loads((folder / "results.json").read_text())
    doc["approval"] = {"user": pr.maintainer, "sha": pr.head_sha}
    (folder / "results.json").write_text(json.dumps(doc))
    rendered = CliRunner().invoke(main, ["render", str(folder)])
    assert rendered.exit_code == 0, rendered.output
    assert "Approved" in (folder / "comment.md").read_text()
    assert publish_cli(gh, pr, folder).exit_code == 0


@pytest.mark.parametrize("bad", [{"user": "m", "sha": "a" * 40, "at": 7}, {"user": ["m"], "sha": "a" * 40}])
def test_an_approval_with_fields_of_the_wrong_type_is_one_line_exit_2(tmp_path, bad):
    folder = results_dir(tmp_path, make_results("a" * 40))
    doc = json.loads((folder / "results.json").read_text())
    doc["approval"] = bad
    (folder / "results.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(main, ["render", str(folder)])
    assert result.exit_code == EXIT_BAD_INPUT and result.stderr.count("\n") == 1
    assert "approval." in result.stderr and "template" not in result.stderr, result.stderr


@pytest.mark.parametrize("same_url", [False, True])
def test_a_next_page_that_never_ends_is_followed_a_bounded_number_of_times(gh, tmp_path, same_url):
    """Issue 13, 10: a server whose rel="next" never ends was followed forever (679 requests in 30 s)."""
    pr = gh.seed_pr()
    gh.add_comment(pr.repo, pr.number, "first!", user=pr.author)
    gh.endless_pages("/repos/*/*/issues/*/comments", same_url=same_url)
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    started = time.monotonic()
    result = publish_cli(gh, pr, folder, BOLT_GITHUB_MAX_PAGES="12")
    assert result.exit_code == EXIT_PUBLISH, result.output
    assert result.stderr.count("\n") == 1 and "had more than 12 pages" in result.stderr, result.stderr
    assert len(gh.requests_matching("GET", "/repos/*/*/issues/*/comments")) == 12
    assert time.monotonic() - started < 20
    assert len(gh.comments(pr.repo, pr.number)) == 1 and gh.statuses(pr.repo, pr.head_sha) == []


def test_the_default_page_bound_reads_a_long_thread_whole(gh, tmp_path):
    """250 comments before Bolt's: three pages of 100, well inside the bound, and Bolt's comment is found."""
    pr = gh.seed_pr()
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    assert publish_cli(gh, pr, folder).exit_code == 0
    for i in range(250):
        gh.add_comment(pr.repo, pr.number, f"chatter {i}", user=pr.author)
    assert publish_cli(gh, pr, folder, "--comment", "always").exit_code == 0
    assert len(bolt_comments(gh, pr)) == 1
    pages = [r.query.get("page", ["1"])[0] for r in gh.requests_matching("GET", "/repos/*/*/issues/*/comments")]
    assert "3" in pages  # the listing went through the whole thread...
    assert max(map(int, pages)) == 3  # ...and no further: 3 pages of 100 hold 251 comments


@pytest.mark.parametrize("limit", ["secondary", "429", "primary"])
def test_a_failure_after_rate_limit_retries_is_one_stderr_line(gh, tmp_path, limit):
    """Issue 13, 10: PyGithub's retry logger added up to 9 lines ("Retrying after 3600 seconds") to Bolt's one.
    A real process: PyGithub's own stderr handler is bound to the process's stderr when it is imported."""
    pr = gh.seed_pr()
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    pattern = "/repos/*/*/issues/*/comments"
    {"secondary": lambda: gh.secondary_rate_limit("GET", pattern, retry_after=3600, times=None),
     "429": lambda: gh.too_many_requests("GET", pattern, retry_after=3600, times=None),
     "primary": lambda: gh.rate_limit("GET", pattern, reset_in=3600, times=None)}[limit]()
    env = {**os.environ, "BOLT_TOKEN": pr.token, "GITHUB_API_URL": gh.base_url,
           "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0", "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0",
           "BOLT_GITHUB_RETRIES": "3", "BOLT_GITHUB_BACKOFF": "0", "BOLT_GITHUB_MAX_RATE_WAIT": "1",
           "GITHUB_OUTPUT": "", "GITHUB_STEP_SUMMARY": ""}
    proc = subprocess.run([sys.executable, "-m", "bolt_bot", "publish", str(folder), "--repo", pr.repo,
                           "--pr", str(pr.number), "--token-env", "BOLT_TOKEN"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_PUBLISH, proc.stderr
    assert proc.stderr.count("\n") == 1 and "rate limit" in proc.stderr, proc.stderr
    assert "Retrying" not in proc.stderr


def test_rate_limit_waits_are_bounded_in_all(gh, tmp_path):
    """Issue 13, 10: each wait is bounded (BOLT_GITHUB_MAX_RATE_WAIT), and so is their sum for one command."""
    pr = gh.seed_pr()
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    gh.too_many_requests("*", "/repos/*", retry_after=2, times=None)
    started = time.monotonic()
    result = publish_cli(gh, pr, folder, BOLT_GITHUB_RETRIES="5", BOLT_GITHUB_MAX_RATE_WAIT="2",
                         BOLT_GITHUB_MAX_TOTAL_WAIT="5")
    assert result.exit_code == EXIT_PUBLISH, result.output
    assert result.stderr.count("\n") == 1 and "BOLT_GITHUB_MAX_TOTAL_WAIT" in result.stderr, result.stderr
    assert time.monotonic() - started < 5 + 4


def test_autolinks_in_stage_names_reach_the_comment_inert(gh, tmp_path):
    """Issue 13, 8: every GitHub autolink form in a stage name, published through `bolt publish`."""
    from tests.test_fuzz import AUTOLINK_FORMS, AUTOLINKS

    pr = gh.seed_pr()
    names = tuple(f"tests/b.py::test_{i}[{text}]" for i, text in enumerate(AUTOLINK_FORMS.values()))
    folder = results_dir(tmp_path, make_results(pr.head_sha, names=names))
    assert publish_cli(gh, pr, folder).exit_code == 0
    body = html.unescape(bolt_comments(gh, pr)[0].body)
    visible = re.sub(r"<!--.*?-->", "", body, flags=re.S)  # the hidden state is not rendered
    visible = re.sub(r"```mermaid.*?```", "", visible, flags=re.S)  # a chart: GitHub links nothing in it
    for name, pattern in AUTOLINKS.items():
        found = [m.group(0) for m in pattern.finditer(visible)]
        if name == "sha":  # Bolt's own base and head commits, on their own, may link to themselves
            found = [f for f in found if f not in (pr.head_sha[:7], "b" * 7)]
        assert not found, (name, found)
    assert "test_9&#91;@" not in body


# ====================================================================================== hostile input

HOSTILE = ("<img src=x onerror=alert(1)> @everyone @octo-org/admins | `rm -rf /` ]](http://evil) "
           "<script>x</script> <!-- \x1b[31m \u202e\u200b ${{ secrets.TOKEN }} #1 ![x](http://t)\n\r# head ")


def hostile_stage(i: int, verdict: str) -> StageComparison:
    ratio = 1.2 + i / 1e4 if verdict == REGRESSED else 1.0
    side = SideSummary(rounds=5, center=1e-3, median=1e-3, values=[1e-3] * 5)
    return StageComparison(
        name=f"tests/b.py::test_{i}[{HOSTILE}{'é' * 20}{'x' * (i % 7) * 30}]", verdict=verdict, ratio=ratio,
        ci=[ratio - 0.05, ratio + 0.05], p=0.001, base=side, head=side,
        params={"p": HOSTILE}, extra_info={"e": HOSTILE, "deep": {"x": [HOSTILE] * 3}}, group=HOSTILE,
        note=HOSTILE * 3 if verdict != REGRESSED else None,
        profile=[ProfileLine(f"{HOSTILE}.py:1({HOSTILE})", 1e-4, 2e-4, 1e-4)] if verdict == REGRESSED else None)


def test_1500_hostile_stages_through_publish_fit_list_regressions_and_stay_inert(gh, tmp_path):
    pr = gh.seed_pr()
    verdicts = [REGRESSED] * 30 + ["failed"] * 20 + [UNCHANGED] * 1450
    results = Results(stages=[hostile_stage(i, v) for i, v in enumerate(verdicts)], verdict=REGRESSED,
                      base=CommitRef(HOSTILE, pr.base_sha), head=CommitRef(HOSTILE, pr.head_sha),
                      notices=[HOSTILE], environment={"runner": HOSTILE, "rounds": HOSTILE, "duration": 3.0},
                      settings={"threshold": HOSTILE})
    folder = results_dir(tmp_path, results)
    results = Results.read(folder / "results.json")  # through the reader, as publish in another job does
    pub.publish(folder, fast_client(gh, pr.token, pr.repo), pr.repo, pr.number, Settings(), environ={},
                stdout=io.StringIO())
    body = bolt_comments(gh, pr)[0].body
    assert len(body) <= COMMENT_LIMIT
    visible = body.split("```mermaid")[0] + body.split("```", 2)[-1]  # mermaid's "-->" is not HTML
    visible = visible.replace("`/bolt approve <reason>`", "")  # Bolt's own help, in a code span
    hidden = re.findall(r"<!--.*?-->", visible, flags=re.S)
    assert all(h.startswith(("<!-- bolt:", "<!-- /bolt:")) for h in hidden), [h[:80] for h in hidden]  # no comment opened by a name
    visible = re.sub(r"<!--.*?-->", "", visible, flags=re.S)
    assert_inert(visible)
    for forbidden in ("\x1b", "\u202e", "\u200b", "${{", "](http", "<!-- \x1b"):
        assert forbidden not in visible
    for i in range(30):
        assert f"test_{i}&#91;" in body, i  # every regression is listed
    assert read_state(body)["regressions"] == sorted(state_name(s.name) for s in results.regressions)
    assert len(gh.statuses(pr.repo, pr.head_sha)[-1].description) <= 140


def test_many_long_regressed_names_still_fit_through_publish(gh, tmp_path):
    from tests.test_render import hostile_results

    pr = gh.seed_pr()
    results = hostile_results()  # 1,500 stages, 40 regressed, names of about 2,000 characters in the state's JSON
    results.base, results.head = CommitRef("main", pr.base_sha), CommitRef("feature", pr.head_sha)
    pub.publish(results_dir(tmp_path, results), fast_client(gh, pr.token, pr.repo), pr.repo, pr.number, Settings(),
                environ={}, stdout=io.StringIO())
    assert len(bolt_comments(gh, pr)[0].body) <= COMMENT_LIMIT


def test_10000_stages_read_render_and_publish(gh, tmp_path):
    from bolt_bot.decide.benchjson import parse_round

    doc = {"benchmarks": [{"name": f"t{i}", "fullname": f"tests/b.py::test_{i}[{HOSTILE}]", "params": {"i": i},
                           "stats": {"median": 1e-3, "mean": 1e-3, "min": 1e-3, "max": 1e-3, "stddev": 0, "rounds": 5}}
                          for i in range(10_000)]}
    assert len(parse_round(json.loads(json.dumps(doc)), "round.json")) == 10_000
    pr = gh.seed_pr()
    stages = [StageComparison(name=b["fullname"], verdict=REGRESSED if i % 1000 == 0 else UNCHANGED,
                              ratio=1.5 if i % 1000 == 0 else 1.0, ci=[0.99, 1.01])
              for i, b in enumerate(doc["benchmarks"])]
    folder = results_dir(tmp_path, Results(stages=stages, verdict=REGRESSED, base=CommitRef("m", pr.base_sha),
                                           head=CommitRef("f", pr.head_sha)))
    pub.publish(folder, fast_client(gh, pr.token, pr.repo), pr.repo, pr.number, Settings(), environ={},
                stdout=io.StringIO())
    body = bolt_comments(gh, pr)[0].body
    assert len(body) <= COMMENT_LIMIT and body.count("🔴") == 10 and "more not shown" in body


@pytest.mark.parametrize("content, message", [
    (b"", "not valid JSON"),
    (b'{"schema": "bolt/results/v1", "stages": [', "not valid JSON"),
    (b"\xff\xfe\x00\x00", "not UTF-8"),
    (b"[" * 200_000, "not a Bolt results document"),
    (b'{"schema": "bolt/results/v1", "stages": [], "verdict": "unchanged", "x": Infinity}', "Infinity"),
    (json.dumps({"benchmarks": []}).encode(), "schema is None"),  # a pytest-benchmark file, not ours
    (json.dumps({"schema": "bolt/results/v2"}).encode(), "schema is 'bolt/results/v2'"),
    (json.dumps({"schema": "bolt/results/v1", "stages": [{"name": "x", "verdict": "regressed", "ratio": "fast"}],
                 "verdict": "regressed"}).encode(), "stages[0].ratio is 'fast', expected a number"),
    (json.dumps({"schema": "bolt/results/v1", "stages": [], "verdict": "unchanged",
                 "head": {"sha": ["a"] * 10_000}}).encode(), "head.sha is ['a', "),
])
def test_broken_foreign_or_huge_results_json_is_one_line_exit_2(tmp_path, content, message):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "results.json").write_bytes(content)
    result = CliRunner().invoke(main, ["render", str(folder)])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr and len(result.stderr) < 500


def test_huge_pytest_benchmark_file_is_refused_without_reading_it(tmp_path, monkeypatch):
    from bolt_bot.decide import benchjson

    path = tmp_path / "round.json"
    with open(path, "wb") as f:
        f.truncate(2048)
    monkeypatch.setattr(benchjson, "MAX_FILE_BYTES", 1024)
    with pytest.raises(BoltError, match="too large for a pytest-benchmark file"):
        benchjson.read_round(path)


# --------------------------------------------------------------------------- tampered artifacts (workflow_run)
# tests/test_action.py::test_workflow_run_refuses_a_tampered_artifact covers wrong PR, missing PR, wrong sha,
# the run's sha, an oversized file, symbolic links and an unknown verdict; these add the rest.


def _write(folder: Path, name: str, content) -> None:
    (folder / name).write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())


def _results_doc(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


TAMPERED = {
    "pr-number-text": (lambda f, pr: _write(f, "pr.json", {"number": "7", "head_sha": pr.head_sha}),
                       "no valid pull request number ('7')"),
    "pr-number-bool": (lambda f, pr: _write(f, "pr.json", {"number": True, "head_sha": pr.head_sha}),
                       "no valid pull request number (True)"),
    "pr-json-list": (lambda f, pr: _write(f, "pr.json", [7]), "no valid pull request number (None)"),
    "pr-json-huge": (lambda f, pr: _write(f, "pr.json", b" " * 70_000 + b"{}"), "pr.json is 70002 bytes"),
    "pr-json-missing": (lambda f, pr: (f / "pr.json").unlink(), "pr.json is missing"),
    "other-repository": (lambda f, pr: _write(f, "pr.json", {"number": pr.number, "head_sha": pr.head_sha,
                                                              "repository": "evil/fork"}),
                         "names repository 'evil/fork'"),
    "head-sha-short": (lambda f, pr: _write(f, "pr.json", {"number": pr.number, "head_sha": "abc"}),
                       "no valid head_sha"),
    "results-not-utf8": (lambda f, pr: _write(f, "results.json", b"\xff\xfe{}"), "results.json is not UTF-8"),
    "results-wrong-type": (lambda f, pr: _write(f, "results.json", {**_results_doc(f), "stages": [
        {"name": "x", "verdict": "regressed", "ratio": 1.1, "ci": [1, 2, 3]}]}), "stages[0].ci has 3 numbers"),
    "results-duration-text": (lambda f, pr: _write(f, "results.json", {**_results_doc(f), "environment": {
        "duration": "forever"}}), "environment.duration is 'forever'"),
    "results-a-directory": (lambda f, pr: ((f / "results.json").unlink(), (f / "results.json").mkdir()),
                            "results.json is missing"),
    "dotdot-directory-link": (lambda f, pr: (f / "nested").symlink_to(".."), "nested is a symbolic link"),
    "pr-listed-by-run": (None, "pr.json names #7, but the workflow run belongs to #8"),
}


@pytest.mark.parametrize("tamper", TAMPERED)
def test_workflow_run_refuses_more_tampered_artifacts(gh, tmp_path, tamper):
    pr = gh.seed_pr(fork=True, workflow_run=True)
    folder = make_artifact(tmp_path, pr)
    change, reason = TAMPERED[tamper]
    event = run_event(pr)
    if change is None:
        event["workflow_run"]["pull_requests"] = [{"number": 8, "id": 8, "url": "u", "head": {}, "base": {}}]
    else:
        change(folder, pr)
    result = invoke(runner_env(gh, tmp_path, "workflow_run", event, pr.token))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("bolt: error: refusing to publish the artifact: ")
    assert reason in errors[0], errors[0]
    assert gh.comments(pr.repo, pr.number) == [] and gh.statuses(pr.repo, pr.head_sha) == []


def test_workflow_run_refuses_a_deeply_nested_results_json(gh, tmp_path):
    pr = gh.seed_pr(fork=True, workflow_run=True)
    folder = make_artifact(tmp_path, pr)
    _write(folder, "results.json", b"[" * 200_000)
    result = CliRunner().invoke(main, ["action"], env=runner_env(gh, tmp_path, "workflow_run", run_event(pr), pr.token))
    assert result.exit_code == EXIT_BAD_INPUT and "refusing to publish the artifact" in result.stderr


def test_workflow_run_ignores_an_approval_written_into_the_artifact(gh, tmp_path):
    pr = gh.seed_pr(fork=True, workflow_run=True)
    folder = make_artifact(tmp_path, pr)
    doc = _results_doc(folder)
    doc["approval"] = {"user": pr.maintainer, "sha": pr.head_sha, "reason": "self-approved"}
    _write(folder, "results.json", doc)
    result = invoke(runner_env(gh, tmp_path, "workflow_run", run_event(pr), pr.token,
                               **{"fail-on-regression": "true"}))
    assert gh.statuses(pr.repo, pr.head_sha)[-1].state == "failure"
    assert result.exit_code == 1 and "self-approved" not in bolt_comments(gh, pr)[0].body


# ============================================================================================== races


def _push(gh, pr, sha: str) -> None:
    gh.add_commit(pr.repo, sha)
    gh.pull(pr.repo, pr.number).head_sha = sha


def _publish(gh, pr, tmp_path, results: Results, name: str, settings: Settings | None = None) -> pub.Outcome:
    return pub.publish(results_dir(tmp_path, results, name), fast_client(gh, pr.token, pr.repo), pr.repo, pr.number,
                       settings or Settings(), environ={}, stdout=io.StringIO())


@pytest.mark.parametrize("order", ["old-then-new", "new-then-old"])
def test_two_runs_finishing_out_of_order_the_newest_head_wins(gh, tmp_path, order):
    pr = gh.seed_pr()
    old, new = pr.head_sha, "c" * 40
    old_results, new_results = make_results(old), make_results(new, verdict="improved")
    if order == "old-then-new":
        first = _publish(gh, pr, tmp_path, old_results, "old")  # finished before the push
        _push(gh, pr, new)
        second = _publish(gh, pr, tmp_path, new_results, "new")
        assert (first.comment, second.comment) == ("created", "updated")
    else:
        _push(gh, pr, new)  # the push came first; the old run is slow
        first = _publish(gh, pr, tmp_path, new_results, "new")
        second = _publish(gh, pr, tmp_path, old_results, "old")
        assert (first.comment, second.comment, second.status) == ("created", "skipped-stale", None)
        assert gh.statuses(pr.repo, old) == []  # the late run sets nothing at all
    comments = bolt_comments(gh, pr)
    assert len(comments) == 1 and read_state(comments[0].body)["head_sha"] == new
    # statuses are per commit: the newer head carries only its own run's status
    assert [s.state for s in gh.statuses(pr.repo, new)] == ["success"]
    assert gh.labels(pr.repo, pr.number) == []


def test_head_moving_twice_between_runs(gh, tmp_path):
    pr = gh.seed_pr()
    a, b, c = pr.head_sha, "b1" * 20, "c1" * 20
    _publish(gh, pr, tmp_path, make_results(a), "a")
    _push(gh, pr, b)
    _push(gh, pr, c)  # b's run is still going when c is pushed
    assert _publish(gh, pr, tmp_path, make_results(c, verdict="improved"), "c").comment == "updated"
    late = _publish(gh, pr, tmp_path, make_results(b), "b")
    assert late.comment == "skipped-stale"
    rerun = _publish(gh, pr, tmp_path, make_results(c), "c-rerun")  # a rerun on the current head still updates
    assert rerun.comment == "updated" and read_state(bolt_comments(gh, pr)[0].body)["verdict"] == REGRESSED
    assert gh.statuses(pr.repo, b) == [] and [s.state for s in gh.statuses(pr.repo, c)] == ["success", "failure"]


def test_a_late_older_run_does_not_comment_or_label_after_a_quiet_newer_one(gh, tmp_path):
    pr = gh.seed_pr()
    old, new = pr.head_sha, "c" * 40
    _push(gh, pr, new)
    quiet = _publish(gh, pr, tmp_path, make_results(new, verdict=UNCHANGED), "new")  # on-change: no comment
    assert quiet.comment == "skipped-quiet"
    late = _publish(gh, pr, tmp_path, make_results(old), "old")
    assert late.comment == "skipped-stale" and gh.labels(pr.repo, pr.number) == []


def test_two_runs_publishing_at_the_same_moment_leave_one_comment(gh, tmp_path):
    pr = gh.seed_pr()
    second = fast_client(gh, pr.token, pr.repo)
    first = fast_client(gh, pr.token, pr.repo)
    find = first.find_comment

    def find_then_let_the_other_run_publish(number):
        found = find(number)
        pub.publish(results_dir(tmp_path, make_results(pr.head_sha), "b"), second, pr.repo, pr.number, Settings(),
                    environ={}, stdout=io.StringIO())
        return found

    first.find_comment = find_then_let_the_other_run_publish
    pub.publish(results_dir(tmp_path, make_results(pr.head_sha), "a"), first, pr.repo, pr.number, Settings(),
                environ={}, stdout=io.StringIO())
    assert len(bolt_comments(gh, pr)) == 1


# ========================================================================================== resources

SUITE = '''
import os
import subprocess
import sys
import time


def test_fine(benchmark):
    benchmark(sum, range(100))


def test_bomb(benchmark):
    benchmark(lambda: bytearray(16 * 1024 ** 3))


def test_hangs_with_a_child(benchmark):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.environ["CHILD_PID_FILE"], "w") as f:
        f.write(str(child.pid))
    benchmark(time.sleep, 600)
'''


@pytest.fixture
def suite(tmp_path):
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "test_suite.py").write_text(SUITE)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_allocation_bomb_fails_its_stage_under_the_memory_limit(suite, tmp_path):
    from bolt_bot.measure.rounds import run_round

    result = run_round(Path(sys.executable), suite, ["test_suite.py::test_fine", "test_suite.py::test_bomb"],
                       tmp_path / "work", label="r", memory_mb=1024, timeout=120)
    assert [r.name for r in result.records] == ["test_suite.py::test_fine"]
    assert "MemoryError" in result.failed["test_suite.py::test_bomb"] and result.error is None


def test_a_hanging_stage_and_its_children_are_stopped_by_the_round_timeout(suite, tmp_path):
    from bolt_bot.measure.rounds import run_round

    pid_file = tmp_path / "child.pid"
    env = {**os.environ, "CHILD_PID_FILE": str(pid_file)}
    started = time.monotonic()
    result = run_round(Path(sys.executable), suite, ["test_suite.py::test_hangs_with_a_child"], tmp_path / "work",
                       label="r", env=env, timeout=4)
    assert time.monotonic() - started < 30
    assert result.hung == "test_suite.py::test_hangs_with_a_child" and "timed out after 4 s" in result.error
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the benchmark's own child process survived the round"


def test_memory_limit_setting_reaches_every_round(tmp_path):
    from bolt_bot.decide import walltime as wall_verdicts
    from bolt_bot.measure import plan as instrplan
    from bolt_bot.measure.rounds import RoundResult
    from bolt_bot.measure.walltime import SideSetup

    seen = []

    def round_fn(*args, **kw):
        seen.append(kw.get("memory_mb"))
        return RoundResult(error="no suite")

    settings = Settings().updated({"round-memory-mb": "512", "rounds": 1, "measure": "walltime", "walltime-engine": "rounds", "memory": "off"}, "test")
    setups = {side: SideSetup(Path(sys.executable), tmp_path) for side in ("base", "head")}
    from bolt_bot.measure.walltime import measure_walltime

    instrplan.measure(settings, setups, tmp_path, judge=wall_verdicts.judge, walltime_fn=lambda *a, **k: measure_walltime(*a, **k, round_fn=round_fn),
                      valgrind=lambda: None)
    assert seen == [512, 512]
    assert Settings().round_memory_mb == 4096
    # `auto` first times a discovery round per side: under the same limit.
    seen.clear()
    settings = settings.updated({"measure": "auto"}, "test")
    instrplan.measure(settings, setups, tmp_path, round_fn=round_fn, judge=wall_verdicts.judge,
                      walltime_fn=lambda *a, **k: measure_walltime(*a, **k, round_fn=round_fn), valgrind=lambda: "valgrind")
    assert seen and set(seen) == {512}, seen


def test_memory_limit_has_a_cli_flag_and_refuses_a_negative_size(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bolt_bot import pipeline as runner
    from bolt_bot.cli import main

    repo, sha = _tiny_repo(tmp_path)
    plans = []
    monkeypatch.setattr(runner, "execute", lambda plan, out, progress=None, **_: plans.append(plan) or _no_results())
    args = ["run", "--quiet", "--repo", str(repo), "--base", sha, "--head", sha, "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--round-memory-mb", "512"])
    assert plans and plans[0].settings.round_memory_mb == 512, result.output
    result = CliRunner().invoke(main, [*args, "--round-memory-mb", "-1"])
    assert result.exit_code == 2 and "round_memory_mb is MiB" in result.output, result.output
    assert len(plans) == 1


def _no_results():
    from bolt_bot.decide.compare import build_results

    return build_results([])


# ---------------------------------------------------------------------------- cleanup on every way out


def _tiny_repo(tmp_path: Path) -> tuple[Path, str]:
    from tests.conftest import make_repo

    repo = make_repo(tmp_path / "repo", {"bench/test_b.py": "def test_b(benchmark):\n    benchmark(sum, [1])\n"})
    return repo, subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Bolt's temporary folders go here, so that the test can see every one left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _fake_env(monkeypatch):
    """No real virtual environment: the interpreter running the tests has pytest-benchmark."""
    from bolt_bot.measure import envs
    from bolt_bot import pipeline as runner

    monkeypatch.setattr(envs, "prepare", lambda checkout, spec, side, root=None: envs.Env(
        path=Path(sys.prefix), python=Path(sys.executable), reused=True))
    monkeypatch.setattr(runner, "compile_bytecode", lambda python, checkout: None)


def _assert_clean(repo: Path, private_tmp: Path) -> None:
    assert list(private_tmp.glob("bolt-*")) == []
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1, worktrees


def _interrupting_measure(exc_factory):
    """instrplan.measure whose first round raises what `exc_factory` gives (Ctrl-C, SIGTERM)."""
    from bolt_bot.measure import plan as instrplan
    from bolt_bot.measure.walltime import measure_walltime

    real = instrplan.measure

    def measure(settings, setups, out, progress=None, **kw):
        def round_fn(*args, **kwargs):
            for setup in setups.values():
                assert setup.checkout.is_dir()  # the worktrees exist when the round starts
            exc_factory()

        return real(settings, setups, out, progress, judge=kw["judge"], valgrind=lambda: None,
                    walltime_fn=lambda *a, **k: measure_walltime(*a, **k, round_fn=round_fn))

    return measure


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


def _send_sigterm():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler raises before this ends


@pytest.mark.parametrize("way_out", ["missing-head-commit", "keyboard-interrupt", "sigterm", "suite-error"])
def test_worktrees_and_temporary_folders_are_removed_on_every_way_out(tmp_path, private_tmp, monkeypatch, way_out):
    from bolt_bot import pipeline as runner

    repo, sha = _tiny_repo(tmp_path)
    _fake_env(monkeypatch)
    plan = runner.Plan(repo, CommitRef("main", sha), CommitRef("head", sha), Settings(measure="walltime", rounds=1, walltime_engine="rounds"))
    if way_out == "missing-head-commit":  # the base worktree is made, then the head's commit is not there
        plan.head = CommitRef("gone", "0" * 40)
    elif way_out == "keyboard-interrupt":
        monkeypatch.setattr(runner.measuring, "measure", _interrupting_measure(_raise_keyboard_interrupt))
    elif way_out == "sigterm":
        monkeypatch.setattr(runner.measuring, "measure", _interrupting_measure(_send_sigterm))
    else:
        monkeypatch.setattr(runner.measuring, "measure", _interrupting_measure(lambda: (_ for _ in ()).throw(
            BoltError("pytest refused the arguments"))))
    expected = {"keyboard-interrupt": KeyboardInterrupt}.get(way_out, BoltError)
    with pytest.raises(expected) as err:
        runner.execute(plan, tmp_path / "out")
    if way_out == "sigterm":
        assert err.value.exit_code == 143 and "temporary checkouts removed" in one_line(err.value)
    assert signal.getsignal(signal.SIGTERM) is not None
    _assert_clean(repo, private_tmp)


@pytest.mark.slow
def test_a_real_run_interrupted_mid_round_leaves_nothing_behind(tmp_path, private_tmp):
    """`bolt run` in a subprocess, Ctrl-C while a round is running: exit 130, no worktree, no temporary folder."""
    repo, sha = _tiny_repo(tmp_path)
    hang = "import time\n\ndef test_slow(benchmark):\n    benchmark(time.sleep, 600)\n"
    (repo / "bench" / "test_b.py").write_text(hang)
    subprocess.run(["git", "-C", str(repo), "commit", "-qam", "hang"], check=True)
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from bolt_bot.measure import envs
        from bolt_bot import pipeline as runner
        envs.prepare = lambda checkout, spec, side, root=None: envs.Env(Path(sys.prefix), Path(sys.executable), True)
        runner.compile_bytecode = lambda python, checkout: None
        from bolt_bot.cli import main
        main(["run", "--quiet", "--repo", {str(repo)!r}, "--base", "HEAD~1", "--head", "HEAD",
              "--measure", "walltime", "--walltime-engine", "rounds", "--rounds", "1", "--out", {str(tmp_path / "out")!r}])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((tmp_path / "out" / "rounds").rglob("*.events")):
        time.sleep(0.1)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "bolt: interrupted"
    _assert_clean(repo, private_tmp)


# A side's python that prepares and collects one stage at once; its measured run (under valgrind, which
# runs the shell in its own process) starts a child, writes "<valgrind pid> <child pid>", and sleeps.
PASS_THAT_SLEEPS = """#!/bin/sh
case "$*" in
  *--collect-only*) echo '{"ev": "item", "nodeid": "test_b.py::test_b", "uri": null}' > "$BOLT_COUNT_EVENTS" ;;
  *--codspeed*) sleep 600 & echo $$ $! >> "$PASS_PIDS"; wait ;;
esac
"""


def _interrupt_main_when(ready, sent: list[float], within: float = 15) -> threading.Thread:
    """A thread sending SIGINT to the main thread (Ctrl-C) once `ready()`; the time it did so goes to `sent`."""
    def watch():
        deadline = time.monotonic() + within
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        if ready():
            sent.append(time.monotonic())
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_ctrl_c_during_the_parallel_instruction_passes_kills_both_at_once(tmp_path):
    """Base and head are counted in worker threads, which Ctrl-C does not reach: both passes are killed, not awaited."""
    from bolt_bot.measure import plan as instrplan
    from bolt_bot.measure.walltime import SideSetup

    python = tmp_path / "python"
    python.write_text(PASS_THAT_SLEEPS)
    python.chmod(0o755)
    pid_file = tmp_path / "pass.pids"
    setup = SideSetup(python, tmp_path, {"PASS_PIDS": str(pid_file)})

    def pids() -> list[int]:
        return [int(pid) for pid in pid_file.read_text().split()] if pid_file.exists() else []

    sent: list[float] = []
    _interrupt_main_when(lambda: len(pids()) == 4, sent)
    with pytest.raises(KeyboardInterrupt):
        instrplan.measure_counts({"base": setup, "head": setup}, instrplan.CountPlan(timeout=20), tmp_path / "instr")
    assert sent and time.monotonic() - sent[0] < 3, "measure_counts waited for the passes"
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids() if _alive(pid)] == [], "a pass or its child survived the interruption"
