"""Figures of a FacRNN fit and a self-contained HTML page of them.

:func:`make_report` reads a fit written by :func:`~nwb_facrnn.write_results` (or takes a
:class:`~nwb_facrnn.FitResults`), draws five figures with :func:`report_figures` and writes
them as PNG files plus one HTML page that embeds them (``nwb-facrnn report FILE`` and
``nwb-facrnn fit --figures DIR``).

The figures are plain :class:`matplotlib.figure.Figure` objects rendered with the Agg
canvas; pyplot is never used, so no global figure state is created or leaked.

Long recordings are decimated for drawing only (the data are never changed):

* latents over time, continuous data: every line shows the minimum and maximum of
  consecutive blocks of bins, at most :data:`MAX_LINE_POINTS` points per line, so every peak
  and trough stays visible;
* state-space trajectories, continuous data: every ``k``-th bin, at most
  :data:`MAX_STATE_POINTS` points per group;
* state-space trajectories, trial data: at most :data:`MAX_TRIAL_LINES` single trials (evenly
  spaced in trial order); the condition means use every trial.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io.atomic import (
    OLD_PREFIX,
    PARTIAL_PREFIX,
    destination_lock,
    recover,
    replace_atomically,
)
from .io.errors import NWBReadError
from .io.layout import TRIALS_PATH
from .io.results import FitResults, read_results

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_KEYS",
    "GROUP_COLORS",
    "Report",
    "make_report",
    "report_figures",
    "trial_conditions",
]

#: Colour of group ``g``: ``GROUP_COLORS[g % len(GROUP_COLORS)]``.  The Okabe-Ito colours
#: (colour-blind safe), most distinct first; the napari plugin uses the same list.
GROUP_COLORS: tuple[str, ...] = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#8C564B",  # brown
)

#: The figures, in the order of :attr:`Report.figures` and of the HTML page.
FIGURE_KEYS: tuple[str, ...] = (
    "latents_time",
    "latents_state",
    "connectivity",
    "group_strength",
    "training",
)

#: Continuous latents over time: most points drawn per line (min/max of blocks of bins).
MAX_LINE_POINTS = 4000
#: Continuous state-space trajectories: most points drawn per group (every k-th bin).
MAX_STATE_POINTS = 2000
#: Trial data, state space: most single-trial lines drawn per group.
MAX_TRIAL_LINES = 200
#: Most distinct values of a trials column used to colour by condition.
MAX_CONDITIONS = 20

_CAPTIONS = {
    "latents_time": (
        "Latents over time, one panel per group (its dims as line styles or shades). Trial "
        "data: the trial-averaged trajectory of each condition against time in the trial; "
        "continuous data: against session time (long recordings drawn as the min/max of "
        "blocks of bins)."
    ),
    "latents_state": (
        "State-space trajectories of every group in its first two (or three) latent dims; a "
        "rank-1 group is drawn against its own value one bin later. Trial data: thin lines are "
        "single trials, thick lines condition means; continuous data: coloured by time."
    ),
    "connectivity": (
        "Low-rank connectivity W = A B and each group's part A_g B_g (shared colour scale), "
        "units sorted by dominant group, group boundaries marked."
    ),
    "group_strength": (
        "Strength of every group in each unit's drive (s.d. of the group's contribution), "
        "stacked; below, as a share of the total. Units sorted by dominant group."
    ),
    "training": (
        "Every term of the training objective per epoch (log scale where all values are "
        "positive and span a decade or more); held-out objective where early stopping was on."
    ),
}

_TERM_TITLES = {
    "total": "total objective",
    "reconstruction": "reconstruction NLL",
    "kl": "KL to prior",
    "pc": "partial correlation (PC)",
    "bd": "block off-diagonal penalty (BD)",
}

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
_LINESTYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Report:
    """What :func:`make_report` wrote.

    Attributes
    ----------
    html : pathlib.Path
        The self-contained page, ``<out_dir>/<fit name>_report.html`` (images embedded).
    figures : dict of str to pathlib.Path
        The PNG files, ``<out_dir>/<fit name>_<key>.png``, keyed (in this order)
        ``"latents_time"``, ``"latents_state"``, ``"connectivity"``, ``"group_strength"``,
        ``"training"``.
    """

    html: Path
    figures: dict[str, Path]


# ====================================================================== trial conditions
def trial_conditions(
    path: str | os.PathLike, trial_ids: Any, column: str | None = None
) -> tuple[str, np.ndarray] | None:
    """Condition labels of trials, from the file's trials table (``/intervals/trials``).

    Parameters
    ----------
    path : path
        NWB file (HDF5 or Zarr), e.g. a results file (which holds or links the source's
        trials table).
    trial_ids : array-like of int, shape (n,)
        Trial ids (the ``id`` column of the trials table), e.g. :attr:`FitResults.trial_ids`
        (one per bin); repeats are fine.
    column : str, optional
        The trials column to use.  Default: a condition-like column chosen automatically, a
        bool, integer or string column with 2 to 20 distinct values (never ``start_time``,
        ``stop_time``, ``*_time`` or references to other objects), preferring names such as
        ``condition``, ``trial_type``, ``stimulus``, ``cond``.

    Returns
    -------
    (str, numpy.ndarray of shape (n,)) or None
        The column's name and its value for every entry of ``trial_ids``; None when the file
        has no trials table or, with ``column=None``, no condition-like column.

    Raises
    ------
    NWBReadError
        (a ``ValueError``) ``column`` is not a column of the trials table (the message names
        the file, ``/intervals/trials`` and the columns that exist), holds no scalar values,
        has more than :data:`MAX_CONDITIONS` distinct values, or a trial id is not in the
        table; or ``column`` is given and the file has no trials table.
    """
    from .io.nwb_objects import table_columns
    from .io.reader import open_nwbfile

    ids = np.asarray(trial_ids).reshape(-1)
    with open_nwbfile(path) as (nwbfile, source, _backend):
        trials = nwbfile.trials
        if trials is None:
            if column is None:
                return None
            raise NWBReadError(source, TRIALS_PATH, f"no trials table to take {column!r} from")
        table_ids = np.asarray(trials.id[:])
        names = list(trials.colnames)
        scalar = table_columns(trials)
    if column is None:
        column = _condition_column(scalar)
        if column is None:
            return None
    elif column not in names:
        raise NWBReadError(
            source,
            TRIALS_PATH,
            f"has no column {column!r}; columns: {', '.join(names) or '(none)'}",
        )
    elif column not in scalar:
        raise NWBReadError(
            source, f"{TRIALS_PATH}/{column}", "holds no scalar values (one per trial) to colour by"
        )
    values = scalar[column]
    n_distinct = len(np.unique(values))
    if n_distinct > MAX_CONDITIONS:
        raise NWBReadError(
            source,
            f"{TRIALS_PATH}/{column}",
            f"has {n_distinct} distinct values; colouring by condition needs a categorical "
            f"column (at most {MAX_CONDITIONS} values)",
        )
    rows = _rows_of(table_ids, ids, source)
    return column, values[rows]


def _condition_column(columns: Mapping[str, np.ndarray]) -> str | None:
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


def _rows_of(table_ids: np.ndarray, ids: np.ndarray, source: str) -> np.ndarray:
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


# ====================================================================== figures
@dataclass
class _Trials:
    """The fit's bins as trials on a common time-in-trial grid."""

    ids: np.ndarray  # (n_trials,), in order of first appearance
    rows: list[np.ndarray]  # rows of every trial, in time order
    time: np.ndarray  # (L,) time in trial (s) of every grid bin
    grid: np.ndarray  # (n_trials, L, K) latents, NaN where a trial has no bin
    xlabel: str


@dataclass
class _Conditions:
    """Condition of every trial and the colour of every condition."""

    column: str
    values: np.ndarray  # (C,) distinct values, sorted
    colors: list[str]  # (C,) hex colours
    of_trial: np.ndarray  # (n_trials,) index into values

    def label(self, c: int) -> str:
        return f"{self.column} = {self.values[c]}"


def report_figures(
    results: FitResults, conditions: tuple[str, np.ndarray] | None = None
) -> dict[str, Figure]:
    """Draw the five figures of a fit (not saved).

    Parameters
    ----------
    results : FitResults
        The fit, e.g. from :func:`~nwb_facrnn.read_results`.
    conditions : (str, numpy.ndarray of shape (T,)), optional
        Trial data only: a trials column's name and its value for every bin of the fit (as
        :func:`trial_conditions` returns for ``results.trial_ids``); trial lines are coloured
        by it.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        Keyed (in this order):

        ``"latents_time"``
            One panel per group: its latents (a.u.) against time (s).  Trials: the mean
            trajectory of every condition against time in the trial (time from the aligning
            event for aligned windows), colour = condition, line style = latent dim.
            Continuous: against session time, the min/max of blocks of bins drawn beyond
            :data:`MAX_LINE_POINTS` bins.
        ``"latents_state"``
            One panel per group: the trajectory in its first 2 dims (3-D axes for rank >= 3;
            a rank-1 group against its own value one bin later).  Trials: one thin line per
            trial (gid ``"trial <id>"``) and a thick mean per condition, coloured by
            condition; continuous: coloured by session time with a colour bar.
        ``"connectivity"``
            ``W = A B`` and every group's ``A_g B_g`` (diverging colours symmetric about 0,
            one scale shared by the group parts), units sorted by dominant group; a
            placeholder text for a fit with an MLP encoder or decoder.
        ``"group_strength"``
            Stacked group strengths of every unit (sorted by dominant group) and their shares.
        ``"training"``
            Every loss term of ``results.history`` per epoch; the held-out objective on the
            total's panel.

    Raises
    ------
    ValueError
        The fit has no bins, or ``conditions`` does not fit its trials.
    """
    if len(results.latents) == 0:
        raise ValueError(f"fit {results.name!r} in {results.path}: has no latent bins to draw")
    trials = None if results.trial_ids is None else _trial_layout(results)
    conds = None if conditions is None else _conditions_of(results, trials, conditions)
    title = _suptitle(results)
    return {
        "latents_time": _latents_time_figure(results, trials, conds, title),
        "latents_state": _latents_state_figure(results, trials, conds, title),
        "connectivity": _connectivity_figure(results, title),
        "group_strength": _group_strength_figure(results, title),
        "training": _training_figure(results, title),
    }


# ---------------------------------------------------------------------- shared helpers
def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _suptitle(results: FitResults) -> str:
    beta = results.params.get("beta")
    text = f"{results.name}: G={results.n_groups} groups × H={results.group_rank} dims"
    return text + (f", β={beta:g}" if isinstance(beta, int | float) else "")


def _group_color(g: int) -> str:
    return GROUP_COLORS[g % len(GROUP_COLORS)]


def _dim_color(g: int, j: int, rank: int) -> tuple[float, float, float]:
    """Group ``g``'s colour, darker for later dims."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(_group_color(g)))
    shade = 0.6 * j / max(rank - 1, 1)
    return tuple(float(c) for c in rgb * (1 - shade))


def _condition_colors(n: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [to_hex(cmap(i)) for i in range(n)]


def _unit_noun(results: FitResults) -> str:
    ophys = results.provenance.get("modality") == "ophys" or "Segmentation" in str(
        results.unit_table
    )
    return "ROI" if ophys else "unit"


def _placeholder(fig: Figure, text: str) -> None:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, gid="placeholder")


def _trial_layout(results: FitResults) -> _Trials:
    """Put every trial's bins on a common grid of time in trial.

    A bin's grid position is its distance from the trial's first bin in bins; time in trial
    is measured from the aligning event for aligned windows, else from the trial start.
    """
    ids = np.asarray(results.trial_ids)
    first = np.unique(ids, return_index=True)[1]
    uniq = ids[np.sort(first)]
    perm = np.argsort(ids, kind="stable")
    sorted_ids = ids[perm]
    starts = np.searchsorted(sorted_ids, uniq, side="left")
    stops = np.searchsorted(sorted_ids, uniq, side="right")
    t = results.timestamps
    bin_size = float(results.bin_size) if results.bin_size and results.bin_size > 0 else 0.0
    rows, index = [], []
    for a, b in zip(starts, stops, strict=True):
        r = perm[a:b]
        r = r[np.argsort(t[r], kind="stable")]
        rows.append(r)
        if bin_size:
            index.append(np.rint((t[r] - t[r[0]]) / bin_size).astype(np.int64))
        else:
            index.append(np.arange(len(r)))
    length = int(max(i[-1] for i in index)) + 1
    k = results.latents.shape[1]
    grid = np.full((len(uniq), length, k), np.nan, dtype=np.float32)
    for i, (r, idx) in enumerate(zip(rows, index, strict=True)):
        grid[i, idx] = results.latents[r]
    layout = results.provenance.get("layout") or {}
    step = bin_size or 1.0
    if layout.get("layout") == "aligned" and layout.get("window"):
        offset = float(layout["window"][0])
        xlabel = f"time from {layout.get('align', 'event')} (s)"
    else:
        offset = 0.0
        xlabel = "time from trial start (s)"
    time = offset + (np.arange(length) + 0.5) * step
    return _Trials(uniq, rows, time, grid, xlabel)


def _conditions_of(
    results: FitResults, trials: _Trials | None, conditions: tuple[str, np.ndarray]
) -> _Conditions:
    column, labels = conditions
    labels = np.asarray(labels)
    if trials is None:
        raise ValueError(
            f"fit {results.name!r} in {results.path}: continuous data has no trials to colour "
            f"by {column!r}"
        )
    if labels.shape != (len(results.latents),):
        raise ValueError(
            f"fit {results.name!r}: conditions must give one label per bin, shape "
            f"({len(results.latents)},), got {labels.shape}"
        )
    per_trial = labels[[r[0] for r in trials.rows]]
    values, of_trial = np.unique(per_trial, return_inverse=True)
    return _Conditions(str(column), values, _condition_colors(len(values)), of_trial.ravel())


def _trial_groups(trials: _Trials, conds: _Conditions | None) -> list[tuple[np.ndarray, str, Any]]:
    """``(trial indices, label, colour)`` of every condition (or of all trials)."""
    if conds is None:
        return [(np.arange(len(trials.ids)), "all trials", None)]
    return [
        (np.flatnonzero(conds.of_trial == c), conds.label(c), conds.colors[c])
        for c in range(len(conds.values))
    ]


def _nanmean(grid: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN, NaN where every entry is NaN (no warning)."""
    ok = np.isfinite(grid)
    n = ok.sum(axis=0)
    total = np.where(ok, grid, 0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan)


def _minmax_decimate(
    t: np.ndarray, y: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x, y, block)``: at most ``max_points`` points, the min and max of every block of
    ``block`` consecutive samples at the block's middle time (``block = 1``: unchanged)."""
    n = len(y)
    if n <= max_points:
        return t, y, 1
    block = math.ceil(n / (max_points // 2))
    starts = np.arange(0, n, block)
    lo = np.minimum.reduceat(y, starts)
    hi = np.maximum.reduceat(y, starts)
    mid = t[np.minimum(starts + block // 2, n - 1)]
    return np.repeat(mid, 2), np.column_stack([lo, hi]).ravel(), block


def _group_axes_grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


# ---------------------------------------------------------------------- 1. latents over time
def _latents_time_figure(
    results: FitResults, trials: _Trials | None, conds: _Conditions | None, title: str
) -> Figure:
    from matplotlib.lines import Line2D

    g_n, h = results.n_groups, results.group_rank
    fig = _new_figure(9.0, 1.0 + 2.0 * g_n)
    axes = fig.subplots(g_n, 1, sharex=True, squeeze=False)[:, 0]
    block = 1
    for g, ax in enumerate(axes):
        if trials is None:
            block = _draw_time_continuous(ax, results, g)
        else:
            _draw_time_trials(ax, results, trials, conds, g)
        if trials is None or conds is None:
            ax.legend(loc="upper right", fontsize=7, ncols=min(h, 4))
        ax.set_ylabel(f"group {g} latents (a.u.)", color=_darker(_group_color(g)))
        ax.grid(alpha=0.3)
    if trials is None:
        axes[-1].set_xlabel("session time (s)")
        note = f" (min/max of every {block} bins drawn)" if block > 1 else ""
        fig.suptitle(f"{title}\nlatents over the session{note}")
        return fig
    axes[-1].set_xlabel(trials.xlabel)
    what = f"by {conds.column}" if conds is not None else "all trials"
    fig.suptitle(f"{title}\ntrial-averaged latents ({what}, {len(trials.ids)} trials)")
    if conds is not None:
        handles = [
            Line2D([], [], color=conds.colors[c], lw=2, label=conds.label(c))
            for c in range(len(conds.values))
        ]
        handles += [
            Line2D([], [], color="0.3", ls=_LINESTYLES[j % len(_LINESTYLES)], label=f"dim {j}")
            for j in range(h)
        ]
        fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


def _draw_time_continuous(ax: Axes, results: FitResults, g: int) -> int:
    """Group ``g``'s dims against session time (min/max decimated); returns the block size."""
    h, s = results.group_rank, results.group_slice(g)
    block = 1
    for j, k in enumerate(range(s.start, s.stop)):
        x, y, block = _minmax_decimate(results.timestamps, results.latents[:, k], MAX_LINE_POINTS)
        ax.plot(x, y, color=_dim_color(g, j, h), lw=0.7, label=f"g{g}_{j}", gid=f"g{g}_{j}")
    return block


def _draw_time_trials(
    ax: Axes, results: FitResults, trials: _Trials, conds: _Conditions | None, g: int
) -> None:
    """Group ``g``'s mean trajectory per condition (colour) and dim (line style), or of all
    trials (one shade of the group colour per dim)."""
    h, s = results.group_rank, results.group_slice(g)
    for sel, label, color in _trial_groups(trials, conds):
        mean = _nanmean(trials.grid[sel][:, :, s])
        for j in range(h):
            if color is None:
                style = {"color": _dim_color(g, j, h), "label": f"g{g}_{j}"}
            else:
                style = {"color": color, "ls": _LINESTYLES[j % len(_LINESTYLES)], "label": label}
            ax.plot(trials.time, mean[:, j], lw=1.4, gid=f"g{g}_{j}", **style)


def _darker(color: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return tuple(0.75 * c for c in to_rgb(color))


# ---------------------------------------------------------------------- 2. state space
def _state_coords(z: np.ndarray) -> list[np.ndarray]:
    """Coordinates of a group's trajectory ``z`` (bins, H): dims 0-1 (0-2 for H >= 3); a
    rank-1 group's value against its value one bin later (one point fewer)."""
    if z.shape[1] == 1:
        return [z[:-1, 0], z[1:, 0]]
    return [z[:, j] for j in range(min(z.shape[1], 3))]


def _state_labels(g: int, h: int, bin_size: float) -> list[str]:
    if h == 1:
        return [f"g{g}_0 at t (a.u.)", f"g{g}_0 at t + {bin_size:g} s (a.u.)"]
    return [f"g{g}_{j} (a.u.)" for j in range(min(h, 3))]


def _latents_state_figure(
    results: FitResults, trials: _Trials | None, conds: _Conditions | None, title: str
) -> Figure:
    from matplotlib.lines import Line2D

    g_n, h = results.n_groups, results.group_rank
    nrows, ncols = _group_axes_grid(g_n)
    fig = _new_figure(4.2 * ncols + (1.2 if trials is None else 1.8), 3.8 * nrows + 0.8)
    projection = "3d" if h >= 3 else None
    axes = [fig.add_subplot(nrows, ncols, g + 1, projection=projection) for g in range(g_n)]
    if projection:
        for ax in axes:
            ax.set_box_aspect(None, zoom=0.85)  # room for the z label
    if trials is None:
        note = _draw_state_continuous(results, axes)
    else:
        note = _draw_state_trials(results, trials, conds, axes)
    for g, ax in enumerate(axes):
        labels = _state_labels(g, h, results.bin_size)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        if len(labels) == 3:
            ax.set_zlabel(labels[2])
        ax.set_title(f"group {g}", color=_darker(_group_color(g)))
    if trials is not None:
        if conds is not None:
            handles = [
                Line2D([], [], color=conds.colors[c], lw=2, label=conds.label(c))
                for c in range(len(conds.values))
            ]
        else:
            handles = [
                Line2D([], [], color="0.3", lw=2, label="mean"),
                Line2D([], [], color="0.3", lw=0.6, label="single trials"),
            ]
        fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle(f"{title}\nstate-space trajectories{note}")
    return fig


def _draw_state_trials(
    results: FitResults, trials: _Trials, conds: _Conditions | None, axes: list[Axes]
) -> str:
    """Single trials (thin) and condition means (thick); returns a note for the title."""
    n = len(trials.ids)
    drawn = np.unique(np.linspace(0, n - 1, min(n, MAX_TRIAL_LINES)).round().astype(int))
    for g, ax in enumerate(axes):
        s = results.group_slice(g)
        for i in drawn:
            c = conds.colors[conds.of_trial[i]] if conds is not None else _group_color(g)
            pts = _state_coords(results.latents[trials.rows[i], s])
            ax.plot(*pts, color=c, lw=0.6, alpha=0.45, gid=f"trial {trials.ids[i]}")
        for sel, label, color in _trial_groups(trials, conds):
            mean = _nanmean(trials.grid[sel][:, :, s])
            mean = mean[np.isfinite(mean).all(axis=1)]
            c = color if color is not None else _darker(_group_color(g))
            ax.plot(*_state_coords(mean), color=c, lw=2.2, label=label, gid=f"mean {label}")
    by = f"by {conds.column}" if conds is not None else "all trials"
    shown = f"{len(drawn)} of {n} trials" if len(drawn) < n else f"{n} trials"
    return f" ({by}; thin: {shown}, thick: means)"


def _draw_state_continuous(results: FitResults, axes: list[Axes]) -> str:
    """Trajectories coloured by session time, every k-th bin; returns a note for the title."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    t = results.timestamps
    norm = Normalize(float(t.min()), float(t.max()) if t.max() > t.min() else float(t.min()) + 1)
    stride = max(1, math.ceil(len(t) / MAX_STATE_POINTS))
    collection = None
    for g, ax in enumerate(axes):
        pts = _state_coords(results.latents[:, results.group_slice(g)].astype(np.float64))
        pts = [p[::stride] for p in pts]
        times = t[::stride][: len(pts[0])]
        xyz = np.column_stack(pts)  # (n, 2 or 3)
        if len(xyz) == 1:  # one bin: a dot
            xyz, times = np.repeat(xyz, 2, axis=0), np.repeat(times, 2)
        segments = np.stack([xyz[:-1], xyz[1:]], axis=1)  # (n - 1, 2, 2 or 3)
        seg_times = times[:-1]
        if xyz.shape[1] == 3:
            from mpl_toolkits.mplot3d.art3d import Line3DCollection

            collection = Line3DCollection(segments, cmap="viridis", norm=norm, lw=0.7)
            collection.set_array(seg_times)
            ax.add_collection3d(collection)
            for setter, p in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), pts, strict=True):
                setter(*_limits(p))
        else:
            collection = LineCollection(segments, cmap="viridis", norm=norm, lw=0.7)
            collection.set_array(seg_times)
            ax.add_collection(collection)
            ax.set_xlim(*_limits(pts[0]))
            ax.set_ylim(*_limits(pts[1]))
        collection.set_gid(f"trajectory g{g}")
    fig = axes[0].figure
    fig.colorbar(collection, ax=axes, label="session time (s)", shrink=0.9)
    return f" (every {stride} bins drawn)" if stride > 1 else ""


def _limits(p: np.ndarray) -> tuple[float, float]:
    if not np.isfinite(p).any():
        return -1.0, 1.0
    lo, hi = float(np.nanmin(p)), float(np.nanmax(p))
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad


# ---------------------------------------------------------------------- 3. connectivity
def _n_units(results: FitResults) -> int | None:
    """N, from whatever the fit holds (None when it holds no per-unit arrays)."""
    for a in (results.unit_ids, results.group_strength, results.output_loadings):
        if a is not None:
            return len(a)
    return None if results.input_loadings is None else results.input_loadings.shape[1]


def _unit_order(results: FitResults) -> tuple[np.ndarray, np.ndarray | None]:
    """Units sorted by dominant group, strongest first within a group, and the group
    boundaries in the sorted order (``G + 1`` edges; None without groups)."""
    gs, dom = results.group_strength, results.dominant_group
    n = _n_units(results)
    if dom is None and gs is not None:
        dom = np.argmax(gs, axis=1)
    if dom is None:
        return np.arange(n), None
    dom = np.asarray(dom, dtype=np.int64)
    strength = gs[np.arange(n), dom] if gs is not None else np.zeros(n)
    order = np.lexsort((-strength, dom))
    edges = np.concatenate([[0], np.cumsum(np.bincount(dom, minlength=results.n_groups))])
    return order, edges


def _mark_groups(ax: Axes, edges: np.ndarray | None, axis: str = "both") -> None:
    """Lines at the group boundaries and group names at their centres."""
    if edges is None:
        return
    for b in edges[1:-1]:
        if axis in ("both", "x"):
            ax.axvline(b - 0.5, color="k", lw=0.7)
        if axis == "both":
            ax.axhline(b - 0.5, color="k", lw=0.7)
    centres = (edges[:-1] + edges[1:] - 1) / 2
    present = [g for g in range(len(centres)) if edges[g + 1] > edges[g]]
    axes = [ax.xaxis, ax.yaxis] if axis == "both" else [ax.xaxis]
    for a in axes:
        a.set_ticks([centres[g] for g in present], [f"g{g}" for g in present])
        for g, tick in zip(present, a.get_major_ticks(), strict=False):
            tick.label1.set_color(_darker(_group_color(g)))


def _connectivity_figure(results: FitResults, title: str) -> Figure:
    a, b = results.output_loadings, results.input_loadings
    if a is None or b is None:
        fig = _new_figure(7.0, 3.0)
        enc = results.params.get("encoder", "mlp" if b is None else "linear")
        dec = results.params.get("decoder", "mlp" if a is None else "linear")
        _placeholder(
            fig,
            f"No connectivity figure: W = A B needs a linear encoder and decoder;\n"
            f"this fit has encoder={enc!r}, decoder={dec!r}.",
        )
        fig.suptitle(f"{title}\nconnectivity")
        return fig
    order, edges = _unit_order(results)
    ix = np.ix_(order, order)
    mats = [results.connectivity[ix]]
    mats += [results.group_connectivity(g)[ix] for g in range(results.n_groups)]
    v_w = float(np.abs(mats[0]).max()) or 1.0
    v_g = max(float(np.abs(m).max()) for m in mats[1:]) or 1.0
    n_panels = len(mats)
    ncols = min(n_panels, 4)
    nrows = math.ceil(n_panels / ncols)
    fig = _new_figure(3.4 * ncols + 1.2, 3.3 * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    noun = _unit_noun(results)
    images = []
    for i, (ax, m) in enumerate(zip(axes, mats, strict=False)):
        v = v_w if i == 0 else v_g
        im = ax.imshow(m, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
        im.set_gid("W" if i == 0 else f"W_{i - 1}")
        images.append(im)
        _mark_groups(ax, edges)
        if i == 0:
            ax.set_title("W = A B")
        else:
            ax.set_title(f"group {i - 1}: A_{i - 1} B_{i - 1}", color=_darker(_group_color(i - 1)))
        ax.set_xlabel(f"from {noun} (input)")
        ax.set_ylabel(f"to {noun} (output)")
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    fig.colorbar(images[0], ax=axes[0], label="W (a.u.)", shrink=0.8)
    fig.colorbar(images[1], ax=list(axes[1:n_panels]), label="group part (a.u.)", shrink=0.8)
    fig.suptitle(f"{title}\nconnectivity, {noun}s sorted by dominant group")
    return fig


# ---------------------------------------------------------------------- 4. group strength
def _group_strength_figure(results: FitResults, title: str) -> Figure:
    gs = results.group_strength
    if gs is None:
        fig = _new_figure(7.0, 3.0)
        _placeholder(
            fig,
            "No group strengths: they need a linear decoder (output loadings A);\n"
            f"this fit has decoder={results.params.get('decoder', 'mlp')!r}.",
        )
        fig.suptitle(f"{title}\ngroup strength")
        return fig
    order, edges = _unit_order(results)
    s = np.asarray(gs, dtype=np.float64)[order]
    n, g_n = s.shape
    total = s.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, s / total, 0.0)
    fig = _new_figure(max(7.0, min(14.0, 4.0 + 0.08 * n)), 6.0)
    ax_abs, ax_share = fig.subplots(2, 1, sharex=True)
    x = np.arange(n + 1) - 0.5
    for ax, values in ((ax_abs, s), (ax_share, share)):
        base = np.zeros(n)
        for g in range(g_n):
            ax.stairs(
                base + values[:, g],
                x,
                baseline=base.copy(),
                fill=True,
                color=_group_color(g),
                label=f"group {g}",
                gid=f"group {g}",
            )
            base = base + values[:, g]
        ax.set_xlim(-0.5, n - 0.5)
        _mark_groups(ax, edges, axis="x")
    noun = _unit_noun(results)
    ax_abs.set_ylabel("group strength\n(s.d. of drive, a.u.)")
    ax_share.set_ylabel("share of total")
    ax_share.set_ylim(0, 1)
    ax_share.set_xlabel(f"{noun} (sorted by dominant group, {n} {noun}s)")
    fig.legend(handles=ax_abs.get_legend_handles_labels()[0], loc="outside right upper", fontsize=8)
    fig.suptitle(f"{title}\ngroup strength of every {noun}")
    return fig


# ---------------------------------------------------------------------- 5. training
def _training_figure(results: FitResults, title: str) -> Figure:
    hist = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in results.history.items()}
    validation = hist.pop("validation", None)
    if validation is not None and "total" not in hist:
        hist["validation"] = validation
        validation = None
    if not hist:
        fig = _new_figure(7.0, 3.0)
        _placeholder(fig, "No training history stored with this fit.")
        fig.suptitle(f"{title}\ntraining")
        return fig
    nrows, ncols = _group_axes_grid(len(hist))
    fig = _new_figure(4.0 * ncols, 2.8 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (term, y) in zip(axes, hist.items(), strict=False):
        ax.plot(np.arange(1, len(y) + 1), y, color="0.15", lw=1.2, label="training", gid=term)
        values = y
        if term == "total" and validation is not None:
            ax.plot(
                np.arange(1, len(validation) + 1),
                validation,
                color="#D55E00",
                ls="--",
                lw=1.2,
                label="held-out",
                gid="validation",
            )
            ax.legend(fontsize=8)
            values = np.concatenate([y, validation])
        finite = values[np.isfinite(values)]
        if finite.size and (finite > 0).all() and finite.max() >= 10 * finite.min():
            ax.set_yscale("log")  # positive over a decade or more
        ax.set_title(_TERM_TITLES.get(term, term))
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per step" if term not in ("bd",) else "penalty (a.u.)")
        ax.grid(alpha=0.3)
    for ax in axes[len(hist) :]:
        ax.set_axis_off()
    n_epochs = max(len(y) for y in hist.values())
    fig.suptitle(f"{title}\ntraining objective ({n_epochs} epochs)")
    return fig


# ====================================================================== the report
def make_report(
    results: FitResults | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    color_by: str | None = None,
) -> Report:
    """Write the figures of a fit as PNG files and one self-contained HTML page.

    Parameters
    ----------
    results : FitResults or path
        The fit, or an NWB file holding it (read with ``read_results(path, name=name)``).
    out_dir : path
        Folder of the report (created if needed).  Writes ``<fit name>_<key>.png`` for every
        figure (see :func:`report_figures`) and ``<fit name>_report.html``, which embeds the
        PNG images (base64), the fit's metrics, parameters and provenance.
    name : str, optional
        The fit, when the file holds several.
    color_by : str, optional
        Trial data: the trials column whose values colour the trials.  Default: a
        condition-like column found automatically (see :func:`trial_conditions`), if any.

    Returns
    -------
    Report

    Raises
    ------
    NWBReadError
        From :func:`~nwb_facrnn.read_results` (no fit, no fit of that name) or
        :func:`trial_conditions` (``color_by`` not a trials column).
    ValueError
        The fit has no bins; ``color_by`` for continuous data; ``name`` differs from the
        name of the FitResults given.

    Notes
    -----
    Files of the same names are replaced atomically and all together: everything is
    rendered and written to temporary files beside the destinations first, then moved into
    place; if anything fails, every file is left as it was and no new or partial file stays.
    """
    if isinstance(results, FitResults):
        if name is not None and name != results.name:
            raise ValueError(f"name={name!r} given with the FitResults of fit {results.name!r}")
    else:
        results = read_results(results, name=name)
    conditions = _find_conditions(results, color_by)
    figures = report_figures(results, conditions)
    pngs = {}
    for key, fig in figures.items():
        pngs[key] = _png_bytes(fig)
        fig.clear()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = _file_stem(results.name)
    paths = {key: out / f"{stem}_{key}.png" for key in FIGURE_KEYS}
    html_path = out / f"{stem}_report.html"
    page = _html_page(results, conditions, pngs)
    files = {paths[key]: pngs[key] for key in FIGURE_KEYS}
    files[html_path] = page.encode("utf-8")
    _write_together(files)
    return Report(html=html_path, figures=paths)


def _find_conditions(results: FitResults, color_by: str | None) -> tuple[str, np.ndarray] | None:
    if results.trial_ids is None:
        if color_by is not None:
            raise ValueError(
                f"fit {results.name!r} in {results.path}: color_by={color_by!r} needs trial "
                "data; this fit is continuous"
            )
        return None
    if color_by is None and not _readable(results.path):
        return None  # a FitResults built in memory, no file to look in
    ids = np.asarray(results.trial_ids)
    uniq, inverse = np.unique(ids, return_inverse=True)
    found = trial_conditions(results.path, uniq, color_by)
    if found is None:
        return None
    column, labels = found
    return column, labels[inverse.ravel()]


def _readable(path: str) -> bool:
    from .io.dandi import is_remote

    return bool(path) and (is_remote(path) or Path(path).exists())


def _file_stem(name: str) -> str:
    """The fit's name as a file name stem (other characters than letters, digits, ``._-``
    replaced by ``_``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return stem or "facrnn"


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _write_together(files: dict[Path, bytes]) -> None:
    """Write every file or none: temporaries first, then each moved into place; on a failure
    the files already replaced get their old content back (new ones are removed)."""
    lock_on = next(reversed(files))  # the HTML page: one lock per report
    with destination_lock(lock_on):
        for dest in files:
            recover(dest)
        temps: dict[Path, Path] = {}
        try:
            for dest, data in files.items():
                tmp = dest.with_name(
                    f"{PARTIAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{dest.name}"
                )
                temps[dest] = tmp
                tmp.write_bytes(data)
                if dest.exists():
                    shutil.copymode(dest, tmp)
            _move_all(temps)
        finally:
            for tmp in temps.values():
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()


def _move_all(temps: dict[Path, Path]) -> None:
    backups: dict[Path, Path] = {}
    done: list[Path] = []
    try:
        for dest, tmp in temps.items():
            if dest.exists():
                backup = dest.with_name(f"{OLD_PREFIX}{uuid.uuid4().hex[:8]}-{dest.name}")
                try:
                    os.link(dest, backup)
                except OSError:  # no hard links here
                    shutil.copy2(dest, backup)
                backups[dest] = backup
            replace_atomically(tmp, dest)
            done.append(dest)
    except BaseException:
        for dest in reversed(done):
            if dest in backups:
                os.replace(backups.pop(dest), dest)
            else:
                dest.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups.values():
            backup.unlink(missing_ok=True)


# ---------------------------------------------------------------------- the HTML page
_KEY_PARAMS = (
    "n_groups",
    "group_rank",
    "beta",
    "alpha",
    "seed",
    "observation",
    "encoder",
    "decoder",
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-size: 0.9em; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.4em; }
.meta { color: #555; font-size: 0.9em; }
"""


def _format_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _table(rows: list[tuple[str, Any]], head: tuple[str, str]) -> str:
    e = html.escape
    body = "".join(
        f'<tr><th>{e(str(k))}</th><td class="num">{e(_format_value(v))}</td></tr>' for k, v in rows
    )
    return f"<table><tr><th>{e(head[0])}</th><th>{e(head[1])}</th></tr>{body}</table>"


def _html_page(
    results: FitResults, conditions: tuple[str, np.ndarray] | None, pngs: dict[str, bytes]
) -> str:
    e = html.escape
    p = results.params
    params = [("bin_size (s)", results.bin_size)]
    params += [(k, p[k]) for k in _KEY_PARAMS if k in p]
    params += [(k, v) for k, v in sorted(p.items()) if k not in _KEY_PARAMS]
    prov = results.provenance
    n_units = _n_units(results)
    data = f"{len(results.latents)} bins"
    if results.trial_ids is not None:
        data += f" in {len(np.unique(results.trial_ids))} trials"
    if n_units is not None:
        data += f" × {n_units} {_unit_noun(results)}s"
    meta = [
        ("fit", results.name),
        ("results file", f"{results.path}  ({results.object_path})"),
        ("source", prov.get("source", "")),
        ("data", data),
        ("layout", ", ".join(f"{k}={v}" for k, v in (prov.get("layout") or {}).items())),
        ("colour by", conditions[0] if conditions is not None else ""),
        ("written", prov.get("written", "")),
        ("nwb_facrnn", prov.get("nwb_facrnn_version", "")),
    ]
    meta_html = "".join(
        f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in meta if v not in ("", None)
    )
    figures = "".join(
        f'<figure id="{key}"><img alt="{e(key)}" '
        f'src="data:image/png;base64,{base64.b64encode(pngs[key]).decode("ascii")}">'
        f"<figcaption>{e(_CAPTIONS[key])}</figcaption></figure>\n"
        for key in FIGURE_KEYS
    )
    metrics = (
        _table(list(results.metrics.items()), ("metric", "value"))
        if results.metrics
        else "<p>none stored</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>FacRNN fit {e(results.name)}</title><style>{_STYLE}</style></head><body>\n"
        f"<h1>FacRNN fit {e(results.name)}</h1>\n"
        f'<p class="meta">{e(_suptitle(results))}</p>\n'
        f"<table>{meta_html}</table>\n"
        f"<h2>Metrics</h2>\n{metrics}\n"
        f"<h2>Parameters</h2>\n{_table(params, ('parameter', 'value'))}\n"
        f"<h2>Figures</h2>\n{figures}</body></html>\n"
    )
