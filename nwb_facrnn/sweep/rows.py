"""A sweep's rows: one JSON file per fit (``DIR/fits/<key>.json``) and ``DIR/summary.csv``.

Metric columns have the names of :data:`nwb_facrnn.metrics.METRICS`; every row says which time
steps they were computed on (``steps``: ``"heldout"``, the odd steps of a fit trained on the
even ones).  Rows of sweeps written before the names were unified (``heldout_*`` columns) are
read under today's names.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..atomic import write_file
from ..errors import OptionError
from ..metrics import canonical_metrics
from .planning import FIT_KEYS, FitSpec

#: Row columns of ``summary.csv``, in this order; the ``<name>_decoding_r2`` columns of the
#: behavioural series go after ``reconstruction_r2`` (sorted by name).
COLUMNS = (
    "source",
    "key",
    "n_groups",
    "group_rank",
    "beta",
    "seed",
    "status",
    "steps",
    "log_likelihood",
    "gaussian_partial_correlation",
    "reconstruction_r2",
    "n_units",
    "n_epochs",
    "fit_time_s",
    "path",
    "fit_name",
    "error",
)
#: The time steps a sweep scores its fits on (the ``steps`` column).
STEPS = "heldout"
_INT_COLUMNS = ("n_groups", "group_rank", "seed", "n_units", "n_epochs")
_TEXT_COLUMNS = ("source", "key", "status", "steps", "path", "fit_name", "error")


def fits_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir/fits``: one ``<key>.nwb`` and one ``<key>.json`` per fit."""
    return Path(out_dir) / "fits"


def row_path(spec: FitSpec, out_dir: str | os.PathLike) -> Path:
    """``out_dir/fits/<key>.json``, the stored row of ``spec``."""
    return fits_dir(out_dir) / f"{spec.key}.json"


def spec_row(spec: FitSpec) -> dict[str, Any]:
    """A fit's row before it has finished: what it is, and ``status`` "failed"."""
    return {
        "source": spec.source,
        "key": spec.key,
        "n_groups": spec.n_groups,
        "group_rank": spec.group_rank,
        "beta": spec.beta,
        "seed": spec.seed,
        "status": "failed",
        "steps": STEPS,
    }


def canonical_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with today's metric names (``heldout_log_likelihood`` -> ``log_likelihood``)
    and its ``steps`` (``"heldout"`` for rows written before the column existed)."""
    out = canonical_metrics(row)
    out.setdefault("steps", STEPS)
    return out


def finished_row(spec: FitSpec, out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The stored row of ``spec`` if it finished: its JSON says ``"ok"`` and its NWB file
    exists; else None (never run, failed, or its files are incomplete)."""
    try:
        row = json.loads(row_path(spec, out_dir).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict) or row.get("status") != "ok" or row.get("key") != spec.key:
        return None
    result = row.get("path")
    if not result or not Path(result).exists():
        return None
    for k, v in row.items():  # non-finite metrics are stored as strings (see _jsonable)
        if v in ("nan", "inf", "-inf") and k not in _TEXT_COLUMNS:
            row[k] = float(v)
    return {**canonical_row(row), "reused": True}


def write_row(path: str | os.PathLike, row: dict[str, Any]) -> Path:
    """Write a row as JSON (atomically; NaN and inf as strings, which plain JSON keeps)."""
    return write_file(path, json.dumps(_jsonable(row), indent=1, default=str) + "\n")


def _jsonable(value: Any) -> Any:
    """NaN and inf as JSON strings would not round-trip; store them as strings Python reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------- summary.csv
def summary_columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The columns of ``rows`` in a stable order: :data:`COLUMNS` with the decoding columns
    (sorted) after ``reconstruction_r2``."""
    decoding = sorted({k for r in rows for k in r if k.endswith("_decoding_r2")})
    cols = list(COLUMNS)
    at = cols.index("reconstruction_r2") + 1
    return [*cols[:at], *decoding, *cols[at:]]


def write_summary(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/summary.csv`` (atomically): one line per fit, failed ones included.

    Columns: :func:`summary_columns`; empty cells where a value does not apply (a failed
    fit's metrics, a behaviour the source does not have), ``nan`` where a metric is
    undefined.

    Returns
    -------
    pathlib.Path
    """
    rows = [canonical_row(r) for r in rows]
    cols = summary_columns(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in cols})
    return write_file(Path(out_dir) / "summary.csv", buf.getvalue())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def read_summary(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``summary.csv`` (or of ``DIR/summary.csv``), with numbers as numbers.

    Empty cells become None; integer columns are ``int``, metrics ``float``; metric columns
    of older sweeps get today's names (:func:`canonical_row`).

    Raises
    ------
    OptionError
        The file cannot be read or is not a sweep's summary.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "summary.csv"
    try:
        text = path.read_text()
    except OSError as err:
        raise OptionError(f"{path}: cannot be read ({err.strerror}); run a sweep first") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"status", *FIT_KEYS} <= set(reader.fieldnames):
        raise OptionError(f"{path}: not a sweep summary (no status/n_groups/... columns)")
    return [canonical_row({k: _value(k, v) for k, v in raw.items()}) for raw in reader]


def _value(column: str, text: str | None) -> Any:
    if text is None or text == "":
        return None
    if column in _TEXT_COLUMNS:
        return text
    if column in _INT_COLUMNS:
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text
