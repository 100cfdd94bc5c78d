"""Instruction counts per benchmark under valgrind's callgrind, via pytest-codspeed.

How it works (see docs/measurement-facts.md, "Instruction counts"):

* pytest-codspeed is installed into the *measured* environment next to pytest-benchmark (they
  coexist: with codspeed disabled, i.e. no ``--codspeed`` and no ``CODSPEED_ENV``, pytest-benchmark
  owns the ``benchmark`` fixture as usual; with ``--codspeed`` codspeed blocks pytest-benchmark and
  registers its own ``benchmark`` fixture at session start).
* ``CODSPEED_ENV`` set + ``--codspeed --codspeed-mode=simulation`` puts codspeed in its
  instrumentation ("simulation") mode. Under valgrind it collects garbage, disables GC, starts
  callgrind instrumentation, makes ONE call of the benchmarked function, stops instrumentation and
  dumps the stats with ``CALLGRIND_DUMP_STATS_AT(<uri>)``.
* valgrind runs with ``--instr-atstart=no`` so nothing outside the benchmark calls is counted; each
  dump is a numbered part ``<workdir>/callgrind/callgrind.out.<pid>.<n>`` whose
  ``desc: Trigger: Client Request: <uri>`` line names the benchmark and whose ``totals:`` line holds
  the instruction count (``summary:`` is 0).
* codspeed's ``<uri>`` is the pytest node id with its file part made relative to the *git root*
  (or absolute when there is no git repository). Bolt's stage names are pytest-benchmark fullnames,
  i.e. the plain pytest node ids. A tiny plugin (passed in-process through ``pytest.main(plugins=)``,
  so nothing is added to ``sys.path`` or the checkout) records, for every selected item, the node id
  and the uri computed with codspeed's own function, plus outcomes and collection errors, as JSON
  lines flushed after each event (so a crash loses nothing already reported).

Determinism: ``PYTHONHASHSEED=0``, default allocator (``PYTHONMALLOC`` removed), bytecode compiled
beforehand (checkout and the environment's site-packages), and one cheap collect-only run without
valgrind first, which also writes pytest's assertion-rewrite caches and catches collection errors
before paying for valgrind. Give base and head checkouts, environments and workdirs paths of equal
length: path strings are hashed and copied by imports and show up in the counts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.errors import BoltError
from bolt_bot.sandbox import clean_environ

CODSPEED_VERSION = "5.0.4"

# Fixed pytest flags of the measured run. -p no:randomly keeps the order (and random state) fixed.
PYTEST_FLAGS = [
    "-p", "no:xdist",
    "-p", "no:cacheprovider",
    "-p", "no:randomly",
    "--codspeed",
    "--codspeed-mode=simulation",
]

_DUMP_PREFIX = "callgrind.out."
_TRIGGER = "desc: Trigger: Client Request: "

# The driver run as `python -c _DRIVER <events file> <pytest args...>`: pytest.main with an
# in-process plugin object; sys.path[0] made the cwd, as `python -m pytest` does.
_DRIVER = r'''
import json, os, sys
sys.path[0] = os.getcwd()
import pytest

STUB_BENCHMARK = False  # set from argv: pytest-benchmark blocked (-p no:benchmark), options stubbed


class BenchmarkStubs:
    # With pytest-benchmark blocked, its options (e.g. in the project's addopts) and hooks (in its
    # conftest.py) must still be known. Registered after the rewrite hook is set up, so importing
    # pytest_benchmark here does not trigger "already imported" warnings.
    @pytest.hookimpl(tryfirst=True)
    def pytest_load_initial_conftests(self, early_config, parser, args):
        try:
            import pytest_benchmark.hookspec as spec
            early_config.pluginmanager.add_hookspecs(spec)
        except Exception:
            pass
        try:
            import pytest_benchmark.plugin as plugin
            plugin.get_tag = lambda *a, **k: "bolt"  # no git/hg subprocess at start-up
            plugin.pytest_addoption(parser)
        except Exception:
            pass


@pytest.fixture
def benchmark(codspeed_benchmark):
    # pytest < 9.1: pytest-codspeed swaps an existing `benchmark` fixture for its own.
    return codspeed_benchmark


class BoltEvents:
    def __init__(self, path):
        self._f = open(path, "a", encoding="utf-8")

    def _emit(self, **kw):
        self._f.write(json.dumps(kw) + "\n")
        self._f.flush()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_collection_modifyitems(self, session, config, items):
        yield
        # Only tests using the `benchmark` fixture are stages (as on the wall-time path);
        # codspeed would otherwise also measure whole tests marked `benchmark`.
        keep = [i for i in items if "benchmark" in getattr(i, "fixturenames", ())]
        if len(keep) != len(items):
            drop = [i for i in items if "benchmark" not in getattr(i, "fixturenames", ())]
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        _codspeed_markers(items)

    def pytest_collection_finish(self, session):
        _warm_up_first()
        try:
            from pytest_codspeed.utils import get_git_relative_uri_and_name as uri_of
        except Exception:
            uri_of = None
        root = session.config.rootpath
        for item in session.items:
            uri = None
            if uri_of is not None:
                try:
                    uri = uri_of(item.nodeid, root)[0]
                except Exception:
                    uri = None
            self._emit(ev="item", nodeid=item.nodeid, uri=uri)
        self._emit(ev="collected", n=len(session.items), rootdir=str(root))

    def pytest_collectreport(self, report):
        if report.failed:
            self._emit(ev="collect_error", nodeid=report.nodeid, text=_excerpt(report))

    def pytest_runtest_logstart(self, nodeid, location):
        self._emit(ev="start", nodeid=nodeid)

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self._emit(ev="failed", nodeid=report.nodeid, when=report.when, text=_excerpt(report))
        elif report.skipped:
            self._emit(ev="skipped", nodeid=report.nodeid, when=report.when)

    def pytest_runtest_logfinish(self, nodeid, location):
        self._emit(ev="finish", nodeid=nodeid)


def _warm_up_first():
    # pytest-codspeed calls a benchmark once before the counted call only where Python has the perf
    # trampoline (3.12+); elsewhere the count is of the cold first call: caches filled, lazy imports,
    # unspecialised bytecode. A change that adds a cache then reads as a regression (statemachine's
    # "cache signature binding results": +5.4 % counted, 1.03x in wall time). One warm-up everywhere.
    try:
        import pytest_codspeed.instruments.analysis as analysis
        analysis.SUPPORTS_PERF_TRAMPOLINE = True  # read there only for the warm-up and a log line
    except Exception:
        pass


def _codspeed_markers(items):
    # pytest-codspeed reads pytest-benchmark's own `benchmark` marker and raises on its options
    # (`@pytest.mark.benchmark(min_rounds=20)`: "Unknown kwargs passed to benchmark marker"). Its own
    # marker takes precedence, so each such item gets one holding only the options codspeed knows.
    try:
        import dataclasses
        from pytest_codspeed.config import BenchmarkMarkerOptions
        known = {f.name for f in dataclasses.fields(BenchmarkMarkerOptions)}
    except Exception:
        known = {"group"}
    for item in items:
        marker = item.get_closest_marker("benchmark")
        if marker is None or item.get_closest_marker("codspeed_benchmark") is not None:
            continue
        if marker.args or set(marker.kwargs) - known:
            item.add_marker(pytest.mark.codspeed_benchmark(**{k: v for k, v in marker.kwargs.items() if k in known}))


def _excerpt(report):
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    text = getattr(crash, "message", None)
    if not text:
        lines = [l for l in str(getattr(report, "longreprtext", "") or report.longrepr).splitlines() if l.strip()]
        text = lines[-1] if lines else "failed"
    return text[:2000]


events = sys.argv.pop(1)
STUB_BENCHMARK = sys.argv.pop(1) == "stub"
plugins = [BoltEvents(events)]
if STUB_BENCHMARK:
    plugins += [BenchmarkStubs(), sys.modules[__name__]]
sys.exit(int(pytest.main(sys.argv[1:], plugins=plugins)))
'''

# Compiles the checkout and the environment's site-packages; reports the pytest-codspeed version.
_PREPARE = r'''
import compileall, re, sys, sysconfig
try:
    from importlib import metadata
    version = metadata.version("pytest-codspeed")
except Exception:
    print("BOLT-NO-CODSPEED")
    sys.exit(3)
skip = re.compile(r"(^|[/\\])(\.git|\.hg|\.tox|\.nox|node_modules)([/\\]|$)")
compileall.compile_dir(sys.argv[1], quiet=2, rx=skip)
for key in ("purelib", "platlib"):
    compileall.compile_dir(sysconfig.get_paths()[key], quiet=2)
print("BOLT-CODSPEED", version)
'''

# pytest-benchmark options that take a required value (dropped with it when given separately).
_BENCH_VALUE_OPTS = {
    "--benchmark-min-time", "--benchmark-max-time", "--benchmark-min-rounds", "--benchmark-timer",
    "--benchmark-calibration-precision", "--benchmark-warmup-iterations", "--benchmark-sort",
    "--benchmark-group-by", "--benchmark-columns", "--benchmark-name", "--benchmark-storage",
    "--benchmark-netrc", "--benchmark-save", "--benchmark-json", "--benchmark-compare-fail",
    "--benchmark-cprofile", "--benchmark-cprofile-loops", "--benchmark-cprofile-top",
    "--benchmark-time-unit",
}
_XDIST_VALUE_OPTS = {"-n", "--numprocesses", "--dist", "--maxprocesses", "--max-worker-restart"}


@dataclass
class InstructionRun:
    counts: dict[str, int]  # stage fullname -> instructions for one call
    failed: dict[str, str]  # stage fullname -> short error excerpt (test failed or crashed)
    log_excerpt: str  # the tail of pytest/valgrind output when something went wrong
    dumps: dict[str, Path] = field(default_factory=dict)  # stage fullname -> its callgrind dump
    command: list[str] = field(default_factory=list)  # the valgrind command line that was run
    seconds: float = 0.0  # wall time of the valgrind run


def valgrind_available() -> str | None:
    """Path to a working valgrind, or None."""
    path = shutil.which("valgrind")
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if out.returncode == 0 and "valgrind" in out.stdout else None


def codspeed_requirement() -> str:
    """The requirement to install into the measured environment (next to pytest-benchmark)."""
    return f"pytest-codspeed=={CODSPEED_VERSION}"


def measure_instructions(
    python: Path,
    checkout: Path,
    pytest_args: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    workdir: Path,
) -> InstructionRun:
    """Run the checkout's benchmarks once under callgrind; one instruction count per stage.

    ``pytest_args`` select the benchmarks (paths, ``-k``, ``-m``...); pytest-benchmark and xdist
    options in it are dropped. Raises BoltError for setup problems (no valgrind, pytest-codspeed
    missing in the environment, pytest usage or collection errors), PassStopped after stop_passes().
    """
    valgrind = valgrind_available()
    if valgrind is None:
        raise BoltError("valgrind is not installed: instruction counts need valgrind (apt-get install valgrind)")
    python = Path(python)
    checkout = Path(checkout).resolve()
    workdir = Path(workdir).resolve()
    if not checkout.is_dir():
        raise BoltError(f"checkout {checkout} does not exist")
    dumps_dir = workdir / "callgrind"
    profile_dir = workdir / "codspeed"
    workdir.mkdir(parents=True, exist_ok=True)
    for d in (dumps_dir, profile_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    run_env = _environment(python, env, profile_dir)
    args = [*PYTEST_FLAGS, *_selection_args(pytest_args)]
    since = _passes.stops  # a stop_passes() from now on ends this measurement

    # 1. Compile bytecode, check pytest-codspeed is there.
    prep = _run([str(python), "-c", _PREPARE, str(checkout)], checkout, run_env, timeout,
                workdir / "prepare.log", since)
    if prep.timed_out:
        raise BoltError(f"compiling the checkout timed out after {timeout:.0f} s")
    if "BOLT-NO-CODSPEED" in prep.output:
        raise BoltError(f"pytest-codspeed is not installed in the environment of {python} "
                        f"(install {codspeed_requirement()})")
    if prep.returncode != 0:
        raise BoltError(f"could not run {python}: {_last_line(prep.output)}")

    # 2. Collect once without valgrind: catches collection errors cheaply and writes pytest's
    #    assertion-rewrite caches, so the measured run is not a first run.
    #    pytest-benchmark is blocked (-p no:benchmark, its options and hooks stubbed): loaded, it
    #    runs git/hg/file subprocesses at start-up, which made reruns differ by a few hundred
    #    instructions. If the project cannot run that way, load it (codspeed then blocks it).
    pre_events = workdir / "collect-events.jsonl"
    for mode in ("stub", "load"):
        pre_events.unlink(missing_ok=True)
        mode_args = ["-p", "no:benchmark", *args] if mode == "stub" else args
        pre = _run([str(python), "-c", _DRIVER, str(pre_events), mode, *mode_args, "--collect-only", "-q"],
                   checkout, run_env, timeout, workdir / "collect.log", since)
        pre_ev = _read_events(pre_events)
        if mode == "stub" and (pre.returncode not in (0, 1, 5) or not _items(pre_ev)) and not pre.timed_out \
                and not any(e["ev"] == "collect_error" for e in pre_ev):
            continue
        break
    _raise_for_setup(pre.returncode, pre.output, pre_ev, pre.timed_out, timeout)
    if pre.returncode == 5 or not _items(pre_ev):
        return InstructionRun(counts={}, failed={}, log_excerpt="")

    # 3. The measured run.
    events = workdir / "events.jsonl"
    events.unlink(missing_ok=True)
    cmd = [
        valgrind, "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={dumps_dir}/{_DUMP_PREFIX}%p",
        "--child-silent-after-fork=yes",
        str(python), "-c", _DRIVER, str(events), mode, *mode_args,
    ]
    res = _run(cmd, checkout, run_env, timeout, workdir / "valgrind.log", since)
    ev = _read_events(events)
    items = _items(ev)
    if any(e["ev"] == "collect_error" for e in ev):
        _raise_for_setup(2, res.output, ev, False, timeout)
    if not items:
        if res.timed_out:
            raise BoltError(f"starting pytest under valgrind timed out after {timeout:.0f} s")
        if res.returncode in (0, 5):
            return InstructionRun(counts={}, failed={}, log_excerpt="", command=_display(cmd),
                                  seconds=res.seconds)
        raise BoltError(f"pytest under valgrind failed before collecting: "
                        f"{_crash_reason(res.returncode, res.output)}: {_error_line(res.output)}")

    by_uri = {uri: nodeid for nodeid, uri in items.items() if uri}
    found: dict[str, tuple[int, Path]] = {}
    for dump in _dump_files(dumps_dir):
        trigger, total = read_dump_header(dump)
        if trigger is None or total is None:
            continue
        nodeid = by_uri.get(trigger) or _match_stage(trigger, items)
        if nodeid is not None:
            found[nodeid] = (total, dump)

    failed: dict[str, str] = {}
    for e in ev:
        if e["ev"] == "failed" and e["nodeid"] in items and e["nodeid"] not in failed:
            failed[e["nodeid"]] = _short(e.get("text") or "failed", e.get("when"))
    finished = {e["nodeid"] for e in ev if e["ev"] == "finish"}
    started = [e["nodeid"] for e in ev if e["ev"] == "start"]
    abnormal = res.timed_out or res.returncode not in (0, 1)
    if abnormal:
        reason = (f"timed out after {timeout:.0f} s" if res.timed_out
                  else _crash_reason(res.returncode, res.output))
        current = started[-1] if started and started[-1] not in finished else None
        for nodeid in items:
            if nodeid in failed or nodeid in finished:
                continue
            if nodeid == current:
                failed[nodeid] = f"{reason} during this benchmark"
            else:
                failed[nodeid] = f"not run: {reason}" + (f" during {current}" if current else "")

    counts = {n: found[n][0] for n in items if n in found and n not in failed}
    dumps = {n: found[n][1] for n in items if n in found}
    # Passed but never measured (benchmark fixture requested but not called): not a stage.
    log = _tail(res.output) if (failed or abnormal) else ""
    return InstructionRun(counts=counts, failed=failed, log_excerpt=log, dumps=dumps,
                          command=_display(cmd), seconds=res.seconds)


def function_costs(dump: Path, stage: str, *, inclusive: bool = False) -> dict[str, int]:
    """Per-function instruction counts of one stage from its callgrind dump.

    ``dump`` is the stage's dump file (``InstructionRun.dumps[stage]``) or the folder holding the
    run's dumps. Keys are ``"<file>:<function>"`` with the file path as callgrind wrote it (``???``
    when unknown); recursion levels (``name'2``) are merged into ``name``. Values are self costs
    (they add up to the stage's total) or, with ``inclusive=True``, self plus callees (approximate
    for mutually recursive functions: calls of a function to itself are not added twice).
    """
    dump = Path(dump)
    if dump.is_dir():
        path = _find_stage_dump(dump, stage)
    else:
        trigger, _ = read_dump_header(dump)
        if trigger is None or not _stage_matches(trigger, stage):
            raise BoltError(f"{dump} is not the callgrind dump of {stage}")
        path = dump
    try:
        self_cost, incl_cost = _parse_costs(path, {}, {})
    except _UnknownName:
        # Name compression refers to a name defined in another part of the same process.
        fl_names, fn_names = _sibling_names(path)
        self_cost, incl_cost = _parse_costs(path, fl_names, fn_names)
    result = incl_cost if inclusive else self_cost
    return {k: v for k, v in result.items() if v}


def read_dump_header(path: Path) -> tuple[str | None, int | None]:
    """(benchmark uri from the client-request trigger or None, ``totals:`` instruction count)."""
    trigger = None
    events: list[str] = []
    summary = None
    with open(path, "rb") as f:
        for _ in range(80):
            raw = f.readline()
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(_TRIGGER):
                trigger = line[len(_TRIGGER):]
            elif line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                summary = line
            elif line.startswith(("fl=", "fn=", "ob=")):
                break
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 8192))
        tail = f.read().decode("utf-8", "replace").splitlines()
    totals = next((l for l in reversed(tail) if l.startswith("totals:")), None)
    col = events.index("Ir") if "Ir" in events else 0
    total = _column(totals, col)
    if total is None:
        value = _column(summary, col)
        total = value if value else None
    return trigger, total


# ---------------------------------------------------------------------------------------------
# helpers


@dataclass
class _Result:
    returncode: int
    output: str
    timed_out: bool
    seconds: float


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float, log: Path, since: int) -> _Result:
    """Run cmd in its own process group, output to `log`; kill the whole group on timeout.

    `since` is `_passes.stops` when the measurement began: PassStopped if stop_passes() came after it.
    """
    start = time.monotonic()
    with open(log, "wb") as out:
        try:
            proc = _passes.start(since, cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_no_core_dumps)
        except OSError as e:
            raise BoltError(f"could not start {cmd[0]}: {e}") from None
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            _kill_group(proc, only_leftovers=True)
            _passes.forget(proc)
    _passes.check(since)
    output = log.read_bytes().decode("utf-8", "replace")
    return _Result(proc.returncode if proc.returncode is not None else -9, output, timed_out,
                   time.monotonic() - start)


class PassStopped(Exception):
    """A pass's processes were killed by stop_passes(): the run it belongs to was interrupted.

    Not a BoltError: nothing reports it, the interruption that caused it is what propagates.
    """


class _LivePasses:
    """The process groups of the passes running now, whichever thread started them.

    Ctrl-C and SIGTERM reach only the main thread, while instrplan.measure_counts counts base and head in
    worker threads: this registry lets the main thread kill their valgrind runs (minutes long) at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.stops = 0  # stop() calls so far: a measurement compares it with the count when it began

    def start(self, since: int, cmd: list[str], **popen) -> subprocess.Popen:
        """Popen and register, at once: a stop() either refuses the start or finds the process."""
        with self._lock:
            self.check(since)  # a worker between two of its processes when the stop came
            proc = subprocess.Popen(cmd, **popen)
            self._procs.add(proc)
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        """Called once `proc` is reaped: its process group id may be reused from then on."""
        with self._lock:
            self._procs.discard(proc)

    def check(self, since: int) -> None:
        if self.stops != since:
            raise PassStopped("the instruction-count pass was stopped: Bolt was interrupted")

    def stop(self) -> None:
        with self._lock:
            self.stops += 1
            for proc in self._procs:
                _kill_group(proc, only_leftovers=True)  # the thread waiting for it reaps it


_passes = _LivePasses()


def stop_passes() -> None:
    """Kill the process groups of every running pass (valgrind and its children), from any thread.

    The passes in progress then end with PassStopped instead of starting their next process.
    """
    _passes.stop()


def _no_core_dumps() -> None:
    # valgrind writes vgcore.<pid> into the cwd (the checkout) on a fatal signal unless this is 0.
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def _kill_group(proc: subprocess.Popen, only_leftovers: bool = False) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if not only_leftovers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def _environment(python: Path, extra: dict[str, str] | None, profile_dir: Path) -> dict[str, str]:
    env = clean_environ()
    for key in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONDEVMODE", "PYTHONTRACEMALLOC",
                "PYTHONDONTWRITEBYTECODE", "CODSPEED_RUNNER_MODE"):
        env.pop(key, None)
    env.update(extra or {})
    for key in ("PYTHONMALLOC", "PYTHONDONTWRITEBYTECODE", "CODSPEED_RUNNER_MODE"):
        env.pop(key, None)  # default allocator; bytecode caches; codspeed's simulation mode
    env["PYTHONHASHSEED"] = "0"
    env["CODSPEED_ENV"] = env.get("CODSPEED_ENV") or "bolt"
    env["CODSPEED_PROFILE_FOLDER"] = str(profile_dir)
    bindir = str(Path(python).parent)
    if (Path(python).parent.parent / "pyvenv.cfg").exists():
        env["VIRTUAL_ENV"] = str(Path(python).parent.parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def _selection_args(pytest_args: list[str]) -> list[str]:
    """Drop pytest-benchmark and xdist options: they mean nothing (or clash) under codspeed."""
    out: list[str] = []
    skip_next = False
    for arg in pytest_args:
        if skip_next:
            skip_next = False
            continue
        name = arg.split("=", 1)[0]
        if name.startswith("--benchmark-"):
            skip_next = "=" not in arg and name in _BENCH_VALUE_OPTS
            continue
        if name in _XDIST_VALUE_OPTS:
            skip_next = "=" not in arg
            continue
        if re.fullmatch(r"-n\S+", arg):
            continue
        out.append(arg)
    return out


def _read_events(path: Path) -> list[dict]:
    out = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line cut by a crash
    return out


def _items(events: list[dict]) -> dict[str, str | None]:
    return {e["nodeid"]: e.get("uri") for e in events if e["ev"] == "item"}


def _raise_for_setup(rc: int, output: str, events: list[dict], timed_out: bool, timeout: float) -> None:
    if timed_out:
        raise BoltError(f"collecting the benchmarks timed out after {timeout:.0f} s")
    errors = [e for e in events if e["ev"] == "collect_error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BoltError(f"collection error in {first['nodeid'] or 'the test session'}: "
                        f"{_short(first.get('text') or '')}{more}")
    if rc in (0, 1, 5):
        return
    if rc == 4:
        raise BoltError(f"pytest usage error: {_error_line(output)}")
    raise BoltError(f"pytest failed before running the benchmarks (exit {rc}): {_error_line(output)}")


def _error_line(output: str) -> str:
    lines = [l.strip() for l in output.splitlines() if l.strip() and not l.startswith("==")]
    for l in lines:
        if l.startswith(("ERROR:", "E ", "error:")):
            return _short(l)
    return _short(lines[-1]) if lines else "no output"


def _crash_reason(rc: int, output: str) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"the process was killed by {name}"
    m = re.search(r"Process terminating with default action of signal (\d+) \((\w+)\)", output)
    if m:
        return f"the process crashed ({m.group(2)})"
    if "impossible' happened" in output or "valgrind: " in output:
        return f"valgrind failed (exit {rc})"
    return f"pytest stopped early (exit {rc})"


def _short(text: str, when: str | None = None) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    line = lines[0] if lines else "failed"
    if when and when != "call":
        line = f"error in {when}: {line}"
    return line if len(line) <= 200 else line[:197] + "..."


def _last_line(output: str) -> str:
    lines = [l for l in output.splitlines() if l.strip()]
    return _short(lines[-1]) if lines else "no output"


def _tail(output: str, lines: int = 40, chars: int = 4000) -> str:
    text = "\n".join(output.splitlines()[-lines:])
    return text[-chars:]


def _display(cmd: list[str]) -> list[str]:
    return [("<driver>" if a == _DRIVER else a) for a in cmd]


def _dump_files(folder: Path) -> list[Path]:
    def key(p: Path):
        parts = p.name[len(_DUMP_PREFIX):].split(".")
        return tuple(int(x) if x.isdigit() else 0 for x in parts)

    return sorted((p for p in folder.glob(_DUMP_PREFIX + "*") if p.is_file()), key=key)


def _column(line: str | None, col: int) -> int | None:
    if not line:
        return None
    fields = line.split(":", 1)[1].split()
    if col < len(fields):
        try:
            return int(fields[col])
        except ValueError:
            return None
    return 0 if fields else None


def _stage_matches(uri: str, stage: str) -> bool:
    return uri == stage or uri.endswith("/" + stage)


def _match_stage(uri: str, stages) -> str | None:
    hits = [s for s in stages if _stage_matches(uri, s)]
    return max(hits, key=len) if hits else None


def _find_stage_dump(folder: Path, stage: str) -> Path:
    best = None
    for path in _dump_files(folder):
        trigger, _ = read_dump_header(path)
        if trigger is not None and _stage_matches(trigger, stage):
            if trigger == stage:
                return path
            if best is None or len(trigger) < len(best[0]):
                best = (trigger, path)
    if best is None:
        raise BoltError(f"no callgrind dump of {stage} in {folder}")
    return best[1]


class _UnknownName(Exception):
    pass


_NAME = re.compile(r"\((\d+)\)(?:\s(.*))?$")


def _name(value: str, table: dict[str, str]) -> str:
    m = _NAME.match(value)
    if not m:
        return value
    ident, name = m.group(1), m.group(2)
    if name is not None:
        table[ident] = name
        return name
    if ident not in table:
        raise _UnknownName(ident)
    return table[ident]


def _base_fn(name: str) -> str:
    return re.sub(r"'\d+$", "", name)


def _parse_costs(path: Path, fl_names: dict[str, str], fn_names: dict[str, str]):
    """Self and inclusive Ir per "<file>:<function>" from one callgrind dump file."""
    fl_names = dict(fl_names)
    fn_names = dict(fn_names)
    self_cost: dict[str, int] = {}
    calls_cost: dict[str, int] = {}
    npos = 1
    col = 0
    fl = "???"
    fn = None
    key = None
    cfn = None
    pending_call = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if key is None:
                    pending_call = False
                    continue
                fields = line.split()
                costs = fields[npos:]
                value = int(costs[col]) if col < len(costs) else 0
                if pending_call:
                    if cfn is not None and _base_fn(cfn) != _base_fn(fn):
                        calls_cost[key] = calls_cost.get(key, 0) + value
                    pending_call = False
                else:
                    self_cost[key] = self_cost.get(key, 0) + value
                continue
            if line.startswith("fl="):
                fl = _name(line[3:], fl_names)
            elif line.startswith(("fi=", "fe=")):
                _name(line[3:], fl_names)  # inlined code: same function, another file
            elif line.startswith("fn="):
                fn = _name(line[3:], fn_names)
                key = f"{fl}:{_base_fn(fn)}"
                self_cost.setdefault(key, 0)
            elif line.startswith(("cfl=", "cfi=")):
                _name(line[4:], fl_names)
            elif line.startswith("cfn="):
                cfn = _name(line[4:], fn_names)
            elif line.startswith("calls="):
                pending_call = True
            elif line.startswith("positions:"):
                npos = len(line.split()[1:])
            elif line.startswith("events:"):
                names = line.split()[1:]
                col = names.index("Ir") if "Ir" in names else 0
            elif line.startswith(("ob=", "cob=")):
                pass  # object names share no table with files/functions we need
    incl = {k: v + calls_cost.get(k, 0) for k, v in self_cost.items()}
    total = sum(self_cost.values())
    incl = {k: min(v, total) for k, v in incl.items()}
    return self_cost, incl


def _sibling_names(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Name-compression tables gathered from all parts of the same process's dumps."""
    stem = path.name.split(".")
    pid = stem[2] if len(stem) > 2 else ""
    fl_names: dict[str, str] = {}
    fn_names: dict[str, str] = {}
    for other in _dump_files(path.parent):
        parts = other.name.split(".")
        if len(parts) < 3 or parts[2] != pid:
            continue
        with open(other, encoding="utf-8", errors="replace") as f:
            for line in f:
                for prefix, table in (("fl=", fl_names), ("fi=", fl_names), ("fe=", fl_names),
                                      ("cfl=", fl_names), ("cfi=", fl_names),
                                      ("fn=", fn_names), ("cfn=", fn_names)):
                    if line.startswith(prefix):
                        m = _NAME.match(line[len(prefix):].rstrip("\n"))
                        if m and m.group(2) is not None:
                            table[m.group(1)] = m.group(2)
                        break
    return fl_names, fn_names
