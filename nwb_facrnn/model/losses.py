"""Loss terms of the FacRNN objective.

All functions are batched over ``R`` independent model copies (the parallel
restarts of :class:`~nwb_facrnn.model.FacRNN`): tensors carry a leading
restart axis and each function returns one value per copy, shape (R,).

The objective per sample is::

    NLL(x_t | z_t) + KL(q(z_t | x_{t-1}) || N(0, I)) + beta * PC + alpha * BD
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_nll(
    x: torch.Tensor,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative log-likelihood of ``x`` under independent Gaussians.

    Parameters
    ----------
    x : torch.Tensor, shape (M, N)
    mean : torch.Tensor, shape (R, M, N)
    log_std : torch.Tensor, shape (R, N)
        Per-unit log standard deviation.
    weight : torch.Tensor, shape (M, N), optional
        1 for observed values, 0 for unobserved ones (left out of the sum).

    Returns
    -------
    torch.Tensor, shape (R, M)
        Sum over (observed) units, in nats.
    """
    resid = (x - mean) * torch.exp(-log_std)[:, None, :]
    nll = 0.5 * resid.pow(2) + log_std[:, None, :] + 0.5 * LOG_2PI
    return (nll if weight is None else nll * weight).sum(-1)


def poisson_nll(
    x: torch.Tensor, rate: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Negative log-likelihood of counts ``x`` (M, N) under Poisson ``rate`` (R, M, N).

    Includes the ``log(x!)`` term so values are true log-likelihoods; returns
    the sum over units, shape (R, M).  ``weight`` (M, N), optional, is 1 for
    observed and 0 for unobserved values.
    """
    nll = rate - x * torch.log(rate + eps) + torch.lgamma(x + 1.0)
    return (nll if weight is None else nll * weight).sum(-1)


def kl_to_standard_normal(mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """KL(N(mu, sigma^2 I) || N(0, I)) for means ``mu`` (R, M, K); returns (R, M)."""
    k = mu.shape[-1]
    const = k * (sigma**2 - 1.0 - 2.0 * math.log(sigma))
    return 0.5 * (mu.pow(2).sum(-1) + const)


def partial_correlation(
    z: torch.Tensor,
    mu: torch.Tensor,
    sigma: float,
    n_groups: int,
    dataset_size: int,
    *,
    offset: int = 0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Minibatch estimate of the partial correlation of the aggregated posterior.

    ``PC = E_q(z)[log q(z) - sum_g log q(z_g)]`` where
    ``q(z) = 1/n sum_j N(z; mu_j, sigma^2 I)`` over the ``n = dataset_size``
    training samples.  As beta-TCVAE does for the total correlation, the
    densities at each sample ``z_i`` of the minibatch are estimated from the
    minibatch by minibatch-weighted sampling: the sample's own component gets
    weight ``1/n`` and the ``M - 1`` others share the remaining mass
    ``(n - 1)/n`` (exact when the minibatch is the whole dataset).  With
    ``n_groups = K`` this is the total correlation.

    The query samples ``z`` may be a contiguous part of the minibatch whose
    means ``mu`` are all given: ``z[:, i]`` is minibatch sample ``offset + i``
    (its own component is ``mu[:, offset + i]``).  Data-parallel training
    evaluates each process's samples against the gathered means of the whole
    minibatch this way; the per-sample values do not depend on how the
    minibatch is split.

    Parameters
    ----------
    z : torch.Tensor, shape (R, m, K)
        Encoder samples of minibatch samples ``offset .. offset + m - 1``
        (``m = M``, ``offset = 0``: the whole minibatch).
    mu : torch.Tensor, shape (R, M, K)
        Encoder means of the whole minibatch (the mixture components).
    sigma : float
        Encoder standard deviation (shared, isotropic).
    n_groups : int
        ``G``; the ``K`` dims form ``G`` contiguous groups of ``K / G``.
    dataset_size : int
        Number of training samples ``n``.
    offset : int
        Minibatch index of the first query sample, ``0 <= offset <= M - m``.
    reduction : {"mean", "sum", "none"}
        Mean or sum over the ``m`` query samples, or the per-sample values.

    Returns
    -------
    torch.Tensor, shape (R,), or (R, m) with ``reduction="none"``
        Estimated partial correlation in nats.
    """
    r, m, k = z.shape
    m_ref = mu.shape[1]
    if not 0 <= offset <= m_ref - m:
        raise ValueError(f"query samples {offset}..{offset + m} outside the {m_ref} means")
    h = k // n_groups
    # log N(z_i; mu_j, sigma^2) = -|z_i|^2/2s^2 + (z_i . mu_j - |mu_j|^2/2) / s^2 + const.  The
    # |z_i|^2 and constant terms are the same for the joint and the product of the groups, so
    # they cancel in PC and only the cross terms are formed: one batched matmul per group.
    inv_var = 1.0 / sigma**2
    zg = z.reshape(r, m, n_groups, h).transpose(1, 2)  # (R, G, m, H)
    mg = mu.reshape(r, m_ref, n_groups, h).transpose(1, 2)  # (R, G, M, H)
    half_sq = (-0.5 * inv_var) * mg.pow(2).sum(-1).unsqueeze(-2)  # (R, G, 1, M_j)
    cross = torch.baddbmm(
        half_sq.reshape(r * n_groups, 1, m_ref),
        zg.reshape(r * n_groups, m, h),
        mg.reshape(r * n_groups, m_ref, h).mT,
        alpha=inv_var,
    ).reshape(r, n_groups, m, m_ref)  # (R, G, m_i, M_j)
    joint = cross.sum(1)  # (R, m_i, M_j)
    log_w = _mws_log_weights(m_ref, dataset_size, z.device, z.dtype, rows=(offset, m))
    log_q_joint = torch.logsumexp(joint + log_w, dim=-1)  # (R, m)
    log_q_groups = torch.logsumexp(cross + log_w, dim=-1)  # (R, G, m)
    per_sample = log_q_joint - log_q_groups.sum(1)  # (R, m)
    if reduction == "mean":
        return per_sample.mean(-1)
    if reduction == "sum":
        return per_sample.sum(-1)
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _mws_log_weights(
    m: int,
    n: int,
    device: torch.device,
    dtype: torch.dtype,
    rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Log mixture weights of minibatch-weighted sampling, shape (rows, M).

    ``m`` is the minibatch size ``M``; ``rows = (offset, count)`` keeps the rows of
    query samples ``offset .. offset + count - 1`` (default: all ``M``), whose own
    component sits at column ``offset + i``.
    """
    n = max(n, m)
    own = -math.log(n)
    other = math.log(n - 1) - math.log(n) - math.log(m - 1) if m > 1 else -math.inf
    offset, count = (0, m) if rows is None else rows
    w = torch.full((count, m), other, device=device, dtype=dtype)
    i = torch.arange(count, device=device)
    w[i, i + offset] = own
    return w


def block_offdiag_penalty(
    input_loadings: torch.Tensor, output_loadings: torch.Tensor, n_groups: int
) -> torch.Tensor:
    """Mean square of the off-block-diagonal entries of ``J = B A`` (bdRNN).

    Parameters
    ----------
    input_loadings : torch.Tensor, shape (R, K, N)
        ``B``.
    output_loadings : torch.Tensor, shape (R, N, K)
        ``A``.

    Returns
    -------
    torch.Tensor, shape (R,)
    """
    j = input_loadings @ output_loadings  # (R, K, K)
    mask = offdiag_block_mask(j.shape[-1], n_groups, j.device)
    if not mask.any():
        return j.new_zeros(j.shape[0])
    return j[:, mask].pow(2).mean(-1)


def offdiag_block_mask(k: int, n_groups: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean (K, K) mask of entries linking two different groups."""
    g = torch.arange(k, device=device) // (k // n_groups)
    return g[:, None] != g[None, :]


def softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    """Inverse of softplus for positive ``y``."""
    return y + torch.log(-torch.expm1(-y))


__all__ = [
    "block_offdiag_penalty",
    "gaussian_nll",
    "kl_to_standard_normal",
    "offdiag_block_mask",
    "partial_correlation",
    "poisson_nll",
    "softplus_inverse",
]
