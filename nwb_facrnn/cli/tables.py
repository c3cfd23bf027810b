"""The tables the commands print (rich), one function each."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

#: How the tables say which time steps the metrics were computed on.
STEPS_TEXT = {"all": "all time steps", "heldout": "the held-out (odd) time steps"}


def rows_table(title: str, rows: list[dict]) -> Table:
    """A table of dicts with the same keys (``info``): numbers right-aligned."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for col in rows[0]:
        numeric = col in ("units", "spikes", "trials", "bins", "seed", "beta") or col.endswith(
            ("(Hz)", "(s)", "(MB)", "/bin)")
        )
        table.add_column(
            col, justify="right" if numeric else "left", overflow="fold", no_wrap=col == "path"
        )
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    return table


def fit_table(outcome) -> Table:
    """The summary of a fit (:class:`~nwb_facrnn.pipeline.FitOutcome`): its size, time and
    metrics under their names (:data:`nwb_facrnn.metrics.METRICS`)."""
    import numpy as np

    res = outcome.results
    table = Table(
        title=f"FacRNN fit {res.name} (metrics on {STEPS_TEXT.get(outcome.steps, outcome.steps)})",
        title_justify="left",
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("groups x rank", f"{res.n_groups} x {res.group_rank}")
    table.add_row("fit time (s)", f"{outcome.model.fit_time_:.1f}")
    model = outcome.model
    table.add_row("steps (epochs)", f"{model.n_steps_} ({model.n_epochs_})")
    table.add_row("samples seen", f"{model.samples_seen_:,}")
    table.add_row("samples/s", f"{model.samples_per_second_:,.0f}")
    table.add_row("standardized", _standardized(outcome.model))
    if outcome.data.provenance.get("chunked"):
        act = outcome.data.activity
        table.add_row("activity", f"on disk, read by chunks ({act.nbytes / 1e6:,.0f} MB)")
    for key, value in outcome.metrics.items():
        table.add_row(key, f"{value:.4f}")
    if res.dominant_group is not None:
        counts = np.bincount(res.dominant_group, minlength=res.n_groups)
        table.add_row("units per dominant group", " / ".join(map(str, counts)))
    return table


def _standardized(model) -> str:
    """How the model saw the activity: ``"no"``, or ``"yes"`` with the range of the scales
    (in the data's units) and how it was chosen."""
    if not model.standardized_:
        return "no"
    scale = model.activity_scale_
    how = "auto" if model.standardize == "auto" else "always"
    return f"yes ({how}; scale {scale.min():.3g}-{scale.max():.3g})"


def figures_table(report) -> Table:
    """The files of a report (:class:`~nwb_facrnn.report.Report`)."""
    table = Table(title="Figures", title_justify="left")
    table.add_column("figure")
    table.add_column("file", overflow="fold")
    for key, path in report.figures.items():
        table.add_row(key.replace("_", " "), str(path))
    table.add_row("[bold]all of them[/]", f"[bold]{report.html}[/]")
    return table


def sweep_table(rows: list[dict], several: bool) -> Table:
    """A sweep's rows: the grid, the status and the metrics of every fit (``several``: with
    the source of each)."""
    from ..sweep import source_stem, summary_columns
    from ..sweep.rows import STEPS
    from ..sweep.selection import fmt

    metrics = ["log_likelihood", "gaussian_partial_correlation", "reconstruction_r2"]
    metrics += [c for c in summary_columns(rows) if c.endswith("_decoding_r2")]
    table = Table(title=f"Sweep (metrics on {STEPS_TEXT[STEPS]})", title_justify="left")
    if several:
        table.add_column("source")
    for col in ("G", "H", "beta", "seed"):
        table.add_column(col, justify="right")
    table.add_column("status")
    for col in (*metrics, "epochs", "fit (s)"):
        table.add_column(col, justify="right")
    for r in rows:
        cells = [escape(source_stem(r["source"]))] if several else []
        cells += [str(r["n_groups"]), str(r["group_rank"]), f"{r['beta']:g}", str(r["seed"])]
        cells.append("ok" if r["status"] == "ok" else "[red]failed[/]")
        cells += [fmt(r.get(k)) for k in metrics]
        cells += [fmt(r.get("n_epochs"), 0), fmt(r.get("fit_time_s"), 1)]
        table.add_row(*cells)
    return table


def selection_table(selection, n_rows: int) -> Table:
    """The table of a model selection (:func:`nwb_facrnn.sweep.selection_table`'s cells), the
    chosen row in bold."""
    from ..sweep import selection_table as cells_of
    from ..sweep.rows import STEPS

    head, body = cells_of(selection)
    table = Table(
        title=f"Model selection ({n_rows} fits; metrics on {STEPS_TEXT[STEPS]}; disentangled: "
        f"partial correlation < {selection.pc_threshold:g} nats)",
        title_justify="left",
    )
    for col in head:
        table.add_column(col, justify="left" if col in ("eligible", "chosen") else "right")
    for r, cells in zip(selection.table, body, strict=True):
        cells = [escape(c) for c in cells]
        if r["chosen"]:
            cells[-1] = f"[bold green]{cells[-1]}[/]"
        table.add_row(*cells, style="bold" if r["chosen"] else None)
    return table
