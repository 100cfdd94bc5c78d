"""How Bolt's client talks HTTP to GitHub: its options, retries within a wait budget, failures as one-line errors."""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from github import BadCredentialsException, GithubException, GithubRetry, RateLimitExceededException
from urllib3 import Retry

from bolt_bot.errors import PublishError
from bolt_bot.github.answers import WaitBudget

DEFAULT_API_URL = "https://api.github.com"
READ_ONLY_MESSAGE = "Resource not accessible by integration"


class ReadOnlyToken(PublishError):
    """The token may read but not write (a pull request from a fork): keep the results for a second workflow."""


@dataclass
class ClientOptions:
    """How patient and how polite the client is; tests set the throttles to 0 and the waits short."""

    base_url: str = DEFAULT_API_URL
    seconds_between_requests: float = 0.25
    seconds_between_writes: float = 1.0
    retries: int = 3  # total, for idempotent requests (never POST: see create_comment)
    backoff: float = 0.5
    timeout: float = 20.0
    max_rate_wait: float = 60.0  # the longest Bolt waits for a rate limit to lift, each time
    max_total_wait: float = 300.0  # the longest one command waits for GitHub in all
    max_pages: int = 30  # of 100 items each: a listing whose next page never ends stops here

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ClientOptions:
        """GITHUB_API_URL (GitHub Enterprise: https://HOST/api/v3), and BOLT_GITHUB_* for tests and slow servers."""
        options = cls(base_url=(environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"))
        for name, attr in (
            ("BOLT_GITHUB_SECONDS_BETWEEN_REQUESTS", "seconds_between_requests"),
            ("BOLT_GITHUB_SECONDS_BETWEEN_WRITES", "seconds_between_writes"),
            ("BOLT_GITHUB_RETRIES", "retries"),
            ("BOLT_GITHUB_BACKOFF", "backoff"),
            ("BOLT_GITHUB_TIMEOUT", "timeout"),
            ("BOLT_GITHUB_MAX_RATE_WAIT", "max_rate_wait"),
            ("BOLT_GITHUB_MAX_TOTAL_WAIT", "max_total_wait"),
            ("BOLT_GITHUB_MAX_PAGES", "max_pages"),
        ):
            value = environ.get(name, "").strip()
            if value:
                kind = type(getattr(options, attr))
                try:
                    setattr(options, attr, kind(float(value)) if kind is int else kind(value))
                except ValueError:
                    raise PublishError(f"{name} must be a number, not {value!r}", exit_code=2) from None
        return options


def retry_policy(options: ClientOptions, budget: WaitBudget):
    """GithubRetry without POST: a 5xx after the server created a comment must not create a second one.

    Every wait it makes (backoff, Retry-After, a rate limit's reset) is taken from `budget` first."""
    class BudgetedRetry(GithubRetry):
        def __init__(self, *args: Any, budget: WaitBudget, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.budget = budget

        def new(self, **kw: Any):
            kw["budget"] = self.budget
            return super().new(**kw)

        def sleep(self, response: Any = None) -> None:
            planned = self.get_retry_after(response) if response is not None and self.respect_retry_after_header \
                else None
            self.budget.spend(self.get_backoff_time() if planned is None else planned)
            super().sleep(response)

    kwargs: dict[str, Any] = {
        "total": options.retries,
        "backoff_factor": options.backoff,
        # PATCH and PUT are idempotent (editing a comment, replacing labels): safe to repeat.
        "allowed_methods": (Retry.DEFAULT_ALLOWED_METHODS | {"GET", "PATCH"}) - {"POST"},
        "secondary_rate_wait": options.max_rate_wait,
        "max_rate_limit_wait": options.max_rate_wait,
    }
    # urllib3 >= 2.6 caps Retry-After itself; older ones would sleep whatever the server says.
    if "retry_after_max" in inspect.signature(Retry.__init__).parameters:
        kwargs["retry_after_max"] = max(int(options.max_rate_wait), 0)
    return BudgetedRetry(budget=budget, **kwargs)


def quiet_loggers() -> None:
    """PyGithub's and urllib3's retry logs ("Retrying after 3600 seconds") would add lines of their own to
    Bolt's one line per failure, and say waits Bolt does not make: they go nowhere."""
    for name in ("github", "urllib3"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # PyGithub adds one to stderr when imported
                logger.removeHandler(handler)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.propagate = False


# ---------------------------------------------------------------------------------------------------------
# errors


def _message(exc: Any) -> str:
    data = getattr(exc, "data", None)
    if isinstance(data, dict) and data.get("message"):
        text = str(data["message"])
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict) and errors[0].get("message"):
            text += f" ({errors[0]['message']})"
        return text
    if isinstance(data, bytes):  # GithubRetry hands over a 403's body as it came
        data = data.decode("utf-8", "replace")
    text = " ".join(str(data or exc).split())
    # A proxy's error page would fill the one line
    return "(an HTML page)" if text.lstrip("{'\" ").lower().startswith(("<!doctype", "<html")) else text[:300]


def _rate_wait(headers: Mapping[str, str] | None, now: float) -> float:
    """Seconds until a rate limit lifts, from Retry-After or X-RateLimit-Reset (60 s when neither says)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    value = headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    reset = headers.get("x-ratelimit-reset", "").strip()
    if reset.isdigit():
        return max(float(reset) - now, 0.0) + 1.0
    return 60.0


def translate(exc: BaseException, what: str, options: ClientOptions | None = None) -> PublishError | None:
    """The one-line PublishError for a PyGithub/requests failure, or None when it is not one of theirs.

    The error carries `retriable` (the outcome is unknown or temporary) and `wait` (seconds to wait first)."""
    options = options or ClientOptions()
    retriable, wait, answered = False, 0.0, True
    if isinstance(exc, BadCredentialsException):
        error: PublishError = PublishError(
            f"GitHub rejected the token (401 Bad credentials) while {what}: check the token (the Action's "
            "github-token input; at the CLI, the variable --token-env names)")
    elif isinstance(exc, RateLimitExceededException):
        wait = _rate_wait(exc.headers, time.time())
        retriable = wait <= options.max_rate_wait
        error = PublishError(f"GitHub's rate limit stopped Bolt while {what}: {_message(exc)} "
                             f"(lifts in about {wait:.0f} s)")
    elif isinstance(exc, GithubException):
        status = exc.status
        message = _message(exc)
        if status == 403 and READ_ONLY_MESSAGE in message:
            error = ReadOnlyToken(f"the token is read-only ({status} {message}) while {what}")
        elif status == 429 or (status == 403 and "rate limit" in message.lower()):
            wait = _rate_wait(exc.headers, time.time())
            retriable = wait <= options.max_rate_wait
            error = PublishError(f"GitHub's rate limit stopped Bolt while {what}: {status} {message}")
        elif status == 404:
            error = PublishError(f"GitHub answered 404 Not Found while {what} "
                                 "(a wrong repository or number, or a token without access)")
        else:
            retriable = status is not None and status >= 500
            error = PublishError(f"GitHub answered {status} while {what}: {message}")
    elif isinstance(exc, requests.exceptions.RetryError):
        reason = getattr(getattr(exc.args[0] if exc.args else None, "reason", None), "args", None)
        detail = str(reason[0]) if reason else str(exc)
        retriable = True
        if "too many 403" in detail or "too many 429" in detail:  # GithubRetry waited within the bound, in vain
            error = PublishError(f"GitHub's rate limit stopped Bolt while {what}: still limited after "
                                 f"{options.retries} waits of at most {options.max_rate_wait:.0f} s")
        else:
            error = PublishError(f"GitHub kept failing while {what} (gave up after {options.retries} retries: {detail})")
    elif isinstance(exc, requests.exceptions.Timeout):
        retriable = True
        # A connect timeout never reached GitHub; a read timeout may have been acted upon (see create_comment).
        answered = isinstance(exc, requests.exceptions.ConnectTimeout)
        error = PublishError(f"GitHub did not answer within {options.timeout:.0f} s while {what}")
    elif isinstance(exc, requests.exceptions.ConnectionError):
        retriable = True
        error = PublishError(f"cannot reach GitHub at {options.base_url} while {what}: {type(exc).__name__}")
    else:
        return None
    error.retriable = retriable  # type: ignore[attr-defined]
    error.wait = wait  # type: ignore[attr-defined]
    error.answered = answered  # type: ignore[attr-defined]  # False: the request may still be acted upon
    return error


@contextlib.contextmanager
def calling(what: str, options: ClientOptions | None = None) -> Iterator[None]:
    """Turn PyGithub and requests failures inside the block into one-line PublishErrors about `what`."""
    try:
        yield
    except PublishError:
        raise
    except Exception as exc:
        error = translate(exc, what, options)
        if error is None:
            raise
        raise error from None
