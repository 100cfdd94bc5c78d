"""The check run `Bolt` through the GitHub double: in_progress while measuring, completed with the verdict,
the summary and annotations; found again rather than made twice; a setting chooses status, check or both."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("github")

from bolt_bot.errors import EXIT_PUBLISH, EXIT_REGRESSION
from bolt_bot.github import checkrun
from bolt_bot.github.action import read_config, run_action, Runtime
from bolt_bot.model import FAILED, IMPROVED, INCONCLUSIVE, REGRESSED, UNCHANGED, Results
from bolt_bot.settings import Settings
from tests.conftest import commit, make_repo
from tests.test_action import FakeMeasure, pr_event, runner_env
from tests.test_publish import Env, make_results, results_dir, run_publish

CHECK = Settings(report="check")
BOTH = Settings(report="both")


def only_run(gh, pr):
    runs = gh.check_runs(pr.repo, pr.head_sha, "Bolt")
    assert len(runs) == 1, runs
    return runs[0]


# ------------------------------------------------------------------------------------ publish


def test_publish_completes_one_check_run_with_conclusion_summary_and_annotations(gh, tmp_path):
    pr = gh.seed_pr()
    env = Env(tmp_path)
    results = make_results(pr.head_sha, pr.base_sha, names=("tests/bench.py::test_parse", "bench/io.py::test_read"))
    source = {"tests/bench.py": "import x\n\n\ndef test_parse(benchmark):\n    pass\n"}
    outcome, _ = run_publish(gh, pr, results_dir(tmp_path, results), env, BOTH,
                             run_url="https://github.com/o/r/actions/runs/1", read_file=source.get)
    run = only_run(gh, pr)
    # A comment exists that can hold an approval: a regression asks a maintainer to act.
    assert (outcome.check_run, run.status, run.conclusion) == ("action_required", "completed", "action_required")
    assert run.history == [("completed", "action_required")]
    assert run.output["title"] == "2 stages slower: test_parse +9.2 %, test_read +9.2 %"
    assert "2 stages slower" in run.output["summary"] and run.output["summary"] in env.summary
    assert run.details_url == "https://github.com/o/r/actions/runs/1"
    assert sorted((a["path"], a["start_line"], a["end_line"], a["annotation_level"]) for a in run.annotations) == [
        ("bench/io.py", 1, 1, "warning"), ("tests/bench.py", 4, 4, "warning")]
    assert "test_parse is +9.2 % slower" in next(a["message"] for a in run.annotations if a["start_line"] == 4)
    # beside the status, with the setting "both"
    assert [s.state for s in gh.statuses(pr.repo, pr.head_sha)] == ["failure"]
    # a second publish updates the same check run
    run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha, pr.base_sha, verdict=UNCHANGED), "b"), env, BOTH)
    run = only_run(gh, pr)
    assert run.conclusion == "success" and run.output["title"] == "no regression: 2 stages unchanged"


@pytest.mark.parametrize("verdict, comment, expected", [
    (REGRESSED, "never", "failure"),  # no comment keeps an approval: nothing a maintainer can do here
    (FAILED, "always", "failure"),
    (UNCHANGED, "always", "success"),
    (IMPROVED, "always", "success"),
    (INCONCLUSIVE, "always", "neutral"),
])
def test_conclusion_follows_the_gate(gh, tmp_path, verdict, comment, expected):
    pr = gh.seed_pr()
    outcome, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha, verdict=verdict)), Env(tmp_path),
                             Settings(report="check", comment=comment))
    assert outcome.check_run == expected and only_run(gh, pr).conclusion == expected
    assert gh.statuses(pr.repo, pr.head_sha) == []  # "check": no commit status


def test_setting_status_makes_no_check_run(gh, tmp_path):
    pr = gh.seed_pr()
    outcome, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), Env(tmp_path), Settings())
    assert Settings().report == "status"  # the documented default
    assert outcome.check_run is None and gh.check_runs(pr.repo) == []
    assert gh.requests_matching("*", "/repos/*/*/check-runs*") == []
    assert [s.state for s in gh.statuses(pr.repo, pr.head_sha)] == ["failure"]


def test_more_than_50_annotations_go_in_batches_and_the_last_carries_the_conclusion(gh, tmp_path):
    pr = gh.seed_pr()
    names = tuple(f"tests/bench_{i:03}.py::test_{i}" for i in range(120))
    run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha, names=names)), Env(tmp_path), CHECK)
    run = only_run(gh, pr)
    assert len(run.annotations) == 120 and len({a["path"] for a in run.annotations}) == 120
    assert run.history == [("in_progress", None), ("in_progress", None), ("completed", "action_required")]
    writes = gh.requests_matching("POST", "/repos/*/*/check-runs") + gh.requests_matching("PATCH", "/repos/*/*/check-runs/*")
    assert [len(r.body["output"].get("annotations", [])) for r in writes] == [50, 50, 20]


def test_a_summary_beyond_65535_characters_is_cut_to_fit(gh, tmp_path):
    pr = gh.seed_pr()
    names = tuple(f"tests/bench.py::test_{'x' * 150}_{i}" for i in range(2000))
    run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha, names=names)), Env(tmp_path), CHECK)
    run = only_run(gh, pr)
    assert 1000 < len(run.output["summary"]) <= 65535
    assert len(run.annotations) == checkrun.MAX_ANNOTATIONS


# ------------------------------------------------------------------------------------ faults


def test_a_502_after_the_check_run_was_created_does_not_create_a_second(gh, tmp_path):
    pr = gh.seed_pr()
    gh.fail("POST", "/repos/*/*/check-runs", 502, after_action=True)
    outcome, _ = run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), Env(tmp_path), CHECK)
    run = only_run(gh, pr)
    assert outcome.check_run == "action_required" and run.conclusion == "action_required"
    assert len(gh.requests_matching("POST", "/repos/*/*/check-runs")) == 1
    assert len(gh.requests_matching("GET", "/repos/*/*/commits/*/check-runs")) >= 1


def test_a_502_before_acting_creates_it_on_the_second_attempt(gh, tmp_path):
    pr = gh.seed_pr()
    gh.fail("POST", "/repos/*/*/check-runs", 502)
    run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), Env(tmp_path), CHECK)
    assert only_run(gh, pr).conclusion == "action_required"
    assert len(gh.requests_matching("POST", "/repos/*/*/check-runs")) == 2


def test_another_apps_check_run_called_bolt_is_not_bolts(gh, tmp_path):
    pr = gh.seed_pr()
    gh.add_token("ghs_other_app", "other-app[bot]", app=True)
    gh.client("ghs_other_app").get_repo(pr.repo).create_check_run(
        "Bolt", pr.head_sha, status="completed", conclusion="success", output={"title": "fake", "summary": "fake"})
    run_publish(gh, pr, results_dir(tmp_path, make_results(pr.head_sha)), Env(tmp_path), CHECK)
    runs = gh.check_runs(pr.repo, pr.head_sha, "Bolt")
    assert [(r.app_slug, r.conclusion) for r in runs] == [("other-app", "success"), ("github-actions", "action_required")]


@pytest.mark.parametrize("fault", ["html", "truncated"])
def test_a_malformed_answer_is_one_line_and_exit_3(gh, tmp_path, fault):
    from click.testing import CliRunner

    from bolt_bot.cli import main

    pr = gh.seed_pr()
    folder = results_dir(tmp_path, make_results(pr.head_sha))
    (folder / "pr.json").write_text(json.dumps({"number": pr.number, "head_sha": pr.head_sha}), encoding="utf-8")
    getattr(gh, f"answer_{fault}")("POST", "/repos/*/*/check-runs")
    env = {"GITHUB_TOKEN": pr.token, "GITHUB_API_URL": gh.base_url, "BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS": "0",
           "BOLT_GITHUB_SECONDS_BETWEEN_WRITES": "0", "BOLT_GITHUB_BACKOFF": "0", "BOLT_GITHUB_RETRIES": "1"}
    result = CliRunner().invoke(main, ["publish", str(folder), "--repo", pr.repo, "--report", "check"], env=env)
    assert result.exit_code == EXIT_PUBLISH, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "/check-runs" in lines[0], lines
    assert ("HTML page?" if fault == "html" else "cut short?") in lines[0]
    assert len(gh.requests_matching("POST", "/repos/*/*/check-runs")) == 1  # never posted again


# ------------------------------------------------------------------------------------ the Action


class WatchingMeasure(FakeMeasure):
    """A measurement that looks at the check runs while it runs (or fails, as a suite that does not import)."""

    def __init__(self, gh, pr, verdict: str = REGRESSED, error: str | None = None):
        super().__init__(verdict)
        self.gh, self.pr, self.error, self.seen = gh, pr, error, []

    def __call__(self, request):
        self.seen = [(r.status, r.conclusion) for r in self.gh.check_runs(self.pr.repo, self.pr.head_sha, "Bolt")]
        if self.error:
            from bolt_bot.errors import BoltError
            raise BoltError(self.error)
        return super().__call__(request)


def test_the_action_starts_the_check_run_before_measuring_and_completes_it(gh, tmp_path):
    pr = gh.seed_pr()
    env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token, report="check",
                     **{"fail-on-regression": "true"})
    measure = WatchingMeasure(gh, pr)
    code, _ = run_in(env, measure)
    assert code == EXIT_REGRESSION
    assert measure.seen == [("in_progress", None)]  # in progress while measuring
    run = only_run(gh, pr)
    assert run.history == [("in_progress", None), ("completed", "action_required")]
    assert run.details_url == f"https://github.com/{pr.repo}/actions/runs/4242"
    assert [a["path"] for a in run.annotations] == ["tests/bench.py"]
    assert gh.statuses(pr.repo, pr.head_sha) == [] and len(gh.comments(pr.repo, pr.number)) == 1


def test_a_measurement_that_fails_completes_its_check_run_as_failed(gh, tmp_path):
    from bolt_bot.errors import BoltError

    pr = gh.seed_pr()
    env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token, report="both")
    with pytest.raises(BoltError, match="no benchmark collected"):
        run_in(env, WatchingMeasure(gh, pr, error="no benchmark collected"))
    run = only_run(gh, pr)
    assert run.history == [("in_progress", None), ("completed", "failure")]
    assert run.output["title"] == "measurement failed: no benchmark collected"


def test_a_token_that_may_not_write_checks_still_measures_and_says_so(gh, tmp_path):
    pr = gh.seed_pr()
    gh.fail("POST", "/repos/*/*/check-runs", 403, times=None,
            body={"message": "Resource not accessible by integration", "documentation_url": "x"})
    env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token, report="both")
    with pytest.raises(Exception) as err:
        run_in(env, FakeMeasure())
    # The comment and the status were written: the token is not read-only, it lacks `checks: write`.
    assert getattr(err.value, "exit_code", None) == EXIT_PUBLISH and "checks: write" in str(err.value)
    assert len(gh.comments(pr.repo, pr.number)) == 1 and gh.check_runs(pr.repo) == []


def test_an_approval_turns_the_check_run_green_as_it_does_the_status(gh, tmp_path):
    from tests.ghdouble.webhooks import load_event

    pr = gh.seed_pr()
    code, _ = run_in(runner_env(gh, sub(tmp_path, "measure"), "pull_request", pr_event(pr), pr.token, report="check"),
                     FakeMeasure())
    assert only_run(gh, pr).conclusion == "action_required"
    body = "/bolt approve the new parser is worth it"
    comment = gh.add_comment(pr.repo, pr.number, body, user=pr.maintainer)
    event = load_event("issue_comment", "created", repo=pr.repo, number=pr.number, on_pr=True,
                       commenter=pr.maintainer, body=body)
    event["comment"]["id"] = comment.id
    code, _ = run_in(runner_env(gh, sub(tmp_path, "approve"), "issue_comment", event, pr.token, report="check"),
                     FakeMeasure())
    assert code == 0
    run = only_run(gh, pr)
    assert run.history[-1] == ("completed", "success")
    assert run.output["title"] == "approved by maintainer: the new parser is worth it"
    assert "1 stage slower" in run.output["summary"]  # the measurement's summary stays
    assert gh.statuses(pr.repo, pr.head_sha) == []


def test_workflow_run_publishes_a_forks_results_as_a_completed_check_run(gh, tmp_path):
    from tests.test_action import invoke, make_artifact, run_event

    pr = gh.seed_pr(fork=True, workflow_run=True)
    make_artifact(tmp_path, pr)
    env = runner_env(gh, tmp_path, "workflow_run", run_event(pr), pr.token, report="check")
    result = invoke(env)
    assert result.exit_code == 0, result.output
    run = only_run(gh, pr)  # nobody could start it while the fork's code was measured: created completed
    assert run.history == [("completed", "action_required")] and len(run.annotations) == 1
    assert len(gh.comments(pr.repo, pr.number)) == 1 and gh.statuses(pr.repo, pr.head_sha) == []


def test_the_report_setting_is_checked_in_one_line(tmp_path):
    from bolt_bot.errors import BoltError

    assert Settings().updated({"report": "both"}, "inputs").report == "both"
    with pytest.raises(BoltError) as err:
        Settings().updated({"report": "checks"}, "pyproject.toml [tool.bolt]")
    assert str(err.value) == "pyproject.toml [tool.bolt]: report must be one of status, check, both, not 'checks'"


def sub(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir(exist_ok=True)
    return tmp_path / name


def run_in(env, measure):
    out = io.StringIO()
    code = run_action(read_config(env), Runtime(measure=measure, environ=dict(env), stdout=out, stderr=io.StringIO()))
    return code, out.getvalue()


# ------------------------------------------------------------------------------------ shards and merge

SHARD_STAGES = {1: ["tests/bench.py::test_a", "tests/bench.py::test_b"],
                2: ["tests/bench.py::test_c", "tests/bench.py::test_d"],
                3: ["tests/bench.py::test_e"]}


class ShardMeasure(FakeMeasure):
    """Stands in for `bolt run --shard K/N`: the shard's share, with the record bolt merge checks."""

    def __call__(self, request):
        from bolt_bot import __version__
        from bolt_bot.report.output import write_results_dir
        from tests.test_publish import stage

        self.requests.append(request)
        index, count = request.shard.index, request.shard.count
        share = SHARD_STAGES[index]
        stages = [stage(n, REGRESSED if n.endswith("_c") else UNCHANGED, 1.092 if n.endswith("_c") else 1.001)
                  for n in share]
        results = make_results(request.head, request.base or "0" * 40)
        results.stages = stages
        results.verdict = REGRESSED if any(s.verdict == REGRESSED for s in stages) else UNCHANGED
        every = [n for k in sorted(SHARD_STAGES) for n in SHARD_STAGES[k]]
        results.environment["shard"] = {"index": index, "count": count, "stages": every,
                                        "partition": [SHARD_STAGES[k] for k in sorted(SHARD_STAGES)],
                                        "bolt_version": __version__}
        write_results_dir(results, request.out)
        return results, Settings().updated(request.overrides, "inputs")


def test_three_shards_and_a_merge_publish_one_comment_and_one_completed_check_run(gh, tmp_path):
    pr = gh.seed_pr()
    measure = ShardMeasure()
    for k in (1, 2, 3):
        env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token, report="both", shard=f"{k}/3",
                         **{"results-dir": f"shards/bolt-results-{k}"})
        code, stdout = run_in(env, measure)
        assert code == 0 and f"shard {k}/3" in stdout
        # the shards publish nothing; the first one started the check run
        assert gh.comments(pr.repo, pr.number) == [] and gh.statuses(pr.repo, pr.head_sha) == []
        assert [(r.status, r.conclusion) for r in gh.check_runs(pr.repo)] == [("in_progress", None)]
    assert [str(r.shard) for r in measure.requests] == ["1/3", "2/3", "3/3"]
    env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token, report="both", mode="merge",
                     **{"merge-from": "shards/*", "results-dir": "bolt-merged", "fail-on-regression": "true"})
    code, stdout = run_in(env, FakeMeasure())
    assert code == EXIT_REGRESSION
    merged = Results.read(tmp_path / "workspace" / "bolt-merged" / "results.json")
    assert merged.pull_request == pr.number and len(merged.stages) == 5
    assert [s.name for s in merged.regressions] == ["tests/bench.py::test_c"]
    comments = gh.comments(pr.repo, pr.number)
    assert len(comments) == 1 and "test_c" in comments[0].body
    run = only_run(gh, pr)
    assert run.history == [("in_progress", None), ("completed", "action_required")]
    assert "1 stage slower" in run.output["title"] and len(run.annotations) == 1
    assert [s.state for s in gh.statuses(pr.repo, pr.head_sha)] == ["failure"]
    assert json.loads((tmp_path / "workspace" / "bolt-merged" / "pr.json").read_text())["number"] == pr.number


def test_merge_mode_with_a_shard_missing_is_one_line_and_publishes_nothing(gh, tmp_path):
    from bolt_bot.errors import BoltError

    pr = gh.seed_pr()
    for k in (1, 3):
        env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token, shard=f"{k}/3", report="both",
                         **{"results-dir": f"shards/bolt-results-{k}"})
        run_in(env, ShardMeasure())
    env = runner_env(gh, tmp_path, "pull_request", pr_event(pr), pr.token, mode="merge", report="both",
                     **{"merge-from": "shards/*", "results-dir": "bolt-merged"})
    with pytest.raises(BoltError) as err:
        run_in(env, FakeMeasure())
    assert err.value.exit_code == 2 and "shard 2/3 is missing" in str(err.value)
    assert gh.comments(pr.repo, pr.number) == [] and gh.statuses(pr.repo, pr.head_sha) == []
    assert not (tmp_path / "workspace" / "bolt-merged" / "results.json").exists()
    # the check run shard 1 started does not stay in progress: it fails with the same line
    run = only_run(gh, pr)
    assert run.history == [("in_progress", None), ("completed", "failure")]
    assert "shard 2/3 is missing" in run.output["title"]
    with pytest.raises(BoltError, match="matched no directory"):
        run_in({**env, "INPUT_MERGE-FROM": "nothing-here/*"}, FakeMeasure())


def fork_event(pr) -> dict:
    event = pr_event(pr)
    event["pull_request"]["head"]["repo"]["full_name"] = pr.head_repo
    return event


def test_merge_mode_on_a_fork_keeps_the_merged_directory_for_workflow_run(gh, tmp_path):
    pr = gh.seed_pr(fork=True)
    for k in (1, 2, 3):
        env = runner_env(gh, tmp_path, "pull_request", fork_event(pr), pr.read_token,
                         shard=f"{k}/3", report="both", **{"results-dir": f"shards/r{k}"})
        run_in(env, ShardMeasure())
    env = runner_env(gh, tmp_path, "pull_request", fork_event(pr), pr.read_token, mode="merge",
                     report="both", **{"merge-from": "shards/*", "results-dir": "bolt-merged"})
    code, stdout = run_in(env, FakeMeasure())
    assert code == 0 and "mode: publish" in stdout
    assert gh.requests == []  # no client was made for a fork's pull request
    folder = tmp_path / "workspace" / "bolt-merged"
    assert json.loads((folder / "pr.json").read_text())["head_sha"] == pr.head_sha


# ------------------------------------------------------------------------------------ must show, measured for real

BASE_WORK = {"ingest": 20000, "parse": 40000, "clean": 8000, "join": 30000, "render": 15000, "export": 60000}
HEAD_WORK = dict(BASE_WORK, parse=44000, join=27000)  # parse +10 %, join -10 %


def _verdicts(folder: Path) -> tuple[str, dict[str, str]]:
    data = json.loads((folder / "results.json").read_text())
    return data["verdict"], {s["name"]: s["verdict"] for s in data["stages"]}


@pytest.mark.slow
def test_a_never_seen_repository_in_three_shards_merged_by_the_action_is_one_run_one_comment_one_check(gh, tmp_path):
    """The issue's must-show, through `bolt action` with the real measurement: shards 1/3, 2/3, 3/3 and the merge
    give the verdicts of one `bolt run`, one comment, and a check run that went from in_progress to completed."""
    import shutil

    from click.testing import CliRunner

    from bolt_bot.cli import main
    from bolt_bot.measure.counts import valgrind_available
    from tests import projects

    if valgrind_available() is None or shutil.which("uv") is None:
        pytest.skip("valgrind and uv are needed to count instructions")
    root, base, head = projects.pipeline_repo(tmp_path / "never-seen", BASE_WORK, HEAD_WORK, strings=("clean", "render"))
    pr = gh.seed_pr(head_sha=head, base_sha=base)
    inputs = {"report": "both", "measure": "instructions", "profile": "false"}
    seen = []
    for k in (1, 2, 3):
        env = runner_env(gh, sub(tmp_path, f"job{k}"), "pull_request", pr_event(pr), pr.token, shard=f"{k}/3",
                         **inputs, **{"results-dir": f"bolt-shards/bolt-shard-{k}"})
        env["GITHUB_WORKSPACE"] = str(root)
        code, stdout = run_in(env, action_measure())
        assert code == 0, stdout
        seen.append([(r.status, r.conclusion) for r in gh.check_runs(pr.repo, head, "Bolt")])
        assert gh.comments(pr.repo, pr.number) == []
    assert seen == [[("in_progress", None)]] * 3
    env = runner_env(gh, sub(tmp_path, "merge"), "pull_request", pr_event(pr), pr.token, mode="merge", **inputs,
                     **{"merge-from": "bolt-shards/*", "results-dir": "bolt-results"})
    env["GITHUB_WORKSPACE"] = str(root)
    code, stdout = run_in(env, action_measure())
    assert code == 0, stdout
    single = tmp_path / "single"
    result = CliRunner().invoke(main, ["run", "--quiet", "--repo", str(root), "--base", base, "--head", head,
                                       "--measure", "instructions", "--no-profile", "--out", str(single)])
    assert result.exit_code == 0, result.output
    merged = _verdicts(root / "bolt-results")
    assert merged == _verdicts(single)
    assert {k.split("[")[-1].rstrip("]"): v for k, v in merged[1].items() if v != "unchanged"} == {
        "parse": "regressed", "join": "improved"}
    assert len(gh.comments(pr.repo, pr.number)) == 1
    run = only_run(gh, pr)
    assert run.history[0] == ("in_progress", None) and run.history[-1] == ("completed", "action_required")
    assert [a["path"] for a in run.annotations] == [n.split("::")[0] for n, v in merged[1].items() if v == "regressed"]


def action_measure():
    from bolt_bot.github.action import measure_with_runner

    return measure_with_runner
