"""How compare_sides matches stages across the sides when a side's suite could not run (no files, no processes)."""

from __future__ import annotations

from bolt_bot.compare import SideRounds, build_results, compare_sides

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
