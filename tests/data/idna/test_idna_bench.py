"""Benchmarks of the idna package; 3.7 fixed slow processing of crafted inputs (CVE-2024-3651)."""
import idna
import pytest


def _quiet(fn, *args):
    try:
        return fn(*args)
    except idna.IDNAError:
        return None


def test_encode_ascii(benchmark):
    benchmark(idna.encode, "www.example.com")


def test_encode_unicode(benchmark):
    benchmark(idna.encode, "ドメイン.テスト")


def test_decode_punycode(benchmark):
    benchmark(idna.decode, "xn--eckwd4c7c.xn--zckzah")


def test_uts46_remap(benchmark):
    benchmark(idna.encode, "Königsgäßchen.de", uts46=True)


@pytest.mark.parametrize("joiner", ["\u200c", "\u200d"])
def test_crafted_joiners(benchmark, joiner):
    benchmark(_quiet, idna.encode, "\u0628" + joiner * 3000)


def test_crafted_arabic_digits(benchmark):
    benchmark.pedantic(_quiet, args=(idna.encode, "\u0660" * 400), rounds=20, iterations=1)
