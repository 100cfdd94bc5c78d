"""Shared input: a deterministic weather data set."""

import random

import pytest


@pytest.fixture(scope="session")
def raw_text() -> str:
    rng = random.Random(42)
    cities = [f"city{i:03d}" for i in range(400)]
    lines = ["# city,day,temp,rain"]
    for day in range(12):
        for city in cities:
            lines.append(f"{city},{day},{rng.uniform(-10, 35):.2f},{rng.uniform(0, 20):.1f}")
    return "\n".join(lines)
