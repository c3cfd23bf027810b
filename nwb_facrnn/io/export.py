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

import os
from pathlib import Path

import numpy as np

from .backend import Backend

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


def export_nwbfile(
    src_io,
    nwbfile,
    path: str | os.PathLike,
    backend: Backend,
    link_source: bool,
    keep_links: bool = True,
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
    with io_class(str(Path(path)), mode="w", **kwargs) as io:
        io.link_min_bytes = LINK_MIN_BYTES if (link_source and same_backend) else None
        target = {"container" if backend == "zarr" else "nwbfile": nwbfile}
        io.export(src_io=src_io, write_args=write_args, **target)
