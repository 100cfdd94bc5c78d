"""`bolt profile`: profile every stage of one commit and write the full report (markdown, HTML, pstats, SVG, speedscope)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from bolt_bot import __version__
from bolt_bot.measure import envs
from bolt_bot.measure import memory as memory_pass
from bolt_bot.measure.envs import compile_bytecode
from bolt_bot.measure import gitrepo
from bolt_bot.measure import sandbox
from bolt_bot.errors import BoltError
from bolt_bot.profiling.flamegraph import display_name, flamegraph_svg, speedscope_json
from bolt_bot.profiling.collect import (
    Bottleneck,
    FunctionStats,
    FunctionTable,
    collect_profiles,
    hot_functions,
    load_profile,
    profile_index,
    top_bottlenecks,
)
from bolt_bot.profiling.memory import MemoryPicture, from_record, trace_stages
from bolt_bot.progress import Progress
from bolt_bot.report.memory import format_bytes, format_count
from bolt_bot.report.render import builtin_template_dir, format_amount, render_template
from bolt_bot.measure.rounds import run_round
from bolt_bot.settings import Settings, settings_from_pyproject

REPORT_MD = "report.md"
INDEX_HTML = "index.html"
SPEEDSCOPE = "profile.speedscope.json"
MD_TEMPLATE = "profile.md.j2"
HTML_TEMPLATE = "profile.html.j2"
ENV_SIDE = "profile"  # its own cached environment, apart from `bolt run`'s base and head
HOT_PER_STAGE = 10
PROFILE_CALLS = 10
PROFILE_MAX_SECONDS = 10.0  # a very slow stage is profiled for fewer calls rather than for minutes
SUMMARY_LIMIT = 1_000_000  # GitHub refuses job summaries above 1 MiB


@dataclass
class StageReport:
    """One stage as the templates see it."""

    name: str
    slug: str
    time: float  # seconds per call
    timed_by: str  # "benchmark" (a pytest-benchmark round) or "profiler" (time under cProfile)
    share: float = 0.0  # of the summed time of all stages
    calls: int = 1  # profiled calls
    profiled: float = 0.0  # seconds per call under cProfile
    hot: list[dict[str, Any]] = field(default_factory=list)
    memory: MemoryPicture | None = None  # one call traced by tracemalloc (profiling.memory)

    @property
    def svg(self) -> str:
        return f"{self.slug}.svg"

    @property
    def pstats(self) -> str:
        return f"{self.slug}.pstats"


def profile_report(
    repo: Path,
    ref: str | None,
    filter: str | None,  # pytest -k expression; the name shadows the builtin only in this function
    out: Path,
    overrides: dict | None = None,
    progress: Progress | None = None,
) -> Path:
    """Profile every benchmark of `ref` (default HEAD) in one worktree; write the report files into `out`.

    Returns the path of report.md. Errors a user can fix are BoltErrors with one line.
    """
    progress = progress or Progress()
    started = time.monotonic()
    repo = gitrepo.toplevel(Path(repo))
    ref = ref or "HEAD"
    sha = gitrepo.resolve(repo, ref)
    # [tool.bolt] of the profiled commit itself: this is a maintainer's run, there is no base to trust instead.
    source = f"{sha[:7]}:pyproject.toml"
    settings = settings_from_pyproject(gitrepo.file_at(repo, sha, "pyproject.toml"), source, overrides)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BoltError(f"cannot create {out}: {exc.strerror or exc}") from None
    selection = ["-k", filter] if filter else []
    traced = settings.memory != "off"
    spec = envs.EnvSpec(python=settings.python, extras=settings.extras, install=settings.install,
                        requirements=[*envs.BENCH_REQUIREMENTS, *([memory_pass.memray_requirement()] if traced else [])])

    with gitrepo.terminate_as_exception(), gitrepo.worktrees(repo, {ENV_SIDE: sha}) as trees, \
            tempfile.TemporaryDirectory(prefix="bolt-profile-") as scratch:
        tree = trees[ENV_SIDE]
        with progress.group("Preparing the environment"):
            env = envs.prepare(tree.path, spec, ENV_SIDE)
            progress.note(f"{sha[:7]}: environment {'reused' if env.reused else 'created'} at {env.path}")
            compile_bytecode(env.python, tree.path)
            environ = sandbox.side_environ(env.python, settings.pass_env)
        traced_by_memray: dict[str, MemoryPicture] = {}
        if traced:  # bolt run's memory pass, so the lines are those the comment names; tracemalloc without memray
            with progress.group("Tracing one call of each stage for its memory (memray)"):
                traced_by_memray = trace_stages(env.python, tree.path, [*settings.benchmarks, *settings.pytest_args,
                                                *selection], environ, Path(scratch) / "memory",
                                                settings.round_timeout, progress)
        with progress.group("Profiling every stage with cProfile"):
            raw = Path(scratch) / "profiles"
            try:
                files = collect_profiles(env.python, tree.path, [*settings.benchmarks, *settings.pytest_args, *selection],
                                         raw, env=environ, timeout=settings.round_timeout, calls=PROFILE_CALLS,
                                         max_seconds=PROFILE_MAX_SECONDS, memory=traced and not traced_by_memray)
            except BoltError as exc:
                if filter and "did not produce a profile" in str(exc):
                    raise BoltError(f"no benchmark matches -k {filter!r} at {ref} ({sha[:7]})") from None
                raise
            records = profile_index(raw)
            tables = {name: load_profile(path, tree.path) for name, path in files.items()}
            memory = {name: traced_by_memray.get(name) or from_record(records.get(name, {}).get("memory"), tree.path,
                                                                      table) for name, table in tables.items()}
            progress.note(f"profiled {len(tables)} stage(s)")
        with progress.group("Timing every stage with one short pytest-benchmark round"):
            timings = _time_stages(env.python, tree.path, settings, selection, environ, Path(scratch) / "round", progress)
        python_version = env.python_version
        slugs = _slugs(list(tables))
        for name, path in files.items():  # the raw dump: snakeviz, pstats and friends read it as it is
            shutil.copyfile(path, out / f"{slugs[name]}.pstats")

    stages = []
    for name, table in tables.items():
        record = records.get(name, {})
        calls = max(1, int(record.get("calls") or table.stage_calls))
        profiled = float(record.get("profiled_seconds") or 0.0) / calls or table.total
        measured = timings.get(name)
        stage = StageReport(name=name, slug=slugs[name], time=measured if measured else profiled,
                            timed_by="benchmark" if measured else "profiler", calls=calls, profiled=profiled,
                            hot=[_function_row(f, table) for f in hot_functions(table, HOT_PER_STAGE)],
                            memory=memory.get(name))
        stages.append(stage)
    # A stage whose test failed under the profiler has no dump; say so rather than drop it silently.
    missing = sorted(set(timings) - set(tables))
    for name in missing:
        progress.warn(f"{name} was timed but not profiled (its test failed under the profiler)")
    grand = sum(s.time for s in stages) or 1.0
    for stage in stages:
        stage.share = stage.time / grand
    stages.sort(key=lambda s: (-s.time, s.name))

    with progress.group("Writing the report"):
        title = f"Bolt profile of {ref} ({sha[:7]})"
        for stage in stages:
            _write(out / stage.svg, flamegraph_svg(tables[stage.name], stage.name))
        speedscope = speedscope_json({s.name: tables[s.name] for s in stages}, title)
        _write(out / SPEEDSCOPE, json.dumps(speedscope, separators=(",", ":")))
        ctx = {
            "title": title,
            "ref": ref,
            "sha": sha,
            "filter": filter,
            "stages": stages,
            "total": sum(s.time for s in stages),
            "missing": missing,
            "bottlenecks": [_bottleneck_row(b, tables) for b in top_bottlenecks(tables, 3)],
            "any_profiler_timed": any(s.timed_by == "profiler" for s in stages),
            "any_memory": any(s.memory for s in stages),
            "profile_calls": PROFILE_CALLS,
            "speedscope": SPEEDSCOPE,
            "runner": f"{platform.system()} {platform.machine()}, Python {python_version}",
            "duration": time.monotonic() - started,
            "version": __version__,
        }
        report = out / REPORT_MD
        _write(report, render_template(MD_TEMPLATE, ctx, settings.template_dir))
        _write(out / INDEX_HTML, _render_html(ctx, settings.template_dir))
        _append_summary(report, progress)
    progress.note(f"wrote {report}, {INDEX_HTML}, {len(stages)} flame graph(s) and pstats dump(s), {SPEEDSCOPE}")
    return report


# ---------------------------------------------------------------- measuring


def _time_stages(python: Path, checkout: Path, settings: Settings, selection: list[str], environ: dict[str, str],
                 workdir: Path, progress: Progress) -> dict[str, float]:
    """Stage -> median seconds per call from one short pytest-benchmark round, {} where it could not time.

    cProfile's overhead grows with the number of Python calls, so time under the profiler would inflate
    call-heavy stages and distort every share; one round without the profiler gives the real time.
    """
    try:
        result = run_round(python, checkout, list(settings.benchmarks), workdir, label="timing",
                           pytest_args=[*settings.pytest_args, *selection], env=environ,
                           timeout=settings.round_timeout)
    except BoltError as exc:
        progress.warn(f"timing round failed, using the time under the profiler: {exc}")
        return {}
    if result.error:
        progress.warn(f"timing round: {result.error}; stages without a time use the time under the profiler")
    for stage, why in result.failed.items():
        progress.warn(f"timing {stage} failed: {why}")
    return {r.name: r.median for r in result.records if r.median > 0 and r.name not in result.failed}


# ---------------------------------------------------------------- shaping the data


def _slugs(names: list[str]) -> dict[str, str]:
    """Short file names for stages: readable, safe in URLs and on every filesystem, never colliding."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        tail = name.split("/")[-1]  # "test_pipeline.py::test_render[500]": the directory adds nothing
        tail = re.sub(r"\.py::", "-", tail)
        slug = re.sub(r"[^A-Za-z0-9_]+", "-", tail).strip("-_")[:60] or "stage"
        if slug.lower() in taken or slug.lower() in (Path(REPORT_MD).stem, Path(INDEX_HTML).stem):
            slug = f"{slug}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
        taken.add(slug.lower())  # case-insensitive filesystems (artifact zips opened on macOS or Windows)
        out[name] = slug
    return out


def _where(func: FunctionStats) -> str:
    if func.file in ("~", "") or (func.file.startswith("<") and not func.line):
        return "built-in"
    return f"{func.file}:{func.line}"


def _function_row(func: FunctionStats, table: FunctionTable) -> dict[str, Any]:
    total = table.total or 1.0
    return {
        "name": display_name(func),
        "where": _where(func),
        "project": func.is_project,
        "own": func.own,
        "own_share": func.own / total,
        "cum": func.cum,
        "calls": func.calls,
    }


def _named_project(func: FunctionStats) -> bool:
    return func.is_project and not func.name.startswith("<")


def _callers(key: str, tables: dict[str, FunctionTable], weight: int) -> list[str]:
    """Callers of `key` over all stages, heaviest first; `weight` picks own (1) or cumulative (2) edge time."""
    by_caller: dict[str, float] = {}
    for table in tables.values():
        entry = table.functions.get(key)
        for caller, edge in (entry.callers.items() if entry else ()):
            if caller != key:
                by_caller[caller] = by_caller.get(caller, 0.0) + edge[weight]
    return sorted(by_caller, key=lambda k: (-by_caller[k], k))


def _lookup(key: str, tables: dict[str, FunctionTable]) -> FunctionStats | None:
    return next((t.functions[key] for t in tables.values() if key in t.functions), None)


def _bottleneck_row(b: Bottleneck, tables: dict[str, FunctionTable]) -> dict[str, Any]:
    """A bottleneck with the project functions responsible for it: none beyond itself when it is one."""
    func = _lookup(b.function, tables)
    assert func is not None  # top_bottlenecks only names functions of these tables
    responsible: list[str] = []
    if not _named_project(func):
        # Own time in a builtin, a dependency or a <genexpr> says what is slow, not which of the project's
        # functions asked for it: from its two heaviest callers, climb the heaviest path to a named one.
        for start in _callers(b.function, tables, 1)[:2]:
            key, seen = start, {b.function}
            while key not in seen:
                seen.add(key)
                stats = _lookup(key, tables)
                if stats is None:
                    break
                if _named_project(stats):
                    label = f"{display_name(stats)} ({_where(stats)})"
                    if label not in responsible:
                        responsible.append(label)
                    break
                up = _callers(key, tables, 2)
                if not up:
                    break
                key = up[0]
    return {
        "name": display_name(func),
        "where": _where(func),
        "own": b.own,
        "share": b.share,
        "stages": b.stages,
        "responsible": responsible,  # empty when the function is a named one of the project: itself
    }


# ---------------------------------------------------------------- writing


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise BoltError(f"cannot write {path}: {exc.strerror or exc}") from None


def _render_html(ctx: dict[str, Any], template_dir: str | None) -> str:
    """index.html through its own environment with autoescape on: HTML needs escaping, not markdown's `inert`."""
    paths = ([str(template_dir)] if template_dir and Path(template_dir, HTML_TEMPLATE).is_file() else []) \
        + [str(builtin_template_dir())]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(paths), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(amount=format_amount, bytes=format_bytes, count=format_count)
    try:
        return env.get_template(HTML_TEMPLATE).render(**ctx)
    except jinja2.TemplateNotFound as exc:
        raise BoltError(f"template {exc.name} not found") from None
    except jinja2.TemplateError as exc:
        raise BoltError(f"template {HTML_TEMPLATE}: {type(exc).__name__}: {exc}") from None


def _append_summary(report: Path, progress: Progress) -> None:
    """In Actions, the report also goes to the job summary (the run's page shows it without downloads)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    text = report.read_text(encoding="utf-8")
    if len(text.encode("utf-8")) > SUMMARY_LIMIT:
        progress.warn("the profile report is larger than a job summary may be; download the artifact instead")
        return
    try:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
    except OSError as exc:
        progress.warn(f"cannot append to the job summary {target}: {exc.strerror or exc}")
