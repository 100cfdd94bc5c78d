"""pytest's command line for every measured pass (rounds, discovery, counts, profiles), built in one place.

A project's own pytest configuration is written for its test runs, not for measuring: `addopts` may
hold `--numprocesses=auto`, `--cov`, `--flake8` or a `--pdbcls` whose module only its CI installs, and
the user's `pytest-args` may hold the flags its CI passes (`-n0`, `-p xdist`). So every pass clears
`addopts`, blocks the plugins that fight measurement (xdist spreads stages over processes and turns
pytest-benchmark off, randomly reorders and reseeds, sugar rewrites the output Bolt reads, cov traces
every line), and drops from the user's arguments what only those plugins understand. The rest of the
user's arguments (paths, -k, -m, plugins of their own) are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Blocking with `-p no:NAME` is accepted whether or not NAME is installed: one line for every project.
BLOCKED = ("xdist", "randomly", "sugar", "cov", "cacheprovider")
ISOLATION = [arg for name in BLOCKED for arg in ("-p", f"no:{name}")] + \
            ["-o", "addopts=", "-o", "required_plugins=", "-q"]

# `-p NAME` / `-p no:NAME` the user may give for a plugin Bolt controls: dropped, Bolt decides.
_CONTROLLED_PLUGINS = {"xdist", "randomly", "pytest_randomly", "sugar", "pytest_sugar", "cov", "pytest_cov",
                       "cacheprovider", "benchmark", "pytest_benchmark", "codspeed", "pytest_codspeed",
                       "bolt_round_plugin", "bolt_profile_plugin", "bolt_memory_plugin"}
# Options that only the blocked plugins (or a debugger) understand; the value of each is listed: True
# required, "?" optional (taken when the next word is not an option, as argparse does), False none.
_DROPPED = {
    # xdist
    "-n": True, "--numprocesses": True, "--maxprocesses": True, "--dist": True, "--max-worker-restart": True,
    "--tx": True, "--rsyncdir": True, "--rsyncignore": True, "--maxschedchunk": True,
    # cov
    "--cov": "?", "--cov-report": True, "--cov-config": True, "--cov-fail-under": True, "--cov-context": True,
    "--cov-precision": True, "--cov-branch": False, "--cov-append": False, "--cov-reset": False,
    "--no-cov": False, "--no-cov-on-fail": False,
    # randomly, sugar
    "--randomly-seed": True, "--randomly-dont-reset-seed": False, "--randomly-dont-reorganize": False,
    "--force-sugar": False, "--old-summary": False,
    # cacheprovider and stepwise (which needs the cache)
    "--lf": False, "--last-failed": False, "--ff": False, "--failed-first": False, "--nf": False,
    "--new-first": False, "--cache-show": "?", "--cache-clear": False, "--lfnf": True,
    "--last-failed-no-failures": True, "--sw": False, "--stepwise": False, "--sw-skip": False,
    "--stepwise-skip": False, "--sw-reset": False, "--stepwise-reset": False,
    # a debugger in a measured run would wait for a terminal that is not there
    "--pdb": False, "--pdbcls": True, "--trace": False,
    # codspeed: Bolt turns it on for counts only
    "--codspeed": False, "--codspeed-mode": True, "--codspeed-warmup-time": True, "--codspeed-max-time": True,
    "--codspeed-max-rounds": True, "--codspeed-profile-folder": True,
}
# pytest-benchmark options that would skip the benchmarks, write files or replace Bolt's JSON.
_BENCHMARK_DROPPED = {
    "--benchmark-skip": False, "--benchmark-disable": False, "--benchmark-only": False,
    "--benchmark-autosave": False, "--benchmark-save": True, "--benchmark-save-data": False,
    "--benchmark-json": True, "--benchmark-compare": "?", "--benchmark-compare-fail": True,
    "--benchmark-histogram": "?", "--benchmark-cprofile": True, "--benchmark-cprofile-loops": True,
    "--benchmark-cprofile-top": True, "--benchmark-cprofile-dump": "?", "--benchmark-storage": True,
}
# Every pytest-benchmark option taking a value: under callgrind all of them are dropped.
_BENCHMARK_VALUES = {"--benchmark-min-time", "--benchmark-max-time", "--benchmark-min-rounds", "--benchmark-timer",
                     "--benchmark-calibration-precision", "--benchmark-warmup-iterations", "--benchmark-sort",
                     "--benchmark-group-by", "--benchmark-columns", "--benchmark-name", "--benchmark-netrc",
                     "--benchmark-time-unit"}


def pytest_args(user_args: Sequence[str], *, plugin: str | None = None, bolt_flags: Sequence[str] = (),
                targets: Sequence[str] = (), benchmark_options: bool = True) -> list[str]:
    """Everything after `pytest` for one measured pass: what to run, Bolt's isolation, its plugin and
    flags, then the user's arguments without what fights measurement.

    `benchmark_options=False` (counts: pytest-codspeed owns the `benchmark` fixture) drops every
    `--benchmark-*` option of the user; otherwise only those that skip, save or redirect the benchmarks.
    """
    kept, _ = clean(user_args, benchmark_options=benchmark_options)
    return [*targets, *ISOLATION, *(["-p", plugin] if plugin else []), *bolt_flags, *kept]


def deselect(names: Sequence[str]) -> list[str]:
    """`--deselect` for each stage: a pass leaves them out without naming what it runs (a node id missing on
    one side is a pytest usage error there)."""
    return [arg for name in names for arg in ("--deselect", name)]


def clean(user_args: Sequence[str], *, benchmark_options: bool = True) -> tuple[list[str], list[str]]:
    """(kept, dropped): the user's pytest arguments split into what a measured pass keeps and ignores."""
    kept: list[str] = []
    dropped: list[str] = []
    args = [str(a) for a in user_args]
    i = 0
    while i < len(args):
        arg = args[i]
        taken = _consumed(arg, args[i + 1] if i + 1 < len(args) else None, benchmark_options)
        if taken:
            dropped.append(" ".join(args[i:i + taken]))
            i += taken
        else:
            kept.append(arg)
            i += 1
    return kept, dropped


def _consumed(arg: str, following: str | None, benchmark_options: bool) -> int:
    """How many words (this one and maybe its value) to drop; 0 keeps it."""
    if arg in ("-p", "--plugin") or arg.startswith("-p") and not arg.startswith("--"):
        name = following if arg in ("-p", "--plugin") else arg[2:].lstrip("=")
        if name is not None and name.removeprefix("no:") in _CONTROLLED_PLUGINS:
            return 2 if arg in ("-p", "--plugin") else 1
        return 0
    if arg in ("-o", "--override-ini") and following is not None and following.startswith("addopts="):
        return 2
    if arg.startswith("--override-ini=addopts=") or arg.startswith("-oaddopts="):
        return 1
    if re.fullmatch(r"-n.+", arg):  # -n0, -nauto, -n=4
        return 1
    name, has_value = arg.split("=", 1)[0], "=" in arg
    takes = _DROPPED.get(name)
    if takes is None and name.startswith("--benchmark-"):
        takes = _BENCHMARK_DROPPED.get(name)
        if takes is None and not benchmark_options:
            takes = name in _BENCHMARK_VALUES
    if takes is None:
        return 0
    if has_value or takes is False or following is None:
        return 1
    if takes == "?" and following.startswith("-"):
        return 1
    return 2
