"""Parse: turn rows of strings into typed records."""


def parse(rows: list[list[str]]) -> list[dict]:
    records = []
    for city, day, temp, rain in rows:
        records.append({"city": city.strip(), "day": int(day), "temp": float(temp), "rain": float(rain)})
    return records
