"""``write_results``: a fitted FacRNN and its latents, stored in NWB next to the data it fit."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..neural_data import NeuralData
from .backend import atomic_destination, backend_for_new, detect_backend, open_io
from .errors import NWBReadError
from .export import export_nwbfile
from .extension import ndx_facrnn
from .extension_spec import WEIGHT_NAMES
from .nwb_objects import object_path
from .results import find_results

#: Processing module that holds the results of each modality (names nwbinspector accepts).
MODULES = {"spikes": "ecephys", "ophys": "ophys"}
MODULE_DESCRIPTIONS = {
    "ecephys": "Processed extracellular electrophysiology data",
    "ophys": "Processed optical physiology data",
    "misc": "Miscellaneous processed data",
}


def default_output(source: str | os.PathLike) -> Path:
    """``<stem>_facrnn<suffixes>`` next to ``source`` (``a.nwb`` -> ``a_facrnn.nwb``,
    ``a.nwb.zarr`` -> ``a_facrnn.nwb.zarr``)."""
    src = Path(source)
    name = src.name
    suffixes = "".join(s for s in src.suffixes if s.lower() in (".nwb", ".zarr", ".h5", ".hdf5"))
    stem = name[: len(name) - len(suffixes)] if suffixes and name.endswith(suffixes) else name
    return src.with_name(f"{stem}_facrnn{suffixes or '.nwb'}")


def results_name(model) -> str:
    """The default container name of a fit: ``facrnn_G{G}H{H}_beta{beta}_seed{seed}``."""
    return f"facrnn_G{model.n_groups}H{model.group_rank}_beta{model.beta:g}_seed{model.seed}"


def write_results(
    model,
    data: NeuralData,
    output: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    source: str | os.PathLike | None = None,
    copy: bool = False,
    in_place: bool = False,
    overwrite: bool = False,
    module: str | None = None,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write a fitted model, its latents and its low-rank connectivity into NWB.

    The results go into a ``FacRNNResults`` container (the ``ndx-facrnn`` extension, whose
    spec is cached in the file) in the processing module of the modality (``ecephys`` for
    units, ``ophys`` for ROIs), linked to the Units table or PlaneSegmentation rows that were
    fit.  Every write goes to a temporary file beside the destination, which then replaces it
    in one atomic step: a failed or killed write leaves every existing file as it was.

    Parameters
    ----------
    model : FacRNN
        A fitted model.
    data : NeuralData
        The data it was fit on (from :func:`~nwb_facrnn.read_nwb`): its unit ids, table path,
        bins and provenance place the results.
    output : path, optional
        Where to write.  Default ``<stem>_facrnn.nwb`` next to the source (``.nwb.zarr`` for a
        Zarr source).  A new file holds the source's content plus the results, with the
        source's large datasets linked, not copied (HDF5 external links / Zarr links; keep
        the two files together).  An existing results file gets one more fit.  A ``.zarr``
        suffix writes Zarr.
    name : str, optional
        Name of the results container; default ``facrnn_G{G}H{H}_beta{beta}_seed{seed}``
        (``_2``, ``_3`` ... appended when that name holds a fit with other settings).
    source : path, optional
        The NWB file the data was read from; default ``data.provenance["source"]``.
    copy : bool, default False
        Copy the source's datasets instead of linking them: a standalone file.
    in_place : bool, default False
        Add the results to the source file itself (atomically).
    overwrite : bool, default False
        Replace a fit of the same name; otherwise a fit with the same name and settings
        raises ``FileExistsError``.
    module : str, optional
        Processing module; default ``"ecephys"`` for units, ``"ophys"`` for ROIs.
    metrics : dict of str to float, optional
        Extra metrics (e.g. held-out log-likelihood) to store with the fit's own.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    return write_fit(
        model,
        data,
        output,
        name=name,
        source=source,
        copy=copy,
        in_place=in_place,
        overwrite=overwrite,
        module=module,
        metrics=metrics,
    )[0]


def write_fit(
    model,
    data: NeuralData,
    output: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    source: str | os.PathLike | None = None,
    copy: bool = False,
    in_place: bool = False,
    overwrite: bool = False,
    module: str | None = None,
    metrics: dict[str, float] | None = None,
) -> tuple[Path, str]:
    """:func:`write_results`, returning ``(path, container name)`` (the name may be suffixed)."""
    if not isinstance(data, NeuralData):
        raise TypeError(f"data must be the NeuralData the model was fit on, got {type(data)}")
    state = model.to_state()  # raises if the model is not fitted
    if state.meta["n_features_in_"] != data.n_units:
        raise ValueError(
            f"the model was fit on {state.meta['n_features_in_']} units but data has "
            f"{data.n_units}; pass the NeuralData the model was fit on"
        )
    src = _source_path(data, source)
    if in_place and (output is not None or copy):
        raise ValueError("in_place=True writes into the source; do not pass output or copy")
    dest = src if in_place else Path(output) if output is not None else default_output(src)
    if not in_place and dest.exists() and dest.resolve() == src.resolve():
        raise ValueError(f"output {dest} is the source file; pass in_place=True to write into it")
    if name is not None and (not name or "/" in name):
        raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
    module = module or MODULES[data.modality]
    base = dest if dest.exists() else src  # the file whose content the new file holds
    contents = _results_contents(model, state, data, metrics or {})
    out_backend = detect_backend(dest) if dest.exists() else backend_for_new(dest)

    ndx_facrnn()  # the extension's types must be known before a file is opened
    with atomic_destination(dest, overwrite=True) as tmp:
        io = open_io(base)
        try:
            nwbfile = io.read()
            _check_same_source(nwbfile, data, base, in_place)
            table = _unit_table(nwbfile, data, base)
            pm = _processing_module(nwbfile, module)
            fit_name = _choose_name(pm, name or results_name(model), contents, overwrite, base)
            pm.add(_build_container(fit_name, table, data, contents))
            if base == src and not in_place:
                nwbfile.generate_new_id()  # a new file, derived from the source
            link = base == src and not in_place and not copy
            export_nwbfile(io, nwbfile, tmp, out_backend, link_source=link)
        finally:
            io.close()
    return dest, fit_name


# ------------------------------------------------------------------ where things go
def _source_path(data: NeuralData, source: str | os.PathLike | None) -> Path:
    given = source if source is not None else data.provenance.get("source")
    if given is None or not Path(str(given)).exists():
        raise ValueError(
            f"write_results needs the NWB file the data was read from; data.provenance names "
            f"{data.provenance.get('source')!r}, which is not a file here: pass source=PATH"
        )
    return Path(given)


def _check_same_source(nwbfile, data: NeuralData, path: Path, in_place: bool) -> None:
    """Refuse to add a fit to a file that holds another version of the data's source.

    Every file read records the ``object_id`` of its root (new each time a file is written);
    a results file keeps, in each fit's provenance, the one of the source it was made from.
    """
    read = data.provenance.get("object_id")
    if read is None:
        return
    if in_place:
        known = {str(nwbfile.object_id)}
    else:
        known = {json.loads(r.model.provenance).get("object_id") for r in find_results(nwbfile)}
        known.discard(None)
    if known and read not in known:
        raise ValueError(
            f"{path} was made from another version of {data.provenance.get('source')} (the file "
            "was rewritten after it was read, or the results came from another file); write "
            "to a new output, or delete the old one"
        )


def _unit_table(nwbfile, data: NeuralData, path: Path):
    """The Units table or PlaneSegmentation the data was read from, checked for its ids."""
    table = next((o for o in nwbfile.objects.values() if object_path(o) == data.unit_table), None)
    if table is None:
        raise NWBReadError(path, data.unit_table, "the table the data was read from is missing")
    ids = np.asarray(table.id[:])
    missing = np.setdiff1d(data.unit_ids, ids)
    if missing.size:
        raise NWBReadError(
            path,
            data.unit_table,
            f"has no row with id {missing[:10].tolist()}; the results cannot link to the units "
            "that were fit (was the data read from another file?)",
        )
    return table


def _processing_module(nwbfile, name: str):
    if name in nwbfile.processing:
        return nwbfile.processing[name]
    from pynwb import ProcessingModule

    pm = ProcessingModule(name=name, description=MODULE_DESCRIPTIONS.get(name, "Processed data"))
    nwbfile.add_processing_module(pm)
    return pm


def _choose_name(pm, name: str, contents: dict[str, Any], overwrite: bool, path: Path) -> str:
    """``name``, or ``name_2``, ``name_3`` ... when ``name`` holds a fit with other settings."""
    existing = {r.name: r for r in find_results(pm)}
    if name in pm.data_interfaces and name not in existing:
        raise ValueError(
            f"{path}: /processing/{pm.name}/{name} exists and is not a FacRNN result; pass name="
        )
    candidate, k = name, 1
    while candidate in existing:
        same = existing[candidate].model.parameters == contents["model"]["parameters"]
        if overwrite and (same or candidate == name):
            pm.data_interfaces.pop(candidate)
            return candidate
        if same:
            raise FileExistsError(
                f"{path} already holds this fit (same settings) as /processing/{pm.name}/"
                f"{candidate}; pass overwrite=True to replace it or name= to keep both"
            )
        k += 1
        candidate = f"{name}_{k}"
    return candidate


# ------------------------------------------------------------------ what is written
def _results_contents(model, state, data: NeuralData, extra: dict[str, float]) -> dict[str, Any]:
    """Everything the containers hold, as numpy arrays and JSON, computed before any I/O."""
    g, h = model.n_groups, model.group_rank
    z = model.transform(data)  # (T, K) or (n_trials, T, K); NaN where no unit was observed
    k = z.shape[-1]
    z2 = z.reshape(-1, k)
    keep = np.isfinite(z2).all(axis=1)
    centres = (data.timestamps + data.bin_size / 2).reshape(-1)
    latents = {
        "data": z2[keep].astype(np.float32),
        "timestamps": centres[keep].astype(np.float64),
        "trial_ids": None
        if data.is_continuous
        else np.repeat(np.asarray(data.trial_ids, np.int64), data.n_bins)[keep],
    }
    _warn_unsorted(latents["timestamps"])
    params = state.meta["params"]
    weights = {WEIGHT_NAMES[key]: w.astype(np.float32) for key, w in state.weights.items()}
    connectivity: dict[str, np.ndarray] = {}
    if model.decoder == "linear":
        a = state.weights["A"]
        connectivity["output_loadings"] = a.astype(np.float32)
        zl = latents["data"].astype(np.float64)
        strength = np.stack(
            [(zl[:, s] @ a[:, s].T.astype(np.float64)).std(axis=0) for s in _slices(g, h)],
            axis=1,
        )
        connectivity["group_strength"] = strength.astype(np.float32)
        connectivity["dominant_group"] = strength.argmax(axis=1).astype(np.int32)
    if model.encoder == "linear":
        connectivity["input_loadings"] = state.weights["B"].T.astype(np.float32)
    fitted = {key: v for key, v in state.meta.items() if key.endswith("_") and key[0] != "_"}
    return {
        "latents": latents,
        "connectivity": connectivity,
        "metrics": {**_fit_metrics(model, data, latents["data"]), **_check_metrics(extra)},
        "model": {
            "n_groups": np.int32(g),
            "group_rank": np.int32(h),
            "beta": float(model.beta),
            "alpha": float(model.alpha),
            "observation": str(model.observation),
            "encoder": str(model.encoder),
            "decoder": str(model.decoder),
            "output_activation": str(model.output_activation or "none"),
            "nonlinearity": str(model.nonlinearity),
            "bin_size": float(data.bin_size),
            "seed": np.int64(model.seed),
            "nwb_facrnn_version": state.meta["nwb_facrnn_version"],
            "format": state.meta["format"],
            "parameters": json.dumps(params, sort_keys=True),
            "fitted_attributes": json.dumps(fitted, sort_keys=True),
            "provenance": json.dumps(_provenance(data), sort_keys=True, default=str),
            "observed_mean": state.observed_mean.astype(np.float32),
            "init_objectives": state.init_objectives.astype(np.float64),
            **weights,
        },
        "history": state.history,
    }


def _slices(g: int, h: int) -> list[slice]:
    return [slice(i * h, (i + 1) * h) for i in range(g)]


METRIC_DOCS = {
    "log_likelihood": "Mean one-step predictive log-likelihood log p(x_t | x_{t-1}) on the "
    "fitted data (FacRNN.score), nats per time step.",
    "partial_correlation": "Gaussian partial correlation between the latent groups "
    "(KL divergence from the product of the group marginals), nats; 0 means independent.",
    "reconstruction_r2": "Variance-weighted R^2 of the one-step prediction of the observed "
    "activity (FacRNN.predict), pooled over units.",
}


def _fit_metrics(model, data: NeuralData, z: np.ndarray) -> dict[str, tuple[float, str]]:
    from ..metrics import gaussian_partial_correlation, reconstruction_r2

    out = {"log_likelihood": float(model.score(data))}
    if model.n_groups > 1 and len(z) > z.shape[1]:
        try:
            out["partial_correlation"] = gaussian_partial_correlation(
                np.cov(z.astype(np.float64).T), model.n_groups
            )
        except ValueError:  # a latent without variance
            pass
    pred = model.predict(data)
    mask = data.mask & np.isfinite(pred)
    out["reconstruction_r2"] = reconstruction_r2(data.activity, np.where(mask, pred, 0), mask)
    return {k: (v, METRIC_DOCS[k]) for k, v in out.items()}


def _check_metrics(extra: dict[str, float]) -> dict[str, tuple[float, str]]:
    out = {}
    for key, value in extra.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.\-]*", key):
            raise ValueError(f"metric names must be identifiers, got {key!r}")
        try:
            out[key] = (float(value), "Given by the caller of write_results.")
        except (TypeError, ValueError):
            raise ValueError(f"metric {key!r} must be a number, got {value!r}") from None
    return out


def _provenance(data: NeuralData) -> dict[str, Any]:
    import h5py
    import hdmf
    import pynwb
    import torch

    return {
        **data.provenance,
        "unit_table": data.unit_table,
        "modality": data.modality,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "software": {
            "nwb_facrnn": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pynwb": pynwb.__version__,
            "hdmf": hdmf.__version__,
            "h5py": h5py.__version__,
        },
    }


def _build_container(name: str, table, data: NeuralData, contents: dict[str, Any]):
    """The ``FacRNNResults`` container of one fit."""
    from hdmf.common import DynamicTable, DynamicTableRegion, VectorData

    ext = ndx_facrnn()
    m = contents["model"]
    g, h = int(m["n_groups"]), int(m["group_rank"])
    history = contents["history"]
    n_epochs = len(next(iter(history.values()))) if history else 0
    training = DynamicTable(
        name="training_history",
        description="One row per training epoch: the objective per sample and its terms.",
        columns=[
            VectorData(name=key, description=f"'{key}' term of the objective", data=v)
            for key, v in history.items()
        ],
        id=np.arange(n_epochs),
    )
    metrics = contents["metrics"]
    fit_metrics = DynamicTable(
        name="fit_metrics",
        description="Metrics of the fit, one per row.",
        columns=[
            VectorData(name="metric", description="Metric name", data=list(metrics)),
            VectorData(
                name="value",
                description="Metric value",
                data=np.array([v for v, _ in metrics.values()], dtype=np.float64),
            ),
            VectorData(
                name="definition",
                description="What the metric measures",
                data=[d for _, d in metrics.values()],
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

    rows = _table_rows(table, data.unit_ids)
    kind = "units" if data.modality == "spikes" else "rois"
    what = "Units table" if kind == "units" else "PlaneSegmentation"
    columns = [
        DynamicTableRegion(
            name=kind, data=rows, description=f"Row of the {what} that was fit", table=table
        )
    ]
    conn = contents["connectivity"]
    docs = {c["name"]: c["description"] for c in ext.LowRankConnectivity.__columns__}
    for key in ("output_loadings", "input_loadings", "group_strength", "dominant_group"):
        if key in conn:
            columns.append(VectorData(name=key, description=docs[key], data=conn[key]))
    connectivity = ext.LowRankConnectivity(
        name="connectivity",
        description=f"FacRNN low-rank connectivity W = A B, one row per fitted {kind[:-1]}.",
        columns=columns,
        id=np.arange(len(rows)),
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
