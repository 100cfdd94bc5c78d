"""The README's quickstart, run as written: a fresh virtual environment, an empty folder, the README's own text."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    """The commands of the README's quickstart code block, without their trailing comments."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", section, re.S)
    assert block, "the README's quickstart has no code block"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(line.split(" #", 1)[0].strip())
    return commands


def test_the_second_command_is_what_ci_runs():
    """The test suite is not run from inside itself; it must be the command CI's entry point runs."""
    _, tests = quickstart_commands()
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    runs = [line.split(None, 1)[1] for line in script.splitlines() if line.startswith("exec ")]
    assert len(runs) == 1, script
    readme_words, ci_words = shlex.split(tests), shlex.split(runs[0])
    # CI may add pytest arguments after it (options only), nothing else.
    assert ci_words[: len(readme_words)] == readme_words, (tests, runs[0])
    assert all(word.startswith("-") or ci_words[i - 1].startswith("-")
               for i, word in enumerate(ci_words) if i >= len(readme_words)), runs[0]


@pytest.mark.slow
def test_first_command_in_a_fresh_environment_from_an_empty_folder(tmp_path):
    first, _ = quickstart_commands()
    # The README says "." because it is run from the repository; here the repository is elsewhere.
    assert re.search(r"\bpip install \.(?=\s|$)", first), first
    command = re.sub(r"\bpip install \.(?=\s|$)", f"pip install {shlex.quote(str(ROOT))}", first, count=1)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "BOLT_WALL_SIZES")}
    env.update(VIRTUAL_ENV=str(env_dir), PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(["bash", "-c", command], cwd=empty, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    # The text view (the default, a pipe too): the stage table, plain; the markdown comment is in the file.
    shown = proc.stdout[proc.stdout.index("⚡ "):]  # after pip's own output
    assert shown.startswith("⚡ 1 stage slower") and "1 faster" in shown.splitlines()[0], shown
    rows = {line.split()[0]: line.split()[1] for line in shown.splitlines() if "::test_" in line.split(" ", 1)[0]}
    assert [name for name, verdict in rows.items() if verdict == "regressed"] == [
        "benchmarks/test_pipeline.py::test_parse"], shown
    assert [name for name, verdict in rows.items() if verdict == "improved"] == [
        "benchmarks/test_pipeline.py::test_aggregate"], shown
    assert "&#" not in shown and "```mermaid" not in shown
    assert (empty / "bolt-demo" / "comment.md").read_text(encoding="utf-8").startswith("<!-- bolt:comment -->")
    # The results landed in the folder the user was in, and the installed `bolt` was the one that ran.
    assert (empty / "bolt-demo" / "results.json").is_file()
    assert Path(sys.executable).parent != env_dir / "bin"
    assert (env_dir / "bin" / "bolt").is_file()
