"""Writing results for files as other writers store them, and what a fit or a streamed read
shows: MatNWB-style Units ``electrodes`` written back, library warnings once each on one
line (local, streamed, and when the results file is read back), and fits of the columns of
a plain 2-D TimeSeries (no unit table) written and read back."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_process import run_cli
from test_corpus_files import optical_series
from test_corpus_units import FIT, _plain_region, _session, _set_index, _write

from nwb_facrnn import FacRNN, NWBReadError, read_nwb, read_results, write_results


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


# ------------------------------------------- 1. MatNWB Units electrodes (no electrodes_index)
@pytest.mark.parametrize("suffix", [".nwb", ".nwb.zarr"])
def test_plain_electrodes_region_fit_writes_results_and_keeps_the_source(tmp_path, suffix):
    path = _plain_region(tmp_path / "matnwb.nwb", rows=[3, 2, 1, 0])
    before = _sha256(path)
    out = tmp_path / f"fit{suffix}"
    proc = run_cli("fit", path, *FIT, "--output", out)
    _ok(proc)
    assert f"results: {out}" in proc.stdout
    res = read_results(out)
    assert res.unit_ids.tolist() == [0, 1, 2, 3]
    assert res.unit_table == "/units"
    assert res.output_loadings.shape == (4, 2)
    assert _sha256(path) == before  # the source is never modified
    # a second fit (another seed) goes into the same results file (or store), read again
    _ok(run_cli("fit", path, *FIT, "--seed", "1", "--output", out))
    again = read_results(out, name="facrnn_G2H1_beta20_seed1")
    assert again.unit_ids.tolist() == [0, 1, 2, 3]
    assert read_results(out, name="facrnn_G2H1_beta20_seed0").unit_ids.tolist() == [0, 1, 2, 3]
    assert _sha256(path) == before
    if suffix == ".nwb":
        # the layout of the source is kept: one electrode per unit, no index
        with h5py.File(out, "r") as f:
            assert "electrodes_index" not in f["units"]
            assert f["units/electrodes"][:].tolist() == [3, 2, 1, 0]
            region = f["processing/ecephys/facrnn_G2H1_beta20_seed0/connectivity/units"]
            assert f[region.attrs["table"]].name == "/units"


def test_plain_electrodes_region_from_python_in_place(tmp_path):
    """``write_results(in_place=True)`` rewrites the source itself (atomically): it reads
    back with the electrodes it had."""
    path = _plain_region(tmp_path / "matnwb.nwb", rows=[1, 1, 0, 2])
    data = read_nwb(path, bin_size=0.05)
    model = FacRNN(n_groups=2, group_rank=1, max_epochs=1, n_init=1, progress=False)
    written = write_results(model.fit(data), data, in_place=True)
    assert Path(written) == path
    res = read_results(path)
    assert res.unit_ids.tolist() == [0, 1, 2, 3] and res.unit_table == "/units"
    again = read_nwb(path, bin_size=0.05)
    np.testing.assert_array_equal(again.activity, data.activity)
    with h5py.File(path, "r") as f:
        assert f["units/electrodes"][:].tolist() == [1, 1, 0, 2]


# ------------------------------------------------------------- 2/3. library warnings, once
def _optical(path: Path, names=("movie", "movie2")) -> Path:
    """A spiking session with OpticalSeries the fit never uses, each with both data and
    external_file (pynwb warns three times about each when it reads the file)."""
    from pynwb import NWBHDF5IO

    f = _session()
    for name in names:
        f.add_acquisition(optical_series(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with NWBHDF5IO(str(path), "w") as io:
            io.write(f)
    with h5py.File(path, "a") as h:
        for name in names:
            h[f"acquisition/{name}"].create_dataset("external_file", data=[b"a.avi", b"b.avi"])
    return path


#: What pynwb says about each such series when it reads it.
PYNWB_SAYS = (
    "The number of frame indices in 'starting_frame' should have the same length as "
    "'external_file'.",
    "Format must be 'external' when external_file is specified.",
    "Either external_file or data must be specified (not None), but not both.",
)
# the CLI shows "Category: message"; Python's own display adds "nwb-facrnn:0: " before it
LINE = re.compile(r"^(?:nwb-facrnn:0: )?(\w+): (.+?): (OpticalSeries '\w+'.*)$")


def _read_warnings(*names: str) -> list[str]:
    return sorted(f"OpticalSeries '{n}': {text}" for n in names for text in PYNWB_SAYS)


def _warning_lines(stderr: str) -> list[tuple[str, str, str]]:
    """(category, file, message) of every compact library warning line about a movie."""
    return [m.groups() for m in map(LINE.match, stderr.splitlines()) if m]


def test_a_fit_shows_each_library_warning_once(tmp_path):
    """A fit reads its source (twice), writes the results file and reads it back (it holds
    the source's series): pynwb's warnings about the series show once, naming the source."""
    path = _optical(tmp_path / "optical.nwb")
    out = tmp_path / "optical_fit.nwb"
    for seed in ("0", "1"):  # a new results file, then one more fit added to it
        proc = run_cli("fit", path, *FIT, "--seed", seed, "--output", out)
        _ok(proc)
        assert "warn(" not in proc.stderr  # no library source line under a warning
        lines = _warning_lines(proc.stderr)
        assert len(set(lines)) == len(lines), proc.stderr
        read = [(f, m) for c, f, m in lines if c == "UserWarning"]
        assert sorted(m for _, m in read) == _read_warnings("movie", "movie2"), proc.stderr
        assert {f for f, _ in read} == {str(path)}  # named after the source, not the output
        # what else shows is about the file written (its copy of the series), once each
        assert {f for c, f, _ in lines if c != "UserWarning"} <= {str(out)}
    with pytest.warns(UserWarning, match="optical_fit.nwb: OpticalSeries 'movie"):
        # this process never read the source: the results file's read names itself
        assert len(read_results(out, name="facrnn_G2H1_beta20_seed1").unit_ids) == 4


def test_reading_a_results_file_alone_still_shows_its_warnings(tmp_path):
    """The results file's own read (another process, its source never read) warns, naming
    the results file: only repeats within a fit are left out."""
    path = _optical(tmp_path / "optical.nwb", names=("movie",))
    out = tmp_path / "optical_fit.nwb"
    _ok(run_cli("fit", path, *FIT, "--output", out))
    code = f"import nwb_facrnn; print(len(nwb_facrnn.read_results({str(out)!r}).unit_ids))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4"
    lines = _warning_lines(proc.stderr)
    assert sorted(m for _, _, m in lines) == _read_warnings("movie"), proc.stderr
    assert {(c, f) for c, f, _ in lines} == {("UserWarning", str(out))}


@pytest.fixture
def served(fake_dandi, tmp_path, monkeypatch):
    monkeypatch.setenv("NWB_FACRNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NWB_FACRNN_HTTP_TIMEOUT", "5")
    return fake_dandi


def test_a_streamed_read_shows_each_library_warning_once_naming_the_source(served, tmp_path):
    path = _optical(tmp_path / "optical.nwb")
    served.add_asset("000901", "sub-1/optical.nwb", path)
    source = "DANDI:000901/sub-1/optical.nwb"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_nwb(source, bin_size=0.05)
    assert data.n_units == 4
    texts = [str(w.message) for w in caught if "OpticalSeries" in str(w.message)]
    name = data.provenance["source"]
    assert name.startswith("DANDI:000901@") and name.endswith("/sub-1/optical.nwb")
    assert sorted(texts) == [f"{name}: {m}" for m in _read_warnings("movie", "movie2")]
    assert all(w.filename == "nwb-facrnn" for w in caught if "OpticalSeries" in str(w.message))
    # from the command line: one line each, and once in a whole fit (read, write, read back)
    out = tmp_path / "remote_fit.nwb"
    proc = run_cli("fit", source, *FIT, "--output", out)
    _ok(proc)
    lines = _warning_lines(proc.stderr)
    assert [(c, f) for c, f, _ in lines] == [("UserWarning", name)] * 6, proc.stderr
    assert sorted(m for _, _, m in lines) == _read_warnings("movie", "movie2")
    assert read_results(out).unit_ids.tolist() == [0, 1, 2, 3]


def test_a_streamed_file_pynwb_cannot_build_is_one_line(served, tmp_path):
    path = _set_index(_write(_session(), tmp_path / "broken.nwb"), [8, 16, 24])
    url = served.add_file("broken.nwb", path)
    with pytest.raises(NWBReadError) as err:
        read_nwb(url, bin_size=0.05)
    message = str(err.value)
    assert "cannot be read as NWB" in message and "broken.nwb" in message
    assert "\n" not in message and len(message) < 600  # not the builder's whole repr
    proc = run_cli("fit", url, *FIT, "--output", tmp_path / "x.nwb")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.strip().splitlines() if "Warning" not in x]
    assert len(lines) == 1 and "cannot be read as NWB" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.nwb").exists()


# --------------------------------------------------- 4. the columns of a plain TimeSeries
N_COLUMNS, RATE = 6, 50.0


def _rates_file(path: Path, where: str = "processing", nan_column: int | None = None) -> Path:
    from pynwb import NWBFile, TimeSeries

    rng = np.random.default_rng(0)
    t = np.arange(600) / RATE
    z = np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.3 * t)], axis=1)
    rates = 3.0 + z @ rng.normal(size=(2, N_COLUMNS)) + 0.05 * rng.normal(size=(600, N_COLUMNS))
    if nan_column is not None:
        rates[:, nan_column] = np.nan
    f = NWBFile("rates", "rates-id", datetime(2024, 1, 1, tzinfo=UTC))
    series = TimeSeries(name="rates", data=rates, unit="Hz", rate=RATE)
    if where == "processing":
        f.create_processing_module("ecephys", "binned activity").add(series)
    else:
        f.add_acquisition(series)
        f.add_acquisition(TimeSeries(name="raw", data=np.zeros((600, 2)), unit="V", rate=RATE))
    return _write(f, path)


def test_fit_of_a_series_writes_results_without_a_unit_table(tmp_path):
    path = _rates_file(tmp_path / "rates.nwb")
    before = _sha256(path)
    out = tmp_path / "rates_fit.nwb"
    proc = run_cli("fit", path, "--series", "/processing/ecephys/rates", *FIT, "--output", out)
    _ok(proc)
    assert "(container /processing/ecephys/facrnn_G2H1_beta20_seed0)" in proc.stdout
    res = read_results(out)
    assert res.unit_ids.tolist() == list(range(N_COLUMNS))
    assert res.unit_table == ""
    assert res.provenance["objects"]["activity"] == "/processing/ecephys/rates"
    assert res.output_loadings.shape == (N_COLUMNS, 2)
    assert res.group_strength.shape == (N_COLUMNS, 2)
    with h5py.File(out, "r") as f:
        conn = f["processing/ecephys/facrnn_G2H1_beta20_seed0/connectivity"]
        assert "units" not in conn and "rois" not in conn  # no table to refer to
        assert conn["id"][:].tolist() == list(range(N_COLUMNS))
    assert _sha256(path) == before


def test_series_fit_keeps_the_column_index_of_each_unit(tmp_path):
    """An all-NaN column is left out: the rows of the results are the other columns, each
    with its own index."""
    path = _rates_file(tmp_path / "rates.nwb", where="acquisition", nan_column=2)
    with pytest.warns(UserWarning, match="column"):
        data = read_nwb(path, series="/acquisition/rates")
    assert data.unit_ids.tolist() == [0, 1, 3, 4, 5]
    model = FacRNN(n_groups=2, group_rank=1, max_epochs=1, n_init=1, progress=False)
    written = write_results(model.fit(data), data, tmp_path / "out.nwb")
    assert written.object_path == "/processing/misc/facrnn_G2H1_beta20_seed0"
    res = read_results(written)
    assert res.unit_ids.tolist() == [0, 1, 3, 4, 5] and res.unit_table == ""
    np.testing.assert_allclose(res.output_loadings, model.output_loadings_, rtol=1e-6)
    # an explicit module is used as given
    other = write_results(model, data, tmp_path / "out2.nwb", module="analysis_fits")
    assert read_results(other).object_path.startswith("/processing/analysis_fits/")


def test_series_fit_against_a_file_without_those_columns_is_a_read_error(tmp_path):
    path = _rates_file(tmp_path / "rates.nwb")
    data = read_nwb(path, series="/processing/ecephys/rates")
    model = FacRNN(n_groups=2, group_rank=1, max_epochs=1, n_init=1, progress=False)
    model.fit(data)
    data.provenance["objects"]["activity"] = "/processing/ecephys/gone"
    with pytest.raises(NWBReadError, match=r"/processing/ecephys/gone.*TimeSeries.*missing"):
        write_results(model, data, tmp_path / "out.nwb")
    assert not (tmp_path / "out.nwb").exists()


def test_remote_series_fit_keeps_the_series_in_the_standalone_file(served, tmp_path):
    path = _rates_file(tmp_path / "rates.nwb", where="acquisition")
    served.add_asset("000902", "sub-1/rates.nwb", path)
    data = read_nwb("DANDI:000902/sub-1/rates.nwb", series="/acquisition/rates")
    model = FacRNN(n_groups=2, group_rank=1, max_epochs=1, n_init=1, progress=False)
    written = write_results(model.fit(data), data, tmp_path / "remote.nwb")
    res = read_results(written)
    assert res.unit_ids.tolist() == list(range(N_COLUMNS))
    with h5py.File(written, "r") as f:
        assert "acquisition/rates" in f and "acquisition/raw" not in f
        assert f["acquisition/rates/data"].shape == (600, N_COLUMNS)
