"""What one side measured by wall time: its rounds (each a list of records), failed stages, a whole-suite error."""

from __future__ import annotations

from dataclasses import dataclass, field

from bolt_bot.model import BenchmarkRound

BASE, HEAD = "base", "head"


@dataclass
class SideRounds:
    """Everything one side measured: its rounds, and the stages that failed (name → error excerpt)."""

    rounds: list[list[BenchmarkRound]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # the whole suite failed on this side: its missing stages are failed, not added/removed

    def medians(self) -> list[dict[str, float]]:
        """Each round as {stage: median}."""
        return [{r.name: r.median for r in one_round} for one_round in self.rounds]

    def by_stage(self) -> dict[str, list[BenchmarkRound]]:
        stages: dict[str, list[BenchmarkRound]] = {}
        for one_round in self.rounds:
            for record in one_round:
                stages.setdefault(record.name, []).append(record)
        return stages


def columns(rounds: list[dict[str, float]]) -> dict[str, list[float]]:
    """{stage: [value per round it appears in]} from rounds as {stage: value}."""
    out: dict[str, list[float]] = {}
    for one in rounds:
        for name, value in one.items():
            out.setdefault(name, []).append(value)
    return out
