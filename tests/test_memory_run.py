"""The memory pass for real: `bolt run` on a repository it has never seen, and the same commit traced again."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main
from bolt_bot.measure import envs, memory, sandbox
from bolt_bot.measure.counts import valgrind_available
from tests.conftest import commit, git, make_repo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(valgrind_available() is None, reason="valgrind is not installed"),
    pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed"),
]

# Each stage is mostly a CPU loop (so its instruction count barely moves) plus N small strings kept in a list
# (strings: tuples would come from CPython's free list, which no allocator sees): head doubles `gather`'s
# strings (+200 allocations and about 11 KiB, 0.3 % more instructions), the rest stays as it was.
_MODULE = '''"""Stages that spin and allocate."""

from itertools import repeat

STRINGS = {tuples!r}


def _spin(n):
    # Allocates nothing: small ints are cached, repeat() yields the same None.
    total = 0
    for _ in repeat(None, n):
        total = (total + 3) & 127
    return total


def _keep(n):
    return [str(i) * 3 for i in range(n)]


def ingest():
    return _spin(300000), len(_keep(STRINGS["ingest"]))


def gather():
    return _spin(300000), len(_keep(STRINGS["gather"]))


def render():
    return _spin(300000), "-".join(str(i) for i in range(STRINGS["render"]))
'''
_BENCH = '''import minipipe


def test_ingest(benchmark):
    assert benchmark(minipipe.ingest)[1] == minipipe.STRINGS["ingest"]


def test_gather(benchmark):
    benchmark.pedantic(minipipe.gather, rounds=3)


def test_render(benchmark):
    benchmark(minipipe.render)
'''
BASE = {"ingest": 100, "gather": 100, "render": 100}
HEAD = dict(BASE, gather=200)


def _files(tuples: dict[str, int]) -> dict[str, str]:
    return {"minipipe.py": _MODULE.format(tuples=tuples), "bench/test_bench.py": _BENCH}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("memory-run") / "never-seen", _files(BASE))
    base = git(root, "rev-parse", "HEAD")
    return root, base, commit(root, {"minipipe.py": _MODULE.format(tuples=HEAD)}, "head: gather keeps twice the strings")


def run_cli(*args):
    result = CliRunner().invoke(main, ["run", "--quiet", "--measure", "instructions", "--no-profile", *args],
                                catch_exceptions=False)
    return result.exit_code, result.output


def test_doubled_allocations_regress_that_stage_only_and_gate_like_time(repo, tmp_path):
    root, base, head = repo
    code, output = run_cli("--repo", str(root), "--base", base, "--head", head, "--fail-on-regression",
                           "--out", str(tmp_path / "on"))
    results = json.loads((tmp_path / "on" / "results.json").read_text())
    stages = {s["name"].split("::test_")[-1]: s for s in results["stages"]}
    assert {n: s["verdict"] for n, s in stages.items()} == dict.fromkeys(BASE, "unchanged"), [
        (n, s["ratio"], s["memory"]) for n, s in stages.items()]
    assert {n: s["memory"]["verdict"] for n, s in stages.items()} == {**dict.fromkeys(BASE, "unchanged"),
                                                                       "gather": "regressed"}
    gather = stages["gather"]["memory"]
    assert "allocations" in gather["regressed"] and "allocated" in gather["regressed"], gather
    assert 1.6 < gather["head"]["allocations"] / gather["base"]["allocations"] < 2.1
    assert gather["lines"][0]["where"].startswith("minipipe.py:") and gather["lines"][0]["function"] == "<listcomp>"
    assert gather["lines"][0]["head_allocations"] > 1.9 * gather["lines"][0]["base_allocations"]
    assert results["verdict"] == "regressed" and code == 1, output  # the gate, as for a time regression
    assert results["environment"]["memory"]["stages"] == 3

    # The same commits without the memory pass: nothing regressed, the gate passes.
    code, output = run_cli("--repo", str(root), "--base", base, "--head", head, "--fail-on-regression",
                           "--memory", "off", "--out", str(tmp_path / "off"))
    results = json.loads((tmp_path / "off" / "results.json").read_text())
    assert code == 0 and results["verdict"] == "unchanged", output
    assert all(s["memory"] is None for s in results["stages"])


def test_the_same_commit_traced_again_and_elsewhere_gives_identical_counts(repo, tmp_path):
    root, base, _ = repo
    # Two clones of base under names of different lengths (the path's hash moved instruction counts).
    short = tmp_path / "c"
    long = tmp_path / "a-checkout-folder-with-a-much-longer-name"
    for where in (short, long):
        git(tmp_path, "clone", "--quiet", str(root), str(where))
        git(where, "checkout", "--quiet", base)
    spec = envs.EnvSpec(requirements=[*envs.BENCH_REQUIREMENTS, memory.memray_requirement()])
    with envs.prepare(short, spec, "base") as env:
        passes = []
        for i, where in enumerate((short, short, long, long)):
            passes.append(memory.measure_memory(env.python, where, ["bench"], env=sandbox.side_environ(env.python),
                                                timeout=300, workdir=tmp_path / f"work{i}"))
    numbers = [{n: (s.allocations, s.allocated, [(t.where, t.allocations, t.allocated) for t in s.top])
                for n, s in p.stages.items()} for p in passes]
    assert len(numbers[0]) == 3 and all(not p.failed for p in passes)
    assert all(n == numbers[0] for n in numbers[1:]), numbers
    peaks = [{n: s.peak for n, s in p.stages.items()} for p in passes]
    assert all(p == peaks[0] for p in peaks[1:]), peaks
