"""Links from one NWB file to data in another, and which of them are broken.

A results file links the large datasets of its source (HDF5 external links, Zarr links), and a
source may itself link to raw data elsewhere.  pynwb silently skips a link whose target is
missing, so a file rewritten from it would lose the link for good; the writer checks here
first, and the reader uses this to explain a failed read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .backend import Backend, detect_backend


def broken_links(path: str | os.PathLike, backend: Backend | None = None) -> list[tuple[str, str]]:
    """Links in the file at ``path`` whose target file, store or object is missing.

    Returns
    -------
    list of (str, str)
        ``(object path in the file, missing target)`` for each broken link.
    """
    p = Path(path)
    backend = backend or detect_backend(p)
    return _zarr_broken(p) if backend == "zarr" else _hdf5_broken(p)


def _hdf5_broken(path: Path) -> list[tuple[str, str]]:
    import h5py

    broken: list[tuple[str, str]] = []

    def target_ok(link: h5py.ExternalLink) -> bool:
        target = Path(link.filename)
        if not target.is_absolute():  # hdmf writes paths relative to the linking file
            target = path.parent / target
        if not target.is_file():
            return False
        try:
            with h5py.File(target, "r") as f:
                return link.path in f
        except OSError:
            return False

    def walk(group, prefix: str) -> None:
        for key in group:
            link = group.get(key, getlink=True)
            where = f"{prefix}/{key}"
            if isinstance(link, h5py.ExternalLink):
                if not target_ok(link):
                    broken.append((where, f"{link.filename}:{link.path}"))
            elif isinstance(link, h5py.HardLink):
                obj = group.get(key)
                if isinstance(obj, h5py.Group):
                    walk(obj, where)

    with h5py.File(path, "r") as f:
        walk(f, "")
    return broken


def _zarr_broken(root: Path) -> list[tuple[str, str]]:
    broken: list[tuple[str, str]] = []
    for attrs in root.rglob(".zattrs"):
        try:
            links = json.loads(attrs.read_text()).get("zarr_link", [])
        except (OSError, ValueError):
            continue
        group = attrs.parent.relative_to(root).as_posix()
        for link in links:
            source = str(link.get("source", "."))
            store = root if source in (".", "") else (root / source).resolve()
            target = store / str(link.get("path", "")).lstrip("/")
            if not target.exists():
                where = "/" + "/".join(x for x in (group, str(link.get("name"))) if x != ".")
                broken.append((where, f"{source}:{link.get('path')}"))
    return broken
