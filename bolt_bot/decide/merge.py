"""`bolt merge`: the results directories of one run's shards, checked against each other and decided once.

Each shard (`bolt run --shard K/N`) measured base and head of its share of the stages and decided them
with false-discovery control over its share only. The merge checks that the shards measured the same
commits with the same settings and Bolt, and that their shares cover the stage list exactly; then it
takes the Benjamini-Hochberg q-values again over every wall-time stage of the suite and decides each stage
once more with them. Instruction-count verdicts do not depend on q and stand as measured.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bolt_bot import __version__
from bolt_bot.decide import stats
from bolt_bot.decide.compare import build_results
from bolt_bot.errors import BoltError
from bolt_bot.model import FAILED, IMPROVED, INCONCLUSIVE, REGRESSED, WALLTIME, Results, SideSummary, StageComparison
from bolt_bot.report import output

MIXED = "mixed"


@dataclass
class Shard:
    """One shard's results directory and what it recorded of the partition."""

    path: Path
    results: Results
    index: int
    count: int
    stages: list[str]
    share: list[str]
    version: str

    @property
    def label(self) -> str:
        return f"shard {self.index}/{self.count} ({self.path})"


def read_shard(path: Path) -> Shard:
    """A shard's results directory; one BoltError line for anything that is not one."""
    path = Path(path)
    if not (path / "results.json").is_file():
        raise BoltError(f"{path}: no results.json here (a shard is the --out directory of bolt run --shard K/N)")
    results = Results.read(path / "results.json")
    record = results.environment.get("shard")
    if not isinstance(record, dict):
        raise BoltError(f"{path}: these results were not measured with --shard, so they cannot be merged")
    index, count, stages, partition = (record.get(k) for k in ("index", "count", "stages", "partition"))
    if (not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count)) or not 1 <= index <= count
            or not _names(stages) or not isinstance(partition, list) or len(partition) != count
            or not all(_names(share) for share in partition)):
        raise BoltError(f"{path}: results.json's environment.shard is malformed")
    return Shard(path, results, index, count, stages, partition[index - 1], str(record.get("bolt_version")))


def _names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) for n in value)


def check_shards(shards: list[Shard]) -> None:
    """The shards belong together and cover the partition exactly; else one BoltError line saying how not."""
    first = shards[0]
    for shard in shards:
        for side in ("base", "head"):
            mine, theirs = getattr(shard.results, side).sha, getattr(first.results, side).sha
            if mine != theirs:
                raise BoltError(f"{shard.label} measured {side} commit {str(mine)[:7]}, but {first.label} measured "
                                f"{str(theirs)[:7]}: shards of different commits cannot be merged")
        if shard.version != __version__:
            raise BoltError(f"{shard.label} was measured by Bolt {shard.version}, this is Bolt {__version__}: "
                            "measure and merge with the same Bolt")
        if shard.results.settings != first.results.settings:
            key = next(k for k in sorted(set(shard.results.settings) | set(first.results.settings))
                       if shard.results.settings.get(k) != first.results.settings.get(k))
            raise BoltError(f"{shard.label} was measured with {key} = {shard.results.settings.get(key)!r}, but "
                            f"{first.label} with {first.results.settings.get(key)!r}: shards must share their settings")
        if shard.count != first.count:
            raise BoltError(f"{shard.label} is one of {shard.count} shards, but {first.label} one of {first.count}")
        if shard.stages != first.stages:
            raise BoltError(f"{shard.label} and {first.label} collected different stage lists "
                            f"({len(shard.stages)} and {len(first.stages)} stages): they cannot be merged")
    by_index: dict[int, Shard] = {}
    for shard in shards:
        if shard.index in by_index:
            raise BoltError(f"shard {shard.index}/{shard.count} was given twice ({by_index[shard.index].path} and "
                            f"{shard.path}): two shards overlap")
        by_index[shard.index] = shard
    missing = [k for k in range(1, first.count + 1) if k not in by_index]
    if missing:
        got = ", ".join(f"{k}/{first.count}" for k in sorted(by_index))
        raise BoltError(f"shard {missing[0]}/{first.count} is missing (got {got}): its stages would go unmeasured")
    owner: dict[str, Shard] = {}
    for shard in shards:
        for name in shard.share:
            if name in owner:
                raise BoltError(f"shards {owner[name].index}/{first.count} and {shard.index}/{first.count} both measured "
                                f"{name}: their partitions differ (timings differed between machines; give every "
                                "shard the same --durations)")
            owner[name] = shard
        share = set(shard.share)  # a list lookup per stage took 0.1 s for 10,000 stages
        outside = next((s.name for s in shard.results.stages if s.name not in share), None)
        if outside is not None:
            raise BoltError(f"{shard.label} holds {outside}, which is not in its share of the partition")
    left = next((name for name in first.stages if name not in owner), None)
    if left is not None:
        raise BoltError(f"{left} is in no shard's share: the shards' partitions differ (timings differed between "
                        "machines; give every shard the same --durations)")


def unmeasured(shard: Shard) -> list[StageComparison]:
    """The stages of a failed shard's share that it has no result for: failed, saying so."""
    if shard.results.verdict != FAILED:
        return []
    have = {s.name for s in shard.results.stages}
    why = next((n for n in shard.results.notices), None) or "it measured nothing"
    note = f"not measured: shard {shard.index}/{shard.count} failed ({why})"
    return [StageComparison(name=name, verdict=FAILED, note=note, base=SideSummary(error=note),
                            head=SideSummary(error=note)) for name in shard.share if name not in have]


def redecide(stages: list[StageComparison], threshold: float, alpha: float) -> None:
    """Benjamini-Hochberg over every wall-time stage of the suite, and each verdict decided again with it.

    A verdict the suite-wide q leaves as it was keeps what its shard added after deciding (confirmation,
    speed gate, fallbacks). A stage the suite-wide q turns regressed or improved was never measured again
    by its shard to confirm it (that shard did not flag it): inconclusive, saying so."""
    tested = [s for s in stages if s.measure == WALLTIME and s.p is not None and s.q is not None
              and s.ratio is not None and s.ci is not None]
    floor = threshold / 100.0
    for stage, q in zip(tested, stats.adjust_pvalues([s.p for s in tested])):
        estimate = stats.Estimate(stage.ratio, (stage.ci[0], stage.ci[1]), stage.p, stage.low_confidence)
        before = stats.decide(estimate, stage.q, floor, alpha)
        after = stats.decide(estimate, q, floor, alpha)
        shard_q, stage.q = stage.q, q
        if after[0] == before[0]:
            if (stage.verdict, stage.note) == before:
                stage.note = after[1]  # the note may quote q
        elif after[0] in (REGRESSED, IMPROVED):
            stage.verdict = INCONCLUSIVE
            stage.note = (f"{(stage.ratio - 1) * 100:+.1f} %, significant over the whole suite (q = {q:.2g}; "
                          f"{shard_q:.2g} in its shard), but its shard did not flag it, so it was not confirmed")
        else:
            stage.verdict, stage.note = after
            if estimate.low_confidence and stage.note is None:
                stage.note = "one round per side: low confidence"


def merge_results(shards: list[Shard]) -> Results:
    """One Results of the whole suite from checked shards: stages decided once, notices and profiles kept."""
    first = shards[0].results
    shards = sorted(shards, key=lambda s: s.index)
    stages = [s for shard in shards for s in shard.results.stages]
    notices: list[str] = []
    for shard in shards:
        lost = unmeasured(shard)
        if lost:
            shown = ", ".join(s.name for s in lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
            notices.append(f"shard {shard.index}/{shard.count} failed: {len(lost)} stage(s) unmeasured: {shown}")
        stages += lost
        # Each shard's own notice that it measured a part of the suite says nothing of the whole.
        own = shard.results.environment["shard"].get("notice")
        notices += [n for n in shard.results.notices if n not in notices and n != own]
    stages.sort(key=lambda s: s.name)
    settings = first.settings
    redecide(stages, float(settings.get("threshold", 3.0)), float(settings.get("alpha", 0.05)))
    kinds = {s.measure for shard in shards for s in shard.results.stages}
    measure = (MIXED if len(kinds) > 1 else kinds.pop()) if kinds else first.measure
    return build_results(stages, measure=measure, settings=settings, base=first.base, head=first.head,
                         environment=_environment(shards), notices=notices)


def _environment(shards: list[Shard]) -> dict:
    """The first shard's description of the machine, the shards' stage counts added up (discovery, counts, memory),
    the longest shard's duration, and the shards themselves."""
    env = {k: v for k, v in shards[0].results.environment.items() if k not in ("shard", "duration")}
    for key in ("discovery", "instructions", "memory"):
        parts = [s.results.environment.get(key) for s in shards]
        parts = [p for p in parts if isinstance(p, dict)]
        if parts:
            env[key] = _added(parts)
    durations = [s.results.environment.get("duration") for s in shards]
    if all(isinstance(d, (int, float)) for d in durations):
        env["duration"] = max(durations)
    record = shards[0].results.environment["shard"]
    env["shards"] = {"count": len(shards), "durations": record.get("durations"), "stage_list": record.get("stage_list"),
                     "seconds": durations, "partition": record.get("partition")}
    if env.get("runner"):
        env["runner"] = f"{len(shards)} shards, {env['runner']}"
    return env


def _added(parts: list[dict]) -> dict:
    """Dicts of the shards' environments as one: numbers added (seconds too), dicts likewise, anything else the first's."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if key not in out:
                out[key] = dict(value) if isinstance(value, dict) else value
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(out[key], (int, float)):
                out[key] += value
            elif isinstance(value, dict) and isinstance(out[key], dict):
                out[key] = _added([out[key], value])
    return out


def merge_dirs(dirs: list[Path], out: Path) -> Results:
    """Check the shards' results directories, decide once over the whole suite, and write `out` (results.json,
    comment.md, summary.md, the shards' profiles). Raises BoltError (exit 2) before writing anything when the
    shards do not belong together: one missing, one of other commits, settings or Bolt, two that overlap."""
    if not dirs:
        raise BoltError("give the shards' results directories to merge")
    shards = [read_shard(Path(d)) for d in dirs]
    check_shards(shards)
    results = merge_results(shards)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for shard in shards:
        if (shard.path / "profiles").is_dir() and shard.path.resolve() != out.resolve():
            shutil.copytree(shard.path / "profiles", out / "profiles", dirs_exist_ok=True)
    output.write_results_dir(results, out, results.settings.get("template_dir"))
    return results
