"""bolt_bot.measure.process: the one runner of measured processes, on real processes."""

from __future__ import annotations

import threading
import time

import pytest

from bolt_bot.errors import BoltError
from bolt_bot.measure import process


def test_a_timeout_kills_the_whole_group_and_keeps_the_output(tmp_path):
    marker = tmp_path / "late"
    script = f"echo started; (sleep 3; touch {marker}) & sleep 30"
    done = process.run(["sh", "-c", script], tmp_path, {"PATH": "/usr/bin:/bin"}, timeout=1, log=tmp_path / "log")
    assert done.timed_out and done.returncode == -9 and "started" in done.output
    time.sleep(3.5)
    assert not marker.exists()  # the grandchild died with the group
    assert (tmp_path / "log").read_text() == done.output


def test_output_without_a_log_and_the_exit_code(tmp_path):
    done = process.run(["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path, {"PATH": "/usr/bin:/bin"}, timeout=30)
    assert (done.returncode, done.timed_out) == (3, False) and "out" in done.output and "err" in done.output


def test_a_missing_program_is_one_clear_error(tmp_path):
    with pytest.raises(BoltError, match="cannot start /no/such/program"):
        process.run(["/no/such/program"], tmp_path, {}, timeout=5)


def test_stop_all_ends_a_run_in_another_thread_with_pass_stopped(tmp_path):
    since = process.generation()
    got = []

    def worker():
        try:
            process.run(["sleep", "30"], tmp_path, {"PATH": "/usr/bin:/bin"}, timeout=60, since=since)
        except process.PassStopped as exc:
            got.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    process.stop_all()
    thread.join(10)
    assert got and time.monotonic() - started < 5
    with pytest.raises(process.PassStopped):  # a run that began before the stop may not start another process
        process.run(["true"], tmp_path, {"PATH": "/usr/bin:/bin"}, timeout=5, since=since)


@pytest.mark.parametrize("output, line", [
    ("usage: pytest [options]\npytest: error: unrecognized arguments: -n0\n", "unrecognized arguments: -n0"),
    ("ERROR: not found: tests/x.py::y\n(no match)\n", "not found: tests/x.py::y"),
    ("Traceback\nE   ModuleNotFoundError: No module named 'x'\n=== 1 error ===\n", "ModuleNotFoundError: No module named 'x'"),
    ("collected 0\nImportError while loading conftest\nlast words\n", "ImportError while loading conftest"),
    ("just this\n", "just this"),
    ("", "no output"),
])
def test_error_line_names_the_cause(output, line):
    assert process.error_line(output) == line
