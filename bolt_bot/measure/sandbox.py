"""The environment every measured process starts from: an allow-list, so no token or secret reaches PR code.

The measured processes (the install command, wall-time rounds, discovery, instruction counts, profiles)
run the project's code, which on a pull request is untrusted. They get only the variables named here,
never a token: not `GITHUB_TOKEN`, no `ACTIONS_*` (the runtime token and cache URLs), no `INPUT_*` (the
Action's inputs, `INPUT_GITHUB-TOKEN` among them), whatever the caller asked to pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

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
