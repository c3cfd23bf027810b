"""Finding objects inside an open NWB file and naming them by their path in the file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import NWBReadError

# where the NWBFile keeps each kind of direct child, as (attribute, path prefix)
_ROOT_GROUPS = (
    ("acquisition", "/acquisition"),
    ("processing", "/processing"),
    ("stimulus", "/stimulus/presentation"),
    ("intervals", "/intervals"),
    ("devices", "/general/devices"),
    ("imaging_planes", "/general/optophysiology"),
    ("electrode_groups", "/general/extracellular_ephys"),
)


def object_path(obj: Any) -> str:
    """Path of a container inside its NWB file, e.g. ``/processing/ophys/DfOverF/Series``."""
    from pynwb import NWBFile

    parts: list[str] = []
    node = obj
    while node is not None and not isinstance(node, NWBFile):
        parent = node.parent
        if isinstance(parent, NWBFile):
            return _root_child_path(parent, node) + "".join("/" + p for p in reversed(parts))
        parts.append(node.name)
        node = parent
    return "/" + "/".join(reversed(parts)) if parts else "/"


def _root_child_path(nwbfile: Any, child: Any) -> str:
    if child is nwbfile.units:
        return "/units"
    if child is nwbfile.electrodes:
        return "/general/extracellular_ephys/electrodes"
    if child is nwbfile.trials:
        return "/intervals/trials"
    for attr, prefix in _ROOT_GROUPS:
        group = getattr(nwbfile, attr, None) or {}
        if child.name in group and group[child.name] is child:
            return f"{prefix}/{child.name}"
    return f"/{child.name}"


def iter_time_series(nwbfile: Any) -> Iterator[tuple[str, Any]]:
    """Every TimeSeries in acquisition, stimulus and processing modules, with its path.

    Series nested one level in a container (``Position``, ``BehavioralTimeSeries``,
    ``DfOverF`` ...) are included.
    """
    from pynwb import TimeSeries

    def walk(obj: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(obj, TimeSeries):
            yield object_path(obj), obj
            return
        for child in getattr(obj, "children", ()):
            yield from walk(child)

    groups = [nwbfile.acquisition, nwbfile.stimulus, nwbfile.processing]
    for group in groups:
        for obj in group.values():
            yield from walk(obj)


def find_time_series(nwbfile: Any, name: str, source: str, what: str) -> Any:
    """The TimeSeries called ``name`` (or at path ``name``) anywhere in the file.

    A series in the ``behavior`` processing module wins over equally named ones elsewhere.

    Raises
    ------
    NWBReadError
        No such series (the message lists those present), or several equally good matches.
    """
    found = list(iter_time_series(nwbfile))
    target = "/" + name.strip("/")
    by_path = [(p, s) for p, s in found if p == target]
    if by_path:
        return by_path[0][1]
    matches = [(p, s) for p, s in found if s.name == name or p.split("/")[-2] == name]
    preferred = [(p, s) for p, s in matches if p.startswith("/processing/behavior/")]
    matches = preferred or matches
    if len(matches) == 1:
        return matches[0][1]
    if not matches:
        present = ", ".join(p for p, _ in found) or "none"
        raise NWBReadError(source, target, f"no {what} series named {name!r}; present: {present}")
    raise NWBReadError(
        source,
        target,
        f"{name!r} matches several series ({', '.join(p for p, _ in matches)}); pass the full path",
    )


def series_timestamps(series: Any, source: str) -> np.ndarray:
    """Sample times of a TimeSeries (explicit timestamps, or ``starting_time + i / rate``).

    Raises
    ------
    NWBReadError
        Timestamps that do not strictly increase, or neither timestamps nor a rate.
    """
    from .binning import check_increasing

    n = len(series.data)
    if series.timestamps is not None:
        ts = np.asarray(series.timestamps[:], dtype=np.float64)
        if len(ts) != n:
            raise NWBReadError(
                source,
                object_path(series) + "/timestamps",
                f"{len(ts)} timestamps for {n} samples of data",
            )
        bad = check_increasing(ts)
        if bad is not None:
            raise NWBReadError(
                source,
                object_path(series) + "/timestamps",
                f"timestamps must strictly increase; sample {bad} is at {ts[bad]!r} s after "
                f"{ts[bad - 1]!r} s",
            )
        return ts
    if series.rate is None or not series.rate > 0:
        raise NWBReadError(source, object_path(series), "neither timestamps nor a positive rate")
    return float(series.starting_time or 0.0) + np.arange(n) / float(series.rate)


def data_shape(data: Any) -> tuple[int, ...]:
    """Shape of a dataset without reading it (h5py, zarr, DataIO wrappers or lists)."""
    from hdmf.utils import get_data_shape

    shape = get_data_shape(data)
    return tuple(int(d) for d in shape) if shape is not None else ()


def table_columns(table: Any, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The scalar (one value per row, non-ragged) columns of a DynamicTable as arrays."""
    out: dict[str, np.ndarray] = {}
    index_targets = {c.target.name for c in table.columns if hasattr(c, "target")}
    for col in table.columns:
        if col.name in index_targets or hasattr(col, "target") or hasattr(col, "table"):
            continue  # ragged data, its index, or a reference to another table
        if len(data_shape(col.data)) != 1:
            continue  # e.g. image_mask: never read a multi-dimensional column
        try:
            values = np.asarray(col.data[:])
        except (TypeError, ValueError):
            continue
        if values.ndim != 1 or (values.dtype == object and _has_containers(values)):
            continue
        if values.dtype.kind in "SO":
            values = np.array([v.decode() if isinstance(v, bytes) else v for v in values])
        out[col.name] = values if rows is None else values[rows]
    return out


def _has_containers(values: np.ndarray) -> bool:
    return any(not isinstance(v, str | bytes | int | float | bool | np.generic) for v in values)


def region_rows(column: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, begins, ends)`` of a table's reference column (e.g. the Units ``electrodes``).

    ``column`` is what ``table[name]`` returns: a ``VectorIndex`` over a DynamicTableRegion
    (several referenced rows per row, as pynwb writes it) or the DynamicTableRegion itself
    (exactly one referenced row per row, as MatNWB and other writers store it).  Row ``i``
    references ``rows[begins[i]:ends[i]]``.
    """
    from .binning import ragged_segments

    if hasattr(column, "target"):  # ragged: VectorIndex -> DynamicTableRegion
        rows = np.asarray(column.target.data[:], dtype=np.int64).reshape(-1)
        begins, ends = ragged_segments(column.data[:])
        return rows, begins, ends
    rows = np.asarray(column.data[:], dtype=np.int64).reshape(-1)
    ends = np.arange(1, len(rows) + 1, dtype=np.int64)
    return rows, ends - 1, ends


def ragged_index_problem(
    ends: np.ndarray, n_rows: int, n_values: int, rows: str = "rows", values: str = "values"
) -> str | None:
    """What is wrong with a ragged column's ``*_index`` (as ints), or None when it fits.

    It must have one entry per table row, never decrease and end within the ``n_values``
    values of its target.
    """
    ends = np.asarray(ends, dtype=np.int64)
    last = int(ends[-1]) if len(ends) else 0
    if len(ends) != n_rows or (len(ends) and (ends[0] < 0 or last > n_values)):
        return (
            f"index of {len(ends)} rows (last {last}) does not fit {n_rows} {rows} "
            f"and {n_values} {values}; expected {n_rows} offsets ending at most at {n_values}"
        )
    if len(ends) > 1 and np.any(np.diff(ends) < 0):
        bad = int(np.flatnonzero(np.diff(ends) < 0)[0]) + 1
        return (
            f"index decreases at row {bad} ({int(ends[bad - 1])} then {int(ends[bad])}); "
            "expected non-decreasing offsets"
        )
    return None
