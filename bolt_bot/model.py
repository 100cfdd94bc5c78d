"""Plain data passed between Bolt's steps, and the results.json format (schema bolt/results/v1)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bolt_bot.errors import BoltError

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
    data: list[float] | None = None  # raw per-sample times, when saved
    unit: str = "s"  # "s" for wall time, "instr" for instruction counts


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
    low_confidence: bool = False  # one round per side: within-run fallback
    note: str | None = None  # why inconclusive, failed...
    base: SideSummary | None = None
    head: SideSummary | None = None
    extra_info: dict[str, Any] = field(default_factory=dict)
    profile: list[ProfileLine] | None = None

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
        return [s for s in self.stages if s.verdict == REGRESSED]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["counts"] = {v: self.count(v) for v in STAGE_VERDICTS}
        return data

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def from_dict(cls, data: Any, source: str = "results.json") -> Results:
        """Rebuild from JSON data, refusing anything that is not a v1 results document."""
        if not isinstance(data, dict):
            raise BoltError(f"{source}: not a Bolt results document (expected a JSON object)")
        if data.get("schema") != SCHEMA:
            raise BoltError(f"{source}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
        try:
            stages = [_stage_from_dict(s) for s in data["stages"]]
            verdict = data["verdict"]
            if verdict not in RUN_VERDICTS:
                raise ValueError(f"unknown verdict {verdict!r}")
            return cls(
                stages=stages,
                verdict=verdict,
                measure=str(data.get("measure", WALLTIME)),
                settings=dict(data.get("settings") or {}),
                base=CommitRef(**(data.get("base") or {})),
                head=CommitRef(**(data.get("head") or {})),
                approval=data.get("approval"),
                pull_request=_optional_int(data.get("pull_request")),
                repository=data.get("repository"),
                environment=dict(data.get("environment") or {}),
                notices=[str(n) for n in data.get("notices") or []],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BoltError(f"{source}: malformed results document ({type(exc).__name__}: {exc})") from None

    @classmethod
    def read(cls, path: Path) -> Results:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BoltError(f"{path}: cannot read ({exc.strerror or exc})") from None
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BoltError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, str(path))


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _stage_from_dict(data: dict[str, Any]) -> StageComparison:
    if not isinstance(data.get("name"), str):
        raise ValueError("a stage has no name")
    if data.get("verdict") not in STAGE_VERDICTS:
        raise ValueError(f"stage {data.get('name')!r} has unknown verdict {data.get('verdict')!r}")
    fields = {f.name for f in dataclasses.fields(StageComparison)}
    values = {k: v for k, v in data.items() if k in fields}
    for side in ("base", "head"):
        if values.get(side) is not None:
            values[side] = SideSummary(**values[side])
    if values.get("profile") is not None:
        values["profile"] = [ProfileLine(**line) for line in values["profile"]]
    return StageComparison(**values)
