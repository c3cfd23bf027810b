"""The options several commands share (the data to read, where a remote file comes from, a
config file), with the Python names of the functions they feed, dashed, and their parsers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click


class Choice(click.Choice):
    """:class:`click.Choice` that takes ``-`` and ``_`` as the same (``one-se``, ``one_se``) and
    gives the value as the program spells it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, str):
            for choice in self.choices:
                if str(choice).replace("-", "_") == value.replace("-", "_"):
                    return choice
        return super().convert(value, param, ctx)


def number_list(kind: type, minimum: float | None, example: str):
    """A callback parsing ``1,2,3`` (and, for integers, ranges ``1-3``) into a list of unique
    numbers, each ``>= minimum``; a config file's list is taken as it is."""

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
        bad = [v for v in out if not math.isfinite(v) or (minimum is not None and v < minimum)]
        if not out or bad:
            raise click.BadParameter(
                f"every value must be a number >= {minimum:g}, got {value!r}"
                if bad
                else f"expected a list like {example!r}, got {value!r}"
            )
        return list(dict.fromkeys(out))

    return parse


def list_option(
    flag: str, default: str, kind: type, minimum: float | None, example: str, help: str
):
    """An option taking a list of numbers (:func:`number_list`), e.g. ``--seeds 0-4``."""
    return click.option(
        flag,
        default=default,
        show_default=True,
        callback=number_list(kind, minimum, example),
        help=help,
    )


def folder_option(*decls: str, help: str, default: Path | None = None, required: bool = False):
    """An option naming a folder: ``--output-dir`` in every command (``--output`` always
    names a file), ``--figures``."""
    return click.option(
        *decls,
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        required=required,
        show_default=default is not None,
        help=help,
    )


def _apply(fn, opts: list):
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


# --------------------------------------------------------------------------- reading
def remote_options(fn):
    """``--dandi-api-url``, ``--no-cache`` and ``--download``, for commands that read a source."""
    return _apply(
        fn,
        [
            click.option(
                "--dandi-api-url",
                default=None,
                help="DANDI API of another instance (default: $DANDI_API_URL, else the public "
                "archive).",
            ),
            click.option(
                "--no-cache",
                is_flag=True,
                help="Remote sources: do not use the on-disk block cache.",
            ),
            click.option(
                "--download",
                is_flag=True,
                help="Remote sources: fetch the whole file into the cache (digest-checked) and "
                "read it.",
            ),
        ],
    )


def data_options(fn):
    """The options of :func:`nwb_facrnn.read_nwb`, with the same names, dashed (and the
    remote options)."""
    return _apply(
        fn,
        [
            click.option(
                "--modality",
                type=Choice(["spikes", "ophys", "series"]),
                help="What to fit: a Units table, ROI traces or a 2-D TimeSeries (--series).",
            ),
            click.option("--bin-size", type=float, help="Bin width (s); spikes default 0.02."),
            click.option(
                "--trials",
                default=None,
                help="Keep some trials, e.g. \"split == 'train'\" (default: all trials).",
            ),
            click.option(
                "--no-trials", is_flag=True, help="Continuous data even with a trials table."
            ),
            click.option("--align", help="Trials column to align on, e.g. move_onset_time."),
            click.option(
                "--window",
                type=float,
                nargs=2,
                default=None,
                help="Seconds around --align: -0.25 0.45",
            ),
            click.option(
                "--time-range", type=float, nargs=2, default=None, help="Continuous: t0 t1."
            ),
            click.option("--units", help="Unit selection, e.g. 'heldout == False'."),
            click.option(
                "--series",
                help="RoiResponseSeries (name, container or path), or a 2-D TimeSeries (time x "
                "units, e.g. binned rates) by path or name: one unit per column.",
            ),
            click.option("--rois", help="ROI selection, e.g. 'accepted == True'."),
            click.option("--detrend", type=Choice(["linear", "exponential"])),
            click.option("--zscore", is_flag=True, help="z-score every ROI (or column)."),
            click.option("--behavior", multiple=True, help="Behavioural series (repeatable)."),
            click.option("--inputs", help="TimeSeries of external inputs, one column per unit."),
            click.option(
                "--chunked",
                type=Choice(["auto", "always", "never"]),
                default="auto",
                show_default=True,
                help="Imaging/series: leave the traces on disk and fit them a chunk of frames "
                "at a time (auto: when they would not fit in memory).",
            ),
            remote_options,
        ],
    )


_READ_NAMES = (
    "modality bin_size trials align window time_range units series rois detrend zscore "
    "behavior inputs dandi_api_url chunked"
).split()


def pop_read_options(kw: dict[str, Any]) -> dict[str, Any]:
    """The :func:`nwb_facrnn.read_nwb` keyword arguments of the data options, taken out of
    ``kw`` (the command's keyword arguments)."""
    out = {k: kw.pop(k) for k in _READ_NAMES}
    if kw.pop("no_trials"):
        out["trials"] = False
    for key in ("window", "time_range"):
        out[key] = tuple(out[key]) if out[key] else None
    out["behavior"] = list(out["behavior"]) or None
    out["zscore"] = bool(out["zscore"])
    out["chunked"] = {"always": True, "never": False}.get(out["chunked"] or "auto", "auto")
    out["cache"] = not kw.pop("no_cache")
    out["download"] = kw.pop("download")
    return out


# --------------------------------------------------------------------------- config files
def config_option(help: str):
    """``--config FILE``: the file's settings become the defaults; options given on the
    command line win."""
    return click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        is_eager=True,
        expose_value=False,
        callback=_load_config,
        help=help,
    )


def _config_keys(ctx: click.Context) -> dict[str, str]:
    """Config-file key -> parameter name: the Python name and every option name, dashes or
    underscores (``epochs``, ``max_epochs``, ``bin-size``, ``bin_size``)."""
    keys: dict[str, str] = {}
    for param in ctx.command.get_params(ctx):
        if param.name in ("config", "help", "debug"):
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
    if suffix not in (".toml", ".yaml", ".yml"):
        raise click.BadParameter(f"{path}: a config file is .toml, .yaml or .yml")
    try:
        text = path.read_text()
    except OSError as err:
        raise click.BadParameter(f"{path}: cannot be read ({err.strerror})") from None
    try:
        if suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text) or {}
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
    if value is None:
        return
    keys = _config_keys(ctx)
    settings = {}
    for key, setting in read_config(value).items():
        name = keys.get(str(key))
        if name is None:
            known = ", ".join(sorted(k for k in keys if "-" not in k))
            raise click.BadParameter(f"{value}: unknown setting {key!r}; known: {known}")
        settings[name] = setting
    ctx.default_map = {**(ctx.default_map or {}), **settings}
