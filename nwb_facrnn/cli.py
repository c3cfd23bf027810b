"""The ``nwb-facrnn`` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__

# wide enough for the summary tables when output is piped to a file or CI log
console = Console(width=None if sys.stdout.isatty() else 180)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 180)
# --debug: let errors end with their traceback (set by any command's --debug flag)
_debug = {"on": False}


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _debug["on"] = True


def _debug_option(fn):
    """``--debug`` on the group and on every command: tracebacks instead of one-line errors."""
    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_debug,
        help="Show the full traceback when something fails.",
    )(fn)


def _command(group: click.Group, *args, **kwargs):
    """``group.command`` with ``--debug``."""

    def decorate(fn):
        return group.command(*args, **kwargs)(_debug_option(fn))

    return decorate


def _seed_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    """Parse ``0-4`` or ``0,1,5`` into a list of seeds."""
    try:
        seeds: list[int] = []
        for part in value.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise click.BadParameter(f"expected seeds like '0-4' or '0,2,7', got {value!r}") from None
    return seeds


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nwb-facrnn")
@_debug_option
def main() -> None:
    """Fit FacRNN, the factorized low-rank RNN, to neural recordings in NWB files, local or
    on DANDI, and write the results back into NWB.

    \b
    Start here:
      nwb-facrnn demo                       the whole path on synthetic imaging data
      nwb-facrnn info FILE|DANDI:ID/PATH    what a file holds that can be fit
      nwb-facrnn fit FILE|DANDI:ID/PATH     fit and write the results into NWB
      nwb-facrnn report RESULTS.nwb         figures of a fit (PNG + HTML)
      nwb-facrnn view RESULTS.nwb           the fit on the field of view in napari
    """


@main.group()
@_debug_option
def benchmark() -> None:
    """Reproduce the paper's experiments."""


def _run_benchmark(seeds: list[int], out_dir: Path, max_epochs: int | None) -> None:
    from .benchmark import METHODS, markdown_table, plot, run_synthetic_benchmark, summarize
    from .benchmark import write_csv as write_rows

    fit_params = {} if max_epochs is None else {"max_epochs": max_epochs}
    total = len(seeds) * len(METHODS)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("fitting", total=total)

        def advance(row) -> None:
            progress.update(task, advance=1, description=f"{row.method} seed {row.seed}")

        rows = run_synthetic_benchmark(seeds=seeds, on_result=advance, **fit_params)
    summary = summarize(rows)
    table = Table(title=f"Synthetic benchmark, held-out steps, seeds {seeds}")
    cols = {
        "partial_correlation": "PC ↓",
        "group_latent_r2": "group R² ↑",
        "subconnectivity_corr": "sub-W corr ↑",
        "connectivity_corr": "W corr ↑",
        "reconstruction_r2": "recon R² ↑",
        "test_log_likelihood": "test LL ↑",
        "fit_time_s": "fit (s)",
    }
    table.add_column("method")
    for label in cols.values():
        table.add_column(label, justify="right")
    spread = len(seeds) > 1  # mean ± std over seeds; a single seed has no spread
    for method, stats in summary.items():
        cells = (f"{m:.3f}±{sd:.3f}" if spread else f"{m:.3f}" for m, sd in map(stats.get, cols))
        table.add_row(method, *cells)
    console.print(table)
    csv_path = write_rows(rows, out_dir / "synthetic_benchmark.csv")
    fig_path = plot(rows, out_dir / "synthetic_benchmark.png")
    md_path = out_dir / "synthetic_benchmark.md"
    md_path.write_text(markdown_table(rows) + "\n")
    console.print(f"table:  {csv_path}\nfigure: {fig_path}\nsummary (Markdown): {md_path}")


@_command(benchmark, "synthetic")
@click.option(
    "--seeds", default="0-4", show_default=True, callback=_seed_list, help="Seeds, e.g. 0-4."
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results/benchmark"),
    show_default=True,
    help="Where the CSV, figure and Markdown table go.",
)
@click.option("--max-epochs", type=int, default=None, help="Override every method's epochs.")
def benchmark_synthetic(seeds: list[int], output_dir: Path, max_epochs: int | None) -> None:
    """lrRNN, lrRNN+ICA, LINT, bdRNN, FacRNN-full and FacRNN on synthetic ground truth."""
    _run_benchmark(seeds, output_dir, max_epochs)


def _rows_table(title: str, rows: list[dict]) -> Table:
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


def _remote_options(fn):
    """``--dandi-api-url``, ``--no-cache`` and ``--download``, for commands that read a source."""
    fn = click.option(
        "--download",
        is_flag=True,
        help="Remote sources: fetch the whole file into the cache (digest-checked) and read it.",
    )(fn)
    fn = click.option(
        "--no-cache", is_flag=True, help="Remote sources: do not use the on-disk block cache."
    )(fn)
    return click.option(
        "--dandi-api-url",
        default=None,
        help="DANDI API of another instance (default: $DANDI_API_URL, else the public archive).",
    )(fn)


@_command(main)
@click.argument("source")
@_remote_options
def info(source: str, dandi_api_url: str | None, no_cache: bool, download: bool) -> None:
    """Show what an NWB file can be fit on: units, ROI series, trials, behaviour.

    SOURCE is a local file (HDF5 or Zarr), a DANDI asset (DANDI:000140/sub-.../x.nwb, archive,
    dandi:// or download URLs) or an https URL.  A dandiset alone (DANDI:000140) lists its
    NWB assets.
    """
    from .io.dandi import is_remote, list_nwb_assets, parse_source
    from .io.reader import open_nwbfile
    from .io.summary import summarize_nwb

    if is_remote(source) and parse_source(source).kind == "dandiset":
        name, rows = list_nwb_assets(source, dandi_api_url)
        if not rows:
            console.print(f"{name}: no NWB assets")
            return
        console.print(_rows_table(f"{name}: {len(rows)} NWB asset(s)", rows))
        console.print(f'read with: read_nwb("DANDI:{name[6:].split("@")[0]}/{rows[0]["path"]}")')
        return
    details: dict = {}
    if download and is_remote(source):
        from .io.streaming import download_asset

        local, _ = download_asset(source, dandi_api_url, not no_cache)
        console.print(f"downloaded and verified: {local}")
        shown, source = source, str(local)
    else:
        shown = None
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
        ("Imaging movies (not read for fitting)", summary.movies),
        ("Trials", summary.trials),
        ("Behaviour and other time series", summary.behavior),
        ("FacRNN fits (read_results / FacRNN.from_nwb)", summary.fits),
    ]
    for title, rows in sections:
        if rows:
            console.print(_rows_table(title, rows))
    if details:
        stats = details["stats"]
        size = details["size"] or 0
        console.print(
            f"streamed {stats.bytes_fetched / 1e6:.2f} MB of {size / 1e6:.1f} MB "
            f"({stats.cache_hits} block(s) from the cache)"
        )
    if not summary.units and not summary.ophys:
        console.print("[yellow]nothing to fit:[/] no Units table and no ROI response series")
        return
    hints = []
    if summary.units:
        hints.append(f'read_nwb("{source}", bin_size=0.02)')
    if summary.ophys:
        hints.append(f'read_nwb("{source}", series="{summary.ophys[0]["path"]}")')
    console.print("read with: " + "   or   ".join(hints))


def _data_options(fn):
    """The options of :func:`nwb_facrnn.read_nwb`, with the same names, dashed."""
    opts = [
        click.option("--modality", type=click.Choice(["spikes", "ophys"]), help="What to fit."),
        click.option("--bin-size", type=float, help="Bin width (s); spikes default 0.02."),
        click.option(
            "--trials",
            "trials",
            default=None,
            help="Keep some trials, e.g. \"split == 'train'\" (default: all trials).",
        ),
        click.option("--no-trials", is_flag=True, help="Continuous data even with a trials table."),
        click.option("--align", help="Trials column to align on, e.g. move_onset_time."),
        click.option(
            "--window", type=float, nargs=2, default=None, help="Seconds around --align: -0.25 0.45"
        ),
        click.option("--time-range", type=float, nargs=2, default=None, help="Continuous: t0 t1."),
        click.option("--units", help="Unit selection, e.g. 'heldout == False'."),
        click.option("--series", help="RoiResponseSeries: name, container or path."),
        click.option("--rois", help="ROI selection, e.g. 'accepted == True'."),
        click.option("--detrend", type=click.Choice(["linear", "exponential"])),
        click.option("--zscore", is_flag=True, help="z-score every ROI."),
        click.option("--behavior", multiple=True, help="Behavioural series (repeatable)."),
        click.option("--inputs", help="TimeSeries of external inputs, one column per unit."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _model_options(fn):
    """The FacRNN options ``fit`` and ``sweep`` share, with the Python names, dashed."""
    opts = [
        click.option(
            "--alpha", type=float, default=0.0, show_default=True, help="Block-diag. weight."
        ),
        click.option(
            "--observation",
            type=click.Choice(["auto", "gaussian", "poisson"]),
            default="auto",
            show_default=True,
            help="auto: poisson for spikes, gaussian for imaging.",
        ),
        click.option("--encoder", type=click.Choice(["linear", "mlp"]), default="linear"),
        click.option("--decoder", type=click.Choice(["linear", "mlp"]), default="linear"),
        click.option(
            "--smoothing",
            type=float,
            default=None,
            help="Encoder input smoothing (bins), e.g. 2 for spikes.",
        ),
        click.option("--epochs", "max_epochs", type=int, default=100, show_default=True),
        click.option("--batch-size", type=int, default=128, show_default=True),
        click.option("--n-init", type=int, default=4, show_default=True, help="Restarts."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:i]."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _read_kwargs(kw: dict) -> dict:
    """read_nwb keyword arguments from the data options."""
    out = {k: kw.pop(k) for k in list(kw) if k in _READ_NAMES}
    no_trials = kw.pop("no_trials")
    out["trials"] = False if no_trials else out["trials"]
    out["window"] = tuple(out["window"]) if out["window"] else None
    out["time_range"] = tuple(out["time_range"]) if out["time_range"] else None
    out["behavior"] = list(out["behavior"]) or None
    out["zscore"] = bool(out["zscore"])
    return out


_READ_NAMES = (
    "modality bin_size trials align window time_range units series rois detrend zscore "
    "behavior inputs"
).split()


def _config_keys(command: click.Command) -> dict[str, str]:
    """Config-file key -> parameter name: the Python name and every option name, dashes or
    underscores (``epochs``, ``max_epochs``, ``bin-size``, ``bin_size``)."""
    keys: dict[str, str] = {}
    for param in command.params:
        if param.name == "config":
            continue
        keys[param.name] = param.name
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                keys[opt[2:]] = param.name
                keys[opt[2:].replace("-", "_")] = param.name
    return keys


def read_config(path: Path) -> dict:
    """The settings of a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file, as a flat dict.

    Top-level keys, or keys inside one level of tables (e.g. ``[data]``, ``[model]``,
    ``[output]``), which are merged.
    """
    suffix = path.suffix.lower()
    try:
        text = path.read_text()
    except OSError as err:
        raise click.BadParameter(f"{path}: cannot be read ({err.strerror})") from None
    try:
        if suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raise click.BadParameter(f"{path}: a config file is .toml, .yaml or .yml")
    except click.BadParameter:
        raise
    except Exception as err:  # tomllib.TOMLDecodeError, yaml.YAMLError
        raise click.BadParameter(f"{path}: not valid {suffix[1:].upper()}: {err}") from None
    if not isinstance(raw, dict):
        raise click.BadParameter(f"{path}: must hold a table of settings, not {type(raw).__name__}")
    flat: dict = {}
    for key, value in raw.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for k, v in items:
            if k in flat:
                raise click.BadParameter(f"{path}: {k!r} is set twice")
            flat[k] = v
    return flat


def _load_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """``--config FILE``: the file's settings become the defaults; options given on the
    command line win."""
    if value is None:
        return
    keys = _config_keys(ctx.command)
    settings = {}
    for key, setting in read_config(value).items():
        name = keys.get(str(key))
        if name is None:
            known = ", ".join(sorted(k for k in keys if "-" not in k))
            raise click.BadParameter(f"{value}: unknown setting {key!r}; known: {known}")
        settings[name] = setting
    ctx.default_map = {**(ctx.default_map or {}), **settings}


@_command(main)
@click.argument("source")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="TOML or YAML file of these options (the Python names: n_groups, bin_size, ...); "
    "options on the command line win.",
)
@_data_options
@_remote_options
@click.option("--n-groups", type=int, default=2, show_default=True, help="G, latent groups.")
@click.option("--group-rank", type=int, default=3, show_default=True, help="H, rank per group.")
@click.option("--beta", type=float, default=20.0, show_default=True, help="Partial-corr. weight.")
@click.option("--seed", type=int, default=0, show_default=True)
@_model_options
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train data-parallel in N processes: N GPUs from --device (cuda:i..cuda:i+N-1, "
    "nccl) or N CPU processes (gloo); same result as 1 process within float tolerance.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Results file (default: <source stem>_facrnn.nwb next to the source).",
)
@click.option("--in-place", is_flag=True, help="Add the results to the source file itself.")
@click.option("--copy", is_flag=True, help="Standalone output: copy the source's data.")
@click.option("--name", help="Results container name (default facrnn_G{G}H{H}_beta..._seed...).")
@click.option("--overwrite", is_flag=True, help="Replace a fit of the same name.")
@click.option(
    "--figures",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also draw the report figures (PNG + HTML) into this directory.",
)
def fit(source: str, **kw) -> None:
    """Fit FacRNN to an NWB file and write the results into NWB.

    SOURCE is a local NWB file (HDF5 or Zarr), a DANDI asset (DANDI:000128/sub-.../x.nwb) or
    an https URL; remote files are streamed, not downloaded.
    """
    from .io.reader import read_nwb
    from .io.results import read_results
    from .io.writer import check_destination, write_fit
    from .metrics import behavior_decoding_r2
    from .model import FacRNN

    figures = kw.pop("figures")
    data = read_nwb(
        source,
        **_read_kwargs(kw),
        dandi_api_url=kw.pop("dandi_api_url"),
        cache=not kw.pop("no_cache"),
        download=kw.pop("download"),
    )
    output = dict(
        output=kw.pop("output"),
        in_place=kw.pop("in_place"),
        copy=kw.pop("copy"),
        name=kw.pop("name"),
        overwrite=kw.pop("overwrite"),
    )
    if kw["observation"] == "auto":
        kw["observation"] = "poisson" if data.modality == "spikes" else "gaussian"
    # under torchrun every process runs this command; rank 0 alone reports and writes
    primary = _launcher_rank() == 0
    if primary:
        console.print(f"[bold]data[/]: {escape(repr(data))}")
    model = FacRNN(**kw, progress=primary)
    dest, name = check_destination(model, data, **output)  # refuse now, not after the fit
    if primary:
        console.print(f"[bold]writes[/]: {dest} ({name})")
    model.fit(data)
    if not primary:
        return
    decoding = {}
    if data.behavior:
        scores = behavior_decoding_r2(model.transform(data), data.behavior, seed=model.seed)
        decoding = {f"{key}_decoding_r2": r2 for key, r2 in scores.items()}
    path, name = write_fit(model, data, **output, metrics=decoding)
    res = read_results(path, name=name)
    _print_fit(model, res, path)
    if figures is not None:
        _print_report(_report(res, figures))


def _launcher_rank() -> int:
    """This process's rank when a launcher such as ``torchrun`` started several (``RANK``),
    else 0."""
    import os

    try:
        return int(os.environ.get("RANK", "0")) if "WORLD_SIZE" in os.environ else 0
    except ValueError:
        return 0


#: How the summary table names the stored metrics.
METRIC_LABELS = {
    "log_likelihood": "log-likelihood (nats/bin)",
    "partial_correlation": "partial correlation between groups (nats)",
    "reconstruction_r2": "reconstruction R²",
}


def _metric_label(key: str) -> str:
    if key.endswith("_decoding_r2"):
        return f"{key[: -len('_decoding_r2')]} decoding R² (cross-validated)"
    return METRIC_LABELS.get(key, key)


def _print_fit(model, res, path: Path) -> None:
    table = Table(title=f"FacRNN fit {res.name}", title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("groups x rank", f"{res.n_groups} x {res.group_rank}")
    table.add_row("fit time (s)", f"{model.fit_time_:.1f}")
    table.add_row("epochs", str(model.n_epochs_))
    for key, value in res.metrics.items():
        table.add_row(_metric_label(key), f"{value:.4f}")
    if res.dominant_group is not None:
        counts = np.bincount(res.dominant_group, minlength=res.n_groups)
        table.add_row("units per dominant group", " / ".join(map(str, counts)))
    console.print(table)
    console.print(f"results: {path}  (container {res.object_path})")
    console.print(f'read with: nwb_facrnn.read_results("{path}", name="{res.name}")')


def _report(results, out_dir: Path, color_by: str | None = None):
    from .report import make_report

    with console.status("drawing the figures"):
        return make_report(results, out_dir, color_by=color_by)


def _print_report(report) -> None:
    table = Table(title="Figures", title_justify="left")
    table.add_column("figure")
    table.add_column("file", overflow="fold")
    for key, path in report.figures.items():
        table.add_row(key.replace("_", " "), str(path))
    table.add_row("[bold]all of them[/]", f"[bold]{report.html}[/]")
    console.print(table)


@_command(main)
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="The fit to draw when the file holds several.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the figures go (default: <file stem>_figures next to FILE).",
)
@click.option(
    "--color-by",
    default=None,
    help="Trials column that colours the latents (default: a condition-like column).",
)
def report(file: Path, name: str | None, output_dir: Path | None, color_by: str | None) -> None:
    """Figures of a fit stored in FILE: latents over time and in state space, the
    connectivity and each group's part, group strengths, training curves (PNG + HTML)."""
    from .io.results import read_results

    res = read_results(file, name=name)
    if output_dir is None:
        stem = file.name.removesuffix(".zarr").removesuffix(".nwb")
        output_dir = file.parent / f"{stem}_figures"
    console.print(f"[bold]fit[/]: {escape(repr(res))}")
    _print_report(_report(res, output_dir, color_by))


@_command(main)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results/demo"),
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(output_dir: Path, seed: int) -> None:
    """The whole path on a synthetic voltage-imaging session with a known answer: NWB session,
    FacRNN fit, results in NWB, nwbinspector, ground-truth recovery, figures, napari."""
    import time

    from .demo import FIT, SESSION, run_demo

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


@_command(main)
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="The fit to show when the file holds several.")
def view(file: Path, name: str | None) -> None:
    """Open FILE (an NWB imaging session, HDF5 or Zarr) in napari with the FacRNN widgets."""
    viewer = open_in_napari(file, name)
    console.print(f"napari: {file} ({len(viewer.layers)} layers)")
    import napari

    napari.run()


# ------------------------------------------------------------------------ sweep and select
def _number_list(kind: type, minimum: float | None, example: str):
    """A callback parsing ``1,2,3`` (and, for integers, ranges ``1-3``) into a list."""

    def parse(ctx: click.Context, param: click.Parameter, value) -> list:
        items = value if isinstance(value, list | tuple) else str(value).strip("[] ").split(",")
        out: list = []
        try:
            for part in items:
                text = str(part).strip()
                lo, _, hi = text.partition("-") if kind is int else (text, "", "")
                out.extend(range(int(lo), int(hi) + 1) if hi else [kind(lo)])
        except ValueError:
            raise click.BadParameter(f"expected a list like {example!r}, got {value!r}") from None
        bad = [v for v in out if not np.isfinite(v) or (minimum is not None and v < minimum)]
        if not out or bad:
            raise click.BadParameter(
                f"every value must be a number >= {minimum:g}, got {value!r}"
                if bad
                else f"expected a list like {example!r}, got {value!r}"
            )
        return list(dict.fromkeys(out))

    return parse


@_command(main)
@click.argument("sources", metavar="SOURCE...", nargs=-1, required=True)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="TOML or YAML file of these options (n_groups = [1, 2, 3], bin_size, ...); options "
    "on the command line win.",
)
@_data_options
@_remote_options
@click.option(
    "--n-groups",
    default="2",
    show_default=True,
    callback=_number_list(int, 1, "1,2,3"),
    help="G values, e.g. 1,2,3 or 1-3.",
)
@click.option(
    "--group-rank",
    default="3",
    show_default=True,
    callback=_number_list(int, 1, "1,2,3"),
    help="H values, e.g. 1-3.",
)
@click.option(
    "--beta",
    default="20",
    show_default=True,
    callback=_number_list(float, 0, "0,5,20"),
    help="Partial-correlation weights, e.g. 0,5,20.",
)
@click.option(
    "--seeds",
    default="0",
    show_default=True,
    callback=_number_list(int, None, "0-4"),
    help="Seeds, e.g. 0-4 or 0,2,7.",
)
@_model_options
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Sweep directory: fits/<key>.nwb and .json per fit, summary.csv.",
)
@click.option(
    "--address",
    default=None,
    help="An existing Ray cluster (ray://head:10001, auto); default: a local Ray instance.",
)
@click.option("--num-cpus", type=click.IntRange(min=1), default=None, help="Local Ray CPUs.")
@click.option(
    "--gpus-per-fit",
    type=click.FloatRange(min=0),
    default=0.0,
    help="GPUs each Ray task reserves (with --device cuda).",
)
@click.option("--serial", is_flag=True, help="No Ray: one fit after another in this process.")
def sweep(sources: tuple[str, ...], **kw) -> None:
    """Fit every (G, H, beta, seed) to every SOURCE, each fit a Ray task; a summary table.

    SOURCE: local files and globs ('sessions/*.nwb'), DANDI assets, whole dandisets
    (DANDI:000128) and globs over a dandiset's assets ('DANDI:000128/sub-*/*.nwb').  Every
    fit trains on the even time steps and is scored on the odd ones; its results go into
    DIR/fits/<key>.nwb and the table into DIR/summary.csv.  Finished fits are skipped when
    the command is run again; failed ones are retried.  Then: nwb-facrnn select DIR.

    \b
    Ray (pip install 'nwb-facrnn[distributed]'): a local instance with all CPUs (--num-cpus)
    or a cluster (--address; nwb-facrnn installed on its workers, DIR on storage they share).
    Without Ray, or with --serial, the fits run one after another, with the same results.
    Exit code 0 when at least one fit finished (failed ones are listed), 2 when none did.
    """
    from .sweep import expand_sources, plan_sweep, ray_available, run_sweep, write_summary

    out_dir: Path = kw.pop("output")
    address, num_cpus = kw.pop("address"), kw.pop("num_cpus")
    gpus, serial = kw.pop("gpus_per_fit"), kw.pop("serial")
    grid = {k: kw.pop(k) for k in ("n_groups", "group_rank", "beta", "seeds")}
    read_options = _read_kwargs(kw)
    api_url = kw.pop("dandi_api_url")
    read_options.update(dandi_api_url=api_url, cache=not kw.pop("no_cache"))
    read_options["download"] = kw.pop("download")
    if serial and address:
        raise click.BadParameter("--serial runs without Ray; drop --address", param_hint="--serial")
    try:
        found = expand_sources(sources, api_url)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="SOURCE") from None
    specs = plan_sweep(found, **grid, read_options=read_options, fit_options=kw)
    use_ray = not serial and (address is not None or ray_available())
    where = (
        f"Ray cluster {address}"
        if address
        else f"a local Ray instance ({num_cpus or 'all'} CPUs)"
        if use_ray
        else "this process, one after another" + ("" if serial else " (Ray is not installed)")
    )
    grid_text = ", ".join(
        f"{k} {','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vals)}"
        for k, vals in grid.items()
    )
    console.print(
        f"[bold]sweep[/]: {len(found)} source(s) x ({escape(grid_text)}) = {len(specs)} fits "
        f"on {where} -> {out_dir}"
    )
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("fits", total=len(specs))

        def advance(row: dict) -> None:
            state = "reused" if row.get("reused") else row["status"]
            progress.update(task, advance=1, description=f"{row['key']} ({state})")

        try:
            rows = run_sweep(
                specs,
                out_dir,
                address=address,
                num_cpus=num_cpus,
                backend="ray" if use_ray else "serial",
                gpus_per_fit=gpus,
                on_result=advance,
            )
        except ImportError as err:  # Ray or its client is not installed
            raise click.UsageError(str(err)) from None
    path = write_summary(rows, out_dir)
    console.print(_sweep_table(rows, several=len(found) > 1))
    failed = [r for r in rows if r["status"] != "ok"]
    reused = sum(bool(r.get("reused")) for r in rows)
    console.print(
        f"{len(rows)} fits: {len(rows) - len(failed) - reused} run, {reused} finished "
        f"before (skipped), {len(failed)} failed"
    )
    for row in failed:
        console.print(f"[red]failed[/] {row['key']}: {escape(str(row.get('error')))}")
    console.print(f"summary: {path}")
    if len(failed) == len(rows):
        first = escape(str(failed[0].get("error")))
        errors.print(
            f"[red]error:[/] every fit failed (the first: {first}); all errors are in {path}",
            soft_wrap=True,
            highlight=False,
        )
        sys.exit(2)
    if failed:
        console.print("[yellow]run the same command again to retry the failed fits[/]")
    console.print(f"choose (G, H, beta): nwb-facrnn select {out_dir}")


def _fmt(value, digits: int = 3) -> str:
    """A metric for a table cell: ``-`` when missing."""
    if value is None:
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def _sweep_table(rows: list[dict], several: bool) -> Table:
    from .sweep import source_stem, summary_columns

    decoding = [c for c in summary_columns(rows) if c.endswith("_decoding_r2")]
    table = Table(title="Sweep (held-out: odd time steps)", title_justify="left")
    if several:
        table.add_column("source")
    for col in ("G", "H", "beta", "seed"):
        table.add_column(col, justify="right")
    table.add_column("status")
    for label in ("held-out LL (nats/step)", "PC (nats)", "recon R²"):
        table.add_column(label, justify="right")
    for col in decoding:
        table.add_column(f"{col[: -len('_decoding_r2')]} decoding R²", justify="right")
    table.add_column("epochs", justify="right")
    table.add_column("fit (s)", justify="right")
    for r in rows:
        ok = r["status"] == "ok"
        cells = [] if not several else [escape(source_stem(r["source"]))]
        cells += [str(r["n_groups"]), str(r["group_rank"]), f"{r['beta']:g}", str(r["seed"])]
        cells.append("ok" if ok else "[red]failed[/]")
        metrics = ("heldout_log_likelihood", "heldout_partial_correlation")
        cells += [_fmt(r.get(k)) for k in (*metrics, "heldout_reconstruction_r2", *decoding)]
        cells += [_fmt(r.get("n_epochs"), 0), _fmt(r.get("fit_time_s"), 1)]
        table.add_row(*cells)
    return table


@_command(main, "select")
@click.argument("summary", metavar="DIR|SUMMARY.csv", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--pc-threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="Disentangled: mean partial correlation between groups below this (nats).",
)
@click.option(
    "--rule",
    type=click.Choice(["best", "one-se"]),
    default="best",
    show_default=True,
    help="best: highest mean held-out LL; one-se: fewest latents within one standard error.",
)
def select_command(summary: Path, pc_threshold: float, rule: str) -> None:
    """Choose (G, H, beta) from a sweep: the highest mean held-out log-likelihood among the
    configurations whose groups are disentangled (partial correlation under a threshold)."""
    from .sweep import read_summary, select_model

    rows = read_summary(summary)
    sel = select_model(rows, pc_threshold=pc_threshold, rule=rule.replace("-", "_"))
    decoding = [k for k in sel.table[0] if k.endswith("_decoding_r2_mean")]
    table = Table(
        title=f"Model selection ({len(rows)} fits; held-out: odd time steps; disentangled: "
        f"PC < {pc_threshold:g} nats)",
        title_justify="left",
    )
    for col in ("G", "H", "beta", "K", "fits"):
        table.add_column(col, justify="right")
    for label in ("held-out LL (nats/step)", "PC (nats)", "recon R²"):
        table.add_column(label, justify="right")
    for key in decoding:
        table.add_column(f"{key[: -len('_decoding_r2_mean')]} decoding R²", justify="right")
    table.add_column("eligible")
    table.add_column("")
    for r in sel.table:
        fits = str(r["n_fits"]) + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")
        ll = f"{_fmt(r['heldout_log_likelihood_mean'])} ± {_fmt(r['heldout_log_likelihood_std'])}"
        cells = [str(r["n_groups"]), str(r["group_rank"]), f"{r['beta']:g}", str(r["n_latents"])]
        cells += [fits, ll, _fmt(r["heldout_partial_correlation_mean"])]
        cells += [_fmt(r["heldout_reconstruction_r2_mean"]), *(_fmt(r[k]) for k in decoding)]
        cells += ["yes" if r["eligible"] else f"no: {r['reason']}"]
        cells += ["[bold green]◀ chosen[/]" if r["chosen"] else ""]
        table.add_row(*cells, style="bold" if r["chosen"] else None)
    console.print(table)
    c = sel.choice
    console.print(
        f"[bold]chosen[/]: G = {c['n_groups']}, H = {c['group_rank']}, beta = {c['beta']:g} "
        f"(held-out LL {c['heldout_log_likelihood_mean']:.3f} nats/step, partial correlation "
        f"{c['heldout_partial_correlation_mean']:.3f} nats, {c['n_fits']} fits; rule {rule})"
    )
    for source in sel.ignored_sources:
        console.print(f"[yellow]left out[/] (no fit of it finished): {escape(source)}")
    config = (c["n_groups"], c["group_rank"], c["beta"])
    mine = [
        r
        for r in rows
        if r.get("status") == "ok" and (r["n_groups"], r["group_rank"], r["beta"]) == config
    ]
    top = max(mine, key=lambda r: r[sel.metric])
    sources = sorted({r["source"] for r in mine})
    console.print(
        "fit it: " + escape(_fit_command(top, sources[0] if len(sources) == 1 else "SOURCE")),
        highlight=False,
        soft_wrap=True,
    )
    if len(sources) == 1:
        console.print(
            f"or use the sweep's best fit of it (seed {top['seed']}): "
            f'nwb_facrnn.read_results("{top["path"]}", name="{top["fit_name"]}")',
            highlight=False,
            soft_wrap=True,
        )


def _fit_command(row: dict, source: str) -> str:
    """The ``nwb-facrnn fit`` command line of a sweep's fit (its options from its JSON row)."""
    import json
    import shlex

    from .sweep import changed_options

    command = ["nwb-facrnn", "fit", source, "--n-groups", str(row["n_groups"])]
    command += ["--group-rank", str(row["group_rank"]), "--beta", f"{row['beta']:g}"]
    try:
        stored = json.loads((Path(row["path"]).parent / f"{row['key']}.json").read_text())
        read, fit_opts = changed_options(stored["read_options"], stored["fit_options"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return shlex.join(command) + "  (with the sweep's data and fit options)"
    command += ["--seed", str(row["seed"])]
    flags = {"max_epochs": "--epochs"}
    for key, value in {**read, **fit_opts}.items():
        flag = flags.get(key, "--" + key.replace("_", "-"))
        if key == "trials" and value is False:
            command.append("--no-trials")
        elif value is True:
            command.append(flag)
        elif isinstance(value, dict):  # a selection given from Python
            command += [flag, ", ".join(f"{k} == {v!r}" for k, v in value.items())]
        elif key == "behavior":
            for name in [value] if isinstance(value, str) else value:
                command += [flag, str(name)]
        elif isinstance(value, list | tuple):
            command += [flag, *(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]
        else:
            command += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(command)


def open_in_napari(file: Path, name: str | None = None):
    """A napari viewer on ``file`` through the napari-facrnn plugin (found by napari's plugin
    discovery, so this package never imports the plugin)."""
    try:
        import napari  # noqa: F401
        from npe2 import PluginManager
    except ImportError:
        raise click.ClickException(
            "napari is not installed: pip install 'nwb-facrnn[napari]' ./napari_plugin "
            "(or make install)"
        ) from None
    manager = PluginManager.instance()
    manager.discover()
    try:
        command = manager.get_command("napari-facrnn.open_viewer")
    except KeyError:
        raise click.ClickException(
            "the napari-facrnn plugin is not installed: pip install ./napari_plugin"
        ) from None
    return command.exec(args=(file,), kwargs={"name": name})


def run() -> None:
    """Console entry point: an error ends with one line (exit code 2 for bad input, 1 for an
    internal error), not a traceback, unless ``--debug`` was given."""
    try:
        main(standalone_mode=True)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
    except Exception as err:
        if _debug["on"]:
            raise
        message = str(err) or type(err).__name__
        if isinstance(err, ValueError | RuntimeError | OSError | MemoryError):
            errors.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
            sys.exit(2)
        errors.print(
            f"[red]internal error:[/] {type(err).__name__}: {escape(message)} "
            "(run again with --debug for the traceback, and please report it)",
            soft_wrap=True,
            highlight=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    run()
