"""The rendered markdown: golden files, the size limit, hostile names, user templates."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt_bot.decide import gate
from bolt_bot.model import CommitRef, ProfileLine, Results, SideSummary, StageComparison
from bolt_bot.report.render import (
    chart_labels,
    format_amount,
    format_change,
    render_comment,
    render_summary,
)
from bolt_bot.report.state import COMMENT_LIMIT, MARKER, read_state
from bolt_bot.report.text import render_text

GOLDEN = Path(__file__).parent / "golden"
ALLOWED_TAGS = {"details", "/details", "summary", "/summary", "sub", "/sub", "!--"}


def side(center, unit="s", rounds=10):
    return SideSummary(rounds=rounds, center=center, median=center, unit=unit, values=[center] * rounds)


def stage(name, verdict, ratio=None, ci=None, base=1e-3, **kw):
    head = base * ratio if ratio else base
    return StageComparison(name=name, verdict=verdict, ratio=ratio, ci=ci, p=0.001 if ratio else None,
                           base=side(base), head=side(head), **kw)


def sample_results() -> Results:
    stages = [
        stage("benchmarks/test_pipeline.py::test_parse", "regressed", 1.092, [1.071, 1.113], base=2.1e-3,
              profile=[ProfileLine("pipeline/parse.py:40(normalise_row)", 0.0, 1.8e-4, 1.8e-4, 0.0, 1.8e-4, 0, 1000, True),
                       ProfileLine(":1(structure_Row)", 5e-5, 1.5e-4, 1e-4, 5e-5, 1.5e-4, 1000, 1000),
                       ProfileLine("~:0(<method 'title' of 'str' objects>)", 0.0, 4e-5, 4e-5, 0.0, 4e-5, 0, 1000, True),
                       ProfileLine("pipeline/parse.py:12(parse)", 9.5e-4, 9.99999e-4, 5e-5, 2.1e-3, 2.3e-3, 1, 1)]),
        stage("benchmarks/test_pipeline.py::test_render", "improved", 0.4, [0.38, 0.42], base=5.2e-3),
        stage("benchmarks/test_pipeline.py::test_ingest", "unchanged", 1.004, [0.99, 1.018], base=1.2e-2),
        stage("benchmarks/test_pipeline.py::test_encode", "instructions-placeholder", 1.0),
        stage("benchmarks/test_pipeline.py::test_export", "failed", note="failed on head: ValueError: bad row"),
        stage("benchmarks/test_pipeline.py::test_new_stage", "added"),
    ]
    stages[3].verdict, stages[3].measure = "unchanged", "instructions"
    stages[3].base, stages[3].head = side(12.3e6, "instr", 2), side(12.3e6, "instr", 2)
    return Results(
        stages=stages,
        verdict="regressed",
        settings={"threshold": 3.0, "alpha": 0.05},
        base=CommitRef("main", "a" * 40),
        head=CommitRef("feature", "b" * 40),
        environment={"rounds": 10, "plan": "interleaved", "runner": "Linux x86_64, Python 3.11"},
    )


@pytest.mark.parametrize("name, render", [("comment.md", render_comment), ("summary.md", render_summary)])
def test_golden(name, render):
    text = render(sample_results())
    path = GOLDEN / name
    if os.environ.get("BOLT_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_comment_shape():
    text = render_comment(sample_results())
    assert text.startswith(MARKER)
    assert "### ⚡ 1 stage slower, 1 faster, 1 failed, 1 added, 2 unchanged" in text
    assert "```mermaid" in text
    assert "normalise&#95;row" not in text and "normalise_row" in text and "**new**" in text
    assert "<details><summary>2 unchanged stages</summary>" in text
    assert "12.30 M instr" in text  # four digits for every count: 12.30 beside 12.62, never 12.3


def hostile_name(i: int) -> str:
    return f"tests/t.py::test_{i}[<img src=x onerror=alert(1)> @everyone | `rm -rf` ]](http://evil) <script>x</script> {'é' * 300}]"


def hostile_results(n: int = 1500, regressed: int = 40) -> Results:
    stages = []
    for i in range(n):
        verdict = "regressed" if i < regressed else "unchanged"
        stages.append(stage(hostile_name(i), verdict, 1.2 if verdict == "regressed" else 1.001, [1.1, 1.3]))
    return Results(stages=stages, verdict="regressed")


def assert_inert(text: str) -> None:
    tags = {m.group(1).lower() for m in re.finditer(r"<\s*(/?[!A-Za-z][A-Za-z0-9-]*)", text)}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    assert not re.search(r"(?<![&#\w])@[A-Za-z0-9]", text), "a live mention got through"
    assert "](http" not in text and "`rm" not in text


def test_1500_hostile_stages_fit_list_the_regressions_and_stay_inert():
    text = render_comment(hostile_results())
    assert len(text) <= COMMENT_LIMIT
    assert_inert(text)
    for i in range(40):
        assert f"test&#95;{i}&#91;" in text or f"test_{i}&#91;" in text
    assert "more not shown" in text


def test_ten_thousand_regressions_keep_the_worst_first_and_say_what_was_left_out():
    results = Results(stages=[stage(f"t.py::test_{i}", "regressed", 1.1 + i / 1e5, [1.05, 1.2]) for i in range(10_000)], verdict="regressed")
    text = render_comment(results)
    assert len(text) <= COMMENT_LIMIT
    assert "t.py::test_9999 " in text  # the largest ratio comes first
    assert re.search(r"and \d+ more changed stages not shown", text)


def test_state_round_trips_and_cannot_close_the_comment_early():
    state = {"head": "b" * 40, "approval": {"user": "x", "reason": "evil --> <b>"}}
    text = render_comment(sample_results(), state=state)
    assert read_state(text) == state
    before_chart = text.split("```mermaid")[0]  # mermaid's axis syntax uses --> too
    assert before_chart.count("-->") == before_chart.count("<!--") == 2


def test_user_templates_override_one_file(tmp_path):
    (tmp_path / "comment.md.j2").write_text("{{ marker }}\nCustom: {{ verdict_line }}\n")
    assert render_comment(sample_results(), template_dir=tmp_path) == f"{MARKER}\nCustom: ⚡ 1 stage slower, 1 faster, 1 failed, 1 added, 2 unchanged\n"
    assert "| Stage |" in render_summary(sample_results(), template_dir=tmp_path)  # not overridden


def test_text_table():
    out = render_text(sample_results())
    assert out.splitlines()[0].startswith("⚡") and "+9.2 %" in out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=400), min_size=1, max_size=30), st.integers(0, 29))
def test_any_names_render_inert_and_within_the_limit(names, n_regressed):
    stages = [stage(f"{i}-{name}", "regressed" if i < n_regressed else "unchanged", 1.5, [1.4, 1.6]) for i, name in enumerate(names)]
    results = Results(stages=stages, verdict="regressed")
    text = render_comment(results)
    assert len(text) <= COMMENT_LIMIT
    assert_inert(text)
    small = render_comment_limited(results, 3000)
    assert len(small) <= 3000


def render_comment_limited(results, limit):
    from bolt_bot.report.render import render_limited

    return render_limited("comment.md.j2", results, limit=limit)


# ---------------------------------------------------------------------------------------------- polish


def chart_of(text: str) -> tuple[str, list[str], list[str]]:
    block = text.split("```mermaid", 1)[1].split("```", 1)[0]
    title = re.search(r'title "(.*)"', block).group(1)
    labels = re.findall(r'"([^"]*)"', re.search(r"x-axis \[(.*)\]", block).group(1))
    bars = re.search(r"bar \[(.*)\]", block).group(1).split(", ")
    return title, labels, bars


def test_chart_gives_every_bar_a_distinct_label_and_says_when_it_leaves_bars_out():
    long = "test_unstructure_attrs_with_a_long_name[Converter-{}-and-more-parameters-after-it]"
    names = [f"tests/test_a.py::{long.format('Tuple')}", f"tests/test_a.py::{long.format('Dicts')}",
             "tests/test_a.py::test_same", "tests/test_b.py::test_same"]
    names += [f"tests/test_c.py::test_{i}" for i in range(9)]
    stages = [stage(name, "regressed", 1.05 + (len(names) - i) / 100, [1.04, 1.3]) for i, name in enumerate(names)]
    title, labels, bars = chart_of(render_comment(Results(stages=stages, verdict="regressed")))
    assert len(labels) == len(bars) == 12 and len(set(labels)) == 12, labels
    assert "the 12 largest of 13" in title
    assert "test_unstructure_attrs_with_a_long_name[Converter-Tuple-and-more-parameters-after-it]" not in labels
    assert any("Tuple" in label for label in labels) and any("Dicts" in label for label in labels), labels
    assert "6.00" not in bars and "18.00" in bars  # the smallest change (+6 %) is the one left out
    # Names that differ only in characters mermaid may not see are numbered rather than merged.
    assert chart_labels(["t.py::test_x[a<b]", "t.py::test_x[a>b]", "t.py::test_y"]) == [
        "test_x_a_b_ (1)", "test_x_a_b_ (2)", "test_y"]
    # Twelve or fewer: every changed stage is a bar, and the title claims nothing more.
    title, labels, bars = chart_of(render_comment(Results(stages=stages[:4], verdict="regressed")))
    assert len(set(labels)) == len(bars) == 4 and "largest" not in title, labels


def test_legend_lists_only_the_markers_that_occur():
    walltime_only = Results(stages=[stage("t.py::a", "regressed", 1.2, [1.1, 1.3]), stage("t.py::b", "unchanged", 1.0)],
                            verdict="regressed")
    footer = render_comment(walltime_only).split("<sub>")[1]
    assert "ⁱ" not in footer and "ˡ" not in footer and "with wall time" in footer and "walltime" not in footer
    low = stage("t.py::c", "improved", 0.8, [0.7, 0.9], low_confidence=True)
    footer = render_comment(Results(stages=[low], verdict="improved")).split("<sub>")[1]
    assert "ˡ low confidence" in footer and "ⁱ" not in footer


def test_counts_agree_in_number():
    stages = [stage("t.py::broken", "failed", note="failed on head: boom")]
    stages += [stage(f"t.py::u{i}", "unchanged", 1.0) for i in range(2)]
    text = render_comment(Results(stages=stages, verdict="failed"))
    assert "<summary>1 stage failed</summary>" in text and "2 unchanged stages" in text
    one = render_comment(Results(stages=[stage("t.py::u", "unchanged", 1.0), stages[0]], verdict="failed"))
    assert "<summary>1 unchanged stage</summary>" in one
    warned = stage("t.py::w", "unchanged", 1.007, measure="instructions", note="warning: +0.7 % (within the band)")
    text = render_comment(Results(stages=[*stages, warned], verdict="failed"))
    assert "<summary>1 stage failed, 1 in the warning band</summary>" in text


def test_one_number_style_for_changes_everywhere():
    assert format_change(1.042) == "+4.2 %" and format_change(0.568) == "-43.2 %"
    assert format_change(0.125) == "-87.5 % (8.0× faster)" and format_change(3.0) == "+200.0 %"
    assert format_change(0.99996) == "+0.0 %" and format_change(None) == "n/a"
    fast = stage("t.py::test_parse", "improved", 0.125, [0.12, 0.13])
    results = Results(stages=[fast], verdict="improved")
    cell = "-87.5 % (8.0× faster)"
    assert f"**{cell}**" in render_comment(results) and cell in render_text(results)
    assert gate.status_for(results)[1].endswith(f"test_parse {cell}")
    assert gate.claim_text(results) == f"{cell} in test_parse"
    assert "x faster" not in render_comment(results)


def test_durations_and_counts_carry_proper_units():
    assert format_amount(9.99999e-4) == "1 ms" and format_amount(999.9996e-6) == "1 ms"
    assert format_amount(2.5e-7) == "250 ns" and format_amount(4e-10) == "0.4 ns"
    assert format_amount(1234.5) == "1234 s" and format_amount(12.34) == "12.3 s"
    assert format_amount(999_999.96, "instr") == "1.000 M instr" and format_amount(12_345_678, "instr") == "12.35 M instr"
    assert format_amount(None) == "–" and "e+" not in format_amount(1e-3 - 1e-12)


def test_generated_and_built_in_functions_are_named_not_shown_as_bare_line_numbers():
    text = render_comment(sample_results())
    assert "| :1(" not in text and "structure&#95;Row (generated code, no source file)" not in text
    assert "structure_Row (generated code, no source file)" in text
    assert "&#126;:0(" not in text and "&lt;method" not in text and "| str.title **new**" in text
    assert "| pipeline/parse.py:40 normalise_row **new**" in text
