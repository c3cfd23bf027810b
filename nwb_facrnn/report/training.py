"""The figure of the training objective (``training``): every loss term per epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..io.results import FitResults
from .style import axes_grid, new_figure, placeholder_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Panel title of every known loss term (others are titled by their key).
TERM_TITLES = {
    "total": "total objective",
    "reconstruction": "reconstruction NLL",
    "kl": "KL to prior",
    "pc": "partial correlation (PC)",
    "bd": "block off-diagonal penalty (BD)",
}


def training_figure(results: FitResults, title: str) -> Figure:
    """A panel per loss term of ``results.history``; the held-out objective with the total."""
    hist = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in results.history.items()}
    validation = hist.pop("validation", None)
    if validation is not None and "total" not in hist:
        hist["validation"] = validation
        validation = None
    if not hist:
        return placeholder_figure(title, "training", "No training history stored with this fit.")
    nrows, ncols = axes_grid(len(hist))
    fig = new_figure(4.0 * ncols, 2.8 * nrows + 0.8)
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
        ax.set_title(TERM_TITLES.get(term, term))
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per step" if term not in ("bd",) else "penalty (a.u.)")
        ax.grid(alpha=0.3)
    for ax in axes[len(hist) :]:
        ax.set_axis_off()
    n_epochs = max(len(y) for y in hist.values())
    fig.suptitle(f"{title}\ntraining objective ({n_epochs} epochs)")
    return fig
