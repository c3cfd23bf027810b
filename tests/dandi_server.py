"""A local stand-in for the DANDI archive, for tests that must not reach the internet.

:class:`FakeDandi` serves, on ``127.0.0.1`` (a free port, a daemon thread, the stdlib
``ThreadingHTTPServer``), the subset of the DANDI REST API that ``dandi.dandiapi.DandiAPIClient``
(dandi 0.81) uses to read a dandiset, plus the blob store the downloads redirect to and plain
file URLs::

    GET /server-info                         instance info (the client asks it in its constructor)
    GET /api/info/                           the same, with ``schema_version``
    GET /api/dandisets/                      dandisets, paginated
    GET /api/dandisets/{id}/                 draft_version, most_recent_published_version, ...
    GET /api/dandisets/{id}/versions/        versions (draft included), paginated, ?order=[-]created
    GET /api/dandisets/{id}/versions/{v}/    the version's (minimal) dandiset metadata
    GET /api/dandisets/{id}/versions/{v}/info/
    GET /api/dandisets/{id}/versions/{v}/assets/  paginated; ?path= (prefix), ?glob=, ?order=
    GET /api/dandisets/{id}/versions/{v}/assets/{asset_id}/         asset metadata
    GET /api/dandisets/{id}/versions/{v}/assets/{asset_id}/info/    asset + metadata
    GET /api/dandisets/{id}/versions/{v}/assets/{asset_id}/download/  302 to the blob
    GET /api/assets/{asset_id}/  .../info/  .../download/          the same without a version
    GET /blobs/{blob_id}                     the bytes (Range support), query string ignored
    GET /files/{name}                        the bytes of a file added with add_file (Range)

HEAD is answered everywhere (headers only).  Anything unknown answers 404
``{"detail": "Not found."}`` like the real API; other methods 405.  Paginated answers carry
``count``, ``next``, ``previous`` and ``results``; ``next`` is the requested URL with
``page=N+1``, the shape with which the client fetches the remaining pages in parallel.  The page
size is ``FakeDandi.page_size`` (default 100) unless the request sends ``page_size``.

Byte ranges (blobs and files): ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` answer 206 with
``Content-Range`` and the exact ``Content-Length``; no Range answers 200 with the whole body; a
range that starts at or past the end (or ``bytes=-0``) answers 416 with ``Content-Range:
bytes */size``.  As RFC 9110 allows, a malformed Range or a multi-range request is ignored (200,
whole body).  Answers carry ``Accept-Ranges: bytes``, ``ETag`` (the quoted dandi-etag) and
``Last-Modified``.

Model: a dandiset exists once an asset is added to it and always has a ``draft`` version; a
published version (``0.YYMMDD.HHMM``) exists once an asset is added to it.  Each
:meth:`FakeDandi.add_asset` call adds an asset to exactly one version: to have a file in both
draft and a published version, add it twice.  As in the archive, an asset left unchanged is
shared by the versions (the same asset id; same path, bytes and format), and blobs are shared by
content (same sha256, same blob id).  The most recent published version is the one with the
latest ``created`` time, which is read from a ``0.YYMMDD.HHMM`` version id (ties and other ids:
the one added last).  Drafts are created ``2020-01-01T00:00:00Z``.

Python API (see each docstring)::

    fake = FakeDandi(page_size=100)            # started; fake.url, fake.api_url
    fake.add_asset(dandiset_id, path, file, version="draft", encoding_format=None) -> asset_id
    fake.add_file(name, file) -> url           # url + "/files/" + name
    fake.blob_of(asset_id) -> blob_id
    fake.bytes_served, fake.requests, fake.reset_counters()
    fake.inject(kind, path_prefix="/", count=1, seconds=0.0); fake.pending_faults()
    fake.close()                               # also a context manager
    block_internet(monkeypatch)                # loopback only, else InternetAccessError

Faults (:meth:`FakeDandi.inject`) apply to the next ``count`` requests whose path (with its
query string) starts with ``path_prefix``; several pending faults are consumed in the order they
were injected.

Behaviour of the dandi client worth knowing when writing tests against this server:

- ``DandiAPIClient(api_url=...)`` makes a request in its constructor (``GET /server-info``, with
  no timeout, cached per URL by ``functools.lru_cache``), and, unless ``DANDI_NO_ET`` is set,
  a version check against the internet (etelemetry).
- A ``RemoteAsset`` from a listing does not keep its metadata: every ``get_raw_metadata()`` (and
  so every ``get_content_url()``, which then HEADs the download URL) is one more GET.
- The client's REST calls have no timeout; only its own downloads (``download()``) use 30 s.
- It retries 429/500/502/503/504 and connection errors up to 12 times with exponential waits
  (1.25 s, 1.56 s, ...); ``Retry-After: 0`` adds nothing.  A body cut short (the ``drop``
  fault on an answer with a body) raises ``requests.exceptions.ChunkedEncodingError``, which it
  does *not* retry.
"""

from __future__ import annotations

import contextlib
import email.utils
import fnmatch
import hashlib
import hmac
import ipaddress
import json
import math
import mimetypes
import os
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

__all__ = [
    "FAULT_KINDS",
    "FakeDandi",
    "InternetAccessError",
    "block_internet",
    "dandi_etag",
    "file_digests",
]

FAULT_KINDS = ("500", "503", "429", "stall", "drop")
try:  # the schema version the installed client speaks, so it has nothing to warn about
    from dandischema.consts import DANDI_SCHEMA_VERSION as SCHEMA_VERSION
except ImportError:  # pragma: no cover
    SCHEMA_VERSION = "0.6.10"
DRAFT = "draft"
_CHUNK = 64 * 1024
PART_SIZE = 64 * 2**20  # of the S3 multipart upload the dandi etag describes
_DRAFT_CREATED = datetime(2020, 1, 1, tzinfo=UTC)
_PUBLISHED_ID = re.compile(r"^0\.(\d{2})(\d{2})(\d{2})\.(\d{2})(\d{2})$")


# ----------------------------------------------------------------------------- digests
def dandi_etag(path: Path) -> str:
    """The DANDI etag of a file: md5 of the concatenated md5s of its S3 multipart parts.

    Computed here from scratch (``PART_SIZE`` = 64 MiB parts; if that makes 10 000 parts or
    more: size / 10 000, rounded up), so tests can check it against
    ``dandi.support.digests.get_dandietag``.
    """
    return file_digests(path)[1]


def file_digests(path: Path) -> tuple[str, str, int]:
    """``(sha256, dandi_etag, size)`` of a file, read once."""
    size = os.path.getsize(path)
    part = PART_SIZE
    if size and math.ceil(size / part) >= 10_000:
        part = math.ceil(size / 10_000)
    sha = hashlib.sha256()
    md5s = []
    with open(path, "rb") as f:
        remaining = size
        while remaining:
            md5 = hashlib.md5()
            todo = min(part, remaining)
            while todo:
                block = f.read(min(todo, 2**20))
                if not block:
                    raise OSError(f"{path} shrank while being hashed")
                md5.update(block)
                sha.update(block)
                todo -= len(block)
                remaining -= len(block)
            md5s.append(md5.digest())
    etag = f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"
    return sha.hexdigest(), etag, size


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


# ----------------------------------------------------------------------------- model
@dataclass
class _Blob:
    blob_id: str
    file: Path
    size: int
    sha256: str
    etag: str
    mtime: float


@dataclass
class _Asset:
    asset_id: str
    dandiset_id: str
    path: str
    blob: _Blob
    encoding_format: str
    created: datetime
    versions: set[str] = field(default_factory=set)  # the versions that hold it


@dataclass
class _Version:
    version: str
    created: datetime
    order: int  # insertion order, breaks ties of `created`
    assets: dict[str, _Asset]  # by path


@dataclass
class _Fault:
    kind: str
    path_prefix: str
    count: int
    seconds: float


# ----------------------------------------------------------------------------- server
class FakeDandi:
    """A DANDI-like archive on ``127.0.0.1``; start it by constructing it, stop it with close().

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:PORT``.
    api_url : str
        ``url + "/api"``, what ``DandiAPIClient(api_url=...)`` takes.
    page_size : int
        Results per page of the paginated endpoints when the request sends no ``page_size``.
    bytes_served : dict[str, int]
        Payload bytes handed to the socket per blob id or file name (GET bodies of
        ``/blobs/`` and ``/files/``, ranges and cut-short bodies included; HEAD counts 0).
    requests : list[tuple[str, str, str | None]]
        ``(method, path with query string, Range header)`` of every request, in arrival order.
    """

    def __init__(self, page_size: int = 100) -> None:
        self.page_size = page_size
        self.bytes_served: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._dandisets: dict[str, dict[str, _Version]] = {}
        self._assets: dict[str, _Asset] = {}
        self._blobs: dict[str, _Blob] = {}
        self._blobs_by_sha: dict[str, _Blob] = {}
        self._files: dict[str, _Blob] = {}
        self._faults: list[_Fault] = []
        self._connections: set[socket.socket] = set()
        self._secret = os.urandom(16)
        self._version_order = 0

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self.api_url = self.url + "/api"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeDandi:{port}",
            daemon=True,
        )
        self._thread.start()

    # ------------------------------------------------------------------ content
    def add_asset(
        self,
        dandiset_id: str,
        path: str,
        file: Path,
        version: str = DRAFT,
        encoding_format: str | None = None,
    ) -> str:
        """Add ``file`` as the asset at ``path`` of ``dandiset_id``/``version``; its asset id.

        The dandiset (with its draft) is created on first use; a ``version`` other than
        ``"draft"`` is published by this call if it was not yet.  ``encoding_format`` defaults
        to ``application/x-nwb`` for ``.nwb``, else a guess from the suffix, else
        ``application/octet-stream``.  The file is read now (digests) and at every download,
        so it must stay in place.  An asset already at ``path`` in that version is replaced.

        As in the archive, an unchanged asset is shared by versions: if another version of the
        dandiset has an asset at ``path`` with the same bytes and format, that asset (and its
        id) is added to this version too; otherwise a new asset id is made.
        """
        file = Path(file)
        path = path.strip("/")
        if encoding_format is None:
            encoding_format = _guess_type(path)
        blob = self._blob_for(file)
        with self._lock:
            v = self._version(dandiset_id, version)
            same = [
                a
                for other in self._dandisets[dandiset_id].values()
                if (a := other.assets.get(path)) is not None
                and a.blob is blob
                and a.encoding_format == encoding_format
            ]
            asset = same[0] if same else None
            old = v.assets.pop(path, None)
            if old is not None and old is not asset:
                old.versions.discard(version)
                if not old.versions:
                    del self._assets[old.asset_id]
            if asset is None:
                asset = _Asset(
                    str(uuid.uuid4()), dandiset_id, path, blob, encoding_format, datetime.now(UTC)
                )
                self._assets[asset.asset_id] = asset
            asset.versions.add(version)
            v.assets[path] = asset
        return asset.asset_id

    def add_file(self, name: str, file: Path) -> str:
        """Serve ``file`` at ``url + "/files/" + name`` (a plain, non-DANDI URL); that URL."""
        name = name.strip("/")
        blob = self._blob_for(Path(file), register=False)
        with self._lock:
            self._files[name] = blob
        return f"{self.url}/files/{quote(name)}"

    def blob_of(self, asset_id: str) -> str:
        """The blob id behind an asset (the key of its bytes in ``bytes_served``)."""
        with self._lock:
            return self._assets[asset_id].blob.blob_id

    # ------------------------------------------------------------------ counters and faults
    def reset_counters(self) -> None:
        """Empty ``bytes_served`` and ``requests`` (pending faults stay)."""
        with self._lock:
            self.bytes_served.clear()
            self.requests.clear()

    def inject(
        self, kind: str, *, path_prefix: str = "/", count: int = 1, seconds: float = 0.0
    ) -> None:
        """Make the next ``count`` requests whose path starts with ``path_prefix`` fail.

        Kinds:

        - ``"500"``, ``"503"``: that status with a JSON ``detail``;
        - ``"429"``: 429 with ``Retry-After: 0``;
        - ``"stall"``: wait ``seconds`` (e.g. past the client's timeout), then answer normally
          (if the client is still there); close() ends the wait at once;
        - ``"drop"``: an answer with a body: the headers (full ``Content-Length``) and the first
          half of the body, then the connection is closed; an answer without a body (HEAD, a
          redirect): the connection is closed without any answer.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._faults.append(_Fault(kind, path_prefix, count, float(seconds)))

    def pending_faults(self) -> int:
        """How many faulty answers are still to come (all kinds)."""
        with self._lock:
            return sum(f.count for f in self._faults)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop serving: ends stalls, closes open connections, joins the server thread."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeDandi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _blob_for(self, file: Path, register: bool = True) -> _Blob:
        if not file.is_file():
            raise FileNotFoundError(file)
        sha, etag, size = file_digests(file)
        with self._lock:
            blob = self._blobs_by_sha.get(sha) if register else None
            if blob is None:
                blob = _Blob(str(uuid.uuid4()), file, size, sha, etag, file.stat().st_mtime)
                if register:
                    self._blobs_by_sha[sha] = blob
                    self._blobs[blob.blob_id] = blob
        return blob

    def _version(self, dandiset_id: str, version: str) -> _Version:
        """The version, created if missing (call with the lock held)."""
        versions = self._dandisets.setdefault(dandiset_id, {})
        if version not in versions:
            if version == DRAFT:
                created = _DRAFT_CREATED
            else:
                m = _PUBLISHED_ID.match(version)
                created = datetime.now(UTC)
                if m:
                    with contextlib.suppress(ValueError):
                        yy, mo, dd, hh, mi = (int(g) for g in m.groups())
                        created = datetime(2000 + yy, mo, dd, hh, mi, tzinfo=UTC)
            self._version_order += 1
            versions[version] = _Version(version, created, self._version_order, {})
            if DRAFT not in versions:
                versions[DRAFT] = _Version(DRAFT, _DRAFT_CREATED, 0, {})
        return versions[version]

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.count > 0 and path.startswith(f.path_prefix):
                    f.count -= 1
                    if f.count == 0:
                        self._faults.remove(f)
                    return f
        return None

    def _count(self, key: str, n: int) -> None:
        with self._lock:
            self.bytes_served[key] = self.bytes_served.get(key, 0) + n

    # JSON documents (called with the lock held) ---------------------------------------
    def _server_info(self) -> dict:
        return {
            "version": "0.0.0+fake",
            "cli-minimal-version": "0.0.0",
            "cli-bad-versions": [],
            "schema_version": SCHEMA_VERSION,
            "schema_url": f"{self.url}/schema/{SCHEMA_VERSION}/dandiset.json",
            "allowed_schema_versions": [SCHEMA_VERSION],
            "services": {
                "api": {"url": self.api_url},
                "webui": {"url": self.url},
                "jupyterhub": {"url": self.url},
            },
        }

    def _version_json(self, dandiset_id: str, v: _Version) -> dict:
        modified = max([v.created, *(a.created for a in v.assets.values())])
        return {
            "version": v.version,
            "name": f"Fake dandiset {dandiset_id}",
            "asset_count": len(v.assets),
            "size": sum(a.blob.size for a in v.assets.values()),
            "status": "Valid",
            "created": _iso(v.created),
            "modified": _iso(modified),
        }

    def _latest_published(self, dandiset_id: str) -> _Version | None:
        published = [v for k, v in self._dandisets[dandiset_id].items() if k != DRAFT]
        return max(published, key=lambda v: (v.created, v.order), default=None)

    def _dandiset_json(self, dandiset_id: str) -> dict:
        versions = self._dandisets[dandiset_id]
        draft = versions[DRAFT]
        latest = self._latest_published(dandiset_id)
        return {
            "identifier": dandiset_id,
            "created": _iso(_DRAFT_CREATED),
            "modified": self._version_json(dandiset_id, draft)["modified"],
            "contact_person": "Fake, Person",
            "embargo_status": "OPEN",
            "star_count": 0,
            "is_starred": False,
            "most_recent_published_version": (
                self._version_json(dandiset_id, latest) if latest is not None else None
            ),
            "draft_version": self._version_json(dandiset_id, draft),
        }

    def _dandiset_metadata(self, dandiset_id: str, v: _Version) -> dict:
        vj = self._version_json(dandiset_id, v)
        return {
            "@context": "https://raw.githubusercontent.com/dandi/schema/master/releases/"
            f"{SCHEMA_VERSION}/context.json",
            "schemaKey": "Dandiset",
            "schemaVersion": SCHEMA_VERSION,
            "id": f"DANDI:{dandiset_id}/{v.version}",
            "identifier": f"DANDI:{dandiset_id}",
            "name": vj["name"],
            "version": v.version,
            "url": f"{self.url}/dandiset/{dandiset_id}/{v.version}",
            "assetsSummary": {
                "schemaKey": "AssetsSummary",
                "numberOfBytes": vj["size"],
                "numberOfFiles": vj["asset_count"],
            },
        }

    def _asset_row(self, a: _Asset) -> dict:
        return {
            "asset_id": a.asset_id,
            "blob": a.blob.blob_id,
            "zarr": None,
            "path": a.path,
            "size": a.blob.size,
            "created": _iso(a.created),
            "modified": _iso(a.created),
        }

    def _asset_metadata(self, a: _Asset) -> dict:
        return {
            "@context": "https://raw.githubusercontent.com/dandi/schema/master/releases/"
            f"{SCHEMA_VERSION}/context.json",
            "schemaKey": "Asset",
            "schemaVersion": SCHEMA_VERSION,
            "id": f"dandiasset:{a.asset_id}",
            "identifier": a.asset_id,
            "path": a.path,
            "contentSize": a.blob.size,
            "encodingFormat": a.encoding_format,
            "digest": {"dandi:dandi-etag": a.blob.etag, "dandi:sha2-256": a.blob.sha256},
            "contentUrl": [
                f"{self.api_url}/assets/{a.asset_id}/download/",
                f"{self.url}/blobs/{a.blob.blob_id}",
            ],
            "dateModified": _iso(a.created),
            "blobDateModified": _iso(datetime.fromtimestamp(a.blob.mtime, UTC)),
            "access": [{"schemaKey": "AccessRequirements", "status": "dandi:OpenAccess"}],
        }

    def _signed_blob_url(self, a: _Asset) -> str:
        sig = hmac.new(self._secret, a.blob.blob_id.encode(), "sha256").hexdigest()
        query = urlencode(
            {
                "response-content-disposition": f'attachment; filename="{Path(a.path).name}"',
                "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                "X-Amz-Expires": "3600",
                "X-Amz-Signature": sig,
            },
            quote_via=quote,
        )
        return f"{self.url}/blobs/{a.blob.blob_id}?{query}"


def _guess_type(path: str) -> str:
    if path.lower().endswith(".nwb"):
        return "application/x-nwb"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


class _NotFound(Exception):
    pass


_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p + "/?$"), name)
    for p, name in [
        (r"/server-info", "info"),
        (r"/api/info", "info"),
        (r"/api/dandisets", "dandisets"),
        (r"/api/dandisets/(?P<d>[^/]+)", "dandiset"),
        (r"/api/dandisets/(?P<d>[^/]+)/versions", "versions"),
        (r"/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)", "version_metadata"),
        (r"/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/info", "version_info"),
        (r"/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/assets", "assets"),
        (r"/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/assets/(?P<a>[^/]+)", "asset"),
        (
            r"/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/assets/(?P<a>[^/]+)/info",
            "asset_info",
        ),
        (
            r"/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/assets/(?P<a>[^/]+)/download",
            "download",
        ),
        (r"/api/assets/(?P<a>[^/]+)", "asset"),
        (r"/api/assets/(?P<a>[^/]+)/info", "asset_info"),
        (r"/api/assets/(?P<a>[^/]+)/download", "download"),
        (r"/blobs/(?P<b>[^/]+)", "blob"),
        (r"/files/(?P<f>.+)", "file"),
    ]
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeDandi/1.0"
    timeout = 10  # an idle keep-alive connection is closed after this many seconds

    server: ThreadingHTTPServer

    # ------------------------------------------------------------------ plumbing
    @property
    def fake(self) -> FakeDandi:
        return self.server.fake  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _not_allowed(self) -> None:
        self._dispatch(head=False)

    do_POST = do_PUT = do_PATCH = do_DELETE = _not_allowed

    def _send_head(self, status: int, headers: dict[str, str], length: int) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _bytes(self, status: int, headers: dict[str, str], body: bytes) -> None:
        if self._drop:
            self.close_connection = True
            if self._head or len(body) < 2:
                return  # closed without any answer
            self._send_head(status, headers, len(body))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            return
        self._send_head(status, headers, len(body))
        if not self._head:
            self.wfile.write(body)

    def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self._bytes(status, {"Content-Type": "application/json", **(headers or {})}, body)

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, head: bool) -> None:
        fake = self.fake
        self._head = head
        self._drop = False
        with fake._lock:
            fake.requests.append((self.command, self.path, self.headers.get("Range")))
        try:
            fault = fake._take_fault(self.path)
            if fault is not None:
                if fault.kind == "stall":
                    if fake._closing.wait(fault.seconds):
                        self.close_connection = True
                        return
                elif fault.kind == "drop":
                    self._drop = True
                else:
                    status = int(fault.kind)
                    extra = {"Retry-After": "0"} if status == 429 else {}
                    self._json(status, {"detail": f"Injected fault {status}."}, extra)
                    return
            if self.command in ("GET", "HEAD"):
                self._route()
            else:
                self.close_connection = True  # a request body, if any, was not read
                self._json(405, {"detail": f'Method "{self.command}" not allowed.'})
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    def _route(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        self._query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for pattern, name in _ROUTES:
            m = pattern.match(path)
            if m:
                try:
                    getattr(self, "_r_" + name)(**m.groupdict())
                except _NotFound:
                    self._json(404, {"detail": "Not found."})
                return
        self._json(404, {"detail": "Not found."})

    # ------------------------------------------------------------------ lookups (lock held)
    def _v(self, d: str, v: str) -> _Version:
        try:
            return self.fake._dandisets[d][v]
        except KeyError:
            raise _NotFound from None

    def _a(self, a: str, d: str | None = None, v: str | None = None) -> _Asset:
        asset = self.fake._assets.get(a)
        if asset is None or (d is not None and (asset.dandiset_id != d or v not in asset.versions)):
            raise _NotFound
        return asset

    def _page(self, items: list) -> dict:
        try:
            size = int(self._query.get("page_size") or self.fake.page_size)
            page = int(self._query.get("page") or 1)
        except ValueError:
            raise _NotFound from None
        size = max(1, min(size, 1000))
        pages = max(1, math.ceil(len(items) / size))
        if not 1 <= page <= pages:
            raise _NotFound
        base = self.fake.url + urlsplit(self.path).path

        def link(n: int) -> str | None:
            if not 1 <= n <= pages:
                return None
            return base + "?" + urlencode({**self._query, "page": str(n)})

        return {
            "count": len(items),
            "next": link(page + 1),
            "previous": link(page - 1),
            "results": items[(page - 1) * size : page * size],
        }

    # ------------------------------------------------------------------ routes
    def _r_info(self) -> None:
        with self.fake._lock:
            doc = self.fake._server_info()
        self._json(200, doc)

    def _r_dandisets(self) -> None:
        fake = self.fake
        with fake._lock:
            doc = self._page([fake._dandiset_json(d) for d in sorted(fake._dandisets)])
        self._json(200, doc)

    def _r_dandiset(self, d: str) -> None:
        fake = self.fake
        with fake._lock:
            if d not in fake._dandisets:
                raise _NotFound
            doc = fake._dandiset_json(d)
        self._json(200, doc)

    def _r_versions(self, d: str) -> None:
        fake = self.fake
        with fake._lock:
            if d not in fake._dandisets:
                raise _NotFound
            versions = sorted(fake._dandisets[d].values(), key=lambda v: (v.created, v.order))
            if self._query.get("order", "").startswith("-"):
                versions.reverse()
            doc = self._page([fake._version_json(d, v) for v in versions])
        self._json(200, doc)

    def _r_version_metadata(self, d: str, v: str) -> None:
        fake = self.fake
        with fake._lock:
            doc = fake._dandiset_metadata(d, self._v(d, v))
        self._json(200, doc)

    def _r_version_info(self, d: str, v: str) -> None:
        fake = self.fake
        with fake._lock:
            ver = self._v(d, v)
            doc = {
                **fake._version_json(d, ver),
                "dandiset": {
                    k: val
                    for k, val in fake._dandiset_json(d).items()
                    if k not in ("most_recent_published_version", "draft_version")
                },
                "metadata": fake._dandiset_metadata(d, ver),
                "contact_person": "Fake, Person",
                "asset_validation_errors": [],
                "version_validation_errors": [],
            }
        self._json(200, doc)

    def _r_assets(self, d: str, v: str) -> None:
        fake = self.fake
        q = self._query
        with fake._lock:
            assets = list(self._v(d, v).assets.values())
            if "path" in q:
                assets = [a for a in assets if a.path.startswith(q["path"])]
            if q.get("glob"):
                assets = [a for a in assets if fnmatch.fnmatchcase(a.path, q["glob"])]
            order = q.get("order") or "created"
            key = order.lstrip("-")
            if key not in ("created", "modified", "path"):
                key = "created"
            assets.sort(key=lambda a: a.path if key == "path" else (a.created, a.path))
            if order.startswith("-"):
                assets.reverse()
            doc = self._page([fake._asset_row(a) for a in assets])
        self._json(200, doc)

    def _r_asset(self, a: str, d: str | None = None, v: str | None = None) -> None:
        with self.fake._lock:
            doc = self.fake._asset_metadata(self._a(a, d, v))
        self._json(200, doc)

    def _r_asset_info(self, a: str, d: str | None = None, v: str | None = None) -> None:
        fake = self.fake
        with fake._lock:
            asset = self._a(a, d, v)
            doc = {**fake._asset_row(asset), "metadata": fake._asset_metadata(asset)}
        self._json(200, doc)

    def _r_download(self, a: str, d: str | None = None, v: str | None = None) -> None:
        with self.fake._lock:
            location = self.fake._signed_blob_url(self._a(a, d, v))
        self._bytes(302, {"Location": location}, b"")

    def _r_blob(self, b: str) -> None:
        with self.fake._lock:
            blob = self.fake._blobs.get(b)
        if blob is None:
            raise _NotFound
        self._serve(blob, blob.blob_id, "application/octet-stream")

    def _r_file(self, f: str) -> None:
        with self.fake._lock:
            blob = self.fake._files.get(f)
        if blob is None:
            raise _NotFound
        self._serve(blob, f, mimetypes.guess_type(f)[0] or "application/octet-stream")

    # ------------------------------------------------------------------ bytes with ranges
    def _serve(self, blob: _Blob, key: str, content_type: str) -> None:
        size = blob.size
        headers = {
            "Content-Type": content_type,
            "Accept-Ranges": "bytes",
            "ETag": f'"{blob.etag}"',
            "Last-Modified": email.utils.formatdate(blob.mtime, usegmt=True),
        }
        rng = _parse_range(self.headers.get("Range"), size)
        if rng == "unsatisfiable":
            self._bytes(416, {**headers, "Content-Range": f"bytes */{size}"}, b"")
            return
        if rng is None:
            status, start, length = 200, 0, size
        else:
            start, end = rng
            status, length = 206, end - start + 1
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if self._drop and (self._head or length < 2):
            self.close_connection = True
            return
        self._send_head(status, headers, length)
        if self._head:
            return
        todo = length // 2 if self._drop else length
        with open(blob.file, "rb") as fh:
            fh.seek(start)
            while todo > 0:
                chunk = fh.read(min(_CHUNK, todo))
                if not chunk:
                    break
                # counted before the write, so a client that has the bytes sees them counted
                self.fake._count(key, len(chunk))
                try:
                    self.wfile.write(chunk)
                except OSError:
                    self.fake._count(key, -len(chunk))
                    raise
                todo -= len(chunk)
        if self._drop:
            self.close_connection = True
            self.wfile.flush()


def _parse_range(value: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` inclusive, ``"unsatisfiable"``, or None (no or ignored Range)."""
    if not value:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None  # other units, multiple ranges, garbage: ignored
    first, last = m.groups()
    if first == "":  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        return "unsatisfiable"
    return start, size - 1 if last == "" else min(int(last), size - 1)


# ----------------------------------------------------------------------------- network guard
class InternetAccessError(RuntimeError):
    """A test tried to open a connection to (or resolve) a host other than this machine.

    Not an ``OSError``, so that neither urllib3 nor the dandi client (which retries connection
    errors 12 times) mistakes it for a network failure to retry.
    """


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None or host == "" or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def block_internet(monkeypatch) -> None:
    """Allow sockets to reach loopback addresses only, for the rest of the test.

    ``socket.socket.connect``/``connect_ex`` to any other IP address, and ``socket.getaddrinfo``
    of any name but ``localhost``, raise :class:`InternetAccessError`.  Unix sockets are allowed.
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            if not _is_local(address[0]):
                raise InternetAccessError(f"test tried to connect to {address!r}")

    def connect(self, address):
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            raise InternetAccessError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
