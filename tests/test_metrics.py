"""Tests of nwb_facrnn.metrics: each checks numbers against a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import r2_score

from nwb_facrnn import metrics
from nwb_facrnn.metrics import (
    behavior_decoding_r2,
    bits_per_spike,
    component_latent_r2,
    connectivity_metrics,
    decoding_r2,
    gaussian_log_likelihood,
    gaussian_partial_correlation,
    group_latent_r2,
    partial_correlation,
    poisson_log_likelihood,
    reconstruction_r2,
    subconnectivity_metrics,
    total_correlation,
)

T = 2000


def _cross_correlated_cov(rho: float) -> np.ndarray:
    """6 x 6 covariance: two 3-D groups, dim i of group 1 correlated rho with dim i of group 2."""
    cov = np.eye(6)
    for i in range(3):
        cov[i, i + 3] = cov[i + 3, i] = rho
    return cov


def _random_invertible(rng: np.random.Generator, h: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((h, h)))
    return q @ np.diag(rng.uniform(0.5, 2.0, h))  # well conditioned


# ----------------------------------------------------------------------------------------------
# partial / total correlation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kde", "gaussian"])
@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_partial_correlation_near_zero_for_independent_groups(method: str, dist: str) -> None:
    rng = np.random.default_rng(1)
    z = rng.standard_normal((T, 6)) if dist == "normal" else rng.uniform(-1, 1, (T, 6))
    assert abs(partial_correlation(z, 2, method=method)) < 0.05


def test_kde_bias_correction_matters() -> None:
    # The raw plug-in KDE estimate is biased well below zero at independence; the shuffle
    # baseline removes that bias.
    z = np.random.default_rng(1).standard_normal((T, 6))
    assert partial_correlation(z, 2, n_shuffles=0) < -0.08
    assert abs(partial_correlation(z, 2)) < 0.05


@pytest.mark.parametrize("method", ["kde", "gaussian"])
def test_partial_correlation_large_for_correlated_groups(method: str) -> None:
    rng = np.random.default_rng(2)
    z = rng.multivariate_normal(np.zeros(6), _cross_correlated_cov(0.8), size=T)
    assert partial_correlation(z, 2, method=method) > 0.3


def test_gaussian_method_matches_closed_form() -> None:
    rng = np.random.default_rng(3)
    m = rng.standard_normal((6, 6))
    cov = m @ m.T + 0.5 * np.eye(6)
    z = rng.multivariate_normal(np.zeros(6), cov, size=20000)
    expected = gaussian_partial_correlation(cov, 3)
    assert expected > 0.1
    assert partial_correlation(z, 3, method="gaussian") == pytest.approx(expected, abs=0.03)


def test_gaussian_partial_correlation_known_values() -> None:
    rho = 0.6
    cov = np.array([[1.0, rho], [rho, 1.0]])
    assert gaussian_partial_correlation(cov, 2) == pytest.approx(-0.5 * np.log(1 - rho**2))
    assert gaussian_partial_correlation(cov, 1) == pytest.approx(0.0, abs=1e-12)
    # dependence inside groups does not count
    block = np.kron(np.eye(2), cov)
    assert gaussian_partial_correlation(block, 2) == pytest.approx(0.0, abs=1e-12)


def test_kde_captures_nonlinear_dependence_gaussian_misses() -> None:
    rng = np.random.default_rng(4)
    g1 = rng.standard_normal((T, 3))
    g2 = np.column_stack([g1[:, 0] ** 2 - 1, rng.standard_normal((T, 2))])
    z = np.hstack([g1, g2])
    assert partial_correlation(z, 2, method="kde") > 0.2
    assert abs(partial_correlation(z, 2, method="gaussian")) < 0.02


@pytest.mark.parametrize("method", ["kde", "gaussian"])
def test_total_correlation_adds_within_group_dependence(method: str) -> None:
    cov = np.eye(6)
    cov[0, 1] = cov[1, 0] = 0.7  # inside group 1
    cov[0, 3] = cov[3, 0] = 0.5  # across groups
    z = np.random.default_rng(5).multivariate_normal(np.zeros(6), cov, size=T)
    pc = partial_correlation(z, 2, method=method)
    tc = total_correlation(z, method=method)
    assert pc > 0.1
    assert tc > pc + 0.2  # the within-group pair adds about 0.34 nats


def test_partial_correlation_single_group_and_trials() -> None:
    z = np.random.default_rng(6).multivariate_normal(
        np.zeros(6), _cross_correlated_cov(0.5), size=1000
    )
    assert partial_correlation(z, 1) == pytest.approx(0.0, abs=1e-9)
    trials = z.reshape(4, 250, 6)
    assert partial_correlation(trials, 2) == pytest.approx(partial_correlation(z, 2), rel=1e-12)
    assert partial_correlation(trials, 2, method="gaussian") == pytest.approx(
        partial_correlation(z, 2, method="gaussian"), rel=1e-12
    )


def test_partial_correlation_subsampling_is_reproducible() -> None:
    z = np.random.default_rng(7).multivariate_normal(
        np.zeros(6), _cross_correlated_cov(0.8), size=3000
    )
    a = partial_correlation(z, 2, max_samples=500, seed=1)
    assert a == partial_correlation(z, 2, max_samples=500, seed=1)
    assert a != partial_correlation(z, 2, max_samples=500, seed=2)
    assert a > 0.3


@pytest.mark.parametrize("method", ["kde", "gaussian"])
def test_partial_correlation_invariant_to_dim_scales(method: str) -> None:
    z = np.random.default_rng(9).multivariate_normal(
        np.zeros(6), _cross_correlated_cov(0.5), size=1000
    )
    scaled = z * np.array([100.0, 1.0, 0.01, 1.0, 5.0, 1.0]) + 7.0
    assert partial_correlation(scaled, 2, method=method) == pytest.approx(
        partial_correlation(z, 2, method=method), rel=1e-6
    )


def test_kde_bandwidth_argument_is_used() -> None:
    z = np.random.default_rng(8).multivariate_normal(
        np.zeros(6), _cross_correlated_cov(0.8), size=1000
    )
    # heavy smoothing washes dependence out
    assert partial_correlation(z, 2, bandwidth=5.0) < 0.5 * partial_correlation(z, 2)


# ----------------------------------------------------------------------------------------------
# latent recovery
# ----------------------------------------------------------------------------------------------

G, H = 3, 2
PERM = np.array([2, 0, 1])  # predicted group j holds true group PERM[j]


def _group_latents(rng: np.random.Generator, n: int = 1000) -> np.ndarray:
    return rng.standard_normal((n, G * H))


def _within_group_transformed(rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    blocks = [z[:, g * H : (g + 1) * H] @ _random_invertible(rng, H) + rng.normal() for g in PERM]
    return np.hstack(blocks)


def test_group_latent_r2_recovers_permuted_transformed_groups() -> None:
    rng = np.random.default_rng(10)
    z = _group_latents(rng)
    result = group_latent_r2(z, _within_group_transformed(rng, z), G)
    assert result.r2_matrix.shape == (G, G)
    np.testing.assert_array_equal(result.assignment, np.argsort(PERM))
    assert np.all(result.per_group > 0.999)
    assert result.mean > 0.999
    # off-assignment entries: independent groups explain nothing
    off_assignment = np.ones((G, G), dtype=bool)
    off_assignment[np.arange(G), result.assignment] = False
    assert np.all(result.r2_matrix[off_assignment] < 0.05)


def test_group_latent_r2_low_when_groups_are_mixed() -> None:
    rng = np.random.default_rng(11)
    z = _group_latents(rng)
    mixed = z @ rng.standard_normal((G * H, G * H))
    assert component_latent_r2(z, mixed) > 0.999  # the space is recovered ...
    result = group_latent_r2(z, mixed, G)
    assert result.mean < 0.7  # ... but not its groups
    assert result.mean < group_latent_r2(z, _within_group_transformed(rng, z), G).mean - 0.3


def test_group_latent_r2_with_different_group_sizes_and_counts() -> None:
    rng = np.random.default_rng(12)
    z = _group_latents(rng)
    pred = _within_group_transformed(rng, z).reshape(-1, G, H)
    # predicted groups of 3 dims (one extra noise dim each) plus a fourth, pure-noise group
    pred = np.concatenate([pred, rng.standard_normal((len(z), G, 1))], axis=2).reshape(len(z), -1)
    pred = np.hstack([pred, rng.standard_normal((len(z), 3))])
    result = group_latent_r2(z, pred, G, 4)
    assert result.r2_matrix.shape == (G, 4)
    np.testing.assert_array_equal(result.assignment, np.argsort(PERM))
    assert result.mean > 0.999
    # fewer predicted groups than true ones: the unmatched true group scores 0
    short = group_latent_r2(z, _within_group_transformed(rng, z)[:, : 2 * H], G, 2)
    assert np.sum(short.assignment == -1) == 1
    assert short.per_group[short.assignment == -1] == 0.0
    assert short.mean == pytest.approx(2 / 3, abs=1e-3)


def test_group_latent_r2_held_out() -> None:
    rng = np.random.default_rng(13)
    z = rng.standard_normal((60, 2))
    noise = rng.standard_normal((60, 20))  # many predictors: in-sample R^2 overfits
    in_sample = group_latent_r2(z, noise, 1).mean
    held_out = group_latent_r2(z, noise, 1, train_idx=np.arange(40), test_idx=np.arange(40, 60))
    assert in_sample > 0.2
    assert held_out.mean < 0.0
    # a real relation survives held-out evaluation; test_idx defaults to the complement
    z = _group_latents(rng, 500)
    good = group_latent_r2(z, _within_group_transformed(rng, z), G, train_idx=np.arange(250))
    assert good.mean > 0.999


def test_held_out_indices_select_trials_for_3d_input() -> None:
    rng = np.random.default_rng(14)
    z = rng.standard_normal((10, 50, 2))
    pred = z @ np.array([[2.0, 1.0], [0.0, 1.0]]) + 1.0
    pred[7:] += rng.standard_normal((3, 50, 2))  # corrupt only trials 7, 8, 9
    fit_clean = {"train_idx": np.arange(5), "test_idx": np.arange(5, 7)}
    assert component_latent_r2(z, pred, **fit_clean) > 0.999
    assert component_latent_r2(z, pred, train_idx=np.arange(5), test_idx=[7, 8, 9]) < 0.95
    mask = np.zeros(10, dtype=bool)
    mask[:5] = True
    assert component_latent_r2(z, pred, train_idx=mask, test_idx=[5, 6]) > 0.999


def test_component_latent_r2() -> None:
    rng = np.random.default_rng(15)
    z = rng.standard_normal((1000, 4))
    mixed = z @ rng.standard_normal((4, 4)) + 3.0
    assert component_latent_r2(z, mixed) == pytest.approx(1.0, abs=1e-9)
    assert component_latent_r2(z, rng.standard_normal((1000, 4))) < 0.5
    # matches the per-dim R^2 of an explicit affine fit
    partial = mixed[:, :2]
    design = np.column_stack([partial, np.ones(1000)])
    fit = design @ np.linalg.lstsq(design, z, rcond=None)[0]
    expected = r2_score(z, fit, multioutput="uniform_average")
    assert component_latent_r2(z, partial) == pytest.approx(expected, rel=1e-9)
    # group R^2 pools the true group's dims, weighting them by variance
    z_scaled = z * np.array([1.0, 10.0, 1.0, 1.0])
    fit = design @ np.linalg.lstsq(design, z_scaled[:, :2], rcond=None)[0]
    expected = r2_score(z_scaled[:, :2], fit, multioutput="variance_weighted")
    result = group_latent_r2(z_scaled, np.hstack([partial, mixed[:, 2:]]), 2)
    assert result.r2_matrix[0, 0] == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------------------------
# connectivity
# ----------------------------------------------------------------------------------------------


def test_connectivity_metrics_identical() -> None:
    w = np.random.default_rng(20).standard_normal((10, 10))
    out = connectivity_metrics(w, w.copy())
    assert out["rmse"] == 0.0
    assert out["correlation"] == pytest.approx(1.0)
    assert out["r2"] == 1.0


def test_connectivity_metrics_hand_computed() -> None:
    out = connectivity_metrics([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 5.0]])
    assert out["rmse"] == pytest.approx(0.5)  # sqrt(1 / 4)
    assert out["r2"] == pytest.approx(0.8)  # 1 - 1 / 5
    assert out["correlation"] == pytest.approx(6.5 / np.sqrt(5 * 8.75))


def test_connectivity_metrics_noisy_copy() -> None:
    rng = np.random.default_rng(21)
    w = rng.standard_normal((50, 50))
    noise = 0.5 * rng.standard_normal((50, 50))
    out = connectivity_metrics(w, w + noise)
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean(noise**2)))
    assert out["correlation"] == pytest.approx(np.corrcoef(w.ravel(), (w + noise).ravel())[0, 1])
    assert out["r2"] == pytest.approx(r2_score(w.ravel(), (w + noise).ravel()))
    assert 0.7 < out["r2"] < 0.85  # about 1 - 0.25


def _factors(rng: np.random.Generator, n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((n, G * H)), rng.standard_normal((G * H, n))


def test_subconnectivity_invariant_to_within_group_transforms_and_permutation() -> None:
    rng = np.random.default_rng(22)
    a, b = _factors(rng)
    a_blocks, b_blocks = [], []
    for g in PERM:
        m = _random_invertible(rng, H)
        a_blocks.append(a[:, g * H : (g + 1) * H] @ m)
        b_blocks.append(np.linalg.solve(m, b[g * H : (g + 1) * H]))
    a_pred, b_pred = np.hstack(a_blocks), np.vstack(b_blocks)
    out = subconnectivity_metrics(a, b, a_pred, b_pred, G)
    assert out["correlation"] > 0.999
    assert out["rmse"] < 1e-9
    assert out["r2"] > 0.999
    np.testing.assert_array_equal(out["assignment"], np.argsort(PERM))
    assert out["per_group_correlation"].shape == (G,)
    # a wrong given assignment is used as given
    wrong = subconnectivity_metrics(a, b, a_pred, b_pred, G, assignment=PERM)
    assert wrong["correlation"] < 0.5


def test_subconnectivity_low_when_groups_are_mixed() -> None:
    rng = np.random.default_rng(23)
    a, b = _factors(rng)
    q = rng.standard_normal((G * H, G * H))
    a_pred, b_pred = a @ q, np.linalg.solve(q, b)
    np.testing.assert_allclose(a_pred @ b_pred, a @ b, atol=1e-8)  # same total W
    out = subconnectivity_metrics(a, b, a_pred, b_pred, G)
    assert out["correlation"] < 0.7
    assert out["r2"] < 0.5


# ----------------------------------------------------------------------------------------------
# observation space
# ----------------------------------------------------------------------------------------------


def test_reconstruction_r2_matches_sklearn_and_ignores_masked_entries() -> None:
    rng = np.random.default_rng(30)
    x = rng.standard_normal((200, 8)) * np.arange(1, 9)
    x_hat = x + rng.standard_normal((200, 8))
    assert reconstruction_r2(x, x_hat) == pytest.approx(
        r2_score(x, x_hat, multioutput="variance_weighted")
    )
    mask = rng.random(x.shape) < 0.7
    value = reconstruction_r2(x, x_hat, mask)
    x_bad, x_hat_bad = x.copy(), x_hat.copy()
    x_bad[~mask] = np.nan
    x_hat_bad[~mask] = 1e6
    assert reconstruction_r2(x_bad, x_hat_bad, mask) == pytest.approx(value, rel=1e-12)
    assert reconstruction_r2(x, x_hat, np.ones_like(mask)) == pytest.approx(
        reconstruction_r2(x, x_hat)
    )
    # masking whole time steps is the same as dropping them
    rows = rng.random(200) < 0.5
    row_mask = np.repeat(rows[:, None], 8, axis=1)
    assert reconstruction_r2(x, x_hat, row_mask) == pytest.approx(
        r2_score(x[rows], x_hat[rows], multioutput="variance_weighted")
    )
    assert reconstruction_r2(x.reshape(4, 50, 8), x_hat.reshape(4, 50, 8)) == pytest.approx(
        reconstruction_r2(x, x_hat)
    )


def test_gaussian_log_likelihood_matches_scipy() -> None:
    rng = np.random.default_rng(31)
    x = rng.standard_normal((3, 40, 5))
    mean = x + 0.3 * rng.standard_normal(x.shape)
    std = rng.uniform(0.5, 2.0, 5)
    expected = stats.norm.logpdf(x, mean, std).sum() / 120
    assert gaussian_log_likelihood(x, mean, std) == pytest.approx(expected)
    full_std = rng.uniform(0.5, 2.0, x.shape)
    expected = stats.norm.logpdf(x, mean, full_std).sum() / 120
    assert gaussian_log_likelihood(x, mean, full_std) == pytest.approx(expected)


def test_poisson_log_likelihood_and_bits_per_spike() -> None:
    rng = np.random.default_rng(32)
    rate = rng.uniform(0.05, 3.0, (500, 6))
    counts = rng.poisson(rate)
    expected = stats.poisson.logpmf(counts, rate).sum() / 500
    assert poisson_log_likelihood(counts, rate) == pytest.approx(expected)
    null = np.broadcast_to(counts.mean(axis=0), counts.shape)
    assert bits_per_spike(counts, null) == pytest.approx(0.0, abs=1e-12)
    bps = bits_per_spike(counts, rate)
    ll_gain = (stats.poisson.logpmf(counts, rate) - stats.poisson.logpmf(counts, null)).sum()
    assert bps == pytest.approx(ll_gain / (counts.sum() * np.log(2)))
    assert bps > 0.1
    assert bits_per_spike(counts, rate, mean_rate=counts.mean(axis=0)) == pytest.approx(bps)
    # zero rate with zero count is fine (no NaN from 0 * log 0)
    assert np.isfinite(poisson_log_likelihood([[0.0, 1.0]], [[0.0, 1.0]]))


# ----------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------


def test_decoding_linear_behaviour() -> None:
    rng = np.random.default_rng(40)
    latents = rng.standard_normal((1000, 5))
    behaviour = latents @ rng.standard_normal((5, 2)) + 0.1 * rng.standard_normal((1000, 2))
    result = decoding_r2(latents, behaviour)
    assert result.r2 > 0.9
    assert np.all(result.r2_per_dim > 0.9)
    assert result.prediction.shape == behaviour.shape
    assert result.alpha in metrics.decoding._DEFAULT_ALPHAS
    assert result.fold_alphas.shape == (5,)


def test_decoding_independent_behaviour() -> None:
    rng = np.random.default_rng(41)
    result = decoding_r2(rng.standard_normal((1000, 5)), rng.standard_normal((1000, 2)))
    assert result.r2 < 0.1


def _trial_fingerprints(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of 20 interleaved trials: latents identify the trial, behaviour is a per-trial
    constant unrelated to the latents. Only a fold split that cuts trials can decode it."""
    n_trials, n_per, k = 20, 50, 30
    ids = np.arange(n_trials * n_per) % n_trials
    latents = rng.standard_normal((n_trials, k))[ids] + 0.05 * rng.standard_normal((len(ids), k))
    behaviour = rng.standard_normal((n_trials, 1))[ids] + 0.05 * rng.standard_normal((len(ids), 1))
    return latents, behaviour, ids


def test_decoding_trial_folds_do_not_leak() -> None:
    latents, behaviour, ids = _trial_fingerprints(np.random.default_rng(42))
    assert decoding_r2(latents, behaviour).r2 > 0.9  # time blocks cut trials: leak
    assert decoding_r2(latents, behaviour, trial_ids=ids).r2 < 0.1
    order = np.argsort(ids, kind="stable")  # trial axis of 3-D input defines the folds
    lat3, beh3 = latents[order].reshape(20, 50, -1), behaviour[order].reshape(20, 50, 1)
    result = decoding_r2(lat3, beh3)
    assert result.r2 < 0.1
    assert result.prediction.shape == beh3.shape


def test_behavior_decoding_drops_padding_and_keeps_trials_whole() -> None:
    rng = np.random.default_rng(45)
    n_trials, n_bins = 12, 30
    latents = rng.standard_normal((n_trials, n_bins, 4))
    hand = latents[..., :2] @ rng.standard_normal((2, 2)) + 0.1 * rng.standard_normal(
        (n_trials, n_bins, 2)
    )
    noise = rng.standard_normal((n_trials, n_bins, 1))
    latents[3, 20:] = np.nan  # a short trial: padding has no latents
    hand[5, :4] = np.nan  # and some bins without behaviour
    scores = behavior_decoding_r2(latents, {"hand": hand, "noise": noise}, seed=3)
    keep = np.isfinite(latents).all(axis=-1).ravel()
    ids = np.repeat(np.arange(n_trials), n_bins)[keep]
    expected = decoding_r2(
        latents.reshape(-1, 4)[keep], hand.reshape(-1, 2)[keep], trial_ids=ids, seed=3
    )
    assert scores["hand"] == expected.r2 and scores["hand"] > 0.9
    assert scores["noise"] < 0.1
    # three trials: three folds; two trials leave no inner cross-validation: left out
    three = behavior_decoding_r2(latents[:3], {"hand": hand[:3]})
    assert set(three) == {"hand"} and three["hand"] > 0.8
    assert behavior_decoding_r2(latents[:2], {"hand": hand[:2]}) == {}
    with pytest.raises(ValueError, match="behavior 'hand' has shape"):
        behavior_decoding_r2(latents, {"hand": hand[:, :10]})


def test_fold_labels_keep_trials_whole_and_time_blocks_contiguous() -> None:
    groups = np.random.default_rng(43).integers(0, 17, 500)
    folds = metrics.decoding._fold_labels(500, groups, 5, seed=0)
    for trial in np.unique(groups):
        assert len(np.unique(folds[groups == trial])) == 1
    assert set(np.unique(folds)) == set(range(5))
    blocks = metrics.decoding._fold_labels(103, None, 5, seed=0)
    assert np.all(np.diff(blocks) >= 0) and set(np.unique(blocks)) == set(range(5))


def test_decoding_nan_behaviour_rows() -> None:
    rng = np.random.default_rng(44)
    latents = rng.standard_normal((800, 4))
    behaviour = latents @ rng.standard_normal((4, 2)) + 0.1 * rng.standard_normal((800, 2))
    missing = rng.random(800) < 0.15
    behaviour[missing, 0] = np.nan
    result = decoding_r2(latents, behaviour)
    assert result.r2 > 0.9
    assert np.all(np.isfinite(result.prediction))  # predicted also where unobserved
    # the fit ignores NaN rows: corrupting the other dim of those rows changes nothing
    corrupted = behaviour.copy()
    corrupted[missing, 1] = 1e6
    assert decoding_r2(latents, corrupted).r2 == pytest.approx(result.r2, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------

_Z = np.random.default_rng(50).standard_normal((100, 6))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: partial_correlation(_Z[:, 0], 2), r"shape \(T, K\) or \(n_trials, T, K\)"),
        (lambda: partial_correlation(_Z, 4), "positive divisor of the number of latent dims K=6"),
        (lambda: partial_correlation(np.where(_Z > 2, np.nan, _Z), 2), "z contains NaN"),
        (lambda: partial_correlation(_Z, 2, method="knn"), "method must be 'kde' or 'gaussian'"),
        (lambda: partial_correlation(_Z, 2, bandwidth=-1.0), "bandwidth must be positive"),
        (lambda: gaussian_partial_correlation(np.ones((2, 3)), 1), "square"),
        (lambda: gaussian_partial_correlation(np.zeros((2, 2)), 2), "positive definite"),
        (lambda: group_latent_r2(_Z, _Z[:50], 2), "share their time"),
        (lambda: group_latent_r2(_Z, _Z, 2, 5), "n_groups_pred=5"),
        (lambda: group_latent_r2(_Z, _Z, 2, train_idx=[0, 200]), "outside"),
        (lambda: component_latent_r2(_Z, _Z, train_idx=np.arange(100)), "no rows"),
        (lambda: connectivity_metrics(np.eye(3), np.eye(4)), "same shape"),
        (
            lambda: subconnectivity_metrics(_Z, _Z, _Z, _Z.T, 2),
            r"a_true must have shape \(N, K\) and b_true shape \(K, N\)",
        ),
        (
            lambda: subconnectivity_metrics(_Z, _Z.T, _Z, _Z.T, 2, assignment=[0, 5]),
            "assignment must be 2 integers",
        ),
        (lambda: reconstruction_r2(_Z, _Z, mask=np.ones((100, 6))), "boolean"),
        (lambda: reconstruction_r2(_Z, np.zeros((100, 5))), "same shape"),
        (lambda: gaussian_log_likelihood(_Z, _Z, -np.ones(6)), "std must be positive"),
        (lambda: gaussian_log_likelihood(_Z, _Z, np.ones(5)), "std"),
        (lambda: poisson_log_likelihood(-np.ones((3, 2)), np.ones((3, 2))), "non-negative"),
        (lambda: bits_per_spike(np.zeros((3, 2)), np.ones((3, 2))), "no spikes"),
        (lambda: decoding_r2(_Z, _Z[:, :2], n_folds=1), "n_folds must be an integer >= 2"),
        (lambda: decoding_r2(_Z, _Z[:, :2], trial_ids=np.arange(100) % 3), "at least 5 trials"),
        (lambda: decoding_r2(_Z.reshape(10, 10, 6), _Z.reshape(10, 10, 6), trial_ids=[0]), "3-D"),
        (lambda: decoding_r2(np.where(_Z > 2, np.nan, _Z), _Z), "latents contains NaN"),
        (lambda: decoding_r2(_Z, _Z, alphas=[0.0, 1.0]), "alphas must be"),
    ],
)
def test_bad_inputs_raise_informative_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
