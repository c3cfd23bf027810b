"""A read-only, seekable file object for a URL that fetches only the blocks read."""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import requests

from ...errors import OptionError
from .cache import BlockCache, url_cache_key
from .transport import RetryPolicy, TransferStats, Transport, new_session

#: Bytes of recent blocks each open :class:`HTTPRangeFile` keeps in memory.
MEMORY_CACHE_BYTES = 16 * 2**20


class _BlockSplitter:
    """Cuts the body of a ranged answer into blocks, calling ``on_block(index, data)``."""

    def __init__(
        self, first: int, block_size: int, size: int, on_block: Callable[[int, bytes], None]
    ) -> None:
        self.index = first
        self.block_size = block_size
        self.size = size
        self.on_block = on_block
        self.buf = bytearray()

    def __call__(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            length = min(self.block_size, self.size - self.index * self.block_size)
            take = length - len(self.buf)
            self.buf += view[:take]
            view = view[take:]
            if len(self.buf) == length:
                data, self.buf = bytes(self.buf), bytearray()
                self.on_block(self.index, data)
                self.index += 1


class HTTPRangeFile(io.RawIOBase):
    """A read-only, seekable file object for a URL, fetching only the bytes read.

    Open it with ``h5py.File(HTTPRangeFile(url), "r")`` (h5py's file-object driver) or
    read it like any binary file.  Reads are served in blocks of ``block_size`` bytes: from
    a small in-memory LRU of recent blocks, then from ``cache``; the blocks still missing
    from one read are fetched with one ranged GET per run of consecutive blocks and cached.
    Requests follow redirects and remember where they led (DANDI download URL to signed S3
    URL), going back to ``url`` once if the signed URL has expired.

    Parameters
    ----------
    url : str
        HTTP(S) URL of the file.
    size : int, optional
        The file size (bytes), e.g. from the DANDI API; None asks the server (a HEAD).
    cache : BlockCache, optional
        On-disk block cache shared between files and processes; None keeps no disk cache
        (only the in-memory blocks).
    cache_key : str, optional
        Names the file in ``cache`` (e.g. the DANDI asset id and digest); default the
        sha256 of ``url`` without its query string.  The key used on disk, ``cache_key``
        attribute, adds the file size and block size, so neither a changed file nor another
        block size can read wrong blocks.
    block_size : int
        Bytes per block (default 1 MiB): the smallest unit fetched and cached.  Smaller
        blocks fetch fewer unneeded bytes and cost more requests.
    retry : RetryPolicy, optional
        Timeouts and retries; default ``RetryPolicy()``.
    session : requests.Session, optional
        Session for the requests (proxies, adapters); by default one of its own, closed
        with the file.
    stats : TransferStats, optional
        Counters to add this file's traffic to (may be shared); default new ones.
    headers : dict, optional
        Extra request headers, e.g. ``{"Authorization": "token ..."}`` for embargoed
        DANDI data; credentials are never sent to another host (the redirect target).

    Attributes
    ----------
    url : str
    size : int
        File size (bytes).
    stats : TransferStats
    block_size : int
    cache : BlockCache or None
    cache_key : str
        Key of this file in ``cache`` (pass it to :meth:`BlockCache.clear`).

    Raises
    ------
    RemoteReadError
        The size cannot be found (HTTP error, no answer, no range support); later, a read
        fails after the retries.
    """

    def __init__(
        self,
        url: str,
        *,
        size: int | None = None,
        cache: BlockCache | None = None,
        cache_key: str | None = None,
        block_size: int = 1 << 20,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        stats: TransferStats | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if int(block_size) < 1:
            raise OptionError(f"block_size must be a positive number of bytes, got {block_size}")
        if size is not None and int(size) < 0:
            raise OptionError(f"size must be >= 0 bytes, got {size}")
        self.url = str(url)
        self.block_size = int(block_size)
        self.retry = retry if retry is not None else RetryPolicy()
        self.stats = stats if stats is not None else TransferStats()
        self.cache = cache
        self._own_session = session is None
        self._transport = Transport(
            self.url, session or new_session(), self.retry, self.stats, headers
        )
        try:
            if size is None:
                self.size = self._transport.probe_size()
            else:
                self.size = self._transport.total = int(size)
        except BaseException:
            if self._own_session:
                self._transport.session.close()
            raise
        base = cache_key if cache_key is not None else url_cache_key(self.url)
        self.cache_key = f"{base}-{self.size}-{self.block_size}"
        self._pos = 0
        self._lock = threading.RLock()
        self._memory: OrderedDict[int, bytes] = OrderedDict()
        self._memory_blocks = max(4, MEMORY_CACHE_BYTES // self.block_size)
        self._cache_warned = False

    def __repr__(self) -> str:
        return f"<HTTPRangeFile {self.url} size={getattr(self, 'size', '?')}>"

    @property
    def final_url(self) -> str:
        """Where the last request's redirects led (the URL ranged requests go to now)."""
        return self._transport.final_url

    # -- file protocol ------------------------------------------------------------------

    def readable(self) -> bool:
        self._checkClosed()
        return True

    def seekable(self) -> bool:
        self._checkClosed()
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        """Current position (bytes from the start)."""
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` bytes from the start, the current position or the end.

        Parameters
        ----------
        offset : int
            Bytes (may be negative with ``SEEK_CUR`` and ``SEEK_END``).
        whence : int
            ``io.SEEK_SET`` (0), ``io.SEEK_CUR`` (1) or ``io.SEEK_END`` (2).

        Returns
        -------
        int
            The new position (bytes); past the end is allowed (reads there return nothing).
        """
        with self._lock:
            self._checkClosed()
            if whence == io.SEEK_SET:
                pos = offset
            elif whence == io.SEEK_CUR:
                pos = self._pos + offset
            elif whence == io.SEEK_END:
                pos = self.size + offset
            else:
                raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
            if pos < 0:
                raise ValueError(f"negative seek position {pos}")
            self._pos = int(pos)
            return self._pos

    def readinto(self, buffer: Any) -> int:
        """Read up to ``len(buffer)`` bytes at the current position into ``buffer``.

        Fills the whole buffer unless the end of the file comes first (the rest of the
        buffer is then zeroed, which h5py's driver relies on).

        Returns
        -------
        int
            Bytes read (0 at or past the end).
        """
        with self._lock:
            self._checkClosed()
            out = memoryview(buffer).cast("B")
            n = max(0, min(len(out), self.size - self._pos))
            if n:
                self._read_at(self._pos, out[:n])
            if n < len(out):
                out[n:] = bytes(len(out) - n)
            self._pos += n
            return n

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all the rest if negative or None)."""
        with self._lock:
            self._checkClosed()
            left = max(0, self.size - self._pos)
            n = left if size is None or size < 0 else min(int(size), left)
            buf = bytearray(n)
            got = self.readinto(buf)
            return bytes(buf[:got])

    def readall(self) -> bytes:
        """Read everything from the current position to the end."""
        return self.read(-1)

    def close(self) -> None:
        """Close the file (and its own session); reads afterwards raise ``ValueError``."""
        if self.closed:
            return
        try:
            super().close()
        finally:
            if hasattr(self, "_memory"):  # not when __init__ failed (it closed the session)
                self._memory.clear()
                if self._own_session:
                    self._transport.session.close()

    # -- blocks -------------------------------------------------------------------------

    def _block_length(self, index: int) -> int:
        return min(self.block_size, self.size - index * self.block_size)

    def _remember(self, index: int, data: bytes) -> None:
        self._memory[index] = data
        self._memory.move_to_end(index)
        while len(self._memory) > self._memory_blocks:
            self._memory.popitem(last=False)

    def _cached(self, index: int) -> bytes | None:
        data = self._memory.get(index)
        if data is not None:
            self._memory.move_to_end(index)
            return data
        if self.cache is None:
            return None
        data = self.cache.get(self.cache_key, index, self._block_length(index))
        if data is not None:
            self.stats.cache_hits += 1
            self._remember(index, data)
        return data

    def _store(self, index: int, data: bytes) -> None:
        if self.cache is None:
            return
        try:
            self.cache.put(self.cache_key, index, data)
        except OSError as err:  # a full or read-only cache slows reads, never fails them
            if not self._cache_warned:
                self._cache_warned = True
                warnings.warn(
                    f"cannot write the block cache in {self.cache.directory} ({err}); "
                    "reading on without caching",
                    RuntimeWarning,
                    stacklevel=4,
                )

    def _copy(self, index: int, data: bytes, pos: int, out: memoryview) -> None:
        """Copy the part of block ``index`` that overlaps ``[pos, pos + len(out))``."""
        first = index * self.block_size
        lo = max(pos, first)
        hi = min(pos + len(out), first + len(data))
        out[lo - pos : hi - pos] = memoryview(data)[lo - first : hi - first]

    def _read_at(self, pos: int, out: memoryview) -> None:
        first = pos // self.block_size
        last = (pos + len(out) - 1) // self.block_size
        run: int | None = None  # first block of the current run of missing blocks
        for index in range(first, last + 1):
            data = self._cached(index)
            if data is None:
                if run is None:
                    run = index
                continue
            if run is not None:
                self._fetch(run, index - 1, pos, out)
                run = None
            self._copy(index, data, pos, out)
        if run is not None:
            self._fetch(run, last, pos, out)

    def _fetch(self, first: int, last: int, pos: int, out: memoryview) -> None:
        """Fetch blocks ``first..last`` with one ranged GET; cache them; copy into ``out``."""
        start = first * self.block_size
        stop = min((last + 1) * self.block_size, self.size)

        def on_block(index: int, data: bytes) -> None:
            self.stats.blocks_fetched += 1
            self._remember(index, data)
            self._store(index, data)
            self._copy(index, data, pos, out)

        self._transport.get_range(
            start,
            stop,
            _BlockSplitter(first, self.block_size, self.size, on_block),
            what=f"reading bytes {start}-{stop - 1} ({stop - start} bytes)",
        )
