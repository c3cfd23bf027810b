"""``read_results``: FacRNN results stored in NWB, back as numpy arrays and pandas tables."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import canonical_metrics, metric_definition
from .errors import NWBReadError
from .extension import WEIGHT_NAMES


@dataclass
class FitResults:
    """One FacRNN fit read from an NWB file.

    ``T`` is the number of fitted bins (all trials, one after the other), ``N`` the number of
    units or ROIs, ``K = n_groups * group_rank``.

    Attributes
    ----------
    name : str
        The results container, e.g. ``"facrnn_G2H3_beta20_seed0"``.
    path : str
        The NWB file.
    object_path : str
        The container's path in the file, e.g. ``"/processing/ophys/facrnn_G2H3_beta20_seed0"``.
    latents : numpy.ndarray, float32, shape (T, K)
        Posterior-mean latents; dims ``group_slice(g)`` form group ``g``.
    timestamps : numpy.ndarray, float64, shape (T,)
        Bin centres in session seconds.
    trial_ids : numpy.ndarray or None, shape (T,)
        Trial id of every row (None for continuous data).
    unit_ids : numpy.ndarray, shape (N,)
        ``id`` of every modeled unit or ROI in ``unit_table``; for a fit of a plain
        TimeSeries' columns, the column indices.
    unit_table : str
        Path of the Units table or PlaneSegmentation the rows link to; ``""`` for a fit of
        a plain TimeSeries' columns (its path is ``provenance["objects"]["activity"]``).
    output_loadings : numpy.ndarray or None, shape (N, K)
        ``A`` (None for an MLP decoder).
    input_loadings : numpy.ndarray or None, shape (K, N)
        ``B`` (None for an MLP encoder).
    group_strength : numpy.ndarray or None, shape (N, G)
        Std of each group's contribution to every unit's drive.
    dominant_group : numpy.ndarray or None, int, shape (N,)
    n_groups, group_rank : int
    bin_size : float
        Seconds.
    params : dict
        Every FacRNN constructor argument of the fit.
    metrics : dict of str to float
    history : dict of str to numpy.ndarray
        Per-epoch loss terms.
    provenance : dict
        Source file or asset, read options, software versions.
    steps : {"all", "heldout"}
        The time steps ``metrics`` were computed on: every fitted step, or the held-out
        (odd) steps of a fit trained on the even ones.
    trials : dict of str to numpy.ndarray
        Scalar columns of the trials table for the fitted trials, each shape (n_trials,),
        with ``"id"`` (the trial ids, as in ``trial_ids``); empty for continuous data.
    state : ModelState or None
        The model's weights and fitted attributes, on results built from a fitted model
        (:func:`nwb_facrnn.evaluation.build_results`); None on results read from a file
        (:func:`read_model_state` reads them).
    """

    name: str
    path: str
    object_path: str
    latents: np.ndarray
    timestamps: np.ndarray
    trial_ids: np.ndarray | None
    unit_ids: np.ndarray
    unit_table: str
    output_loadings: np.ndarray | None
    input_loadings: np.ndarray | None
    group_strength: np.ndarray | None
    dominant_group: np.ndarray | None
    n_groups: int
    group_rank: int
    bin_size: float
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    steps: str = "all"
    trials: dict[str, np.ndarray] = field(default_factory=dict)
    state: Any = field(default=None, repr=False, compare=False)

    def group_slice(self, g: int) -> slice:
        """Latent dims of group ``g``."""
        if not 0 <= g < self.n_groups:
            raise ValueError(f"group index must be in [0, {self.n_groups}), got {g}")
        return slice(g * self.group_rank, (g + 1) * self.group_rank)

    @property
    def connectivity(self) -> np.ndarray:
        """``W = A B``, shape (N, N) (linear encoder and decoder)."""
        if self.output_loadings is None or self.input_loadings is None:
            raise AttributeError("connectivity needs a linear encoder and decoder")
        return self.output_loadings @ self.input_loadings

    def group_connectivity(self, g: int) -> np.ndarray:
        """Group ``g``'s part of ``W``, ``A[:, g] @ B[g, :]``, shape (N, N)."""
        s = self.group_slice(g)
        if self.output_loadings is None or self.input_loadings is None:
            raise AttributeError("group_connectivity needs a linear encoder and decoder")
        return self.output_loadings[:, s] @ self.input_loadings[s]

    def to_dataframe(self):
        """One row per unit/ROI (indexed by its id): dominant group and group strengths."""
        import pandas as pd

        cols: dict[str, Any] = {}
        if self.dominant_group is not None:
            cols["dominant_group"] = self.dominant_group
        if self.group_strength is not None:
            for g in range(self.n_groups):
                cols[f"strength_{g}"] = self.group_strength[:, g]
        df = pd.DataFrame(cols, index=pd.Index(self.unit_ids, name="unit_id"))
        return df

    def latents_dataframe(self):
        """The latents as a DataFrame: columns ``g{g}_{j}``, plus ``timestamp`` and ``trial_id``."""
        import pandas as pd

        names = [f"g{g}_{j}" for g in range(self.n_groups) for j in range(self.group_rank)]
        df = pd.DataFrame(self.latents, columns=names)
        df.insert(0, "timestamp", self.timestamps)
        if self.trial_ids is not None:
            df.insert(1, "trial_id", self.trial_ids)
        return df

    def __repr__(self) -> str:
        return (
            f"FitResults({self.name!r}: {self.n_groups} groups of rank {self.group_rank}, "
            f"{len(self.timestamps)} bins x {len(self.unit_ids)} units, file={self.path!r})"
        )


def connectivity_fields(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """The :class:`FitResults` fields held by the connectivity table's columns (``A``,
    ``B`` stored as (N, K), group strengths and dominant groups), as stored or written."""
    b = columns.get("input_loadings")
    return {
        "output_loadings": columns.get("output_loadings"),
        "input_loadings": None if b is None else np.ascontiguousarray(b.T),
        "group_strength": columns.get("group_strength"),
        "dominant_group": columns.get("dominant_group"),
    }


def find_results(container) -> list:
    """The ``FacRNNResults`` containers of a processing module or an NWBFile."""
    if hasattr(container, "processing"):  # an NWBFile
        return [r for pm in container.processing.values() for r in find_results(pm)]
    return [
        obj
        for obj in container.data_interfaces.values()
        if getattr(obj, "neurodata_type", None) == "FacRNNResults"
    ]


def _select(nwbfile, path: str, name: str | None):
    found = find_results(nwbfile)
    if not found:
        raise NWBReadError(path, "/processing", "no FacRNN results (FacRNNResults) in this file")
    if name is None:
        if len(found) > 1:
            names = ", ".join(sorted(r.name for r in found))
            raise NWBReadError(
                path, "/processing", f"holds several FacRNN fits; choose one with name=: {names}"
            )
        return found[0]
    for r in found:
        if r.name == name:
            return r
    names = ", ".join(sorted(r.name for r in found))
    raise NWBReadError(path, "/processing", f"has no FacRNN fit named {name!r}; fits: {names}")


@contextlib.contextmanager
def _open(path):
    """:func:`~nwb_facrnn.io.reader.open_nwbfile`, without the library warnings already shown
    for the files its fits were made from (see :func:`quiet_repeats`)."""
    from .reader import open_nwbfile

    with contextlib.ExitStack() as stack:
        with quiet_repeats() as opened:
            nwbfile, source, backend = stack.enter_context(open_nwbfile(path))
            opened(nwbfile, source)
        yield nwbfile, source, backend


@contextlib.contextmanager
def quiet_repeats():
    """Hold back the library warnings of reading a results file that repeat its source's.

    A results file holds (links or copies) the content of the file its fits were made from,
    so reading it raises the library warnings reading that file raised (an OpticalSeries
    with both data and external_file ...).  Within the block, warnings are recorded;
    call the yielded function with the file read and its name (the name the read's
    warnings carry, see :func:`~nwb_facrnn.io.backend.show_compact_warnings`).  On exit each
    recorded warning is shown again, but for one whose message this process has already
    shown for a source of the file's fits (a fit reads its source, writes, then reads the
    results).  A read that fails shows every recorded warning.
    """
    seen: dict[str, Any] = {}

    def opened(nwbfile, name: str) -> None:
        seen["nwbfile"], seen["name"] = nwbfile, str(name)

    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield opened
    finally:
        sources = _fit_sources(seen["nwbfile"]) if "nwbfile" in seen else set()
        prefix = f"{seen.get('name')}: "
        for w in caught:
            text = str(w.message)
            if (
                sources
                and text.startswith(prefix)
                and _shown_for(sources, w.category, text[len(prefix) :])
            ):
                continue
            # shown as it was (a compact one under backend's module, for the filters)
            module = "nwb_facrnn.io.backend" if w.filename == "nwb-facrnn" else None
            warnings.warn_explicit(
                w.message, w.category, w.filename, w.lineno, module=module, source=w.source
            )


def _fit_sources(nwbfile) -> set[str]:
    """The files the fits in ``nwbfile`` were read from, as their reads named them."""
    names: set[str] = set()
    try:
        for res in find_results(nwbfile):
            provenance = json.loads(res.model.provenance)
            remote = provenance.get("remote") or {}
            for key in (provenance.get("source"), remote.get("local_path")):
                if key:
                    names.add(str(key))
    except Exception:  # an unreadable fit: its warnings are shown, the read says the rest
        return names
    return names


def _shown_for(sources: set[str], category: type, text: str) -> bool:
    from .backend import already_shown

    return any(already_shown(name, category, text) for name in sources)


def read_results(path: str | os.PathLike, name: str | None = None) -> FitResults:
    """Read one FacRNN fit written by :func:`~nwb_facrnn.write_results`.

    Parameters
    ----------
    path : path
        NWB file (HDF5 or Zarr).
    name : str, optional
        The results container; needed when the file holds several fits.

    Returns
    -------
    FitResults
        With the trials table's scalar columns for the fitted trials (``trials``); a trials
        table that cannot be read is warned about (``UserWarning``) and left out.
    """
    from hdmf.common import DynamicTableRegion

    from .nwb_objects import object_path

    with _open(path) as (nwbfile, source, _backend):
        res = _select(nwbfile, source, name)
        model = res.model
        lat = res.latents
        trial_ids = None if lat.trial_ids is None else np.asarray(lat.trial_ids[:])
        conn = res.connectivity
        region = None
        columns: dict[str, np.ndarray] = {}
        if conn is not None:
            for col in conn.columns:
                if isinstance(col, DynamicTableRegion):
                    region = col
                else:
                    columns[col.name] = np.asarray(col.data[:])
        unit_ids = unit_table = None
        if region is not None:
            rows = np.asarray(region.data[:])
            unit_ids = np.asarray(region.table.id[:])[rows]
            unit_table = object_path(region.table)
        elif conn is not None:  # the columns of a TimeSeries: the row ids are the columns
            unit_ids = np.asarray(conn.id[:])
            unit_table = ""
        metrics, steps = fit_metrics(model.fit_metrics)
        out = FitResults(
            name=res.name,
            path=source,
            object_path=object_path(res),
            latents=np.asarray(lat.data[:]),
            timestamps=np.asarray(lat.get_timestamps()[:], dtype=np.float64),
            trial_ids=trial_ids,
            unit_ids=unit_ids,
            unit_table=unit_table,
            **connectivity_fields(columns),
            n_groups=int(model.n_groups),
            group_rank=int(model.group_rank),
            bin_size=float(model.bin_size),
            params=json.loads(model.parameters),
            metrics=metrics,
            history=_columns(model.training_history),
            provenance=json.loads(model.provenance),
            steps=steps,
            trials=_fitted_trials(nwbfile, source, trial_ids),
        )
    return out


def _fitted_trials(nwbfile, source: str, trial_ids: np.ndarray | None) -> dict[str, np.ndarray]:
    """The scalar columns of the file's trials table for the fitted trials: the rows whose ids
    occur in ``trial_ids``, in their order of first appearance there, with ``"id"``.  Empty
    for continuous data and without a trials table; a table that cannot be read is warned
    about and left out (the fit itself still reads)."""
    from .layout import TRIALS_PATH
    from .nwb_objects import table_columns

    if trial_ids is None:
        return {}
    try:
        trials = nwbfile.trials
        if trials is None:
            return {}
        table_ids = np.asarray(trials.id[:])
        columns = table_columns(trials)
    except Exception as exc:  # whatever the backend raises: the conditions are optional
        warnings.warn(
            f"{source}: {TRIALS_PATH}: cannot read the trials table ({type(exc).__name__}: "
            f"{exc}); the fit's trials carry no columns (FitResults.trials is empty)",
            stacklevel=3,
        )
        return {}
    row_of: dict[Any, int] = {}
    for row, tid in enumerate(table_ids.tolist()):
        row_of.setdefault(tid, row)
    first = np.sort(np.unique(trial_ids, return_index=True)[1])
    rows = np.array([row_of[t] for t in trial_ids[first].tolist() if t in row_of], dtype=np.int64)
    return {"id": table_ids[rows], **{name: v[rows] for name, v in columns.items()}}


def read_model_state(path: str | os.PathLike, name: str | None = None):
    """The :class:`~nwb_facrnn.model.estimator.ModelState` of a fit stored in NWB.

    Returns
    -------
    (ModelState, str)
        The state and the container it came from (``file:/processing/...``), for messages.
    """
    from ..model.estimator import ModelState
    from .nwb_objects import object_path

    with _open(path) as (nwbfile, source, _backend):
        res = _select(nwbfile, source, name)
        model = res.model
        weights = {}
        for key, dataset in WEIGHT_NAMES.items():
            value = getattr(model, dataset, None)
            if value is not None:
                weights[key] = np.asarray(value[:], dtype=np.float32)
        meta = {
            "format": model.format,
            "nwb_facrnn_version": model.nwb_facrnn_version,
            "params": json.loads(model.parameters),
            **json.loads(model.fitted_attributes),
        }
        state = ModelState(
            meta=meta,
            weights=weights,
            history=_columns(model.training_history),
            init_objectives=np.asarray(model.init_objectives[:]),
            observed_mean=np.asarray(model.observed_mean[:]),
        )
        origin = f"{source}:{object_path(model)}"
    return state, origin


def _columns(table) -> dict[str, np.ndarray]:
    return {c.name: np.asarray(c.data[:]) for c in table.columns}


def fit_metrics(table) -> tuple[dict[str, float], str]:
    """The metrics of a ``fit_metrics`` table under today's names, and the steps they were
    computed on (files written before the ``steps`` column name held-out metrics
    ``heldout_*``)."""
    if table is None:
        return {}, "all"
    cols = _columns(table)
    raw = {str(k): float(v) for k, v in zip(cols["metric"], cols["value"], strict=True)}
    if "steps" in cols and len(cols["steps"]):
        steps = str(cols["steps"][0])
    else:
        steps = "heldout" if any(k.startswith("heldout_") for k in raw) else "all"
    return canonical_metrics(raw), steps


def results_name(params: dict[str, Any]) -> str:
    """The default container name of a fit: ``facrnn_G{G}H{H}_beta{beta}_seed{seed}``.

    Parameters
    ----------
    params : dict
        The fit's FacRNN parameters (``FacRNN.get_params()``).
    """
    return (
        f"facrnn_G{params['n_groups']}H{params['group_rank']}_beta{params['beta']:g}"
        f"_seed{params['seed']}"
    )


def metric_rows(results: FitResults) -> list[tuple[str, float, str]]:
    """``(name, value, definition)`` of every metric of ``results``, each definition saying
    which steps were scored (the NWB ``fit_metrics`` table and printed tables)."""
    where = "all fitted time steps" if results.steps == "all" else "the held-out (odd) steps"
    rows = []
    for key, value in results.metrics.items():
        try:
            text = metric_definition(key)
        except KeyError:
            text = "Given by the caller."
        rows.append((key, float(value), f"{text} Computed on {where}."))
    return rows
