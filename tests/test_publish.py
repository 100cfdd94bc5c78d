"""Publishing a results directory to the GitHub double: one sticky comment, status, label, outputs, summary."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("github")

from bolt_bot.decide import gate
from bolt_bot.github import publish as pub
from bolt_bot.errors import EXIT_PUBLISH, PublishError
from bolt_bot.github.client import STATUS_CONTEXT, Client, ClientOptions, ReadOnlyToken
from bolt_bot.model import (
    IMPROVED,
    REGRESSED,
    UNCHANGED,
    CommitRef,
    Results,
    SideSummary,
    StageComparison,
)
from bolt_bot.report.output import write_results_dir
from bolt_bot.report.state import MARKER, read_state
from bolt_bot.settings import Settings
from tests.container import parse_key_values

# Until tests/conftest.py star-imports the fixtures, bring them in here (as tests/test_ghdouble.py does).
_conftest = Path(__file__).with_name("conftest.py")
if not (_conftest.exists() and "ghdouble.fixtures" in _conftest.read_text(encoding="utf-8")):
    from tests.ghdouble.fixtures import gh, github_double, webhook  # noqa: F401


def stage(name: str, verdict: str, ratio: float) -> StageComparison:
    spread = 0.01
    return StageComparison(
        name=name, verdict=verdict, ratio=ratio, ci=[ratio - spread, ratio + spread], p=0.001, q=0.002,
        base=SideSummary(rounds=5, center=0.010, median=0.010, values=[0.010] * 5),
        head=SideSummary(rounds=5, center=0.010 * ratio, median=0.010 * ratio, values=[0.010 * ratio] * 5),
    )


def make_results(head_sha: str, base_sha: str = "b" * 40, *, verdict: str = REGRESSED,
                 names: tuple[str, ...] = ("tests/bench.py::test_parse",)) -> Results:
    """A hand-made Results: `names` get `verdict` (+9.2 % when regressed), plus one unchanged stage."""
    ratio = {REGRESSED: 1.092, IMPROVED: 0.85}.get(verdict, 1.0)
    stages = [stage(n, verdict, ratio) for n in names] + [stage("tests/bench.py::test_load", UNCHANGED, 1.001)]
    return Results(stages=stages, verdict=verdict, base=CommitRef("main", base_sha), head=CommitRef("feature", head_sha),
                   settings={"threshold": 3.0}, environment={"rounds": 5, "duration": 12.0})


def results_dir(tmp_path: Path, results: Results, name: str = "bolt-results") -> Path:
    folder = tmp_path / name
    write_results_dir(results, folder)
    return folder


def client_for(gh, token: str, repo: str, **kw) -> Client:
    options = ClientOptions(base_url=gh.base_url, seconds_between_requests=0, seconds_between_writes=0,
                            retries=2, backoff=0, timeout=5, max_rate_wait=3)
    return Client(token, repo, options, **kw)


class Env(dict):
    """GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files in a temporary folder."""

    def __init__(self, tmp_path: Path):
        super().__init__(GITHUB_OUTPUT=str(tmp_path / "output"), GITHUB_STEP_SUMMARY=str(tmp_path / "summary"))
        for key in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
            Path(self[key]).touch()

    @property
    def outputs(self) -> list[dict[str, str]]:
        """One dict per publish call (each call appends its four outputs)."""
        text = Path(self["GITHUB_OUTPUT"]).read_text(encoding="utf-8")
        chunks, current = [], ""
        for block in text.split("verdict<<")[1:]:
            current = "verdict<<" + block
            chunks.append(parse_key_values(current))
        return chunks

    @property
    def summary(self) -> str:
        return Path(self["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")


def run_publish(gh, pr, folder: Path, env: Env, settings: Settings | None = None, token: str | None = None,
                **kw) -> tuple[pub.Outcome, str]:
    out = io.StringIO()
    outcome = pub.publish(folder, client_for(gh, token or pr.token, pr.repo), pr.repo, pr.number,
                          settings or Settings(), environ=env, stdout=out, **kw)
    return outcome, out.getvalue()


def test_publish_twice_keeps_one_comment_and_sets_status_label_outputs(gh, tmp_path):
    pr = gh.seed_pr()
    env = Env(tmp_path)
    folder = results_dir(tmp_path, make_results(pr.head_sha, pr.base_sha))
    first, stdout = run_publish(gh, pr, folder, env, run_url="https://github.com/o/r/actions/runs/1")
    assert first.comment == "created" and first.status == "failure" and first.label == "added"
    second, _ = run_publish(gh, pr, folder, env)
    assert second.comment == "updated" and second.comment_url == first.comment_url
    comments = gh.comments(pr.repo, pr.number)
    assert len(comments) == 1 and comments[0].body.startswith(MARKER)
    assert "test_parse" in comments[0].body
    state = read_state(comments[0].body)
    assert state["head_sha"] == pr.head_sha and state["verdict"] == REGRESSED and state["run_at"]
    assert state["regressions"] == ["tests/bench.py::test_parse"]
    statuses = gh.statuses(pr.repo, pr.head_sha)
    assert [(s.state, s.context) for s in statuses] == [("failure", STATUS_CONTEXT)] * 2
    assert statuses[0].description == "1 stage slower: test_parse +9.2 %"
    assert statuses[0].target_url == "https://github.com/o/r/actions/runs/1"
    assert gh.labels(pr.repo, pr.number) == ["perf-regression"]
    assert len(gh.requests_matching("POST", "/repos/*/*/issues/*/comments")) == 1
    outputs = env.outputs
    assert outputs[0] == {"verdict": "regressed", "regressions": "1", "comment-url": first.comment_url,
                          "results-dir": str(folder)}
    assert first.comment_url.endswith(f"#issuecomment-{comments[0].id}")
    assert env.summary.count("1 stage slower") == 2  # appended by each run
    assert stdout.startswith("::warning file=tests/bench.py,title=Bolt%3A slower benchmark::tests/bench.py::test_parse is +9.2 %25 slower (95%25 CI [+8.2, +10.2] %25)\n")


def test_label_removed_and_comment_kept_updated_when_the_regression_goes(gh, tmp_path):
    pr = gh.seed_pr(labels=("bug",))
    env = Env(tmp_path)
    run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), env)
    assert gh.labels(pr.repo, pr.number) == ["bug", "perf-regression"]
    outcome, stdout = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha, verdict=UNCHANGED), "b"), env)
    # on-change: a comment exists, so it is kept up to date even though nothing changed now
    assert (outcome.comment, outcome.status, outcome.label) == ("updated", "success", "removed")
    assert gh.labels(pr.repo, pr.number) == ["bug"]
    assert len(gh.comments(pr.repo, pr.number)) == 1
    assert read_state(gh.comments(pr.repo, pr.number)[0].body)["verdict"] == UNCHANGED
    assert gh.statuses(pr.repo, pr.head_sha)[-1].description == "no regression: 2 stages unchanged"
    assert "::warning" not in stdout


def test_on_change_is_quiet_until_something_changes(gh, tmp_path):
    pr = gh.seed_pr()
    env = Env(tmp_path)
    outcome, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha, verdict=UNCHANGED)), env)
    assert (outcome.comment, outcome.comment_url, outcome.status, outcome.label) == ("skipped-quiet", "", "success", None)
    assert gh.comments(pr.repo, pr.number) == []
    assert env.outputs[0]["comment-url"] == ""
    improved, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha, verdict=IMPROVED), "b"), env)
    assert improved.comment == "created"
    assert gh.statuses(pr.repo, pr.head_sha)[-1].description == "no regression; 1 stage faster: test_parse -15.0 %"
    never, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha), "c"), env,
                           Settings(comment="never"))
    assert never.comment == "skipped-never" and never.status == "failure"
    assert "+9.2" not in gh.comments(pr.repo, pr.number)[0].body  # left alone


def test_comment_always_posts_even_when_unchanged(gh, tmp_path):
    pr = gh.seed_pr()
    outcome, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha, verdict=UNCHANGED)),
                             Env(tmp_path), Settings(comment="always"))
    assert outcome.comment == "created" and len(gh.comments(pr.repo, pr.number)) == 1


def test_a_run_for_an_older_head_never_overwrites_the_newer_comment(gh, tmp_path):
    pr = gh.seed_pr()
    env = Env(tmp_path)
    old_sha, new_sha = pr.head_sha, "c" * 40
    gh.add_commit(pr.repo, new_sha)
    gh.pull(pr.repo, pr.number).head_sha = new_sha  # a push: the PR moved on
    newer, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(new_sha, verdict=IMPROVED), "new"), env)
    assert newer.comment == "created"
    late, stdout = run_publish(gh, pr, results_dir(tmp_path, make_results(old_sha), "old"), env)
    assert late.comment == "skipped-stale" and late.status is None and late.label is None
    assert "now at ccccccc" in stdout and stdout.count("::notice") == 1
    body = gh.comments(pr.repo, pr.number)[0].body
    assert read_state(body)["head_sha"] == new_sha
    assert gh.statuses(pr.repo, old_sha) == [] and gh.labels(pr.repo, pr.number) == []
    # a rerun on the newer head still updates it
    again, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(new_sha), "again"), env)
    assert again.comment == "updated" and read_state(gh.comments(pr.repo, pr.number)[0].body)["verdict"] == REGRESSED


def test_a_rerun_after_the_comment_names_an_older_head_updates_it(gh, tmp_path):
    pr = gh.seed_pr()
    env = Env(tmp_path)
    gh.add_commit(pr.repo, "d" * 40)  # an earlier head of the PR, reported while it was the head
    gh.pull(pr.repo, pr.number).head_sha = "d" * 40
    run_publish(gh, pr, results_dir(tmp_path, make_results("d" * 40), "old"), env, settings=Settings(comment="always"))
    gh.pull(pr.repo, pr.number).head_sha = pr.head_sha  # then the author pushed
    outcome, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha), "new"), env)
    assert outcome.comment == "updated"
    assert read_state(gh.comments(pr.repo, pr.number)[0].body)["head_sha"] == pr.head_sha


def test_state_keys_of_others_are_carried_over(gh, tmp_path):
    pr = gh.seed_pr()
    env = Env(tmp_path)
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    run_publish(gh, pr, folder, env, state_extra={"approvals": [{"user": "maintainer", "sha": pr.head_sha}]})
    run_publish(gh, pr, folder, env)
    state = read_state(gh.comments(pr.repo, pr.number)[0].body)
    assert state["approvals"] == [{"user": "maintainer", "sha": pr.head_sha}]


def test_5xx_after_the_server_created_the_comment_leaves_exactly_one(gh, tmp_path):
    pr = gh.seed_pr()
    gh.fail("POST", "/repos/*/*/issues/*/comments", 502, after_action=True)
    outcome, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), Env(tmp_path))
    assert outcome.comment == "created" and outcome.comment_url
    assert len(gh.comments(pr.repo, pr.number)) == 1
    posts = gh.requests_matching("POST", "/repos/*/*/issues/*/comments")
    assert [(r.status, r.acted) for r in posts] == [(502, True)]  # never posted a second time


def test_5xx_before_the_comment_was_created_posts_once_more(gh, tmp_path):
    pr = gh.seed_pr()
    gh.fail("POST", "/repos/*/*/issues/*/comments", 503)
    outcome, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), Env(tmp_path))
    assert outcome.comment == "created" and len(gh.comments(pr.repo, pr.number)) == 1
    assert [r.status for r in gh.requests_matching("POST", "/repos/*/*/issues/*/comments")] == [503, 201]


def test_secondary_rate_limit_on_the_comment_waits_within_bounds(gh, tmp_path):
    pr = gh.seed_pr()
    gh.secondary_rate_limit("POST", "/repos/*/*/issues/*/comments", retry_after=2)
    waits: list[float] = []
    client = client_for(gh, pr.token, pr.repo, sleep=waits.append)
    outcome = pub.publish(results_dir(tmp_path, make_results(pr.head_sha)), client, pr.repo, pr.number, Settings(),
                          environ={}, stdout=io.StringIO())
    assert outcome.comment == "created" and waits == [2.0]
    assert len(gh.comments(pr.repo, pr.number)) == 1


def test_primary_rate_limit_beyond_the_bound_fails_at_once(gh, tmp_path):
    pr = gh.seed_pr()
    gh.rate_limit("GET", "/repos/*/*/issues/*/comments", reset_in=3600)
    with pytest.raises(PublishError) as err:
        run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), Env(tmp_path))
    assert "rate limit" in str(err.value) and "\n" not in str(err.value)


def test_persistent_5xx_is_one_line_exit_3(gh, tmp_path):
    pr = gh.seed_pr()
    gh.fail("GET", "/repos/*/*/issues/*/comments", 500, times=None)
    env = Env(tmp_path)
    with pytest.raises(PublishError) as err:
        run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), env)
    assert err.value.exit_code == EXIT_PUBLISH
    assert str(err.value).startswith("GitHub kept failing while listing the comments of #7")
    assert env.outputs[0]["verdict"] == "regressed"  # outputs and summary are written all the same
    assert "1 stage slower" in env.summary


def test_bad_token_is_one_line_exit_3(gh, tmp_path):
    pr = gh.seed_pr()
    with pytest.raises(PublishError) as err:
        run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), Env(tmp_path), token="ghp_nonsense")
    assert err.value.exit_code == EXIT_PUBLISH
    assert "401 Bad credentials" in str(err.value) and "github-token" in str(err.value)


def test_read_only_token_is_recognised(gh, tmp_path):
    pr = gh.seed_pr(fork=True)
    with pytest.raises(ReadOnlyToken) as err:
        run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), Env(tmp_path), token=pr.read_token)
    assert "Resource not accessible by integration" in str(err.value)
    assert gh.comments(pr.repo, pr.number) == []


def test_status_description_fits_140_characters():
    names = tuple(f"tests/bench_{i}.py::test_a_rather_long_benchmark_name_{i}[param-{i}]" for i in range(9))
    state, description = gate.status_for(make_results("a" * 40, names=names))
    assert state == "failure" and len(description) <= 140 and description.startswith("9 stages slower: ")
    assert description.endswith("…")
    approved = make_results("a" * 40)
    approved.approval = {"user": "maintainer", "reason": "worth it"}
    # an approval in results.json (an artifact's) is never believed: only Bolt's own comment holds approvals
    assert gate.status_for(approved) == ("failure", "1 stage slower: test_parse +9.2 %")


def test_workflow_commands_escape_pr_controlled_names():
    results = make_results("a" * 40, names=("tests/b,:x.py::test_100%\r\n::error::pwned",))
    out = io.StringIO()
    pub.annotate(results, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("::warning file=tests/b%2C%3Ax.py,title=Bolt%3A slower benchmark::")
    assert "test_100%25%0D%0A::error::pwned is +9.2 %25 slower" in lines[0]
    assert pub.escape_data("50%\n") == "50%25%0A"


def test_outputs_use_the_delimiter_syntax(tmp_path):
    env = Env(tmp_path)
    pub.write_outputs(env, {"a": "one\ntwo", "b": "x=y"})
    assert parse_key_values(Path(env["GITHUB_OUTPUT"]).read_text()) == {"a": "one\ntwo", "b": "x=y"}
    assert "ghadelimiter_" in Path(env["GITHUB_OUTPUT"]).read_text()


def test_bolt_publish_command(gh, tmp_path):
    from click.testing import CliRunner

    from bolt_bot.cli import main

    pr = gh.seed_pr()
    results = make_results(pr.head_sha)
    results.repository, results.pull_request = pr.repo, pr.number
    folder = results_dir(tmp_path, results)
    env = {"BOLT_TOKEN": pr.token, "GITHUB_API_URL": gh.base_url, "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0",
           "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0", "GITHUB_OUTPUT": "", "GITHUB_STEP_SUMMARY": ""}
    result = CliRunner().invoke(main, ["publish", str(folder), "--token-env", "BOLT_TOKEN"], env=env)
    assert result.exit_code == 0, result.output
    assert "regressed: comment created" in result.output and len(gh.comments(pr.repo, pr.number)) == 1
    bad = CliRunner().invoke(main, ["publish", str(folder), "--token-env", "NO_SUCH_VARIABLE"], env=env)
    assert bad.exit_code == EXIT_PUBLISH and "no GitHub token" in bad.stderr
