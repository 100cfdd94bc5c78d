"""Wall-time verdicts: the rounds compared (decide/compare.py), then a regression must survive its confirmation rounds."""

from __future__ import annotations

from bolt_bot.decide import stats
from bolt_bot.decide.compare import compare_sides
from bolt_bot.measure import speedgate
from bolt_bot.measure.sides import BASE, HEAD, SideRounds, columns
from bolt_bot.measure.walltime import Judge, WalltimePlan, WalltimeRun
from bolt_bot.model import INCONCLUSIVE, REGRESSED, StageComparison


def judge(plan: WalltimePlan) -> Judge:
    """The opinion the wall-time loop plans its extra and confirmation rounds by."""
    return lambda base, head: compare_sides(base, head, threshold=plan.threshold, alpha=plan.alpha)


def walltime_stages(run: WalltimeRun, plan: WalltimePlan) -> tuple[list[StageComparison], list[str]]:
    """The stages' verdicts from everything the wall-time plan measured, and what the comparison noticed."""
    notices: list[str] = []
    stages = compare_sides(run.sides[BASE], run.sides[HEAD], threshold=plan.threshold, alpha=plan.alpha, notices=notices)
    if run.confirm is not None:
        ref = speedgate.reference(run.sides[BASE].rounds, run.sides[HEAD].rounds)
        _require_confirmation(stages, run.confirm, plan.threshold / 100, ref)
    _mark_unselectable(stages, run.unselectable)
    return stages, notices


def _mark_unselectable(stages: list[StageComparison], why: dict[str, str]) -> None:
    """A stage a later round could not re-select keeps what the planned rounds measured, said in its note;
    a verdict that needed that round (a regression to confirm) is inconclusive."""
    for stage in stages:
        if stage.name not in why or stage.verdict not in (REGRESSED, INCONCLUSIVE):
            continue  # an anchor that stayed unchanged needed no later round
        if stage.verdict == REGRESSED:
            stage.verdict = INCONCLUSIVE
        reason = f"a later round could not re-select it ({why[stage.name]})"
        stage.note = f"{stage.note}; {reason}" if stage.note else reason




def _require_confirmation(stages: list[StageComparison], confirm: dict[str, SideRounds], floor: float,
                          ref: float | None = None) -> None:
    """A regression stands only if the confirmation rounds alone moved the same way by half the floor."""
    chosen = speedgate.round_values(confirm[BASE].rounds, confirm[HEAD].rounds, ref, min_fast=1)
    base, head = columns(chosen.base), columns(chosen.head)
    for stage in stages:
        if stage.verdict != REGRESSED:
            continue
        b = base.get(stage.name, [])
        h = head.get(stage.name, [])
        center_b, _ = stats.center_and_spread(b)
        center_h, _ = stats.center_and_spread(h)
        if not center_b or not center_h:
            stage.verdict, stage.note = INCONCLUSIVE, "the confirmation pass could not measure it"
            continue
        if center_h / center_b < 1 + floor / 2:
            stage.verdict = INCONCLUSIVE
            stage.note = f"flagged at {(stage.ratio - 1) * 100:+.1f} % but not confirmed by a second measurement ({(center_h / center_b - 1) * 100:+.1f} %)"
