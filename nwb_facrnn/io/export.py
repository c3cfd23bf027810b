"""Export an NWB file read from disk to a new file, linking the source's large datasets.

pynwb's ``export`` copies every dataset of the file it exports from (``link_data`` only keeps
links the source itself had).  A results file needs the opposite for the source's bulk data:
its imaging movie, traces and behaviour should stay where they are and be *linked* (HDF5
external links, Zarr links), while its tables, metadata and the new results are written into
the new file.  :func:`export_nwbfile` does that by deciding per dataset: large numeric
datasets without a neurodata type (TimeSeries data and timestamps, images) are linked; typed
datasets (table columns such as spike times, which indexes and regions refer to) are copied.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .backend import Backend, show_compact_warnings

#: Numeric datasets of the source at least this large are linked, not copied.
LINK_MIN_BYTES = 64 << 10


def _linkable(data, min_bytes: int) -> bool:
    """True for a numeric on-disk dataset (h5py or zarr) of at least ``min_bytes``."""
    dtype = getattr(data, "dtype", None)
    if dtype is None or not hasattr(data, "shape") or isinstance(data, np.ndarray):
        return False
    if dtype.kind not in "biuf":  # references, strings and compound types are rewritten
        return False
    return int(np.prod(data.shape, dtype=np.int64)) * dtype.itemsize >= min_bytes


def _linking(io_class):
    """A subclass of an NWB IO class whose export links large datasets of the source."""

    class LinkingIO(io_class):
        link_min_bytes: int | None = None  # None: copy everything (plain export)

        def write_dataset(self, *args, **kwargs):
            builder = args[1] if len(args) > 1 else kwargs["builder"]
            if (
                self.link_min_bytes is not None
                and "neurodata_type" not in builder.attributes  # typed data may be referenced
                and _linkable(builder.data, self.link_min_bytes)
            ):
                # "not exporting" makes hdmf write an external link to the dataset's file
                kwargs.update(link_data=True, export_source=None)
            return super().write_dataset(*args, **kwargs)

    LinkingIO.__name__ = f"Linking{io_class.__name__}"
    return LinkingIO


@contextlib.contextmanager
def unindexed_columns(nwbfile) -> Iterator[None]:
    """Let pynwb write back the predefined columns a file stores without their index.

    Some writers (MatNWB) store a column the schema gives an index (Units ``electrodes``,
    one electrode per unit) as a plain column without ``<name>_index``.  pynwb reads such a
    table, but cannot build it again: its mapper asks the table for the missing
    ``<name>_index`` attribute (``ContainerConfigurationError``), and for ``electrodes``
    asks the column for the index's ``target``.  While the context is open, the missing
    index attribute is None (so none is written, as in the source) and a plain
    DynamicTableRegion stands as its own ``target``; both are undone on exit.  Nothing is
    changed in any file.
    """
    from hdmf.common import DynamicTable, DynamicTableRegion, VectorIndex

    added: list[tuple[object, str]] = []
    try:
        for obj in list(nwbfile.objects.values()):
            if not isinstance(obj, DynamicTable):
                continue
            for spec in getattr(obj, "__columns__", ()):
                name = spec.get("name")
                if not spec.get("index") or name not in obj.colnames:
                    continue
                if hasattr(obj, f"{name}_index"):
                    continue
                column = obj[name]
                if isinstance(column, VectorIndex):  # indexed after all
                    continue
                obj.__dict__[f"{name}_index"] = None
                added.append((obj, f"{name}_index"))
                if isinstance(column, DynamicTableRegion) and "target" not in vars(column):
                    column.__dict__["target"] = column
                    added.append((column, "target"))
        yield
    finally:
        for obj, attr in reversed(added):
            obj.__dict__.pop(attr, None)


def export_nwbfile(
    src_io,
    nwbfile,
    path: str | os.PathLike,
    backend: Backend,
    link_source: bool,
    keep_links: bool = True,
    name: str | os.PathLike | None = None,
) -> None:
    """Export ``nwbfile`` (read through ``src_io``) to a new file at ``path``.

    Parameters
    ----------
    src_io : NWBHDF5IO or NWBZarrIO
        The reader ``nwbfile`` came from (still open).
    nwbfile : pynwb.NWBFile
        The file's content, possibly with containers added or removed.
    path : path
        The new file (must not exist).
    backend : {"hdf5", "zarr"}
        Backend of the new file.
    link_source : bool
        Link the numeric datasets of ``src_io``'s file of at least :data:`LINK_MIN_BYTES`
        instead of copying them (same backend only).
    keep_links : bool, default True
        Keep the links the source itself has (to data in other files); False copies their
        data in (a standalone file).
    name : path, optional
        The file as the user knows it (``path`` may be a temporary file that replaces it):
        the library warnings of the write (an object of the source missing a required
        value ...) are shown once each, on one line naming it.
    """
    from hdmf.backends.hdf5 import HDF5IO

    same_backend = isinstance(src_io, HDF5IO) == (backend == "hdf5")
    write_args = {"link_data": same_backend and keep_links}
    if backend == "zarr":
        import numcodecs
        from hdmf_zarr.backend import ZarrIO
        from pynwb import get_manager

        io_class = _linking(ZarrIO)
        # ZarrIO itself: NWBZarrIO (hdmf-zarr 0.13) drops object_codec_class and would store
        # object references with the pickle codec
        kwargs = dict(manager=get_manager(), object_codec_class=numcodecs.JSON)
    else:
        from pynwb import NWBHDF5IO

        io_class = _linking(NWBHDF5IO)
        kwargs = {}
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            unindexed_columns(nwbfile),
            io_class(str(Path(path)), mode="w", **kwargs) as io,
        ):
            io.link_min_bytes = LINK_MIN_BYTES if (link_source and same_backend) else None
            target = {"container" if backend == "zarr" else "nwbfile": nwbfile}
            io.export(src_io=src_io, write_args=write_args, **target)
    finally:
        show_compact_warnings(caught, str(name if name is not None else path))
