"""Stream remote NWB (HDF5) files over HTTP(S), fetching only the byte ranges h5py asks for.

:class:`HTTPRangeFile` is a read-only, seekable file object for a URL (a DANDI asset, a file
on S3, any server that answers ``Range`` requests with ``206 Partial Content``)::

    cache = BlockCache()  # on disk, shared by all files and processes, size-bounded
    with HTTPRangeFile(url, cache=cache) as raw, h5py.File(raw, "r") as f:
        rates = f["units/spike_times"][:1000]

The file is read in fixed-size blocks (1 MiB by default).  A read is served block by block
from a small in-memory LRU (h5py reads the same metadata pieces over and over), then from the
on-disk :class:`BlockCache`; the blocks still missing are fetched with one ranged GET per run
of consecutive blocks and written to both caches, so a second read of the same asset, even
from another process, fetches nothing already fetched.

Every request has a connect and a read timeout and is retried with exponential backoff
(:class:`RetryPolicy`) on connection errors, timeouts, ``429``/``5xx`` answers and bodies
shorter than announced; a retry resumes where the dropped body stopped.  When the attempts
are spent, or at once for an error that a retry cannot fix (``404``, a server without range
support), :class:`RemoteReadError` says which URL, which bytes and why.

:func:`download` fetches a whole file with the same retry machinery, resuming a dropped
transfer with a ``Range`` request, into a temporary sibling that is renamed into place only
once complete and of the right size.

The modules, one job each:

- :mod:`.transport`: HTTP requests with timeouts and retries (:class:`RetryPolicy`,
  :class:`RemoteReadError`, :class:`TransferStats`);
- :mod:`.cache`: the on-disk :class:`BlockCache`;
- :mod:`.rangefile`: the seekable file object :class:`HTTPRangeFile`;
- :mod:`.downloads`: :func:`download` of a whole file.
"""

from __future__ import annotations

from .cache import CACHE_DIR_ENV, BlockCache, default_cache_dir, url_cache_key
from .downloads import download
from .rangefile import MEMORY_CACHE_BYTES, HTTPRangeFile
from .transport import RemoteReadError, RetryPolicy, TransferStats

__all__ = [
    "CACHE_DIR_ENV",
    "MEMORY_CACHE_BYTES",
    "BlockCache",
    "HTTPRangeFile",
    "RemoteReadError",
    "RetryPolicy",
    "TransferStats",
    "default_cache_dir",
    "download",
    "url_cache_key",
]
