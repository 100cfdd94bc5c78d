"""The paired wall-time engine's measure layer: pinned base and head workers alternating short blocks of calls."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bolt_bot.errors import BoltError
from bolt_bot.measure import envs, pairedwire, sandbox
from bolt_bot.measure.paired import PairedPlan, PairedRun, PairSample, measure_paired, read_paired, write_paired
from bolt_bot.measure.pairedwire import quiet_cpu
from bolt_bot.measure.walltime import SideSetup
from tests import projects

SECRETS = {"GITHUB_TOKEN": "ghs_job", "INPUT_GITHUB-TOKEN": "ghs_input", "ACTIONS_RUNTIME_TOKEN": "rt",
           "DEPLOY_SECRET": "s3cr3t", "GH_TOKEN": "gho"}
WORK = {"doubled": 3000, "steady": 3000}
STAGE = "bench/test_bench.py::test_stage[{}]"

# Stages beside the pipeline's: each shows one behaviour. `minipipe.FLAVOUR` tells the sides apart.
EXTRA = '''import json, os, time
import minipipe

with open(os.environ["BOLT_TEST_ENV_LOG"], "a", encoding="utf-8") as _log:
    _log.write(json.dumps({"pid": os.getpid(), "env": dict(os.environ)}) + "\\n")


def _consume(box):
    box.pop()  # an IndexError if setup did not give this call a fresh box
    return "consumed"


def test_pedantic_setup(benchmark):
    assert benchmark.pedantic(_consume, setup=lambda: (([1],), {}), rounds=3) == "consumed"


def test_assert_after(benchmark):
    value = benchmark(minipipe.flavour)
    assert value == "base", f"the result changed to {value}"


def test_raises_on_head(benchmark):
    def stage():
        if minipipe.flavour() == "head":
            raise RuntimeError("head broke this stage")
        return 1
    benchmark(stage)


def test_fifty_ms(benchmark):
    benchmark(time.sleep, 0.05)
'''
ADDED = '''def test_added(benchmark):
    benchmark(sum, range(100))
'''


def _files(work: dict[str, int], flavour: str, added: bool) -> dict[str, str]:
    files = projects.pipeline_files(work)
    files["minipipe.py"] += f"\n\ndef flavour():\n    return {flavour!r}\n"
    files["bench/test_extra.py"] = EXTRA
    if added:
        files["bench/test_added.py"] = ADDED
    return files


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """One paired run of base and head in real virtual environments (the project installed in each),
    with secrets in Bolt's own environment; every test below reads what it measured."""
    root = tmp_path_factory.mktemp("paired")
    log = root / "env.jsonl"
    checkouts = {"base": _write(root / "base", _files(WORK, "base", added=False)),
                 "head": _write(root / "head", _files(dict(WORK, doubled=2 * WORK["doubled"]), "head", added=True))}
    saved = dict(os.environ)
    os.environ.update({**SECRETS, "BOLT_TEST_ENV_LOG": str(log)})
    try:
        setups = {}
        for side, checkout in checkouts.items():
            env = envs.prepare(checkout, envs.EnvSpec(), side, root / "envs")
            env.release()
            setups[side] = SideSetup(env.python, checkout, sandbox.side_environ(env.python, ["BOLT_TEST_ENV_LOG"]))
        run = measure_paired(setups, PairedPlan(pairs=2, blocks=10), root / "work")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return run, root


@pytest.mark.slow
def test_a_2x_slowdown_shows_in_every_pair_and_an_unchanged_stage_stays_near_zero(suite):
    run, _ = suite
    doubled, steady = run.stages[STAGE.format("doubled")], run.stages[STAGE.format("steady")]
    assert len(doubled) == len(steady) == 2
    for sample in doubled:
        assert len(sample.log_ratios) == len(sample.base) == len(sample.head) > 0
        assert statistics.median(sample.log_ratios) > math.log(1.5), sample
        assert sample.calls > 1 and all(b > 0 for b in sample.base)
    assert abs(statistics.mean(statistics.median(s.log_ratios) for s in steady)) < math.log(1.2), steady


@pytest.mark.slow
def test_pedantic_setup_runs_before_every_call(suite):
    run, _ = suite
    name = "bench/test_extra.py::test_pedantic_setup"
    assert name in run.stages and not any(name in side for side in run.failed.values()), run.failed
    assert all(s.calls > 1 and s.log_ratios for s in run.stages[name])


@pytest.mark.slow
def test_a_test_still_asserts_after_its_benchmark_call_and_a_stage_failing_on_head_is_failed(suite):
    run, _ = suite
    assert set(run.failed) == {"head"}, run.failed
    failed = run.failed["head"]
    assert "the result changed to head" in failed["bench/test_extra.py::test_assert_after"]
    assert "head broke this stage" in failed["bench/test_extra.py::test_raises_on_head"]
    assert not set(failed) & set(run.stages)


@pytest.mark.slow
def test_an_added_stage_is_only_on_head_and_a_50_ms_stage_is_too_long_for_blocks(suite):
    run, _ = suite
    assert run.only == {"head": ["bench/test_added.py::test_added"]}
    assert list(run.too_long) == ["bench/test_extra.py::test_fifty_ms"]
    assert re.match(r"one call takes \d+ ms, too long for blocks of calls \(limit 20 ms\)", run.too_long["bench/test_extra.py::test_fifty_ms"])
    assert "bench/test_extra.py::test_fifty_ms" not in run.stages


@pytest.mark.slow
def test_workers_get_no_secret(suite):
    _, root = suite
    records = [json.loads(line) for line in (root / "env.jsonl").read_text().splitlines()]
    assert len(records) == 4  # two pairs of two workers
    for record in records:
        assert not set(record["env"]) & set(SECRETS)
        assert not any(value in record["env"].values() for value in SECRETS.values())


@pytest.mark.slow
def test_both_workers_of_a_pair_are_pinned_to_the_same_cpu_and_paired_json_round_trips(suite):
    run, root = suite
    raw = json.loads((root / "work" / "paired.json").read_text())
    ncpu = len(os.sched_getaffinity(0))
    for pair in (0, 1):
        workers = [w for w in raw["workers"] if w["pair"] == pair]
        assert {w["side"] for w in workers} == {"base", "head"}
        assert all(w["cpus"] == [sorted(os.sched_getaffinity(0))[pair % ncpu]] for w in workers), workers
        assert len({w["pid"] for w in workers}) == 2
    assert [s.cpu for s in run.stages[STAGE.format("steady")]] == [w["cpu"] for w in raw["workers"] if w["side"] == "base"]
    assert read_paired(root / "work" / "paired.json") == run
    assert run.groups[STAGE.format("steady")] == {"group": None, "params": {"stage": "steady"}}


def test_a_file_that_is_no_paired_run_is_one_clear_error(tmp_path):
    (tmp_path / "paired.json").write_text('{"schema": "other"}')
    with pytest.raises(BoltError, match="not a paired-timing file"):
        read_paired(tmp_path / "paired.json")
    run = PairedRun(stages={"t::a": [PairSample(cpu=0, calls=3, base=[1.0], head=[2.0], log_ratios=[0.69])]})
    write_paired(run, tmp_path / "paired.json")
    assert read_paired(tmp_path / "paired.json") == run


def _local_suite(root: Path, body: str) -> dict[str, SideSetup]:
    """Base and head of a one-file suite run by this interpreter (which has pytest-benchmark)."""
    setups = {}
    for side in ("base", "head"):
        folder = root / side
        folder.mkdir(parents=True)
        (folder / "test_suite.py").write_text(body.replace("SIDE", side))
        setups[side] = SideSetup(Path(sys.executable), folder)
    return setups


def _our_processes(root: Path) -> list[int]:
    """Processes still running in a folder under `root`: a left-over worker."""
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(Path(os.readlink(entry / "cwd"))).startswith(str(root)):
                    left.append(int(entry.name))
            except OSError:
                continue
    return left


DIES = '''import os, sys

def test_ok(benchmark):
    benchmark(sum, range(10))

def test_dies(benchmark):
    def stage():
        if "SIDE" == "head":
            print("Fatal: the stage pulled the plug", file=sys.stderr)
            os._exit(3)
        return 1
    benchmark(stage)
'''


def test_a_worker_that_dies_mid_stage_is_one_clear_error_and_leaves_no_process(tmp_path):
    setups = _local_suite(tmp_path, DIES)
    with pytest.raises(BoltError) as caught:
        measure_paired(setups, PairedPlan(pairs=1, blocks=4), tmp_path / "work")
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert "head" in message and "exited with code 3" in message and "test_dies" in message, message
    assert message.endswith("Fatal: the stage pulled the plug"), message
    assert not _our_processes(tmp_path)


HANGS = '''import time

def test_hangs(benchmark):
    benchmark(time.sleep, 3600 if "SIDE" == "head" else 0)
'''


def test_a_hanging_worker_times_out_with_one_clear_error_and_leaves_no_process(tmp_path):
    setups = _local_suite(tmp_path, HANGS)
    with pytest.raises(BoltError) as caught:
        measure_paired(setups, PairedPlan(pairs=1, blocks=4, timeout=8), tmp_path / "work")
    assert "timed out: no answer for 8 s" in str(caught.value) and "test_hangs" in str(caught.value)
    assert not _our_processes(tmp_path)


def test_a_worker_that_cannot_start_is_one_clear_error(tmp_path):
    setups = _local_suite(tmp_path, "def test_a(benchmark):\n    benchmark(sum, [1])\n")
    setups["head"] = SideSetup(tmp_path / "no-such-python", setups["head"].checkout)
    with pytest.raises(BoltError, match="cannot start the head"):
        measure_paired(setups, PairedPlan(pairs=1, blocks=4), tmp_path / "work")
    assert not _our_processes(tmp_path)


def test_only_measures_the_stages_asked_for_and_a_stage_skipped_in_its_test_is_a_notice(tmp_path):
    body = ("import pytest\n\ndef test_a(benchmark):\n    benchmark(sum, [1])\n\n"
            "def test_b(benchmark):\n    benchmark(sum, [2])\n\n"
            "def test_c(benchmark):\n    if 'SIDE' == 'head':\n        pytest.skip('not here')\n    benchmark(sum, [3])\n")
    setups = _local_suite(tmp_path, body)
    run = measure_paired(setups, PairedPlan(pairs=1, blocks=3), tmp_path / "work",
                         only=["test_suite.py::test_b", "test_suite.py::test_c"])
    assert list(run.stages) == ["test_suite.py::test_b"] and len(run.stages["test_suite.py::test_b"][0].log_ratios) == 3
    assert run.notices == ["test_suite.py::test_c called no benchmark on head: not measured"] and not run.failed
    assert not _our_processes(tmp_path)  # every worker reaped


def test_a_file_head_cannot_import_fails_its_stages_on_head_and_the_others_are_measured(tmp_path):
    setups = _local_suite(tmp_path, "def test_a(benchmark):\n    benchmark(sum, [1])\n")
    for side in ("base", "head"):
        broken = "import no_such_module_anywhere\n" if side == "head" else ""
        (setups[side].checkout / "test_more.py").write_text(broken + "def test_b(benchmark):\n    benchmark(sum, [2])\n")
    run = measure_paired(setups, PairedPlan(pairs=1, blocks=3), tmp_path / "work")
    assert list(run.stages) == ["test_suite.py::test_a"]
    assert list(run.failed) == ["head"] and "no_such_module_anywhere" in run.failed["head"]["test_more.py::test_b"]
    assert run.only == {}


def _aslr_can_be_turned_off() -> bool:
    """What the kernel (and a container's seccomp filter) lets a child do, asked the way the workers are started."""
    done = subprocess.run(["cat", "/proc/self/personality"], capture_output=True, text=True,
                          preexec_fn=pairedwire._preexec(None, True, None))
    return done.returncode == 0 and bool(int(done.stdout.strip(), 16) & pairedwire.ADDR_NO_RANDOMIZE)


@pytest.mark.skipif(Path("/proc/sys/kernel/randomize_va_space").read_text().strip() == "0",
                    reason="ASLR is off machine-wide")
def test_aslr_is_off_in_the_workers_when_the_plan_says_so_and_the_run_records_whether_it_took(tmp_path):
    setups = _local_suite(tmp_path, "def test_a(benchmark):\n    benchmark(sum, [1])\n")
    off = measure_paired(setups, PairedPlan(pairs=1, blocks=2, aslr=False), tmp_path / "off")
    on = measure_paired(setups, PairedPlan(pairs=1, blocks=2), tmp_path / "on")  # the default keeps ASLR
    assert on.aslr_off is False and not on.notices
    assert off.aslr_off is _aslr_can_be_turned_off()
    assert off.aslr_off or "ASLR could not be turned off for the workers" in off.notices
    workers = json.loads((tmp_path / "off" / "paired.json").read_text())["workers"]
    assert [w["aslr_off"] for w in workers] == [off.aslr_off] * 2


def test_a_session_that_stops_early_on_one_side_is_one_notice(tmp_path):
    body = ("def test_a(benchmark):\n    benchmark(sum, [1])\n    assert 'SIDE' == 'base'\n\n"
            "def test_b(benchmark):\n    benchmark(sum, [2])\n\ndef test_c(benchmark):\n    benchmark(sum, [3])\n")
    setups = _local_suite(tmp_path, body)
    run = measure_paired(setups, PairedPlan(pairs=1, blocks=2, pytest_args=["-x"]), tmp_path / "work")
    assert list(run.failed["head"]) == ["test_suite.py::test_a"] and not run.stages
    assert run.notices == ["the head worker's pytest session ended early: stages from test_suite.py::test_b on "
                           "were not measured in pair 1"]


SETUP = '''import time

def test_setup(benchmark):
    benchmark.pedantic(sum, setup=lambda: time.sleep(0.002) or (([1, 2],), {}))
'''


def test_a_pedantic_setup_is_not_timed_and_its_blocks_stay_short(tmp_path):
    run = measure_paired(_local_suite(tmp_path, SETUP), PairedPlan(pairs=1, blocks=3), tmp_path / "work")
    sample = run.stages["test_suite.py::test_setup"][0]
    assert all(t < 0.5e-3 for t in sample.base + sample.head), sample  # the 2 ms sleep is not in the calls' time
    assert sample.calls <= 5  # calibrated by the block's span, setup included: about 5 ms


def test_stages_in_another_order_on_head_are_still_paired(tmp_path):
    a, b = "def test_a(benchmark):\n    benchmark(sum, [1])\n", "def test_b(benchmark):\n    benchmark(sum, [2])\n"
    setups = _local_suite(tmp_path, a + "\n" + b)
    (setups["head"].checkout / "test_suite.py").write_text(b + "\n" + a)
    run = measure_paired(setups, PairedPlan(pairs=1, blocks=2), tmp_path / "work")
    assert sorted(run.stages) == ["test_suite.py::test_a", "test_suite.py::test_b"] and not run.notices, run


THREADED = '''import threading

def _spin(n):
    total = 0
    for i in range(n):
        total += i
    return total

def _in_threads():
    workers = [threading.Thread(target=_spin, args=(20000,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

def test_threads(benchmark):
    benchmark(_in_threads)

def test_plain(benchmark):
    benchmark(_spin, 2000)
'''


def test_a_stage_whose_work_runs_on_other_threads_is_left_to_whole_rounds(tmp_path):
    # Pinned to one CPU, a stage's threads would queue behind each other: its parallel speed-up could not show.
    setups = _local_suite(tmp_path, THREADED)
    run = measure_paired(setups, PairedPlan(pairs=1, blocks=3), tmp_path / "work")
    assert list(run.stages) == ["test_suite.py::test_plain"]
    assert re.match(r"\d+% of its CPU time is spent on other threads", run.too_long["test_suite.py::test_threads"])


def _hog(cpu: int) -> subprocess.Popen:
    """A busy loop pinned to `cpu`, the neighbour that takes time slices from whatever else runs there."""
    return subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_pair_due_on_a_busy_cpu_runs_on_the_idle_one():
    cpus = sorted(os.sched_getaffinity(0))[:2]
    hog = _hog(cpus[1])
    try:
        time.sleep(0.3)
        assert quiet_cpu(cpus, cpus[1]) == (cpus[0], cpus[1])
        assert quiet_cpu(cpus, cpus[0]) == (cpus[0], None)
    finally:
        hog.kill()
        hog.wait()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_blocks_another_process_interrupted_are_dropped_not_kept(tmp_path):
    # Every CPU busy with a neighbour, so no pair can move to an idle one: the neighbour's time slices land
    # inside blocks, where no probe before or after a block sees them. Such block pairs are dropped.
    cpus = sorted(os.sched_getaffinity(0))[:2]
    setups = _local_suite(tmp_path, "def test_a(benchmark):\n    benchmark(sum, range(2000))\n")
    hogs = [_hog(cpu) for cpu in cpus]
    try:
        time.sleep(0.3)
        # Long enough for the workers to use up the scheduler's credit for having slept: then the
        # neighbour gets its share of the CPU, inside blocks too.
        run = measure_paired(setups, PairedPlan(pairs=1, blocks=60), tmp_path / "work")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    sample = run.stages["test_suite.py::test_a"][0]
    assert sample.preempted >= 1
    assert len(sample.log_ratios) + sample.preempted + sample.dropped <= 2 * 60
