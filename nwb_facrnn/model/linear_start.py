"""The closed-form linear start of FacRNN's restarts.

:func:`reduced_rank_regression` gives every restart the same linear starting point: the
rank-K ridge regression of ``x_t`` on ``phi(x_{t-1})``.  Small data is regressed on the
samples themselves (an exact SVD); long recordings and chunked data on float64 moments
accumulated block by block, so memory stays O(N^2) whatever the number of samples.
:func:`load_copy` writes such parameters into one copy of the batched model and
:func:`random_rotation` draws the rotations that make the restarts differ.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import Transitions
from .losses import softplus_inverse
from .modules import LowRankRNNVAE


@torch.no_grad()
def reduced_rank_regression(
    module: LowRankRNNVAE, data: Transitions, n_latents: int, ridge: float = 1e-3
) -> dict[str, np.ndarray]:
    """Closed-form linear start: the rank-K regression of ``x_t`` on ``phi(x_{t-1})``.

    The rank-K ridge least-squares connectivity gives the latent subspace; its
    principal projections are scaled to unit variance (the prior's scale).
    For Poisson counts the regression is made on the rates linearized around
    each unit's mean.  Everything is computed from float64 moments accumulated over
    blocks of samples (:meth:`Transitions.blocks`), so memory is O(N^2) whatever the
    number of samples, and chunked data is read block by block.

    Returns
    -------
    dict of numpy.ndarray (float64)
        ``A`` (N, K), ``B`` (K, N), ``a`` (N,), ``b`` (K,), ``log_std`` (N,).
    """
    if isinstance(data, Transitions) and len(data) * data.prev.shape[1] <= DENSE_RRR_ELEMENTS:
        return _dense_rrr(module, data, n_latents, ridge)
    out_offset, out_scale = module.output_affine()  # regress in the model's units
    out_offset, out_scale = out_offset.double(), out_scale.double()
    poisson = module.observation == "poisson"
    if poisson:  # the rates are linearized around each unit's mean count
        total = sum(block.curr.double().sum(0) for block in data.blocks())
        mean_rate = (total / len(data)).clamp_min(1e-3)
        a0 = softplus_inverse(mean_rate)
        gain = torch.sigmoid(a0)  # d softplus / d drive at a0

    def target(block: Transitions) -> torch.Tensor:
        y = block.curr.double() - out_offset
        if block.inputs is not None:
            y = y - block.inputs.double()
        y = y / out_scale
        return (y - mean_rate) / gain + a0 if poisson else y

    n = module.offset.shape[1]
    dev = module.offset.device
    s_phi, s_y = torch.zeros(n, dtype=torch.float64, device=dev), None
    s_pp = torch.zeros(n, n, dtype=torch.float64, device=dev)
    s_py, s_yy = torch.zeros_like(s_pp), None
    for block in data.blocks():
        phi = module.encoder_input(block.prev).double()
        y = target(block)
        s_phi += phi.sum(0)
        s_pp += phi.T @ phi
        s_py += phi.T @ y
        s_y = y.sum(0) if s_y is None else s_y + y.sum(0)
        yy = (y * y).sum(0)
        s_yy = yy if s_yy is None else s_yy + yy
    count = len(data)
    phi_mean, y_mean = s_phi / count, s_y / count
    # centred moments: sum (phi - mean)(...)^T = sum phi (...)^T - count * mean (...)^T
    c_pp = s_pp - count * torch.outer(phi_mean, phi_mean)
    c_py = s_py - count * torch.outer(phi_mean, y_mean)
    c_yy = s_yy - count * y_mean**2  # diagonal only
    gram = c_pp + ridge * count * torch.eye(n, dtype=torch.float64, device=dev)
    coef = torch.linalg.solve(gram, c_py)  # (N, N): y ~ phi @ coef
    # the rank-K principal axes of the fitted values phi_c @ coef: the top eigenvectors of
    # their Gram matrix (the right singular vectors of the fitted values)
    fitted_gram = coef.T @ c_pp @ coef
    evals, evecs = torch.linalg.eigh(0.5 * (fitted_gram + fitted_gram.T))
    v = evecs[:, -n_latents:].flip(-1)  # (N, K), by decreasing variance
    v = v * torch.where(v.sum(0) < 0, -1.0, 1.0)  # a sign convention: column sums >= 0
    dof = max(count - 1, 1)
    scale = (evals[-n_latents:].flip(-1).clamp_min(0) / dof).sqrt().clamp_min(1e-6)
    b_mat = (coef @ v / scale).T  # (K, N)
    # residual of the rank-K fit: y_c - phi_c @ m, m = coef v v^T; its per-unit variance
    m = coef @ v @ v.T
    resid_ss = c_yy - 2 * (m * c_py).sum(0) + (m * (c_pp @ m)).sum(0)
    out = {
        "A": v * scale,
        "B": b_mat,
        "a": y_mean,
        "b": -(b_mat @ phi_mean),  # zero-mean latents
        "log_std": torch.log((resid_ss.clamp_min(0) / dof).sqrt().clamp_min(1e-3)),
    }
    return {k: t.cpu().numpy() for k, t in out.items()}


#: Up to this many values (samples x units), :func:`reduced_rank_regression` works on the
#: samples themselves (exact SVD of the fitted values; a few float64 copies of the data, at
#: most ~32 MB each); beyond, on moments accumulated block by block.
DENSE_RRR_ELEMENTS = 1 << 22


def _dense_rrr(
    module: LowRankRNNVAE, data: Transitions, n_latents: int, ridge: float
) -> dict[str, np.ndarray]:
    """:func:`reduced_rank_regression` on the samples in memory (small data)."""
    phi = module.encoder_input(data.prev).double()
    out_offset, out_scale = module.output_affine()  # regress in the model's units
    drive = data.curr - out_offset
    if data.inputs is not None:
        drive = drive - data.inputs
    target = (drive / out_scale).double()
    if module.observation == "poisson":
        mean_rate = data.curr.double().mean(0).clamp_min(1e-3)
        a0 = softplus_inverse(mean_rate)
        gain = torch.sigmoid(a0)  # d softplus / d drive at a0
        target = (target - mean_rate) / gain + a0
    phi_mean, y_mean = phi.mean(0), target.mean(0)
    phi_c, y_c = phi - phi_mean, target - y_mean
    n = phi.shape[1]
    gram = phi_c.T @ phi_c + ridge * len(phi) * torch.eye(n, dtype=phi.dtype, device=phi.device)
    coef = torch.linalg.solve(gram, phi_c.T @ y_c)  # (N, N): y ~ phi @ coef
    fitted = phi_c @ coef
    v = torch.linalg.svd(fitted, full_matrices=False)[2][:n_latents].T  # (N, K)
    scale = (fitted @ v).std(0).clamp_min(1e-6)
    b_mat = (coef @ v / scale).T  # (K, N)
    resid = y_c - fitted @ v @ v.T
    out = {
        "A": v * scale,
        "B": b_mat,
        "a": y_mean,
        "b": -(b_mat @ phi_mean),  # zero-mean latents
        "log_std": torch.log(resid.std(0).clamp_min(1e-3)),
    }
    return {k: t.cpu().numpy() for k, t in out.items()}


@torch.no_grad()
def load_copy(module: LowRankRNNVAE, index: int, params: dict[str, np.ndarray]) -> None:
    """Write linear parameters (any of ``A, B, a, b, log_std``) into copy ``index``."""
    for name, value in params.items():
        p = getattr(module, name, None)
        if isinstance(p, torch.nn.Parameter):
            p[index] = torch.as_tensor(value, dtype=p.dtype, device=p.device)


def random_rotation(k: int, gen: torch.Generator) -> np.ndarray:
    """A uniformly random (K, K) orthogonal matrix."""
    q, r = torch.linalg.qr(torch.randn(k, k, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).numpy()
