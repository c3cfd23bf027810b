"""What every figure of the report shares: colours, new figures, titles and placeholders.

The figures are plain :class:`matplotlib.figure.Figure` objects rendered with the Agg canvas;
pyplot is never used, so no global figure state is created or leaked.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..io.results import FitResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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

#: Line style of latent dim ``j`` where colour means condition: ``LINESTYLES[j % 4]``.
LINESTYLES = ("-", "--", ":", "-.")


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def placeholder_figure(title: str, what: str, text: str) -> Figure:
    """A small figure saying why figure ``what`` of the fit ``title`` cannot be drawn."""
    fig = new_figure(7.0, 3.0)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, gid="placeholder")
    fig.suptitle(f"{title}\n{what}")
    return fig


def fit_title(results: FitResults) -> str:
    """The fit's name, groups, dims and beta: the first line of every figure's title."""
    beta = results.params.get("beta")
    text = f"{results.name}: G={results.n_groups} groups × H={results.group_rank} dims"
    return text + (f", β={beta:g}" if isinstance(beta, int | float) else "")


def axes_grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of ``n`` panels, at most ``max_cols`` wide."""
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def group_color(g: int) -> str:
    return GROUP_COLORS[g % len(GROUP_COLORS)]


def darker(color: str) -> tuple[float, float, float]:
    """A darker shade of ``color`` (for text and thick lines)."""
    from matplotlib.colors import to_rgb

    return tuple(0.75 * c for c in to_rgb(color))


def dim_color(g: int, j: int, rank: int) -> tuple[float, float, float]:
    """Group ``g``'s colour, darker for later dims."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(group_color(g)))
    shade = 0.6 * j / max(rank - 1, 1)
    return tuple(float(c) for c in rgb * (1 - shade))


def condition_colors(n: int) -> list[str]:
    """Distinct colours of ``n`` conditions (hex)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [to_hex(cmap(i)) for i in range(n)]


def unit_noun(results: FitResults) -> str:
    """``"ROI"`` for an imaging fit, else ``"unit"``."""
    ophys = results.provenance.get("modality") == "ophys" or "Segmentation" in str(
        results.unit_table
    )
    return "ROI" if ophys else "unit"


def n_units(results: FitResults) -> int | None:
    """N, from whatever the fit holds (None when it holds no per-unit arrays)."""
    for a in (results.unit_ids, results.group_strength, results.output_loadings):
        if a is not None:
            return len(a)
    return None if results.input_loadings is None else results.input_loadings.shape[1]
