"""Fitting FacRNN on an open imaging session from the viewer (no Qt here: the fit widget
runs :func:`fit_session` in a worker thread)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nwb_facrnn.io import FitResults


class FitCancelled(Exception):
    """The user cancelled the fit."""


@dataclass
class FitRequest:
    """What the fit widget asks for; names as in :func:`nwb_facrnn.read_nwb` and
    :class:`nwb_facrnn.FacRNN`.

    Attributes
    ----------
    path : path
        The NWB file (read-only).
    series : str or None
        RoiResponseSeries to fit (None: the file's dF/F).
    accepted_only : bool
        Fit only ROIs with ``accepted == True`` when the PlaneSegmentation has that column.
    bin_size : float or None
        Seconds; None: one bin per frame.
    n_groups, group_rank, beta, max_epochs, seed
        Model settings.
    save : bool
        Write the results into NWB (``output``, default ``<stem>_facrnn.nwb`` next to the
        file, the movie linked).
    output : path or None
    """

    path: str | os.PathLike
    series: str | None = None
    accepted_only: bool = True
    bin_size: float | None = None
    n_groups: int = 2
    group_rank: int = 3
    beta: float = 20.0
    max_epochs: int = 100
    seed: int = 0
    save: bool = False
    output: str | os.PathLike | None = None
    model_options: dict[str, Any] = field(default_factory=dict)


def fit_session(
    request: FitRequest,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[FitResults, Path | None]:
    """Read the session's ROI traces, fit FacRNN and (optionally) save the results.

    Parameters
    ----------
    request : FitRequest
    on_epoch : callable, optional
        ``on_epoch(epoch, terms)`` after every epoch (progress).
    cancelled : callable, optional
        Polled after every epoch; when it returns True the fit stops with
        :class:`FitCancelled` and nothing is written.

    Returns
    -------
    (FitResults, path or None)
        The fit (as read back from NWB when saved), and where it was saved.
    """
    from nwb_facrnn import fit_source

    rois = {"accepted": True} if request.accepted_only and _has_accepted(request.path) else None

    def callback(epoch: int, terms: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(epoch, terms)
        if cancelled is not None and cancelled():
            raise FitCancelled(f"fit cancelled after {epoch + 1} epochs")

    outcome = fit_source(
        request.path,
        read_options={
            "modality": "ophys",
            "series": request.series or None,
            "rois": rois,
            "bin_size": request.bin_size or None,
        },
        model_options={
            "n_groups": request.n_groups,
            "group_rank": request.group_rank,
            "beta": request.beta,
            "max_epochs": request.max_epochs,
            "seed": request.seed,
            "progress": False,
            **request.model_options,
        },
        output={"output": request.output, "save": request.save},
        callback=callback,
    )
    return outcome.results, outcome.path


def _has_accepted(path: str | os.PathLike) -> bool:
    from nwb_facrnn.io import open_nwbfile, plane_segmentations

    with open_nwbfile(path) as (nwbfile, _source, _backend):
        return any("accepted" in ps.colnames for ps in plane_segmentations(nwbfile))
