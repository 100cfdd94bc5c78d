"""`bolt run --shard K/N`: the partition (deterministic, balanced, every stage once) and, on a repository Bolt
has never seen, three shards merged giving the verdicts of one run."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.errors import BoltError
from bolt_bot.measure import shard as sharding
from bolt_bot.measure.counts import valgrind_available
from bolt_bot.measure.discovery import Split
from tests import projects
from tests.conftest import commit, make_repo

STAGES = [f"bench/test_b.py::test_{i:02d}" for i in range(23)]


def seconds(seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    return {name: rng.choice([0.01, 0.2, 1.0, 3.0, 40.0]) * rng.uniform(0.5, 1.5) for name in STAGES}


@pytest.mark.parametrize("text,expected", [("1/3", (1, 3)), ("3/3", (3, 3)), (" 2 / 4 ", (2, 4)), ("1/1", (1, 1))])
def test_shard_spec_parses(text, expected):
    spec = sharding.parse_shard(text)
    assert (spec.index, spec.count) == expected


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "2", "a/b", "1/3/5", "-1/3", ""])
def test_bad_shard_spec_is_one_line(text):
    with pytest.raises(BoltError) as caught:
        sharding.parse_shard(text)
    assert "\n" not in str(caught.value) and "K/N" in str(caught.value) or "between 1 and N" in str(caught.value)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("durations", [None, 1, 2])
def test_every_stage_is_in_exactly_one_share(count, durations):
    source = None if durations is None else sharding.Durations(seconds(durations), sharding.FILE)
    plan = sharding.plan_shard(sharding.ShardSpec(1, count), STAGES, source)
    flat = [name for share in plan.shares for name in share]
    assert sorted(flat) == sorted(STAGES) and len(flat) == len(set(flat))
    assert len(plan.shares) == count


def test_the_partition_depends_on_its_inputs_only():
    """Same inputs, same partition: whatever order the stages and durations come in, in a fresh interpreter too."""
    durations = sharding.Durations(seconds(7), sharding.FILE)
    first = sharding.plan_shard(sharding.ShardSpec(1, 4), STAGES, durations)
    shuffled = dict(sorted(durations.seconds.items(), reverse=True))
    again = sharding.plan_shard(sharding.ShardSpec(3, 4), list(reversed(STAGES)),
                                sharding.Durations(shuffled, sharding.FILE))
    assert first.shares == again.shares
    assert first.record()["inputs"] == again.record()["inputs"]
    code = ("import json, sys; from bolt_bot.measure import shard as s; d = json.loads(sys.argv[1]); "
            "print(json.dumps(s.plan_shard(s.ShardSpec(2, 4), d['stages'], s.Durations(d['seconds'], s.FILE)).shares))")
    other = subprocess.run([sys.executable, "-c", code, json.dumps({"stages": STAGES, "seconds": durations.seconds})],
                           capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert json.loads(other.stdout) == first.shares


def test_shares_are_balanced_by_duration():
    durations = sharding.Durations(seconds(3), sharding.FILE)
    for count in (2, 3, 4):
        plan = sharding.plan_shard(sharding.ShardSpec(1, count), STAGES, durations)
        loads = [sum(plan.weights[n] for n in share) for share in plan.shares]
        # Greedy longest-first: the longest share exceeds the ideal by less than one stage's weight.
        ideal = sum(loads) / count
        assert max(loads) - ideal <= max(plan.weights.values())
        by_count = sharding.plan_shard(sharding.ShardSpec(1, count), STAGES, None)
        count_loads = [sum(plan.weights[n] for n in share) for share in by_count.shares]
        assert max(loads) <= max(count_loads)


def test_without_durations_the_shares_differ_by_at_most_one_stage():
    for count in (1, 2, 3, 4, 5, 30):
        plan = sharding.plan_shard(sharding.ShardSpec(1, count), STAGES, None)
        sizes = [len(share) for share in plan.shares]
        assert max(sizes) - min(sizes) <= 1 and plan.source == sharding.COUNT


def test_discovery_timings_are_quantised_so_small_differences_agree():
    """Two runners' discovery rounds differ by up to 15 %: the short stages weigh one unit each whatever
    they took, the long ones their call's decade, so the partition is the same."""
    calls = [0.0004, 0.003, 0.009, 0.05, 0.08] * 4 + [0.2, 0.5, 4.0]

    def split(scale):
        return Split(counted=STAGES[:10], timed=STAGES[10:],
                     seconds={"base": {n: c * scale for n, c in zip(STAGES, calls)},
                              "head": {n: c * scale * 0.97 for n, c in zip(STAGES, calls)}})
    here = sharding.Durations(sharding.durations_from_discovery(split(1.0)), sharding.DISCOVERY)
    there = sharding.Durations(sharding.durations_from_discovery(split(1.15)), sharding.DISCOVERY)
    a = sharding.plan_shard(sharding.ShardSpec(1, 3), STAGES, here)
    b = sharding.plan_shard(sharding.ShardSpec(1, 3), STAGES, there)
    assert a.shares == b.shares and a.record()["inputs"] == b.record()["inputs"]
    assert [a.weights[n] for n in STAGES[-3:]] == [30.0, 30.0, 300.0]
    assert {a.weights[n] for n in STAGES[:-3]} == {1.0}


def test_stages_without_a_duration_weigh_the_median():
    known = {STAGES[0]: 1.0, STAGES[1]: 3.0, STAGES[2]: 100.0}
    got = sharding.weights(STAGES, sharding.Durations(known, sharding.FILE))
    assert got[STAGES[5]] == 3.0 and got[STAGES[2]] == 100.0


def test_durations_file_and_results_directory(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"a": 2.5, "b": 0}))
    read = sharding.read_durations(tmp_path / "d.json")
    assert read.seconds == {"a": 2.5, "b": 0.0} and read.source.startswith(sharding.FILE)
    results = {"schema": "bolt/results/v1", "verdict": "unchanged", "stages": [
        {"name": "a", "verdict": "unchanged", "measure": "walltime", "base": {"center": 0.5}, "head": {"center": 0.6}},
        {"name": "b", "verdict": "unchanged", "measure": "instructions",
         "base": {"center": 2e6, "unit": "instr"}, "head": {"center": 2e6, "unit": "instr"}},
        {"name": "c", "verdict": "failed", "measure": "walltime", "base": {"error": "x"}, "head": {"error": "x"}}]}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(results))
    read = sharding.read_durations(tmp_path / "run", rounds=10)
    assert read.source.startswith(sharding.RESULTS) and set(read.seconds) == {"a", "b"}
    assert read.seconds["a"] == pytest.approx(2 * 10 * (5 * 0.6 + 0.6))  # head's centre: the code to be measured
    assert read.seconds["b"] == pytest.approx(3 * 71 * 2e-3)


@pytest.mark.parametrize("text", ["[1, 2]", '{"a": "slow"}', '{"a": -1}', "not json", '{"a": true}'])
def test_bad_durations_are_one_line_exit_2(tmp_path, text):
    bad = tmp_path / "d.json"
    bad.write_text(text)
    repo = make_repo(tmp_path / "repo", {"README": "x"})
    commit(repo, {"README": "y"}, "head")  # base and head must differ: the durations are read after the commits
    result = CliRunner().invoke(main, ["run", "--shard", "1/2", "--durations", str(bad), "--repo", str(repo),
                                       "--base", "HEAD~1"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "bolt: error: --durations" in result.output


def test_durations_without_shard_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["run", "--durations", str(tmp_path)])
    assert result.exit_code == 2 and "--shard" in result.output


# ---- On a repository Bolt has never seen: shards + merge = one run (instruction counts: deterministic).

BASE_WORK = {"ingest": 20000, "parse": 40000, "clean": 8000, "join": 30000, "render": 15000, "export": 60000}
HEAD_WORK = dict(BASE_WORK, parse=44000, join=27000)  # parse +10 %, join -10 %


def bolt(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    where = tmp_path_factory.mktemp("sharded")
    root, base, head = projects.pipeline_repo(where / "never-seen", BASE_WORK, HEAD_WORK, strings=("clean", "render"))
    common = ["--quiet", "--repo", str(root), "--base", base, "--head", head, "--measure", "instructions", "--no-profile"]
    dirs = {}
    for k in (1, 2, 3):
        code, output = bolt("run", *common, "--shard", f"{k}/3", "--out", str(where / f"shard{k}"))
        assert code == 0, output
        dirs[k] = where / f"shard{k}"
    code, output = bolt("run", *common, "--out", str(where / "single"))
    assert code == 0, output
    return {"root": root, "base": base, "head": head, "dirs": dirs, "single": where / "single", "where": where,
            "common": common}


def verdicts(directory):
    data = json.loads((directory / "results.json").read_text())
    return data["verdict"], {s["name"].split("[")[1].rstrip("]"): s["verdict"] for s in data["stages"]}


@pytest.mark.slow
@pytest.mark.skipif(valgrind_available() is None, reason="valgrind is not installed")
@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_three_shards_merged_give_the_verdicts_of_one_run(sharded):
    shares = []
    for k, directory in sharded["dirs"].items():
        data = json.loads((directory / "results.json").read_text())
        record = data["environment"]["shard"]
        assert (record["index"], record["count"]) == (k, 3)
        assert data["base"]["sha"] == sharded["base"] and data["head"]["sha"] == sharded["head"]
        # Only its share was measured, both sides of each stage.
        assert sorted(s["name"] for s in data["stages"]) == record["partition"][k - 1]
        assert all(s["base"]["values"] and s["head"]["values"] for s in data["stages"])
        shares += record["partition"][k - 1]
    assert len(shares) == len(set(shares)) == len(BASE_WORK)
    out = sharded["where"] / "merged"
    code, output = bolt("merge", *map(str, sharded["dirs"].values()), "--out", str(out))
    assert code == 0, output
    assert verdicts(out) == verdicts(sharded["single"])
    assert verdicts(out)[1]["parse"] == "regressed" and verdicts(out)[1]["join"] == "improved"
    comment = (out / "comment.md").read_text()
    assert "3 shards" in comment and "bolt merge" not in comment  # the shards' own "part of the suite" notices go
    assert (out / "summary.md").is_file()


@pytest.mark.slow
@pytest.mark.skipif(valgrind_available() is None, reason="valgrind is not installed")
@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_a_shard_of_another_head_commit_is_refused(sharded):
    """The third shard measured a later push: one line, exit 2, nothing written."""
    root = sharded["root"]
    subprocess.run(["git", "-C", str(root), "checkout", "--quiet", sharded["head"]], check=True)
    later = commit(root, {"minipipe.py": projects.pipeline_module(dict(HEAD_WORK, clean=9000), ("clean", "render"))},
                   "later push")
    other = sharded["where"] / "later-shard3"
    common = [a if a != sharded["head"] else later for a in sharded["common"]]
    code, output = bolt("run", *common, "--shard", "3/3", "--out", str(other))
    assert code == 0, output
    out = sharded["where"] / "merged-later"
    result = subprocess.run([sys.executable, "-m", "bolt_bot", "merge", str(sharded["dirs"][1]),
                             str(sharded["dirs"][2]), str(other), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "head commit" in result.stderr and later[:7] in result.stderr
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_a_walltime_shard_measures_its_share_only_balanced_by_a_durations_file(tmp_path):
    root, base, head = projects.pipeline_repo(tmp_path / "repo", BASE_WORK, HEAD_WORK, strings=("clean", "render"))
    names = [f"bench/test_bench.py::test_stage[{n}]" for n in BASE_WORK]
    durations = {names[0]: 30.0, names[1]: 10.0, names[2]: 10.0, names[3]: 5.0, names[4]: 3.0, names[5]: 1.0}
    (tmp_path / "durations.json").write_text(json.dumps(durations))
    code, output = bolt("run", "--quiet", "--repo", str(root), "--base", base, "--head", head, "--measure", "walltime",
                        "--rounds", "2", "--budget", "0", "--no-profile", "--shard", "2/2",
                        "--durations", str(tmp_path / "durations.json"), "--out", str(tmp_path / "out"))
    assert code in (0, 2), output
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    # Heaviest first to the least-loaded shard: ingest's 30 s outweighs the other five together (29 s).
    assert data["environment"]["shard"]["partition"] == [[names[0]], sorted(names[1:])]
    assert sorted(s["name"] for s in data["stages"]) == sorted(names[1:])
    assert data["environment"]["shard"]["durations"].startswith(sharding.FILE)
