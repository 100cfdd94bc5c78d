"""Labels for the comment's mermaid chart of changes: distinct, short and safe in mermaid's syntax."""

from __future__ import annotations

from bolt_bot.report.textfilter import chart_label


def chart_labels(names: list[str], limit: int = 32) -> list[str]:
    """One distinct mermaid label per bar: the test's own name, widened to where names differ when two
    collide (the same test in two files, or long parameters cut to the same ends), numbered as a last resort."""
    labels = [chart_label(name.rsplit("::", 1)[-1], limit) for name in names]
    for group in _collisions(labels):
        tails = [names[i].rsplit("::", 1)[-1] for i in group]
        if len(set(tails)) < len(tails):  # the same test name in different files: the node ids differ
            tails = [names[i] for i in group]
        # Start a little before the first difference, at a word's start, so the label keeps some context.
        start = max(len(_common_prefix(tails)) - 8, 0)
        while start > 0 and tails[0][start - 1] not in "/:[-_. ":
            start -= 1
        for i, tail in zip(group, tails):
            text = tail[start:].replace("::", " ")
            labels[i] = "~" + chart_label(text, limit - 1) if start else chart_label(text, limit)
    for group in _collisions(labels):
        for k, i in enumerate(group, 1):
            labels[i] = f"{labels[i][: limit - 4].rstrip()} ({k})"
    return labels


def _collisions(labels: list[str]) -> list[list[int]]:
    where: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        where.setdefault(label, []).append(i)
    return [group for group in where.values() if len(group) > 1]


def _common_prefix(texts: list[str]) -> str:
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]
