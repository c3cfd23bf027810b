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
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import re
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .. import __version__
from .atomic import atomic_destination

__all__ = [
    "BlockCache",
    "HTTPRangeFile",
    "RemoteReadError",
    "RetryPolicy",
    "TransferStats",
    "default_cache_dir",
    "download",
    "url_cache_key",
]

#: Environment variable naming the block cache directory (overrides the platform default).
CACHE_DIR_ENV = "NWB_FACRNN_CACHE_DIR"
#: Bytes of recent blocks each open :class:`HTTPRangeFile` keeps in memory.
MEMORY_CACHE_BYTES = 16 * 2**20
#: Bytes read from the socket at a time while a ranged response streams in.
_READ_CHUNK = 256 * 2**10
#: Errors of one request that another attempt may not meet: the connection and the body.
_TRANSIENT = (
    requests.ConnectionError,  # includes ConnectTimeout, SSLError, a read timeout mid-body
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # body cut short (urllib3 IncompleteRead)
    urllib3.exceptions.HTTPError,
)
#: Request headers that must not follow the request to another host (requests drops them
#: on a cross-host redirect; the same holds when the redirect target is requested directly).
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")
#: Temporary block files older than this (seconds) were left by a killed process.
_STALE_TMP_SECONDS = 3600.0


class RemoteReadError(OSError):
    """Reading a URL failed: after the retries, or at once for an error retries cannot fix.

    The message names the URL, what was asked (the byte range, the size, the download), why
    it failed (the HTTP status, a timeout, a dropped connection, a server without range
    support) and how many attempts were made, e.g.
    ``https://host/f.nwb: reading bytes 0-1048575 (1048576 bytes): HTTP 503 Service
    Unavailable; gave up after 5 attempts``.

    Parameters
    ----------
    url : str
        The URL as the caller gave it.
    reason : str
        What was asked and why it failed.

    Attributes
    ----------
    url : str
    reason : str
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (type(self), (self.url, self.reason))


@dataclass
class TransferStats:
    """Counters of the network and cache traffic of one or more remote files.

    One instance may be shared by several :class:`HTTPRangeFile` objects and downloads to
    total their traffic.

    Attributes
    ----------
    bytes_fetched : int
        Body bytes received from the network (bytes), dropped partial bodies included.
    requests : int
        HTTP requests sent, HEAD requests and retries included.
    retries : int
        Requests sent again after a failed one.
    cache_hits : int
        Blocks served from the on-disk :class:`BlockCache` (in-memory hits not counted).
    blocks_fetched : int
        Blocks received from the network.
    """

    bytes_fetched: int = 0
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    blocks_fetched: int = 0


@dataclass
class RetryPolicy:
    """How requests are timed out and retried.

    A request is retried after a connection error, a connect or read timeout, an answer
    whose status is in ``retry_statuses`` and a body shorter than announced; any other
    ``4xx`` status fails at once.

    Attributes
    ----------
    attempts : int
        Total tries of one request (1 = no retry).
    backoff : float
        Wait before the first retry (seconds); it doubles with each further retry.  A
        ``Retry-After`` header on a ``429`` or ``503`` answer replaces it.
    max_wait : float
        Longest wait between two tries (seconds), ``Retry-After`` included.
    timeout : tuple of float
        ``(connect, read)`` timeouts (seconds): the longest wait for a connection, and for
        each piece of the answer once connected, so a stalled server fails instead of hanging.
        One number sets both.
    retry_statuses : tuple of int
        HTTP statuses worth another try.
    """

    attempts: int = 5
    backoff: float = 0.5
    max_wait: float = 30.0
    timeout: tuple[float, float] = (10.0, 60.0)
    retry_statuses: tuple[int, ...] = (429, 500, 502, 503, 504)

    def __post_init__(self) -> None:
        if int(self.attempts) < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        if self.backoff < 0 or self.max_wait < 0:
            raise ValueError("RetryPolicy.backoff and max_wait must be >= 0 seconds")
        raw = self.timeout
        timeout = (
            (float(raw), float(raw)) if isinstance(raw, int | float) else tuple(map(float, raw))
        )
        if len(timeout) != 2 or min(timeout) <= 0:
            raise ValueError(
                f"RetryPolicy.timeout must be (connect, read) seconds > 0, got {self.timeout}"
            )
        self.attempts = int(self.attempts)
        self.timeout = timeout  # type: ignore[assignment]
        self.retry_statuses = tuple(int(s) for s in self.retry_statuses)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry).

        Parameters
        ----------
        retry : int
            1 before the second try, 2 before the third, ...
        retry_after : float, optional
            The server's ``Retry-After`` (seconds), which wins over the backoff.

        Returns
        -------
        float
            ``backoff * 2**(retry - 1)``, or ``retry_after``, capped at ``max_wait`` (seconds).
        """
        wait = self.backoff * 2.0 ** (retry - 1) if retry_after is None else retry_after
        return max(0.0, min(self.max_wait, wait))


def default_cache_dir() -> Path:
    """The default :class:`BlockCache` directory.

    Returns
    -------
    Path
        ``$NWB_FACRNN_CACHE_DIR`` if set and not empty, else the platform's user cache
        directory for ``nwb-facrnn`` (``~/.cache/nwb-facrnn`` on Linux) plus ``/http``.
    """
    env = os.environ.get(CACHE_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("nwb-facrnn")) / "http"


_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,159}")


def _key_dirname(key: str) -> str:
    """The directory name of a cache key: the key itself if safe, else its sha256."""
    if _SAFE_KEY.fullmatch(key):
        return key
    return "h-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def url_cache_key(url: str) -> str:
    """A cache key for a URL: sha256 of the URL without query string and fragment.

    The query of a signed URL (S3 ``X-Amz-...``) changes with every signature while the
    object does not, so it is left out.

    Parameters
    ----------
    url : str

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    parts = urlsplit(url)
    bare = urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, "", ""))
    return hashlib.sha256(bare.encode()).hexdigest()


class BlockCache:
    """On-disk cache of fixed-size blocks of remote files, bounded in total size.

    Layout: ``<directory>/<key>/<block index>.blk``, where ``key`` names one remote file (a
    sha256 of its URL, or a caller-given key such as a DANDI asset id and digest; a key that
    is not a safe file name is replaced by its sha256).  A block is written to a temporary
    file in the same folder and renamed into place, so a process killed mid-write never
    leaves a partial block under its final name, and a block whose size is not the expected
    one (a crash on a filesystem that reorders metadata, a truncated copy) is deleted and
    treated as absent.  Several processes may share one directory: reads of a block being
    replaced see the old or the new file, both complete.

    Once the blocks on disk exceed ``max_bytes``, the least recently used ones (by
    modification time, which :meth:`get` refreshes) are removed until 90% of ``max_bytes``
    remain.  Each process counts its own writes against one scan of the directory, so with
    several writers the bound holds to within what the others wrote since that scan.

    Parameters
    ----------
    directory : path, optional
        Cache directory, created on first write; default :func:`default_cache_dir`.
    max_bytes : int
        Bound on the total size of the cached blocks (bytes); default 20 GiB.
    """

    def __init__(
        self, directory: str | os.PathLike | None = None, max_bytes: int = 20 * 2**30
    ) -> None:
        if int(max_bytes) < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._estimate: int | None = None  # bytes on disk at the last scan + writes since
        self._last_ns = 0

    def __repr__(self) -> str:
        return f"BlockCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    def _path(self, key: str, index: int) -> Path:
        if int(index) < 0:
            raise ValueError(f"block index must be >= 0, got {index}")
        return self.directory / _key_dirname(key) / f"{int(index)}.blk"

    def _now_ns(self) -> int:
        """Strictly increasing wall-clock nanoseconds: the LRU order of this process's uses."""
        with self._lock:
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            return self._last_ns

    def get(self, key: str, index: int, size: int) -> bytes | None:
        """The cached block, or None if absent or not ``size`` bytes long (then deleted).

        Parameters
        ----------
        key : str
            The remote file's cache key.
        index : int
            Block number (block ``i`` starts at byte ``i * block_size``).
        size : int
            Expected length of the block (bytes).

        Returns
        -------
        bytes or None
        """
        path = self._path(key, index)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read(size + 1) if st.st_size == size else None
        except OSError:  # absent, evicted meanwhile, unreadable: a miss
            return None
        if data is None or len(data) != size:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == st.st_ino:  # not replaced by a good one meanwhile
                    path.unlink()
            return None
        now = self._now_ns()
        with contextlib.suppress(OSError):  # a read-only shared cache still serves hits
            os.utime(path, ns=(now, now))
        return data

    def put(self, key: str, index: int, data: bytes) -> None:
        """Store a block (atomically: temporary file, then rename), then evict if over bound.

        Parameters
        ----------
        key : str
            The remote file's cache key.
        index : int
            Block number.
        data : bytes
            The block's bytes.

        Raises
        ------
        OSError
            The directory cannot be written (full disk, permissions).
        """
        path = self._path(key, index)
        for attempt in range(2):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                with open(tmp, "xb") as f:
                    f.write(data)
                now = self._now_ns()
                os.utime(tmp, ns=(now, now))
                os.replace(tmp, path)
                break
            except FileNotFoundError:  # another process removed the key folder: once more
                with contextlib.suppress(OSError):
                    tmp.unlink()
                if attempt:
                    raise
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        with self._lock:
            if self._estimate is None:
                self._estimate = sum(size for _, size, _ in self._scan())
            else:
                self._estimate += len(data)
            if self._estimate > self.max_bytes:
                self._evict()

    def _scan(self) -> list[tuple[int, int, str]]:
        """``(mtime_ns, size, path)`` of every block; removes stale temporaries on the way."""
        blocks: list[tuple[int, int, str]] = []
        stale = time.time() - _STALE_TMP_SECONDS
        try:
            top = os.scandir(self.directory)
        except OSError:
            return blocks
        with top:
            for keydir in top:
                if not keydir.is_dir(follow_symlinks=False):
                    continue
                try:
                    entries = os.scandir(keydir.path)
                except OSError:
                    continue
                with entries:
                    for e in entries:
                        try:
                            if e.name.endswith(".blk"):
                                st = e.stat(follow_symlinks=False)
                                blocks.append((st.st_mtime_ns, st.st_size, e.path))
                            elif e.name.endswith(".tmp"):
                                if e.stat(follow_symlinks=False).st_mtime < stale:
                                    os.unlink(e.path)
                        except OSError:  # removed by another process meanwhile
                            continue
        return blocks

    def _evict(self) -> None:
        """Remove least recently used blocks until 90% of ``max_bytes`` remain (lock held)."""
        blocks = sorted(self._scan())
        total = sum(size for _, size, _ in blocks)
        target = self.max_bytes - self.max_bytes // 10
        folders = set()
        for _, size, path in blocks:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            total -= size
            folders.add(os.path.dirname(path))
        for folder in folders:
            with contextlib.suppress(OSError):  # only if empty
                os.rmdir(folder)
        self._estimate = total

    def size(self) -> int:
        """Bytes of all cached blocks on disk (all keys).

        Returns
        -------
        int
            Total size (bytes).
        """
        return sum(size for _, size, _ in self._scan())

    def clear(self, key: str | None = None) -> None:
        """Remove the cached blocks of one key, or of all keys.

        Only block and temporary files (and the folders they leave empty) are removed, so a
        cache directory pointed at a folder holding other files leaves those alone.

        Parameters
        ----------
        key : str, optional
            The remote file's cache key; None clears the whole cache.
        """
        if key is not None:
            folders = [self.directory / _key_dirname(key)]
        else:
            try:
                folders = [p for p in self.directory.iterdir() if p.is_dir()]
            except OSError:
                folders = []
        for folder in folders:
            with contextlib.suppress(OSError):
                for p in folder.iterdir():
                    if p.suffix in (".blk", ".tmp"):
                        with contextlib.suppress(OSError):
                            p.unlink()
                folder.rmdir()
        with self._lock:
            self._estimate = None


def _new_session() -> requests.Session:
    """A session without urllib3 retries (ours do that) and with a project User-Agent."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=8)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"nwb-facrnn/{__version__} requests/{requests.__version__}"
    return session


def _describe(err: BaseException, timeout: tuple[float, float]) -> str:
    """A short reason for a transient request error: timeout, dropped or failed connection."""
    chain = [err]  # requests wraps urllib3, which wraps the socket error
    while len(chain) < 10:
        e = chain[-1]
        nxt = getattr(e, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = e.args[0] if e.args and isinstance(e.args[0], BaseException) else None
        if nxt is None:
            nxt = e.__cause__ or e.__context__
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    root = chain[-1]
    text = " ".join(str(root).split()) or type(root).__name__
    text = re.sub(r"^\w*Connection(Pool)?\([^)]*\):\s*", "", text)  # urllib3's prefix
    if len(text) > 160:
        text = text[:160] + "..."
    if isinstance(err, requests.ConnectTimeout):
        return f"timed out connecting (connect timeout {timeout[0]:g} s)"
    if isinstance(err, requests.ReadTimeout) or any(
        isinstance(c, urllib3.exceptions.ReadTimeoutError | TimeoutError) for c in chain
    ):
        return f"timed out: no data for {timeout[1]:g} s (read timeout)"
    if any(isinstance(c, http.client.IncompleteRead) for c in chain):
        return "connection dropped"
    if isinstance(
        err, requests.exceptions.ChunkedEncodingError | urllib3.exceptions.ProtocolError
    ) or any(isinstance(c, ConnectionResetError | BrokenPipeError) for c in chain):
        return f"connection dropped ({text})"
    return f"connection failed ({text})"


def _retry_after(response: requests.Response) -> float | None:
    """The ``Retry-After`` of a 429 or 503 answer (seconds), if any."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*", re.IGNORECASE)


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """``(first, last, total)`` of a ``Content-Range`` header (None parts for ``*``)."""
    m = _CONTENT_RANGE.fullmatch(value or "")
    if m is None:
        return None
    first = int(m[1]) if m[1] is not None else None
    last = int(m[2]) if m[2] is not None else None
    total = int(m[3]) if m[3] != "*" else None
    return first, last, total


def _body(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """The body as it arrives, in pieces of at most ``chunk_size`` bytes.

    ``read1`` hands over whatever the socket delivered, so the bytes received before a
    dropped connection are kept (``iter_content`` loses a partly filled chunk) and a retry
    resumes from the very next byte.
    """
    raw = response.raw
    if not hasattr(raw, "read1"):  # pragma: no cover - urllib3 < 2
        yield from response.iter_content(chunk_size)
        return
    while chunk := raw.read1(chunk_size, decode_content=False):
        yield chunk


def _status(response: requests.Response) -> str:
    return f"HTTP {response.status_code} {response.reason or ''}".rstrip()


class _Attempts:
    """Counts the tries of one operation; waits between them; raises when they are spent."""

    def __init__(self, transport: _Transport, what: str) -> None:
        self.transport = transport
        self.what = what
        self.failures = 0  # failed tries counted against the policy
        self.sent = 0  # requests sent for this operation

    def _attempts(self) -> str:
        return f"{self.sent} attempt{'s' if self.sent != 1 else ''}"

    def failed(self, reason: str, retry_after: float | None = None) -> None:
        """A transient failure: wait and return, or raise once the attempts are spent."""
        policy = self.transport.retry
        self.failures += 1
        if self.failures >= policy.attempts:
            raise RemoteReadError(
                self.transport.url, f"{self.what}: {reason}; gave up after {self._attempts()}"
            )
        self.transport.stats.retries += 1
        time.sleep(policy.delay(self.failures, retry_after))

    def fatal(self, reason: str) -> RemoteReadError:
        """The error for a failure no retry can fix (raise it)."""
        tail = "not retried" if self.sent <= 1 else f"after {self._attempts()}"
        return RemoteReadError(self.transport.url, f"{self.what}: {reason} ({tail})")


class _Transport:
    """Ranged GETs and HEADs of one URL with timeouts, retries and redirect bookkeeping.

    ``final_url`` is where the last redirects led (a signed S3 URL for a DANDI download
    URL); later requests go there directly, and back to ``url`` once if it answers 401/403
    (an expired signature), which resolves the redirect again.
    """

    def __init__(
        self,
        url: str,
        session: requests.Session,
        retry: RetryPolicy,
        stats: TransferStats,
        headers: dict[str, str] | None,
    ) -> None:
        self.url = url
        self.final_url = url
        self.session = session
        self.retry = retry
        self.stats = stats
        self.headers = dict(headers or {})
        self.total: int | None = None  # the file size, once known

    def _request(self, method: str, target: str, extra: dict[str, str], tries: _Attempts):
        headers = dict(self.headers)
        if urlsplit(target).netloc.lower() != urlsplit(self.url).netloc.lower():
            # the credentials for the original host do not go to the redirect target
            headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
        headers["Accept-Encoding"] = "identity"  # byte ranges of the file, not of a gzip
        headers.update(extra)
        self.stats.requests += 1
        tries.sent += 1
        return self.session.request(
            method,
            target,
            headers=headers,
            stream=True,
            timeout=self.retry.timeout,
            allow_redirects=True,
        )

    def probe_size(self) -> int:
        """The file size: HEAD (redirects followed), else a GET of its first byte."""
        tries = _Attempts(self, "finding the file size (HEAD)")
        while True:
            try:
                r = self._request("HEAD", self.url, {}, tries)
            except _TRANSIENT as e:
                tries.failed(_describe(e, self.retry.timeout))
                continue
            except requests.RequestException as e:
                raise tries.fatal(f"{type(e).__name__}: {e}") from None
            with r:
                if r.status_code in self.retry.retry_statuses:
                    tries.failed(_status(r), _retry_after(r))
                    continue
                if 200 <= r.status_code < 300:
                    if r.headers.get("Accept-Ranges", "").strip().lower() == "none":
                        raise tries.fatal(
                            "the server does not support HTTP range requests "
                            "(Accept-Ranges: none), so the file cannot be streamed; "
                            "download it instead"
                        )
                    length = r.headers.get("Content-Length", "").strip()
                    encoding = r.headers.get("Content-Encoding", "identity").strip().lower()
                    if length.isdigit() and encoding in ("", "identity"):
                        self.final_url = r.url
                        self.total = int(length)
                        return self.total
                elif r.status_code not in (403, 405, 501):  # HEAD refused: GET may work
                    raise tries.fatal(_status(r))
            break
        # no usable HEAD (a URL signed for GET only, no Content-Length): ask for one byte
        self.final_url = self.url
        self.get_range(0, 1, lambda chunk: None, what="finding the file size (GET of byte 0)")
        if self.total is None:
            raise RemoteReadError(self.url, "the server did not say the file size")
        return self.total

    def get_range(
        self,
        start: int,
        stop: int | None,
        sink: Callable[[bytes], Any],
        *,
        what: str,
        whole: bool = False,
        on_restart: Callable[[], None] | None = None,
        on_total: Callable[[int], None] | None = None,
        chunk_size: int = _READ_CHUNK,
        progress_resets: int | None = None,
    ) -> int:
        """Feed bytes ``[start, stop)`` (``stop`` None: to the end) to ``sink``, in order.

        A dropped or short body is resumed from the next byte.  ``whole`` accepts a ``200``
        answer with the whole file (a download): at ``start == 0``, or after ``on_restart``
        when a resumed request is answered so.  With ``progress_resets`` a try that delivered
        at least that many bytes resets the failure count (long downloads).  Returns the
        position after the last byte received.
        """
        tries = _Attempts(self, what)
        pos = start
        reresolved = False
        while stop is None or pos < stop:
            target = self.final_url
            asked = f"bytes={pos}-" if stop is None else f"bytes={pos}-{stop - 1}"
            try:
                r = self._request("GET", target, {"Range": asked}, tries)
            except _TRANSIENT as e:
                tries.failed(_describe(e, self.retry.timeout))
                continue
            except requests.RequestException as e:
                raise tries.fatal(f"{type(e).__name__}: {e}") from None
            with r:
                status = r.status_code
                if status in (401, 403) and target != self.url and not reresolved:
                    reresolved = True  # an expired signed URL: resolve the original again
                    self.final_url = self.url
                    self.stats.retries += 1
                    continue
                if status in self.retry.retry_statuses:
                    tries.failed(_status(r), _retry_after(r))
                    continue
                end: int | None  # position after the last byte this answer announces
                if status == 206:
                    parsed = _content_range(r.headers.get("Content-Range"))
                    if parsed is None or parsed[0] is None or parsed[1] is None:
                        raise tries.fatal(
                            f"206 answer to Range: {asked} with an unusable Content-Range "
                            f"{r.headers.get('Content-Range')!r}"
                        )
                    first, last, total = parsed
                    if first != pos or last < first or (stop is not None and last >= stop):
                        raise tries.fatal(
                            f"the server sent bytes {first}-{last} when asked for {asked}"
                        )
                    end = last + 1
                elif status == 200 and whole:
                    if pos > 0:  # resuming from a server without ranges: start over
                        if on_restart is None:
                            raise tries.fatal("the server does not support range requests")
                        on_restart()
                        pos = 0
                    length = r.headers.get("Content-Length", "").strip()
                    end = int(length) if length.isdigit() else None
                    total = end
                elif status == 200:
                    raise tries.fatal(
                        f"the server does not support HTTP range requests (it answered "
                        f"Range: {asked} with 200 and the whole file, not 206), so the file "
                        "cannot be streamed; download it instead"
                    )
                elif status == 416 and whole:
                    parsed = _content_range(r.headers.get("Content-Range"))
                    if parsed is not None and parsed[2] == pos:  # nothing left (empty file)
                        self._learn_total(pos, tries, on_total)
                        return pos
                    raise tries.fatal(_status(r))
                elif status == 416:
                    raise tries.fatal(
                        f"{_status(r)}: the file is shorter than expected (changed on the server?)"
                    )
                else:
                    raise tries.fatal(_status(r))
                encoding = r.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise tries.fatal(f"the server sent the bytes {encoding}-encoded")
                if total is not None:
                    self._learn_total(total, tries, on_total)
                    if stop is None:
                        stop = total
                self.final_url = r.url
                before = pos
                try:
                    for chunk in _body(r, chunk_size):
                        if end is not None and pos + len(chunk) > end:
                            raise tries.fatal(
                                f"the server sent more than the {end - before} bytes announced"
                            )
                        sink(chunk)
                        pos += len(chunk)
                        self.stats.bytes_fetched += len(chunk)
                except _TRANSIENT as e:
                    expected = f" of {end - before}" if end is not None else ""
                    reason = (
                        f"{_describe(e, self.retry.timeout)} after {pos - before}{expected} "
                        "bytes of the body"
                    )
                else:
                    if end is None:  # length unknown and the body ended cleanly: done
                        return pos
                    if pos == end:
                        continue  # all announced bytes (maybe fewer than asked: ask the rest)
                    reason = f"the body ended after {pos - before} of {end - before} bytes"
            if progress_resets is not None and pos - before >= progress_resets:
                tries.failures = 0
            tries.failed(reason)
        return pos

    def _learn_total(
        self, total: int, tries: _Attempts, on_total: Callable[[int], None] | None
    ) -> None:
        if self.total is not None and total != self.total:
            raise tries.fatal(
                f"the server says the file has {total} bytes, not {self.total} as expected "
                "(changed on the server?)"
            )
        if self.total is None:
            self.total = total
            if on_total is not None:
                on_total(total)


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
            raise ValueError(f"block_size must be a positive number of bytes, got {block_size}")
        if size is not None and int(size) < 0:
            raise ValueError(f"size must be >= 0 bytes, got {size}")
        self.url = str(url)
        self.block_size = int(block_size)
        self.retry = retry if retry is not None else RetryPolicy()
        self.stats = stats if stats is not None else TransferStats()
        self.cache = cache
        self._own_session = session is None
        self._transport = _Transport(
            self.url, session or _new_session(), self.retry, self.stats, headers
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


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = True,
    session: requests.Session | None = None,
    stats: TransferStats | None = None,
    chunk_size: int = 1 << 20,
    headers: dict[str, str] | None = None,
) -> Path:
    """Download a whole file, resuming after dropped connections; atomic at ``dest``.

    The bytes go to a temporary sibling ``.partial-<pid>-<random>-<name>`` that replaces
    ``dest`` only once complete and of the expected size, so ``dest`` is never a partial
    file: on failure it is left as it was (absent or the previous file), and the temporary
    is removed (one left by a killed process is removed by the next download or write of
    ``dest``, see :mod:`nwb_facrnn.io.atomic`).  A dropped transfer resumes with a ``Range``
    request from the first missing byte; a try that delivered at least ``chunk_size`` bytes
    does not count against ``retry.attempts``.

    Parameters
    ----------
    url : str
        HTTP(S) URL (redirects are followed).
    dest : path
        Destination file (replaced if it exists; its folder is created).
    size : int, optional
        Expected size (bytes); checked against the server's.  None: the server's.
    retry : RetryPolicy, optional
        Timeouts and retries; default ``RetryPolicy()``.
    progress : bool
        Show a tqdm progress bar (bytes) on stderr.
    session : requests.Session, optional
        Session for the requests; by default one of its own.
    stats : TransferStats, optional
        Counters to add the traffic to.
    chunk_size : int
        Bytes read from the network and written at a time.
    headers : dict, optional
        Extra request headers (credentials are not sent to another host).

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    RemoteReadError
        The download failed after the retries, or at once on an HTTP error such as 404, or
        the size received is not the expected one.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    stats = stats if stats is not None else TransferStats()
    own_session = session is None
    transport = _Transport(
        str(url),
        session or _new_session(),
        retry if retry is not None else RetryPolicy(),
        stats,
        headers,
    )
    if size is not None:
        transport.total = int(size)
    try:
        with (
            atomic_destination(dest, overwrite=True) as tmp,
            open(tmp, "wb") as f,
            tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):

            def sink(chunk: bytes) -> None:
                f.write(chunk)
                bar.update(len(chunk))

            def restart() -> None:
                f.seek(0)
                f.truncate()
                bar.reset(total=transport.total)

            def on_total(total: int) -> None:
                bar.total = total
                bar.refresh()

            end = transport.get_range(
                0,
                transport.total,
                sink,
                what=f"downloading to {dest}",
                whole=True,
                on_restart=restart,
                on_total=on_total,
                chunk_size=int(chunk_size),
                progress_resets=int(chunk_size),
            )
            f.flush()
            written = f.tell()
            expected = transport.total
            if written != end or (expected is not None and written != expected):
                raise RemoteReadError(
                    transport.url,
                    f"downloading to {dest}: received {written} bytes, expected {expected}",
                )
    finally:
        if own_session:
            transport.session.close()
    return dest
