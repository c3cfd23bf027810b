"""Reading a long imaging session chunk by chunk instead of into memory.

With ``chunked=True`` (or ``"auto"`` when the activity would not fit in the memory this
process may use), :func:`~nwb_facrnn.io.reader.read_nwb` does not read the traces: the
:class:`~nwb_facrnn.NeuralData` holds a :class:`~nwb_facrnn.model.chunked.ChunkedActivity`
over the series' dataset, opened read-only on its own handle, and the fit reads it a chunk of
frames at a time.  That needs one bin per frame (the default bin size of imaging and plain
series), a continuous read of the whole session, traces used as stored (no ``detrend`` or
``zscore``, which need every frame at once) and a local HDF5 or Zarr file.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import OptionError
from .binning import BinGrid

Chunked = bool | Literal["auto"]

#: ``chunked="auto"`` reads chunk by chunk when the float32 activity is more than this
#: fraction of the memory the process may still use (a fit in memory peaks near 2-3x it).
AUTO_FRACTION = 1 / 3


@dataclass(frozen=True)
class LazyRead:
    """How :func:`~nwb_facrnn.io.reader.read_nwb` may read activity.

    Attributes
    ----------
    chunked : bool or "auto"
    path : str or None
        The local file or Zarr store (None: streamed or an in-memory NWBFile).
    backend : str
    """

    chunked: Chunked = "auto"
    path: str | None = None
    backend: str = "hdf5"


def check_chunked(value: Any) -> Chunked:
    """``chunked`` as given to read_nwb, validated."""
    if value is True or value is False or value == "auto":
        return value
    raise OptionError(f"chunked must be True, False or 'auto', got {value!r}")


def available_memory() -> float:
    """Bytes this process may still allocate: the least of the machine's available memory,
    the cgroup's limit (containers, batch jobs) and the address-space limit (``ulimit -v``)."""
    limits = [_meminfo_available()]
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        used = path.replace("memory.max", "memory.current").replace(
            "limit_in_bytes", "usage_in_bytes"
        )
        try:
            with open(path) as fh, open(used) as fu:
                text = fh.read().strip()
                if text != "max" and int(text) < 1 << 60:
                    limits.append(int(text) - int(fu.read().strip()))
        except (OSError, ValueError):
            continue
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        limits.append(soft - _vm_size())
    return float(max(min(limits), 0))


def _proc_kb(path: str, key: str) -> int | None:
    """A ``key: <n> kB`` line of a /proc file, in bytes (None where there is none)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _meminfo_available() -> float:
    found = _proc_kb("/proc/meminfo", "MemAvailable")
    if found is not None:
        return float(found)
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def _vm_size() -> int:
    return _proc_kb("/proc/self/status", "VmSize") or 0


def why_not_chunked(
    lazy: LazyRead, options: dict[str, Any], grid: BinGrid, timestamps: np.ndarray, shape: tuple
) -> str | None:
    """Why the activity of a series with frame ``timestamps`` and data ``shape`` cannot be
    read chunk by chunk on ``grid`` (None when it can)."""
    if lazy.path is None or lazy.backend not in ("hdf5", "zarr"):
        return "the file is not a local HDF5 file or Zarr store"
    for key in ("detrend", "zscore", "inputs", "time_range"):
        if options.get(key):
            return f"{key} is set"
    if len(shape) != 2:
        return f"the series' data has shape {shape}, not (frames, columns)"
    if grid.n_seq != 1:
        return "the read is cut into trials"
    if grid.n_bins != len(timestamps):
        return (
            f"{grid.n_bins} bins for {len(timestamps)} frames (bin_size is not the frame interval)"
        )
    start = grid.timestamps().ravel()
    tol = 1e-6 * grid.bin_size
    if not np.all((timestamps >= start - tol) & (timestamps < start + grid.bin_size - tol)):
        return "the frames are not one per bin (irregular timestamps or another bin_size)"
    return None


def use_chunked(lazy: LazyRead, nbytes: float, reason: str | None, source: str, path: str) -> bool:
    """Whether to read ``nbytes`` of activity chunk by chunk (``reason``: why it cannot be,
    from :func:`why_not_chunked`)."""
    if lazy.chunked is False:
        return False
    if lazy.chunked is True:
        if reason is not None:
            raise OptionError(f"{source}: {path}: cannot be read chunk by chunk: {reason}")
        return True
    return reason is None and nbytes > AUTO_FRACTION * available_memory()


def open_dataset(lazy: LazyRead, object_path: str) -> Any:
    """The dataset at ``object_path`` of the local file, on a read-only handle of its own
    (kept open as long as the dataset is referenced)."""
    if lazy.backend == "zarr":
        import zarr

        return zarr.open_group(lazy.path, mode="r")[object_path.strip("/")]
    import h5py

    return h5py.File(lazy.path, "r")[object_path]


__all__ = [
    "AUTO_FRACTION",
    "LazyRead",
    "available_memory",
    "check_chunked",
    "open_dataset",
    "use_chunked",
    "why_not_chunked",
]
