"""Streaming over HTTP: ranged reads, the block cache, retries, errors, downloads.

All offline: a small threaded HTTP/1.1 server on 127.0.0.1 in this module serves byte ranges
(206, Content-Range, HEAD) and can be told to misbehave for the next requests (an error
status, a stall, a dropped or short body, no range support, an expired signed URL).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest

from nwb_facrnn.io.remote import (
    BlockCache,
    HTTPRangeFile,
    RemoteReadError,
    RetryPolicy,
    TransferStats,
    default_cache_dir,
    download,
)

KIB = 1024
#: Retries without waiting, short timeouts: failures show up fast.
FAST = RetryPolicy(attempts=3, backoff=0.0, timeout=(2.0, 2.0))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends the stalls at teardown
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.faults: list[tuple] = []  # one per request, in order
            self.log: list[dict] = []
            self.bytes_served = 0
            self.ranges = True  # answer Range requests with 206
            self.signature = 1  # the valid ?sig= of /signed/ URLs

    def handle_error(self, request, client_address) -> None:
        pass  # clients that gave up (timeouts, closed responses) reset their connections

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_address[1]}/{path}"

    def fail_next(self, *faults: tuple) -> None:
        with self.lock:
            self.faults.extend(faults)

    def next_fault(self) -> tuple:
        with self.lock:
            return self.faults.pop(0) if self.faults else ("ok",)

    def gets(self) -> list[dict]:
        return [r for r in self.log if r["method"] == "GET"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _answer(self, status: int, headers: dict | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        srv = self.server
        path, _, query = self.path.partition("?")
        rng = self.headers.get("Range")
        srv.log.append(
            {
                "method": self.command,
                "path": self.path,
                "range": rng,
                "auth": self.headers.get("Authorization"),
            }
        )
        fault = srv.next_fault()
        try:
            if fault[0] == "stall":  # no answer at all for a while
                srv.release.wait(fault[1])
                self.close_connection = True
                return
            if fault[0] == "status":
                self._answer(fault[1], fault[2] if len(fault) > 2 else {}, b"nope")
                return
            if path.startswith("/redirect/"):  # like a DANDI download URL: to a signed URL
                name = path[len("/redirect/") :]
                target = srv.url(f"signed/{name}?sig={srv.signature}", host="localhost")
                self._answer(302, {"Location": target})
                return
            if path.startswith("/signed/"):
                if query != f"sig={srv.signature}":
                    self._answer(403, {}, b"Request has expired")
                    return
                path = "/" + path[len("/signed/") :]
            data = srv.files.get(path.lstrip("/"))
            if data is None:
                self._answer(404, {}, b"no such file")
                return
            headers = {"Accept-Ranges": "bytes"} if srv.ranges else {}
            status, body = 200, data
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
            if rng and srv.ranges:
                first = int(m[1])
                last = min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
                if first >= len(data):
                    self._answer(416, {"Content-Range": f"bytes */{len(data)}"})
                    return
                status, body = 206, data[first : last + 1]
                headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            sent = len(body)
            if fault[0] in ("drop", "stall_body", "short"):
                sent = min(fault[1], len(body))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            length = sent if fault[0] == "short" else len(body)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if head:
                return
            self.wfile.write(body[:sent])
            self.wfile.flush()
            with srv.lock:
                srv.bytes_served += sent
            if fault[0] == "stall_body":
                srv.release.wait(fault[2])
            if fault[0] in ("drop", "stall_body"):
                self.close_connection = True
        except OSError:  # the client gave up first
            self.close_connection = True


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = _Server()
    rng = np.random.default_rng(0)
    srv.files["data.bin"] = rng.integers(0, 256, 1_500_000, dtype=np.uint8).tobytes()
    h5path = tmp_path_factory.mktemp("h5") / "test.h5"
    with h5py.File(h5path, "w") as f:
        f.create_dataset("big", data=rng.standard_normal(5 * 2**20 // 8))  # 5 MiB
        f.create_dataset("small", data=np.arange(100, dtype=np.int32))
        f.attrs["note"] = "streamed"
    srv.files["test.h5"] = h5path.read_bytes()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _fresh(request):
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        srv.reset()
        yield
        srv.release.set()  # let stalled handlers finish
        srv.release.clear()
    else:
        yield


def _read(f: HTTPRangeFile, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


# -- reads -------------------------------------------------------------------------------


def test_random_reads_match_the_file_and_fetch_each_block_once(server, tmp_path):
    data = server.files["data.bin"]
    bs = 64 * KIB
    rng = np.random.default_rng(1)
    with HTTPRangeFile(server.url("data.bin"), cache=BlockCache(tmp_path), block_size=bs) as f:
        assert f.size == len(data)
        for offset, n in [(0, 1), (bs - 3, 7), (bs - 1, 2 * bs + 2), (len(data) - 10, 10)]:
            assert _read(f, offset, n) == data[offset : offset + n]
        for _ in range(60):
            offset = int(rng.integers(0, len(data)))
            n = int(rng.integers(1, 200 * KIB))
            assert _read(f, offset, n) == data[offset : offset + n]
        assert _read(f, len(data) - 5, 100) == data[-5:]  # stops at EOF
        assert _read(f, len(data), 10) == b""
        assert _read(f, len(data) + 50, 10) == b""
        f.seek(0)
        assert f.read() == data
        # readinto past EOF: counts only the real bytes and zeroes the rest (h5py's driver)
        buf = bytearray(b"x" * 20)
        f.seek(len(data) - 4)
        assert f.readinto(buf) == 4
        assert bytes(buf) == data[-4:] + bytes(16)
    # every block came over the network exactly once, whatever the reads
    assert f.stats.bytes_fetched == len(data)
    assert f.stats.blocks_fetched == -(-len(data) // bs)
    assert server.bytes_served == len(data)
    assert f.stats.requests == len(server.log)


def test_one_request_per_run_of_missing_blocks(server):
    data = server.files["data.bin"]
    bs = 64 * KIB
    with HTTPRangeFile(server.url("data.bin"), size=len(data), block_size=bs) as f:
        assert _read(f, 2 * bs, 10) == data[2 * bs : 2 * bs + 10]  # block 2
        assert _read(f, bs, 3 * bs) == data[bs : 4 * bs]  # blocks 1-3: fetch 1, then 3
    assert [r["range"] for r in server.gets()] == [
        f"bytes={2 * bs}-{3 * bs - 1}",
        f"bytes={bs}-{2 * bs - 1}",
        f"bytes={3 * bs}-{4 * bs - 1}",
    ]
    assert f.stats.requests == 3  # size given: no HEAD


def test_file_object_protocol(server):
    data = server.files["data.bin"]
    f = HTTPRangeFile(server.url("data.bin"), size=len(data), block_size=4096)
    assert isinstance(f, io.RawIOBase) and f.readable() and f.seekable() and not f.writable()
    assert f.seek(-10, io.SEEK_END) == len(data) - 10
    assert f.read(4) == data[-10:-6] and f.tell() == len(data) - 6
    assert f.seek(-6, io.SEEK_CUR) == len(data) - 12
    with pytest.raises(ValueError):
        f.seek(-1)
    f.close()
    f.close()
    assert f.closed
    with pytest.raises(ValueError):
        f.read(1)


def test_size_from_head_through_a_redirect_and_an_expired_signed_url(server):
    data = server.files["data.bin"]
    bs = 64 * KIB
    url = server.url("redirect/data.bin")
    headers = {"Authorization": "token secret"}
    with HTTPRangeFile(url, block_size=bs, headers=headers, retry=FAST) as f:
        assert f.size == len(data)
        assert "/signed/data.bin?sig=1" in f.final_url
        assert _read(f, 0, 10) == data[:10]
        server.signature = 2  # the signed URL expires
        assert _read(f, 5 * bs, 10) == data[5 * bs : 5 * bs + 10]
        assert "sig=2" in f.final_url
    paths = [(r["method"], r["path"].split("?")[0]) for r in server.log]
    assert paths == [
        ("HEAD", "/redirect/data.bin"),
        ("HEAD", "/signed/data.bin"),
        ("GET", "/signed/data.bin"),  # straight to the signed URL
        ("GET", "/signed/data.bin"),  # 403: expired
        ("GET", "/redirect/data.bin"),  # resolved again
        ("GET", "/signed/data.bin"),
    ]
    # the token goes to the API host only, never to the redirect target (another host)
    assert [r["auth"] for r in server.log if r["path"].startswith("/signed/")] == [None] * 4
    assert server.log[0]["auth"] == "token secret"


def test_size_from_a_one_byte_get_when_head_is_refused(server):
    data = server.files["data.bin"]
    server.fail_next(("status", 405))  # e.g. an S3 URL signed for GET only
    with HTTPRangeFile(server.url("data.bin"), retry=FAST) as f:
        assert f.size == len(data)
        assert f.read(5) == data[:5]
    assert [(r["method"], r["range"]) for r in server.log][:2] == [
        ("HEAD", None),
        ("GET", "bytes=0-0"),
    ]


def test_unreachable_server_is_retried_then_named(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.nwb"
    stats = TransferStats()
    with pytest.raises(RemoteReadError, match="connection failed") as err:
        HTTPRangeFile(url, retry=RetryPolicy(attempts=2, backoff=0), stats=stats)
    assert str(err.value).startswith(f"{url}: finding the file size")
    assert "gave up after 2 attempts" in str(err.value)
    assert stats.requests == 2 and stats.retries == 1


# -- h5py and the block cache ----------------------------------------------------------


def _read_small(url: str, cache: BlockCache, size: int | None = None) -> tuple:
    stats = TransferStats()
    with (
        HTTPRangeFile(url, size=size, cache=cache, block_size=64 * KIB, stats=stats) as raw,
        h5py.File(raw, "r") as f,
    ):
        values = f["small"][:]
        note = f.attrs["note"]
    return values, note, stats


def test_h5py_reads_a_small_dataset_fetching_little(server, tmp_path):
    url = server.url("test.h5")
    size = len(server.files["test.h5"])
    cache = BlockCache(tmp_path / "cache")
    values, note, stats = _read_small(url, cache)
    np.testing.assert_array_equal(values, np.arange(100))
    assert note == "streamed"
    assert 0 < stats.bytes_fetched < 0.2 * size
    assert stats.cache_hits == 0

    # a second file object with the same cache: nothing comes over the network again
    values, _, again = _read_small(url, cache)
    np.testing.assert_array_equal(values, np.arange(100))
    assert again.bytes_fetched == 0 and again.blocks_fetched == 0
    assert again.cache_hits == stats.blocks_fetched
    assert again.requests == 1  # the HEAD for the size
    assert cache.size() == stats.bytes_fetched


def test_truncated_cache_block_is_ignored_and_fetched_again(server, tmp_path):
    data = server.files["data.bin"]
    bs = 64 * KIB
    cache = BlockCache(tmp_path)
    url = server.url("data.bin")
    with HTTPRangeFile(url, size=len(data), cache=cache, block_size=bs) as f:
        assert _read(f, 0, 3 * bs) == data[: 3 * bs]
        key = f.cache_key
    block = next((tmp_path).glob("*/1.blk"))
    block.write_bytes(block.read_bytes()[:1000])  # a half-written block
    assert cache.get(key, 1, bs) is None
    assert not block.exists()  # deleted, not served
    with HTTPRangeFile(url, size=len(data), cache=cache, block_size=bs) as g:
        assert _read(g, 0, 3 * bs) == data[: 3 * bs]
    assert g.stats.cache_hits == 2
    assert g.stats.bytes_fetched == bs and g.stats.blocks_fetched == 1
    assert block.stat().st_size == bs


def test_cache_eviction_keeps_the_size_bounded_least_recently_used_first(tmp_path):
    cache = BlockCache(tmp_path, max_bytes=10 * 1000)
    for i in range(10):
        cache.put("a", i, bytes([i]) * 1000)
    assert cache.size() == 10_000
    assert cache.get("a", 0, 1000) == bytes(1000)  # recently used again
    cache.put("b", 0, b"y" * 1000)
    assert cache.size() <= cache.max_bytes
    assert cache.get("a", 0, 1000) is not None and cache.get("b", 0, 1000) is not None
    assert cache.get("a", 1, 1000) is None  # the least recently used went first
    for i in range(40):
        cache.put("c", i, b"z" * 1000)
        assert cache.size() <= cache.max_bytes
    assert not list(tmp_path.rglob("*.tmp"))
    cache.clear("c")
    assert not (tmp_path / "c").exists()
    cache.clear()
    assert cache.size() == 0


def test_cache_keys_are_safe_names_and_writes_are_atomic(tmp_path):
    cache = BlockCache(tmp_path)
    cache.put("../../etc/passwd", 0, b"abc")
    assert cache.get("../../etc/passwd", 0, 3) == b"abc"
    assert [p.parent.parent for p in tmp_path.rglob("*.blk")] == [tmp_path]

    def hammer(seed: int) -> None:  # writers and readers of the same block
        for _ in range(50):
            cache.put("k", 7, bytes([seed]) * 5000)
            got = cache.get("k", 7, 5000)
            assert got is None or len(set(got)) == 1

    threads = [threading.Thread(target=hammer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache.get("k", 7, 5000)) == 5000
    assert not list(tmp_path.rglob("*.tmp"))


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NWB_FACRNN_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert BlockCache().directory == tmp_path / "c"
    monkeypatch.delenv("NWB_FACRNN_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == ("nwb-facrnn", "http")


# -- retries and errors ----------------------------------------------------------------


def test_server_error_then_success_is_retried(server):
    data = server.files["data.bin"]
    server.fail_next(("status", 500))
    with HTTPRangeFile(server.url("data.bin"), size=len(data), block_size=4096, retry=FAST) as f:
        assert _read(f, 100, 5000) == data[100:5100]
    assert f.stats.retries == 1 and f.stats.requests == 2


def test_429_retry_after_is_honoured(server):
    data = server.files["data.bin"]
    server.fail_next(("status", 429, {"Retry-After": "1"}))
    retry = RetryPolicy(attempts=3, backoff=0.0, timeout=(2, 2))
    t0 = time.monotonic()
    with HTTPRangeFile(server.url("data.bin"), size=len(data), block_size=4096, retry=retry) as f:
        assert _read(f, 0, 10) == data[:10]
    assert 0.9 <= time.monotonic() - t0 < 5
    assert f.stats.retries == 1
    # capped at max_wait
    server.fail_next(("status", 503, {"Retry-After": "120"}))
    capped = RetryPolicy(attempts=3, backoff=0.0, max_wait=0.1, timeout=(2, 2))
    t0 = time.monotonic()
    with HTTPRangeFile(server.url("data.bin"), size=len(data), retry=capped) as f:
        assert _read(f, 0, 10) == data[:10]
    assert time.monotonic() - t0 < 3


def test_backoff_doubles_and_is_capped():
    policy = RetryPolicy(backoff=0.5, max_wait=3.0)
    assert [policy.delay(i) for i in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.delay(1, retry_after=2.5) == 2.5
    assert RetryPolicy(timeout=3).timeout == (3.0, 3.0)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(timeout=(1.0, 0.0))


@pytest.mark.parametrize("fault", [("stall", 5), ("stall_body", 1000, 5)])
def test_stalled_server_raises_instead_of_hanging(server, fault):
    data = server.files["data.bin"]
    url = server.url("data.bin")
    server.fail_next(fault, fault)
    retry = RetryPolicy(timeout=(1, 0.5), attempts=2, backoff=0)
    t0 = time.monotonic()
    with HTTPRangeFile(url, size=len(data), block_size=4096, retry=retry) as f:
        with pytest.raises(RemoteReadError) as err:
            _read(f, 0, 4096)
    assert time.monotonic() - t0 < 4
    msg = str(err.value)
    assert url in msg and "bytes 0-4095" in msg
    assert "read timeout" in msg and "gave up after 2 attempts" in msg
    assert err.value.url == url and isinstance(err.value, OSError)
    assert f.stats.retries == 1


def test_dropped_connection_is_resumed_where_it_stopped(server):
    data = server.files["data.bin"]
    bs = 64 * KIB
    server.fail_next(("drop", 100_000))
    with HTTPRangeFile(server.url("data.bin"), size=len(data), block_size=bs, retry=FAST) as f:
        assert _read(f, 0, 4 * bs) == data[: 4 * bs]
    assert f.stats.retries == 1
    assert [r["range"] for r in server.gets()] == [
        f"bytes=0-{4 * bs - 1}",
        f"bytes=100000-{4 * bs - 1}",
    ]
    assert f.stats.bytes_fetched == 4 * bs  # nothing received twice


def test_short_body_is_retried(server):
    data = server.files["data.bin"]
    server.fail_next(("short", 3000))  # a clean end, but fewer bytes than Content-Range says
    with HTTPRangeFile(server.url("data.bin"), size=len(data), block_size=8192, retry=FAST) as f:
        assert _read(f, 0, 8192) == data[:8192]
    assert f.stats.retries == 1


def test_retries_spent_names_url_range_status_and_attempts(server):
    data = server.files["data.bin"]
    url = server.url("data.bin")
    server.fail_next(*[("status", 503)] * 3)
    with HTTPRangeFile(url, size=len(data), block_size=1000, retry=FAST) as f:
        with pytest.raises(RemoteReadError) as err:
            _read(f, 1500, 10)
    assert str(err.value) == (
        f"{url}: reading bytes 1000-1999 (1000 bytes): HTTP 503 Service Unavailable; "
        "gave up after 3 attempts"
    )
    assert pickle.loads(pickle.dumps(err.value)).reason == err.value.reason


def test_404_fails_at_once(server):
    url = server.url("missing.nwb")
    with pytest.raises(RemoteReadError, match="HTTP 404 Not Found") as err:
        HTTPRangeFile(url, retry=FAST)  # the HEAD
    assert url in str(err.value) and "not retried" in str(err.value)
    assert len(server.log) == 1
    with HTTPRangeFile(url, size=100, retry=FAST) as f:
        with pytest.raises(RemoteReadError, match="HTTP 404"):
            f.read(10)
    assert f.stats.requests == 1 and f.stats.retries == 0


def test_server_without_range_support_is_a_clear_error(server):
    server.ranges = False
    with HTTPRangeFile(server.url("data.bin"), retry=FAST) as f:
        with pytest.raises(RemoteReadError, match="does not support HTTP range requests"):
            f.read(10)
    assert f.stats.requests == 2 and f.stats.retries == 0


def test_size_changed_on_the_server_is_an_error(server):
    data = server.files["data.bin"]
    with HTTPRangeFile(server.url("data.bin"), size=len(data) + 10, retry=FAST) as f:
        with pytest.raises(RemoteReadError, match="changed on the server"):
            f.read(10)


# -- download --------------------------------------------------------------------------


def test_download_resumes_after_a_dropped_connection(server, tmp_path):
    data = server.files["data.bin"]
    server.fail_next(("drop", 300_000))
    dest = tmp_path / "sub" / "data.bin"
    stats = TransferStats()
    out = download(server.url("data.bin"), dest, retry=FAST, stats=stats, chunk_size=64 * KIB)
    assert out == dest and dest.read_bytes() == data
    assert [r["range"] for r in server.gets()] == ["bytes=0-", f"bytes=300000-{len(data) - 1}"]
    assert stats.bytes_fetched == len(data) and stats.retries == 1
    assert sorted(p.name for p in dest.parent.iterdir()) == [".data.bin.lock", "data.bin"]


def test_download_with_progress_and_known_size(server, tmp_path, capsys):
    data = server.files["data.bin"]
    dest = download(server.url("data.bin"), tmp_path / "d.bin", size=len(data), retry=FAST)
    assert dest.read_bytes() == data
    assert "d.bin" in capsys.readouterr().err  # the tqdm bar
    with pytest.raises(RemoteReadError, match="not 1500001"):
        download(server.url("data.bin"), tmp_path / "e.bin", size=len(data) + 1, retry=FAST)
    assert not (tmp_path / "e.bin").exists()


def test_failed_download_leaves_nothing_at_dest(server, tmp_path):
    dest = tmp_path / "x.bin"
    with pytest.raises(RemoteReadError, match="HTTP 404"):
        download(server.url("nothing.bin"), dest, progress=False, retry=FAST)
    server.fail_next(*[("drop", 10)] * 3)
    with pytest.raises(RemoteReadError, match="gave up after 3 attempts"):
        download(server.url("data.bin"), dest, progress=False, retry=FAST, chunk_size=4096)
    assert not dest.exists()
    # an existing file stays as it was
    dest.write_bytes(b"old")
    server.fail_next(("status", 404))
    with pytest.raises(RemoteReadError):
        download(server.url("data.bin"), dest, progress=False, retry=FAST)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".partial-")] == []


def test_download_cleans_up_after_a_killed_one(server, tmp_path):
    dest = tmp_path / "k.bin"
    killed = tmp_path / f".partial-{os.getpid() + 1}-0123abcd-k.bin"  # what a kill leaves
    killed.write_bytes(b"half")
    download(server.url("data.bin"), dest, progress=False, retry=FAST)
    assert dest.read_bytes() == server.files["data.bin"]
    assert not killed.exists()


def test_interrupted_download_leaves_nothing(server, tmp_path, monkeypatch):
    dest = tmp_path / "i.bin"

    real_open = open

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        if "w" in mode and Path(path).name.startswith(".partial-"):
            orig = f.write

            def write(b):
                if f.tell() > 100_000:
                    raise KeyboardInterrupt
                return orig(b)

            f.write = write
        return f

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(KeyboardInterrupt):
        download(server.url("data.bin"), dest, progress=False, chunk_size=8192)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".i.bin.lock"]
