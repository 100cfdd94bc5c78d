"""The environment of every measured process, built here only: an allow-list, so no token or secret reaches PR code.

The measured processes (the install command, wall-time rounds, discovery, instruction counts, profiles)
run the project's code, which on a pull request is untrusted. They get only the variables named here,
never a token: not `GITHUB_TOKEN`, no `ACTIONS_*` (the runtime token and cache URLs), no `INPUT_*` (the
Action's inputs, `INPUT_GITHUB-TOKEN` among them), whatever the caller asked to pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from bolt_bot.measure.probe import PROBE_DIR  # measured() puts it on PYTHONPATH

# What a build or a test suite legitimately needs: where programs are, who and where we are, the locale,
# a temporary folder, the registries and proxies an install command reaches (their URLs, which may carry
# credentials for a private index: those are the project's own, and the install needs them).
ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR", "TEMP", "TMP",
    "CI", "NO_COLOR", "FORCE_COLOR", "COLUMNS",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_CONSTRAINT",
    "UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_CACHE_DIR",
    "UV_OFFLINE", "UV_NO_CACHE", "UV_PYTHON_INSTALL_DIR", "UV_PYTHON_DOWNLOADS", "UV_NATIVE_TLS",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "BOLT_CACHE_DIR",
    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
})
ALLOWED_PREFIXES = ("LC_", "GIT_CONFIG_")  # GIT_CONFIG_*: safe.directory in the container
# Never passed, even when a user names them in `pass_env`: these are how a job's token reaches a process.
FORBIDDEN = re.compile(r"^(GITHUB_TOKEN|GH_TOKEN|ACTIONS_.*|INPUT_.*|.*TOKEN.*|.*SECRET.*|.*PASSWORD.*)$", re.I)


def forbidden(name: str) -> bool:
    """True for a variable that may hold a token or secret and so never reaches measured code."""
    return bool(FORBIDDEN.match(name))


def clean_environ(source: Mapping[str, str] | None = None, pass_env: Iterable[str] = ()) -> dict[str, str]:
    """The allow-listed part of `source` (default: this process's environment), plus the names in
    `pass_env` that are not forbidden."""
    source = os.environ if source is None else source
    wanted = set(pass_env)
    env = {}
    for name, value in source.items():
        if forbidden(name):
            continue
        if name in ALLOWED or name.startswith(ALLOWED_PREFIXES) or name in wanted:
            env[name] = value
    return env


# Variables that change how the interpreter runs (and so what is measured): never taken from outside.
_INTERPRETER = ("PYTHONSTARTUP", "PYTHONHOME", "PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONMALLOC",
                "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "PYTHONINSPECT", "PYTHONBREAKPOINT", "PYTEST_ADDOPTS",
                "PYTEST_PLUGINS", "CODSPEED_ENV", "CODSPEED_RUNNER_MODE", "CODSPEED_PROFILE_FOLDER")


def side_environ(python: Path | None = None, pass_env: Iterable[str] = (),
                 source: Mapping[str, str] | None = None) -> dict[str, str]:
    """A side's environment: the allow-listed variables plus `pass_env`, with `python`'s virtual
    environment activated (its bin folder first on PATH). The install command runs with it, and every
    measured pass starts from it (`measured`)."""
    env = clean_environ(source, pass_env)
    if python is not None:
        python = Path(python)
        env["PATH"] = str(python.parent) + (os.pathsep + env["PATH"] if env.get("PATH") else "")
        if (python.parent.parent / "pyvenv.cfg").exists():
            env["VIRTUAL_ENV"] = str(python.parent.parent)
    return env


def measured(side: Mapping[str, str] | None, *, probes: bool = False, events: Path | None = None,
             codspeed_profile: Path | None = None) -> dict[str, str]:
    """The environment of one measured process, from its side's environment (`side_environ`; None:
    built from this process's environment without a virtual environment).

    The same for every pass: a fixed hash seed, the default allocator, bytecode caches written, nothing
    that alters the interpreter, Bolt's probe plugins importable. `probes` turns the round plugin's
    speed probes on and `events` names its event file (wall-time rounds); `codspeed_profile` switches
    pytest-codspeed on (instruction counts), which any other pass must not have. Counts load their own
    probe plugin, which takes its folder out of sys.path again: a path more moved a stage's count between runs.
    """
    env = {k: v for k, v in (side if side is not None else side_environ()).items() if not forbidden(k)}
    for name in _INTERPRETER:
        env.pop(name, None)
    env["PYTHONHASHSEED"] = "0"  # hash randomisation moves timings and counts between processes
    # A PYTHONPATH the user passed on purpose (`pass_env`) stays, after Bolt's probe plugins.
    env["PYTHONPATH"] = str(PROBE_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if probes:
        env["BOLT_SPEED_PROBE"] = "1"  # the round plugin times a fixed loop around each stage (speedgate.py)
    if events is not None:
        env["BOLT_ROUND_EVENTS"] = str(events)
    if codspeed_profile is not None:
        env["CODSPEED_ENV"] = "bolt"
        env["CODSPEED_PROFILE_FOLDER"] = str(codspeed_profile)
    return env
