"""``nwb-facrnn sweep`` (every fit of a grid, :mod:`nwb_facrnn.sweep`) and ``nwb-facrnn
select`` (``(G, H, beta)`` from a sweep's summary)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ..errors import OptionError
from .app import command, console, errors, main, progress_bar
from .model_options import ModelCommand
from .options import (
    Choice,
    config_option,
    data_options,
    folder_option,
    list_option,
    pop_read_options,
)
from .tables import selection_table, sweep_table


def _no_output(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        raise click.BadParameter("a sweep writes a folder: use --output-dir DIR (or -o DIR)")


@command(main, cls=ModelCommand, model_grid=False, before="output_dir")
@click.argument("sources", metavar="SOURCE...", nargs=-1, required=True)
@config_option(
    "TOML or YAML file of these options (n_groups = [1, 2, 3], bin_size, ...); options "
    "on the command line win."
)
@data_options
@list_option("--n-groups", "2", int, 1, "1,2,3", "G values, e.g. 1,2,3 or 1-3.")
@list_option("--group-rank", "3", int, 1, "1,2,3", "H values, e.g. 1-3.")
@list_option("--beta", "20", float, 0, "0,5,20", "Partial-correlation weights, e.g. 0,5,20.")
@list_option("--seeds", "0", int, None, "0-4", "Seeds, e.g. 0-4 or 0,2,7.")
@folder_option(
    "--output-dir",
    "-o",
    required=True,
    help="Sweep directory: fits/<key>.nwb and .json per fit, summary.csv.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    hidden=True,
    expose_value=False,
    callback=_no_output,
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
def sweep(sources: tuple[str, ...], **kw: Any) -> None:
    """Fit every (G, H, beta, seed) to every SOURCE, each fit a Ray task; a summary table.

    SOURCE: local files and globs ('sessions/*.nwb'), DANDI assets, whole dandisets
    (DANDI:000128) and globs over a dandiset's assets ('DANDI:000128/sub-*/*.nwb').  Every
    fit trains on the even time steps and is scored on the odd ones; its results go into
    DIR/fits/<key>.nwb and the table into DIR/summary.csv.  Finished fits are skipped when
    the command is run again; failed ones are retried.  Then: nwb-facrnn select DIR.  The
    other FacRNN arguments are options of the same name, dashed, as in nwb-facrnn fit.

    \b
    Ray (pip install 'nwb-facrnn[distributed]'): a local instance with all CPUs (--num-cpus)
    or a cluster (--address; nwb-facrnn installed on its workers, DIR on storage they share).
    Without Ray, or with --serial, the fits run one after another, with the same results.
    Exit code 0 when at least one fit finished (failed ones are listed), 2 when none did.
    """
    from ..sweep import expand_sources, plan_sweep, ray_available, run_sweep, write_summary

    out_dir: Path = kw.pop("output_dir")
    address, num_cpus = kw.pop("address"), kw.pop("num_cpus")
    gpus, serial = kw.pop("gpus_per_fit"), kw.pop("serial")
    grid = {k: kw.pop(k) for k in ("n_groups", "group_rank", "beta", "seeds")}
    read_options = pop_read_options(kw)
    if serial and address:
        raise click.BadParameter("--serial runs without Ray; drop --address", param_hint="--serial")
    try:
        found = expand_sources(sources, read_options["dandi_api_url"])
    except OptionError as err:
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
    with progress_bar() as progress:
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
    console.print(sweep_table(rows, several=len(found) > 1))
    _print_outcome(rows, path, out_dir)


def _print_outcome(rows: list[dict], path: Path, out_dir: Path) -> None:
    """How many fits ran, finished before or failed (exit 2 when every one failed)."""
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


@command(main, "select")
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
    type=Choice(["best", "one_se"]),
    default="best",
    show_default=True,
    help="best: highest mean held-out log-likelihood; one_se (or one-se): fewest latents "
    "within one standard error.",
)
def select_command(summary: Path, pc_threshold: float, rule: str) -> None:
    """Choose (G, H, beta) from a sweep: the highest mean held-out log-likelihood among the
    configurations whose groups are disentangled (partial correlation under a threshold)."""
    from ..sweep import read_summary, select_model

    rows = read_summary(summary)
    sel = select_model(rows, pc_threshold=pc_threshold, rule=rule)
    console.print(selection_table(sel, len(rows)))
    c, m = sel.choice, sel.metric
    console.print(
        f"[bold]chosen[/]: G = {c['n_groups']}, H = {c['group_rank']}, beta = {c['beta']:g} "
        f"({m} {c[f'{m}_mean']:.3f}, gaussian_partial_correlation "
        f"{c['gaussian_partial_correlation_mean']:.3f} nats, on the held-out steps of "
        f"{c['n_fits']} fits; rule {rule})"
    )
    for source in sel.ignored_sources:
        console.print(f"[yellow]left out[/] (no fit of it finished): {escape(source)}")
    config = (c["n_groups"], c["group_rank"], c["beta"])
    mine = [
        r
        for r in rows
        if r.get("status") == "ok" and (r["n_groups"], r["group_rank"], r["beta"]) == config
    ]
    top = max(mine, key=lambda r: r[m])
    sources = sorted({r["source"] for r in mine})
    console.print(
        "fit it: " + escape(fit_command(top, sources[0] if len(sources) == 1 else "SOURCE")),
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


def fit_command(row: dict, source: str) -> str:
    """The ``nwb-facrnn fit`` command line of a sweep's fit (its options from its JSON row),
    each option named as the ``fit`` command names it, in the order of ``fit --help``."""
    from ..sweep import changed_options
    from .fit import fit

    params = {p.name: p for p in fit.params}
    order = list(params)
    options = {"n_groups": row["n_groups"], "group_rank": row["group_rank"], "beta": row["beta"]}
    command = ["nwb-facrnn", "fit", source]
    try:
        stored = json.loads((Path(row["path"]).parent / f"{row['key']}.json").read_text())
        read, fit_opts = changed_options(stored["read_options"], stored["fit_options"])
        given = {**options, "seed": row["seed"]}
        for changed in (read, fit_opts):
            given.update(sorted(changed.items(), key=lambda kv: order.index(kv[0])))
        return shlex.join(command + [a for k, v in given.items() for a in _arguments(params, k, v)])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no row, or unknown
        args = [a for k, v in options.items() for a in _arguments(params, k, v)]
        return shlex.join(command + args) + "  (with the sweep's options)"


def _arguments(params: dict[str, click.Parameter], key: str, value: Any) -> list[str]:
    """The command-line arguments that give the ``fit`` parameter ``key`` the value ``value``."""
    if key == "trials" and value is False:
        return [params["no_trials"].opts[0]]
    param = params[key]
    flag = param.opts[0]
    if getattr(param, "is_flag", False) or param.type is click.BOOL:
        return [flag] if value else list(param.secondary_opts[:1])
    if isinstance(value, dict):  # a selection given from Python
        return [flag, ", ".join(f"{k} == {v!r}" for k, v in value.items())]
    if getattr(param, "multiple", False):
        return [a for v in ([value] if isinstance(value, str) else value) for a in (flag, str(v))]
    values = value if isinstance(value, list | tuple) else [value]
    return [flag, *(f"{v:g}" if isinstance(v, float) else str(v) for v in values)]
