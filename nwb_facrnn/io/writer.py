"""``store_results``: a fit's results, stored in NWB next to the data it fit (what goes into
the ``FacRNNResults`` container; where it goes is :mod:`nwb_facrnn.io.destination`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_destination, destination_lock, recover
from ..errors import OptionError
from ..neural_data import NeuralData
from .backend import detect_backend
from .destination import Destination, check_file, open_base, plan_destination
from .export import export_nwbfile
from .extension import WEIGHT_NAMES, ndx_facrnn
from .results import FitResults, metric_rows

MODULE_DESCRIPTIONS = {
    "ecephys": "Processed extracellular electrophysiology data",
    "ophys": "Processed optical physiology data",
    "misc": "Miscellaneous processed data",
}


class WrittenFit(type(Path())):
    """The file a fit was written to (a :class:`pathlib.Path`), with the fit's place in it.

    Attributes
    ----------
    fit_name : str
        The results container's name (the default name may have been suffixed ``_2`` ...).
    object_path : str
        The container's path in the file, e.g. ``/processing/ophys/facrnn_G2H3_beta20_seed0``.
    """

    fit_name: str
    object_path: str

    @property
    def path(self) -> Path:
        """The file, as a plain :class:`pathlib.Path`."""
        return Path(self)

    @classmethod
    def at(cls, path: Path, fit_name: str, module: str) -> WrittenFit:
        out = cls(path)
        out.fit_name = fit_name
        out.object_path = f"/processing/{module}/{fit_name}"
        return out


def store_results(
    results: FitResults, data: NeuralData, where: Destination | None = None
) -> WrittenFit:
    """Store a fit's results (:func:`nwb_facrnn.evaluation.build_results`) in NWB.

    The results go into a ``FacRNNResults`` container (the ``ndx-facrnn`` extension, whose
    spec is cached in the file) in the processing module of the modality (``ecephys`` for
    units, ``ophys`` for ROIs), linked to the Units table or PlaneSegmentation rows that were
    fit.  The columns of a plain TimeSeries (modality ``"series"``) have no table: their fit
    goes to the module the series is in (``misc`` outside ``/processing``), and the
    connectivity table's row ids are the fitted column indices.  Nothing is computed here:
    the latents, connectivity, metrics and model state are stored as given.  Every write
    goes to a temporary file beside the destination, which then replaces it in one atomic
    step: a failed or killed write leaves every existing file as it was.  Most callers want
    :func:`nwb_facrnn.write_results` (from a fitted model).

    Parameters
    ----------
    results : FitResults
        Built from a fitted model (it carries the model's ``state``).
    data : NeuralData
        The data it was fit on (from :func:`~nwb_facrnn.read_nwb`): its unit ids, table path
        and provenance place the results.
    where : Destination, optional
        The file, container name and how to write (default: next to the source).

    Returns
    -------
    WrittenFit
        The file written (a path), with ``fit_name`` and ``object_path``.
    """
    state = results.state
    if state is None:
        raise OptionError(
            "these results carry no model state (results read from a file): store results "
            "built from a fitted model (nwb_facrnn.evaluation.build_results)"
        )
    if state.meta["n_features_in_"] != data.n_units or len(results.unit_ids) != data.n_units:
        raise OptionError(
            f"the model was fit on {state.meta['n_features_in_']} units but data has "
            f"{data.n_units}; pass the NeuralData the model was fit on"
        )
    plan = plan_destination(results.params, data, where or Destination())
    contents = _results_contents(results, plan.identity)
    ndx_facrnn()  # the extension's types must be known before a file is opened
    with destination_lock(plan.dest):
        recover(plan.dest)
        base = plan.base()
        out_backend = detect_backend(plan.dest) if plan.dest.exists() else plan.backend
        with (
            atomic_destination(plan.dest, overwrite=True, locked=True) as tmp,
            open_base(plan, base) as (io, nwbfile),
        ):
            table, pm, fit_name, replace = check_file(nwbfile, data, plan, base)
            if replace:
                pm.data_interfaces.pop(fit_name)
            new_file = plan.is_source(base) and not plan.in_place
            if new_file and plan.remote is not None:
                prune_to_table(nwbfile, table)  # a standalone file: not the remote's movie
                pm = nwbfile.processing.get(plan.module)
            pm = pm if pm is not None else _processing_module(nwbfile, plan.module)
            pm.add(_build_container(fit_name, table, data, contents))
            if new_file:
                nwbfile.generate_new_id()  # a new file, derived from the source
            export_nwbfile(
                io,
                nwbfile,
                tmp,
                out_backend,
                link_source=new_file and not plan.copy,
                keep_links=not plan.copy,
                name=plan.dest,
            )
    return WrittenFit.at(plan.dest, fit_name, plan.module)


def prune_to_table(nwbfile, table) -> None:
    """Keep the session metadata, the intervals and ``table`` (with what it refers to); drop
    the acquired data, stimuli and every other processed object, in memory.

    What a standalone results file of a remote source holds besides the results: the subject
    and session metadata (``general``: devices, electrodes, imaging planes), the trials, and
    the Units table or PlaneSegmentation the results link to (or the TimeSeries whose
    columns were fit).
    """
    for group in ("acquisition", "stimulus", "stimulus_template", "analysis", "scratch"):
        holder = getattr(nwbfile, group, None)
        for key in list(holder or {}):
            if holder[key] is not table:  # a TimeSeries whose columns were fit stays
                holder.pop(key)
    for key in list(nwbfile.intervals or {}):  # epochs etc. may refer to dropped series
        if key != "trials":
            nwbfile.intervals.pop(key)
            nwbfile.fields.pop(key, None)  # epochs, invalid_times are also file fields
    keep = {id(table), id(getattr(table, "parent", None))}
    for pm_name in list(nwbfile.processing):
        pm = nwbfile.processing[pm_name]
        for key in list(pm.data_interfaces):
            if id(pm.data_interfaces[key]) not in keep:
                pm.data_interfaces.pop(key)
        if not pm.data_interfaces:
            nwbfile.processing.pop(pm_name)
    parent = table.parent
    if hasattr(parent, "plane_segmentations"):  # other planes of the ImageSegmentation
        for key in list(parent.plane_segmentations):
            if parent.plane_segmentations[key] is not table:
                parent.plane_segmentations.pop(key)
    if "reference_images" in getattr(table, "fields", {}):
        table.fields.pop("reference_images")  # links into the acquired movie, not copied


def _processing_module(nwbfile, name: str):
    from pynwb import ProcessingModule

    pm = ProcessingModule(name=name, description=MODULE_DESCRIPTIONS.get(name, "Processed data"))
    nwbfile.add_processing_module(pm)
    return pm


def _results_contents(results: FitResults, identity: str) -> dict[str, Any]:
    """Everything the containers hold, as numpy arrays and JSON, taken from ``results``."""
    state = results.state
    params = results.params
    _warn_unsorted(results.timestamps)
    connectivity = {
        key: value
        for key, value in (
            ("output_loadings", results.output_loadings),
            (
                "input_loadings",
                None if results.input_loadings is None else results.input_loadings.T,
            ),
            ("group_strength", results.group_strength),
            ("dominant_group", results.dominant_group),
        )
        if value is not None
    }
    fitted = {key: v for key, v in state.meta.items() if key.endswith("_") and key[0] != "_"}
    weights = {WEIGHT_NAMES[key]: w.astype(np.float32) for key, w in state.weights.items()}
    data_digest = json.loads(identity)["data"]
    return {
        "latents": {
            "data": results.latents.astype(np.float32),
            "timestamps": results.timestamps.astype(np.float64),
            "trial_ids": results.trial_ids,
        },
        "connectivity": connectivity,
        "metrics": metric_rows(results),
        "steps": results.steps,
        "model": {
            "n_groups": np.int32(results.n_groups),
            "group_rank": np.int32(results.group_rank),
            "beta": float(params["beta"]),
            "alpha": float(params["alpha"]),
            "observation": str(params["observation"]),
            "encoder": str(params["encoder"]),
            "decoder": str(params["decoder"]),
            "output_activation": str(params["output_activation"] or "none"),
            "nonlinearity": str(params["nonlinearity"]),
            "bin_size": float(results.bin_size),
            "seed": np.int64(params["seed"]),
            "nwb_facrnn_version": state.meta["nwb_facrnn_version"],
            "format": state.meta["format"],
            "parameters": json.dumps(params, sort_keys=True),
            "fitted_attributes": json.dumps(fitted, sort_keys=True),
            "provenance": json.dumps(
                {**results.provenance, "data_fingerprint": data_digest},
                sort_keys=True,
                default=str,
            ),
            "observed_mean": state.observed_mean.astype(np.float32),
            "init_objectives": state.init_objectives.astype(np.float64),
            **weights,
        },
        "history": results.history,
    }


def _build_container(name: str, table, data: NeuralData, contents: dict[str, Any]):
    """The ``FacRNNResults`` container of one fit."""
    from hdmf.common import DynamicTable, DynamicTableRegion, VectorData

    from .nwb_objects import object_path

    ext = ndx_facrnn()
    m = contents["model"]
    g, h = int(m["n_groups"]), int(m["group_rank"])
    history = contents["history"]
    n_rows = len(next(iter(history.values()))) if history else 0
    per_row = json.loads(m["fitted_attributes"]).get("steps_per_row_") or 0
    rows = f"{per_row} optimisation steps" if per_row else "training epoch"
    training = DynamicTable(
        name="training_history",
        description=f"One row per {rows} (an epoch, or a hundredth of a fit that its step "
        "budget ended): the objective per sample and its terms, averaged over the row.",
        columns=[
            VectorData(name=key, description=f"'{key}' term of the objective", data=v)
            for key, v in history.items()
        ],
        id=np.arange(n_rows),
    )
    metrics = contents["metrics"]
    fit_metrics = DynamicTable(
        name="fit_metrics",
        description="Metrics of the fit, one per row.",
        columns=[
            VectorData(name="metric", description="Metric name", data=[m for m, _, _ in metrics]),
            VectorData(
                name="value",
                description="Metric value",
                data=np.array([v for _, v, _ in metrics], dtype=np.float64),
            ),
            VectorData(
                name="definition",
                description="What the metric measures",
                data=[d for _, _, d in metrics],
            ),
            VectorData(
                name="steps",
                description="The time steps the metric was computed on: 'all' fitted steps, "
                "or the 'heldout' (odd) steps of a fit trained on the even ones",
                data=[contents["steps"]] * len(metrics),
            ),
        ],
        id=np.arange(len(metrics)),
    )
    model = ext.FacRNNModel(name="model", training_history=training, fit_metrics=fit_metrics, **m)

    lat = contents["latents"]
    latents = ext.LatentTrajectories(
        name="latents",
        data=lat["data"],
        **_time_axis(lat["timestamps"]),
        unit="a.u.",
        description=(
            f"Posterior-mean FacRNN latents ({g} groups of rank {h}), one row per fitted bin "
            f"of {m['bin_size']:g} s, at bin centres."
        ),
        comments="Latent dims group_boundaries[g]:group_boundaries[g + 1] form group g.",
        n_groups=np.int32(g),
        group_rank=np.int32(h),
        group_boundaries=np.arange(0, g * h + 1, h, dtype=np.int32),
        **({} if lat["trial_ids"] is None else {"trial_ids": lat["trial_ids"]}),
    )

    if data.modality == "series":
        # the units are columns of a TimeSeries: no table to refer to; a row's id is the
        # column it stands for (the series' path is in the model's provenance, "objects")
        ids = np.asarray(data.unit_ids, dtype=np.int64)
        columns = []
        rows_of = f"fitted column of {object_path(table)} (row id = column index)"
    else:
        ids = np.arange(len(data.unit_ids))
        kind = "units" if data.modality == "spikes" else "rois"
        what = "Units table" if kind == "units" else "PlaneSegmentation"
        columns = [
            DynamicTableRegion(
                name=kind,
                data=_table_rows(table, data.unit_ids),
                description=f"Row of the {what} that was fit",
                table=table,
            )
        ]
        rows_of = f"fitted {kind[:-1]}"
    conn = contents["connectivity"]
    docs = {c["name"]: c["description"] for c in ext.LowRankConnectivity.__columns__}
    for key in ("output_loadings", "input_loadings", "group_strength", "dominant_group"):
        if key in conn:
            columns.append(VectorData(name=key, description=docs[key], data=conn[key]))
    connectivity = ext.LowRankConnectivity(
        name="connectivity",
        description=f"FacRNN low-rank connectivity W = A B, one row per {rows_of}.",
        columns=columns,
        id=ids,
        n_groups=np.int32(g),
        group_rank=np.int32(h),
    )
    return ext.FacRNNResults(name=name, model=model, latents=latents, connectivity=connectivity)


def _time_axis(ts: np.ndarray) -> dict[str, Any]:
    """``starting_time`` and ``rate`` for regular bins (as nwbinspector asks), else timestamps."""
    if ts.size > 2:
        step = np.unique(np.diff(ts).round(9))
        if step.size == 1 and step[0] > 0:
            return {"starting_time": float(ts[0]), "rate": float(1.0 / step[0])}
    return {"timestamps": ts}


def _table_rows(table, unit_ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(table.id[:])
    order = np.argsort(ids, kind="stable")
    pos = order[np.searchsorted(ids, unit_ids, sorter=order)]
    if not np.array_equal(ids[pos], unit_ids):
        raise ValueError("unit ids not found in their table")  # checked before; a bug if hit
    return pos.astype(np.int64)


def _warn_unsorted(ts: np.ndarray) -> None:
    if ts.size > 1 and np.any(np.diff(ts) < 0):
        warnings.warn(
            "the fitted bins overlap in time (trial windows overlap), so the latents' "
            "timestamps do not increase; nwbinspector will report it",
            stacklevel=3,
        )
