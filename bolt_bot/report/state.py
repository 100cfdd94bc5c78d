"""The sticky comment's protocol: marker, hidden state line and approval section, read and rewritten in a body."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

COMMENT_LIMIT = 65_536  # GitHub's limit on an issue comment body, in characters
MARKER = "<!-- bolt:comment -->"
STATE_PREFIX = "<!-- bolt:state "
STATE_SUFFIX = " -->"
STATE_VERSION = 1
STATE_NAME_LIMIT = 80
STATE_STAGES_LIMIT = 100
# The approval section sits between these, so a command can rewrite it in place without the results (which
# live in the measuring job's artifact, not in the comment).
BLOCK_START = "<!-- bolt:approval -->"
BLOCK_END = "<!-- /bolt:approval -->"


def state_comment(state: Mapping[str, Any]) -> str:
    """The hidden state as one HTML comment line; "--" would end the comment early, so it is escaped."""
    data = json.dumps(dict(state), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    data = data.replace("--", "\\u002d\\u002d")
    return f"{STATE_PREFIX}{data}{STATE_SUFFIX}"


def state_name(name: str) -> str:
    """A stage's key in the comment's hidden state: short enough that hundreds fit, still unique."""
    if len(name) <= STATE_NAME_LIMIT:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{name[: STATE_NAME_LIMIT - 14]}~{digest}"


def read_state(comment_body: str) -> dict[str, Any] | None:
    """The hidden state stored in a Bolt comment (approvals, head sha), or None."""
    start = comment_body.find(STATE_PREFIX)
    if start < 0:
        return None
    end = comment_body.find(STATE_SUFFIX, start + len(STATE_PREFIX))
    if end < 0:
        return None
    try:
        data = json.loads(comment_body[start + len(STATE_PREFIX) : end])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def replace_state(body: str, state: Mapping[str, Any]) -> str:
    """`body` with its hidden state line replaced (inserted under the marker when missing)."""
    start = body.find(STATE_PREFIX)
    end = body.find(STATE_SUFFIX, start + len(STATE_PREFIX)) if start >= 0 else -1
    line = state_comment(state)
    if start < 0 or end < 0:
        marker = body.find(MARKER)
        at = marker + len(MARKER) + 1 if marker >= 0 else 0
        return body[:at] + line + "\n" + body[at:]
    return body[:start] + line + body[end + len(STATE_SUFFIX):]


def replace_block(body: str, text: str) -> str:
    """`body` with its approval section holding `text` (inserted when missing), within the size limit."""
    section = f"{BLOCK_START}\n" + (f"{text}\n\n" if text else "") + BLOCK_END
    start = body.find(BLOCK_START)
    end = body.find(BLOCK_END, start + 1) if start >= 0 else -1
    if start >= 0 and end >= 0:
        new = body[:start] + section + body[end + len(BLOCK_END):]
    else:
        # First time (templates leave the section to this function): under the verdict heading, else at the top.
        match = re.search(r"^### .*\n(?:[ \t]*\n)*", body, re.MULTILINE)
        at = match.end() if match else _after_hidden_lines(body)
        new = body[:at] + section + "\n\n" + body[at:]
    return _fit(new)


def _after_hidden_lines(body: str) -> int:
    at = 0
    for line in body.splitlines(keepends=True):
        if not line.startswith("<!--"):
            break
        at += len(line)
    return at


_TABLE_ROW = re.compile(r"^\| \S+ \| .*\n", re.MULTILINE)


def _fit(body: str) -> str:
    """Within GitHub's size limit: a comment rendered right up to it loses rows from its last table."""
    while len(body) > COMMENT_LIMIT:
        rows = [m for m in _TABLE_ROW.finditer(body) if not m.group(0).startswith("| | ")]
        if not rows:
            break
        last = rows[-1]
        body = body[:last.start()] + body[last.end():]
    return body
