"""Click's usage errors as one line, like Bolt's other errors: `bolt: error: ... (see bolt run --help)`."""

from __future__ import annotations

import click


class OneLineUsageError(click.UsageError):
    """A usage error as one line, like Bolt's other errors, instead of click's usage block, hint and message:
    `bolt: error: no such option '--nope' (see bolt run --help)`. Exit code 2, as click's."""

    def __init__(self, error: click.UsageError, command_path: str | None = None):
        # format_message, not .message: a missing option or a bad value builds its text from its parameter.
        super().__init__(error.format_message(), error.ctx)
        self.command_path = error.ctx.command_path if error.ctx is not None else command_path

    def show(self, file=None) -> None:
        click.echo(usage_line(self.message, self.command_path), file=file, err=file is None)


def usage_line(message: str, command_path: str | None) -> str:
    message = " ".join(message.split()).rstrip(".").replace(". Did you mean", "; did you mean")
    if message[:1].isupper() and message[1:2].islower():  # click's sentences start upper-case; Bolt's lines do not
        message = message[0].lower() + message[1:]
    where = f" (see {command_path} --help)" if command_path else ""
    return f"bolt: error: {message}{where}"


def one_line(error: click.UsageError, command_path: str | None = None) -> click.UsageError:
    """`bolt` alone still prints the help (click's NoArgsIsHelpError is a usage error too)."""
    if isinstance(error, (click.exceptions.NoArgsIsHelpError, OneLineUsageError)):
        return error
    return OneLineUsageError(error, command_path)
