"""Initialisation and the training loop of FacRNN.

Training is a lean loop over device-resident tensors: the model is small, so
the per-step cost is dominated by framework overhead, and all restarts
(``n_init``) are trained at once as one batched model (see
:mod:`nwb_facrnn.model.modules`).  The loop only needs ``module``, an
optimiser and index tensors, so it can be wrapped by
``torch.nn.parallel.DistributedDataParallel`` for data-parallel training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import Transitions
from .losses import (
    block_offdiag_penalty,
    gaussian_nll,
    kl_to_standard_normal,
    partial_correlation,
    poisson_nll,
    softplus_inverse,
)
from .modules import LowRankRNNVAE

TERMS = ("total", "reconstruction", "kl", "pc", "bd")


@dataclass
class Objective:
    """Weights and constants of the FacRNN objective."""

    sigma: float  # encoder std sigma_q
    dataset_size: int  # n, for the minibatch-weighted PC estimate
    pc_groups: int  # groups of the PC penalty (K for the total-correlation variant)
    bd_groups: int  # groups of the block-diagonal penalty
    beta: float = 0.0
    alpha: float = 0.0

    def terms(
        self, module: LowRankRNNVAE, batch: Transitions, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Loss terms per copy, shape (5, R), in the order of :data:`TERMS`."""
        mu = module.encode(batch.prev)
        eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
        z = mu + self.sigma * eps
        out = module.decode(z, batch.inputs)
        if module.observation == "poisson":
            rec = poisson_nll(batch.curr, out, batch.weight).mean(-1)
        else:
            rec = gaussian_nll(batch.curr, out, module.log_std, batch.weight).mean(-1)
        kl = kl_to_standard_normal(mu, self.sigma).mean(-1)
        zero = rec.new_zeros(rec.shape)
        pc = (
            partial_correlation(z, mu, self.sigma, self.pc_groups, self.dataset_size)
            if self.beta > 0 and z.shape[1] > 1
            else zero
        )
        bd = block_offdiag_penalty(module.B, module.A, self.bd_groups) if self.alpha > 0 else zero
        total = rec + kl + self.beta * pc + self.alpha * bd
        return torch.stack([total, rec, kl, pc, bd])


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    history : numpy.ndarray, shape (n_epochs, 5, R)
        Per-epoch mean of each loss term (:data:`TERMS`) for every copy.
    val_history : numpy.ndarray or None, shape (n_epochs, R)
        Held-out objective per epoch when early stopping is on.
    final : numpy.ndarray, shape (5, R)
        Terms of the final model on the training (or validation) samples.
    n_epochs : int
    stopped_early : bool
    """

    history: np.ndarray
    val_history: np.ndarray | None
    final: np.ndarray
    n_epochs: int
    stopped_early: bool = False


@torch.no_grad()
def reduced_rank_regression(
    module: LowRankRNNVAE, data: Transitions, n_latents: int, ridge: float = 1e-3
) -> dict[str, np.ndarray]:
    """Closed-form linear start: the rank-K regression of ``x_t`` on ``phi(x_{t-1})``.

    The rank-K ridge least-squares connectivity gives the latent subspace; its
    principal projections are scaled to unit variance (the prior's scale).
    For Poisson counts the regression is made on the rates linearized around
    each unit's mean.

    Returns
    -------
    dict of numpy.ndarray (float64)
        ``A`` (N, K), ``B`` (K, N), ``a`` (N,), ``b`` (K,), ``log_std`` (N,).
    """
    phi = module.phi(data.prev).double()
    target = (data.curr - data.inputs).double()
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


@torch.no_grad()
def evaluate(
    module: LowRankRNNVAE, objective: Objective, data: Transitions, batch_size: int, seed: int
) -> np.ndarray:
    """Mean loss terms over ``data`` with fixed noise; (5, R)."""
    gen = torch.Generator(device=data.prev.device).manual_seed(seed)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    chunks = torch.tensor_split(
        perm.to(data.prev.device), max(1, math.ceil(len(data) / batch_size))
    )
    acc = sum(objective.terms(module, data.subset(i), gen) * len(i) for i in chunks)
    return (acc / len(data)).cpu().numpy()


def train(
    module: LowRankRNNVAE,
    objective: Objective,
    data: Transitions,
    *,
    max_epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    validation: Transitions | None = None,
    n_iter_no_change: int = 50,
    progress: bool = True,
    callback: Callable[[int, np.ndarray], None] | None = None,
) -> TrainResult:
    """Train every copy of ``module`` on ``data`` with Adam.

    Parameters
    ----------
    validation : Transitions, optional
        Held-out samples; when given, training stops once no copy's held-out
        objective has improved for ``n_iter_no_change`` epochs, and each copy
        is restored to its best held-out state.
    callback : callable, optional
        Called as ``callback(epoch, terms)`` with the epoch's (5, R) terms.
    """
    device = data.prev.device
    n = len(data)
    n_batches = max(1, math.ceil(n / batch_size))
    perm_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    opt = torch.optim.Adam(
        module.parameters(), lr=learning_rate, fused=device.type in ("cpu", "cuda")
    )
    # cosine decay to 1% of the initial rate: large early steps, a precise optimum at the end
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max_epochs, eta_min=learning_rate / 100)
    history, val_history = [], []
    best_val, best_state, since_best = None, None, 0
    stopped = False
    bar = tqdm(
        range(max_epochs), desc="FacRNN fit", unit="epoch", disable=not progress, leave=False
    )
    try:  # the bar is closed also when a callback stops the fit
        for epoch in bar:
            perm = torch.randperm(n, generator=perm_gen).to(device)
            acc = torch.zeros(len(TERMS), module.n_copies, device=device)
            for idx in torch.tensor_split(perm, n_batches):
                terms = objective.terms(module, data.subset(idx), noise_gen)
                opt.zero_grad(set_to_none=True)
                terms[0].sum().backward()
                opt.step()
                acc += terms.detach() * len(idx)
            sched.step()
            epoch_terms = (acc / n).cpu().numpy()
            history.append(epoch_terms)
            if callback is not None:
                callback(epoch, epoch_terms)
            if progress and (epoch % 10 == 0 or epoch == max_epochs - 1):
                best = int(np.argmin(epoch_terms[0]))
                bar.set_postfix({t: f"{epoch_terms[i, best]:.3g}" for i, t in enumerate(TERMS)})
            if validation is not None:
                val = evaluate(module, objective, validation, batch_size, seed)[0]
                val_history.append(val)
                if best_val is None:
                    best_val, best_state = val.copy(), _clone(module)
                    continue
                improved = val < best_val - 1e-4 * np.abs(best_val)
                if improved.any():
                    since_best = 0
                    _copy_rows(best_state, module, improved)
                    best_val = np.where(improved, val, best_val)
                else:
                    since_best += 1
                    if since_best >= n_iter_no_change:
                        stopped = True
                        break
    finally:
        bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    final_data = validation if validation is not None else data
    return TrainResult(
        history=np.stack(history),
        val_history=np.stack(val_history) if val_history else None,
        final=evaluate(module, objective, final_data, batch_size, seed),
        n_epochs=len(history),
        stopped_early=stopped,
    )


def _clone(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _copy_rows(state: dict[str, torch.Tensor], module: torch.nn.Module, rows: np.ndarray) -> None:
    idx = torch.as_tensor(np.flatnonzero(rows), device=next(module.parameters()).device)
    for k, v in module.state_dict().items():
        state[k][idx] = v.detach()[idx]
