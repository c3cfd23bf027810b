"""Recovery of ground-truth latents and connectivity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._checks import (
    Array,
    _affine_predict,
    _as_rows,
    _corr_matrix,
    _entry_metrics,
    _fit_eval_split,
    _group_slices,
    _match,
    _per_column_r2,
    _pooled_r2,
    _same_shape,
)


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
