"""Standalone: a shard's stages kept in every measured pass (BOLT_SHARD_SELECT), and listing a suite's stages.

Runs inside the measured environment, so it imports nothing from Bolt. `keep_shard(config, items)` is
called by the round, count and profile plugins from their collection hook: with BOLT_SHARD_SELECT naming a
file of node ids (one a line), only those items stay, matched exactly (a shard's list holds whole stage
names; pytest's `--deselect` would match prefixes and drop `test_x2` with `test_x`).

Loaded as a plugin itself (`-p bolt_shard_select`, with `--collect-only`), it writes the node ids of the
tests that use the `benchmark` fixture to BOLT_SHARD_LIST: the stage list every shard partitions.
"""

from __future__ import annotations

import json
import os

SELECT_VARIABLE = "BOLT_SHARD_SELECT"
LIST_VARIABLE = "BOLT_SHARD_LIST"


def keep_shard(config, items) -> None:
    path = os.environ.get(SELECT_VARIABLE)
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        wanted = {line.rstrip("\n") for line in f if line.strip()}
    drop = [item for item in items if item.nodeid not in wanted]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item.nodeid in wanted]


def pytest_collection_finish(session):
    path = os.environ.get(LIST_VARIABLE)
    if not path:
        return
    names = [item.nodeid for item in session.items if "benchmark" in getattr(item, "fixturenames", ())]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(names, f)
