"""Reading pytest-benchmark JSON files (versions 3.x to 5.x) into BenchmarkRound records."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bolt_bot.errors import BoltError
from bolt_bot.model import BenchmarkRound, _short

MAX_FILE_BYTES = 512 * 1024 * 1024  # a saved run with raw data for 10,000 stages stays well below this


def read_round(path: Path) -> list[BenchmarkRound]:
    """One pytest-benchmark JSON file (one process, one round) → one record per benchmark."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BoltError(f"{path}: {size} bytes is too large for a pytest-benchmark file")
        raw = path.read_bytes()
    except OSError as exc:
        raise BoltError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise BoltError(f"{path}: empty file, expected pytest-benchmark JSON")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise BoltError(f"{path}: not text (is this a pytest-benchmark JSON file?)") from None
    except json.JSONDecodeError as exc:
        raise BoltError(f"{path}: not valid JSON, {exc.msg} at line {exc.lineno} column {exc.colno} (truncated?)") from None
    except ValueError as exc:
        raise BoltError(f"{path}: {exc}") from None
    except RecursionError:  # nesting deeper than Python's parser goes: no pytest-benchmark file looks like that
        raise BoltError(f"{path}: not a pytest-benchmark file (JSON nested too deeply)") from None
    return parse_round(data, str(path))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"the JSON holds {name}, which pytest-benchmark never writes")


def parse_round(data: Any, source: str) -> list[BenchmarkRound]:
    """Benchmarks of one already-decoded pytest-benchmark document."""
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise BoltError(f"{source}: not a pytest-benchmark file (no 'benchmarks' list at the top)")
    benchmarks = data["benchmarks"]
    if not isinstance(benchmarks, list):
        raise BoltError(f"{source}: 'benchmarks' is a {type(benchmarks).__name__}, expected a list")
    rounds = []
    seen: set[str] = set()
    for index, bench in enumerate(benchmarks):
        record = _parse_benchmark(bench, f"{source}: benchmark #{index + 1}")
        if record.name in seen:
            raise BoltError(f"{source}: benchmark {_short(record.name)} appears twice")
        seen.add(record.name)
        rounds.append(record)
    return rounds


def _parse_benchmark(bench: Any, where: str) -> BenchmarkRound:
    if not isinstance(bench, dict):
        raise BoltError(f"{where}: expected an object")
    name = bench.get("fullname") or bench.get("name")
    if not isinstance(name, str) or not name:
        raise BoltError(f"{where}: has no name")
    where = f"{where} ({name if len(name) <= 100 else name[:99] + '…'})"  # a message stays short
    stats = bench.get("stats")
    if not isinstance(stats, dict):
        raise BoltError(f"{where}: has no 'stats' object")
    numbers = {}
    for key in ("median", "mean", "min", "max"):
        numbers[key] = _number(stats.get(key), f"{where}: stats.{key}")
    stddev = stats.get("stddev", 0.0)
    numbers["stddev"] = 0.0 if stddev is None else _number(stddev, f"{where}: stats.stddev")
    # Optional (older or hand-made files lack them): how widely the calls spread inside the process.
    quartiles = None
    if stats.get("q1") is not None and stats.get("q3") is not None:
        quartiles = (_number(stats["q1"], f"{where}: stats.q1"), _number(stats["q3"], f"{where}: stats.q3"))
    samples = stats.get("rounds", 0)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise BoltError(f"{where}: stats.rounds is {_short(samples)}, expected a count")
    data = stats.get("data")
    if data is not None:
        if not isinstance(data, list):
            raise BoltError(f"{where}: stats.data is not a list")
        data = [_number(v, f"{where}: stats.data") for v in data]
    group = bench.get("group")
    params = bench.get("params")
    extra = bench.get("extra_info")
    return BenchmarkRound(
        name=name,
        group=group if isinstance(group, str) else None,
        params=params if isinstance(params, dict) else None,
        extra_info=extra if isinstance(extra, dict) else {},
        samples=samples,
        quartiles=quartiles,
        data=data,
        **numbers,
    )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BoltError(f"{where} is {_short(value)}, expected a number")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond any float: no timing is that long
        raise BoltError(f"{where} is too large a number") from None
    if not math.isfinite(value) or value < 0:
        raise BoltError(f"{where} is {_short(value)}, expected a finite time")
    return value


def read_rounds(paths: list[Path]) -> list[list[BenchmarkRound]]:
    """Several files, one per round; each round is one list of benchmarks."""
    return [read_round(Path(p)) for p in paths]
