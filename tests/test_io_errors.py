"""Bad input to read_nwb: every case raises an NWBReadError naming the file and the object."""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pynwb
import pytest
from pynwb.ophys import DfOverF, ImageSegmentation, OpticalChannel

from nwb_facrnn import NWBReadError, read_nwb
from nwb_facrnn.io import write_nwbfile


def _nwbfile() -> pynwb.NWBFile:
    return pynwb.NWBFile(
        session_description="test session",
        identifier="test",
        session_start_time=datetime(2025, 1, 1, tzinfo=UTC),
    )


def _spiking(n_units: int = 3, trials: list[tuple[float, float]] | None = None) -> pynwb.NWBFile:
    rng = np.random.default_rng(0)
    f = _nwbfile()
    for _ in range(n_units):
        f.add_unit(spike_times=np.sort(rng.uniform(0.0, 10.0, 100)), obs_intervals=[[0.0, 10.0]])
    f.add_trial_column("go_time", "go cue")
    for start, stop in trials or [(1.0, 2.0), (3.0, 4.5)]:
        f.add_trial(start_time=start, stop_time=stop, go_time=start + 0.5)
    return f


def _ophys(
    n_rois: int = 4,
    width: int | None = None,
    timestamps: np.ndarray | None = None,
    nan_rois: tuple[int, ...] = (),
) -> pynwb.NWBFile:
    f = _nwbfile()
    device = f.create_device("camera")
    plane = f.create_imaging_plane(
        name="plane",
        optical_channel=OpticalChannel("green", "green", 520.0),
        description="plane",
        device=device,
        excitation_lambda=488.0,
        imaging_rate=100.0,
        indicator="GCaMP",
        location="cortex",
    )
    module = f.create_processing_module("ophys", "ophys")
    seg = ImageSegmentation()
    module.add(seg)
    ps = seg.create_plane_segmentation("rois", plane, "PlaneSegmentation")
    for i in range(n_rois):
        mask = np.zeros((8, 8), dtype=np.float32)
        mask[i, i] = 1.0
        ps.add_roi(image_mask=mask)
    n_frames = 200 if timestamps is None else len(timestamps)
    data = np.random.default_rng(1).standard_normal((n_frames, width or n_rois))
    for i in nan_rois:
        data[:, i] = np.nan
    region = ps.create_roi_table_region("all", region=list(range(n_rois)))
    timing = {"rate": 100.0} if timestamps is None else {"timestamps": timestamps}
    dff = DfOverF()
    module.add(dff)
    dff.create_roi_response_series(
        name="RoiResponseSeries", data=data, rois=region, unit="n.a.", **timing
    )
    return f


def _write(tmp_path: Path, nwbfile: pynwb.NWBFile, name: str = "s.nwb") -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_nwbfile(nwbfile, tmp_path / name)


def _raises(path, match, **kwargs):
    with pytest.raises(NWBReadError, match=match) as info:
        read_nwb(path, **kwargs)
    assert str(path) in str(info.value)
    return info.value


# ------------------------------------------------------------------ the file itself
def test_not_nwb_text_file(tmp_path):
    p = tmp_path / "notes.nwb"
    p.write_text("just some text\n")
    err = _raises(p, r"not an NWB file: expected HDF5 or a Zarr store, found a file starting")
    assert err.object_path == "/"


def test_empty_file(tmp_path):
    p = tmp_path / "empty.nwb"
    p.write_bytes(b"")
    _raises(p, "found an empty file")


def test_missing_file(tmp_path):
    _raises(tmp_path / "absent.nwb", "no such file or directory")


def test_directory_that_is_not_zarr(tmp_path):
    d = tmp_path / "folder.zarr"
    d.mkdir()
    _raises(d, "not a Zarr store")


def test_hdf5_without_nwb_version(tmp_path):
    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    _raises(p, "without an nwb_version attribute: not an NWB file")


def test_truncated_file(tmp_path):
    good = _write(tmp_path, _spiking())
    data = good.read_bytes()
    bad = tmp_path / "truncated.nwb"
    bad.write_bytes(data[: len(data) // 2])
    _raises(bad, "truncated|corrupt|cannot be read")


def test_zarr_pickled_column_is_skipped_never_unpickled(tmp_path):
    """A Zarr column whose metadata names the pickle codec is never decoded: a column the
    fit does not use is left out, with a warning naming it."""
    f = _nwbfile()
    f.add_unit_column("quality", "unit quality")
    f.add_unit(spike_times=[0.1, 0.2, 0.3], quality="good")
    path = _write(tmp_path, f, "pickled.nwb.zarr")
    meta = path / "units" / "quality" / ".zarray"
    spec = json.loads(meta.read_text())
    spec["filters"] = [{"id": "pickle", "protocol": 5}]  # as written by other tools
    meta.write_text(json.dumps(spec))
    with pytest.warns(UserWarning, match=r"/units/quality: skipped: stored with the pickle codec"):
        data = read_nwb(path, bin_size=0.05)
    assert data.n_units == 1 and "quality" not in data.unit_columns


# -------------------------------------------------------------------- contents
def test_nothing_to_fit(tmp_path):
    p = _write(tmp_path, _nwbfile())
    _raises(p, r"nothing to fit: no Units table \(/units\) and no RoiResponseSeries")


def test_empty_units_table(tmp_path):
    f = _nwbfile()
    f.units = pynwb.misc.Units(name="units", description="no unit was sorted")
    p = _write(tmp_path, f)
    err = _raises(p, r"the Units table is empty \(0 units\)")
    assert err.object_path == "/units"


def test_absent_unit_column_lists_present(tmp_path):
    p = _write(tmp_path, _spiking())
    _raises(
        p,
        r"/units/quality: no column 'quality' to select on; columns: none "
        r"\(ragged or reference columns cannot be selected on: spike_times, obs_intervals\)",
        units={"quality": "good"},
    )


def test_absent_behavior_series_lists_present(tmp_path):
    f = _spiking()
    beh = f.create_processing_module("behavior", "behaviour")
    beh.add(pynwb.TimeSeries(name="hand_vel", data=np.zeros((1000, 2)), unit="m/s", rate=100.0))
    p = _write(tmp_path, f)
    _raises(
        p,
        r"no behavior series named 'cursor_pos'; present: /processing/behavior/hand_vel",
        behavior="cursor_pos",
    )


def test_absent_roi_series_lists_present(tmp_path):
    p = _write(tmp_path, _ophys())
    _raises(
        p,
        r"no RoiResponseSeries named 'Fluorescence'; "
        r"present: /processing/ophys/DfOverF/RoiResponseSeries",
        series="Fluorescence",
    )


def test_absent_align_column_lists_present(tmp_path):
    p = _write(tmp_path, _spiking())
    _raises(
        p,
        r"no trials column 'move_onset_time' to align on; columns: go_time",
        align="move_onset_time",
        window=(-0.1, 0.2),
    )


def test_trials_with_stop_before_start(tmp_path):
    p = _write(tmp_path, _spiking(trials=[(1.0, 2.0), (3.0, 2.5)]))
    err = _raises(p, r"stop_time < start_time for trial id\(s\) \[1\]")
    assert err.object_path == "/intervals/trials/stop_time"


def test_window_outside_recording(tmp_path):
    p = _write(tmp_path, _spiking(trials=[(0.1, 1.0), (3.0, 4.0)]))
    _raises(
        p,
        r"window -0.7..\+0.2 s around go_time of trial id\(s\) \[0\] "
        r"lies outside the recording 0..10 s",
        align="go_time",
        window=(-0.7, 0.2),
    )


def test_timestamps_that_do_not_increase(tmp_path):
    ts = np.arange(200) / 100.0
    ts[50] = ts[49]
    p = _write(tmp_path, _ophys(timestamps=ts))
    err = _raises(p, r"timestamps must strictly increase; sample 50")
    assert err.object_path.endswith("DfOverF/RoiResponseSeries/timestamps")


def test_series_without_samples(tmp_path):
    f = _spiking()
    f.add_acquisition(pynwb.TimeSeries(name="lick", data=np.zeros(0), unit="V", rate=10.0))
    p = _write(tmp_path, f)
    _raises(p, r"/acquisition/lick/data: the behavior series has no samples", behavior="lick")


def test_every_roi_nan_in_the_requested_time(tmp_path):
    p = _write(tmp_path, _ophys(n_rois=2, nan_rois=(0, 1)))
    with pytest.warns(UserWarning, match="dropping 2 ROI"):
        _raises(p, r"all 2 selected ROI\(s\) are NaN in the requested time")


def test_in_memory_lists_numpy_bin_size_and_empty_trials_table():
    f = _ophys(n_rois=3)
    f.processing["ophys"]["DfOverF"]["RoiResponseSeries"].fields["data"] = (
        np.arange(600.0).reshape(200, 3).tolist()  # pynwb keeps plain lists as they are
    )
    f.add_trial_column("go", "go cue")  # creates an empty trials table
    data = read_nwb(f, bin_size=np.float32(0.05))
    assert data.is_continuous and data.activity.shape == (40, 3)
    np.testing.assert_allclose(data.activity[0], [6.0, 7.0, 8.0])  # mean of frames 0-4


def test_trials_asked_for_but_absent(tmp_path):
    p = _write(tmp_path, _ophys())
    err = _raises(p, "no trials in the file; pass trials=False", trials=True)
    assert err.object_path == "/intervals/trials"
    assert read_nwb(p).is_continuous  # by default: continuous when there are no trials


def test_roi_series_width_mismatch(tmp_path):
    p = _write(tmp_path, _ophys(n_rois=4, width=3))
    _raises(p, r"data has 3 column\(s\) but its rois region lists 4 ROI\(s\)")


def test_all_nan_rois_are_dropped_with_a_warning(tmp_path):
    p = _write(tmp_path, _ophys(n_rois=4, nan_rois=(1, 3)))
    with pytest.warns(
        UserWarning, match=r"dropping 2 ROI\(s\) whose traces are all NaN.*id\(s\) \[1, 3\]"
    ):
        data = read_nwb(p)
    assert data.unit_ids.tolist() == [0, 2]


def test_inputs_series_is_fed_per_unit(tmp_path):
    rng = np.random.default_rng(0)
    f = _nwbfile()
    f.add_unit_column("good", "passes curation")
    for i in range(3):
        f.add_unit(spike_times=np.sort(rng.uniform(0, 10, 50)), good=i != 1)
    t = np.arange(1000) / 100.0
    drive = np.stack([np.sin(t), np.cos(t), t], axis=1)
    f.add_stimulus(pynwb.TimeSeries(name="laser", data=drive, unit="mW", rate=100.0))
    f.add_stimulus(pynwb.TimeSeries(name="tone", data=np.zeros((1000, 4)), unit="V", rate=100.0))
    p = _write(tmp_path, f)
    kw = dict(trials=False, bin_size=0.1, time_range=(0.0, 9.9))
    data = read_nwb(p, inputs="laser", **kw)
    assert data.inputs.shape == data.activity.shape == (99, 3)
    np.testing.assert_allclose(data.inputs[:, 2], t[:990].reshape(99, 10).mean(1), rtol=1e-5)
    assert data.provenance["objects"]["inputs"] == "/stimulus/presentation/laser"
    # one column per row of the Units table: the columns of the kept units are used
    kept = read_nwb(p, inputs="laser", units={"good": True}, **kw)
    np.testing.assert_array_equal(kept.inputs, data.inputs[:, [0, 2]])
    _raises(
        p,
        r"needs one column per unit: 3 \(every row of /units\) or 3 \(the units read\), got 4",
        inputs="tone",
        **kw,
    )


def test_reading_never_modifies_the_source(tmp_path):
    p = _write(tmp_path, _spiking())
    before = hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns
    read_nwb(p, align="go_time", window=(-0.2, 0.3))
    with pytest.raises(NWBReadError):
        read_nwb(p, units={"nope": 1})
    assert (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) == before


def test_bad_options(tmp_path):
    p = _write(tmp_path, _spiking())
    with pytest.raises(ValueError, match="bin_size must be a positive number of seconds"):
        read_nwb(p, bin_size=0)
    _raises(p, "align needs window", align="go_time")
    _raises(p, "time_range applies to continuous data only", time_range=(0, 1))
    _raises(p, r"lies outside the recording 0..10 s", trials=False, time_range=(5.0, 12.0))
    _raises(p, r"keeps none of 2 rows", trials={"go_time": 99.0})
