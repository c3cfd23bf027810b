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


def open_io(path: str | os.PathLike, backend: Backend | None = None):
    """An NWB reader (``NWBHDF5IO`` or ``NWBZarrIO``) opened read-only; the caller closes it.

    Zarr stores whose arrays use the pickle codec are refused: reading them would unpickle
    data this package did not write.
    """
    p = Path(path)
    backend = backend or detect_backend(p)
    if backend == "zarr":
        pickled = zarr_pickled_arrays(p)
        if pickled:
            raise NWBReadError(
                p,
                pickled[0],
                "array(s) stored with the pickle codec, which this package never reads "
                f"(unpickling runs code from the file): {', '.join(pickled)}; re-export the "
                "file with a JSON object codec",
            )
        from hdmf_zarr.nwb import NWBZarrIO

        return _compact_read_warnings(NWBZarrIO(str(p), mode="r"), str(p))
    from pynwb import NWBHDF5IO

    return _compact_read_warnings(NWBHDF5IO(str(p), mode="r"), str(p))


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
