"""Helpers shared by the tests."""

from __future__ import annotations

import gc
import hashlib
from pathlib import Path

import pytest


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of every file of a directory (Zarr store) with its relative path."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update((f.name if f == path else f.relative_to(path).as_posix()).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def sha256():
    """``sha256(path)``: the content hash of a file or a Zarr store."""
    return tree_sha256


# ------------------------------------------------- a local DANDI archive (tests/dandi_server.py)
@pytest.fixture
def no_internet(monkeypatch):
    """Sockets may reach this machine only: any other host raises ``InternetAccessError``."""
    from dandi_server import block_internet

    block_internet(monkeypatch)


@pytest.fixture
def fake_dandi(monkeypatch, no_internet):
    """A started :class:`dandi_server.FakeDandi`, one per test (fresh content and counters).

    Also sets ``DANDI_NO_ET=1`` (no version check against the internet), ``DANDI_API_URL`` to
    the server's API (so ``DANDI:`` IDs resolve there), unsets ``DANDI_API_KEY``, and blocks
    connections to anything but loopback (``no_internet``).  Closed at teardown: stalls end,
    open connections are shut, the daemon server thread is joined.
    """
    from dandi_server import FakeDandi

    monkeypatch.setenv("DANDI_NO_ET", "1")
    monkeypatch.delenv("DANDI_API_KEY", raising=False)
    # h5py holds its global lock while it calls a Python file object's read(), and freeing
    # h5py objects takes that lock.  Should a cyclic garbage collection start in one of this
    # in-process server's threads while the test's thread reads from it inside h5py, the
    # collection waits for the lock and the read for the server, until the client's timeouts
    # give up (h5py's documentation of file-like objects; h5py issue #2019).  Seen once in
    # CI.  A real archive is another process, so only this server meets it: automatic
    # collections are off while it serves.
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    server = FakeDandi()
    monkeypatch.setenv("DANDI_API_URL", server.api_url)
    try:
        yield server
    finally:
        server.close()
        if collecting:
            gc.enable()


@pytest.fixture
def dandi_client(fake_dandi):
    """``dandi.dandiapi.DandiAPIClient`` for ``fake_dandi`` (its constructor asks /server-info)."""
    from dandi.dandiapi import DandiAPIClient

    client = DandiAPIClient(api_url=fake_dandi.api_url)
    try:
        yield client
    finally:
        client.session.close()


@pytest.fixture
def fast_dandi_retries(monkeypatch):
    """The dandi client retries 429/5xx and connection errors without its 1.25 s, 1.6 s... waits."""
    import tenacity

    monkeypatch.setattr(tenacity, "wait_exponential", lambda *a, **k: tenacity.wait_none())


# ------------------------------------------------- imaging sessions with a fit (napari tests)
def _imaging_fit(root: Path, suffix: str):
    """A 2 s, 24-ROI voltage-imaging session, a 30-epoch fit of its accepted ROIs, and the
    results file written next to it (the movie linked)."""
    import warnings

    from nwb_facrnn import FacRNN, read_nwb, write_results
    from nwb_facrnn.synthetic import make_imaging_session

    session = root / f"session{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = make_imaging_session(session, seed=0, duration=2.0, n_rois=24)
        data = read_nwb(session, series="DfOverF", rois={"accepted": True})
        # one start: with 4, which restart is kept rests on a noisy objective and differs
        # between neighbouring seeds (fit seeds 3 and 7 kept a worse grouping); n_init=1 puts
        # every accepted ROI in its true group for fit seeds 0-9 on every rounding path tried
        model = FacRNN(n_groups=2, group_rank=3, seed=0, max_epochs=30, n_init=1, progress=False)
        model.fit(data)
        output = write_results(model, data)
    return {"session": session, "results": output, "truth": truth, "model": model, "data": data}


@pytest.fixture(scope="session")
def imaging_fit(tmp_path_factory):
    """HDF5: ``session``, ``results`` (paths), ``truth``, ``model`` and ``data``."""
    return _imaging_fit(tmp_path_factory.mktemp("imaging_fit"), ".nwb")


@pytest.fixture(scope="session")
def imaging_fit_zarr(tmp_path_factory):
    """As ``imaging_fit``, as Zarr stores."""
    return _imaging_fit(tmp_path_factory.mktemp("imaging_fit_zarr"), ".nwb.zarr")
