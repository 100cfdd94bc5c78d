"""Memory in the comment, the job summary and the annotations: shown only when it moved, in units that read."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.github.checkrun import annotations
from bolt_bot.github.workflow import annotate
from bolt_bot.model import (
    AllocLine,
    CommitRef,
    MemoryComparison,
    MemorySide,
    Results,
    SideSummary,
    StageComparison,
)
from bolt_bot.report.memory import format_bytes, format_count, percent
from bolt_bot.report.render import render_comment, render_limited, render_summary
from bolt_bot.report.textfilter import JOINER

GOLDEN = Path(__file__).parent / "golden"
ALLOWED_TAGS = {"details", "/details", "summary", "/summary", "sub", "/sub", "!--"}
PARSE = "benchmarks/test_pipeline.py::test_parse"
CACHE = "benchmarks/test_pipeline.py::test_cache"
RENDER = "benchmarks/test_pipeline.py::test_render"
HOSTILE = "@octocat #1 <script>alert(1)</script> https://evil.example/x [x](http://e.example) | `code`"


def side(center: float) -> SideSummary:
    return SideSummary(rounds=10, center=center, median=center, unit="s", values=[center] * 10)


def mem_side(allocations: int, allocated: int, peak: int) -> MemorySide:
    return MemorySide(allocations=allocations, allocated=allocated, peak=peak)


def stage(name: str, verdict: str = "unchanged", ratio: float = 1.002, memory: MemoryComparison | None = None,
          base: float = 1e-3) -> StageComparison:
    return StageComparison(name=name, verdict=verdict, ratio=ratio, ci=[ratio - 0.01, ratio + 0.01], p=0.4,
                           base=side(base), head=side(base * ratio), memory=memory)


def same_memory() -> MemoryComparison:
    return MemoryComparison("unchanged", base=mem_side(500, 40_000, 20_000), head=mem_side(500, 40_000, 20_000))


def doubled_allocations(lines: list[AllocLine] | None = None) -> MemoryComparison:
    """Head allocates twice as often and 2.1 MiB more per call; peak unchanged."""
    return MemoryComparison(
        "regressed", moved=["allocations", "allocated"], regressed=["allocations", "allocated"],
        base=mem_side(1020, 1_048_576, 300_000), head=mem_side(2020, 1_048_576 + 2_202_010, 300_000),
        lines=lines if lines is not None else [
            AllocLine("pipeline/parse.py:41", "normalise_row", 0, 1000, 0, 2_202_010, new=True),
            AllocLine("pipeline/parse.py:12", "parse", 1000, 1000, 1_000_000, 1_000_000),
        ])


def results(stages: list[StageComparison], verdict: str = "regressed") -> Results:
    return Results(stages=stages, verdict=verdict, settings={"threshold": 3.0, "alpha": 0.05},
                   base=CommitRef("main", "a" * 40), head=CommitRef("feature", "b" * 40),
                   environment={"rounds": 10, "runner": "Linux x86_64"})


def memory_only_regression() -> Results:
    return results([stage(PARSE, memory=doubled_allocations()),
                    stage(RENDER, memory=same_memory()),
                    stage(CACHE, "regressed", 1.25, memory=same_memory())])


def test_units_read_well():
    assert [format_bytes(v) for v in (0, 512, 1023, 1536, 10 * 1024, 2_202_010, 3 << 30)] == [
        "0 B", "512 B", "1023 B", "1.5 KiB", "10.0 KiB", "2.1 MiB", "3.0 GiB"]
    assert format_bytes(1024 * 1024 - 10) == "1.0 MiB"  # never "1024 KiB"
    assert format_bytes(2_202_010, signed=True) == "+2.1 MiB" and format_bytes(-1536, signed=True) == "-1.5 KiB"
    assert [format_count(v) for v in (7, 1234, 9999, 12_345, 1_234_567)] == ["7", "1,234", "9,999", "12.3 k", "1.23 M"]
    assert [percent(r) for r in (1.98, 1.0123, 0.5, 120.5, None)] == ["+98 %", "+1.2 %", "-50 %", "120×", "n/a"]


def test_a_memory_only_regression_is_listed_with_what_grew_and_counted_in_the_headline():
    text = render_comment(memory_only_regression())
    assert "### ⚡ 1 stage slower, 1 using more memory, 1 unchanged" in text
    changed = text.split("### ⚡", 1)[1].split("<details><summary>1 unchanged stage</summary>", 1)[0]
    row = next(line for line in changed.splitlines() if "test&#95;parse" in line or "test_parse |" in line)
    assert row.startswith("| 🔴 |")
    assert "**memory: allocations +98 % (1,020 → 2,020), allocated +2.1 MiB (+210 %)**" in row
    # the unchanged stage stays folded, and its memory (which did not move) is nowhere
    unchanged = text.split("<details><summary>1 unchanged stage</summary>", 1)[1]
    assert "test_render" in unchanged and "memory" not in unchanged.split("</details>", 1)[0]


def test_the_memory_section_shows_moved_stages_with_units():
    text = render_comment(memory_only_regression())
    section = text.split("**Memory per call**", 1)[1].split("<details>", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| 🔴") or line.startswith("| ⚪")]
    assert len(rows) == 1 and "test_parse" in rows[0]  # only the stage whose memory moved
    assert "1,020 → 2,020 (+98 %)" in rows[0] and "1.0 MiB → 3.1 MiB (+210 %)" in rows[0]
    assert rows[0].endswith("| 293 KiB → 293 KiB |")  # peak, unchanged: no percent


def test_the_excerpt_names_the_lines_that_allocate_more_and_marks_new_ones():
    text = render_comment(memory_only_regression())
    block = text.split(f"<summary>What allocates more in {PARSE}</summary>", 1)[1]
    block = block.split("</details>", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("| pipeline/")]
    assert lines[0].startswith("| pipeline/parse.py:41 **new** | normalise_row | – → 1,000 | – → 2.1 MiB (+2.1 MiB) |")
    assert lines[1].startswith("| pipeline/parse.py:12 | parse | 1,000 → 1,000 | 977 KiB → 977 KiB (±0 B) |")
    assert "What got slower in" not in text  # no time profile for a stage whose time did not move


def test_nothing_moved_means_no_memory_anywhere():
    plain = results([stage(PARSE, "regressed", 1.2, memory=same_memory()), stage(RENDER, memory=same_memory())])
    for text in (render_comment(plain), render_summary(plain)):
        assert "Memory per call" not in text and "allocat" not in text.lower() and "memory" not in text.lower()
        assert "1 stage slower, 1 unchanged" in text


def test_the_job_summary_lists_the_memory_regression():
    text = render_summary(memory_only_regression())
    assert text.startswith("## ⚡ 1 stage slower, 1 using more memory, 1 unchanged")
    assert "**memory: allocations +98 % (1,020 → 2,020)" in text and "**Memory per call**" in text
    assert "What allocates more in" in text and "pipeline/parse.py:41 **new**" in text


def test_a_stage_that_got_slower_and_heavier_says_both():
    both = results([stage(PARSE, "regressed", 1.5, memory=doubled_allocations())])
    text = render_comment(both)
    assert "### ⚡ 1 stage slower and using more memory\n" in text  # one stage, counted once
    assert "**+50 %**; memory: allocations +98 %" in text.replace("**+50.0 %**", "**+50 %**")


def test_project_text_in_the_memory_excerpt_stays_inert():
    hostile = doubled_allocations([AllocLine(f"{HOSTILE}.py:3", HOSTILE, 0, 10, 0, 4096, new=True)])
    text = render_comment(results([stage(PARSE, memory=hostile)]))
    block = text.split("What allocates more in", 1)[1].split("</details>", 1)[0]
    assert "<script>" not in block and "@octocat" not in block and not re.search(r"(?<!&)#1", block)
    assert "https://evil" not in block and "](http" not in block and "`" not in block
    assert f"&#64;{JOINER}octocat" in block and f"&#35;{JOINER}1" in block and "&lt;script&gt;" in block
    assert block.count(" | ") >= 4 and "&#124;" in block  # the hostile pipe cannot add a cell
    tags = {t.lower() for t in re.findall(r"<\s*(/?[!A-Za-z-]+)", text)}
    assert tags <= ALLOWED_TAGS


def test_the_memory_excerpts_fold_away_when_the_comment_must_shrink():
    many = [AllocLine(f"pipeline/mod{i}.py:{i}", f"function_{i}", 1, 2, 100, 200) for i in range(10)]
    stages = [stage(f"{PARSE}_{i}", memory=doubled_allocations(list(many))) for i in range(60)]
    full = render_limited("comment.md.j2", results(stages), limit=10**6)
    assert full.count("What allocates more in") == 60
    limit = len(full) // 2
    text = render_limited("comment.md.j2", results(stages), limit=limit)
    assert len(text) <= limit and "What allocates more in" not in text
    assert text.count("| 🔴 |") >= 60  # the regressions themselves stay


def test_annotations_name_a_memory_regression():
    res = memory_only_regression()
    notes = {n["message"].split(" ", 1)[0]: n for n in annotations(res)}
    assert set(notes) == {PARSE, CACHE}
    assert notes[PARSE]["title"] == "Bolt: benchmark uses more memory"
    assert notes[PARSE]["message"] == (f"{PARSE} uses more memory: allocations +98 % (1,020 → 2,020), "
                                       "allocated +2.1 MiB (+210 %)")
    assert notes[CACHE]["title"] == "Bolt: slower benchmark" and "slower" in notes[CACHE]["message"]
    out = io.StringIO()
    annotate(res, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert any("title=Bolt%3A benchmark uses more memory::" in line and "allocations +98 %25" in line for line in lines)


def test_golden_memory_comment_and_summary():
    """The whole comment and summary of a memory-only regression beside a time one (BOLT_UPDATE_GOLDEN=1 rewrites)."""
    for name, render in (("comment-memory.md", render_comment), ("summary-memory.md", render_summary)):
        text = render(memory_only_regression())
        path = GOLDEN / name
        if os.environ.get("BOLT_UPDATE_GOLDEN"):
            path.write_text(text, encoding="utf-8")
        assert text == path.read_text(encoding="utf-8")


def test_bolt_render_reads_the_memory_back_from_results_json(tmp_path):
    """results.json keeps every memory field: `bolt render` writes the same comment and summary again."""
    res = memory_only_regression()
    res.write(tmp_path / "results.json")
    done = CliRunner().invoke(main, ["render", str(tmp_path)])
    assert done.exit_code == 0, (done.output, done.exception)
    comment = (tmp_path / "comment.md").read_text(encoding="utf-8")
    assert comment == render_comment(res) and "pipeline/parse.py:41 **new** | normalise_row" in comment
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == render_summary(res)
