"""The measuring, deciding and profiling layers: data flows one way, no import cycle, no import hidden in a function."""

from __future__ import annotations

import ast
from pathlib import Path

import bolt_bot

ROOT = Path(bolt_bot.__file__).parent
LAYERS = ("measure", "decide", "profiling")
# Reading pytest-benchmark's JSON lives with the deciding layer, but is a reader, not a verdict.
MEASURE_MAY_USE = {"bolt_bot.decide.benchjson"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        if "probe" in path.parts:
            continue  # runs inside the measured environment: imports nothing of Bolt
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(path: Path, top_level_only: bool) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bolt_bot"):
            out += [(node.module, node.lineno)] + [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("bolt_bot")]
    return out


def _in_layers(name: str) -> bool:
    return name == "bolt_bot.pipeline" or any(name.startswith(f"bolt_bot.{layer}") for layer in LAYERS)


def test_measuring_never_imports_a_verdict():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("bolt_bot.measure"):
            used = {m for m, _ in _imports(path, False) if m in modules and m.startswith("bolt_bot.decide")}
            assert used <= MEASURE_MAY_USE, f"{name} imports {used - MEASURE_MAY_USE}"


def test_no_import_inside_a_function():
    for name, path in _modules().items():
        if _in_layers(name):
            hidden = set(_imports(path, False)) - set(_imports(path, True))
            assert not hidden, f"{name} imports inside a function: {sorted(hidden)}"


def test_no_import_cycle():
    modules = _modules()
    graph = {name: {m for m, _ in _imports(path, True) if m in modules and m != name} for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [name, nxt]))
            if nxt not in state:
                visit(nxt, trail + [name])
        state[name] = 2

    for name in sorted(n for n in graph if _in_layers(n)):
        if name not in state:
            visit(name, [])


def test_no_module_is_over_about_400_lines():
    for name, path in _modules().items():
        if _in_layers(name):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            assert lines <= 420, f"{name} has {lines} lines"
