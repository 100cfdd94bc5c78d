"""`bolt run` judges once and writes results.json once, after the regressed stages were profiled."""

from __future__ import annotations

import json
from pathlib import Path

from bolt_bot import pipeline
from bolt_bot.measure.plan import Measured
from bolt_bot.measure.sides import SideRounds
from bolt_bot.measure.walltime import WalltimePlan, WalltimeRun
from bolt_bot.model import BenchmarkRound, CommitRef, Results
from bolt_bot.profiling.regressions import StageProfile
from bolt_bot.settings import Settings
from tests.test_reliability import _fake_env, _tiny_repo


def _rounds(seconds: float) -> SideRounds:
    return SideRounds(rounds=[[BenchmarkRound(name="t::x", median=seconds, mean=seconds, min=seconds, max=seconds,
                                              samples=5)] for _ in range(4)])


def test_results_json_is_written_once_after_the_profiles(tmp_path, monkeypatch):
    repo, sha = _tiny_repo(tmp_path)
    _fake_env(monkeypatch)
    measured_run = WalltimeRun(sides={"base": _rounds(0.010), "head": _rounds(0.012)}, rounds={"base": 4, "head": 4})
    seen = []

    def measure(settings, setups, out, progress, *, judge):
        return Measured(walltime=measured_run, wall_plan=WalltimePlan())

    def profile(names, setups, folder, settings, progress):
        seen.append(("profiled", names))
        return {name: StageProfile(note="no function grew") for name in names}

    real_write = Results.write

    def write(self, path):
        seen.append(("written", Path(path).name, [(s.verdict, s.profile_note) for s in self.stages]))
        real_write(self, path)

    monkeypatch.setattr(pipeline.measuring, "measure", measure)
    monkeypatch.setattr(pipeline, "profile_stages", profile)
    monkeypatch.setattr(Results, "write", write)
    plan = pipeline.Plan(repo, CommitRef("main", sha), CommitRef("head", sha), Settings(measure="walltime"))
    results = pipeline.execute(plan, tmp_path / "out")
    assert seen == [("profiled", ["t::x"]), ("written", "results.json", [("regressed", "no function grew")])]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["stages"][0]["profile_note"] == "no function grew"
    assert results.stages[0].profile_note == "no function grew"
