"""`bolt run --measure instructions|auto` on a repository it has never seen, under real valgrind."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.measure.counts import valgrind_available
from tests import projects
from tests.conftest import commit, make_repo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(valgrind_available() is None, reason="valgrind is not installed"),
    pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed"),
]

# Six stages of pure-Python CPU and string work (about 1-10 ms a call); the work per stage is set in a dict,
# so head can slow a chosen stage by a known fraction: the loop is nearly all of a stage's instructions.
BASE_WORK = {"ingest": 20000, "parse": 40000, "clean": 8000, "join": 30000, "render": 15000, "export": 60000}
# parse 3 % and join 4.5 % more loop iterations: both must be found, nothing else flagged.
HEAD_WORK = dict(BASE_WORK, parse=41200, join=31350)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return projects.pipeline_repo(tmp_path_factory.mktemp("instr-run") / "never-seen", BASE_WORK, HEAD_WORK,
                                  strings=("clean", "render"))


def run_cli(*args):
    result = CliRunner().invoke(main, ["run", "--quiet", *args], catch_exceptions=False)
    return result.exit_code, result.output


def short(name: str) -> str:
    return name.split("[")[1].rstrip("]")


@pytest.fixture(scope="module")
def two_runs(repo, tmp_path_factory):
    root, base, head = repo
    results = []
    out = tmp_path_factory.mktemp("out")
    for i in range(2):  # the same command twice; the first run's directory is moved aside before the second
        code, output = run_cli("--repo", str(root), "--base", base, "--head", head, "--measure", "instructions",
                               "--no-profile", "--out", str(out))
        assert code == 0, output
        kept = out.with_name(f"{out.name}-run{i}")
        out.rename(kept)
        results.append((kept, json.loads((kept / "results.json").read_text())))
    return results


def test_finds_both_slowdowns_and_flags_nothing_else(two_runs):
    out, results = two_runs[0]
    assert results["measure"] == "instructions"
    stages = {short(s["name"]): s for s in results["stages"]}
    assert set(stages) == set(BASE_WORK)
    verdicts = {name: s["verdict"] for name, s in stages.items()}
    assert verdicts == {**{n: "unchanged" for n in BASE_WORK}, "parse": "regressed", "join": "regressed"}, verdicts
    assert 1.02 < stages["parse"]["ratio"] < 1.035 and 1.035 < stages["join"]["ratio"] < 1.05
    for name in ("ingest", "clean", "render", "export"):
        assert abs(stages[name]["ratio"] - 1) < 0.003, (name, stages[name]["ratio"])
    for s in stages.values():
        assert s["measure"] == "instructions" and s["base"]["unit"] == "instr" and s["p"] is None
        assert s["ci"] == [s["ratio"], s["ratio"]]
    comment = (out / "comment.md").read_text()
    assert "2 stages slower" in comment and " instr |" in comment and "instruction counts (callgrind)" in comment


def test_the_same_run_twice_gives_identical_counts(two_runs):
    (_, first), (_, second) = two_runs
    counts = [{s["name"]: (s["base"]["center"], s["head"]["values"]) for s in r["stages"]} for r in (first, second)]
    assert counts[0] == counts[1]
    # ...and head's repeat pass inside each run matched its first pass.
    for r in (first, second):
        assert r["environment"]["instructions"]["repeated_identically"] == len(BASE_WORK)


def test_auto_sends_short_stages_to_callgrind_and_io_stages_to_wall_time(repo, tmp_path):
    root, base, _ = repo
    # A sleeping stage (I/O-like: CPU time far below wall time) and a long one (> 0.1 s a call).
    head2 = commit(root, {"bench/test_other.py": (
        "import time\n\n\n"
        "def test_sleepy(benchmark):\n    benchmark(time.sleep, 0.002)\n\n\n"
        "def test_long(benchmark):\n    benchmark.pedantic(lambda: sum(i * i for i in range(3_000_000)), rounds=2)\n"
    )}, "head: two stages for wall time")
    out = tmp_path / "out"
    code, output = run_cli("--repo", str(root), "--base", base, "--head", head2, "--rounds", "2", "--budget", "0",
                           "--no-profile", "--out", str(out))
    assert code == 0, output
    results = json.loads((out / "results.json").read_text())
    measures = {s["name"].split("::")[-1]: s["measure"] for s in results["stages"]}
    assert results["measure"] == "mixed", measures
    assert measures["test_sleepy"] == "walltime" and measures["test_long"] == "walltime", measures
    assert {measures[f"test_stage[{n}]"] for n in BASE_WORK} == {"instructions"}, measures
    reasons = results["environment"]["discovery"]["walltime_reasons"]
    assert "I/O" in reasons[next(n for n in reasons if n.endswith("test_sleepy"))]
    assert (out / "comment.md").read_text().count("ⁱ") >= 6


# A stage that cannot be counted: pytest-codspeed's CODSPEED_ENV is set only in the instruction pass.
COUNT_ONLY_BREAKS = '''import os

import minipipe


def test_uncountable(benchmark):
    if os.environ.get("CODSPEED_ENV"):
        raise RuntimeError("this stage cannot run under the instruction counter")
    benchmark(minipipe.ingest)
'''


def test_a_stage_whose_count_failed_is_measured_by_wall_time_in_the_same_run(repo, tmp_path):
    root, base, head = repo
    files = {"bench/test_uncountable.py": COUNT_ONLY_BREAKS}
    base2 = commit(root, {**files, "minipipe.py": projects.pipeline_module(BASE_WORK, ("clean", "render"))},
                   "base: a stage that only the counter breaks")
    head2 = commit(root, {"minipipe.py": projects.pipeline_module(HEAD_WORK, ("clean", "render"))}, "head again")
    out = tmp_path / "out"
    code, output = run_cli("--repo", str(root), "--base", base2, "--head", head2, "--rounds", "3", "--budget", "0",
                           "--no-profile", "--out", str(out))
    assert code == 0, output
    results = json.loads((out / "results.json").read_text())
    stages = {s["name"].split("::")[-1]: s for s in results["stages"]}
    uncountable = stages["test_uncountable"]
    assert uncountable["measure"] == "walltime" and uncountable["verdict"] != "failed", uncountable
    assert "measured by wall time" in uncountable["note"] and "instruction counter" in uncountable["note"]
    assert {stages[f"test_stage[{n}]"]["measure"] for n in BASE_WORK} == {"instructions"}
    assert stages["test_stage[parse]"]["verdict"] == "regressed" and stages["test_stage[join]"]["verdict"] == "regressed"
    assert any("measured by wall time instead: " in n and "test_uncountable" in n for n in results["notices"])
    assert results["measure"] == "mixed"


@pytest.mark.parametrize("broken", ["both sides", "base only"])
def test_an_instruction_pass_that_fails_falls_back_to_wall_time_with_results(tmp_path, broken):
    # The whole instruction pass breaks (its conftest refuses the counter): on both sides this was
    # "instruction counts failed on both sides", exit 2 and no results.json; on one, every stage failed.
    refuse = "import os\n\nif os.environ.get('CODSPEED_ENV'):\n    raise ImportError('no counter here')\n"
    files = projects.pipeline_files({"ingest": 3000, "join": 6000})
    files["bench/conftest.py"] = refuse
    root = make_repo(tmp_path / "proj", files)
    head = commit(root, {"minipipe.py": projects.pipeline_module({"ingest": 3000, "join": 12000}),
                         "bench/conftest.py": refuse if broken == "both sides" else ""}, "head")
    out = tmp_path / "out"
    code, output = run_cli("--repo", str(root), "--base", "HEAD~1", "--head", head, "--rounds", "4", "--budget", "0",
                           "--no-profile", "--out", str(out))
    assert code == 0, output
    results = json.loads((out / "results.json").read_text())
    assert results["measure"] == "walltime" and {s["measure"] for s in results["stages"]} == {"walltime"}
    assert {s["name"].split("[")[1].rstrip("]") for s in results["stages"]} == {"ingest", "join"}
    if broken == "both sides":
        assert any("instruction counts failed on both sides" in n and "no counter here" in n for n in results["notices"])
    else:
        assert any("measured by wall time instead: " in n for n in results["notices"]), results["notices"]
    assert all("measured by wall time" in s["note"] and "no counter here" in s["note"] for s in results["stages"])
