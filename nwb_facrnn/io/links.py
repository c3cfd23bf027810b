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

    Relative targets are resolved from the real location of ``path`` (through symlinks), as
    HDF5 and hdmf-zarr do.

    Returns
    -------
    list of (str, str)
        ``(object path in the file, "target: why")`` for each broken link.
    """
    p = Path(os.path.realpath(path))
    backend = backend or detect_backend(p)
    return _zarr_broken(p) if backend == "zarr" else _hdf5_broken(p)


def _hdf5_broken(path: Path) -> list[tuple[str, str]]:
    import h5py

    links: dict[Path, list[tuple[str, h5py.ExternalLink]]] = {}

    def walk(group, prefix: str) -> None:
        for key in group:
            link = group.get(key, getlink=True)
            where = f"{prefix}/{key}"
            if isinstance(link, h5py.ExternalLink):
                target = Path(link.filename)
                if not target.is_absolute():  # hdmf writes paths relative to the linking file
                    target = path.parent / target
                links.setdefault(target, []).append((where, link))
            elif isinstance(link, h5py.HardLink):
                obj = group.get(key)
                if isinstance(obj, h5py.Group):
                    walk(obj, where)

    with h5py.File(path, "r") as f:
        walk(f, "")
    broken: list[tuple[str, str]] = []
    for target, found in links.items():  # each linked file is opened once
        why, present = "", None
        if not target.is_file():
            why = "which is missing"
        else:
            try:
                with h5py.File(target, "r") as t:
                    present = {link.path for _, link in found if link.path in t}
            except OSError as err:
                why = f"which cannot be opened ({err})"
        for where, link in found:
            if present is None or link.path not in present:
                broken.append((where, f"{link.filename}:{link.path}, {why or 'which lacks it'}"))
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
                why = "which is missing" if store.exists() else "whose store is missing"
                broken.append((where, f"{source}:{link.get('path')}, {why}"))
    return broken
