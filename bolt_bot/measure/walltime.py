"""The wall-time plan: interleaved ABBA rounds, adaptive extra rounds for unclear stages, a confirmation pass.

measurement-facts.md: the variance is between processes, drift inside a process is large, and a CPU hog
on the other core hits whichever side runs at that moment. So every round is a separate process, base and
head alternate as A B B A A B..., and a regression is only reported after flagged stages were measured
again and moved the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.measure import speedgate
from bolt_bot.measure.rounds import RoundResult, run_round
from bolt_bot.measure.sides import BASE, HEAD, SideRounds
from bolt_bot.errors import BoltError
from bolt_bot.model import INCONCLUSIVE, REGRESSED, UNCHANGED, StageComparison
from bolt_bot.progress import Progress
from bolt_bot.words import plural

# The deciding layer's opinion of the rounds so far (base, head → stages with verdicts), passed in by the
# caller: the loop asks it which stages are unclear (extra rounds) or flagged (confirmation rounds).
Judge = Callable[[SideRounds, SideRounds], list[StageComparison]]


@dataclass
class SideSetup:
    python: Path
    checkout: Path
    env: dict[str, str] | None = None


@dataclass
class WalltimePlan:
    rounds: int = 10
    threshold: float = 3.0  # percent; threshold and alpha are for the judge (decide/walltime.py), not the loop
    alpha: float = 0.05
    budget: float = 120.0  # seconds for extra rounds on inconclusive stages
    timeout: float = 600.0  # per round
    memory_mb: int = 4096  # address-space limit per round (0: none)
    confirm_pairs: int = 3
    max_extra_pairs: int = 10
    targets: list[str] = field(default_factory=list)
    pytest_args: list[str] = field(default_factory=list)


@dataclass
class WalltimeRun:
    """What the wall-time plan measured; the verdicts are decide/walltime.py's."""

    sides: dict[str, SideRounds]
    rounds: dict[str, int]  # per side, including extra and confirmation rounds
    extra_pairs: int = 0
    confirm_pairs: int = 0
    seconds: float = 0.0
    confirm: dict[str, SideRounds] | None = None  # the confirmation rounds alone, when flagged stages were measured again
    unselectable: dict[str, str] = field(default_factory=dict)  # stage → why a later round could not re-select it


class _Runner:
    """Owns the round counter, the per-side state, and the alternation."""

    def __init__(self, setups: dict[str, SideSetup], plan: WalltimePlan, workdir: Path, progress: Progress,
                 round_fn: Callable[..., RoundResult], judge: Judge):
        self.setups, self.plan, self.workdir, self.progress, self.round_fn = setups, plan, workdir, progress, round_fn
        self.judge = judge
        self.sides = {side: SideRounds() for side in setups}
        self.deselect: dict[str, list[str]] = {side: [] for side in setups}
        self.dead: set[str] = set()
        self.pairs = 0
        self.counts = {side: 0 for side in setups}
        self.unselectable: dict[str, str] = {}  # stage → why an extra or confirmation round could not run it

    def pair(self, targets: list[str], tag: str, what: str) -> dict[str, list]:
        """One round per side, order alternating (A B, B A, ...). Returns the records of this pair.

        `what` names the round in the progress output ("round 3/10", "extra round 1 (...)"), so the rounds
        after the planned ones are never mistaken for more of them."""
        order = [BASE, HEAD] if self.pairs % 2 == 0 else [HEAD, BASE]
        self.pairs += 1
        got: dict[str, list] = {}
        for side in order:
            if side in self.dead:
                continue
            setup = self.setups[side]
            try:
                result = self.round_fn(
                    setup.python, setup.checkout, targets or self.plan.targets, self.workdir / side,
                    label=f"{tag}-{self.pairs:03d}", pytest_args=self.plan.pytest_args, deselect=self.deselect[side],
                    env=setup.env, timeout=self.plan.timeout, memory_mb=self.plan.memory_mb,
                )
            except BoltError as exc:
                if not targets:
                    raise  # the planned rounds: the suite itself cannot start, nothing was measured
                # A later round that re-selects stages: what the planned rounds measured stands.
                for name in targets:
                    self.unselectable.setdefault(name, f"{side}: {exc}")
                self.progress.warn(f"{side}: the {tag} round could not re-select its stages ({exc}); "
                                   "keeping what was measured")
                return {}
            self.counts[side] += 1
            self._absorb(side, result)
            got[side] = result.records
            self.progress.step(f"{what} {side}: {plural(len(result.records), 'stage')} in {result.seconds:.1f} s")
        return got

    def _absorb(self, side: str, result: RoundResult) -> None:
        rounds = self.sides[side]
        if result.records:
            rounds.rounds.append(result.records)
        for name, excerpt in result.failed.items():
            rounds.failed.setdefault(name, excerpt)
        if result.hung:
            self.deselect[side].append(result.hung)
            self.progress.warn(f"{side}: {result.hung} hung and was stopped; later rounds skip it")
        if result.error and not result.records and not result.hung:
            # The suite itself cannot run on this side (import error, crash at start): repeating won't help.
            rounds.error = result.error
            self.dead.add(side)
            self.progress.warn(f"{side}: the benchmark suite failed: {result.error}")

    def reference(self) -> float | None:
        """The full-speed probe time over every round so far (speedgate.py)."""
        return speedgate.reference(self.sides[BASE].rounds, self.sides[HEAD].rounds)

    def compare(self) -> list[StageComparison]:
        return self.judge(self.sides[BASE], self.sides[HEAD])


def measure_walltime(
    setups: dict[str, SideSetup],
    plan: WalltimePlan,
    workdir: Path,
    progress: Progress | None = None,
    round_fn: Callable[..., RoundResult] = run_round,
    *,
    judge: Judge,
) -> WalltimeRun:
    """The planned rounds, extra rounds while `judge` finds stages unclear, then confirmation rounds of the
    stages it flags. Returns the rounds; decide/walltime.py gives the verdicts."""
    progress = progress or Progress(quiet=True)
    started = time.monotonic()
    runner = _Runner(setups, plan, workdir, progress, round_fn, judge)
    with progress.bar(plan.rounds * 2, "measuring base and head"):
        for number in range(1, plan.rounds + 1):
            runner.pair([], "round", f"round {number}/{plan.rounds}")
            if len(runner.dead) == 2:
                break
    stages = runner.compare()
    extra = 0
    # Extra rounds may cost at most half of what the planned rounds took (and never more than the
    # budget), so a noisy run stays within a small multiple of one plain pytest-benchmark run.
    deadline = time.monotonic() + min(plan.budget, 0.5 * (time.monotonic() - started))
    while extra < plan.max_extra_pairs and time.monotonic() < deadline and not runner.dead and not runner.unselectable:
        unclear = [s.name for s in stages if s.verdict == INCONCLUSIVE and s.ratio is not None]
        if not unclear:
            break
        if not extra:
            progress.note(f"{plural(len(unclear), 'stage')} unclear after {plural(plan.rounds, 'round')}: extra rounds "
                          f"of {'it' if len(unclear) == 1 else 'them'}, at most {plan.max_extra_pairs} within "
                          f"{max(deadline - time.monotonic(), 0):.0f} s")
        extra += 1
        runner.pair(unclear + _anchors(stages, unclear), "extra",
                    f"extra round {extra} ({plural(len(unclear), 'unclear stage')})")
        stages = runner.compare()
    confirmed = 0
    confirm = None
    flagged = [s.name for s in stages if s.verdict == REGRESSED]
    if flagged and not runner.dead:
        confirm = {BASE: SideRounds(), HEAD: SideRounds()}
        anchors = _anchors(stages, flagged)
        progress.note(f"{plural(len(flagged), 'stage')} flagged as slower: "
                      f"{plural(plan.confirm_pairs, 'confirmation round')} (up to {2 * plan.confirm_pairs}) measure "
                      f"{'it' if len(flagged) == 1 else 'them'} again before a regression is reported")
        # The planned pairs, then up to as many again while a flagged stage has no full-speed round on
        # a side yet: judged on slowed-down rounds alone, a real regression would often fail to confirm.
        while confirmed < plan.confirm_pairs or (confirmed < 2 * plan.confirm_pairs and _lacks_fast(runner, confirm, flagged)):
            got = runner.pair(flagged + anchors, "confirm", f"confirmation round {confirmed + 1} "
                              f"({plural(len(flagged), 'flagged stage')})")
            if set(got) != {BASE, HEAD}:
                break  # a side could not re-select its stages: confirm on what both sides measured
            for side, records in got.items():
                confirm[side].rounds.append(records)
            confirmed += 1
    return WalltimeRun(sides=runner.sides, rounds=dict(runner.counts), extra_pairs=extra, confirm_pairs=confirmed,
                       seconds=time.monotonic() - started, confirm=confirm, unselectable=dict(runner.unselectable))


def _lacks_fast(runner: _Runner, confirm: dict[str, SideRounds], flagged: list[str]) -> bool:
    ref = runner.reference()
    if ref is None:
        return False
    for side in confirm.values():
        fast = {r.name for one in side.rounds for r in one if speedgate.at_full_speed(r, ref)}
        if not fast.issuperset(flagged):
            return True
    return False


def _anchors(stages: list[StageComparison], chosen: list[str], count: int = 6) -> list[str]:
    """Steady unchanged stages measured along with a subset, so its rounds can be normalised too."""
    steady = sorted((s for s in stages if s.verdict == UNCHANGED and s.name not in chosen and s.base and s.base.rel_stddev is not None),
                    key=lambda s: s.base.rel_stddev)
    return [s.name for s in steady[:count]]
