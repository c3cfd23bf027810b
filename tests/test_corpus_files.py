"""Files from the wild that once broke ``info``/``fit``: each test writes its corpus file.

What a user must see for each: ``info`` and ``fit`` exit 0 with a result, or exit 2 with ONE
stderr line naming the file, the NWB object and what was expected -- never exit 1 (an internal
error) and never a traceback.
"""

from __future__ import annotations

import subprocess
import warnings
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pynwb
import pytest
from cli_process import run_cli

from nwb_facrnn import NWBReadError, read_nwb

FAST_FIT = ["--max-epochs", "2", "--n-init", "1", "--bin-size", "0.05"]


def _fit(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(
        "fit", path, *FAST_FIT, "--output", path.with_name(path.stem + "_out.nwb"), *extra
    )


def _one_line_error(proc: subprocess.CompletedProcess, path: Path, *expected: str) -> str:
    """The run exited 2 with a single stderr line naming ``path`` and each of ``expected``."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert str(path) in line
    for text in expected:
        assert text in line, line
    return line


def _spiking_file(path: Path, trials: list[tuple[float, float]] = ()) -> Path:
    rng = np.random.default_rng(0)
    f = pynwb.NWBFile(
        session_description="corpus",
        identifier="corpus",
        session_start_time=datetime(2025, 1, 1, tzinfo=UTC),
    )
    for _ in range(8):
        f.add_unit(spike_times=np.sort(rng.uniform(0.0, 10.0, 100)), obs_intervals=[[0.0, 10.0]])
    for start, stop in trials:
        f.add_trial(start_time=start, stop_time=stop)
    f.add_acquisition(pynwb.TimeSeries(name="raw", data=np.arange(10.0), unit="V", rate=10.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(f)
    return path


# ------------------------------------------------------------------ 1. NWB 1.x files
def _nwb1_file(path: Path) -> Path:
    """The NWB 1.x root layout: the version is a root *dataset*, not an attribute."""
    with h5py.File(path, "w") as h:
        h["nwb_version"] = b"NWB-1.0.6"
        for group in ("acquisition", "analysis", "epochs", "general", "processing", "stimulus"):
            h.create_group(group)
        h["file_create_date"] = [b"2016-05-04T12:00:00"]
        h["identifier"] = b"nwb1-session"
        h["session_description"] = b"an NWB 1.x session"
        h["session_start_time"] = b"2016-05-04T12:00:00"
    return path


@pytest.mark.parametrize("command", ["info", "fit"])
def test_nwb1_file_is_named_with_its_version_and_how_to_convert(tmp_path, command):
    p = _nwb1_file(tmp_path / "old.nwb")
    proc = run_cli("info", p) if command == "info" else _fit(p)
    line = _one_line_error(proc, p, "/nwb_version", "NWB 1.x", "NWB-1.0.6", "NWB 2")
    assert "not an NWB file" not in line
    assert "NeuroConv" in line and "no in-place upgrade" in line


def test_nwb1_file_from_python(tmp_path):
    p = _nwb1_file(tmp_path / "old.nwb")
    with pytest.raises(NWBReadError, match=r"NWB 1\.x file \(version 'NWB-1\.0\.6'\)") as info:
        read_nwb(p)
    assert info.value.object_path == "/nwb_version"


# ------------------------------------------------------------------ 2. pynwb cannot construct
def _unconstructable_file(path: Path) -> Path:
    """A valid file whose TimeSeries claims to be an ElectricalSeries (without electrodes)."""
    _spiking_file(path)
    with h5py.File(path, "a") as h:
        h["acquisition/raw"].attrs["neurodata_type"] = "ElectricalSeries"
    return path


@pytest.mark.parametrize("command", ["info", "fit"])
def test_unconstructable_object_is_one_short_line(tmp_path, command):
    p = _unconstructable_file(tmp_path / "broken.nwb")
    proc = run_cli("info", p) if command == "info" else _fit(p)
    line = _one_line_error(proc, p, "/acquisition/raw", "ElectricalSeries", "electrodes")
    assert len(line) < 300, line
    assert "GroupBuilder" not in line


def test_unconstructable_object_from_python(tmp_path):
    p = _unconstructable_file(tmp_path / "broken.nwb")
    with pytest.raises(NWBReadError) as info:
        read_nwb(p)
    assert info.value.object_path == "/acquisition/raw"
    assert len(str(info.value)) < 300 and "\n" not in str(info.value)


# ------------------------------------------------------------------ 3. an unused bad trials table
BAD_TRIALS = [(1.0, 2.0), (3.0, 2.5), (5.0, 6.0), (7.0, 6.9)]  # ids 1 and 3 stop before start


def test_bad_trials_table_does_not_block_a_continuous_fit(tmp_path):
    p = _spiking_file(tmp_path / "trials.nwb", BAD_TRIALS)
    proc = _fit(p, "--no-trials")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert p.with_name("trials_out.nwb").exists()
    # one line: the warning names the file and the trials; no source file or line with it
    assert ".py:" not in proc.stderr and "_layout(" not in proc.stderr, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if "Warning" in ln] == [
        f"UserWarning: {p}: /intervals/trials: stop_time < start_time for trial id(s) [1, 3] "
        "(e.g. 3 .. 2.5 s); ignored: this continuous read does not use the trials table"
    ]


def test_bad_trials_table_blocks_a_fit_that_uses_it(tmp_path):
    p = _spiking_file(tmp_path / "trials.nwb", BAD_TRIALS)
    _one_line_error(_fit(p), p, "/intervals/trials/stop_time", "[1, 3]", "start_time <= stop_time")
    assert run_cli("info", p).returncode == 0


def test_bad_trials_table_from_python(tmp_path):
    p = _spiking_file(tmp_path / "trials.nwb", BAD_TRIALS)
    with pytest.warns(UserWarning, match=r"/intervals/trials: stop_time < start_time .*\[1, 3\]"):
        data = read_nwb(p, trials=False, bin_size=0.05)
    assert data.is_continuous
    with pytest.raises(NWBReadError, match=r"trial id\(s\) \[1, 3\]"):
        read_nwb(p, bin_size=0.05)


# ------------------------------------------------------------------ 4. library warnings, compact
def optical_series(name: str):
    """A small OpticalSeries (2 frames of 4 x 4) that a fit never uses."""
    from pynwb.image import OpticalSeries

    return OpticalSeries(
        name=name,
        data=np.zeros((2, 4, 4)),
        unit="n.a.",
        rate=30.0,
        distance=1.0,
        field_of_view=[0.1, 0.1],
        orientation="up",
    )


def _optical_file(path: Path) -> Path:
    """Two OpticalSeries the fit never uses, each with both data and external_file (pynwb
    warns three times about each when it reads them)."""
    _spiking_file(path)
    with pynwb.NWBHDF5IO(str(path), "a") as io:
        f = io.read()
        for name in ("movie", "movie2"):
            f.add_acquisition(optical_series(name))
        io.write(f)
    with h5py.File(path, "a") as h:
        for name in ("movie", "movie2"):
            h[f"acquisition/{name}"].create_dataset("external_file", data=[b"a.avi", b"b.avi"])
    return path


def _library_warning_lines(stderr: str, path: Path) -> list[str]:
    return [ln for ln in stderr.splitlines() if "OpticalSeries 'movie" in ln and str(path) in ln]


@pytest.mark.parametrize("command", ["info", "fit"])
def test_library_warnings_are_shown_once_on_one_line(tmp_path, command):
    p = _optical_file(tmp_path / "optical.nwb")
    proc = run_cli("info", p) if command == "info" else _fit(p, "--no-trials")
    assert proc.returncode == 0, proc.stderr
    assert "warn(error_msg)" not in proc.stderr  # pynwb's source line under each warning
    lines = _library_warning_lines(proc.stderr, p)
    assert len(lines) == 6, proc.stderr  # 3 distinct messages for each of the 2 series
    assert len(set(lines)) == len(lines)
    assert all(ln.startswith("UserWarning: ") for ln in lines), lines


def test_library_warnings_from_python_name_the_file(tmp_path):
    p = _optical_file(tmp_path / "optical.nwb")
    with pytest.warns(UserWarning) as record:
        read_nwb(p, trials=False, bin_size=0.05)
    texts = [str(w.message) for w in record if "OpticalSeries" in str(w.message)]
    assert len(texts) == 6 and len(set(texts)) == 6
    assert all(t.startswith(f"{p}: OpticalSeries 'movie") for t in texts)


# ------------------------------------------------------- Zarr columns stored with pickle
def _pickle_coded_store(path: Path, *arrays: str) -> Path:
    """A Zarr session (8 units with a text ``quality`` column, 2 trials with a text ``label``)
    whose ``arrays`` are rewritten with the ``numcodecs.Pickle`` object codec, as older
    hdmf-zarr wrote object columns."""
    import numcodecs
    import zarr

    from nwb_facrnn.io import write_nwbfile

    rng = np.random.default_rng(0)
    f = pynwb.NWBFile("pickled", "pickled-id", datetime(2025, 1, 1, tzinfo=UTC))
    f.add_unit_column("quality", "unit quality")
    for i in range(8):
        spikes = np.sort(rng.uniform(0.0, 10.0, 100))
        f.add_unit(spike_times=spikes, quality=("good", "mua")[i % 2])
    f.add_trial_column("label", "trial label")
    for start in (1.0, 5.0):
        f.add_trial(start_time=start, stop_time=start + 3.0, label="reach")
    write_nwbfile(f, path)
    group = zarr.open_group(str(path), mode="r+")
    for key in arrays:
        old = group[key]
        values, attrs, chunks = old[:], dict(old.attrs), old.chunks
        del group[key]
        new = group.create_dataset(
            key, data=values, dtype=object, object_codec=numcodecs.Pickle(), chunks=chunks
        )
        new.attrs.update(attrs)
    zarr.consolidate_metadata(str(path))  # what hdmf-zarr reads
    return path


def _tree_digest(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_pickle_coded_store_is_what_the_test_means(tmp_path):
    import json

    from nwb_facrnn.io.backend import zarr_pickled_arrays

    path = _pickle_coded_store(tmp_path / "p.nwb.zarr", "units/quality")
    spec = json.loads((path / "units" / "quality" / ".zarray").read_text())
    assert spec["filters"] == [{"id": "pickle", "protocol": 5}]
    assert zarr_pickled_arrays(path) == ["/units/quality"]


def test_pickle_coded_columns_the_fit_does_not_use_are_skipped(tmp_path):
    """``info`` and ``fit`` work without them: one warning line each, naming the store and
    the column; nothing is unpickled, the store is not changed, the results file (Zarr)
    leaves the column out and holds no pickle-coded array."""
    from nwb_facrnn import read_results
    from nwb_facrnn.io.backend import zarr_pickled_arrays

    path = _pickle_coded_store(tmp_path / "p.nwb.zarr", "units/quality", "intervals/trials/label")
    before = _tree_digest(path)
    warning = (
        "{}: skipped: stored with the pickle codec, which nwb-facrnn never decodes "
        "(unpickling runs code from the file)"
    )
    info = run_cli("info", path)
    assert info.returncode == 0, info.stdout + info.stderr
    assert "/units" in info.stdout and "/intervals/trials" in info.stdout
    out = tmp_path / "p_out.nwb.zarr"
    fit = run_cli("fit", path, *FAST_FIT, "--n-groups", "2", "--group-rank", "1", "--output", out)
    assert fit.returncode == 0, fit.stdout + fit.stderr
    for proc in (info, fit):
        assert "Traceback" not in proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if "pickle" in ln]
        assert len(lines) == 2, proc.stderr  # one line per column, shown once
        for column, line in zip(("/units/quality", "/intervals/trials/label"), lines, strict=True):
            assert str(path) in line and warning.format(column) in line, line
    res = read_results(out)
    assert len(res.unit_ids) == 8 and np.unique(res.trial_ids).tolist() == [0, 1]
    assert set(res.trials) == {"id", "start_time", "stop_time"}  # label skipped
    assert zarr_pickled_arrays(out) == []
    assert _tree_digest(path) == before


def test_pickle_coded_columns_skipped_from_python(tmp_path):
    path = _pickle_coded_store(tmp_path / "p.nwb.zarr", "units/quality")
    plain = read_nwb(_pickle_coded_store(tmp_path / "plain.nwb.zarr"), bin_size=0.05)
    assert plain.unit_columns["quality"].tolist() == ["good", "mua"] * 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_nwb(path, bin_size=0.05)
    assert data.n_units == 8 and "quality" not in data.unit_columns
    assert data.activity.shape == (2, 60, 8) and data.activity.sum() > 0
    np.testing.assert_array_equal(data.activity, plain.activity)  # the same spikes, binned
    texts = [str(w.message) for w in caught if "pickle" in str(w.message)]
    assert texts and all("/units/quality: skipped" in t for t in texts), texts


@pytest.mark.parametrize("command", ["info", "fit"])
def test_pickle_coded_column_the_fit_needs_is_one_line(tmp_path, command):
    """Spike times stored with the pickle codec: never decoded; one line names them."""
    path = _pickle_coded_store(tmp_path / "p.nwb.zarr", "units/spike_times")
    proc = run_cli(command, path) if command == "info" else _fit(path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}: /units/spike_times: stored with the pickle codec")
    assert "never decodes" in lines[0]


def test_pickle_is_never_decoded(tmp_path, monkeypatch):
    """Reading the skipped column's data directly raises instead of unpickling."""
    import pickle

    from nwb_facrnn.io.backend import PickleCodedError
    from nwb_facrnn.io.reader import open_nwbfile

    path = _pickle_coded_store(tmp_path / "p.nwb.zarr", "units/spike_times")

    def refuse(*args, **kwargs):
        raise AssertionError("pickle.loads called")

    monkeypatch.setattr(pickle, "loads", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_nwbfile(path) as (nwbfile, _, _):
            with pytest.raises(PickleCodedError, match="/units/spike_times"):
                nwbfile.units["spike_times"].target.data[:]
