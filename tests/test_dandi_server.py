"""The local DANDI stand-in (tests/dandi_server.py) against the real dandi client and requests.

Small files of bytes from a fixed RNG; every server is local (``fake_dandi`` blocks the rest).
"""

from __future__ import annotations

import gc
import hashlib
import random
import socket
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from dandi.dandiapi import BaseRemoteBlobAsset, DandiAPIClient, RemoteBlobAsset
from dandi.exceptions import NotFoundError
from dandi.support.digests import get_dandietag
from dandi_server import FakeDandi, InternetAccessError, dandi_etag

DSID = "000140"
PUBLISHED = "0.220113.0408"


def make_file(tmp_path, name, size, seed=0):
    path = tmp_path / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


@pytest.fixture
def nwb(tmp_path):
    return make_file(tmp_path, "ses-1.nwb", 5000, seed=1)


def get(url, **headers):
    return requests.get(url, headers=headers, timeout=10)


# ---------------------------------------------------------------------------- dandi client flows
def test_asset_by_path_and_redirect_to_blob(fake_dandi, dandi_client, nwb):
    aid = fake_dandi.add_asset(DSID, "sub-1/sub-1_ses-1.nwb", nwb)
    dandiset = dandi_client.get_dandiset(DSID, "draft")
    asset = dandiset.get_asset_by_path("sub-1/sub-1_ses-1.nwb")
    assert isinstance(asset, RemoteBlobAsset)
    assert (asset.identifier, asset.path, asset.size) == (aid, "sub-1/sub-1_ses-1.nwb", 5000)
    blob_url = f"{fake_dandi.url}/blobs/{fake_dandi.blob_of(aid)}"
    assert asset.blob == fake_dandi.blob_of(aid)

    md = asset.get_raw_metadata()
    assert md["contentUrl"] == [f"{fake_dandi.api_url}/assets/{aid}/download/", blob_url]
    assert (md["path"], md["identifier"], md["id"]) == (asset.path, aid, f"dandiasset:{aid}")
    assert (md["contentSize"], md["encodingFormat"]) == (5000, "application/x-nwb")
    asset.get_metadata()  # validates against the installed dandischema

    fake_dandi.reset_counters()
    assert asset.get_content_url(follow_redirects=1, strip_query=True) == blob_url
    # the client fetches the metadata again (it does not keep it), then HEADs the download URL
    assert fake_dandi.requests == [
        ("GET", f"/api/dandisets/{DSID}/versions/draft/assets/{aid}/", None),
        ("HEAD", f"/api/assets/{aid}/download/", None),
    ]
    signed = asset.get_content_url(follow_redirects=1)
    assert signed.startswith(blob_url + "?") and "X-Amz-Signature" in parse_qs(
        urlsplit(signed).query
    )
    assert asset.get_content_url(follow_redirects=True, strip_query=True) == blob_url

    assert asset.download_url == (
        f"{fake_dandi.api_url}/dandisets/{DSID}/versions/draft/assets/{aid}/download/"
    )
    fake_dandi.reset_counters()
    r = get(asset.download_url)
    assert r.status_code == 200 and r.content == nwb.read_bytes()
    assert [h.status_code for h in r.history] == [302]
    assert fake_dandi.bytes_served == {asset.blob: 5000}

    out = nwb.parent / "downloaded.nwb"
    asset.download(out)  # the client's own downloader
    assert out.read_bytes() == nwb.read_bytes()


def test_client_asks_server_info_first(fake_dandi, nwb):
    fake_dandi.add_asset(DSID, "a.nwb", nwb)
    # a port never used before in this process, so dandi's lru_cache does not answer instead
    client = DandiAPIClient(api_url=fake_dandi.api_url)
    assert fake_dandi.requests[:1] in ([("GET", "/server-info", None)], [])
    assert client.dandi_instance.api == fake_dandi.api_url
    assert client.server_schema_version  # /api/info/
    assert client.get_dandiset(DSID, lazy=False).version_id == "draft"


def test_get_asset_by_id(fake_dandi, dandi_client, nwb):
    aid = fake_dandi.add_asset(DSID, "sub-1/x.nwb", nwb)
    asset = dandi_client.get_asset(aid)
    assert isinstance(asset, BaseRemoteBlobAsset)
    assert (asset.identifier, asset.path, asset.size) == (aid, "sub-1/x.nwb", 5000)
    assert (
        asset.get_raw_metadata()["digest"]["dandi:sha2-256"]
        == hashlib.sha256(nwb.read_bytes()).hexdigest()
    )
    r = requests.get(f"{fake_dandi.api_url}/assets/{aid}/", timeout=10)
    assert r.json()["identifier"] == aid
    assert get(asset.base_download_url).content == nwb.read_bytes()
    with pytest.raises(NotFoundError):
        dandi_client.get_asset("00000000-0000-0000-0000-000000000000")
    assert dandi_client.get_dandiset(DSID, "draft").get_asset(aid).path == "sub-1/x.nwb"


@pytest.mark.parametrize("size", [0, 1, 5000, 70_000])
def test_digests_match_hashlib_and_dandi(fake_dandi, dandi_client, tmp_path, size):
    path = make_file(tmp_path, f"f{size}.bin", size, seed=size)
    aid = fake_dandi.add_asset(DSID, "data/f.bin", path)
    md = dandi_client.get_dandiset(DSID, "draft").get_asset_by_path("data/f.bin").get_raw_metadata()
    # dandi's own etag; __wrapped__ skips its on-disk checksum cache
    etag = getattr(get_dandietag, "__wrapped__", get_dandietag)(path).as_str()
    assert md["digest"] == {
        "dandi:dandi-etag": etag,
        "dandi:sha2-256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    assert dandi_etag(path) == etag
    assert md["contentSize"] == size
    assert md["encodingFormat"] == "application/octet-stream"
    assert get(md["contentUrl"][0]).content == path.read_bytes()
    assert dandi_client.get_asset(aid).get_raw_digest() == etag


@pytest.mark.parametrize(("part", "size"), [(1000, 2500), (1000, 3000), (1, 20_001)])
def test_multipart_etag(tmp_path, monkeypatch, part, size):
    """Several parts, and the 10 000-part cap, with parts shrunk on both sides."""
    import dandi_server
    from dandischema.digests.dandietag import DandiETag, PartGenerator

    monkeypatch.setattr(dandi_server, "PART_SIZE", part)
    monkeypatch.setattr(PartGenerator, "DEFAULT_PART_SIZE", part)
    monkeypatch.setattr(PartGenerator, "MIN_PART_SIZE", 1)
    path = make_file(tmp_path, "f.bin", size)
    expected = DandiETag.from_file(path)
    assert expected.part_qty > 1
    assert dandi_etag(path) == expected.as_str()


def test_encoding_format(fake_dandi, dandi_client, tmp_path, nwb):
    fake_dandi.add_asset(DSID, "a.nwb", nwb)
    fake_dandi.add_asset(DSID, "b.json", make_file(tmp_path, "b.json", 10))
    fake_dandi.add_asset(DSID, "c.h5", nwb, encoding_format="application/x-hdf5")
    ds = dandi_client.get_dandiset(DSID, "draft")
    formats = {a.path: a.get_raw_metadata()["encodingFormat"] for a in ds.get_assets()}
    assert formats == {
        "a.nwb": "application/x-nwb",
        "b.json": "application/json",
        "c.h5": "application/x-hdf5",
    }
    assert len({a.blob for a in ds.get_assets()}) == 2  # same bytes, same blob


def test_pagination(fake_dandi, dandi_client, tmp_path, monkeypatch):
    # the page-2 shape of `next` lets the client fetch the rest in parallel; insist on it
    monkeypatch.setenv("DANDI_PAGINATION_DISABLE_FALLBACK", "1")
    fake_dandi.page_size = 3
    paths = [f"sub-{i % 2}/f{i}.nwb" for i in range(8)]
    for i, p in enumerate(paths):
        fake_dandi.add_asset(DSID, p, make_file(tmp_path, f"f{i}.nwb", 20 + i, seed=i))
    ds = dandi_client.get_dandiset(DSID, "draft")

    fake_dandi.reset_counters()
    assert [a.path for a in ds.get_assets()] == paths
    pages = sorted(
        parse_qs(urlsplit(p).query).get("page", ["1"])[0] for _, p, _ in fake_dandi.requests
    )
    assert pages == ["1", "2", "3"]
    assert [a.path for a in ds.get_assets(order="-path")] == sorted(paths, reverse=True)
    assert [a.size for a in ds.get_assets_with_path_prefix("sub-1/")] == [21, 23, 25, 27]
    assert [a.path for a in ds.get_assets_with_path_prefix("sub-0/f2")] == ["sub-0/f2.nwb"]
    assert [a.path for a in ds.get_assets_by_glob("*/f[3-5].nwb")] == paths[3:6]
    assert ds.get_asset_by_path("sub-1/f7.nwb").size == 27

    dandi_client.page_size = 5  # the client's page size wins over the server's
    fake_dandi.reset_counters()
    assert len(list(ds.get_assets())) == 8
    assert all("page_size=5" in p for _, p, _ in fake_dandi.requests)
    assert len(fake_dandi.requests) == 2

    url = f"{fake_dandi.api_url}/dandisets/{DSID}/versions/draft/assets/"
    first = get(url).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (8, 3, None)
    last = get(first["next"].replace("page=2", "page=3")).json()
    assert last["next"] is None and len(last["results"]) == 2
    assert parse_qs(urlsplit(last["previous"]).query)["page"] == ["2"]
    assert set(first["results"][0]) >= {"asset_id", "blob", "zarr", "path", "size", "created"}
    assert get(url + "?page=4").status_code == 404


def test_not_found(fake_dandi, dandi_client, nwb):
    aid = fake_dandi.add_asset(DSID, "sub-1/a.nwb", nwb)
    with pytest.raises(NotFoundError, match="No such Dandiset"):
        dandi_client.get_dandiset("999999", lazy=False)
    with pytest.raises(NotFoundError, match="No such Dandiset"):
        dandi_client.get_dandiset("999999").version_id  # noqa: B018
    with pytest.raises(NotFoundError):
        dandi_client.get_dandiset("999999", "draft").get_asset_by_path("sub-1/a.nwb")
    with pytest.raises(NotFoundError, match="No such version"):
        dandi_client.get_dandiset(DSID, "0.999999.9999", lazy=False)
    with pytest.raises(NotFoundError, match="No such version"):
        list(dandi_client.get_dandiset(DSID, "0.999999.9999").get_assets())
    ds = dandi_client.get_dandiset(DSID, "draft")
    with pytest.raises(NotFoundError, match="No asset at path"):
        ds.get_asset_by_path("sub-1/b.nwb")
    with pytest.raises(NotFoundError, match="No asset at path"):
        ds.get_asset_by_path("sub-1")  # a prefix is not a path
    with pytest.raises(NotFoundError):
        ds.get_asset("00000000-0000-0000-0000-000000000000")

    api = fake_dandi.api_url
    for url in [
        f"{api}/dandisets/999999/",
        f"{api}/dandisets/{DSID}/versions/0.999999.9999/",
        f"{api}/dandisets/{DSID}/versions/0.999999.9999/assets/",
        f"{api}/assets/nope/",
        f"{api}/assets/nope/download/",
        f"{api}/dandisets/{DSID}/versions/{PUBLISHED}/assets/{aid}/",  # not in that version
        f"{fake_dandi.url}/blobs/nope",
        f"{fake_dandi.url}/files/nope",
        f"{fake_dandi.url}/nothing/here",
    ]:
        r = get(url)
        assert (r.status_code, r.json()) == (404, {"detail": "Not found."}), url
    r = requests.post(f"{api}/dandisets/", json={}, timeout=10)
    assert r.status_code == 405


def test_published_versions(fake_dandi, dandi_client, tmp_path):
    draft_file = make_file(tmp_path, "draft.nwb", 300, seed=3)
    fake_dandi.add_asset(DSID, "a.nwb", draft_file)
    assert dandi_client.get_dandiset(DSID).version_id == "draft"  # nothing published yet
    assert dandi_client.get_dandiset(DSID, lazy=False).most_recent_published_version is None

    new = fake_dandi.add_asset(DSID, "a.nwb", make_file(tmp_path, "new.nwb", 200, seed=2),
                               version="0.230501.1200")  # fmt: skip
    old = fake_dandi.add_asset(DSID, "a.nwb", make_file(tmp_path, "old.nwb", 100, seed=1),
                               version=PUBLISHED)  # fmt: skip
    # version_id=None: the most recent published version (by date, not by order of adding)
    for lazy in (True, False):
        latest = dandi_client.get_dandiset(DSID, lazy=lazy)
        assert latest.version_id == "0.230501.1200"
        assert latest.get_asset_by_path("a.nwb").identifier == new
    ds = dandi_client.get_dandiset(DSID, PUBLISHED, lazy=False)
    assert ds.version_id == PUBLISHED
    asset = ds.get_asset_by_path("a.nwb")
    assert (asset.identifier, asset.size) == (old, 100)
    assert ds.version.created.year == 2022 and ds.version.asset_count == 1
    assert get(asset.download_url).content == (tmp_path / "old.nwb").read_bytes()
    draft = dandi_client.get_dandiset(DSID, "draft", lazy=False)
    assert draft.get_asset_by_path("a.nwb").size == 300
    assert draft.most_recent_published_version.identifier == "0.230501.1200"
    versions = [v.identifier for v in draft.get_versions(order="-created")]
    assert versions == ["0.230501.1200", PUBLISHED, "draft"]
    assert [v.identifier for v in draft.get_versions()] == versions[::-1]
    listed = [d.version_id for d in dandi_client.get_dandisets()]
    assert listed == ["0.230501.1200"]


def test_unchanged_asset_shared_by_versions(fake_dandi, dandi_client, tmp_path, nwb):
    aid = fake_dandi.add_asset(DSID, "a.nwb", nwb)
    assert fake_dandi.add_asset(DSID, "a.nwb", nwb, version=PUBLISHED) == aid  # as published
    changed = fake_dandi.add_asset(DSID, "a.nwb", make_file(tmp_path, "b.nwb", 10))  # draft edit
    assert changed != aid
    assert fake_dandi.add_asset(DSID, "b.nwb", nwb) != aid  # another path: another asset
    published = dandi_client.get_dandiset(DSID, PUBLISHED)
    assert published.get_asset_by_path("a.nwb").identifier == aid
    assert dandi_client.get_dandiset(DSID, "draft").get_asset_by_path("a.nwb").identifier == changed
    assert dandi_client.get_asset(aid).size == 5000  # still held by the published version
    api = fake_dandi.api_url
    assert get(f"{api}/dandisets/{DSID}/versions/draft/assets/{aid}/").status_code == 404
    assert get(f"{api}/dandisets/{DSID}/versions/{PUBLISHED}/assets/{aid}/").status_code == 200


# ---------------------------------------------------------------------------- bytes and ranges
SIZE = 1000


@pytest.fixture(params=["blob", "file"])
def byte_url(request, fake_dandi, tmp_path):
    """(url, bytes, counter key) of a 1000-byte blob or plain file."""
    path = make_file(tmp_path, "data.nwb", SIZE, seed=7)
    if request.param == "blob":
        blob = fake_dandi.blob_of(fake_dandi.add_asset(DSID, "data.nwb", path))
        return f"{fake_dandi.url}/blobs/{blob}", path.read_bytes(), blob
    url = fake_dandi.add_file("dir/data.nwb", path)
    assert url == f"{fake_dandi.url}/files/dir/data.nwb"
    return url, path.read_bytes(), "dir/data.nwb"


@pytest.mark.parametrize(
    ("range_", "status", "start", "stop"),
    [
        (None, 200, 0, SIZE),
        ("bytes=0-9", 206, 0, 10),
        ("bytes=5-5", 206, 5, 6),
        ("bytes=990-5000", 206, 990, SIZE),  # end clamped
        ("bytes=100-", 206, 100, SIZE),
        ("bytes=999-", 206, 999, SIZE),
        ("bytes=-10", 206, SIZE - 10, SIZE),
        ("bytes=-5000", 206, 0, SIZE),
        ("bytes=9-3", 200, 0, SIZE),  # invalid: ignored
        ("bytes=0-1,5-6", 200, 0, SIZE),  # several ranges: ignored
        ("items=0-1", 200, 0, SIZE),  # other unit: ignored
    ],
)
def test_ranges(fake_dandi, byte_url, range_, status, start, stop):
    url, data, key = byte_url
    fake_dandi.reset_counters()
    r = get(url, **({"Range": range_} if range_ else {}))
    assert r.status_code == status
    assert r.content == data[start:stop]
    assert int(r.headers["Content-Length"]) == stop - start
    assert r.headers["Accept-Ranges"] == "bytes"
    if status == 206:
        assert r.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{SIZE}"
    else:
        assert "Content-Range" not in r.headers
    assert fake_dandi.bytes_served == {key: stop - start}
    assert fake_dandi.requests[-1][2] == range_


@pytest.mark.parametrize("range_", ["bytes=1000-", "bytes=1000-1005", "bytes=5000-", "bytes=-0"])
def test_unsatisfiable_range(fake_dandi, byte_url, range_):
    url, _, _ = byte_url
    r = get(url, Range=range_)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{SIZE}"
    assert r.content == b""


def test_range_through_download_redirect(fake_dandi, tmp_path):
    path = make_file(tmp_path, "x.nwb", 4000, seed=9)
    aid = fake_dandi.add_asset(DSID, "x.nwb", path)
    with requests.Session() as s:  # one keep-alive connection for all
        for a, b in [(0, 1023), (1024, 2047), (3000, 3999)]:
            r = s.get(f"{fake_dandi.api_url}/assets/{aid}/download/",
                      headers={"Range": f"bytes={a}-{b}"}, timeout=10)  # fmt: skip
            assert r.status_code == 206 and r.content == path.read_bytes()[a : b + 1]
    assert fake_dandi.bytes_served == {fake_dandi.blob_of(aid): 1024 + 1024 + 1000}


def test_head(fake_dandi, byte_url):
    url, data, _ = byte_url
    fake_dandi.reset_counters()
    r = requests.head(url, timeout=10)
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) == SIZE
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"] == f'"{dandi_etag_of(data)}"'
    assert "Last-Modified" in r.headers
    r = requests.head(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert r.status_code == 206 and r.headers["Content-Length"] == "10"
    assert fake_dandi.bytes_served == {}  # HEAD sends no body
    assert [m for m, _, _ in fake_dandi.requests] == ["HEAD", "HEAD"]


def dandi_etag_of(data: bytes) -> str:  # one part for files under 64 MiB
    return hashlib.md5(hashlib.md5(data).digest()).hexdigest() + "-1"


def test_head_api(fake_dandi, nwb):
    aid = fake_dandi.add_asset(DSID, "a.nwb", nwb)
    r = requests.head(f"{fake_dandi.api_url}/assets/{aid}/download/", timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"].startswith(f"{fake_dandi.url}/blobs/{fake_dandi.blob_of(aid)}?")
    r = requests.head(f"{fake_dandi.api_url}/dandisets/{DSID}/", timeout=10)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) > 0 and r.content == b""


# ---------------------------------------------------------------------------- faults
@pytest.fixture
def blob(fake_dandi, tmp_path):
    """(url, bytes) of a 2000-byte blob."""
    path = make_file(tmp_path, "f.nwb", 2000, seed=5)
    aid = fake_dandi.add_asset(DSID, "f.nwb", path)
    return f"{fake_dandi.url}/blobs/{fake_dandi.blob_of(aid)}", path.read_bytes()


@pytest.mark.parametrize("kind", ["500", "503", "429"])
def test_status_faults_count(fake_dandi, blob, kind):
    url, data = blob
    fake_dandi.inject(kind, path_prefix="/blobs/", count=2)
    assert get(f"{fake_dandi.api_url}/info/").status_code == 200  # other paths unaffected
    statuses = []
    for _ in range(4):
        r = get(url)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "0"
        if r.status_code != 200:
            assert r.json() == {"detail": f"Injected fault {kind}."}
    assert statuses == [int(kind), int(kind), 200, 200]
    assert r.content == data
    assert fake_dandi.pending_faults() == 0


def test_stall_fault_count(fake_dandi, blob):
    url, data = blob
    fake_dandi.inject("stall", path_prefix="/blobs/", count=2, seconds=10.0)
    t0 = time.monotonic()
    for _ in range(2):
        with pytest.raises(requests.ReadTimeout):
            requests.get(url, timeout=(5, 0.2))
    assert get(url).content == data  # the third is answered at once
    assert time.monotonic() - t0 < 5  # not stalled
    assert fake_dandi.pending_faults() == 0


def test_stall_then_answer(fake_dandi, blob):
    url, data = blob
    fake_dandi.inject("stall", count=1, seconds=0.3)
    t0 = time.monotonic()
    assert get(url).content == data  # a patient client gets the answer
    assert time.monotonic() - t0 >= 0.3


def test_drop_fault_count(fake_dandi, blob):
    url, data = blob
    key = urlsplit(url).path.rsplit("/", 1)[1]
    fake_dandi.inject("drop", path_prefix="/blobs/", count=2)
    fake_dandi.reset_counters()
    for _ in range(2):  # headers and half of the body, then the connection closes
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            get(url)
    assert fake_dandi.bytes_served == {key: 2000}  # 2 x half
    r = get(url)
    assert r.content == data and fake_dandi.bytes_served == {key: 4000}

    fake_dandi.inject("drop", path_prefix="/blobs/", count=1)
    with pytest.raises(requests.ConnectionError):  # HEAD: closed without an answer
        requests.head(url, timeout=10)
    assert requests.head(url, timeout=10).status_code == 200
    fake_dandi.inject("drop", path_prefix="/api/", count=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # JSON cut short
        get(f"{fake_dandi.api_url}/info/")
    assert fake_dandi.pending_faults() == 0


def test_faults_in_injection_order(fake_dandi, blob):
    url, _ = blob
    fake_dandi.inject("503", count=1)
    fake_dandi.inject("500", count=1)
    assert [get(url).status_code for _ in range(3)] == [503, 500, 200]
    with pytest.raises(ValueError, match="unknown fault"):
        fake_dandi.inject("404")


def test_client_retries_server_errors(fake_dandi, dandi_client, nwb, fast_dandi_retries):
    fake_dandi.add_asset(DSID, "a.nwb", nwb)
    prefix = f"/api/dandisets/{DSID}/versions/draft/assets/"
    fake_dandi.inject("503", path_prefix=prefix, count=1)
    fake_dandi.inject("429", path_prefix=prefix, count=1)
    fake_dandi.inject("500", path_prefix=prefix, count=1)
    fake_dandi.reset_counters()
    asset = dandi_client.get_dandiset(DSID, "draft").get_asset_by_path("a.nwb")
    assert asset.size == 5000
    assert [p for _, p, _ in fake_dandi.requests].count(prefix + "?path=a.nwb") == 4

    fake_dandi.inject("drop", path_prefix="/api/assets/", count=1)  # HEAD: no answer at all
    fake_dandi.reset_counters()
    assert asset.get_content_url(follow_redirects=1, strip_query=True).startswith(
        f"{fake_dandi.url}/blobs/"
    )
    heads = [p for m, p, _ in fake_dandi.requests if m == "HEAD"]
    assert heads == [f"/api/assets/{asset.identifier}/download/"] * 2  # retried

    # a body cut short is not retried by the client: the error reaches the caller
    fake_dandi.inject("drop", path_prefix=f"/api/dandisets/{DSID}/", count=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        dandi_client.get_dandiset(DSID, lazy=False)


def test_close_ends_stalls(tmp_path):
    server = FakeDandi()
    path = make_file(tmp_path, "x.bin", 10)
    url = server.add_file("x.bin", path)
    server.inject("stall", count=1, seconds=60)
    errors = []

    def fetch():
        try:
            requests.get(url, timeout=30)
        except requests.RequestException as err:
            errors.append(err)

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    server.close()
    t.join(timeout=5)
    assert time.monotonic() - t0 < 3 and not t.is_alive()
    assert len(errors) == 1  # the stalled request ended without an answer
    server.close()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


def test_counters_and_log(fake_dandi, tmp_path):
    url = fake_dandi.add_file("a.bin", make_file(tmp_path, "a.bin", 100))
    get(url, Range="bytes=0-9")
    requests.head(url, timeout=10)
    get(url + "?x=1")
    assert fake_dandi.requests == [
        ("GET", "/files/a.bin", "bytes=0-9"),
        ("HEAD", "/files/a.bin", None),
        ("GET", "/files/a.bin?x=1", None),
    ]
    assert fake_dandi.bytes_served == {"a.bin": 110}
    fake_dandi.reset_counters()
    assert fake_dandi.requests == [] and fake_dandi.bytes_served == {}


# ---------------------------------------------------------------------------- no internet
def test_no_internet(fake_dandi):
    with pytest.raises(InternetAccessError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(InternetAccessError):
        requests.get("https://api.dandiarchive.org/api/info/", timeout=1)
    with socket.create_connection(("127.0.0.1", int(fake_dandi.url.rsplit(":", 1)[1]))):
        pass


def test_automatic_garbage_collection_is_off_while_the_archive_serves(fake_dandi):
    """A collection started in a server thread while h5py reads from the server would wait
    for h5py's lock, held by the reading thread: the ``fake_dandi`` fixture turns automatic
    collections off (and back on at teardown)."""
    assert not gc.isenabled()
