"""Flame graph SVGs and speedscope JSON from a stage's cProfile dump."""

from __future__ import annotations

import hashlib
import pstats
import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from bolt_bot.profiling.collect import FunctionStats, FunctionTable, load_profile
from bolt_bot.report.funcnames import builtin_name

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"

# Layout, in SVG user units (pixels at 100 % zoom).
WIDTH = 1200
PAD = 10
ROW = 18
HEADER = 52
FOOTER = 24
FONT = 12
CHAR_WIDTH = 7.3  # monospace at FONT px; keeps labels inside their boxes
MIN_LABEL_WIDTH = 3 * CHAR_WIDTH

Profile = Path | str | pstats.Stats | FunctionTable


@dataclass
class Node:
    """A frame of the call tree synthesised from cProfile's caller/callee totals."""

    function: FunctionStats | None  # None for the root ("all")
    value: float  # seconds per call of the stage, including children
    children: list[Node] = field(default_factory=list)

    @property
    def self_time(self) -> float:
        return max(0.0, self.value - sum(c.value for c in self.children))


def _as_table(profile: Profile, root: Path | None) -> FunctionTable:
    if isinstance(profile, FunctionTable):
        return profile
    return load_profile(profile, root)


def call_tree(profile: Profile, *, root: Path | None = None, min_fraction: float = 0.001, max_depth: int = 80) -> Node:
    """A call tree whose widths are time per call of the stage.

    cProfile keeps totals per caller->callee edge, not stacks, so a function reached from several
    paths gets its children split in proportion to the time each path spent in it (the same
    approximation flameprof and gprof2dot make). Frames under `min_fraction` of the total are
    dropped, and recursion is cut where a function reappears on its own stack.
    """
    table = _as_table(profile, root)
    callees = table.callees()
    roots = sorted(table.roots(), key=lambda f: (-f.cum, f.key))
    top = Node(function=None, value=sum(f.cum for f in roots))
    floor = max(top.value * min_fraction, 0.0)

    def expand(node: Node, stack: tuple[str, ...]) -> None:
        func = node.function
        assert func is not None
        if len(stack) >= max_depth or func.cum <= 0:
            return
        scale = node.value / func.cum
        children = []
        for key, (_calls, _own, cum) in callees.get(func.key, {}).items():
            if key in stack or key not in table.functions:
                continue
            value = cum * scale
            if value > floor:
                children.append(Node(function=table.functions[key], value=value))
        spent = sum(c.value for c in children)
        room = node.value - func.own * scale
        if spent > room > 0:  # the per-edge totals of recursive code can overshoot the parent
            for child in children:
                child.value *= room / spent
        children.sort(key=lambda c: (-c.value, c.function.key))
        node.children = children
        for child in children:
            expand(child, stack + (child.function.key,))

    for func in roots:
        if func.cum > floor:
            child = Node(function=func, value=func.cum)
            top.children.append(child)
            expand(child, (func.key,))
    return top


# ---------------------------------------------------------------- SVG


def _clean(text: str) -> str:
    # Characters XML 1.0 forbids would make the whole file unreadable; names come from the PR.
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "?", text)


def _colour(func: FunctionStats | None) -> str:
    if func is None:
        return "rgb(200,200,205)"
    digest = hashlib.md5(func.key.encode("utf-8")).digest()
    a, b = digest[0] / 255, digest[1] / 255
    if func.file in ("~", "") or func.file.startswith("<"):  # builtins, stdlib: cool greys-blues
        return f"rgb({int(150 + 40 * a)},{int(170 + 40 * b)},{int(215 + 30 * a)})"
    if func.file.startswith("site-packages/"):  # dependencies: greens
        return f"rgb({int(120 + 50 * a)},{int(195 + 40 * b)},{int(120 + 40 * a)})"
    return f"rgb({int(225 + 30 * a)},{int(90 + 130 * b)},{int(40 + 40 * a)})"  # project: warm


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def display_name(func: FunctionStats) -> str:
    """A short name for a frame: builtins read as `sorted` or `str.lower`, not cProfile's labels."""
    return builtin_name(func.name) if func.file in ("~", "") else func.name


def _label(func: FunctionStats | None, title: str, width: float) -> str:
    chars = int((width - 6) // CHAR_WIDTH)
    if chars < 3:
        return ""
    if func is None:
        full, short = f"all ({title})", "all"
    else:
        short = display_name(func)
        located = func.file not in ("~", "") and not func.file.startswith("<")
        full = f"{short} ({func.file}:{func.line})" if located else short
    for text in (full, short):
        if len(text) <= chars:
            return text
    return short[: chars - 2] + ".."


def flamegraph_svg(profile: Profile, title: str, *, root: Path | None = None, min_fraction: float = 0.001) -> str:
    """A self-contained SVG flame graph (root at the bottom) with a tooltip on every frame.

    `profile` is a .pstats path, a pstats.Stats or a FunctionTable; `root` normalises paths.
    """
    table = _as_table(profile, root)
    tree = call_tree(table, min_fraction=min_fraction)
    total = tree.value
    depth = _depth(tree)
    height = HEADER + depth * ROW + FOOTER
    scale = (WIDTH - 2 * PAD) / total if total > 0 else 0.0
    safe_title = _clean(title)
    subtitle = (
        f"{_fmt(total)} per call of the stage, {table.stage_calls} call(s) profiled with cProfile; "
        "width = time, hover for details"
    )
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
            f'font-size="{FONT}">'
        ),
        f"<title>{escape(safe_title)}</title>",
        "<style>g.f:hover rect { stroke: #222; stroke-width: 1; } text { pointer-events: none; }</style>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fbfbf8"/>',
        (
            f'<text x="{WIDTH / 2:.1f}" y="22" text-anchor="middle" font-size="16" font-weight="bold" '
            f'fill="#111">{escape(safe_title)}</text>'
        ),
        f'<text x="{WIDTH / 2:.1f}" y="40" text-anchor="middle" fill="#444">{escape(subtitle)}</text>',
    ]
    if total <= 0:
        out.append(f'<text x="{PAD}" y="{HEADER + ROW}" fill="#444">no time recorded</text>')
    frames: list[str] = []
    _draw(tree, PAD, 0, depth, scale, total, safe_title, frames)
    out.extend(frames)
    out.append(
        f'<text x="{PAD}" y="{height - 8}" fill="#666" font-size="11">'
        "warm: project code · green: site-packages · blue: builtins and standard library</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _depth(node: Node) -> int:
    return 1 + max((_depth(c) for c in node.children), default=0)


def _draw(node: Node, x: float, level: int, depth: int, scale: float, total: float, title: str, out: list[str]) -> None:
    width = node.value * scale
    if width < 0.3:
        return
    y = HEADER + (depth - 1 - level) * ROW
    func = node.function
    share = node.value / total if total > 0 else 0.0
    if func is None:
        tip = f"all: {_fmt(node.value)} per call of the stage (100 %)"
    else:
        tip = (
            f"{func.name}  {func.file}:{func.line}\n"
            f"{_fmt(node.value)} per call of the stage ({share:.1%}) on this path, self {_fmt(node.self_time)}\n"
            f"function total: own {_fmt(func.own)}, cumulative {_fmt(func.cum)}, {func.calls:g} calls"
        )
    label = _label(func, title, width)
    out.append(f'<g class="f"><title>{escape(_clean(tip))}</title>')
    out.append(
        f'<rect x="{x:.2f}" y="{y}" width="{max(width - 0.5, 0.1):.2f}" height="{ROW - 1}" '
        f'fill={quoteattr(_colour(func))} rx="2" ry="2"/>'
    )
    if label:
        out.append(f'<text x="{x + 3:.2f}" y="{y + ROW - 5}" fill="#000">{escape(_clean(label))}</text>')
    out.append("</g>")
    child_x = x
    for child in node.children:
        _draw(child, child_x, level + 1, depth, scale, total, title, out)
        child_x += child.value * scale


# ---------------------------------------------------------------- speedscope


def speedscope_json(profiles: Profile | dict[str, Profile], title: str, *, root: Path | None = None) -> dict:
    """A speedscope file (https://www.speedscope.app/file-format-schema.json), "sampled" profiles.

    Each frame of the synthesised call tree becomes one weighted sample (its stack, its self time
    per call of the stage), so speedscope's left-heavy and sandwich views show the same widths as
    the SVG. Pass a mapping stage -> profile to put several stages in one file.
    """
    named = profiles if isinstance(profiles, dict) else {title: profiles}
    frames: list[dict] = []
    index: dict[str, int] = {}
    out_profiles = []
    for name, profile in named.items():
        samples: list[list[int]] = []
        weights: list[float] = []
        _samples(call_tree(_as_table(profile, root)), [], frames, index, samples, weights)
        out_profiles.append(
            {
                "type": "sampled",
                "name": str(name),
                "unit": "seconds",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        )
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": frames},
        "profiles": out_profiles,
        "name": title,
        "activeProfileIndex": 0,
        "exporter": "bolt",
    }


def _samples(
    node: Node, stack: list[int], frames: list[dict], index: dict[str, int], samples: list[list[int]], weights: list[float]
) -> None:
    func = node.function
    if func is not None:
        if func.key not in index:
            index[func.key] = len(frames)
            frame: dict = {"name": func.name, "file": func.file}
            if func.line:
                frame["line"] = func.line
            frames.append(frame)
        stack = [*stack, index[func.key]]
        if node.self_time > 0:
            samples.append(stack)
            weights.append(node.self_time)
    for child in node.children:
        _samples(child, stack, frames, index, samples, weights)
