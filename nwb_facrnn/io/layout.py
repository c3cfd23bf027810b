"""Time layouts: which windows of the session become the sequences of a NeuralData.

Three layouts, shared by spiking and imaging data:

* whole trials -- each trial's ``start_time``..``stop_time``; shorter trials are padded at
  the end and the padding is masked;
* aligned windows -- ``window`` around an event column of the trials table (``align``), all
  of the same length, as the Neural Latents Benchmark cuts MC_Maze around movement onset;
* continuous -- one sequence over ``time_range`` (default: the whole recording), no trials.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .binning import BinGrid, n_whole_bins
from .errors import NWBReadError
from .nwb_objects import table_columns
from .selection import Selection, select_rows

TRIALS_PATH = "/intervals/trials"


@dataclass
class Layout:
    """A bin grid and the trials it came from (None for continuous data)."""

    grid: BinGrid
    trial_ids: np.ndarray | None = None
    trials: dict[str, np.ndarray] = field(default_factory=dict)
    description: dict[str, Any] = field(default_factory=dict)


def make_layout(
    nwbfile: Any,
    source: str,
    *,
    bin_size: float,
    extent: tuple[float, float],
    trials: bool | Selection | None,
    align: str | None,
    window: tuple[float, float] | None,
    time_range: tuple[float, float] | None,
) -> Layout:
    """Build the layout asked for.

    Parameters
    ----------
    extent : (float, float)
        First and last time the recording covers (s); aligned windows must lie inside it.
    trials : bool, selection or None
        None: trials if the file has a trials table, else continuous.  False: continuous.
        True: trials (error if there are none).  A selection (see
        :mod:`nwb_facrnn.io.selection`): only the trials it keeps.
    align, window
        Event column and (before, after) offsets in seconds; ``window`` without ``align``
        is taken relative to ``start_time``.
    time_range : (float, float), optional
        Continuous layout only: the stretch to read (default ``extent``).
    """
    table = nwbfile.trials
    no_trials = table is None or len(table) == 0
    use_trials = trials is not False and not (trials is None and no_trials)
    if not use_trials:
        if align is not None or window is not None:
            raise NWBReadError(
                source, TRIALS_PATH, "align/window need trials; got trials=False (continuous)"
            )
        if not no_trials:
            _warn_unused_trials(table, source)
        return _continuous(source, bin_size, extent, time_range)
    if time_range is not None:
        raise NWBReadError(
            source, TRIALS_PATH, "time_range applies to continuous data only; pass trials=False"
        )
    if table is None or len(table) == 0:
        raise NWBReadError(source, TRIALS_PATH, "no trials in the file; pass trials=False")
    columns = table_columns(table)
    ids = np.asarray(table.id.data[:])
    start, stop = columns["start_time"].astype(float), columns["stop_time"].astype(float)
    problem = _stop_before_start(ids, start, stop)
    if problem:
        raise NWBReadError(
            source,
            f"{TRIALS_PATH}/stop_time",
            f"{problem}; every trial needs start_time <= stop_time (or pass trials=False "
            "for a continuous fit)",
        )
    selection = None if isinstance(trials, bool | None) else trials
    keep = select_rows(columns, selection, len(ids), source, TRIALS_PATH)
    if window is None and align is None:
        grid = BinGrid(start[keep], n_whole_bins(stop[keep] - start[keep], bin_size), bin_size)
        desc = {"layout": "trials"}
    else:
        grid, keep = _aligned(source, columns, ids, keep, align, window, bin_size, extent)
        desc = {"layout": "aligned", "align": align or "start_time", "window": list(window)}
    if grid.n_bins < 2:
        raise NWBReadError(
            source,
            TRIALS_PATH,
            f"trials are shorter than 2 bins of {bin_size} s; use a smaller bin_size",
        )
    return Layout(grid, ids[keep], {k: v[keep] for k, v in columns.items()}, desc)


def _stop_before_start(ids: np.ndarray, start: np.ndarray, stop: np.ndarray) -> str:
    """What is wrong with rows whose stop_time is not >= start_time ("" if none)."""
    bad = np.flatnonzero(~(stop >= start))
    if not bad.size:
        return ""
    more = f" and {bad.size - 10} more" if bad.size > 10 else ""
    i = bad[0]
    return (
        f"stop_time < start_time for trial id(s) {ids[bad][:10].tolist()}{more} "
        f"(e.g. {float(start[i]):g} .. {float(stop[i]):g} s)"
    )


def _warn_unused_trials(table: Any, source: str) -> None:
    """A continuous read leaves the trials table aside: a problem with it only warns."""
    try:
        ids = np.asarray(table.id.data[:])
        start = np.asarray(table["start_time"].data[:], dtype=float)
        stop = np.asarray(table["stop_time"].data[:], dtype=float)
        problem = _stop_before_start(ids, start, stop)
    except Exception as err:  # an unreadable table the fit does not use never blocks it
        problem = f"cannot be read ({type(err).__name__}: {' '.join(str(err).split())[:150]})"
    if problem:
        warnings.warn(
            f"{source}: {TRIALS_PATH}: {problem}; ignored: this continuous read does not use "
            "the trials table",
            stacklevel=4,
        )


def _continuous(
    source: str, bin_size: float, extent: tuple[float, float], time_range: tuple | None
) -> Layout:
    t0, t1 = extent if time_range is None else (float(time_range[0]), float(time_range[1]))
    if not t1 > t0:
        raise NWBReadError(source, "/", f"time_range must have end > start, got {(t0, t1)}")
    if time_range is not None and (t0 < extent[0] - 1e-9 or t1 > extent[1] + 1e-9):
        raise NWBReadError(
            source,
            "/",
            f"time_range {t0:g}..{t1:g} s lies outside the recording "
            f"{extent[0]:g}..{extent[1]:g} s",
        )
    n = n_whole_bins(t1 - t0, bin_size)
    if n < 2:
        raise NWBReadError(source, "/", f"{t0:g}..{t1:g} s holds fewer than 2 bins of {bin_size} s")
    grid = BinGrid(np.array([t0]), np.array([n]), bin_size)
    return Layout(grid, None, {}, {"layout": "continuous", "time_range": [t0, t1]})


def _aligned(
    source: str,
    columns: dict[str, np.ndarray],
    ids: np.ndarray,
    keep: np.ndarray,
    align: str | None,
    window: tuple[float, float] | None,
    bin_size: float,
    extent: tuple[float, float],
) -> tuple[BinGrid, np.ndarray]:
    align = align or "start_time"
    if window is None:
        raise NWBReadError(
            source, f"{TRIALS_PATH}/{align}", "align needs window=(before, after) in seconds"
        )
    w0, w1 = float(window[0]), float(window[1])
    if not w1 > w0:
        raise NWBReadError(source, TRIALS_PATH, f"window must have after > before, got {window}")
    if align not in columns:
        raise NWBReadError(
            source,
            f"{TRIALS_PATH}/{align}",
            f"no trials column {align!r} to align on; columns: {', '.join(sorted(columns))}",
        )
    event = np.asarray(columns[align], dtype=float)
    missing = keep & ~np.isfinite(event)
    if missing.any():
        warnings.warn(
            f"{source}: {TRIALS_PATH}/{align}: dropping {int(missing.sum())} trial(s) with no "
            f"{align} (NaN): id(s) {ids[missing][:10].tolist()}",
            stacklevel=4,
        )
        keep = keep & ~missing
    if not keep.any():
        raise NWBReadError(source, f"{TRIALS_PATH}/{align}", f"no trial has a finite {align}")
    starts = event[keep] + w0
    n = int(n_whole_bins(w1 - w0, bin_size))
    ends = starts + n * bin_size
    outside = (starts < extent[0] - 1e-9) | (ends > extent[1] + 1e-9)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise NWBReadError(
            source,
            f"{TRIALS_PATH}/{align}",
            f"the window {w0:+g}..{w1:+g} s around {align} of trial id(s) "
            f"{ids[keep][outside][:10].tolist()} lies outside the recording "
            f"{extent[0]:g}..{extent[1]:g} s (e.g. {starts[i]:g}..{ends[i]:g} s)",
        )
    return BinGrid(starts, np.full(len(starts), n, dtype=np.int64), bin_size), keep
