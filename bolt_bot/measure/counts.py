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
  i.e. the plain pytest node ids. Bolt's count plugin (measure/probe/bolt_count_plugin.py, loaded with
  ``-p``; it takes its folder out of ``sys.path`` at once) records, for every selected item, the node id
  and the uri computed with codspeed's own function, plus outcomes and collection errors, as JSON
  lines flushed after each event (so a crash loses nothing already reported).

What is counted: the ``totals:`` of the stage's dump less the instructions CPython's small-object
allocator (Objects/obmalloc.c) made in it (measure/dumpcost.py). pymalloc's cost per call depends on
where its arenas lie, i.e. on everything the process did before (down to the hashes of the checkout's
path), not on the stage's code: the same code in two checkouts counted 1.04 % apart, all of it there
(docs/measurement.md). Without line information the allocator is known by its functions' names; in a
stripped interpreter nothing is known as the allocator's and the total stays.

Determinism: ``PYTHONHASHSEED=0``, default allocator (``PYTHONMALLOC`` removed), bytecode compiled
beforehand (checkout and the environment's site-packages), and one cheap collect-only run without
valgrind first, which also writes pytest's assertion-rewrite caches and catches collection errors
before paying for valgrind. Give base and head checkouts, environments and workdirs paths of equal
length: path strings are hashed and copied by imports and show up in the counts.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.measure import process, pytestcmd, sandbox
from bolt_bot.measure.dumpcost import allocator_share
from bolt_bot.errors import BoltError

CODSPEED_VERSION = "5.0.4"

# Bolt's own flags of the measured run; the isolation every pass shares comes from pytestcmd.
CODSPEED_FLAGS = ["--codspeed", "--codspeed-mode=simulation"]

_DUMP_PREFIX = "callgrind.out."
_TRIGGER = "desc: Trigger: Client Request: "

PLUGIN = "bolt_count_plugin"  # measure/probe/bolt_count_plugin.py

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

@dataclass
class InstructionRun:
    counts: dict[str, int]  # stage fullname -> instructions for one call, the allocator's left out
    failed: dict[str, str]  # stage fullname -> short error excerpt (test failed or crashed)
    log_excerpt: str  # the tail of pytest/valgrind output when something went wrong
    dumps: dict[str, Path] = field(default_factory=dict)  # stage fullname -> its callgrind dump
    command: list[str] = field(default_factory=list)  # the valgrind command line that was run
    seconds: float = 0.0  # wall time of the valgrind run
    allocator: dict[str, int] = field(default_factory=dict)  # stage fullname -> the allocator's instructions left out


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

    ``pytest_args`` select the benchmarks (paths, ``-k``, ``-m``...); what would fight the count
    (pytest-benchmark and xdist options among others) is dropped by pytestcmd. Raises BoltError for
    setup problems (no valgrind, pytest-codspeed missing in the environment, pytest usage or
    collection errors), process.PassStopped after process.stop_all().
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
    run_env = sandbox.measured(env if env is not None else sandbox.side_environ(python), codspeed_profile=profile_dir)
    # Every --benchmark-* option is dropped: pytest-codspeed owns the `benchmark` fixture here.
    args = pytestcmd.pytest_args(pytest_args, plugin=PLUGIN, bolt_flags=CODSPEED_FLAGS, benchmark_options=False)
    since = process.generation()  # a process.stop_all() from now on ends this measurement

    # 1. Compile bytecode, check pytest-codspeed is there.
    prep = process.run([str(python), "-c", _PREPARE, str(checkout)], checkout, run_env, timeout,
                       log=workdir / "prepare.log", since=since)
    if prep.timed_out:
        raise BoltError(f"compiling the checkout timed out after {timeout:.0f} s")
    if "BOLT-NO-CODSPEED" in prep.output:
        raise BoltError(f"pytest-codspeed is not installed in the environment of {python} "
                        f"(install {codspeed_requirement()})")
    if prep.returncode != 0:
        raise BoltError(f"could not run {python}: {process.error_line(prep.output)}")

    # 2. Collect once without valgrind: catches collection errors cheaply and writes pytest's
    #    assertion-rewrite caches, so the measured run is not a first run.
    #    pytest-benchmark is blocked (-p no:benchmark, its options and hooks stubbed): loaded, it
    #    runs git/hg/file subprocesses at start-up, which made reruns differ by a few hundred
    #    instructions. If the project cannot run that way, load it (codspeed then blocks it).
    pre_events = workdir / "collect-events.jsonl"
    for mode in ("stub", "load"):
        pre_events.unlink(missing_ok=True)
        mode_args = ["-p", "no:benchmark", *args] if mode == "stub" else args
        pre = process.run([str(python), "-m", "pytest", *mode_args, "--collect-only", "-q"], checkout,
                          {**run_env, "BOLT_COUNT_EVENTS": str(pre_events)}, timeout, log=workdir / "collect.log",
                          since=since)
        pre_ev = process.read_events(pre_events)
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
        str(python), "-m", "pytest", *mode_args,
    ]
    res = process.run(cmd, checkout, {**run_env, "BOLT_COUNT_EVENTS": str(events)}, timeout,
                      log=workdir / "valgrind.log", since=since)
    ev = process.read_events(events)
    items = _items(ev)
    if any(e["ev"] == "collect_error" for e in ev):
        _raise_for_setup(2, res.output, ev, False, timeout)
    if not items:
        if res.timed_out:
            raise BoltError(f"starting pytest under valgrind timed out after {timeout:.0f} s")
        if res.returncode in (0, 5):
            return InstructionRun(counts={}, failed={}, log_excerpt="", command=cmd,
                                  seconds=res.seconds)
        raise BoltError(f"pytest under valgrind failed before collecting: "
                        f"{_crash_reason(res.returncode, res.output)}: {process.error_line(res.output)}")

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
            failed[e["nodeid"]] = _first_line(e.get("text") or "failed", e.get("when"))
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

    dumps = {n: found[n][1] for n in items if n in found}
    # The allocator's share depends on the heap layout, not on the code: left out (module docstring).
    allocator = {n: allocator_share(dumps[n]) for n in items if n in found and n not in failed}
    counts = {n: found[n][0] - allocator[n] for n in allocator}
    # Passed but never measured (benchmark fixture requested but not called): not a stage.
    log = _tail(res.output) if (failed or abnormal) else ""
    return InstructionRun(counts=counts, failed=failed, log_excerpt=log, dumps=dumps,
                          command=cmd, seconds=res.seconds, allocator=allocator)


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
                        f"{_first_line(first.get('text') or '')}{more}")
    if rc in (0, 1, 5):
        return
    if rc == 4:
        raise BoltError(f"pytest usage error: {process.error_line(output)}")
    raise BoltError(f"pytest failed before running the benchmarks (exit {rc}): {process.error_line(output)}")


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


def _first_line(text: str, when: str | None = None) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    line = lines[0] if lines else "failed"
    if when and when != "call":
        line = f"error in {when}: {line}"
    return line if len(line) <= 200 else line[:197] + "..."


def _tail(output: str, lines: int = 40, chars: int = 4000) -> str:
    text = "\n".join(output.splitlines()[-lines:])
    return text[-chars:]


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
