"""The runner's side of a step: workflow commands (notices, annotations), the job summary and step outputs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TextIO

from bolt_bot.decide.gate import regression_text
from bolt_bot.model import Results


def escape_data(text: str) -> str:
    """A workflow command's message: `%`, CR and LF encoded, so PR-controlled text stays on one command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also `:` and `,`, which end a value."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotate(results: Results, stdout: TextIO) -> None:
    """One ::warning per regressed stage, on the benchmark's file when the name says which. Written before any
    GitHub call, so before any approval is known: an approval shows in the status and the comment."""
    for stage in sorted(results.regressions, key=lambda s: -(s.ratio or 1.0)):
        title, message = regression_text(stage)
        props = [f"title={escape_property(title)}"]
        path = stage.name.split("::", 1)[0]
        if "::" in stage.name and path.endswith(".py") and not path.startswith("/") and ".." not in path.split("/"):
            props.insert(0, f"file={escape_property(path)}")
        print(f"::warning {','.join(props)}::{escape_data(message)}", file=stdout)


def append_summary(environ: Mapping[str, str], text: str) -> None:
    path = environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")


def write_outputs(environ: Mapping[str, str], values: Mapping[str, str]) -> None:
    """Append step outputs with the runner's delimiter syntax, safe for any value (several lines too)."""
    path = environ.get("GITHUB_OUTPUT")
    if not path:
        return
    lines = []
    for name, value in values.items():
        delimiter = f"ghadelimiter_{uuid.uuid4()}"
        while delimiter in value:  # never, in practice: a fresh uuid
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
        lines.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(lines))


def notice(text: str, stdout: TextIO, title: str = "Bolt", command: str = "notice") -> None:
    """One ::notice (or ::warning) line, whatever the text holds (several lines, PR-controlled names)."""
    print(f"::{command} title={escape_property(title)}::{escape_data(' '.join(str(text).split()))}", file=stdout)
