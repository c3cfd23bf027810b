"""The paper's baselines as presets, and the post-hoc latent transforms they use.

=============  ==========================================================
preset         what it fits
=============  ==========================================================
lrRNN          low-rank RNN VAE, no independence penalty (beta = 0)
lrRNN+ICA      lrRNN, then FastICA on its latents (loadings transformed
               consistently) and components grouped by dependence
LINT           lrRNN, then the SVD factorization of its W:
               A = U_K S_K, B = V_K^T
bdRNN          block-diagonal penalty alpha * mean((B A)_offblock^2)
FacRNN-full    total-correlation penalty (every latent dim its own group),
               dims then grouped by dependence
FacRNN         partial-correlation penalty between G groups of rank H
=============  ==========================================================
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

PRESETS: dict[str, dict] = {
    "lrRNN": {"n_groups": 1, "beta": 0.0, "alpha": 0.0},
    "lrRNN+ICA": {"n_groups": 1, "beta": 0.0, "alpha": 0.0, "postprocess": "ica"},
    "LINT": {"n_groups": 1, "beta": 0.0, "alpha": 0.0, "postprocess": "svd"},
    "bdRNN": {"beta": 0.0, "alpha": 100.0},
    "FacRNN-full": {"beta": 20.0, "alpha": 0.0, "penalty": "total"},
    "FacRNN": {"beta": 20.0, "alpha": 0.0},
}


def transform_latents(
    params: dict[str, np.ndarray], mixing: np.ndarray, center: np.ndarray
) -> dict[str, np.ndarray]:
    """Re-express a linear model in new latents ``z' = mixing @ (z - center)``.

    ``B' = M B``, ``b' = M (b - c)``, ``A' = A M^-1``, ``a' = a + A c``, so
    ``W = A B`` and every prediction are unchanged.

    Parameters
    ----------
    params : dict
        ``A`` (N, K), ``B`` (K, N), ``a`` (N,), ``b`` (K,).
    mixing : numpy.ndarray, shape (K, K), invertible
    center : numpy.ndarray, shape (K,)
    """
    inv = np.linalg.inv(mixing)
    return {
        "A": params["A"] @ inv,
        "B": mixing @ params["B"],
        "a": params["a"] + params["A"] @ center,
        "b": mixing @ (params["b"] - center),
    }


def ica_unmixing(
    z: np.ndarray, seed: int = 0, max_iter: int = 500, tol: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """FastICA unmixing of latents ``z`` (M, K) to unit-variance components.

    Symmetric FastICA with the log-cosh contrast (Hyvarinen, 1999): the latents
    are whitened (``C^-1/2``), then a rotation is found by fixed-point
    iterations with symmetric decorrelation, started from a random rotation
    drawn from ``seed``.  The unmixing is invertible by construction.

    Returns
    -------
    unmixing : numpy.ndarray, shape (K, K)
    mean : numpy.ndarray, shape (K,)
    """
    z = np.asarray(z, dtype=np.float64)
    mean = z.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(z - mean, rowvar=False))
    whitening = evecs @ np.diag(1.0 / np.sqrt(np.maximum(evals, 1e-12))) @ evecs.T
    x = (z - mean) @ whitening.T  # (M, K), white
    rng = np.random.default_rng(seed)
    w = _symmetric_decorrelation(rng.normal(size=(z.shape[1], z.shape[1])))
    for _ in range(max_iter):
        g = np.tanh(x @ w.T)  # (M, K)
        w_new = _symmetric_decorrelation(g.T @ x / len(x) - np.diag((1 - g**2).mean(0)) @ w)
        converged = np.max(np.abs(np.abs(np.sum(w_new * w, axis=1)) - 1)) < tol
        w = w_new
        if converged:
            break
    return w @ whitening, mean


def _symmetric_decorrelation(w: np.ndarray) -> np.ndarray:
    """``(W W^T)^(-1/2) W``: the nearest orthogonal matrix."""
    u, _, vt = np.linalg.svd(w)
    return u @ vt


def svd_factorization(params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The LINT factorization of ``W = A B``: latents ``z' = V_K^T`` coordinates.

    Returns the ``(mixing, center)`` pair for :func:`transform_latents` that
    turns ``A`` into ``U_K S_K`` and ``B`` into ``V_K^T``.
    """
    a, b = params["A"], params["B"]
    k = a.shape[1]
    _, _, vt = np.linalg.svd(a @ b, full_matrices=False)
    # B' = V_K^T = M B  =>  M = V_K^T B^+ (exact since rows of V_K^T span the row space of B)
    mixing = vt[:k] @ np.linalg.pinv(b)
    return mixing, np.zeros(k)


def pairwise_dependence(z: np.ndarray, max_samples: int = 1000, seed: int = 0) -> np.ndarray:
    """Kernel estimate of the mutual information (nats) between every pair of latent dims.

    Each dim is standardized; leave-one-out Gaussian-kernel densities with the
    bandwidth ``n^(-1/6)`` (Silverman-style for 2-D) give
    ``I(i; j) = E[log p(z_i, z_j) - log p(z_i) - log p(z_j)]`` for all pairs in
    one vectorized pass over at most ``max_samples`` rows.

    Returns
    -------
    numpy.ndarray, shape (K, K)
        Symmetric, zeros on the diagonal.
    """
    z = np.asarray(z, dtype=np.float64)
    if len(z) > max_samples:
        z = z[np.sort(np.random.default_rng(seed).choice(len(z), max_samples, replace=False))]
    z = (z - z.mean(0)) / np.maximum(z.std(0), 1e-12)
    n, k = z.shape
    sigma = n ** (-1.0 / 6.0)
    t = torch.as_tensor(z.T)  # (K, n)
    log_k = -0.5 * (t[:, :, None] - t[:, None, :]).pow(2) / sigma**2  # (K, n, n), 1-D kernels
    log_k.diagonal(dim1=1, dim2=2).fill_(-torch.inf)  # leave one out
    marginal = torch.logsumexp(log_k, -1)  # (K, n); shared constants cancel in the MI
    mi = np.zeros((k, k))
    for i, j in itertools.combinations(range(k), 2):
        joint = torch.logsumexp(log_k[i] + log_k[j], -1)
        value = (joint - marginal[i] - marginal[j]).mean() + math.log(n - 1)
        mi[i, j] = mi[j, i] = float(value)
    return mi


def group_components(
    z: np.ndarray,
    n_groups: int,
    group_rank: int,
    seed: int = 0,
    n_best: int = 1,
    max_partitions: int = 20000,
) -> list[np.ndarray]:
    """Orders of the latent dims that put dependent dims in the same group.

    Scores every partition of the ``K = n_groups * group_rank`` dims into
    groups of equal size by the summed pairwise mutual information inside the
    groups (:func:`pairwise_dependence`) and returns the ``n_best`` best, best
    first: exhaustively when there are at most ``max_partitions`` partitions,
    else greedily (each candidate grown from a different seed dim).  Used where
    training did not define the groups (ICA components, total-correlation
    latents) and to start FacRNN's restarts from different groupings.

    Returns
    -------
    list of numpy.ndarray of int, shape (K,)
        Permutations: new dim ``i`` is old dim ``order[i]``; at most ``n_best``.
    """
    k = z.shape[1]
    if n_groups == 1 or group_rank == 1:
        return [np.arange(k)]
    mi = pairwise_dependence(z, seed=seed)
    n_parts = math.factorial(k) // (
        math.factorial(group_rank) ** n_groups * math.factorial(n_groups)
    )
    if n_parts <= max_partitions:
        candidates = list(_partitions(tuple(range(k)), group_rank))
    else:
        candidates = [_greedy_partition(mi, n_groups, group_rank, start) for start in range(k)]
    candidates.sort(key=lambda p: -sum(_within(mi, g) for g in p))
    orders = list({tuple(np.concatenate([sorted(g) for g in p])): None for p in candidates})
    return [np.asarray(o) for o in orders[:n_best]]


def _within(mi: np.ndarray, group: tuple[int, ...]) -> float:
    idx = np.asarray(group)
    return float(mi[np.ix_(idx, idx)].sum())


def _partitions(items: tuple[int, ...], size: int):
    """Every partition of ``items`` into blocks of ``size`` (as lists of tuples)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for others in itertools.combinations(rest, size - 1):
        remaining = tuple(i for i in rest if i not in others)
        for tail in _partitions(remaining, size):
            yield [(first, *others), *tail]


def _greedy_partition(mi: np.ndarray, n_groups: int, size: int, start: int) -> list[tuple]:
    """Grow groups one dim at a time by dependence, the first one from dim ``start``."""
    left = set(range(mi.shape[0]))
    groups = []
    for g in range(n_groups):
        first = start if g == 0 else max(left, key=lambda i: mi[i, sorted(left - {i})].sum())
        group = [first]
        left.discard(first)
        while len(group) < size:
            nxt = max(left, key=lambda i: mi[i, group].sum())
            group.append(nxt)
            left.discard(nxt)
        groups.append(tuple(group))
    return groups
