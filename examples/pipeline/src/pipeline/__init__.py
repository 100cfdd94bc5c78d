"""A small data pipeline: ingest CSV text, parse rows, aggregate, render a report, encode it."""
