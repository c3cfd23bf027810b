"""The FacRNN estimator (scikit-learn conventions)."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import OptionError, UserError
from . import axes, baselines, generative, hyperparams, launch, persistence
from .data import (
    ArrayLike,
    NeuralDataLike,
    Transitions,
    activity_standardization,
    check_varies,
    encoded_steps,
    impute,
    make_transitions,
    observed_mean,
    prev_blocks,
    step_mask_like,
    validate_activity,
)
from .modules import LowRankRNNVAE
from .persistence import SAVE_FORMAT, ModelState
from .training import TERMS, Objective, Problem, TrainOptions

__all__ = ["SAVE_FORMAT", "FacRNN", "ModelState", "NotFittedError"]


class NotFittedError(UserError, RuntimeError, AttributeError):
    """A fitted attribute or method was used before ``fit`` (``hasattr`` is False)."""


class FacRNN:
    """Factorized low-rank RNN (Li et al., ICML 2026) trained as a VAE.

    The generative model is the low-rank RNN::

        z_t = B phi(x_{t-1}) + b + sigma_q * eps      (latent update)
        x_t = f(A z_t + a + u_t) + noise               (activity)

    with rank-``K`` connectivity ``W = A B`` and ``K = n_groups * group_rank``
    latent dims; dims ``[g*H, (g+1)*H)`` form group ``g``.  The objective per
    sample is ``NLL + KL + beta * PC + alpha * BD``: PC is the partial
    correlation between groups of the aggregated posterior (groups made
    independent of each other, entangled inside), BD the block-diagonal
    penalty of the bdRNN baseline.

    Parameters
    ----------
    n_groups : int
        ``G``, number of independent latent groups.
    group_rank : int
        ``H``, rank (latent dims) of each group.
    beta : float
        Weight of the partial-correlation penalty.
    alpha : float
        Weight of the block-diagonal penalty on ``J = B A`` (bdRNN).
    observation : {"gaussian", "poisson"}
        Gaussian with a learned per-unit std (rates, dF/F), or Poisson spike
        counts with rate ``softplus(A z + a + u)``.
    encoder, decoder : {"linear", "mlp"}
        ``"mlp"`` replaces ``B`` or ``A`` by a one-hidden-layer MLP (FacRNN-MLP).
    output_activation : {None, "relu", "softplus"}
        ``f`` on the Gaussian decoder's mean (the paper uses ReLU on monkey data).
    nonlinearity : {"tanh", "identity"}
        ``phi``.
    standardize : {"auto", "always", "never"}
        ``"always"`` fits the model to every unit standardized by its mean and
        std over its observed values (kept as :attr:`activity_offset_` and
        :attr:`activity_scale_`), so that ``phi`` works on the same scale
        whatever the data's units: raw fluorescence around 450, dF/F in
        percent or in small fractions, spike counts at high rates.
        ``"auto"`` (the default) does so when the activity is off ``phi``'s
        working range (:func:`~nwb_facrnn.model.data.needs_standardization`:
        some unit's root-mean-square value above 3, or the median unit's
        below 0.01) and fits it as it is otherwise, since a standardized model
        no longer contains a network that was simulated in the data's units.
        ``"never"`` fits the values as they are.  ``transform``,
        ``predict``, ``simulate`` and ``score`` take and return activity in
        the data's own units; the learned ``A``, ``a``, ``B`` and ``W`` are in
        the standardized units (so one unit's weights compare with another's).
        With an output activation the mean is only scaled (never shifted), so
        it stays non-negative; Poisson counts stay counts (only the encoder's
        input is standardized).
    smoothing : float, optional
        Time constant (bins) of a causal exponential smoothing of the lagged
        activity before ``phi``; useful for spike counts.
    hidden_size : int
        Width of MLP hidden layers.
    penalty : {"partial", "total"}
        ``"total"`` penalizes the total correlation (every dim its own group,
        FacRNN-full); dims are then grouped by dependence after fitting.
    postprocess : {None, "ica", "svd"}
        Post-hoc latent transform: FastICA (lrRNN+ICA) or the SVD
        factorization of ``W`` (LINT).
    init : {"auto", "ica", "pca"}
        Start of every restart, from the reduced-rank regression of ``x_t`` on
        ``phi(x_{t-1})``: its FastICA components grouped by dependence
        (``"ica"``; restart ``r`` takes the ``r``-th best grouping) or its
        principal axes and random rotations of them (``"pca"``).  ``"auto"``: ``"ica"`` when an
        independence penalty is used (``beta > 0``) with linear encoder and
        decoder, else ``"pca"``.
    n_init : int
        Restarts trained together in one batched model; the one with the best
        final training objective is kept (as scikit-learn's KMeans does).
    successive_halving : bool
        Drop the restarts that are clearly losing early: after a quarter and
        after half of the steps, only the better half (by the objective on a
        fixed sample of 2048 transitions) trains on, so 4 restarts cost about
        twice one fit, not four times.  Each restart draws its noise as if all
        were trained, so a kept restart ends exactly as without halving.
        Dropped restarts have NaN in ``init_objectives_``.  Not with
        ``early_stopping``.
    max_epochs, max_steps : int or None
        How long to train: passes over all transitions, and optimisation steps
        (minibatches), at most; training stops at whichever limit comes first.
        Given neither (the default), the budget is 100 epochs or 2000 steps,
        whichever comes first: a short recording (under 20 minibatches per
        epoch, e.g. the paper's 2000 bins) trains its 100 epochs as FacRNN
        always did, and a long one stops after 2000 steps, all its fit needs
        whatever its length (a 200 000-bin session recovers its groups within
        one pass).  ``max_epochs`` alone trains exactly that many epochs;
        ``max_steps`` alone, exactly that many steps.
    batch_size, learning_rate :
        Adam settings (a cosine schedule lowers the rate to 1 % of
        ``learning_rate``, once per epoch, or in 100 stages when the step budget
        ends the fit).
    early_stopping : bool
        Hold out ``validation_fraction`` of the transitions and stop when no
        restart improved its held-out objective for ``n_iter_no_change`` rows of
        the history (epochs, or hundredths of a step-limited fit).
    seed : int
        Makes the fit reproducible (on CPU, bit for bit).
    device : {"auto", "cpu", "cuda", ...}
        ``"auto"`` uses CUDA when available.
    devices : int
        Processes to train with, data-parallel (``torch.distributed``): every
        process holds all the data and computes its part of every minibatch,
        and the gradients are summed, so the fit equals the one-process fit
        within float tolerance (see :mod:`nwb_facrnn.model.distributed`).  On
        ``cuda:i``, rank ``r`` trains on ``cuda:(i + r)`` (``nccl``); on the
        CPU, ``devices`` processes share the cores (``gloo``).  ``1`` (the
        default) trains in this process.  With ``devices > 1`` a script must
        guard its entry point with ``if __name__ == "__main__":`` (workers are
        started with the spawn method).  Under ``torchrun`` (or in an
        initialised process group), ``devices`` equal to the world size trains
        across the launched processes instead of spawning (each process calls
        ``fit`` with the same data and gets the same model; ``device="auto"``
        or ``"cuda"`` then means ``cuda:LOCAL_RANK``), and ``devices=1`` fits
        independently in every process.
    progress : bool
        Show a progress bar with the loss terms.

    Attributes
    ----------
    output_loadings_ : numpy.ndarray, shape (N, K)
        ``A`` (linear decoder only).
    input_loadings_ : numpy.ndarray, shape (K, N)
        ``B`` (linear encoder only).
    output_bias_ : (N,), latent_bias_ : (K,)
        ``a`` and ``b``.
    noise_std_ : numpy.ndarray, shape (N,)
        Per-unit Gaussian noise std (Gaussian observation only).
    latent_std_ : float
        ``sigma_q = n_samples_ ** (-1 / (K + 4))``.
    activity_offset_, activity_scale_ : numpy.ndarray, shape (N,)
        The standardization the model works in, ``(x - offset) / scale``
        (0 and 1 when not standardized; see ``standardized_``).
    standardized_ : bool
        Whether the fit standardized the activity.
    observed_mean_ : numpy.ndarray, shape (N,)
        Each unit's mean over its observed values; stands in for unobserved
        values (see ``mask``) as encoder input.
    history_ : dict of numpy.ndarray
        ``total, reconstruction, kl, pc, bd`` of the kept restart (and
        ``validation`` with early stopping), one value per row of
        ``steps_per_row_`` steps: per epoch, or per hundredth of a fit that the
        step budget ends.
    init_objectives_ : numpy.ndarray, shape (n_init,)
        Final objective of every restart (NaN for one dropped by
        ``successive_halving``); ``best_init_`` indexes the kept one.
    n_features_in_, n_samples_, n_epochs_, stopped_early_, fit_time_ :
        Units, training transitions, passes over them begun (the last may be
        partial), whether early stopping ended the fit, seconds spent in ``fit``.
    n_steps_, samples_seen_, samples_per_second_, steps_per_row_ :
        Optimisation steps taken, training samples they used (every restart
        sees the same ones), their rate during training, and the steps per
        row of ``history_``.
    """

    def __init__(
        self,
        n_groups: int = 2,
        group_rank: int = 3,
        beta: float = 20.0,
        alpha: float = 0.0,
        observation: str = "gaussian",
        encoder: str = "linear",
        decoder: str = "linear",
        output_activation: str | None = None,
        nonlinearity: str = "tanh",
        standardize: str = "auto",
        smoothing: float | None = None,
        hidden_size: int = 64,
        penalty: str = "partial",
        postprocess: str | None = None,
        init: str = "auto",
        n_init: int = 4,
        successive_halving: bool = True,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 50,
        seed: int = 0,
        device: str = "auto",
        devices: int = 1,
        progress: bool = True,
    ):
        self.n_groups = n_groups
        self.group_rank = group_rank
        self.beta = beta
        self.alpha = alpha
        self.observation = observation
        self.encoder = encoder
        self.decoder = decoder
        self.output_activation = output_activation
        self.nonlinearity = nonlinearity
        self.standardize = standardize
        self.smoothing = smoothing
        self.hidden_size = hidden_size
        self.penalty = penalty
        self.postprocess = postprocess
        self.init = init
        self.n_init = n_init
        self.successive_halving = successive_halving
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.seed = seed
        self.device = device
        self.devices = devices
        self.progress = progress

    # ------------------------------------------------------------------ params
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters, as scikit-learn's ``get_params``."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> FacRNN:
        """Set hyperparameters; unknown names raise OptionError (a ValueError)."""
        for k, v in params.items():
            if k not in self._param_names():
                raise OptionError(f"unknown FacRNN parameter {k!r}; known: {self._param_names()}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) != v]
        return f"FacRNN({', '.join(changed)})"

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FacRNN:
        """A paper method by name, with hyperparameter overrides.

        Parameters
        ----------
        name : {"lrRNN", "lrRNN+ICA", "LINT", "bdRNN", "FacRNN-full", "FacRNN"}
        **overrides
            Any constructor argument, e.g. ``n_groups=2, group_rank=3`` so that
            every method has ``K = 6`` and is evaluated with the same groups.
        """
        if name not in baselines.PRESETS:
            raise OptionError(f"unknown preset {name!r}; choose one of {list(baselines.PRESETS)}")
        return cls(**{**baselines.PRESETS[name], **overrides})

    @property
    def n_latents(self) -> int:
        """``K = n_groups * group_rank``."""
        return self.n_groups * self.group_rank

    def _validate_params(self) -> None:
        hyperparams.check_params(self.get_params())

    def _torch_device(self) -> torch.device:
        return hyperparams.torch_device(self.device)

    # --------------------------------------------------------------------- fit
    def fit(
        self,
        X: ArrayLike | NeuralDataLike,
        inputs: ArrayLike | None = None,
        step_mask: ArrayLike | None = None,
        mask: ArrayLike | None = None,
        *,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> FacRNN:
        """Fit the model.

        Parameters
        ----------
        X : array, shape (T, N) or (n_trials, T, N), NeuralData, or on-disk (T, N) array
            Binned spike counts, rates or dF/F traces; no transition crosses a
            trial boundary.  A :class:`~nwb_facrnn.NeuralData` (from
            :func:`~nwb_facrnn.read_nwb`) brings its own ``mask`` and ``inputs``.
            An h5py / Zarr dataset, a ``numpy.memmap`` or a
            :class:`~nwb_facrnn.model.chunked.ChunkedActivity` (also as a NeuralData's
            activity) is never read whole: the fit reads it chunk by chunk and draws its
            minibatches window by window (one sequence, every value observed, no inputs,
            no smoothing; see :mod:`nwb_facrnn.model.chunked`).
        inputs : array, same shape as X, optional
            External input ``u_t`` added to every unit's drive.
        step_mask : bool array, shape (T,) or (n_trials, T), optional
            Which time steps are training targets, e.g. the even steps of the
            paper's interleaved train/test split.
        mask : bool array, same shape as X, optional
            True where a value was observed.  Unobserved values (a unit
            outside its ``obs_intervals``, padding after a short trial; they
            may be NaN) are left out of the likelihood and replaced by the
            unit's observed mean (:attr:`observed_mean_`) as encoder input.
            A step is trained on only if some unit was observed at it and at
            the step before.
        callback : callable, optional
            Called after every epoch as ``callback(epoch, terms)`` with the epoch
            index (from 0) and a dict of the loss terms (``TERMS``) of the restart
            with the lowest objective in that epoch.  An exception it raises stops the fit and
            propagates (a GUI uses this to cancel a fit).

        Returns
        -------
        self
        """
        self._validate_params()
        poisson = self.observation == "poisson"
        seqs, u, observed, _ = validate_activity(X, inputs, mask, poisson=poisson)
        step = step_mask_like(step_mask, seqs)
        plan = launch.plan(self.devices, self._torch_device())
        device = plan.device
        start = time.perf_counter()
        self.observed_mean_ = observed_mean(seqs, observed)
        check_varies(seqs, observed)
        data = make_transitions(
            seqs, u, self.smoothing, device, step, observed, self.observed_mean_
        )
        if not isinstance(data, Transitions) and (self.devices > 1 or self.early_stopping):
            raise OptionError(
                "chunked activity is fit in one process without early stopping "
                f"(devices={self.devices}, early_stopping={self.early_stopping})"
            )
        if len(data) < 2:
            raise OptionError(
                f"X has {len(data)} training transition(s); at least 2 are needed "
                "(check T and step_mask)"
            )
        validation = None
        if self.early_stopping:
            data, validation = data.split(self.validation_fraction, self.seed)

        k = self.n_latents
        if k > seqs.shape[2]:
            raise OptionError(
                f"n_groups x group_rank = {self.n_groups} x {self.group_rank} = {k} latents "
                f"need at least {k} units; X has {seqs.shape[2]}: lower n_groups or group_rank"
            )
        self.n_features_in_ = seqs.shape[2]
        self.n_samples_ = len(data)
        self.latent_std_ = float(self.n_samples_ ** (-1.0 / (k + 4)))
        module = self._new_module(self.n_init).to(device)
        if hyperparams.standardizes(self.standardize, seqs, observed):
            module.set_standardization(*activity_standardization(seqs, observed))
        self._initialize(module, data)
        objective = self._objective()
        options = TrainOptions(
            max_epochs=self.max_epochs,
            max_steps=self.max_steps,
            halving=bool(self.successive_halving),
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            n_iter_no_change=self.n_iter_no_change,
            progress=self.progress,
        )
        result = plan.run(
            Problem(module, objective, data, validation),
            options,
            self._module_kwargs(self.n_init),
            None if callback is None else launch.per_epoch(callback),
        )
        finite = np.isfinite(result.final[0])
        if not finite.any():
            raise RuntimeError(
                "every restart diverged (non-finite objective); lower learning_rate "
                f"(now {self.learning_rate}) or check the scale of X"
            )
        best = int(np.argmin(np.where(finite, result.final[0], np.inf)))
        self.init_objectives_ = result.final[0]
        self.best_init_ = best
        self.history_ = {t: result.history[:, i, best] for i, t in enumerate(TERMS)}
        if result.val_history is not None:
            self.history_["validation"] = result.val_history[:, best]
        self.n_epochs_ = result.n_epochs
        self.n_steps_ = result.n_steps
        self.samples_seen_ = result.samples_seen
        self.samples_per_second_ = result.samples_seen / max(result.train_time, 1e-9)
        self.steps_per_row_ = result.steps_per_row
        self.stopped_early_ = result.stopped_early
        self.module_ = self._new_module(1).to(device)
        self.module_.load_state_dict(module.select(best))
        self.module_.eval()
        self._postprocess(data)
        self.fit_time_ = time.perf_counter() - start
        return self

    def _module_kwargs(self, n_copies: int) -> dict[str, Any]:
        return hyperparams.module_kwargs(self.get_params(), n_copies, self.n_features_in_)

    def _new_module(self, n_copies: int) -> LowRankRNNVAE:
        return LowRankRNNVAE(**self._module_kwargs(n_copies))

    def _initialize(self, module: LowRankRNNVAE, data: Transitions) -> None:
        """Start every restart from the reduced-rank regression of the data
        (:func:`~.axes.initialize`, in the axes ``init`` chooses)."""
        kind = hyperparams.init_kind(self.get_params())
        axes.initialize(module, data, self.n_groups, self.group_rank, self.seed, kind)

    def _objective(self) -> Objective:
        return Objective(
            sigma=self.latent_std_,
            dataset_size=self.n_samples_,
            pc_groups=self.n_latents if self.penalty == "total" else self.n_groups,
            bd_groups=self.n_groups,
            beta=float(self.beta),
            alpha=float(self.alpha),
        )

    def _postprocess(self, data: Transitions) -> None:
        """Apply ICA / SVD transforms and group dims where training did not."""
        regroup = self.penalty == "total" and self.n_groups < self.n_latents
        axes.postprocess(
            self.module_, data, self.n_groups, self.group_rank, self.seed, self.postprocess, regroup
        )

    # --------------------------------------------------------------- inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError("this FacRNN is not fitted yet; call fit(X) first")

    def _prepare(
        self, X: ArrayLike | NeuralDataLike, inputs: ArrayLike | None, mask: ArrayLike | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
        """Validated (seqs, inputs, observed, single) with unobserved values imputed."""
        self._check_fitted()
        seqs, u, observed, single = validate_activity(
            X, inputs, mask, n_features=self.n_features_in_
        )
        return impute(seqs, observed, self.observed_mean_), u, observed, single

    def _device(self) -> torch.device:
        return next(self.module_.parameters()).device

    def transform(
        self,
        X: ArrayLike | NeuralDataLike,
        inputs: ArrayLike | None = None,
        mask: ArrayLike | None = None,
    ) -> np.ndarray:
        """Posterior-mean latents.

        Row ``t`` is ``z_t = B phi(x_{t-1}) + b``; row 0 of every sequence uses
        ``x_0`` itself as its previous activity.

        Parameters
        ----------
        X : array, shape (T, N) or (n_trials, T, N), or NeuralData
        inputs : ignored by the encoder; accepted for symmetry with ``fit``.
        mask : bool array, same shape as X, optional
            True where observed; unobserved values are replaced by
            :attr:`observed_mean_`.  Time steps where no unit was observed,
            at the step or at its encoder input (e.g. padding after a short
            trial, a dropped frame), get NaN latents.

        Returns
        -------
        numpy.ndarray, shape (T, K) or (n_trials, T, K), float32
        """
        seqs, _, observed, single = self._prepare(X, inputs, mask)
        z = self._latents(seqs)
        if observed is not None:
            z[~encoded_steps(observed)] = np.nan
        return z[0] if single else z

    @torch.no_grad()
    def _latents(self, seqs: np.ndarray) -> np.ndarray:
        """Posterior means (n_trials, T, K), float32, encoded block by block."""
        z = np.empty((*seqs.shape[:2], self.n_latents), dtype=np.float32)
        for trial, t0, t1, prev in prev_blocks(seqs, self.smoothing):
            block = torch.as_tensor(np.ascontiguousarray(prev), device=self._device())
            z[trial, t0:t1] = self.module_.encode(block)[0].cpu().numpy()
        return z

    def fit_transform(
        self, X: ArrayLike | NeuralDataLike, inputs: ArrayLike | None = None, **kw: Any
    ) -> np.ndarray:
        """``fit(X, inputs, **kw).transform(X, inputs, mask)``."""
        return self.fit(X, inputs, **kw).transform(X, inputs, kw.get("mask"))

    def predict(
        self,
        X: ArrayLike | NeuralDataLike,
        inputs: ArrayLike | None = None,
        mask: ArrayLike | None = None,
    ) -> np.ndarray:
        """One-step-ahead prediction of the activity (Gaussian mean or Poisson rate).

        Returns the same shape as ``X``; row ``t`` predicts ``x_t`` from ``x_{t-1}``
        (unobserved inputs imputed as in :meth:`transform`).
        """
        seqs, u, _, single = self._prepare(X, inputs, mask)
        out = np.empty(seqs.shape, dtype=np.float32)
        for trial, t0, t1, pred in self._predicted_blocks(seqs, u):
            out[trial, t0:t1] = pred
        return out[0] if single else out

    def predict_blocks(
        self,
        X: ArrayLike | NeuralDataLike,
        inputs: ArrayLike | None = None,
        mask: ArrayLike | None = None,
    ) -> Iterator[tuple[int, int, int, np.ndarray]]:
        """:meth:`predict` block by block, for scoring long recordings without a full copy.

        Yields
        ------
        trial, t0, t1 : int
            The block is steps ``t0 .. t1 - 1`` of sequence ``trial`` (0 for a (T, N) ``X``).
        prediction : numpy.ndarray, shape (t1 - t0, N), float32
        """
        seqs, u, _, _ = self._prepare(X, inputs, mask)
        yield from self._predicted_blocks(seqs, u)

    @torch.no_grad()
    def _predicted_blocks(
        self, seqs: np.ndarray, u: np.ndarray | None
    ) -> Iterator[tuple[int, int, int, np.ndarray]]:
        dev = self._device()
        for trial, t0, t1, prev in prev_blocks(seqs, self.smoothing):
            z = self.module_.encode(torch.as_tensor(np.ascontiguousarray(prev), device=dev))
            u_b = None if u is None else torch.as_tensor(u[trial, t0:t1], device=dev)
            yield trial, t0, t1, self.module_.decode(z, u_b)[0].cpu().numpy()

    def score(
        self,
        X: ArrayLike | NeuralDataLike,
        inputs: ArrayLike | None = None,
        step_mask: ArrayLike | None = None,
        n_samples: int = 256,
        mask: ArrayLike | None = None,
    ) -> float:
        """Mean one-step predictive log-likelihood ``log p(x_t | x_{t-1})`` in nats per step.

        The latent noise ``sigma_q`` is integrated out: in closed form for a
        linear Gaussian decoder (``x_t ~ N(A mu_t + a + u_t, diag(s^2) + sigma_q^2 A A^T)``),
        else by Monte Carlo with ``n_samples`` draws (fixed seed).

        Parameters
        ----------
        step_mask : bool array, shape (T,) or (n_trials, T), optional
            Which target steps to score (e.g. held-out ones); step 0 never is.
        mask : bool array, same shape as X, optional
            Element-wise observation mask; only observed values are scored
            (by Monte Carlo, as the closed form needs every unit).
        """
        seqs, u, observed, _ = self._prepare(X, inputs, mask)
        data = make_transitions(
            seqs,
            u,
            self.smoothing,
            self._device(),
            step_mask_like(step_mask, seqs),
            observed,
            self.observed_mean_,
        )
        if len(data) == 0:
            raise OptionError("no time step to score: step_mask selects none after step 0")
        return generative.log_likelihood(
            self.module_,
            data,
            self.latent_std_,
            n_samples,
            self.seed,
            identity_output=self.output_activation is None,
        )

    def _mc_log_likelihood(self, mu: torch.Tensor, data: Transitions, n_samples: int) -> float:
        """Monte Carlo ``log p(x_t | x_{t-1})`` averaged over samples (nats per step)."""
        return generative.mc_log_likelihood(
            self.module_, mu, data, self.latent_std_, n_samples, self.seed
        )

    def simulate(
        self,
        x0: ArrayLike,
        n_steps: int,
        inputs: ArrayLike | None = None,
        noise: bool = True,
        seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run the fitted RNN forward from ``x0``.

        Parameters
        ----------
        x0 : array, shape (N,)
            Initial activity.
        n_steps : int
            Steps to generate.
        inputs : array, shape (n_steps, N), optional
            External input at every generated step.
        noise : bool
            Sample the latent noise (``sigma_q``) and the observation noise
            (Gaussian std or Poisson counts); False runs the deterministic mean dynamics.
        seed : int

        Returns
        -------
        x : numpy.ndarray, shape (n_steps, N)
            Generated activity ``x_1 .. x_n``.
        z : numpy.ndarray, shape (n_steps, K)
            Latents ``z_1 .. z_n``.
        """
        self._check_fitted()
        x0, u = generative.simulation_inputs(x0, n_steps, inputs, self.n_features_in_)
        m, std = self.module_, self.latent_std_
        return generative.simulate(m, x0, u, self.smoothing, std, noise, seed)

    # ------------------------------------------------------------ attributes
    def _linear_attr(self, name: str, kind: str, attr: str) -> np.ndarray:
        self._check_fitted()
        if getattr(self.module_, f"{kind}_kind") != "linear":
            raise AttributeError(
                f"{attr} is defined for a linear {kind} only; this model has {kind}='mlp'"
            )
        return getattr(self.module_, name)[0].detach().cpu().numpy()

    @property
    def output_loadings_(self) -> np.ndarray:
        """``A``, shape (N, K)."""
        return self._linear_attr("A", "decoder", "output_loadings_")

    @property
    def input_loadings_(self) -> np.ndarray:
        """``B``, shape (K, N)."""
        return self._linear_attr("B", "encoder", "input_loadings_")

    @property
    def output_bias_(self) -> np.ndarray:
        """``a``, shape (N,)."""
        return self._linear_attr("a", "decoder", "output_bias_")

    @property
    def latent_bias_(self) -> np.ndarray:
        """``b``, shape (K,)."""
        return self._linear_attr("b", "encoder", "latent_bias_")

    @property
    def noise_std_(self) -> np.ndarray:
        """Per-unit Gaussian noise std in the data's units, shape (N,)."""
        self._check_fitted()
        if self.module_.log_std is None:
            raise AttributeError("noise_std_ exists for observation='gaussian' only")
        return torch.exp(self.module_.obs_log_std()[0]).detach().cpu().numpy()

    @property
    def activity_offset_(self) -> np.ndarray:
        """Per-unit offset of the standardization, in the data's units, shape (N,)."""
        self._check_fitted()
        return self.module_.offset[0].detach().cpu().numpy()

    @property
    def standardized_(self) -> bool:
        """Whether the model works on standardized activity (see ``standardize``)."""
        return bool(np.any(self.activity_offset_ != 0) or np.any(self.activity_scale_ != 1))

    @property
    def activity_scale_(self) -> np.ndarray:
        """Per-unit scale of the standardization, in the data's units, shape (N,)."""
        self._check_fitted()
        return self.module_.scale[0].detach().cpu().numpy()

    @property
    def connectivity_(self) -> np.ndarray:
        """Rank-K connectivity ``W = A B``, shape (N, N)."""
        return self.output_loadings_ @ self.input_loadings_

    @property
    def latent_interaction_(self) -> np.ndarray:
        """``J = B A``, shape (K, K): how latents drive each other."""
        return self.input_loadings_ @ self.output_loadings_

    def group_slice(self, g: int) -> slice:
        """Latent dims of group ``g``."""
        if not 0 <= g < self.n_groups:
            raise OptionError(f"group index must be in [0, {self.n_groups}), got {g}")
        return slice(g * self.group_rank, (g + 1) * self.group_rank)

    def group_connectivity(self, g: int) -> np.ndarray:
        """Group ``g``'s part of the connectivity, ``A[:, g] @ B[g, :]``, shape (N, N)."""
        s = self.group_slice(g)
        return self.output_loadings_[:, s] @ self.input_loadings_[s, :]

    # ----------------------------------------------------------- persistence
    def to_state(self) -> ModelState:
        """The fitted model as plain JSON-able metadata and numpy arrays.

        This is what :meth:`save` and the NWB writer store; :meth:`from_state` rebuilds the
        model from it.
        """
        return persistence.to_state(self)

    @classmethod
    def from_state(cls, state: ModelState, device: str = "auto", origin: str = "state") -> FacRNN:
        """Rebuild a fitted model from :meth:`to_state` output.

        Parameters
        ----------
        state : ModelState
        device : str
            Where to put the model (``"auto"``, ``"cpu"``, ``"cuda"``).
        origin : str
            Where the state came from, for error messages (a file, an NWB object).
        """
        return persistence.from_state(cls, state, device, origin)

    @classmethod
    def from_nwb(
        cls, path: str | os.PathLike, name: str | None = None, device: str = "auto"
    ) -> FacRNN:
        """Reload a model written into an NWB file by :func:`nwb_facrnn.write_results`.

        Parameters
        ----------
        path : path
            The NWB file (HDF5 or Zarr).
        name : str, optional
            The results container (e.g. ``"facrnn_G2H3_beta20_seed0"``); needed when the file
            holds several fits.
        device : str
        """
        from ..io.results import read_model_state  # the NWB side; the model stays NWB-free

        state, origin = read_model_state(path, name)
        return cls.from_state(state, device=device, origin=origin)

    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted model to one ``.npz`` file (arrays + JSON, no pickle).

        The write is atomic: a temporary file in the same folder is renamed
        over ``path`` once complete.
        """
        return persistence.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> FacRNN:
        """Load a model written by :meth:`save` (never unpickles)."""
        return persistence.load(cls, path, device)
