"""`bolt compare` through click's runner and as a real subprocess, on real pytest-benchmark output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from bolt_bot.cli import main

IDNA = Path(__file__).parent / "data" / "idna"
BASE = [str(IDNA / f"base-{i}.json") for i in range(1, 6)]
HEAD = [str(IDNA / f"head-{i}.json") for i in range(1, 6)]
SPEEDUP = "test_idna_bench.py::test_crafted_joiners[\\u200c]"


def args(base, head, *extra):
    return [x for b in base for x in ("--base", b)] + [x for h in head for x in ("--head", h)] + list(extra)


def run(argv):
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    return result.exit_code, result.output


def test_known_speedup_is_improved_and_nothing_regressed():
    code, out = run(["compare", *args(BASE, HEAD, "--format", "json")])
    assert code == 0
    data = json.loads(out)
    verdicts = {s["name"]: s["verdict"] for s in data["stages"]}
    assert data["schema"] == "bolt/results/v1"
    assert verdicts[SPEEDUP] == "improved"
    assert "regressed" not in verdicts.values()
    stage = next(s for s in data["stages"] if s["name"] == SPEEDUP)
    assert stage["ratio"] < 0.5 and stage["ci"][1] < 1 and stage["p"] < 0.05


def test_swapped_sides_turn_the_speedup_into_a_regression():
    code, out = run(["compare", *args(HEAD, BASE, "--format", "json", "--fail-on-regression")])
    assert code == 1
    verdicts = {s["name"]: s["verdict"] for s in json.loads(out)["stages"]}
    assert [n for n, v in verdicts.items() if v == "regressed"] == [SPEEDUP]
    assert "improved" not in verdicts.values()


def test_text_and_markdown_formats():
    code, out = run(["compare", *args(BASE, HEAD)])
    assert code == 0 and out.startswith("⚡ 1 stage faster") and "improved" in out
    code, out = run(["compare", *args(BASE, HEAD, "--format", "markdown")])
    assert code == 0 and "<!-- bolt:comment -->" in out and "faster" in out


def test_broken_file_exits_2_with_one_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"benchmarks": [')
    proc = subprocess.run(
        [sys.executable, "-m", "bolt_bot", "compare", "--base", str(broken), "--head", HEAD[0]],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.json" in lines[0] and "Traceback" not in proc.stderr


def test_missing_file_and_bad_option_exit_2():
    proc = subprocess.run([sys.executable, "-m", "bolt_bot", "compare", "--base", "nope.json", "--head", "nope.json"], capture_output=True, text=True)
    assert proc.returncode == 2 and "nope.json" in proc.stderr and "Traceback" not in proc.stderr
    code, _ = run(["compare", *args(BASE, HEAD, "--threshold", "200")])
    assert code == 2


def test_console_script_is_installed():
    proc = subprocess.run(["bolt", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "bolt" in proc.stdout


def test_each_side_takes_every_file_after_it_as_a_shell_glob_gives_them():
    """The README writes `--base F... --head F...`: `--base base-*.json` expands to several words."""
    from click.testing import CliRunner

    from bolt_bot.cli import main

    data = Path(__file__).parent / "data" / "idna"
    base = sorted(str(p) for p in data.glob("base-*.json"))
    head = sorted(str(p) for p in data.glob("head-*.json"))
    spread = CliRunner().invoke(main, ["compare", "--base", *base, "--head", *head, "--format", "json"])
    repeated = CliRunner().invoke(main, ["compare", *[a for f in base for a in ("--base", f)],
                                         *[a for f in head for a in ("--head", f)], "--format", "json"])
    assert spread.exit_code == repeated.exit_code == 0, spread.output
    assert json.loads(spread.output)["stages"] == json.loads(repeated.output)["stages"]
    assert json.loads(spread.output)["stages"][0]["base"]["rounds"] == 5
