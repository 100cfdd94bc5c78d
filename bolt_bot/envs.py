"""One virtual environment per side, made with uv (or venv + pip), reused while its inputs stay the same.

The dependencies are cached, keyed by a hash of everything that decides them (the project's dependency
files, extras, install command, Python, Bolt's own additions). The project itself is reinstalled from the
side's checkout on every run, so base and head each measure their own code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.errors import BoltError
from bolt_bot.sandbox import side_environ

DEPENDENCY_FILES = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "requirements-dev.txt",
                    "requirements-test.txt", "requirements/test.txt", "requirements/dev.txt")
BENCH_REQUIREMENTS = ("pytest", "pytest-benchmark")
ENV_MARKER = "bolt-env.json"


@dataclass
class EnvSpec:
    """Everything that decides what goes into a side's environment."""

    python: str | None = None  # "3.11", a path, or None for the interpreter running Bolt
    extras: list[str] = field(default_factory=list)
    install: str | None = None  # a custom install command, run in the checkout
    requirements: list[str] = field(default_factory=lambda: list(BENCH_REQUIREMENTS))

    def key(self, checkout: Path) -> str:
        files = {}
        for name in DEPENDENCY_FILES:
            path = checkout / name
            if path.is_file():
                files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        payload = json.dumps(
            {"python": self.python or sys.version, "extras": sorted(self.extras), "install": self.install,
             "requirements": sorted(self.requirements), "files": files, "uv": _uv_version()},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Env:
    path: Path
    python: Path
    reused: bool = False

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = side_environ(self.python)  # an allow-list: the install command runs PR code
        env["VIRTUAL_ENV"] = str(self.path)
        env.update(extra or {})
        return env


def uv_binary() -> str | None:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def _uv_version() -> str:
    uv = uv_binary()
    if not uv:
        return "none"
    try:
        return subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def cache_root() -> Path:
    base = os.environ.get("BOLT_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bolt")
    return Path(base) / "envs"


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 1800) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise BoltError(f"{what}: {exc.filename} not found") from None
    except subprocess.TimeoutExpired:
        raise BoltError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        raise BoltError(f"{what} failed: {lines[-1].strip() if lines else f'exit code {proc.returncode}'}")


def _installable(checkout: Path) -> bool:
    return (checkout / "pyproject.toml").is_file() or (checkout / "setup.py").is_file()


def _project_requirement(checkout: Path, extras: list[str]) -> list[str]:
    """Editable, so profiles and tracebacks name files in the checkout (paths relative to the repository)."""
    return ["-e", f"{checkout}[{','.join(extras)}]" if extras else str(checkout)]


def prepare(checkout: Path, spec: EnvSpec, side: str, root: Path | None = None) -> Env:
    """An environment for `checkout`: dependencies cached by `spec.key`, the project reinstalled fresh."""
    root = root or cache_root()
    key = spec.key(checkout)
    path = root / f"{key}-{side}"
    python = path / "bin" / "python"
    marker = path / ENV_MARKER
    uv = uv_binary()
    reused = python.exists() and marker.is_file() and json.loads(marker.read_text() or "{}").get("key") == key
    if not reused:
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        interpreter = spec.python or sys.executable
        if uv:
            _run([uv, "venv", "--quiet", "--seed", "--python", interpreter, str(path)], f"creating the {side} environment")
        else:
            _run([interpreter if spec.python and "/" in spec.python else sys.executable, "-m", "venv", str(path)],
                 f"creating the {side} environment")
    env = Env(path=path, python=python, reused=reused)
    install = _pip(uv, python)
    if spec.install:
        _run(["bash", "-c", spec.install], f"install command for {side} ({spec.install})", cwd=checkout, env=env.environ())
        if not reused:
            _run([*install, *spec.requirements], f"installing {', '.join(spec.requirements)} for {side}", env=env.environ())
    elif not reused:
        reqs = _project_requirement(checkout, spec.extras) if _installable(checkout) else []
        _run([*install, *reqs, *spec.requirements], f"installing the {side} project", cwd=checkout, env=env.environ())
    elif _installable(checkout):
        # Dependencies are cached; the project's own code must be this side's.
        _run([*install, "--no-deps", "--reinstall" if uv else "--force-reinstall", *_project_requirement(checkout, spec.extras)],
             f"reinstalling the {side} project", cwd=checkout, env=env.environ())
    marker.write_text(json.dumps({"key": key, "side": side}))
    return env


def _pip(uv: str | None, python: Path) -> list[str]:
    if uv:
        return [uv, "pip", "install", "--quiet", "--python", str(python)]
    return [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
