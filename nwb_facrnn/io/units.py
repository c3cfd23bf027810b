"""Spiking data: the Units table's spike times binned into counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .binning import BinGrid, bin_spike_times, observed_bins, ragged_segments
from .errors import NWBReadError
from .nwb_objects import ragged_index_problem, region_rows, table_columns
from .selection import Selection, select_rows

UNITS_PATH = "/units"


@dataclass
class UnitsTable:
    """The parts of a Units table needed for binning, read once.

    Attributes
    ----------
    ids : numpy.ndarray, shape (N_all,)
    times : numpy.ndarray, float64, shape (S,)
        All spike times, concatenated unit after unit.
    begins, ends : numpy.ndarray, int64, shape (N_all,)
        Each unit's slice of ``times``.
    intervals : list of (n_i, 2) arrays or None
        ``obs_intervals`` of each unit (None when the table has no such column).
    columns : dict of str to numpy.ndarray
        Scalar columns, plus ``electrode_group`` and ``location`` from the electrodes table.
    all_columns : tuple of str
        Every column name of the table (ragged ones included).
    """

    ids: np.ndarray
    times: np.ndarray
    begins: np.ndarray
    ends: np.ndarray
    intervals: list[np.ndarray | None]
    columns: dict[str, np.ndarray]
    all_columns: tuple[str, ...] = ()

    def select(self, keep: np.ndarray) -> UnitsTable:
        idx = np.flatnonzero(keep)
        return UnitsTable(
            self.ids[idx],
            self.times,
            self.begins[idx],
            self.ends[idx],
            [self.intervals[i] for i in idx],
            {k: v[idx] for k, v in self.columns.items()},
            self.all_columns,
        )

    def extent(self, trials_span: tuple[float, float] | None) -> tuple[float, float]:
        """The recorded time span: the ``obs_intervals`` if given, else from the session
        start (0 s, or earlier spikes or trials) to the last spike or trial end."""
        ivs = [iv for iv in self.intervals if iv is not None and len(iv)]
        if ivs:
            stacked = np.concatenate(ivs)
            return float(stacked[:, 0].min()), float(stacked[:, 1].max())
        spans = []
        for b, e in zip(self.begins, self.ends, strict=True):
            if e > b:
                seg = self.times[b:e]
                spans.append((seg.min(), seg.max()))
        hi = max((s[1] for s in spans), default=-np.inf)
        if trials_span is not None:
            hi = max(hi, trials_span[1])
        # without obs_intervals the recording is taken to start with the session (t = 0)
        lo = min(0.0, *(s[0] for s in spans), *(trials_span[:1] if trials_span else ()))
        return float(lo), float(hi)


def load_units(nwbfile: Any, source: str) -> UnitsTable:
    """Read spike times, ``obs_intervals`` and unit metadata of the file's Units table.

    Raises
    ------
    NWBReadError
        No or an empty Units table, or one without ``spike_times``.
    """
    units = nwbfile.units
    if units is None:
        raise NWBReadError(source, UNITS_PATH, "the file has no Units table")
    n = len(units.id)
    if n == 0:
        raise NWBReadError(source, UNITS_PATH, "the Units table is empty (0 units)")
    if "spike_times" not in units.colnames:
        raise NWBReadError(
            source,
            f"{UNITS_PATH}/spike_times",
            f"the Units table has no spike_times column; columns: {', '.join(units.colnames)}",
        )
    index = units["spike_times"]
    times = np.asarray(index.target.data[:], dtype=np.float64)
    begins, ends = ragged_segments(index.data[:])
    problem = ragged_index_problem(ends, n, len(times), "units", "spike times")
    if problem:
        raise NWBReadError(source, f"{UNITS_PATH}/spike_times_index", problem)
    intervals: list[np.ndarray | None] = [None] * n
    if "obs_intervals" in units.colnames:
        iv_index = units["obs_intervals"]
        iv = np.asarray(iv_index.target.data[:], dtype=np.float64).reshape(-1, 2)
        b, e = ragged_segments(iv_index.data[:])
        intervals = [iv[i:j] for i, j in zip(b, e, strict=True)]
    columns = table_columns(units)
    columns.update(_electrode_columns(nwbfile, units, source))
    table = UnitsTable(np.asarray(units.id.data[:]), times, begins, ends, intervals, columns)
    table.all_columns = tuple(units.colnames)
    return table


def _electrode_columns(nwbfile: Any, units: Any, source: str) -> dict[str, np.ndarray]:
    """``electrode_group`` and ``location`` of each unit (of its first electrode).

    The ``electrodes`` column may be ragged (``electrodes_index``, as pynwb writes it) or a
    plain DynamicTableRegion of one electrode per unit (as MatNWB writes it).
    """
    out: dict[str, np.ndarray] = {}
    n = len(units.id)
    if "electrode_group" in units.colnames:
        out["electrode_group"] = np.array([g.name for g in units["electrode_group"].data[:]])
    if "electrodes" in units.colnames and nwbfile.electrodes is not None:
        rows, b, e = region_rows(units["electrodes"])
        if len(rows) == 0:
            return out
        table = nwbfile.electrodes
        problem = electrode_rows_problem(rows, b, e, n, len(table.id))
        if problem:
            raise NWBReadError(source, f"{UNITS_PATH}/electrodes", problem)
        first = np.where(e > b, rows[np.minimum(b, len(rows) - 1)], -1)
        names = table.colnames
        if "group_name" in names:
            groups = np.asarray(table["group_name"].data[:]).astype(str)
        elif "group" in names:
            groups = np.array([g.name for g in table["group"].data[:]])
        else:
            groups = None
        if groups is not None and "electrode_group" not in out:
            out["electrode_group"] = np.where(first >= 0, groups[first], "")
        if "location" in names:
            loc = np.asarray(table["location"].data[:]).astype(str)
            out["location"] = np.where(first >= 0, loc[first], "")
    return {k: v for k, v in out.items() if len(v) == n}


def electrode_rows_problem(
    rows: np.ndarray, begins: np.ndarray, ends: np.ndarray, n_units: int, n_electrodes: int
) -> str | None:
    """What is wrong with the Units ``electrodes`` references (see :func:`region_rows`)."""
    problem = ragged_index_problem(ends, n_units, len(rows), "units", "electrode references")
    if problem:
        return problem
    bad = (rows < 0) | (rows >= n_electrodes)
    if bad.any():
        return (
            f"references electrode row {int(rows[bad][0])}; expected rows 0-{n_electrodes - 1} "
            f"of the electrodes table ({n_electrodes} rows)"
        )
    return None


def bin_units(table: UnitsTable, grid: BinGrid) -> tuple[np.ndarray, np.ndarray]:
    """Counts (n_seq, T, N) float32 and the observation mask (bool, same shape).

    Counts in unobserved bins are left as binned; the reader zeroes them.
    """
    counts = bin_spike_times(table.times, table.begins, table.ends, grid)
    return counts, observed_bins(table.intervals, grid)


def select_units(
    table: UnitsTable, selection: Selection | None, source: str
) -> tuple[UnitsTable, np.ndarray]:
    """The units kept by ``selection`` and the bool mask over all units."""
    keep = select_rows(
        table.columns, selection, len(table.ids), source, UNITS_PATH, table.all_columns
    )
    return table.select(keep), keep
