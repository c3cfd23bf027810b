"""Loss terms of the FacRNN objective.

All functions are batched over ``R`` independent model copies (the parallel
restarts of :class:`~nwb_facrnn.model.FacRNN`): tensors carry a leading
restart axis and each function returns one value per copy, shape (R,).

The objective per sample is::

    NLL(x_t | z_t) + KL(q(z_t | x_{t-1}) || N(0, I)) + beta * PC + alpha * BD
"""

from __future__ import annotations

import functools
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


def linear_gaussian_nll(
    x: torch.Tensor,
    z: torch.Tensor,
    loadings: torch.Tensor,
    bias: torch.Tensor,
    log_std: torch.Tensor,
    offset: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    inputs: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`gaussian_nll` of a linear decoder, without forming any (R, M, N) tensor.

    The same value as ``gaussian_nll(x, offset + scale * (z @ A^T + a) + inputs,
    log_std + log(scale))`` (every value observed): with the model-space target
    ``y = (x - offset - inputs) / scale``, the drive ``d = z A^T + a`` and the precisions
    ``w = exp(-2 log_std)``, the sum over units of ``w (y - d)^2`` is::

        (y^2) . w  -  2 [z, 1] . (y @ (w * [A, a]))  +  [z, 1]^T ([A, a]^T W [A, a]) [z, 1]

    i.e. matmuls of size ``M x N x (K + 1)`` and (K + 1)-square Gram matrices.  The three
    terms cancel to the residual, so they are summed in float64 after centring ``y`` on
    the copies' mean bias (a constant shift of ``y`` and ``a``, which changes no value):
    their rounding then stays far below float32's on the residual itself.

    Parameters
    ----------
    x : torch.Tensor, shape (M, N)
        Activity in the data's units.
    z : torch.Tensor, shape (R, M, K)
    loadings : torch.Tensor, shape (R, N, K)
        ``A``.
    bias : torch.Tensor, shape (R, N)
        ``a``.
    log_std : torch.Tensor, shape (R, N)
        Log noise std in the model's units (that in the data's units plus ``log(scale)``).
    offset, scale : torch.Tensor, shape (N,), optional
        The model-to-data affine map (0 and 1 when None).
    inputs : torch.Tensor, shape (M, N), optional
        External input, in the data's units (none when None).

    Returns
    -------
    torch.Tensor, shape (R, M)
        Sum over units, in nats, in the dtype of ``z``.
    """
    # y - c = (x - inputs - (offset + scale c)) / scale, centred on c = the copies' mean bias
    centre = bias.detach().mean(0)
    ref = centre if scale is None else centre * scale
    if offset is not None:
        ref = ref + offset
    y = (x if inputs is None else x - inputs) - ref
    if scale is not None:
        y = y.div_(scale)
    nll = _LinearGaussianNLL.apply(z, loadings, bias, log_std, y.to(torch.float64), centre)
    return nll if scale is None else nll + torch.log(scale).sum()


class _LinearGaussianNLL(torch.autograd.Function):
    """:func:`linear_gaussian_nll` of the centred target ``y`` (M, N), in float64 inside.

    With ``[z, 1]`` (R, M, K+1), ``[A, a - c]`` (R, N, K+1), ``W = diag(w)``,
    ``G = [A, a-c]^T W [A, a-c]`` and ``Y = y W [A, a-c]`` (R, M, K+1): the sum of squares is
    ``y^2 . w + [z, 1] . (U - Y)`` with ``U = [z, 1] G - Y``, and the backward pass is as
    small: ``d/dz = U``, ``d/d[A, a] = W ([A, a-c] P - Q)`` and
    ``d/dlog_std = sum g - w (g y^2 + [A, a-c] . ([A, a-c] P - 2 Q))``, with the
    gradient-weighted moments ``P = [z, 1]^T diag(g) [z, 1]`` and ``Q = y^T diag(g) [z, 1]``.
    """

    @staticmethod
    def forward(ctx, z, loadings, bias, log_std, y, centre):
        r, m, k = z.shape
        n = y.shape[1]
        f64 = y.dtype
        prec = log_std.to(f64).mul(-2.0).exp_()  # (R, N)
        a_aug = y.new_empty(r, n, k + 1)
        a_aug[..., :k] = loadings
        torch.sub(bias, centre, out=a_aug[..., k])
        wa = a_aug * prec.unsqueeze(-1)
        gram = a_aug.mT @ wa  # (R, K+1, K+1)
        y_wa = (y @ wa.transpose(0, 1).reshape(n, r * (k + 1))).view(m, r, k + 1).transpose(0, 1)
        y_sq = y * y
        z_aug = y.new_ones(r, m, k + 1)
        z_aug[..., :k] = z
        u = torch.baddbmm(y_wa, z_aug, gram, beta=-1.0)  # [z, 1] G - Y: (R, M, K+1)
        sq = torch.addmm((z_aug * (u - y_wa)).sum(-1), prec, y_sq.T)  # (R, M): sum_n w (y - d)^2
        norm = log_std.sum(-1, keepdim=True) + 0.5 * n * LOG_2PI
        ctx.save_for_backward(z_aug, u, a_aug, prec, y, y_sq)
        ctx.dtypes = (z.dtype, loadings.dtype, bias.dtype, log_std.dtype)
        return sq.mul_(0.5).to(z.dtype) + norm

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        z_aug, u, a_aug, prec, y, y_sq = ctx.saved_tensors
        z_t, a_t, b_t, s_t = ctx.dtypes
        r, m, k1 = z_aug.shape
        n = y.shape[1]
        g = grad.to(y.dtype)
        grad_z = grad_a = grad_b = grad_s = None
        if ctx.needs_input_grad[0]:
            grad_z = (u[..., :-1] * g.unsqueeze(-1)).to(z_t)
        if any(ctx.needs_input_grad[1:4]):
            zg = z_aug * g.unsqueeze(-1)
            moment = z_aug.mT @ zg  # P: (R, K+1, K+1)
            cross = (y.T @ zg.transpose(0, 1).reshape(m, r * k1)).view(n, r, k1).transpose(0, 1)
            t = torch.baddbmm(cross, a_aug, moment, beta=-1.0)  # [A, a-c] P - Q: (R, N, K+1)
            d_aug = t * prec.unsqueeze(-1)
            grad_a, grad_b = d_aug[..., :-1].to(a_t), d_aug[..., -1].to(b_t)
            if ctx.needs_input_grad[3]:
                resid = torch.addmm((a_aug * (t - cross)).sum(-1), g, y_sq)  # sum_m g (y - d)^2
                grad_s = (g.sum(-1, keepdim=True) - prec * resid).to(s_t)
        return grad_z, grad_a, grad_b, grad_s, None, None


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
    m, k = z.shape[1:]
    m_ref = mu.shape[1]
    if not 0 <= offset <= m_ref - m:
        raise ValueError(f"query samples {offset}..{offset + m} outside the {m_ref} means")
    own, other = _mws_log_weights(m_ref, dataset_size)
    masks = _slot_masks(k, n_groups, z.device, z.dtype)
    per_sample = _PartialCorrelation.apply(z, mu, masks, 1.0 / sigma**2, own, other, offset)
    if reduction == "mean":
        return per_sample.mean(-1)
    if reduction == "sum":
        return per_sample.sum(-1)
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


#: Exponents below a row's maximum that the log-sum-exp of :func:`partial_correlation` floors:
#: their terms are under ``e**-80`` of the largest (none of them moves a float32 or float64
#: sum), and the floor keeps ``exp`` off the underflow range, where it is some hundred times
#: slower on CPUs.
LSE_FLOOR = -80.0


class _PartialCorrelation(torch.autograd.Function):
    """Per-sample PC estimate (R, m) of :func:`partial_correlation`, with its own backward.

    ``log N(z_i; mu_j, sigma^2) = -|z_i|^2/2s^2 + (z_i . mu_j - |mu_j|^2/2) / s^2 + const``.
    The ``|z_i|^2`` and constant terms are the same for the joint and the product of the
    groups, so they cancel in PC and only the cross terms are formed: one batched matmul
    over the G groups (R*G, m, K/G) x (R*G, K/G, M), and the joint as their sum.  The
    mixture weights are ``other`` for every component but the sample's own, so ``other``
    moves every log-sum-exp by the same constant and only ``own - other`` is added, on the
    own components.  The G groups and the joint are S = G + 1 "slots" of one buffer
    (S, R, m, M), which the log-sum-exp turns into its exponentials in place; the backward
    pass needs only those, row-scaled, in two batched matmuls per slot.
    """

    @staticmethod
    def forward(ctx, z, mu, masks, inv_var, own, other, offset):
        r, m, k = z.shape
        m_ref, n_slots = mu.shape[1], masks.shape[0]
        g = n_slots - 1
        h = k // g
        zg = z.reshape(r, m, g, h).permute(2, 0, 1, 3).reshape(g * r, m, h)
        mg = mu.reshape(r, m_ref, g, h).permute(2, 0, 1, 3).reshape(g * r, m_ref, h)
        half_sq = (mg * mg).sum(-1, keepdim=True).mT.mul_(-0.5 * inv_var)  # (G*R, 1, M)
        e = z.new_empty(n_slots, r, m, m_ref)  # slots: the G groups, then the joint
        torch.baddbmm(half_sq, zg, mg.mT, alpha=inv_var, out=e[:g].view(g * r, m, m_ref))
        torch.sum(e[:g], 0, out=e[g])
        e = e.view(n_slots * r, m, m_ref)  # log densities, less ``other`` ...
        e.diagonal(offset, -2, -1).add_(own - other)  # sample i's own component is offset + i
        top = e.amax(-1, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        e.sub_(top).clamp_min_(LSE_FLOOR).exp_()  # ... then their exponentials, in place
        total = e.sum(-1, keepdim=True)
        log_q = (total.log() + top).view(n_slots, r, m)  # (S, R, m), less ``other``
        ctx.save_for_backward(e, total, z, mu, masks * inv_var)
        return (log_q[g] - log_q[:g].sum(0)).add_(other * (1 - g))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        e, total, z, mu, scaled = ctx.saved_tensors  # scaled: (S, K) slot masks / s^2
        r, m = grad.shape
        n_slots, k = scaled.shape
        # d per_sample / d log_q: -1 for every group, +1 for the joint; the softmax weights
        # of row i are e_ij / total_i, so the gradient of slot s's log densities is
        # coef_i * e_ij, and those are  z_s . mu_j / s^2 - |mu_sj|^2 / 2s^2  (z_s: z masked
        # to slot s's dims)
        sign = torch.ones(n_slots, 1, 1, dtype=grad.dtype, device=grad.device)
        sign[:-1] = -1.0
        coef = (grad * sign).view(n_slots, r, m, 1) / total.view(n_slots, r, m, 1)
        grad_z = grad_mu = None
        if ctx.needs_input_grad[0]:
            d_zs = (e.view(n_slots, r, m, -1) @ mu) * coef  # (S, R, m, K)
            grad_z = (d_zs * scaled[:, None, None, :]).sum(0)
        if ctx.needs_input_grad[1]:
            # [coef z_s / s^2, coef]^T e: transposed (S*R, K+1, M), e the contiguous operand
            lhs = torch.cat(
                [z * scaled[:, None, None, :], z.new_ones(()).expand(n_slots, r, m, 1)], -1
            )
            d_rhs = ((lhs * coef).view(n_slots * r, m, k + 1).mT @ e).view(n_slots, r, k + 1, -1)
            grad_mu = d_rhs[:, :, :k].sum(0).mT - mu * (d_rhs[:, :, k].permute(1, 2, 0) @ scaled)
        return grad_z, grad_mu, None, None, None, None, None


@functools.lru_cache(maxsize=32)
def _slot_masks(k: int, n_groups: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(G + 1, K): row g is 1 on the dims of group g, the last row is 1 everywhere."""
    with torch.inference_mode(False):  # cached: usable with and without autograd
        g = torch.arange(k, device=device) // (k // n_groups)
        groups = (g[None, :] == torch.arange(n_groups, device=device)[:, None]).to(dtype)
        return torch.cat([groups, torch.ones(1, k, device=device, dtype=dtype)])


def _mws_log_weights(m: int, n: int) -> tuple[float, float]:
    """Log mixture weights of minibatch-weighted sampling: ``(own, other)``.

    Of a minibatch of ``m`` samples from ``n``, a query sample's own component weighs
    ``1 / n`` and each of the ``m - 1`` others ``(n - 1) / (n (m - 1))``; ``other`` is
    0.0 when ``m = 1`` (no other component to weigh).
    """
    n = max(n, m)
    own = -math.log(n)
    other = math.log(n - 1) - math.log(n) - math.log(m - 1) if m > 1 else 0.0
    return own, other


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
    "linear_gaussian_nll",
    "offdiag_block_mask",
    "partial_correlation",
    "poisson_nll",
    "softplus_inverse",
]
