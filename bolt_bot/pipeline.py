"""`bolt run`: plan (which commits), measure both sides, compare, profile the regressions, write the results directory."""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bolt_bot import __version__
from bolt_bot.errors import BoltError
from bolt_bot.measure import envs
from bolt_bot.measure import shard as sharding
from bolt_bot.measure.counts import valgrind_available
from bolt_bot.measure.discovery import Split, discover
from bolt_bot.measure.envs import compile_bytecode
from bolt_bot.measure import gitrepo
from bolt_bot.measure import plan as measuring
from bolt_bot.report import output
from bolt_bot.measure import sandbox
from bolt_bot.decide import walltime as walltime_verdicts
from bolt_bot.decide.compare import build_results
from bolt_bot.decide.measured import add_sizes, judge_measured
from bolt_bot.decide.memory import MemoryRule
from bolt_bot.decide.paired import flagged
from bolt_bot.measure.timing import measure_sizes
from bolt_bot.model import INSTRUCTIONS, REGRESSED, UNCHANGED, CommitRef, Results
from bolt_bot.profiling.regressions import profile_stages
from bolt_bot.progress import Progress
from bolt_bot.settings import Settings, settings_from_pyproject
from bolt_bot.measure.walltime import BASE, HEAD, SideSetup
from bolt_bot.words import plural


@dataclass
class Plan:
    """Which commits, and how to measure them."""

    repo: Path
    base: CommitRef
    head: CommitRef
    settings: Settings
    notices: list[str] = field(default_factory=list)  # said before measuring, and in the results' notices


SHOWN_FILES = 5  # uncommitted files named in the warning; the rest are counted


def make_plan(repo: Path, base_ref: str | None, head_ref: str | None, overrides: dict[str, Any] | None = None,
              *, distinct: bool = False) -> Plan:
    """Resolve the commits; read [tool.bolt] from the BASE commit, so a pull request cannot loosen its own gate.

    With `distinct` (`bolt run`), base and head resolving to one commit is an error (exit 2) unless both were
    given: the run would spend its minutes comparing a commit with itself and report "unchanged". Both given
    (`--base X --head X`) is taken as a deliberate A/A run, which measures the machine's noise: a notice says
    so. A head that is the checked-out commit with uncommitted changes gets a notice naming them, since only
    commits are measured."""
    repo = gitrepo.toplevel(repo)
    given_base, given_head = base_ref, head_ref
    head_ref = head_ref or "HEAD"
    head_sha = gitrepo.resolve(repo, head_ref)
    branch = None
    if base_ref:
        base_sha = gitrepo.resolve(repo, base_ref)
    else:
        branch = gitrepo.default_branch(repo)
        base_ref = f"merge-base({branch})"
        base_sha = gitrepo.merge_base(repo, gitrepo.resolve(repo, branch), head_sha)
    settings = settings_from_pyproject(gitrepo.file_at(repo, base_sha, "pyproject.toml"), f"{base_sha[:7]}:pyproject.toml",
                                       overrides)
    dirty = gitrepo.uncommitted(repo, settings.benchmarks) if head_sha == gitrepo.try_resolve(repo, "HEAD") else []
    notices = [uncommitted_line(dirty)] if dirty else []
    if distinct and base_sha == head_sha:
        if not (given_base and given_head):
            raise BoltError(same_commit_line(head_sha, given_base, branch, dirty))
        notices.append(f"base and head are the same commit {head_sha[:7]} (--base {given_base}, --head {given_head}): "
                       "an A/A run, so any difference it finds is noise")
    return Plan(repo, CommitRef(base_ref, base_sha), CommitRef(head_ref, head_sha), settings, notices)


def _files(names: list[str]) -> str:
    more = len(names) - SHOWN_FILES
    return ", ".join(names[:SHOWN_FILES]) + (f" and {more} more" if more > 0 else "")


def uncommitted_line(names: list[str]) -> str:
    return f"uncommitted changes are not measured: {_files(names)} (Bolt measures commits: commit them to include them)"


def same_commit_line(sha: str, base_ref: str | None, branch: str | None, dirty: list[str]) -> str:
    """Why there is nothing to compare, and what to pass instead: one line. (`bolt run --help` says how to ask
    for an A/A run: both --base and --head.)"""
    if base_ref is None:
        why = f"the default base, the head's merge-base with {branch}, is the head itself"
        fix = f"pass --base REF (e.g. --base {branch}~1) or check out your branch"
    else:  # --base given, the head by default: HEAD
        why = f"--base {base_ref} is HEAD"
        fix = "pass a --base that is not the head (e.g. --base HEAD~1), or check out your branch"
    edits = f"; uncommitted changes ({_files(dirty)}) are never measured: commit them on a branch" if dirty else ""
    return f"base and head are the same commit {sha[:7]} ({why}): nothing to compare; {fix}{edits}"


def execute(plan: Plan, out: Path, progress: Progress | None = None, shard: sharding.ShardSpec | None = None,
            durations: sharding.Durations | None = None) -> Results:
    """Measure, judge, profile the regressions, then write the results directory (results.json once).

    With `shard` only that shard's share of the stages is measured (both sides of each); `durations`
    balance the shares (else the discovery round's timings, else the count of stages)."""
    progress = progress or Progress()
    settings = plan.settings
    started = time.monotonic()
    # Absolute before anything runs with a worktree as its folder (the rounds write their files in here).
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = envs.EnvSpec(python=settings.python, extras=settings.extras, install=settings.install,
                        requirements=measuring.requirements(settings))
    with gitrepo.terminate_as_exception(), gitrepo.worktrees(plan.repo, {BASE: plan.base.sha, HEAD: plan.head.sha}) as trees, \
            contextlib.ExitStack() as held:
        for notice in plan.notices:
            progress.warn(notice)
        setups = {}
        pythons, versions, env_notices = {}, {}, []
        with progress.group("Preparing the environments"):
            for side, tree in trees.items():
                env = held.enter_context(envs.prepare(tree.path, spec, side))  # locked until the run ends
                progress.note(f"{side} {tree.sha[:7]}: environment {'reused' if env.reused else 'created'} at {env.path}, "
                              f"Python {env.python_note}")
                for notice in env.notices:
                    progress.warn(notice)
                pythons[side], versions[side], env_notices = env.python_note, env.python_version, env_notices + env.notices
                compile_bytecode(env.python, tree.path)
                setups[side] = SideSetup(python=env.python, checkout=tree.path,
                                         env=sandbox.side_environ(env.python, settings.pass_env))
        discovered, shard_plan = None, None
        if shard is not None:
            setups, discovered, shard_plan = _shard(plan, shard, durations, setups, out, progress)
            if not shard_plan.share:
                results = _empty_shard(plan, shard_plan)
                output.write_results_dir(results, out, settings.template_dir)
                return results
        # A shard's discovery round of the whole suite is passed on (only then: measuring times its own).
        more = {"discovered": discovered} if discovered is not None else {}
        judged = judge_measured(measuring.measure(settings, setups, out, progress, judge=walltime_verdicts.judge, **more),
                                MemoryRule.of(settings))
        moved = flagged(judged.stages, INSTRUCTIONS)
        if moved and settings.wall_sizes:
            # How much wall time the counted changes moved, shown beside the count (which still decides): by
            # the paired engine whatever times the other stages, counted stages being short and single-threaded.
            add_sizes(judged, measure_sizes(settings, setups, out, moved, progress))
        regressed = [s.name for s in judged.stages if s.verdict == REGRESSED]
        profiles = {}
        if regressed and settings.profile:
            with progress.group(f"Profiling {plural(len(regressed), 'regressed stage')} on both sides"):
                profiles = profile_stages(regressed, setups, out / "profiles", settings, progress)
        results = build_results(
            judged.stages,
            measure=judged.measure,
            settings=settings.to_dict(),
            base=plan.base,
            head=plan.head,
            environment={
                **judged.environment,
                "runner": f"{platform.system()} {platform.machine()}, Python {versions[HEAD]}",
                "python": pythons,
                "duration": time.monotonic() - started,
                **({"shard": _shard_record(shard_plan)} if shard_plan else {}),
            },
            notices=[*plan.notices, *env_notices, *judged.notices,
                     *([_shard_record(shard_plan)["notice"]] if shard_plan else [])],
            profiles={name: (slot.lines, slot.note) for name, slot in profiles.items()},
        )
    # results.json once, everything measured, judged and profiled in it; then the markdown.
    output.write_results_dir(results, out, settings.template_dir)
    return results


def _shard(plan: Plan, spec: sharding.ShardSpec, durations: sharding.Durations | None, setups: dict[str, SideSetup],
           out: Path, progress: Progress) -> tuple[dict[str, SideSetup], Split | None, sharding.ShardPlan]:
    """Collect the stages of both sides, partition them, and name the shard's share for every measured pass.

    Without durations, `--measure auto` times its discovery round of the whole suite here: its timings
    weigh the stages, and its routing of the shard's stages is kept, so it is not timed twice."""
    settings = plan.settings
    with progress.group(f"Shard {spec}: collecting the stages of both sides"):
        stages = sharding.collect_stages(setups, settings, out / "shard")
        discovered = None
        if durations is None and settings.measure == "auto" and valgrind_available() is not None:
            discovered = discover(settings, setups, out / "discovery", progress)
            durations = sharding.Durations(sharding.durations_from_discovery(discovered),
                                           sharding.DISCOVERY)
        shard_plan = sharding.plan_shard(spec, stages, durations)
        progress.note(f"shard {spec}: {len(shard_plan.share)} of {plural(len(stages), 'stage')}, "
                      f"balanced by {shard_plan.source}")
    setups = sharding.select_share(setups, shard_plan.share, out / "shard")
    return setups, (sharding.restrict(discovered, shard_plan.share) if discovered else None), shard_plan


def _shard_record(shard_plan: sharding.ShardPlan) -> dict:
    """environment.shard: the partition for `bolt merge`, and the notice that this is a part (merge drops it)."""
    spec = shard_plan.spec
    notice = (f"shard {spec} measured {len(shard_plan.share)} of the suite's {plural(len(shard_plan.stages), 'stage')}: "
              "`bolt merge` the shards' directories for the verdict of the whole suite")
    return {**shard_plan.record(), "bolt_version": __version__, "notice": notice}


def _empty_shard(plan: Plan, shard_plan: sharding.ShardPlan) -> Results:
    """A shard left without stages (more shards than stages) measured nothing, and that is no failure."""
    return Results(stages=[], verdict=UNCHANGED, settings=plan.settings.to_dict(), base=plan.base, head=plan.head,
                   environment={"shard": _shard_record(shard_plan)},
                   notices=[*plan.notices, _shard_record(shard_plan)["notice"]])
