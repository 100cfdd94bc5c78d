"""Which interpreter a side's environment is made from (the python setting, .python-version, Bolt's own), and probing it."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bolt_bot.errors import BoltError


@dataclass
class PythonChoice:
    """The interpreter an environment is made from, and why that one."""

    request: str | None  # "3.11", "cpython@3.12", a path; None: the interpreter running Bolt
    source: str  # "python setting", ".python-version" or "Bolt's interpreter"
    executable: str  # what `uv venv --python` / venv is given
    version: str  # "CPython 3.11.7", or "" when not found yet (uv may download it)

    def why(self) -> str:
        return {"python setting": f"asked for with python = {self.request}",
                ".python-version": f"from the checkout's .python-version ({self.request})"}.get(self.source, "Bolt's own interpreter")


def choose_python(checkout: Path, asked: str | None, uv: str | None) -> PythonChoice:
    """The `python` setting, else the checkout's `.python-version`, else the interpreter running Bolt."""
    if asked:
        request, source = asked, "python setting"
    elif declared := _python_version_file(checkout):
        request, source = declared, ".python-version"
    else:
        return PythonChoice(None, "Bolt's interpreter", sys.executable, f"{platform.python_implementation()} {platform.python_version()}")
    executable = find_python(request, uv, checkout)
    if executable is None and not uv:
        where = "python setting" if source == "python setting" else "checkout's .python-version"
        raise BoltError(f"no Python {request} found (asked for by the {where}); install it, or pass --python")
    # Not found by uv: `uv venv --python` may still download it, and names the problem if it cannot.
    return PythonChoice(request, source, executable or request, interpreter_version(executable) if executable else "")


def _python_version_file(checkout: Path) -> str | None:
    try:
        lines = (checkout / ".python-version").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return next((line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")), None)


def find_python(request: str, uv: str | None, checkout: Path) -> str | None:
    """The interpreter for a request such as "3.12" or a path, as uv would pick it in `checkout`; None: not found."""
    if os.sep in request:
        return request if os.access(request, os.X_OK) else None
    if uv:
        try:
            # From the checkout, as the install command's uv would look (pyenv's shims follow .python-version).
            proc = subprocess.run([uv, "python", "find", request], capture_output=True, text=True, timeout=60, cwd=checkout,
                                  env={k: v for k, v in os.environ.items() if k != "UV_PYTHON"})
        except (OSError, subprocess.TimeoutExpired):
            return None
        return (proc.stdout.strip() or None) if proc.returncode == 0 else None
    version = re.fullmatch(r"(?:python|cpython@?)?(\d+\.\d+)(?:\.\d+)?", request)
    return shutil.which(f"python{version.group(1)}") if version else shutil.which(request)


_PROBE = """
import importlib.util, platform, sys
print(platform.python_implementation(), platform.python_version())
print(" ".join(name for name in sys.argv[1:] if importlib.util.find_spec(name) is None))
"""


def interpreter_version(python: str | Path) -> str:
    return probe(python)[0]


def probe(python: str | Path, modules: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """The interpreter's "CPython 3.11.7", and which of `modules` it cannot import."""
    try:
        proc = subprocess.run([str(python), "-c", _PROBE, *modules], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "", list(modules)
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not lines:
        return "", list(modules)
    return lines[0].strip(), (lines[1].split() if len(lines) > 1 else [])
