"""`bolt run --shard K/N`: the suite's stage list, each stage's expected duration, and one deterministic partition.

Every shard computes the whole partition from the same inputs and measures only its own share, base AND
head of each stage. The inputs are the stage list (collected on both sides, so every shard sees the same
union), and the expected durations: a durations file or an earlier results directory when one is given
(the same bytes on every machine), else the discovery round of `--measure auto` (timed on this machine:
quantised to whole decades so that machines that differ a little still agree), else one unit per stage.
The partition, its inputs' hash and the source are recorded in results.json, so `bolt merge` can refuse
shards that overlap or leave a stage out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.errors import BoltError
from bolt_bot.measure import process, pytestcmd, sandbox
from bolt_bot.measure.discovery import SHORT_CALL, Split
from bolt_bot.measure.probe.bolt_shard_select import LIST_VARIABLE, SELECT_VARIABLE
from bolt_bot.measure.walltime import SideSetup
from bolt_bot.model import INSTRUCTIONS, SCHEMA, Results
from bolt_bot.settings import Settings

COLLECT_PLUGIN = "bolt_shard_select"  # measure/probe/bolt_shard_select.py
CALLGRIND_FACTOR = 70  # a call under callgrind takes about 70 times as long (discovery.SHORT_CALL's reason)
INSTRUCTIONS_PER_SECOND = 1e9  # to turn a stage's instruction count into a duration: only relative sizes matter
MIN_SECONDS = 1e-3

FILE, RESULTS, DISCOVERY, COUNT = "durations file", "earlier results", "discovery round", "stage count"


@dataclass(frozen=True)
class ShardSpec:
    index: int  # 1-based: shard 1/3 is the first of three
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> ShardSpec:
    """`K/N` with 1 <= K <= N; bad input is one BoltError line."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not found:
        raise BoltError(f"--shard must be K/N, e.g. 2/4, not {text!r}")
    index, count = int(found[1]), int(found[2])
    if count < 1 or not 1 <= index <= count:
        raise BoltError(f"--shard {text}: K must be between 1 and N (N at least 1)")
    return ShardSpec(index, count)


@dataclass
class Durations:
    """Expected seconds to measure each stage (both sides, every pass), and where they came from."""

    seconds: dict[str, float]
    source: str


def read_durations(path: Path, rounds: int = 10) -> Durations:
    """A JSON object stage → seconds, or a results.json (or the directory holding one) of an earlier run."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise BoltError(f"--durations {path}: cannot read it as JSON ({type(exc).__name__})") from None
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        results = Results.from_dict(data, str(file))
        return Durations(durations_from_results(results, rounds), f"{RESULTS} {path.name}")
    if not isinstance(data, dict) or not all(_seconds(v) for v in data.values()):
        raise BoltError(f"--durations {path}: expected a JSON object of stage name → seconds, or a results.json")
    return Durations({str(k): float(v) for k, v in data.items()}, f"{FILE} {path.name}")


def _seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def expected_seconds(per_call: float, counted: bool, rounds: int) -> float:
    """About how long measuring a stage takes, from the seconds one call takes.

    Wall time: `rounds` rounds a side, each at least pytest-benchmark's 50 ms or five calls, plus a warm-up
    call. Counts: three passes (base, head, head again) of a warm-up call and one call under callgrind."""
    if counted:
        return 3 * (CALLGRIND_FACTOR + 1) * per_call
    return 2 * rounds * (max(5 * per_call, 0.05) + per_call)


def durations_from_results(results: Results, rounds: int) -> dict[str, float]:
    """Expected durations from the stages an earlier run measured (the centre of either side)."""
    out = {}
    for stage in results.stages:
        side = next((s for s in (stage.head, stage.base) if s is not None and s.center), None)
        if side is None:
            continue
        counted = stage.measure == INSTRUCTIONS or side.unit == "instr"
        per_call = side.center / INSTRUCTIONS_PER_SECOND if counted else side.center
        out[stage.name] = expected_seconds(per_call, counted, rounds)
    return out


def durations_from_discovery(split: Split) -> dict[str, float]:
    """Weights from `--measure auto`'s discovery round (the slower side's call), coarse enough to agree
    between runners: each shard times it on its own machine, and one round moves by up to 15 %.

    Every short stage (a call under discovery.SHORT_CALL, which is what instruction counts take) weighs one
    unit: its wall-time rounds take pytest-benchmark's minimum time whatever its call, and its counts are
    not timed at all. A longer stage costs about 100 times its call in units (wall-time rounds of at least
    five calls), taken at the middle of its call's decade: 30 units for a call of 0.1-1 s, 300 for 1-10 s."""
    calls: dict[str, float] = {}
    for seconds in split.seconds.values():
        for name, took in seconds.items():
            calls[name] = max(calls.get(name, 0.0), took)
    return {name: 1.0 if took < SHORT_CALL else 30.0 * 10.0 ** math.floor(math.log10(took / SHORT_CALL))
            for name, took in calls.items()}


def weights(stages: list[str], durations: Durations | None) -> dict[str, float]:
    """Each stage's weight in the partition: its expected seconds, quantised so every machine agrees.

    Durations read from a file are the same everywhere: two significant digits take float formatting out.
    Discovery's are this machine's and come quantised already (durations_from_discovery): a stage near a
    boundary may still weigh otherwise on another runner, and merge refuses shards whose shares then
    overlap or leave a stage out. Stages without a duration get the median of the others'; without any
    durations every stage weighs 1."""
    if durations is None or not durations.seconds:
        return {name: 1.0 for name in stages}
    quantised = durations.source == DISCOVERY
    listed = set(stages)  # once, not per stage: 10,000 stages partitioned in milliseconds, not seconds
    known = {n: max(s, MIN_SECONDS) for n, s in durations.seconds.items() if n in listed}
    fill = statistics.median(known.values()) if known else 1.0
    out = {}
    for name in stages:
        value = known.get(name, fill)
        out[name] = value if quantised else round(value, 1 - math.floor(math.log10(value)))
    return out


def partition(stage_weights: dict[str, float], count: int) -> list[list[str]]:
    """Greedy by weight: heaviest first (ties by name), each to the least-loaded shard (ties by index)."""
    loads = [0.0] * count
    shares: list[list[str]] = [[] for _ in range(count)]
    for name in sorted(stage_weights, key=lambda n: (-stage_weights[n], n)):
        k = min(range(count), key=lambda i: (loads[i], i))
        shares[k].append(name)
        loads[k] += stage_weights[name]
    return [sorted(share) for share in shares]


def digest(value: object) -> str:
    """A short hash of JSON data: shards with the same stage list (or partition inputs) share it."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


@dataclass
class ShardPlan:
    """The whole partition as this shard computed it, and its share."""

    spec: ShardSpec
    stages: list[str]
    weights: dict[str, float]
    shares: list[list[str]]
    source: str
    notices: list[str] = field(default_factory=list)

    @property
    def share(self) -> list[str]:
        return self.shares[self.spec.index - 1]

    def record(self) -> dict:
        """What results.json keeps under environment.shard for `bolt merge`."""
        return {
            "index": self.spec.index, "count": self.spec.count, "durations": self.source,
            "stages": self.stages, "stage_list": digest(self.stages),
            "partition": self.shares, "inputs": digest([self.stages, [self.weights[n] for n in self.stages],
                                                        self.spec.count]),
            "loads": [round(sum(self.weights[n] for n in share), 3) for share in self.shares],
        }


def plan_shard(spec: ShardSpec, stages: list[str], durations: Durations | None) -> ShardPlan:
    """The whole partition of `stages` (in any order) into `spec.count` shares, and this shard's."""
    stages = sorted(set(stages))
    stage_weights = weights(stages, durations)
    source = durations.source if durations is not None and durations.seconds else COUNT
    return ShardPlan(spec, stages, stage_weights, partition(stage_weights, spec.count), source)


def collect_stages(setups: dict[str, SideSetup], settings: Settings, workdir: Path) -> list[str]:
    """The stages of both sides (their union, sorted): the tests that use the `benchmark` fixture, as the
    project's own selection (benchmark paths, -k, -m) leaves them. A side that cannot be collected adds
    nothing (measuring it reports why); nothing on either side is an error."""
    found: set[str] = set()
    errors = []
    for side, setup in setups.items():
        listing = (workdir / f"{side}.json").resolve()
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.unlink(missing_ok=True)
        env = sandbox.measured(setup.env)
        env[LIST_VARIABLE] = str(listing)
        cmd = [str(setup.python), "-m", "pytest", *pytestcmd.pytest_args(
            settings.pytest_args, plugin=COLLECT_PLUGIN, targets=settings.benchmarks,
            bolt_flags=["--collect-only", "--continue-on-collection-errors"])]
        done = process.run(cmd, setup.checkout, env, settings.round_timeout, log=workdir / f"{side}.log")
        try:
            found.update(json.loads(listing.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            errors.append(f"{side}: {process.error_line(done.output)}")
    if not found:
        raise BoltError("no benchmark was collected on either side, so there is nothing to shard"
                        + (f" ({'; '.join(errors)})" if errors else ""))
    return sorted(found)


def select_share(setups: dict[str, SideSetup], share: list[str], workdir: Path) -> dict[str, SideSetup]:
    """The sides' setups with the shard's stages named for every measured pass (the probe plugins keep only them)."""
    select = (workdir / "select.txt").resolve()
    select.parent.mkdir(parents=True, exist_ok=True)
    select.write_text("".join(name + "\n" for name in share), encoding="utf-8")
    return {side: dataclasses.replace(setup, env={**(setup.env or sandbox.side_environ(setup.python)),
                                                   SELECT_VARIABLE: str(select)})
            for side, setup in setups.items()}


def restrict(split: Split, share: list[str]) -> Split:
    """The discovery round's findings for the shard's stages only."""
    keep = set(share)
    return Split(counted=[n for n in split.counted if n in keep], timed=[n for n in split.timed if n in keep],
                 reasons={n: r for n, r in split.reasons.items() if n in keep},
                 seconds={side: {n: s for n, s in by.items() if n in keep} for side, by in split.seconds.items()})
