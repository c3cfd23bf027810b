"""Which storage backend a path holds, opening NWB files read-only and writing them atomically.

NWB files come as HDF5 (one ``.nwb`` file) or as Zarr (a directory store, usually named
``*.nwb.zarr`` or ``*.zarr``).  The backend is decided from the content, not the name: an HDF5
file starts with the HDF5 signature and a Zarr store is a directory with ``.zgroup`` (Zarr v2)
or ``zarr.json`` (Zarr v3) at its root.  When a path does not exist yet (writing), its suffix
decides: ``.zarr`` means Zarr, anything else HDF5.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

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

        return NWBZarrIO(str(p), mode="r")
    from pynwb import NWBHDF5IO

    return NWBHDF5IO(str(p), mode="r")


@contextlib.contextmanager
def atomic_destination(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it into place only if the block succeeds.

    Works for files and for directories (Zarr stores).  On error the temporary is removed
    and an existing ``path`` is left untouched; the move itself is atomic (see
    :func:`replace_atomically`), so a process killed at any moment leaves ``path`` either as
    it was or complete.
    """
    dest = Path(path)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass overwrite=True to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(dest)
    tmp = dest.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{dest.name}")
    try:
        yield tmp
        if dest.exists() and tmp.exists():
            shutil.copymode(dest, tmp)  # a replaced file keeps its permissions
        replace_atomically(tmp, dest)
    finally:
        _remove(tmp)


def remove_stale_partials(dest: Path) -> list[Path]:
    """Remove temporaries of ``dest`` left by writers that were killed (their process is gone).

    Temporaries are named ``.partial-<pid>-<random>-<name>``; one whose process still runs
    (another writer) is left alone.  Returns the removed paths.
    """
    pattern = re.compile(rf"{re.escape(PARTIAL_PREFIX)}(\d+)-[0-9a-f]{{8}}-{re.escape(dest.name)}")
    removed = []
    for p in dest.parent.glob(f"{PARTIAL_PREFIX}*-{dest.name}"):
        m = pattern.fullmatch(p.name)
        if m and not _process_alive(int(m.group(1))):
            _remove(p)
            removed.append(p)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


#: Temporary files and stores being written start with this; a killed writer may leave one.
PARTIAL_PREFIX = ".partial-"


def replace_atomically(new: Path, dest: Path) -> None:
    """Move ``new`` to ``dest`` in one atomic step, replacing ``dest`` if it exists.

    A file (HDF5) replaces a file with ``rename``.  A directory (Zarr store) cannot be renamed
    over a non-empty directory, so the two are exchanged atomically (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``, macOS ``renamex_np`` with ``RENAME_SWAP``) and the old one, now at
    ``new``, is removed.  Elsewhere the old store is first moved aside: a crash between the
    two renames leaves it beside ``dest`` under a ``.old-`` name.
    """
    _fsync(new)
    if not (dest.exists() and dest.is_dir()):
        os.replace(new, dest)
    elif _exchange(new, dest):
        _remove(new)  # the old store
    else:
        old = dest.with_name(f".old-{uuid.uuid4().hex[:8]}-{dest.name}")
        os.replace(dest, old)
        os.replace(new, dest)
        _remove(old)
    _fsync(dest.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False where the platform cannot."""
    import ctypes
    import ctypes.util
    import sys

    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        if sys.platform.startswith("linux"):
            at_fdcwd, rename_exchange = -100, 2
            fn = libc.renameat2
            args = (at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
        elif sys.platform == "darwin":
            fn, args = libc.renamex_np, (os.fsencode(a), os.fsencode(b), 0x2)  # RENAME_SWAP
        else:
            return False
    except AttributeError:  # an old C library without the call
        return False
    return fn(*args) == 0


def _fsync(path: Path) -> None:
    """Flush a file, or a directory entry, to disk (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink()


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
