"""The measured environment: built in one place from an allow-list; no token or secret reaches any measured pass."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bolt_bot.measure import sandbox
from bolt_bot.cli import main
from bolt_bot.measure.counts import valgrind_available
from tests import projects
from tests.conftest import commit, git, make_repo

SECRETS = {"GITHUB_TOKEN": "ghs_job", "INPUT_GITHUB-TOKEN": "ghs_input", "ACTIONS_RUNTIME_TOKEN": "rt",
           "ACTIONS_CACHE_URL": "https://cache", "DEPLOY_SECRET": "s3cr3t", "GH_TOKEN": "gho", "NPM_PASSWORD": "pw"}


def test_a_side_and_a_pass_get_the_allow_list_plus_pass_env_and_never_a_secret(tmp_path):
    source = {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "AWS_ACCESS_KEY_ID": "AKIA", "MY_VAR": "1",
              "PYTHONSTARTUP": "/evil.py", "PYTEST_ADDOPTS": "-n auto", **SECRETS}
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("")
    python = tmp_path / "venv" / "bin" / "python"
    side = sandbox.side_environ(python, ["MY_VAR", "GITHUB_TOKEN"], source=source)
    assert side["PATH"] == f"{python.parent}:/usr/bin" and side["VIRTUAL_ENV"] == str(tmp_path / "venv")
    assert side["MY_VAR"] == "1" and side["LC_ALL"] == "C.UTF-8"
    assert not set(side) & (set(SECRETS) | {"AWS_ACCESS_KEY_ID", "PYTEST_ADDOPTS"})
    for measured in (sandbox.measured(side, probes=True, events=tmp_path / "ev"),
                     sandbox.measured(side, codspeed_profile=tmp_path / "cs"),
                     sandbox.measured({**side, **SECRETS})):  # even a caller's careless dict loses its secrets
        assert not set(measured) & set(SECRETS) and "PYTHONSTARTUP" not in measured
        assert measured["PYTHONHASHSEED"] == "0"
        assert measured.get("PYTHONPATH") == str(sandbox.PROBE_DIR)  # counts too: their plugin leaves sys.path
        assert measured["MY_VAR"] == "1"
    assert "CODSPEED_ENV" not in sandbox.measured({**side, "CODSPEED_ENV": "x"})


@pytest.mark.parametrize("name", ["GITHUB_TOKEN", "INPUT_GITHUB-TOKEN", "ACTIONS_RUNTIME_TOKEN", "DB_SECRET"])
def test_pass_env_never_names_a_secret(tmp_path, name):
    repo = make_repo(tmp_path / "repo", {"pyproject.toml": f'[tool.bolt]\npass-env = ["LANG", "{name}"]\n'})
    proc = subprocess.run([sys.executable, "-m", "bolt_bot", "run", "--repo", str(repo), "--base", "HEAD"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and name in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "bolt_bot", "profile", "--repo", str(repo), "--pass-env", name],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and name in proc.stderr and "Traceback" not in proc.stderr


# Every measured process imports the benchmark module once and appends its environment to a log
# named by a variable passed with --pass-env; which pass it was is told by what Bolt set for it.
ENV_BENCH = '''import json, os, sys


def _kind():
    if os.environ.get("CODSPEED_ENV"):
        return "counts"
    if "bolt_profile_plugin" in sys.modules:
        return "profile"
    if os.environ.get("BOLT_ROUND_EVENTS"):
        return "round"
    return "other"


with open(os.environ["BOLT_TEST_ENV_LOG"], "a", encoding="utf-8") as _log:
    _log.write(json.dumps({"pass": _kind(), "env": dict(os.environ)}) + "\\n")


def test_nothing(benchmark):
    benchmark(sum, range(10))
'''


@pytest.mark.slow
@pytest.mark.skipif(valgrind_available() is None, reason="valgrind is not installed")
@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_no_secret_reaches_rounds_counts_or_profiles(tmp_path, monkeypatch):
    work = {"ingest": 3000, "parse": 4000}
    files = projects.pipeline_files(work, tool_bolt='\n[tool.bolt]\nwalltime-stages = ["*ingest*"]\n')
    repo = make_repo(tmp_path / "proj", {**files, "bench/test_env.py": ENV_BENCH})
    base = git(repo, "rev-parse", "HEAD")
    head = commit(repo, {"minipipe.py": projects.pipeline_module(dict(work, parse=8000))}, "head: parse does twice the work")
    log = tmp_path / "env.jsonl"
    for name, value in {**SECRETS, "BOLT_TEST_ENV_LOG": str(log)}.items():
        monkeypatch.setenv(name, value)

    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--quiet", "--repo", str(repo), "--base", base, "--head", head,
                                       "--benchmarks", "bench", "--rounds", "2", "--budget", "0",
                                       "--pass-env", "BOLT_TEST_ENV_LOG", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["profile", "--quiet", "--repo", str(repo), "--ref", head, "--benchmarks", "bench",
                                       "--pass-env", "BOLT_TEST_ENV_LOG", "--out", str(tmp_path / "profile")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["pass"] for r in records} >= {"round", "counts", "profile"}, {r["pass"] for r in records}
    for record in records:
        leaked = set(record["env"]) & set(SECRETS)
        assert not leaked, (record["pass"], leaked)
        assert not any(value in record["env"].values() for value in SECRETS.values()), record["pass"]
