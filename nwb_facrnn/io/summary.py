"""What in an NWB file can be fit: units, ROI series, 2-D time series, trials and behaviour,
as plain rows.

Only metadata, indices and (for the unit rates) the spike-time index are read; no trace or
movie data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import NWBReadError
from .nwb_objects import (
    data_shape,
    iter_time_series,
    object_path,
    ragged_index_problem,
    region_rows,
)
from .ophys import list_roi_series
from .results import find_results
from .timeseries import list_activity_series
from .units import UNITS_PATH, electrode_rows_problem

# ROI flag columns shown by ``info``, matched case-insensitively (``Accepted``, ``iscell`` ...)
_ROI_FLAGS = ("accepted", "rejected", "iscell")


@dataclass
class FileSummary:
    """Tables describing a file; each row is a dict of printable values."""

    header: dict[str, str]
    units: list[dict[str, Any]] = field(default_factory=list)
    ophys: list[dict[str, Any]] = field(default_factory=list)
    series: list[dict[str, Any]] = field(default_factory=list)
    movies: list[dict[str, Any]] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    behavior: list[dict[str, Any]] = field(default_factory=list)
    fits: list[dict[str, Any]] = field(default_factory=list)


def summarize_nwb(nwbfile: Any, source: str, backend: str) -> FileSummary:
    """Describe the fit-able contents of an open NWB file."""
    summary = FileSummary(
        header={
            "file": source,
            "backend": backend,
            "identifier": str(nwbfile.identifier),
            "session start": str(nwbfile.session_start_time),
            "description": str(nwbfile.session_description),
        }
    )
    if nwbfile.units is not None:
        summary.units.append(_units_row(nwbfile, source))
    roi_paths = set()
    for path, _, s in list_roi_series(nwbfile):  # DfOverF first, then Fluorescence
        roi_paths.add(path)
        summary.ophys.append(_roi_row(path, s))
    summary.movies = _movie_rows(nwbfile)
    fit_paths = {object_path(r) for r in find_results(nwbfile)}
    for path, s, shape in list_activity_series(nwbfile):
        if path.rsplit("/", 1)[0] not in fit_paths:
            summary.series.append(_activity_row(path, s, shape))
    if nwbfile.trials is not None and len(nwbfile.trials):
        summary.trials.append(_trials_row(nwbfile.trials))
    summary.fits = [_fit_row(r) for r in find_results(nwbfile)]
    skip = roi_paths | {m["path"] for m in summary.movies}
    skip |= {f"{f['path']}/latents" for f in summary.fits}
    for path, s in iter_time_series(nwbfile):
        if path not in skip:
            summary.behavior.append(_series_row(path, s))
    return summary


def _fit_row(res: Any) -> dict[str, Any]:
    """One FacRNN fit stored in the file (see :func:`nwb_facrnn.write_results`)."""
    import json

    from .results import fit_metrics

    model = res.model
    metrics, steps = fit_metrics(model.fit_metrics)
    provenance = json.loads(model.provenance)
    source = provenance.get("unit_table", "")
    if not source and provenance.get("modality") == "series":
        source = provenance.get("objects", {}).get("activity", "?")  # its columns were fit
    n_units = len(res.connectivity) if res.connectivity is not None else "?"
    ll = metrics.get("log_likelihood")
    return {
        "name": res.name,
        "path": object_path(res),
        "groups x rank": f"{model.n_groups} x {model.group_rank}",
        "beta": f"{model.beta:g}",
        "seed": int(model.seed),
        "bins": data_shape(res.latents.data)[0],
        "units": n_units,
        "log_likelihood (nats/step)": "" if ll is None else f"{ll:.3f}",
        "steps": steps if metrics else "",
        "fitted table": source,
    }


def _units_row(nwbfile: Any, source: str) -> dict[str, Any]:
    """The Units table; a broken ragged index or electrode reference raises NWBReadError."""
    units = nwbfile.units
    n = len(units.id)
    row: dict[str, Any] = {"path": UNITS_PATH, "units": n, "spikes": 0, "mean rate (Hz)": "-"}
    if n and "spike_times" in units.colnames:
        index = units["spike_times"]
        ends = np.asarray(index.data[:], dtype=np.int64)
        problem = ragged_index_problem(ends, n, len(index.target.data), "units", "spike times")
        if problem:
            raise NWBReadError(source, f"{UNITS_PATH}/spike_times_index", problem)
        n_spikes = int(ends[-1]) if len(ends) else 0
        row["spikes"] = n_spikes
        duration = _observed_seconds(units, index, n)
        if duration > 0:
            row["mean rate (Hz)"] = f"{n_spikes / duration:.2f}"
    groups = {}
    if "electrodes" in units.colnames and nwbfile.electrodes is not None:
        table = nwbfile.electrodes
        if "group_name" in table.colnames:
            names = np.asarray(table["group_name"].data[:]).astype(str)
            rows, begins, ends = region_rows(units["electrodes"])
            problem = electrode_rows_problem(rows, begins, ends, n, len(table.id))
            if problem:
                raise NWBReadError(source, f"{UNITS_PATH}/electrodes", problem)
            groups = dict(zip(*np.unique(names[rows], return_counts=True), strict=True))
    row["electrode groups"] = ", ".join(f"{g} ({c})" for g, c in groups.items()) or "-"
    row["columns"] = ", ".join(units.colnames)
    return row


def _observed_seconds(units: Any, index: Any, n: int) -> float:
    """Total observed unit-seconds: from ``obs_intervals``, else each unit's spike span."""
    if "obs_intervals" in units.colnames:
        iv = np.asarray(units["obs_intervals"].target.data[:], dtype=float).reshape(-1, 2)
        return float((iv[:, 1] - iv[:, 0]).sum())
    times = index.target.data
    if len(times) == 0:
        return 0.0
    ends = np.asarray(index.data[:], dtype=np.int64)
    begins = np.concatenate([[0], ends[:-1]])
    first = np.asarray([times[b] for b, e in zip(begins, ends, strict=True) if e > b])
    last = np.asarray([times[e - 1] for b, e in zip(begins, ends, strict=True) if e > b])
    return float((last - first).sum())


def _rate_of(s: Any) -> tuple[str, str]:
    """(rate in Hz, duration in s) of a TimeSeries, from its rate or first/last timestamps."""
    shape = data_shape(s.data)
    n = shape[0] if shape else 0
    if s.rate:
        return f"{float(s.rate):g}", f"{n / float(s.rate):.1f}"
    if s.timestamps is not None and n > 1:
        t0, t1 = float(s.timestamps[0]), float(s.timestamps[n - 1])
        return f"{(n - 1) / (t1 - t0):.4g}" if t1 > t0 else "?", f"{t1 - t0:.1f}"
    return "-", "-"


def _shape(s: Any) -> str:
    return " x ".join(str(d) for d in data_shape(s.data))


def _roi_row(path: str, s: Any) -> dict[str, Any]:
    rate, duration = _rate_of(s)
    table = s.rois.table
    plane = getattr(table, "imaging_plane", None)
    flags = []
    for flag in _ROI_FLAGS:
        col = next((c for c in table.colnames if c.lower() == flag), None)
        if col is None or hasattr(table[col], "target"):
            continue  # absent, or ragged: not one flag per ROI
        values = np.asarray(table[col].data[:])
        if values.ndim == 2:  # suite2p: (iscell, probability)
            values = values[:, 0]
        if values.ndim == 1:
            flags.append(f"{col}: {int(values.astype(bool).sum())}/{len(values)}")
    return {
        "path": path,
        "frames x ROIs": _shape(s),
        "rate (Hz)": rate,
        "duration (s)": duration,
        "ROI table": table.name,
        "imaging plane": plane.name if plane is not None else "-",
        "ROI flags": ", ".join(flags) or "-",
    }


def _movie_rows(nwbfile: Any) -> list[dict[str, Any]]:
    from pynwb.image import ImageSeries

    rows = []
    for obj in nwbfile.acquisition.values():
        shape = (
            data_shape(obj.data) if isinstance(obj, ImageSeries) and obj.data is not None else ()
        )
        if len(shape) >= 3:
            itemsize = np.dtype(getattr(obj.data, "dtype", np.float64)).itemsize
            rate, duration = _rate_of(obj)
            rows.append(
                {
                    "path": object_path(obj),
                    "type": type(obj).__name__,
                    "shape": _shape(obj),
                    "rate (Hz)": rate,
                    "duration (s)": duration,
                    "size (MB)": f"{np.prod(shape) * itemsize / 1e6:.0f}",
                }
            )
    return rows


def _trials_row(trials: Any) -> dict[str, Any]:
    start = np.asarray(trials["start_time"].data[:], dtype=float)
    stop = np.asarray(trials["stop_time"].data[:], dtype=float)
    d = stop - start
    return {
        "path": "/intervals/trials",
        "trials": len(start),
        "duration (s)": f"{np.nanmin(d):.2f}-{np.nanmax(d):.2f}",
        "columns": ", ".join(c for c in trials.colnames if c not in ("start_time", "stop_time")),
    }


def _activity_row(path: str, s: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    """A 2-D TimeSeries that can be fit as activity (one unit per column)."""
    rate, duration = _rate_of(s)
    return {
        "path": path,
        "type": type(s).__name__,
        "samples x columns": f"{shape[0]} x {shape[1]}",
        "rate (Hz)": rate,
        "duration (s)": duration,
        "unit": str(s.unit),
        "fit with": f"--series {path}",
    }


def _series_row(path: str, s: Any) -> dict[str, Any]:
    rate, duration = _rate_of(s)
    return {
        "path": path,
        "type": type(s).__name__,
        "shape": _shape(s),
        "rate (Hz)": rate,
        "duration (s)": duration,
        "unit": str(s.unit),
    }
