"""``nwb-facrnn demo``: :func:`nwb_facrnn.demo.run_demo`, step by step, and what it made."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from .app import command, console, main
from .options import folder_option


@command(main)
@folder_option(
    "--output-dir",
    default=Path("results/demo"),
    help="Where the session, the results file and figures/ go.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(output_dir: Path, seed: int) -> None:
    """The whole path on a synthetic voltage-imaging session with a known answer: NWB session,
    FacRNN fit, results in NWB, nwbinspector, ground-truth recovery, figures, napari."""
    from ..demo import FIT, SESSION, run_demo

    start = time.perf_counter()
    console.print(
        f"[bold]nwb-facrnn demo[/]: {SESSION['n_rois']} ROIs imaged at {SESSION['rate']:g} Hz "
        f"for {SESSION['duration']:g} s, driven by two independent chaotic latent groups "
        f"(rank 3 each); FacRNN is fit with G = 2, H = 3 ({FIT['max_epochs']} epochs, "
        f"seed {seed})."
    )

    def step(message: str, seconds: float) -> None:
        console.print(f"[green]✓[/] {escape(message)} [dim]({seconds:.1f} s)[/]", highlight=False)

    outcome = run_demo(output_dir, seed, step=step)
    table = Table(title="Recovery of the ground truth", title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("ideal", style="dim")
    for row in outcome.recovery:
        table.add_row(row.quantity, row.text, row.reference)
    console.print(table)
    if outcome.inspector:
        console.print(f"[yellow]nwbinspector[/] on {outcome.results}:")
        for message in outcome.inspector:
            console.print(f"  {escape(message)}", highlight=False)
    else:
        console.print(f"nwbinspector on {outcome.results}: no issues")
    paths = Table(title="Written", title_justify="left")
    paths.add_column("what")
    paths.add_column("path", overflow="fold")
    paths.add_row("session (NWB)", str(outcome.session))
    paths.add_row(f"results (NWB, fit {outcome.fit_name})", str(outcome.results))
    paths.add_row("figures (HTML page)", str(outcome.report.html))
    paths.add_row("figures (PNG)", str(outcome.report.html.parent))
    console.print(paths)
    console.print(f"demo done in {time.perf_counter() - start:.0f} s. Next:")
    console.print(f"  nwb-facrnn view {outcome.results}      # the groups on the field of view")
    console.print(f"  nwb-facrnn report {outcome.results}    # the figures again")
    console.print(f"  nwb-facrnn info {outcome.results}      # what the file holds")
