"""cProfile collection per stage, path normalisation, and differential profiles between base and head."""

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
from bolt_bot.model import ProfileLine
from bolt_bot.report.render import format_amount

from bolt_bot.measure.probe import PROBE_DIR  # noqa: F401  (tests load the standalone plugin from here)
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


def match_functions(
    base: FunctionTable, head: FunctionTable
) -> list[tuple[FunctionStats | None, FunctionStats | None]]:
    """Pairs (base, head) of the same function; None on the side where it does not exist.

    Exact keys first. What is left is paired within the same file and function name (code moved
    between the commits): first where the two share a caller that is already matched, which is
    how a `<listcomp>` or `<lambda>` finds its twin inside its enclosing function; then, for named
    functions only, by line order, so that an edit above a function does not make it look new.
    """
    # Builtins and named functions are identified by their key; anonymous code objects only once
    # their enclosing function is known, since new code can land on an old lambda's line number.
    to_base: dict[str, str] = {
        k: k for k, h in head.functions.items() if k in base.functions and not _is_anonymous(h)
    }
    matched_base = set(to_base.values())

    def leftovers() -> dict[tuple[str, str], tuple[list[FunctionStats], list[FunctionStats]]]:
        groups: dict[tuple[str, str], tuple[list[FunctionStats], list[FunctionStats]]] = {}
        for b in base.functions.values():
            if b.key not in matched_base:
                groups.setdefault((b.file, b.name), ([], []))[0].append(b)
        for h in head.functions.values():
            if h.key not in to_base:
                groups.setdefault((h.file, h.name), ([], []))[1].append(h)
        return {g: sides for g, sides in groups.items() if sides[0] and sides[1]}

    def pair(b: FunctionStats, h: FunctionStats) -> None:
        to_base[h.key] = b.key
        matched_base.add(b.key)

    def by_shared_callers() -> None:
        progress = True
        while progress:
            progress = False
            for bases, heads in leftovers().values():
                options = []
                for h in heads:
                    callers = {to_base[c] for c in h.callers if c in to_base}
                    for b in bases:
                        if callers & set(b.callers):
                            options.append((abs(b.line - h.line), b.line, h.line, b, h))
                for _, _, _, b, h in sorted(options, key=lambda o: o[:3]):
                    if b.key not in matched_base and h.key not in to_base:
                        pair(b, h)
                        progress = True

    by_shared_callers()
    for bases, heads in leftovers().values():
        if _is_anonymous(heads[0]):
            continue
        bases.sort(key=lambda f: f.line)
        heads.sort(key=lambda f: f.line)
        if len(bases) == len(heads):
            for b, h in zip(bases, heads):
                pair(b, h)
            continue
        options = [(abs(b.line - h.line), b.line, h.line, b, h) for b in bases for h in heads]
        for _, _, _, b, h in sorted(options, key=lambda o: o[:3]):
            if b.key not in matched_base and h.key not in to_base:
                pair(b, h)
    by_shared_callers()
    for key, h in head.functions.items():  # no better evidence: an anonymous function that stayed put
        if key not in to_base and key in base.functions and key not in matched_base:
            pair(base.functions[key], h)

    pairs: list[tuple[FunctionStats | None, FunctionStats | None]] = []
    for h in head.functions.values():
        b_key = to_base.get(h.key)
        pairs.append((base.functions[b_key] if b_key else None, h))
    pairs.extend((b, None) for b in base.functions.values() if b.key not in matched_base)
    return pairs


def _is_anonymous(func: FunctionStats) -> bool:
    return func.name.startswith("<") and func.file != "~"  # <lambda>, <listcomp>, <genexpr>...


def _line(b: FunctionStats | None, h: FunctionStats) -> ProfileLine:
    return ProfileLine(
        function=h.key,
        base=b.own if b else 0.0,
        head=h.own,
        delta=h.own - (b.own if b else 0.0),
        base_cum=b.cum if b else 0.0,
        head_cum=h.cum,
        base_calls=round(b.calls) if b else 0,
        head_calls=round(h.calls),
        new=b is None,
    )


def diff_profiles(
    base: FunctionTable, head: FunctionTable, top: int = 5, *, min_share: float = 0.01
) -> list[ProfileLine]:
    """The functions that added the most time per call of the stage, most first.

    Ranked by added own time; a function only on head is ranked by its cumulative time (all of it
    is new) and marked `new`. Changes below `min_share` of the stage's time are noise and left out.
    Own time alone can point at a builtin (say `sorted`) without saying who called it more, so
    the deepest project function whose cumulative time grew by at least half of the stage's
    slowdown is appended (within `top`) unless a listed project function already accounts for it.
    """
    if top <= 0:
        return []
    floor = min_share * max(base.total, head.total, 1e-12)
    scored: list[tuple[float, ProfileLine, FunctionStats]] = []
    for b, h in match_functions(base, head):
        if h is None:
            continue
        line = _line(b, h)
        score = max(line.delta, h.cum) if b is None else line.delta
        if score > floor:
            scored.append((score, line, h))
    scored.sort(key=lambda item: (-item[0], item[1].function))
    chosen = scored[:top]
    lines = [line for _, line, _ in chosen]

    slowdown = head.total - base.total
    explained = any(
        h.is_project and line.head_cum - line.base_cum >= 0.5 * slowdown for _, line, h in chosen
    )
    if slowdown > floor and not explained:
        culprit = _deepest_responsible(base, head, slowdown)
        if culprit is not None and culprit[1].key not in {line.function for line in lines}:
            if len(lines) >= top:
                lines = lines[: top - 1]
            lines.append(_line(*culprit))
    return lines


def why_empty(base: FunctionTable, head: FunctionTable, *, min_share: float = 0.01) -> str:
    """Why diff_profiles found no function to show, in words for the comment."""
    floor = min_share * max(base.total, head.total, 1e-12)
    slowdown = head.total - base.total
    took = f"under cProfile the stage took {format_amount(base.total)} on base and {format_amount(head.total)} on head per call"
    if slowdown <= floor:
        return (f"{took}: the change is below the profile's resolution (no function moved by more than "
                f"{min_share * 100:g} % of the stage's time, {format_amount(floor)})")
    return (f"{took}, but the {format_amount(slowdown)} added is spread thinly: no function moved by more than "
            f"{min_share * 100:g} % of the stage's time ({format_amount(floor)})")


def _deepest_responsible(
    base: FunctionTable, head: FunctionTable, slowdown: float
) -> tuple[FunctionStats | None, FunctionStats] | None:
    # Cumulative deltas shrink down a call chain, so the smallest one still above half of the
    # slowdown belongs to the deepest project function on the path where the time was added.
    best = None
    for b, h in match_functions(base, head):
        if h is None or not h.is_project:
            continue
        grown = h.cum - (b.cum if b else 0.0)
        if grown >= 0.5 * slowdown and (best is None or grown < best[0]):
            best = (grown, b, h)
    return None if best is None else (best[1], best[2])


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
) -> dict[str, Path]:
    """Profile the benchmarks of `checkout` in one pytest process; stage id -> .pstats path.

    `env` is the side's environment (sandbox.side_environ; None: the allow-listed part of this
    process's). With `stages`, only those node ids run. Stages whose test failed are missing from the
    result; a BoltError is raised when pytest could not run, timed out, or profiled nothing at all.
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
