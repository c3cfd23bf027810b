"""Imaging data: ROI traces of a RoiResponseSeries, binned, detrended and z-scored.

Only the ROI traces are read (in slabs of frames); the imaging movie is never touched.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import OptionError
from .binning import BinGrid, bin_series
from .errors import NWBReadError
from .nwb_objects import data_shape, object_path, series_timestamps, table_columns
from .selection import Selection, select_rows

Detrend = Literal["linear", "exponential"]


@dataclass
class RoiSeries:
    """A RoiResponseSeries and what it links to.

    Attributes
    ----------
    series : pynwb.ophys.RoiResponseSeries
    path : str
        Its path in the file.
    kind : {"DfOverF", "Fluorescence", "other"}
        The container it sits in.
    table : pynwb.ophys.PlaneSegmentation
        The ROI table its ``rois`` region points into.
    table_path : str
    rows : numpy.ndarray, int64, shape (n_columns,)
        Row of ``table`` for every column of the series data.
    timestamps : numpy.ndarray, float64, shape (n_frames,)
    """

    series: Any
    path: str
    kind: str
    table: Any
    table_path: str
    rows: np.ndarray
    timestamps: np.ndarray

    @property
    def sampling_interval(self) -> float:
        if self.series.rate:
            return 1.0 / float(self.series.rate)
        return float(np.median(np.diff(self.timestamps))) if len(self.timestamps) > 1 else 1.0

    def extent(self) -> tuple[float, float]:
        return float(self.timestamps[0]), float(self.timestamps[-1] + self.sampling_interval)


def list_roi_series(nwbfile: Any) -> list[tuple[str, str, Any]]:
    """Every RoiResponseSeries in processing modules: (path, container kind, series).

    DfOverF series come first, then Fluorescence, then any other; the ``ophys`` module
    before other modules.
    """
    from pynwb.ophys import DfOverF, Fluorescence, RoiResponseSeries

    found = []
    modules = sorted(nwbfile.processing.values(), key=lambda m: m.name != "ophys")
    for module in modules:
        for obj in module.data_interfaces.values():
            if isinstance(obj, DfOverF | Fluorescence):
                kind = "DfOverF" if isinstance(obj, DfOverF) else "Fluorescence"
                for s in obj.roi_response_series.values():
                    found.append((object_path(s), kind, s))
            elif isinstance(obj, RoiResponseSeries):
                found.append((object_path(obj), "other", obj))
    for _, obj in nwbfile.acquisition.items():
        if isinstance(obj, RoiResponseSeries):
            found.append((object_path(obj), "other", obj))
    rank = {"DfOverF": 0, "Fluorescence": 1, "other": 2}
    return sorted(found, key=lambda f: rank[f[1]])


def find_roi_series(nwbfile: Any, source: str, series: str | None) -> RoiSeries:
    """The RoiResponseSeries to read: ``series`` by name, container name or path, or the best.

    Raises
    ------
    NWBReadError
        No RoiResponseSeries, no match for ``series`` (lists those present), several equally
        good candidates, or a series whose width does not match its ``rois`` region.
    """
    found = list_roi_series(nwbfile)
    if not found and series is None:
        from .timeseries import describe_activity_series

        plain = describe_activity_series(nwbfile)
        more = f"; 2-D TimeSeries that can be fit as activity (--series PATH): {plain}"
        more = more if plain else ""
        raise NWBReadError(
            source, "/processing", f"no RoiResponseSeries (DfOverF/Fluorescence){more}"
        )
    listing = ", ".join(p for p, _, _ in found) or "none"
    if series is None:
        best = [f for f in found if f[1] == found[0][1]]
        if len(best) > 1:
            raise NWBReadError(
                source,
                "/processing/ophys",
                f"several {found[0][1]} series ({listing}); choose one with series=",
            )
        chosen = best[0]
    else:
        target = "/" + series.strip("/")
        exact = [f for f in found if f[0] == target]
        by_name = [f for f in found if f[2].name == series or f[0].split("/")[-2] == series]
        matches = exact or by_name
        if not matches:
            from .timeseries import describe_activity_series

            plain = describe_activity_series(nwbfile)
            more = f"; 2-D TimeSeries that can be fit as activity: {plain}" if plain else ""
            raise NWBReadError(
                source,
                target,
                f"no RoiResponseSeries named {series!r}; present: {listing}{more}",
            )
        if len(matches) > 1:
            raise NWBReadError(
                source,
                target,
                f"{series!r} matches several series ({', '.join(p for p, _, _ in matches)}); "
                "pass the full path",
            )
        chosen = matches[0]
    path, kind, s = chosen
    region = s.rois
    rows = np.asarray(region.data[:], dtype=np.int64)
    shape = data_shape(s.data)
    if not shape or shape[0] == 0:
        raise NWBReadError(source, path + "/data", "the series has no samples")
    width = 1 if len(shape) == 1 else shape[1]
    if width != len(rows):
        raise NWBReadError(
            source,
            path + "/data",
            f"data has {width} column(s) but its rois region lists {len(rows)} ROI(s); "
            "they must match",
        )
    table = region.table
    return RoiSeries(s, path, kind, table, object_path(table), rows, series_timestamps(s, source))


def roi_columns(roi: RoiSeries) -> dict[str, np.ndarray]:
    """Scalar ROI-table columns for the series' columns, plus the imaging plane name."""
    cols = table_columns(roi.table, roi.rows)
    plane = getattr(roi.table, "imaging_plane", None)
    if plane is not None:
        cols["imaging_plane"] = np.full(len(roi.rows), plane.name)
    return cols


def select_rois(
    roi: RoiSeries, columns: dict[str, np.ndarray], selection: Selection | None, source: str
) -> np.ndarray:
    """Bool mask over the series' columns kept by ``selection``."""
    return select_rows(columns, selection, len(roi.rows), source, roi.table_path)


def bin_rois(
    roi: RoiSeries, keep: np.ndarray, grid: BinGrid, max_rows: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Mean trace of the kept ROIs in every bin: values (n_seq, T, n_kept) and observed mask.

    The data are read in slabs of at most ``max_rows`` frames (all columns of a slab, then
    the kept ones), so memory stays near the size of the output.
    """
    cols = np.flatnonzero(keep)
    data = roi.series.data

    def read_rows(i0: int, i1: int) -> np.ndarray:
        block = np.asarray(data[i0:i1])
        block = block.reshape(i1 - i0, -1)
        return block[:, cols]

    values, observed = bin_series(
        roi.timestamps, read_rows, grid, max_rows=max_rows, dtype=np.float32
    )
    return values, observed


def drop_all_nan(
    values: np.ndarray,
    observed: np.ndarray,
    ids: np.ndarray,
    source: str,
    path: str,
    what: str = "ROI",
) -> np.ndarray:
    """Bool mask of ROIs (or series columns: ``what``) with at least one observed value;
    warn naming those dropped."""
    has_data = observed.any(axis=tuple(range(observed.ndim - 1)))
    if not has_data.all():
        warnings.warn(
            f"{source}: {path}: dropping {int((~has_data).sum())} {what}(s) whose traces are "
            f"all NaN in the requested time: id(s) {ids[~has_data][:20].tolist()}",
            stacklevel=3,
        )
    return has_data


def detrend_traces(
    values: np.ndarray,
    observed: np.ndarray,
    times: np.ndarray,
    method: Detrend,
    divide: bool,
) -> np.ndarray:
    """Remove a slow (photobleaching) trend from every ROI trace.

    The trend is fit per ROI on observed bins against session time: ``c + d t`` (linear) or
    ``c + d exp(-t / tau)`` with ``tau`` chosen per ROI from a log-spaced grid (exponential).

    Parameters
    ----------
    values : numpy.ndarray, shape (..., N)
    observed : numpy.ndarray of bool, same shape
    times : numpy.ndarray, shape values.shape[:-1]
        Bin times (s).
    method : {"linear", "exponential"}
    divide : bool
        True for raw fluorescence: return ``(F - trend) / trend`` (dF/F relative to the
        bleaching baseline).  False (dF/F input): return ``values - trend``.

    Returns
    -------
    numpy.ndarray, same shape, float64
    """
    y = values.reshape(-1, values.shape[-1]).astype(np.float64)
    w = observed.reshape(y.shape).astype(np.float64)
    t = np.broadcast_to(times.reshape(-1, 1), y.shape)
    t0 = float(t[w > 0].min()) if (w > 0).any() else 0.0
    span = max(float(t[w > 0].max()) - t0, 1e-9) if (w > 0).any() else 1.0
    s = (t[:, 0] - t0) / span  # 0..1
    if method == "linear":
        basis = [s]
    elif method == "exponential":
        basis = [np.exp(-s / tau) for tau in np.geomspace(0.05, 5.0, 24)]
    else:
        raise OptionError(f"detrend must be None, 'linear' or 'exponential', got {method!r}")
    best_err = np.full(y.shape[1], np.inf)
    trend = np.zeros_like(y)
    s0 = w.sum(0)
    sy = (w * y).sum(0)
    for f in basis:  # weighted least squares of y ~ c + d f, closed form, all ROIs at once
        fw = f[:, None] * w
        s1, s2, sfy = fw.sum(0), (fw * f[:, None]).sum(0), (fw * y).sum(0)
        det = s0 * s2 - s1**2
        d = np.divide(s0 * sfy - s1 * sy, det, out=np.zeros_like(det), where=det > 1e-12)
        c = np.divide(sy - d * s1, s0, out=np.zeros_like(s0), where=s0 > 0)
        fit = c[None, :] + d[None, :] * f[:, None]
        err = (w * (y - fit) ** 2).sum(0)
        better = err < best_err
        best_err[better] = err[better]
        trend[:, better] = fit[:, better]
    if divide:
        safe = np.where(np.abs(trend) > 1e-12, trend, 1e-12)
        out = (y - trend) / safe
    else:
        out = y - trend
    return np.where(w > 0, out, 0.0).reshape(values.shape)


def zscore_traces(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Z-score every ROI over its observed bins (constant traces become 0)."""
    y = values.reshape(-1, values.shape[-1])
    w = observed.reshape(y.shape)
    n = np.maximum(w.sum(0), 1)
    mean = np.where(w, y, 0).sum(0) / n
    std = np.sqrt((np.where(w, (y - mean) ** 2, 0)).sum(0) / n)
    std = np.where(std > 0, std, 1.0)
    return np.where(w, (y - mean) / std, 0.0).reshape(values.shape)
