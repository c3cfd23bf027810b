"""Remote sources: DANDI assets by ID or URL, and plain HTTP(S) URLs of NWB files.

Accepted forms (everywhere a path is accepted):

- ``DANDI:000140/sub-Jenkins/sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb``, with an
  optional version ``DANDI:000140@0.220113.0408/...``; ``DANDI:000140`` alone names the
  dandiset (``nwb-facrnn info`` lists its NWB assets);
- archive URLs (``https://dandiarchive.org/dandiset/000140/draft/files?location=...``),
  ``dandi://`` URLs and asset download URLs (``https://api.dandiarchive.org/api/assets/<id>/
  download/``), parsed by the dandi client's own URL parser;
- any other ``http(s)://`` URL of an NWB (HDF5) file.

Which DANDI instance answers: ``dandi_api_url=`` (CLI ``--dandi-api-url``), else the
environment variable ``DANDI_API_URL``, else the instance the URL names (the public archive for
``DANDI:`` IDs).  Embargoed data: set ``DANDI_API_KEY``.  All REST calls go through
``dandi.dandiapi.DandiAPIClient``; this module adds a timeout to every call (the client has
none, so a stalled server would hang it) and turns the client's errors into messages that say
what was not found and list close matches.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import itertools
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .errors import NWBReadError

PUBLIC_API_URL = "https://api.dandiarchive.org/api"
_PATCH_LOCK = threading.Lock()
MAX_LISTED = 1000  # dandisets compared with a missing id (the archive lists ~1000 per 10 pages)
NWB_FORMATS = ("application/x-nwb",)
API_TIMEOUT = (10.0, 60.0)  # connect, read (s) for every REST call

_DANDI_ID = re.compile(r"^DANDI:(?P<id>\d{6})(?:@(?P<version>[^/\s]+))?(?:/(?P<path>.*))?$", re.I)


class RemoteSourceError(NWBReadError):
    """A remote source that cannot be resolved: not found, not NWB, unreachable."""


@dataclass
class RemoteAsset:
    """A resolved remote NWB file.

    Attributes
    ----------
    source : str
        What the user gave.
    url : str
        Where the bytes are (a DANDI download URL, which redirects to the blob, or the URL).
    size : int or None
        Bytes.
    name : str
        How messages and provenance name it: ``DANDI:000140@draft/sub-Jenkins/...`` or the URL.
    cache_key : str
        Key of its blocks in the cache: the asset id and digest, so a changed asset is fetched
        again.
    dandi : dict
        ``api_url``, ``dandiset_id``, ``version``, ``path``, ``asset_id``, ``digest`` (empty for
        a plain URL).
    headers : dict
        HTTP headers for the requests (the API token of embargoed data).
    """

    source: str
    url: str
    size: int | None
    name: str
    cache_key: str
    dandi: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def is_remote(source: Any) -> bool:
    """True for ``DANDI:`` IDs and ``dandi://``, ``http://`` and ``https://`` URLs."""
    if not isinstance(source, str):
        return False
    s = source.strip()
    return bool(_DANDI_ID.match(s)) or s.lower().startswith(("dandi://", "http://", "https://"))


def api_url_for(dandi_api_url: str | None = None, parsed_api: str | None = None) -> str:
    """The API URL to use: the argument, ``DANDI_API_URL``, the URL's instance, the archive."""
    if dandi_api_url:
        _EXPLICIT.add(dandi_api_url.rstrip("/"))
    url = dandi_api_url or os.environ.get("DANDI_API_URL") or parsed_api or PUBLIC_API_URL
    return url.rstrip("/")


@dataclass
class _Parsed:
    kind: str  # "asset", "dandiset", "asset_id", "url"
    dandiset_id: str | None = None
    version: str | None = None
    path: str | None = None
    asset_id: str | None = None
    api_url: str | None = None


def parse_source(source: str) -> _Parsed:
    """What a remote source names, without any network access."""
    s = source.strip()
    m = _DANDI_ID.match(s)
    if m:
        path = (m.group("path") or "").strip("/")
        kind = "asset" if path else "dandiset"
        return _Parsed(kind, m.group("id"), m.group("version"), path or None)
    from dandi.dandiarchive import (
        AssetFolderURL,
        AssetIDURL,
        AssetItemURL,
        AssetPathPrefixURL,
        BaseAssetIDURL,
        DandisetURL,
        parse_dandi_url,
    )
    from dandi.exceptions import UnknownURLError

    if not _looks_like_dandi(s):  # a plain URL: the dandi parser would request it
        return _Parsed("url")
    try:
        with _offline_instances():
            parsed = parse_dandi_url(s, map_instance=False)
    except UnknownURLError:
        return _Parsed("url")
    api = getattr(getattr(parsed, "instance", None), "api", None)
    if isinstance(parsed, BaseAssetIDURL | AssetIDURL):
        return _Parsed("asset_id", asset_id=parsed.asset_id, api_url=api)
    if isinstance(parsed, AssetItemURL | AssetFolderURL | AssetPathPrefixURL):
        path = str(parsed.path).strip("/")
        return _Parsed(
            "asset" if path else "dandiset", parsed.dandiset_id, parsed.version_id, path, None, api
        )
    if isinstance(parsed, DandisetURL):
        return _Parsed("dandiset", parsed.dandiset_id, parsed.version_id, api_url=api)
    if s.lower().startswith("http"):
        return _Parsed("url")
    raise RemoteSourceError(s, "/", f"a DANDI URL of a kind that is not supported here ({parsed})")


def _looks_like_dandi(url: str) -> bool:
    """``dandi://`` URLs, the archive's hosts, and DANDI API or web-app paths on any host."""
    from urllib.parse import urlparse

    u = urlparse(url)
    return (
        u.scheme == "dandi"
        or "dandiarchive.org" in u.netloc
        or bool(re.search(r"/api/(assets|dandisets)/", u.path))
        or u.path.startswith("/dandiset/")
    )


@contextlib.contextmanager
def _offline_instances():
    """Parse URLs without the instance lookup the dandi parser makes.

    ``parse_dandi_url`` asks the instance's server for its info (a request without a
    timeout, which can hang offline); the instance it finds only names the API, which
    :func:`api_url_for` decides here anyway.  The known instances' hard-coded URLs are used.
    """
    import dandi.dandiarchive as da
    import dandi.utils as du
    from dandi.consts import DandiInstance

    def offline(url, is_api, instance, dandi_id):
        if instance is not None:
            return instance
        return DandiInstance(name=dandi_id or url, gui=None, api=url if is_api else f"{url}/api")

    def no_redirect(url):  # the parser would HEAD the URL (up to ~18 min of retries)
        raise RemoteSourceError(
            url,
            "/",
            "a DANDI URL that names no dandiset or asset; use DANDI:<id>/<path>, a dandi:// URL, "
            "an archive URL with ?location=, or an asset download URL",
        )

    with _PATCH_LOCK:
        instance, redirect = du._get_instance, da._dandi_url_parser.follow_redirect
        du._get_instance, da._dandi_url_parser.follow_redirect = offline, no_redirect
        try:
            yield
        finally:
            du._get_instance, da._dandi_url_parser.follow_redirect = instance, redirect


def client_for(api_url: str):
    """A ``DandiAPIClient`` for ``api_url`` whose every request has a timeout.

    ``DANDI_API_KEY`` authenticates it (embargoed dandisets).
    """
    from dandi.consts import DandiInstance
    from dandi.dandiapi import DandiAPIClient

    os.environ.setdefault("DANDI_NO_ET", "1")  # the client's version check would call out
    # an explicit instance: the client does not look it up (a request without a timeout)
    client = DandiAPIClient(dandi_instance=DandiInstance(name=api_url, gui=None, api=api_url))
    request = client.session.request
    timeout = _api_timeout()

    @functools.wraps(request)
    def with_timeout(*args, **kwargs):
        kwargs.setdefault("timeout", timeout)
        return request(*args, **kwargs)

    client.session.request = with_timeout
    token = api_token(api_url)
    if token:
        with _api_errors(api_url, api_url):
            client.authenticate(token)
    return client


def _api_timeout() -> tuple[float, float]:
    from .remote.transport import timeout_from_env

    value = timeout_from_env()
    return (value, value) if value is not None else API_TIMEOUT


def api_token(api_url: str) -> str | None:
    """``DANDI_API_KEY``, for the public archive or the instance the user chose explicitly.

    A key is never sent to an API found in a URL the user did not configure.
    """
    token = os.environ.get("DANDI_API_KEY")
    chosen = {PUBLIC_API_URL, os.environ.get("DANDI_API_URL", "").rstrip("/")} | _EXPLICIT
    return token if token and api_url.rstrip("/") in chosen else None


_EXPLICIT: set[str] = set()  # API URLs given as dandi_api_url= in this process


def resolve(source: str, dandi_api_url: str | None = None) -> RemoteAsset:
    """Resolve a remote source to the asset (URL, size, digest) to stream.

    Raises
    ------
    RemoteSourceError
        The dandiset, version or path does not exist (with close matches), the asset is not
        NWB, or the server cannot be reached.
    """
    parsed = parse_source(source)
    if parsed.kind == "url":
        url = source.strip()
        return RemoteAsset(source, url, None, public_url(url), _url_key(url))
    if parsed.kind == "dandiset":
        raise RemoteSourceError(
            source,
            "/",
            "names a whole dandiset; add the path of one NWB asset "
            f"(`nwb-facrnn info DANDI:{parsed.dandiset_id}` lists them)",
        )
    api = api_url_for(dandi_api_url, parsed.api_url)
    client = client_for(api)
    with _api_errors(source, api):
        if parsed.kind == "asset_id":
            asset = client.get_asset(parsed.asset_id)
            dandiset_id = version = None
        else:
            dandiset = _dandiset(client, source, parsed.dandiset_id, parsed.version)
            asset = _asset_by_path(dandiset, source, parsed.path)
            dandiset_id, version = dandiset.identifier, dandiset.version_id
        meta = asset.get_raw_metadata()
    _check_nwb(source, asset, meta)
    digest = meta.get("digest") or {}
    etag = digest.get("dandi:dandi-etag") or digest.get("dandi:sha2-256") or ""
    name = (
        f"DANDI:{dandiset_id}@{version}/{asset.path}"
        if dandiset_id
        else f"DANDI asset {asset.identifier} ({asset.path})"
    )
    headers = {}
    token = api_token(api)
    if token:
        headers["Authorization"] = f"token {token}"
    return RemoteAsset(
        source=source,
        url=getattr(asset, "download_url", None) or asset.base_download_url,
        size=int(asset.size) if asset.size is not None else None,
        name=name,
        cache_key=f"dandi-{asset.identifier}-{etag[:32] or 'nodigest'}",
        dandi={
            "api_url": api,
            "dandiset_id": dandiset_id,
            "version": version,
            "path": asset.path,
            "asset_id": asset.identifier,
            "digest": digest,
        },
        headers=headers,
    )


def list_nwb_assets(source: str, dandi_api_url: str | None = None) -> tuple[str, list[dict]]:
    """The NWB assets of a dandiset (``DANDI:000140`` or its URLs).

    Returns
    -------
    (str, list of dict)
        The dandiset as ``DANDI:<id>@<version>`` and one ``{"path", "size (MB)", "asset_id"}``
        per NWB asset, in path order.
    """
    parsed = parse_source(source)
    if parsed.kind not in ("dandiset", "asset"):
        raise RemoteSourceError(source, "/", "is not a dandiset")
    api = api_url_for(dandi_api_url, parsed.api_url)
    client = client_for(api)
    with _api_errors(source, api):
        dandiset = _dandiset(client, source, parsed.dandiset_id, parsed.version)
        prefix = parsed.path or ""
        assets = dandiset.get_assets_with_path_prefix(prefix) if prefix else dandiset.get_assets()
        rows = [
            {"path": a.path, "size (MB)": f"{a.size / 1e6:.1f}", "asset_id": a.identifier}
            for a in assets
            if a.path.lower().endswith((".nwb", ".nwb.zarr"))
        ]
    return f"DANDI:{dandiset.identifier}@{dandiset.version_id}", sorted(
        rows, key=lambda r: r["path"]
    )


# ------------------------------------------------------------------------- internals
class _api_errors:
    """Turn the dandi client's errors into RemoteSourceError naming the source."""

    def __init__(self, source: str, api: str):
        self.source, self.api = source, api

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or isinstance(err, NWBReadError):
            return False
        import requests

        if isinstance(err, requests.Timeout):
            raise RemoteSourceError(
                self.source, "/", f"the DANDI API at {self.api} did not answer in time ({err})"
            ) from None
        if isinstance(err, requests.RequestException):
            raise RemoteSourceError(
                self.source, "/", f"request to the DANDI API at {self.api} failed: {err}"
            ) from None
        from dandi.exceptions import NotFoundError

        if isinstance(err, NotFoundError):
            raise RemoteSourceError(self.source, "/", f"not found on {self.api}: {err}") from None
        return False


def _dandiset(client, source: str, dandiset_id: str, version: str | None):
    from dandi.exceptions import NotFoundError

    try:
        dandiset = client.get_dandiset(dandiset_id, lazy=False)
    except NotFoundError:
        known = [d.identifier for d in itertools.islice(client.get_dandisets(), MAX_LISTED)]
        close = difflib.get_close_matches(dandiset_id, known, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise RemoteSourceError(
            source, "/", f"dandiset {dandiset_id} not found on {client.api_url}{hint}"
        ) from None
    if version is None or version == dandiset.version_id:
        return dandiset
    versions = [v.identifier for v in dandiset.get_versions()]
    if version not in versions:
        close = difflib.get_close_matches(version, versions, n=3, cutoff=0.3)
        raise RemoteSourceError(
            source,
            "/",
            f"dandiset {dandiset_id} has no version {version!r}; versions: "
            f"{', '.join(versions)}" + (f" (closest: {', '.join(close)})" if close else ""),
        )
    return client.get_dandiset(dandiset_id, version, lazy=False)


def _asset_by_path(dandiset, source: str, path: str):
    from dandi.exceptions import NotFoundError

    try:
        return dandiset.get_asset_by_path(path)
    except NotFoundError:
        pass
    folder = str(PurePosixPath(path).parent)
    nearby = [a.path for a in dandiset.get_assets_with_path_prefix("" if folder == "." else folder)]
    if not nearby:
        nearby = [a.path for a in dandiset.get_assets()]
    close = difflib.get_close_matches(path, nearby, n=3, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else f"; it has {len(nearby)} other asset(s)"
    raise RemoteSourceError(
        source,
        path,
        f"no asset at this path in dandiset {dandiset.identifier} version "
        f"{dandiset.version_id}{hint}",
    )


def _check_nwb(source: str, asset, meta: dict) -> None:
    fmt = meta.get("encodingFormat")
    if getattr(asset, "asset_type", None) is not None and str(asset.asset_type).endswith("ZARR"):
        raise RemoteSourceError(
            source, asset.path, "is a Zarr asset; streaming supports HDF5 NWB assets only"
        )
    if fmt not in NWB_FORMATS and not str(asset.path).lower().endswith(".nwb"):
        raise RemoteSourceError(
            source, asset.path, f"is not an NWB file: its type is {fmt or 'unknown'}"
        )


def public_url(url: str) -> str:
    """``url`` without credentials in its query (S3 signatures, tokens), for keys and records."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    secret = ("x-amz-", "signature", "sig", "token", "key", "expires", "policy")
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith(secret)
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _url_key(url: str) -> str:
    import hashlib

    return "url-" + hashlib.sha256(public_url(url).encode()).hexdigest()[:32]
