"""``nwb-facrnn info``: readable tables of what a file holds, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from click.testing import CliRunner

from nwb_facrnn.cli import main
from nwb_facrnn.synthetic import make_imaging_session, make_spiking_session


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("info")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spk = make_spiking_session(d / "spiking.nwb", seed=0, n_units=20, n_trials=10)
        img = make_imaging_session(
            d / "imaging.nwb.zarr", seed=0, n_rois=30, frame_shape=(64, 96), duration=1.0
        )
    return spk, img


def _info(path) -> str:
    result = CliRunner().invoke(main, ["info", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_info_on_the_spiking_session(files):
    spk, _ = files
    out = _info(spk.path)
    n_spikes = sum(len(t) for t in spk.spike_times)
    rate = n_spikes / sum(float((iv[:, 1] - iv[:, 0]).sum()) for iv in spk.obs_intervals)
    assert "Units (spiking)" in out and "backend" in out and "hdf5" in out
    assert f"│ /units │    20 │ {n_spikes:>6} │" in out.replace("  ", "  ")
    assert f"{rate:.2f}" in out
    assert "M1 (10), PMd (10)" in out
    assert "/intervals/trials" in out and "│     10 │" in out
    assert "move_onset_time, condition, split" in out
    assert "/processing/behavior/hand_vel" in out and "/processing/behavior/hand_pos" in out
    assert "SpatialSeries" in out
    assert f'read_nwb("{spk.path}", bin_size=0.02)' in out


def test_info_on_the_imaging_session(files):
    _, img = files
    out = _info(img.path)
    assert "zarr" in out
    assert "/processing/ophys/DfOverF/RoiResponseSeries" in out
    assert "/processing/ophys/Fluorescence/RoiResponseSeries" in out
    assert f"{img.n_frames} x 30" in out and "500" in out
    assert "│ PlaneSegmentation │ ImagingPlane " in out
    assert f"accepted: {int(img.accepted.sum())}/30" in out
    assert "Imaging movies (not read for fitting)" in out
    assert f"{img.n_frames} x 64 x 96" in out and "OnePhotonSeries" in out
    assert "Units (spiking)" not in out


def test_info_on_a_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "broken.nwb"
    bad.write_text("not hdf5")
    proc = subprocess.run(
        [sys.executable, "-c", "from nwb_facrnn.cli import run; run()", "info", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]  # errors: stderr
    assert len(lines) == 1 and "error:" in lines[0] and "broken.nwb" in lines[0]
    assert "not an NWB file" in proc.stderr and proc.stdout == ""
