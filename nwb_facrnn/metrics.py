"""Evaluation metrics for FacRNN fits (Li et al., arXiv 2511.13899).

Pure functions on numpy arrays. Wherever an argument is documented as ``(T, K)`` an array of
shape ``(n_trials, T, K)`` is accepted too; its trials are concatenated along time first.

Latent groups are contiguous: with ``K = G * H`` latent dims and ``G`` groups, group ``g`` is
made of dims ``[g * H, (g + 1) * H)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.special import gammaln, logsumexp, xlogy

__all__ = [
    "DecodingResult",
    "GroupAlignment",
    "behavior_decoding_r2",
    "bits_per_spike",
    "component_latent_r2",
    "connectivity_metrics",
    "decoding_r2",
    "gaussian_log_likelihood",
    "gaussian_partial_correlation",
    "group_latent_r2",
    "partial_correlation",
    "poisson_log_likelihood",
    "reconstruction_r2",
    "subconnectivity_metrics",
    "total_correlation",
]

Array = npt.NDArray[np.float64]

_DEFAULT_ALPHAS: tuple[float, ...] = tuple(np.logspace(-3, 3, 13).tolist())
_KDE_BLOCK_ENTRIES = 4_000_000  # entries of one (rows x n) distance block, ~32 MB


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------


def _as_rows(x: npt.ArrayLike, name: str, *, allow_nan: bool = False) -> Array:
    """Return ``x`` as a float64 ``(rows, K)`` array, concatenating trials of a 3-D input."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (T, K) or (n_trials, T, K); got shape {arr.shape}"
        )
    rows = arr.reshape(-1, arr.shape[-1])
    bad = np.isinf(rows) if allow_nan else ~np.isfinite(rows)
    if bad.any():
        what = "inf" if allow_nan else "NaN or inf"
        raise ValueError(f"{name} contains {what} values ({int(bad.sum())} entries)")
    return rows


def _same_shape(a: npt.ArrayLike, b: npt.ArrayLike, name_a: str, name_b: str) -> None:
    sa, sb = np.shape(a), np.shape(b)
    if sa != sb:
        raise ValueError(f"{name_a} and {name_b} must have the same shape; got {sa} and {sb}")


def _same_leading(a: npt.ArrayLike, b: npt.ArrayLike, name_a: str, name_b: str) -> None:
    """Check that two latent arrays share every axis but the last (time, and trials)."""
    sa, sb = np.shape(a), np.shape(b)
    if len(sa) != len(sb) or sa[:-1] != sb[:-1]:
        raise ValueError(
            f"{name_a} and {name_b} must share their time (and trial) axes; "
            f"got shapes {sa} and {sb}"
        )


def _group_size(k: int, n_groups: int, name: str) -> int:
    """Return H = K / G, checking that ``n_groups`` divides ``k``."""
    if isinstance(n_groups, bool) or not isinstance(n_groups, int | np.integer):
        raise ValueError(f"{name} must be an integer; got {n_groups!r}")
    if n_groups < 1 or k % n_groups != 0:
        raise ValueError(
            f"{name}={n_groups} must be a positive divisor of the number of latent dims K={k}"
        )
    return k // n_groups


def _group_slices(k: int, n_groups: int, name: str) -> list[slice]:
    h = _group_size(k, n_groups, name)
    return [slice(g * h, (g + 1) * h) for g in range(n_groups)]


def _index(idx: npt.ArrayLike, n: int, name: str) -> npt.NDArray[np.intp]:
    """Validate an integer or boolean index array into an axis of length ``n``."""
    arr = np.asarray(idx)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"boolean {name} must have shape ({n},); got {arr.shape}")
        arr = np.flatnonzero(arr)
    elif arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer or boolean index array")
    if arr.size == 0:
        raise ValueError(f"{name} selects no rows")
    if arr.min() < -n or arr.max() >= n:
        raise ValueError(f"{name} has indices outside [0, {n})")
    return np.mod(arr, n)


def _fit_eval_split(
    z_true: npt.ArrayLike,
    z_pred: npt.ArrayLike,
    train_idx: npt.ArrayLike | None,
    test_idx: npt.ArrayLike | None,
) -> tuple[Array, Array, Array, Array]:
    """Validate two latent arrays and split them into (fit, eval) row sets.

    Indices select along the first axis: time steps for (T, K), trials for (n_trials, T, K).
    A missing index set is the complement of the given one; with neither, all rows are used for
    both fitting and evaluation.
    """
    zt, zp = _as_rows(z_true, "z_true"), _as_rows(z_pred, "z_pred")
    _same_leading(z_true, z_pred, "z_true", "z_pred")
    if train_idx is None and test_idx is None:
        return zt, zp, zt, zp
    n = np.shape(z_true)[0]
    fit = None if train_idx is None else _index(train_idx, n, "train_idx")
    evl = None if test_idx is None else _index(test_idx, n, "test_idx")
    fit = np.setdiff1d(np.arange(n), evl) if fit is None else fit
    evl = np.setdiff1d(np.arange(n), fit) if evl is None else evl
    if fit.size == 0 or evl.size == 0:
        raise ValueError("train_idx/test_idx leave no rows to fit on or to evaluate on")
    # rows of the flattened arrays that belong to each selected first-axis entry
    per = zt.shape[0] // n
    fit_rows = (fit[:, None] * per + np.arange(per)).ravel()
    evl_rows = (evl[:, None] * per + np.arange(per)).ravel()
    return zt[fit_rows], zp[fit_rows], zt[evl_rows], zp[evl_rows]


# ----------------------------------------------------------------------------------------------
# Numerical helpers
# ----------------------------------------------------------------------------------------------


def _r2_parts(y: Array, y_hat: Array, weight: Array | None = None) -> tuple[Array, Array]:
    """Per-column residual and total sums of squares (around the weighted column mean)."""
    w = np.ones_like(y) if weight is None else weight
    mean = (w * y).sum(axis=0) / np.maximum(w.sum(axis=0), 1.0)
    return np.sum(w * (y - y_hat) ** 2, axis=0), np.sum(w * (y - mean) ** 2, axis=0)


def _pooled_r2(y: Array, y_hat: Array, weight: Array | None = None) -> float:
    """Variance-weighted R^2 = 1 - sum SSres / sum SStot over columns."""
    ss_res, ss_tot = _r2_parts(y, y_hat, weight)
    if not ss_tot.sum() > 0:
        raise ValueError("the true values have zero variance on the evaluated entries")
    return float(1.0 - ss_res.sum() / ss_tot.sum())


def _per_column_r2(y: Array, y_hat: Array) -> Array:
    ss_res, ss_tot = _r2_parts(y, y_hat)
    if np.any(ss_tot <= 0):
        raise ValueError(
            f"true dims {np.flatnonzero(ss_tot <= 0).tolist()} have zero variance on the "
            "evaluated rows"
        )
    return 1.0 - ss_res / ss_tot


def _affine_predict(x_fit: Array, y_fit: Array, x_eval: Array) -> Array:
    """Least-squares affine map x -> y fit on (x_fit, y_fit), applied to x_eval."""
    mx, my = x_fit.mean(axis=0), y_fit.mean(axis=0)
    coef, *_ = np.linalg.lstsq(x_fit - mx, y_fit - my, rcond=None)
    return (x_eval - mx) @ coef + my


def _corr_matrix(a: Array, b: Array) -> Array:
    """Pearson correlation between the rows of ``a`` and of ``b`` (0 for constant rows)."""

    def _unit(m: Array) -> Array:
        m = m - m.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(m, axis=1, keepdims=True)
        return np.divide(m, norm, out=np.zeros_like(m), where=norm > 0)

    return _unit(a) @ _unit(b).T


def _entry_metrics(w_true: Array, w_pred: Array) -> dict[str, float]:
    """RMSE, Pearson correlation and R^2 between the entries of two equal-shape arrays."""
    t, p = w_true.reshape(1, -1), w_pred.reshape(1, -1)
    return {
        "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
        "correlation": float(_corr_matrix(t, p)[0, 0]),
        "r2": _pooled_r2(t.T, p.T),
    }


def _match(score: Array) -> Array:
    """Hungarian assignment maximizing ``score`` (G_true, G_pred); -1 marks unmatched rows."""
    rows, cols = linear_sum_assignment(score, maximize=True)
    assignment = np.full(score.shape[0], -1, dtype=np.intp)
    assignment[rows] = cols
    return assignment


# ----------------------------------------------------------------------------------------------
# Partial / total correlation
# ----------------------------------------------------------------------------------------------


def gaussian_partial_correlation(cov: npt.ArrayLike, n_groups: int) -> float:
    """Partial correlation of a Gaussian with covariance ``cov`` split into equal groups.

    PC = 0.5 * (sum_g log det S_gg - log det S), the KL divergence (in nats) between the joint
    Gaussian and the product of its group marginals.

    Parameters
    ----------
    cov : array_like, shape (K, K)
        Symmetric positive-definite covariance matrix.
    n_groups : int
        Number of equal contiguous groups G; must divide K.

    Returns
    -------
    float
        Partial correlation in nats (>= 0).
    """
    s = np.asarray(cov, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"cov must be a square (K, K) matrix; got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("cov contains NaN or inf values")
    if not np.allclose(s, s.T, rtol=1e-8, atol=1e-12):
        raise ValueError("cov must be symmetric")
    slices = _group_slices(s.shape[0], n_groups, "n_groups")
    sign, logdet = np.linalg.slogdet(s)
    if sign <= 0:
        raise ValueError("cov must be positive definite (a latent dim may have zero variance)")
    group_logdet = sum(np.linalg.slogdet(s[sl, sl])[1] for sl in slices)
    return float(0.5 * (group_logdet - logdet))


def _mean_loo_log_kernel_sum(x: Array, sigma: float) -> float:
    """Mean over i of log sum_{j != i} exp(-|x_i - x_j|^2 / (2 sigma^2)), in row blocks.

    This is the leave-one-out log KDE density at the samples, up to the constant
    ``log(n - 1) + (d / 2) log(2 pi sigma^2)``.
    """
    n = x.shape[0]
    block = max(1, _KDE_BLOCK_ENTRIES // n)
    total = 0.0
    for start in range(0, n, block):
        stop = min(start + block, n)
        log_k = cdist(x[start:stop], x, "sqeuclidean") / (-2.0 * sigma**2)
        rows = np.arange(stop - start)
        log_k[rows, start + rows] = -np.inf  # leave one out
        total += float(np.sum(logsumexp(log_k, axis=1)))
    return total / n


def _kde_partial_correlation(
    x: Array, slices: list[slice], sigma: float, n_shuffles: int, rng: np.random.Generator
) -> float:
    """Leave-one-out Gaussian-KDE estimate of E[log q(x) - sum_g log q(x_g)].

    Without shuffles this is the plug-in estimate: the ``(d / 2) log(2 pi sigma^2)`` constants
    cancel between joint and groups, leaving ``(G - 1) log(n - 1)``. With shuffles, the
    estimate on copies whose groups are permuted independently across samples is subtracted;
    the group terms are identical for both and cancel, leaving a difference of joint terms.
    """
    joint = _mean_loo_log_kernel_sum(x, sigma)
    if n_shuffles == 0:
        groups = sum(_mean_loo_log_kernel_sum(x[:, sl], sigma) for sl in slices)
        return joint - groups + (len(slices) - 1) * np.log(x.shape[0] - 1)
    n = x.shape[0]
    baseline = [
        _mean_loo_log_kernel_sum(np.hstack([x[rng.permutation(n), sl] for sl in slices]), sigma)
        for _ in range(n_shuffles)
    ]
    return joint - float(np.mean(baseline))


def partial_correlation(
    z: npt.ArrayLike,
    n_groups: int,
    *,
    method: str = "kde",
    bandwidth: float | None = None,
    max_samples: int = 4000,
    seed: int = 0,
    n_shuffles: int = 2,
) -> float:
    """Partial correlation PC = E[log q(z) - sum_g log q(z_g)] between latent groups.

    PC is zero iff the G groups are mutually independent; dependence inside a group does not
    count.

    Parameters
    ----------
    z : array_like, shape (T, K) or (n_trials, T, K)
        Latent samples.
    n_groups : int
        Number of equal contiguous groups G; must divide K.
    method : {"kde", "gaussian"}
        ``"kde"``: each dim is z-scored, then joint and per-group densities are Gaussian-kernel
        density estimates with isotropic bandwidth ``sigma`` (the same for the joint and every
        group), evaluated leave-one-out at the samples. Captures nonlinear dependence, but
        underestimates strong dependence (smoothing).
        ``"gaussian"``: closed form ``0.5 * (sum_g log det S_gg - log det S)`` from the sample
        covariance ``S`` (captures only linear dependence; uses all rows).
    bandwidth : float, optional
        KDE bandwidth in units of standard deviations; default ``n ** (-1 / (K + 4))`` with
        ``n`` the number of samples used.
    max_samples : int
        For ``"kde"``, a random subset of this many rows (drawn with ``seed``) is used when
        there are more. Cost is O(n^2 K).
    seed : int
        Seed of the subsampling and of the shuffles.
    n_shuffles : int
        For ``"kde"``: bias correction. The same estimate computed on ``n_shuffles`` copies of
        the samples whose groups are permuted independently across samples (same group
        marginals, independent groups) is averaged and subtracted. This cancels the
        finite-sample bias of the plug-in KDE estimate (about -0.12 nats for two 3-D Gaussian
        groups and 2000 samples), making the estimate unbiased at independence, where it may
        then be slightly negative (standard deviation about 0.02 nats in that example).
        0 returns the raw plug-in estimate. Each shuffle costs about one joint KDE.

    Returns
    -------
    float
        Partial correlation in nats.
    """
    x = _as_rows(z, "z")
    slices = _group_slices(x.shape[1], n_groups, "n_groups")
    if method == "gaussian":
        if x.shape[0] <= x.shape[1]:
            raise ValueError(f"need more samples than dims (K={x.shape[1]}); got {x.shape[0]}")
        return gaussian_partial_correlation(np.atleast_2d(np.cov(x, rowvar=False)), n_groups)
    if method != "kde":
        raise ValueError(f"method must be 'kde' or 'gaussian'; got {method!r}")
    if isinstance(n_shuffles, bool) or not isinstance(n_shuffles, int) or n_shuffles < 0:
        raise ValueError(f"n_shuffles must be a non-negative integer; got {n_shuffles!r}")
    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2; got {max_samples}")
    if bandwidth is not None and not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive; got {bandwidth}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 samples; got {x.shape[0]}")
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_samples:
        x = x[np.sort(rng.choice(x.shape[0], size=max_samples, replace=False))]
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    n, k = x.shape
    sigma = n ** (-1.0 / (k + 4)) if bandwidth is None else float(bandwidth)
    return float(_kde_partial_correlation(x, slices, sigma, n_shuffles, rng))


def total_correlation(z: npt.ArrayLike, **kwargs: Any) -> float:
    """Total correlation: :func:`partial_correlation` with one group per latent dim.

    Parameters
    ----------
    z : array_like, shape (T, K) or (n_trials, T, K)
        Latent samples.
    **kwargs
        Passed on to :func:`partial_correlation` (``method``, ``bandwidth``, ...).

    Returns
    -------
    float
        Total correlation in nats.
    """
    return partial_correlation(z, _as_rows(z, "z").shape[1], **kwargs)


# ----------------------------------------------------------------------------------------------
# Latent and connectivity recovery
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GroupAlignment:
    """Result of :func:`group_latent_r2`.

    Attributes
    ----------
    r2_matrix : ndarray, shape (G_true, G_pred)
        R^2 of predicting true group i from predicted group j by an affine map.
    assignment : ndarray of int, shape (G_true,)
        Predicted group matched to each true group; -1 where there are fewer predicted groups
        than true groups and the true group is left unmatched.
    per_group : ndarray, shape (G_true,)
        R^2 of each true group under the assignment (0 for unmatched groups).
    mean : float
        Mean of ``per_group``.
    """

    r2_matrix: Array
    assignment: npt.NDArray[np.intp]
    per_group: Array
    mean: float


def group_latent_r2(
    z_true: npt.ArrayLike,
    z_pred: npt.ArrayLike,
    n_groups_true: int,
    n_groups_pred: int | None = None,
    *,
    train_idx: npt.ArrayLike | None = None,
    test_idx: npt.ArrayLike | None = None,
) -> GroupAlignment:
    """Group-wise latent recovery: affine R^2 between every (true, predicted) group pair.

    Each true group is only identifiable up to an invertible affine transform inside the group
    and a permutation of groups, so for every pair (true group i, predicted group j) an affine
    least-squares map from predicted group j's dims to true group i's dims is fit, and its R^2
    pooled over the true group's dims (variance-weighted) is recorded. True and predicted
    groups are then matched one-to-one maximizing the summed R^2 (Hungarian algorithm).

    Parameters
    ----------
    z_true : array_like, shape (T, K_true) or (n_trials, T, K_true)
        Ground-truth latents.
    z_pred : array_like, shape (T, K_pred) or (n_trials, T, K_pred)
        Inferred latents, on the same time (and trial) axes.
    n_groups_true : int
        Number of true groups; must divide K_true.
    n_groups_pred : int, optional
        Number of predicted groups; must divide K_pred. Default ``n_groups_true``.
    train_idx, test_idx : array_like of int or bool, optional
        Indices along the first axis (time steps for 2-D input, trials for 3-D input): the
        affine maps are fit on ``train_idx`` and R^2 is evaluated on ``test_idx``. If only one
        is given the other is its complement. Default: fit and evaluate on all rows.

    Returns
    -------
    GroupAlignment
        R^2 matrix, assignment, per-group R^2 and their mean (dimensionless).
    """
    fit_t, fit_p, ev_t, ev_p = _fit_eval_split(z_true, z_pred, train_idx, test_idx)
    g_pred = n_groups_true if n_groups_pred is None else n_groups_pred
    true_sl = _group_slices(fit_t.shape[1], n_groups_true, "n_groups_true")
    pred_sl = _group_slices(fit_p.shape[1], g_pred, "n_groups_pred")
    r2 = np.array(
        [
            [
                _pooled_r2(ev_t[:, ti], _affine_predict(fit_p[:, pj], fit_t[:, ti], ev_p[:, pj]))
                for pj in pred_sl
            ]
            for ti in true_sl
        ]
    )
    assignment = _match(r2)
    matched = assignment >= 0
    per_group = np.zeros(len(true_sl))
    per_group[matched] = r2[np.flatnonzero(matched), assignment[matched]]
    return GroupAlignment(r2, assignment, per_group, float(per_group.mean()))


def component_latent_r2(
    z_true: npt.ArrayLike,
    z_pred: npt.ArrayLike,
    *,
    train_idx: npt.ArrayLike | None = None,
    test_idx: npt.ArrayLike | None = None,
) -> float:
    """Whole-space latent R^2: affine map from all predicted dims to each true dim.

    Parameters
    ----------
    z_true : array_like, shape (T, K_true) or (n_trials, T, K_true)
        Ground-truth latents.
    z_pred : array_like, shape (T, K_pred) or (n_trials, T, K_pred)
        Inferred latents on the same time (and trial) axes.
    train_idx, test_idx : array_like of int or bool, optional
        As in :func:`group_latent_r2`.

    Returns
    -------
    float
        Mean over true dims of their R^2 (dimensionless).
    """
    fit_t, fit_p, ev_t, ev_p = _fit_eval_split(z_true, z_pred, train_idx, test_idx)
    return float(np.mean(_per_column_r2(ev_t, _affine_predict(fit_p, fit_t, ev_p))))


def connectivity_metrics(w_true: npt.ArrayLike, w_pred: npt.ArrayLike) -> dict[str, float]:
    """Compare a recovered connectivity matrix with the true one, entry by entry.

    Parameters
    ----------
    w_true, w_pred : array_like, shape (N, N)
        True and recovered connectivity ``W = A @ B``.

    Returns
    -------
    dict
        ``"rmse"`` (units of W), ``"correlation"`` (Pearson correlation of the flattened
        entries; 0 if either is constant) and ``"r2"`` (1 - SSres / SStot with SStot around the
        mean true entry).
    """
    _same_shape(w_true, w_pred, "w_true", "w_pred")
    return _entry_metrics(_as_rows(w_true, "w_true"), _as_rows(w_pred, "w_pred"))


def _group_connectivity(a: npt.ArrayLike, b: npt.ArrayLike, n_groups: int, name: str) -> Array:
    """Per-group connectivity W_g = A[:, g] @ B[g, :], shape (G, N, N)."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 2 or b_arr.ndim != 2 or a_arr.shape != b_arr.shape[::-1]:
        raise ValueError(
            f"a_{name} must have shape (N, K) and b_{name} shape (K, N); "
            f"got {a_arr.shape} and {b_arr.shape}"
        )
    if not (np.all(np.isfinite(a_arr)) and np.all(np.isfinite(b_arr))):
        raise ValueError(f"a_{name} and b_{name} must not contain NaN or inf values")
    slices = _group_slices(a_arr.shape[1], n_groups, f"n_groups_{name}")
    return np.stack([a_arr[:, sl] @ b_arr[sl, :] for sl in slices])


def subconnectivity_metrics(
    a_true: npt.ArrayLike,
    b_true: npt.ArrayLike,
    a_pred: npt.ArrayLike,
    b_pred: npt.ArrayLike,
    n_groups_true: int,
    n_groups_pred: int | None = None,
    assignment: npt.ArrayLike | None = None,
) -> dict[str, object]:
    """Recovery of the per-group connectivities W_g = A[:, g] @ B[g, :].

    W_g is invariant to any invertible transform inside group g (A_g M, M^-1 B_g), which makes
    it the identifiable per-group quantity.

    Parameters
    ----------
    a_true, b_true : array_like, shapes (N, K_true) and (K_true, N)
        True factors with W = A @ B.
    a_pred, b_pred : array_like, shapes (N, K_pred) and (K_pred, N)
        Recovered factors.
    n_groups_true : int
        Number of true groups; must divide K_true.
    n_groups_pred : int, optional
        Number of recovered groups; must divide K_pred. Default ``n_groups_true``.
    assignment : array_like of int, shape (G_true,), optional
        Recovered group matched to each true group (e.g. ``GroupAlignment.assignment``; -1 for
        unmatched). Default: Hungarian matching maximizing the summed correlation of W_g's.

    Returns
    -------
    dict
        ``"correlation"``, ``"rmse"`` and ``"r2"``: means over true groups of the entry-wise
        metrics of :func:`connectivity_metrics` between matched W_g's (an unmatched true group
        is compared with a zero matrix, correlation 0); ``"per_group_correlation"``,
        ``"per_group_rmse"``, ``"per_group_r2"``: arrays of shape (G_true,); ``"assignment"``.
    """
    if np.shape(a_true)[:1] != np.shape(a_pred)[:1]:
        raise ValueError(
            f"a_true and a_pred must have the same number of units N; "
            f"got shapes {np.shape(a_true)} and {np.shape(a_pred)}"
        )
    w_true = _group_connectivity(a_true, b_true, n_groups_true, "true")
    g_pred = n_groups_true if n_groups_pred is None else n_groups_pred
    w_pred = _group_connectivity(a_pred, b_pred, g_pred, "pred")
    if assignment is None:
        corr = _corr_matrix(w_true.reshape(len(w_true), -1), w_pred.reshape(len(w_pred), -1))
        match = _match(corr)
    else:
        match = np.asarray(assignment)
        if (
            match.shape != (len(w_true),)
            or not np.issubdtype(match.dtype, np.integer)
            or match.min() < -1
            or match.max() >= len(w_pred)
        ):
            raise ValueError(
                f"assignment must be {len(w_true)} integers in [-1, {len(w_pred)}); got {match}"
            )
    per = [
        _entry_metrics(w_true[i], w_pred[j] if j >= 0 else np.zeros_like(w_true[i]))
        for i, j in enumerate(match)
    ]
    out: dict[str, object] = {}
    for key in ("correlation", "rmse", "r2"):
        values = np.array([m[key] for m in per])
        out[key] = float(values.mean())
        out[f"per_group_{key}"] = values
    out["assignment"] = match.astype(np.intp)
    return out


# ----------------------------------------------------------------------------------------------
# Observation-space metrics
# ----------------------------------------------------------------------------------------------


def reconstruction_r2(
    x_true: npt.ArrayLike, x_pred: npt.ArrayLike, mask: npt.ArrayLike | None = None
) -> float:
    """Variance-weighted R^2 of a reconstruction, pooled over units.

    R^2 = 1 - sum_units SSres / sum_units SStot, with SStot around each unit's mean over the
    observed entries.

    Parameters
    ----------
    x_true, x_pred : array_like, shape (T, N) or (n_trials, T, N)
        Observed activity and its reconstruction.
    mask : array_like of bool, optional
        Same shape as ``x_true``; True marks the entries that count. Entries outside the mask
        are ignored entirely (they may even be NaN). Default: all entries.

    Returns
    -------
    float
        Pooled R^2 (dimensionless).
    """
    _same_shape(x_true, x_pred, "x_true", "x_pred")
    if mask is None:
        return _pooled_r2(_as_rows(x_true, "x_true"), _as_rows(x_pred, "x_pred"))
    m = np.asarray(mask)
    if m.dtype != bool:
        raise ValueError(f"mask must be a boolean array; got dtype {m.dtype}")
    _same_shape(x_true, m, "x_true", "mask")
    xt = _as_rows(np.where(m, x_true, 0.0), "x_true (observed entries)")
    xp = _as_rows(np.where(m, x_pred, 0.0), "x_pred (observed entries)")
    return _pooled_r2(xt, xp, m.reshape(xt.shape).astype(np.float64))


def gaussian_log_likelihood(x: npt.ArrayLike, mean: npt.ArrayLike, std: npt.ArrayLike) -> float:
    """Gaussian log-likelihood per time step (summed over units, averaged over time).

    Parameters
    ----------
    x, mean : array_like, shape (T, N) or (n_trials, T, N)
        Observations and predicted means.
    std : array_like, shape (N,) or the shape of ``x``
        Positive standard deviations, in the units of ``x``.

    Returns
    -------
    float
        Log-likelihood in nats per time step.
    """
    _same_shape(x, mean, "x", "mean")
    xr, mr = _as_rows(x, "x"), _as_rows(mean, "mean")
    s = np.asarray(std, dtype=np.float64)
    if s.shape != (xr.shape[1],):
        _same_shape(x, s, "x", "std (or shape (N,))")
        s = _as_rows(s, "std")
    if not np.all((s > 0) & np.isfinite(s)):
        raise ValueError("std must be positive and finite")
    z = (xr - mr) / s
    ll = -0.5 * z**2 - np.log(s) - 0.5 * np.log(2.0 * np.pi)
    return float(ll.sum() / xr.shape[0])


def _poisson_ll_total(counts: Array, rate: Array) -> float:
    return float(np.sum(xlogy(counts, rate) - rate - gammaln(counts + 1.0)))


def _poisson_inputs(counts: npt.ArrayLike, rate: npt.ArrayLike) -> tuple[Array, Array]:
    _same_shape(counts, rate, "counts", "rate")
    k, r = _as_rows(counts, "counts"), _as_rows(rate, "rate")
    if np.any(k < 0):
        raise ValueError("counts must be non-negative")
    if np.any(r < 0):
        raise ValueError("rate must be non-negative (expected counts per bin)")
    return k, r


def poisson_log_likelihood(counts: npt.ArrayLike, rate: npt.ArrayLike) -> float:
    """Poisson log-likelihood per time step (summed over units, averaged over time).

    Parameters
    ----------
    counts : array_like, shape (T, N) or (n_trials, T, N)
        Spike counts per bin.
    rate : array_like, same shape as ``counts``
        Predicted expected counts per bin (not Hz).

    Returns
    -------
    float
        Log-likelihood in nats per time step, including the ``-log(k!)`` term.
    """
    k, r = _poisson_inputs(counts, rate)
    return _poisson_ll_total(k, r) / k.shape[0]


def bits_per_spike(
    counts: npt.ArrayLike, rate: npt.ArrayLike, mean_rate: npt.ArrayLike | None = None
) -> float:
    """Bits per spike (the Neural Latents Benchmark's co-bps definition).

    ``(LL_model - LL_null) / (n_spikes * log 2)`` with the null model predicting each unit's
    mean rate in every bin.

    Parameters
    ----------
    counts : array_like, shape (T, N) or (n_trials, T, N)
        Spike counts per bin (the NLB evaluates it on held-out neurons).
    rate : array_like, same shape as ``counts``
        Predicted expected counts per bin.
    mean_rate : array_like, shape (N,), optional
        Null-model expected counts per bin; default the per-unit mean of ``counts``.

    Returns
    -------
    float
        Bits per spike; 0 for the null model, positive when the model beats it.
    """
    k, r = _poisson_inputs(counts, rate)
    null = k.mean(axis=0) if mean_rate is None else np.asarray(mean_rate, dtype=np.float64)
    if null.shape != (k.shape[1],) or not np.all(np.isfinite(null)) or np.any(null < 0):
        raise ValueError(f"mean_rate must be {k.shape[1]} non-negative finite rates")
    n_spikes = k.sum()
    if n_spikes <= 0:
        raise ValueError("counts contain no spikes; bits per spike is undefined")
    ll_null = _poisson_ll_total(k, np.broadcast_to(null, k.shape))
    return float((_poisson_ll_total(k, r) - ll_null) / (n_spikes * np.log(2.0)))


# ----------------------------------------------------------------------------------------------
# Behaviour decoding
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DecodingResult:
    """Result of :func:`decoding_r2`.

    Attributes
    ----------
    r2 : float
        Cross-validated R^2 pooled over behaviour dims (variance-weighted).
    r2_per_dim : ndarray, shape (D,)
        Cross-validated R^2 of each behaviour dim.
    alpha : float
        Typical chosen ridge penalty: the lower median of ``fold_alphas``.
    prediction : ndarray, same shape as the behaviour
        Out-of-fold predictions (also at rows whose behaviour is NaN).
    fold_alphas : ndarray, shape (n_folds,)
        Ridge penalty chosen by the inner cross-validation of each outer fold.
    """

    r2: float
    r2_per_dim: Array
    alpha: float
    prediction: Array
    fold_alphas: Array


def _fold_labels(
    n_rows: int, groups: npt.NDArray[np.intp] | None, n_folds: int, seed: int
) -> npt.NDArray[np.intp]:
    """Fold index of each row: whole groups (trials) per fold, else contiguous time blocks."""
    if groups is None:
        if n_rows < n_folds:
            raise ValueError(f"need at least {n_folds} rows for {n_folds} folds; got {n_rows}")
        sizes = [len(c) for c in np.array_split(np.arange(n_rows), n_folds)]
        return np.repeat(np.arange(n_folds), sizes)
    unique, inverse = np.unique(groups, return_inverse=True)
    if len(unique) < n_folds:
        raise ValueError(f"need at least {n_folds} trials for {n_folds} folds; got {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group = np.empty(len(unique), dtype=np.intp)
    for f, chunk in enumerate(np.array_split(order, n_folds)):
        fold_of_group[chunk] = f
    return fold_of_group[inverse.ravel()]


def _ridge_predict(x_fit: Array, y_fit: Array, x_eval: Array, alphas: Array) -> Array:
    """Ridge predictions (n_alphas, rows, D) for every penalty, with an unpenalized intercept.

    One eigendecomposition of the (K, K) Gram matrix serves all penalties.
    """
    mx, my = x_fit.mean(axis=0), y_fit.mean(axis=0)
    xc = x_fit - mx
    eigval, eigvec = np.linalg.eigh(xc.T @ xc)
    rotated_xty = eigvec.T @ (xc.T @ (y_fit - my))  # (K, D)
    shrink = 1.0 / (np.clip(eigval, 0.0, None) + alphas[:, None])  # (A, K)
    proj = (x_eval - mx) @ eigvec  # (rows, K)
    return my + (proj[None] * shrink[:, None, :]) @ rotated_xty


def _inner_cv_alpha(
    x: Array,
    y: Array,
    groups: npt.NDArray[np.intp] | None,
    n_folds: int,
    alphas: Array,
    seed: int,
) -> float:
    """Penalty with the least summed squared error over inner folds built like the outer."""
    n_units = x.shape[0] if groups is None else len(np.unique(groups))
    if n_units < 2:
        raise ValueError("an outer training fold has fewer than 2 trials (or rows) to tune on")
    inner = _fold_labels(x.shape[0], groups, min(n_folds, n_units), seed)
    sse = np.zeros(len(alphas))
    for i in np.unique(inner):
        fit, held = inner != i, inner == i
        sse += np.sum((_ridge_predict(x[fit], y[fit], x[held], alphas) - y[held]) ** 2, axis=(1, 2))
    return float(alphas[np.argmin(sse)])


def decoding_r2(
    latents: npt.ArrayLike,
    behavior: npt.ArrayLike,
    *,
    trial_ids: npt.ArrayLike | None = None,
    n_folds: int = 5,
    alphas: npt.ArrayLike = _DEFAULT_ALPHAS,
    seed: int = 0,
) -> DecodingResult:
    """Cross-validated ridge decoding of behaviour from latents (as the NLB does for velocity).

    Outer folds hold out whole trials when trials are known (``trial_ids``, or the trial axis of
    3-D input; trials are shuffled into folds with ``seed``), else contiguous blocks of time
    (not shuffled, to respect autocorrelation). On each outer training fold, features are
    z-scored with that fold's statistics and the ridge penalty (intercept unpenalized) is chosen
    from ``alphas`` by an inner cross-validation built the same way, minimizing the squared
    error summed over behaviour dims.

    Parameters
    ----------
    latents : array_like, shape (T, K) or (n_trials, T, K)
        Features; must be finite.
    behavior : array_like, shape (T, D) or (n_trials, T, D)
        Targets, on the same time (and trial) axes. Rows containing any NaN (unobserved bins)
        are left out of fitting and scoring but still receive a prediction.
    trial_ids : array_like, shape (T,), optional
        Trial label of every row of 2-D input. Not allowed with 3-D input.
    n_folds : int
        Number of outer folds (>= 2).
    alphas : array_like
        Candidate ridge penalties (on z-scored features).
    seed : int
        Seed for the assignment of trials to folds (unused with time-block folds).

    Returns
    -------
    DecodingResult
        Pooled and per-dim cross-validated R^2, chosen penalty and out-of-fold prediction.
    """
    x = _as_rows(latents, "latents")
    y = _as_rows(behavior, "behavior", allow_nan=True)
    _same_leading(latents, behavior, "latents", "behavior")
    shape = np.shape(behavior)
    if len(shape) == 3:
        if trial_ids is not None:
            raise ValueError("trial_ids must not be given with 3-D input: the trial axis is used")
        groups: npt.NDArray[np.intp] | None = np.repeat(np.arange(shape[0]), shape[1])
    elif trial_ids is not None:
        ids = np.asarray(trial_ids)
        if ids.shape != (x.shape[0],):
            raise ValueError(f"trial_ids must have shape ({x.shape[0]},); got {ids.shape}")
        groups = np.unique(ids, return_inverse=True)[1].ravel()
    else:
        groups = None
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2; got {n_folds!r}")
    alpha_grid = np.asarray(alphas, dtype=np.float64).ravel()
    if alpha_grid.size == 0 or not np.all(np.isfinite(alpha_grid) & (alpha_grid > 0)):
        raise ValueError("alphas must be a non-empty array of positive finite penalties")

    valid = ~np.isnan(y).any(axis=1)
    folds = _fold_labels(x.shape[0], groups, n_folds, seed)
    prediction = np.empty_like(y)
    fold_alphas = np.empty(n_folds)
    for f in range(n_folds):
        train, test = (folds != f) & valid, folds == f
        if np.count_nonzero(train) < 2:
            raise ValueError(f"outer fold {f} leaves fewer than 2 observed rows to train on")
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
        xs = (x - mu) / np.where(sd > 0, sd, 1.0)
        fold_alphas[f] = _inner_cv_alpha(
            xs[train],
            y[train],
            None if groups is None else groups[train],
            n_folds,
            alpha_grid,
            seed,
        )
        prediction[test] = _ridge_predict(xs[train], y[train], xs[test], fold_alphas[f : f + 1])[0]
    y_ok, p_ok = y[valid], prediction[valid]
    return DecodingResult(
        r2=_pooled_r2(y_ok, p_ok),
        r2_per_dim=_per_column_r2(y_ok, p_ok),
        alpha=float(np.quantile(fold_alphas, 0.5, method="lower")),
        prediction=prediction.reshape(shape),
        fold_alphas=fold_alphas,
    )


def behavior_decoding_r2(
    latents: npt.ArrayLike,
    behavior: dict[str, npt.ArrayLike],
    *,
    n_folds: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Cross-validated decoding R^2 of every behavioural variable from the latents.

    The summary a fit reports: :func:`decoding_r2` per variable, whole trials held out when
    the data have trials. Rows whose latents are not finite (padding after a short trial, bins
    with no observed unit) are left out; with fewer trials (or rows) than ``n_folds`` as many
    folds as trials are used.

    Parameters
    ----------
    latents : array_like, shape (T, K) or (n_trials, T, K)
        Posterior-mean latents, e.g. ``FacRNN.transform(data)``.
    behavior : dict of str to array_like, each shape (T, D) or (n_trials, T, D)
        Behavioural series on the same bins, e.g. ``NeuralData.behavior``; NaN where
        unobserved.
    n_folds : int
        Outer folds (at most one per trial).
    seed : int
        Seed of the assignment of trials to folds.

    Returns
    -------
    dict of str to float
        ``{name: R^2}``; a variable that cannot be scored (fewer than 3 trials or rows with
        observed behaviour: the ridge penalty is chosen by cross-validation inside every
        training fold) is left out.
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim not in (2, 3):
        raise ValueError(f"latents must be (T, K) or (n_trials, T, K); got shape {z.shape}")
    trials = np.repeat(np.arange(z.shape[0]), z.shape[1]) if z.ndim == 3 else None
    rows = z.reshape(-1, z.shape[-1])
    finite = np.isfinite(rows).all(axis=1)
    out: dict[str, float] = {}
    for name, values in behavior.items():
        y = np.asarray(values, dtype=np.float64)
        if y.shape[: z.ndim - 1] != z.shape[:-1]:
            raise ValueError(
                f"behavior {name!r} has shape {y.shape}; expected {z.shape[:-1]} + (D,)"
            )
        y = y.reshape(rows.shape[0], -1)
        keep = finite & ~np.isnan(y).all(axis=1)
        ids = None if trials is None else trials[keep]
        n_parts = int(keep.sum()) if ids is None else len(np.unique(ids))
        if n_parts < 3:  # each outer training fold needs 2 parts for the inner CV
            continue
        result = decoding_r2(
            rows[keep], y[keep], trial_ids=ids, n_folds=min(n_folds, n_parts), seed=seed
        )
        out[name] = result.r2
    return out
