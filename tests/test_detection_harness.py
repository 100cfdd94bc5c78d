"""The detection benchmark's harness (benchmarks/detection/): PR planning, the table, the hog, and one tiny real run.

Never asserts on times: only on structure (rows, counts, which stages were injected).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from detection import suite, table
from detection.hog import cpu_hog
from detection.run import DEFAULT_RULES, check_counts, make_rules, parse_args, run_pr

from bolt_bot.measure.counts import valgrind_available


def test_plan_prs_cycles_sizes_and_rotates_stages():
    stages = suite.stages_by_name(None)
    prs = suite.plan_prs(8, [0, 2, 5, 10], stages, changed=3, seed=1)
    assert [pr.size for pr in prs] == [0, 2, 5, 10] * 2
    assert all(not pr.injected for pr in prs if pr.size == 0)
    hit = [name for pr in prs for name in pr.injected]
    assert len(hit) == 18 and all(len(pr.injected) == 3 for pr in prs if pr.size)
    assert max(hit.count(s.name) for s in stages) - min(hit.count(s.name) for s in stages) <= 1
    weights = prs[3].weights(stages)
    assert {n for n, w in weights.items() if w != 1.0} == set(prs[3].injected)
    assert all(w == pytest.approx(1.10) for n, w in weights.items() if n in prs[3].injected)


def test_injection_is_a_whole_number_of_units():
    for stage in suite.STAGES:
        for size in (2, 5, 10):
            assert stage.units * (100 + size) % 100 == 0, stage


def _outcome(flagged, stages, seconds=2.0, verdicts=None):
    return {"flagged": flagged, "improved": [], "ratios": {s: 1.0 for s in stages}, "seconds": seconds,
            "verdicts": verdicts or {s: ("regressed" if s in flagged else "unchanged") for s in stages}, "detail": {}}


def test_table_counts_false_alarms_and_detections():
    stages = ["a", "b", "c", "d"]
    records = [
        {"kind": "pr", "condition": "quiet", "pr": 0, "size": 0, "injected": [], "stages": stages, "plain_seconds": 1.0,
         "rules": {"naive": _outcome(["a"], stages), "bolt": _outcome([], stages, 3.0)}},
        {"kind": "pr", "condition": "quiet", "pr": 1, "size": 5, "injected": ["b", "c"], "stages": stages, "plain_seconds": 1.0,
         "rules": {"naive": _outcome(["b", "d"], stages), "bolt": _outcome(["b", "c"], stages, 3.0)}},
        {"kind": "pr", "condition": "hog", "pr": 0, "size": 0, "injected": [], "stages": stages, "plain_seconds": 2.0,
         "rules": {"naive": {"error": "RuntimeError: boom"},
                   "bolt": _outcome([], stages, 4.0, {s: "inconclusive" for s in stages})}},
    ]
    sums = table.summarize(records)
    naive, bolt = sums[("naive", "quiet")], sums[("bolt", "quiet")]
    assert naive.fa_stage == [2, 6] and naive.fa_pr == [1, 1] and naive.detected == {5.0: [1, 2]}
    assert bolt.fa_stage == [0, 6] and bolt.fa_pr == [0, 1] and bolt.detected == {5.0: [2, 2]}
    assert bolt.time_ratios == [3.0, 3.0]
    assert sums[("naive", "hog")].errors == 1 and sums[("bolt", "hog")].inconclusive == [4, 0]
    text = table.render(records)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| rule | quiet | CPU hog on the other core |"
    assert rows[1] == "| target | ≤ 1 % / ≤ 5 % / ≥ 90 / ≤ 3x | ≤ 1 % / ≤ 5 % / ≥ 90 / ≤ 3x |"  # sizes seen: 5 % only
    assert rows[2] == "| target, instruction counts | 0 % / 0 % / 100 / ≤ 2x | 0 % / 0 % / 100 / ≤ 2x |"
    assert rows[3].startswith(f"| {table.RULE_LABELS['naive']} | 33 % / 100 % / 50 / 2.0x | failed (1 PRs)")
    assert rows[4].startswith(f"| {table.RULE_LABELS['bolt']} | 0 % / 0 % / 100 / 3.0x | 0 % / 0 % / – / 2.0x")
    assert rows[5] == f"| {table.RULE_LABELS['instructions']} | not measured | not measured |"
    assert "| bolt | hog | 1 | 0/4 | 0/1 | 0/1 | – | 0 | 4 / 0 |" in text


def test_targets_follow_the_sizes():
    assert table.TARGET == "≤ 1 % / ≤ 5 % / –·≥ 90·≥ 99 / ≤ 3x"
    assert table.target_cell(table.TARGETS[1], [2.0, 5.0, 10.0]) == "0 % / 0 % / 100·100·100 / ≤ 2x"
    assert table.target_cell(table.TARGETS[1], [1.0, 10.0]) == "0 % / 0 % / –·100 / ≤ 2x"


def test_injection_table_shows_instruction_ratios():
    check = {"cpu_sum": {"base_seconds": 5e-5, "ratio_min": {"0": 1.0, "2": 1.021}, "ratio_median": {"0": 1.0, "2": 1.019},
                         "instructions": 465_522, "ratio_instr": {"0": 1.0, "2": 1.0211}},
             "dict_lookup": {"base_seconds": 2e-4, "ratio_min": {"0": 1.0, "2": 1.02}, "ratio_median": {"0": 1.0, "2": 1.02},
                             "instructions": 1_595_486, "ratio_instr": {"0": 1.0, "2": 1.019}}}
    text = table.render([], [{"kind": "meta", "injection": check}])
    assert "| stage | per call | instructions per call | +2 %: fastest / median / instructions |" in text
    assert "| cpu_sum | 50 µs | 0.47 M | 1.021 / 1.019 / 1.0211 |" in text
    assert "| dict_lookup | 200 µs | 1.60 M | 1.020 / 1.020 / 1.0190 (< nominal) |" in text
    # Without counts (no valgrind), the table keeps its wall-time-only layout.
    plain = {n: {k: v for k, v in r.items() if k not in ("instructions", "ratio_instr")} for n, r in check.items()}
    assert "| cpu_sum | 50 µs | 1.021 / 1.019 |" in table.render([], [{"kind": "meta", "injection": plain}])


def test_instruction_rule_is_on_by_default_and_can_be_left_out():
    assert parse_args([]).rules == DEFAULT_RULES == "naive,bolt,instructions"
    assert parse_args(["--no-instructions"]).no_instructions
    reason = make_rules(["instructions"], quick=True, rounds=None).get("instructions")
    assert (reason is not None) == (valgrind_available() is not None)  # skipped, with a message, without valgrind


def test_hog_spins_and_stops():
    with cpu_hog(60) as proc:
        time.sleep(0.2)
        assert proc.poll() is None
    assert proc.poll() is not None


@pytest.mark.slow
def test_tiny_real_run(tmp_path):
    if shutil.which("uv") is None:
        pytest.skip("uv is not installed")
    counting = valgrind_available() is not None
    stages = suite.stages_by_name(["cpu_sum", "str_encode"])
    prs = suite.plan_prs(2, [0, 10], stages, changed=1, seed=3)
    python = suite.make_env(tmp_path / "env", codspeed=counting)
    repo = suite.make_repo(tmp_path / "repo", stages, prs)
    assert repo.prs[1].sha and repo.prs[1].sha != repo.base
    injection = suite.check_injection(python, repo.path, stages, [10], 0.05)
    assert set(injection) == {"cpu_sum", "str_encode"} and set(injection["cpu_sum"]["ratio_min"]) == {"0", "10"}

    short = ["--benchmark-max-time=0.02", "--benchmark-min-rounds=3"]  # the plain runs, shortened for the test only
    rules = make_rules(DEFAULT_RULES.split(","), quick=True, rounds=2, plain_args=short)
    assert set(rules) == ({"naive", "bolt", "instructions"} if counting else {"naive", "bolt"})
    if counting:
        check_counts(python, tmp_path / "injection-counts", stages, [10], injection)
        # Proportional work: +10 % units is +10 % instructions, give or take the call's fixed costs.
        assert all(abs(injection[s]["ratio_instr"]["10"] - 1.10) < 0.01 for s in injection), injection
    records = [run_pr(python, repo, pr, stages, rules, tmp_path, "quiet", plain_args=short) for pr in prs]

    for rec in records:
        assert rec["plain_seconds"] > 0
        naive, bolt = rec["rules"]["naive"], rec["rules"]["bolt"]
        assert "error" not in naive and "error" not in bolt, rec
        assert set(naive["ratios"]) == set(bolt["verdicts"]) == {"cpu_sum", "str_encode"}
        assert naive["detail"]["exit_code_agrees"]
        assert bolt["detail"]["rounds"]["base"] >= 2
    bolt_rules = ["bolt", "instructions"] if counting else ["bolt"]
    assert records[0]["order"] == ["plain", *bolt_rules] and records[1]["order"] == [*bolt_rules, "plain"]
    assert records[1]["injected"] and not records[0]["injected"]
    if counting:
        # Counts do not depend on the machine's load: the verdicts are exact, unlike the timing rules' (not asserted).
        for rec in records:
            instr = rec["rules"]["instructions"]
            assert "error" not in instr, instr
            assert set(instr["verdicts"]) == {"cpu_sum", "str_encode"} and instr["seconds"] > 0
            assert set(instr["detail"]["counts"]) == {"base", "head", "head-repeat"}
            assert instr["flagged"] == rec["injected"], instr
            # An unchanged stage counts the same in both checkouts, whose folder names differ (00, 01): the
            # allocator's instructions, which followed the heap layout those names made, are left out.
            counts = instr["detail"]["counts"]
            for stage in set(instr["verdicts"]) - set(rec["injected"]):
                assert counts["base"][stage] == counts["head"][stage] == counts["head-repeat"][stage], counts

    text = table.render(records, [{"kind": "meta", "injection": injection}])
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ")]
    assert rows[:6] == ["| rule", "| target", "| target, instruction counts", f"| {table.RULE_LABELS['naive']}",
                        f"| {table.RULE_LABELS['bolt']}", f"| {table.RULE_LABELS['instructions']}"]
    assert "| naive | quiet | 2 |" in text and "| bolt | quiet | 2 |" in text
    assert "| cpu_sum |" in text and "| str_encode |" in text
    if not counting:
        pytest.skip("valgrind is not installed: the instruction-count rule was not exercised (naive and bolt were)")
    assert "| instructions | quiet | 2 |" in text and "+10 %: fastest / median / instructions" in text
    assert f"| {table.RULE_LABELS['instructions']} | 0 % / 0 % / 100 / " in text


def test_vm_phase_checker_reports_every_cpu():
    """benchmarks/vm_phases.py runs the round plugin's probe on every CPU at once; no assertion on speed."""
    import os
    import subprocess

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "vm_phases.py"
    out = subprocess.run([sys.executable, str(script), "--seconds", "0.5"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert out.startswith("reference probe ")
    for cpu in os.sched_getaffinity(0):
        assert f"cpu {cpu}: at full speed " in out, out
