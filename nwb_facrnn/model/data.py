"""Input validation and the transition samples a FacRNN is trained on.

A FacRNN is a one-step model: its encoder reads the previous activity
``x_{t-1}`` and its decoder explains ``x_t``.  Every (previous, current) pair
inside a sequence is one training sample, so a dataset of ``n_trials``
sequences of ``T`` bins holds ``n_trials * (T - 1)`` samples and no sample
crosses a trial boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import OptionError

ArrayLike = np.ndarray | torch.Tensor


@runtime_checkable
class NeuralDataLike(Protocol):
    """What the estimator reads from a :class:`~nwb_facrnn.NeuralData` (no NWB import here)."""

    activity: np.ndarray
    mask: np.ndarray
    inputs: np.ndarray | None


def unpack_neural_data(
    X: Any, inputs: ArrayLike | None, mask: ArrayLike | None
) -> tuple[Any, ArrayLike | None, ArrayLike | None]:
    """Split a NeuralData into (activity, inputs, mask); arrays pass through unchanged.

    Explicit ``inputs`` / ``mask`` arguments take precedence over the NeuralData's own.
    """
    if isinstance(X, NeuralDataLike):
        return (
            X.activity,
            inputs if inputs is not None else X.inputs,
            mask if mask is not None else X.mask,
        )
    return X, inputs, mask


def as_sequences(x: ArrayLike, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Validate activity and return it as float32 sequences.

    Parameters
    ----------
    x : array, shape (T, N) or (n_trials, T, N)
        One sequence or trials of ``T`` time bins of ``N`` units.
    name : str
        Name of the argument, used in error messages.
    n_features : int, optional
        Required number of units ``N`` (the number seen by ``fit``).

    Returns
    -------
    numpy.ndarray, shape (n_trials, T, N), float32
        A single sequence becomes ``n_trials = 1``.

    Raises
    ------
    OptionError
        Wrong number of dimensions, fewer than 2 time bins, no units, a unit
        count that differs from ``n_features``, or NaN/inf values.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise OptionError(
            f"{name} must be a numeric array, got {type(x).__name__}: {err}"
        ) from None
    if arr.ndim not in (2, 3):
        raise OptionError(
            f"{name} must have shape (T, N) or (n_trials, T, N); got {arr.ndim} dimension(s) "
            f"with shape {arr.shape}"
        )
    seqs = arr[None] if arr.ndim == 2 else arr
    if seqs.shape[1] < 2:
        raise OptionError(
            f"{name} needs at least 2 time bins per sequence (T >= 2), got T = {seqs.shape[1]}"
        )
    if seqs.shape[2] < 1 or seqs.shape[0] < 1:
        raise OptionError(f"{name} has no units or no trials: shape {arr.shape}")
    if n_features is not None and seqs.shape[2] != n_features:
        raise OptionError(
            f"{name} has N = {seqs.shape[2]} units but the model was fit on N = {n_features}"
        )
    bad = ~np.isfinite(seqs)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise OptionError(
            f"{name} contains {int(bad.sum())} NaN or inf value(s) (first at index "
            f"{tuple(int(i) for i in (where if arr.ndim == 3 else where[1:]))}); "
            "all values must be finite"
        )
    return np.ascontiguousarray(seqs)


def inputs_like(inputs: ArrayLike | None, seqs: np.ndarray, name: str = "inputs") -> np.ndarray:
    """Validate external input ``u`` against activity sequences.

    Parameters
    ----------
    inputs : array, shape like the activity, or None
        External input ``u_t`` added to each unit (same shape as ``X``).
    seqs : numpy.ndarray, shape (n_trials, T, N)
        The validated activity.

    Returns
    -------
    numpy.ndarray, shape (n_trials, T, N), float32
        Zeros when ``inputs`` is None.
    """
    if inputs is None:
        return np.zeros_like(seqs)
    u = as_sequences(inputs, name, n_features=seqs.shape[2])
    if u.shape != seqs.shape:
        raise OptionError(
            f"{name} must have the same shape as the activity {seqs.shape}, got {u.shape}"
        )
    return u


def step_mask_like(mask: ArrayLike | None, seqs: np.ndarray, name: str = "step_mask") -> np.ndarray:
    """Validate a per-time-step boolean mask; return shape (n_trials, T)."""
    if mask is None:
        return np.ones(seqs.shape[:2], dtype=bool)
    m = np.asarray(mask)
    if m.dtype != bool:
        raise OptionError(f"{name} must be boolean, got dtype {m.dtype}")
    if m.ndim == 1:
        m = m[None]
    if m.shape != seqs.shape[:2]:
        raise OptionError(
            f"{name} must have shape (T,) or (n_trials, T) = {seqs.shape[:2]}, got {m.shape}"
        )
    return m


def observed_like(
    mask: ArrayLike | None, seqs: np.ndarray, name: str = "mask"
) -> np.ndarray | None:
    """Validate an element-wise observation mask; return shape (n_trials, T, N) or None.

    ``True`` marks an observed value; unobserved values (a unit outside its
    ``obs_intervals``, padding after a short trial, a dropped imaging frame)
    carry no information and are left out of the likelihood.
    """
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != bool:
        raise OptionError(f"{name} must be boolean, got dtype {m.dtype}")
    if m.ndim == 2:
        m = m[None]
    if m.shape != seqs.shape:
        raise OptionError(f"{name} must have the shape of the activity {seqs.shape}, got {m.shape}")
    return None if m.all() else m


def observed_mean(seqs: np.ndarray, observed: np.ndarray | None, name: str = "X") -> np.ndarray:
    """Per-unit mean over observed values, shape (N,), float32.

    Raises
    ------
    OptionError
        A unit that is never observed.
    """
    if observed is None:
        return seqs.mean(axis=(0, 1))
    n_obs = observed.sum(axis=(0, 1))
    never = np.flatnonzero(n_obs == 0)
    if never.size:
        raise OptionError(
            f"{name}: unit(s) at column(s) {never[:10].tolist()} are never observed (mask is all "
            "False); drop them before fitting"
        )
    return (np.where(observed, seqs, 0).sum(axis=(0, 1)) / n_obs).astype(np.float32)


def activity_standardization(
    seqs: np.ndarray, observed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit ``(offset, scale)``, each shape (N,) float32: the mean and std over the
    observed values (a scale of 1 where the std is 0, e.g. a silent unit)."""
    w = np.ones(seqs.shape, dtype=bool) if observed is None else observed
    n_obs = np.maximum(w.sum(axis=(0, 1)), 1)
    x = np.where(w, seqs, 0).astype(np.float64)
    mean = x.sum(axis=(0, 1)) / n_obs
    var = (np.where(w, x - mean, 0) ** 2).sum(axis=(0, 1)) / n_obs
    std = np.sqrt(var)
    scale = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return mean.astype(np.float32), scale.astype(np.float32)


#: ``standardize="auto"``'s working range of ``phi``: the root-mean-square value of a unit
#: above which tanh saturates (raw fluorescence, dF/F in percent, high-rate counts fit
#: nothing), and that of the median unit below which values are tiny next to the model's
#: floors (a noise std of 1e-3 at the start); on the synthetic imaging session, dF/F scaled
#: down to a root-mean-square of 5e-4 recovers its groups as well or better standardized.
SATURATING_RMS = 3.0
VANISHING_RMS = 0.01


def needs_standardization(seqs: np.ndarray, observed: np.ndarray | None) -> bool:
    """Whether activity ``seqs`` (n_trials, T, N) is off ``phi``'s working range: some
    unit's root-mean-square observed value above :data:`SATURATING_RMS` (raw
    fluorescence, dF/F in percent, high-rate counts) or the median unit's below
    :data:`VANISHING_RMS` (tiny dF/F fractions)."""
    w = np.ones(seqs.shape, dtype=bool) if observed is None else observed
    n_obs = np.maximum(w.sum(axis=(0, 1)), 1)
    rms = np.sqrt((np.where(w, seqs, 0).astype(np.float64) ** 2).sum(axis=(0, 1)) / n_obs)
    return bool(rms.max() > SATURATING_RMS or np.median(rms) < VANISHING_RMS)


def check_varies(seqs: np.ndarray, observed: np.ndarray | None, name: str = "X") -> None:
    """Raise OptionError when every unit of ``seqs`` is constant over its observed values
    (e.g. a placeholder trace of ones): there are no dynamics to fit."""
    w = np.ones(seqs.shape, dtype=bool) if observed is None else observed
    lo = np.where(w, seqs, np.inf).min(axis=(0, 1))
    hi = np.where(w, seqs, -np.inf).max(axis=(0, 1))
    if not np.any(hi > lo):
        value = float(lo[0]) if len(lo) else float("nan")
        raise OptionError(
            f"{name}: every one of its {seqs.shape[2]} unit(s) is constant over its observed "
            f"values (unit 0 is {value:g} throughout); there are no dynamics to fit"
        )


def encoded_steps(observed: np.ndarray) -> np.ndarray:
    """Steps whose latent is informed by data, bool (n_trials, T).

    ``z_t`` is read from ``x_{t-1}`` (row 0 from ``x_0``) and explains ``x_t``, so step
    ``t`` counts only when some unit was observed both at ``t`` and at its encoder input.
    """
    any_obs = observed.any(axis=2)
    prev = np.concatenate([any_obs[:, :1], any_obs[:, :-1]], axis=1)
    return any_obs & prev


def blank_unobserved(X: Any, mask: ArrayLike | None) -> Any:
    """Zero the unobserved entries of ``X`` (so NaN may mark them) before validation."""
    if mask is None:
        return X
    m = np.asarray(mask)
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    arr = np.asarray(X, dtype=np.float32) if not isinstance(X, np.ndarray) else X
    if m.dtype != bool or m.shape != arr.shape:
        return X  # observed_like reports the problem
    return np.where(m, arr, np.zeros((), dtype=arr.dtype))


def validate_activity(
    X: ArrayLike | NeuralDataLike,
    inputs: ArrayLike | None,
    mask: ArrayLike | None,
    *,
    n_features: int | None = None,
    poisson: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """The activity, inputs and mask of an estimator call, validated.

    Parameters
    ----------
    X, inputs, mask
        As given to ``fit`` or ``transform``: ``X`` may be a NeuralData, which brings its
        own inputs and mask (see :func:`unpack_neural_data`).
    n_features : int, optional
        Required number of units (the number seen by ``fit``).
    poisson : bool
        Also require non-negative counts (observed values only).

    Returns
    -------
    seqs : numpy.ndarray, shape (n_trials, T, N), float32
        Unobserved values zeroed (not imputed).
    inputs : numpy.ndarray, shape (n_trials, T, N), float32
    observed : numpy.ndarray of bool, shape (n_trials, T, N), or None
        None when every value is observed.
    single : bool
        ``X`` was one (T, N) sequence.
    """
    X, inputs, mask = unpack_neural_data(X, inputs, mask)
    seqs = as_sequences(blank_unobserved(X, mask), "X", n_features=n_features)
    single = np.ndim(X) == 2
    observed = observed_like(mask, seqs)
    if poisson and (impute(seqs, observed, np.zeros(1)) < 0).any():
        raise OptionError("observation='poisson' needs non-negative counts in X")
    return seqs, inputs_like(inputs, seqs), observed, single


def impute(seqs: np.ndarray, observed: np.ndarray | None, fill: np.ndarray) -> np.ndarray:
    """Replace unobserved values by ``fill`` (one value per unit, shape (N,))."""
    if observed is None:
        return seqs
    return np.where(observed, seqs, fill.astype(seqs.dtype))


def smooth_causal(seqs: np.ndarray, tau: float | None) -> np.ndarray:
    """Causal exponential smoothing along time, restarted in every sequence.

    ``s_0 = x_0``, ``s_t = (1 - lam) s_{t-1} + lam x_t`` with
    ``lam = 1 - exp(-1 / tau)``.

    Parameters
    ----------
    seqs : numpy.ndarray, shape (n_trials, T, N)
    tau : float or None
        Time constant in bins; None or 0 returns ``seqs`` unchanged.
    """
    if not tau:
        return seqs
    from scipy.signal import lfilter

    lam = 1.0 - np.exp(-1.0 / tau)
    # first-order IIR filter along time, one C loop; the initial state makes s_0 = x_0
    zi = (1.0 - lam) * seqs[:, :1].astype(np.float64)
    out, _ = lfilter([lam], [1.0, -(1.0 - lam)], seqs, axis=1, zi=zi)
    return out.astype(seqs.dtype)


def lagged(seqs: np.ndarray, tau: float | None) -> np.ndarray:
    """The previous activity each time step is predicted from.

    Row ``t`` holds the (optionally smoothed) activity at ``t - 1``; row 0 of
    every sequence uses ``x_0`` itself, as it has no predecessor.

    Returns
    -------
    numpy.ndarray, shape (n_trials, T, N)
    """
    s = smooth_causal(seqs, tau)
    return np.concatenate([s[:, :1], s[:, :-1]], axis=1)


@dataclass
class Transitions:
    """Training samples ``(x_{t-1} -> x_t)`` as device tensors.

    Attributes
    ----------
    prev : torch.Tensor, shape (M, N)
        Lagged (optionally smoothed) activity, before the nonlinearity.
    curr : torch.Tensor, shape (M, N)
        Activity to explain.
    inputs : torch.Tensor, shape (M, N)
        External input at the current step.
    weight : torch.Tensor or None, shape (M, N)
        1.0 where ``curr`` was observed, 0.0 where it was imputed; None when
        everything was observed.
    """

    prev: torch.Tensor
    curr: torch.Tensor
    inputs: torch.Tensor
    weight: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.prev.shape[0]

    def subset(self, idx: torch.Tensor) -> Transitions:
        w = None if self.weight is None else self.weight[idx]
        return Transitions(self.prev[idx], self.curr[idx], self.inputs[idx], w)

    def split(self, fraction: float, seed: int) -> tuple[Transitions, Transitions]:
        """(kept, held out): a random ``fraction`` of the samples (at least one) held out."""
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        n_held = max(1, round(fraction * len(self)))
        perm = perm.to(self.prev.device)
        return self.subset(perm[n_held:]), self.subset(perm[:n_held])


def make_transitions(
    seqs: np.ndarray,
    u: np.ndarray,
    tau: float | None,
    device: torch.device,
    step_mask: np.ndarray | None = None,
    observed: np.ndarray | None = None,
    fill: np.ndarray | None = None,
) -> Transitions:
    """Collect every within-sequence transition whose target step is selected.

    Parameters
    ----------
    seqs, u : numpy.ndarray, shape (n_trials, T, N)
    tau : float or None
        Smoothing time constant of the lagged activity, in bins.
    step_mask : numpy.ndarray of bool, shape (n_trials, T), optional
        Which target steps ``t`` to use; step 0 never is (it has no predecessor).
    observed : numpy.ndarray of bool, shape (n_trials, T, N), optional
        Element-wise observation mask.  Unobserved values are replaced by
        ``fill`` (as encoder input) and weighted 0 in the likelihood; a step is
        a target only if some unit was observed at it and at the step before
        (see :func:`encoded_steps`).
    fill : numpy.ndarray, shape (N,), optional
        Value per unit for unobserved entries (required with ``observed``).
    """
    keep = np.ones(seqs.shape[:2], dtype=bool) if step_mask is None else step_mask.copy()
    keep[:, 0] = False
    weight = None
    if observed is not None:
        keep &= encoded_steps(observed)
        seqs = impute(seqs, observed, fill)
        weight = observed[keep].astype(seqs.dtype)
    prev = lagged(seqs, tau)[keep]
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device)  # noqa: E731
    return Transitions(
        as_t(prev), as_t(seqs[keep]), as_t(u[keep]), None if weight is None else as_t(weight)
    )
