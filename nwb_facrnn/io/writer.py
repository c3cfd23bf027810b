"""``write_results``: a fitted FacRNN and its latents, stored in NWB next to the data it fit."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import platform
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .. import __version__
from ..neural_data import NeuralData
from .atomic import atomic_destination, destination_lock, recover
from .backend import backend_for_new, detect_backend, open_io
from .errors import NWBReadError
from .export import export_nwbfile
from .extension import ndx_facrnn
from .extension_spec import WEIGHT_NAMES
from .links import broken_links
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
    """``<stem>_facrnn<suffixes>`` next to ``source``, in the source's backend.

    ``a.nwb`` -> ``a_facrnn.nwb``, ``a.nwb.zarr`` -> ``a_facrnn.nwb.zarr``; a Zarr store
    whose name does not end in ``.zarr`` gets it (``a.nwb`` -> ``a_facrnn.nwb.zarr``).
    """
    src = Path(source)
    name = src.name
    known = (".nwb", ".zarr", ".h5", ".hdf5")
    suffixes = "".join(s for s in src.suffixes if s.lower() in known)
    stem = name[: len(name) - len(suffixes)] if suffixes and name.endswith(suffixes) else name
    suffixes = suffixes or ".nwb"
    if src.exists() and detect_backend(src) == "zarr" and not suffixes.lower().endswith(".zarr"):
        suffixes += ".zarr"
    return src.with_name(f"{stem}_facrnn{suffixes}")


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
    state = model.to_state()  # raises if the model is not fitted
    plan = _plan(model, data, output, name, source, copy, in_place, overwrite, module)
    if state.meta["n_features_in_"] != data.n_units:
        raise ValueError(
            f"the model was fit on {state.meta['n_features_in_']} units but data has "
            f"{data.n_units}; pass the NeuralData the model was fit on"
        )
    contents = _results_contents(model, state, data, metrics or {}, plan.identity)
    ndx_facrnn()  # the extension's types must be known before a file is opened
    with destination_lock(plan.dest):
        recover(plan.dest)
        base = plan.base()
        out_backend = detect_backend(plan.dest) if plan.dest.exists() else plan.backend
        with (
            atomic_destination(plan.dest, overwrite=True, locked=True) as tmp,
            _open_base(plan, base) as (io, nwbfile),
        ):
            table, pm, fit_name, replace = _check(nwbfile, data, plan, base)
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
            )
    return plan.dest, fit_name


def results_from_model(model, data: NeuralData, *, name: str | None = None):
    """The :class:`~nwb_facrnn.io.results.FitResults` a write would store, without writing.

    For viewers that show a fit before (or instead of) saving it. ``path`` is the data's
    source and ``object_path`` is empty (nothing is in a file yet).

    Parameters
    ----------
    model : FacRNN
        Fitted on ``data``.
    data : NeuralData
        What the model was fit on.
    name : str, optional
        Default: the name :func:`write_results` would start from.
    """
    from .results import FitResults, connectivity_fields

    state = model.to_state()  # raises if the model is not fitted
    if state.meta["n_features_in_"] != data.n_units:
        raise ValueError(
            f"the model was fit on {state.meta['n_features_in_']} units but data has "
            f"{data.n_units}; pass the NeuralData the model was fit on"
        )
    identity = _identity(model.get_params(), data_fingerprint(data))
    contents = _results_contents(model, state, data, {}, identity)
    lat, meta = contents["latents"], contents["model"]
    return FitResults(
        name=name or results_name(model),
        path=str(data.provenance.get("source", "")),
        object_path="",
        latents=lat["data"],
        timestamps=lat["timestamps"],
        trial_ids=lat["trial_ids"],
        unit_ids=np.asarray(data.unit_ids),
        unit_table=data.unit_table,
        **connectivity_fields(contents["connectivity"]),
        n_groups=int(model.n_groups),
        group_rank=int(model.group_rank),
        bin_size=float(data.bin_size),
        params=json.loads(meta["parameters"]),
        metrics={k: v for k, (v, _doc) in contents["metrics"].items()},
        history={k: np.asarray(v) for k, v in contents["history"].items()},
        provenance=json.loads(meta["provenance"]),
    )


@contextlib.contextmanager
def _open_base(plan: _Plan, base: Path | str):
    """``(io, nwbfile)`` of the file the written file is made from (a local file or remote)."""
    local = (plan.remote or {}).get("local_path")
    if isinstance(base, str) and local and Path(local).is_file():
        base = Path(local)  # downloaded: read the verified local copy
    if isinstance(base, str):  # the remote source itself
        from .streaming import open_remote

        with open_remote(base, plan.remote.get("api_url"), plan.cache) as (nwbfile, _, info):
            yield info["io"], nwbfile
        return
    io = open_io(base)
    try:
        yield io, io.read()
    finally:
        io.close()


def check_destination(
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
) -> tuple[Path, str]:
    """Make every check :func:`write_results` makes, without writing; before a long fit.

    ``model`` need not be fitted: its hyperparameters name the fit.  Returns the file that
    would be written and the container name the fit would get; raises what
    :func:`write_results` would raise about the destination.
    """
    plan = _plan(model, data, output, name, source, copy, in_place, overwrite, module)
    ndx_facrnn()
    base = plan.base()
    with _open_base(plan, base) as (_, nwbfile):
        _, _, fit_name, _ = _check(nwbfile, data, plan, base)
    return plan.dest, fit_name


# ------------------------------------------------------------------ where things go
@dataclass
class _Plan:
    """Where a fit goes, decided from the arguments before any file is read."""

    src: Path | str  # str: a remote source (DANDI ID or URL)
    dest: Path
    backend: str
    in_place: bool
    copy: bool
    overwrite: bool
    module: str
    name: str | None  # given by the caller
    default_name: str
    identity: str  # settings and data of the fit
    remote: dict[str, Any] | None = None  # DANDI identity of a remote source
    cache: bool = True

    def is_source(self, base: Path | str) -> bool:
        """Whether ``base`` is the source file (a new output, or an in-place write)."""
        if isinstance(base, str) or isinstance(self.src, str):
            return base == self.src
        return base.resolve() == self.src.resolve()

    def base(self) -> Path | str:
        """The file whose content the written file holds."""
        parent = self.dest.parent
        if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(
                f"cannot write in {parent}: it is read-only for this user (writing "
                f"{self.dest.name} needs a temporary file and a lock file beside it); choose "
                "another output"
            )
        if not self.dest.exists() and self.remote is not None:
            return self.src  # a remote source: read again (its blocks are in the cache)
        if self.dest.exists():
            mode = self.dest.stat().st_mode
            if not os.access(self.dest, os.W_OK) or not mode & stat.S_IWUSR:
                raise PermissionError(
                    f"{self.dest} is read-only; make it writable or choose another output"
                )
            broken = broken_links(self.dest)
        else:
            broken = broken_links(self.src)
        if broken:
            where, target = broken[0]
            file = self.dest if self.dest.exists() else self.src
            raise NWBReadError(
                file,
                where,
                f"links to {target} ({len(broken)} broken link(s)); restore the target first: a "
                "file rewritten now would lose the link",
            )
        return self.dest if self.dest.exists() else self.src


def _plan(model, data, output, name, source, copy, in_place, overwrite, module) -> _Plan:
    if not isinstance(data, NeuralData):
        raise TypeError(f"data must be the NeuralData the model was fit on, got {type(data)}")
    remote = data.provenance.get("remote")
    if remote is not None and (source is None or _is_remote(source)):
        remote = {**remote, "source": source or remote.get("source")}
        return _remote_plan(model, data, output, name, in_place, overwrite, module, remote)
    src = _source_path(data, source)
    if in_place and (output is not None or copy):
        raise ValueError("in_place=True writes into the source; do not pass output or copy")
    _check_name(name)
    dest = src if in_place else Path(output) if output is not None else default_output(src)
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))  # write where the link points, keep the link
    if not in_place and dest.exists() and dest.resolve() == src.resolve():
        raise ValueError(
            f"output {dest} is the source file; pass in_place=True (--in-place) to write into it"
        )
    return _Plan(
        src=src,
        dest=dest,
        backend=backend_for_new(dest),
        in_place=in_place,
        copy=copy,
        overwrite=overwrite,
        module=module or MODULES[data.modality],
        name=name,
        default_name=results_name(model),
        identity=_identity(model.get_params(), data_fingerprint(data)),
    )


def _check_name(name: str | None) -> None:
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(f"name must be a non-empty string without '/', got {name!r}")


def _remote_plan(model, data, output, name, in_place, overwrite, module, remote) -> _Plan:
    """Results of a remote fit: a standalone local file (``<asset stem>_facrnn.nwb`` here)."""
    if in_place:
        raise ValueError(
            f"{data.provenance['source']} is remote: it cannot be written in place; the results "
            "go to a standalone local file (output=, default <asset name>_facrnn.nwb here)"
        )
    _check_name(name)
    asset = (remote.get("dandi") or {}).get("path") or remote["url"].split("?", 1)[0]
    stem = PurePosixPath(asset).name
    stem = stem[: -len(".nwb")] if stem.lower().endswith(".nwb") else stem
    dest = Path(output) if output is not None else Path.cwd() / f"{stem}_facrnn.nwb"
    return _Plan(
        src=str(remote.get("source") or data.provenance["source"]),
        dest=dest,
        backend=backend_for_new(dest),
        in_place=False,
        copy=True,
        overwrite=overwrite,
        module=module or MODULES[data.modality],
        name=name,
        default_name=results_name(model),
        identity=_identity(model.get_params(), data_fingerprint(data)),
        remote={**(remote.get("dandi") or {}), "local_path": remote.get("local_path")},
        cache=remote.get("cache", True),
    )


def prune_to_table(nwbfile, table) -> None:
    """Keep the session metadata, the intervals and ``table`` (with what it refers to); drop
    the acquired data, stimuli and every other processed object, in memory.

    What a standalone results file of a remote source holds besides the results: the subject
    and session metadata (``general``: devices, electrodes, imaging planes), the trials, and
    the Units table or PlaneSegmentation the results link to.
    """
    for group in ("acquisition", "stimulus", "stimulus_template", "analysis", "scratch"):
        holder = getattr(nwbfile, group, None)
        for key in list(holder or {}):
            holder.pop(key)
    for key in list(nwbfile.intervals or {}):  # epochs etc. may refer to dropped series
        if key != "trials":
            nwbfile.intervals.pop(key)
            nwbfile.fields.pop(key, None)  # epochs, invalid_times are also file fields
    keep = {id(table), id(table.parent)}
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


def _is_remote(source: Any) -> bool:
    from .dandi import is_remote

    return is_remote(source)


def _source_path(data: NeuralData, source: str | os.PathLike | None) -> Path:
    given = source if source is not None else data.provenance.get("source")
    if given is None or not Path(str(given)).exists():
        raise ValueError(
            f"write_results needs the NWB file the data was read from; data.provenance names "
            f"{data.provenance.get('source')!r}, which is not a file here: pass source=PATH"
        )
    return Path(given)


def data_fingerprint(data: NeuralData) -> str:
    """A digest of what was fit: units, bins, trials, read options, the mask and the inputs.

    The activity values themselves are not hashed (the read options and the source's
    ``object_id`` stand for them).
    """
    h = hashlib.sha256()
    options = json.dumps(data.provenance.get("options", {}), sort_keys=True, default=str)
    for part in (data.modality, data.unit_table, repr(float(data.bin_size)), options):
        h.update(part.encode() + b"\0")
    h.update(repr(data.activity.shape).encode())
    for arr in (data.unit_ids, data.trial_ids, data.timestamps, np.packbits(data.mask)):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    if data.inputs is not None:
        h.update(np.ascontiguousarray(data.inputs).tobytes())
    return h.hexdigest()[:16]


#: Constructor arguments that do not change the fit (where it ran, whether a bar was shown).
NOT_SETTINGS = ("device", "progress")


def _identity(params: dict[str, Any], fingerprint: str) -> str:
    settings = {k: v for k, v in params.items() if k not in NOT_SETTINGS}
    return json.dumps({"parameters": settings, "data": fingerprint}, sort_keys=True)


def _stored_identity(res) -> str | None:
    fingerprint = json.loads(res.model.provenance).get("data_fingerprint")
    if fingerprint is None:
        return None
    return _identity(json.loads(res.model.parameters), fingerprint)


def _check(nwbfile, data: NeuralData, plan: _Plan, base: Path):
    """Checks on the file to be rewritten; returns (table, module or None, name, replace)."""
    read = data.provenance.get("object_id")
    if plan.is_source(base):
        if read is not None and read != str(nwbfile.object_id):
            raise ValueError(
                f"{base} changed after the data was read from it (it was rewritten, or "
                f"source= names another file); read it again with read_nwb"
            )
    else:  # adding a fit to an existing output
        fits = find_results(nwbfile)
        if not fits:
            raise FileExistsError(
                f"{base} exists and holds no FacRNN results, so it is not an output of "
                "write_results; choose another output (or add to that file with "
                "source=... and in_place=True)"
            )
        made_from = {
            (p.get("object_id"), p.get("source"))
            for p in (json.loads(r.model.provenance) for r in fits)
            if p.get("object_id")
        }
        if read is not None and made_from and read not in {oid for oid, _ in made_from}:
            sources = sorted({str(s) for _, s in made_from})
            same_file = [s for s in sources if _same_path(s, plan.src)]
            why = (
                f"another version of {plan.src} (rewritten since those results were written)"
                if same_file
                else f"another file ({', '.join(sources)}), not {plan.src}"
            )
            raise ValueError(
                f"{base} holds results made from {why}; write to a new output, or delete "
                "the old one"
            )
    table = _unit_table(nwbfile, data, base)
    pm = nwbfile.processing.get(plan.module)
    name, replace = _choose_name(pm, plan, base)
    return table, pm, name, replace


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


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
    from pynwb import ProcessingModule

    pm = ProcessingModule(name=name, description=MODULE_DESCRIPTIONS.get(name, "Processed data"))
    nwbfile.add_processing_module(pm)
    return pm


def _choose_name(pm, plan: _Plan, path: Path) -> tuple[str, bool]:
    """The container name of the fit and whether it replaces an existing one.

    A name given by the caller is used as is (replacing a fit of that name needs
    ``overwrite``).  The default name gets ``_2``, ``_3`` ... when taken by another fit;
    a fit with the same settings and data under the default name or one of its suffixed
    forms is refused, or replaced with ``overwrite``.
    """
    taken = set(pm.data_interfaces) if pm is not None else set()
    existing = {r.name: r for r in find_results(pm)} if pm is not None else {}
    where = f"/processing/{plan.module}"
    if plan.name is not None:
        if plan.name in taken and plan.name not in existing:
            raise ValueError(
                f"{path}: {where}/{plan.name} exists and is not a FacRNN result; choose another "
                "name"
            )
        if plan.name in existing and not plan.overwrite:
            raise FileExistsError(
                f"{path} already holds a fit named {where}/{plan.name}; pass overwrite=True "
                "(--overwrite) to replace it, or another name"
            )
        return plan.name, plan.name in existing
    family = re.compile(rf"{re.escape(plan.default_name)}(_\d+)?")
    same = sorted(
        n
        for n, r in existing.items()
        if family.fullmatch(n) and _stored_identity(r) == plan.identity
    )
    if same:
        if not plan.overwrite:
            raise FileExistsError(
                f"{path} already holds this fit (same settings, same data) as {where}/{same[0]}; "
                "pass overwrite=True (--overwrite) to replace it, or name= (--name) to keep both"
            )
        return same[0], True
    candidate, k = plan.default_name, 1
    while candidate in taken:
        k += 1
        candidate = f"{plan.default_name}_{k}"
    return candidate, False


# ------------------------------------------------------------------ what is written
def _results_contents(
    model, state, data: NeuralData, extra: dict[str, float], identity: str
) -> dict[str, Any]:
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
            "provenance": json.dumps(
                {**_provenance(data), "data_fingerprint": json.loads(identity)["data"]},
                sort_keys=True,
                default=str,
            ),
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
