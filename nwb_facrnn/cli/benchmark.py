"""``nwb-facrnn benchmark``: the paper's experiments."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from .app import command, console, debug_option, main, progress_bar
from .options import folder_option, list_option
from .tables import STEPS_TEXT


@main.group()
@debug_option
def benchmark() -> None:
    """Reproduce the paper's experiments."""


@command(benchmark, "synthetic")
@list_option("--seeds", "0-4", int, None, "0-4", "Seeds, e.g. 0-4 or 0,2,7.")
@folder_option(
    "--output-dir",
    default=Path("results/benchmark"),
    help="Where the CSV, figure and Markdown table go.",
)
@click.option("--max-epochs", type=int, default=None, help="Override every method's epochs.")
def benchmark_synthetic(seeds: list[int], output_dir: Path, max_epochs: int | None) -> None:
    """lrRNN, lrRNN+ICA, LINT, bdRNN, FacRNN-full and FacRNN on synthetic ground truth."""
    from ..benchmark import METHODS, markdown_table, plot, run_synthetic_benchmark, summarize
    from ..benchmark import write_csv as write_rows

    fit_params = {} if max_epochs is None else {"max_epochs": max_epochs}
    with progress_bar() as progress:
        task = progress.add_task("fitting", total=len(seeds) * len(METHODS))

        def advance(row) -> None:
            progress.update(task, advance=1, description=f"{row.method} seed {row.seed}")

        rows = run_synthetic_benchmark(seeds=seeds, on_result=advance, **fit_params)
    summary = summarize(rows)
    table = Table(
        title=f"Synthetic benchmark, metrics on {STEPS_TEXT['heldout']}, seeds {seeds}",
        title_justify="left",
    )
    columns = list(next(iter(summary.values())))
    table.add_column("method")
    for col in columns:
        table.add_column(col, justify="right")
    spread = len(seeds) > 1  # mean ± std over seeds; a single seed has no spread
    for method, stats in summary.items():
        cells = (f"{m:.3f}±{sd:.3f}" if spread else f"{m:.3f}" for m, sd in map(stats.get, columns))
        table.add_row(method, *cells)
    console.print(table)
    csv_path = write_rows(rows, output_dir / "synthetic_benchmark.csv")
    fig_path = plot(rows, output_dir / "synthetic_benchmark.png")
    md_path = output_dir / "synthetic_benchmark.md"
    md_path.write_text(markdown_table(rows) + "\n")
    console.print(f"table:  {csv_path}\nfigure: {fig_path}\nsummary (Markdown): {md_path}")
