"""`--format text`, the default of compare, run and demo: plain text a terminal shows as written, never the
comment's markdown (entities, mermaid, <details>), and nothing from the project a terminal would act on."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.model import MemoryComparison, MemorySide, ProfileLine, WallSize
from bolt_bot.progress import Progress
from bolt_bot.report.state import MARKER
from bolt_bot.report.text import plain, render_text
from tests import projects
from tests.conftest import commit
from tests.test_render import sample_results

IDNA = Path(__file__).parent / "data" / "idna"
MARKUP = ("&#", "&lt;", "&gt;", "&amp;", "```mermaid", "<details>", "<summary>", "<sub>", "| ")
HEADER = re.compile(r"^stage +verdict +base +head +change +95 % interval +measure$", re.M)
# What a terminal acts on rather than prints: ESC (CSI, OSC...), C1's CSI, carriage return, backspace, bell,
# bidi overrides.
RAW = ("\x1b", "\x9b", "\r", "\b", "\x07", "\u202e")
HOSTILE = "test_\x1b[2J\x1b]0;owned\x07evil\rname\u202e\x9b31m"


def assert_plain(text: str) -> None:
    for markup in MARKUP:
        assert markup not in text, (markup, text)
    for raw in RAW:
        assert raw not in text, (raw, text)


def test_the_text_view_has_the_table_the_excerpt_and_the_comment_path():
    results = sample_results()
    results.stages[0].profile.append(ProfileLine("minipipe.py:9(_clean_city)", 1e-4, 2e-4, 1e-4))
    results.notices = ["2 stages measured by wall time: `valgrind` is missing"]
    text = render_text(results, Path("/tmp/out/comment.md"))
    assert_plain(text)
    assert text.startswith("⚡ 1 stage slower, 1 faster, 1 failed, 1 added, 2 unchanged\n")
    assert HEADER.search(text)
    row = next(line for line in text.splitlines() if line.startswith("benchmarks/test_pipeline.py::test_parse"))
    assert row.split()[1:] == ["regressed", "2.1", "ms", "2.29", "ms", "+9.2", "%", "[+7.1,", "+11.3]", "%",
                               "wall", "time"]
    assert "12.30 M instr" in text and "exact count" not in text
    # The excerpt: function names as the profile gives them, unescaped.
    assert "What got slower in benchmarks/test_pipeline.py::test_parse" in text
    assert "minipipe.py:9(_clean_city)" in text and "<method 'title' of 'str' objects>" in text
    assert "test_export: failed on head: ValueError: bad row" in text
    assert "Warning: 2 stages measured by wall time: `valgrind` is missing" in text
    assert text.endswith("The pull request comment (markdown): /tmp/out/comment.md\n")


def test_the_text_view_never_changes_the_results():
    results = sample_results()
    before = json.dumps(results.to_dict(), sort_keys=True)
    render_text(results)
    assert json.dumps(results.to_dict(), sort_keys=True) == before


def test_a_regressed_stage_without_a_profile_says_why():
    results = sample_results()
    results.stages[0].profile, results.stages[0].profile_note = [], "head was not slower under the profiler"
    assert ("What got slower in benchmarks/test_pipeline.py::test_parse: no function to show: head was not "
            "slower under the profiler.") in render_text(results)


def test_memory_that_moved_gets_a_line_and_memory_that_did_not_none():
    results = sample_results()
    results.stages[0].memory = MemoryComparison("regressed", moved=["allocated"], regressed=["allocated"],
                                                base=MemorySide(10, 1_000_000, 500), head=MemorySide(10, 1_500_000, 500))
    results.stages[1].memory = MemoryComparison("unchanged", base=MemorySide(10, 100, 50), head=MemorySide(10, 100, 50))
    text = render_text(results)
    assert "benchmarks/test_pipeline.py::test_parse: regressed, allocated +488 KiB (+50 %)" in text  # the comment's units
    assert "test_render: unchanged" not in text


def test_everything_the_project_controls_is_neutralised():
    results = sample_results()
    results.stages[0].name = HOSTILE
    results.stages[0].profile[0].function = f"x.py:1({HOSTILE})"
    results.stages[4].note = f"failed on head: {HOSTILE}"
    results.base.ref, results.head.ref = HOSTILE, HOSTILE
    results.notices = [HOSTILE]
    results.environment["runner"] = HOSTILE
    text = render_text(results, Path("/tmp/out/comment.md"))
    assert_plain(text)
    assert plain(HOSTILE) == "test_ [2J ]0;owned evil name 31m" and plain(HOSTILE) in text


def test_compare_prints_text_by_default_off_a_terminal_and_neutralises_a_hostile_stage(tmp_path):
    """CliRunner's stdout is not a terminal, like a pipe or a CI log: the default is still the text view."""
    argv = ["compare"]
    for side in ("base", "head"):
        data = json.loads((IDNA / f"{side}-1.json").read_text())
        data["benchmarks"][0]["fullname"] = data["benchmarks"][0]["name"] = HOSTILE
        (tmp_path / f"{side}.json").write_text(json.dumps(data))
        argv += [f"--{side}", str(tmp_path / f"{side}.json")]
    default = CliRunner().invoke(main, argv)
    assert default.exit_code == 0, default.output
    assert_plain(default.stdout)
    assert HEADER.search(default.stdout) and "test_ [2J ]0;owned evil name" in default.stdout
    assert CliRunner().invoke(main, [*argv, "--format", "text"]).stdout == default.stdout
    markdown = CliRunner().invoke(main, [*argv, "--format", "markdown"]).stdout
    assert markdown.startswith(MARKER) and "\x1b" not in markdown


# Few short rounds: these tests are about what is printed, not about detection.
QUICK = ["--measure", "walltime", "--walltime-engine", "rounds", "--rounds", "2", "--budget", "0", "--quiet"]
WORK = {"parse": 20000, "join": 15000}


@pytest.mark.slow
def test_run_prints_text_by_default_and_the_comment_with_format_markdown(tmp_path):
    repo, base, head = projects.pipeline_repo(tmp_path / "project", WORK, dict(WORK, parse=60000))
    args = ["run", "--repo", str(repo), "--base", base, "--head", head, *QUICK, "--no-profile"]
    text = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "text")])
    assert text.exit_code == 0, text.output
    assert_plain(text.stdout)
    assert HEADER.search(text.stdout) and "bench/test_bench.py::test_stage[parse]" in text.stdout
    assert text.stdout.endswith(f"The pull request comment (markdown): {tmp_path / 'text' / 'comment.md'}\n")
    assert (tmp_path / "text" / "comment.md").read_text().startswith(MARKER)  # the file stays markdown

    markdown = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "md"), "--format", "markdown"])
    assert markdown.exit_code == 0, markdown.output
    assert markdown.stdout == (tmp_path / "md" / "comment.md").read_text() + "\n"
    assert f"results in {tmp_path / 'md'}/" in markdown.stderr


@pytest.mark.slow
def test_an_escape_sequence_in_a_failure_never_reaches_the_terminal(tmp_path):
    repo, base, _ = projects.pipeline_repo(tmp_path / "project", WORK, WORK)
    head = commit(repo, {"minipipe.py": "raise ImportError('\\x1b[2J\\x1b[31mhead\\ris broken')\n"}, "break the head")
    result = CliRunner().invoke(main, ["run", "--repo", str(repo), "--base", base, "--head", head, *QUICK,
                                       "--no-profile", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    notes = [s["note"] or "" for s in json.loads((tmp_path / "out" / "results.json").read_text())["stages"]]
    assert any("\x1b" in note for note in notes), notes  # the project's text, kept as it is in results.json
    assert_plain(result.stdout)
    for raw in RAW:
        assert raw not in result.stderr, (raw, result.stderr)
    assert "bolt: error: the run failed: every stage failed (2)" in result.stderr


@pytest.mark.slow
def test_demo_reads_as_plain_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["demo", "--measure", "walltime", "--rounds", "4", "--budget", "20", "--quiet"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert_plain(out)
    assert out.startswith("⚡ ") and HEADER.search(out)
    assert re.search(r"^\S*test_parse +\S+", out, re.M), out
    assert out.endswith(f"The pull request comment (markdown): {tmp_path / 'bolt-demo' / 'comment.md'}\n")
    comment = (tmp_path / "bolt-demo" / "comment.md").read_text()
    assert comment.startswith(MARKER)


def test_progress_lines_never_carry_the_projects_control_characters(monkeypatch):
    """Progress names stages ("wall time for NAME: ...") and quotes failures, on the terminal's stderr."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    stream = io.StringIO()
    progress = Progress(stream=stream)
    progress.note(f"wall time for {HOSTILE}: it waits")
    progress.warn(f"base: the benchmark suite failed: {HOSTILE}")
    for raw in RAW:
        assert raw not in stream.getvalue(), (raw, stream.getvalue())
    assert stream.getvalue().startswith("bolt: wall time for test_ [2J ]0;owned evil name")


def test_a_counted_change_says_why_its_wall_time_was_not_measured():
    results = sample_results()
    results.stages[0].measure = "instructions"
    results.stages[0].wall_size = WallSize(note="one call takes 34 ms, too long for blocks of calls")
    results.stages[1].measure = "instructions"
    results.stages[1].wall_size = WallSize(ratio=0.4, ci=[0.38, 0.42], pairs=6)
    text = render_text(results)
    assert ("  benchmarks/test_pipeline.py::test_parse: wall time not measured (one call takes 34 ms, too long for "
            "blocks of calls)") in text
    assert "-60.0 % (2.5× faster) (wall time -60 % [-62, -58])" in text
