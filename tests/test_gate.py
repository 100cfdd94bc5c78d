"""The approval gate as a pure function: results + stored state + permissions -> needed, carried over, status."""

from __future__ import annotations

from bolt_bot.decide import gate
from bolt_bot.model import FAILED, IMPROVED, INSTRUCTIONS, REGRESSED, UNCHANGED, CommitRef, Results, StageComparison

HEAD = "b" * 40


def results(*stages: tuple[str, str, float], head: str = HEAD) -> Results:
    made = [StageComparison(name=name, verdict=verdict, ratio=ratio) for name, verdict, ratio in stages]
    verdict = REGRESSED if any(s.verdict == REGRESSED for s in made) else \
        IMPROVED if any(s.verdict == IMPROVED for s in made) else UNCHANGED
    return Results(stages=made, verdict=verdict, head=CommitRef(sha=head))


def approved(stages: dict[str, float], user: str = "maintainer") -> dict:
    return {"approval": {"user": user, "sha": "a" * 40, "reason": "worth it", "stages": stages}}


def decide(res: Results, state: dict | None, *, perf: bool = False, role: str | None = "write") -> gate.Gate:
    return gate.decide(res, state, perf=perf, approver_role=role, approvers="write", threshold=3.0,
                       instr_threshold=1.0)


def test_what_needs_approval():
    assert gate.needs_approval(REGRESSED, True, False)
    assert gate.needs_approval(IMPROVED, False, True)  # the perf label asks for one
    assert not gate.needs_approval(UNCHANGED, False, False)
    assert not gate.needs_approval(FAILED, True, True)  # a failed measurement is an error, not a wait
    assert gate.may_approve("admin", "write") and gate.may_approve("write", "write")
    assert not gate.may_approve("write", "admin") and not gate.may_approve("triage", "write")


def test_a_regression_without_approval_fails_the_status():
    g = decide(results(("t.py::test_parse", REGRESSED, 1.092)), None)
    assert g.needed and g.in_force is None and g.note is None
    assert gate.status_for(results(("t.py::test_parse", REGRESSED, 1.092)), g) == \
        ("failure", "1 stage slower: test_parse +9.2 %")


def test_an_approval_carries_over_a_push_that_is_no_worse():
    res = results(("t.py::test_parse", REGRESSED, 1.10))
    g = decide(res, approved({"t.py::test_parse": 1.09}))
    assert g.in_force and g.in_force["holds_for"] == HEAD and g.note is None
    assert gate.status_for(res, g) == ("success", "approved by maintainer: worth it")
    keys = gate.state_keys(g, res)
    assert keys["approval"]["user"] == "maintainer" and keys["approval_note"] is None
    assert keys["regressed"] == {"t.py::test_parse": 1.10}


def test_a_worse_or_new_regression_clears_the_approval():
    worse = results(("t.py::test_parse", REGRESSED, 1.20))
    g = decide(worse, approved({"t.py::test_parse": 1.09}))
    assert g.in_force is None and "got worse" in g.note and "more than the 3 % threshold" in g.note
    assert gate.status_for(worse, g)[0] == "failure"
    assert gate.state_keys(g, worse)["approval_note"] == g.note  # shown until someone approves again
    other = results(("t.py::test_parse", REGRESSED, 1.09), ("t.py::test_dump", REGRESSED, 1.05))
    assert "test_dump regressed (+5.0 %), which the approval did not cover" in decide(other, approved(
        {"t.py::test_parse": 1.09})).note
    # instruction counts have their own, tighter threshold
    counted = results(("t.py::test_parse", REGRESSED, 1.03))
    counted.stages[0].measure = INSTRUCTIONS
    assert decide(counted, approved({"t.py::test_parse": 1.01})).note


def test_an_approver_who_lost_permission_no_longer_counts():
    res = results(("t.py::test_parse", REGRESSED, 1.09))
    g = decide(res, approved({"t.py::test_parse": 1.09}), role="read")
    assert g.in_force is None and g.note == ("the approval by maintainer no longer counts: maintainer has read "
                                             "permission on this repository")
    # no stored approval: nothing to look up, nothing lost
    assert decide(res, {"approval": None}, role=None).note is None


def test_a_perf_label_waits_and_an_approval_not_needed_is_not_in_force():
    faster = results(("t.py::test_parse", IMPROVED, 0.5))
    g = decide(faster, None, perf=True)
    assert g.needed and g.claim == "-50.0 % (2.0× faster) in test_parse"
    state, description = gate.status_for(faster, g, "speed")
    assert state == "pending" and description.startswith("speed label: -50.0 % (2.0× faster) in test_parse; waiting")
    # the regression is gone and there is no label: the stored approval stands but is not needed
    g = decide(faster, approved({"t.py::test_parse": 1.09}))
    assert g.approval and not g.needed and g.in_force is None
    assert gate.status_for(faster, g) == ("success", "no regression; 1 stage faster: test_parse -50.0 % (2.0× faster)")


def test_the_status_from_the_stored_state_matches_the_one_from_results():
    res = results(("t.py::test_parse", REGRESSED, 1.092), ("t.py::test_dump", REGRESSED, 1.3))
    g = decide(res, None)
    stored = {"verdict": REGRESSED, **gate.state_keys(g, res)}
    from_state = gate.status_for(gate.Measured.stored(stored), gate.stored_gate(stored, None, "perf"))
    assert from_state == gate.status_for(res, g) == ("failure", "2 stages slower: test_dump +30.0 %, test_parse +9.2 %")
    perf_only = {"verdict": UNCHANGED, "regressed": {}, "perf": True, "claim": None}
    assert gate.status_for(gate.Measured.stored(perf_only), gate.stored_gate(perf_only, None, "perf"))[1] == \
        "perf label: no measurable improvement; waiting for a maintainer's approval (/bolt approve <reason>)"
    # the labels the event saw win over the state's
    assert not gate.stored_gate(perf_only, [], "perf").needed


def test_the_gate_never_changes_the_results():
    res = results(("t.py::test_parse", REGRESSED, 1.09))
    before = res.to_dict()
    g = decide(res, approved({"t.py::test_parse": 1.09}))
    gate.status_for(res, g)
    gate.state_keys(g, res)
    assert res.to_dict() == before and res.approval is None
