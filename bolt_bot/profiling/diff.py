"""Differential profiles: base's and head's functions matched, the ones that grew under a regression named."""

from __future__ import annotations

from bolt_bot.model import ProfileLine
from bolt_bot.profiling.collect import FunctionStats, FunctionTable
from bolt_bot.report.funcnames import format_function
from bolt_bot.report.render import format_amount


def match_functions(
    base: FunctionTable, head: FunctionTable
) -> list[tuple[FunctionStats | None, FunctionStats | None]]:
    """Pairs (base, head) of the same function; None on the side where it does not exist.

    Exact keys first. What is left is paired within the same file and function name (code moved
    between the commits): first where the two share a caller that is already matched, which is
    how a `<listcomp>` or `<lambda>` finds its twin inside its enclosing function; then, for named
    functions only, by line order, so that an edit above a function does not make it look new.
    """
    # Builtins and named functions are identified by their key; anonymous code objects only once
    # their enclosing function is known, since new code can land on an old lambda's line number.
    to_base: dict[str, str] = {
        k: k for k, h in head.functions.items() if k in base.functions and not _is_anonymous(h)
    }
    matched_base = set(to_base.values())

    def leftovers() -> dict[tuple[str, str], tuple[list[FunctionStats], list[FunctionStats]]]:
        groups: dict[tuple[str, str], tuple[list[FunctionStats], list[FunctionStats]]] = {}
        for b in base.functions.values():
            if b.key not in matched_base:
                groups.setdefault((b.file, b.name), ([], []))[0].append(b)
        for h in head.functions.values():
            if h.key not in to_base:
                groups.setdefault((h.file, h.name), ([], []))[1].append(h)
        return {g: sides for g, sides in groups.items() if sides[0] and sides[1]}

    def pair(b: FunctionStats, h: FunctionStats) -> None:
        to_base[h.key] = b.key
        matched_base.add(b.key)

    def by_shared_callers() -> None:
        progress = True
        while progress:
            progress = False
            for bases, heads in leftovers().values():
                options = []
                for h in heads:
                    callers = {to_base[c] for c in h.callers if c in to_base}
                    for b in bases:
                        if callers & set(b.callers):
                            options.append((abs(b.line - h.line), b.line, h.line, b, h))
                for _, _, _, b, h in sorted(options, key=lambda o: o[:3]):
                    if b.key not in matched_base and h.key not in to_base:
                        pair(b, h)
                        progress = True

    by_shared_callers()
    for bases, heads in leftovers().values():
        if _is_anonymous(heads[0]):
            continue
        bases.sort(key=lambda f: f.line)
        heads.sort(key=lambda f: f.line)
        if len(bases) == len(heads):
            for b, h in zip(bases, heads):
                pair(b, h)
            continue
        options = [(abs(b.line - h.line), b.line, h.line, b, h) for b in bases for h in heads]
        for _, _, _, b, h in sorted(options, key=lambda o: o[:3]):
            if b.key not in matched_base and h.key not in to_base:
                pair(b, h)
    by_shared_callers()
    for key, h in head.functions.items():  # no better evidence: an anonymous function that stayed put
        if key not in to_base and key in base.functions and key not in matched_base:
            pair(base.functions[key], h)

    pairs: list[tuple[FunctionStats | None, FunctionStats | None]] = []
    for h in head.functions.values():
        b_key = to_base.get(h.key)
        pairs.append((base.functions[b_key] if b_key else None, h))
    pairs.extend((b, None) for b in base.functions.values() if b.key not in matched_base)
    return pairs


def _is_anonymous(func: FunctionStats) -> bool:
    return func.name.startswith("<") and func.file != "~"  # <lambda>, <listcomp>, <genexpr>...


def _line(b: FunctionStats | None, h: FunctionStats) -> ProfileLine:
    # The name a reader (and a terminal view) shows as it is: `str.title`, `pipeline/parse.py:40 _clean_city`.
    return ProfileLine(
        function=format_function(h.key),
        base=b.own if b else 0.0,
        head=h.own,
        delta=h.own - (b.own if b else 0.0),
        base_cum=b.cum if b else 0.0,
        head_cum=h.cum,
        base_calls=round(b.calls) if b else 0,
        head_calls=round(h.calls),
        new=b is None,
    )


def diff_profiles(
    base: FunctionTable, head: FunctionTable, top: int = 5, *, min_share: float = 0.01
) -> list[ProfileLine]:
    """The functions that added the most time per call of the stage, most first.

    The tables' times are per call of the stage, scaled to its time without the profiler when load_profile
    knew it (FunctionTable.scaled_to), so the lines add up to at most the stage's time per call.

    Ranked by added own time; a function only on head is ranked by its cumulative time (all of it
    is new) and marked `new`. Changes below `min_share` of the stage's time are noise and left out.
    Own time alone can point at a builtin (say `sorted`) without saying who called it more, so
    the deepest project function whose cumulative time grew by at least half of the stage's
    slowdown is appended (within `top`) unless a listed project function already accounts for it.
    """
    if top <= 0:
        return []
    floor = min_share * max(base.total, head.total, 1e-12)
    scored: list[tuple[float, ProfileLine, FunctionStats]] = []
    for b, h in match_functions(base, head):
        if h is None:
            continue
        line = _line(b, h)
        score = max(line.delta, h.cum) if b is None else line.delta
        if score > floor:
            scored.append((score, line, h))
    scored.sort(key=lambda item: (-item[0], item[2].key))
    chosen = scored[:top]
    lines = [line for _, line, _ in chosen]
    keys = [h.key for _, _, h in chosen]

    slowdown = head.total - base.total
    explained = any(
        h.is_project and line.head_cum - line.base_cum >= 0.5 * slowdown for _, line, h in chosen
    )
    if slowdown > floor and not explained:
        culprit = _deepest_responsible(base, head, slowdown)
        if culprit is not None and culprit[1].key not in keys:
            if len(lines) >= top:
                lines = lines[: top - 1]
            lines.append(_line(*culprit))
    return lines


def why_empty(base: FunctionTable, head: FunctionTable, *, min_share: float = 0.01) -> str:
    """Why diff_profiles found no function to show, in words for the comment."""
    floor = min_share * max(base.total, head.total, 1e-12)
    slowdown = head.total - base.total
    unit = "without the profiler" if base.scaled and head.scaled else "under cProfile"
    took = (f"in the profiling run the stage took {format_amount(base.total)} on base and "
            f"{format_amount(head.total)} on head per call ({unit})")
    if slowdown <= 0:
        # The measurement found head slower, these few calls did not: say so rather than show nothing.
        return (f"{took}: head was not slower there, so no function can be blamed. Either the calls profiled "
                f"were too few to see a change this small (noise), or the time is added where cProfile does "
                f"not look: inside C code of one call, garbage collection, memory or cache effects, other threads")
    if slowdown <= floor:
        return (f"{took}: the change is below the profile's resolution (no function moved by more than "
                f"{min_share * 100:g} % of the stage's time, {format_amount(floor)})")
    return (f"{took}, but the {format_amount(slowdown)} added is spread thinly: no function moved by more than "
            f"{min_share * 100:g} % of the stage's time ({format_amount(floor)})")


def _deepest_responsible(
    base: FunctionTable, head: FunctionTable, slowdown: float
) -> tuple[FunctionStats | None, FunctionStats] | None:
    # Cumulative deltas shrink down a call chain, so the smallest one still above half of the
    # slowdown belongs to the deepest project function on the path where the time was added.
    best = None
    for b, h in match_functions(base, head):
        if h is None or not h.is_project:
            continue
        grown = h.cum - (b.cum if b else 0.0)
        if grown >= 0.5 * slowdown and (best is None or grown < best[0]):
            best = (grown, b, h)
    return None if best is None else (best[1], best[2])
