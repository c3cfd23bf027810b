"""FacRNN estimator: recovery on synthetic ground truth, baselines, persistence, validation."""

import numpy as np
import pytest
import torch

from nwb_facrnn import FacRNN
from nwb_facrnn import metrics as M
from nwb_facrnn.errors import OptionError, UserError
from nwb_facrnn.model.baselines import PRESETS
from nwb_facrnn.model.data import lagged, make_transitions
from nwb_facrnn.synthetic import make_lowrank_rnn_dataset, make_poisson_dataset

FAST = {"progress": False, "max_epochs": 40, "n_init": 1}


@pytest.fixture(scope="module")
def paper_data():
    """The paper's configuration, with its interleaved even/odd train/test split."""
    data = make_lowrank_rnn_dataset(seed=0)
    train = np.arange(data.n_steps) % 2 == 0
    return data, train, ~train


@pytest.fixture(scope="module")
def facrnn_fit(paper_data):
    data, train, _ = paper_data
    model = FacRNN(n_groups=2, group_rank=3, beta=20.0, seed=0, progress=False)
    return model.fit(data.x, data.u, step_mask=train)


@pytest.fixture(scope="module")
def lrrnn_fit(paper_data):
    data, train, _ = paper_data
    model = FacRNN.preset("lrRNN", n_groups=2, group_rank=3, seed=0, progress=False)
    return model.fit(data.x, data.u, step_mask=train)


# ------------------------------------------------------------- the paper's claim
def test_facrnn_recovers_groups_on_held_out_steps(paper_data, facrnn_fit):
    data, _, test = paper_data
    z = facrnn_fit.transform(data.x, data.u)
    alignment = M.group_latent_r2(data.z[test], z[test], 2)
    assert alignment.mean >= 0.9
    assert alignment.per_group.min() >= 0.85


def test_facrnn_groups_less_dependent_than_lrrnn(paper_data, facrnn_fit, lrrnn_fit):
    data, _, test = paper_data
    pc_fac = M.partial_correlation(facrnn_fit.transform(data.x)[test], 2)
    pc_lr = M.partial_correlation(lrrnn_fit.transform(data.x)[test], 2)
    assert pc_fac < pc_lr - 0.2


def test_facrnn_subconnectivity_beats_lrrnn(paper_data, facrnn_fit, lrrnn_fit):
    data, _, test = paper_data

    def subcorr(m):
        ga = M.group_latent_r2(data.z[test], m.transform(data.x)[test], 2)
        return M.subconnectivity_metrics(
            data.A, data.B, m.output_loadings_, m.input_loadings_, 2, assignment=ga.assignment
        )["correlation"]

    assert subcorr(facrnn_fit) > 0.75
    assert subcorr(facrnn_fit) > subcorr(lrrnn_fit) + 0.1


def test_loss_decreases(facrnn_fit, lrrnn_fit):
    for model in (facrnn_fit, lrrnn_fit):
        total = model.history_["total"]
        # the default budget on the paper's 999 training transitions: 100 epochs of 8 steps
        assert len(total) == model.n_epochs_ == 100 and model.max_epochs is None
        assert model.n_steps_ == 800 and model.steps_per_row_ == 8
        assert model.samples_seen_ == 100 * 999
        assert total[-10:].mean() < total[:5].mean() - 0.5
    assert set(facrnn_fit.history_) == {"total", "reconstruction", "kl", "pc", "bd"}
    assert np.all(lrrnn_fit.history_["pc"] == 0)  # beta = 0: the penalty is not even computed


def test_reconstruction_and_likelihood(paper_data, facrnn_fit):
    data, _, test = paper_data
    pred = facrnn_fit.predict(data.x, data.u)
    assert pred.shape == data.x.shape
    assert M.reconstruction_r2(data.x[test], pred[test]) > 0.7
    ll_test = facrnn_fit.score(data.x, data.u, step_mask=test)
    shuffled = data.x[np.random.default_rng(0).permutation(data.n_steps)]
    assert ll_test > facrnn_fit.score(shuffled, data.u, step_mask=test) + 5.0


def test_score_closed_form_matches_monte_carlo(paper_data, facrnn_fit):
    data, _, test = paper_data
    closed = facrnn_fit.score(data.x, data.u, step_mask=test)
    model = facrnn_fit
    from nwb_facrnn.model.data import as_sequences, inputs_like, step_mask_like

    seqs = as_sequences(data.x)
    trans = make_transitions(
        seqs, inputs_like(data.u, seqs), None, torch.device("cpu"), step_mask_like(test, seqs)
    )
    with torch.no_grad():
        mu = model.module_.encode(trans.prev)
        mc = model._mc_log_likelihood(mu, trans, n_samples=2000)
    assert mc == pytest.approx(closed, abs=0.15)


def test_connectivity_attributes(facrnn_fit):
    a, b = facrnn_fit.output_loadings_, facrnn_fit.input_loadings_
    assert a.shape == (20, 6) and b.shape == (6, 20)
    np.testing.assert_allclose(facrnn_fit.connectivity_, a @ b, rtol=1e-6)
    parts = sum(facrnn_fit.group_connectivity(g) for g in range(2))
    np.testing.assert_allclose(parts, facrnn_fit.connectivity_, atol=1e-5)
    assert np.linalg.matrix_rank(facrnn_fit.connectivity_, tol=1e-4) == 6
    assert facrnn_fit.latent_std_ == pytest.approx(facrnn_fit.n_samples_ ** (-1 / 10))
    assert facrnn_fit.n_samples_ == 999  # even steps 2..1998: no transition into step 0
    assert facrnn_fit.noise_std_.shape == (20,) and np.all(facrnn_fit.noise_std_ > 0)
    assert len(facrnn_fit.init_objectives_) == facrnn_fit.n_init
    objectives = facrnn_fit.init_objectives_
    assert objectives[facrnn_fit.best_init_] == np.nanmin(objectives)
    # successive halving: 4 restarts, 2 after a quarter of the steps, 1 after half
    assert np.isnan(objectives).sum() == 3


# ------------------------------------------------------------------ baselines
def test_presets_set_the_paper_hyperparameters():
    assert set(PRESETS) == {"lrRNN", "lrRNN+ICA", "LINT", "bdRNN", "FacRNN-full", "FacRNN"}
    lr = FacRNN.preset("lrRNN", group_rank=6)
    assert (lr.n_groups, lr.beta, lr.alpha) == (1, 0.0, 0.0)
    assert FacRNN.preset("bdRNN").alpha > 0 and FacRNN.preset("bdRNN").beta == 0
    assert FacRNN.preset("FacRNN-full").penalty == "total"
    assert FacRNN.preset("LINT").postprocess == "svd"
    assert FacRNN.preset("lrRNN+ICA").postprocess == "ica"
    assert FacRNN.preset("FacRNN", beta=5.0).beta == 5.0
    with pytest.raises(OptionError, match="unknown preset 'PCA'"):
        FacRNN.preset("PCA")


@pytest.mark.parametrize("name", ["LINT", "lrRNN+ICA"])
def test_postprocessing_keeps_the_connectivity(paper_data, name):
    data, train, _ = paper_data
    kw = {"n_groups": 2, "group_rank": 3, "seed": 1, **FAST}
    plain = FacRNN.preset("lrRNN", **kw).fit(data.x, data.u, step_mask=train)
    post = FacRNN.preset(name, **kw).fit(data.x, data.u, step_mask=train)
    np.testing.assert_allclose(post.connectivity_, plain.connectivity_, atol=1e-4)
    np.testing.assert_allclose(post.predict(data.x), plain.predict(data.x), atol=1e-4)
    z = post.transform(data.x)[train]
    if name == "LINT":  # B = V_K^T: orthonormal rows; A = U_K S_K: orthogonal columns
        b, a = post.input_loadings_, post.output_loadings_
        np.testing.assert_allclose(b @ b.T, np.eye(6), atol=1e-4)
        gram = a.T @ a
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-3)
        s = np.linalg.svd(plain.connectivity_, compute_uv=False)[:6]
        np.testing.assert_allclose(np.sqrt(np.diag(gram)), s, rtol=1e-3)
    else:  # ICA components: uncorrelated, unit variance
        np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(6), atol=0.05)


def test_bdrnn_penalty_makes_latent_interaction_block_diagonal(paper_data):
    data, train, _ = paper_data
    kw = {"n_groups": 2, "group_rank": 3, "seed": 0, **FAST, "max_epochs": 80}
    off = ~np.kron(np.eye(2, dtype=bool), np.ones((3, 3), dtype=bool))

    def offblock(m):
        j = m.latent_interaction_
        return np.sqrt(np.mean(j[off] ** 2)) / np.sqrt(np.mean(j**2))

    bd = FacRNN.preset("bdRNN", **kw).fit(data.x, data.u, step_mask=train)
    lr = FacRNN.preset("lrRNN", **kw).fit(data.x, data.u, step_mask=train)
    assert offblock(bd) < 0.5 * offblock(lr)
    assert bd.history_["bd"][-1] < bd.history_["bd"][0]


def test_full_total_correlation_variant_groups_dims(paper_data):
    data, train, test = paper_data
    m = FacRNN.preset("FacRNN-full", n_groups=2, group_rank=3, seed=0, **FAST)
    m.fit(data.x, data.u, step_mask=train)
    assert m.n_latents == 6
    # every dim is penalized on its own, then dims are grouped by dependence
    assert M.group_latent_r2(data.z[test], m.transform(data.x)[test], 2).mean > 0.6


# --------------------------------------------------------- observation models
def test_poisson_model_recovers_latents_from_spike_counts():
    data = make_poisson_dataset(n_neurons=100, n_steps=2000, mean_rate=1.0, seed=3)
    train = np.arange(data.n_steps) % 2 == 0
    m = FacRNN(observation="poisson", smoothing=2.0, seed=0, progress=False, max_epochs=150)
    m.fit(data.x, step_mask=train)
    z = m.transform(data.x)
    assert M.component_latent_r2(data.z[~train], z[~train]) > 0.8
    rate = m.predict(data.x)
    assert np.all(rate > 0)
    null = np.broadcast_to(data.x[train].mean(0), data.x[~train].shape)
    assert M.bits_per_spike(data.x[~train], rate[~train]) > M.bits_per_spike(data.x[~train], null)
    assert m.score(data.x, step_mask=~train) > M.poisson_log_likelihood(data.x[~train], null)


def test_mlp_encoder_decoder(paper_data):
    data, train, test = paper_data
    m = FacRNN(encoder="mlp", decoder="mlp", hidden_size=32, seed=0, **FAST)
    m.fit(data.x, data.u, step_mask=train)
    assert m.history_["total"][-1] < m.history_["total"][0]
    assert M.reconstruction_r2(data.x[test], m.predict(data.x, data.u)[test]) > 0.5
    with pytest.raises(AttributeError, match="linear decoder only"):
        _ = m.output_loadings_
    assert m.transform(data.x).shape == (data.n_steps, 6)


def test_relu_output_activation_gives_non_negative_predictions(paper_data):
    data, train, _ = paper_data
    m = FacRNN(output_activation="relu", seed=0, **FAST).fit(data.x, data.u, step_mask=train)
    assert (m.predict(data.x) >= 0).all()
    assert np.isfinite(m.score(data.x, data.u))  # Monte Carlo path


# ---------------------------------------------------------- data conventions
def test_trials_never_cross_boundaries():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 2)).astype(np.float32)
    trans = make_transitions(x, np.zeros_like(x), None, torch.device("cpu"))
    assert len(trans) == 3 * 4
    expected_prev = x[:, :-1].reshape(-1, 2)
    np.testing.assert_array_equal(trans.prev.numpy(), expected_prev)
    np.testing.assert_array_equal(trans.curr.numpy(), x[:, 1:].reshape(-1, 2))


def test_transform_row_t_reads_previous_step_and_row0_reads_x0(facrnn_fit, paper_data):
    data, _, _ = paper_data
    z = facrnn_fit.transform(data.x[:50])
    b, bias = facrnn_fit.input_loadings_, facrnn_fit.latent_bias_
    np.testing.assert_allclose(z[10], b @ np.tanh(data.x[9]) + bias, atol=1e-5)
    np.testing.assert_allclose(z[0], b @ np.tanh(data.x[0]) + bias, atol=1e-5)


def test_transform_accepts_trials_and_torch(facrnn_fit, paper_data):
    data, _, _ = paper_data
    trials = data.x[:1000].reshape(4, 250, 20)
    z = facrnn_fit.transform(torch.from_numpy(trials))
    assert z.shape == (4, 250, 6)
    np.testing.assert_allclose(z[1], facrnn_fit.transform(trials[1]), atol=1e-6)


def test_causal_smoothing():
    x = np.zeros((1, 6, 1), np.float32)
    x[0, 2] = 1.0
    s = lagged(x, tau=1.0)[0, :, 0]
    lam = 1 - np.exp(-1.0)
    # row t holds the smoothed activity of t - 1: nothing before the pulse, then a decay
    np.testing.assert_allclose(s, [0, 0, 0, lam, lam * (1 - lam), lam * (1 - lam) ** 2], rtol=1e-6)


def test_simulate(facrnn_fit, paper_data):
    data, _, _ = paper_data
    x, z = facrnn_fit.simulate(data.x[0], 300, seed=1)
    assert x.shape == (300, 20) and z.shape == (300, 6)
    x2, _ = facrnn_fit.simulate(data.x[0], 300, seed=1)
    np.testing.assert_array_equal(x, x2)
    xd, zd = facrnn_fit.simulate(data.x[0], 5, noise=False)
    # deterministic dynamics: z_1 = B tanh(x_0) + b, x_1 = A z_1 + a
    z1 = facrnn_fit.input_loadings_ @ np.tanh(data.x[0]) + facrnn_fit.latent_bias_
    np.testing.assert_allclose(zd[0], z1, atol=1e-5)
    np.testing.assert_allclose(
        xd[0], facrnn_fit.output_loadings_ @ z1 + facrnn_fit.output_bias_, atol=1e-5
    )
    # the generated activity has the data's scale
    assert 0.5 < x.std() / data.x.std() < 2.0


# ----------------------------------------------------------- reproducibility
def test_fit_is_reproducible_given_the_seed(paper_data):
    data, train, _ = paper_data
    kw = {"seed": 7, **FAST, "max_epochs": 10}
    a = FacRNN(**kw).fit(data.x, data.u, step_mask=train)
    b = FacRNN(**kw).fit(data.x, data.u, step_mask=train)
    c = FacRNN(**{**kw, "seed": 8}).fit(data.x, data.u, step_mask=train)
    np.testing.assert_array_equal(a.input_loadings_, b.input_loadings_)
    np.testing.assert_array_equal(a.history_["total"], b.history_["total"])
    assert not np.allclose(a.history_["total"], c.history_["total"])


def test_early_stopping_uses_held_out_transitions(paper_data):
    data, train, _ = paper_data
    m = FacRNN(
        seed=0,
        progress=False,
        n_init=2,
        max_epochs=400,
        early_stopping=True,
        n_iter_no_change=5,
        validation_fraction=0.2,
        beta=0.0,
    )
    m.fit(data.x, data.u, step_mask=train)
    assert m.n_samples_ == 999 - round(0.2 * 999)
    assert m.n_epochs_ < 400 and m.stopped_early_
    assert len(m.history_["validation"]) == m.n_epochs_


def test_save_load_gives_identical_transforms(facrnn_fit, paper_data, tmp_path):
    data, _, test = paper_data
    path = facrnn_fit.save(tmp_path / "model.npz")
    loaded = FacRNN.load(path)
    np.testing.assert_array_equal(loaded.transform(data.x), facrnn_fit.transform(data.x))
    np.testing.assert_array_equal(loaded.connectivity_, facrnn_fit.connectivity_)
    assert loaded.get_params() == {**facrnn_fit.get_params(), "device": "auto"}
    np.testing.assert_array_equal(loaded.history_["pc"], facrnn_fit.history_["pc"])
    assert loaded.score(data.x, data.u, step_mask=test) == pytest.approx(
        facrnn_fit.score(data.x, data.u, step_mask=test)
    )
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left


def test_save_writes_the_path_as_given(facrnn_fit, tmp_path):
    """No ``.npz`` suffix appended, the folder created, an existing file replaced."""
    path = tmp_path / "new" / "model.bin"
    assert facrnn_fit.save(path) == path
    assert facrnn_fit.save(path) == path
    assert [p.name for p in path.parent.iterdir()] == ["model.bin"]
    np.testing.assert_array_equal(FacRNN.load(path).connectivity_, facrnn_fit.connectivity_)


def test_load_rejects_foreign_files(tmp_path):
    bad = tmp_path / "other.npz"
    np.savez(bad, weights=np.zeros(3))
    with pytest.raises(OptionError, match="not a saved FacRNN model"):
        FacRNN.load(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(OptionError, match=r"junk\.npz: not a saved FacRNN model"):
        FacRNN.load(junk)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.full((50, 4), np.nan), r"NaN or inf"),
        (
            np.r_[np.zeros((49, 4)), [[0, np.inf, 0, 0]]],
            r"NaN or inf value\(s\) \(first at index \(49, 1\)\)",
        ),
        (np.zeros(50), r"shape \(T, N\) or \(n_trials, T, N\); got 1 dimension"),
        (np.zeros((2, 3, 4, 5)), r"got 4 dimension"),
        (np.zeros((1, 4)), r"at least 2 time bins.*T = 1"),
        ([["a", "b"]], r"X must be a numeric array"),
    ],
)
def test_bad_input_raises_option_error(x, match):
    with pytest.raises(OptionError, match=match):
        FacRNN(**FAST).fit(x)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_groups": 0}, r"n_groups must be an integer >= 1, got 0"),
        ({"group_rank": 0}, r"group_rank must be an integer >= 1, got 0"),
        ({"group_rank": 1.5}, r"group_rank must be an integer >= 1, got 1.5"),
        ({"beta": -1.0}, r"beta must be a finite number >= 0"),
        ({"observation": "binomial"}, r"observation must be one of \('gaussian', 'poisson'\)"),
        ({"alpha": 1.0, "encoder": "mlp"}, r"alpha > 0 .* needs encoder='linear'"),
    ],
)
def test_bad_hyperparameters_raise_option_error(params, match):
    x = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(OptionError, match=match):
        FacRNN(**{**FAST, **params}).fit(x)


def test_n_mismatch_between_fit_and_transform(facrnn_fit):
    with pytest.raises(OptionError, match=r"N = 19 units but the model was fit on N = 20"):
        facrnn_fit.transform(np.zeros((10, 19)))
    with pytest.raises(OptionError, match=r"inputs must have the same shape"):
        facrnn_fit.predict(np.zeros((10, 20)), inputs=np.zeros((9, 20)))


def test_negative_counts_rejected_for_poisson():
    with pytest.raises(OptionError, match="non-negative counts"):
        FacRNN(observation="poisson", **FAST).fit(-np.ones((20, 3)))


def test_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="not fitted yet") as err:
        FacRNN().transform(np.zeros((5, 3)))
    assert isinstance(err.value, UserError)  # a usage mistake: the CLI exits 2
    assert not hasattr(FacRNN(), "connectivity_")  # scikit-learn's fitted-check convention


def test_fit_on_trials_uses_only_within_trial_transitions(paper_data):
    data, _, _ = paper_data
    trials = data.x[:1800].reshape(6, 300, 20)
    m = FacRNN(seed=0, **FAST).fit(trials, data.u[:1800].reshape(6, 300, 20))
    assert m.n_samples_ == 6 * 299
    assert m.transform(trials).shape == (6, 300, 6)


def test_all_restarts_diverging_is_reported(paper_data):
    data, train, _ = paper_data
    with pytest.raises(RuntimeError, match=r"every restart diverged.*lower learning_rate"):
        FacRNN(seed=0, learning_rate=1e12, **FAST).fit(data.x * 1e6, step_mask=train)


# ------------------------------------------------------- masks (NeuralData from NWB)
def _masked_copy(x: np.ndarray, mask: np.ndarray, fill: float) -> np.ndarray:
    out = x.copy()
    out[~mask] = fill
    return out


def test_unobserved_values_do_not_change_the_fit(paper_data):
    """Whatever sits in unobserved entries, the fit and its latents are the same."""
    data, _, _ = paper_data
    x = data.x.reshape(4, 500, -1)
    mask = np.ones(x.shape, dtype=bool)
    mask[1, 100:300, 3] = False  # a unit outside its obs_intervals for a while
    mask[3, 450:, :] = False  # a shorter trial, padded at the end
    mask[0, 200, :] = False  # a dropped frame
    params = dict(n_groups=2, group_rank=3, seed=0, max_epochs=15, n_init=2, progress=False)
    a = FacRNN(**params).fit(_masked_copy(x, mask, np.nan), mask=mask)  # NaN marks missing
    b = FacRNN(**params).fit(_masked_copy(x, mask, 1e3), mask=mask)
    np.testing.assert_array_equal(a.connectivity_, b.connectivity_)
    np.testing.assert_allclose(a.observed_mean_[3], x[mask[..., 3], 3].mean(), rtol=1e-5)
    z = a.transform(_masked_copy(x, mask, 1e3), mask=mask)
    np.testing.assert_array_equal(z, a.transform(_masked_copy(x, mask, -7.0), mask=mask))
    assert np.isnan(z[3, 450:]).all() and np.isfinite(z[3, :450]).all()
    assert np.isfinite(z[1:3]).all()
    # the dropped frame: no latent at it, nor at the next step (read from it)
    assert np.isnan(z[0, 200:202]).all() and np.isfinite(np.delete(z[0], [200, 201], 0)).all()
    # an unmasked fit on the same corrupted values is different (the mask matters)
    c = FacRNN(**params).fit(_masked_copy(x, mask, 1e3))
    assert not np.allclose(a.connectivity_, c.connectivity_)
    # masked values are scored out: the score ignores them
    assert np.isfinite(a.score(_masked_copy(x, mask, 1e3), mask=mask))
    assert a.score(_masked_copy(x, mask, 1e3), mask=mask) == pytest.approx(
        a.score(_masked_copy(x, mask, 0.0), mask=mask)
    )


def test_fit_accepts_neural_data(paper_data):
    from nwb_facrnn import NeuralData

    data, _, _ = paper_data
    x = data.x.reshape(4, 500, -1)
    mask = np.ones(x.shape, dtype=bool)
    mask[2, 400:] = False
    nd = NeuralData(
        activity=_masked_copy(x, mask, 0.0),
        mask=mask,
        timestamps=np.arange(2000, dtype=float).reshape(4, 500) * 0.01,
        bin_size=0.01,
        unit_ids=np.arange(x.shape[2]),
        unit_table="/units",
        modality="spikes",
        trial_ids=np.arange(4),
    )
    params = dict(n_groups=2, group_rank=3, seed=0, max_epochs=10, n_init=1, progress=False)
    a = FacRNN(**params).fit(nd)
    b = FacRNN(**params).fit(nd.activity, mask=nd.mask)
    np.testing.assert_array_equal(a.transform(nd), b.transform(nd.activity, mask=nd.mask))
    assert np.isnan(a.transform(nd)[2, 400:]).all()
    with pytest.raises(OptionError, match="never observed"):
        bad = mask.copy()
        bad[..., 0] = False
        FacRNN(**params).fit(x, mask=bad)
    with pytest.raises(OptionError, match="mask must have the shape of the activity"):
        FacRNN(**params).fit(x, mask=mask[:, :, :3])


def test_fit_reports_every_epoch_and_a_callback_can_stop_it():
    X = np.random.default_rng(0).standard_normal((300, 6)).astype(np.float32)
    seen = []
    model = FacRNN(n_groups=2, group_rank=1, max_epochs=4, n_init=1, progress=False, seed=0)
    model.fit(X, callback=lambda epoch, terms: seen.append((epoch, terms)))
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    assert set(seen[0][1]) == {"total", "reconstruction", "kl", "pc", "bd"}
    # one restart: the reported terms are the recorded history, epoch by epoch
    for name in ("total", "reconstruction", "kl", "pc"):
        np.testing.assert_allclose([t[name] for _, t in seen], model.history_[name], rtol=1e-6)

    class Stop(Exception):
        pass

    def stop_after_two(epoch, terms):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        FacRNN(n_groups=1, group_rank=2, max_epochs=50, progress=False).fit(
            X, callback=stop_after_two
        )
