"""Everything that talks to GitHub (PyGithub 2.x): the client, small calls, and failures as one-line PublishErrors."""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bolt_bot.errors import PublishError
from bolt_bot.github.answers import AnswerChecks, WaitBudget
from bolt_bot.report.render import MARKER

DEFAULT_API_URL = "https://api.github.com"
STATUS_CONTEXT = "bolt/performance"
STATUS_DESCRIPTION_LIMIT = 140  # GitHub answers 422 above this
READ_ONLY_MESSAGE = "Resource not accessible by integration"
# Whom an Actions GITHUB_TOKEN writes as; it may not read GET /user ("Resource not accessible by integration").
ACTIONS_BOT = "github-actions[bot]"


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


def _retry(options: ClientOptions, budget: WaitBudget):
    """GithubRetry without POST: a 5xx after the server created a comment must not create a second one.

    Every wait it makes (backoff, Retry-After, a rate limit's reset) is taken from `budget` first."""
    from github import GithubRetry
    from urllib3 import Retry

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


def _quiet_loggers() -> None:
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


class Client:
    """One repository on GitHub through PyGithub, with the options that made it (for messages and waits)."""

    def __init__(self, token: str, repository: str, options: ClientOptions | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        from github import Auth, Github

        if not token:
            raise PublishError("no GitHub token: give the github-token input (or set GITHUB_TOKEN)")
        self.options = options or ClientOptions()
        self.repository = repository
        self._sleep = sleep
        self.budget = WaitBudget(self.options.max_total_wait)
        _quiet_loggers()
        self.installation_token = token.startswith("ghs_")  # an App's, or the job's: no GET /user (see whoami)
        # lazy: get_repo/get_issue/get_commit make no request until something is read or written.
        self.github = Github(
            base_url=self.options.base_url,
            auth=Auth.Token(token),
            timeout=int(max(self.options.timeout, 1)),
            retry=_retry(self.options, self.budget),
            seconds_between_requests=self.options.seconds_between_requests,
            seconds_between_writes=self.options.seconds_between_writes,
            per_page=100,
            lazy=True,
        )
        # Every answer is checked before PyGithub builds objects from it (see bolt_bot.github.answers).
        AnswerChecks(self.options.base_url, self.options.max_pages).install(self.github.requester)
        self.repo = self.github.get_repo(repository)

    def sleep(self, seconds: float) -> None:
        """Bolt's own waits count against the same bound as PyGithub's."""
        self.budget.spend(seconds)
        self._sleep(seconds)

    # ------------------------------------------------------------------ reads

    def pull(self, number: int):
        with calling(f"reading pull request #{number}", self.options):
            pull = self.repo.get_pull(number)
            _ = pull.head.sha  # lazily fetched objects load here, inside the error mapping
            return pull

    def head_sha(self, number: int) -> str:
        return self.pull(number).head.sha

    def workflow_run(self, run_id: int):
        with calling(f"reading workflow run {run_id}", self.options):
            run = self.repo.get_workflow_run(run_id)
            _ = run.head_sha
            return run

    def permission(self, login: str) -> str:
        """admin | write | read | none (maintain is reported as write, triage as read)."""
        with calling(f"reading the permission of {login}", self.options):
            return self.repo.get_collaborator_permission(login)

    def find_comment(self, number: int):
        """Bolt's comment on the PR: the oldest with the marker written by the identity Bolt writes as."""
        return (self.own_comments(number) or [None])[0]

    # ------------------------------------------------------------------ writes

    def create_comment(self, number: int, body: str):
        """POST once; after a failure whose outcome is unknown, look for the comment before posting again."""
        issue = self.repo.get_issue(number)
        what = f"creating the comment on #{number}"
        try:
            with calling(what, self.options):
                return issue.create_comment(body)
        except ReadOnlyToken:
            raise
        except PublishError as first:
            self._before_second_attempt(first)
            answered = getattr(first, "answered", True)
        # The server may have created it before failing (5xx, timeout): never post a duplicate.
        # Without an answer (a timeout) it may still be creating it: look a few times, never post again.
        for look in range(1 if answered else 3):
            if look:
                self.sleep(min(self.options.timeout, 2.0))
            existing = self.find_comment(number)
            if existing is not None:
                if existing.body != body:
                    self.edit_comment(existing, body)
                return existing
        if not answered:
            raise PublishError(f"GitHub did not answer while {what}, and the comment has not appeared since; "
                               "not posting it again, which could make a second one: run the job again")
        with calling(what + " (second attempt)", self.options):
            return issue.create_comment(body)

    def edit_comment(self, comment, body: str):
        with calling(f"editing comment {comment.id}", self.options):
            comment.edit(body)
            return comment

    def set_status(self, sha: str, state: str, description: str, target_url: str | None = None,
                   context: str = STATUS_CONTEXT):
        description = short_description(description)
        kwargs: dict[str, Any] = {"description": description, "context": context}
        if target_url:
            kwargs["target_url"] = target_url
        commit = self.repo.get_commit(sha)
        # A repeated status is harmless (the latest per context wins), so one more try after an unclear failure.
        return self._post_twice(f"setting the {context} status on {sha[:7]}",
                                lambda: commit.create_status(state, **kwargs))

    def create_check_run(self, sha: str, name: str, conclusion: str, title: str, summary: str):
        """Only GitHub App tokens (the Actions GITHUB_TOKEN with checks: write) may; 403 otherwise."""
        with calling(f"creating the {name} check run on {sha[:7]}", self.options):
            return self.repo.create_check_run(name, sha, status="completed", conclusion=conclusion,
                                              output={"title": title[:255], "summary": summary[:65_535]})

    def add_label(self, number: int, name: str) -> None:
        issue = self.repo.get_issue(number)
        # Adding a label twice is harmless: one more try after an unclear failure.
        self._post_twice(f"adding the label {name!r} to #{number}", lambda: issue.add_to_labels(name))

    def remove_label(self, number: int, name: str) -> bool:
        """Remove if present; False when it was not there."""
        from github import GithubException

        issue = self.repo.get_issue(number)
        with calling(f"removing the label {name!r} from #{number}", self.options):
            try:
                issue.remove_from_labels(name)
            except GithubException as exc:
                if exc.status == 404:  # "Label does not exist": nothing to remove
                    return False
                raise
        return True

    def _before_second_attempt(self, error: PublishError) -> None:
        """Re-raise unless a second attempt may help; wait first when GitHub said how long."""
        if not getattr(error, "retriable", False):
            raise error
        wait = getattr(error, "wait", 0.0)
        if wait:
            self.sleep(min(wait, self.options.max_rate_wait))

    def _post_twice(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            with calling(what, self.options):
                return call()
        except ReadOnlyToken:
            raise
        except PublishError as first:
            self._before_second_attempt(first)
        with calling(what + " (second attempt)", self.options):
            return call()

    # ------------------------------------------------------------------ Bolt's own comments, by who wrote them

    bot_login: str | None = None  # configured (a GitHub App's "<slug>[bot]"); else asked of the API

    def whoami(self) -> str:
        """The login Bolt writes as: configured, else GET /user (a personal token), else the Actions bot.

        An installation token (ghs_: the job's GITHUB_TOKEN, or a GitHub App's) gets 403 on GET /user; it is
        taken for the job's, github-actions[bot]: another App's "<slug>[bot]" must be configured."""
        if self.bot_login:
            return self.bot_login
        if getattr(self, "installation_token", False):
            return ACTIONS_BOT
        if getattr(self, "_login", None) is None:
            try:
                with calling("asking GitHub whom the token belongs to", self.options):
                    self._login = self.github.get_user().login
            except ReadOnlyToken:  # 403 "Resource not accessible by integration": an App/Actions token
                self._login = ACTIONS_BOT
        return self._login

    def list_comments(self, number: int) -> list:
        with calling(f"listing the comments of #{number}", self.options):
            return list(self.repo.get_issue(number).get_comments())

    def own_comments(self, number: int) -> list:
        """Comments with Bolt's marker written by the identity Bolt writes as, oldest first. Anyone can paste
        the marker and a made-up state (approvals!); a role in the repository (author_association) proves nothing."""
        me = self.whoami().lower()
        found = [c for c in self.list_comments(number)
                 if MARKER in (c.body or "") and str(getattr(c.user, "login", "")).lower() == me]
        return sorted(found, key=lambda c: (c.created_at, c.id))

    def post_comment(self, number: int, body: str):
        """POST once, no fallback: for replies, which must never edit the report instead."""
        with calling(f"replying on #{number}", self.options):
            return self.repo.get_issue(number).create_comment(body)

    def delete_comment(self, comment) -> bool:
        """Delete; False when it was already gone (another run deleted it first)."""
        from github import GithubException

        with calling(f"deleting comment {comment.id}", self.options):
            try:
                comment.delete()
            except GithubException as exc:
                if exc.status == 404:
                    return False
                raise
        return True


def short_description(text: str) -> str:
    """One line of at most 140 characters, cut at a word with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= STATUS_DESCRIPTION_LIMIT:
        return text
    cut = text[: STATUS_DESCRIPTION_LIMIT - 1]
    if " " in cut[STATUS_DESCRIPTION_LIMIT // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut + "…"


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
    import requests
    from github import (
        BadCredentialsException,
        GithubException,
        RateLimitExceededException,
    )

    options = options or ClientOptions()
    retriable, wait, answered = False, 0.0, True
    if isinstance(exc, BadCredentialsException):
        error: PublishError = PublishError(
            f"GitHub rejected the token (401 Bad credentials) while {what}: check the github-token input")
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
