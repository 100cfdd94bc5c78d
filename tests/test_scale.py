"""10,000 stages: the quick reader agrees with the full check, the writer keeps the document, a bad value deep in
a big file is still refused in one clear line, and a comment is fitted in a few attempts with every row that fits."""

from __future__ import annotations

import gc
import json

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from bolt_bot import model
from bolt_bot.cli import main
from bolt_bot.errors import BoltError
from bolt_bot.jsondata import Unsure, build, quick_builder
from bolt_bot.model import ProfileLine, Results, SideSummary, StageComparison
from bolt_bot.report import render
from tests.test_fuzz import FUZZ, VALID_RESULTS, json_values, mutate

VALID_STAGE = VALID_RESULTS["stages"][0]


@FUZZ
@given(st.lists(st.tuples(st.lists(st.integers(0, 50), min_size=1, max_size=5), json_values), min_size=1, max_size=3))
def test_the_quick_reader_accepts_nothing_the_full_check_refuses_and_reads_the_same(mutations):
    stage = VALID_STAGE
    for path, value in mutations:
        stage = mutate(stage, path, value)
    try:
        quick = quick_builder(StageComparison)(stage)
    except Unsure:
        return  # the full check decides, as before
    assert quick == build(StageComparison, stage, "stages[0]")


@pytest.mark.parametrize("value", [1, 10**400, True, "1.0", None, [], 1e308 * 10, float("nan")])
def test_unusual_numbers_go_to_the_full_check(value):
    stage = {**VALID_STAGE, "base": {**VALID_STAGE["base"], "values": [1e-3, value]}}
    with pytest.raises(Unsure):
        quick_builder(StageComparison)(stage)


def big_results(n: int = 10_000) -> Results:
    def side(scale: float) -> SideSummary:
        values = [scale * (1 + 0.01 * k) for k in range(10)]
        return SideSummary(rounds=10, center=scale, median=scale, mean=scale, rel_stddev=0.01, min=values[0],
                           max=values[-1], values=values)
    stages = [StageComparison(name=f"tests/bench.py::test_stage[{i}-é]", verdict="unchanged", ratio=1.001,
                              ci=[0.99, 1.01], p=0.5, q=0.9, base=side(1e-3), head=side(1.001e-3),
                              params={"i": i}, extra_info={"tag": "x"}) for i in range(n)]
    stages[0].verdict, stages[0].profile = "regressed", [ProfileLine("pkg/mod.py:1(f)", 1e-4, 2e-4, 1e-4)]
    return Results(stages=stages, verdict="regressed", settings={"threshold": 3.0}, notices=["a notice"],
                   approval={"user": "maintainer", "sha": "a" * 40, "reason": "worth it", "at": None})


def test_results_json_holds_the_same_document_one_line_per_stage(tmp_path):
    results = big_results(1_000)
    path = tmp_path / "results.json"
    results.write(path)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == json.loads(json.dumps(results.to_dict()))  # what the indented dump held
    lines = text.splitlines()
    assert lines[:2] == ["{", '  "stages": ['] and sum(line.startswith('    {"name": ') for line in lines) == 1_000
    assert Results.read(path) == results


def test_an_empty_results_json_is_valid(tmp_path):
    results = Results(stages=[], verdict="failed")
    results.write(tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results.to_dict()))


def test_a_bad_value_deep_in_10000_stages_is_one_clear_line_exit_2(tmp_path):
    folder = tmp_path / "r"
    big_results().write(folder / "results.json")
    doc = json.loads((folder / "results.json").read_text())
    doc["stages"][7_777]["head"]["values"][3] = "fast"
    (folder / "results.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(main, ["render", str(folder)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "stages[7777].head.values[3] is 'fast', expected a number" in result.stderr
    with pytest.raises(BoltError, match=r"stages\[7777\]\.head\.values\[3\] is 'fast'"):
        Results.from_dict(doc)


def mixed_results() -> Results:
    """10,000 stages: 50 regressed, 500 inconclusive with a note, the rest unchanged."""
    results = big_results()
    for i, stage in enumerate(results.stages):
        if i < 50:
            stage.verdict, stage.ratio, stage.ci = "regressed", 1.15 + i / 1000, [1.12, 1.2]
        elif i < 550:
            stage.verdict, stage.note = "inconclusive", f"+3.{i % 10} %, not significant (q = 0.{i % 97:02d})"
    return results


@pytest.mark.parametrize("name, limit", [("comment.md.j2", render.COMMENT_LIMIT), ("summary.md.j2", render.SUMMARY_LIMIT)])
def test_10000_stages_fit_in_few_attempts_and_show_as_many_rows_as_fit(monkeypatch, name, limit):
    results = mixed_results()
    attempts = []
    real = render.render_template

    def counting(template, ctx, template_dir=None):
        attempts.append({k: len(ctx[k]) for k in ("changed", "others", "unchanged")})
        return real(template, ctx, template_dir)

    monkeypatch.setattr(render, "render_template", counting)
    text = render.render_limited(name, results, limit=limit)
    monkeypatch.undo()
    assert len(text) <= limit and len(attempts) <= 6, attempts  # 12 attempts before, each sorting every stage
    shown = attempts[-1]
    cut = "unchanged" if shown["unchanged"] else "others"
    assert 0 < shown[cut] < {"unchanged": 9_450, "others": 500}[cut]
    one_more = render.Limits(changed=shown["changed"], others=shown["others"], unchanged=shown["unchanged"])
    setattr(one_more, cut, shown[cut] + 1)
    assert len(real(name, render.context(results, one_more))) > limit  # the last row that fits is shown


def test_reading_pauses_the_garbage_collector_and_turns_it_back_on_even_after_an_error(tmp_path, monkeypatch):
    seen = []
    real = model.json.loads

    def loads(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(model.json, "loads", loads)
    big_results(10).write(tmp_path / "results.json")
    (tmp_path / "bad.json").write_text('{"schema": "bolt/results/v1", "stages": 7, "verdict": "unchanged"}')
    assert isinstance(Results.read(tmp_path / "results.json"), Results) and gc.isenabled()
    with pytest.raises(BoltError, match="stages is 7"):
        Results.read(tmp_path / "bad.json")
    assert seen == [False, False] and gc.isenabled()
