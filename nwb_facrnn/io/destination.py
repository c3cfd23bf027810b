"""Where a fit's results go: the destination file, the container name, and every check
made before anything is written (and, by :func:`check_destination`, before a fit trains)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import NWBReadError, OptionError, OutputExistsError, OutputPermissionError
from ..neural_data import NeuralData
from .backend import backend_for_new, detect_backend, open_io
from .extension import ndx_facrnn
from .links import broken_links
from .nwb_objects import object_path
from .results import find_results, quiet_repeats, results_name

#: Processing module that holds the results of each modality (names nwbinspector accepts).
#: A plain TimeSeries (modality ``"series"``) is not here: see :func:`default_module`.
MODULES = {"spikes": "ecephys", "ophys": "ophys"}

#: Module of the results of a plain TimeSeries that is not in a processing module.
SERIES_MODULE = "misc"


def default_module(data: NeuralData) -> str:
    """The processing module a fit of ``data`` goes to by default.

    ``"ecephys"`` for units, ``"ophys"`` for ROIs; for a plain 2-D TimeSeries (modality
    ``"series"``), the processing module the series is in (``/processing/ecephys/rates``:
    ``"ecephys"``), else ``"misc"`` (a series in ``/acquisition``).
    """
    if data.modality in MODULES:
        return MODULES[data.modality]
    if data.modality == "series":
        parts = activity_path(data).strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "processing":
            return parts[1]
        return SERIES_MODULE
    raise OptionError(
        f"data of modality {data.modality!r} cannot be written: expected 'spikes', 'ophys' or "
        "'series'"
    )


def activity_path(data: NeuralData) -> str:
    """Path of the object whose rows or columns are the fitted units: the unit table, or
    the TimeSeries of a ``"series"`` fit (which has no unit table)."""
    if data.modality == "series":
        path = data.provenance.get("objects", {}).get("activity")
        if not path:
            raise OptionError(
                "this series data does not name the TimeSeries it was read from "
                "(provenance['objects']['activity']); read it with read_nwb(..., series=...)"
            )
        return str(path)
    return data.unit_table


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


@contextlib.contextmanager
def open_base(plan: Plan, base: Path | str):
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
        if plan.is_source(base):
            nwbfile = io.read()
        else:  # an existing results file: its source's warnings were shown reading the source
            with quiet_repeats() as opened:
                nwbfile = io.read()
                opened(nwbfile, str(base))
        yield io, nwbfile
    finally:
        io.close()


@dataclass
class Destination:
    """Where a fit's results are written (the keywords of :func:`nwb_facrnn.write_results`).

    Attributes
    ----------
    output : path or None
        The results file.  Default ``<stem>_facrnn.nwb`` next to the source (``.nwb.zarr``
        for a Zarr source; for a remote source, a standalone file in the working folder).  A
        new file holds the source's content plus the results, with the source's large
        datasets linked, not copied; an existing results file gets one more fit; a ``.zarr``
        suffix writes Zarr.
    name : str or None
        The results container's name; default ``facrnn_G{G}H{H}_beta{beta}_seed{seed}``
        (``_2``, ``_3`` ... appended when that name holds a fit with other settings).
    source : path or None
        The NWB file the data was read from; default ``data.provenance["source"]``.
    copy : bool
        Copy the source's datasets instead of linking them: a standalone file.
    in_place : bool
        Add the results to the source file itself (atomically).
    overwrite : bool
        Replace a fit of the same name; otherwise a fit with the same name and settings
        raises :class:`~nwb_facrnn.errors.OutputExistsError`.
    module : str or None
        Processing module; default ``"ecephys"`` for units, ``"ophys"`` for ROIs, and for
        the columns of a plain TimeSeries the module the series is in (else ``"misc"``).
    """

    output: str | os.PathLike | None = None
    name: str | None = None
    source: str | os.PathLike | None = None
    copy: bool = False
    in_place: bool = False
    overwrite: bool = False
    module: str | None = None


def check_destination(
    params: dict[str, Any], data: NeuralData, where: Destination | None = None
) -> tuple[Path, str]:
    """Make every check a write makes, without writing: before a long fit.

    Parameters
    ----------
    params : dict
        The fit's FacRNN parameters (``FacRNN(...).get_params()``; the model need not be
        fitted): they name the fit.
    data : NeuralData
    where : Destination, optional

    Returns
    -------
    (pathlib.Path, str)
        The file that would be written and the container name the fit would get; raises
        what :func:`~nwb_facrnn.io.writer.store_results` would raise about the destination.
    """
    plan = plan_destination(params, data, where or Destination())
    ndx_facrnn()
    base = plan.base()
    with open_base(plan, base) as (_, nwbfile):
        _, _, fit_name, _ = check_file(nwbfile, data, plan, base)
    return plan.dest, fit_name


@dataclass
class Plan:
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
            raise OutputPermissionError(
                f"cannot write in {parent}: it is read-only for this user (writing "
                f"{self.dest.name} needs a temporary file and a lock file beside it); choose "
                "another output"
            )
        if not self.dest.exists() and self.remote is not None:
            return self.src  # a remote source: read again (its blocks are in the cache)
        if self.dest.exists():
            mode = self.dest.stat().st_mode
            if not os.access(self.dest, os.W_OK) or not mode & stat.S_IWUSR:
                raise OutputPermissionError(
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


def plan_destination(params: dict[str, Any], data: NeuralData, where: Destination) -> Plan:
    """Where a fit of ``params`` on ``data`` goes, decided before any file is read."""
    if not isinstance(data, NeuralData):
        raise TypeError(f"data must be the NeuralData the model was fit on, got {type(data)}")
    name = where.name
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise OptionError(f"name must be a non-empty string without '/', got {name!r}")
    common = {
        "overwrite": where.overwrite,
        "module": where.module or default_module(data),
        "name": name,
        "default_name": results_name(params),
        "identity": _identity(params, data_fingerprint(data)),
    }
    remote = data.provenance.get("remote")
    source = where.source
    if remote is not None and (source is None or _is_remote(source)):
        if where.in_place:
            raise OptionError(
                f"{data.provenance['source']} is remote: it cannot be written in place; the "
                "results go to a standalone local file (output=, default <asset "
                "name>_facrnn.nwb here)"
            )
        asset = (remote.get("dandi") or {}).get("path") or remote["url"].split("?", 1)[0]
        stem = PurePosixPath(asset).name
        stem = stem[: -len(".nwb")] if stem.lower().endswith(".nwb") else stem
        output = where.output
        dest = Path(output) if output is not None else Path.cwd() / f"{stem}_facrnn.nwb"
        return Plan(
            src=str(source or remote.get("source") or data.provenance["source"]),
            dest=dest,
            backend=backend_for_new(dest),
            in_place=False,
            copy=True,
            remote={**(remote.get("dandi") or {}), "local_path": remote.get("local_path")},
            cache=remote.get("cache", True),
            **common,
        )
    src = _source_path(data, source)
    if where.in_place and (where.output is not None or where.copy):
        raise OptionError("in_place=True writes into the source; do not pass output or copy")
    dest = (
        src
        if where.in_place
        else Path(where.output)
        if where.output is not None
        else default_output(src)
    )
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))  # write where the link points, keep the link
    if not where.in_place and dest.exists() and dest.resolve() == src.resolve():
        raise OptionError(
            f"output {dest} is the source file; pass in_place=True (--in-place) to write into it"
        )
    return Plan(
        src=src,
        dest=dest,
        backend=backend_for_new(dest),
        in_place=where.in_place,
        copy=where.copy,
        **common,
    )


def _is_remote(source: Any) -> bool:
    from .dandi import is_remote

    return is_remote(source)


def _source_path(data: NeuralData, source: str | os.PathLike | None) -> Path:
    given = source if source is not None else data.provenance.get("source")
    if given is None or not Path(str(given)).exists():
        raise OptionError(
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
    for arr in (data.unit_ids, data.trial_ids, data.timestamps):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    flat = data.mask.reshape(-1, data.mask.shape[-1])
    step = 8 * max(1, (1 << 20) // max(flat.shape[1], 1))  # rows: whole bytes per block
    for i in range(0, len(flat), step):  # the bytes of np.packbits(mask), block by block
        h.update(np.packbits(flat[i : i + step]).tobytes())
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


def check_file(nwbfile, data: NeuralData, plan: Plan, base: Path):
    """Checks on the file to be rewritten; returns (table, module or None, name, replace)."""
    read = data.provenance.get("object_id")
    if plan.is_source(base):
        if read is not None and not _same_source(data.provenance, nwbfile):
            raise OptionError(
                f"{base} changed after the data was read from it (it was rewritten, or "
                f"source= names another file); read it again with read_nwb"
            )
    else:  # adding a fit to an existing output
        fits = find_results(nwbfile)
        if not fits:
            raise OutputExistsError(
                f"{base} exists and holds no FacRNN results, so it is not an output of "
                "write_results; choose another output (or add to that file with "
                "source=... and in_place=True)"
            )
        made = [p for p in (json.loads(r.model.provenance) for r in fits) if p.get("object_id")]
        if read is not None and made and not _made_from_this_read(made, data, plan):
            sources = sorted({str(p.get("source")) for p in made})
            same_file = [s for s in sources if _same_path(s, plan.src)]
            why = (
                f"another version of {plan.src} (rewritten since those results were written)"
                if same_file
                else f"another file ({', '.join(sources)}), not {plan.src}"
            )
            raise OptionError(
                f"{base} holds results made from {why}; write to a new output, or delete "
                "the old one"
            )
    table = _unit_table(nwbfile, data, base)
    pm = nwbfile.processing.get(plan.module)
    name, replace = _choose_name(pm, plan, base)
    return table, pm, name, replace


def _stored_root_id(nwbfile) -> str | None:
    """The ``object_id`` stored on the root of the file ``nwbfile`` was read from.

    None when the file stores none (files of the NWB 2.0b era): pynwb then makes up a new,
    random ``object_id`` at every read, which says nothing about the file.  A file whose
    builder is not known (not read from a file) counts as storing the one it has.
    """
    io = getattr(nwbfile, "read_io", None)
    manager = getattr(io, "manager", None)
    if manager is None:
        return str(nwbfile.object_id)
    try:
        builder = manager.get_builder(nwbfile)
    except Exception:  # no builder: take the container's own id
        builder = None
    if builder is None:
        return str(nwbfile.object_id)
    stored = builder.attributes.get("object_id")
    return None if stored is None else _text(stored)


def _root_id_of(path: Path | str) -> tuple[bool, str | None]:
    """``(known, object_id)`` stored on the root of a local NWB file (HDF5 or Zarr).

    ``known`` is False where the root cannot be read here (a remote source, a file that
    is gone); ``object_id`` is None where the root stores none.
    """
    if isinstance(path, str) or not Path(path).exists():
        return False, None
    try:
        if detect_backend(Path(path)) == "zarr":
            import zarr

            if (Path(path) / ".zmetadata").exists():  # what hdmf-zarr reads
                group = zarr.open_consolidated(str(path), mode="r")
            else:
                group = zarr.open_group(str(path), mode="r")
            stored = group.attrs.get("object_id")
        else:
            import h5py

            with h5py.File(path, "r") as f:
                stored = f.attrs.get("object_id")
    except Exception:  # unreadable here: fall back to the strict comparison
        return False, None
    return True, None if stored is None else _text(stored)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _session_key(provenance: dict[str, Any]) -> tuple[str | None, str | None]:
    """What a file without a stored ``object_id`` is recognised by: its identifier and
    session start (the ids of the fitted rows are checked on their own)."""
    return provenance.get("identifier"), provenance.get("session_start_time")


def _same_source(provenance: dict[str, Any], nwbfile) -> bool:
    """Whether ``nwbfile`` is the file the data with ``provenance`` was read from.

    A file that stores its ``object_id`` is the same file exactly when the id is the one
    read.  A file that stores none (NWB 2.0b era) gets a new random id at every read, so
    the id read says nothing: such a file is recognised by its identifier and session start
    time instead (a file rewritten by pynwb since stores an id, and is refused above).
    """
    stored = _stored_root_id(nwbfile)
    if stored is not None:
        return stored == provenance.get("object_id")
    return _session_key(provenance) == (
        str(nwbfile.identifier),
        str(nwbfile.session_start_time),
    )


def _made_from_this_read(made: list[dict[str, Any]], data: NeuralData, plan: Plan) -> bool:
    """Whether a fit stored with one of the provenances ``made`` was read from the file the
    data was read from, as it is now (see :func:`_same_source`)."""
    read = data.provenance.get("object_id")
    if read in {p.get("object_id") for p in made}:
        return True
    known, stored = _root_id_of(plan.src)
    if not known or stored is not None or _session_key(data.provenance) == (None, None):
        return False  # the source stores an id (or cannot be read): the id decides
    return any(
        _same_path(str(p.get("source")), plan.src)
        and _session_key(p) == _session_key(data.provenance)
        for p in made
    )


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _unit_table(nwbfile, data: NeuralData, path: Path):
    """The Units table or PlaneSegmentation the data was read from, checked for its ids; for
    a plain TimeSeries (modality ``"series"``), the series, checked for its columns."""
    where = activity_path(data)
    table = next((o for o in nwbfile.objects.values() if object_path(o) == where), None)
    if data.modality == "series":
        return _activity_series(table, data, path, where)
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


def _activity_series(series, data: NeuralData, path: Path, where: str):
    """The TimeSeries whose columns were fit, checked to have a column for every unit id."""
    from .nwb_objects import data_shape

    if series is None or getattr(series, "data", None) is None:
        raise NWBReadError(path, where, "the TimeSeries the data was read from is missing")
    shape = data_shape(series.data)
    ids = np.asarray(data.unit_ids)
    n = shape[1] if len(shape) == 2 else 0
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise NWBReadError(
            path,
            where,
            f"has {n} column(s), shape {tuple(shape)}; the fit used columns up to "
            f"{int(ids.max())} (was the data read from another file?)",
        )
    return series


def _choose_name(pm, plan: Plan, path: Path) -> tuple[str, bool]:
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
            raise OptionError(
                f"{path}: {where}/{plan.name} exists and is not a FacRNN result; choose another "
                "name"
            )
        if plan.name in existing and not plan.overwrite:
            raise OutputExistsError(
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
            raise OutputExistsError(
                f"{path} already holds this fit (same settings, same data) as {where}/{same[0]}; "
                "pass overwrite=True (--overwrite) to replace it, or name= (--name) to keep both"
            )
        return same[0], True
    candidate, k = plan.default_name, 1
    while candidate in taken:
        k += 1
        candidate = f"{plan.default_name}_{k}"
    return candidate, False
