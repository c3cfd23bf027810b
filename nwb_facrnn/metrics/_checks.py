"""Validation and numerical helpers shared by the metrics."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

Array = npt.NDArray[np.float64]


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
