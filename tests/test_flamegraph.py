"""Flame graph SVG and speedscope JSON, checked as XML, as data, and in a real headless browser."""

from __future__ import annotations

import cProfile
import os
import re
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from bolt_bot.profiling.flamegraph import call_tree, display_name, flamegraph_svg, speedscope_json
from bolt_bot.profiling.collect import FunctionStats, FunctionTable, load_profile

SVG_NS = "{http://www.w3.org/2000/svg}"
CHROMIUM = Path("/usr/bin/chromium")


def hot_spin(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def cold_step(n):
    return sorted(range(n))


def pipeline():
    return hot_spin(200_000) + len(cold_step(2_000))


@pytest.fixture(scope="module")
def pstats_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "stage.pstats"
    profiler = cProfile.Profile()
    for _ in range(3):
        profiler.enable()
        pipeline()
        profiler.disable()
    profiler.dump_stats(str(path))
    return path


@pytest.fixture(scope="module")
def table(pstats_file) -> FunctionTable:
    return load_profile(pstats_file, Path(__file__).parent, calls=3)


@pytest.fixture(scope="module")
def svg_text(table) -> str:
    return flamegraph_svg(table, "tests/test_flamegraph.py::pipeline")


def test_svg_parses_and_names_the_hot_function(svg_text):
    doc = ET.fromstring(svg_text.encode("utf-8"))
    assert doc.tag == f"{SVG_NS}svg"
    tips = [t.text or "" for t in doc.iter(f"{SVG_NS}title")]
    hot = [t for t in tips if t.startswith("hot_spin ")]
    assert hot and "test_flamegraph.py:" in hot[0]
    share = float(re.search(r"\(([\d.]+)%\) on this path", hot[0]).group(1))
    assert share > 50  # the spin loop is most of the stage
    labels = [t.text or "" for t in doc.iter(f"{SVG_NS}text")]
    assert any(label.startswith("hot_spin") for label in labels)


def test_tree_widths_add_up(table):
    tree = call_tree(table)
    assert tree.value == pytest.approx(table.total, rel=0.05)

    def check(node):
        assert sum(c.value for c in node.children) <= node.value * (1 + 1e-9)
        for child in node.children:
            check(child)

    check(tree)


def test_names_from_the_measured_project_are_escaped():
    nasty = FunctionStats(
        key='evil/<script>&"x".py:1(<lambda>&\x07)', file='evil/<script>&"x".py', line=1,
        name="<lambda>&\x07", own=0.5, cum=0.5, calls=1,
    )
    svg = flamegraph_svg(FunctionTable(functions={nasty.key: nasty}), "a <b> & 'c'")
    doc = ET.fromstring(svg.encode("utf-8"))  # would raise on a stray < or & or control character
    assert "<script>" not in svg
    assert any("<lambda>&" in (t.text or "") for t in doc.iter(f"{SVG_NS}title"))


def test_empty_profile_still_renders():
    svg = flamegraph_svg(FunctionTable(functions={}), "nothing")
    ET.fromstring(svg.encode("utf-8"))
    assert "no time recorded" in svg


def test_display_names_for_builtins():
    sorted_ = FunctionStats(key="", file="~", line=0, name="<built-in method builtins.sorted>")
    lower = FunctionStats(key="", file="~", line=0, name="<method 'lower' of 'str' objects>")
    assert display_name(sorted_) == "sorted" and display_name(lower) == "str.lower"


def test_speedscope_file_format(table):
    data = speedscope_json({"stage-a": table, "stage-b": table}, "suite")
    assert data["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert {"shared", "profiles", "name", "activeProfileIndex", "exporter"} <= set(data)
    frames = data["shared"]["frames"]
    assert all(isinstance(f["name"], str) and "file" in f for f in frames)
    assert [p["name"] for p in data["profiles"]] == ["stage-a", "stage-b"]
    for profile in data["profiles"]:
        assert profile["type"] == "sampled" and profile["unit"] == "seconds"
        assert len(profile["samples"]) == len(profile["weights"]) > 0
        assert all(0 <= i < len(frames) for stack in profile["samples"] for i in stack)
        assert profile["endValue"] == pytest.approx(sum(profile["weights"]))
        assert profile["endValue"] == pytest.approx(table.total, rel=0.05)
    hot = next(i for i, f in enumerate(frames) if f["name"] == "hot_spin")
    heaviest = max(zip(data["profiles"][0]["weights"], data["profiles"][0]["samples"]))
    assert heaviest[1][-1] == hot


# ---------------------------------------------------------------- headless browser


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit PNG: just enough decoding to judge a screenshot."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            up = previous[x]
            corner = previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, bpp, rows


def _colour_variety(png: Path) -> tuple[int, float]:
    """Distinct colours, and the share of pixels that differ from the most common one."""
    _, bpp, rows = _png_pixels(png.read_bytes())
    counts: dict[bytes, int] = {}
    for row in rows[::2]:
        for x in range(0, len(row), bpp * 2):
            pixel = row[x : x + 3]
            counts[pixel] = counts.get(pixel, 0) + 1
    total = sum(counts.values())
    return len(counts), 1 - max(counts.values()) / total


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    env = dict(os.environ, HOME=str(tmp_path))  # chromium writes caches under HOME
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium)")
def test_svg_and_html_render_in_headless_chromium(tmp_path, svg_text, table):
    svg = tmp_path / "flame.svg"
    svg.write_text(svg_text, encoding="utf-8")
    html = tmp_path / "index.html"
    html.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>waiting</title></head><body>"
        "<h1>Profile</h1><p><a id='link' href='flame.svg'>flame graph</a></p>"
        "<img id='fg' src='flame.svg' width='1200' "
        "onload=\"document.title='loaded '+this.naturalWidth\" onerror=\"document.title='broken'\">"
        "</body></html>",
        encoding="utf-8",
    )

    shot = tmp_path / "svg.png"
    done = _chromium(tmp_path, "--window-size=1200,400", f"--screenshot={shot}", svg.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    colours, covered = _colour_variety(shot)
    assert colours >= 8 and covered > 0.05, (colours, covered)

    done = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", html.as_uri())
    assert "<title>loaded 1200</title>" in done.stdout, (done.stdout[-1000:], done.stderr[-2000:])
    assert 'href="flame.svg"' in done.stdout

    page_shot = tmp_path / "page.png"
    _chromium(tmp_path, "--window-size=1300,600", "--virtual-time-budget=5000", f"--screenshot={page_shot}", html.as_uri())
    colours, covered = _colour_variety(page_shot)
    assert colours >= 8 and covered > 0.05, (colours, covered)
    keep = os.environ.get("BOLT_KEEP_SCREENSHOTS")
    if keep:  # for a person to look at: BOLT_KEEP_SCREENSHOTS=/some/dir pytest tests/test_flamegraph.py
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "flame.png").write_bytes(shot.read_bytes())
        (Path(keep) / "page.png").write_bytes(page_shot.read_bytes())
