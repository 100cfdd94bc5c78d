"""Counting words for Bolt's messages: "1 stage", "2 stages", never "1 stages" or "stage(s)"."""

from __future__ import annotations


def plural(count: object, word: str, many: str | None = None) -> str:
    """`count` and `word`, the word in its plural form unless the count is exactly one: plural(1, "round") is
    "1 round", plural(3, "stage") "3 stages", plural(2, "process pair") "2 process pairs". `many` gives an
    irregular plural; a phrase ("unclear stage") makes the last word plural by adding "s"."""
    return f"{count} {word if count == 1 else many or word + 's'}"
