"""``nwb-facrnn demo``: the whole path on a synthetic voltage-imaging session with a known answer.

Write a one-photon voltage-imaging session to NWB (two independent chaotic latent groups of
rank 3 drive 46 accepted ROIs), read its dF/F, fit FacRNN with the true number of groups,
write the results into NWB, judge the output with nwbinspector, score the fit against the
ground truth and draw the report figures.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import OptionError

#: The synthetic session: 4 s at 500 Hz, 48 ROIs (2 rejected) on a 128 x 128 field of view.
SESSION = {"n_rois": 48, "duration": 4.0, "frame_shape": (128, 128), "rate": 500.0}
#: The fit: FacRNN's defaults (beta = 20) with the session's true G and H, fewer epochs.
FIT = {"max_epochs": 40, "n_init": 2}


@dataclass(frozen=True)
class Recovery:
    """One line of the recovery table: a quantity, its value and what a good fit gives."""

    quantity: str
    value: float
    reference: str
    fmt: str = "{:.3f}"

    @property
    def text(self) -> str:
        return self.fmt.format(self.value)


@dataclass
class DemoOutcome:
    """Everything the demo made.

    Attributes
    ----------
    session, results : pathlib.Path
        The synthetic session and the results file (the session's content linked, plus the
        fit under ``/processing/ophys/<fit_name>``).
    fit_name : str
    recovery : list of Recovery
        Ground-truth recovery, in the order printed.
    inspector : list of str
        nwbinspector's messages on the results file (``IMPORTANCE check: message``).
    report : nwb_facrnn.report.Report
        The figures and the HTML page.
    timings : dict of str to float
        Seconds per step.
    """

    session: Path
    results: Path
    fit_name: str
    recovery: list[Recovery]
    inspector: list[str]
    report: object
    timings: dict[str, float] = field(default_factory=dict)


def run_demo(
    output_dir: str | os.PathLike = "results/demo",
    seed: int = 0,
    *,
    step: Callable[[str, float], None] | None = None,
    progress: bool = True,
) -> DemoOutcome:
    """Run the demo and return what it made.

    Parameters
    ----------
    output_dir : path
        Where the session, the results file and ``figures/`` go (created). A previous
        demo's files there are replaced.
    seed : int
        Seed of the session and of the fit.
    step : callable, optional
        ``step(message, seconds)`` after each step (the command line prints them).
    progress : bool
        Show the fit's progress bar.
    """
    from .pipeline import fit_source
    from .synthetic import make_imaging_session

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def done(key: str, seconds: float, message: str) -> None:
        timings[key] = seconds
        if step is not None:
            step(message, seconds)

    start = time.perf_counter()
    session = out / "voltage_imaging.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynwb's dtype-conversion notices
        truth = make_imaging_session(session, seed=seed, overwrite=True, **SESSION)
    done(
        "session",
        time.perf_counter() - start,
        f"wrote a synthetic voltage-imaging session: {session} ({truth.n_rois} ROIs, "
        f"{truth.n_frames} frames at {truth.rate:g} Hz, groups: {', '.join(truth.systems)})",
    )
    results = out / "voltage_imaging_facrnn.nwb"
    results.unlink(missing_ok=True)  # made from the session replaced above

    def on_step(key: str, info: dict) -> None:
        message = {
            "read": lambda: (
                f"read dF/F of the accepted ROIs: {info['data'].n_bins} bins x "
                f"{info['data'].n_units} ROIs"
            ),
            "fit": lambda: (
                f"fit FacRNN G={truth.n_groups} x H={truth.group_rank} "
                f"({info['model'].n_epochs_} epochs)"
            ),
            "evaluate": lambda: "scored the fit (log-likelihood, partial correlation, R²)",
            "write": lambda: f"wrote the results into NWB: {info['path']} ({info['name']})",
            "figures": lambda: f"figures: {info['report'].html}",
        }.get(key)
        if message is not None:
            done(key, info["seconds"], message())

    outcome = fit_source(
        session,
        read_options={"series": "DfOverF", "rois": {"accepted": True}},
        model_options={
            "n_groups": truth.n_groups,
            "group_rank": truth.group_rank,
            "seed": seed,
            "progress": progress,
            **FIT,
        },
        output={"output": results},
        figures=out / "figures",
        on_step=on_step,
    )
    clock = time.perf_counter()
    inspector = inspect(outcome.path)
    done(
        "inspect",
        time.perf_counter() - clock,
        f"nwbinspector: {len(inspector)} message(s)" if inspector else "nwbinspector: no issues",
    )
    clock = time.perf_counter()
    recovery = score_recovery(truth, outcome.results)
    done("score", time.perf_counter() - clock, "scored the fit against the ground truth")
    return DemoOutcome(
        session, outcome.path, outcome.fit_name, recovery, inspector, outcome.report, timings
    )


def inspect(path: str | os.PathLike) -> list[str]:
    """nwbinspector's messages on ``path``, as ``IMPORTANCE check_name location: message``."""
    from nwbinspector import inspect_nwbfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        messages = list(inspect_nwbfile(nwbfile_path=Path(path)))
    return [
        f"{m.importance.name} {m.check_function_name} {m.location or ''}: {m.message}"
        for m in messages
    ]


def score_recovery(truth, res) -> list[Recovery]:
    """How well a fit of a synthetic imaging session recovered its ground truth.

    Parameters
    ----------
    truth : nwb_facrnn.synthetic.ImagingTruth
    res : nwb_facrnn.FitResults
        A fit of the session's dF/F, one bin per frame.
    """
    from . import metrics

    if len(res.timestamps) != truth.n_frames:
        raise OptionError(
            f"the fit {res.name!r} has {len(res.timestamps)} bins; the ground truth is per "
            f"frame ({truth.n_frames} frames): fit with the frame period as bin size"
        )
    alignment = metrics.group_latent_r2(truth.z, res.latents, truth.n_groups, res.n_groups)
    rows = [
        Recovery(
            f"group latent R² ({truth.systems[g]})",
            alignment.per_group[g],
            "1 = recovered up to an affine map",
        )
        for g in range(truth.n_groups)
    ]
    rows.append(
        Recovery(
            "latent R² of all groups together",
            metrics.component_latent_r2(truth.z, res.latents),
            "1 = the latent subspace is found",
        )
    )
    rois = np.searchsorted(truth.roi_ids, res.unit_ids)
    true_of_fitted = np.full(res.n_groups, -1)
    matched = alignment.assignment >= 0
    true_of_fitted[alignment.assignment[matched]] = np.flatnonzero(matched)
    if res.dominant_group is not None:
        share = np.mean(true_of_fitted[res.dominant_group] == truth.roi_groups[rois])
        rows.append(Recovery("ROIs in their true group", 100 * share, "100 %", fmt="{:.0f} %"))
    if "gaussian_partial_correlation" in res.metrics:
        rows.append(
            Recovery(
                "Gaussian partial correlation between groups (nats)",
                res.metrics["gaussian_partial_correlation"],
                "0 = independent groups",
            )
        )
    if "reconstruction_r2" in res.metrics:
        rows.append(
            Recovery("reconstruction R² of dF/F", res.metrics["reconstruction_r2"], "noise-limited")
        )
    return rows
