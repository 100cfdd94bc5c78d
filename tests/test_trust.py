"""Whom Bolt believes (issue 13): only its own comment, by the identity it writes with, and the permission API;
never author_association, never an artifact. And the comment survives racing runs and failing replies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytest.importorskip("github")

from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.errors import EXIT_BAD_INPUT, EXIT_PUBLISH, EXIT_REGRESSION
from bolt_bot.model import FAILED, REGRESSED, Results
from bolt_bot.report.output import write_results_dir
from bolt_bot.report.state import MARKER, read_state, state_comment
from tests.ghdouble.webhooks import load_event, write_event
from tests.test_action import FakeMeasure, invoke, make_artifact, pr_event, run, run_event, runner_env
from tests.test_publish import make_results

_conftest = Path(__file__).with_name("conftest.py")
if not (_conftest.exists() and "ghdouble.fixtures" in _conftest.read_text(encoding="utf-8")):
    from tests.ghdouble.fixtures import gh, github_double, webhook  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
PARSE = "tests/bench.py::test_parse"
ACTIONS_BOT = "github-actions[bot]"


def publish_env(gh, token: str) -> dict[str, str]:
    """What `bolt publish` reads from its environment, against the double."""
    return {"GITHUB_TOKEN": token, "GITHUB_API_URL": gh.base_url, "GITHUB_OUTPUT": "", "GITHUB_STEP_SUMMARY": "",
            "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0", "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0",
            "BOLT_GITHUB_BACKOFF": "0", "BOLT_GITHUB_RETRIES": "1"}


def bolt_publish(gh, pr, folder: Path, token: str, *extra: str):
    return CliRunner().invoke(main, ["publish", str(folder), "--repo", pr.repo, "--pr", str(pr.number), *extra],
                              env=publish_env(gh, token), catch_exceptions=False)


def concurrent(gh) -> None:
    """With requests in flight at once, prism's log may pin a known violation (PyGithub's bare label array, see
    KNOWN_VIOLATIONS) or a DELETE's 204 on a neighbouring exchange: allow just those, anywhere."""
    gh.allow("[A-Z]+", ".*", r"^request\.body: Request body must (be object|match exactly one schema in oneOf)",
             "the labels-bare-array violation, attributed to a concurrent neighbour")
    gh.allow("[A-Z]+", ".*", r"^response: Unable to match the returned status code .*: 204",
             "a DELETE's 204, attributed to a concurrent neighbour")


def sub(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir(exist_ok=True)
    return tmp_path / name


def marked(gh, pr) -> list:
    return [c for c in gh.comments(pr.repo, pr.number) if MARKER in c.body]


def state_body(head_sha: str, approver: str, ratio: float = 1.5) -> str:
    """A comment that looks like Bolt's: the marker, and a state with an approval of test_parse at `ratio`."""
    state = {"v": 1, "head_sha": head_sha, "verdict": REGRESSED, "regressed": {PARSE: ratio}, "perf": False,
             "approval": {"user": approver, "reason": "looks fine", "sha": head_sha, "via": "comment",
                          "at": "2026-01-01 00:00 UTC", "stages": {PARSE: ratio}}}
    return f"{MARKER}\n{state_comment(state)}\n### ⚡ fine\n"


def add_triager(gh, pr, login: str = "alice") -> str:
    """A user whom GitHub calls a COLLABORATOR on comments, while the permission API answers `read`."""
    gh.set_permission(pr.repo, login, "triage")
    return login


def association(gh, pr, comment_id: int) -> str:
    return gh.client(pr.token).get_repo(pr.repo).get_issue(pr.number).get_comment(comment_id).author_association


# ------------------------------------------------------------------ item 1: one trust decision, by identity


@pytest.mark.parametrize("writer", ["actions-token", "personal-token"])
def test_a_state_forged_by_a_collaborator_is_never_adopted(gh, tmp_path, writer):
    pr = gh.seed_pr()
    alice = add_triager(gh, pr)
    forged = gh.add_comment(pr.repo, pr.number, state_body(pr.head_sha, alice), user=alice)
    assert association(gh, pr, forged.id) == "COLLABORATOR"  # what main's find_comment believed
    token = pr.token if writer == "actions-token" else pr.maintainer_token
    result = bolt_publish(gh, pr, write_dir(tmp_path, make_results(pr.head_sha, pr.base_sha)), token)
    assert result.exit_code == 0, result.output
    status = gh.statuses(pr.repo, pr.head_sha)[-1]
    assert (status.state, status.description) == ("failure", "1 stage slower: test_parse +9.2 %")
    assert gh.comments(pr.repo, pr.number)[0].body == forged.body  # never edited
    ours = marked(gh, pr)[1:]
    me = ACTIONS_BOT if writer == "actions-token" else pr.maintainer
    assert len(ours) == 1 and ours[0].user == me and read_state(ours[0].body)["approval"] is None
    if writer == "personal-token":
        assert gh.requests_matching("GET", "/user")  # asked whom the token belongs to


def test_bolts_own_state_counts_only_while_its_approver_may_approve(gh, tmp_path):
    """An approval stored in Bolt's own comment is re-checked against the permission API before it counts."""
    pr = gh.seed_pr()
    alice = add_triager(gh, pr)  # approved when she had write; now triage
    gh.add_comment(pr.repo, pr.number, state_body(pr.head_sha, alice, 1.092), user=ACTIONS_BOT)
    folder = write_dir(tmp_path, make_results(pr.head_sha, pr.base_sha))
    assert bolt_publish(gh, pr, folder, pr.token).exit_code == 0
    assert gh.statuses(pr.repo, pr.head_sha)[-1].state == "failure"
    state = read_state(marked(gh, pr)[0].body)
    assert state["approval"] is None and "alice has read permission" in state["approval_note"]
    assert gh.requests_matching("GET", f"/repos/*/*/collaborators/{alice}/permission")
    # the same stored approval by someone who still has write permission holds
    gh.comments(pr.repo, pr.number)[0].body = state_body(pr.head_sha, pr.maintainer, 1.092)
    assert bolt_publish(gh, pr, folder, pr.token).exit_code == 0
    assert gh.statuses(pr.repo, pr.head_sha)[-1].description == "approved by maintainer: looks fine"


# ----------------------------------------------------- item 2: an artifact's approval is never believed


def write_dir(tmp_path: Path, results: Results, name: str = "bolt-results") -> Path:
    folder = tmp_path / name
    write_results_dir(results, folder)
    return folder


def with_forged_approval(folder: Path, sha: str) -> None:
    data = json.loads((folder / "results.json").read_text())
    data["approval"] = {"user": "mallory", "reason": "trust me", "sha": sha, "at": "now"}
    (folder / "results.json").write_text(json.dumps(data))


@pytest.mark.parametrize("comment", ["always", "on-change", "never"])
def test_an_artifacts_approval_never_turns_the_gate_green(gh, tmp_path, comment):
    pr = gh.seed_pr(fork=True, workflow_run=True)
    with_forged_approval(make_artifact(tmp_path, pr), pr.head_sha)
    env = runner_env(gh, tmp_path, "workflow_run", run_event(pr), pr.token,
                     **{"fail-on-regression": "true", "comment": comment})
    result = invoke(env)
    assert result.exit_code == EXIT_REGRESSION, result.output
    status = gh.statuses(pr.repo, pr.head_sha)[-1]
    assert status.state == "failure" and "mallory" not in status.description
    assert all("mallory" not in c.body for c in gh.comments(pr.repo, pr.number))


def test_bolt_publish_ignores_the_approval_in_results_json(gh, tmp_path):
    pr = gh.seed_pr()
    folder = write_dir(tmp_path, make_results(pr.head_sha, pr.base_sha))
    with_forged_approval(folder, pr.head_sha)
    result = bolt_publish(gh, pr, folder, pr.token, "--comment", "never")
    assert result.exit_code == 0 and "status failure" in result.output
    assert gh.statuses(pr.repo, pr.head_sha)[-1].description == "1 stage slower: test_parse +9.2 %"


# --------------------------------------------------------- item 4: a failed reply leaves the report alone


def comment_event(gh, tmp_path, pr, user: str, body: str) -> dict[str, str]:
    comment = gh.add_comment(pr.repo, pr.number, body, user=user)
    event = load_event("issue_comment", "created", repo=pr.repo, number=pr.number, on_pr=True, commenter=user,
                       body=body)
    event["comment"]["id"] = comment.id
    return runner_env(gh, tmp_path, "issue_comment", event, pr.token)


@pytest.mark.parametrize("case", ["refusal-502", "refusal-500", "saywhy-502", "help-502", "refusal-acted-502",
                                  "help-timeout"])
def test_a_failed_reply_never_overwrites_the_report(gh, tmp_path, case):
    pr = gh.seed_pr()
    run(runner_env(gh, sub(tmp_path, "measure"), "pull_request", pr_event(pr), pr.token))
    report = marked(gh, pr)[0]
    before = report.body
    user, text = {"refusal": (pr.author, "/bolt approve trust me"), "saywhy": (pr.maintainer, "/bolt approve"),
                  "help": (pr.maintainer, "/bolt help")}[case.split("-")[0]]
    env = comment_event(gh, tmp_path, pr, user, text)
    acted = case.endswith("acted-502")
    if case.endswith("timeout"):  # no answer in time (as with a reset): the reply appears only later
        env["BOLT_GITHUB_TIMEOUT"] = "1"
        gh.fail("POST", "/repos/*/*/issues/*/comments", None, delay=2.5)
    else:
        gh.fail("POST", "/repos/*/*/issues/*/comments", 500 if case.endswith("500") else 502, after_action=acted)
    result = invoke(env)
    gh.settle()
    assert marked(gh, pr)[0].body == before and len(marked(gh, pr)) == 1  # the report, as it was
    if acted:  # the server made the reply before failing: it is there once, and all is well
        assert result.exit_code == 0, result.output
        assert len(gh.comments(pr.repo, pr.number)) == 3
        return
    assert result.exit_code == EXIT_PUBLISH, result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("bolt: error: could not reply on #7"), result.stderr
    # the report and the command (and the late reply, which the server made after Bolt gave up)
    assert len(gh.comments(pr.repo, pr.number)) == (3 if case.endswith("timeout") else 2)


# -------------------------------------------------- item 6: two publishers on a brand-new PR leave one comment


def test_two_publishers_at_once_on_a_new_pull_request_leave_one_comment(gh, tmp_path, monkeypatch):
    """Two `bolt publish` processes (two jobs, both github-actions[bot]); each creates its comment only once
    both have listed the comments and found none, and every write takes 1 s. Five times."""
    concurrent(gh)
    script = Script(gh, monkeypatch)
    for token in ("ghs_run_a", "ghs_run_b"):
        gh.add_token(token, ACTIONS_BOT, app=True)
    for trial in range(5):
        pr = gh.seed_pr(number=20 + trial)
        gh.delay("POST", f"/repos/*/*/issues/{pr.number}/comments", 1.0, times=None)
        commands = {}
        listed = {"a": threading.Event(), "b": threading.Event()}
        script.rules.clear()
        for name, ratio, other in (("a", 1.092, "b"), ("b", 1.3, "a")):
            results = make_results(pr.head_sha, pr.base_sha)
            results.stages[0].ratio = ratio
            folder = write_dir(tmp_path / str(trial), results, name)
            commands[name] = ([sys.executable, "-m", "bolt_bot", "publish", str(folder), "--repo", pr.repo, "--pr",
                               str(pr.number)], {**os.environ, **publish_env(gh, f"ghs_run_{name}")})
            script.on(f"ghs_run_{name}", "GET", COMMENTS, answered=listed[name])
            script.on(f"ghs_run_{name}", "POST", COMMENTS, hold=listed[other])
        done = race(commands)
        assert [done[n].returncode for n in "ab"] == [0, 0], {n: r.stderr for n, r in done.items()}
        assert len(gh.requests_matching("POST", f"/repos/*/*/issues/{pr.number}/comments")) == 2, trial
        left = marked(gh, pr)
        assert len(left) == 1, (trial, [c.id for c in left])
        assert read_state(left[0].body)["head_sha"] == pr.head_sha
        gh.clear_faults()
    gh.settle()


# ------------------------------------------------ item 7: an approval racing a publish of a newer head


class Script:
    """Makes a race happen on the double: requests of one token are held until another's have arrived or been
    answered, and a callback can act (a push) the moment a request arrives."""

    def __init__(self, gh, monkeypatch):
        self._handle = gh.double.handle
        self.rules: list[dict] = []
        monkeypatch.setattr(gh.double, "handle", self.handle)

    def on(self, token: str, method: str, pattern: str, *, arrived=None, answered=None, hold=None, skip: int = 0):
        """For `token`'s requests matching: after `skip` of them, the next one sets `arrived` (an Event, or a
        callable) when it arrives, waits for `hold`, and sets `answered` once the double has answered it."""
        self.rules.append({"token": token, "method": method, "rx": re.compile(pattern), "skip": skip, "left": 1,
                           "arrived": arrived, "answered": answered, "hold": hold})

    def handle(self, method, raw_path, headers, raw_body):
        token = headers.get("authorization", "").split()[-1] if headers.get("authorization") else None
        path = urlsplit(raw_path).path
        mine = []
        for rule in self.rules:
            if rule["token"] == token and rule["method"] == method and rule["rx"].fullmatch(path) and rule["left"]:
                if rule["skip"]:
                    rule["skip"] -= 1
                    continue
                rule["left"] = 0
                mine.append(rule)
        for rule in mine:
            if rule["arrived"] is not None:
                rule["arrived"]() if callable(rule["arrived"]) else rule["arrived"].set()
            if rule["hold"] is not None:
                assert rule["hold"].wait(30), f"held {method} {path} for nothing"
        answer = self._handle(method, raw_path, headers, raw_body)
        for rule in mine:
            if rule["answered"] is not None:
                rule["answered"].set()
        return answer


COMMENTS = r"/repos/[^/]+/[^/]+/issues/\d+/comments"
COMMENT = r"/repos/[^/]+/[^/]+/issues/comments/\d+"
PERMISSION = r"/repos/[^/]+/[^/]+/collaborators/[^/]+/permission"


def race(commands: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, subprocess.CompletedProcess]:
    """Run the commands at once, each in its own process."""
    results: dict[str, subprocess.CompletedProcess] = {}

    def start(name: str) -> None:
        argv, environ = commands[name]
        results[name] = subprocess.run(argv, env=environ, cwd=ROOT, capture_output=True, text=True, timeout=180)

    threads = [threading.Thread(target=start, args=(name,)) for name in commands]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def racing_runs(gh, tmp_path, pr, newer: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """`bolt publish` of the newer head (token ghs_publisher) and `/bolt approve` of the reported one
    (token ghs_approver): two jobs, both writing as github-actions[bot]."""
    for token in ("ghs_publisher", "ghs_approver"):
        gh.add_token(token, ACTIONS_BOT, app=True)
    folder = write_dir(tmp_path, make_results(newer, pr.base_sha, verdict="improved"), "newer")
    approve_env = comment_event(gh, sub(tmp_path, "approve"), pr, pr.maintainer, "/bolt approve fine for now")
    approve_env["INPUT_GITHUB-TOKEN"] = "ghs_approver"
    for method in ("PATCH", "POST"):  # every write takes 1.5 s
        gh.delay(method, "/repos/*/*/issues/*", 1.5, times=None)
        gh.delay(method, "/repos/*/*/statuses/*", 1.5, times=None)
    return {
        "publish": ([sys.executable, "-m", "bolt_bot", "publish", str(folder), "--repo", pr.repo, "--pr",
                     str(pr.number)], {**os.environ, **publish_env(gh, "ghs_publisher")}),
        "approve": ([sys.executable, "-m", "bolt_bot", "action"], {**os.environ, **approve_env}),
    }


def test_an_approval_racing_a_newer_heads_publish_never_brings_the_old_report_back(gh, tmp_path, monkeypatch):
    """The issue's case: the push is in, its run writes (1.5 s), and the approval reads the comment meanwhile."""
    concurrent(gh)
    pr = gh.seed_pr()
    run(runner_env(gh, sub(tmp_path, "measure"), "pull_request", pr_event(pr), pr.token))
    newer = gh.add_commit(pr.repo, "5" * 40)
    gh.pull(pr.repo, pr.number).head_sha = newer  # pushed; its run is about to publish
    commands = racing_runs(gh, tmp_path, pr, newer)
    writing = threading.Event()
    script = Script(gh, monkeypatch)
    script.on("ghs_publisher", "PATCH", COMMENT, arrived=writing)
    script.on("ghs_approver", "GET", PERMISSION, hold=writing)  # the approval starts while the report is written
    results = race(commands)
    assert [results[n].returncode for n in ("publish", "approve")] == [0, 0], {n: r.stderr for n, r in results.items()}
    reports = marked(gh, pr)
    assert len(reports) == 1 and read_state(reports[0].body)["head_sha"] == newer, reports[0].body[:300]
    assert "approve again" in gh.comments(pr.repo, pr.number)[-1].body
    gh.clear_faults()
    gh.settle()


def test_a_publish_writes_again_when_an_older_approval_lands_after_it(gh, tmp_path, monkeypatch):
    """The other order: the approval checked the head before the push, and its write lands after the newer
    head's write (held); the newer head's run reads its comment back and writes its report again."""
    concurrent(gh)
    pr = gh.seed_pr()
    run(runner_env(gh, sub(tmp_path, "measure"), "pull_request", pr_event(pr), pr.token))
    newer = gh.add_commit(pr.repo, "6" * 40)
    commands = racing_runs(gh, tmp_path, pr, newer)
    pushed, published, approved = threading.Event(), threading.Event(), threading.Event()

    def push():
        gh.pull(pr.repo, pr.number).head_sha = newer
        pushed.set()

    script = Script(gh, monkeypatch)
    script.on("ghs_publisher", "GET", r"/user|/repos/.*", hold=pushed)  # the newer head's run starts after the push
    # the approval's write arrives (the push lands just then) and is held until the newer report is written
    script.on("ghs_approver", "PATCH", COMMENT, arrived=push, hold=published, answered=approved)
    script.on("ghs_publisher", "PATCH", COMMENT, answered=published)
    script.on("ghs_publisher", "GET", COMMENTS, skip=1, hold=approved)  # its read-back comes after the approval
    results = race(commands)
    assert [results[n].returncode for n in ("publish", "approve")] == [0, 0], {n: r.stderr for n, r in results.items()}
    reports = marked(gh, pr)
    state = read_state(reports[0].body)
    assert len(reports) == 1 and state["head_sha"] == newer, reports[0].body[:300]
    assert "writing it again" in results["publish"].stdout
    # the approval landed in between and holds for the newer head (no stage regressed there)
    assert state["approval"]["user"] == pr.maintainer and state["approval"]["holds_for"] == newer
    gh.clear_faults()
    gh.settle()


# -------------------------------------------------------------- item 3: pull_request_target, forks, secrets


def test_pull_request_target_never_measures(gh, tmp_path):
    pr = gh.seed_pr(fork=True)
    event = pr_event(pr, "opened")
    event["pull_request"]["head"]["repo"]["full_name"] = pr.head_repo
    result = invoke(runner_env(gh, tmp_path, "pull_request_target", event, pr.token))
    assert result.exit_code == EXIT_BAD_INPUT
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "pull_request_target runs with a write token" in errors[0], result.stderr
    assert not (tmp_path / "workspace" / "bolt-results").exists() and gh.requests == []


def test_a_fork_is_known_before_its_code_runs_and_no_token_stays_for_it(gh, tmp_path):
    pr = gh.seed_pr(fork=True)
    event = pr_event(pr, "opened")
    event["pull_request"]["head"]["repo"]["full_name"] = pr.head_repo
    env = runner_env(gh, tmp_path, "pull_request", event, pr.token)
    env.update({"GITHUB_TOKEN": pr.token, "ACTIONS_RUNTIME_TOKEN": "runtime-secret"})
    from bolt_bot.github.action import Runtime, read_config, run_action

    environ = dict(env)
    seen = []

    def measure(request):
        seen.append(sorted(k for k in environ if "TOKEN" in k))
        return FakeMeasure()(request)

    import io

    code = run_action(read_config(env), Runtime(measure=measure, environ=environ, stdout=io.StringIO(),
                                                stderr=io.StringIO()))
    assert code == 0 and seen == [[]] and gh.requests == []


# ------------------------------------------------------------------------------- item 9: gate holes


def test_a_failed_measurement_fails_the_gate(gh, tmp_path):
    pr = gh.seed_pr()
    env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token, **{"fail-on-regression": "true"})
    code, _ = run(env, FakeMeasure(verdict=FAILED))
    assert code == EXIT_REGRESSION
    assert gh.statuses(pr.repo, pr.head_sha)[-1].state == "error"
    code, _ = run(runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token), FakeMeasure(verdict=FAILED))
    assert code == 0  # only when asked to fail


def test_labels_from_tool_bolt_count_in_label_mode(gh, tmp_path):
    pr = gh.seed_pr(labels=("speed",))
    event = pr_event(pr)
    event["pull_request"]["labels"] = [{"name": "speed"}]
    env = runner_env(gh, tmp_path, "pull_request", event, pr.token, mode="label")
    (tmp_path / "workspace" / "pyproject.toml").write_text('[tool.bolt]\nperf_label = "speed"\n'
                                                           'approval_label = "ok-slower"\n')
    measure = FakeMeasure()
    code, stdout = run(env, measure)
    assert code == 0 and len(measure.requests) == 1, stdout
    assert marked(gh, pr)  # measured and published
    event = pr_event(pr, "labeled")
    event["label"] = {"name": "ok-slower"}
    event["sender"]["login"] = pr.maintainer
    gh.add_label(pr.repo, "ok-slower")
    gh.pull(pr.repo, pr.number).labels.append("ok-slower")
    event["pull_request"]["labels"] = [{"name": "speed"}, {"name": "ok-slower"}]
    code, _ = run(runner_env(gh, tmp_path, "pull_request", event, pr.token, mode="label"), measure)
    assert code == 0 and len(measure.requests) == 1
    assert read_state(marked(gh, pr)[0].body)["approval"]["via"] == "label"


def test_approvers_and_labels_come_from_the_base_not_the_pull_request(gh, tmp_path):
    """The base asks for admin approvals; the pull request's pyproject.toml says write: the base wins."""
    from tests.conftest import commit, git, make_repo

    workspace = make_repo(tmp_path / "workspace", {"pyproject.toml": '[tool.bolt]\napprovers = "admin"\n'})
    base = git(workspace, "rev-parse", "HEAD")
    head = commit(workspace, {"pyproject.toml": '[tool.bolt]\napprovers = "write"\n'}, "head")
    pr = gh.seed_pr(head_sha=head, base_sha=base)
    run(runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token))
    assert gh.statuses(pr.repo, head)[-1].state == "failure"
    gh.add_label(pr.repo, "perf-approved")
    gh.pull(pr.repo, pr.number).labels.append("perf-approved")
    event = load_event("pull_request", "labeled", repo=pr.repo, number=pr.number, head_sha=head, base_sha=base,
                       sender=pr.maintainer)
    event["label"] = {**event["label"], "name": "perf-approved"}
    event["pull_request"]["labels"] = [{"name": "perf-approved"}]
    code, _ = run(runner_env(gh, tmp_path, "pull_request", event, pr.token))
    assert code == 0
    assert gh.statuses(pr.repo, head)[-1].state == "failure"  # a maintainer (write) may not approve here
    assert read_state(marked(gh, pr)[0].body)["approval"] is None
    assert "admin permission" in gh.comments(pr.repo, pr.number)[-1].body
