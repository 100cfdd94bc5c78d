"""`bolt profile` on a real three-stage project: report.md, pstats, SVGs, speedscope JSON and index.html in chromium."""

from __future__ import annotations

import json
import os
import pstats
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.profiling.collect import FunctionStats, FunctionTable, top_bottlenecks
from bolt_bot.profiling.fullreport import _bottleneck_row
from tests.test_flamegraph import CHROMIUM, _chromium, _colour_variety, _png_pixels

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SVG_NS = "{http://www.w3.org/2000/svg}"
HOT = "_crunch_checksum"
# The third stage's id carries markup, a mention and a table pipe: the report must show it, never obey it.
NASTY_ID = "<i>@team|x</i>"
STAGES = {
    "load": "benchmarks/test_pipeline.py::test_load",
    "transform": "benchmarks/test_pipeline.py::test_transform",
    "render": f"benchmarks/test_pipeline.py::test_render[{NASTY_ID}]",
}

STAGES_SOURCE = '''"""A tiny three-stage pipeline; `transform` hides an obviously hot helper."""


def load(n):
    return [f"{i},{i * 7 % 13},city{i % 5}" for i in range(n)]


def _crunch_checksum(value):
    total = 0
    for i in range(400):
        total = (total * 31 + value + i) % 1_000_003
    return total


def transform(rows):
    return [(row, _crunch_checksum(len(row))) for row in rows]


def render(pairs):
    return "\\n".join(f"{row}:{check}" for row, check in pairs)
'''

BENCHMARKS = f'''import pytest

from pipeline.stages import load, render, transform

ROWS = load(300)
PAIRS = [(r, 1) for r in ROWS]


def test_load(benchmark):
    benchmark(load, 300)


def test_transform(benchmark):
    benchmark(transform, ROWS)


@pytest.mark.parametrize("pairs", [PAIRS], ids=[{NASTY_ID!r}])
def test_render(benchmark, pairs):
    benchmark(render, pairs)


def test_not_a_benchmark():
    assert load(2)
'''


@pytest.fixture(scope="session", autouse=True)
def _env_cache(tmp_path_factory):
    """Environments live in one directory per test session (reused across these tests), never in ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        if "BOLT_CACHE_DIR" not in os.environ:  # a session-wide cache set up elsewhere serves as well
            patch.setenv("BOLT_CACHE_DIR", str(tmp_path_factory.mktemp("bolt-cache")))
        yield


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A real git repository; no pyproject.toml, so envs.prepare installs only pytest and pytest-benchmark."""
    repo = tmp_path_factory.mktemp("project") / "repo"
    files = {
        "pipeline/__init__.py": "",
        "pipeline/stages.py": STAGES_SOURCE,
        "benchmarks/test_pipeline.py": BENCHMARKS,
        "pytest.ini": "[pytest]\npythonpath = .\n",
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text, encoding="utf-8")
    _git(repo, "init", "--quiet", "--initial-branch=main")
    for key, value in (("user.name", "Test"), ("user.email", "test@example.invalid"), ("commit.gpgsign", "false")):
        _git(repo, "config", key, value)
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "pipeline")
    return repo


@pytest.fixture(scope="module")
def full(project, tmp_path_factory):
    """One `bolt profile` of the whole suite through click, as in Actions (with a job summary file)."""
    out = tmp_path_factory.mktemp("full") / "bolt-profile"
    summary = out.parent / "step-summary.md"
    summary.write_text("# earlier step\n", encoding="utf-8")
    started = time.monotonic()
    result = CliRunner().invoke(main, ["profile", "--repo", str(project), "--out", str(out), "--quiet"],
                                env={"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTIONS": None})
    seconds = time.monotonic() - started
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    print(f"bolt profile (CliRunner) took {seconds:.1f} s")
    return out, summary, result


def _slug_files(out: Path, suffix: str) -> dict[str, Path]:
    return {p.stem: p for p in out.glob(f"*{suffix}")}


def test_report_names_every_stage_and_the_hot_function(full):
    out, _, result = full
    report = (out / "report.md").read_text(encoding="utf-8")
    assert str(out / "report.md") in result.output
    table = report.split("## Time per stage", 1)[1].split("## Top bottlenecks", 1)[0]
    for stage in ("test_pipeline.py::test_load", "test_pipeline.py::test_transform", "test_pipeline.py::test_render&#91;"):
        assert stage in table
    rows = [line for line in table.splitlines() if line.startswith("| benchmarks/")]
    assert len(rows) == 3 and "test_transform" in rows[0]  # slowest first
    shares = [float(re.search(r"\| ([\d.]+) % \|", row).group(1)) for row in rows]
    assert sum(shares) == pytest.approx(100, abs=0.5) and shares[0] > 50

    bottlenecks = report.split("## Top bottlenecks", 1)[1].split("## Hot functions per stage", 1)[0]
    first = next(line for line in bottlenecks.splitlines() if line.startswith("1. "))
    # inert writes a leading underscore as an entity so that markdown cannot read it as emphasis
    assert "crunch_checksum" in first and "pipeline/stages.py:8" in first and "test_transform" in first
    assert len([line for line in bottlenecks.splitlines() if re.match(r"\d\. ", line)]) == 3

    hot = report.split("## Hot functions per stage", 1)[1].split("## Memory per stage", 1)[0]
    assert hot.count("<details><summary>") == 3 and hot.count("</details>") == 3
    transform = hot.split("test_transform:", 1)[1].split("</details>", 1)[0]
    first_row = next(line for line in transform.splitlines() if line.startswith("| ") and "File:line" not in line)
    assert "crunch_checksum" in first_row and "pipeline/stages.py:8" in first_row and "| 300 |" in first_row
    assert "(test_pipeline-test_transform.svg)" in transform and "(test_pipeline-test_transform.pstats)" in transform


_AMOUNT = re.compile(r"([\d.]+) (s|ms|µs|ns)\b")
_SCALE = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}


def _seconds(text: str) -> float:
    number, unit = _AMOUNT.search(text).groups()
    return float(number) * _SCALE[unit]


def test_report_md_gives_every_time_per_call_of_the_stage(full):
    out, _, _ = full
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "per run of the pipeline" not in report
    bottlenecks = report.split("## Top bottlenecks", 1)[1].split("## Hot functions per stage", 1)[0]
    first = next(line for line in bottlenecks.splitlines() if line.startswith("1. "))
    assert "of own time per call of benchmarks/test_pipeline.py::test_transform (" in first, first
    assert "% of the time of all stages together (one call of each)" in first
    hot = report.split("## Hot functions per stage", 1)[1].split("## Memory per stage", 1)[0]
    for block in hot.split("<details><summary>")[1:]:
        stage_time = _seconds(block.split("</summary>", 1)[0].rsplit(":", 1)[1])
        assert "scaled to its " in block and "without the profiler (cProfile's overhead removed)" in block
        rows = [line.split(" | ") for line in block.splitlines() if line.startswith("| ") and "File:line" not in line]
        own = sum(_seconds(row[2]) for row in rows)
        assert 0 < own <= stage_time * 1.01, (own, stage_time)  # the functions add up to the stage, not beyond
        assert all(_seconds(row[3]) <= stage_time * 1.01 for row in rows)  # nor does any cumulative time


def test_project_text_is_inert_in_markdown_and_escaped_in_html(full):
    out, _, _ = full
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "<i>" not in report and "@team" not in report and "|x" not in report
    assert "&lt;i&gt;&#64;\u2060team&#124;x&lt;/i&gt;" in report
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "<i>" not in html and "&lt;i&gt;@team|x&lt;/i&gt;" in html


def test_one_pstats_and_one_svg_per_stage(full):
    out, _, _ = full
    svgs, dumps = _slug_files(out, ".svg"), _slug_files(out, ".pstats")
    assert set(svgs) == set(dumps) and len(svgs) == 3
    assert {"test_pipeline-test_load", "test_pipeline-test_transform"} <= set(svgs)
    for dump in dumps.values():
        stats = pstats.Stats(str(dump))
        assert stats.total_calls > 0  # type: ignore[attr-defined]
    names = {func[2] for func in pstats.Stats(str(dumps["test_pipeline-test_transform"])).stats}  # type: ignore[attr-defined]
    assert HOT in names


def test_svg_names_the_hot_function(full):
    """The screenshot-free check: the transform stage's flame graph has a frame titled by the hot helper."""
    out, _, _ = full
    doc = ET.parse(out / "test_pipeline-test_transform.svg").getroot()
    assert doc.tag == f"{SVG_NS}svg"
    tips = [t.text or "" for t in doc.iter(f"{SVG_NS}title")]
    hot = [t for t in tips if t.startswith(f"{HOT} ")]
    assert hot and "pipeline/stages.py:8" in hot[0]
    assert any((t.text or "").startswith(HOT) for t in doc.iter(f"{SVG_NS}text"))


def test_speedscope_has_every_stage(full):
    out, _, _ = full
    data = json.loads((out / "profile.speedscope.json").read_text(encoding="utf-8"))
    assert data["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert {"$schema", "profiles", "shared"} <= set(data)
    assert sorted(p["name"] for p in data["profiles"]) == sorted(STAGES.values())
    assert any(f["name"] == HOT for f in data["shared"]["frames"])


def test_index_links_everything_relatively(full):
    out, _, _ = full
    html = (out / "index.html").read_text(encoding="utf-8")
    links = set(re.findall(r'(?:href|src|data)="([^"#]+)"', html))
    local = {link for link in links if "://" not in link}
    assert {"report.md", "profile.speedscope.json"} <= local
    for path in _slug_files(out, ".svg").values():
        assert path.name in local and f'data="{path.name}"' in html  # embedded, not only linked
    for path in _slug_files(out, ".pstats").values():
        assert path.name in local
    assert all((out / link).is_file() for link in local)
    assert "<script" not in html


def test_report_goes_to_the_job_summary(full):
    out, summary, _ = full
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# earlier step\n")  # appended, not replaced
    assert text.endswith((out / "report.md").read_text(encoding="utf-8"))


def test_filter_narrows_to_the_chosen_stage_as_a_subprocess(project, tmp_path):
    out = tmp_path / "narrow"
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bolt_bot", "profile", "--repo", str(project), "--ref", "main",
                           "-k", "transform", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path, check=False)
    print(f"bolt profile -k (subprocess) took {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stderr
    assert "Profiling every stage" in proc.stderr  # progress goes to stderr, the result line to stdout
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "test_transform" in report and "test_load" not in report and "test_render" not in report
    assert "1 stage matching `-k` transform" in report
    assert set(_slug_files(out, ".svg")) == set(_slug_files(out, ".pstats")) == {"test_pipeline-test_transform"}


def test_a_filter_that_matches_nothing_is_one_line(project, tmp_path):
    result = CliRunner().invoke(main, ["profile", "--repo", str(project), "-k", "nothing_like_this",
                                       "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "nothing_like_this" in result.stderr


def test_a_missing_ref_is_exit_2_with_one_line(project, tmp_path):
    result = CliRunner().invoke(main, ["profile", "--repo", str(project), "--ref", "no-such-branch",
                                       "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("bolt: error: ")
    assert "no-such-branch" in result.stderr
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_not_a_repository_is_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["profile", "--repo", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not a git repository" in result.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium)")
def test_index_html_reads_in_headless_chromium(full, tmp_path):
    out, _, _ = full
    shot = tmp_path / "index.png"
    done = _chromium(tmp_path, "--window-size=1200,900", "--virtual-time-budget=5000", f"--screenshot={shot}",
                     (out / "index.html").as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    colours, covered = _colour_variety(shot)
    assert colours >= 8 and covered > 0.05, (colours, covered)
    # The hot helper's frame must be painted on the page: its exact fill from the SVG appears in the screenshot,
    # which only happens when the embedded flame graph loaded from its relative path.
    doc = ET.parse(out / "test_pipeline-test_transform.svg").getroot()
    frame = next(g for g in doc.iter(f"{SVG_NS}g") if (g.findtext(f"{SVG_NS}title") or "").startswith(f"{HOT} "))
    fill = tuple(int(v) for v in re.findall(r"\d+", frame.find(f"{SVG_NS}rect").get("fill")))
    _, bpp, rows = _png_pixels(shot.read_bytes())
    painted = sum(1 for row in rows for x in range(0, len(row), bpp) if tuple(row[x:x + 3]) == fill)
    assert painted > 500, painted
    keep = os.environ.get("BOLT_KEEP_SCREENSHOTS")
    if keep:  # for a person to look at: BOLT_KEEP_SCREENSHOTS=/some/dir pytest tests/test_report.py
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "profile-index.png").write_bytes(shot.read_bytes())


def test_a_bottleneck_in_a_builtin_names_the_project_function_behind_it():
    def fn(key, file, line, name, own, cum, callers):
        return FunctionStats(key=key, file=file, line=line, name=name, own=own, cum=cum, calls=1, callers=callers)

    render = fn("p/s.py:19(render)", "p/s.py", 19, "render", 0.001, 0.1, {})
    join = fn("~:0(<method 'join' of 'str' objects>)", "~", 0, "<method 'join' of 'str' objects>", 0.01, 0.099,
              {render.key: (1, 0.01, 0.099)})
    genexpr = fn("p/s.py:20(<genexpr>)", "p/s.py", 20, "<genexpr>", 0.089, 0.089, {join.key: (300, 0.089, 0.089)})
    tables = {"stage": FunctionTable(functions={f.key: f for f in (render, join, genexpr)})}
    rows = [_bottleneck_row(b, tables) for b in top_bottlenecks(tables, 3)]
    assert [r["name"] for r in rows] == ["<genexpr>", "str.join", "render"]
    assert rows[0]["responsible"] == rows[1]["responsible"] == ["render (p/s.py:19)"]
    assert rows[2]["responsible"] == []  # a named project function is responsible for itself


def test_the_memory_picture_names_each_stages_allocating_line(full):
    """One call per stage traced by bolt run's memory pass (memray, installed into the profile's environment):
    report.md and index.html give its allocations, bytes and peak in units that read, and its top line,
    `load`'s list of 300 new strings (pipeline/stages.py:5)."""
    out, _, _ = full
    report = (out / "report.md").read_text(encoding="utf-8")
    memory = report.split("## Memory per stage", 1)[1].split("<sub>Profiled by", 1)[0]
    assert "(memray): every allocation of the call, freed or not" in memory and "ᵗ" not in memory
    rows = [line for line in memory.splitlines() if line.startswith("| benchmarks/")]
    assert len(rows) == 3 and all(re.search(r"\| [\d,.]+( k)? \| [\d.]+ (B|KiB|MiB) \| [\d.]+ (B|KiB|MiB) \|$", r)
                                  for r in rows), rows
    load = memory.split("test_pipeline.py::test_load: allocating lines</summary>", 1)[1].split("</details>", 1)[0]
    first = next(line for line in load.splitlines() if line.startswith("| ") and "Line |" not in line)
    assert re.match(r"\| pipeline/stages\.py:5 ⁺ \| (load|&lt;listcomp&gt;) \| ", first), first
    assert int(first.split(" | ")[2].replace(",", "")) >= 300 and re.search(r"\| [\d.]+ KiB \|$", first)
    # the hostile stage id stays inert here too
    assert "test_render&#91;&lt;i&gt;&#64;\u2060team&#124;x&lt;/i&gt;&#93;: allocating lines" in memory
    html = (out / "index.html").read_text(encoding="utf-8")
    section = html.split('<h2 id="memory">Memory per stage</h2>', 1)[1].split('<p class="note">Time per call', 1)[0]
    assert re.search(r'<td class="mono">pipeline/stages\.py:5</td><td class="mono">(load|&lt;listcomp&gt;)</td>', section)
    assert "&lt;i&gt;@team|x&lt;/i&gt;" in section and "<i>" not in section
