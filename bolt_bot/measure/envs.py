"""One virtual environment per side, made with uv (or venv + pip), reused while its inputs stay the same.

The cache key covers everything that can change what is installed: the project's dependency and lock
files, the files the install command names, the Python, Bolt's own pinned packages, extras, the install
command and uv's version. Bolt's packages are installed after the project's on every run, new or reused
environment, because an install command such as `uv sync` removes whatever its lock does not name.

Each environment has a lock file, held while it is prepared and for as long as the run uses it: a second
run with the same key takes the next free slot (`KEY-side~1`, ...) instead of rebuilding or deleting the
first run's environment, and waits only when every slot is busy.

The Python is deliberate: `--python` (the `python` setting) when given, else the checkout's
`.python-version`, else the interpreter running Bolt. The install command runs with `UV_PYTHON` and
`UV_PROJECT_ENVIRONMENT` pointing at the environment so `uv sync` keeps that Python and installs into
Bolt's environment; if the command replaces the Python anyway, the run says so (`Env.notices`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.errors import BoltError
from bolt_bot.measure.pythons import PythonChoice, choose_python, interpreter_version, probe
from bolt_bot.measure.sandbox import clean_environ

DEPENDENCY_FILES = ("pyproject.toml", "setup.py", "setup.cfg", ".python-version", "uv.lock", "poetry.lock",
                    "pdm.lock", "Pipfile", "Pipfile.lock")
DEPENDENCY_GLOBS = ("requirements*.txt", "requirements*.in", "requirements/*.txt", "requirements/*.in",
                    "constraints*.txt")
BENCH_REQUIREMENTS = ("pytest", "pytest-benchmark")
ENV_MARKER = "bolt-env.json"
KEY_SCHEMA = 2  # bump when the key's meaning changes, so older environments are not taken for new ones
SLOTS = 4  # environments per key and side: parallel runs on one machine build side by side
# pip/uv options whose value is a file (given as `-r FILE`, `-rFILE` or `--requirement=FILE`).
_FILE_OPTIONS = re.compile(r"^(-r|-c|--requirements?|--constraints?|--overrides?|--build-constraints?)(=?)(.*)$")
_IMPORT_NAMES = {"pytest": "pytest", "pytest-benchmark": "pytest_benchmark", "pytest-codspeed": "pytest_codspeed"}


@dataclass
class EnvSpec:
    """Everything that decides what goes into a side's environment."""

    python: str | None = None  # "3.11", a path, or None: the checkout's .python-version, else Bolt's interpreter
    extras: list[str] = field(default_factory=list)
    install: str | None = None  # a custom install command, run in the checkout
    requirements: list[str] = field(default_factory=lambda: list(BENCH_REQUIREMENTS))

    def key(self, checkout: Path, python: PythonChoice | None = None) -> str:
        python = python or choose_python(checkout, self.python, uv_binary())
        files = {name: hashlib.sha256((checkout / name).read_bytes()).hexdigest()
                 for name in dependency_files(checkout, self.install)}
        payload = json.dumps(
            {"schema": KEY_SCHEMA, "python": [python.source, python.request, python.version],
             "extras": sorted(self.extras), "install": self.install, "requirements": sorted(self.requirements),
             "files": files, "uv": _uv_version(), "platform": sys.platform},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Env:
    """A prepared environment, locked for this run until `release` (or the end of a `with` block)."""

    path: Path
    python: Path
    reused: bool = False
    python_note: str = ""  # "CPython 3.11.7, from the checkout's .python-version (3.11)", for the log
    python_version: str = "?"  # "3.11.7", as the measured interpreter reported it
    notices: list[str] = field(default_factory=list)  # what the run's comment must say (a replaced Python)
    lock_fd: int | None = field(default=None, repr=False)

    def environ(self, extra: dict[str, str] | None = None, path_after: tuple[str, ...] = ()) -> dict[str, str]:
        env = clean_environ()  # an allow-list: the install command and the rounds run PR code
        env["VIRTUAL_ENV"] = str(self.path)
        env["PATH"] = os.pathsep.join([str(self.python.parent), *path_after, env.get("PATH", "")])
        env.update(extra or {})
        return env

    def install_environ(self) -> dict[str, str]:
        """What the install command runs with: uv aimed at this environment and its Python, and Bolt's uv
        next on PATH (a pyenv shim named `uv` refuses to run under a `.python-version` it lacks)."""
        uv = uv_binary()
        return self.environ({"UV_PROJECT_ENVIRONMENT": str(self.path), "UV_PYTHON": str(self.python)},
                            path_after=(str(Path(uv).parent),) if uv else ())

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing the descriptor drops the flock
            self.lock_fd = None

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


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


def dependency_files(checkout: Path, install: str | None = None) -> list[str]:
    """Paths (relative to the checkout) of every file that can change what gets installed: the usual
    dependency and lock files, the files the install command names, and the files those name in turn."""
    found = [name for name in DEPENDENCY_FILES if (checkout / name).is_file()]
    for pattern in DEPENDENCY_GLOBS:
        found += sorted(p.relative_to(checkout).as_posix() for p in checkout.glob(pattern) if p.is_file())
    found += _named_in_command(checkout, install or "")
    queue, seen = list(dict.fromkeys(found)), set()
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if name.endswith((".txt", ".in")):
            queue += _named_in_requirements(checkout, name)
    return sorted(seen)


def _inside(checkout: Path, base: Path, value: str) -> str | None:
    """`value` as a path relative to the checkout, when it names a file inside it."""
    if not value or value.startswith(("-", "$")):
        return None
    try:
        path = (base / value).resolve()
        root = checkout.resolve()
        return path.relative_to(root).as_posix() if path.is_file() else None
    except (OSError, ValueError):
        return None


def _named_in_command(checkout: Path, command: str) -> list[str]:
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:  # unbalanced quotes: the shell will say so; the key still covers the command's text
        tokens = command.split()
    names = []
    for token in tokens:
        candidates = [token]
        option = _FILE_OPTIONS.match(token)
        if option and option.group(3):
            candidates.append(option.group(3))
        names += [name for value in candidates if (name := _inside(checkout, checkout, value))]
    return names


def _named_in_requirements(checkout: Path, name: str) -> list[str]:
    """The files a requirements file pulls in with -r/-c lines, relative to its own folder."""
    path = checkout / name
    names = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return names
    for line in lines:
        parts = line.split("#", 1)[0].split()
        option = _FILE_OPTIONS.match(parts[0]) if parts else None
        if option:
            value = option.group(3) or (parts[1] if len(parts) > 1 else "")
            if found := _inside(checkout, path.parent, value):
                names.append(found)
    return names


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


def _claim(root: Path, name: str) -> tuple[Path, int]:
    """The first free slot for `name`, locked; waits for the first slot when every one is in use."""
    root.mkdir(parents=True, exist_ok=True)
    names = [name, *(f"{name}~{slot}" for slot in range(1, SLOTS))]
    for slot_name in names:
        fd = os.open(root / f"{slot_name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return root / slot_name, fd
        except BlockingIOError:
            os.close(fd)
    fd = os.open(root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return root / name, fd


def _marker_key(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def _distributions(path: Path) -> set[str]:
    """What is installed in the environment, by name (a new one holds only its seed packages)."""
    found = set()
    for site in path.glob("lib*/*/site-packages"):
        found.update(p.name for p in site.iterdir() if p.suffix in (".dist-info", ".egg-info", ".egg-link", ".pth"))
    return found


def prepare(checkout: Path, spec: EnvSpec, side: str, root: Path | None = None) -> Env:
    """An environment for `checkout`, locked for this run: `with prepare(...) as env:`, or `env.release()`."""
    root = root or cache_root()
    uv = uv_binary()
    choice = choose_python(checkout, spec.python, uv)
    key = spec.key(checkout, choice)
    path, lock_fd = _claim(root, f"{key}-{side}")
    env = Env(path=path, python=path / "bin" / "python", lock_fd=lock_fd)
    try:
        _fill(env, checkout, spec, side, key, choice, uv)
    except BaseException:
        env.release()
        raise
    return env


def _fill(env: Env, checkout: Path, spec: EnvSpec, side: str, key: str, choice: PythonChoice, uv: str | None) -> None:
    """Create or reuse `env` (whose lock this run holds), run the installs, check the result."""
    path, python, marker = env.path, env.python, env.path / ENV_MARKER
    env.reused = python.exists() and _marker_key(marker) == key
    if env.reused:
        marker.unlink()  # an install that fails half-way leaves an environment the next run rebuilds
    else:
        shutil.rmtree(path, ignore_errors=True)  # a half-built one of ours: nobody else holds its lock
        if uv:
            _run([uv, "venv", "--quiet", "--seed", "--python", choice.executable, str(path)], f"creating the {side} environment")
        else:
            _run([choice.executable, "-m", "venv", str(path)], f"creating the {side} environment")
    before = interpreter_version(python)
    pip = _pip(uv, python)
    bolt_packages = f"installing Bolt's packages ({', '.join(spec.requirements)}) for {side}"
    if spec.install:
        seen = _distributions(path)
        _run(["bash", "-c", spec.install], f"install command for {side} ({spec.install})", cwd=checkout,
             env=env.install_environ())
        # Nothing new in Bolt's environment and a virtual environment of its own in the checkout: the
        # command installed elsewhere (uv sync without UV_PROJECT_ENVIRONMENT, a `python -m venv .venv`).
        # A command that installs nothing at all (`true`, a project without dependencies) is fine.
        stray = _stray_environments(checkout)
        if not env.reused and stray and _distributions(path) == seen:
            raise BoltError(_misdirected(env, stray))
        _run([*pip, *spec.requirements], bolt_packages, env=env.environ())
    elif not env.reused:
        reqs = _project_requirement(checkout, spec.extras) if _installable(checkout) else []
        _run([*pip, *reqs, *spec.requirements], f"installing the {side} project", cwd=checkout, env=env.environ())
    else:
        if _installable(checkout):  # dependencies are cached; the project's own code must be this side's
            _run([*pip, "--no-deps", "--reinstall" if uv else "--force-reinstall", *_project_requirement(checkout, spec.extras)],
                 f"reinstalling the {side} project", cwd=checkout, env=env.environ())
        _run([*pip, *spec.requirements], bolt_packages, env=env.environ())
    modules = [_IMPORT_NAMES[name] for name in map(_dist_name, spec.requirements) if name in _IMPORT_NAMES]
    after, missing = probe(python, tuple(modules))
    if not after:
        raise BoltError(f"the {side} environment's python ({python}) no longer runs after the install")
    if missing:
        raise BoltError(f"{', '.join(missing)} cannot be imported in Bolt's {side} environment ({path}) after the install")
    env.python_note = f"{after}, {choice.why()}"
    env.python_version = after.split()[-1]
    if before and after != before:
        env.notices.append(f"the install command replaced the Python of the {side} environment: Bolt made it with {before} "
                           f"({choice.why()}), the {side} side was measured with {after}")
    marker.write_text(json.dumps({"key": key, "side": side, "python": after, "requirements": spec.requirements}))


def _dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _stray_environments(checkout: Path) -> list[str]:
    return sorted(str(p.parent) for p in list(checkout.glob("pyvenv.cfg")) + list(checkout.glob("*/pyvenv.cfg")))


def _misdirected(env: Env, elsewhere: list[str]) -> str:
    where = f"; it made {', '.join(elsewhere)} instead"
    return (f"the install command did not install into Bolt's environment (VIRTUAL_ENV={env.path}): nothing new is "
            f"installed there{where}. Install into $VIRTUAL_ENV, e.g. `uv sync --frozen` (Bolt sets "
            "UV_PROJECT_ENVIRONMENT), `uv pip install -r requirements.txt` or `pip install -r requirements.txt`")


def _pip(uv: str | None, python: Path) -> list[str]:
    if uv:
        return [uv, "pip", "install", "--quiet", "--python", str(python)]
    return [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]


def compile_bytecode(python: Path, checkout: Path) -> None:
    """Write bytecode caches first: the first run after a checkout differs from the next ones."""
    try:
        subprocess.run([str(python), "-m", "compileall", "-q", "-x", r"/\.git/", str(checkout)],
                       capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass  # only a warm-up: the measurements still work without it
