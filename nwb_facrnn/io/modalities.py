"""The per-modality readers behind :func:`~nwb_facrnn.io.reader.read_nwb`.

Each reader turns one kind of activity into a :class:`~nwb_facrnn.NeuralData` on a bin
grid: spike times of a Units table (:func:`read_spikes`), ROI traces of a
RoiResponseSeries (:func:`read_ophys`) and the columns of a plain 2-D TimeSeries
(:func:`read_series`).  Each returns ``(data, grid, (kept, n_all))``: the data, its bin
grid, and which rows/columns of the source were kept out of how many (to match an inputs
series to the units read).  Traces long enough to be read chunk by chunk stay on disk
(:mod:`nwb_facrnn.io.lazy`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import OptionError
from ..neural_data import NeuralData
from .binning import BinGrid
from .errors import NWBReadError
from .layout import TRIALS_PATH, Layout, make_layout
from .lazy import LazyRead, open_dataset, use_chunked, why_not_chunked
from .ophys import (
    bin_rois,
    detrend_traces,
    drop_all_nan,
    find_roi_series,
    roi_columns,
    select_rois,
    zscore_traces,
)
from .timeseries import bin_activity, find_activity_series
from .units import UNITS_PATH, bin_units, load_units, select_units

#: Bin size (s) of spike counts when none is given.
DEFAULT_SPIKE_BIN_SIZE = 0.02

#: What every reader returns: the data, its grid, and (kept rows/columns, of how many).
Read = tuple[NeuralData, BinGrid, tuple[np.ndarray, int]]


def read_spikes(nwbfile: Any, source: str, options: dict, lazy: LazyRead | None = None) -> Read:
    """Binned spike counts, the grid, and (kept rows of the Units table, its row count)."""
    if options.get("detrend") or options.get("zscore"):
        raise OptionError("detrend and zscore apply to imaging data, not spike counts")
    table = load_units(nwbfile, source)
    n_all = len(table.ids)
    table, keep = select_units(table, options.get("units"), source)
    bin_size = float(options.get("bin_size") or DEFAULT_SPIKE_BIN_SIZE)
    extent = table.extent(_trials_span(nwbfile))
    if not np.all(np.isfinite(extent)):
        if options.get("time_range") is None:
            raise NWBReadError(
                source,
                UNITS_PATH,
                "no spikes, obs_intervals or trials define the recorded time span; "
                "pass trials=False with time_range=(start, stop)",
            )
        extent = tuple(float(t) for t in options["time_range"])
    layout = _layout(nwbfile, source, options, bin_size, extent)
    counts, mask = bin_units(table, layout.grid)
    objects = {"activity": f"{UNITS_PATH}/spike_times", "units": UNITS_PATH}
    data = _assemble(counts, mask, layout, table.ids, UNITS_PATH, "spikes", table.columns, objects)
    return data, layout.grid, (np.flatnonzero(keep), n_all)


def read_ophys(nwbfile: Any, source: str, options: dict, lazy: LazyRead | None = None) -> Read:
    """Binned ROI traces, the grid, and (kept columns of the series, its column count)."""
    roi = find_roi_series(nwbfile, source, options.get("series"))
    columns = roi_columns(roi)
    keep = select_rois(roi, columns, options.get("rois"), source)
    bin_size = float(options.get("bin_size") or roi.sampling_interval)
    layout = _layout(nwbfile, source, options, bin_size, roi.extent())
    ids = np.asarray(roi.table.id.data[:])[roi.rows][keep]
    columns = {k: v[keep] for k, v in columns.items()}
    objects = {"activity": roi.path, "rois": roi.table_path}
    cols = np.flatnonzero(keep)
    provenance = {"series_kind": roi.kind, "frame_rate": 1.0 / roi.sampling_interval}
    data = _chunked(lazy, options, layout, roi.timestamps, roi.series.data, roi.path, cols, source)
    if data is not None:
        data = _assemble(data, None, layout, ids, roi.table_path, "ophys", columns, objects)
        data.provenance.update(chunked=True, **provenance)
        return data, layout.grid, (cols, len(roi.rows))
    values, observed = bin_rois(roi, keep, layout.grid)
    divide = roi.kind == "Fluorescence"  # detrending raw fluorescence gives dF/F
    values, observed, has_data = _clean_traces(
        values, observed, ids, layout, options, source, roi.path, "ROI", divide
    )
    ids, columns = ids[has_data], {k: v[has_data] for k, v in columns.items()}
    data = _assemble(values, observed, layout, ids, roi.table_path, "ophys", columns, objects)
    data.provenance.update(provenance)
    return data, layout.grid, (cols[has_data], len(roi.rows))


def read_series(nwbfile: Any, source: str, options: dict, lazy: LazyRead | None = None) -> Read:
    """A plain 2-D TimeSeries binned as activity, the grid, and (kept columns, its width)."""
    for key, what in (("units", "rows of a Units table"), ("rois", "ROIs of a RoiResponseSeries")):
        if options.get(key) is not None:
            raise OptionError(
                f"{key}= selects {what}; a TimeSeries read as activity (series=) has no unit "
                "table: all its columns are read"
            )
    ts = find_activity_series(nwbfile, source, options["series"])
    bin_size = float(options.get("bin_size") or ts.sampling_interval)
    layout = _layout(nwbfile, source, options, bin_size, ts.extent())
    ids = np.arange(ts.n_columns, dtype=np.int64)
    objects = {"activity": ts.path}
    provenance = {
        "series_kind": type(ts.series).__name__,
        "sampling_rate": 1.0 / ts.sampling_interval,
    }
    data = _chunked(lazy, options, layout, ts.timestamps, ts.series.data, ts.path, None, source)
    if data is not None:
        data = _assemble(data, None, layout, ids, "", "series", {}, objects)
        data.provenance.update(chunked=True, **provenance)
        return data, layout.grid, (ids, ts.n_columns)
    values, observed = bin_activity(ts, layout.grid)
    values, observed, has_data = _clean_traces(
        values, observed, ids, layout, options, source, ts.path, "column", False
    )
    data = _assemble(values, observed, layout, ids[has_data], "", "series", {}, objects)
    data.provenance.update(provenance)
    return data, layout.grid, (np.flatnonzero(has_data), ts.n_columns)


def _clean_traces(
    values: np.ndarray,
    observed: np.ndarray,
    ids: np.ndarray,
    layout: Layout,
    options: dict,
    source: str,
    path: str,
    what: str,
    divide: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binned traces without their all-NaN columns, detrended and z-scored as asked.

    Returns the float32 values, the observed mask and which of ``ids`` have data.
    """
    has_data = drop_all_nan(values, observed, ids, source, path, what=what)
    if not has_data.any():
        raise NWBReadError(
            source, path, f"all {len(ids)} selected {what}(s) are NaN in the requested time"
        )
    if not has_data.all():  # (indexing copies: only when something is dropped)
        values, observed = values[..., has_data], observed[..., has_data]
    if options.get("detrend"):
        times = layout.grid.timestamps() + layout.grid.bin_size / 2
        values = detrend_traces(values, observed, times, options["detrend"], divide=divide)
    if options.get("zscore"):
        values = zscore_traces(values, observed)
    return values.astype(np.float32, copy=False), observed, has_data


def _trials_span(nwbfile: Any) -> tuple[float, float] | None:
    table = nwbfile.trials
    if table is None or len(table) == 0:
        return None
    start = np.asarray(table["start_time"].data[:], dtype=float)
    stop = np.asarray(table["stop_time"].data[:], dtype=float)
    return float(np.nanmin(start)), float(np.nanmax(stop))


def _layout(nwbfile: Any, source: str, options: dict, bin_size: float, extent) -> Layout:
    return make_layout(
        nwbfile,
        source,
        bin_size=bin_size,
        extent=extent,
        trials=options.get("trials"),
        align=options.get("align"),
        window=options.get("window"),
        time_range=options.get("time_range"),
    )


def _chunked(
    lazy: LazyRead | None,
    options: dict,
    layout: Layout,
    timestamps: np.ndarray,
    dataset: Any,
    path: str,
    columns: np.ndarray | None,
    source: str,
) -> Any:
    """The series' traces as a ChunkedActivity when they are read chunk by chunk (see
    :mod:`nwb_facrnn.io.lazy`), else None."""
    if lazy is None or lazy.chunked is False:
        return None
    shape = tuple(int(s) for s in getattr(dataset, "shape", ()))
    n_cols = (shape[1] if len(shape) == 2 else 1) if columns is None else len(columns)
    reason = why_not_chunked(lazy, options, layout.grid, timestamps, shape)
    if not use_chunked(lazy, 4.0 * layout.grid.n_bins * n_cols, reason, source, path):
        return None
    from ..model.chunked import ChunkedActivity  # (imports torch: only when used)

    return ChunkedActivity(open_dataset(lazy, f"{path}/data"), columns, name=f"{source}: {path}")


def _assemble(
    activity: Any,
    mask: np.ndarray | None,
    layout: Layout,
    unit_ids: np.ndarray,
    table_path: str,
    modality: str,
    unit_columns: dict[str, np.ndarray],
    objects: dict[str, str],
) -> NeuralData:
    grid = layout.grid
    timestamps = grid.timestamps()
    continuous = layout.trial_ids is None
    if mask is None:  # chunked (on disk, continuous): every value observed, a view of True
        mask = np.broadcast_to(np.True_, (1, *activity.shape))
    else:
        activity = activity.astype(np.float32, copy=False)
        activity[~mask] = 0.0
        activity = activity[0] if continuous else activity
    if layout.trial_ids is not None:
        objects["trials"] = TRIALS_PATH
    data = NeuralData(
        activity=activity,
        mask=mask[0] if continuous else mask,
        timestamps=timestamps[0] if continuous else timestamps,
        bin_size=grid.bin_size,
        unit_ids=unit_ids,
        unit_table=table_path,
        modality=modality,  # type: ignore[arg-type]
        unit_columns=unit_columns,
        trial_ids=layout.trial_ids,
        trials=layout.trials,
        provenance={"objects": objects, "layout": layout.description},
    )
    return data
