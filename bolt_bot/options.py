"""The command line's shared options: paths made absolute, the output format, and the measuring options that
`bolt run` shares with `bolt demo` (and, by name, with the Action's inputs)."""

from __future__ import annotations

from pathlib import Path

import click

FORMATS = ("text", "markdown", "json")
FORMAT_HELP = ("What to print: text (a plain table, the regressed stages' profiles, the notices), markdown "
               "(the pull request comment) or json (results.json). The files written are the same whatever is printed.")


def path_type(**kw) -> click.Path:
    """A path option made absolute against the folder Bolt was started in, as soon as it is read.

    Bolt runs the measured suites with a throwaway worktree as their folder: a relative path that reached
    them (a round's events file, a profile folder) would point into that worktree instead.
    """
    return click.Path(resolve_path=True, path_type=Path, **kw)


def format_option(f):
    """`--format`, the same for compare, run and demo: text by default, on a terminal or not (a log or a file
    read by people wants plain text as much as a terminal; comment.md and results.json hold the rest)."""
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                        help=FORMAT_HELP)(f)


INSTALL_HELP = ("Shell command that installs the project, run in each checkout (its folder) with VIRTUAL_ENV and "
                "UV_PROJECT_ENVIRONMENT set to Bolt's environment, UV_PYTHON to its python, its bin/ first on PATH "
                "and only allow-listed variables (no tokens); Bolt then adds pytest, pytest-benchmark and pytest-codspeed. "
                "E.g. 'uv sync --frozen' or 'pip install -r requirements.txt -e .' [default: pip install -e CHECKOUT].")


def measure_options(f):
    """The options `bolt run` shares with `bolt demo` and the Action's inputs (None = not given)."""
    options = [
        click.option("--measure", type=click.Choice(["auto", "walltime", "instructions"]), default=None,
                     help="How to measure [default: auto: instruction counts where valgrind runs, else wall time]."),
        click.option("--walltime-engine", type=click.Choice(["paired", "rounds"]), default=None,
                     help="How wall time is measured: base and head alternating in short blocks on one CPU (paired), "
                          "or whole interleaved pytest rounds (rounds) [default: rounds]."),
        click.option("--threshold", type=float, default=None, help="Effect floor, signed percent change [default: 3]."),
        click.option("--instr-threshold", type=float, default=None,
                     help="Effect floor of instruction counts, percent change [default: 1]."),
        click.option("--alpha", type=float, default=None, help="False discovery rate across stages [default: 0.05]."),
        click.option("--memory", type=click.Choice(["auto", "off"]), default=None,
                     help="Trace one call of each stage per side for its allocations and peak memory (memray), "
                          "gated like time; auto leaves out stages whose call takes over 2 s [default: auto]."),
        click.option("--memory-threshold", type=float, default=None,
                     help="Smallest change of a stage's allocations or allocated bytes, percent [default: 1]."),
        click.option("--peak-threshold", type=float, default=None,
                     help="Smallest change of a stage's peak memory, percent [default: 10]."),
        click.option("--rounds", type=int, default=None, help="Interleaved rounds per side [default: 10]."),
        click.option("--budget", type=float, default=None, help="Seconds for extra rounds on unclear stages [default: 120]."),
        click.option("--round-timeout", type=float, default=None, help="Seconds before one round is stopped [default: 600]."),
        click.option("--round-memory-mb", type=int, default=None,
                     help="Address-space limit of one round's process, in MiB; 0: none [default: 4096]."),
        click.option("--benchmarks", default=None, help="Benchmark paths or node ids given to pytest (space-separated)."),
        click.option("--pytest-args", default=None, help="Extra pytest arguments, e.g. '-p no:randomly -m bench'."),
        click.option("--install", default=None, help=INSTALL_HELP),
        click.option("--pass-env", default=None,
                     help="Variables the benchmarks read, passed to every measured process (space-separated; "
                          "never a token or secret)."),
        click.option("--extras", default=None, help="Extras of the project to install (space-separated)."),
        click.option("--python", "python_version", default=None, help="Python for the environments, e.g. 3.11."),
        click.option("--no-profile", "no_profile", is_flag=True, default=None, help="Do not profile regressed stages."),
        click.option("--wall-sizes/--no-wall-sizes", "wall_sizes", default=None, envvar="BOLT_WALL_SIZES",
                     help="Time how much wall time each counted change moved, with the paired engine, shown beside "
                          "the count (about 8 s per run that flags a counted stage) [default: on]."),
        click.option("--fail-on-regression", is_flag=True, default=None,
                     help="Exit 1 when a stage regressed and nobody approved it, or the run failed."),
        click.option("--template-dir", type=path_type(file_okay=False), default=None, help="Folder of templates overriding Bolt's own."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def overrides_from(kw: dict) -> dict:
    return {
        "measure": kw["measure"], "memory": kw["memory"], "memory_threshold": kw["memory_threshold"],
        "peak_threshold": kw["peak_threshold"], "walltime_engine": kw["walltime_engine"], "threshold": kw["threshold"],
        "instr_threshold": kw["instr_threshold"], "alpha": kw["alpha"], "rounds": kw["rounds"], "budget": kw["budget"],
        "round_timeout": kw["round_timeout"], "round_memory_mb": kw["round_memory_mb"], "benchmarks": kw["benchmarks"], "pytest_args": kw["pytest_args"],
        "install": kw["install"], "extras": kw["extras"], "python": kw["python_version"], "pass_env": kw["pass_env"],
        "profile": False if kw["no_profile"] else None, "wall_sizes": kw["wall_sizes"], "fail_on_regression": kw["fail_on_regression"],
        "template_dir": str(kw["template_dir"]) if kw["template_dir"] else None,
    }
