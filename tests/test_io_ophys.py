"""read_nwb on the synthetic voltage-imaging session, and FacRNN recovering its groups."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nwb_facrnn import FacRNN, read_nwb
from nwb_facrnn.metrics import group_latent_r2
from nwb_facrnn.synthetic import make_imaging_session

SMALL = dict(n_rois=30, frame_shape=(96, 96), duration=1.0, n_rejected=3)


def _make(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_imaging_session(path, **kw)


@pytest.fixture(scope="module", params=["imaging.nwb", "imaging.nwb.zarr"])
def imaging(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("ophys") / request.param
    return path, _make(path, seed=2, **SMALL)


def test_dff_traces_are_read_exactly(imaging):
    path, truth = imaging
    data = read_nwb(path)  # DfOverF is preferred over Fluorescence
    assert data.modality == "ophys" and data.is_continuous
    assert data.activity.shape == (truth.n_frames, truth.n_rois)
    np.testing.assert_array_equal(data.activity, truth.dff)
    assert data.mask.all()
    np.testing.assert_allclose(data.timestamps, truth.timestamps)
    assert data.bin_size == pytest.approx(1 / truth.rate)
    np.testing.assert_array_equal(data.unit_ids, truth.roi_ids)
    assert data.unit_table == "/processing/ophys/ImageSegmentation/PlaneSegmentation"
    assert data.provenance["objects"]["activity"] == "/processing/ophys/DfOverF/RoiResponseSeries"
    assert data.provenance["series_kind"] == "DfOverF"
    np.testing.assert_array_equal(data.unit_columns["accepted"], truth.accepted)


def test_series_choice_and_roi_selection(imaging):
    path, truth = imaging
    raw = read_nwb(path, series="Fluorescence", rois={"accepted": True})
    np.testing.assert_array_equal(raw.activity, truth.fluorescence[:, truth.accepted])
    np.testing.assert_array_equal(raw.unit_ids, truth.roi_ids[truth.accepted])
    by_path = read_nwb(path, series="/processing/ophys/Fluorescence/RoiResponseSeries")
    np.testing.assert_array_equal(by_path.activity, truth.fluorescence)


def test_binning_frames_to_a_bin_size(imaging):
    path, truth = imaging
    data = read_nwb(path, bin_size=5 / truth.rate)  # 5 frames per bin
    n = truth.n_frames // 5
    want = truth.dff[: n * 5].reshape(n, 5, -1).mean(axis=1)
    np.testing.assert_allclose(data.activity, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.timestamps, truth.timestamps[::5][:n])


def test_detrend_removes_photobleaching_and_zscore(imaging):
    path, truth = imaging
    acc = truth.accepted
    raw = read_nwb(path, series="Fluorescence", rois={"accepted": True})
    det = read_nwb(path, series="Fluorescence", rois={"accepted": True}, detrend="exponential")
    half = truth.n_frames // 2
    # raw fluorescence decays; the detrended trace has no trend left (first vs second half)
    drift_raw = raw.activity[half:].mean(0) / raw.activity[:half].mean(0) - 1
    drift_det = det.activity[half:].mean(0) - det.activity[:half].mean(0)
    assert np.median(drift_raw) < -0.02
    assert np.abs(np.median(drift_det)) < 0.002
    # (F - trend) / trend is a dF/F: it follows the true dF/F closely
    corr = [np.corrcoef(det.activity[:, j], truth.dff_true[:, acc][:, j])[0, 1] for j in range(5)]
    assert min(corr) > 0.8
    z = read_nwb(path, rois={"accepted": True}, detrend="linear", zscore=True)
    np.testing.assert_allclose(z.activity.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.activity.std(0), 1, atol=1e-4)


def test_facrnn_recovers_the_ground_truth_groups(tmp_path):
    """Acceptance: group latent R^2 >= 0.8, dominant group right for >= 90% of ROIs."""
    truth = _make(tmp_path / "groups.nwb", seed=0, frame_shape=(96, 96))
    data = read_nwb(tmp_path / "groups.nwb", rois={"accepted": True})
    model = FacRNN(n_groups=2, group_rank=3, seed=0, progress=False).fit(data)
    alignment = group_latent_r2(truth.z, model.transform(data), 2)
    assert alignment.mean >= 0.8 and alignment.per_group.min() >= 0.75
    # each ROI's dominant fitted group (largest output-loading norm), mapped to the true groups
    loadings = model.output_loadings_.reshape(data.n_units, 2, 3)
    dominant = np.linalg.norm(loadings, axis=2).argmax(axis=1)
    true_of_fitted = np.empty(2, dtype=int)
    true_of_fitted[alignment.assignment] = np.arange(2)
    true_groups = truth.roi_groups[truth.accepted]
    assert np.mean(true_of_fitted[dominant] == true_groups) >= 0.9


def test_imaging_trials_from_an_open_in_memory_nwbfile():
    """An NWBFile built in memory is read directly; aligned windows pick the right frames."""
    from nwb_facrnn.synthetic import imaging_nwbfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nwbfile, truth = imaging_nwbfile(seed=4, **SMALL)
    nwbfile.add_trial_column("stim_time", "stimulus onset (s)")
    for start in (0.1, 0.4, 0.7):
        nwbfile.add_trial(start_time=start, stop_time=start + 0.2, stim_time=start + 0.05)
    data = read_nwb(nwbfile, align="stim_time", window=(-0.02, 0.08), rois={"accepted": True})
    assert data.activity.shape == (3, 50, int(truth.accepted.sum()))
    assert data.provenance["backend"] == "in-memory"
    for s, start in enumerate((0.1, 0.4, 0.7)):
        first = round((start + 0.05 - 0.02 - truth.starting_time) * truth.rate)
        np.testing.assert_array_equal(
            data.activity[s], truth.dff[first : first + 50][:, truth.accepted]
        )
    whole = read_nwb(nwbfile)
    assert whole.activity.shape[:2] == (3, 100) and whole.mask.all()
