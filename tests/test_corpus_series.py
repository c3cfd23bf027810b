"""Activity stored as a plain 2-D TimeSeries (time x units), e.g. binned firing rates, read
with ``--series PATH``: one unit per column, binned like ROI traces, NaN unobserved."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pytest
from cli_process import run_cli
from test_corpus_units import _write

from nwb_facrnn import NWBReadError, OptionError, read_nwb, read_results

RATE = 50.0  # Hz: one sample every 20 ms
N_SAMPLES, N_UNITS = 1500, 10
SERIES = "/processing/ecephys/binned_rates"
FIT = ["--max-epochs", "2", "--n-init", "1", "--n-groups", "2", "--group-rank", "1"]


def _rates(seed: int = 0) -> np.ndarray:
    """Rates driven by a known 2-D latent signal (two slow oscillations) plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_SAMPLES) / RATE
    z = np.stack([np.sin(2 * np.pi * 0.4 * t), np.cos(2 * np.pi * 0.25 * t)], axis=1)
    loadings = rng.normal(size=(2, N_UNITS))
    return 5.0 + 2.0 * z @ loadings + 0.05 * rng.normal(size=(N_SAMPLES, N_UNITS))


def _nwbfile(units: bool = False):
    from pynwb import NWBFile

    f = NWBFile("series session", "series-id", datetime(2024, 1, 1, tzinfo=UTC))
    if units:
        rng = np.random.default_rng(1)
        for _ in range(3):
            f.add_unit(spike_times=np.sort(rng.uniform(0, N_SAMPLES / RATE, 50)))
    return f


def _binned_rates_file(path, rates=None, units=True, trials=False):
    """A session whose activity is ``/processing/ecephys/binned_rates`` (and, with ``units``,
    a Units table the fit should not use), plus a 1-D, a 3-D and a 1-column series."""
    from pynwb import TimeSeries

    rates = _rates() if rates is None else rates
    f = _nwbfile(units=units)
    module = f.create_processing_module("ecephys", "binned activity")
    module.add(TimeSeries(name="binned_rates", data=rates, unit="Hz", rate=RATE))
    f.add_acquisition(TimeSeries(name="speed", data=rates[:, 0], unit="m/s", rate=RATE))
    cube = rates[:, :8].reshape(N_SAMPLES, 2, 4)
    f.add_acquisition(TimeSeries(name="cube", data=cube, unit="a.u.", rate=RATE))
    f.add_acquisition(TimeSeries(name="single", data=rates[:, :1], unit="Hz", rate=RATE))
    if trials:
        for start in (2.0, 10.0, 20.0):
            f.add_trial(start_time=start, stop_time=start + 4.0)
    return _write(f, path)


def _metric(stdout: str, name: str) -> float:
    match = re.search(rf"{name}\s*│\s*(-?[\d.]+)", stdout)
    assert match, stdout
    return float(match.group(1))


def _assert_one_line_error(proc, *parts: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]


# --------------------------------------------------------------------------- reading
def test_series_columns_are_the_units_one_bin_per_sample(tmp_path):
    rates = _rates()
    rates[100:130, 3] = np.nan  # a gap in unit 3: unobserved, not zero
    path = _binned_rates_file(tmp_path / "rates.nwb", rates)
    data = read_nwb(path, series=SERIES)
    assert data.modality == "series"
    assert data.unit_table == ""  # the columns of a series have no table
    assert data.unit_ids.tolist() == list(range(N_UNITS))
    assert data.bin_size == pytest.approx(1 / RATE)
    assert data.activity.shape == (N_SAMPLES, N_UNITS)
    assert data.provenance["objects"]["activity"] == SERIES
    gap = np.isnan(rates)
    np.testing.assert_array_equal(data.mask, ~gap)
    np.testing.assert_allclose(data.activity[~gap], rates[~gap].astype(np.float32), rtol=1e-6)
    assert np.all(data.activity[gap] == 0)
    np.testing.assert_allclose(data.timestamps, np.arange(N_SAMPLES) / RATE)


def test_series_by_name_with_larger_bins_averages_samples(tmp_path):
    rates = _rates()
    path = _binned_rates_file(tmp_path / "rates.nwb", rates)
    data = read_nwb(path, series="binned_rates", bin_size=0.04)
    assert data.activity.shape == (N_SAMPLES // 2, N_UNITS)
    expected = rates.reshape(N_SAMPLES // 2, 2, N_UNITS).mean(axis=1)
    np.testing.assert_allclose(data.activity, expected, rtol=1e-5)


def test_series_with_trials_detrend_and_zscore(tmp_path):
    path = _binned_rates_file(tmp_path / "rates.nwb", trials=True)
    data = read_nwb(path, series=SERIES, trials=True, detrend="linear", zscore=True)
    assert data.activity.shape == (3, 200, N_UNITS)  # 3 trials of 4 s in 20 ms bins
    assert data.trial_ids.tolist() == [0, 1, 2]
    flat = data.activity.reshape(-1, N_UNITS)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0), 1, rtol=1e-4)


def test_unit_or_roi_selection_on_a_series_is_an_option_error(tmp_path):
    path = _binned_rates_file(tmp_path / "rates.nwb")
    with pytest.raises(OptionError, match="has no unit table"):
        read_nwb(path, series=SERIES, units="heldout == False")


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("/acquisition/speed", "1-D data, shape (1500,)"),
        ("/acquisition/cube", "3-D data, shape (1500, 2, 4)"),
        ("/acquisition/single", "1 column(s), shape (1500, 1)"),
    ],
)
def test_series_that_is_not_2d_with_columns_is_a_read_error(tmp_path, name, found):
    path = _binned_rates_file(tmp_path / "rates.nwb")
    with pytest.raises(NWBReadError) as err:
        read_nwb(path, series=name)
    assert err.value.object_path == f"{name}/data"
    assert found in err.value.reason
    assert "expected 2-D numeric data (time x units) with at least 2 columns" in err.value.reason


def test_file_with_only_a_series_says_how_to_fit_it(tmp_path):
    path = _binned_rates_file(tmp_path / "rates.nwb", units=False)
    hint = r"nothing to fit.*pass --series PATH \(series= in Python\): "
    with pytest.raises(NWBReadError, match=hint + SERIES):
        read_nwb(path)
    with pytest.raises(NWBReadError, match=r"no RoiResponseSeries named 'nope'.*" + SERIES):
        read_nwb(path, series="nope")


# --------------------------------------------------------------------------- command line
def test_info_lists_2d_series_as_fittable_with_their_path(tmp_path):
    path = _binned_rates_file(tmp_path / "rates.nwb", units=False)
    proc = run_cli("info", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "2-D time series that can be fit as activity" in out
    section = out.split("2-D time series that can be fit as activity")[1].split("Behaviour")[0]
    assert SERIES in section and f"--series {SERIES}" in section
    assert f"{N_SAMPLES} x {N_UNITS}" in section and "50" in section
    for other in ("/acquisition/speed", "/acquisition/cube", "/acquisition/single"):
        assert other not in section  # 1-D, 3-D and 1-column series are not fittable
    assert f"fit with: nwb-facrnn fit {path} --series {SERIES}" in out
    assert "nothing to fit" not in out


def test_fit_binned_rates_series_from_the_command_line(tmp_path):
    """A file with a Units table and a binned-rates series: --series fits the series' 10
    columns (a Gaussian fit of a 2-D signal), written and read back."""
    path = _binned_rates_file(tmp_path / "rates.nwb", units=True)
    out = tmp_path / "fit.nwb"
    proc = run_cli("fit", path, "--series", SERIES, *FIT, "--output", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NeuralData(series: continuous 1500 bins x 10 units" in proc.stdout
    res = read_results(out)
    assert len(res.unit_ids) == N_UNITS and res.unit_ids.tolist() == list(range(N_UNITS))
    assert res.output_loadings.shape == (N_UNITS, 2)
    assert res.provenance["objects"]["activity"] == SERIES
    assert res.provenance["modality"] == "series"
    assert res.params["observation"] == "gaussian"
    shown = _metric(proc.stdout, "reconstruction_r2")
    assert shown == pytest.approx(res.metrics["reconstruction_r2"], abs=1e-4)
    assert shown > 0.8  # two latents capture the two-dimensional signal


def test_fit_series_file_without_units_or_ophys(tmp_path):
    """Only TimeSeries in the file (no Units, no imaging): timestamps instead of a rate, a
    NaN gap, continuous."""
    from pynwb import TimeSeries

    rates = _rates(seed=3)
    rates[200:260, :4] = np.nan
    f = _nwbfile()
    stamps = 1.5 + np.arange(N_SAMPLES) / RATE
    f.add_acquisition(TimeSeries(name="rates", data=rates, unit="Hz", timestamps=stamps))
    path = _write(f, tmp_path / "plain.nwb")
    out = tmp_path / "plain_fit.nwb"
    proc = run_cli("fit", path, "--series", "/acquisition/rates", *FIT, "--output", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    res = read_results(out)
    assert len(res.unit_ids) == N_UNITS
    assert res.timestamps[0] == pytest.approx(1.5 + 0.5 / RATE)  # bin centres
    assert np.isfinite(_metric(proc.stdout, "reconstruction_r2"))
    info = run_cli("info", out)
    assert info.returncode == 0, info.stdout + info.stderr
    fits = info.stdout.split("FacRNN fits")[1]
    assert "/processing/misc/facrnn_G2H1_beta20_seed0" in fits
    assert "/acquisition/rates" in fits  # the fitted series, in place of a unit table


@pytest.mark.parametrize(
    ("name", "found"),
    [("/acquisition/speed", "1-D data"), ("/acquisition/cube", "3-D data")],
)
def test_fit_1d_or_3d_series_is_one_line_naming_it(tmp_path, name, found):
    path = _binned_rates_file(tmp_path / "rates.nwb")
    proc = run_cli("fit", path, "--series", name, *FIT, "--output", tmp_path / "x.nwb")
    _assert_one_line_error(proc, str(path), f"{name}/data", found, "expected 2-D numeric data")
    assert not (tmp_path / "x.nwb").exists()


def test_voltage_channels_and_two_sample_series_are_not_offered_as_activity(tmp_path):
    """An ElectricalSeries holds channels of raw voltage, not units, and a series of two
    samples has too few for a fit: neither is listed, nor offered by "nothing to fit"."""
    from pynwb import TimeSeries
    from pynwb.testing.mock.ecephys import mock_ElectricalSeries

    nwbfile = _nwbfile()
    mock_ElectricalSeries(nwbfile=nwbfile)
    nwbfile.add_acquisition(TimeSeries(name="two", data=np.ones((2, 4)), unit="a.u.", rate=1.0))
    path = _write(nwbfile, tmp_path / "voltage.nwb")
    with pytest.raises(NWBReadError, match=r"nothing to fit") as err:
        read_nwb(path)
    assert "--series" not in str(err.value)
    proc = run_cli("info", path)
    assert proc.returncode == 0, proc.stderr
    assert "can be fit as activity" not in proc.stdout and "ElectricalSeries" in proc.stdout
