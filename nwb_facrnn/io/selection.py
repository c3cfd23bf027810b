"""Selecting rows of a table (units, ROIs, trials) by the values of its columns.

A selection is a mapping ``{column: wanted}``: ``wanted`` is one value (``{"heldout":
False}``), a list of allowed values (``{"quality": ["good", "mua"]}``) or a callable that
takes the column array and returns a bool mask.  The same can be written as a string for the
command line: ``"heldout == False, quality == 'good'"`` (``!=`` excludes; ``,`` or ``and``
joins conditions, all of which must hold).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import OptionError
from .errors import NWBReadError

Selection = Mapping[str, Any] | str

_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(==|!=|=)\s*(.+?)\s*$")


class _Not:
    """A value to exclude (``column != value``)."""

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return f"not {self.value!r}"


def parse_selection(text: str) -> dict[str, Any]:
    """Parse ``"col == value, col2 != value2"`` into a selection mapping.

    Values are Python literals (``True``, ``3``, ``'good'``, ``[1, 2]``); a bare word is
    taken as a string.
    """
    out: dict[str, Any] = {}
    for part in re.split(r",(?![^\[]*\])|\band\b", text):
        if not part.strip():
            continue
        m = _CONDITION.match(part)
        if not m:
            raise OptionError(
                f"cannot parse selection {part.strip()!r}; expected 'column == value' "
                "(or '!='), conditions joined by ',' or 'and'"
            )
        name, op, raw = m.groups()
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw.strip("'\"")
        out[name] = _Not(value) if op == "!=" else value
    return out


def select_rows(
    columns: Mapping[str, np.ndarray],
    selection: Selection | None,
    n_rows: int,
    source: str,
    table_path: str,
    other_columns: tuple[str, ...] = (),
) -> np.ndarray:
    """Bool mask over the rows of a table that satisfy every condition of ``selection``.

    ``other_columns`` are the table's columns that cannot be selected on (ragged ones),
    named in the error for a missing column.

    Raises
    ------
    NWBReadError
        A column that the table does not have (the message lists those it has), or a
        selection that keeps no row.
    """
    keep = np.ones(n_rows, dtype=bool)
    if selection is None:
        return keep
    spec = parse_selection(selection) if isinstance(selection, str) else dict(selection)
    for name, wanted in spec.items():
        if name not in columns:
            others = [c for c in other_columns if c not in columns]
            note = (
                f" (ragged or reference columns cannot be selected on: {', '.join(others)})"
                if others
                else ""
            )
            raise NWBReadError(
                source,
                f"{table_path}/{name}",
                f"no column {name!r} to select on; columns: "
                f"{', '.join(sorted(columns)) or 'none'}{note}",
            )
        keep &= _matches(np.asarray(columns[name]), wanted)
    if not keep.any():
        raise NWBReadError(
            source, table_path, f"the selection {spec!r} keeps none of {n_rows} rows"
        )
    return keep


def _matches(values: np.ndarray, wanted: Any) -> np.ndarray:
    if isinstance(wanted, _Not):
        return ~_matches(values, wanted.value)
    if isinstance(wanted, Callable):
        return np.asarray(wanted(values), dtype=bool)
    if isinstance(wanted, list | tuple | set | np.ndarray):
        return np.isin(values, list(wanted))
    return values == wanted
