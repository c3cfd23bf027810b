"""``nwb-facrnn report``: the figures of a stored fit."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from .app import command, console, main
from .options import folder_option
from .tables import figures_table


@command(main)
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="The fit to draw when the file holds several.")
@folder_option(
    "--output-dir", help="Where the figures go (default: <file stem>_figures next to FILE)."
)
@click.option(
    "--color-by",
    default=None,
    help="Trials column that colours the latents (default: a condition-like column).",
)
def report(file: Path, name: str | None, output_dir: Path | None, color_by: str | None) -> None:
    """Figures of a fit stored in FILE: latents over time and in state space, the
    connectivity and each group's part, group strengths, training curves (PNG + HTML)."""
    from ..io.results import read_results
    from ..report import make_report

    res = read_results(file, name=name)
    if output_dir is None:
        stem = file.name.removesuffix(".zarr").removesuffix(".nwb")
        output_dir = file.parent / f"{stem}_figures"
    console.print(f"[bold]fit[/]: {escape(repr(res))}")
    with console.status("drawing the figures"):
        made = make_report(res, output_dir, color_by=color_by)
    console.print(figures_table(made))
