"""Tests for the synthetic NWB sessions: nwb_facrnn.synthetic.spiking and .imaging.

Files are read back with pynwb / hdmf-zarr directly (not with nwb_facrnn.io readers). Sizes are
kept small so the module runs in a few tens of seconds.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from nwb_facrnn.errors import OptionError
from nwb_facrnn.synthetic import (
    ImagingTruth,
    SpikingTruth,
    imaging_nwbfile,
    make_imaging_session,
    make_spiking_session,
    spiking_nwbfile,
)
from nwb_facrnn.synthetic._imaging_fov import ellipse_mask as _ellipse_mask

SPIKING = {"n_units": 30, "n_trials": 20}
IMAGING = {"n_rois": 16, "frame_shape": (64, 64), "duration": 2.0}
TINY_SPIKING = {"n_units": 6, "n_trials": 4}
TINY_IMAGING = {"n_rois": 6, "frame_shape": (48, 48), "duration": 0.4}


def _affine_r2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-column R^2 of the least-squares affine prediction of y (T, m) from x (T, k)."""
    design = np.column_stack([x, np.ones(len(x))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    return 1.0 - residual.var(axis=0) / y.var(axis=0)


def _group_cols(g: int, rank: int = 3) -> slice:
    return slice(g * rank, (g + 1) * rank)


def _serious_findings(path, **kwargs) -> list:
    from nwbinspector import Importance, inspect_nwbfile

    return [
        m
        for m in inspect_nwbfile(nwbfile_path=str(path), **kwargs)
        if m.importance.value >= Importance.BEST_PRACTICE_VIOLATION.value
    ]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def spiking(tmp_path_factory) -> SpikingTruth:
    path = tmp_path_factory.mktemp("spiking") / "session.nwb"
    return make_spiking_session(path, seed=3, **SPIKING)


@pytest.fixture(scope="module")
def spiking_file(spiking):
    with NWBHDF5IO(str(spiking.path), "r") as io:
        yield io.read()


@pytest.fixture(scope="module")
def imaging(tmp_path_factory) -> ImagingTruth:
    path = tmp_path_factory.mktemp("imaging") / "session.nwb"
    return make_imaging_session(path, seed=5, **IMAGING)


@pytest.fixture(scope="module")
def imaging_file(imaging):
    with NWBHDF5IO(str(imaging.path), "r") as io:
        yield io.read()


@pytest.fixture(scope="module")
def movie(imaging_file) -> np.ndarray:
    return imaging_file.acquisition["OnePhotonSeries"].data[:]


# --------------------------------------------------------------------------- spiking: contents


def test_spiking_units_read_back_exactly(spiking, spiking_file):
    units = spiking_file.units
    n = SPIKING["n_units"]
    assert spiking.path.name == "session.nwb"
    assert len(units) == n == spiking.n_units
    np.testing.assert_array_equal(units.id[:], spiking.unit_ids)
    for i in range(n):
        written = units["spike_times"][i]
        assert written.dtype == np.float64
        np.testing.assert_array_equal(written, spiking.spike_times[i])
        np.testing.assert_array_equal(units["obs_intervals"][i], spiking.obs_intervals[i])
        assert np.all(np.diff(written) > 0)
        # On the 30 kHz clock.
        np.testing.assert_allclose(written * 30000, np.round(written * 30000), atol=1e-6)
    np.testing.assert_array_equal(units["heldout"][:], spiking.heldout)
    assert units["heldout"].data.dtype == np.bool_
    assert units.resolution == pytest.approx(1 / 30000)
    for name in units.colnames:
        assert units[name].description


def test_spiking_obs_intervals_and_gaps(spiking):
    n = SPIKING["n_units"]
    gapped = [i for i, obs in enumerate(spiking.obs_intervals) if len(obs) == 2]
    assert len(gapped) == round(0.1 * n)
    for i, obs in enumerate(spiking.obs_intervals):
        assert obs[0, 0] == 0.0 and obs[-1, 1] == spiking.session_end
        spikes = spiking.spike_times[i]
        inside = np.zeros(spikes.size, dtype=bool)
        for lo, hi in obs:
            inside |= (spikes >= lo) & (spikes <= hi)
        assert inside.all(), f"unit {i} spikes outside its obs_intervals"
        if len(obs) == 2:
            gap = obs[1, 0] - obs[0, 1]
            assert 0.15 * spiking.session_end - 1e-3 <= gap <= 0.30 * spiking.session_end + 1e-3
            assert obs[0, 1] >= 0.25 * spiking.session_end - 1e-3
            assert obs[1, 0] <= 0.75 * spiking.session_end + 1e-3
            # The rate would have produced spikes in the gap.
            assert spiking.rates[round(obs[0, 1] * 1000) : round(obs[1, 0] * 1000), i].sum() > 50


def test_spiking_mean_rates(spiking):
    observed = np.array(
        [
            s.size / np.sum(obs[:, 1] - obs[:, 0])
            for s, obs in zip(spiking.spike_times, spiking.obs_intervals, strict=True)
        ]
    )
    assert observed.mean() == pytest.approx(15.0, rel=0.05)
    assert np.all(np.abs(observed - 15.0) < 0.35 * 15.0)
    # The true rates average to mean_rate over the session.
    np.testing.assert_allclose(spiking.rates.mean(axis=0), 15.0, rtol=0.03)


def test_spiking_rates_follow_block_sparse_model(spiking):
    k = spiking.n_groups * spiking.group_rank
    assert spiking.A.shape == (spiking.n_units, k)
    assert spiking.z.shape == (len(spiking.z_times), k) and spiking.z.dtype == np.float32
    assert len(spiking.z_times) == round(spiking.session_end * 1000)
    np.testing.assert_allclose(spiking.z.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(spiking.z.std(axis=0), 1.0, rtol=1e-4)
    for i, g in enumerate(spiking.unit_groups):
        nonzero = np.flatnonzero(spiking.A[i])
        assert set(nonzero) <= set(range(g * 3, g * 3 + 3)) and nonzero.size == 3
    assert np.bincount(spiking.unit_groups).tolist() == [15, 15]
    drive = spiking.z[:5000].astype(np.float64) @ spiking.A.T + spiking.a
    np.testing.assert_allclose(
        spiking.rates[:5000], np.logaddexp(0.0, drive) / 0.02, rtol=1e-5, atol=1e-4
    )
    # B, b: least-squares recurrence on 20 ms bins explains most of the latent variance.
    n_bins = len(spiking.z) // 20
    z_bins = spiking.z[: n_bins * 20].astype(np.float64).reshape(n_bins, 20, -1).mean(axis=1)
    predicted = np.tanh(z_bins[:-1] @ spiking.A.T + spiking.a) @ spiking.B.T + spiking.b
    r2 = 1 - ((z_bins[1:] - predicted) ** 2).mean(axis=0) / z_bins[1:].var(axis=0)
    assert np.all(r2 > 0.9)


def test_spiking_units_follow_their_group_latents(spiking):
    """Binned spike counts are predicted by the unit's own latent group, not by the other."""
    n_bins = round(spiking.session_end / 0.02)
    edges = np.arange(n_bins + 1) * 0.02
    counts = np.stack([np.histogram(s, edges)[0] for s in spiking.spike_times], axis=1)
    from scipy.ndimage import gaussian_filter1d

    smooth = gaussian_filter1d(counts.astype(float), 2.0, axis=0)
    z_bins = spiking.z[: n_bins * 20].astype(np.float64).reshape(n_bins, 20, -1).mean(axis=1)
    gap_units = np.array([len(obs) == 2 for obs in spiking.obs_intervals])
    r2 = np.stack([_affine_r2(z_bins[:, _group_cols(g)], smooth) for g in range(2)], axis=1)
    own = r2[np.arange(spiking.n_units), spiking.unit_groups]
    other = r2[np.arange(spiking.n_units), 1 - spiking.unit_groups]
    ok = ~gap_units
    assert np.mean(own[ok] > other[ok]) >= 0.9
    assert np.median(own[ok]) > 0.15 and np.median(other[ok]) < 0.05


def test_spiking_trials(spiking, spiking_file):
    trials = spiking_file.trials.to_dataframe()
    truth = spiking.trials
    assert len(trials) == SPIKING["n_trials"]
    for column in ("start_time", "stop_time", "move_onset_time", "condition"):
        np.testing.assert_array_equal(trials[column].to_numpy(), truth[column])
    assert list(trials["split"]) == list(truth["split"])
    start, onset, stop = truth["start_time"], truth["move_onset_time"], truth["stop_time"]
    assert np.all((start < onset) & (onset < stop))
    assert np.all(np.diff(start) > 0) and np.all(start[1:] - stop[:-1] >= 0.2 - 1e-9)
    assert np.all((onset - start >= 0.3 - 1e-9) & (onset - start <= 0.6 + 1e-9))
    assert np.all((stop - onset >= 0.5 - 1e-9) & (stop - onset <= 0.8 + 1e-9))
    assert np.unique(np.round(stop - start, 3)).size > 5  # unequal lengths
    assert start[0] == pytest.approx(1.0)
    assert spiking.session_end == pytest.approx(stop[-1] + 1.0)
    assert set(truth["split"]) == {"train", "val", "test"}
    assert np.sum(truth["split"] == "train") == 14
    assert np.bincount(truth["condition"]).tolist() == [5, 5, 5, 5]
    for name in ("move_onset_time", "condition", "split"):
        assert spiking_file.trials[name].description


def test_spiking_heldout_and_electrodes(spiking, spiking_file):
    assert spiking.heldout.sum() == round(0.2 * SPIKING["n_units"])
    assert set(spiking_file.electrode_groups) == {"M1", "PMd"}
    assert spiking_file.electrode_groups["M1"].location == "primary motor cortex"
    assert spiking_file.electrode_groups["PMd"].location == "dorsal premotor cortex"
    assert list(spiking_file.devices) == ["Utah array"]
    electrodes = spiking_file.electrodes.to_dataframe()
    assert len(electrodes) == spiking.n_units
    counts = {name: int(np.sum(spiking.electrode_group_of_unit == name)) for name in ("M1", "PMd")}
    assert counts == {"M1": 15, "PMd": 15}
    for i in range(spiking.n_units):
        (row,) = spiking_file.units["electrodes"][i].index
        assert electrodes["group_name"].iloc[row] == spiking.electrode_group_of_unit[i]
        assert spiking_file.units["electrode_group"][i].name == spiking.electrode_group_of_unit[i]
    positions = electrodes[["rel_x", "rel_y"]].to_numpy()
    np.testing.assert_array_equal(positions, spiking.electrode_positions)
    for name in ("M1", "PMd"):
        rows = positions[spiking.electrode_group_of_unit == name]
        assert len(np.unique(rows, axis=0)) == len(rows)


def test_spiking_behavior(spiking, spiking_file):
    behavior = spiking_file.processing["behavior"]
    vel, pos = behavior["hand_vel"], behavior["hand_pos"]
    assert vel.rate == pos.rate == 1000.0 and vel.starting_time == 0.0
    assert pos.unit == "millimeters" and pos.reference_frame
    assert vel.unit == "millimeters/second"
    v, p = vel.data[:], pos.data[:]
    assert v.shape == p.shape == (len(spiking.z_times), 2)
    np.testing.assert_array_equal(v, spiking.behavior["hand_vel"][1])
    np.testing.assert_array_equal(spiking.behavior["hand_vel"][0], spiking.z_times)
    # Linearly decodable from the latents (group 0 only), not from group 1.
    assert np.all(_affine_r2(spiking.z.astype(np.float64), v) > 0.99)
    assert np.all(_affine_r2(spiking.z[:, 3:].astype(np.float64), v) < 0.1)
    assert 40 < v.std(axis=0).mean() < 120  # mm/s
    # Position is the cumulative integral of velocity.
    np.testing.assert_allclose(np.diff(p, axis=0), v[1:] / 1000.0, atol=1e-9)
    np.testing.assert_allclose(p[0], v[0] / 1000.0)


def test_spiking_metadata(spiking, spiking_file):
    subject = spiking_file.subject
    assert subject.species == "Macaca mulatta" and subject.sex == "M" and subject.age == "P8Y"
    assert subject.subject_id
    start = spiking_file.session_start_time
    assert isinstance(start, datetime) and start.tzinfo is not None
    assert spiking_file.experimenter and spiking_file.institution and spiking_file.lab
    assert "synthetic" in list(spiking_file.keywords[:])
    assert spiking_file.session_description and spiking_file.experiment_description


def test_spiking_inspector(spiking):
    assert _serious_findings(spiking.path) == []


# --------------------------------------------------------------------------- imaging: contents


def test_imaging_read_back_exactly(imaging, imaging_file, movie):
    n_frames = round(IMAGING["duration"] * 500)
    ophys = imaging_file.processing["ophys"]
    raw = ophys["Fluorescence"]["RoiResponseSeries"]
    dff = ophys["DfOverF"]["RoiResponseSeries"]
    np.testing.assert_array_equal(raw.data[:], imaging.fluorescence)
    np.testing.assert_array_equal(dff.data[:], imaging.dff)
    assert imaging.fluorescence.dtype == imaging.dff.dtype == np.float32
    for series in (raw, dff):
        assert series.rate == 500.0 and series.starting_time == 0.0 and series.timestamps is None
        assert series.rois.data[:].tolist() == list(range(IMAGING["n_rois"]))
    assert raw.unit == "a.u." and dff.unit == "n.a."
    planes = ophys["ImageSegmentation"]["PlaneSegmentation"]
    np.testing.assert_array_equal(planes["image_mask"][:], imaging.image_masks)
    np.testing.assert_array_equal(planes["accepted"][:], imaging.accepted)
    assert planes["accepted"].description
    assert movie.shape == (n_frames, *IMAGING["frame_shape"]) and movie.dtype == np.uint16
    dataset = imaging_file.acquisition["OnePhotonSeries"].data
    assert dataset.compression == "gzip" and dataset.chunks == (50, *IMAGING["frame_shape"])
    np.testing.assert_allclose(imaging.timestamps, np.arange(n_frames) / 500.0)
    plane = imaging_file.imaging_planes["ImagingPlane"]
    assert plane.imaging_rate == 500.0 and plane.indicator and plane.excitation_lambda > 300
    assert imaging_file.subject.species == "Mus musculus"


def test_imaging_masks_are_ellipses(imaging):
    masks = imaging.image_masks
    h, w = imaging.frame_shape
    assert masks.shape == (IMAGING["n_rois"], h, w) and masks.dtype == np.float32
    assert set(np.unique(masks)) == {0.0, 1.0}
    assert masks.sum(axis=0).max() == 1.0  # no overlap
    assert masks[:, 0].sum() == masks[:, -1].sum() == masks[:, :, 0].sum() == 0  # inside
    areas = masks.sum(axis=(1, 2))
    expected = math.pi * imaging.roi_axes.prod(axis=1)
    np.testing.assert_allclose(areas, expected, rtol=0.15)
    assert np.all((imaging.roi_axes[:, 0] >= 4.5) & (imaging.roi_axes[:, 0] <= 7.0))
    for i in range(len(masks)):
        redrawn = _ellipse_mask(
            imaging.frame_shape, imaging.roi_centers[i], imaging.roi_axes[i], imaging.roi_angles[i]
        )
        np.testing.assert_array_equal(masks[i], redrawn)


def test_imaging_movie_is_masks_times_fluorescence(imaging, movie, imaging_file):
    background = (
        imaging.camera_offset + imaging.background[None] * imaging.background_bleach[:, None, None]
    ).astype(np.float32)
    masks = imaging.image_masks
    frames = [0, 333, len(movie) - 1]
    for t in frames:
        signal = movie[t].astype(np.float32) - background[t]
        projected = (masks * signal).sum(axis=(1, 2)) / masks.sum(axis=(1, 2))
        assert np.corrcoef(projected, imaging.fluorescence[t])[0, 1] > 0.99
        np.testing.assert_allclose(projected, imaging.fluorescence[t], rtol=0.02)
        outside = masks.sum(axis=0) == 0
        assert abs(np.mean(signal[outside])) < 1.0
    # Over time, for every ROI.
    signal = movie.astype(np.float32) - background
    area = masks.sum(axis=(1, 2))
    projected = np.einsum("thw,rhw->tr", signal, masks) / area
    for i in range(len(masks)):
        assert np.corrcoef(projected[:, i], imaging.fluorescence[:, i])[0, 1] > 0.95
    images = imaging_file.processing["ophys"]["summary_images"]
    np.testing.assert_allclose(images["mean"].data[:], movie.mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(images["max"].data[:], movie.max(axis=0))


def test_imaging_bleaching_and_dff(imaging):
    one_second = round(imaging.rate)
    first, last = slice(0, one_second), slice(-one_second, None)
    f_ratio = imaging.fluorescence[last].mean(axis=0) / imaging.fluorescence[first].mean(axis=0)
    expected = np.exp(-1.0 / imaging.bleach_taus)  # centres of the two seconds are 1 s apart
    np.testing.assert_allclose(f_ratio, expected, rtol=0.02)
    assert np.all(f_ratio < 0.93)
    dff_drift = imaging.dff[last].mean(axis=0) - imaging.dff[first].mean(axis=0)
    assert np.all(np.abs(dff_drift) < 0.01)
    np.testing.assert_allclose(imaging.dff.mean(axis=0), 0.0, atol=0.005)
    np.testing.assert_allclose(
        imaging.dff, imaging.fluorescence / imaging.baseline - 1, rtol=1e-5, atol=1e-6
    )
    acc = imaging.accepted
    corr = [
        np.corrcoef(imaging.dff[:, i], imaging.dff_true[:, i])[0, 1] for i in np.flatnonzero(acc)
    ]
    assert min(corr) > 0.8 and np.mean(corr) > 0.9
    # dF/F of a voltage indicator: a few percent.
    assert 0.01 < imaging.dff[:, acc].std(axis=0).mean() < 0.05


def test_imaging_latent_structure(imaging):
    acc = imaging.accepted
    assert acc.sum() == IMAGING["n_rois"] - 2
    assert np.all(imaging.roi_groups[~acc] == -1)
    assert np.bincount(imaging.roi_groups[acc]).tolist() == [7, 7]
    assert np.all(imaging.A[~acc] == 0) and np.all(imaging.voltage[:, ~acc] == 0)
    assert not imaging.spikes[:, ~acc].any()
    z = imaging.z.astype(np.float64)
    dff = imaging.dff.astype(np.float64)
    # Rejected ROIs: only a slow neuropil-like fluctuation independent of z (over 2 s a smooth
    # trace still gets a small spurious R^2 from 7 regressors).
    r2_all = _affine_r2(z, dff)
    assert np.all(r2_all[~acc] < 0.3), "rejected ROIs carry latent signal"
    assert np.all(r2_all[acc] > 0.4) and r2_all[acc].mean() > 0.6
    for i in np.flatnonzero(acc):
        g = imaging.roi_groups[i]
        own = _affine_r2(z[:, _group_cols(g)], dff[:, i : i + 1])[0]
        other = _affine_r2(z[:, _group_cols(1 - g)], dff[:, i : i + 1])[0]
        assert own > 0.4 and other < 0.2 and np.flatnonzero(imaging.A[i]).size == 3
    # B, b: least-squares recurrence on the frame grid.
    predicted = np.tanh(z[:-1] @ imaging.A.T + imaging.a) @ imaging.B.T + imaging.b
    r2 = 1 - ((z[1:] - predicted) ** 2).mean(axis=0) / z[1:].var(axis=0)
    assert np.all(r2 > 0.9)


def test_imaging_spikes(imaging):
    acc = imaging.accepted
    clean = imaging.z.astype(np.float64) @ imaging.A.T + imaging.a
    spikes = imaging.spikes
    assert spikes.dtype == np.bool_
    assert np.all(clean[spikes] >= np.broadcast_to(imaging.spike_thresholds, clean.shape)[spikes])
    for i in np.flatnonzero(acc):
        frames = np.flatnonzero(spikes[:, i])
        assert frames.size > 0
        assert np.all(np.diff(frames) >= 3)
    rate = spikes[:, acc].sum(axis=0) / (len(spikes) / imaging.rate)
    assert 0.5 < rate.mean() < 20.0
    # A spike is a transient in dF/F.
    t, i = np.argwhere(spikes)[0]
    assert imaging.dff_true[t, i] - imaging.dff_gain[i] * imaging.voltage[t, i] == pytest.approx(
        0.08, rel=0.3
    )


def test_imaging_inspector(imaging):
    assert _serious_findings(imaging.path) == []


# --------------------------------------------------------------------------- Zarr


def test_zarr_round_trip(tmp_path):
    from hdmf_zarr.nwb import NWBZarrIO

    spiking = make_spiking_session(tmp_path / "spiking.nwb.zarr", seed=1, **TINY_SPIKING)
    imaging = make_imaging_session(tmp_path / "imaging.nwb.zarr", seed=1, **TINY_IMAGING)
    assert spiking.path.is_dir() and (spiking.path / ".zgroup").is_file()
    with NWBZarrIO(str(spiking.path), "r") as io:
        nwbfile = io.read()
        for i in range(spiking.n_units):
            np.testing.assert_array_equal(nwbfile.units["spike_times"][i], spiking.spike_times[i])
        np.testing.assert_array_equal(nwbfile.units["heldout"][:], spiking.heldout)
        assert list(nwbfile.trials["split"][:]) == list(spiking.trials["split"])
        vel = nwbfile.processing["behavior"]["hand_vel"].data[:]
        np.testing.assert_array_equal(vel, spiking.behavior["hand_vel"][1])
    with NWBZarrIO(str(imaging.path), "r") as io:
        nwbfile = io.read()
        ophys = nwbfile.processing["ophys"]
        np.testing.assert_array_equal(ophys["DfOverF"]["RoiResponseSeries"].data[:], imaging.dff)
        movie = nwbfile.acquisition["OnePhotonSeries"].data
        assert movie.dtype == np.uint16 and movie.compressor is not None
        frame = movie[0].astype(np.float32) - imaging.camera_offset - imaging.background
        mask = imaging.image_masks[0].astype(bool)
        assert frame[mask].mean() == pytest.approx(imaging.fluorescence[0, 0], rel=0.02)


def test_zarr_spiking_has_no_pickled_arrays(tmp_path):
    """Object references (electrodes/group, units/electrode_group) use the JSON codec."""
    from nwb_facrnn.io.backend import zarr_pickled_arrays

    truth = make_spiking_session(tmp_path / "spiking.nwb.zarr", seed=1, **TINY_SPIKING)
    assert zarr_pickled_arrays(truth.path) == []


# --------------------------------------------------------------------------- determinism, errors


def test_spiking_deterministic():
    _, first = spiking_nwbfile(seed=7, **TINY_SPIKING)
    _, again = spiking_nwbfile(seed=7, **TINY_SPIKING)
    _, other = spiking_nwbfile(seed=8, **TINY_SPIKING)
    for a, b in zip(first.spike_times, again.spike_times, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.z, again.z)
    np.testing.assert_array_equal(first.trials["start_time"], again.trials["start_time"])
    assert not np.array_equal(first.spike_times[0], other.spike_times[0])
    assert not np.array_equal(first.z, other.z)
    # Latents and trials do not depend on the number of units.
    _, more_units = spiking_nwbfile(seed=7, **{**TINY_SPIKING, "n_units": 8})
    np.testing.assert_array_equal(first.z, more_units.z)


def test_imaging_deterministic():
    file_a, first = imaging_nwbfile(seed=2, backend=None, **TINY_IMAGING)
    file_b, again = imaging_nwbfile(seed=2, backend=None, **TINY_IMAGING)
    _, other = imaging_nwbfile(seed=3, backend=None, **TINY_IMAGING)
    np.testing.assert_array_equal(first.fluorescence, again.fluorescence)
    np.testing.assert_array_equal(first.dff, again.dff)
    np.testing.assert_array_equal(first.image_masks, again.image_masks)
    np.testing.assert_array_equal(
        file_a.acquisition["OnePhotonSeries"].data, file_b.acquisition["OnePhotonSeries"].data
    )
    assert file_a.identifier == file_b.identifier
    assert not np.array_equal(first.dff, other.dff)
    assert not np.array_equal(first.image_masks, other.image_masks)


def test_identifiers_and_start_times():
    file_a, _ = spiking_nwbfile(seed=7, **TINY_SPIKING)
    file_b, _ = spiking_nwbfile(seed=7, **TINY_SPIKING)
    file_c, _ = spiking_nwbfile(seed=8, **TINY_SPIKING)
    assert file_a.identifier == file_b.identifier != file_c.identifier
    assert file_a.session_start_time == file_b.session_start_time != file_c.session_start_time


def test_make_session_refuses_to_overwrite(tmp_path):
    path = tmp_path / "s.nwb"
    make_spiking_session(path, seed=0, **TINY_SPIKING)
    with pytest.raises(FileExistsError):
        make_spiking_session(path, seed=1, **TINY_SPIKING)
    truth = make_spiking_session(path, seed=1, overwrite=True, **TINY_SPIKING)
    with NWBHDF5IO(str(path), "r") as io:
        np.testing.assert_array_equal(io.read().units["spike_times"][0], truth.spike_times[0])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_groups": 0}, "n_groups"),
        ({"group_rank": 2}, "group_rank must be 3"),
        ({"n_units": 1}, "n_units must be at least n_groups"),
        ({"n_trials": 2}, "n_trials"),
        ({"n_conditions": 0}, "n_conditions"),
        ({"mean_rate": 0.0}, "mean_rate"),
        ({"mean_rate": 500.0}, "mean_rate must be at most"),
        ({"heldout_fraction": 1.0}, "heldout_fraction"),
        ({"gap_fraction": -0.1}, "gap_fraction"),
        ({"gap_fraction": 1.5}, "gap_fraction"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_spiking_bad_parameters(params, match):
    with pytest.raises(OptionError, match=match):
        spiking_nwbfile(**{**TINY_SPIKING, **params})


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_groups": 0}, "n_groups"),
        ({"group_rank": 4}, "group_rank must be 3"),
        ({"n_rois": 0}, "n_rois"),
        ({"n_rejected": 5}, "n_rois - n_rejected must be at least n_groups"),
        ({"frame_shape": (16, 64)}, "frame_shape"),
        ({"frame_shape": (64,)}, "frame_shape"),
        ({"rate": 50.0}, "rate must be at least 100"),
        ({"duration": 0.1}, "at least 100 frames"),
        ({"bleach_tau": 0.0}, "bleach_tau"),
        ({"spike_amplitude": -0.1}, "spike_amplitude"),
        ({"subthreshold_amplitude": 0.3}, "few %"),
        ({"shot_noise": float("nan")}, "shot_noise"),
        ({"backend": "netcdf"}, "backend"),
        ({"n_rois": 60, "frame_shape": (48, 48)}, "could not place 60"),
    ],
)
def test_imaging_bad_parameters(params, match):
    with pytest.raises(OptionError, match=match):
        imaging_nwbfile(**{**TINY_IMAGING, **params})


def test_make_imaging_session_rejects_backend(tmp_path):
    with pytest.raises(OptionError, match="suffix"):
        make_imaging_session(tmp_path / "x.nwb", backend="zarr", **TINY_IMAGING)
