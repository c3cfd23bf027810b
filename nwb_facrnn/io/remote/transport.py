"""HTTP requests of one URL with timeouts and retries: the transport under streaming and downloads.

:class:`RetryPolicy` says how long to wait and how often to try again; a :class:`Transport`
sends ranged GETs (and HEADs for the size) under it, resuming dropped bodies, following and
remembering redirects and keeping credentials from other hosts; :class:`TransferStats` counts
the traffic, and :class:`RemoteReadError` reports a URL that cannot be read.
"""

from __future__ import annotations

import http.client
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ... import __version__
from ...errors import OptionError, UserError

#: Environment variable overriding the timeouts of every request (seconds).
TIMEOUT_ENV = "NWB_FACRNN_HTTP_TIMEOUT"
#: Environment variable overriding the attempts of every request.
RETRIES_ENV = "NWB_FACRNN_HTTP_RETRIES"
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


class RemoteReadError(UserError, OSError):
    """Reading a URL failed: after the retries, or at once for an error retries cannot fix.

    An unreachable or failing remote source is a problem with the input, not a bug: a
    :class:`~nwb_facrnn.errors.UserError` (and an ``OSError``, as before).

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
            raise OptionError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        if self.backoff < 0 or self.max_wait < 0:
            raise OptionError("RetryPolicy.backoff and max_wait must be >= 0 seconds")
        raw = self.timeout
        timeout = (
            (float(raw), float(raw)) if isinstance(raw, int | float) else tuple(map(float, raw))
        )
        if len(timeout) != 2 or min(timeout) <= 0:
            raise OptionError(
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


def timeout_from_env() -> float | None:
    """``$NWB_FACRNN_HTTP_TIMEOUT``: seconds without an answer before a request fails.

    None where the variable is unset or empty; :class:`~nwb_facrnn.errors.OptionError`
    where it is not a number > 0.
    """
    return _from_env(TIMEOUT_ENV, float, "a number of seconds > 0", lambda seconds: seconds > 0)


def attempts_from_env() -> int | None:
    """``$NWB_FACRNN_HTTP_RETRIES``: total tries of one request (like :func:`timeout_from_env`,
    a whole number >= 1)."""
    return _from_env(RETRIES_ENV, int, "a whole number of attempts >= 1", lambda n: n >= 1)


def _from_env(name: str, convert: Callable[[str], Any], expected: str, valid: Callable) -> Any:
    """The environment variable ``name`` converted, None if unset or empty; else OptionError."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = convert(value)
    except ValueError:
        number = None
    if number is None or not valid(number):
        raise OptionError(f"{name} must be {expected}, got {value!r}")
    return number


def new_session() -> requests.Session:
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


def _encoding(response: requests.Response) -> str:
    """The answer's ``Content-Encoding``, lower case (``identity`` when absent)."""
    return response.headers.get("Content-Encoding", "identity").strip().lower()


class _Attempts:
    """Counts the tries of one operation; waits between them; raises when they are spent."""

    def __init__(self, transport: Transport, what: str) -> None:
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


class Transport:
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

    def _send(
        self, method: str, target: str, extra: dict[str, str], tries: _Attempts
    ) -> requests.Response | None:
        """One request, or None after a transient failure (waited for: send again).

        A request error that a retry cannot fix raises :class:`RemoteReadError`.
        """
        try:
            return self._request(method, target, extra, tries)
        except _TRANSIENT as e:
            tries.failed(_describe(e, self.retry.timeout))
        except requests.RequestException as e:
            raise tries.fatal(f"{type(e).__name__}: {e}") from None
        return None

    def _retried(self, r: requests.Response, tries: _Attempts) -> bool:
        """True after waiting to retry an answer whose status is worth another try."""
        if r.status_code not in self.retry.retry_statuses:
            return False
        tries.failed(_status(r), _retry_after(r))
        return True

    def probe_size(self) -> int:
        """The file size: HEAD (redirects followed), else a GET of its first byte."""
        tries = _Attempts(self, "finding the file size (HEAD)")
        while True:
            r = self._send("HEAD", self.url, {}, tries)
            if r is None:
                continue
            with r:
                if self._retried(r, tries):
                    continue
                if 200 <= r.status_code < 300:
                    if r.headers.get("Accept-Ranges", "").strip().lower() == "none":
                        raise tries.fatal(
                            "the server does not support HTTP range requests "
                            "(Accept-Ranges: none), so the file cannot be streamed; "
                            "download it instead"
                        )
                    length = r.headers.get("Content-Length", "").strip()
                    if length.isdigit() and _encoding(r) in ("", "identity"):
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
            r = self._send("GET", target, {"Range": asked}, tries)
            if r is None:
                continue
            with r:
                status = r.status_code
                if status in (401, 403) and target != self.url and not reresolved:
                    reresolved = True  # an expired signed URL: resolve the original again
                    self.final_url = self.url
                    self.stats.retries += 1
                    continue
                if self._retried(r, tries):
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
                encoding = _encoding(r)
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
