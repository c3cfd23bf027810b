"""Why a file could not be read as NWB, in one line naming the file and the object.

The read path (:func:`~nwb_facrnn.io.reader.open_nwbfile`, streamed reads too) turns what
h5py, hdmf and pynwb raise into :class:`~nwb_facrnn.io.errors.NWBReadError`: an NWB 1.x file
named as such with how to convert it, an HDF5 file that is not NWB or is truncated, a link
to a missing file, and hdmf's construct errors cut to the object that failed and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .backend import nwb_version_text
from .errors import NWBReadError


def raise_if_broken_links(path: Path, backend: str) -> None:
    """Explain a failed read by a link to a file or store that is missing, if there is one."""
    from .links import broken_links

    try:
        broken = broken_links(path, backend)
    except Exception:  # the file is broken in another way; the caller says how
        return
    if broken:
        where, target = broken[0]
        raise NWBReadError(
            path,
            where,
            f"links to {target} ({len(broken)} broken link(s)); a results file links its "
            "source's data: keep the two files side by side",
        )


_MAX_REASON = 200  # characters of a library's message quoted in an error line


def _one_line(text: str, limit: int = _MAX_REASON) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def describe_read_error(err: BaseException) -> tuple[str, str]:
    """(object path, short reason) for an exception raised while pynwb/hdmf read a file.

    hdmf's ``ConstructError`` carries the builder of the object that failed, and its message
    is the builder's whole repr (kilobytes for a group); the innermost one names the object
    and the library's reason without it.
    """
    from hdmf.build.errors import ConstructError

    construct, seen, e = None, set(), err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ConstructError):
            construct = e
        e = e.__cause__ or e.__context__
    if construct is None:
        return "/", _one_line(f"{type(err).__name__}: {err}")
    builder = construct.args[0] if construct.args else None
    where = "/"
    raw = getattr(builder, "path", None)
    if isinstance(raw, str) and raw:
        parts = raw.split("/")
        where = "/" + "/".join(parts[1:] if parts[0] == "root" else parts)
    reason = construct.args[1] if len(construct.args) > 1 else type(construct).__name__
    return where, _one_line(str(reason))


def _nwb1_version(f: Any) -> str | None:
    """The version of an NWB 1.x file (a root *dataset* ``nwb_version``), else None."""
    import h5py

    ds = f.get("nwb_version")
    if not isinstance(ds, h5py.Dataset):
        return None
    try:
        value = ds[()]
        if isinstance(value, np.ndarray):
            value = value.ravel()[0] if value.size else b""
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    except Exception:  # an unreadable version dataset still marks an NWB 1.x layout
        text = "unknown"
    return _one_line(text.strip() or "unknown", 40)


_NWB1_HINT = (
    "nwb-facrnn reads NWB 2 files only; there is no in-place upgrade: convert it by "
    "re-exporting the data with an NWB 2 writer (pynwb, NeuroConv or NWB's conversion tools)"
)


def check_hdf5_is_nwb(path: Path) -> None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("nwb_version")
            nwb1 = _nwb1_version(f) if version is None else None
    except OSError as err:
        raise NWBReadError(
            path, "/", f"HDF5 file cannot be opened; it may be truncated or corrupt ({err})"
        ) from None
    if nwb1 is not None:
        raise NWBReadError(
            path, "/nwb_version", f"an NWB 1.x file (version {nwb1!r}); {_NWB1_HINT}"
        )
    if version is None:
        raise NWBReadError(
            path, "/", "an HDF5 file without an nwb_version attribute: not an NWB file"
        )
    text = nwb_version_text(version)
    if text is None:
        raise NWBReadError(
            path,
            "/nwb_version",
            f"the nwb_version attribute holds {_one_line(repr(version), 60)}; expected one "
            "version string such as '2.6.0'",
        )
    text = text.strip()
    if text.upper().startswith("NWB-1") or text.startswith("1."):
        raise NWBReadError(
            path, "/", f"an NWB 1.x file (version {_one_line(text, 40)!r}); {_NWB1_HINT}"
        )
