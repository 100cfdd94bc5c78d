"""The one exception type for errors a user can cause, and Bolt's exit codes."""

from __future__ import annotations

# Exit codes (documented in README.md; other code and people rely on them).
EXIT_OK = 0
EXIT_REGRESSION = 1  # a blocking regression, when asked to fail on one
EXIT_BAD_INPUT = 2  # bad input or usage: broken file, missing commit, failing suite setup...
EXIT_PUBLISH = 3  # measuring worked, publishing to GitHub failed (results are on disk)
EXIT_INTERNAL = 4  # a bug in Bolt: please report it


class BoltError(Exception):
    """An error the user can fix; printed as one line, never as a traceback."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:  # one line, always
        return " ".join(str(self.args[0]).split())


class PublishError(BoltError):
    """GitHub refused or failed a request; what was measured is already on disk."""

    exit_code = EXIT_PUBLISH
