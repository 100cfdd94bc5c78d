"""Verdicts on recorded rounds stay exactly as recorded in tests/data/verdicts/snapshot.json.

A refactoring of the decision layer must not move a single verdict, ratio or interval: this runs `bolt compare`
(the stable interface) on the real rounds kept under tests/data and compares with the snapshot taken before.
Regenerate only on purpose: `python tests/test_verdicts_unchanged.py --write`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bolt_bot.cli import main

DATA = Path(__file__).parent / "data"
SNAPSHOT = DATA / "verdicts" / "snapshot.json"
IDNA = DATA / "idna"
FORMATS = DATA / "formats"


def _idna(side: str, rounds: range) -> list[str]:
    return [str(IDNA / f"{side}-{i}.json") for i in rounds]


CASES = {
    "idna base to head": (_idna("base", range(1, 6)), _idna("head", range(1, 6)), []),
    "idna head to base": (_idna("head", range(1, 6)), _idna("base", range(1, 6)), []),
    "idna threshold 1 %": (_idna("base", range(1, 6)), _idna("head", range(1, 6)), ["--threshold", "1"]),
    "idna threshold 20 %, alpha 0.01": (_idna("base", range(1, 6)), _idna("head", range(1, 6)),
                                        ["--threshold", "20", "--alpha", "0.01"]),
    "idna three rounds": (_idna("base", range(1, 4)), _idna("head", range(1, 4)), []),
    "idna one round (single-run floor)": (_idna("base", range(1, 2)), _idna("head", range(1, 2)), []),
    "idna unchanged (base against base)": (_idna("base", range(1, 4)), _idna("base", range(3, 6)), []),
    "formats 3.4 to 5.x (added and removed)": ([str(FORMATS / "pytest-benchmark-3.4.1.json")],
                                               [str(FORMATS / "pytest-benchmark-5-autosave.json")], []),
}


def _digest(value):
    return None if value is None else round(float(value), 9)


def verdicts(base: list[str], head: list[str], extra: list[str]) -> dict:
    args = ["compare", *[a for f in base for a in ("--base", f)], *[a for f in head for a in ("--head", f)],
            "--format", "json", *extra]
    result = CliRunner().invoke(main, args)
    data = json.loads(result.output[result.output.index("{"):])
    return {"verdict": data["verdict"],
            "stages": {s["name"]: [s["verdict"], _digest(s.get("ratio")), [_digest(x) for x in (s.get("ci") or [])]]
                       for s in data["stages"]}}


def current() -> dict:
    return {name: verdicts(*case) for name, case in CASES.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_verdicts_on_recorded_rounds_are_unchanged(case):
    expected = json.loads(SNAPSHOT.read_text())[case]
    assert verdicts(*CASES[case]) == expected


if __name__ == "__main__" and "--write" in sys.argv:
    SNAPSHOT.write_text(json.dumps(current(), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {SNAPSHOT}")
