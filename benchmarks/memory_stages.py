"""Stages for the memory benchmark's retained cache: each builds a small record per unit and drops it, unless told
to keep every k-th one in a module-level chain that is never emptied (a cache that only grows).

This file is copied verbatim into the generated project (as `memory_stages.py` at its root), next to
benchmarks/detection/synth_stages.py.

Why a chain and not a list: keeping a record means linking it in (`node.previous = kept`), which allocates nothing.
A list or dict cache would also allocate as it grows (resizing), so "allocations" and "allocated" would move
along with the peak. Here a kept record and a dropped one cost the very same allocations; only the bytes still in
use during the call (the peak above its start) grow, by about 150 B per kept record.
"""

STAGES = ("stream_records", "stream_blobs")


class Node:
    """A record: a user class with __slots__, which (unlike lists, tuples, dicts and floats) has no free list, so
    a kept node costs the same allocation as a dropped one whose memory the next node would have reused."""

    __slots__ = ("value", "payload", "previous")

    def __init__(self, value, payload):
        self.value = value
        self.payload = payload
        self.previous = None


_kept = None  # the chain's newest node


def stream_records(n, keep_every=0):
    """A record (a node, an int above the small-int cache, a short string) per unit, folded into a checksum."""
    global _kept
    total = 0
    for i in range(n):
        node = Node(i + 1000, f"r{i}")
        total += len(node.payload)
        if keep_every and i % keep_every == 0:
            node.previous = _kept
            _kept = node
    return total


def stream_blobs(n, keep_every=0):
    """A node holding a 64-byte bytes object per unit, folded into a checksum."""
    global _kept
    total = 0
    for i in range(n):
        node = Node(i, b"%08d" % (i + 1000) * 8)
        total += node.payload[i % 64]
        if keep_every and i % keep_every == 0:
            node.previous = _kept
            _kept = node
    return total
