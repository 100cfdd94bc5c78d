"""The detection benchmark's harness (benchmarks/detection/): PR planning, the table, the hog, and one tiny real run.

Never asserts on times: only on structure (rows, counts, which stages were injected).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from detection import suite, table
from detection.hog import cpu_hog
from detection.rules import BoltPaired, paired_run_from_dict, replay_paired
from detection.run import DEFAULT_RULES, QUICK_PAIRED, check_counts, main, make_rules, parse_args, run_pr

from bolt_bot.measure.counts import valgrind_available
from bolt_bot.measure.paired import MAX_ATTEMPTS, PairedRun, PairSample
from bolt_bot.settings import Settings


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
    for stage in [*suite.STAGES, *suite.stages_by_name(None, single_shot=True)]:
        for size in (2, 5, 10):
            assert stage.units * (100 + size) % 100 == 0, stage


def test_single_shot_suite_is_one_pedantic_call_of_a_few_units(tmp_path):
    stages = suite.stages_by_name(["cpu_sum", "str_split"], single_shot=True)
    assert [s.units for s in stages] == [suite.SINGLE_SHOT_UNITS] * 2 and suite.SINGLE_SHOT_UNITS <= 100
    # dict_lookup's per-call table is a fixed cost as big as the units: left out of the default single-shot suite.
    assert [s.name for s in suite.stages_by_name(None, single_shot=True)] == [s.name for s in suite.STAGES if s.name != "dict_lookup"]
    root = suite.write_project(tmp_path / "p", stages, single_shot=True)
    text = (root / suite.TEST_FILE).read_text()
    assert "benchmark.pedantic(" in text and "rounds=1, iterations=1" in text
    assert "benchmark.pedantic(" not in (suite.write_project(tmp_path / "q", stages) / suite.TEST_FILE).read_text()
    # The generated test file still gives the injection check its units (the same code path, more units).
    assert "UNITS = {'cpu_sum': 100, 'str_split': 100}" in text


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
    assert rows[5] == f"| {table.RULE_LABELS['paired']} | not measured | not measured |"
    assert rows[6] == f"| {table.RULE_LABELS['instructions']} | not measured | not measured |"
    assert "| bolt | hog | 1 | 0/4 | 0/1 | 0/1 | – | 0 | 4 / 0 | – |" in text
    # The issue's other targets: unchanged stages called inconclusive, and the intervals' coverage.
    assert f"| {table.RULE_LABELS['bolt']} | 0 % / – | 100 % / – |" in text


def test_single_shot_records_get_their_own_columns_and_coverage_counts():
    stages = ["a", "b"]
    covered = dict(_outcome(["a"], stages), intervals={"a": [1.02, 1.08], "b": [0.99, 1.01]})
    missed = dict(_outcome(["a"], stages), intervals={"a": [1.06, 1.09], "b": None})
    records = [{"kind": "pr", "condition": "quiet", "suite": suite_name, "pr": 0, "size": 5, "injected": ["a"],
                "stages": stages, "plain_seconds": 1.0, "rules": {"paired": outcome}}
               for suite_name, outcome in (("standard", covered), ("single-shot", missed))]
    sums = table.summarize(records)
    assert sums[("paired", "quiet")].covered == [1, 1] and sums[("paired", "quiet-single-shot")].covered == [0, 1]
    text = table.render(records)
    assert "| rule | quiet | quiet, single-shot µs stages |" in text
    assert f"| {table.RULE_LABELS['paired']} | 0 % / 100 % | 0 % / 0 % |" in text


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
    assert parse_args([]).rules == DEFAULT_RULES == "naive,bolt,paired,instructions"
    assert parse_args(["--no-instructions"]).no_instructions
    reason = make_rules(["instructions"], quick=True, rounds=None).get("instructions")
    assert (reason is not None) == (valgrind_available() is not None)  # skipped, with a message, without valgrind


def test_quick_mode_runs_the_paired_rule_with_a_short_plan():
    rules = make_rules(["naive", "bolt", "paired"], quick=True, rounds=None)
    paired = rules["paired"]
    assert isinstance(paired, BoltPaired)
    assert (paired.plan.pairs, paired.plan.blocks) == (QUICK_PAIRED["pairs"], QUICK_PAIRED["blocks"]) == (3, 6)
    assert paired.settings.rounds == 3 and paired.settings.budget == 5.0  # too-long stages: the bolt rule's short rounds
    full = make_rules(["paired"], quick=False, rounds=None)["paired"]
    assert full.settings == Settings() and full.plan.pairs == 6 and (full.threshold, full.alpha) == (3.0, 0.05)


def _fake_paired(ratios: dict[str, float], pairs: int = 4, too_long: dict | None = None) -> dict:
    """A paired rule's outcome as BoltPaired records it: blocks of 1 ms on base, `ratio` times that on head."""
    stages = {}
    for k, (name, ratio) in enumerate(ratios.items()):
        samples = []
        for i in range(pairs):
            wobble = [1 + 0.01 * ((i + j + k) % 3 - 1) for j in range(8)]
            base = [1e-3 * w for w in wobble]
            head = [b * ratio * (1 + 0.004 * ((i * 5 + j) % 3 - 1)) for j, b in enumerate(base)]
            samples.append(PairSample(cpu=i % 2, calls=5, base=base, head=head,
                                      log_ratios=[math.log(h / b) for b, h in zip(base, head)], dropped=i % 2))
        stages[f"benchmarks/test_stages.py::test_stage[{name}]"] = samples
    run = PairedRun(stages=stages, too_long=too_long or {}, seconds=20.0, aslr_off=True)
    fallback = None
    if too_long:
        fallback = {"stages": ["slow"], "seconds": 10.0, "rounds": {"base": 3, "head": 3},
                    "outcome": {"flagged": [], "improved": [], "ratios": {"slow": 1.0}, "seconds": 10.0,
                                "verdicts": {"slow": "unchanged"}, "intervals": {"slow": [0.98, 1.02]}}}
    return {"flagged": [], "improved": [], "ratios": {}, "seconds": 30.0, "verdicts": {}, "intervals": {},
            "detail": {"run": dataclasses.asdict(run), "paired_seconds": 20.0, "fallback": fallback,
                       "plan": {"pairs": pairs}}}


def test_paired_rule_replays_from_raw_data(tmp_path):
    recorded = _fake_paired({"a": 1.10, "b": 1.0}, too_long={"benchmarks/test_stages.py::test_stage[slow]": "180 ms"})
    back = paired_run_from_dict(recorded["detail"]["run"], pairs=2)
    assert all(len(samples) == 2 and isinstance(samples[0], PairSample) for samples in back.stages.values())
    out = replay_paired(recorded)
    assert out["flagged"] == ["a"] and out["verdicts"] == {"a": "regressed", "b": "unchanged", "slow": "unchanged"}
    assert out["intervals"]["a"][0] < 1.10 < out["intervals"]["a"][1] and out["seconds"] == 30.0
    fewer = replay_paired(recorded, pairs=2)  # under decide.paired's 3 pairs: nothing can be called
    assert fewer["verdicts"]["a"] == "inconclusive" and fewer["seconds"] == 20.0  # half the pairs' time + fallback

    # Through the harness's command line: the recorded verdicts said nothing, the replay finds the slowdown.
    raw = tmp_path / "quiet.jsonl"
    rec = {"kind": "pr", "condition": "quiet", "pr": 1, "size": 10, "injected": ["a"], "stages": ["a", "b", "slow"],
           "plain_seconds": 10.0, "rules": {"paired": recorded}}
    raw.write_text(json.dumps({"kind": "meta"}) + "\n" + json.dumps(rec) + "\n")
    label = table.RULE_LABELS["paired"]
    assert main(["--from-raw", str(raw), "--out", str(tmp_path / "as-recorded.md")]) == 0
    assert f"| {label} | 0 % / – / 0 / 3.0x |" in (tmp_path / "as-recorded.md").read_text()
    assert main(["--from-raw", str(raw), "--replay-paired", "--out", str(tmp_path / "replayed.md")]) == 0
    assert f"| {label} | 0 % / – / 100 / 3.0x |" in (tmp_path / "replayed.md").read_text()
    assert main(["--from-raw", str(raw), "--replay-paired", "--replay-pairs", "2", "--out", str(tmp_path / "k2.md")]) == 0
    assert "| paired | quiet | 1 | 0/2 | – | 0/1 | 0/1 | 0 | 1 / 1 | – | 2.00x" in (tmp_path / "k2.md").read_text()
    # Recorded runs are kept gzipped: the same table from the .jsonl.gz.
    packed = tmp_path / "quiet.jsonl.gz"
    packed.write_bytes(gzip.compress(raw.read_bytes()))
    assert main(["--from-raw", str(packed), "--replay-paired", "--out", str(tmp_path / "packed.md")]) == 0
    assert f"| {label} | 0 % / – / 100 / 3.0x |" in (tmp_path / "packed.md").read_text()


def test_replay_options_without_raw_data_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--replay-paired"])
    assert exc.value.code == 2 and "give --from-raw" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--from-raw", "x.jsonl", "--replay-pairs", "0", "--replay-paired"])


def test_paired_facts_compares_one_cpu_with_two():
    """benchmarks/paired_facts.py, part 1 only (no environment, no engine): structure, no assertion on speed."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "paired_facts.py"
    out = subprocess.run([sys.executable, str(script), "--skip-engine", "--trials", "1", "--blocks", "3", "--stages",
                          "cpu_sum"], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "| cpu_sum | one CPU | " in out and "| cpu_sum | two CPUs | " in out
    assert "2. between-process spread: skipped (--skip-engine)" in out


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
    assert set(rules) == ({"naive", "bolt", "paired", "instructions"} if counting else {"naive", "bolt", "paired"})
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
        _check_paired(rec, {"cpu_sum", "str_encode"})
    bolt_rules = ["bolt", "paired", "instructions"] if counting else ["bolt", "paired"]
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
    assert rows[:7] == ["| rule", "| target", "| target, instruction counts", f"| {table.RULE_LABELS['naive']}",
                        f"| {table.RULE_LABELS['bolt']}", f"| {table.RULE_LABELS['paired']}",
                        f"| {table.RULE_LABELS['instructions']}"]
    assert "| naive | quiet | 2 |" in text and "| bolt | quiet | 2 |" in text and "| paired | quiet | 2 |" in text
    assert "| cpu_sum |" in text and "| str_encode |" in text
    if not counting:
        pytest.skip("valgrind is not installed: the instruction-count rule was not exercised (naive and bolt were)")
    assert "| instructions | quiet | 2 |" in text and "+10 %: fastest / median / instructions" in text
    assert f"| {table.RULE_LABELS['instructions']} | 0 % / 0 % / 100 / " in text


def _check_paired(rec: dict, stages: set[str]) -> None:
    """The paired rule ran with its quick plan, recorded its blocks, and replays to the verdicts it gave."""
    paired = rec["rules"]["paired"]
    assert "error" not in paired, paired
    assert set(paired["verdicts"]) == stages and paired["seconds"] > 0
    run = paired["detail"]["run"]
    timed = {suite.stage_of(n) for n in run["stages"]}
    assert timed | {suite.stage_of(n) for n in run["too_long"]} == stages
    for samples in run["stages"].values():
        assert len(samples) == QUICK_PAIRED["pairs"]
        for sample in samples:
            assert sample["calls"] >= 1 and len(sample["base"]) == len(sample["head"]) == len(sample["log_ratios"])
            # A dropped block pair is replaced by another, up to MAX_ATTEMPTS times the planned blocks.
            assert len(sample["log_ratios"]) <= QUICK_PAIRED["blocks"]
            tried = len(sample["log_ratios"]) + sample["dropped"] + sample.get("preempted", 0)
            assert tried <= MAX_ATTEMPTS * QUICK_PAIRED["blocks"]
    assert replay_paired(paired)["verdicts"] == paired["verdicts"]


@pytest.mark.slow
def test_tiny_single_shot_run(tmp_path):
    """The microsecond-scale suite (one pedantic(rounds=1) call per stage) through the naive and paired rules."""
    if shutil.which("uv") is None:
        pytest.skip("uv is not installed")
    stages = suite.stages_by_name(["cpu_sum", "str_encode"], single_shot=True)
    prs = suite.plan_prs(1, [10], stages, changed=1, seed=3)
    python = suite.make_env(tmp_path / "env", codspeed=False)
    repo = suite.make_repo(tmp_path / "repo", stages, prs, single_shot=True)
    rules = make_rules(["naive", "paired"], quick=True, rounds=2)
    rec = run_pr(python, repo, prs[0], stages, rules, tmp_path, "quiet", single_shot=True)
    assert rec["suite"] == "single-shot" and "error" not in rec["rules"]["naive"], rec
    _check_paired(rec, {"cpu_sum", "str_encode"})
    assert "| paired | quiet-single-shot | 1 |" in table.render([rec])

    # Every stage "too long for blocks": bolt run's wall-time step times them by whole rounds, and the record says so.
    rules = {"paired": BoltPaired(rules["paired"].settings, {**QUICK_PAIRED, "max_call_ms": 1e-6})}
    rec = run_pr(python, repo, prs[0], stages, rules, tmp_path / "long", "quiet", single_shot=True)
    paired = rec["rules"]["paired"]
    assert "error" not in paired, paired
    assert paired["detail"]["fallback"]["stages"] == ["cpu_sum", "str_encode"] and not paired["detail"]["run"]["stages"]
    assert set(paired["verdicts"]) == {"cpu_sum", "str_encode"} and paired["detail"]["fallback"]["rounds"]["base"] >= 2
    assert replay_paired(paired)["verdicts"] == paired["verdicts"]


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
