"""The detection rules compared side by side, and the plain run every time is measured against.

Every rule gets the same PR (a base and a head checkout of the synthetic project, one shared environment)
and answers with a `RuleOutcome`: which stages it flags as slower, the ratio it saw, and its wall time.

Four rules: the naive one (one run each, compare-fail at 5 %), Bolt by wall time with rounds (today's engine),
Bolt by wall time with the paired engine (issue 15), Bolt by instruction counts.
To add one: write a class with `name`, `label`, `available()` and `run(ctx)`, and add it to RULES. The table picks
it up by name (table.RULE_ORDER).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.decide import walltime as wall_verdicts
from bolt_bot.decide.counts import counts_to_stages
from bolt_bot.decide.measured import judge_measured
from bolt_bot.decide.paired import paired_stages
from bolt_bot.measure.paired import PairedRun, PairSample, measure_paired
from bolt_bot.measure.timing import PAIRED, Engines, measure_timed, paired_plan
from bolt_bot.measure.plan import REPEAT, CountPlan, Measured, measure_counts
from bolt_bot.measure.counts import valgrind_available
from bolt_bot.model import IMPROVED, REGRESSED
from bolt_bot.progress import Progress
from bolt_bot.settings import Settings
from bolt_bot.measure.walltime import BASE, HEAD, SideSetup, WalltimePlan, measure_walltime
from detection.suite import (  # benchmarks/ is on sys.path (run.py and the tests put it there)
    environ,
    stage_of,
)

NAIVE_FAIL = "median:5%"
NAIVE_LIMIT = 1.05  # pytest-benchmark's PercentageRegressionCheck: fails when head/base*100-100 > 5


@dataclass
class PrContext:
    """One PR to judge: both checkouts, the environment, a private folder, and the plain base run already made."""

    python: Path
    trees: dict[str, Path]  # "base" / "head" → checkout
    workdir: Path
    stages: list[str]
    plain: PlainRun
    quick: bool = False
    verbose: bool = False


@dataclass
class RuleOutcome:
    flagged: list[str]  # stages reported slower
    ratios: dict[str, float | None]  # head/base as the rule saw it
    seconds: float  # the rule's own wall time (for the naive rule: base + head runs)
    verdicts: dict[str, str] = field(default_factory=dict)
    improved: list[str] = field(default_factory=list)  # stages reported faster (all injections are slowdowns)
    intervals: dict[str, list[float] | None] = field(default_factory=dict)  # the ratio's 95 % interval, where one exists
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"flagged": self.flagged, "improved": self.improved, "ratios": self.ratios, "seconds": self.seconds,
                "verdicts": self.verdicts, "intervals": self.intervals, "detail": self.detail}


# ------------------------------------------------------------------------ the plain reference run

@dataclass
class PlainRun:
    """One plain pytest-benchmark run of the base with default settings, saved to a storage folder.

    It is the yardstick for everybody's wall time, and the naive rule's base run at the same time
    (the naive rule is "one run each", so its base run is exactly one plain run)."""

    seconds: float
    json: Path
    storage: Path
    code: int
    medians: dict[str, float]


def _pytest(python: Path, checkout: Path, args: list[str], timeout: float) -> tuple[int, float, str]:
    started = time.monotonic()
    proc = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=checkout,
                          env=environ(python), capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, time.monotonic() - started, (proc.stdout + proc.stderr)[-2000:]


def _medians(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    return {stage_of(b["fullname"]): b["stats"]["median"] for b in data["benchmarks"]}


def plain_run(python: Path, checkout: Path, workdir: Path, extra_args: list[str] = (), timeout: float = 1800) -> PlainRun:
    """`extra_args` exists for the harness's own tests (shorter runs); the benchmark itself passes nothing."""
    workdir.mkdir(parents=True, exist_ok=True)
    storage, out = workdir / "storage", workdir / "plain-base.json"
    code, seconds, output = _pytest(python, checkout, [f"--benchmark-storage=file://{storage}", "--benchmark-save=base",
                                                       f"--benchmark-json={out}", *extra_args], timeout)
    if not out.exists():
        raise RuntimeError(f"the plain base run wrote no JSON (exit code {code}): {output[-500:]}")
    return PlainRun(seconds=seconds, json=out, storage=storage, code=code, medians=_medians(out))


# ------------------------------------------------------------------------------------- the rules

class NaiveCompareFail:
    """One base run, one head run, pytest-benchmark `--benchmark-compare-fail=median:5%` (default settings).

    The verdict is read from the two JSON files' medians (head/base > 1.05), not from the exit code: compare-fail
    reports by raising (exit code 1 for any failure). The exit code is kept to cross-check the parsing."""

    name = "naive"
    label = "one run each, pytest-benchmark `--benchmark-compare-fail=median:5%`"

    def __init__(self, extra_args: list[str] = ()):
        self.extra_args = list(extra_args)  # tests only

    def available(self) -> str | None:
        return None

    def run(self, ctx: PrContext) -> RuleOutcome:
        out = ctx.workdir / "naive-head.json"
        code, seconds, output = _pytest(ctx.python, ctx.trees[HEAD], [
            f"--benchmark-storage=file://{ctx.plain.storage}", "--benchmark-compare=0001",
            f"--benchmark-compare-fail={NAIVE_FAIL}", f"--benchmark-json={out}", *self.extra_args], 1800)
        if not out.exists():
            raise RuntimeError(f"the naive head run wrote no JSON (exit code {code}): {output[-500:]}")
        head, base = _medians(out), ctx.plain.medians
        ratios = {s: (head[s] / base[s] if s in head and s in base and base[s] else None) for s in ctx.stages}
        flagged = sorted(s for s, r in ratios.items() if r is not None and r > NAIVE_LIMIT)
        return RuleOutcome(flagged=flagged, ratios=ratios, seconds=ctx.plain.seconds + seconds,
                           verdicts={s: ("regressed" if s in flagged else "unchanged") for s in ctx.stages},
                           detail={"exit_code": code, "head_seconds": seconds,
                                   "exit_code_agrees": (code == 1) == bool(flagged)})


class BoltWalltime:
    """Bolt's wall-time path as `bolt run` drives it: measure_walltime on the two checkouts with Settings' defaults
    (interleaved ABBA rounds, adaptive extra rounds, confirmation pass), a stage counts as flagged when its
    verdict is `regressed`."""

    name = "bolt"
    label = "Bolt, wall time, rounds (interleaved rounds, extra rounds, confirmation)"

    def __init__(self, rounds: int | None = None, budget: float | None = None, confirm_pairs: int | None = None,
                 max_extra_pairs: int | None = None):
        settings = Settings()
        defaults = WalltimePlan()
        self.plan = WalltimePlan(
            rounds=rounds or settings.rounds, threshold=settings.threshold, alpha=settings.alpha,
            budget=settings.budget if budget is None else budget, timeout=settings.round_timeout,
            confirm_pairs=defaults.confirm_pairs if confirm_pairs is None else confirm_pairs,
            max_extra_pairs=defaults.max_extra_pairs if max_extra_pairs is None else max_extra_pairs,
        )

    def available(self) -> str | None:
        return None

    def run(self, ctx: PrContext) -> RuleOutcome:
        setups = {side: SideSetup(python=ctx.python, checkout=ctx.trees[side], env=environ(ctx.python)) for side in (BASE, HEAD)}
        run = measure_walltime(setups, self.plan, ctx.workdir / "bolt", Progress(quiet=not ctx.verbose),
                               judge=wall_verdicts.judge(self.plan))
        stages, _ = wall_verdicts.walltime_stages(run, self.plan)
        verdicts = {stage_of(s.name): s.verdict for s in stages}
        ratios = {stage_of(s.name): s.ratio for s in stages}
        return RuleOutcome(
            flagged=sorted(s for s, v in verdicts.items() if v == REGRESSED),
            improved=sorted(s for s, v in verdicts.items() if v == IMPROVED),
            ratios=ratios, seconds=run.seconds, verdicts=verdicts, intervals={stage_of(s.name): s.ci for s in stages},
            detail={"rounds": run.rounds, "extra_pairs": run.extra_pairs, "confirm_pairs": run.confirm_pairs,
                    "notes": {stage_of(s.name): s.note for s in stages if s.note},
                    "plan": {"rounds": self.plan.rounds, "threshold": self.plan.threshold, "alpha": self.plan.alpha,
                             "budget": self.plan.budget, "confirm_pairs": self.plan.confirm_pairs,
                             "max_extra_pairs": self.plan.max_extra_pairs}},
        )


class BoltInstructions:
    """Bolt's instruction-count path: `instrplan.measure_counts` on the two checkouts (callgrind via pytest-codspeed:
    base once, head once, head again to show the counts repeat; one call per stage, GC off), decided per stage by
    `stats.decide_counts` with Settings' instruction threshold (1 %) and warning band (0.5 %). A stage counts as
    flagged when its verdict is `regressed`; its time is measure_counts' own (the three valgrind passes)."""

    name = "instructions"
    label = "Bolt, instruction counts (callgrind)"

    def __init__(self, threshold: float | None = None, warning: float | None = None):
        settings = Settings()
        self.plan = CountPlan(threshold=settings.instr_threshold if threshold is None else threshold,
                              warning=settings.instr_warning if warning is None else warning,
                              timeout=settings.round_timeout)

    def available(self) -> str | None:
        return None if valgrind_available() else "valgrind is not installed (apt-get install valgrind)"

    def run(self, ctx: PrContext) -> RuleOutcome:
        # Same-length paths on both sides (the worktrees are 00/01, the pass folders base/head): path strings
        # are hashed and copied by imports and would show up in the counts.
        setups = {side: SideSetup(python=ctx.python, checkout=ctx.trees[side], env=environ(ctx.python)) for side in (BASE, HEAD)}
        run = measure_counts(setups, self.plan, ctx.workdir / "instr", Progress(quiet=not ctx.verbose))
        stages = counts_to_stages(run.runs, run.errors, self.plan.threshold / 100, self.plan.warning / 100)
        verdicts = {stage_of(s.name): s.verdict for s in stages}
        counts = {side: {stage_of(n): c for n, c in r.counts.items()} for side, r in run.runs.items()}
        return RuleOutcome(
            flagged=sorted(s for s, v in verdicts.items() if v == REGRESSED),
            improved=sorted(s for s, v in verdicts.items() if v == IMPROVED),
            ratios={stage_of(s.name): s.ratio for s in stages}, seconds=run.seconds, verdicts=verdicts,
            detail={"counts": counts, "pass_seconds": {side: round(r.seconds, 2) for side, r in run.runs.items()},
                    "repeated_identically": sum(1 for n, c in counts.get(REPEAT, {}).items() if counts.get(HEAD, {}).get(n) == c),
                    "notes": {stage_of(s.name): s.note for s in stages if s.note},
                    "errors": run.errors, "notices": run.notices,
                    "plan": {"threshold": self.plan.threshold, "warning": self.plan.warning}},
        )


class BoltPaired:
    """Bolt's wall-time step as `bolt run` takes it with `walltime-engine = "paired"` (issue 15; set in run()):
    `measure.timing.measure_timed` on the two checkouts with Settings' defaults, i.e. measure_paired with the default
    PairedPlan (K fresh process pairs, base and head worker pinned to one CPU, alternating blocks of calls, blocks
    whose speed probes disagree dropped) and whole rounds for the stages too long for blocks, judged by
    `decide.measured.judge_measured` (decide.paired.paired_stages for the pairs, the rounds verdicts for the rest).
    Its time covers both. The kept blocks go to the record, so the decision can be replayed (`replay_paired`).
    A run where the paired engine could not start (bolt run then times everything by rounds) is an error here:
    the row must not show the rounds engine under the paired engine's name."""

    name = "paired"
    label = "Bolt, wall time, paired (base and head on one CPU, alternating blocks, K process pairs)"

    def __init__(self, settings: Settings | None = None, plan_changes: dict | None = None):
        self.settings = settings or Settings()
        self.plan_changes = dict(plan_changes or {})  # --quick: fewer pairs and blocks than the default plan
        self.plan = dataclasses.replace(paired_plan(self.settings, []), **self.plan_changes)
        self.threshold, self.alpha = self.settings.threshold, self.settings.alpha

    def available(self) -> str | None:
        return None if hasattr(os, "sched_setaffinity") else "no CPU affinity control on this system"

    def _paired_engine(self):
        changes = self.plan_changes
        if not changes:
            return measure_paired

        def shortened(setups, plan, workdir, progress=None, only=None):
            return measure_paired(setups, dataclasses.replace(plan, **changes), workdir, progress, only=only)
        return shortened

    def run(self, ctx: PrContext) -> RuleOutcome:
        setups = {side: SideSetup(python=ctx.python, checkout=ctx.trees[side], env=environ(ctx.python)) for side in (BASE, HEAD)}
        settings = dataclasses.replace(self.settings, walltime_engine=PAIRED)
        started = time.monotonic()
        timed = measure_timed(settings, setups, ctx.workdir / "paired", Progress(quiet=not ctx.verbose),
                              Engines(paired=self._paired_engine()), wall_verdicts.judge, targets=[])
        seconds = time.monotonic() - started
        if timed.paired is None:
            raise RuntimeError(f"the paired engine did not run: {'; '.join(timed.notices)}"[:400])
        judged = judge_measured(Measured(walltime=timed.walltime, wall_plan=timed.wall_plan, paired=timed.paired,
                                         paired_plan=timed.paired_plan, paired_rule=(self.threshold, self.alpha),
                                         one_sided_failed=timed.one_sided_failed, environment=timed.environment,
                                         notices=timed.notices))
        run = timed.paired
        outcome = _outcome(judged.stages, seconds)
        fallback = None
        if timed.walltime is not None:
            long_stages = [s for s in judged.stages if s.name in run.too_long]
            fallback = {"stages": sorted(stage_of(n) for n in run.too_long), "seconds": timed.walltime.seconds,
                        "rounds": timed.walltime.rounds, "outcome": _outcome(long_stages, timed.walltime.seconds).to_dict()}
        written = ctx.workdir / "paired" / "paired" / "paired.json"  # measure_paired's copy: each worker's CPU and ASLR
        workers = json.loads(written.read_text()).get("workers") if written.is_file() else None
        outcome.detail = {"run": dataclasses.asdict(run), "workers": workers, "paired_seconds": run.seconds,
                          "fallback": fallback, "notices": judged.notices, "environment": judged.environment,
                          "notes": {stage_of(s.name): s.note for s in judged.stages if s.note},
                          "plan": dataclasses.asdict(self.plan), "threshold": self.threshold, "alpha": self.alpha}
        return outcome


def _outcome(stages: list, seconds: float) -> RuleOutcome:
    verdicts = {stage_of(s.name): s.verdict for s in stages}
    return RuleOutcome(flagged=sorted(s for s, v in verdicts.items() if v == REGRESSED),
                       improved=sorted(s for s, v in verdicts.items() if v == IMPROVED),
                       ratios={stage_of(s.name): s.ratio for s in stages}, seconds=seconds, verdicts=verdicts,
                       intervals={stage_of(s.name): s.ci for s in stages})


def paired_run_from_dict(data: dict, pairs: int | None = None) -> PairedRun:
    """A recorded PairedRun (dataclasses.asdict) back as the data classes; `pairs`: only the first K process pairs."""
    stages = {name: [PairSample(**sample) for sample in samples[:pairs]] for name, samples in data["stages"].items()}
    return PairedRun(stages=stages, **{k: v for k, v in data.items() if k != "stages"})


def replay_paired(outcome: dict, pairs: int | None = None, threshold: float | None = None,
                  alpha: float | None = None) -> dict:
    """The paired rule's outcome decided again from its recorded blocks by today's decide.paired (Settings' floor and
    alpha unless given); stages that fell back to rounds keep their recorded verdicts. With `pairs`, only the first
    K process pairs count, and the time is scaled down to match (the fallback's time stays)."""
    if "error" in outcome or "run" not in outcome.get("detail", {}):
        return outcome
    detail = outcome["detail"]
    settings = Settings()
    run = paired_run_from_dict(detail["run"], pairs)
    stages = [s for s in paired_stages(run, settings.threshold if threshold is None else threshold,
                                       settings.alpha if alpha is None else alpha) if s.name not in run.too_long]
    planned = detail.get("plan", {}).get("pairs") or 0
    fallback = detail.get("fallback") or {}
    share = min(1.0, pairs / planned) if pairs and planned else 1.0
    new = _outcome(stages, detail.get("paired_seconds", outcome["seconds"]) * share + fallback.get("seconds", 0.0)).to_dict()
    kept = fallback.get("outcome")
    if kept:  # the rounds engine's verdicts on the long stages, as recorded
        for key in ("verdicts", "ratios", "intervals"):
            new[key].update(kept.get(key, {}))
        new["flagged"] = sorted(set(new["flagged"]) | set(kept["flagged"]))
        new["improved"] = sorted(set(new["improved"]) | set(kept["improved"]))
    new["detail"] = {**detail, "replayed": {"pairs": pairs, "threshold": threshold, "alpha": alpha}}
    return new


RULES = {"naive": NaiveCompareFail, "bolt": BoltWalltime, "paired": BoltPaired, "instructions": BoltInstructions}
