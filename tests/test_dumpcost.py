"""Reading a callgrind dump's self cost per file and function: the allocator's share left out of a stage's count."""

from __future__ import annotations

from pathlib import Path

from bolt_bot.measure.counts import read_dump_header
from bolt_bot.measure.dumpcost import allocator_share, self_costs

# A dump part as callgrind 3.19 writes it: compressed names, an inlined file (fi/fe), a call whose
# inclusive cost belongs to the callee, relative line positions.
DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
cmd:  python -m pytest -o addopts= -q
part: 2

desc: Trigger: Client Request: t.py::test_stage[x=1]

positions: line
events: Ir
summary: 0


ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) /build/Python-3.11.7/Python/ceval.c
fn=(1) _PyEval_EvalFrameDefault
1200 100
+3 40
cfl=(2) /build/Python-3.11.7/Objects/obmalloc.c
cfn=(2) _PyObject_Free
calls=5 1560
* 999
fi=(3) /build/Python-3.11.7/Include/object.h
-10 7
fe=(1)
+2 3

fl=(2)
fn=(2)
1560 30
fi=(4) /build/Python-3.11.7/Objects/obmalloc.c
1565 12

ob=(2) /usr/lib/libc.so.6
fl=(5) ???
fn=(3) PyObject_Malloc
0 8
fn=(4) memcpy
0 20

totals: 220
"""


def test_self_costs_follow_files_inlining_and_calls(tmp_path):
    dump = tmp_path / "callgrind.out.1.2"
    dump.write_text(DUMP)
    costs, total = self_costs(dump)
    assert total == 220 == read_dump_header(dump)[1]  # the call's inclusive 999 is the callee's, not counted twice
    ceval = "/build/Python-3.11.7/Python/ceval.c"
    obmalloc = "/build/Python-3.11.7/Objects/obmalloc.c"
    assert costs == {
        (ceval, "_PyEval_EvalFrameDefault"): 143,
        ("/build/Python-3.11.7/Include/object.h", "_PyEval_EvalFrameDefault"): 7,
        (obmalloc, "_PyObject_Free"): 42,
        ("???", "PyObject_Malloc"): 8,
        ("???", "memcpy"): 20,
    }
    # The allocator: its file where there is line information, its functions' names where there is none.
    assert allocator_share(dump) == 42 + 8


def test_a_dump_without_allocator_code_keeps_its_total(tmp_path):
    dump = tmp_path / "callgrind.out.1.1"
    dump.write_text("events: Ir\nfl=(1) a.c\nfn=(1) f\n3 10\n4 5\ntotals: 15\n")
    assert self_costs(dump) == ({("a.c", "f"): 15}, 15)
    assert allocator_share(dump) == 0
    assert allocator_share(Path(dump)) == 0
