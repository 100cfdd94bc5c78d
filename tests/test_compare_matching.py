"""How compare_sides matches stages across the sides when a side's suite could not run (no files, no processes)."""

from __future__ import annotations

from bolt_bot.decide.compare import SideRounds, build_results, compare_sides
from bolt_bot.model import BenchmarkRound

CONFTEST_ERROR = "pluggy._manager.PluginValidationError: Plugin 'conftest.py' for hook 'pytest_ignore_collect'"


def test_suites_that_failed_on_both_sides_are_named_not_blamed_on_the_paths():
    notices: list[str] = []
    stages = compare_sides(SideRounds(error=CONFTEST_ERROR), SideRounds(error=CONFTEST_ERROR), threshold=3.0,
                           notices=notices)
    results = build_results(stages, notices=notices)
    assert results.verdict == "failed"
    assert [n.split(":")[0] for n in results.notices] == [
        "the benchmark suite failed before measuring anything on base",
        "the benchmark suite failed before measuring anything on head"]
    assert all(CONFTEST_ERROR in n for n in results.notices)
    assert not any("check the benchmark paths" in n for n in results.notices)


def test_an_empty_suite_still_points_at_the_paths():
    results = build_results(compare_sides(SideRounds(), SideRounds(), threshold=3.0, notices=[]))
    assert results.verdict == "failed"
    assert any("check the benchmark paths" in n for n in results.notices)


def _side(*names: str) -> SideRounds:
    rounds = [[BenchmarkRound(name=n, median=1e-3, min=1e-3, max=1e-3, unit="s") for n in names] for _ in range(3)]
    return SideRounds(rounds)


def test_a_suite_renamed_between_the_commits_is_said_to_be_uncompared():
    # python-statemachine's pair: head renamed test_setup_performance and test_event_performance into classes.
    base = _side("t.py::test_setup_performance", "t.py::test_event_performance")
    head = _side("t.py::TestSetup::test_flat", "t.py::TestEvent::test_flat", "t.py::TestEvent::test_deep")
    results = build_results(compare_sides(base, head, threshold=3.0, notices=[]))
    assert sorted(s.verdict for s in results.stages) == ["added"] * 3 + ["removed"] * 2
    assert any("no benchmark exists under the same name on both commits (2 removed, 3 added)" in n for n in results.notices)


def test_some_stages_in_common_need_no_rename_notice():
    base = _side("t.py::test_kept", "t.py::test_old")
    head = _side("t.py::test_kept", "t.py::test_new")
    results = build_results(compare_sides(base, head, threshold=3.0, notices=[]))
    assert not any("same name" in n for n in results.notices)


def test_a_suite_renamed_between_the_commits_is_inconclusive_and_says_nothing_was_compared():
    from bolt_bot.report.render import render_comment

    base = SideRounds([[BenchmarkRound(name="t.py::test_old", median=1e-3, data=[1e-3] * 5)]] * 3)
    head = SideRounds([[BenchmarkRound(name="t.py::test_new", median=1e-3, data=[1e-3] * 5)]] * 3)
    results = build_results(compare_sides(base, head, threshold=3.0))
    assert results.verdict == "inconclusive"
    assert [s.verdict for s in results.stages] == ["added", "removed"]
    text = render_comment(results)
    assert "nothing was compared" in text and "No stage changed" not in text
