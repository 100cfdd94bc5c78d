"""`bolt merge`: shards that do not belong together are refused in one line with exit 2 and nothing written;
shards that do are decided once, with false-discovery control over the whole suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bolt_bot import __version__
from bolt_bot.decide import stats
from bolt_bot.decide.merge import merge_dirs
from bolt_bot.errors import BoltError
from bolt_bot.measure.shard import digest
from bolt_bot.model import (
    FAILED,
    IMPROVED,
    INCONCLUSIVE,
    INSTRUCTIONS,
    REGRESSED,
    UNCHANGED,
    CommitRef,
    Results,
    SideSummary,
    StageComparison,
)
from bolt_bot.settings import Settings

BASE, HEAD = "b" * 40, "c" * 40


def timed(name: str, ratio: float, half: float, p: float) -> StageComparison:
    """A wall-time stage as a shard wrote it: estimate, raw p; q and verdict are filled in by `shard_dir`."""
    return StageComparison(name=name, verdict=UNCHANGED, ratio=ratio, ci=[ratio - half, ratio + half], p=p,
                           base=SideSummary(rounds=10, center=1e-3, values=[1e-3] * 10),
                           head=SideSummary(rounds=10, center=ratio * 1e-3, values=[ratio * 1e-3] * 10))


def counted(name: str, ratio: float, verdict: str) -> StageComparison:
    return StageComparison(name=name, verdict=verdict, measure=INSTRUCTIONS, ratio=ratio, ci=[ratio, ratio],
                           base=SideSummary(rounds=1, center=1e6, unit="instr", values=[1e6]),
                           head=SideSummary(rounds=2, center=ratio * 1e6, unit="instr", values=[ratio * 1e6] * 2))


def shard_dir(where: Path, index: int, partition: list[list[str]], stages: list[StageComparison], *,
              head: str = HEAD, settings: dict | None = None, version: str = __version__,
              verdict: str | None = None, notices: list[str] | None = None) -> Path:
    """A shard's results directory as `bolt run --shard` writes it, deciding its stages with per-shard BH."""
    settings = settings or Settings().to_dict()
    walltime = [s for s in stages if s.measure == "walltime" and s.p is not None]
    for stage, q in zip(walltime, stats.adjust_pvalues([s.p for s in walltime])):
        stage.q = q
        est = stats.Estimate(stage.ratio, tuple(stage.ci), stage.p)
        stage.verdict, stage.note = stats.decide(est, q, settings["threshold"] / 100, settings["alpha"])
    names = sorted(n for share in partition for n in share)
    results = Results(stages=stages, verdict=verdict or UNCHANGED, settings=settings,
                      base=CommitRef("main", BASE), head=CommitRef("pr", head),
                      environment={"duration": 10.0 * index, "runner": "Linux x86_64", "shard": {
                          "index": index, "count": len(partition), "stages": names, "stage_list": digest(names),
                          "partition": partition, "bolt_version": version, "notice": f"shard {index} is a part"}},
                      notices=[f"shard {index} is a part", *(notices or [])])
    out = where / f"shard{index}-{head[:3]}-{version}"
    out.mkdir(parents=True)
    results.write(out / "results.json")
    return out


PARTITION = [["a", "c"], ["b", "d"]]


def two_shards(tmp_path, **second) -> list[Path]:
    return [shard_dir(tmp_path, 1, PARTITION, [timed("a", 1.0, 0.01, 0.6), timed("c", 1.0, 0.01, 0.7)]),
            shard_dir(tmp_path, 2, PARTITION, [timed("b", 1.0, 0.01, 0.8), timed("d", 1.0, 0.01, 0.9)], **second)]


def merge_cli(dirs: list[Path], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bolt_bot", "merge", *map(str, dirs), "--out", str(out)],
                          capture_output=True, text=True)


def refused(dirs: list[Path], out: Path, *words: str) -> None:
    """Exit 2, one line on stderr holding `words`, and no output directory."""
    result = merge_cli(dirs, out)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("bolt: error: "), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert not out.exists()


def test_matching_shards_merge(tmp_path):
    out = tmp_path / "merged"
    result = merge_cli(two_shards(tmp_path), out)
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in data["stages"]] == ["a", "b", "c", "d"]
    assert data["verdict"] == UNCHANGED and data["head"]["sha"] == HEAD
    assert data["environment"]["duration"] == 20.0 and data["environment"]["shards"]["count"] == 2
    assert "is a part" not in (out / "comment.md").read_text()


def test_a_missing_shard_is_refused(tmp_path):
    first, _ = two_shards(tmp_path)
    refused([first], tmp_path / "out", "shard 2/2 is missing")


def test_a_shard_of_another_head_commit_is_refused(tmp_path):
    refused(two_shards(tmp_path, head="d" * 40), tmp_path / "out", "head commit ddddddd", "different commits")


def test_the_same_shard_twice_is_refused(tmp_path):
    first, second = two_shards(tmp_path)
    refused([first, second, second], tmp_path / "out", "shard 2/2 was given twice", "overlap")


def test_shards_whose_partitions_overlap_are_refused(tmp_path):
    """Shard 2 computed another partition (its machine's timings differed): it measured `c` too."""
    first = shard_dir(tmp_path, 1, PARTITION, [timed("a", 1.0, 0.01, 0.6), timed("c", 1.0, 0.01, 0.7)])
    other = [["a"], ["b", "c", "d"]]
    second = shard_dir(tmp_path, 2, other, [timed(n, 1.0, 0.01, 0.8) for n in ("b", "c", "d")])
    refused([first, second], tmp_path / "out", "both measured c", "--durations")


def test_shards_that_leave_a_stage_out_are_refused(tmp_path):
    first = shard_dir(tmp_path, 1, PARTITION, [timed("a", 1.0, 0.01, 0.6), timed("c", 1.0, 0.01, 0.7)])
    second = shard_dir(tmp_path, 2, [["a", "b", "c"], ["d"]], [timed("d", 1.0, 0.01, 0.8)])
    refused([first, second], tmp_path / "out", "b is in no shard's share")


def test_other_settings_are_refused(tmp_path):
    refused(two_shards(tmp_path, settings={**Settings().to_dict(), "threshold": 5.0}), tmp_path / "out",
            "threshold = 5.0", "settings")


def test_another_bolt_version_is_refused(tmp_path):
    refused(two_shards(tmp_path, version="0.0.1"), tmp_path / "out", "Bolt 0.0.1", __version__)


def test_results_not_measured_as_a_shard_are_refused(tmp_path):
    first, _ = two_shards(tmp_path)
    single = tmp_path / "single"
    single.mkdir()
    Results(stages=[], verdict=UNCHANGED).write(single / "results.json")
    refused([first, single], tmp_path / "out", "not measured with --shard")
    refused([first, tmp_path / "nowhere"], tmp_path / "out", "no results.json")


def test_merge_dirs_raises_bolt_error_exit_2(tmp_path):
    """The Action calls merge_dirs: the same refusal, as a BoltError with exit code 2."""
    first, _ = two_shards(tmp_path)
    with pytest.raises(BoltError) as caught:
        merge_dirs([first], tmp_path / "out")
    assert caught.value.exit_code == 2 and not (tmp_path / "out").exists()


def test_false_discovery_control_is_over_the_whole_suite_not_per_shard(tmp_path):
    """Alone in its shard, `lone` (+10 %, p = 0.04) has q = 0.04 and its shard calls it regressed; among the
    suite's ten stages its q is 0.4, so the merge does not. The reverse for `crowd`: q = 0.06 in its shard
    (inconclusive), 0.033 over the suite, where the other stages' p are tiny; that shard never confirmed it,
    so the merge makes it inconclusive, saying so, and never a silent regression."""
    quiet = [timed(f"q{i}", 1.0, 0.01, 0.5 + i / 20) for i in range(9)]
    partition = [["lone"], sorted(s.name for s in quiet)]
    one = shard_dir(tmp_path, 1, partition, [timed("lone", 1.10, 0.04, 0.04)])
    two = shard_dir(tmp_path, 2, partition, quiet)
    assert json.loads((one / "results.json").read_text())["stages"][0]["verdict"] == REGRESSED
    merged = merge_dirs([one, two], tmp_path / "merged")
    lone = next(s for s in merged.stages if s.name == "lone")
    assert lone.q == pytest.approx(0.4) and lone.verdict == INCONCLUSIVE and "q = 0.4" in lone.note
    assert merged.verdict == INCONCLUSIVE

    crowd = [timed(f"t{i}", 1.001, 0.001, 0.001) for i in range(8)]
    partition = [["crowd", "noise"], sorted(s.name for s in crowd)]
    first = shard_dir(tmp_path / "r", 1, partition, [timed("crowd", 1.10, 0.04, 0.03), timed("noise", 1.0, 0.01, 0.9)])
    second = shard_dir(tmp_path / "r", 2, partition, crowd)
    shard_view = json.loads((first / "results.json").read_text())["stages"][0]
    assert shard_view["verdict"] == INCONCLUSIVE and shard_view["q"] == pytest.approx(0.06)
    merged = merge_dirs([first, second], tmp_path / "merged2")
    stage = next(s for s in merged.stages if s.name == "crowd")
    assert stage.q == pytest.approx(0.03 * 10 / 9)
    assert stage.verdict == INCONCLUSIVE and "over the whole suite" in stage.note and "not confirmed" in stage.note


def test_a_shards_regression_stands_when_suite_wide_q_agrees(tmp_path):
    """A confirmed regression keeps its verdict (and a demotion its shard made after deciding stays made)."""
    partition = [["slow", "flagged"], ["x", "y"]]
    slow, flagged = timed("slow", 1.2, 0.02, 1e-6), timed("flagged", 1.2, 0.02, 1e-6)
    first = shard_dir(tmp_path, 1, partition, [slow, flagged])
    data = json.loads((first / "results.json").read_text())
    # The shard's confirmation pass did not confirm `flagged`: it wrote it inconclusive after deciding.
    stage = next(s for s in data["stages"] if s["name"] == "flagged")
    stage["verdict"], stage["note"] = INCONCLUSIVE, "flagged at +20.0 % but not confirmed"
    (first / "results.json").write_text(json.dumps(data))
    second = shard_dir(tmp_path, 2, partition, [timed("x", 1.0, 0.01, 0.5), timed("y", 1.0, 0.01, 0.6)])
    merged = merge_dirs([first, second], tmp_path / "merged")
    by = {s.name: s for s in merged.stages}
    assert by["slow"].verdict == REGRESSED and merged.verdict == REGRESSED
    assert by["flagged"].verdict == INCONCLUSIVE and by["flagged"].note == "flagged at +20.0 % but not confirmed"


def test_instruction_count_verdicts_do_not_depend_on_q(tmp_path):
    partition = [["count"], ["w"]]
    first = shard_dir(tmp_path, 1, partition, [counted("count", 1.02, REGRESSED)])
    second = shard_dir(tmp_path, 2, partition, [timed("w", 1.0, 0.01, 0.5)])
    merged = merge_dirs([first, second], tmp_path / "merged")
    assert {s.name: s.verdict for s in merged.stages} == {"count": REGRESSED, "w": UNCHANGED}
    assert merged.measure == "mixed"


def test_a_failed_shard_leaves_its_stages_unmeasured_never_a_silent_success(tmp_path):
    partition = [["a", "c"], ["b", "d"]]
    first = shard_dir(tmp_path, 1, partition, [timed("a", 1.0, 0.01, 0.6), timed("c", 0.8, 0.01, 1e-6)])
    second = shard_dir(tmp_path, 2, partition, [], verdict=FAILED,
                       notices=["the benchmark suite failed before measuring anything on head: ImportError"])
    out = tmp_path / "merged"
    result = merge_cli([first, second], out)
    assert result.returncode == 2 and "failed" in result.stderr  # written, then the run's exit code
    data = json.loads((out / "results.json").read_text())
    by = {s["name"]: s for s in data["stages"]}
    assert data["verdict"] == FAILED
    assert by["c"]["verdict"] == IMPROVED
    assert by["b"]["verdict"] == by["d"]["verdict"] == FAILED and "shard 2/2 failed" in by["b"]["note"]
    assert any("2 stages unmeasured: b, d" in n for n in data["notices"])
    assert "unmeasured" in (out / "comment.md").read_text()


def test_profiles_of_the_shards_are_kept(tmp_path):
    first, second = two_shards(tmp_path)
    (first / "profiles" / "a").mkdir(parents=True)
    (first / "profiles" / "a" / "head.svg").write_text("<svg/>")
    (second / "profiles").mkdir()
    (second / "profiles" / "b.pstats").write_text("x")
    merge_dirs([first, second], tmp_path / "merged")
    assert (tmp_path / "merged" / "profiles" / "a" / "head.svg").is_file()
    assert (tmp_path / "merged" / "profiles" / "b.pstats").is_file()
