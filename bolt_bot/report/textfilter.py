"""Neutralising text from the measured project (stage names, params, messages, profile lines) for markdown.

Anything a pull request can control is treated as hostile: it must not open HTML tags, mention people,
break out of a table cell or a code span, start a link, or hide text with control characters.
"""

from __future__ import annotations

import functools
import re

from bolt_bot.words import visible

# Characters with meaning in GitHub markdown or HTML, replaced by numeric entities. Entities render as the
# character itself but are never parsed as markup, mentions (@), issue links (#) or table cells (|).
_ENTITIES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "'": "&#39;",
    "`": "&#96;",
    "|": "&#124;",
    "@": "&#64;",
    "#": "&#35;",
    "[": "&#91;",
    "]": "&#93;",
    "*": "&#42;",
    "~": "&#126;",
    "\\": "&#92;",
    "$": "&#36;",  # GitHub renders $...$ as math
}
_ESCAPE_TABLE = str.maketrans(_ENTITIES)
# Underscores inside words are harmless in GitHub markdown; at word edges they start emphasis.
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# GitHub links more than markup: @mentions, emails, #N, GH-N, owner/repo#N, owner/repo@sha, bare commit SHAs
# (7 to 40 hex digits), http(s):// URLs and www. names. Entities do not stop that (GitHub finds references in
# the rendered text, where `&#64;` is an @ again), so an invisible WORD JOINER goes where each pattern would
# continue: the text reads and renders the same, and no pattern matches across it.
JOINER = "\u2060"
_AFTER_SIGN = re.compile(r"[@#]")  # mentions, emails, #N, owner/repo#N, owner/repo@sha
_GH_NUMBER = re.compile(r"(?i)(?<![A-Za-z0-9])gh-(?=[0-9])")
_URL = re.compile(r"(?i)(?<=:)(?=//)|(?<=www)(?=\.)|(?<=mailto)(?=:)|(?<=xmpp)(?=:)")
_HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{7,}(?![0-9A-Za-z])")
_SHA_CHUNK = 6  # shorter than the 7 digits GitHub needs for a commit link
# A value that is nothing but a commit id is one (Bolt's base, head and approval SHAs, often in code spans where
# an invisible character would spoil copying it): it may link to that commit, which is all such a link can do.
_WHOLE_SHA = re.compile(r"[0-9a-f]{7,40}")
ELLIPSIS = "…"
STATUS_DESCRIPTION_LIMIT = 140  # GitHub answers 422 above this


def _visible(text: str) -> str:
    """Replace control, format (bidi overrides, zero-width) and line/paragraph separators by spaces, and runs
    of white space by one space."""
    return " ".join(visible(text).split())


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut in the middle so both the start and the end stay readable."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    tail = limit - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def _unlinked(text: str) -> str:
    """`text` with a JOINER wherever GitHub would otherwise start or continue an autolink."""
    if _WHOLE_SHA.fullmatch(text):
        return text
    text = _HEX_RUN.sub(lambda m: JOINER.join(m.group(0)[i:i + _SHA_CHUNK]
                                               for i in range(0, len(m.group(0)), _SHA_CHUNK)), text)
    text = _GH_NUMBER.sub(lambda m: m.group(0) + JOINER, text)
    text = _URL.sub(JOINER, text)
    return _AFTER_SIGN.sub(lambda m: m.group(0) + JOINER, text)


@functools.lru_cache(maxsize=65536)  # a comment renders the same names several times while it is fitted
def _inert_text(text: str, limit: int) -> str:
    # _visible drops every JOINER the text brought, so the only ones left are those _unlinked adds.
    text = _unlinked(shorten(_visible(text), limit))
    text = text.translate(_ESCAPE_TABLE)
    return _EDGE_UNDERSCORE.sub("&#95;", text)


def inert(value: object, limit: int = 200) -> str:
    """Text safe inside a markdown table cell, a list item, a summary line or HTML."""
    return _inert_text("" if value is None else str(value), limit)


_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-+/ ]")


def chart_label(value: object, limit: int = 32) -> str:
    """A label for a mermaid chart: a strict allow-list, since mermaid has its own syntax to escape."""
    text = _LABEL_UNSAFE.sub("_", _visible(str(value)))
    return shorten(text, limit).replace(ELLIPSIS, "~")


def short_name(name: object) -> str:
    """The test part of a pytest fullname, on one line: `tests/bench.py::test_parse[x]` -> `test_parse[x]`."""
    return " ".join(str(name).rsplit("::", 1)[-1].split()) or "?"


def short_description(text: str) -> str:
    """A commit status description: one line of at most 140 characters, cut at a word with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= STATUS_DESCRIPTION_LIMIT:
        return text
    cut = text[: STATUS_DESCRIPTION_LIMIT - 1]
    if " " in cut[STATUS_DESCRIPTION_LIMIT // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut + ELLIPSIS
