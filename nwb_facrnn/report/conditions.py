"""The condition of every bin of a trial fit: which trials column colours the report, and its
value for every bin, taken from the trials the fit carries (:attr:`FitResults.trials`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import NWBReadError, OptionError
from ..io.layout import TRIALS_PATH
from ..io.results import FitResults

#: Most distinct values of a trials column used to colour by condition.
MAX_CONDITIONS = 20

# condition-like trials columns, most likely first; then names containing a hint
_CONDITION_NAMES = (
    "condition",
    "conditions",
    "trial_type",
    "trial_condition",
    "stimulus",
    "stimulus_type",
    "stim",
    "cond",
    "target",
    "direction",
    "type",
)
_CONDITION_HINTS = ("cond", "stim", "type", "target", "direction")
# categorical but rarely what one colours by: chosen only when nothing else fits
_UNLIKELY_CONDITIONS = ("split", "fold", "partition", "set")


def trial_conditions(
    results: FitResults, column: str | None = None
) -> tuple[str, np.ndarray] | None:
    """Condition labels of a fit's bins, from the trials it carries (``results.trials``, the
    scalar columns of the file's trials table ``/intervals/trials``).

    Parameters
    ----------
    results : FitResults
        The fit, e.g. from :func:`~nwb_facrnn.read_results`.
    column : str, optional
        The trials column to use.  Default: a condition-like column chosen automatically, a
        bool, integer or string column with 2 to :data:`MAX_CONDITIONS` distinct values
        (never ``start_time``, ``stop_time``, ``*_time`` or ``id``), preferring names such as
        ``condition``, ``trial_type``, ``stimulus``, ``cond``.

    Returns
    -------
    (str, numpy.ndarray of shape (T,)) or None
        The column's name and its value for every bin of the fit (``results.trial_ids``);
        None for continuous data, without trials, or, with ``column=None``, without a
        condition-like column.

    Raises
    ------
    OptionError
        ``column`` is given for continuous data.
    NWBReadError
        (a ``ValueError``) ``column`` is not a scalar column of the trials table (the message
        names the file, ``/intervals/trials`` and the columns present), has more than
        :data:`MAX_CONDITIONS` distinct values, or a trial id of the fit is not in the
        table; or ``column`` is given and the fit carries no trials table.
    """
    if results.trial_ids is None:
        if column is None:
            return None
        raise OptionError(
            f"fit {results.name!r} in {results.path}: colouring by {column!r} needs trial "
            "data; this fit is continuous"
        )
    source = results.path or None
    table = results.trials
    if not table:
        if column is None:
            return None
        raise NWBReadError(source, TRIALS_PATH, f"no trials table to take {column!r} from")
    columns = {name: np.asarray(values) for name, values in table.items() if name != "id"}
    if column is None:
        column = condition_column(columns)
        if column is None:
            return None
    elif column not in columns:
        raise NWBReadError(
            source,
            TRIALS_PATH,
            f"has no column {column!r} with one value per trial; columns: "
            f"{', '.join(columns) or '(none)'}",
        )
    values = columns[column]
    n_distinct = len(np.unique(values))
    if n_distinct > MAX_CONDITIONS:
        raise NWBReadError(
            source,
            f"{TRIALS_PATH}/{column}",
            f"has {n_distinct} distinct values; colouring by condition needs a categorical "
            f"column (at most {MAX_CONDITIONS} values)",
        )
    ids = np.asarray(results.trial_ids).reshape(-1)
    rows = _rows_of(np.asarray(table["id"]), ids, source)
    return column, values[rows]


def condition_column(columns: Mapping[str, np.ndarray]) -> str | None:
    """The most condition-like of a table's scalar columns, or None."""
    candidates = []
    for position, (name, values) in enumerate(columns.items()):
        low = name.lower()
        if low in ("start_time", "stop_time", "timeseries", "id") or low.endswith(
            ("_time", "_times")
        ):
            continue
        if values.dtype.kind not in "biuUO":
            continue  # floats, times, compound references
        if values.dtype.kind == "O" and not all(isinstance(v, str) for v in values):
            continue
        if not 2 <= len(np.unique(values)) <= MAX_CONDITIONS:
            continue
        if low in _CONDITION_NAMES:
            rank = _CONDITION_NAMES.index(low)
        elif any(h in low for h in _CONDITION_HINTS):
            rank = len(_CONDITION_NAMES)
        elif low in _UNLIKELY_CONDITIONS:
            rank = len(_CONDITION_NAMES) + 2
        else:
            rank = len(_CONDITION_NAMES) + 1
        candidates.append((rank, position, name))
    return min(candidates)[2] if candidates else None


def _rows_of(table_ids: np.ndarray, ids: np.ndarray, source: str | None) -> np.ndarray:
    """Row of every id in a table's ``id`` column."""
    order = np.argsort(table_ids, kind="stable")
    pos = np.searchsorted(table_ids, ids, sorter=order)
    pos = np.clip(pos, 0, max(len(table_ids) - 1, 0))
    rows = order[pos] if len(table_ids) else pos
    found = table_ids[rows] == ids if len(table_ids) else np.zeros(len(ids), bool)
    if not found.all():
        missing = np.unique(ids[~found])
        shown = ", ".join(str(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise NWBReadError(source, TRIALS_PATH, f"has no trials with id {shown}")
    return rows
