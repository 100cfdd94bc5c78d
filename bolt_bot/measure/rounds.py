"""One wall-time round: one pytest-benchmark process on one side, stopped if it hangs, read back as data."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.measure import process, pytestcmd, sandbox
from bolt_bot.decide.benchjson import read_round
from bolt_bot.errors import BoltError
from bolt_bot.model import BenchmarkRound

# Short rounds: the variance lives between processes, so time goes into more rounds, not longer ones.
BENCHMARK_FLAGS = [
    "--benchmark-only",
    "--benchmark-max-time=0.05",
    "--benchmark-min-rounds=5",
    "--benchmark-disable-gc",
    "--benchmark-sort=name",
]
ROUND_PLUGIN = "bolt_round_plugin"


@dataclass
class RoundResult:
    records: list[BenchmarkRound] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # stage → error excerpt
    collect_errors: list[str] = field(default_factory=list)
    hung: str | None = None  # the stage that was running when the round timed out
    error: str | None = None  # the whole round failed: why
    seconds: float = 0.0


def _is_time(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 60


def run_round(
    python: Path,
    checkout: Path,
    targets: list[str],
    workdir: Path,
    *,
    label: str,
    pytest_args: list[str] = (),
    deselect: list[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    memory_mb: int | None = None,
) -> RoundResult:
    """Run one round of the suite (or of the `targets` node ids) and read its JSON."""
    workdir = Path(workdir).resolve()  # pytest runs in the checkout: a relative path would land there
    workdir.mkdir(parents=True, exist_ok=True)
    json_out = workdir / f"{label}.json"
    events = workdir / f"{label}.events"
    for stale in (json_out, events):
        stale.unlink(missing_ok=True)
    selection = _selection(targets, checkout, workdir / f"{label}.select")
    cmd = [str(python), "-m", "pytest", *pytestcmd.pytest_args(
        pytest_args, plugin=ROUND_PLUGIN, targets=selection,
        bolt_flags=[*BENCHMARK_FLAGS, f"--benchmark-json={json_out}"])]
    for nodeid in deselect:
        cmd += ["--deselect", nodeid]
    started = time.monotonic()
    done = process.run(cmd, checkout, sandbox.measured(env, probes=True, events=events), timeout, memory_mb=memory_mb)
    code, output = (None if done.timed_out else done.returncode), done.output
    result = RoundResult(seconds=time.monotonic() - started)
    running = None
    probes: dict[str, tuple[float, float]] = {}
    for line in events.read_text(encoding="utf-8").splitlines() if events.exists() else []:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "start":
            running = event["nodeid"]
        elif event.get("event") == "failed":
            result.failed.setdefault(event["nodeid"], event.get("excerpt") or "failed")
        elif event.get("event") == "collect_error":
            result.collect_errors.append(f"{event['nodeid']}: {event.get('excerpt')}")
        elif event.get("event") == "speed" and _is_time(event.get("before")) and _is_time(event.get("after")):
            probes[event["nodeid"]] = (float(event["before"]), float(event["after"]))
    if code is None:
        result.hung = running
        result.error = f"timed out after {timeout:.0f} s" + (f" in {running}" if running else "")
        if running:
            result.failed[running] = f"timed out after {timeout:.0f} s (stopped)"
        return result
    if code == 4:
        raise BoltError(f"pytest refused the arguments: {process.error_line(output)}")
    if json_out.exists() and json_out.stat().st_size:
        result.records = read_round(json_out)
        for record in result.records:
            record.probe = probes.get(record.name)
    elif code not in (0, 5):
        if code < 0 and running:  # killed by a signal (crash, out of memory) mid-stage
            result.failed[running] = f"crashed with signal {-code}"
        result.error = process.error_line(output) if not result.collect_errors else result.collect_errors[0][:300]
    return result


def _selection(targets: list[str], checkout: Path, select_file: Path) -> list[str]:
    """pytest's positional arguments for `targets`. Node ids go to the round plugin's --bolt-select
    file (pytest's own parser cannot re-select an id whose parameters hold "::", and fails the whole
    round on an id that vanished); only the files they live in are named, those that exist."""
    paths = [t for t in targets if "::" not in t]
    nodeids = [t for t in targets if "::" in t]
    if not nodeids:
        select_file.unlink(missing_ok=True)
        return list(paths)
    select_file.write_text("".join(n + "\n" for n in nodeids), encoding="utf-8")
    files = [n.split("::", 1)[0] for n in nodeids]
    files = [f for f in dict.fromkeys(files) if (checkout / f).exists()]
    return [*paths, *files, f"--bolt-select={select_file.resolve()}"]
