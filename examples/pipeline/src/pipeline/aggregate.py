"""Aggregate: statistics per city."""


def aggregate(records: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for rec in records:
        acc = out.setdefault(rec["city"], {"n": 0, "temp": 0.0, "rain": 0.0, "max": float("-inf")})
        acc["n"] += 1
        acc["temp"] += rec["temp"]
        acc["rain"] += rec["rain"]
        acc["max"] = max(acc["max"], rec["temp"])
    for acc in out.values():
        acc["mean"] = acc["temp"] / acc["n"]
    return out
