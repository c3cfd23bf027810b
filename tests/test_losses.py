"""The loss terms: partial-correlation estimator, likelihoods, KL, block-diagonal penalty."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from nwb_facrnn.metrics import gaussian_partial_correlation
from nwb_facrnn.model.data import Transitions
from nwb_facrnn.model.losses import (
    block_offdiag_penalty,
    gaussian_nll,
    kl_to_standard_normal,
    linear_gaussian_nll,
    partial_correlation,
    poisson_nll,
)
from nwb_facrnn.model.modules import LowRankRNNVAE, batched_linear
from nwb_facrnn.model.training import Objective

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


# ------------------------------------------------------------------ fast paths against direct forms
def _reference_pc(z, mu, sigma, n_groups, n, offset=0):
    """Per-sample PC (R, m) straight from the definition: log-densities of every group and
    of the joint, minibatch-weighted-sampling weights, torch.logsumexp."""
    m, k = z.shape[1:]
    big_m = mu.shape[1]
    other = math.log(n - 1) - math.log(n) - math.log(big_m - 1)
    log_w = torch.full((m, big_m), other, dtype=z.dtype)
    log_w[torch.arange(m), torch.arange(m) + offset] = -math.log(n)

    def log_q(dims):
        d = z[:, :, None, dims] - mu[:, None, :, dims]  # (R, m, M, dims)
        return torch.logsumexp(-0.5 * d.pow(2).sum(-1) / sigma**2 + log_w, -1)

    h = k // n_groups
    groups = sum(log_q(slice(g * h, (g + 1) * h)) for g in range(n_groups))
    # the -|z_i|^2 / 2 sigma^2 terms differ between the joint and the groups only by 0
    return log_q(slice(None)) - groups


@pytest.mark.parametrize("n_groups", [1, 2, 3, 6])
def test_pc_equals_the_definition_in_value_and_gradient(n_groups):
    gen = torch.Generator().manual_seed(5)
    mu = torch.randn(3, 24, 6, generator=gen, dtype=torch.float64)
    z = mu + 0.3 * torch.randn(mu.shape, generator=gen, dtype=torch.float64)
    for offset, rows in ((0, slice(None)), (7, slice(7, 17))):
        zq = z[:, rows].clone().requires_grad_()
        mq = mu.clone().requires_grad_()
        got = partial_correlation(zq, mq, 0.3, n_groups, 5000, offset=offset, reduction="none")
        zr, mr = zq.detach().clone().requires_grad_(), mu.clone().requires_grad_()
        want = _reference_pc(zr, mr, 0.3, n_groups, 5000, offset=offset)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
        weights = torch.randn(got.shape, generator=gen, dtype=torch.float64)
        (got * weights).sum().backward()
        (want * weights).sum().backward()
        torch.testing.assert_close(zq.grad, zr.grad, rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(mq.grad, mr.grad, rtol=1e-8, atol=1e-9)


def test_pc_gradcheck():
    gen = torch.Generator().manual_seed(6)
    mu = torch.randn(2, 7, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    z = mu.detach() + 0.5 * torch.randn(2, 7, 4, generator=gen, dtype=torch.float64)
    z.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z, mu: partial_correlation(z[:, 1:5], mu, 0.5, 2, 50, offset=1, reduction="none"),
        (z, mu),
    )


def test_pc_is_exact_and_finite_when_components_are_far_apart():
    # sigma small against the spread of the means: most log densities lie hundreds of nats
    # below each row's largest (exp's underflow range), in float32 as a fit meets them
    gen = torch.Generator().manual_seed(7)
    mu = 1.5 * torch.randn(2, 128, 6, generator=gen)
    z = mu + 0.1 * torch.randn(mu.shape, generator=gen)
    z.requires_grad_()
    got = partial_correlation(z, mu, 0.1, 2, 200_000, reduction="none")
    want = _reference_pc(z.detach().double(), mu.double(), 0.1, 2, 200_000)
    # how far below its row's largest the median log density is
    d = z.detach().double()[:, :, None] - mu.double()[:, None]
    log_dens = -0.5 * d.pow(2).sum(-1) / 0.1**2
    gaps = (log_dens.amax(-1, keepdim=True) - log_dens).median()
    assert gaps > 200
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-3)
    got.sum().backward()
    assert torch.isfinite(z.grad).all()


def _decoder_case(seed, standardized, with_inputs, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    r, m, n, k = 3, 64, 40, 6
    x = 2.0 + torch.randn(m, n, generator=gen, dtype=dtype)  # not centred: a fit's raw data
    u = 0.5 * torch.randn(m, n, generator=gen, dtype=dtype) if with_inputs else None
    offset = torch.randn(n, generator=gen, dtype=dtype) if standardized else None
    scale = torch.rand(n, generator=gen, dtype=dtype) + 0.5 if standardized else None
    z = torch.randn(r, m, k, generator=gen, dtype=dtype).requires_grad_()
    A = (0.5 * torch.randn(r, n, k, generator=gen, dtype=dtype)).requires_grad_()
    a = (2.0 + 0.1 * torch.randn(r, n, generator=gen, dtype=dtype)).requires_grad_()
    log_std = (-1.0 + 0.3 * torch.randn(r, n, generator=gen, dtype=dtype)).requires_grad_()
    return x, u, offset, scale, (z, A, a, log_std)


def _direct_nll(x, u, offset, scale, z, A, a, log_std):
    drive = z @ A.mT + a[:, None]
    mean = drive if scale is None else scale * drive
    mean = mean if offset is None else mean + offset
    mean = mean if u is None else mean + u
    return gaussian_nll(x, mean, log_std if scale is None else log_std + torch.log(scale))


@pytest.mark.parametrize("standardized", [False, True])
@pytest.mark.parametrize("with_inputs", [False, True])
def test_linear_gaussian_nll_equals_the_direct_form(standardized, with_inputs):
    x, u, offset, scale, params = _decoder_case(8, standardized, with_inputs)
    # reference: the direct form in float64
    ref_params = [p.detach().double().requires_grad_() for p in params]
    as64 = lambda t: None if t is None else t.double()  # noqa: E731
    want = _direct_nll(x.double(), as64(u), as64(offset), as64(scale), *ref_params)
    weights = torch.rand(
        want.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    (want * weights).sum().backward()
    for name, fn in (
        ("fast", lambda *p: linear_gaussian_nll(x, *p, offset, scale, u)),
        ("direct", lambda *p: _direct_nll(x, u, offset, scale, *p)),
    ):
        for p in params:
            p.grad = None
        got = fn(*params)
        assert got.shape == want.shape and got.dtype == torch.float32
        (got * weights.float()).sum().backward()
        # float32 tolerance: the fast form is at least as accurate as the direct one
        torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=0, msg=name)
        for p, q in zip(params, ref_params, strict=True):
            err = (p.grad.double() - q.grad).abs().max() / q.grad.abs().max()
            assert err < 2e-5, (name, err)


def test_linear_gaussian_nll_gradcheck():
    x, u, offset, scale, params = _decoder_case(9, True, True, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda *p: linear_gaussian_nll(x, *p, offset, scale, u), tuple(params)
    )


def _module_and_batch(observation="gaussian", output_activation=None, masked=False):
    gen = torch.Generator().manual_seed(10)
    module = LowRankRNNVAE(
        2, 12, 4, observation=observation, output_activation=output_activation, seed=3
    )
    with torch.no_grad():
        module.a.normal_(generator=gen)
        if module.log_std is not None:
            module.log_std.normal_(std=0.3, generator=gen)
    module.set_standardization(torch.rand(12, generator=gen), torch.rand(12, generator=gen) + 0.5)
    x = torch.rand(32, 12, generator=gen) * 3
    weight = (torch.rand(32, 12, generator=gen) > 0.3).float() if masked else None
    return module, Transitions(x.roll(1, 0), x, torch.zeros_like(x), weight)


@pytest.mark.parametrize(
    "case",
    [
        {},
        {"masked": True},
        {"observation": "poisson"},
        {"output_activation": "softplus"},
    ],
)
@pytest.mark.parametrize("fast_from", [0, 1 << 30])  # the fast form always / never
def test_objective_reconstruction_matches_the_decoded_likelihood(case, fast_from, monkeypatch):
    monkeypatch.setattr(Objective, "FAST_NLL_MIN_ELEMENTS", fast_from)
    module, batch = _module_and_batch(**case)
    z = torch.randn(2, 32, 4, generator=torch.Generator().manual_seed(1))
    out = module.decode(z, batch.inputs)
    if module.observation == "poisson":
        want = poisson_nll(batch.curr, out, batch.weight)
    else:
        want = gaussian_nll(batch.curr, out, module.obs_log_std(), batch.weight)
    got = Objective.reconstruction(module, batch, z)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    # no inputs (None) is the same as zero inputs, on every path
    none = Transitions(batch.prev, batch.curr, None, batch.weight)
    torch.testing.assert_close(Objective.reconstruction(module, none, z), got)
    torch.testing.assert_close(module.decode(z, None), out)


@pytest.mark.parametrize("fast_from", [0, 1 << 30])
def test_objective_terms_accept_batches_without_inputs(fast_from, monkeypatch):
    monkeypatch.setattr(Objective, "FAST_NLL_MIN_ELEMENTS", fast_from)
    module, batch = _module_and_batch()
    objective = Objective(sigma=0.3, dataset_size=1000, pc_groups=2, bd_groups=2, beta=5.0)
    none = Transitions(batch.prev, batch.curr, None, None)
    got = objective.terms(module, none, torch.Generator().manual_seed(0))
    want = objective.terms(module, batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, want)
    got[0].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_objective_takes_the_fast_likelihood_for_a_large_default_model(monkeypatch):
    module, batch = _module_and_batch()
    z = torch.randn(2, 32, 4, generator=torch.Generator().manual_seed(1))
    calls = []

    def spy(*args):
        calls.append(args)
        return linear_gaussian_nll(*args)

    monkeypatch.setattr("nwb_facrnn.model.losses.linear_gaussian_nll", spy)
    Objective.reconstruction(module, batch, z)  # 2 x 32 x 12 means: the direct form
    assert not calls
    monkeypatch.setattr(Objective, "FAST_NLL_MIN_ELEMENTS", 2 * 32 * 12)
    Objective.reconstruction(module, batch, z)
    assert len(calls) == 1
    masked = Transitions(batch.prev, batch.curr, batch.inputs, torch.ones_like(batch.curr))
    Objective.reconstruction(module, masked, z)  # observation weights: the direct form
    assert len(calls) == 1


@pytest.mark.parametrize("shape", [(9, 5), (2, 9, 5), (4, 9, 5)])
def test_batched_linear_equals_matmul(shape):
    gen = torch.Generator().manual_seed(11)
    copies = 1 if shape == (4, 9, 5) else 2  # (S, M, in) broadcasts over one copy
    x = torch.randn(shape, generator=gen)
    w = torch.randn(copies, 3, 5, generator=gen)
    b = torch.randn(copies, 3, generator=gen)
    want = x @ w.mT + b.unsqueeze(-2)
    torch.testing.assert_close(batched_linear(x, w, b), want)
