"""Long recordings: samples that cost no copy, passes by blocks, and fits read chunk by chunk
from disk (issue 17)."""

from __future__ import annotations

import re
import warnings

import h5py
import numpy as np
import pytest
import torch
from cli_process import run_cli

from nwb_facrnn import FacRNN, metrics, read_nwb, read_results
from nwb_facrnn.errors import OptionError
from nwb_facrnn.io import lazy
from nwb_facrnn.model import chunked, linear_start, training
from nwb_facrnn.model import data as model_data
from nwb_facrnn.model.chunked import ChunkedActivity, ChunkedTransitions
from nwb_facrnn.model.data import (
    activity_standardization,
    make_transitions,
    needs_standardization,
    observed_mean,
)
from nwb_facrnn.pipeline import fit_source
from nwb_facrnn.synthetic import make_imaging_session, make_lowrank_rnn_dataset


@pytest.fixture(scope="module")
def long_data():
    return make_lowrank_rnn_dataset(n_neurons=40, n_steps=20_000, seed=1)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 500 rows, 3 per window, blocks of ~1000 rows: every path runs many times."""
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 500)
    monkeypatch.setattr(chunked, "WINDOW_CHUNKS", 3)
    monkeypatch.setattr(model_data, "BLOCK_BYTES", 1000 * 4 * 40)


# --------------------------------------------------------------- in memory, without copies
def test_one_sequence_s_samples_are_views_of_the_activity():
    x = np.random.default_rng(0).standard_normal((1, 500, 7)).astype(np.float32)
    trans = make_transitions(x, None, None, torch.device("cpu"))
    assert trans.inputs is None and trans.weight is None
    assert np.shares_memory(trans.prev.numpy(), x) and np.shares_memory(trans.curr.numpy(), x)
    np.testing.assert_array_equal(trans.prev.numpy(), x[0, :-1])
    np.testing.assert_array_equal(trans.curr.numpy(), x[0, 1:])
    # trials and step masks pick rows (a copy), in the same order as before
    two = np.concatenate([x, x[:, ::-1]])
    step = np.ones((2, 500), bool)
    step[:, ::3] = False
    trans = make_transitions(two, None, None, torch.device("cpu"), step)
    keep = step.copy()
    keep[:, 0] = False
    lagged = np.concatenate([two[:, :1], two[:, :-1]], axis=1)
    np.testing.assert_array_equal(trans.prev.numpy(), lagged[keep])
    np.testing.assert_array_equal(trans.curr.numpy(), two[keep])


def test_statistics_by_blocks_equal_the_whole_array_computation(monkeypatch):
    monkeypatch.setattr(model_data, "BLOCK_BYTES", 64 * 4 * 5)  # blocks of 1024 rows
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 1500, 5)) * [1, 2, 3, 40, 0.001] + 7).astype(np.float32)
    observed = rng.random(x.shape) > 0.2
    w = observed.astype(np.float64)
    mean = (x * w).sum((0, 1)) / w.sum((0, 1))
    std = np.sqrt((w * (x - mean) ** 2).sum((0, 1)) / w.sum((0, 1)))
    np.testing.assert_allclose(observed_mean(x, observed), mean, rtol=1e-6)
    offset, scale = activity_standardization(x, observed)
    np.testing.assert_allclose(offset, mean, rtol=1e-6)
    np.testing.assert_allclose(scale, std, rtol=1e-5)
    assert needs_standardization(x, observed)  # unit 3's rms is ~40
    assert not needs_standardization(x[..., :3] - 7, None)


def test_the_linear_start_from_moments_equals_the_one_from_the_samples(monkeypatch, long_data):
    x = long_data.x[:4000]
    trans = make_transitions(x[None], None, None, torch.device("cpu"))
    model = FacRNN(progress=False)
    model.n_features_in_ = x.shape[1]
    module = model._new_module(1)
    dense = linear_start.reduced_rank_regression(module, trans, 6)
    monkeypatch.setattr(linear_start, "DENSE_RRR_ELEMENTS", 0)
    monkeypatch.setattr(model_data, "BLOCK_BYTES", 500 * 4 * x.shape[1])
    moments = linear_start.reduced_rank_regression(module, trans, 6)
    # the same connectivity W = A B (the axes' signs are a convention), offsets and noise
    np.testing.assert_allclose(moments["A"] @ moments["B"], dense["A"] @ dense["B"], atol=1e-6)
    np.testing.assert_allclose(np.abs(moments["A"]), np.abs(dense["A"]), rtol=1e-5, atol=1e-8)
    for key in ("a", "log_std"):
        np.testing.assert_allclose(moments[key], dense[key], rtol=1e-6, atol=1e-9)
    z_dense = np.tanh(x) @ dense["B"].T + dense["b"]
    z_moments = np.tanh(x) @ moments["B"].T + moments["b"]
    np.testing.assert_allclose(np.abs(z_moments), np.abs(z_dense), atol=1e-4)


def test_predictions_and_scores_by_blocks_equal_whole_ones(monkeypatch, long_data):
    x = long_data.x[:3000]
    model = FacRNN(n_init=1, max_steps=50, seed=0, progress=False).fit(x)
    whole = model.predict(x)
    latents = model.transform(x)
    monkeypatch.setattr(model_data, "BLOCK_BYTES", 1100 * 4 * x.shape[1])
    blocks = list(model.predict_blocks(x))
    assert [b[1:3] for b in blocks] == [(0, 1100), (1100, 2200), (2200, 3000)]
    np.testing.assert_allclose(np.concatenate([b[3] for b in blocks]), whole, atol=1e-6)
    np.testing.assert_allclose(model.transform(x), latents, atol=1e-6)
    observed = np.random.default_rng(0).random(x.shape) > 0.1
    acc = metrics.PooledR2()
    for lo in range(0, 3000, 700):
        acc.add(x[lo : lo + 700], whole[lo : lo + 700], observed[lo : lo + 700])
    assert acc.value() == pytest.approx(metrics.reconstruction_r2(x, whole, observed), abs=1e-9)


# ------------------------------------------------------------------ chunked from disk
def test_a_chunked_fit_reaches_the_in_memory_fit_s_quality(tmp_path, monkeypatch, long_data):
    """Windows of 4 chunks of 2000 rows: 3 windows of the 20 000 steps.  (The minibatches of
    a window are drawn from its stretches only, so windows must span much more than the
    dynamics' time scale: with windows of 3 x 500 rows the fit's log-likelihood drops by
    ~0.9 nats per step, its grouping does not.)"""
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 2000)
    monkeypatch.setattr(chunked, "WINDOW_CHUNKS", 4)
    monkeypatch.setattr(model_data, "BLOCK_BYTES", 1500 * 4 * 40)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=long_data.x, chunks=(250, 40))
    kw = dict(n_groups=2, group_rank=3, seed=0, progress=False)
    in_memory = FacRNN(**kw).fit(long_data.x)
    with h5py.File(path, "r") as f:
        source = f["x"]
        act = ChunkedActivity(source)
        assert act.chunk_rows == 2000 and act.shape == long_data.x.shape
        fit = FacRNN(**kw).fit(source)
        z = fit.transform(source)
        score = fit.score(source)
    r2_memory = metrics.group_latent_r2(long_data.z, in_memory.transform(long_data.x), 2).mean
    r2_chunked = metrics.group_latent_r2(long_data.z, z, 2).mean
    assert r2_memory > 0.95 and abs(r2_chunked - r2_memory) < 0.01, (r2_memory, r2_chunked)
    assert fit.n_steps_ == in_memory.n_steps_ == 2000  # the same budget
    # one-step log-likelihood (nats per step, all 40 units): chunked fits measured 0.03-0.18
    # nats below the in-memory fit (data seeds 1-2, fit seeds 0-2, 1 and 2 threads)
    assert score == pytest.approx(in_memory.score(long_data.x), abs=0.5)


def test_chunked_windows_visit_every_sample_once_per_pass(small_chunks):
    x = np.arange(2 * 1700, dtype=np.float32).reshape(1700, 2)
    seqs = ChunkedActivity(_OnDisk(x)).sequences()
    trans = ChunkedTransitions(seqs, torch.device("cpu"))
    assert len(trans) == 1699 and len(trans.chunks) == 4
    seen = []
    for window in trans.windows(torch.Generator().manual_seed(0)):
        assert len(window) <= 3 * 500
        np.testing.assert_array_equal(window.curr.numpy(), window.prev.numpy() + 2)
        seen.extend(window.prev.numpy()[:, 0].tolist())
    assert sorted(seen) == x[:-1, 0].tolist()
    n = sum(1 for _ in training.epoch_batches(trans, 128, torch.Generator().manual_seed(1)))
    # windows of 1500 and 199 samples (12 + 2), or of 1199 and 500 (10 + 4)
    assert n == trans.batches_per_epoch(128) == 14


class _OnDisk:
    """A (T, N) array-like that is not a numpy array (as an h5py dataset)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype = a, a.shape, a.dtype

    def __getitem__(self, key):
        return self.a[key]


def test_the_statistics_of_a_chunked_fit_read_the_file_once(small_chunks, monkeypatch):
    monkeypatch.setattr(model_data, "BLOCK_BYTES", 1024 * 4 * 6)  # 3 blocks
    x = np.random.default_rng(0).standard_normal((3000, 6)).astype(np.float32) * 5 + 2
    seqs = ChunkedActivity(_OnDisk(x)).sequences()
    reads = []
    read = seqs.read_rows
    seqs.read_rows = lambda i0, i1: reads.append(i0) or read(i0, i1)
    mean = observed_mean(seqs, None)
    standardize = needs_standardization(seqs, None)
    first = len(reads)
    offset, scale = activity_standardization(seqs, None)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-6)
    np.testing.assert_allclose(offset, x64.mean(0), rtol=1e-6)
    np.testing.assert_allclose(scale, x64.std(0), rtol=1e-6)
    assert standardize  # an rms of ~5
    # one pass for the moments, shared; the variance about the mean is a second one
    assert first == 3 and len(reads) == 6


def test_chunked_activity_refuses_what_it_cannot_do(small_chunks):
    x = np.random.default_rng(0).standard_normal((3000, 6)).astype(np.float32)
    x[2100, 4] = np.nan
    with pytest.raises(OptionError, match=r"x\.h5: NaN or inf at row 2100, column 4"):
        FacRNN(progress=False).fit(ChunkedActivity(_OnDisk(x), name="x.h5"))
    x[2100, 4] = 0
    with pytest.raises(OptionError, match="no external inputs"):
        FacRNN(progress=False).fit(_OnDisk(x), inputs=x)
    with pytest.raises(OptionError, match="smoothing"):
        FacRNN(progress=False, smoothing=2.0, max_steps=5).fit(_OnDisk(x))
    with pytest.raises(OptionError, match="early stopping"):
        FacRNN(progress=False, early_stopping=True).fit(_OnDisk(x))


# ---------------------------------------------------------------- read from NWB by chunks
@pytest.fixture(scope="module")
def imaging_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("chunked") / "session.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = make_imaging_session(path, seed=0, duration=4.0, n_rois=24)
    return path, truth


def test_read_nwb_leaves_a_long_session_on_disk(imaging_session, tmp_path, sha256):
    path, truth = imaging_session
    before = sha256(path)
    in_memory = read_nwb(path, series="DfOverF")
    assert isinstance(in_memory.activity, np.ndarray)  # "auto": small, read into memory
    data = read_nwb(path, series="DfOverF", chunked=True)
    assert isinstance(data.activity, ChunkedActivity) and data.activity.shape == (2000, 24)
    assert str(path) in data.activity.name and "DfOverF" in data.activity.name
    np.testing.assert_array_equal(np.asarray(data.activity), in_memory.activity)
    outcomes = {}
    for kind, source in (("memory", in_memory), ("chunked", data)):
        out = tmp_path / f"{kind}.nwb"
        fit_source(source, model_options=dict(seed=0, progress=False), output={"output": out})
        results = read_results(out)
        outcomes[kind] = metrics.group_latent_r2(truth.z, results.latents, 2).mean, results
    (r2_memory, _), (r2_chunked, results) = outcomes["memory"], outcomes["chunked"]
    assert r2_memory > 0.8 and abs(r2_chunked - r2_memory) < 0.01, (r2_memory, r2_chunked)
    assert results.latents.shape == (2000, 6) and results.metrics["reconstruction_r2"] > 0.6
    assert sha256(path) == before  # the source is never written


def test_auto_reads_chunk_by_chunk_when_memory_is_short(imaging_session, monkeypatch):
    path, _ = imaging_session
    monkeypatch.setattr(lazy, "available_memory", lambda: 3 * 2000 * 24 * 4 - 1.0)
    assert isinstance(read_nwb(path, series="DfOverF").activity, ChunkedActivity)
    # what a chunked read cannot do: "auto" reads into memory, True says why not
    assert isinstance(read_nwb(path, series="DfOverF", zscore=True).activity, np.ndarray)
    with pytest.raises(OptionError, match=r"session\.nwb: .*DfOverF.*zscore is set"):
        read_nwb(path, series="DfOverF", zscore=True, chunked=True)
    with pytest.raises(
        OptionError, match="400 bins for 2000 frames \\(bin_size is not the frame interval"
    ):
        read_nwb(path, series="DfOverF", bin_size=0.01, chunked=True)
    with pytest.raises(OptionError, match="chunked must be"):
        read_nwb(path, series="DfOverF", chunked="yes")


def test_available_memory_counts_the_address_space_limit(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (4 << 30, resource.RLIM_INFINITY))
    assert lazy.available_memory() <= (4 << 30) - lazy._vm_size()


def test_the_cli_fits_a_session_chunk_by_chunk_and_says_so(imaging_session, tmp_path):
    path, _ = imaging_session
    out = tmp_path / "fit.nwb"
    proc = run_cli(
        "fit", path, "--series", "DfOverF", "--chunked", "always", "--max-steps", "300",
        "--output", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"activity\s*│\s*on disk, read by chunks \(0 MB\)", proc.stdout), proc.stdout
    results = read_results(out)
    assert results.latents.shape == (2000, 6)
    assert results.provenance["chunked"] is True
    proc = run_cli("fit", path, "--series", "DfOverF", "--chunked", "always", "--zscore")
    assert proc.returncode == 2 and "zscore is set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_running_out_of_memory_is_a_user_error_with_the_way_out(monkeypatch, capsys):
    import nwb_facrnn.cli as cli

    def out_of_memory(**kw):
        raise MemoryError("Unable to allocate 2.24 GiB for an array with shape (1500000, 400)")

    monkeypatch.setattr(cli, "main", out_of_memory)
    with pytest.raises(SystemExit) as exc:
        cli.run()
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "out of memory (Unable to allocate 2.24 GiB" in err and "--chunked always" in err
    assert "internal error" not in err
