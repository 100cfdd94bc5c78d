"""`bolt run`: plan (which commits), measure both sides, compare, profile the regressions, write the results directory."""

from __future__ import annotations

import contextlib
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bolt_bot.measure import envs
from bolt_bot.measure import gitrepo
from bolt_bot.measure import plan as instrplan
from bolt_bot.report import output
from bolt_bot.measure import sandbox
from bolt_bot.decide.compare import build_results
from bolt_bot.errors import BoltError
from bolt_bot.model import REGRESSED, CommitRef, Results, StageComparison
from bolt_bot.progress import Progress
from bolt_bot.settings import Settings, read_project_settings_text
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
    project = read_project_settings_text(gitrepo.file_at(repo, base_sha, "pyproject.toml"), f"{base_sha[:7]}:pyproject.toml")
    settings = Settings().updated(project, f"{base_sha[:7]}:pyproject.toml [tool.bolt]").updated(overrides or {}, "options")
    return Plan(repo, CommitRef(base_ref, base_sha), CommitRef(head_ref, head_sha), settings)


def compile_bytecode(python: Path, checkout: Path) -> None:
    """Write bytecode caches first: the first run after a checkout differs from the next ones."""
    try:
        subprocess.run([str(python), "-m", "compileall", "-q", "-x", r"/\.git/", str(checkout)],
                       capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass  # only a warm-up: the measurements still work without it


def execute(plan: Plan, out: Path, progress: Progress | None = None) -> Results:
    """Measure, compare, write results.json at once, then profile the regressions and write again."""
    progress = progress or Progress()
    settings = plan.settings
    started = time.monotonic()
    # Absolute before anything runs with a worktree as its folder (the rounds write their files in here).
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = envs.EnvSpec(python=settings.python, extras=settings.extras, install=settings.install,
                        requirements=instrplan.requirements(settings))
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
        measured = instrplan.measure(settings, setups, out, progress)
        results = build_results(
            measured.stages,
            measure=measured.measure,
            settings=settings.to_dict(),
            base=plan.base,
            head=plan.head,
            environment={
                **measured.environment,
                "runner": f"{platform.system()} {platform.machine()}, Python {versions[HEAD]}",
                "python": pythons,
                "duration": time.monotonic() - started,
            },
            notices=env_notices + measured.notices,
        )
        # Nothing measured is lost if profiling or rendering fails.
        results.write(out / "results.json")
        regressed = [s for s in results.stages if s.verdict == REGRESSED]
        if regressed and settings.profile:
            with progress.group(f"Profiling {len(regressed)} regressed stage(s) on both sides"):
                _attach_profiles(regressed, setups, out / "profiles", settings, progress)
        results.environment["duration"] = time.monotonic() - started
    output.write_results_dir(results, out, settings.template_dir)
    return results


def _attach_profiles(stages: list[StageComparison], setups: dict[str, SideSetup], folder: Path, settings: Settings,
                     progress: Progress) -> None:
    from bolt_bot.profiling import collect as profiling

    names = [s.name for s in stages]
    tables = {}
    for side, setup in setups.items():
        try:
            files = profiling.collect_profiles(setup.python, setup.checkout, list(settings.pytest_args), folder / side,
                                               stages=names, env=setup.env, timeout=settings.round_timeout)
        except BoltError as exc:
            progress.warn(f"profiling the {side} side failed: {exc}")
            for stage in stages:
                stage.profile_note = f"profiling the {side} side failed: {exc}"
            return
        tables[side] = {name: profiling.load_profile(path, setup.checkout) for name, path in files.items()}
    for stage in stages:
        base, head = tables[BASE].get(stage.name), tables[HEAD].get(stage.name)
        if base is not None and head is not None:
            stage.profile = profiling.diff_profiles(base, head)
            if not stage.profile:  # an empty table under a regression says nothing: say why it is empty
                stage.profile_note = profiling.why_empty(base, head)
        else:
            missing = " and ".join(side for side, table in ((BASE, base), (HEAD, head)) if table is None)
            stage.profile_note = f"cProfile recorded no call of this stage on {missing}"
