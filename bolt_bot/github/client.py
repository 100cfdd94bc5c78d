"""Every call Bolt makes to GitHub (PyGithub 2.x), as methods of one Client for one repository."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from github import Auth, Github, GithubException

from bolt_bot.errors import PublishError
from bolt_bot.github.answers import AnswerChecks, WaitBudget
from bolt_bot.github.transport import ClientOptions, ReadOnlyToken, calling, quiet_loggers, retry_policy
from bolt_bot.report.state import MARKER
from bolt_bot.report.textfilter import short_description

STATUS_CONTEXT = "bolt/performance"
# Whom an Actions GITHUB_TOKEN writes as; it may not read GET /user ("Resource not accessible by integration").
ACTIONS_BOT = "github-actions[bot]"
__all__ = ["ACTIONS_BOT", "STATUS_CONTEXT", "Client", "ClientOptions", "ReadOnlyToken", "calling"]


def checks_hint(message: str) -> str:
    """A refused check-run write, with what fixes it."""
    return (f"{message} (check runs need the job's GITHUB_TOKEN or a GitHub App token with `checks: write`; "
            "a personal token cannot write them: set report to status)")


class Client:
    """One repository on GitHub through PyGithub, with the options that made it (for messages and waits)."""

    def __init__(self, token: str, repository: str, options: ClientOptions | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if not token:
            raise PublishError("no GitHub token: give the github-token input (or set GITHUB_TOKEN)")
        self.options = options or ClientOptions()
        self.repository = repository
        self._sleep = sleep
        self.budget = WaitBudget(self.options.max_total_wait)
        quiet_loggers()
        self.installation_token = token.startswith("ghs_")  # an App's, or the job's: no GET /user (see whoami)
        # lazy: get_repo/get_issue/get_commit make no request until something is read or written.
        self.github = Github(
            base_url=self.options.base_url,
            auth=Auth.Token(token),
            timeout=int(max(self.options.timeout, 1)),
            retry=retry_policy(self.options, self.budget),
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

    def permission(self, login: str) -> str:
        """admin | write | read | none (maintain is reported as write, triage as read)."""
        with calling(f"reading the permission of {login}", self.options):
            return self.repo.get_collaborator_permission(login)

    def role(self, login: str) -> str:
        """The permission, or "none" for a login GitHub does not know (404): never from author_association."""
        try:
            return self.permission(login)
        except PublishError as exc:
            if "404" in str(exc):
                return "none"
            raise

    def labels(self, number: int) -> list[str]:
        with calling(f"reading the labels of #{number}", self.options):
            return [label.name for label in self.repo.get_issue(number).get_labels()]

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

    def add_label(self, number: int, name: str) -> None:
        issue = self.repo.get_issue(number)
        # Adding a label twice is harmless: one more try after an unclear failure.
        self._post_twice(f"adding the label {name!r} to #{number}", lambda: issue.add_to_labels(name))

    def remove_label(self, number: int, name: str) -> bool:
        """Remove if present; False when it was not there."""
        issue = self.repo.get_issue(number)
        with calling(f"removing the label {name!r} from #{number}", self.options):
            try:
                issue.remove_from_labels(name)
            except GithubException as exc:
                if exc.status == 404:  # "Label does not exist": nothing to remove
                    return False
                raise
        return True

    # ------------------------------------------------------------------ check runs (GitHub Apps only)

    def app_slug(self) -> str:
        """The App whose check runs are Bolt's: the login Bolt writes as, without "[bot]" (github-actions for
        the job's GITHUB_TOKEN, "<slug>" for an App configured with bot-login)."""
        return self.whoami().lower().removesuffix("[bot]")

    def own_check_runs(self, sha: str, name: str) -> list:
        """Check runs called `name` on `sha` written by Bolt's App, newest first; anyone else's are not Bolt's."""
        slug = self.app_slug()
        with calling(f"listing the {name} check runs of {sha[:7]}", self.options):
            runs = list(self.repo.get_commit(sha).get_check_runs(check_name=name, filter="all"))
        found = [r for r in runs if r.name == name and r.head_sha == sha
                 and str(getattr(r.app, "slug", "") or "").lower() == slug]
        return sorted(found, key=lambda r: -r.id)

    def create_check_run(self, sha: str, name: str, **fields: Any):
        """POST once; after a failure whose outcome is unknown, look for Bolt's check run before posting again
        (a second POST would make a second check run), and write the same fields to the one found."""
        what = f"creating the {name} check run on {sha[:7]}"
        try:
            with calling(what, self.options):
                return self.repo.create_check_run(name, sha, **fields)
        except ReadOnlyToken as exc:
            raise ReadOnlyToken(checks_hint(str(exc))) from None
        except PublishError as first:
            if "You must authenticate via a GitHub App" in str(first):
                raise PublishError(checks_hint(str(first))) from None
            self._before_second_attempt(first)
            answered = getattr(first, "answered", True)
        for look in range(1 if answered else 3):
            if look:
                self.sleep(min(self.options.timeout, 2.0))
            existing = self.own_check_runs(sha, name)
            if existing:
                return self.update_check_run(existing[0], **fields)
        if not answered:
            raise PublishError(f"GitHub did not answer while {what}, and the check run has not appeared since; "
                               "not posting it again, which could make a second one: run the job again")
        with calling(what + " (second attempt)", self.options):
            return self.repo.create_check_run(name, sha, **fields)

    def update_check_run(self, run, **fields: Any):
        """PATCH (retried on 5xx: writing the same status twice is harmless; a batch of annotations could
        be appended twice, see docs/reliability.md)."""
        try:
            with calling(f"updating the {run.name} check run {run.id}", self.options):
                run.edit(**fields)
                return run
        except ReadOnlyToken as exc:
            raise ReadOnlyToken(checks_hint(str(exc))) from None

    def react(self, number: int, comment_id: int, content: str) -> None:
        with calling(f"reacting to comment {comment_id}", self.options):
            self.repo.get_issue(number).get_comment(int(comment_id)).create_reaction(content)

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
        with calling(f"deleting comment {comment.id}", self.options):
            try:
                comment.delete()
            except GithubException as exc:
                if exc.status == 404:
                    return False
                raise
        return True
