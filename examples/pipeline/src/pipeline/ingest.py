"""Ingest: split raw CSV text into rows of fields."""


def ingest(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(","))
    return rows
