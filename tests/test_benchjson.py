"""Reading pytest-benchmark JSON of versions 3.x to 5.x, and refusing anything else with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bolt_bot.decide.benchjson import read_round
from bolt_bot.errors import BoltError

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    "name, has_data",
    [("pytest-benchmark-3.4.1.json", True), ("pytest-benchmark-4.0.0-nodata.json", False), ("pytest-benchmark-5-autosave.json", False)],
)
def test_reads_every_version(name, has_data):
    records = {r.name: r for r in read_round(DATA / "formats" / name)}
    assert set(records) == {"test_tiny.py::test_sum[10]", "test_tiny.py::test_sum[100]", "test_tiny.py::test_join"}
    summed = records["test_tiny.py::test_sum[100]"]
    assert summed.params == {"n": 100}
    assert summed.extra_info == {"n": 100}
    assert records["test_tiny.py::test_join"].group == "strings"
    assert 0 < summed.min <= summed.median <= summed.max
    assert (summed.data is not None) == has_data


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "round.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


GOOD = (DATA / "formats" / "pytest-benchmark-4.0.0-nodata.json").read_text()


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty file"),
        (GOOD[: len(GOOD) // 2], "not valid JSON"),
        ('{"coverage": 1}', "not a pytest-benchmark file"),
        ("[1, 2]", "not a pytest-benchmark file"),
        ('{"benchmarks": {}}', "expected a list"),
        ('{"benchmarks": [{"name": "x"}]}', "has no 'stats'"),
        ('{"benchmarks": [{"name": "x", "stats": {"median": "fast"}}]}', "expected a number"),
        ('{"benchmarks": [{"name": "x", "stats": {"median": NaN, "mean": 1, "min": 1, "max": 1}}]}', "NaN"),
        (b"\xff\xfe\x00", "not text"),
    ],
)
def test_broken_files_give_one_line_naming_the_file(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(BoltError) as info:
        read_round(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_duplicate_names_are_refused(tmp_path):
    doc = json.loads(GOOD)
    doc["benchmarks"].append(doc["benchmarks"][0])
    with pytest.raises(BoltError, match="appears twice"):
        read_round(write(tmp_path, json.dumps(doc)))
