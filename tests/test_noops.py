"""Runs that would measure nothing say so, and the command line speaks in one line and in proper plurals."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.decide.compare import build_results
from bolt_bot.model import REGRESSED, UNCHANGED, StageComparison
from bolt_bot.report.render import format_amount, render_comment, render_summary
from bolt_bot.settings import Settings

IDNA = Path(__file__).parent / "data" / "idna"


# ---------------------------------------------------------------- one-line usage errors


@pytest.mark.parametrize("argv, line", [
    (["run", "--xyz"], "bolt: error: no such option '--xyz' (see bolt run --help)"),
    (["compare"], "bolt: error: missing option '--base' (see bolt compare --help)"),
    (["compare", "--base"], "bolt: error: option '--base' requires an argument (see bolt compare --help)"),
    (["run", "--rounds", "x"], "bolt: error: invalid value for '--rounds': 'x' is not a valid integer "
                               "(see bolt run --help)"),
    (["merge"], "bolt: error: missing argument 'DIRS...' (see bolt merge --help)"),
    (["nosuch"], "bolt: error: no such command 'nosuch' (see bolt --help)"),
    (["--nope"], "bolt: error: no such option '--nope' (see bolt --help)"),
])
def test_usage_errors_are_one_line_with_exit_code_2(argv, line):
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    assert result.stderr == line + "\n" and result.stdout == ""


def test_a_close_option_name_is_suggested_on_the_same_line():
    result = CliRunner().invoke(main, ["run", "--nope"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "no such option '--nope'; did you mean '--no-profile'? (see bolt run --help)" in result.stderr


def test_help_and_bare_bolt_still_show_the_help():
    helped = CliRunner().invoke(main, ["run", "--help"])
    assert helped.exit_code == 0 and helped.stdout.startswith("Usage: bolt run [OPTIONS]")
    bare = CliRunner().invoke(main, [])
    assert "Usage: bolt [OPTIONS] COMMAND [ARGS]..." in bare.output and "Commands:" in bare.output


# ---------------------------------------------------------------- missing token at the command line


def test_publish_without_a_token_names_the_variable_and_the_flag(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    results = build_results([StageComparison(name="t::a", verdict=UNCHANGED, ratio=1.0)], settings={})
    results.write(folder / "results.json")
    env = {"GITHUB_TOKEN": "", "GITHUB_REPOSITORY": "o/r"}
    result = CliRunner().invoke(main, ["publish", str(folder), "--pr", "1"], env=env)
    assert result.exit_code == 3
    assert result.stderr == ("bolt: error: no GitHub token: set GITHUB_TOKEN, or pass --token-env NAME of the "
                             "variable that holds one\n")
    other = CliRunner().invoke(main, ["publish", str(folder), "--pr", "1", "--token-env", "MY_TOKEN"],
                               env={**env, "MY_TOKEN": ""})
    assert other.exit_code == 3 and "MY_TOKEN (named by --token-env) is not set or empty" in other.stderr
    assert "github-token input" not in result.stderr + other.stderr


# ---------------------------------------------------------------- plurals and units


def test_one_round_and_one_stage_are_singular():
    result = CliRunner().invoke(main, ["compare", "--base", str(IDNA / "base-1.json"), "--head", str(IDNA / "head-1.json"),
                                       "--format", "markdown"])
    assert "wall time: 1 round per side;" in result.stdout and "1 rounds" not in result.stdout
    one = build_results([StageComparison(name="t::a", verdict=UNCHANGED, ratio=1.0),
                         StageComparison(name="t::b", verdict=REGRESSED, ratio=1.5)],
                        settings=Settings().to_dict(), environment={"rounds": 1, "plan": "interleaved"})
    for text in (render_comment(one), render_summary(one)):
        assert "<summary>1 unchanged stage</summary>" in text and "1 interleaved round per side" in text
    paired = build_results([], settings=Settings().to_dict(), environment={"paired": {"pairs": 1}, "rounds": 1})
    assert "paired on one CPU, 1 process pair, and 1 interleaved round per side" in render_comment(paired)


def test_instruction_counts_keep_the_same_number_of_digits():
    assert [format_amount(v, "instr") for v in (12e6, 31.7e6, 1234, 345.4)] == \
        ["12.00 M instr", "31.70 M instr", "1.234 k instr", "345 instr"]
