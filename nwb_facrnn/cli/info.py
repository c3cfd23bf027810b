"""``nwb-facrnn info``: what an NWB file (or a dandiset) holds that can be fit."""

from __future__ import annotations

import click
from rich.table import Table

from .app import command, console, main
from .options import remote_options
from .tables import rows_table


@command(main)
@click.argument("source")
@remote_options
def info(source: str, dandi_api_url: str | None, no_cache: bool, download: bool) -> None:
    """Show what an NWB file can be fit on: units, ROI series, 2-D time series, trials,
    behaviour.

    SOURCE is a local file (HDF5 or Zarr), a DANDI asset (DANDI:000140/sub-.../x.nwb, archive,
    dandi:// or download URLs) or an https URL.  A dandiset alone (DANDI:000140) lists its
    NWB assets.
    """
    from ..io.dandi import is_remote, list_nwb_assets, parse_source
    from ..io.reader import open_nwbfile
    from ..io.summary import summarize_nwb

    if is_remote(source) and parse_source(source).kind == "dandiset":
        name, rows = list_nwb_assets(source, dandi_api_url)
        if not rows:
            console.print(f"{name}: no NWB assets")
            return
        console.print(rows_table(f"{name}: {len(rows)} NWB asset(s)", rows))
        console.print(f'read with: read_nwb("DANDI:{name[6:].split("@")[0]}/{rows[0]["path"]}")')
        return
    details: dict = {}
    shown = None
    if download and is_remote(source):
        from ..io.streaming import download_asset

        local, _ = download_asset(source, dandi_api_url, not no_cache)
        console.print(f"downloaded and verified: {local}")
        shown, source = source, str(local)
    with open_nwbfile(source, dandi_api_url=dandi_api_url, cache=not no_cache, details=details) as (
        nwbfile,
        name,
        backend,
    ):
        summary = summarize_nwb(nwbfile, shown or name, backend)
    header = Table.grid(padding=(0, 2))
    for key, value in summary.header.items():
        header.add_row(f"[bold]{key}[/]", value)
    console.print(header)
    sections = [
        ("Units (spiking)", summary.units),
        ("ROI response series (imaging traces)", summary.ophys),
        ("2-D time series that can be fit as activity, one unit per column", summary.series),
        ("Imaging movies (not read for fitting)", summary.movies),
        ("Trials", summary.trials),
        ("Behaviour and other time series", summary.behavior),
        ("FacRNN fits (read_results / FacRNN.from_nwb)", summary.fits),
    ]
    for title, rows in sections:
        if rows:
            console.print(rows_table(title, rows))
    if details:
        stats = details["stats"]
        size = details["size"] or 0
        console.print(
            f"streamed {stats.bytes_fetched / 1e6:.2f} MB of {size / 1e6:.1f} MB "
            f"({stats.cache_hits} block(s) from the cache)"
        )
    if not summary.units and not summary.ophys and not summary.series:
        console.print(
            "[yellow]nothing to fit:[/] no Units table, no ROI response series and no 2-D "
            "time series"
        )
        return
    hints = []
    if summary.units:
        hints.append(f'read_nwb("{source}", bin_size=0.02)')
    if summary.ophys:
        hints.append(f'read_nwb("{source}", series="{summary.ophys[0]["path"]}")')
    if summary.series and not summary.units and not summary.ophys:
        path = summary.series[0]["path"]
        hints.append(f'read_nwb("{source}", series="{path}")')
        console.print(f"fit with: nwb-facrnn fit {source} --series {path}")
    console.print("read with: " + "   or   ".join(hints))
