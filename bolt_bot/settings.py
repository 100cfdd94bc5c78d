"""Bolt's settings: defaults, overridden by [tool.bolt] in pyproject.toml, overridden by flags or Action inputs."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bolt_bot.errors import BoltError
from bolt_bot.measure.sandbox import forbidden

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MEASURES = ("auto", "walltime", "instructions")
# How wall time is measured: "paired" (base and head alternating in short blocks on one CPU, bolt_bot.measure.paired)
# or "rounds" (whole interleaved pytest rounds, bolt_bot.measure.walltime).
WALLTIME_ENGINES = ("paired", "rounds")
COMMENT_MODES = ("always", "on-change", "never")
REPORT_MODES = ("status", "check", "both")  # the commit status bolt/performance, the check run Bolt, or both
APPROVERS = ("write", "admin")
MEMORY_MODES = ("auto", "off")  # auto: the memory pass for every stage but those too long to trace (measure/memory.py)


@dataclass
class Settings:
    """One typed object read once; every step receives the part it needs."""

    threshold: float = 3.0  # wall-time effect floor, percent
    instr_threshold: float = 1.0  # instruction-count floor, percent
    instr_warning: float = 0.5  # instruction-count warning band starts here, percent
    alpha: float = 0.05  # false discovery rate across stages
    rounds: int = 10  # planned rounds (pytest processes) per side
    budget: float = 120.0  # seconds for extra rounds on inconclusive stages
    round_timeout: float = 600.0  # seconds before one round is stopped
    round_memory_mb: int = 4096  # address space of one round's process (0: no limit)
    measure: str = "auto"
    # Whole rounds: they beat the paired engine on the detection benchmark's standard suite, quiet and with a
    # CPU hog (benchmarks/README.md); "paired" wins on microsecond single-shot benchmarks.
    walltime_engine: str = "rounds"
    walltime_stages: list[str] = field(default_factory=list)  # fnmatch patterns of stages always timed (I/O, threads)
    benchmarks: list[str] = field(default_factory=list)  # paths given to pytest
    pytest_args: list[str] = field(default_factory=list)
    install: str | None = None  # custom install command, run in the checkout with the env's python on PATH
    extras: list[str] = field(default_factory=list)
    python: str | None = None  # interpreter version for the environments, e.g. "3.11"
    fail_on_regression: bool = False
    comment: str = "on-change"
    report: str = "status"  # status | check | both: a check run needs `checks: write` and an App token
    perf_label: str = "perf"
    approval_label: str = "perf-approved"
    regression_label: str = "perf-regression"
    approvers: str = "write"
    approve_by_review: bool = False
    template_dir: str | None = None
    profile: bool = True  # profile the regressed stages
    # Time the wall-time size of counted changes with the paired engine (about 8 s per run that flags a counted
    # stage); shown beside the count, never a verdict.
    wall_sizes: bool = True
    pass_env: list[str] = field(default_factory=list)  # variables the benchmarks read, passed to every measured pass
    # Memory (decide/memory.py, docs/measurement.md "Memory"): allocations and bytes of one call repeat exactly,
    # so a tight relative floor; the absolute minimums keep a few objects more in a tiny stage from going red.
    memory: str = "auto"
    memory_threshold: float = 1.0  # percent: allocations and allocated bytes
    memory_min_allocations: int = 64  # and at least this many allocations more (or fewer)
    memory_min_bytes: int = 4096  # and at least this many bytes more (or fewer)
    peak_threshold: float = 10.0  # percent: the peak depends on the allocator, so a wide margin
    peak_min_bytes: int = 65536  # and at least this many bytes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, values: dict[str, Any], source: str) -> Settings:
        """A copy with `values` applied (None means "not given"), each checked and converted."""
        known = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = raw_key.replace("-", "_")
            if value is None:
                continue
            if key not in known:
                raise BoltError(f"{source}: unknown setting {raw_key!r}")
            changes[key] = _convert(key, value, getattr(self, key), source)
        new = dataclasses.replace(self, **changes)
        new.check(source)
        return new

    def check(self, source: str) -> None:
        if self.measure not in MEASURES:
            raise BoltError(f"{source}: measure must be one of {', '.join(MEASURES)}, not {self.measure!r}")
        if self.walltime_engine not in WALLTIME_ENGINES:
            raise BoltError(f"{source}: walltime-engine must be one of {', '.join(WALLTIME_ENGINES)}, "
                            f"not {self.walltime_engine!r}")
        if self.comment not in COMMENT_MODES:
            raise BoltError(f"{source}: comment must be one of {', '.join(COMMENT_MODES)}, not {self.comment!r}")
        if self.report not in REPORT_MODES:
            raise BoltError(f"{source}: report must be one of {', '.join(REPORT_MODES)}, not {self.report!r}")
        if self.approvers not in APPROVERS:
            raise BoltError(f"{source}: approvers must be one of {', '.join(APPROVERS)}, not {self.approvers!r}")
        if not 0 <= self.threshold < 100:
            raise BoltError(f"{source}: threshold is a percent change between 0 and 100, not {self.threshold}")
        if not 0 < self.alpha < 1:
            raise BoltError(f"{source}: alpha must be between 0 and 1, not {self.alpha}")
        if self.rounds < 1:
            raise BoltError(f"{source}: rounds must be at least 1, not {self.rounds}")
        secret = next((name for name in self.pass_env if forbidden(name)), None)
        if secret is not None:
            raise BoltError(f"{source}: pass_env names {secret}, which may hold a token or secret and never reaches "
                            "measured code")
        if self.memory not in MEMORY_MODES:
            raise BoltError(f"{source}: memory must be one of {', '.join(MEMORY_MODES)}, not {self.memory!r}")
        for name in ("memory_threshold", "peak_threshold"):
            if not 0 <= getattr(self, name) < 1000:
                raise BoltError(f"{source}: {name.replace('_', '-')} is a percent change between 0 and 1000, "
                                f"not {getattr(self, name)}")
        for name in ("memory_min_allocations", "memory_min_bytes", "peak_min_bytes"):
            if getattr(self, name) < 0:
                raise BoltError(f"{source}: {name.replace('_', '-')} cannot be negative, not {getattr(self, name)}")
        if self.round_memory_mb < 0:
            raise BoltError(f"{source}: round_memory_mb is MiB (0: no limit), not {self.round_memory_mb}")


def _convert(key: str, value: Any, default: Any, source: str) -> Any:
    if key == "memory" and isinstance(value, bool):  # `memory = false` in [tool.bolt] reads as meant
        return "auto" if value else "off"
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("true", "yes", "1", "on"):
                    return True
                if low in ("false", "no", "0", "off", ""):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, float):
            text = str(value).strip().rstrip("%") if isinstance(value, str) else value
            return float(text)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, list):
            if isinstance(value, str):
                return shlex.split(value)
            return [str(v) for v in value]
        return None if value == "" else str(value)
    except (TypeError, ValueError):
        raise BoltError(f"{source}: setting {key!r} has a bad value {value!r}") from None


def read_project_settings_text(text: str | None, source: str) -> dict[str, Any]:
    """The [tool.bolt] table of a pyproject.toml's text, or {} (also when there is no file)."""
    if text is None:
        return {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BoltError(f"{source}: not valid TOML ({exc})") from None
    table = data.get("tool", {}).get("bolt", {})
    if not isinstance(table, dict):
        raise BoltError(f"{source}: [tool.bolt] must be a table")
    return table


def settings_from_pyproject(text: str | None, source: str, overrides: dict[str, Any] | None = None,
                            overrides_source: str = "options") -> Settings:
    """Defaults < the [tool.bolt] table of a pyproject.toml's text (`source` names it, e.g. "abc1234:pyproject.toml")
    < `overrides`: the one Settings an invocation reads, then hands to every step."""
    table = read_project_settings_text(text, source)
    return Settings().updated(table, f"{source} [tool.bolt]").updated(overrides or {}, overrides_source)


def read_project_settings(repo: Path) -> dict[str, Any]:
    """The [tool.bolt] table of the measured project's pyproject.toml, or {}."""
    path = repo / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BoltError(f"{path}: cannot read ({exc})") from None
    return read_project_settings_text(text, str(path))


def load_settings(repo: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults < [tool.bolt] of `repo` < `overrides` (flags or Action inputs; None = not given)."""
    settings = Settings()
    if repo is not None:
        settings = settings.updated(read_project_settings(repo), f"{repo / 'pyproject.toml'} [tool.bolt]")
    if overrides:
        settings = settings.updated(overrides, "options")
    return settings
