"""Bolt's words outside the report come from templates that a project may override one by one."""

from __future__ import annotations

from bolt_bot.report import messages, state
from bolt_bot.settings import Settings


def test_replies_and_the_approval_section_are_overridable_templates(tmp_path):
    (tmp_path / "help.md.j2").write_text("Ask {{ approval_label }} for help.\n")
    (tmp_path / "approval.md.j2").write_text("{% if approval %}OK by {{ approval.user | inert }}{% endif %}\n")
    settings = Settings(template_dir=str(tmp_path), approval_label="speed-ok")
    assert messages.help_text(settings) == "Ask speed-ok for help.\n"
    # the reply that includes the help picks up the override too; the others stay Bolt's own
    assert messages.reply("unknown-command", settings, name="x").endswith("Ask speed-ok for help.")
    assert messages.reply("no-reason", settings, user="bob").startswith("@bob, please say why")
    body = messages.with_block("<!-- bolt:comment -->\n### ⚡ 1 stage slower\n\ntable\n",
                               {"approval": {"user": "@team"}}, settings, needed=True)
    assert f"{state.BLOCK_START}\nOK by &#64;\u2060team\n\n{state.BLOCK_END}" in body


def test_the_approval_section_neutralises_what_people_wrote():
    approval = {"user": "maintainer", "sha": "a" * 40, "reason": "<img src=x> @org/team see #12", "via": "comment"}
    text = messages.approval_block({"approval": approval, "verdict": "regressed", "regressed": {"t": 1.1}}, Settings(),
                                   needed=True)
    assert text.startswith("✅ **Approved** by maintainer for `aaaaaaa`: ")
    assert "<img" not in text and "@org" not in text and "#12" not in text
    waiting = messages.approval_block({"verdict": "regressed", "regressed": {"t": 1.1},
                                       "approval_note": "cleared <b>now</b>"}, Settings(), needed=True)
    assert waiting.startswith("⚠️ **Approval cleared**: cleared &lt;b&gt;now&lt;/b&gt;.\n\n⏳ This regression needs")
    assert messages.approval_block({"verdict": "unchanged"}, Settings(), needed=False) == ""
