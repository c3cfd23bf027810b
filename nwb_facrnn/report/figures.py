"""The five figures of a fit, drawn by :func:`report_figures` (not saved)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..io.results import FitResults
from .latents import condition_colors_of, latents_state_figure, latents_time_figure, trial_grid
from .loadings import connectivity_figure, group_strength_figure
from .style import fit_title
from .training import training_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The figures, in the order of :attr:`Report.figures` and of the HTML page.
FIGURE_KEYS: tuple[str, ...] = (
    "latents_time",
    "latents_state",
    "connectivity",
    "group_strength",
    "training",
)


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
        :func:`~nwb_facrnn.report.trial_conditions` returns); trial lines are coloured by it.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        Keyed (in this order):

        ``"latents_time"``
            One panel per group: its latents (a.u.) against time (s).  Trials: the mean
            trajectory of every condition against time in the trial (time from the aligning
            event for aligned windows), colour = condition, line style = latent dim.
            Continuous: against session time, the min/max of blocks of bins drawn beyond
            :data:`~nwb_facrnn.report.latents.MAX_LINE_POINTS` bins.
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
        The fit has no bins.
    OptionError
        (a ``ValueError``) ``conditions`` for continuous data, or not one label per bin.
    """
    if len(results.latents) == 0:
        raise ValueError(f"fit {results.name!r} in {results.path}: has no latent bins to draw")
    trials = None if results.trial_ids is None else trial_grid(results)
    conds = None if conditions is None else condition_colors_of(results, trials, conditions)
    title = fit_title(results)
    return {
        "latents_time": latents_time_figure(results, trials, conds, title),
        "latents_state": latents_state_figure(results, trials, conds, title),
        "connectivity": connectivity_figure(results, title),
        "group_strength": group_strength_figure(results, title),
        "training": training_figure(results, title),
    }
