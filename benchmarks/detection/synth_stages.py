"""The ten synthetic stages. Each takes a unit count n; one unit is a fixed small piece of work, so the
cost is proportional to n and a weight of 1.05 (n × 1.05) is a 5 % slowdown through the same code path.

This file is copied verbatim into the generated project (as `synth_stages.py` at its root).
"""


def cpu_sum(n):
    """Integer arithmetic in a plain loop."""
    acc = 0
    for i in range(n):
        acc += i * i ^ (i >> 3)
    return acc


def cpu_float(n):
    """Floating-point arithmetic (a Newton step per unit)."""
    x = 1.5
    acc = 0.0
    for _ in range(n):
        x = 0.5 * (x + 2.0 / x)
        acc += x * 1.0000001
    return acc


def cpu_branches(n):
    """Branchy integer code (a Collatz step per unit, restarted so every unit costs the same on average)."""
    steps = 0
    x = 27
    for i in range(n):
        x = x // 2 if x % 2 == 0 else 3 * x + 1
        if x == 1:
            x = 27 + (i & 7)
        steps += 1
    return steps


def alloc_lists(n):
    """Allocation-heavy: a fresh small list per unit, kept alive until the end."""
    keep = []
    for i in range(n):
        keep.append([i, i + 1, i + 2, i + 3])
    return len(keep)


def alloc_dicts(n):
    """Allocation-heavy: a fresh small dict per unit."""
    keep = []
    for i in range(n):
        keep.append({"a": i, "b": i + 1, "c": (i, i)})
    return len(keep)


class _Point:
    __slots__ = ("x", "y", "z")

    def __init__(self, x, y, z):
        self.x, self.y, self.z = x, y, z


def alloc_objects(n):
    """Allocation-heavy: instances of a small class, with a reference cycle every unit."""
    keep = []
    for i in range(n):
        p = _Point(i, [i], None)
        p.z = p
        keep.append(p)
    return len(keep)


def str_format(n):
    """String building: f-strings joined at the end."""
    parts = [f"{i:05d}-{i % 7}" for i in range(n)]
    return len(",".join(parts))


def str_split(n):
    """String work: split, replace, upper on a fixed-size line per unit."""
    line = "alpha beta gamma delta epsilon zeta eta theta"
    total = 0
    for _ in range(n):
        words = line.replace("a", "A").split()
        total += len(words[3].upper())
    return total


def str_encode(n):
    """Bytes round trips of a fixed-size string per unit."""
    text = "naïve café résumé " * 4
    total = 0
    for _ in range(n):
        total += len(text.encode("utf-8").decode("utf-8"))
    return total


def dict_lookup(n):
    """Mixed: dictionary lookups and updates in a fixed-size table."""
    table = {f"k{i}": i for i in range(64)}
    keys = list(table)
    acc = 0
    for i in range(n):
        k = keys[i & 63]
        acc += table[k]
        table[k] = acc & 0xFFFF
    return acc
