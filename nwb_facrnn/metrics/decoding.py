"""Behaviour decoding from the latents (cross-validated ridge regression)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._checks import Array, _as_rows, _per_column_r2, _pooled_r2, _same_leading

_DEFAULT_ALPHAS: tuple[float, ...] = tuple(np.logspace(-3, 3, 13).tolist())


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
