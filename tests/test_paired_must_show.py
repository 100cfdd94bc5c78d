"""Issue 15's must-show: on a repository Bolt has never seen, `bolt run --measure walltime` with its defaults (whole
rounds, which won the detection benchmark) finds the two stages head slowed by 6-7 % and flags none of the four
it left alone; so does the paired engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import commit, git, make_repo

pytestmark = pytest.mark.slow

# Six stages of different kinds, about 100 µs to 5 ms per call on a 2-vCPU VM. Each does `units` small
# pieces of the same work, so a weight of 1.06 is 6 % more of the very same code path.
UNITS = {"cpu_sum": 2000, "dict_lookup": 1400, "cpu_float": 5000, "alloc_lists": 4000, "str_split": 3000,
         "str_format": 6400}
SLOWED = {"cpu_float": 1.06, "str_split": 1.07}

KERNELS = '''"""Six kinds of work; each stage does `n` units of it."""

import json
from pathlib import Path

UNITS = {units!r}
WEIGHTS = json.loads((Path(__file__).parent / "weights.json").read_text())


def cpu_sum(n):
    acc = 0
    for i in range(n):
        acc += i * i ^ (i >> 3)
    return acc


def dict_lookup(n):
    table = {{f"k{{i}}": i for i in range(64)}}
    keys = list(table)
    acc = 0
    for i in range(n):
        key = keys[i & 63]
        acc += table[key]
        table[key] = acc & 0xFFFF
    return acc


def cpu_float(n):
    x, acc = 1.5, 0.0
    for _ in range(n):
        x = 0.5 * (x + 2.0 / x)
        acc += x * 1.0000001
    return acc


def alloc_lists(n):
    keep = []
    for i in range(n):
        keep.append([i, i + 1, i + 2, i + 3])
    return len(keep)


def str_split(n):
    line = "alpha beta gamma delta epsilon zeta eta theta"
    total = 0
    for _ in range(n):
        total += len(line.replace("a", "A").split()[3].upper())
    return total


def str_format(n):
    return len(",".join(f"{{i:05d}}-{{i % 7}}" for i in range(n)))


def units(name):
    return round(UNITS[name] * WEIGHTS[name])
'''

BENCH = '''import pytest

import workload


@pytest.mark.parametrize("stage", {names!r})
def test_stage(benchmark, stage):
    benchmark(getattr(workload, stage), workload.units(stage))
'''

PYPROJECT = '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "workload"
version = "0"

[tool.setuptools]
py-modules = ["workload"]
'''


def never_seen_repo(where):
    """Base: every weight 1. Head: two stages do 6 and 7 % more units of their own work."""
    weights = {name: 1.0 for name in UNITS}
    repo = make_repo(where, {
        "pyproject.toml": PYPROJECT,
        "workload.py": KERNELS.format(units=UNITS),
        "weights.json": json.dumps(weights),
        "bench/test_stages.py": BENCH.format(names=list(UNITS)),
    })
    base = git(repo, "rev-parse", "HEAD")
    head = commit(repo, {"weights.json": json.dumps({**weights, **SLOWED})}, "head: two stages do more")
    return repo, base, head


@pytest.mark.parametrize("engine", [None, "paired"])  # None: the defaults (whole rounds), then the paired engine
def test_walltime_defaults_find_both_slowed_stages_and_flag_nothing_else(tmp_path, engine):
    repo, base, head = never_seen_repo(tmp_path / "never-seen")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bolt_bot", "run", "--repo", str(repo), "--base", base, "--head", head,
                           "--measure", "walltime", "--quiet", "--out", str(out),
                           *(["--walltime-engine", engine] if engine else [])],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["environment"]["walltime_engine"] == (engine or "rounds")
    stages = {s["name"].split("[")[1].rstrip("]"): s for s in results["stages"]}
    assert set(stages) == set(UNITS)
    summary = {n: (s["verdict"], round((s["ratio"] or 0) - 1, 3), s["ci"], s["note"]) for n, s in stages.items()}
    flagged = {n for n, s in stages.items() if s["verdict"] in ("regressed", "improved")}
    assert flagged == set(SLOWED), summary
    assert all(stages[n]["verdict"] == "regressed" for n in SLOWED), summary
    assert "2 stages slower" in (out / "comment.md").read_text()
