"""``standardize``: the model sees every unit on the scale its nonlinearity works at, and
speaks the data's own units (raw fluorescence, dF/F in percent or tiny fractions, counts)."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from nwb_facrnn import FacRNN, metrics
from nwb_facrnn.errors import OptionError
from nwb_facrnn.model.data import needs_standardization
from nwb_facrnn.synthetic import make_lowrank_rnn_dataset, make_poisson_dataset

QUICK = {"n_groups": 2, "group_rank": 2, "max_epochs": 5, "n_init": 1, "progress": False}


@pytest.fixture(scope="module")
def rnn_data():
    return make_lowrank_rnn_dataset(n_groups=2, group_rank=3, n_neurons=12, n_steps=600, seed=3)


def test_auto_standardizes_only_activity_off_the_nonlinearity_s_range(rnn_data):
    x = rnn_data.x[None]
    assert not needs_standardization(x, None)  # a network simulated in its own units
    assert needs_standardization(450 + 35 * x, None)  # raw fluorescence
    assert needs_standardization(100 * x, None)  # dF/F in percent
    assert needs_standardization(1e-3 * x, None)  # tiny values
    # one saturating unit is enough; unobserved values do not count
    big = x.copy()
    big[..., 0] += 50
    assert needs_standardization(big, None)
    observed = np.ones(x.shape, bool)
    observed[..., 0] = False
    assert not needs_standardization(np.where(observed, x, 1e6), observed)


def test_a_standardized_fit_speaks_the_data_s_units(rnn_data):
    """Fit on ``x`` and on ``450 + 35 x``: the same latents, predictions and simulations
    moved into the new units, the log-likelihood shifted by the Jacobian ``N log 35``."""
    x, c, d = rnn_data.x, 35.0, 450.0
    raw = (d + c * x).astype(np.float32)
    ref = FacRNN(**QUICK, standardize="always").fit(x)
    model = FacRNN(**QUICK).fit(raw)  # "auto" standardizes raw fluorescence
    assert model.standardized_ and not FacRNN(**QUICK).fit(x).standardized_
    np.testing.assert_allclose(model.activity_offset_, d + c * ref.activity_offset_, rtol=1e-5)
    np.testing.assert_allclose(model.activity_scale_, c * ref.activity_scale_, rtol=1e-4)
    np.testing.assert_allclose(model.transform(raw), ref.transform(x), atol=2e-3)
    np.testing.assert_allclose(model.predict(raw), d + c * ref.predict(x), atol=c * 2e-3)
    np.testing.assert_allclose(model.noise_std_, c * ref.noise_std_, rtol=1e-2)
    shift = x.shape[1] * np.log(c)
    assert model.score(raw) == pytest.approx(ref.score(x) - shift, abs=0.05)
    sim, _ = model.simulate(raw[0], 50, noise=False)
    sim_ref, _ = ref.simulate(x[0], 50, noise=False)
    np.testing.assert_allclose(sim, d + c * sim_ref, atol=c * 5e-3)
    # the same data unstandardized: tanh saturates and the fit explains nothing
    flat = FacRNN(**QUICK, standardize="never").fit(raw)
    assert metrics.reconstruction_r2(raw[1:], flat.predict(raw)[1:]) < 0.05
    assert metrics.reconstruction_r2(raw[1:], model.predict(raw)[1:]) > 0.5


def test_poisson_counts_at_high_rates_keep_their_counts():
    """Only the encoder's input is standardized: rates stay counts per bin."""
    data = make_poisson_dataset(2, 3, n_neurons=12, n_steps=600, mean_rate=10.0, seed=1)
    counts = data.x
    fast = FacRNN(**{**QUICK, "max_epochs": 20}, observation="poisson").fit(counts)
    assert fast.standardized_ and counts.mean() > 5
    rate = fast.predict(counts)
    assert rate.mean() == pytest.approx(counts.mean(), rel=0.1)
    flat = FacRNN(**{**QUICK, "max_epochs": 20}, observation="poisson", standardize="never")
    flat.fit(counts)
    # tanh of counts in the tens is saturated: the standardized encoder sees the dynamics
    assert fast.score(counts) > flat.score(counts)


def test_output_activation_scales_without_shifting(rnn_data):
    rates = np.exp(rnn_data.x).astype(np.float32) * 40  # positive, far above tanh's range
    model = FacRNN(**QUICK, output_activation="relu").fit(rates)
    assert model.standardized_
    assert (model.predict(rates) >= 0).all()


def test_constant_activity_is_a_user_error():
    with pytest.raises(OptionError, match=r"constant .* \(unit 0 is 1 throughout\); there are no"):
        FacRNN(**QUICK).fit(np.ones((100, 6), np.float32))


def test_constant_traces_are_refused_before_training_naming_the_series(tmp_path):
    """pynwb's mock RoiResponseSeries is all ones: one line naming the file and the series
    (it was an internal error from the metrics, after training)."""
    from datetime import UTC, datetime

    from cli_process import run_cli
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.testing.mock.ophys import mock_RoiResponseSeries

    path = tmp_path / "ones.nwb"
    nwbfile = NWBFile("ones", "ones", datetime(2024, 1, 1, tzinfo=UTC))
    mock_RoiResponseSeries(nwbfile=nwbfile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwbfile)
    proc = run_cli("fit", path, "--max-epochs", "2", "--n-groups", "1", "--group-rank", "2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    where = f"{path}: /processing/ophys/RoiResponseSeries: "
    assert where + "every one of its 5 unit(s) is " in lines[0]
    assert "constant" in lines[0] and "epoch" not in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("ones_facrnn*"))


def test_the_standardization_is_saved_and_reloaded(tmp_path, rnn_data):
    raw = (450 + 35 * rnn_data.x).astype(np.float32)
    model = FacRNN(**QUICK).fit(raw)
    again = FacRNN.load(model.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(again.activity_scale_, model.activity_scale_)
    np.testing.assert_array_equal(again.predict(raw), model.predict(raw))
    with pytest.raises(OptionError, match="standardize must be one of"):
        FacRNN(standardize=True).fit(raw)


# ------------------------------------------ a synthetic raw-fluorescence session, end to end


@pytest.fixture(scope="module")
def raw_session(tmp_path_factory):
    from nwb_facrnn.synthetic import make_imaging_session

    path = tmp_path_factory.mktemp("raw") / "session.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = make_imaging_session(path, seed=0, duration=2.0, n_rois=24)
    return path, truth


def _fit_fluorescence(path, out, read=None, model=None):
    from nwb_facrnn.pipeline import fit_source

    return fit_source(
        path,
        read_options={"series": "Fluorescence", "rois": {"accepted": True}, **(read or {})},
        model_options={
            **{"n_groups": 2, "group_rank": 3, "max_epochs": 30, "n_init": 1, "seed": 0},
            **{"progress": False, **(model or {})},
        },
        output={"output": out},
    )


def test_raw_fluorescence_fits_as_well_as_zscored_by_default(raw_session, tmp_path):
    """Raw Fluorescence (~ hundreds of counts, bleaching) with default options recovers the
    true groups as well as the --zscore fit, and the results file keeps the scaling."""
    path, truth = raw_session
    default = _fit_fluorescence(path, tmp_path / "default.nwb")
    zscored = _fit_fluorescence(path, tmp_path / "zscore.nwb", read={"zscore": True})
    never = _fit_fluorescence(path, tmp_path / "never.nwb", model={"standardize": "never"})

    def recovery(outcome):
        return metrics.group_latent_r2(truth.z, outcome.results.latents, 2, 2).mean

    assert default.model.standardized_ and not zscored.model.standardized_
    assert recovery(default) == pytest.approx(recovery(zscored), abs=0.05)
    assert recovery(default) > 0.25  # seeds 0-2 of the session: 0.61, 0.43, 0.66
    assert recovery(never) < 0.1  # what the default was: every ROI saturated, nothing fit
    assert default.metrics["reconstruction_r2"] > 0.8
    # the results file stores the scaling, in the data's units
    f_mean = np.nanmean(default.data.activity, axis=0)
    with h5py.File(default.path, "r") as f:
        model = f[f"processing/ophys/{default.fit_name}/model"]
        np.testing.assert_allclose(model["activity_offset"][:], f_mean, rtol=1e-4)
        assert (model["activity_scale"][:] > 1).all()
    reloaded = FacRNN.from_nwb(default.path, device="cpu")
    np.testing.assert_allclose(reloaded.activity_offset_, f_mean, rtol=1e-4)
    assert reloaded.standardize == "auto" and reloaded.standardized_
    pred = reloaded.predict(default.data)
    assert abs(np.nanmean(pred) - f_mean.mean()) < 0.02 * f_mean.mean()
