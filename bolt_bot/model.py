"""Plain data passed between Bolt's steps, and the results.json format (schema bolt/results/v1)."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bolt_bot.errors import BoltError
from bolt_bot.jsondata import Unsure, build, checked, field_names, gc_paused, json_default, plain, quick_builder
from bolt_bot.jsondata import short as _short  # bolt_bot.decide.benchjson imports it from here too

SCHEMA = "bolt/results/v1"

# Stage verdicts, and the run verdict (a subset), most urgent first.
REGRESSED = "regressed"
FAILED = "failed"
IMPROVED = "improved"
INCONCLUSIVE = "inconclusive"
UNCHANGED = "unchanged"
ADDED = "added"
REMOVED = "removed"
STAGE_VERDICTS = (REGRESSED, FAILED, IMPROVED, INCONCLUSIVE, UNCHANGED, ADDED, REMOVED)
RUN_VERDICTS = (REGRESSED, FAILED, IMPROVED, INCONCLUSIVE, UNCHANGED)

# What the memory pass compares of one call, in the order the report names them (MemoryComparison.moved).
MEMORY_KINDS = ("allocations", "allocated", "peak")

WALLTIME = "walltime"
INSTRUCTIONS = "instructions"


@dataclass
class BenchmarkRound:
    """One stage's numbers from one pytest process (one "round") on one side."""

    name: str  # the pytest-benchmark fullname
    group: str | None = None
    params: dict[str, Any] | None = None
    extra_info: dict[str, Any] = field(default_factory=dict)
    median: float = 0.0  # seconds per call (or instructions per call)
    mean: float = 0.0
    stddev: float = 0.0
    min: float = 0.0
    max: float = 0.0
    samples: int = 0  # pytest-benchmark "rounds" inside the process
    quartiles: tuple[float, float] | None = None  # q1 and q3 of those samples, when the file has them
    data: list[float] | None = None  # raw per-sample times, when saved
    unit: str = "s"  # "s" for wall time, "instr" for instruction counts
    probe: tuple[float, float] | None = None  # speed-probe seconds just before and after (wall-time rounds)


@dataclass
class SideSummary:
    """What one side measured for one stage, over all its rounds."""

    rounds: int = 0
    center: float | None = None  # geometric mean of the per-round medians: what the ratio compares
    median: float | None = None  # median of the per-round medians
    mean: float | None = None
    rel_stddev: float | None = None  # relative spread of the per-round medians
    min: float | None = None
    max: float | None = None
    unit: str = "s"
    values: list[float] = field(default_factory=list)  # the per-round medians
    error: str | None = None  # why the side failed, if it did


@dataclass
class ProfileLine:
    """One function in a differential profile excerpt."""

    function: str  # "path/to/file.py:12(name)"
    base: float  # own time per call of the stage on base (seconds), 0 if absent
    head: float
    delta: float
    base_cum: float = 0.0
    head_cum: float = 0.0
    base_calls: int = 0
    head_calls: int = 0
    new: bool = False


@dataclass
class WallSize:
    """How much wall time a stage decided by instruction counts moved (the paired engine): shown beside the
    count, never a verdict."""

    ratio: float | None = None  # head/base
    ci: list[float] | None = None  # [low, high], 95 %
    pairs: int = 0  # process pairs behind it
    note: str | None = None  # why there is no size


@dataclass
class MemorySide:
    """One call of a stage on one side, traced after a warm-up call with GC collected (the memory pass)."""

    allocations: int | None = None  # blocks allocated during the call (freed or not)
    allocated: int | None = None  # bytes allocated during the call, in total
    # highest bytes in use during the call and the uncounted call traced before it, above what was in use when
    # that one started: what a call keeps (a cache that grows) raises it (docs/measurement.md, "Memory")
    peak: int | None = None
    top: list[AllocSite] = field(default_factory=list)  # the call's biggest allocating lines, most bytes first
    error: str | None = None  # why this side has no numbers


@dataclass
class AllocSite:
    """One source line's allocations in one call of a stage."""

    where: str  # "path/to/file.py:12" relative to the checkout, or "<module>:line" outside it
    function: str | None = None
    allocations: int = 0
    allocated: int = 0  # bytes
    code: str | None = None  # the line's text: base and head lines are matched by it when the line moved


@dataclass
class AllocLine:
    """A line of a stage's memory excerpt: what it allocates per call on base and head."""

    where: str
    function: str | None = None
    base_allocations: int = 0
    head_allocations: int = 0
    base_bytes: int = 0
    head_bytes: int = 0
    new: bool = False  # only head allocates here
    code: str | None = None  # the line's text on head


@dataclass
class MemoryComparison:
    """A stage's memory verdict, separate from its time verdict (StageComparison.verdict): either can regress
    the stage, and a memory regression joins the gate like a time one (Results.regressions)."""

    verdict: str  # regressed | improved | unchanged | failed | added | removed
    moved: list[str] = field(default_factory=list)  # what passed its floor: "allocations", "allocated", "peak"
    regressed: list[str] = field(default_factory=list)  # the kinds that grew past their floor
    base: MemorySide | None = None
    head: MemorySide | None = None
    lines: list[AllocLine] = field(default_factory=list)  # where head allocates more than base, most first
    note: str | None = None

    def values(self, kind: str) -> tuple[int | None, int | None]:
        """(base, head) of "allocations", "allocated" or "peak"; None for a side that lacks it."""
        return (getattr(self.base, kind, None) if self.base else None,
                getattr(self.head, kind, None) if self.head else None)

    def ratio(self, kind: str) -> float | None:
        """head/base of `kind`; None when either side lacks it or base is 0."""
        base, head = self.values(kind)
        return None if base is None or head is None or base == 0 else head / base


@dataclass
class StageComparison:
    """The verdict on one stage, with the evidence behind it."""

    name: str
    verdict: str
    group: str | None = None
    params: dict[str, Any] | None = None
    measure: str = WALLTIME
    ratio: float | None = None  # head/base, > 1 is slower
    ci: list[float] | None = None  # [low, high] of the ratio
    p: float | None = None  # raw p-value of the test, where one applies
    q: float | None = None  # p adjusted for the number of stages (Benjamini-Hochberg)
    low_confidence: bool = False  # judged from a single round on a side: the single-run floor, no interval
    note: str | None = None  # why inconclusive, failed...
    base: SideSummary | None = None
    head: SideSummary | None = None
    extra_info: dict[str, Any] = field(default_factory=dict)
    profile: list[ProfileLine] | None = None
    profile_note: str | None = None  # why a regressed stage's profile is empty or missing
    wall_size: WallSize | None = None  # a counted stage that moved: its paired wall-time change (auto mode)
    memory: MemoryComparison | None = None  # the memory pass's verdict (setting `memory`), None when off

    @property
    def memory_regressed(self) -> bool:
        return self.memory is not None and self.memory.verdict == REGRESSED

    @property
    def regressed(self) -> bool:
        """Regressed in time or in memory: what the gate (status, label, approval) counts."""
        return self.verdict == REGRESSED or self.memory_regressed

    @property
    def change(self) -> float | None:
        """Signed relative change, +0.05 is 5 % slower."""
        return None if self.ratio is None else self.ratio - 1.0


@dataclass
class CommitRef:
    ref: str | None = None
    sha: str | None = None


@dataclass
class Results:
    """Everything render and publish need: the content of results.json."""

    stages: list[StageComparison]
    verdict: str
    measure: str = WALLTIME
    settings: dict[str, Any] = field(default_factory=dict)
    base: CommitRef = field(default_factory=CommitRef)
    head: CommitRef = field(default_factory=CommitRef)
    approval: dict[str, Any] | None = None
    pull_request: int | None = None
    repository: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)  # runner, python, rounds, duration
    notices: list[str] = field(default_factory=list)  # one-line notices shown in the comment footer
    schema: str = SCHEMA

    def count(self, verdict: str) -> int:
        return sum(1 for stage in self.stages if stage.verdict == verdict)

    @property
    def regressions(self) -> list[StageComparison]:
        """Stages that regressed in time or in memory."""
        return [s for s in self.stages if s.regressed]

    def to_dict(self) -> dict[str, Any]:
        data = plain(self)
        data["counts"] = self._counts()
        return data

    def _counts(self) -> dict[str, int]:
        counts = collections.Counter(stage.verdict for stage in self.stages)
        return {v: counts[v] for v in STAGE_VERDICTS}

    def to_json(self) -> str:
        """to_dict() as results.json's text: indented, but one line per stage, which json's C encoder writes
        straight from the dataclasses (an indented dump of 10,000 stages goes through json's pure-Python
        encoder and took a second)."""
        stages = [_LINE.encode(stage) for stage in self.stages]
        data = {name: getattr(self, name) for name in field_names(Results) if name != "stages"}
        data["counts"] = self._counts()
        rest = json.dumps(data, indent=2, allow_nan=False, default=json_default)  # small: settings, notices...
        listed = ["[\n    ", ",\n    ".join(stages), "\n  ]"] if stages else ["[]"]
        return "".join(['{\n  "stages": ', *listed, ",\n", rest[2:], "\n"])  # one copy of 13 MB, not four

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def from_dict(cls, data: Any, source: str = "results.json") -> Results:
        """Rebuild from JSON data, refusing anything that is not a v1 results document.

        Every field is type-checked: results.json may come from an untrusted artifact, and a wrong type
        must be refused here in one line rather than crash the templates later."""
        if not isinstance(data, dict):
            raise BoltError(f"{source}: not a Bolt results document (expected a JSON object)")
        if data.get("schema") != SCHEMA:
            raise BoltError(f"{source}: schema is {_short(data.get('schema'))}, expected {SCHEMA!r}")
        try:
            if "stages" not in data or "verdict" not in data:
                raise ValueError("'stages' and 'verdict' are required")
            if not isinstance(data["stages"], list):
                raise ValueError(f"stages is {_short(data['stages'])}, expected a list")
            stages = [_stage_from_dict(s, i) for i, s in enumerate(data["stages"])]
            verdict = data["verdict"]
            if verdict not in RUN_VERDICTS:
                raise ValueError(f"unknown verdict {_short(verdict)}")
            rest = {k: data[k] for k in ("measure", "settings", "base", "head", "approval", "pull_request",
                                         "repository", "environment") if data.get(k) is not None}
            rest["notices"] = [str(n) for n in checked(data.get("notices") or [], list, "notices")]
            results = build(cls, {**rest, "stages": [], "verdict": verdict}, "")
            results.stages = stages
            _check_extras(results)
            return results
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BoltError(f"{source}: malformed results document ({type(exc).__name__}: {exc})") from None

    @classmethod
    def read(cls, path: Path) -> Results:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BoltError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise BoltError(f"{path}: not UTF-8 text") from None
        with gc_paused():
            try:
                data = json.loads(text, parse_constant=_refuse_constant)
            except json.JSONDecodeError as exc:
                raise BoltError(f"{path}: not valid JSON ({exc})") from None
            except (ValueError, RecursionError) as exc:  # NaN/Infinity, or nesting deeper than any results.json
                raise BoltError(f"{path}: not a Bolt results document ({exc})") from None
            return cls.from_dict(data, str(path))


_LINE = json.JSONEncoder(allow_nan=False, default=json_default)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"the JSON holds {name}, which results.json never does")


def _check_extras(results: Results) -> None:
    """What the templates need beyond the field types."""
    duration = results.environment.get("duration")
    if duration is not None:
        checked(duration, float, "environment.duration")  # formatted with %.0f
    if results.approval is not None:  # the templates read these four; an approval may lack any of them
        for key in ("user", "sha", "reason", "at"):
            checked(results.approval.get(key), str | None, f"approval.{key}")
            results.approval.setdefault(key, None)


def _stage_from_dict(data: Any, index: int = 0) -> StageComparison:
    where = f"stages[{index}]"
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError(f"{where} has no name")
    if data.get("verdict") not in STAGE_VERDICTS:
        raise ValueError(f"stage {_short(data['name'])} has unknown verdict {_short(data.get('verdict'))}")
    try:
        stage = quick_builder(StageComparison)(data)
    except Unsure:
        stage = build(StageComparison, data, where)
    if stage.ci is not None and len(stage.ci) != 2:
        raise ValueError(f"{where}.ci has {len(stage.ci)} numbers, expected [low, high]")
    if stage.wall_size is not None and stage.wall_size.ci is not None and len(stage.wall_size.ci) != 2:
        raise ValueError(f"{where}.wall_size.ci has {len(stage.wall_size.ci)} numbers, expected [low, high]")
    return stage
