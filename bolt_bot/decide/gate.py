"""The approval gate, a pure function of results + the comment's stored state + permissions already looked up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bolt_bot.model import FAILED, IMPROVED, INCONCLUSIVE, INSTRUCTIONS, REGRESSED, UNCHANGED, Results, StageComparison
from bolt_bot.report.messages import NO_IMPROVEMENT
from bolt_bot.report.render import format_change, format_interval
from bolt_bot.report.state import STATE_STAGES_LIMIT, state_name
from bolt_bot.report.textfilter import short_description, short_name

APPROVERS = {"write": ("write", "admin"), "admin": ("admin",)}  # maintain is reported as write


def needs_approval(verdict: str | None, regressed: bool, perf: bool) -> bool:
    """A regression, or a perf-labelled change, waits for a maintainer; a failed measurement is an error instead."""
    return verdict != FAILED and (regressed or perf)


def gate_ratio(stage: StageComparison) -> float | None:
    """The ratio the gate keeps of a regressed stage: its time ratio, or for a stage regressed in memory only,
    its worst memory ratio (an approval then holds until that grows past the threshold)."""
    if stage.verdict == REGRESSED or not stage.memory_regressed:
        return stage.ratio
    ratios = [r for r in (stage.memory.ratio(kind) for kind in stage.memory.regressed) if r is not None]
    return max(ratios) if ratios else None


def regression_text(stage: StageComparison) -> tuple[str, str]:
    """(title, message) of a regressed stage's annotation: slower, or allocating more when only memory regressed."""
    if stage.verdict == REGRESSED or not stage.memory_regressed:
        interval = format_interval(stage.ci)
        return "Bolt: slower benchmark", (f"{stage.name} is {format_change(stage.ratio)} slower"
                                          + (f" (95% CI {interval})" if interval else ""))
    kinds = ", ".join(f"{kind} {format_change(stage.memory.ratio(kind))}" for kind in stage.memory.regressed)
    return "Bolt: benchmark uses more memory", f"{stage.name} uses more memory per call: {kinds}"


def memory_only(results: Results) -> list[str]:
    """The stages regressed in memory and not in time."""
    return [s.name for s in results.regressions if s.verdict != REGRESSED]


def may_approve(role: str, approvers: str) -> bool:
    """Whether a permission (as the API reports it) may approve under the `approvers` setting."""
    return role in APPROVERS[approvers]


def claim_text(results: Results, limit: int = 3) -> str:
    """What Bolt measured of a perf-labelled PR's claimed improvement: "-44.4 % in parse" or none."""
    faster = sorted((s for s in results.stages if s.verdict == IMPROVED and s.ratio), key=lambda s: s.ratio)
    if not faster:
        return NO_IMPROVEMENT
    parts = [f"{format_change(s.ratio)} in {short_name(s.name)}" for s in faster[:limit]]  # the comment's style
    more = len(faster) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def stored_approval(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The approval kept in the comment's state, when it names an approver."""
    approval = (state or {}).get("approval")
    return approval if isinstance(approval, dict) and approval.get("user") else None


def carry_over(old_state: Mapping[str, Any] | None, results: Results, threshold: float,
               instr_threshold: float | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """(the approval that still stands, or None; why it was cleared, or None).

    An approval stands when the stages regressed now are among those regressed when it was given and none
    got worse, relative to its ratio at approval time, by more than the threshold (percent). The ratios at
    approval time are kept, so that small steps cannot add up to a large unapproved regression."""
    approval = stored_approval(old_state)
    if approval is None:
        return None, None
    stages = approval.get("stages") if isinstance(approval.get("stages"), dict) else {}
    approved: dict[str, float | None] = {}
    for name, ratio in stages.items():
        numeric = isinstance(ratio, (int, float)) and not isinstance(ratio, bool)
        approved[str(name)] = float(ratio) if numeric else None
    problems = []
    for stage in sorted(results.regressions, key=lambda s: s.name):
        before = approved.get(state_name(stage.name))
        limit = instr_threshold if stage.measure == INSTRUCTIONS and instr_threshold is not None else threshold
        ratio = gate_ratio(stage)
        if state_name(stage.name) not in approved:
            problems.append(f"{short_name(stage.name)} regressed ({format_change(ratio)}), "
                            "which the approval did not cover")
        elif ratio is not None and before and before > 0 and (ratio / before - 1) * 100 > limit:
            problems.append(f"{short_name(stage.name)} got worse ({format_change(before)} → "
                            f"{format_change(ratio)}, more than the {limit:g} % threshold)")
    if not problems:
        kept = dict(approval)
        kept["holds_for"] = results.head.sha
        return kept, None
    note = (f"the approval by {approval.get('user')} for {str(approval.get('sha') or '')[:7]} was cleared by the "
            f"measurement of {str(results.head.sha or '')[:7]}: " + "; ".join(problems))
    return None, note


def lost_permission(approval: Mapping[str, Any] | None, role: str | None, approvers: str) -> str | None:
    """Why a stored approval no longer counts (its approver's permission now, `role`, may not approve), or None.

    The caller asks the permission API every time: the state says who approved, never that they still may."""
    if not approval or role is None or may_approve(role, approvers):
        return None
    user = approval.get("user")
    return f"the approval by {user} no longer counts: {user} has {role} permission on this repository"


@dataclass
class Gate:
    """What approval means for one measurement: the perf label, the approval that stands, why one was cleared."""

    needed: bool = False
    perf: bool = False
    claim: str = ""
    approval: dict[str, Any] | None = None  # the approval that stands, needed or not
    note: str | None = None  # why an approval was cleared by this measurement
    old_note: str | None = None  # why one was cleared before, still shown until approved again

    @property
    def in_force(self) -> dict[str, Any] | None:
        """The approval that lets the check pass (and the exit code be 0): one that stands and is needed."""
        return self.approval if self.approval and self.needed else None


def decide(results: Results, old_state: Mapping[str, Any] | None, *, perf: bool, approver_role: str | None,
           approvers: str, threshold: float, instr_threshold: float | None = None) -> Gate:
    """The gate for a new measurement of a pull request: `approver_role` is the current permission of the
    stored approval's approver (None when there is none), `perf` whether the pull request has the perf label."""
    gate = Gate(needed=needs_approval(results.verdict, bool(results.regressions), perf), perf=perf,
                claim=claim_text(results), old_note=(old_state or {}).get("approval_note"))
    revoked = lost_permission(stored_approval(old_state), approver_role, approvers)
    if revoked:
        old_state = {**(old_state or {}), "approval": None}
    gate.approval, gate.note = carry_over(old_state, results, threshold, instr_threshold)
    gate.note = gate.note or revoked
    return gate


def state_keys(gate: Gate, results: Results) -> dict[str, Any]:
    """The gate's part of the comment's hidden state: enough to re-render the approval section and the status
    from a command, without the results."""
    return {
        "approval": gate.approval,
        # A cleared approval's reason stays visible until someone approves again or nothing needs it.
        "approval_note": None if gate.approval or not gate.needed else (gate.note or gate.old_note),
        # Keyed by a short form of each name, so that the state stays small whatever the names are.
        "regressed": dict(sorted((state_name(s.name), gate_ratio(s)) for s in results.regressions)[:STATE_STAGES_LIMIT]),
        # Stages regressed in memory only: the status names them regressed, not slower.
        "memory_regressed": sorted(state_name(n) for n in memory_only(results))[:STATE_STAGES_LIMIT],
        "perf": gate.perf,
        "claim": gate.claim if gate.perf else None,
    }


def stored_gate(state: Mapping[str, Any], labels: list[str] | None = None, perf_label: str = "perf") -> Gate:
    """The gate as the comment's state left it, for a command: the labels the event saw (when given) win over
    the state's. A state that says `regressed` without the stages (written by an older Bolt) still needs one."""
    perf = perf_label in labels if labels is not None else bool(state.get("perf"))
    regressed = bool(state.get("regressed")) or state.get("verdict") == REGRESSED
    return Gate(needed=needs_approval(state.get("verdict"), regressed, perf), perf=perf,
                claim=str(state.get("claim") or NO_IMPROVEMENT), approval=stored_approval(state))


# ---------------------------------------------------------------------------------------------------------
# the bolt/performance status: one builder, from results or from the stored state


@dataclass
class Measured:
    """What the status says of a measurement, from Results or from the comment's stored state."""

    verdict: str | None
    regressed: list[tuple[str, float | None]] = field(default_factory=list)
    faster: list[tuple[str, float | None]] = field(default_factory=list)
    failed: tuple[str, str | None] | None = None  # the first failed stage and its note
    inconclusive: int = 0
    unchanged: int = 0
    stages: int = 0
    memory: int = 0  # of the regressed, how many regressed in memory only

    @property
    def worse(self) -> str:
        return "slower" if not self.memory else "regressed"

    @classmethod
    def of(cls, results: Results) -> Measured:
        failed = [s for s in results.stages if s.verdict == FAILED]
        return cls(verdict=results.verdict,
                   regressed=[(s.name, gate_ratio(s)) for s in results.regressions],
                   memory=len(memory_only(results)),
                   faster=[(s.name, s.ratio) for s in results.stages if s.verdict == IMPROVED],
                   failed=(failed[0].name, failed[0].note) if failed else None,
                   inconclusive=results.count(INCONCLUSIVE), unchanged=results.count(UNCHANGED),
                   stages=len(results.stages))

    @classmethod
    def stored(cls, state: Mapping[str, Any]) -> Measured:
        regressed = state.get("regressed") if isinstance(state.get("regressed"), dict) else {}
        verdict = state.get("verdict")
        memory = state.get("memory_regressed") if isinstance(state.get("memory_regressed"), list) else []
        return cls(verdict=REGRESSED if regressed else verdict,
                   regressed=list(regressed.items()), stages=len(regressed), memory=len(memory))


def approved_description(approval: Mapping[str, Any]) -> str:
    return short_description(f"approved by {approval.get('user')}: {approval.get('reason')}")


def _plural(n: int, word: str) -> str:
    return f"{n} stage{'s' if n != 1 else ''} {word}"


def _listing(stages: list[tuple[str, float | None]]) -> str:
    return ", ".join(f"{short_name(name)} {format_change(ratio)}" for name, ratio in stages)


def status_for(measured: Results | Measured, gate: Gate | None = None, perf_label: str = "perf") -> tuple[str, str]:
    """(state, description) of the bolt/performance status: an approval in force -> success; a regression ->
    failure; a perf-labelled change waiting for approval -> pending; else what was measured."""
    m = Measured.of(measured) if isinstance(measured, Results) else measured
    regressed = sorted(m.regressed, key=lambda s: -(s[1] or 1.0))
    if gate is not None and gate.in_force:
        return "success", approved_description(gate.in_force)
    if m.verdict == REGRESSED and regressed:
        # Approvals come from Bolt's own comment (the gate), never from results.json.
        return "failure", short_description(f"{_plural(len(regressed), m.worse)}: {_listing(regressed)}")
    if gate is not None and gate.needed:
        return "pending", short_description(f"{perf_label} label: {gate.claim or NO_IMPROVEMENT}; waiting for a "
                                            "maintainer's approval (/bolt approve <reason>)")
    if m.verdict == FAILED:
        note = f": {short_name(m.failed[0])}: {m.failed[1]}" if m.failed and m.failed[1] else ""
        return "error", short_description(f"measurement failed{note}")
    if m.verdict == IMPROVED:
        faster = sorted(m.faster, key=lambda s: s[1] or 1.0)
        return "success", short_description(f"no regression; {_plural(len(faster), 'faster')}: {_listing(faster)}")
    if m.verdict == INCONCLUSIVE:
        return "success", short_description(f"no regression found; {_plural(m.inconclusive, 'inconclusive')}")
    if not m.stages:
        return "success", "no benchmark measured"
    return "success", short_description(f"no regression: {_plural(m.unchanged, 'unchanged')}")
