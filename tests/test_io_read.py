"""read_nwb on the synthetic sessions: exactly the counts and traces that were written.

Every expectation is computed here from the ground truth the generators return, bin by bin,
independently of :mod:`nwb_facrnn.io.binning`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nwb_facrnn import FacRNN, NeuralData, read_nwb
from nwb_facrnn.synthetic import make_spiking_session

BACKENDS = ["session.nwb", "session.nwb.zarr"]


@pytest.fixture(scope="module", params=BACKENDS)
def spiking(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("spiking") / request.param
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = make_spiking_session(path, seed=3, n_units=24, n_trials=12)
    return path, truth


def _expected(truth, starts, n_valid, n_bins, bin_size, units=None):
    """Counts and mask bin by bin from the truth: edges[k] <= t < edges[k + 1]."""
    units = np.arange(truth.n_units) if units is None else units
    counts = np.zeros((len(starts), n_bins, len(units)))
    mask = np.zeros(counts.shape, dtype=bool)
    for s, (t0, n) in enumerate(zip(starts, n_valid, strict=True)):
        edges = t0 + np.arange(n + 1) * bin_size
        for j, u in enumerate(units):
            train = truth.spike_times[u]
            counts[s, :n, j] = np.diff(np.searchsorted(train, edges, side="left"))
            iv = truth.obs_intervals[u]
            inside = (iv[:, 0][None] <= edges[:-1, None]) & (edges[1:, None] <= iv[:, 1][None])
            mask[s, :n, j] = inside.any(axis=1)
    return counts, mask


def test_whole_trials_are_padded_and_masked(spiking):
    path, truth = spiking
    data = read_nwb(path, bin_size=0.02)
    tr = truth.trials
    n_valid = np.floor((tr["stop_time"] - tr["start_time"]) / 0.02 + 1e-9).astype(int)
    assert isinstance(data, NeuralData) and data.modality == "spikes"
    assert data.activity.shape == (12, n_valid.max(), 24) and data.activity.dtype == np.float32
    assert len(set(n_valid)) > 1  # trials of unequal length
    counts, mask = _expected(truth, tr["start_time"], n_valid, n_valid.max(), 0.02)
    np.testing.assert_array_equal(data.mask, mask)
    np.testing.assert_array_equal(data.activity, np.where(mask, counts, 0))
    np.testing.assert_allclose(data.timestamps[:, 0], tr["start_time"])
    np.testing.assert_array_equal(data.trial_ids, np.arange(12))
    np.testing.assert_array_equal(data.trials["condition"], tr["condition"])
    np.testing.assert_array_equal(data.trials["split"], tr["split"])
    np.testing.assert_array_equal(data.unit_ids, truth.unit_ids)
    assert data.unit_table == "/units"
    assert data.provenance["source"] == str(path)
    assert data.provenance["objects"]["trials"] == "/intervals/trials"
    assert data.activity.sum() > 1000


def test_aligned_windows_with_behavior(spiking):
    path, truth = spiking
    data = read_nwb(
        path, bin_size=0.02, align="move_onset_time", window=(-0.25, 0.45), behavior="hand_vel"
    )
    onset = truth.trials["move_onset_time"]
    assert data.activity.shape == (12, 35, 24)
    np.testing.assert_allclose(data.timestamps[:, 0], onset - 0.25)
    counts, mask = _expected(truth, onset - 0.25, np.full(12, 35), 35, 0.02)
    np.testing.assert_array_equal(data.mask, mask)
    np.testing.assert_array_equal(data.activity[mask], counts[mask])
    # behaviour: the mean of the 1 kHz samples inside each bin
    t, vel = truth.behavior["hand_vel"]
    beh = data.behavior["hand_vel"]
    assert beh.shape == (12, 35, 2)
    for s in (0, 7):
        for k in (0, 17, 34):
            b0 = onset[s] - 0.25 + k * 0.02
            inside = (t >= b0 - 1e-9) & (t < b0 + 0.02 - 1e-9)
            np.testing.assert_allclose(beh[s, k], vel[inside].mean(0), rtol=1e-5, atol=1e-4)
    assert data.provenance["layout"] == {
        "layout": "aligned",
        "align": "move_onset_time",
        "window": [-0.25, 0.45],
    }


def test_continuous_time_range_and_obs_interval_gaps(spiking):
    path, truth = spiking
    data = read_nwb(path, trials=False, bin_size=0.05, time_range=(2.0, truth.session_end - 1))
    n = int(np.floor((truth.session_end - 3.0) / 0.05 + 1e-9))
    assert data.is_continuous and data.activity.shape == (n, 24) and data.trial_ids is None
    counts, mask = _expected(truth, [2.0], [n], n, 0.05)
    np.testing.assert_array_equal(data.mask, mask[0])
    np.testing.assert_array_equal(data.activity, np.where(mask[0], counts[0], 0))
    gapped = [len(iv) > 1 for iv in truth.obs_intervals]
    assert any(gapped)
    # a unit with a gap is unobserved (masked, not zero) inside it; the others never
    assert (~data.mask[:, gapped]).sum() > 10 and data.mask[:, ~np.array(gapped)].all()


def test_unit_selection_by_column_and_electrode_group(spiking):
    path, truth = spiking
    kept = read_nwb(path, units={"heldout": False}, trials=False)
    np.testing.assert_array_equal(kept.unit_ids, truth.unit_ids[~truth.heldout])
    m1 = read_nwb(path, units="electrode_group == M1", trials=False)
    np.testing.assert_array_equal(
        m1.unit_ids, truth.unit_ids[truth.electrode_group_of_unit == "M1"]
    )
    assert set(m1.unit_columns["electrode_group"]) == {"M1"}
    assert set(m1.unit_columns["location"]) == {"primary motor cortex"}
    full = read_nwb(path, trials=False)
    np.testing.assert_array_equal(m1.activity, full.activity[:, m1.unit_ids])


def test_trial_selection_and_select_trials(spiking):
    path, truth = spiking
    train = read_nwb(path, trials={"split": "train"})
    want = np.flatnonzero(truth.trials["split"] == "train")
    np.testing.assert_array_equal(train.trial_ids, want)
    full = read_nwb(path)
    sub = full.select_trials(full.trials["split"] == "train")
    np.testing.assert_array_equal(sub.trial_ids, want)
    np.testing.assert_array_equal(sub.activity, train.activity[:, : sub.n_bins])


def test_hdf5_and_zarr_read_identically(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_spiking_session(tmp_path / "a.nwb", seed=5, n_units=10, n_trials=6)
        make_spiking_session(tmp_path / "a.nwb.zarr", seed=5, n_units=10, n_trials=6)
    kw = dict(align="move_onset_time", window=(-0.2, 0.3), behavior=["hand_vel", "hand_pos"])
    h5, zr = read_nwb(tmp_path / "a.nwb", **kw), read_nwb(tmp_path / "a.nwb.zarr", **kw)
    assert (h5.provenance["backend"], zr.provenance["backend"]) == ("hdf5", "zarr")
    for name in ("activity", "mask", "timestamps", "unit_ids", "trial_ids"):
        np.testing.assert_array_equal(getattr(h5, name), getattr(zr, name))
    for name in ("hand_vel", "hand_pos"):
        np.testing.assert_array_equal(h5.behavior[name], zr.behavior[name])


def test_an_open_nwbfile_is_accepted_and_left_open(tmp_path):
    from pynwb import NWBHDF5IO

    path = tmp_path / "open.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_spiking_session(path, seed=1, n_units=8, n_trials=4)
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        data = read_nwb(nwbfile, trials=False)
        assert len(nwbfile.units.id) == 8  # still readable: not closed by read_nwb
        assert (data.provenance["source"], data.provenance["backend"]) == (str(path), "hdf5")
        assert nwbfile.units["spike_times"].target.data[:5].shape == (5,)
    np.testing.assert_array_equal(data.activity, read_nwb(path, trials=False).activity)


def test_facrnn_fits_neural_data_from_nwb(spiking):
    path, _ = spiking
    data = read_nwb(path, units={"heldout": False})
    model = FacRNN(
        n_groups=2, group_rank=3, observation="poisson", max_epochs=5, n_init=1, progress=False
    )
    z = model.fit(data).transform(data)
    assert z.shape == (*data.activity.shape[:2], 6)
    padded = ~data.mask.any(axis=2)
    assert padded.any() and np.isnan(z[padded]).all() and np.isfinite(z[~padded]).all()
