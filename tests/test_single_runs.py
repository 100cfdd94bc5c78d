"""One pytest-benchmark JSON file per side, recorded on this machine: no false alarm, and a real 35 % still found.

tests/data/single-runs/ holds 40 plain `pytest --benchmark-only --benchmark-json` runs of the detection suite
(benchmarks/detection, ten stages, 25 µs - 25 ms per call, unchanged; recorded one after another with
`nice -n 5` while other work ran on the machine; per-sample data and the CPU flag list dropped) and three runs
of the same suite with cpu_float's weight at 1.35 (35 % more work, recorded between them: slowed-10 after
run-10, slowed-20 after run-20, slowed-30 after run-30). Each is one process, as a user gets from one
`pytest --benchmark-json` per side.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main

DATA = Path(__file__).parent / "data" / "single-runs"
RUNS = sorted(DATA.glob("run-*.json"))


def compare(base: Path, head: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["compare", "--base", str(base), "--head", str(head), "--format", "json",
                                       "--fail-on-regression"])
    return result.exit_code, json.loads(result.output[result.output.index("{"):])


def short(name: str) -> str:
    return name.rsplit("[", 1)[-1].rstrip("]")


def test_twenty_unchanged_pairs_give_no_regressed_or_improved_verdict():
    assert len(RUNS) == 40
    called = []
    for base, head in zip(RUNS[0::2], RUNS[1::2]):
        code, data = compare(base, head)
        changed = [(short(s["name"]), s["verdict"], s["ratio"]) for s in data["stages"]
                   if s["verdict"] in ("regressed", "improved")]
        called += [(base.name, head.name, *c) for c in changed]
        assert code == 0, (base.name, head.name, changed)
        assert len(data["stages"]) == 10
        for stage in data["stages"]:
            assert stage["verdict"] == "inconclusive"
            assert "measure more rounds: `bolt run`" in stage["note"]
    assert called == []


@pytest.mark.parametrize("index", ["10", "20", "30"])
def test_a_real_35_percent_slowdown_in_one_file_per_side_is_still_regressed(index):
    code, data = compare(DATA / f"run-{index}.json", DATA / f"slowed-{index}.json")
    verdicts = {short(s["name"]): s for s in data["stages"]}
    slowed = verdicts.pop("cpu_float")
    assert slowed["verdict"] == "regressed", slowed
    assert slowed["ratio"] > 1.3 and "one round per side" in slowed["note"]
    assert {s["verdict"] for s in verdicts.values()} == {"inconclusive"}
    assert code == 1 and data["verdict"] == "regressed"


def test_the_terminal_table_says_what_one_file_per_side_can_tell():
    result = CliRunner().invoke(main, ["compare", "--base", str(RUNS[0]), "--head", str(RUNS[1])])
    assert result.exit_code == 0
    assert "10 stages inconclusive" in result.output
    assert "measure more rounds: `bolt run`, or several JSON files per side" in result.output
