"""The sharding benchmark (benchmarks/shards.py, shardcost.py): the suite it generates, its table, the cost model, one real quick run.

Never asserts on times, only on structure and verdicts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import shardcost  # noqa: E402
import shards  # noqa: E402


def test_forty_stages_cycle_the_ten_kinds_and_the_head_changes_six():
    stages = shards.make_stages(40)
    assert len({s.name for s in stages}) == 40
    assert {s.kind for s in stages} == {s.name for s in shards.suite.STAGES}
    changes = shards.plan_changes(stages, seed=1)
    assert sorted(changes.values()) == [-20.0, -20.0, 10.0, 10.0, 10.0, 10.0]
    units = {s.name: s.units for s in stages}
    assert all(units[name] * (100 + change) % 100 == 0 for name, change in changes.items())  # whole units
    assert shards.plan_changes(stages, seed=1) == changes  # the same stages every run


def test_the_generated_repository_changes_only_the_weights(tmp_path):
    stages = shards.make_stages(8)
    changes = shards.plan_changes(stages, seed=1)
    base, head = shards.make_repo(tmp_path / "repo", stages, changes)
    changed = shards.suite._git(tmp_path / "repo", "diff", "--name-only", base, head)
    assert changed == "weights.json"
    weights = json.loads(shards.suite._git(tmp_path / "repo", "show", f"{head}:weights.json"))
    assert {n for n, w in weights.items() if w != 1.0} == set(changes)


def _record(merged2: dict, merge_exit: int = 0) -> dict:
    names = ["a_00", "b_00", "c_00"]
    single = {"a_00": {"verdict": "regressed"}, "b_00": {"verdict": "improved"}, "c_00": {"verdict": "unchanged"}}
    run = {"phases": {"environments": 2.0, "counts": 20.0}, "stages": 3, "returncode": 0}
    return {"stages": [{"name": n} for n in names], "changes": {"a_00": 10.0, "b_00": -20.0}, "measure": "auto",
            "shards": [1, 2], "merged": {"1": single, "2": merged2}, "plain": {"seconds": 9.0, "call_seconds": 0.02},
            "runs": [{**run, "what": "single", "n": 1, "k": 1, "seconds": 40.0},
                     {**run, "what": "shard 1/2", "n": 2, "k": 1, "seconds": 25.0},
                     {**run, "what": "shard 2/2", "n": 2, "k": 2, "seconds": 30.0},
                     {**run, "what": "merge 2", "n": 2, "k": 0, "seconds": 1.0, "returncode": merge_exit}]}


def test_table_says_equal_when_every_merged_verdict_matches():
    record = _record({"a_00": {"verdict": "regressed"}, "b_00": {"verdict": "improved"}, "c_00": {"verdict": "unchanged"}})
    row = shards.summarize(record)[1]
    assert (row["longest"], row["sum"], row["equal"], row["differences"]) == (30.0, 55.0, True, [])
    assert row["speedup"] == pytest.approx(40 / 30)
    assert "| 2 | 30.0 | 55.0 | 1.0 | 1.33x | yes | – |" in shards.render(record)


def test_table_lists_each_difference_and_a_failed_merge():
    record = _record({"a_00": {"verdict": "inconclusive"}, "b_00": {"verdict": "improved"}}, merge_exit=2)
    text = shards.render(record)
    assert "| no | a_00: regressed in one job, inconclusive merged; c_00: unchanged in one job, missing merged; " \
           "failed: merge 2 |" in text
    assert "a_00: inconclusive, injected +10 %" in text


def test_cost_model_fit_and_shards_needed():
    fixed, divisible = shardcost.fit([(1, 110.0), (2, 60.0), (4, 35.0)])
    assert (fixed, divisible) == (pytest.approx(10.0), pytest.approx(100.0))
    assert shardcost.fit([(1, 50.0)]) is None
    m = shardcost.instructions()
    n = shardcost.shards_needed(m, 1000, 10.0, setup=90)
    assert shardcost.job_seconds(m, 1000, 10.0, n, 90) < 600 <= shardcost.job_seconds(m, 1000, 10.0, n - 1, 90)
    assert shardcost.shards_needed(m, 10, 100.0, setup=90) is None  # one call of each is too long for any N
    assert shardcost.worked_table().count("\n") == 7


@pytest.mark.parametrize("argv", [["--shards", "2,4"], ["--shards", "1,x"], ["--stages", "4", "--shards", "1,8"]])
def test_bad_options_are_a_usage_error_not_a_traceback(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        shards.parse_args(argv)
    assert exc.value.code == 2
    assert ": error: --s" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.slow
def test_quick_run_merged_verdicts_equal_the_single_job(tmp_path):
    """8 stages as one job and as 2 shards through the real CLI, as on a repository Bolt has never seen: no
    durations file, each shard balances by its own discovery round, and the two must still agree."""
    out = tmp_path / "shards.md"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "shards.py"), "--quick",
                           "--out", str(out), "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    rows = [line for line in table.splitlines() if line.startswith(("| 1 |", "| 2 |"))][:2]
    assert rows[0].split("|")[6].strip() == "yes" and rows[1].split("|")[6].strip() == "yes", table
    record = json.loads(out.with_suffix(".json").read_text())
    expected = {s["name"]: shards.expected_verdict(record["changes"].get(s["name"])) for s in record["stages"]}
    for n in ("1", "2"):
        assert {name: v["verdict"] for name, v in record["merged"][n].items()} == expected
