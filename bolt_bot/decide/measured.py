"""Every stage's verdict from what `bolt run` measured: count verdicts, wall-time verdicts, and the stages that moved."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

from bolt_bot.decide.counts import counts_to_stages
from bolt_bot.decide.memory import MemoryRule, add_memory
from bolt_bot.decide.paired import noise_notice, paired_stages, sizes
from bolt_bot.measure.paired import PairedRun
from bolt_bot.decide.walltime import walltime_stages
from bolt_bot.measure.plan import Measured
from bolt_bot.model import FAILED, WALLTIME, StageComparison

MIXED = "mixed"


@dataclass
class Judged:
    stages: list[StageComparison]
    measure: str  # "instructions", "walltime" or "mixed"
    environment: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def judge_measured(measured: Measured, memory_rule: MemoryRule | None = None) -> Judged:
    """The stages of both measures merged into one list, sorted by name, each with its memory verdict when the
    memory pass ran (`memory_rule`, else the default rule); `measured` is left as it was."""
    notices = list(measured.notices)
    environment = copy.deepcopy(measured.environment)
    stages: list[StageComparison] = []
    failed: dict[str, StageComparison] = {}  # stages whose count failed, kept if wall time did not reach them
    if measured.counts is not None:
        plan = measured.count_plan
        for stage in counts_to_stages(measured.counts.runs, measured.counts.errors, plan.threshold / 100,
                                      plan.warning / 100, plan.walltimes):
            if stage.verdict == FAILED:
                failed[stage.name] = stage
            else:
                stages.append(stage)
    wall: list[StageComparison] = []
    if measured.paired is not None:
        run = measured.paired
        if measured.one_sided_failed:  # a stage only one side has, which failed there when run once
            one_sided = {side: {**run.failed.get(side, {}), **errors} for side, errors in measured.one_sided_failed.items()}
            run = replace(run, failed={**run.failed, **one_sided})
        wall += paired_stages(run, *measured.paired_rule)
        notices += noise_notice(run, wall)
    if measured.walltime is not None:
        rounds, wall_notices = walltime_stages(measured.walltime, measured.wall_plan)
        too_long = measured.paired.too_long if measured.paired is not None else {}
        for stage in rounds:
            if stage.name in too_long:
                why = f"timed by whole rounds, not paired blocks: {too_long[stage.name]}"
                stage.note = f"{why}; {stage.note}" if stage.note else why
        wall += rounds
        notices += wall_notices
    if measured.walltime is not None or measured.paired is not None:
        stages += _fell_back(wall, measured.fallback, failed, notices, environment)
    kinds = {s.measure for s in stages}
    name = MIXED if len(kinds) > 1 else (kinds.pop() if kinds else WALLTIME)
    stages.sort(key=lambda s: s.name)
    notices += add_memory(stages, measured.memory, memory_rule or MemoryRule())
    return Judged(stages, name, environment, notices)


def add_sizes(judged: Judged, run: PairedRun) -> None:
    """The paired wall-time change of each stage `run` timed (counted stages that moved), beside the count:
    the count still decides."""
    found = sizes(run)
    for stage in judged.stages:
        if stage.name in found:
            stage.wall_size = found[stage.name]
    judged.notices += run.notices
    judged.environment["sizes"] = {"engine": "paired", "stages": len(found), "seconds": round(run.seconds, 1)}


def _fell_back(wall: list[StageComparison], fallback: dict[str, str], failed_counts: dict[str, StageComparison],
               notices: list[str], environment: dict) -> list[StageComparison]:
    """The wall-time stages, those whose count failed said so; a failed count wall time did not reach stays."""
    measured = {s.name for s in wall}
    moved = sorted(n for n in fallback if n in measured)
    for stage in wall:
        if stage.name in fallback:
            why = f"measured by wall time: {fallback[stage.name]}"
            stage.note = f"{why}; {stage.note}" if stage.note else why
    if moved:
        shown = ", ".join(moved[:5]) + (f" and {len(moved) - 5} more" if len(moved) > 5 else "")
        notices.append(f"{len(moved)} stage(s) whose instruction count failed were measured by wall time instead: {shown}")
        if "discovery" in environment:
            environment["discovery"]["walltime_reasons"].update(
                {n: f"its instruction count failed ({fallback[n]})" for n in moved})
        environment["count_fallback"] = {n: fallback[n] for n in moved}
    return [*wall, *(failed_counts[n] for n in sorted(failed_counts) if n not in measured)]
