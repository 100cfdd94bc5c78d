"""Progress output: a bar on a terminal, log groups in GitHub Actions, plain lines elsewhere (all on stderr)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

import click

from bolt_bot.words import visible


class Progress:
    """What a long step reports; quiet=True for tests and library use."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.actions = os.environ.get("GITHUB_ACTIONS") == "true"
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty() and not self.actions
        self._bar = None

    def note(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"bolt: {visible(message)}", file=self.stream)

    def warn(self, message: str) -> None:
        if self.quiet:
            return
        if self.actions:
            click.echo(f"::warning title=Bolt::{visible(message)}", file=sys.stdout)
        else:
            click.echo(f"bolt: warning: {visible(message)}", file=self.stream)

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        """A foldable log group in Actions; a heading elsewhere."""
        started = time.monotonic()
        if self.actions and not self.quiet:
            click.echo(f"::group::{title}", file=sys.stdout)
        else:
            self.note(title)
        try:
            yield
        finally:
            if self.actions and not self.quiet:
                click.echo("::endgroup::", file=sys.stdout)
            elif not self.quiet:
                self.note(f"{title}: done in {time.monotonic() - started:.1f} s")

    @contextlib.contextmanager
    def bar(self, total: int, label: str) -> Iterator["Progress"]:
        if self.tty and not self.quiet:
            with click.progressbar(length=total, label=label, file=self.stream, show_eta=True) as bar:
                self._bar = bar
                try:
                    yield self
                finally:
                    self._bar = None
        else:
            yield self

    def step(self, message: str, amount: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(amount)
        elif not self.quiet:
            self.note(message)
