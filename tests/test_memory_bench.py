"""The memory benchmark (benchmarks/memory.py): its PRs, its repository, its table, and one real quick run.

Never asserts on times. It does assert on verdicts: allocation counts and bytes of one call repeat exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import memory  # noqa: E402
import memory_stages  # noqa: E402


def test_prs_cycle_the_kinds_and_every_stage_is_hit_once():
    stages = memory.all_stages(None)
    prs = memory.plan_prs(10, stages, changed=2)
    assert [pr.kind for pr in prs] == list(memory.KINDS) * 2
    sized = [name for pr in prs if pr.kind in memory.SIZES for name in pr.injected]
    assert sorted(sized) == sorted(s.name for s in stages)  # 3 sizes x 2 PRs x 2 stages = the 12 stages, once each
    assert [pr.injected for pr in prs if pr.kind == memory.CACHE] == [["stream_records"], ["stream_blobs"]]
    assert all(not pr.injected for pr in prs if pr.kind == memory.UNCHANGED)
    files = prs[3].files(stages, keep_every=4)  # 2x
    assert {n for n, w in files["weights.json"].items() if w != 1.0} == set(prs[3].injected)
    assert set(files["weights.json"].values()) == {1.0, 2.0} and not any(files["keep.json"].values())
    cache = prs[4].files(stages, keep_every=4)
    assert cache["keep.json"] == {"stream_records": 4, "stream_blobs": 0} and set(cache["weights.json"].values()) == {1.0}


def test_a_kept_record_raises_the_peak_of_the_call():
    """Keeping every 4th record holds ~150 B each past the call. (That keeping allocates nothing is checked by the
    quick run below, through Bolt's memray pass: the cached stage's allocations and bytes stay equal.)"""
    import tracemalloc

    for name in memory_stages.STAGES:
        fn = getattr(memory_stages, name)
        fn(400)
        tracemalloc.start()
        try:
            fn(400)
            _, dropped = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            fn(400, 4)
            kept_now, kept = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert kept > dropped + 100 * 100 and kept_now > 100 * 100, (name, dropped, kept)  # 100 records kept, ~150 B each


def test_the_repository_changes_only_weights_and_keep(tmp_path):
    stages = memory.all_stages(list(memory.QUICK_STAGES))
    prs = memory.plan_prs(5, stages, changed=1)
    base = memory.make_repo(tmp_path / "repo", stages, prs, keep_every=4)
    assert [pr.injected for pr in prs] == [[], ["alloc_lists"], ["str_split"], ["cpu_sum"], ["stream_records"]]
    for pr in prs:
        changed = memory.suite._git(tmp_path / "repo", "diff", "--name-only", base, pr.sha).split()
        assert set(changed) <= {"weights.json", "keep.json"} and bool(changed) == bool(pr.injected), (pr, changed)
    # The generated suite runs as it is, each stage once (no timing), in this interpreter.
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
                           "benchmarks"], cwd=tmp_path / "repo", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "4 passed" in proc.stdout, proc.stdout[-2000:]


def _stage(time="unchanged", memory_verdict="unchanged", regressed=(), base=(100, 1000, 500), head=None):
    head = head or base
    return {"verdict": time, "measure": "instructions", "memory": memory_verdict, "regressed": list(regressed),
            "moved": list(regressed), "note": None, "lines": [],
            "base": dict(zip(memory.MEMORY_KINDS, base)), "head": dict(zip(memory.MEMORY_KINDS, head))}


def test_table_counts_detections_false_alarms_and_the_cost():
    record = {"machine": {}, "stages": [{"name": n} for n in "abc"], "changed": 1, "keep_every": 4,
              "plain": {"seconds": 10.0},
              "prs": [
                  {"index": 0, "kind": "unchanged", "injected": [], "seconds": 30.0, "returncode": 0, "memory_seconds": 2.0,
                   "stages": {"a": _stage(), "b": _stage(memory_verdict="improved", regressed=()), "c": _stage()}},
                  {"index": 1, "kind": "2x", "injected": ["a"], "seconds": 20.0, "returncode": 0, "memory_seconds": 3.0,
                   "stages": {"a": _stage("regressed", "regressed", ("allocations", "allocated"), head=(200, 2000, 500)),
                              "b": _stage(), "c": _stage(head=(101, 1000, 500))}},
                  {"index": 2, "kind": "cache", "injected": ["c"], "seconds": 20.0, "returncode": 0, "memory_seconds": 4.0,
                   "stages": {"a": _stage(), "b": _stage(), "c": _stage(memory_verdict="regressed", regressed=("peak",),
                                                                        head=(100, 1000, 90_000))}},
                  {"index": 3, "kind": "+2 %", "injected": ["b"], "seconds": 5.0, "returncode": 2, "memory_seconds": None,
                   "stages": {}},
              ]}
    kinds, untouched = memory.summarize(record)
    assert (kinds["2x"].detected, kinds["2x"].injected, kinds["2x"].by) == (1, 1, {"allocations": 1, "allocated": 1, "peak": 0})
    assert kinds["cache"].by["peak"] == 1 and kinds["+2 %"].failed == 1
    assert (untouched.stages, untouched.memory, untouched.same_allocations, untouched.with_allocations) == (7, 1, 6, 7)
    assert memory.cost(record)["memory"] == 3.0
    text = memory.render(record)
    assert "| 2x | 1 | 1/1 | 1 / 1 / 0 | 2.000 | 2.000 | 1.000 | 1/1 |" in text
    assert "| cache | 1 | 1/1 | 0 / 0 / 1 | 1.000 | 1.000 | 180.000 | 0/1 |" in text
    assert "| +2 % | 1 (1 failed) | – |" in text
    assert "memory verdict regressed or improved 1/7" in text and "the same allocation count on both sides 6/7" in text
    assert "- PR 0 (unchanged) b: time unchanged, memory improved" in text
    assert "took 3.0 s per PR (median; 2.0–4.0 s); one plain pytest-benchmark run of the base: 10.0 s, 0.30x of it" in text


@pytest.mark.parametrize("argv", [["--prs", "0"], ["--keep-every", "0"], ["--stages", "cpu_sum,nope"]])
def test_bad_options_are_one_line_not_a_traceback(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        memory.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("memory.py: error: ") or ": error: " in err[-1], err
    assert ("nope" in err[-1]) == ("--stages" in argv), err


@pytest.mark.slow
def test_quick_run_finds_what_was_injected_and_nothing_else(tmp_path):
    """The real --quick run: 4 stages, one PR of each kind, each a `bolt run` with its defaults."""
    out = tmp_path / "memory.md"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "memory.py"), "--quick", "--out", str(out),
                           "--workdir", str(tmp_path / "work")], capture_output=True, text=True, timeout=3600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.with_suffix(".json").read_text())
    assert [pr["kind"] for pr in record["prs"]] == list(memory.KINDS)
    kinds, untouched = memory.summarize(record)
    for kind in ("+2 %", "+10 %", "2x", memory.CACHE):  # exact counts: every injection found
        assert kinds[kind].detected == kinds[kind].injected == 1, (kind, kinds[kind])
    assert kinds[memory.CACHE].by["peak"] == 1 and kinds["2x"].by["allocations"] == 1
    cache = kinds[memory.CACHE].ratios  # the cache is peak only: the same allocations and bytes on both sides
    assert cache["allocations"] == cache["allocated"] == [1.0] and cache["peak"][0] > 10, cache
    assert untouched.memory == 0 and untouched.same_allocations == untouched.with_allocations == untouched.stages
    assert record["plain"]["seconds"] > 0 and memory.cost(record)["memory"] > 0
    table = out.read_text()
    assert "| cache | 1 | 1/1 |" in table and "Cost: the memory pass (both sides) took" in table
