"""``read_nwb``: one call from an NWB file to a fit-ready :class:`~nwb_facrnn.NeuralData`."""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import __version__
from ..errors import OptionError
from ..neural_data import NeuralData
from .backend import detect_backend, open_io
from .binning import BinGrid, bin_series
from .errors import NWBReadError, source_name
from .lazy import Chunked, LazyRead, check_chunked
from .modalities import read_ophys, read_series, read_spikes
from .nwb_objects import find_time_series, object_path, series_timestamps
from .ophys import (
    Detrend,
    list_roi_series,
)
from .read_errors import check_hdf5_is_nwb, describe_read_error, raise_if_broken_links
from .selection import Selection
from .timeseries import (
    describe_activity_series,
    match_time_series,
)


def read_nwb(
    source: str | os.PathLike | Any,
    *,
    modality: Literal["spikes", "ophys", "series"] | None = None,
    bin_size: float | None = None,
    trials: bool | Selection | None = None,
    align: str | None = None,
    window: tuple[float, float] | None = None,
    time_range: tuple[float, float] | None = None,
    units: Selection | None = None,
    series: str | None = None,
    rois: Selection | None = None,
    detrend: Detrend | None = None,
    zscore: bool = False,
    behavior: str | Sequence[str] | None = None,
    inputs: str | None = None,
    dandi_api_url: str | None = None,
    cache: bool | str | os.PathLike = True,
    download: bool = False,
    chunked: Chunked = "auto",
) -> NeuralData:
    """Read binned activity from an NWB file, ready for :meth:`FacRNN.fit`.

    Parameters
    ----------
    source : path, DANDI ID, URL or pynwb.NWBFile
        An HDF5 ``.nwb`` file, a Zarr NWB store (directory), an open ``NWBFile`` (left
        open), or a remote file streamed over HTTP: ``DANDI:000140/sub-Jenkins/...nwb``
        (optionally ``DANDI:000140@<version>/...``), a DANDI archive, ``dandi://`` or asset
        download URL, or any ``https://`` URL of an NWB file.  Files are opened read-only and
        never modified.
    modality : {"spikes", "ophys", "series"}, optional
        Which data to read.  Default: ``"ophys"`` when ``series`` names a RoiResponseSeries
        or ``rois`` is given, ``"series"`` when ``series`` names another TimeSeries, else
        ``"spikes"`` when the file has a Units table, else ``"ophys"``.
    bin_size : float, optional
        Bin width in seconds.  Spikes: default 0.02.  Imaging and series: default the
        sampling interval (one bin per sample); a larger bin averages samples, a smaller one
        interpolates.
    trials : bool or selection, optional
        Default: cut the data into trials when the file has a trials table, else continuous.
        False: continuous.  A selection keeps some trials, e.g. ``{"split": "train"}``.
        Whole trials run from ``start_time`` to ``stop_time``; shorter ones are padded
        at the end and the padding is masked.
    align, window : str, (float, float)
        Cut ``window = (before, after)`` seconds around the trials column ``align`` instead
        (e.g. ``align="move_onset_time", window=(-0.25, 0.45)``); trials without the event
        (NaN) are dropped with a warning.
    time_range : (float, float), optional
        Continuous data only: the stretch of the session to read (default: all of it).
    units : selection, optional
        Which units to read: ``{"heldout": False}``, ``{"electrode_group": "M1"}``,
        ``{"location": [...]}``, or the string form ``"heldout == False"``.
    series : str, optional
        The RoiResponseSeries: its name, its container's name (``"DfOverF"``,
        ``"Fluorescence"``) or its path in the file.  Default: the DfOverF series, else
        the Fluorescence one.  Or a plain 2-D TimeSeries (time x units, e.g.
        ``"/processing/ecephys/binned_rates"``), by path or unique name: its columns are the
        units (ids ``0 .. N-1``, no unit table), binned like ROI traces, NaN unobserved.
    rois : selection, optional
        Which ROIs of the series' PlaneSegmentation, e.g. ``{"accepted": True}``.
    detrend : {"linear", "exponential"}, optional
        Imaging: remove photobleaching.  On Fluorescence the result is ``(F - trend) /
        trend``; on dF/F (and on a plain series) the trend is subtracted.
    zscore : bool, default False
        Imaging and series: z-score every ROI (column) over its observed bins (after
        detrending).
    behavior : str or list of str, optional
        TimeSeries / SpatialSeries to put on the same bins (e.g. ``"hand_vel"``), by name or
        path; for evaluation only.
    inputs : str, optional
        A TimeSeries with one column per (selected) unit, fed to the model as ``u_t``.
    dandi_api_url : str, optional
        The DANDI instance's API (e.g. a staging or lab instance); default the environment
        variable ``DANDI_API_URL``, else the public archive.
    cache : bool or path, default True
        Remote sources: keep fetched blocks in the on-disk cache (True: the platform cache
        directory or ``NWB_FACRNN_CACHE_DIR``; a path: that directory; False: no cache).
    download : bool, default False
        Remote sources: fetch the whole file into the cache first (with a progress bar),
        verify it against the asset's digest, and read it locally (reused next time).
    chunked : bool or "auto", default "auto"
        Imaging and series: leave the traces on disk and let the fit read them a chunk of
        frames at a time (:mod:`nwb_facrnn.io.lazy`), for sessions larger than memory.
        ``"auto"`` does so when the float32 activity is over a third of the memory the
        process may still use and the read allows it (one bin per frame, continuous, no
        ``detrend``/``zscore``/``inputs``/``time_range``, a local file); True requires it.

    Returns
    -------
    NeuralData

    Raises
    ------
    NWBReadError
        Input that cannot be read as asked; the message names the file, the NWB object and
        what was expected.
    """
    options = {
        k: v
        for k, v in dict(
            modality=modality,
            bin_size=bin_size,
            trials=trials,
            align=align,
            window=window,
            time_range=time_range,
            units=units,
            series=series,
            rois=rois,
            detrend=detrend,
            zscore=zscore,
            behavior=behavior,
            inputs=inputs,
        ).items()
        if v is not None
    }
    if bin_size is not None and not (isinstance(bin_size, numbers.Real) and bin_size > 0):
        raise OptionError(f"bin_size must be a positive number of seconds, got {bin_size!r}")
    if bin_size is not None:
        # the shortest decimal of its own precision: np.float32(0.05) means 0.05, not 0.0500000007
        options["bin_size"] = float(np.format_float_positional(bin_size))
    chunked = check_chunked(chunked)
    remote: dict[str, Any] = {}
    name_as = None
    given = str(source) if _is_remote(source) else ""
    if download and _is_remote(source):
        from .streaming import download_asset

        source, remote = download_asset(str(source), dandi_api_url, cache)
        name_as = _remote_name(remote)
    with open_nwbfile(source, dandi_api_url=dandi_api_url, cache=cache, details=remote) as (
        nwbfile,
        name,
        backend,
    ):
        kind = _choose_modality(nwbfile, name, modality, series, rois)
        reader = {"spikes": read_spikes, "ophys": read_ophys, "series": read_series}[kind]
        local = backend in ("hdf5", "zarr") and not remote and Path(name).exists()
        lazy = LazyRead(chunked, name if local else None, backend)
        if kind == "spikes" and chunked is True:
            raise OptionError(f"{name}: chunked reading is for imaging and series, not spikes")
        data, grid, source_columns = reader(nwbfile, name, options, lazy)
        names = [] if behavior is None else [behavior] if isinstance(behavior, str) else behavior
        for b in names:
            values, path = _resample_series(nwbfile, name, b, grid, "behavior")
            data.behavior[b] = _squeeze(values, data)
            data.provenance["objects"][f"behavior/{b}"] = path
        if inputs is not None:
            u, path = _resample_series(nwbfile, name, inputs, grid, "input")
            data.inputs = _match_input_columns(_squeeze(u, data), source_columns, data, name, path)
            data.provenance["objects"]["inputs"] = path
        data.provenance.update(
            source=name_as or name,
            backend=backend,
            identifier=str(nwbfile.identifier),
            object_id=str(nwbfile.object_id),
            session_start_time=str(nwbfile.session_start_time),
            options=_jsonable(options),
            nwb_facrnn_version=__version__,
        )
        if remote:
            stats = remote["stats"]
            from .dandi import public_url

            data.provenance["remote"] = {
                "source": public_url(given) if given.lower().startswith("http") else given,
                "url": public_url(remote["url"]),
                "size": remote["size"],
                "dandi": remote["dandi"],
                "bytes_fetched": stats.bytes_fetched,
                "cache_hits": stats.cache_hits,
                "cache": cache if isinstance(cache, bool) else str(cache),
                "local_path": remote.get("local_path"),
            }
    return data


@contextlib.contextmanager
def open_nwbfile(
    source: str | os.PathLike | Any,
    *,
    dandi_api_url: str | None = None,
    cache: bool | str | os.PathLike = True,
    details: dict[str, Any] | None = None,
) -> Iterator[tuple[Any, str, str]]:
    """Yield ``(nwbfile, source name, backend)`` for a path (opened read-only) or an NWBFile.

    Paths are closed on exit; an NWBFile passed in is left open.  A ``DANDI:`` ID or an
    HTTP(S) URL is streamed (backend ``"hdf5-stream"``, see :mod:`nwb_facrnn.io.dandi`);
    ``details``, when given, receives its URL, DANDI identity and transfer statistics.
    """
    from pynwb import NWBFile

    from .dandi import is_remote

    if is_remote(source):
        from .streaming import open_remote

        with open_remote(source, dandi_api_url, cache) as (nwbfile, name, info):
            if details is not None:
                details.update(info)
            yield nwbfile, name, "hdf5-stream"
        return

    if isinstance(source, NWBFile):
        # an NWBFile the caller read from disk keeps the path it came from
        name = source_name(source)
        backend = detect_backend(name) if name and Path(name).exists() else "in-memory"
        yield source, name or "<in-memory NWBFile>", backend
        return
    if not isinstance(source, str | os.PathLike):
        raise OptionError(f"source must be a path or a pynwb.NWBFile, got {type(source).__name__}")
    path = Path(source)
    name = str(path)
    backend = detect_backend(path)
    if backend == "hdf5":
        check_hdf5_is_nwb(path)
    io = None
    try:
        io = open_io(path, backend)
        nwbfile = io.read()
    except NWBReadError:
        if io is not None:
            io.close()
        raise
    except Exception as err:  # anything pynwb/hdmf/h5py raise for a broken file
        if io is not None:
            with contextlib.suppress(Exception):
                io.close()
        raise_if_broken_links(path, backend)
        where, why = describe_read_error(err)
        raise NWBReadError(name, where, f"cannot be read as NWB ({why})") from None
    try:
        yield nwbfile, name, backend
    finally:
        io.close()


def _is_remote(source: Any) -> bool:
    from .dandi import is_remote

    return is_remote(source)


def _remote_name(details: dict[str, Any]) -> str:
    d = details.get("dandi") or {}
    if d.get("dandiset_id"):
        return f"DANDI:{d['dandiset_id']}@{d['version']}/{d['path']}"
    return str(details["url"])


def _choose_modality(
    nwbfile: Any, source: str, modality: str | None, series: str | None, rois: Any
) -> str:
    if modality is not None and modality not in ("spikes", "ophys", "series"):
        raise OptionError(f"modality must be 'spikes', 'ophys' or 'series', got {modality!r}")
    if modality == "series" and series is None:
        raise OptionError("modality='series' needs series= naming a 2-D TimeSeries (time x units)")
    if modality is not None:
        return modality
    if series is not None and rois is None and _names_plain_series(nwbfile, series):
        return "series"
    if series is not None or rois is not None:
        return "ophys"
    if nwbfile.units is not None:
        return "spikes"
    if list_roi_series(nwbfile):
        return "ophys"
    plain = describe_activity_series(nwbfile)
    hint = "; to fit a 2-D TimeSeries (time x units) pass --series PATH (series= in Python): "
    hint = hint + plain if plain else ""
    raise NWBReadError(
        source,
        "/",
        "nothing to fit: no Units table (/units) and no RoiResponseSeries under "
        f"processing (DfOverF or Fluorescence){hint}",
    )


def _names_plain_series(nwbfile: Any, series: str) -> bool:
    """Whether ``series`` names a TimeSeries that is not a RoiResponseSeries (by path or
    name), and no RoiResponseSeries (by path, name or container name)."""
    target = "/" + series.strip("/")
    for path, _, s in list_roi_series(nwbfile):
        if path == target or s.name == series or path.split("/")[-2] == series:
            return False
    return bool(match_time_series(nwbfile, series))


def _resample_series(
    nwbfile: Any, source: str, name: str, grid: BinGrid, what: str
) -> tuple[np.ndarray, str]:
    """A TimeSeries averaged onto ``grid``: (n_seq, T, D) float32 with NaN where unobserved."""
    s = find_time_series(nwbfile, name, source, what)
    path = object_path(s)
    ts = series_timestamps(s, source)
    if len(ts) == 0:
        raise NWBReadError(source, path + "/data", f"the {what} series has no samples")
    data = s.data

    def read_rows(i0: int, i1: int) -> np.ndarray:
        return np.asarray(data[i0:i1], dtype=np.float64).reshape(i1 - i0, -1)

    values, observed = bin_series(ts, read_rows, grid)
    out = np.where(observed, values, np.nan).astype(np.float32)
    out[~grid.valid()] = np.nan
    return out, path


def _match_input_columns(
    u: np.ndarray,
    source_columns: tuple[np.ndarray, int],
    data: NeuralData,
    source: str,
    path: str,
) -> np.ndarray:
    """Inputs with one column per modeled unit.

    A series with one column per row of the unit/ROI table (or per column of the ROI
    series) is subset to the units that were kept; one with exactly one column per kept
    unit is taken as it is, in order.
    """
    kept, n_all = source_columns
    width = u.shape[-1]
    every = (
        f"every row of {data.unit_table}"
        if data.unit_table
        else f"every column of {data.provenance['objects']['activity']}"
    )
    if width == n_all:
        u = u[..., kept]
    elif width != data.n_units:
        raise NWBReadError(
            source,
            path,
            f"an inputs series needs one column per unit: {n_all} ({every}) or "
            f"{data.n_units} (the units read), got {width}; "
            "FacRNN adds u_t to each unit's drive",
        )
    return np.nan_to_num(u).astype(np.float32)


def _squeeze(values: np.ndarray, data: NeuralData) -> np.ndarray:
    """Drop the sequence axis for continuous data."""
    return values[0] if data.is_continuous else values


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in options.items():
        if isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, dict):
            v = {
                kk: repr(vv) if not isinstance(vv, str | int | float | bool) else vv
                for kk, vv in v.items()
            }
        out[k] = v
    return out
