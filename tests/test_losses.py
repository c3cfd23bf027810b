"""The loss terms: partial-correlation estimator, likelihoods, KL, block-diagonal penalty."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from nwb_facrnn.metrics import gaussian_partial_correlation
from nwb_facrnn.model.losses import (
    block_offdiag_penalty,
    gaussian_nll,
    kl_to_standard_normal,
    partial_correlation,
    poisson_nll,
)

N_SAMPLES, K = 2000, 6
SIGMA = N_SAMPLES ** (-1 / (K + 4))  # the encoder std FacRNN uses for this dataset size


def _minibatch_pc(rho: float, n_groups: int = 2, batch: int = 256, seed: int = 0) -> float:
    """Average minibatch PC estimate of the aggregated posterior of Gaussian means."""
    rng = np.random.default_rng(seed)
    cov = _cov(rho)
    mu = rng.multivariate_normal(np.zeros(K), cov, size=N_SAMPLES)
    z = mu + SIGMA * rng.normal(size=mu.shape)
    zt, mt = (torch.tensor(a[None], dtype=torch.float32) for a in (z, mu))
    est = [
        partial_correlation(zt[:, i : i + batch], mt[:, i : i + batch], SIGMA, n_groups, N_SAMPLES)
        for i in range(0, N_SAMPLES, batch)
    ]
    return float(torch.cat(est).mean())


def _cov(rho: float) -> np.ndarray:
    """Two 3-D groups, each dim of group 0 correlated rho with its partner in group 1."""
    cov = np.eye(K)
    cov[:3, 3:] = cov[3:, :3] = rho * np.eye(3)
    return cov


def test_pc_near_zero_for_independent_groups():
    assert abs(_minibatch_pc(0.0)) < 0.05


def test_pc_large_for_correlated_groups():
    assert _minibatch_pc(0.8) > 0.6
    assert _minibatch_pc(0.8) > _minibatch_pc(0.3) + 0.4


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, 0.8])
def test_pc_tracks_closed_form_gaussian_value(rho):
    # the aggregated posterior of N(0, S) means with encoder noise sigma is ~ N(0, S + sigma^2 I)
    expected = gaussian_partial_correlation(_cov(rho) + SIGMA**2 * np.eye(K), 2)
    assert _minibatch_pc(rho) == pytest.approx(expected, abs=0.08)


def test_pc_with_one_dim_per_group_is_total_correlation_and_larger():
    # within-group dependence counts for the total correlation but not the partial one
    rng = np.random.default_rng(1)
    cov = np.eye(K)
    cov[0, 1] = cov[1, 0] = 0.8
    mu = rng.multivariate_normal(np.zeros(K), cov, size=512)
    z = mu + SIGMA * rng.normal(size=mu.shape)
    zt, mt = (torch.tensor(a[None], dtype=torch.float32) for a in (z, mu))
    pc = partial_correlation(zt, mt, SIGMA, 2, 512).item()
    tc = partial_correlation(zt, mt, SIGMA, K, 512).item()
    assert tc > pc + 0.3


def test_pc_is_batched_over_restarts_and_differentiable():
    rng = np.random.default_rng(2)
    mu = torch.tensor(rng.normal(size=(3, 64, K)), dtype=torch.float32, requires_grad=True)
    z = mu + SIGMA * torch.randn(3, 64, K, generator=torch.Generator().manual_seed(0))
    pc = partial_correlation(z, mu, SIGMA, 2, 1000)
    assert pc.shape == (3,)
    single = partial_correlation(z[1:2], mu[1:2], SIGMA, 2, 1000)
    assert pc[1].item() == pytest.approx(single.item(), abs=1e-5)
    pc.sum().backward()
    assert torch.isfinite(mu.grad).all() and mu.grad.abs().sum() > 0


def test_gaussian_nll_matches_scipy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 4))
    mean = rng.normal(size=(1, 5, 4))
    log_std = rng.normal(size=(1, 4)) * 0.3
    got = gaussian_nll(*(torch.tensor(a) for a in (x, mean, log_std)))
    want = -stats.norm.logpdf(x, mean[0], np.exp(log_std[0])).sum(-1)
    np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-10)


def test_poisson_nll_matches_scipy():
    rng = np.random.default_rng(4)
    x = rng.poisson(2.0, size=(6, 3)).astype(float)
    rate = rng.uniform(0.5, 4.0, size=(1, 6, 3))
    got = poisson_nll(torch.tensor(x), torch.tensor(rate))
    want = -stats.poisson.logpmf(x, rate[0]).sum(-1)
    np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-6)


def test_kl_matches_closed_form():
    mu = torch.tensor([[[1.0, -2.0]]])
    sigma = 0.5
    want = sum(0.5 * (m**2 + sigma**2 - 1 - 2 * math.log(sigma)) for m in (1.0, -2.0))
    assert kl_to_standard_normal(mu, sigma).item() == pytest.approx(want)


def test_block_offdiag_penalty_counts_only_cross_group_entries():
    b = torch.eye(4)[None]
    a = torch.eye(4)[None].clone()
    assert block_offdiag_penalty(b, a, 2).item() == 0.0  # J = I is block diagonal
    a[0, 0, 3] = 2.0  # J[0, 3] links group 0 to group 1
    a[0, 1, 0] = 5.0  # J[1, 0] stays inside group 0
    # 8 off-block entries, one of them equal to 2
    assert block_offdiag_penalty(b, a, 2).item() == pytest.approx(4.0 / 8)
