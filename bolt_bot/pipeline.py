"""`bolt run`: plan (which commits), measure both sides, compare, profile the regressions, write the results directory."""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bolt_bot import __version__
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


@dataclass
class Plan:
    """Which commits, and how to measure them."""

    repo: Path
    base: CommitRef
    head: CommitRef
    settings: Settings


def make_plan(repo: Path, base_ref: str | None, head_ref: str | None, overrides: dict[str, Any] | None = None) -> Plan:
    """Resolve the commits; read [tool.bolt] from the BASE commit, so a pull request cannot loosen its own gate."""
    repo = gitrepo.toplevel(repo)
    head_ref = head_ref or "HEAD"
    head_sha = gitrepo.resolve(repo, head_ref)
    if base_ref:
        base_sha = gitrepo.resolve(repo, base_ref)
    else:
        branch = gitrepo.default_branch(repo)
        base_ref = f"merge-base({branch})"
        base_sha = gitrepo.merge_base(repo, gitrepo.resolve(repo, branch), head_sha)
    settings = settings_from_pyproject(gitrepo.file_at(repo, base_sha, "pyproject.toml"), f"{base_sha[:7]}:pyproject.toml",
                                       overrides)
    return Plan(repo, CommitRef(base_ref, base_sha), CommitRef(head_ref, head_sha), settings)


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
        if moved:
            # How much wall time the counted changes moved, shown beside the count (which still decides): by
            # the paired engine whatever times the other stages, counted stages being short and single-threaded.
            add_sizes(judged, measure_sizes(settings, setups, out, moved, progress))
        regressed = [s.name for s in judged.stages if s.verdict == REGRESSED]
        profiles = {}
        if regressed and settings.profile:
            with progress.group(f"Profiling {len(regressed)} regressed stage(s) on both sides"):
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
            notices=env_notices + judged.notices + ([_shard_record(shard_plan)["notice"]] if shard_plan else []),
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
        progress.note(f"shard {spec}: {len(shard_plan.share)} of {len(stages)} stages, balanced by {shard_plan.source}")
    setups = sharding.select_share(setups, shard_plan.share, out / "shard")
    return setups, (sharding.restrict(discovered, shard_plan.share) if discovered else None), shard_plan


def _shard_record(shard_plan: sharding.ShardPlan) -> dict:
    """environment.shard: the partition for `bolt merge`, and the notice that this is a part (merge drops it)."""
    spec = shard_plan.spec
    notice = (f"shard {spec} measured {len(shard_plan.share)} of the suite's {len(shard_plan.stages)} stages: "
              "`bolt merge` the shards' directories for the verdict of the whole suite")
    return {**shard_plan.record(), "bolt_version": __version__, "notice": notice}


def _empty_shard(plan: Plan, shard_plan: sharding.ShardPlan) -> Results:
    """A shard left without stages (more shards than stages) measured nothing, and that is no failure."""
    return Results(stages=[], verdict=UNCHANGED, settings=plan.settings.to_dict(), base=plan.base, head=plan.head,
                   environment={"shard": _shard_record(shard_plan)},
                   notices=[_shard_record(shard_plan)["notice"]])
