"""The package's shape: layers a newcomer sees from `ls`, no import cycle, no import hidden in a function,
no module past ~400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bolt_bot"
LAYERS = ("measure", "decide", "profiling", "report", "github")
MAX_LINES = 420  # "about 400"
PROBES = PACKAGE / "measure" / "probe"  # run inside the measured project, never import Bolt
# The entry point imports each command's modules when that command runs, so `bolt --help` stays fast;
# nothing imports cli, so it cannot hide a cycle.
LAZY = {"bolt_bot.cli"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if PROBES in path.parents:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(tree: ast.AST, name: str, is_package: bool) -> list[tuple[str, bool]]:
    """(imported bolt_bot module, inside a function?) for every import in a module."""
    found = []
    package = name if is_package else name.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names if a.name.startswith("bolt_bot"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                if base.startswith("bolt_bot"):
                    for alias in child.names:
                        found.append((f"{base}.{alias.name}", in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def graph() -> tuple[dict[str, set[str]], list[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    hidden = []
    for name, path in mods.items():
        for target, in_function in _imports(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            while target not in mods and "." in target:
                target = target.rpartition(".")[0]  # `from pkg import name`: name is an attribute
            if target in mods and target != name:
                edges[name].add(target)
                if in_function and name not in LAZY:
                    hidden.append(f"{name} imports {target} inside a function")
    return edges, hidden


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def walk(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            walk(node)
    return found


def test_the_layers_are_packages():
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file(), layer


def test_no_import_cycle():
    edges, _ = graph()
    assert cycles(edges) == []


def test_no_import_hidden_in_a_function():
    _, hidden = graph()
    assert hidden == []


def test_no_module_past_about_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# Which layer may import which: data flows measure → decide → (profiling) → report → github. Deciding reads
# measuring's data types; measuring never asks for a verdict (reading pytest-benchmark's JSON lives with
# deciding, but it is a reader, not a verdict: measuring may use it). Deciding still borrows the report's
# number formatting for its notes.
MAY_NOT_IMPORT = {
    "bolt_bot.measure": ("bolt_bot.decide", "bolt_bot.report", "bolt_bot.github", "bolt_bot.pipeline"),
    "bolt_bot.decide": ("bolt_bot.profiling", "bolt_bot.github", "bolt_bot.pipeline"),
    "bolt_bot.report": ("bolt_bot.measure", "bolt_bot.decide", "bolt_bot.github", "bolt_bot.pipeline"),
}
ALLOWED = {("bolt_bot.measure", "bolt_bot.decide.benchjson")}


def test_data_flows_one_way_between_the_layers():
    edges, _ = graph()
    wrong = []
    for name, targets in edges.items():
        for layer, forbidden in MAY_NOT_IMPORT.items():
            if name.startswith(layer + ".") or name == layer:
                wrong += [f"{name} imports {t}" for t in targets
                          if t.startswith(forbidden) and (layer, t) not in ALLOWED]
    assert wrong == []
