"""Property tests on untrusted input: the results reader, the pytest-benchmark reader and the text filter."""

from __future__ import annotations

import copy
import html
import json
import re

import pytest

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bolt_bot.decide import gate
from bolt_bot.decide.benchjson import parse_round, read_round
from bolt_bot.errors import BoltError
from bolt_bot.model import BenchmarkRound, ProfileLine, Results
from bolt_bot.report.render import render_comment, render_summary
from bolt_bot.report.textfilter import JOINER, inert
from tests.test_publish import make_results

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, with the awkward corners: huge integers, -0.0, empty and odd strings, deep-ish nesting.
scalars = (st.none() | st.booleans() | st.integers() | st.just(10**400) | st.just(-1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=15)


def valid_results_doc() -> dict:
    results = make_results("a" * 40)
    results.stages[0].profile = [ProfileLine("pkg/mod.py:1(f)", 1e-4, 2e-4, 1e-4, 1e-4, 2e-4, 1, 2)]
    results.approval = {"user": "maintainer", "sha": "a" * 40, "reason": "worth it"}
    results.notices = ["a notice"]
    return json.loads(json.dumps(results.to_dict()))


VALID_RESULTS = valid_results_doc()
VALID_ROUND = {"benchmarks": [{"name": "t", "fullname": "t.py::t", "group": None, "params": {"n": 1},
                               "extra_info": {}, "stats": {"median": 1e-3, "mean": 1e-3, "min": 1e-3, "max": 2e-3,
                                                           "stddev": 0.0, "rounds": 5, "data": [1e-3] * 5}}]}


def mutate(doc, path: list[int], value):
    """Replace one node of `doc` (reached by choosing children by index, modulo their number) with `value`."""
    doc = copy.deepcopy(doc)
    node = doc
    for i, step in enumerate(path):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = keys[step % len(keys)]
        child = node[key]
        if i == len(path) - 1 or not isinstance(child, (dict, list)) or not child:
            node[key] = value
            return doc
        node = child
    return doc


def near(doc):
    """Documents that are valid but for one to three replaced nodes: they get past the first checks."""
    mutation = st.tuples(st.lists(st.integers(0, 50), min_size=1, max_size=6), json_values)
    return st.lists(mutation, min_size=1, max_size=3).map(
        lambda ms: _apply(doc, ms))


def _apply(doc, mutations):
    for path, value in mutations:
        doc = mutate(doc, path, value)
    return doc


def assert_one_line(error: BoltError) -> None:
    text = str(error)
    assert "\n" not in text and "\r" not in text and 0 < len(text) < 2000, text[:300]


def check_results(data) -> None:
    """Either a one-line BoltError, or a Results that every consumer can use."""
    try:
        results = Results.from_dict(data, "results.json")
    except BoltError as error:
        assert_one_line(error)
        return
    assert isinstance(results, Results)
    json.dumps(results.to_dict(), allow_nan=False)
    for render in (render_comment, render_summary):
        try:
            render(results)
        except BoltError as error:  # e.g. a comment that cannot fit: one line all the same
            assert_one_line(error)
    gate.status_for(results)


@FUZZ
@given(json_values)
@example(VALID_RESULTS)
@example({"schema": "bolt/results/v1", "stages": [], "verdict": "unchanged", "environment": {"duration": "long"}})
@example({"schema": "bolt/results/v1", "stages": [{"name": "x", "verdict": "regressed", "ratio": "fast"}],
          "verdict": "regressed"})
@example({"schema": "bolt/results/v1", "stages": [{"name": "x", "verdict": "regressed", "ratio": 10**400}],
          "verdict": "regressed"})
@example({"schema": "bolt/results/v1", "stages": [{"name": "x", "verdict": "regressed", "ci": [1, 2, 3]}],
          "verdict": "regressed"})
@example({"schema": "bolt/results/v1", "stages": [], "verdict": "regressed", "approval": {"sha": 7}})
def test_results_from_any_json_is_a_results_or_one_line(data):
    check_results(data)


@FUZZ
@given(near(VALID_RESULTS))
def test_results_from_a_damaged_document_is_a_results_or_one_line(data):
    check_results(data)


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
@example(b"[" * 100_000)
@example(b'{"schema": "bolt/results/v1", "stages": [], "verdict": "unchanged", "x": NaN}')
@example(json.dumps(VALID_RESULTS).encode()[:-10])
def test_results_read_of_any_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("r") / "results.json"
    path.write_bytes(raw)
    try:
        assert isinstance(Results.read(path), Results)
    except BoltError as error:
        assert_one_line(error)


def check_round(data) -> None:
    try:
        records = parse_round(data, "round.json")
    except BoltError as error:
        assert_one_line(error)
        return
    assert all(isinstance(r, BenchmarkRound) and isinstance(r.name, str) for r in records)
    assert all(isinstance(getattr(r, k), float) for r in records for k in ("median", "mean", "min", "max", "stddev"))


@FUZZ
@given(json_values | near(VALID_ROUND))
@example(VALID_ROUND)
@example({"benchmarks": [{"name": "x", "stats": {"median": 10**400, "mean": 1, "min": 1, "max": 1}}]})
@example({"benchmarks": [{"name": "x" * 100_000, "stats": {"median": [0] * 10_000}}]})
def test_parse_round_of_any_json(data):
    check_round(data)


def test_read_round_of_deeply_nested_or_huge_json(tmp_path):
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"benchmarks": [' + b"[" * 50_000, b'{"benchmarks": [1e999999]}'):
        path = tmp_path / "round.json"
        path.write_bytes(raw)
        try:
            read_round(path)
        except BoltError as error:
            assert_one_line(error)


# ------------------------------------------------------------------------------------ the text filter

MENTION = re.compile(r"@[A-Za-z0-9]")  # a live mention; "&#64;name" shows an @ but links nobody


@settings(max_examples=400, deadline=None)
@given(st.text() | st.text(alphabet="<>@|`\n\r\u2028\u2029\x85&#[]()!*_~\\$:/. abcw", max_size=200),
       st.integers(0, 400))
@example("<img src=x onerror=alert(1)> @everyone | `rm -rf` [x](http://evil)\n# heading", 200)
@example("@" * 500, 3)
@example("a\u202e<b>\u200b@x", 200)
def test_inert_output_has_no_markup_mention_cell_break_code_or_newline(text, limit):
    out = inert(text, limit)
    for forbidden in ("<", ">", "|", "`", "\n", "\r", "\u2028", "\u2029", "\x85", "@"):
        assert forbidden not in out, (forbidden, out)
    assert not MENTION.search(out)
    assert "](" not in out and "://" not in out
    if limit > 0:
        # the limit counts the visible text: each character is at most one entity of 6 characters
        assert len(out) <= limit * 6


@FUZZ
@given(st.one_of(st.none(), st.integers(), st.floats(), json_values))
def test_inert_takes_any_value(value):
    out = inert(value)
    assert "<" not in out and "|" not in out and "\n" not in out


# GitHub's autolinks, searched the way GitHub does: in the rendered text, where entities are characters again.
AUTOLINKS = {
    "issue": re.compile(r"(?<![\w&])#\d"),
    "gh-number": re.compile(r"(?i)(?<![A-Za-z0-9])GH-\d"),
    "repo-issue": re.compile(r"[\w.-]+/[\w.-]+#\d"),
    "repo-commit": re.compile(r"[\w.-]+/[\w.-]+@[0-9a-f]{7}"),
    "sha": re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{7,40}(?![0-9A-Za-z])"),
    "url": re.compile(r"(?i)(https?|ftp)://"),
    "www": re.compile(r"(?i)www\."),
    "mention": re.compile(r"@[A-Za-z0-9]"),
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[A-Za-z]"),
}
SHA = "0123456789abcdef0123456789abcdef01234567"
AUTOLINK_FORMS = {
    "issue": "fixes #12 and (#3)",
    "gh-number": "see GH-3 and gh-42",
    "repo-issue": "octo-org/other-repo#5",
    "repo-commit": f"octo-org/other-repo@{SHA}",
    "sha": f"since {SHA}",
    "sha-short": "since deadbee here",
    "sha-upper": f"since {SHA.upper()}",
    "url": "https://evil.example/x and http://evil.example",
    "www": "www.evil.example/path",
    "mention": "@alice and @octo-org/admins",
    "email": "alice@example.com",
}


@pytest.mark.parametrize("form", AUTOLINK_FORMS)
def test_inert_breaks_every_github_autolink_form_and_reads_the_same(form):
    text = AUTOLINK_FORMS[form]
    out = inert(f"tests/b.py::test_x[{text}]")
    rendered = html.unescape(out)  # what GitHub's reference filters see
    found = {name: p.pattern for name, p in AUTOLINKS.items() if p.search(rendered)}
    assert not found, (form, out)
    assert rendered.replace(JOINER, "") == f"tests/b.py::test_x[{text}]"  # the same text to the eye


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF#@/.:-_GHhtpsw wwx", max_size=80))
@example(f"GH-1 #1 a/b#1 a/b@{SHA} {SHA} @x x@y.z https://x www.x")
def test_inert_leaves_no_autolink_in_any_text(text):
    rendered = html.unescape(inert(text, 400))
    for name, pattern in AUTOLINKS.items():
        if name == "sha" and re.fullmatch(r"[0-9a-f]{7,40}", " ".join(text.split())):
            continue  # a value that is only a commit id stays one (see textfilter._WHOLE_SHA)
        assert not pattern.search(rendered), (name, text, rendered)


def test_a_lone_commit_id_is_left_whole_for_code_spans():
    assert inert(SHA[:7]) == SHA[:7] and inert(SHA) == SHA
