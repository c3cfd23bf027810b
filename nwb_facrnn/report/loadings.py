"""The two figures of the loadings: the low-rank connectivity ``W = A B`` with every group's
part (``connectivity``) and the group strength of every unit (``group_strength``), units sorted
by dominant group."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..io.results import FitResults
from .style import darker, group_color, n_units, new_figure, placeholder_figure, unit_noun

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _unit_order(results: FitResults) -> tuple[np.ndarray, np.ndarray | None]:
    """Units sorted by dominant group, strongest first within a group, and the group
    boundaries in the sorted order (``G + 1`` edges; None without groups)."""
    gs, dom = results.group_strength, results.dominant_group
    n = n_units(results)
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
            tick.label1.set_color(darker(group_color(g)))


def connectivity_figure(results: FitResults, title: str) -> Figure:
    """``W`` and every group's ``A_g B_g`` as images (a placeholder for an MLP fit)."""
    a, b = results.output_loadings, results.input_loadings
    if a is None or b is None:
        enc = results.params.get("encoder", "mlp" if b is None else "linear")
        dec = results.params.get("decoder", "mlp" if a is None else "linear")
        return placeholder_figure(
            title,
            "connectivity",
            f"No connectivity figure: W = A B needs a linear encoder and decoder;\n"
            f"this fit has encoder={enc!r}, decoder={dec!r}.",
        )
    order, edges = _unit_order(results)
    ix = np.ix_(order, order)
    mats = [results.connectivity[ix]]
    mats += [results.group_connectivity(g)[ix] for g in range(results.n_groups)]
    v_w = float(np.abs(mats[0]).max()) or 1.0
    v_g = max(float(np.abs(m).max()) for m in mats[1:]) or 1.0
    n_panels = len(mats)
    ncols = min(n_panels, 4)
    nrows = math.ceil(n_panels / ncols)
    fig = new_figure(3.4 * ncols + 1.2, 3.3 * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    noun = unit_noun(results)
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
            ax.set_title(f"group {i - 1}: A_{i - 1} B_{i - 1}", color=darker(group_color(i - 1)))
        ax.set_xlabel(f"from {noun} (input)")
        ax.set_ylabel(f"to {noun} (output)")
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    fig.colorbar(images[0], ax=axes[0], label="W (a.u.)", shrink=0.8)
    fig.colorbar(images[1], ax=list(axes[1:n_panels]), label="group part (a.u.)", shrink=0.8)
    fig.suptitle(f"{title}\nconnectivity, {noun}s sorted by dominant group")
    return fig


# ---------------------------------------------------------------------- group strength
def group_strength_figure(results: FitResults, title: str) -> Figure:
    """Stacked group strengths of every unit and their shares (a placeholder without ``A``)."""
    gs = results.group_strength
    if gs is None:
        return placeholder_figure(
            title,
            "group strength",
            "No group strengths: they need a linear decoder (output loadings A);\n"
            f"this fit has decoder={results.params.get('decoder', 'mlp')!r}.",
        )
    order, edges = _unit_order(results)
    s = np.asarray(gs, dtype=np.float64)[order]
    n, g_n = s.shape
    total = s.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, s / total, 0.0)
    fig = new_figure(max(7.0, min(14.0, 4.0 + 0.08 * n)), 6.0)
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
                color=group_color(g),
                label=f"group {g}",
                gid=f"group {g}",
            )
            base = base + values[:, g]
        ax.set_xlim(-0.5, n - 0.5)
        _mark_groups(ax, edges, axis="x")
    noun = unit_noun(results)
    ax_abs.set_ylabel("group strength\n(s.d. of drive, a.u.)")
    ax_share.set_ylabel("share of total")
    ax_share.set_ylim(0, 1)
    ax_share.set_xlabel(f"{noun} (sorted by dominant group, {n} {noun}s)")
    fig.legend(handles=ax_abs.get_legend_handles_labels()[0], loc="outside right upper", fontsize=8)
    fig.suptitle(f"{title}\ngroup strength of every {noun}")
    return fig
