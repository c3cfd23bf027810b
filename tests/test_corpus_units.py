"""Files as other writers (MatNWB, converters, older tools) store them: ``info`` and ``fit``
either work or fail with one line naming the file, the NWB object and what was expected
(exit 2) -- never an internal error (exit 1) or a traceback."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import h5py
import numpy as np
import pytest
from cli_process import run_cli

from nwb_facrnn import read_results
from nwb_facrnn.io.reader import open_nwbfile
from nwb_facrnn.io.units import load_units

FIT = ["--max-epochs", "2", "--n-init", "1", "--bin-size", "0.05"]
FIT += ["--n-groups", "2", "--group-rank", "1"]  # G * H must not exceed the 4 units


def _session(n_units: int = 4, electrodes: bool = False, spikes: bool = True):
    from pynwb import NWBFile

    f = NWBFile("corpus", "corpus-id", datetime(2024, 1, 1, tzinfo=UTC))
    device = f.create_device("probe")
    group = f.create_electrode_group("shank0", "a shank", "CA1", device)
    for _ in range(4):
        f.add_electrode(group=group, location="CA1")
    rng = np.random.default_rng(0)
    for i in range(n_units if spikes else 0):
        kw = {"electrodes": [i]} if electrodes else {}
        f.add_unit(spike_times=np.sort(rng.uniform(0, 2, 8)), **kw)
    return f


def _write(nwbfile, path):
    from pynwb import NWBHDF5IO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwbfile)
    return path


def _plain_region(path, rows=None):
    """Units ``electrodes`` as a DynamicTableRegion without ``electrodes_index`` (MatNWB)."""
    _write(_session(electrodes=True), path)
    with h5py.File(path, "a") as h:
        del h["units/electrodes_index"]
        if rows is not None:
            h["units/electrodes"][...] = rows
    return path


def _set_index(path, values, dtype=None):
    """Rewrite ``/units/spike_times_index`` (same attributes), e.g. broken or as uint16."""
    with h5py.File(path, "a") as h:
        g = h["units"]
        attrs = dict(g["spike_times_index"].attrs)
        dtype = dtype or g["spike_times_index"].dtype
        del g["spike_times_index"]
        ds = g.create_dataset("spike_times_index", data=np.asarray(values, dtype=dtype))
        for key, value in attrs.items():
            ds.attrs[key] = value
        ds.attrs["target"] = g["spike_times"].ref
    return path


def _fit(path, out):
    return run_cli("fit", path, *FIT, "--output", out)


def _assert_user_error(proc, path, obj, expected, hdmf_warning=False):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    if hdmf_warning:  # hdmf itself warns while reading the file (not nwb-facrnn's output)
        assert "UserWarning" in proc.stderr
        lines = [x for x in lines if "Warning:" not in x and not x.strip().startswith("warn(")]
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and obj in lines[0] and expected in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def _assert_fit(proc, out):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"results: {out}" in proc.stdout
    assert len(read_results(out).unit_ids) == 4


# --- 1. electrodes as a plain DynamicTableRegion (one electrode per unit, no index) ---


def test_plain_electrodes_region_info_shows_the_groups(tmp_path):
    path = _plain_region(tmp_path / "matnwb.nwb")
    proc = run_cli("info", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "shank0 (4)" in proc.stdout and "spike_times, electrodes" in proc.stdout
    assert proc.stderr == ""


def test_plain_electrodes_region_is_read(tmp_path):
    path = _plain_region(tmp_path / "matnwb.nwb", rows=[3, 2, 1, 0])
    with open_nwbfile(path) as (nwbfile, source, _):
        table = load_units(nwbfile, source)
    assert list(table.columns["electrode_group"]) == ["shank0"] * 4
    assert list(table.columns["location"]) == ["CA1"] * 4
    assert table.ends.tolist() == [8, 16, 24, 32]


def test_plain_electrodes_region_out_of_range_is_a_user_error(tmp_path):
    path = _plain_region(tmp_path / "matnwb.nwb", rows=[0, 1, 2, 9])
    # hdmf warns "DynamicTableRegion values [9] are out of bounds" on read, then carries on
    expected = "expected rows 0-3 of the electrodes table"
    for proc in (run_cli("info", path), _fit(path, tmp_path / "f.nwb")):
        _assert_user_error(proc, path, "/units/electrodes", expected, hdmf_warning=True)


# --- 2. a broken ragged index ---


@pytest.mark.parametrize(
    ("ends", "obj", "expected"),
    [
        ([8, 16, 24, 42], "/units/spike_times_index", "expected 4 offsets ending at most at 32"),
        ([8, 4, 24, 32], "/units/spike_times_index", "expected non-decreasing offsets"),
        # pynwb itself refuses to build the table: the reader reports it
        ([8, 16, 24], "/", "cannot be read as NWB"),
    ],
    ids=["past-the-end", "decreasing", "too-short"],
)
def test_broken_spike_times_index_is_a_user_error(tmp_path, ends, obj, expected):
    path = _set_index(_write(_session(), tmp_path / "broken.nwb"), ends)
    _assert_user_error(run_cli("info", path), path, obj, expected)
    _assert_user_error(_fit(path, tmp_path / "fit.nwb"), path, obj, expected)


# --- 3. capitalised ROI flag columns ---


def _imaging(path):
    from pynwb.ophys import (
        Fluorescence,
        ImageSegmentation,
        OpticalChannel,
        PlaneSegmentation,
        RoiResponseSeries,
    )

    f = _session(spikes=False)
    plane = f.create_imaging_plane(
        name="plane",
        optical_channel=OpticalChannel(name="oc", description="a channel", emission_lambda=500.0),
        description="a plane",
        device=f.devices["probe"],
        excitation_lambda=600.0,
        imaging_rate=30.0,
        indicator="GCaMP",
        location="V1",
    )
    ps = PlaneSegmentation(description="rois", imaging_plane=plane, name="PlaneSegmentation")
    for i in range(4):
        mask = np.zeros((5, 5))
        mask[i, i] = 1
        ps.add_roi(image_mask=mask)
    ps.add_column("Accepted", "accepted by the curator", data=[True, True, False, True])
    ps.add_column("Rejected", "rejected by the curator", data=[False, False, True, False])
    module = f.create_processing_module("ophys", "ophys")
    module.add(ImageSegmentation([ps]))
    rois = ps.create_roi_table_region("all", region=[0, 1, 2, 3])
    data = np.random.default_rng(0).normal(size=(60, 4))
    series = RoiResponseSeries(name="RRS", data=data, rois=rois, unit="a.u.", rate=30.0)
    module.add(Fluorescence(series))
    return _write(f, path)


def test_capitalised_roi_flags_are_shown_and_the_file_fits(tmp_path):
    path = _imaging(tmp_path / "converted.nwb")
    proc = run_cli("info", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Accepted: 3/4, Rejected: 1/4" in proc.stdout
    out = tmp_path / "fit.nwb"
    _assert_fit(_fit(path, out), out)


# --- 4. corpus habits ---


def test_uint16_spike_times_index(tmp_path):
    path = _write(_session(), tmp_path / "u16.nwb")
    with h5py.File(path, "r") as h:
        ends = h["units/spike_times_index"][:]
    _set_index(path, ends, np.uint16)
    with h5py.File(path, "r") as h:
        assert h["units/spike_times_index"].dtype == np.uint16
    proc = run_cli("info", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "│     4 │     32 │" in proc.stdout  # 4 units, 32 spikes
    out = tmp_path / "fit.nwb"
    _assert_fit(_fit(path, out), out)


def test_nwb_version_as_one_element_array_is_not_an_internal_error(tmp_path):
    """``nwb_version`` stored as a one-element string array (as some writers do) reads as
    the version it holds: info and fit work, and the source file is left as it was."""
    path = _write(_session(), tmp_path / "version.nwb")
    with h5py.File(path, "a") as h:
        h.attrs["nwb_version"] = np.array(["2.6.0"], dtype=h5py.string_dtype())
    before = path.read_bytes()
    info = run_cli("info", path)
    assert info.returncode == 0, info.stdout + info.stderr
    assert "/units" in info.stdout and "corpus-id" in info.stdout
    out = tmp_path / "fit.nwb"
    proc = _fit(path, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    res = read_results(out)
    assert res.unit_table == "/units" and len(res.unit_ids) == 4
    assert np.isfinite(res.metrics["reconstruction_r2"])
    assert path.read_bytes() == before  # read-only: the attribute is not rewritten
    with h5py.File(path, "r") as h:
        assert h.attrs["nwb_version"].tolist() == ["2.6.0"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.array(["1.0.5"], dtype=h5py.string_dtype()), "an NWB 1.x file"),
        (np.array(["2.6.0", "2.7.0"], dtype=h5py.string_dtype()), "expected one version string"),
    ],
)
def test_nwb_version_array_that_is_not_one_nwb2_version_is_a_user_error(tmp_path, value, expected):
    path = _write(_session(), tmp_path / "version.nwb")
    with h5py.File(path, "a") as h:
        h.attrs["nwb_version"] = value
    proc = run_cli("info", path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], proc.stderr


def test_more_latents_than_units_is_a_user_error(tmp_path):
    """The default G x H = 2 x 3 latents on a 4-unit file: one line saying what to lower (it
    was an internal error from inside torch)."""
    path = _write(_session(), tmp_path / "few.nwb")
    proc = run_cli("fit", path, "--max-epochs", "2", "--n-init", "1", "--bin-size", "0.05")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert "6 latents need at least 6 units; X has 4: lower n_groups or group_rank" in proc.stderr
    assert not (tmp_path / "few_facrnn.nwb").exists()
