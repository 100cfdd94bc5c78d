"""The `bolt` command line: thin click wrappers over the steps, and one place that turns errors into exit codes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from bolt_bot import __version__
from bolt_bot.errors import EXIT_INTERNAL, BoltError, PublishError, run_exit_code
from bolt_bot.model import FAILED
from bolt_bot.options import INSTALL_HELP, format_option, measure_options, overrides_from, path_type
from bolt_bot.usage import one_line

class BoltGroup(click.Group):
    """Prints BoltError as one line with its exit code; anything else as one line too, never a traceback.

    Usage errors are one line as well: those of the group's own options come from make_context, those of a
    command (its options, a missing argument, an unknown command) from invoke, where click parses them."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise one_line(exc) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            # Some parser errors (an option missing its value) come without a context: name the command.
            command = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
            raise one_line(exc, command) from None
        except BoltError as exc:
            click.echo(f"bolt: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("bolt: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug: still one line, with what is needed to report it
            click.echo(f"bolt: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} (please report this)", err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(name="bolt", cls=BoltGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bolt")
def main() -> None:
    """Bolt ⚡ reviews the performance of pull requests on Python projects.

    \b
    Exit codes: 0 success (no blocking regression), 1 the gate failed
    (--fail-on-regression: an unapproved regression, or a `failed` run), 2 bad
    input or usage, or a `failed` run without --fail-on-regression (nothing
    measured, every stage failed, or one failed on head; results.json is written
    first), 3 publishing to GitHub failed (results kept on disk), 4 internal error.
    """
    cache = os.environ.get("BOLT_CACHE_DIR")
    if cache and not os.path.isabs(cache):
        # Environments live there and their Python runs with a worktree as its folder: make it absolute now.
        os.environ["BOLT_CACHE_DIR"] = os.path.abspath(cache)


def _emit(results, fmt: str, template_dir: str | None, out: Path | None = None) -> None:
    """Print `results`; with `out` (run, demo), markdown and json are the files just written there."""
    from bolt_bot.report import render, text

    if fmt == "text":
        click.echo(text.render_text(results, out / "comment.md" if out is not None else None), nl=False)
    elif out is not None:
        click.echo((out / ("comment.md" if fmt == "markdown" else "results.json")).read_text(encoding="utf-8"))
        click.echo(f"(results in {out}/: results.json, comment.md, summary.md)", err=True)
    elif fmt == "json":
        click.echo(json.dumps(results.to_dict(), indent=2, allow_nan=False))
    else:
        click.echo(render.render_comment(results, template_dir), nl=False)


def failure_line(results) -> str:
    """Why a run is `failed`, in one line: nothing measured, or which stages failed first (their names and notes
    come from the project: made plain, so that no escape sequence in them reaches the terminal)."""
    from bolt_bot.report.text import plain

    failed = [s for s in results.stages if s.verdict == FAILED]
    if not failed:
        return "nothing was measured: no benchmark ran on either side (check --benchmarks and --pytest-args)"
    first = f"{plain(failed[0].name)}: {plain(failed[0].note)}" if failed[0].note else plain(failed[0].name)
    n, total = len(failed), len(results.stages)
    what = f"every stage failed ({n})" if n == total else f"{n} of {total} stages failed"
    return f"{what}; first {first}"


def finish(results, fail_on_regression: bool, out: Path | None = None) -> None:
    """Exit with the run's code (errors.run_exit_code); a `failed` run also says why on stderr."""
    if results.verdict == FAILED:
        where = f" (see {out / 'comment.md'})" if out is not None else ""
        click.echo(f"bolt: error: the run failed: {' '.join(failure_line(results).split())}{where}", err=True)
    blocking = bool(results.regressions) and not results.approval
    sys.exit(run_exit_code(results.verdict, blocking, fail_on_regression))


class SidesCommand(click.Command):
    """`--base a.json b.json --head c.json d.json`: each side option takes every file that follows it, as a
    shell glob (`--base base-*.json`) gives them; repeating the option works too."""

    SIDES = ("--base", "--head")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        spread: list[str] = []
        side = None
        for arg in args:
            if arg in self.SIDES:
                side = arg
                spread.append(arg)
            elif side and not arg.startswith("-") and spread[-1] != side:
                spread += [side, arg]
            else:
                if arg.startswith("-"):
                    side = None
                spread.append(arg)
        return super().parse_args(ctx, spread)


@main.command(cls=SidesCommand)
@click.option("--base", "base_files", multiple=True, required=True, type=path_type(dir_okay=False),
              help="pytest-benchmark JSON files of the base, one per round: `--base base-*.json`.")
@click.option("--head", "head_files", multiple=True, required=True, type=path_type(dir_okay=False),
              help="pytest-benchmark JSON files of the head, one per round: `--head head-*.json`.")
@format_option
@click.option("--threshold", type=float, default=None, help="Effect floor as a signed percent change [default: 3].")
@click.option("--alpha", type=float, default=None, help="False discovery rate across stages [default: 0.05].")
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when a stage regressed or the comparison failed.")
@click.option("--template-dir", type=path_type(file_okay=False), default=None,
              help="Folder of templates overriding Bolt's own (comment.md.j2, summary.md.j2).")
def compare(base_files, head_files, fmt, threshold, alpha, fail_on_regression, template_dir):
    """Compare pytest-benchmark JSON files: one or more rounds per side."""
    from bolt_bot.decide import benchjson
    from bolt_bot.decide.compare import SideRounds, build_results, compare_sides
    from bolt_bot.settings import load_settings

    settings = load_settings(None, {"threshold": threshold, "alpha": alpha, "fail_on_regression": fail_on_regression})
    base = SideRounds(benchjson.read_rounds(list(base_files)))
    head = SideRounds(benchjson.read_rounds(list(head_files)))
    stages = compare_sides(base, head, threshold=settings.threshold, alpha=settings.alpha)
    results = build_results(
        stages,
        settings=settings.to_dict(),
        environment={"rounds": min(len(base_files), len(head_files))},
    )
    _emit(results, fmt, str(template_dir) if template_dir else None)
    finish(results, settings.fail_on_regression)


@main.command()
@click.option("--repo", type=path_type(file_okay=False), default=".", show_default=True,
              help="The git repository to measure.")
@click.option("--base", "base_ref", default=None, help="Base commit [default: merge-base of head with the default branch].")
@click.option("--head", "head_ref", default=None, help="Head commit [default: HEAD].")
@click.option("--out", type=path_type(file_okay=False), default="bolt-results", show_default=True,
              help="Results directory: results.json, comment.md, summary.md (relative to the current folder).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--shard", "shard_text", default=None, envvar="BOLT_SHARD", metavar="K/N",
              help="Measure only shard K of N (base and head of its share of the stages); merge the shards' "
                   "directories with `bolt merge` [env: BOLT_SHARD].")
@click.option("--durations", type=path_type(), default=None, envvar="BOLT_DURATIONS",
              help="With --shard: expected seconds per stage to balance the shards by, a JSON object stage → "
                   "seconds or an earlier run's results.json or results directory [env: BOLT_DURATIONS; "
                   "default: the discovery round's timings, else the number of stages].")
@format_option
@measure_options
def run(repo, base_ref, head_ref, out, quiet, shard_text, durations, fmt, **kw):
    """Measure base and head on this machine and write the results directory.

    Base and head must be different commits (exit 2 when they are one), unless both --base and --head are
    given: a deliberate A/A run. Only commits are measured: uncommitted changes get a warning naming them."""
    from bolt_bot.measure.shard import parse_shard, read_durations
    from bolt_bot.progress import Progress
    from bolt_bot.pipeline import execute, make_plan

    shard = parse_shard(shard_text) if shard_text else None
    if durations is not None and shard is None:
        raise BoltError("--durations balances shards: give --shard K/N too")
    plan = make_plan(repo, base_ref, head_ref, overrides_from(kw), distinct=True)
    expected = read_durations(durations, plan.settings.rounds) if durations is not None else None
    results = execute(plan, out, Progress(quiet=quiet), shard=shard, durations=expected)
    if shard:
        click.echo(f"shard {shard} of the suite: {results.verdict}", err=True)
    _emit(results, fmt, plan.settings.template_dir, out)
    finish(results, plan.settings.fail_on_regression, out)


@main.command()
@click.argument("dirs", nargs=-1, required=True, type=path_type(file_okay=False))
@click.option("--out", type=path_type(file_okay=False), default="bolt-results", show_default=True,
              help="The merged results directory: results.json, comment.md, summary.md, profiles/.")
@click.option("--fail-on-regression", is_flag=True, default=None,
              help="Exit 1 when a stage regressed and nobody approved it, or the merged run failed "
                   "[default: the shards' setting].")
def merge(dirs, out, fail_on_regression):
    """Merge the results directories of `bolt run --shard K/N` (every shard once) into one, decided once
    over the whole suite. Shards that do not belong together (one missing, another commit, other settings
    or Bolt, two overlapping) are refused with exit 2 and nothing is written."""
    from bolt_bot.decide.merge import merge_dirs

    results = merge_dirs(list(dirs), out)
    click.echo(f"{results.verdict}: {(out / 'comment.md')}")
    finish(results, bool(fail_on_regression or results.settings.get("fail_on_regression")), out)


@main.command()
@click.option("--out", type=path_type(file_okay=False), default="bolt-demo", show_default=True,
              help="Results directory (relative to the current folder).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@format_option
@measure_options
def demo(out, quiet, fmt, **kw):
    """Run Bolt's main job on the bundled example pipeline (no GitHub needed) and show its results."""
    from bolt_bot.demo import run_demo
    from bolt_bot.progress import Progress

    results = run_demo(out, overrides_from(kw), Progress(quiet=quiet))
    _emit(results, fmt, None, out)
    finish(results, bool(results.settings.get("fail_on_regression")), out)


@main.command()
@click.option("--repo", type=path_type(file_okay=False), default=".", show_default=True,
              help="The git repository to profile.")
@click.option("--ref", default=None, help="Commit to profile [default: HEAD].")
@click.option("-k", "filter_", default=None, metavar="FILTER", help="Only the benchmarks pytest's -k selects.")
@click.option("--out", type=path_type(file_okay=False), default="bolt-profile", show_default=True,
              help="Report directory: report.md, index.html, a .pstats and a .svg per stage, speedscope JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--benchmarks", default=None, help="Benchmark paths or node ids given to pytest (space-separated).")
@click.option("--pytest-args", default=None, help="Extra pytest arguments, e.g. '-p no:randomly -m bench'.")
@click.option("--install", default=None, help=INSTALL_HELP)
@click.option("--pass-env", default=None,
              help="Variables the benchmarks read, passed to the profiled process (space-separated; never a token).")
@click.option("--extras", default=None, help="Extras of the project to install (space-separated).")
@click.option("--python", "python_version", default=None, help="Python for the environment, e.g. 3.11.")
@click.option("--template-dir", type=path_type(file_okay=False), default=None,
              help="Folder of templates overriding Bolt's own (profile.md.j2, profile.html.j2).")
def profile(repo, ref, filter_, out, quiet, **kw):
    """Profile every stage of one commit: report.md, index.html, flame graphs, pstats and speedscope files."""
    from bolt_bot.progress import Progress
    from bolt_bot.profiling.fullreport import profile_report

    overrides = {"benchmarks": kw["benchmarks"], "pytest_args": kw["pytest_args"], "install": kw["install"],
                 "extras": kw["extras"], "python": kw["python_version"],
                 "template_dir": str(kw["template_dir"]) if kw["template_dir"] else None,
                 "pass_env": kw["pass_env"]}
    report = profile_report(repo, ref, filter_, out, overrides, Progress(quiet=quiet))
    click.echo(f"profile report: {report} (and {report.parent / 'index.html'})")


@main.command()
@click.argument("directory", type=path_type(file_okay=False))
@click.option("--repo", "repository", default=None, metavar="OWNER/NAME",
              help="Repository [default: results.json's, else $GITHUB_REPOSITORY].")
@click.option("--pr", "pr_number", type=int, default=None, help="Pull request [default: results.json's or pr.json's].")
@click.option("--token-env", default="GITHUB_TOKEN", show_default=True, help="Environment variable holding the token.")
@click.option("--comment", type=click.Choice(["always", "on-change", "never"]), default=None,
              help="When to write the sticky comment [default: results.json's setting, else on-change].")
@click.option("--report", type=click.Choice(["status", "check", "both"]), default=None,
              help="The commit status, the check run Bolt (an App token with checks: write), or both "
                   "[default: results.json's setting, else status].")
def publish(directory: Path, repository, pr_number, token_env, comment, report):
    """Post DIR/results.json to GitHub: the sticky comment, the commit status, the label."""
    from bolt_bot.github.client import Client, ClientOptions
    from bolt_bot.model import Results
    from bolt_bot.github.publish import publish as publish_results
    from bolt_bot.github.publish import settings_from_results

    results = Results.read(directory / "results.json")
    repository = repository or results.repository or os.environ.get("GITHUB_REPOSITORY")
    if not repository:
        raise click.UsageError("no repository: give --repo OWNER/NAME")
    if pr_number is None:
        pr_number = results.pull_request
    if pr_number is None and (directory / "pr.json").is_file():
        pr_number = _pr_number(directory / "pr.json")
    settings = settings_from_results(results, {"comment": comment, "report": report})
    token = os.environ.get(token_env, "")
    if not token:  # the Client's own message names the Action's input; at the command line it is a variable
        raise PublishError(missing_token_line(token_env))
    client = Client(token, repository, ClientOptions.from_env(os.environ))
    outcome = publish_results(directory, client, repository, pr_number, settings, results=results)
    click.echo(f"{results.verdict}: comment {outcome.comment}{' ' + outcome.comment_url if outcome.comment_url else ''}, "
               f"status {outcome.status or 'not set'}, check run {outcome.check_run or 'none'}")


def missing_token_line(token_env: str) -> str:
    if token_env == "GITHUB_TOKEN":
        return "no GitHub token: set GITHUB_TOKEN, or pass --token-env NAME of the variable that holds one"
    return f"no GitHub token: {token_env} (named by --token-env) is not set or empty"


def _pr_number(path: Path) -> int:
    """The pull request number a results directory's pr.json names (bad input: exit 2, one line)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError too
        raise BoltError(f"{path} is not valid JSON ({type(exc).__name__}); give --pr") from None
    number = info.get("number") if isinstance(info, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise BoltError(f"{path} holds no pull request number ({str(number)[:40]!r}); give --pr")
    return number


@main.command()
def action():
    """The Action's entry point: reads the GitHub environment and event, and does what it asks."""
    from bolt_bot.github.action import read_config, run_action

    sys.exit(run_action(read_config(os.environ)))


@main.command()
@click.argument("directory", type=path_type(file_okay=False))
@click.option("--template-dir", type=path_type(file_okay=False), default=None,
              help="Folder of templates overriding Bolt's own.")
def render(directory: Path, template_dir):
    """Re-render DIR/comment.md and DIR/summary.md from DIR/results.json."""
    from bolt_bot.model import Results
    from bolt_bot.report.output import write_markdown

    results = Results.read(directory / "results.json")
    write_markdown(results, directory, str(template_dir) if template_dir else None)
    click.echo(f"wrote {directory / 'comment.md'} and {directory / 'summary.md'}")


if __name__ == "__main__":  # pragma: no cover
    main()
