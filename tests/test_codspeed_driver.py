"""Instruction counts of suites written for pytest-benchmark, as real projects write them (real valgrind, real uv env)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bolt_bot.measure.counts import codspeed_requirement, measure_instructions, valgrind_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(valgrind_available() is None, reason="valgrind is not installed"),
    pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed"),
]


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("driver-venv") / "venv"
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(root)], check=True, capture_output=True)
    exe = root / "bin" / "python"
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(exe), "pytest", "pytest-benchmark",
                    codspeed_requirement()], check=True, capture_output=True)
    return exe


def _suite(root: Path, code: str) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_bench.py").write_text(textwrap.dedent(code))
    return root


def test_pytest_benchmark_marker_options_do_not_fail_the_stage(python, tmp_path):
    # fastjsonschema's benchmarks carry @pytest.mark.benchmark(min_rounds=20), which pytest-codspeed rejects.
    checkout = _suite(tmp_path / "repo", """
        import pytest

        @pytest.mark.benchmark(min_rounds=20, group="g")
        def test_marked(benchmark):
            benchmark(sum, range(100))
    """)
    run = measure_instructions(python, checkout, ["tests"], workdir=tmp_path / "work")
    assert run.failed == {}, run.failed
    assert run.counts.get("tests/test_bench.py::test_marked", 0) > 0


def test_the_counted_call_is_not_the_cold_first_one(python, tmp_path):
    # A stage whose first call fills a cache (python-statemachine's "cache signature binding results"):
    # counting the first call measures the filling, not what every later call costs.
    checkout = _suite(tmp_path / "repo", """
        CACHE = {}

        def work():
            if "table" not in CACHE:
                CACHE["table"] = [i * i for i in range(20000)]
            return CACHE["table"][7]

        def test_cached(benchmark):
            benchmark(work)

        def test_cached_pedantic(benchmark):
            benchmark.pedantic(work, rounds=10, iterations=100)
    """)
    run = measure_instructions(python, checkout, ["tests"], workdir=tmp_path / "work")
    assert run.failed == {}, run.failed
    # Filling the table costs far more than 100k instructions; a warm call costs a few hundred.
    for name in ("tests/test_bench.py::test_cached", "tests/test_bench.py::test_cached_pedantic"):
        assert 0 < run.counts[name] < 50_000, run.counts
