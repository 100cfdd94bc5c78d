"""Per-PR records → the detection table (markdown), in the layout of docs/measurement-facts.md.

A record (one JSON line of the raw file) is one PR judged by every rule under one condition:
    {"kind": "pr", "condition": "quiet"|"hog", "pr": 3, "size": 5, "injected": [...], "stages": [...],
     "plain_seconds": 11.2, "rules": {"naive": RuleOutcome.to_dict(), "bolt": ..., ...}}
A rule that could not run on a PR has {"error": "..."} instead of an outcome. Records of the single-shot suite
("suite": "single-shot") get their own columns, so one table can show both suites.
"""

from __future__ import annotations

import gzip
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

CONDITIONS = {"quiet": "quiet", "hog": "CPU hog on the other core",
              "quiet-single-shot": "quiet, single-shot µs stages", "hog-single-shot": "CPU hog, single-shot µs stages"}
# Rows in this order; a rule without records still gets its row (the instruction-count mode's place).
RULE_ORDER = ("naive", "bolt", "paired", "instructions")
RULE_LABELS = {
    "naive": "one run each, pytest-benchmark `--benchmark-compare-fail=median:5%`",
    "bolt": "Bolt, wall time, rounds (interleaved rounds, extra rounds, confirmation)",
    "paired": "Bolt, wall time, paired (base and head on one CPU, alternating blocks, K process pairs)",
    "instructions": "Bolt, instruction counts (callgrind)",
}


def column(rec: dict) -> str:
    """The table column of a record: its condition, and the suite when it is the single-shot one."""
    return rec["condition"] + ("-single-shot" if rec.get("suite") == "single-shot" else "")
# The targets, as (row label, false alarms per stage, PRs with any, detection per size, time vs one plain run).
# Wall time (both timing rules): ≤ 1 % / ≤ 5 % / –·≥ 90·≥ 99 / ≤ 3x. Instruction counts: every change of 2 % or more
# found, no false alarm at all, in at most 2x one plain run.
TARGETS = (
    ("target", "≤ 1 %", "≤ 5 %", lambda size: {5.0: "≥ 90", 10.0: "≥ 99"}.get(size, "–"), "≤ 3x"),
    ("target, instruction counts", "0 %", "0 %", lambda size: "100" if size >= 2 else "–", "≤ 2x"),
)


def target_cell(target: tuple, sizes: list[float]) -> str:
    _, stage, pr, detect, time = target
    return f"{stage} / {pr} / {'·'.join(detect(s) for s in sizes)} / {time}"


TARGET = target_cell(TARGETS[0], [2.0, 5.0, 10.0])  # the wall-time target at the default sizes


@dataclass
class Summary:
    prs: int = 0
    errors: int = 0
    fa_stage: list[int] = field(default_factory=lambda: [0, 0])  # [flagged, unchanged stages seen]
    fa_pr: list[int] = field(default_factory=lambda: [0, 0])  # [PRs with any, unchanged PRs]
    fa_pr_any: list[int] = field(default_factory=lambda: [0, 0])  # over all PRs, counting their unchanged stages
    detected: dict[float, list[int]] = field(default_factory=dict)  # size → [flagged, injected stages]
    improved: int = 0  # stages called faster (nothing was made faster)
    inconclusive: list[int] = field(default_factory=lambda: [0, 0])  # [among unchanged, among injected] stages
    covered: list[int] = field(default_factory=lambda: [0, 0])  # [interval holds 1 + size/100, injected stages with one]
    time_ratios: list[float] = field(default_factory=list)  # rule seconds / one plain run, per PR
    plain_seconds: list[float] = field(default_factory=list)


def read_raw(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    metas, prs = [], []
    for path in paths:
        # Recorded runs are kept gzipped in benchmarks/results (a paired run's blocks are ~1.5 MB of JSON).
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        for line in text.splitlines():
            if line.strip():
                rec = json.loads(line)
                (prs if rec.get("kind") == "pr" else metas).append(rec)
    return metas, prs


def summarize(records: list[dict]) -> dict[tuple[str, str], Summary]:
    out: dict[tuple[str, str], Summary] = {}
    for rec in records:
        injected, stages = set(rec["injected"]), rec["stages"]
        unchanged = [s for s in stages if s not in injected]
        for rule, outcome in rec["rules"].items():
            summary = out.setdefault((rule, column(rec)), Summary())
            summary.prs += 1
            if "error" in outcome:
                summary.errors += 1
                continue
            flagged = set(outcome["flagged"])
            false = len(flagged & set(unchanged))
            summary.fa_stage[0] += false
            summary.fa_stage[1] += len(unchanged)
            summary.fa_pr_any[0] += bool(false)
            summary.fa_pr_any[1] += 1
            if not injected:
                summary.fa_pr[0] += bool(false)
                summary.fa_pr[1] += 1
            else:
                hit = summary.detected.setdefault(float(rec["size"]), [0, 0])
                hit[0] += len(flagged & injected)
                hit[1] += len(injected)
            summary.improved += len(outcome.get("improved", []))
            unclear = {s for s, v in outcome.get("verdicts", {}).items() if v == "inconclusive"}
            summary.inconclusive[0] += len(unclear - injected)
            summary.inconclusive[1] += len(unclear & injected)
            for stage in injected:
                interval = (outcome.get("intervals") or {}).get(stage)
                if interval and None not in interval:
                    summary.covered[0] += interval[0] <= 1 + rec["size"] / 100 <= interval[1]
                    summary.covered[1] += 1
            if rec.get("plain_seconds"):
                summary.time_ratios.append(outcome["seconds"] / rec["plain_seconds"])
                summary.plain_seconds.append(rec["plain_seconds"])
    return out


def _pct(pair: list[int]) -> str:
    return f"{100 * pair[0] / pair[1]:.0f} %" if pair[1] else "–"


def _bare(pair: list[int] | None) -> str:
    return f"{100 * pair[0] / pair[1]:.0f}" if pair and pair[1] else "–"


def _count(pair: list[int] | None) -> str:
    return f"{pair[0]}/{pair[1]}" if pair and pair[1] else "–"


def _cell(summary: Summary | None, sizes: list[float]) -> str:
    if summary is None or not (summary.prs - summary.errors):
        return "not measured" if summary is None else f"failed ({summary.errors} PRs)"
    detected = "·".join(_bare(summary.detected.get(s)) for s in sizes)
    time = f"{statistics.median(summary.time_ratios):.1f}x" if summary.time_ratios else "–"
    return f"{_pct(summary.fa_stage)} / {_pct(summary.fa_pr)} / {detected} / {time}"


def _unclear_cell(summary: Summary | None) -> str:
    if summary is None or not (summary.prs - summary.errors):
        return "not measured" if summary is None else f"failed ({summary.errors} PRs)"
    unchanged = [summary.inconclusive[0], summary.fa_stage[1]]
    return f"{_pct(unchanged)} / {_pct(summary.covered)}"


def render(records: list[dict], metas: list[dict] = (), title: str = "Detection quality") -> str:
    summaries = summarize(records)
    conditions = [c for c in CONDITIONS if any(cond == c for _, cond in summaries)] or ["quiet", "hog"]
    sizes = sorted({float(r["size"]) for r in records if r["size"]} or {2.0, 5.0, 10.0})
    rules = list(RULE_ORDER) + sorted({rule for rule, _ in summaries} - set(RULE_ORDER))
    size_text = "·".join(f"{s:g}" for s in sizes)
    lines = [f"## {title}", "",
             (f"Cells: false alarms per unchanged stage / unchanged ({_zero_label(records)}) PRs with any false alarm / "
              f"detected at {size_text} % / wall time vs one plain pytest-benchmark run (median over PRs)."), "",
             "| rule | " + " | ".join(CONDITIONS[c] for c in conditions) + " |",
             "|---" * (len(conditions) + 1) + "|"]
    lines += [f"| {t[0]} | " + " | ".join(target_cell(t, sizes) for _ in conditions) + " |" for t in TARGETS]
    for rule in rules:
        lines.append(f"| {RULE_LABELS.get(rule, rule)} | " + " | ".join(_cell(summaries.get((rule, c)), sizes) for c in conditions) + " |")
    lines += ["", ("Issue 15's other wall-time targets: unchanged stages called `inconclusive` (≤ 10 %) / injected "
                   "stages whose 95 % interval holds the injected ratio 1 + size (≥ 90 %)."), "",
              "| rule | " + " | ".join(CONDITIONS[c] for c in conditions) + " |", "|---" * (len(conditions) + 1) + "|",
              "| target | " + " | ".join("≤ 10 % / ≥ 90 %" for _ in conditions) + " |"]
    for rule in ("bolt", "paired", *[r for r in rules if r not in ("naive", "bolt", "paired", "instructions")]):
        lines.append(f"| {RULE_LABELS.get(rule, rule)} | " + " | ".join(_unclear_cell(summaries.get((rule, c))) for c in conditions) + " |")
    lines += ["", "### Counts", "",
              "| rule | condition | PRs | false alarms (unchanged stages) | unchanged PRs with a false alarm "
              "| any PR with a false alarm among its unchanged stages | "
              + " | ".join(f"detected at {s:g} %" for s in sizes)
              + " | \"improved\" calls | inconclusive: unchanged / injected stages | 95 % interval holds the injected ratio "
              "| time vs one plain run: median (min–max) | one plain run: median |",
              "|---" * (11 + len(sizes)) + "|"]
    for rule in rules:
        for cond in conditions:
            s = summaries.get((rule, cond))
            if s is None:
                continue
            times = (f"{statistics.median(s.time_ratios):.2f}x ({min(s.time_ratios):.2f}–{max(s.time_ratios):.2f})"
                     if s.time_ratios else "–")
            plain = f"{statistics.median(s.plain_seconds):.1f} s" if s.plain_seconds else "–"
            errors = f" ({s.errors} failed)" if s.errors else ""
            lines.append(f"| {rule} | {cond} | {s.prs}{errors} | {_count(s.fa_stage)} | {_count(s.fa_pr)} | {_count(s.fa_pr_any)} | "
                         + " | ".join(_count(s.detected.get(z)) for z in sizes) + f" | {s.improved} | {s.inconclusive[0]} / {s.inconclusive[1]} | {_count(s.covered)} | {times} | {plain} |")
    injection = _injection_table(metas, sizes)
    if injection:
        heading = ("### Injected slowdowns as measured (one process, GC off, interleaved calls; instructions: "
                   "one callgrind call each, one process per size)")
        lines += ["", heading, "", *injection]
    return "\n".join(lines) + "\n"


def _zero_label(records: list[dict]) -> str:
    zero = [r for r in records if not r["size"]]
    return f"{len(zero) // max(1, len({column(r) for r in zero}))} per column" if zero else "none"


def _injection_table(metas: list[dict], sizes: list[float]) -> list[str]:
    checks = [m["injection"] for m in metas if m.get("injection")]
    if not checks:
        return []
    check = checks[0]
    keys = [f"{s:g}" for s in sizes]
    counted = any(r.get("ratio_instr") for r in check.values())
    what = "fastest / median" + (" / instructions" if counted else "")
    rows = ["| stage | per call | " + ("instructions per call | " if counted else "")
            + " | ".join(f"+{k} %: {what}" for k in keys) + " |",
            "|---" * (2 + counted + len(keys)) + "|"]
    for name, r in check.items():
        cells = []
        for k in keys:
            lo, mid = r.get("ratio_min", {}).get(k), r.get("ratio_median", {}).get(k)
            cell = f"{lo:.3f} / {mid:.3f}" if lo is not None else "–"
            if counted:
                instr = (r.get("ratio_instr") or {}).get(k)
                # Below the nominal size: the stage has fixed costs next to its units (flagged, it matters at 2 %).
                cell += " / " + ("–" if instr is None else f"{instr:.4f}" + (" (< nominal)" if instr < 1 + float(k) / 100 else ""))
            cells.append(cell)
        per_call = _duration(r["base_seconds"]) if "base_seconds" in r else "–"
        instructions = (f"{r['instructions'] / 1e6:.2f} M | " if r.get("instructions") else "– | ") if counted else ""
        rows.append(f"| {name} | {per_call} | {instructions}" + " | ".join(cells) + " |")
    return rows


def _duration(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.1f} ms"
