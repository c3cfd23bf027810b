"""The two figures of the latents: over time (``latents_time``) and in state space
(``latents_state``), for trial data by condition and for continuous data.

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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError
from ..io.results import FitResults
from .style import (
    LINESTYLES,
    axes_grid,
    condition_colors,
    darker,
    dim_color,
    group_color,
    new_figure,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

#: Continuous latents over time: most points drawn per line (min/max of blocks of bins).
MAX_LINE_POINTS = 4000
#: Continuous state-space trajectories: most points drawn per group (every k-th bin).
MAX_STATE_POINTS = 2000
#: Trial data, state space: most single-trial lines drawn per group.
MAX_TRIAL_LINES = 200


@dataclass
class TrialGrid:
    """The fit's bins as trials on a common time-in-trial grid."""

    ids: np.ndarray  # (n_trials,), in order of first appearance
    rows: list[np.ndarray]  # rows of every trial, in time order
    time: np.ndarray  # (L,) time in trial (s) of every grid bin
    grid: np.ndarray  # (n_trials, L, K) latents, NaN where a trial has no bin
    xlabel: str


@dataclass
class ConditionColors:
    """Condition of every trial and the colour of every condition."""

    column: str
    values: np.ndarray  # (C,) distinct values, sorted
    colors: list[str]  # (C,) hex colours
    of_trial: np.ndarray  # (n_trials,) index into values

    def label(self, c: int) -> str:
        return f"{self.column} = {self.values[c]}"

    def handles(self) -> list[Line2D]:
        """Legend entries: a line of every condition's colour."""
        from matplotlib.lines import Line2D

        return [
            Line2D([], [], color=self.colors[c], lw=2, label=self.label(c))
            for c in range(len(self.values))
        ]


def trial_grid(results: FitResults) -> TrialGrid:
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
    return TrialGrid(uniq, rows, time, grid, xlabel)


def condition_colors_of(
    results: FitResults, trials: TrialGrid | None, conditions: tuple[str, np.ndarray]
) -> ConditionColors:
    """The condition of every trial (its first bin's label) and a colour per condition."""
    column, labels = conditions
    labels = np.asarray(labels)
    if trials is None:
        raise OptionError(
            f"fit {results.name!r} in {results.path}: continuous data has no trials to colour "
            f"by {column!r}"
        )
    if labels.shape != (len(results.latents),):
        raise OptionError(
            f"fit {results.name!r}: conditions must give one label per bin, shape "
            f"({len(results.latents)},), got {labels.shape}"
        )
    per_trial = labels[[r[0] for r in trials.rows]]
    values, of_trial = np.unique(per_trial, return_inverse=True)
    return ConditionColors(str(column), values, condition_colors(len(values)), of_trial.ravel())


def _trial_groups(
    trials: TrialGrid, conds: ConditionColors | None
) -> list[tuple[np.ndarray, str, Any]]:
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


def minmax_decimate(
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


# ---------------------------------------------------------------------- latents over time
def latents_time_figure(
    results: FitResults, trials: TrialGrid | None, conds: ConditionColors | None, title: str
) -> Figure:
    """One panel per group: trial-averaged latents by condition, or latents over the session."""
    from matplotlib.lines import Line2D

    g_n, h = results.n_groups, results.group_rank
    fig = new_figure(9.0, 1.0 + 2.0 * g_n)
    axes = fig.subplots(g_n, 1, sharex=True, squeeze=False)[:, 0]
    block = 1
    for g, ax in enumerate(axes):
        if trials is None:
            block = _draw_time_continuous(ax, results, g)
        else:
            _draw_time_trials(ax, results, trials, conds, g)
        if trials is None or conds is None:
            ax.legend(loc="upper right", fontsize=7, ncols=min(h, 4))
        ax.set_ylabel(f"group {g} latents (a.u.)", color=darker(group_color(g)))
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
        handles = conds.handles() + [
            Line2D([], [], color="0.3", ls=LINESTYLES[j % len(LINESTYLES)], label=f"dim {j}")
            for j in range(h)
        ]
        fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


def _draw_time_continuous(ax: Axes, results: FitResults, g: int) -> int:
    """Group ``g``'s dims against session time (min/max decimated); returns the block size."""
    h, s = results.group_rank, results.group_slice(g)
    block = 1
    for j, k in enumerate(range(s.start, s.stop)):
        x, y, block = minmax_decimate(results.timestamps, results.latents[:, k], MAX_LINE_POINTS)
        ax.plot(x, y, color=dim_color(g, j, h), lw=0.7, label=f"g{g}_{j}", gid=f"g{g}_{j}")
    return block


def _draw_time_trials(
    ax: Axes, results: FitResults, trials: TrialGrid, conds: ConditionColors | None, g: int
) -> None:
    """Group ``g``'s mean trajectory per condition (colour) and dim (line style), or of all
    trials (one shade of the group colour per dim)."""
    h, s = results.group_rank, results.group_slice(g)
    for sel, label, color in _trial_groups(trials, conds):
        mean = _nanmean(trials.grid[sel][:, :, s])
        for j in range(h):
            if color is None:
                style = {"color": dim_color(g, j, h), "label": f"g{g}_{j}"}
            else:
                style = {"color": color, "ls": LINESTYLES[j % len(LINESTYLES)], "label": label}
            ax.plot(trials.time, mean[:, j], lw=1.4, gid=f"g{g}_{j}", **style)


# ---------------------------------------------------------------------- state space
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


def latents_state_figure(
    results: FitResults, trials: TrialGrid | None, conds: ConditionColors | None, title: str
) -> Figure:
    """One panel per group: its trajectory in its first two (three) dims."""
    from matplotlib.lines import Line2D

    g_n, h = results.n_groups, results.group_rank
    nrows, ncols = axes_grid(g_n)
    fig = new_figure(4.2 * ncols + (1.2 if trials is None else 1.8), 3.8 * nrows + 0.8)
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
        ax.set_title(f"group {g}", color=darker(group_color(g)))
    if trials is not None:
        if conds is not None:
            handles = conds.handles()
        else:
            handles = [
                Line2D([], [], color="0.3", lw=2, label="mean"),
                Line2D([], [], color="0.3", lw=0.6, label="single trials"),
            ]
        fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle(f"{title}\nstate-space trajectories{note}")
    return fig


def _draw_state_trials(
    results: FitResults, trials: TrialGrid, conds: ConditionColors | None, axes: list[Axes]
) -> str:
    """Single trials (thin) and condition means (thick); returns a note for the title."""
    n = len(trials.ids)
    drawn = np.unique(np.linspace(0, n - 1, min(n, MAX_TRIAL_LINES)).round().astype(int))
    for g, ax in enumerate(axes):
        s = results.group_slice(g)
        for i in drawn:
            c = conds.colors[conds.of_trial[i]] if conds is not None else group_color(g)
            pts = _state_coords(results.latents[trials.rows[i], s])
            ax.plot(*pts, color=c, lw=0.6, alpha=0.45, gid=f"trial {trials.ids[i]}")
        for sel, label, color in _trial_groups(trials, conds):
            mean = _nanmean(trials.grid[sel][:, :, s])
            mean = mean[np.isfinite(mean).all(axis=1)]
            c = color if color is not None else darker(group_color(g))
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
