"""A fitted FacRNN as a generative model: one-step log-likelihood and simulated activity.

Every function works on a one-copy :class:`~.modules.LowRankRNNVAE` (the kept restart)
whose latent noise has the std ``latent_std`` (``sigma_q``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import OptionError
from .data import Transitions
from .losses import gaussian_nll, poisson_nll
from .modules import LowRankRNNVAE


@torch.no_grad()
def log_likelihood(
    module: LowRankRNNVAE,
    data: Transitions,
    latent_std: float,
    n_samples: int,
    seed: int,
    identity_output: bool,
) -> float:
    """Mean ``log p(x_t | x_{t-1})`` over the samples of ``data`` (nats per step).

    In closed form for a linear Gaussian decoder without an output activation
    (``identity_output``) and no observation weights, else by Monte Carlo
    (:func:`mc_log_likelihood`).
    """
    m = module
    closed = (
        data.weight is None
        and m.observation == "gaussian"
        and m.decoder_kind == "linear"
        and identity_output
    )
    if not closed:  # block by block (one block for all but long recordings)
        total = sum(
            mc_log_likelihood(m, m.encode(b.prev), b, latent_std, n_samples, seed) * len(b)
            for b in data.blocks()
        )
        return total / len(data)
    scaled_a = m.output_affine()[1][:, None] * m.A[0]  # A in the data's units
    noise_var = torch.exp(2 * m.obs_log_std()[0])
    cov = torch.diag(noise_var) + latent_std**2 * (scaled_a @ scaled_a.T)
    dist = torch.distributions.MultivariateNormal(
        torch.zeros(cov.shape[0], dtype=torch.float64, device=cov.device),
        covariance_matrix=cov.double(),
    )
    total = 0.0
    for block in data.blocks():  # block by block: no copy of the data
        mean = m.decode(m.encode(block.prev), block.inputs)[0]
        total += float(dist.log_prob((block.curr - mean).double()).sum())
    return total / len(data)


@torch.no_grad()
def mc_log_likelihood(
    module: LowRankRNNVAE,
    mu: torch.Tensor,
    data: Transitions,
    latent_std: float,
    n_samples: int,
    seed: int,
) -> float:
    """Monte Carlo ``log p(x_t | x_{t-1})`` averaged over samples (nats per step).

    ``mu`` (1, M, K) are the encoder means of ``data``; ``n_samples`` latent draws per
    sample, from a generator seeded with ``seed``.
    """
    m = module
    gen = torch.Generator(device=mu.device).manual_seed(seed)
    total = 0.0
    for idx in torch.split(torch.arange(mu.shape[1], device=mu.device), 512):
        mu_b = mu[0, idx]
        eps = torch.randn((n_samples, *mu_b.shape), generator=gen, device=mu.device, dtype=mu.dtype)
        inputs = None if data.inputs is None else data.inputs[idx]
        out = m.decode(mu_b + latent_std * eps, inputs)  # (S, M, N)
        w = None if data.weight is None else data.weight[idx]
        if m.observation == "poisson":
            ll = -poisson_nll(data.curr[idx], out, w)
        else:
            ll = -gaussian_nll(data.curr[idx], out, m.obs_log_std(), w)
        total += float((torch.logsumexp(ll, 0) - math.log(n_samples)).sum())
    return total / mu.shape[1]


def simulation_inputs(
    x0: object, n_steps: object, inputs: object, n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``x0`` (N,) and inputs (n_steps, N), float32, of :func:`simulate`
    (zeros when ``inputs`` is None); OptionError when unusable."""
    x_prev = np.asarray(x0, dtype=np.float32)
    n = n_features
    if x_prev.shape != (n,) or not np.isfinite(x_prev).all():
        raise OptionError(f"x0 must be a finite vector of shape ({n},), got {x_prev.shape}")
    if not isinstance(n_steps, int | np.integer) or n_steps < 1:
        raise OptionError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    u = np.zeros((n_steps, n), np.float32) if inputs is None else np.asarray(inputs, np.float32)
    if u.shape != (n_steps, n):
        raise OptionError(f"inputs must have shape (n_steps, N) = {(n_steps, n)}, got {u.shape}")
    return x_prev, u


@torch.no_grad()
def simulate(
    module: LowRankRNNVAE,
    x0: np.ndarray,
    u: np.ndarray,
    smoothing: float | None,
    latent_std: float,
    noise: bool,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the RNN forward from ``x0`` (N,) float32 for ``len(u)`` steps of input ``u``.

    Returns the activity (n_steps, N) and the latents (n_steps, K); see
    :meth:`FacRNN.simulate <nwb_facrnn.FacRNN.simulate>`.
    """
    m = module
    dev = next(m.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    lam = 1.0 - math.exp(-1.0 / smoothing) if smoothing else 1.0
    state = torch.as_tensor(x0, device=dev)[None]
    u_t = torch.as_tensor(u, device=dev)
    xs, zs = [], []
    for t in range(len(u)):
        z = m.encode(state)  # (1, 1, K)
        if noise:
            z = z + latent_std * torch.randn(z.shape, generator=gen, device=dev)
        out = m.decode(z, u_t[t : t + 1])[0]
        if noise and m.observation == "poisson":
            out = torch.poisson(out, generator=gen)
        elif noise:
            noise_std = torch.exp(m.obs_log_std())
            out = out + noise_std * torch.randn(out.shape, generator=gen, device=dev)
        state = (1.0 - lam) * state + lam * out
        xs.append(out[0])
        zs.append(z[0, 0])
    return torch.stack(xs).cpu().numpy(), torch.stack(zs).cpu().numpy()
