"""Issue 17's must-show: on a repository Bolt has never seen, `bolt run` with its defaults finds the stage head made
allocate about twice as much per call and the stage that keeps a growing cache, names the lines that allocate more
(in results.json and in comment.md), flags nothing else in time or in memory, and fails the gate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import commit, git, make_repo

pytestmark = pytest.mark.slow

# Five stages of a small bookkeeping package, each well under a millisecond per call on a 2-vCPU VM.
CORE = '''"""Bookkeeping helpers: parse ledger lines, total them, render a report."""

_last = None  # the last line read, for error messages


def parse(lines):
    records = []
    for line in lines:
        account, amount = line.split(",")
        records.append((account, int(amount)))
    return records


def totals(records):
    sums = {}
    for account, amount in records:
        sums[account] = sums.get(account, 0) + amount
    return sums


def checksum(records):
    value = 0
    for _, amount in records:
        value = (value * 31 + amount) & 0xFFFFFFFF
    return value


def render(sums):
    return "\\n".join(f"{account:>8}: {amount:10d}" for account, amount in sorted(sums.items()))


def words(lines):
    global _last
    count = 0
    for line in lines:
        _last = line.lower()
        count += len(_last.split())
    return count
'''
# Head, line for line: parse builds a richer record (about twice the allocations and bytes of a call), and words
# keeps every line it read in a module-level list that is never emptied (a cache that grows with every call: its
# peak goes up by the ~100 KB of lines each call keeps, its allocations and instructions hardly move).
HEAD_EDITS = {
    "        records.append((account, int(amount)))":
        '        records.append({"account": account.upper(), "amount": int(amount), "cents": int(amount) * 100,'
        ' "raw": line.encode()})',
    "_last = None  # the last line read, for error messages": "_seen = []  # every line read, for the audit trail",
    "    global _last": "    global _seen",
    "        _last = line.lower()": "        _seen.append(line.lower())",
    "        count += len(_last.split())": "        count += len(_seen[-1].split())",
}
PARSE_LINE = HEAD_EDITS["        records.append((account, int(amount)))"]
CACHE_LINE = HEAD_EDITS["        _last = line.lower()"]

BENCH = '''from ledger import core

LINES = [f"acct{i % 37:03d},{(i * 7919) % 100000}" for i in range(2000)]
RECORDS = [(f"acct{i % 37:03d}", (i * 7919) % 100000) for i in range(2000)]
SUMS = {f"acct{i:03d}": i * 1000 for i in range(37)}
TEXT = [" ".join(f"W{(i * j) % 997}" for j in range(100)) for i in range(200)]


def test_parse(benchmark):
    assert len(benchmark(core.parse, LINES)) == 2000


def test_totals(benchmark):
    assert len(benchmark(core.totals, RECORDS)) == 37


def test_checksum(benchmark):
    benchmark(core.checksum, RECORDS)


def test_render(benchmark):
    assert benchmark(core.render, SUMS).count("\\n") == 36


def test_words(benchmark):
    assert benchmark(core.words, TEXT) == 20000
'''

PYPROJECT = '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "ledger"
version = "0"

[tool.setuptools]
packages = ["ledger"]
'''
DOUBLED, CACHED = "test_parse", "test_words"


def head_core() -> str:
    text = CORE
    for old, new in HEAD_EDITS.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    assert text.count("\n") == CORE.count("\n")  # line for line: the changed lines keep their numbers
    return text


def line_of(text: str, line: str) -> str:
    return f"ledger/core.py:{text.splitlines().index(line) + 1}"


def never_seen_repo(where):
    repo = make_repo(where, {"pyproject.toml": PYPROJECT, "ledger/__init__.py": "", "ledger/core.py": CORE,
                             "bench/test_ledger.py": BENCH})
    base = git(repo, "rev-parse", "HEAD")
    head = commit(repo, {"ledger/core.py": head_core()}, "head: richer records, and an audit trail of every line read")
    return repo, base, head


def bolt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bolt_bot", "run", *args], capture_output=True, text=True, timeout=3600)


def test_defaults_find_the_doubled_allocations_and_the_growing_cache_and_nothing_else(tmp_path):
    repo, base, head = never_seen_repo(tmp_path / "never-seen")
    out = tmp_path / "out"
    proc = bolt("--repo", str(repo), "--base", base, "--head", head, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    stages = {s["name"].rsplit("::", 1)[-1]: s for s in results["stages"]}
    assert set(stages) == {"test_parse", "test_totals", "test_checksum", "test_render", "test_words"}
    summary = {n: (s["verdict"], s.get("measure"), (s.get("memory") or {}).get("verdict"),
                   (s.get("memory") or {}).get("regressed"), (s.get("memory") or {}).get("note"))
               for n, s in stages.items()}

    # Memory regressed on exactly the two changed stages; the cache by its peak and/or its allocations.
    memory_flagged = {n for n, s in stages.items() if (s.get("memory") or {}).get("verdict") in ("regressed", "improved")}
    assert memory_flagged == {DOUBLED, CACHED}, summary
    assert all(stages[n]["memory"]["verdict"] == "regressed" for n in memory_flagged), summary
    doubled = stages[DOUBLED]["memory"]
    assert {"allocations", "allocated"} <= set(doubled["regressed"]), summary
    assert 1.7 < doubled["head"]["allocations"] / doubled["base"]["allocations"] < 2.3, doubled  # "about twice"
    assert {"peak", "allocations"} & set(stages[CACHED]["memory"]["regressed"]), summary
    # Repeated allocation counts are exact: an untouched stage allocates the same on both sides.
    for name in set(stages) - memory_flagged:
        memory = stages[name]["memory"]
        assert memory["base"]["allocations"] == memory["head"]["allocations"], (name, memory)

    # Nothing else flagged in time either (the two changed stages may be slower too: they do more).
    time_flagged = {n for n, s in stages.items() if s["verdict"] in ("regressed", "improved")}
    assert time_flagged <= {DOUBLED, CACHED}, summary

    # The lines that allocate more, named in results.json and in the comment.
    text = head_core()
    parse_line, cache_line = line_of(text, PARSE_LINE), line_of(text, CACHE_LINE)
    assert parse_line in [line["where"] for line in doubled["lines"]], doubled["lines"]
    assert cache_line in [line["where"] for line in stages[CACHED]["memory"]["lines"]], stages[CACHED]["memory"]["lines"]

    # The gate: a memory regression fails it. The cache stage alone (environments reused) with the gate on.
    gated = bolt("--repo", str(repo), "--base", base, "--head", head, "--out", str(tmp_path / "gated"),
                 "--benchmarks", "bench/test_ledger.py::test_words", "--fail-on-regression")
    assert gated.returncode == 1, gated.stderr[-3000:]
    gated_stage = json.loads((tmp_path / "gated" / "results.json").read_text())["stages"]
    assert [s["memory"]["verdict"] for s in gated_stage] == ["regressed"], gated_stage
    assert gated_stage[0]["verdict"] != "regressed", gated_stage  # memory alone failed the gate, not time

    # The comment names them too.
    comment = (out / "comment.md").read_text()
    assert parse_line in comment and cache_line in comment, comment
