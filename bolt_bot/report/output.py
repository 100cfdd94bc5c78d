"""Writing a results directory: results.json first (so nothing measured is lost), then the markdown."""

from __future__ import annotations

from pathlib import Path

from bolt_bot.report import render
from bolt_bot.model import Results


def write_markdown(results: Results, directory: Path, template_dir: str | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _write_text(directory / "comment.md", render.render_comment(results, template_dir))
    _write_text(directory / "summary.md", render.render_summary(results, template_dir))


def write_results_dir(results: Results, directory: Path, template_dir: str | None = None) -> None:
    """results.json is written before anything is rendered, so a template error loses nothing."""
    results.write(directory / "results.json")
    write_markdown(results, directory, template_dir)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
