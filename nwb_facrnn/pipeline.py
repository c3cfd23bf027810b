"""The one path from a source to stored results: read -> fit -> evaluate -> write (-> figures).

The command line (``nwb-facrnn fit``), every fit of a sweep, the demo and the napari fit
widget all run :func:`fit_source`; nothing else composes these steps::

    from nwb_facrnn.pipeline import fit_source

    outcome = fit_source(
        "session.nwb",
        read_options={"series": "DfOverF"},
        model_options={"n_groups": 2, "group_rank": 3, "seed": 0},
        output={"output": "session_facrnn.nwb"},
    )
    print(outcome.path, outcome.fit_name, outcome.metrics)

:func:`write_results` is the same last two steps for a model fitted by hand.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OptionError
from .evaluation import build_results, interleaved_steps
from .io.destination import Destination, check_destination
from .io.results import FitResults, read_results
from .io.writer import WrittenFit, store_results
from .neural_data import NeuralData

if TYPE_CHECKING:
    from .model import FacRNN
    from .report import Report

__all__ = ["FitOutcome", "OutputOptions", "fit_source", "launcher_rank", "write_results"]


@dataclass
class OutputOptions(Destination):
    """Where a fit's results go (:class:`~nwb_facrnn.io.destination.Destination`), and
    whether they are written at all.

    Attributes
    ----------
    save : bool
        False: write nothing (the outcome's results are the in-memory ones).
    """

    save: bool = True

    @classmethod
    def of(cls, value: OutputOptions | Mapping[str, Any] | None) -> OutputOptions:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise OptionError(f"unknown output option(s) {unknown}; known: {sorted(known)}")
        return cls(**value)


@dataclass
class FitOutcome:
    """What :func:`fit_source` made.

    Attributes
    ----------
    results : FitResults or None
        The fit as stored (read back from the file when saved, else built in memory);
        None on a data-parallel rank other than 0.
    path : pathlib.Path or None
        The file written; None when nothing was saved.
    fit_name : str
        The results container's name.
    metrics : dict of str to float
        ``results.metrics`` (names of :data:`nwb_facrnn.metrics.METRICS`).
    steps : {"all", "heldout"}
        The time steps the metrics were computed on.
    timings : dict of str to float
        Seconds per step (``read``, ``fit``, ``evaluate``, ``write``, ``figures``).
    model : FacRNN
        The fitted model.
    data : NeuralData
        What it was fit on.
    report : Report or None
        The figures, when asked for.
    primary : bool
        False on ranks > 0 of a ``torchrun`` launch: they train, rank 0 evaluates and writes.
    """

    results: FitResults | None
    path: Path | None
    fit_name: str
    metrics: dict[str, float]
    steps: str
    model: FacRNN
    data: NeuralData
    timings: dict[str, float] = field(default_factory=dict)
    report: Report | None = None
    primary: bool = True


def _check_varies(data: NeuralData) -> None:
    """Refuse, before training and naming the file and object, activity in which every unit
    is constant (a placeholder trace): there are no dynamics to fit."""
    from .model.data import check_varies

    where = f"{data.provenance.get('source', '<data>')}: {data.provenance['objects']['activity']}"
    if hasattr(data.activity, "sequences"):  # chunked: read block by block, all observed
        check_varies(data.activity.sequences(), None, name=where)
        return
    activity = data.activity if data.activity.ndim == 3 else data.activity[None]
    mask = data.mask if data.mask.ndim == 3 else data.mask[None]
    check_varies(activity, mask, name=where)


def launcher_rank() -> int:
    """This process's rank when a launcher such as ``torchrun`` started several (``RANK``
    with ``WORLD_SIZE``), else 0."""
    try:
        return int(os.environ.get("RANK", "0")) if "WORLD_SIZE" in os.environ else 0
    except ValueError:
        return 0


def fit_source(
    source: str | os.PathLike | NeuralData,
    *,
    read_options: Mapping[str, Any] | None = None,
    model_options: Mapping[str, Any] | None = None,
    output: OutputOptions | Mapping[str, Any] | None = None,
    heldout: bool = False,
    figures: str | os.PathLike | None = None,
    color_by: str | None = None,
    on_step: Callable[[str, dict[str, Any]], None] | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> FitOutcome:
    """Read a source, fit FacRNN, score the fit, write the results into NWB, draw figures.

    Parameters
    ----------
    source : path, str or NeuralData
        A local NWB file (HDF5 or Zarr), a DANDI asset or URL, or data already read with
        :func:`~nwb_facrnn.read_nwb` (its provenance names the file to write next to).
    read_options : mapping, optional
        :func:`~nwb_facrnn.read_nwb` keywords (``series``, ``bin_size``, ``trials``,
        ``dandi_api_url`` ...); not allowed with a NeuralData source.
    model_options : mapping, optional
        :class:`~nwb_facrnn.FacRNN` keywords.  ``observation`` defaults to ``"auto"``:
        Poisson for spikes, Gaussian for imaging traces.
    output : OutputOptions or mapping, optional
        Where the results go (:class:`OutputOptions`); default next to the source.
    heldout : bool
        Train on the even time steps and score on the odd ones (the paper's interleaved
        split; sweeps and model selection); default: train and score on every step.
    figures : path, optional
        Also draw the report figures (PNG + HTML) into this folder.
    color_by : str, optional
        Trials column colouring the figures' latents.
    on_step : callable, optional
        ``on_step(step, info)`` after each step: ``"read"`` (``info["data"]``),
        ``"destination"`` (``info["path"]``, ``info["name"]``: checked before training),
        ``"fit"`` (``info["model"]``), ``"evaluate"`` (``info["metrics"]``), ``"write"``
        (``info["path"]``, ``info["name"]``), ``"figures"`` (``info["report"]``); every
        ``info`` has ``"seconds"``.
    callback : callable, optional
        ``callback(epoch, terms)`` after every training epoch (:meth:`FacRNN.fit`); raise
        from it to stop the fit (nothing is written).

    Returns
    -------
    FitOutcome
    """
    from .model import FacRNN

    out = OutputOptions.of(output)
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def done(step: str, **info: Any) -> None:
        now = time.perf_counter()
        timings[step] = now - clock[0]
        clock[0] = now
        if on_step is not None:
            on_step(step, {**info, "seconds": timings[step]})

    data = _read(source, read_options)
    done("read", data=data)
    _check_varies(data)

    params = dict(model_options or {})
    if params.get("observation", "auto") == "auto":
        params["observation"] = "poisson" if data.modality == "spikes" else "gaussian"
    model = FacRNN(**params)
    primary = launcher_rank() == 0  # under torchrun only rank 0 evaluates and writes
    if out.save and primary:
        dest, name = check_destination(model.get_params(), data, out)
        done("destination", path=dest, name=name)  # refused now, not after the fit

    train = interleaved_steps(data) if heldout else None
    model.fit(data, step_mask=train, callback=callback)
    done("fit", model=model)
    if not primary:
        return FitOutcome(None, None, "", {}, "", model, data, timings, primary=False)

    results = build_results(model, data, steps="heldout" if heldout else "all", name=out.name)
    done("evaluate", metrics=results.metrics)

    path = None
    if out.save:
        written = store_results(results, data, out)
        path = Path(written)
        results = read_results(path, name=written.fit_name)
        done("write", path=path, name=written.fit_name)

    report = None
    if figures is not None:
        from .report import make_report

        report = make_report(results, Path(figures), color_by=color_by)
        done("figures", report=report)
    return FitOutcome(
        results=results,
        path=path,
        fit_name=results.name,
        metrics=dict(results.metrics),
        steps=results.steps,
        model=model,
        data=data,
        timings=timings,
        report=report,
    )


def _read(source: str | os.PathLike | NeuralData, options: Mapping[str, Any] | None) -> NeuralData:
    if isinstance(source, NeuralData):
        if options:
            raise OptionError(
                f"read options {sorted(options)} were given with data already read; pass the "
                "file instead, or read it with these options first"
            )
        return source
    from .io.reader import read_nwb

    return read_nwb(source, **dict(options or {}))


def write_results(
    model: FacRNN,
    data: NeuralData,
    output: str | os.PathLike | None = None,
    *,
    metrics: dict[str, float] | None = None,
    **where: Any,
) -> WrittenFit:
    """Write a fitted model, its latents, connectivity and metrics into NWB.

    The model is scored on all its data (:func:`nwb_facrnn.evaluation.build_results`) and
    the results stored with :func:`nwb_facrnn.io.writer.store_results` (linked next to the
    source by default, atomically).

    Parameters
    ----------
    model : FacRNN
        Fitted on ``data``.
    data : NeuralData
        What it was fit on (from :func:`~nwb_facrnn.read_nwb`).
    output : path, optional
        The results file; default ``<stem>_facrnn.nwb`` next to the source.
    metrics : dict of str to float, optional
        More metrics to store with the fit's own.
    **where
        ``name``, ``source``, ``copy``, ``in_place``, ``overwrite``, ``module``: see
        :class:`~nwb_facrnn.io.destination.Destination`.

    Returns
    -------
    WrittenFit
        The file written (a :class:`pathlib.Path`), with ``fit_name`` and ``object_path``.
    """
    destination = Destination(output=output, **where)
    return store_results(build_results(model, data, extra_metrics=metrics), data, destination)
