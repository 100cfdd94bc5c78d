"""The README's and docs' claims, checked mechanically: flags, Action inputs, links, [tool.bolt] examples, LICENSE."""

from __future__ import annotations

import dataclasses
import glob
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import click
from click.testing import CliRunner
from ruamel.yaml import YAML

from bolt_bot.cli import main, overrides_from
from bolt_bot.github import events
from bolt_bot.settings import APPROVERS, COMMENT_MODES, MEASURES, MEMORY_MODES, REPORT_MODES, WALLTIME_ENGINES, Settings
from tests.container import input_env_name, load_action

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = [*DOCS, ROOT / "benchmarks" / "README.md"]
GITHUB = ROOT / "bolt_bot" / "github"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)
# Repository paths written in backticks, e.g. `docs/measurement.md`: they must exist too.
REPO_PATH = re.compile(r"^(?:docs|bolt_bot|benchmarks|tests|examples|templates|\.ci)/[\w./-]*\w"
                       r"\.(?:md|py|yml|json|patch|j2|toml)$")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(body: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", body)


def blocks(body: str, *langs: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(body) if not langs or m.group(1) in langs]


# ------------------------------------------------------------------------------------------------ flags


def command_options() -> dict[str, set[str]]:
    """`bolt <command>` → every option string it accepts, from click's own objects."""
    ctx = click.Context(main)
    options: dict[str, set[str]] = {}
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        options[name] = {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        options[name] |= {"-h", "--help"}
    return options


def documented_invocations() -> list[tuple[str, str, str]]:
    """(file, command, rest of the line) for every `bolt <command> ...` in a code span or a code block line
    (not `/bolt approve`: a comment command, not the CLI)."""
    found = []
    for path in DOCS:
        body = text(path)
        lines = [m.group(1) for m in SPAN.finditer(prose(body))]
        lines += [line for block in blocks(body) for line in block.splitlines()]
        for line in lines:
            for m in re.finditer(r"(?:^|[\s;&|(])bolt ([a-z]+)\b(.*)", line.replace("\\|", "|")):
                found.append((rel(path), m.group(1), m.group(2).split("#")[0]))
    return found


def test_every_documented_bolt_flag_exists():
    options = command_options()
    wrong = []
    seen = 0
    for where, command, rest in documented_invocations():
        if command not in options:
            wrong.append(f"{where}: bolt {command} is no command")
            continue
        for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", rest):
            seen += 1
            if flag not in options[command]:
                wrong.append(f"{where}: bolt {command} has no {flag}")
    assert seen > 20  # the parser found the Commands table
    assert not wrong, "\n".join(wrong)


def test_the_documented_compare_example_runs(tmp_path):
    """The README's `bolt compare` example, run as written on five real rounds per side."""
    examples = [line for block in blocks(text(ROOT / "README.md"), "bash", "")
                for line in block.splitlines() if line.startswith("bolt compare ")]
    assert examples, "README.md shows no `bolt compare` example in a code block"
    data = ROOT / "tests" / "data" / "idna"
    for source in data.glob("*-[0-9].json"):
        shutil.copy(source, tmp_path / source.name)
    for example in examples:
        words = shlex.split(example.split(" #")[0])[1:]
        argv = [match for word in words for match in (sorted(glob.glob(str(tmp_path / word))) or [word])]
        result = CliRunner().invoke(main, argv, catch_exceptions=False)
        assert result.exit_code == 0 and "stage" in result.output, (example, result.output)
        as_json = CliRunner().invoke(main, [*argv, "--format", "json"], catch_exceptions=False)
        assert {s["base"]["rounds"] for s in json.loads(as_json.output)["stages"]} == {5}  # every file was read


# ------------------------------------------------------------------------------------------ Action inputs


def declared_inputs() -> dict[str, dict]:
    return load_action()["inputs"]


def documented_inputs() -> dict[str, str]:
    """Input name → where the docs describe it as an input of the Action."""
    found: dict[str, str] = {}
    for path in DOCS:
        body = text(path)
        for block in blocks(body, "yaml"):
            data = YAML(typ="safe", pure=True).load(block)
            # A whole workflow, or just its steps (the README's snippet).
            steps = data if isinstance(data, list) else [
                step for job in (data or {}).get("jobs", {}).values() for step in job.get("steps", [])]
            for step in steps:
                if str(step.get("uses", "")).startswith("OWNER/bolt@"):
                    for name in step.get("with") or {}:
                        found.setdefault(name, f"{rel(path)}: a workflow's with:")
        # A table under a heading about inputs: its first column names inputs.
        for section in re.split(r"^#+ ", prose(body), flags=re.MULTILINE):
            title = section.split("\n", 1)[0]
            if "input" not in title.lower():
                continue
            for row in re.findall(r"^\| *(`[^|]*`[^|]*)\|", section, re.MULTILINE):
                for name in re.findall(r"`([a-z][a-z-]*)`", row):
                    found.setdefault(name, f"{rel(path)}: the table under {title!r}")
        # "The measurement inputs (`threshold`, `rounds`, ...)"
        for listed in re.findall(r"inputs \((`[a-z][a-z-]*`(?:, `[a-z][a-z-]*`)+[^)]*)\)", prose(body)):
            for name in re.findall(r"`([a-z][a-z-]*)`", listed):
                found.setdefault(name, f"{rel(path)}: 'inputs (...)'")
        # "`approvers = "admin"` in `[tool.bolt]` (or the input)"
        for key in re.findall(r"`([a-z][\w-]*) = [^`]*`[^.`]{0,30}(?:`\[tool\.bolt\]`)?[^.`]{0,10}\(or the input\)",
                              prose(body)):
            found.setdefault(key.replace("_", "-"), f"{rel(path)}: '`{key} = ...` (or the input)'")
        for name in re.findall(r"`([a-z][a-z-]*)` input\b", prose(body)):
            found.setdefault(name, f"{rel(path)}: 'the `{name}` input'")
    for row in settings_table_rows():
        if row["input"] != "—":
            for name in re.findall(r"`([a-z][a-z-]*)`", row["input"]):
                found.setdefault(name, "README.md: the settings table")
    return found


def sample_value(name: str):
    """A valid value other than the default for the setting `name` (snake_case), as an input's text."""
    choices = {"measure": MEASURES, "walltime_engine": WALLTIME_ENGINES, "comment": COMMENT_MODES,
               "report": REPORT_MODES, "approvers": APPROVERS, "memory": MEMORY_MODES}
    default = getattr(Settings(), name)
    if name in choices:
        return next(c for c in choices[name] if c != default)
    if isinstance(default, bool):
        return "false" if default else "true"
    if isinstance(default, (int, float)):
        return "0.07" if name == "alpha" else "7"
    if isinstance(default, list):
        return "ALPHA BETA"
    return "something"


def test_every_documented_input_is_declared_in_action_yml_and_read():
    declared = declared_inputs()
    documented = documented_inputs()
    assert {"mode", "threshold", "results-dir"} <= set(documented)  # the parser found the docs' inputs
    missing = {name: where for name, where in documented.items() if name not in declared}
    assert not missing, f"described as Action inputs but not declared in action.yml: {missing}"
    # Read: an input of the action itself is asked for by name; any other one becomes a setting.
    source = "\n".join(text(p) for p in GITHUB.glob("*.py"))
    fields = {f.name for f in dataclasses.fields(Settings)}
    unread = []
    for name in declared:
        if name in events.ACTION_INPUTS:
            if f'input("{name}"' not in source and f'inputs.get("{name}"' not in source:
                unread.append(name)
            continue
        setting = getattr(events, "INPUT_ALIASES", {}).get(name, name).replace("-", "_")
        if setting not in fields:
            unread.append(name)
            continue
        value = sample_value(setting)
        config = events.read_config({"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "o/r",
                                     "GITHUB_WORKSPACE": "/nonexistent", input_env_name(name): value})
        settings = events.project_settings(config)  # what action.py reads, defaults < [tool.bolt] < inputs
        if getattr(settings, setting) == getattr(Settings(), setting):
            unread.append(name)
    assert not unread, f"declared in action.yml but never read by bolt_bot/github: {unread}"


def test_python_version_is_the_input_and_python_still_works():
    declared = declared_inputs()
    assert "python-version" in declared and "python" in declared
    assert "deprecated" in declared["python"]["description"].lower()
    for name in ("python-version", "python"):
        config = events.read_config({"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "o/r",
                                     "GITHUB_WORKSPACE": "/nonexistent", input_env_name(name): "3.12"})
        assert events.project_settings(config).python == "3.12"
    both = events.read_config({"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "o/r", "GITHUB_WORKSPACE": "/nonexistent",
                               "INPUT_PYTHON-VERSION": "3.13", "INPUT_PYTHON": "3.10"})
    assert events.project_settings(both).python == "3.13"


def test_the_action_says_it_runs_on_linux_runners_only():
    assert "linux" in load_action()["description"].lower()
    assert re.search(r"Linux runners? only", text(ROOT / "README.md"))


# ------------------------------------------------------------------------------------------------ links


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).lower()
    title = re.sub(r"[^\w\- ]", "", title.replace("`", ""))
    return title.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(prose(text(path)))}


def test_every_relative_link_and_repository_path_exists():
    broken = []
    for path in LINKED:
        body = prose(text(path))
        for target in LINK.findall(body):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            where = (path.parent / file).resolve() if file else path
            if not where.exists():
                broken.append(f"{rel(path)}: link to {target}: no such file")
            elif anchor and where.suffix == ".md" and anchor not in anchors(where):
                broken.append(f"{rel(path)}: link to {target}: no such heading")
        for span in SPAN.findall(body):
            if REPO_PATH.match(span) and not (ROOT / span).exists() and not (path.parent / span).exists():
                broken.append(f"{rel(path)}: `{span}` does not exist")
    assert not broken, "\n".join(broken)


# ------------------------------------------------------------------------------------- [tool.bolt]


def test_every_tool_bolt_example_parses_with_kebab_case_keys():
    examples = 0
    wrong = []
    for path in DOCS:
        body = text(path)
        for block in blocks(body, "toml"):
            if "[tool.bolt]" not in block:
                continue
            examples += 1
            table = tomllib.loads(block)["tool"]["bolt"]
            Settings().updated(table, f"{rel(path)} [tool.bolt]")  # raises on an unknown key or a bad value
            wrong += [f"{rel(path)}: {key}" for key in table if "_" in key]
        # `key = value` written inline, e.g. `approve-by-review = true`
        for span in SPAN.findall(prose(body)):
            m = re.fullmatch(r"([a-z][\w-]*) = (.+)", span)
            if m and "..." not in span and m.group(1).replace("-", "_") in {f.name for f in dataclasses.fields(Settings)}:
                Settings().updated(tomllib.loads(span), rel(path))
                if "_" in m.group(1):
                    wrong.append(f"{rel(path)}: `{span}`")
    assert examples >= 1
    assert not wrong, f"[tool.bolt] keys are kebab-case: {wrong}"


def settings_table_rows() -> list[dict[str, str]]:
    """The README's table of every [tool.bolt] key: key, default, flag, input, meaning."""
    readme = prose(text(ROOT / "README.md"))
    m = re.search(r"^\| key \| default \| `bolt run` flag \| Action input \| meaning \|\n\|[-| ]+\|\n((?:\|.*\|\n)+)",
                  readme, re.MULTILINE)
    if m is None:
        return []
    rows = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append(dict(zip(("key", "default", "flag", "input", "meaning"), cells)))
    return rows


def default_text(value) -> str:
    """A default as the table writes it: TOML-ish, `—` for none."""
    if value is None or value == []:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def test_the_settings_table_lists_every_key_its_default_flag_and_input():
    rows = settings_table_rows()
    expected = [f.name.replace("_", "-") for f in dataclasses.fields(Settings)]
    listed = [r["key"].strip("`") for r in rows]
    # On a new setting, the message is the row to add (fill in the flag, the input and the meaning).
    missing = "\n".join(f"| `{k}` | {default_text(getattr(Settings(), k.replace('-', '_')))} | — | — | ... |"
                        for k in expected if k not in listed)
    assert listed == expected, f"README.md's settings table must list every Settings key, in order; add:\n{missing}"
    options = command_options()
    declared = declared_inputs()
    for row in rows:
        name = row["key"].strip("`").replace("-", "_")
        assert row["default"] == default_text(getattr(Settings(), name)), row
        for flag in re.findall(r"--[\w-]+", row["flag"]):
            command = "publish" if "publish" in row["flag"] else "run"
            assert flag in options[command], row
        for name_ in re.findall(r"`([a-z][a-z-]*)`", row["input"]):
            assert name_ in declared, row
        # and "—" is true too: no flag, no input of that name
        key = row["key"].strip("`")
        assert row["flag"] != "—" or f"--{key}" not in options["run"], row
        assert row["input"] != "—" or key not in declared, row


# --------------------------------------------------------------------------------------------- LICENSE


def test_license_exists_and_matches_pyproject():
    license_text = ROOT / "LICENSE"
    assert license_text.is_file(), "no LICENSE file"
    declared = tomllib.loads(text(ROOT / "pyproject.toml"))["project"]["license"]
    declared = declared.get("text") if isinstance(declared, dict) else declared
    assert declared == "MIT"
    body = text(license_text)
    assert body.startswith("MIT License") and "Bolt contributors" in body
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in body


def test_the_quickstart_says_which_line_is_for_users_and_which_for_contributors():
    readme = text(ROOT / "README.md")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    lines = [line for block in blocks(quickstart, "bash") for line in block.splitlines() if line.strip()]
    demo = next(line for line in lines if "bolt demo" in line)
    tests = next(line for line in lines if ".ci/test" in line or "pytest" in line)
    assert "user" in demo.split("#", 1)[-1].lower(), demo
    assert "contributor" in tests.split("#", 1)[-1].lower(), tests


def test_the_commands_workflow_is_a_file_with_the_trigger_and_permissions_commands_need():
    """`/bolt approve` is an issue comment; replying, reacting and labelling need `pull-requests: write`, the
    status `statuses: write` (schema and docs/action.md agreement: tests/test_action.py)."""
    path = ROOT / "docs" / "workflows" / "bolt-commands.yml"
    assert path.is_file()
    flow = YAML(typ="safe", pure=True).load(text(path))
    assert flow["on"]["issue_comment"]["types"] == ["created"]
    assert flow["permissions"]["pull-requests"] == flow["permissions"]["statuses"] == "write"
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    assert [s["with"]["mode"] for s in steps if str(s.get("uses", "")).startswith("OWNER/bolt@")] == ["command"]


def test_alpha_and_instr_threshold_are_flags_of_run_and_demo_that_reach_the_settings():
    for name in ("run", "demo"):
        command = main.get_command(click.Context(main), name)
        assert command is not None
        ctx = command.make_context(name, ["--alpha", "0.01", "--instr-threshold", "2.5"])
        kw = {k: v for k, v in ctx.params.items() if k not in ("repo", "base_ref", "head_ref", "out", "quiet",
                                                                "shard_text", "durations")}
        settings = Settings().updated(overrides_from(kw), "options")
        assert (settings.alpha, settings.instr_threshold) == (0.01, 2.5)


def test_the_inputs_the_docs_describe_reach_a_measurement_and_a_command(gh, tmp_path, monkeypatch):
    """Through `bolt action` itself (run_action, the GitHub double): the inputs as the runner spells them."""
    from bolt_bot.github import commands
    from tests.ghdouble.webhooks import load_event
    from tests.test_action import FakeMeasure, pr_event, run, runner_env

    pr = gh.seed_pr()
    (tmp_path / "measure").mkdir()
    (tmp_path / "command").mkdir()
    measure = FakeMeasure(verdict="unchanged")
    given = {"alpha": "0.01", "instr-threshold": "2", "python-version": "3.12", "approvers": "admin",
             "approve-by-review": "true", "budget": "30", "round-timeout": "60", "pass-env": "MY_DATA_DIR"}
    code, _ = run(runner_env(gh, tmp_path / "measure", "pull_request", pr_event(pr), pr.token, **given), measure)
    measured = Settings().updated(measure.requests[0].overrides, "inputs")
    assert code == 0
    assert (measured.alpha, measured.instr_threshold, measured.python, measured.approvers, measured.approve_by_review,
            measured.budget, measured.round_timeout, measured.pass_env) == (
        0.01, 2.0, "3.12", "admin", True, 30.0, 60.0, ["MY_DATA_DIR"])

    seen = []
    monkeypatch.setattr(commands, "handle", lambda request, config, settings, client, **kw: seen.append(settings) or 0)
    event = load_event("issue_comment", "created", repo=pr.repo, number=pr.number, on_pr=True,
                       commenter=pr.maintainer, body="/bolt help")
    code, _ = run(runner_env(gh, tmp_path / "command", "issue_comment", event, pr.token,
                             approvers="admin", **{"approve-by-review": "true", "template-dir": "my-templates"}))
    assert code == 0 and (seen[0].approvers, seen[0].approve_by_review, seen[0].template_dir) == (
        "admin", True, "my-templates")
