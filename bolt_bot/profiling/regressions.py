"""`bolt run`'s profiles: the regressed stages profiled on both sides, compared function by function."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bolt_bot.errors import BoltError
from bolt_bot.measure.sides import BASE, HEAD
from bolt_bot.measure.walltime import SideSetup
from bolt_bot.model import ProfileLine
from bolt_bot.profiling.collect import collect_profiles, load_profile
from bolt_bot.profiling.diff import diff_profiles, why_empty
from bolt_bot.progress import Progress
from bolt_bot.settings import Settings


@dataclass
class StageProfile:
    """One stage's slot in the results: the functions that grew, or why there are none."""

    lines: list[ProfileLine] = field(default_factory=list)
    note: str | None = None


def profile_stages(names: list[str], setups: dict[str, SideSetup], folder: Path, settings: Settings,
                   progress: Progress) -> dict[str, StageProfile]:
    """Profile `names` on each side; every stage gets a slot, with a note when its table is empty or missing."""
    tables = {}
    for side, setup in setups.items():
        try:
            files = collect_profiles(setup.python, setup.checkout, list(settings.pytest_args), folder / side,
                                     stages=names, env=setup.env, timeout=settings.round_timeout)
        except BoltError as exc:
            progress.warn(f"profiling the {side} side failed: {exc}")
            return {name: StageProfile(note=f"profiling the {side} side failed: {exc}") for name in names}
        # Scaled to each stage's time without the profiler, measured by the plugin between the profiled calls.
        tables[side] = {name: load_profile(path, setup.checkout) for name, path in files.items()}
    slots = {}
    for name in names:
        base, head = tables[BASE].get(name), tables[HEAD].get(name)
        if base is not None and head is not None:
            lines = diff_profiles(base, head)
            # An empty table under a regression says nothing: say why it is empty.
            slots[name] = StageProfile(lines, None if lines else why_empty(base, head))
        else:
            missing = " and ".join(side for side, table in ((BASE, base), (HEAD, head)) if table is None)
            slots[name] = StageProfile(note=f"the profile failed: cProfile recorded no call of this stage on {missing} "
                                            f"(its test failed or was not collected under the profiler)")
    return slots
