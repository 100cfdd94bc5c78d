"""Encode: the aggregated statistics as JSON."""

import json


def encode(stats: dict[str, dict]) -> str:
    return json.dumps(stats, sort_keys=True)
