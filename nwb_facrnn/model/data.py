"""Input validation and the transition samples a FacRNN is trained on.

A FacRNN is a one-step model: its encoder reads the previous activity
``x_{t-1}`` and its decoder explains ``x_t``.  Every (previous, current) pair
inside a sequence is one training sample, so a dataset of ``n_trials``
sequences of ``T`` bins holds ``n_trials * (T - 1)`` samples and no sample
crosses a trial boundary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
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
    flat = seqs.reshape(-1, seqs.shape[2])
    step = block_rows(seqs.shape[2])
    for i in range(0, len(flat), step):  # by blocks: no full-size temporary
        if np.isfinite(flat[i : i + step]).all():
            continue
        bad = ~np.isfinite(seqs)
        where = np.argwhere(bad)[0]
        raise OptionError(
            f"{name} contains {int(bad.sum())} NaN or inf value(s) (first at index "
            f"{tuple(int(i) for i in (where if arr.ndim == 3 else where[1:]))}); "
            "all values must be finite"
        )
    return np.ascontiguousarray(seqs)


def inputs_like(
    inputs: ArrayLike | None, seqs: np.ndarray, name: str = "inputs"
) -> np.ndarray | None:
    """Validate external input ``u`` against activity sequences.

    Parameters
    ----------
    inputs : array, shape like the activity, or None
        External input ``u_t`` added to each unit (same shape as ``X``).
    seqs : numpy.ndarray, shape (n_trials, T, N)
        The validated activity.

    Returns
    -------
    numpy.ndarray, shape (n_trials, T, N), float32, or None
        None when ``inputs`` is None (no external input: nothing is allocated).
    """
    if inputs is None:
        return None
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


#: Rows (time bins) per block of the passes over the activity (statistics, the linear start,
#: latents): about 8 MB of float32 per block whatever N, so a pass never copies the data.
BLOCK_BYTES = 1 << 23


def block_rows(n_units: int) -> int:
    """Rows of ``n_units`` float32 values per block (:data:`BLOCK_BYTES`), at least 1024."""
    return max(1024, BLOCK_BYTES // (4 * max(n_units, 1)))


def row_blocks(
    seqs: np.ndarray, observed: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Consecutive blocks of rows of ``seqs`` (n_trials, T, N), each ``(values, observed)``
    of shape (rows, N), views where possible (``observed`` None when all is observed).

    ``seqs`` may also be a :class:`~.chunked.ChunkedActivity`, read block by block.
    """
    reader = getattr(seqs, "read_rows", None)
    n = seqs.shape[-1]
    step = block_rows(n)
    if reader is not None:  # lazily read (T, N) activity, all observed
        for i in range(0, seqs.shape[1], step):
            yield reader(i, min(i + step, seqs.shape[1])), None
        return
    flat = seqs.reshape(-1, n)
    w = None if observed is None else observed.reshape(-1, n)
    for i in range(0, len(flat), step):
        yield flat[i : i + step], None if w is None else w[i : i + step]


def _observed_moments(
    seqs: np.ndarray, observed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per unit: observed count, sum and sum of squares (float64, shape (N,)), by blocks.

    Chunked sequences (read from disk) keep them (``seqs.moments``): one read of the file.
    """
    if observed is None and getattr(seqs, "moments", None) is not None:
        return seqs.moments
    n = seqs.shape[-1]
    count, total, squares = np.zeros(n), np.zeros(n), np.zeros(n)
    for x, w in row_blocks(seqs, observed):
        x = x.astype(np.float64)
        if w is not None:
            x = np.where(w, x, 0.0)
            count += w.sum(0)
        else:
            count += len(x)
        total += x.sum(0)
        squares += np.einsum("ij,ij->j", x, x)
    if observed is None and hasattr(seqs, "moments"):
        seqs.moments = (count, total, squares)
    return count, total, squares


def observed_mean(seqs: np.ndarray, observed: np.ndarray | None, name: str = "X") -> np.ndarray:
    """Per-unit mean over observed values, shape (N,), float32.

    Raises
    ------
    OptionError
        A unit that is never observed.
    """
    count, total, _ = _observed_moments(seqs, observed)
    never = np.flatnonzero(count == 0)
    if never.size:
        raise OptionError(
            f"{name}: unit(s) at column(s) {never[:10].tolist()} are never observed (mask is all "
            "False); drop them before fitting"
        )
    return (total / count).astype(np.float32)


def activity_standardization(
    seqs: np.ndarray, observed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit ``(offset, scale)``, each shape (N,) float32: the mean and std over the
    observed values (a scale of 1 where the std is 0, e.g. a silent unit)."""
    count, total, _ = _observed_moments(seqs, observed)
    n_obs = np.maximum(count, 1)
    mean = total / n_obs
    var = np.zeros_like(mean)  # second pass about the mean: no cancellation
    for x, w in row_blocks(seqs, observed):
        d = x.astype(np.float64) - mean
        if w is not None:
            d = np.where(w, d, 0.0)
        var += np.einsum("ij,ij->j", d, d)
    std = np.sqrt(var / n_obs)
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
    count, _, squares = _observed_moments(seqs, observed)
    rms = np.sqrt(squares / np.maximum(count, 1))
    return bool(rms.max() > SATURATING_RMS or np.median(rms) < VANISHING_RMS)


def check_varies(seqs: np.ndarray, observed: np.ndarray | None, name: str = "X") -> None:
    """Raise OptionError when every unit of ``seqs`` is constant over its observed values
    (e.g. a placeholder trace of ones): there are no dynamics to fit."""
    n = seqs.shape[-1]
    lo, hi = np.full(n, np.inf, np.float32), np.full(n, -np.inf, np.float32)
    for x, w in row_blocks(seqs, observed):
        if w is not None:
            lo = np.minimum(lo, np.where(w, x, np.inf).min(0))
            hi = np.maximum(hi, np.where(w, x, -np.inf).max(0))
        elif len(x):
            lo, hi = np.minimum(lo, x.min(0)), np.maximum(hi, x.max(0))
        if np.any(hi > lo):
            return
    value = float(lo[0]) if len(lo) else float("nan")
    raise OptionError(
        f"{name}: every one of its {n} unit(s) is constant over its observed "
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
    if m.dtype == bool and m.all():
        return X  # nothing to blank: no copy of the activity
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
    from .chunked import chunked_activity, is_array_like  # (chunked imports this module)

    if is_array_like(X):  # on disk: read by chunks, never all at once
        return chunked_activity(X, inputs, mask, n_features, poisson), None, None, True
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


def step_blocks(shape: tuple[int, ...]) -> Iterator[tuple[int, int, int]]:
    """``(trial, t0, t1)`` of the blocks of steps that :func:`prev_blocks` yields for
    activity of ``shape`` (n_trials, T, N)."""
    n_trials, n_steps, n_units = shape
    step = block_rows(n_units)
    for trial in range(n_trials):
        for t0 in range(0, n_steps, step):
            yield trial, t0, min(t0 + step, n_steps)


def prev_blocks(seqs: np.ndarray, tau: float | None) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """The encoder input of every step, by blocks: ``(trial, t0, t1, prev)`` with ``prev``
    (t1 - t0, N) the lagged (optionally smoothed) activity of steps ``t0 .. t1 - 1``
    (step 0 reads ``x_0`` itself), as :func:`lagged` but without copying the data.

    ``seqs`` is (n_trials, T, N), or a :class:`~.chunked.ChunkedActivity` read by blocks.
    """
    reader = getattr(seqs, "read_rows", None)
    if reader is not None and tau:
        raise OptionError("smoothing is not available for chunked activity; read it into memory")
    lag = None
    for trial, t0, t1 in step_blocks(seqs.shape):
        if reader is None and t0 == 0:
            lag = smooth_causal(seqs[trial : trial + 1], tau)[0]
        lo = max(t0 - 1, 0)
        rows = reader(lo, t1 - 1) if reader is not None else lag[lo : t1 - 1]
        if t0 == 0:  # step 0 has no predecessor: x_0 itself
            first = reader(0, 1) if reader is not None else lag[:1]
            rows = np.concatenate([first, rows])
        yield trial, t0, t1, rows


@dataclass
class Transitions:
    """Training samples ``(x_{t-1} -> x_t)`` as device tensors.

    For one continuous sequence without smoothing or a step mask, ``prev`` and ``curr``
    are views of the activity itself (rows ``0 .. T-2`` and ``1 .. T-1``): holding the
    samples costs no copy of the data.

    Attributes
    ----------
    prev : torch.Tensor, shape (M, N)
        Lagged (optionally smoothed) activity, before the nonlinearity.
    curr : torch.Tensor, shape (M, N)
        Activity to explain.
    inputs : torch.Tensor or None, shape (M, N)
        External input at the current step; None when there is none (zero).
    weight : torch.Tensor or None, shape (M, N)
        1.0 where ``curr`` was observed, 0.0 where it was imputed; None when
        everything was observed.
    """

    prev: torch.Tensor
    curr: torch.Tensor
    inputs: torch.Tensor | None = None
    weight: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.prev.shape[0]

    @property
    def device(self) -> torch.device:
        return self.prev.device

    def subset(self, idx: torch.Tensor | slice) -> Transitions:
        """The samples ``idx`` (indices, or a slice: then views)."""
        return Transitions(
            self.prev[idx],
            self.curr[idx],
            None if self.inputs is None else self.inputs[idx],
            None if self.weight is None else self.weight[idx],
        )

    def split(self, fraction: float, seed: int) -> tuple[Transitions, Transitions]:
        """(kept, held out): a random ``fraction`` of the samples (at least one) held out."""
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        n_held = max(1, round(fraction * len(self)))
        perm = perm.to(self.prev.device)
        return self.subset(perm[n_held:]), self.subset(perm[:n_held])

    # the interface the training loop shares with chunked.ChunkedTransitions
    def windows(self, gen: torch.Generator) -> Iterator[Transitions]:
        """The parts of the samples that are in memory at once, in a random order drawn
        from ``gen``: here all of them, one window (``gen`` is not used)."""
        yield self

    def batches_per_epoch(self, batch_size: int) -> int:
        """Minibatches of at most about ``batch_size`` samples in one pass."""
        return max(1, math.ceil(len(self) / batch_size))

    def blocks(self, rows: int | None = None) -> Iterator[Transitions]:
        """Consecutive blocks of samples (views), for passes over all of them."""
        step = rows or block_rows(self.prev.shape[1])
        for i in range(0, len(self), step):
            yield self.subset(slice(i, i + step))

    def sample(self, n: int, seed: int) -> Transitions:
        """At most ``n`` samples drawn at random without replacement (all when fewer)."""
        if len(self) <= n:
            return self
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.subset(perm[:n].sort().values.to(self.device))


def make_transitions(
    seqs: np.ndarray,
    u: np.ndarray | None,
    tau: float | None,
    device: torch.device,
    step_mask: np.ndarray | None = None,
    observed: np.ndarray | None = None,
    fill: np.ndarray | None = None,
) -> Transitions:
    """Collect every within-sequence transition whose target step is selected.

    Parameters
    ----------
    seqs : numpy.ndarray, shape (n_trials, T, N)
    u : numpy.ndarray, shape (n_trials, T, N), or None
        External inputs; None for none.
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
    if hasattr(seqs, "read_rows"):  # chunked activity: loaded window by window
        from .chunked import ChunkedTransitions

        if tau or u is not None or observed is not None:
            raise OptionError("a chunked fit takes no smoothing, inputs or mask")
        if step_mask is not None and not step_mask[:, 1:].all():
            raise OptionError("a chunked fit trains on every step: step_mask must be all True")
        return ChunkedTransitions(seqs, device)
    keep = np.ones(seqs.shape[:2], dtype=bool) if step_mask is None else step_mask.copy()
    keep[:, 0] = False
    weight = None
    if observed is not None:
        keep &= encoded_steps(observed)
        seqs = impute(seqs, observed, fill)
    lag = smooth_causal(seqs, tau)
    # row t's sample reads x_{t-1}; step 0 is never a target, so only steps 1.. are picked
    target = keep[:, 1:]
    if len(seqs) == 1 and target.all():  # one sequence, every step: views, no copy
        pick_prev = lambda a: a[0, :-1]  # noqa: E731
        pick_curr = lambda a: a[0, 1:]  # noqa: E731
    else:
        pick_prev = lambda a: a[:, :-1][target]  # noqa: E731
        pick_curr = lambda a: a[:, 1:][target]  # noqa: E731
    if observed is not None:
        weight = pick_curr(observed).astype(seqs.dtype)
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device)  # noqa: E731
    return Transitions(
        as_t(pick_prev(lag)),
        as_t(pick_curr(seqs)),
        None if u is None else as_t(pick_curr(u)),
        None if weight is None else as_t(weight),
    )
