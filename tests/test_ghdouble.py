"""The GitHub double itself, driven through PyGithub and prism proxy (GitHub's OpenAPI description).

Every test's exchanges are validated by prism; the ``gh`` fixture fails the test at teardown on any
violation that is not a listed known one.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

github = pytest.importorskip("github")
from github import (  # noqa: E402
    BadCredentialsException,
    GithubException,
    GithubRetry,
    UnknownObjectException,
)

from tests.ghdouble import spec, webhooks  # noqa: E402
from tests.ghdouble.server import ROUTES  # noqa: E402

# Until tests/conftest.py star-imports the fixtures, bring them in here (not both: that would start
# a second prism for this module).
_conftest = Path(__file__).with_name("conftest.py")
if not (_conftest.exists() and "ghdouble.fixtures" in _conftest.read_text(encoding="utf-8")):
    from tests.ghdouble.fixtures import gh, github_double, webhook  # noqa: F401


def fast_retry(total: int = 3, **kw) -> GithubRetry:
    return GithubRetry(total=total, backoff_factor=0, **kw)


# ------------------------------------------------------------------------------------ the spec


def test_spec_subset_has_exactly_the_served_operations(tmp_path):
    if not spec.OPENAPI_FILE.exists():
        pytest.skip("run .ci/install-node")
    subset = json.loads(spec.subset_path(tmp_path).read_text())
    served = {(p, m) for p, ms in spec.OPERATIONS.items() for m in ms}
    in_subset = {(p, m) for p, item in subset["paths"].items() for m in item
                 if m in {"get", "post", "patch", "put", "delete"}}
    assert in_subset == served
    # every served operation has a route in the double, and every route but the legacy alias is served
    routes = {(rx.pattern, method.lower()) for method, rx, _ in ROUTES}
    for path, method in served:
        pattern = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", path)
        assert (pattern, method) in routes, (path, method)
    assert len(routes) == len(served) + 1  # + GET .../statuses/{sha} (see KNOWN_VIOLATIONS)
    # the $ref closure is complete: every reference resolves inside the subset
    text = json.dumps(subset)
    for ref in set(re.findall(r'"\$ref": "#/components/([^/]+)/([^"]+)"', text)):
        assert ref[1] in subset["components"][ref[0]], ref
    assert len(text) < 1_000_000  # small enough for a fast prism start


# ------------------------------------------------------------------------- reads through prism


def test_get_repo_pull_and_issue(gh):
    pr = gh.seed_pr(labels=("performance",))
    g = gh.client(pr.token)
    repo = g.get_repo(pr.repo)
    assert repo.full_name == pr.repo and repo.default_branch == "main"
    pull = repo.get_pull(pr.number)
    assert (pull.number, pull.state, pull.user.login) == (pr.number, "open", pr.author)
    assert (pull.head.sha, pull.head.ref, pull.base.sha, pull.base.ref) == (
        pr.head_sha, pr.head_ref, pr.base_sha, pr.base_ref)
    assert [label.name for label in pull.labels] == ["performance"]
    assert pull.url.startswith(gh.base_url) and pull.html_url.startswith(gh.base_url)
    issue = pull.as_issue()  # follows issue_url: same host and port as base_url
    assert issue.pull_request is not None and issue.number == pr.number
    plain = gh.add_issue(pr.repo, user=pr.author)
    assert repo.get_issue(plain.number).pull_request is None
    with pytest.raises(UnknownObjectException) as err:
        repo.get_pull(plain.number)  # an issue is not a pull request
    assert err.value.data["message"] == "Not Found"


def test_fork_pr_head_repo(gh):
    pr = gh.seed_pr(fork=True)
    pull = gh.client(pr.read_token).get_repo(pr.repo).get_pull(pr.number)
    assert pull.head.repo.full_name == f"{pr.author}/bolt-demo" and pull.head.repo.fork
    assert pull.base.repo.full_name == pr.repo


def test_user_rate_limit_and_headers(gh):
    pr = gh.seed_pr()
    g = gh.client(pr.maintainer_token)
    assert g.get_user().login == pr.maintainer
    rate = g.get_rate_limit()
    assert rate.resources.core.limit == 5000
    resp = requests.get(f"{gh.base_url}/repos/{pr.repo}", timeout=5,
                        headers={"Authorization": f"token {pr.token}"})
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                 "X-RateLimit-Used", "X-RateLimit-Resource"):
        assert name in resp.headers
    with pytest.raises(GithubException) as err:  # an Actions token has no user
        gh.client(pr.token).get_user().login
    assert err.value.status == 403


# ----------------------------------------------------------------------------- comments


def test_comments_create_edit_list_paginate_delete_react(gh):
    pr = gh.seed_pr()
    issue = gh.client(pr.token).get_repo(pr.repo).get_issue(pr.number)
    first = issue.create_comment("<!-- bolt -->\nfirst")
    assert first.user.login == "github-actions[bot]" and first.body.endswith("first")
    first.edit("<!-- bolt -->\nedited")
    assert gh.comments(pr.repo, pr.number)[0].body.endswith("edited")
    for i in range(34):
        gh.add_comment(pr.repo, pr.number, f"chatter {i}", user=pr.author)
    comments = list(issue.get_comments())  # 35 comments: two pages of 30, via the Link header
    assert len(comments) == 35 and comments[0].id == first.id
    pages = gh.requests_matching("GET", f"/repos/{pr.repo}/issues/{pr.number}/comments")
    assert [r.query.get("page") for r in pages] == [None, ["2"]]
    resp = requests.get(f"{gh.base_url}/repos/{pr.repo}/issues/{pr.number}/comments?per_page=10&page=2",
                        timeout=5)
    link = resp.headers["Link"]
    assert f"<{gh.base_url}/repos/{pr.repo}/issues/{pr.number}/comments?per_page=10&page=3>; rel=\"next\"" in link
    assert 'rel="last"' in link and 'rel="prev"' in link and 'rel="first"' in link
    reaction = first.create_reaction("rocket")
    assert reaction.content == "rocket"
    assert first.create_reaction("rocket").id == reaction.id  # idempotent: 200 with the same one
    assert issue.get_comment(first.id).body.endswith("edited")
    first.delete()
    assert len(gh.comments(pr.repo, pr.number)) == 34


def test_comment_permissions_and_limits(gh):
    pr = gh.seed_pr()
    with pytest.raises(GithubException) as err:  # fork PR: read-only token
        gh.client(pr.read_token).get_repo(pr.repo).get_issue(pr.number).create_comment("x")
    assert (err.value.status, err.value.data["message"]) == (403, "Resource not accessible by integration")
    with pytest.raises(BadCredentialsException):
        gh.client("ghp_nonsense").get_repo(pr.repo)
    issue = gh.client(pr.author_token).get_repo(pr.repo).get_issue(pr.number)
    mine = issue.create_comment("an author may comment")
    theirs = gh.add_comment(pr.repo, pr.number, "maintainer's", user=pr.maintainer)
    with pytest.raises(GithubException) as err:
        issue.get_comment(theirs.id).edit("hijack")
    assert err.value.status == 403
    with pytest.raises(GithubException) as err:
        mine.edit("x" * 65537)
    assert err.value.status == 422 and "too long" in err.value.data["errors"][0]["message"]
    mine.edit("x" * 65536)
    assert not gh.requests_matching("*", "/user")


# ------------------------------------------------------------------- statuses, labels, checks


def test_statuses_combined_and_listed(gh):
    pr = gh.seed_pr()
    repo = gh.client(pr.token).get_repo(pr.repo)
    commit = repo.get_commit(pr.head_sha)
    assert commit.get_combined_status().state == "pending"  # no status yet
    commit.create_status("pending", description="measuring", context="bolt/perf")
    status = commit.create_status("success", target_url="https://example.invalid/run/1",
                                  description="no regression", context="bolt/perf")
    assert status.state == "success" and status.creator.login == "github-actions[bot]"
    gh.add_status(pr.repo, pr.head_sha, "failure", context="ci/tests")
    combined = commit.get_combined_status()
    assert combined.state == "failure" and combined.total_count == 2
    assert {s.context: s.state for s in combined.statuses} == {"bolt/perf": "success", "ci/tests": "failure"}
    assert [s.state for s in gh.statuses(pr.repo, pr.head_sha)] == ["pending", "success", "failure"]
    with pytest.raises(GithubException) as err:
        repo.get_commit(pr.head_sha).create_status("success", description="d" * 141)
    assert err.value.status == 422
    # PyGithub's get_statuses() uses an undocumented alias: allowed here, on purpose
    gh.allow_violations("legacy-statuses-get")
    assert [s.state for s in commit.get_statuses()] == ["failure", "success", "pending"]


def test_statuses_need_push_access(gh):
    pr = gh.seed_pr()
    commit = gh.client(pr.author_token, lazy=True).get_repo(pr.repo).get_commit(pr.head_sha)
    with pytest.raises(GithubException) as err:
        commit.create_status("success")
    assert err.value.status == 403
    assert gh.statuses(pr.repo, pr.head_sha) == []


def test_labels_add_remove_set_list(gh):
    pr = gh.seed_pr(labels=("bug",))
    issue = gh.client(pr.token).get_repo(pr.repo).get_issue(pr.number)
    issue.add_to_labels("perf: regression")  # PyGithub sends a bare array ("labels-bare-array")
    assert gh.labels(pr.repo, pr.number) == ["bug", "perf: regression"]
    issue.remove_from_labels("perf: regression")  # URL-quoted name
    assert gh.labels(pr.repo, pr.number) == ["bug"]
    with pytest.raises(GithubException) as err:  # GitHub's message, so not UnknownObjectException
        issue.remove_from_labels("absent")
    assert (err.value.status, err.value.data["message"]) == (404, "Label does not exist")
    issue.set_labels("a", "b")
    assert [label.name for label in issue.get_labels()] == ["a", "b"]


def test_check_runs_only_for_app_tokens(gh):
    pr = gh.seed_pr()
    run = gh.client(pr.token).get_repo(pr.repo).create_check_run(
        "Bolt", pr.head_sha, status="completed", conclusion="neutral",
        output={"title": "No change", "summary": "All within noise"})
    assert (run.conclusion, run.output.title) == ("neutral", "No change")
    assert [p.number for p in run.pull_requests] == [pr.number]
    run.edit(conclusion="failure", output={"title": "Slower", "summary": "2 regressions"})
    assert gh.check_runs(pr.repo)[0].conclusion == "failure"
    with pytest.raises(GithubException) as err:
        gh.client(pr.maintainer_token).get_repo(pr.repo).create_check_run("Bolt", pr.head_sha)
    assert (err.value.status, err.value.data["message"]) == (403, "You must authenticate via a GitHub App.")


# ------------------------------------------------------------------ permission, workflow runs


@pytest.mark.parametrize("role, reported", [("admin", "admin"), ("maintain", "write"),
                                            ("write", "write"), ("triage", "read"),
                                            ("read", "read"), ("none", "none")])
def test_collaborator_permission(gh, role, reported):
    pr = gh.seed_pr()
    gh.set_permission(pr.repo, "someone", role)
    repo = gh.client(pr.token).get_repo(pr.repo)
    assert repo.get_collaborator_permission("someone") == reported


def test_collaborator_permission_unknown_user(gh):
    pr = gh.seed_pr()
    with pytest.raises(GithubException) as err:
        gh.client(pr.token).get_repo(pr.repo).get_collaborator_permission("ghost")
    assert (err.value.status, err.value.data["message"]) == (404, "ghost is not a user")


@pytest.mark.parametrize("fork", [False, True])
def test_workflow_run(gh, fork):
    pr = gh.seed_pr(fork=fork, workflow_run=True)
    run = gh.client(pr.token).get_repo(pr.repo).get_workflow_run(pr.run_id)
    assert (run.head_sha, run.event, run.conclusion) == (pr.head_sha, "pull_request", "success")
    # runs of fork PRs list no pull requests: the PR number must come from elsewhere
    assert [p.number for p in run.pull_requests] == ([] if fork else [pr.number])
    assert run.head_repository.full_name == pr.head_repo


@pytest.mark.parametrize("association, role, reported", [("MEMBER", "read", "read"),
                                                          ("COLLABORATOR", "triage", "read"),
                                                          ("OWNER", "none", "none")])
def test_an_association_that_says_more_than_the_permission(gh, association, role, reported):
    """What a comment's author_association shows and what the permission API answers are separate."""
    pr = gh.seed_pr()
    gh.add_user("alice", association=association)
    gh.set_permission(pr.repo, "alice", role)
    gh.add_comment(pr.repo, pr.number, "hello", user="alice")
    repo = gh.client(pr.token).get_repo(pr.repo)
    [comment] = repo.get_issue(pr.number).get_comments()
    assert (comment.user.login, comment.author_association) == ("alice", association)
    assert repo.get_collaborator_permission("alice") == reported
    gh.add_user("alice")  # seeding again without an association keeps it
    assert gh.users["alice"].association == association
    with pytest.raises(ValueError):
        gh.add_user("bob", association="BOSS")


def test_unknown_things_are_404(gh):
    pr = gh.seed_pr()
    g = gh.client(pr.token)
    for call in (lambda: g.get_repo("nobody/nothing"),
                 lambda: g.get_repo(pr.repo).get_pull(999),
                 lambda: g.get_repo(pr.repo).get_issue(999),
                 lambda: g.get_repo(pr.repo).get_workflow_run(1)):
        with pytest.raises(UnknownObjectException) as err:
            call()
        assert err.value.data == {"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
                                  "status": "404"}
    private = gh.add_repo("octo-org/secret", private=True)
    with pytest.raises(UnknownObjectException):  # no access to a private repo looks like 404
        gh.client(pr.author_token).get_repo(private.full_name)


# ---------------------------------------------------------------------------- fault injection


def test_5xx_after_the_action_duplicates_a_retried_comment(gh):
    pr = gh.seed_pr()
    gh.fail("POST", "/repos/*/*/issues/*/comments", 502, after_action=True)
    issue = gh.client(pr.token, retry=fast_retry()).get_repo(pr.repo).get_issue(pr.number)
    issue.create_comment("<!-- bolt --> report")  # PyGithub retries POST on 502 ...
    bodies = [c.body for c in gh.comments(pr.repo, pr.number)]
    assert bodies == ["<!-- bolt --> report"] * 2  # ... so the comment exists twice
    posts = gh.requests_matching("POST", "/repos/*/*/issues/*/comments")
    assert [(r.status, r.injected, r.acted) for r in posts] == [(502, "fail", True), (201, None, True)]
    ex = [e for e in gh.exchanges() if e.method == "post"]
    assert ex[0].status == 502 and ex[0].tolerated and not ex[0].violations  # undocumented 5xx


def test_5xx_before_the_action_then_success(gh):
    pr = gh.seed_pr()
    gh.fail("POST", "/repos/*/*/issues/*/comments", 503, times=2)
    issue = gh.client(pr.token, retry=fast_retry()).get_repo(pr.repo).get_issue(pr.number)
    issue.create_comment("once")
    assert [c.body for c in gh.comments(pr.repo, pr.number)] == ["once"]


def test_persistent_5xx_without_retry_and_with(gh):
    pr = gh.seed_pr()
    gh.fail("GET", "/repos/*/*/pulls/*", 500, times=None)
    repo = gh.client(pr.token).get_repo(pr.repo)
    with pytest.raises(GithubException) as err:
        repo.get_pull(pr.number)
    assert err.value.status == 500
    with pytest.raises(requests.exceptions.RetryError):
        gh.client(pr.token, retry=fast_retry(2)).get_repo(pr.repo).get_pull(pr.number)


def test_primary_and_secondary_rate_limits_and_429_are_retried(gh):
    pr = gh.seed_pr()
    g = gh.client(pr.token, retry=fast_retry(secondary_rate_wait=1))
    gh.rate_limit("GET", "/repos/*/*", reset_in=1)
    t0 = time.monotonic()
    assert g.get_repo(pr.repo).full_name == pr.repo
    assert 0.0 < time.monotonic() - t0 < 4  # waited for X-RateLimit-Reset
    limited = gh.requests_matching("GET", f"/repos/{pr.repo}")[0]
    assert (limited.status, limited.injected) == (403, "primary-rate-limit")
    gh.secondary_rate_limit("POST", "/repos/*/*/issues/*/comments", retry_after=1)
    g.get_repo(pr.repo).get_issue(pr.number).create_comment("after a secondary limit")
    gh.too_many_requests("GET", "/repos/*/*/issues/*", retry_after=1)
    assert g.get_repo(pr.repo).get_issue(pr.number).number == pr.number
    assert len(gh.comments(pr.repo, pr.number)) == 1
    statuses = [(r.status, r.injected) for r in gh.requests if r.injected]
    assert statuses == [(403, "primary-rate-limit"), (403, "secondary-rate-limit"), (429, "too-many-requests")]


def test_rate_limit_response_headers(gh):
    pr = gh.seed_pr()
    gh.rate_limit("GET", "/repos/*/*", reset_in=2)
    resp = requests.get(f"{gh.base_url}/repos/{pr.repo}", timeout=5)
    assert resp.status_code == 403 and resp.json()["message"].startswith("API rate limit exceeded")
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(resp.headers["X-RateLimit-Reset"]) - time.time() <= 3
    gh.secondary_rate_limit("GET", "/repos/*/*")
    resp = requests.get(f"{gh.base_url}/repos/{pr.repo}", timeout=5)
    assert resp.status_code == 403 and resp.headers["Retry-After"] == "1"
    assert resp.json()["message"].startswith("You have exceeded a secondary rate limit")


def test_delay_causes_a_client_timeout(gh):
    pr = gh.seed_pr()
    gh.delay("GET", "/repos/*/*/pulls/*", 1.5)
    repo = gh.client(pr.token, timeout=1).get_repo(pr.repo)
    with pytest.raises(requests.exceptions.Timeout):
        repo.get_pull(pr.number)
    gh.settle()  # prism handles the next request only once the delayed one is answered
    assert repo.get_pull(pr.number).number == pr.number  # the rule was used up


def test_html_answers_with_or_without_the_action(gh):
    pr = gh.seed_pr()
    url = f"{gh.base_url}/repos/{pr.repo}/issues/{pr.number}/comments"
    auth = {"Authorization": f"token {pr.token}"}
    gh.answer_html("POST", "/repos/*/*/issues/*/comments")
    r = requests.post(url, json={"body": "one"}, headers=auth, timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text.startswith("<!DOCTYPE html>") and gh.comments(pr.repo, pr.number) == []
    gh.answer_html("POST", "/repos/*/*/issues/*/comments", 502, after_action=True)
    r = requests.post(url, json={"body": "two"}, headers=auth, timeout=5)
    assert r.status_code == 502 and "Unicorn" in r.text
    assert [c.body for c in gh.comments(pr.repo, pr.number)] == ["two"]
    posts = gh.requests_matching("POST", "/repos/*/*/issues/*/comments")
    assert [(p.injected, p.acted) for p in posts] == [("html", False), ("html", True)]


def test_truncated_answers_keep_the_status_and_cut_the_json(gh):
    pr = gh.seed_pr()
    url = f"{gh.base_url}/repos/{pr.repo}/issues/{pr.number}/comments"
    auth = {"Authorization": f"token {pr.token}"}
    gh.answer_truncated("POST", "/repos/*/*/issues/*/comments")  # acts, then answers half of the 201
    r = requests.post(url, json={"body": "one"}, headers=auth, timeout=5)
    assert r.status_code == 201 and r.text.startswith('{"id": ')
    with pytest.raises(ValueError):
        json.loads(r.text)
    assert [c.body for c in gh.comments(pr.repo, pr.number)] == ["one"]
    gh.answer_truncated("POST", "/repos/*/*/issues/*/comments", 200, after_action=False)
    r = requests.post(url, json={"body": "two"}, headers=auth, timeout=5)
    assert r.status_code == 200 and r.text.startswith('{"message": ') and len(gh.comments(pr.repo, pr.number)) == 1
    posts = gh.requests_matching("POST", "/repos/*/*/issues/*/comments")
    assert [(p.injected, p.acted, p.status) for p in posts] == [("truncated", True, 201), ("truncated", False, 200)]


@pytest.mark.parametrize("same_url", [False, True])
def test_endless_next_pages(gh, same_url):
    pr = gh.seed_pr()
    gh.add_comment(pr.repo, pr.number, "only one", user=pr.author)
    gh.endless_pages("/repos/*/*/issues/*/comments", same_url=same_url)
    url = f"{gh.base_url}/repos/{pr.repo}/issues/{pr.number}/comments?per_page=100"
    for _ in range(5):
        r = requests.get(url, timeout=5)
        assert r.status_code == 200 and r.links.get("next")
        assert [c["body"] for c in r.json()] == ["only one"]
        url = r.links["next"]["url"]
    assert url.endswith("page=1" if same_url else "page=6")
    gh.clear_faults()
    assert "next" not in requests.get(url, timeout=5).links


def test_prism_reports_a_broken_response(gh):
    """The validation is real: a response missing required fields is caught."""
    pr = gh.seed_pr()
    gh.fail("GET", "/repos/*/*/pulls/*", 200, body={"number": 7})
    requests.get(f"{gh.base_url}/repos/{pr.repo}/pulls/{pr.number}", timeout=5)
    found = gh.violations()
    assert any("must have required property 'head'" in v.message for _, v in found)
    with pytest.raises(pytest.fail.Exception, match="prism found GitHub OpenAPI violations"):
        gh.assert_no_violations()  # what the fixture does at teardown
    gh.allow("GET", r"/repos/.*/pulls/\d+", ".*", "deliberately broken by this test")


# ------------------------------------------------------------------------------ webhook events


def test_webhook_issue_comment_on_a_pr(webhook):
    event = webhook("issue_comment", "created", repo="octo-org/bolt-demo", number=7, on_pr=True,
                    commenter="maintainer", body="/bolt run", api_url="http://127.0.0.1:1")
    webhooks.validate_event("issue_comment", event)
    assert event["repository"]["full_name"] == "octo-org/bolt-demo"
    assert event["issue"]["number"] == 7 and "pull_request" in event["issue"]
    assert event["issue"]["pull_request"]["url"] == "http://127.0.0.1:1/repos/octo-org/bolt-demo/pulls/7"
    assert (event["comment"]["user"]["login"], event["sender"]["login"]) == ("maintainer", "maintainer")
    assert event["comment"]["body"] == "/bolt run"
    assert "pull_request" not in webhook("issue_comment", "created")["issue"]


def test_webhook_pull_request_and_workflow_run(webhook, tmp_path):
    sha = "a" * 40
    event = webhook("pull_request", "synchronize", repo="octo-org/bolt-demo", number=7,
                    head_sha=sha, base_sha="b" * 40, head_ref="faster")
    webhooks.validate_event("pull_request", event)
    assert (event["number"], event["pull_request"]["head"]["sha"], event["after"]) == (7, sha, sha)
    assert event["pull_request"]["url"].endswith("/repos/octo-org/bolt-demo/pulls/7")
    run = webhook("workflow_run", "completed", repo="octo-org/bolt-demo", head_sha=sha,
                  pull_requests=[], run_id=42, run_event="pull_request", conclusion="success")
    webhooks.validate_event("workflow_run", run)
    assert (run["workflow_run"]["id"], run["workflow_run"]["pull_requests"]) == (42, [])
    path = webhooks.write_event(tmp_path, run)
    assert json.loads(path.read_text())["workflow_run"]["head_sha"] == sha
    assert {"pull_request", "issue_comment", "workflow_run", "workflow_dispatch",
            "pull_request_review"} <= set(webhooks.events())
