"""Words for Bolt's messages: "1 stage", "2 stages", never "1 stages" or "stage(s)"; project text made safe to show."""

from __future__ import annotations

import unicodedata

# Categories a terminal may act on rather than print: C0/C1 controls (ESC starts an escape sequence, \r
# rewrites the line), format characters (bidi overrides reorder what is shown), and the rest of "C" and "Z[lp]".
HIDDEN = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def visible(value: object) -> str:
    """`value` with every control or format character a space: nothing in it a terminal would act on."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(" " if unicodedata.category(c) in HIDDEN else c for c in text)


def plural(count: object, word: str, many: str | None = None) -> str:
    """`count` and `word`, the word in its plural form unless the count is exactly one: plural(1, "round") is
    "1 round", plural(3, "stage") "3 stages", plural(2, "process pair") "2 process pairs". `many` gives an
    irregular plural; a phrase ("unclear stage") makes the last word plural by adding "s"."""
    return f"{count} {word if count == 1 else many or word + 's'}"
