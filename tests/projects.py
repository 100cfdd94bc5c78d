"""Small measured projects for the tests: a pipeline package whose cost per stage is set in one dict."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import commit, git, make_repo

_MODULE = '''"""A pipeline whose cost per stage is set in WORK."""

WORK = {work!r}


def _spin(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _strings(n):
    return "".join(sorted(str(i) for i in range(n)))
'''
_STAGE = '''

def {name}():
    return {kernel}(WORK[{name!r}])
'''
_BENCHES = '''import pytest
import minipipe


@pytest.mark.parametrize("stage", {names!r})
def test_stage(benchmark, stage):
    benchmark(getattr(minipipe, stage))
'''
_PYPROJECT = '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "minipipe"
version = "0"

[tool.setuptools]
py-modules = ["minipipe"]
'''


def pipeline_module(work: dict[str, int], strings: tuple[str, ...] = ()) -> str:
    """Stage functions named after the keys of `work`: a CPU loop, or string work for those in `strings`."""
    body = _MODULE.format(work=work)
    for name in work:
        body += _STAGE.format(name=name, kernel="_strings" if name in strings else "_spin")
    return body


def pipeline_files(work: dict[str, int], *, strings: tuple[str, ...] = (), tool_bolt: str = "") -> dict[str, str]:
    """The whole project: package, benchmarks in bench/, pyproject.toml (with `tool_bolt` appended)."""
    return {
        "pyproject.toml": _PYPROJECT + tool_bolt,
        "minipipe.py": pipeline_module(work, strings),
        "bench/test_bench.py": _BENCHES.format(names=list(work)),
    }


def pipeline_repo(where: Path, base_work: dict[str, int], head_work: dict[str, int], *, branch: str | None = None,
                  **kw) -> tuple[Path, str, str]:
    """A real repository: the base commit on main, and a head commit with `head_work` (on `branch` if given;
    the same sha when nothing changes)."""
    strings = kw.get("strings", ())
    repo = make_repo(where, pipeline_files(base_work, **kw))
    base = git(repo, "rev-parse", "HEAD")
    if head_work == base_work:
        return repo, base, base
    if branch:
        git(repo, "checkout", "--quiet", "-b", branch)
    return repo, base, commit(repo, {"minipipe.py": pipeline_module(head_work, strings)}, "head")
