"""Which storage backend a path holds, opening NWB files read-only and writing them atomically.

NWB files come as HDF5 (one ``.nwb`` file) or as Zarr (a directory store, usually named
``*.nwb.zarr`` or ``*.zarr``).  The backend is decided from the content, not the name: an HDF5
file starts with the HDF5 signature and a Zarr store is a directory with ``.zgroup`` (Zarr v2)
or ``zarr.json`` (Zarr v3) at its root.  When a path does not exist yet (writing), its suffix
decides: ``.zarr`` means Zarr, anything else HDF5.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Literal

from ..atomic import atomic_destination
from .errors import NWBReadError

Backend = Literal["hdf5", "zarr"]


def detect_backend(path: str | os.PathLike) -> Backend:
    """The storage backend of an existing NWB file.

    Raises
    ------
    NWBReadError
        The path does not exist, or is neither an HDF5 file nor a Zarr store.
    """
    p = Path(path)
    if not p.exists():
        raise NWBReadError(p, "/", "no such file or directory")
    if p.is_dir():
        if (p / ".zgroup").is_file() or (p / "zarr.json").is_file():
            return "zarr"
        raise NWBReadError(
            p, "/", "a directory that is not a Zarr store (no .zgroup or zarr.json at its root)"
        )
    import h5py

    if h5py.is_hdf5(p):
        return "hdf5"
    with open(p, "rb") as f:
        head = f.read(16)
    what = "an empty file" if not head else f"a file starting with {head[:8]!r}"
    raise NWBReadError(p, "/", f"not an NWB file: expected HDF5 or a Zarr store, found {what}")


def backend_for_new(path: str | os.PathLike) -> Backend:
    """The backend a new file at ``path`` is written with: Zarr for ``.zarr``, else HDF5."""
    return "zarr" if Path(path).suffix.lower() == ".zarr" else "hdf5"


def zarr_pickled_arrays(path: str | os.PathLike, limit: int = 5) -> list[str]:
    """Arrays of a Zarr v2 store whose object codec is ``pickle`` (reading them would unpickle).

    Only metadata (``.zarray`` JSON) is read.  Returns at most ``limit`` array paths.
    """
    root = Path(path)
    found: list[str] = []
    for meta in root.rglob(".zarray"):
        try:
            spec = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        codecs = [*(spec.get("filters") or []), spec.get("compressor") or {}]
        if any(isinstance(c, dict) and c.get("id") == "pickle" for c in codecs):
            found.append("/" + meta.parent.relative_to(root).as_posix())
            if len(found) >= limit:
                break
    return found


class PickleCodedError(NWBReadError):
    """A Zarr array stored with the pickle codec was read: it is never decoded (unpickling
    runs code from the file).  Raised only when such an array is actually read; the
    pickle-coded table columns a fit does not need are left out beforehand, with a warning
    (:func:`skip_pickled_columns`)."""

    def __init__(self, source: str | os.PathLike | None, object_path: str, reason: str = ""):
        super().__init__(
            source,
            object_path,
            reason
            or "stored with the pickle codec, which nwb-facrnn never decodes (unpickling runs "
            "code from the file), and it is needed here; re-export the file with a JSON object "
            "codec",
        )


#: The codec id a pickle-coded array's metadata is rewritten to when read (never the file).
REFUSED_PICKLE_ID = "nwb_facrnn_refused_pickle"


def _refused_pickle_codec():
    """The numcodecs codec standing in for ``pickle``: decoding raises PickleCodedError."""
    import numcodecs
    from numcodecs.abc import Codec

    class RefusedPickle(Codec):
        codec_id = REFUSED_PICKLE_ID

        def __init__(self, store: str = "", array: str = "", **_: object) -> None:
            self.store = store
            self.array = array

        def get_config(self) -> dict:
            return {"id": self.codec_id, "store": self.store, "array": self.array}

        def encode(self, buf):
            raise PickleCodedError(self.store, self.array)

        def decode(self, buf, out=None):
            raise PickleCodedError(self.store, self.array)

    try:
        return numcodecs.get_codec({"id": REFUSED_PICKLE_ID}).__class__
    except ValueError:  # not registered yet
        numcodecs.register_codec(RefusedPickle)
        return RefusedPickle


def _no_pickle_meta(meta: dict, store: str, array: str) -> dict:
    """``.zarray`` metadata with every pickle codec replaced by the refusing one."""

    def swap(codec):
        if isinstance(codec, dict) and codec.get("id") == "pickle":
            return {"id": REFUSED_PICKLE_ID, "store": store, "array": array}
        return codec

    out = dict(meta)
    if out.get("filters"):
        out["filters"] = [swap(c) for c in out["filters"]]
    if out.get("compressor"):
        out["compressor"] = swap(out["compressor"])
    return out


def no_pickle_store(path: str | os.PathLike):
    """A read-only Zarr v2 directory store in which pickle-coded arrays cannot be decoded.

    The array metadata (``.zarray`` and the consolidated ``.zmetadata``) is rewritten as it
    is read, in memory: every ``pickle`` codec becomes one whose decoding raises
    :class:`PickleCodedError` naming the store and the array.  Opening the file, and reading
    every other array, works as before; the files on disk are never changed.
    """
    import json

    from zarr.storage import DirectoryStore

    _refused_pickle_codec()
    name = str(path)

    class NoPickleStore(DirectoryStore):
        def __getitem__(self, key: str) -> bytes:
            value = super().__getitem__(key)
            leaf = key.rsplit("/", 1)[-1]
            if leaf not in (".zarray", ".zmetadata") or b'"pickle"' not in value:
                return value
            meta = json.loads(value)
            if leaf == ".zarray":
                meta = _no_pickle_meta(meta, name, "/" + key.rsplit("/", 1)[0])
            else:
                entries = meta.get("metadata", {})
                for k, v in entries.items():
                    if k.endswith(".zarray") and isinstance(v, dict):
                        array = "/" + k.rsplit("/", 1)[0] if "/" in k else "/"
                        entries[k] = _no_pickle_meta(v, name, array)
            return json.dumps(meta).encode()

        def __setitem__(self, key, value):  # opened for reading: never write
            raise PermissionError(f"{name} is opened read-only")

        def __delitem__(self, key):
            raise PermissionError(f"{name} is opened read-only")

    return NoPickleStore(name)


#: Table columns the fit reads: a pickle-coded one is kept, and reading it is an error.
NEEDED_COLUMNS = frozenset({"spike_times", "obs_intervals", "start_time", "stop_time"})


def skip_pickled_columns(root, pickled: list[str]) -> list[str]:
    """Leave the pickle-coded columns of tables out of a file's builders, in memory.

    A pickle-coded column of a DynamicTable (with its ``_index``) is removed from the table's
    builder (and from its ``colnames``) before pynwb builds the containers, with one warning
    line per column: the fit reads the file without it, and a results file made from the
    file leaves it out.  A column in :data:`NEEDED_COLUMNS`, and any other pickle-coded array,
    stays: reading it raises :class:`PickleCodedError` naming it.  Returns the columns left
    out.
    """
    import numpy as np

    skipped = []
    for path in pickled:
        parts = path.strip("/").split("/")
        parent = root
        for part in parts[:-1]:
            parent = parent.groups.get(part) if parent is not None else None
        if parent is None:
            continue
        colnames = parent.attributes.get("colnames")
        if colnames is None:
            continue
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in np.ravel(colnames)]
        base = parts[-1]
        while base.endswith("_index") and base not in names:
            base = base[: -len("_index")]
        if base not in names or base in NEEDED_COLUMNS:
            continue
        for name in (base, f"{base}_index", f"{base}_index_index"):
            if name in parent.datasets:
                parent.datasets.pop(name)
                parent.obj_type.pop(name, None)
        parent.attributes["colnames"] = [n for n in names if n != base]
        table = "/" + "/".join(parts[:-1])
        skipped.append(f"{table}/{base}")
        warnings.warn(
            f"{table}/{base}: skipped: stored with the pickle codec, which nwb-facrnn never "
            "decodes (unpickling runs code from the file); the data are read without this "
            "column, and a results file made from them leaves it out",
            UserWarning,
            stacklevel=2,
        )
    return skipped


def open_io(path: str | os.PathLike, backend: Backend | None = None):
    """An NWB reader (``NWBHDF5IO`` or ``NWBZarrIO``) opened read-only; the caller closes it.

    A Zarr store is read through :func:`no_pickle_store`: arrays stored with the pickle codec
    are never decoded (unpickling runs code from the file).  Pickle-coded table columns the
    fit does not need are left out with a warning (:func:`skip_pickled_columns`); reading any
    other pickle-coded array raises :class:`PickleCodedError`, naming it.
    """
    p = Path(path)
    backend = backend or detect_backend(p)
    if backend == "zarr":
        from hdmf_zarr.nwb import NWBZarrIO

        pickled = zarr_pickled_arrays(p, limit=10_000)
        if not pickled:
            return _compact_read_warnings(NWBZarrIO(str(p), mode="r"), str(p))
        io = NWBZarrIO(no_pickle_store(p), mode="r")
        read_builder = io.read_builder

        def read_builder_without_pickle():
            root = read_builder()
            skip_pickled_columns(root, pickled)
            return root

        io.read_builder = read_builder_without_pickle
        return _compact_read_warnings(io, str(p))
    from pynwb import NWBHDF5IO

    return _compact_read_warnings(own_version_check(NWBHDF5IO(str(p), mode="r")), str(p))


def own_version_check(io):
    """``io`` (an ``NWBHDF5IO`` opened for reading), made to read a file whose root
    ``nwb_version`` is a one-element string array, which pynwb's own check cannot parse:
    the version is then checked here (NWB 1.x is refused) and pynwb's check skipped.  Other
    files are read as pynwb reads them; the file is never changed.  Returns ``io``."""
    if _version_needs_own_check(io._file.attrs.get("nwb_version")):
        io.read = _skipping_version_check(io)
    return io


def nwb_version_text(value: object) -> str | None:
    """The root ``nwb_version`` attribute as text, however a writer stored it.

    pynwb writes a variable-length string; other writers store fixed-length bytes or a
    one-element string array (``["2.6.0"]``).  Returns None for a missing attribute or one
    that holds no single string (an empty or longer array, a number).
    """
    import numpy as np

    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return str(value)
    return None


def _version_needs_own_check(value: object) -> bool:
    """True for an ``nwb_version`` stored as a one-element array, which pynwb's own version
    check cannot parse (it calls ``.decode()`` on the array)."""
    import numpy as np

    return isinstance(value, np.ndarray) and nwb_version_text(value) is not None


def _skipping_version_check(io):
    """``io.read`` with the version checked here instead of by pynwb (which cannot parse a
    one-element array): NWB 1.x is still refused, and the file itself is never changed."""
    read = io.read

    def read_checked(*args, **kwargs):
        text = nwb_version_text(io._file.attrs.get("nwb_version")) or ""
        if text.strip().upper().replace("NWB-", "").startswith("1."):
            raise TypeError(f"NWB version {text} not supported; NWB 2 files only")
        kwargs["skip_version_check"] = True
        return read(*args, **kwargs)

    return read_checked


def _compact_read_warnings(io, name: str):
    """Make ``io.read()`` show each distinct library warning once, on one line, with the file.

    pynwb warns about every object it constructs with problems (an OpticalSeries with
    neither data nor external_file ...), even those a fit never uses, each over two lines
    naming pynwb's source.  They are collected while the file is read and shown again once
    each as ``<file>: <message>``.  Warnings the active filters hide stay hidden.
    """
    read = io.read

    def read_compact(*args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            result = read(*args, **kwargs)
        show_compact_warnings(caught, name)
        return result

    io.read = read_compact
    return io


_SHOWN: set[tuple[str, type, str]] = set()  # (file, category, message) already shown


def already_shown(name: str, category: type, text: str) -> bool:
    """Whether :func:`show_compact_warnings` showed this warning (one-line ``text``) for the
    file ``name`` in this process."""
    return (name, category, text) in _SHOWN


def show_compact_warnings(caught: list, name: str) -> None:
    """Warn once per distinct (category, message) of ``caught``, as one line naming ``name``.

    A message already shown for the same file in this process (a fit reads its source
    twice) is not shown again.
    """
    for w in caught:
        text = " ".join(str(w.message).split())
        key = (name, w.category, text)
        if key in _SHOWN:
            continue
        if len(_SHOWN) < 10_000:
            _SHOWN.add(key)
        # filename "nwb-facrnn", line 0: the warning prints without a source line under it
        warnings.warn_explicit(
            f"{name}: {text}", w.category, "nwb-facrnn", 0, module="nwb_facrnn.io.backend"
        )


def write_nwbfile(nwbfile, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write an in-memory ``pynwb.NWBFile`` to ``path`` atomically.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
        A file built in memory (not one read from disk).
    path : path
        Destination; a ``.zarr`` suffix writes a Zarr store, anything else HDF5.
    overwrite : bool, default False
        Replace an existing file; otherwise an existing ``path`` raises ``FileExistsError``.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    dest = Path(path)
    with atomic_destination(dest, overwrite=overwrite) as tmp:
        if backend_for_new(dest) == "zarr":
            import numcodecs
            from hdmf_zarr.backend import ZarrIO
            from pynwb import get_manager

            # ZarrIO itself: NWBZarrIO (hdmf-zarr 0.13) drops object_codec_class and would
            # store object references with the pickle codec
            with ZarrIO(
                str(tmp), mode="w", manager=get_manager(), object_codec_class=numcodecs.JSON
            ) as io:
                io.write(nwbfile)
        else:
            from pynwb import NWBHDF5IO

            with NWBHDF5IO(str(tmp), mode="w") as io:
                io.write(nwbfile)
    return dest
