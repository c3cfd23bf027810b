"""Observation-space metrics: reconstruction R^2, log-likelihoods, bits per spike."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln, xlogy

from ._checks import Array, _as_rows, _pooled_r2, _same_shape


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


class PooledR2:
    """:func:`reconstruction_r2` accumulated block by block (rows of the same units), so
    that a long recording is scored without a full copy of its prediction.

    Examples
    --------
    >>> acc = PooledR2()
    >>> for x_block, pred_block, mask_block in blocks:  # doctest: +SKIP
    ...     acc.add(x_block, pred_block, mask_block)
    >>> acc.value()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._parts: list[np.ndarray] | None = None  # count, sum, sum of squares, SSres

    def add(self, x: npt.ArrayLike, pred: npt.ArrayLike, mask: npt.ArrayLike | None) -> None:
        """Add rows ``x``, ``pred`` (rows, N) whose entries count where ``mask`` (rows, N)
        is True (default all)."""
        x, pred = np.asarray(x, dtype=np.float64), np.asarray(pred, dtype=np.float64)
        w = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
        x, resid = np.where(w, x, 0.0), np.where(w, x - pred, 0.0)
        parts = [w.sum(0), x.sum(0), (x * x).sum(0), (resid * resid).sum(0)]
        if self._parts is None:
            self._parts = parts
        else:
            self._parts = [a + b for a, b in zip(self._parts, parts, strict=True)]

    def value(self) -> float:
        """The pooled R^2 of every row added."""
        if self._parts is None:
            raise ValueError("no rows were added")
        count, total, squares, ss_res = self._parts
        ss_tot = squares - total**2 / np.maximum(count, 1.0)
        if not ss_tot.sum() > 0:
            raise ValueError("the true values have zero variance on the evaluated entries")
        return float(1.0 - ss_res.sum() / ss_tot.sum())


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
