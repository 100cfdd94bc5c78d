"""A callgrind dump's self cost per source file: how much of a stage's count CPython's small-object allocator made.

Why (docs/measurement.md, "Counts and the heap layout"): pymalloc's free path checks whether a block is its
own with `arena_map_is_used` (Objects/obmalloc.c), `(tail < lo) || (tail >= hi && hi != 0)`, which costs
a few instructions more or less depending on where the block lies against a 1 MiB boundary of its arena.
Which arena and pool a stage's objects come from is set by everything the process did before the call,
down to the hashes of the checkout's path, so the same code in two checkouts counted 464,635 and 469,499
(-1.04 %), all of it on that one line. Bolt compares code, so the allocator's instructions are left out of
a stage's count; the objects' own work (creation, initialisation, deallocation) stays in.

The format (valgrind's callgrind_format docs): `fl=`/`fi=`/`fe=` name the file of the cost lines that
follow, `fn=` starts a function (back in its `fl=` file), `calls=` is followed by one line holding the
*inclusive* cost of a call (not the caller's own), and names may be compressed as `(id) name`, later `(id)`.
"""

from __future__ import annotations

import re
from pathlib import Path

# Files whose instructions depend on the heap layout rather than on the code measured.
ALLOCATOR_FILES = ("Objects/obmalloc.c",)
# The same code by function name, where the interpreter has symbols but no line information (file "???").
ALLOCATOR_FUNCTIONS = frozenset({
    "PyObject_Malloc", "PyObject_Calloc", "PyObject_Realloc", "PyObject_Free",
    "_PyObject_Malloc", "_PyObject_Calloc", "_PyObject_Realloc", "_PyObject_Free",
    "pymalloc_alloc", "pymalloc_free", "pymalloc_realloc", "address_in_range", "arena_map_is_used",
    "arena_map_mark_used", "allocate_from_new_pool", "insert_to_usedpool", "insert_to_freepool", "new_arena",
    "_PyObject_ArenaMmap", "_PyObject_ArenaMunmap",
})
_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def self_costs(path: Path) -> tuple[dict[tuple[str, str], int], int]:
    """({(source file, function): self instructions (Ir)}, total self instructions) of one dump part."""
    names: dict[str, str] = {}  # compressed file ids → names (fl, fi, fe, cfi and cfl share one table)
    functions: dict[str, str] = {}  # compressed function ids → names (fn and cfn share one table)
    fn_file = current = function = "???"
    positions = 1
    column = 0
    in_call = False
    out: dict[tuple[str, str], int] = {}
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line:
                continue
            head = line[0]
            if head.isdigit() or head in "+-*":
                if in_call:  # the inclusive cost of the call just named: the callee's, counted there
                    in_call = False
                    continue
                fields = line.split()
                if len(fields) > positions + column:
                    cost = int(fields[positions + column])
                    out[current, function] = out.get((current, function), 0) + cost
                    total += cost
                continue
            key, _, value = line.partition("=")
            if key in ("fl", "fi", "fe", "cfi", "cfl"):
                name = _name(value, names)
                if key == "fl":
                    fn_file = current = name
                elif key in ("fi", "fe"):
                    current = name
            elif key in ("fn", "cfn"):
                name = _name(value, functions)
                if key == "fn":
                    current, function = fn_file, name
            elif key == "calls":
                in_call = True
            elif line.startswith("positions:"):
                positions = len(line.split()[1:]) or 1
            elif line.startswith("events:"):
                events = line.split()[1:]
                column = events.index("Ir") if "Ir" in events else 0
    return out, total


def allocator_share(path: Path) -> int:
    """Instructions of one dump part spent in CPython's small-object allocator (0 for a stripped interpreter)."""
    costs, _ = self_costs(path)
    return sum(cost for (file, function), cost in costs.items()
               if file.endswith(ALLOCATOR_FILES) or (file == "???" and function in ALLOCATOR_FUNCTIONS))


def _name(value: str, names: dict[str, str]) -> str:
    m = _NAMED.match(value)
    if not m:
        return value
    if m.group(2) is not None:
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), value)
