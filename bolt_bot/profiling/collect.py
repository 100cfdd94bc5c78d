"""cProfile collection per stage, and its dumps read into tables of functions with normalised paths."""

from __future__ import annotations

import json
import os
import pstats
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.measure import process, pytestcmd, sandbox
from bolt_bot.errors import BoltError

PLUGIN_MODULE = "bolt_profile_plugin"
INDEX_NAME = "index.json"
SIDECAR_SUFFIX = ".stage.json"  # must match the plugin
DEFAULT_CALLS = 10

# Frames that are the profiler's own bookkeeping, not the measured code.
_IGNORED = {"~:0(<method 'disable' of '_lsprof.Profiler' objects>)"}

_SITE_RE = re.compile(r"[\\/](?:site|dist)-packages[\\/](.+)$")
_STDLIB_RE = re.compile(r"[\\/]lib[\\/](?:python|pypy)\d+(?:\.\d+)?t?[\\/](.+)$", re.IGNORECASE)


@dataclass
class FunctionStats:
    """One function of one stage's profile; every number is per call of the stage."""

    key: str  # "relative/path.py:LINE(name)"
    file: str
    line: int
    name: str
    own: float = 0.0  # seconds spent in the function itself
    cum: float = 0.0  # seconds including callees
    calls: float = 0.0
    callers: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # key -> (calls, own, cum)

    @property
    def is_project(self) -> bool:
        """Code of the measured project (not a builtin, the standard library or a dependency)."""
        return not (
            self.file in ("~", "")
            or self.file.startswith(("<", "site-packages/"))
            or os.path.isabs(self.file)
        )


@dataclass
class FunctionTable:
    """A stage's profile with normalised function keys, per call of the stage."""

    functions: dict[str, FunctionStats]
    stage_calls: int = 1  # how many calls of the stage were profiled
    source: str | None = None  # the .pstats file it came from

    @property
    def total(self) -> float:
        """Seconds per call of the stage, under the profiler."""
        return sum(f.own for f in self.functions.values())

    def callees(self) -> dict[str, dict[str, tuple[float, float, float]]]:
        """Caller key -> {callee key: (calls, own, cum)}: the call graph seen from above."""
        out: dict[str, dict[str, tuple[float, float, float]]] = {}
        for callee in self.functions.values():
            for caller, edge in callee.callers.items():
                out.setdefault(caller, {})[callee.key] = edge
        return out

    def roots(self) -> list[FunctionStats]:
        """Functions nobody in the profile called: the benchmarked function(s)."""
        return [f for f in self.functions.values() if not (set(f.callers) - {f.key})]


# ---------------------------------------------------------------- path normalisation


def normalise_path(filename: str, root: Path | None) -> str:
    """A file path as it should read in a report, identical for two checkouts of the same code."""
    if filename in ("~", "") or filename.startswith("<"):
        return filename  # builtins ("~"), <frozen ...>, <string>: already location-free
    site = _SITE_RE.search(filename)
    if site:  # before the root: a virtual environment may live inside the checkout
        return "site-packages/" + site.group(1).replace("\\", "/")
    if not os.path.isabs(filename):
        return filename.replace("\\", "/")
    if root is not None:
        for base in _root_variants(root):
            try:
                rel = os.path.relpath(filename, base)
            except ValueError:  # another drive on Windows
                continue
            if not rel.startswith(".."):
                return rel.replace("\\", "/")
        real = os.path.realpath(filename)
        for base in _root_variants(root):
            rel = os.path.relpath(real, base)
            if not rel.startswith(".."):
                return rel.replace("\\", "/")
    stdlib = _STDLIB_RE.search(filename)
    if stdlib:
        return "<stdlib>/" + stdlib.group(1).replace("\\", "/")
    return filename


def _root_variants(root: Path) -> list[str]:
    plain = os.path.abspath(str(root))
    real = os.path.realpath(str(root))
    return [plain] if plain == real else [plain, real]


def function_key(file: str, line: int, name: str) -> str:
    return f"{file}:{line}({name})"


# ---------------------------------------------------------------- loading


def profile_index(out_dir: Path) -> dict[str, dict]:
    """Stage id -> {"file", "calls", ...} for a directory written by the plugin."""
    out_dir = Path(out_dir)
    stages: dict[str, dict] = {}
    for path in sorted(out_dir.glob(f"*{SIDECAR_SUFFIX}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            stages[str(record["stage"])] = {k: v for k, v in record.items() if k != "stage"}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not stages:
        try:
            data = json.loads((out_dir / INDEX_NAME).read_text(encoding="utf-8"))
            stages = dict(data.get("stages") or {})
        except (OSError, ValueError, AttributeError):
            pass
    return stages


def _calls_for(pstats_path: Path) -> int:
    for record in profile_index(pstats_path.parent).values():
        if record.get("file") == pstats_path.name:
            return max(1, int(record.get("calls") or 1))
    return 1


def load_profile(
    pstats_path: Path | str | pstats.Stats, root: Path | None, *, calls: int | None = None
) -> FunctionTable:
    """Read a .pstats dump into a FunctionTable normalised to `root` and to one call of the stage.

    The number of profiled calls comes from `calls`, else from the plugin's index next to the file.
    """
    source = None
    if isinstance(pstats_path, pstats.Stats):
        stats = pstats_path
    else:
        path = Path(pstats_path)
        source = str(path)
        try:
            stats = pstats.Stats(str(path))
        except (OSError, EOFError, ValueError, TypeError) as exc:
            raise BoltError(f"{path}: not a readable cProfile dump ({exc})") from None
        if calls is None:
            calls = _calls_for(path)
    n = max(1, int(calls or 1))
    names: dict[tuple, tuple[str, str, int, str]] = {}

    def name_of(func: tuple) -> tuple[str, str, int, str]:
        if func not in names:
            file, line, fname = func
            nfile = normalise_path(str(file), root)
            names[func] = (function_key(nfile, int(line), fname), nfile, int(line), fname)
        return names[func]

    table: dict[str, FunctionStats] = {}
    for func, (_cc, nc, tt, ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        key, nfile, line, fname = name_of(func)
        if key in _IGNORED:
            continue
        entry = table.get(key)
        if entry is None:
            entry = table[key] = FunctionStats(key=key, file=nfile, line=line, name=fname)
        entry.own += tt / n
        entry.cum += ct / n
        entry.calls += nc / n
        for caller, edge in callers.items():
            ckey = name_of(caller)[0]
            if ckey in _IGNORED:
                continue
            if isinstance(edge, tuple):
                e_calls, e_own, e_cum = edge[0], edge[2], edge[3]
            else:  # very old dumps store only a call count per caller
                e_calls, e_own, e_cum = edge, 0.0, 0.0
            prev = entry.callers.get(ckey, (0.0, 0.0, 0.0))
            entry.callers[ckey] = (prev[0] + e_calls / n, prev[1] + e_own / n, prev[2] + e_cum / n)
    return FunctionTable(functions=table, stage_calls=n, source=source)


# ---------------------------------------------------------------- reports


def hot_functions(table: FunctionTable, top: int = 10) -> list[FunctionStats]:
    """The functions with the most own time, most first."""
    return sorted(table.functions.values(), key=lambda f: (-f.own, f.key))[:top]


@dataclass
class Bottleneck:
    """A function that costs the pipeline much time, summed over the stages it appears in."""

    function: str
    own: float  # seconds, summed over one call of each stage
    share: float  # of the summed time of all stages
    stages: list[str]  # where it spends the time, most first


def top_bottlenecks(tables: dict[str, FunctionTable], top: int = 3) -> list[Bottleneck]:
    """The functions with the most own time across all stages (one call of each stage)."""
    grand = sum(t.total for t in tables.values()) or 1.0
    per_function: dict[str, dict[str, float]] = {}
    for stage, table in tables.items():
        for f in table.functions.values():
            if f.own > 0:
                per_function.setdefault(f.key, {})[stage] = f.own
    ranked = sorted(per_function.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
    return [
        Bottleneck(
            function=key,
            own=sum(by_stage.values()),
            share=sum(by_stage.values()) / grand,
            stages=[s for s, _ in sorted(by_stage.items(), key=lambda kv: (-kv[1], kv[0]))],
        )
        for key, by_stage in ranked
    ]


# ---------------------------------------------------------------- differential profiles


# ---------------------------------------------------------------- collection


def collect_profiles(
    python: Path,
    checkout: Path,
    pytest_args: list[str],
    out_dir: Path,
    *,
    stages: list[str] | None = None,
    env: dict | None = None,
    timeout: float = 600,
    calls: int = DEFAULT_CALLS,
    max_seconds: float | None = None,
    memory: bool = False,
) -> dict[str, Path]:
    """Profile the benchmarks of `checkout` in one pytest process; stage id -> .pstats path.

    `env` is the side's environment (sandbox.side_environ; None: the allow-listed part of this
    process's). With `stages`, only those node ids run. Stages whose test failed are missing from the
    result; a BoltError is raised when pytest could not run, timed out, or profiled nothing at all.
    With `memory`, each stage's index record also holds one call traced by tracemalloc ("memory").
    """
    python, checkout, out_dir = Path(python), Path(checkout), Path(out_dir)
    if not checkout.is_dir():
        raise BoltError(f"cannot profile: {checkout} is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in list(out_dir.glob(f"*{SIDECAR_SUFFIX}")) + [out_dir / INDEX_NAME]:
        stale.unlink(missing_ok=True)

    flags = [f"--bolt-profile-dir={out_dir.resolve()}", f"--bolt-profile-calls={int(calls)}"]
    if max_seconds is not None:
        flags.append(f"--bolt-profile-max-seconds={float(max_seconds)}")
    if memory:
        flags.append("--bolt-profile-memory")
    targets: list[str] = []
    if stages:
        select = out_dir / ".select.txt"
        select.write_text("".join(s + "\n" for s in stages), encoding="utf-8")
        flags.append(f"--bolt-profile-select={select.resolve()}")
        # Collect only the files involved; the exact node ids are filtered by the plugin, which
        # also copes with ids whose parameters pytest's command line would not parse.
        targets = _unique(s.split("::", 1)[0] for s in stages if (checkout / s.split("::", 1)[0]).exists())
    cmd = [str(python), "-m", "pytest",
           *pytestcmd.pytest_args([str(a) for a in pytest_args], plugin=PLUGIN_MODULE, bolt_flags=flags, targets=targets)]
    environment = sandbox.measured({str(k): str(v) for k, v in env.items()} if env is not None else sandbox.side_environ(python))

    done = process.run(cmd, checkout, environment, timeout)
    code, output = (None if done.timed_out else done.returncode), done.output
    if code == 4:
        raise BoltError(f"profiling in {checkout}: pytest refused the arguments: {process.error_line(output)}")
    if code is None:
        raise BoltError(f"profiling timed out after {timeout:g}s in {checkout}")
    found = profile_index(out_dir)
    result = {stage: out_dir / record["file"] for stage, record in found.items() if (out_dir / record["file"]).is_file()}
    if code not in (0, 1, 5) and not result:
        raise BoltError(f"profiling failed in {checkout} (pytest exit {code}): {process.error_line(output)}")
    if not result:
        what = f"{len(stages)} selected stage(s)" if stages else "any benchmark"
        detail = process.error_line(output) if code not in (0, 5) else "no test uses the benchmark fixture"
        raise BoltError(f"profiling did not produce a profile for {what} in {checkout}: {detail}")
    return result


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


if __name__ == "__main__":  # pragma: no cover - a quick look at a dump: python -m bolt_bot.profiling.collect FILE ROOT
    _table = load_profile(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    for _f in hot_functions(_table):
        print(f"{_f.own * 1e3:10.3f} ms {_f.cum * 1e3:10.3f} ms {_f.calls:10.1f}  {_f.key}")
