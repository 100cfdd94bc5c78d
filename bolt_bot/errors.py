"""The one exception type for errors a user can cause, and Bolt's exit codes."""

from __future__ import annotations

# Exit codes (documented in README.md; other code and people rely on them).
EXIT_OK = 0
EXIT_REGRESSION = 1  # the gate failed, when asked for one: an unapproved regression, or a `failed` run
EXIT_BAD_INPUT = 2  # bad input or usage: broken file, missing commit, a suite that measured nothing...
EXIT_PUBLISH = 3  # measuring worked, publishing to GitHub failed (results are on disk)
EXIT_INTERNAL = 4  # a bug in Bolt: please report it


# The run verdict that means "nothing trustworthy was measured" (model.FAILED; model imports this module).
_FAILED_VERDICT = "failed"


def run_exit_code(verdict: str, blocking_regression: bool, fail_on_regression: bool) -> int:
    """The exit code of a finished measurement, once results.json is on disk.

    A `failed` run (nothing measured, every stage failed, or a stage failed on head and none regressed) is never a
    success: it fails the gate like a regression when one is asked for (a gate that measured nothing cannot
    vouch for the change), and is otherwise bad input, since its cause is the suite, the paths or the
    arguments it was given.
    """
    if verdict == _FAILED_VERDICT:
        return EXIT_REGRESSION if fail_on_regression else EXIT_BAD_INPUT
    if fail_on_regression and blocking_regression:
        return EXIT_REGRESSION
    return EXIT_OK


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
