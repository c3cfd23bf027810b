"""``nwb-facrnn fit``: :func:`nwb_facrnn.pipeline.fit_source` from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from .app import command, console, main
from .model_options import ModelCommand
from .options import config_option, data_options, folder_option, pop_read_options
from .tables import figures_table, fit_table

#: The output options, named as :class:`nwb_facrnn.pipeline.OutputOptions`'s fields.
OUTPUT_NAMES = ("output", "in_place", "copy", "name", "overwrite")


@command(main, cls=ModelCommand, before="output")
@click.argument("source")
@config_option(
    "TOML or YAML file of these options (the Python names: n_groups, bin_size, ...); "
    "options on the command line win."
)
@data_options
@click.option(
    "--output",
    type=click.Path(path_type=Path),  # a Zarr results store is a directory
    help="Results file or Zarr store (default: <source stem>_facrnn.nwb next to the source).",
)
@click.option("--in-place", is_flag=True, help="Add the results to the source file itself.")
@click.option("--copy", is_flag=True, help="Standalone output: copy the source's data.")
@click.option("--name", help="Results container name (default facrnn_G{G}H{H}_beta..._seed...).")
@click.option("--overwrite", is_flag=True, help="Replace a fit of the same name.")
@folder_option("--figures", help="Also draw the report figures (PNG + HTML) into this folder.")
def fit(source: str, **kw: Any) -> None:
    """Fit FacRNN to an NWB file and write the results into NWB.

    SOURCE is a local NWB file (HDF5 or Zarr), a DANDI asset (DANDI:000128/sub-.../x.nwb) or
    an https URL; remote files are streamed, not downloaded.  Every FacRNN argument is an
    option of the same name, dashed (--max-epochs, --learning-rate ...), but progress: the
    progress bar shows while the fit runs.  Under torchrun every process trains and rank 0
    writes.
    """
    from ..pipeline import OutputOptions, fit_source, launcher_rank

    figures = kw.pop("figures")
    read_options = pop_read_options(kw)
    output = OutputOptions(**{k: kw.pop(k) for k in OUTPUT_NAMES})
    primary = launcher_rank() == 0  # the other processes of a torchrun launch stay quiet

    def show(step: str, info: dict) -> None:
        if step == "read":
            console.print(f"[bold]data[/]: {escape(repr(info['data']))}")
        elif step == "destination":
            console.print(f"[bold]writes[/]: {info['path']} ({info['name']})")

    outcome = fit_source(
        source,
        read_options=read_options,
        model_options={**kw, "progress": primary},
        output=output,
        figures=figures,
        on_step=show if primary else None,
    )
    if not outcome.primary:
        return
    res = outcome.results
    console.print(fit_table(outcome))
    console.print(f"results: {outcome.path}  (container {res.object_path})")
    console.print(f'read with: nwb_facrnn.read_results("{outcome.path}", name="{res.name}")')
    if outcome.report is not None:
        console.print(figures_table(outcome.report))
