"""One benchmark per pipeline stage, each on the output of the stage before it."""

from pipeline.aggregate import aggregate
from pipeline.encode import encode
from pipeline.ingest import ingest
from pipeline.parse import parse
from pipeline.render import render


def test_ingest(benchmark, raw_text):
    benchmark(ingest, raw_text)


def test_parse(benchmark, raw_text):
    benchmark(parse, ingest(raw_text))


def test_aggregate(benchmark, raw_text):
    benchmark(aggregate, parse(ingest(raw_text)))


def test_render(benchmark, raw_text):
    stats = aggregate(parse(ingest(raw_text)))
    benchmark(render, stats)


def test_encode(benchmark, raw_text):
    stats = aggregate(parse(ingest(raw_text)))
    benchmark(encode, stats)
