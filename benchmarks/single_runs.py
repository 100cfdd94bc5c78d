"""Bolt's single-run rule (one pytest process per side) replayed on recorded data: false alarms and detection.

Two sources, both recorded on this project's 2 vCPU KVM machine:

* benchmarks/results/detection*.jsonl(.gz): for every PR of the detection harness, the naive rule's per-stage
  head/base ratios, which are exactly one plain pytest-benchmark process per side. Unchanged PRs (size 0) and
  the stages a PR did not slow down are unchanged stages. These files hold ratios only, so the rule runs
  without the stages' quartiles (its within-run term cannot widen the floor here: the figures are, if anything,
  pessimistic on false alarms and optimistic on detection).
* tests/data/single-runs/: 40 plain `pytest --benchmark-only --benchmark-json` files of the unchanged detection
  suite, read as `bolt compare` reads them, in 20 consecutive pairs and in every one of the 780 pairs, plus
  three files of a variant with one stage (cpu_float) made 35 % slower, each against every unchanged file;
  and two files per side, drawn at random.

A 30 % change is also put into the recorded ratios (each unchanged stage's ratio times 1.3 and times 1.5, one
stage at a time): detection on top of the recorded noise.

    python benchmarks/single_runs.py            # writes benchmarks/results/single-runs.md
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import warnings
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bolt_bot.decide.benchjson import read_round  # noqa: E402
from bolt_bot.decide.compare import compare_sides  # noqa: E402
from bolt_bot.decide.single import MIN_SAMPLES, RANGE_FACTOR, SINGLE_RUN_FLOOR, SPREAD_FACTOR  # noqa: E402
from bolt_bot.measure.sides import SideRounds  # noqa: E402
from bolt_bot.model import IMPROVED, REGRESSED, BenchmarkRound  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PAIRS = ROOT / "tests" / "data" / "single-runs"
THRESHOLD = 3.0  # bolt compare's default --threshold, percent
TWO_ROUND_DRAWS = 300
PLAIN_SAMPLES = 100  # any count ≥ MIN_SAMPLES: a default pytest-benchmark run times each stage many times


def _lines(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        for line in handle:
            yield json.loads(line)


def naive_prs() -> list[dict]:
    """Every recorded PR's naive ratios: {file, condition, suite, size, injected, ratios, seconds}."""
    prs = []
    for path in sorted(RESULTS.glob("detection*.jsonl*")):
        meta: dict = {}
        for block in _lines(path):
            if block["kind"] == "meta":
                meta = block
                continue
            naive = block["rules"].get("naive")
            if not naive:
                continue
            seconds = {name: info.get("base_seconds", 1e-3) for name, info in meta.get("injection", {}).items()}
            prs.append({"file": path.name.split(".")[0], "condition": block["condition"],
                        "suite": block.get("suite", "standard"), "size": block["size"], "injected": set(block["injected"]),
                        "ratios": {s: r for s, r in naive["ratios"].items() if r}, "seconds": seconds})
    return prs


def verdicts(ratios: dict[str, float], seconds: dict[str, float], samples: int) -> dict[str, str]:
    """Bolt's verdicts for one base and one head process whose stages' medians differ by `ratios`."""
    base = [BenchmarkRound(name=s, median=seconds.get(s, 1e-3), samples=samples) for s in ratios]
    head = [BenchmarkRound(name=s, median=seconds.get(s, 1e-3) * r, samples=samples) for s, r in ratios.items()]
    stages = compare_sides(SideRounds([base]), SideRounds([head]), threshold=THRESHOLD)
    return {s.name: s.verdict for s in stages}


def replay_naive(prs: list[dict]) -> dict:
    """Per (file, condition, suite): false alarms, detections by size, and detection of a put-in 30/50 %."""
    rows: dict[tuple, Counter] = defaultdict(Counter)
    for pr in prs:
        key = (pr["file"], pr["condition"], pr["suite"])
        samples = 1 if pr["suite"] == "single-shot" else PLAIN_SAMPLES
        row = rows[key]
        got = verdicts(pr["ratios"], pr["seconds"], samples)
        for stage, verdict in got.items():
            if stage in pr["injected"]:
                row[f"n{pr['size']:g}"] += 1
                row[f"hit{pr['size']:g}"] += verdict == REGRESSED
            else:
                row["unchanged"] += 1
                row["alarms"] += verdict in (REGRESSED, IMPROVED)
                row["naive"] += pr["ratios"][stage] > 1.05
        for factor in (1.3, 1.5):
            for stage in pr["ratios"]:
                if stage in pr["injected"]:
                    continue
                moved = dict(pr["ratios"], **{stage: pr["ratios"][stage] * factor})
                row[f"n{factor}"] += 1
                row[f"hit{factor}"] += verdicts(moved, pr["seconds"], samples)[stage] == REGRESSED
    return rows


def files() -> tuple[list[Path], list[Path]]:
    return sorted(PAIRS.glob("run-*.json")), sorted(PAIRS.glob("slowed-*.json"))


def compare_files(base: Path, head: Path) -> dict[str, str]:
    stages = compare_sides(SideRounds([read_round(base)]), SideRounds([read_round(head)]), threshold=THRESHOLD)
    return {s.name.rsplit("[", 1)[-1].rstrip("]"): s.verdict for s in stages}


def replay_files() -> dict:
    runs, slowed = files()
    out: dict = {"runs": len(runs), "slowed": len(slowed)}
    loaded = {}

    def verdicts_of(a: Path, b: Path) -> dict[str, str]:
        if (a, b) not in loaded:
            loaded[(a, b)] = compare_files(a, b)
        return loaded[(a, b)]

    consecutive = [(runs[i], runs[i + 1]) for i in range(0, len(runs) - 1, 2)]
    for label, pairs in (("consecutive", consecutive), ("every", list(itertools.combinations(runs, 2)))):
        count = Counter()
        for a, b in pairs:
            got = verdicts_of(a, b)
            count["pairs"] += 1
            count["stages"] += len(got)
            alarms = [s for s, v in got.items() if v in (REGRESSED, IMPROVED)]
            count["alarms"] += len(alarms)
            count["pairs_with_alarm"] += bool(alarms)
            count.update(f"alarm:{s}" for s in alarms)
        out[label] = count
    found = Counter()
    for slow, run in itertools.product(slowed, runs):
        got = verdicts_of(run, slow)
        found["pairs"] += 1
        found["hit"] += got.get("cpu_float") == REGRESSED
        found["others"] += sum(v in (REGRESSED, IMPROVED) for s, v in got.items() if s != "cpu_float")
    out["slowed_found"] = found
    # Two files per side, drawn at random (seeded): the same floor decides (too few rounds to test).
    rng, two, read = random.Random(18), Counter(), {p: read_round(p) for p in [*runs, *slowed]}
    for _ in range(TWO_ROUND_DRAWS if len(runs) >= 4 else 0):
        a, b, c, d = rng.sample(runs, 4)
        got = compare_sides(SideRounds([read[a], read[b]]), SideRounds([read[c], read[d]]), threshold=THRESHOLD)
        two["stages"] += len(got)
        two["alarms"] += sum(s.verdict in (REGRESSED, IMPROVED) for s in got)
        if len(slowed) >= 2:
            e, f = rng.sample(slowed, 2)
            hit = compare_sides(SideRounds([read[a], read[b]]), SideRounds([read[e], read[f]]), threshold=THRESHOLD)
            two["slowed"] += 1
            two["hit"] += any(s.name.endswith("[cpu_float]") and s.verdict == REGRESSED for s in hit)
    out["two"] = two
    return out


def pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.1f} %)" if b else "–"


def render(rows: dict, filed: dict) -> str:
    lines = [
        "## Single runs: one pytest-benchmark process per side",
        "",
        "Written by `python benchmarks/single_runs.py`. Bolt's single-run rule (bolt_bot/decide/single.py, "
        "docs/measurement.md \"Single runs\"): a stage is regressed or improved only past the widest of "
        f"{SINGLE_RUN_FLOOR * 100:g} %, {RANGE_FACTOR:g}× how widely its calls spread inside a process (q3/q1 or "
        f"median/min, log scale, shorter stages of the same process counted), and {SPREAD_FACTOR:g}× the robust "
        f"spread of the steady stages' changes; stages timed fewer than {MIN_SAMPLES} times in a process are always "
        f"inconclusive. `--threshold {THRESHOLD:g}` (the default).",
        "",
        "### Recorded naive runs (benchmarks/results/detection*.jsonl*)",
        "",
        "Ratios only (no quartiles), so the within-process term is not applied here. `detection.jsonl` was recorded "
        "on a day of the VM's slow phases (benchmarks/README.md), the `-paired*` and `-single*` files on days without.",
        "",
        "| file | condition | suite | false alarms (unchanged stages) | naive rule's false alarms (> +5 %) "
        "| detected at 2 / 5 / 10 % | +30 % put in | +50 % put in |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total = Counter()
    for (file, condition, suite), row in sorted(rows.items()):
        total.update(row)
        sizes = " / ".join(f"{row[f'hit{s}']}/{row[f'n{s}']}" if row[f"n{s}"] else "–" for s in ("2", "5", "10"))
        lines.append(f"| {file} | {condition} | {suite} | {pct(row['alarms'], row['unchanged'])} | "
                     f"{pct(row['naive'], row['unchanged'])} | {sizes} | {pct(row['hit1.3'], row['n1.3'])} | "
                     f"{pct(row['hit1.5'], row['n1.5'])} |")
    sizes = " / ".join(f"{total[f'hit{s}']}/{total[f'n{s}']}" for s in ("2", "5", "10"))
    lines.append(f"| **all** | | | **{pct(total['alarms'], total['unchanged'])}** | {pct(total['naive'], total['unchanged'])} "
                 f"| {sizes} | {pct(total['hit1.3'], total['n1.3'])} | {pct(total['hit1.5'], total['n1.5'])} |")
    calm = Counter()
    for (file, _, suite), row in rows.items():
        if file != "detection" and suite == "standard":
            calm.update(row)
    lines += ["", f"Standard suite on days without slow phases: false alarms {pct(calm['alarms'], calm['unchanged'])}; "
              f"on the slow-phase day (`detection.jsonl`): "
              f"{pct(sum(r['alarms'] for k, r in rows.items() if k[0] == 'detection'), sum(r['unchanged'] for k, r in rows.items() if k[0] == 'detection'))}.",
              ""]
    if filed.get("runs"):
        lines += ["### Recorded JSON files (tests/data/single-runs/), read as `bolt compare` reads them", "",
                  "| pairs | stage comparisons | regressed or improved | pairs with any | which stages |", "|---|---|---|---|---|"]
        for label in ("consecutive", "every"):
            c = filed[label]
            which = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in sorted(c.items()) if k.startswith("alarm:")) or "none"
            lines.append(f"| {c['pairs']} ({label}) | {c['stages']} | {pct(c['alarms'], c['stages'])} | "
                         f"{pct(c['pairs_with_alarm'], c['pairs'])} | {which} |")
        f = filed["slowed_found"]
        lines += ["", f"cpu_float made 35 % slower (weight 1.35; {filed['slowed']} recorded files, each against each of "
                  f"the {filed['runs']} unchanged ones): regressed in {pct(f['hit'], f['pairs'])}; other stages called "
                  f"changed in those pairs: {f['others']}.", ""]
        t = filed["two"]
        lines += [f"Two files per side ({TWO_ROUND_DRAWS} random draws of 2 + 2 unchanged files, seeded): unchanged stages "
                  f"called changed {pct(t['alarms'], t['stages'])}; two slowed files against two unchanged ones: cpu_float "
                  f"regressed in {pct(t['hit'], t['slowed'])}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "single-runs.md")
    args = parser.parse_args(argv)
    # scipy warns on two rounds that agree to the last digits (the Welch variance is then tiny): harmless here.
    warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
    text = render(replay_naive(naive_prs()), replay_files())
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
