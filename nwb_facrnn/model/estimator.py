"""The FacRNN estimator (scikit-learn conventions)."""

from __future__ import annotations

import inspect
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from . import baselines
from .data import (
    ArrayLike,
    NeuralDataLike,
    Transitions,
    as_sequences,
    blank_unobserved,
    encoded_steps,
    impute,
    inputs_like,
    lagged,
    make_transitions,
    observed_like,
    observed_mean,
    step_mask_like,
    unpack_neural_data,
)
from .losses import gaussian_nll, poisson_nll
from .modules import NONLINEARITIES, OUTPUT_ACTIVATIONS, LowRankRNNVAE
from .training import (
    TERMS,
    Objective,
    TrainResult,
    load_copy,
    random_rotation,
    reduced_rank_regression,
    train,
)

SAVE_FORMAT = "nwb-facrnn-model/1"


class NotFittedError(RuntimeError, AttributeError):
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
    max_epochs, batch_size, learning_rate :
        Adam optimisation settings; an epoch is one pass over all transitions.
    early_stopping : bool
        Hold out ``validation_fraction`` of the transitions and stop when no
        restart improved its held-out objective for ``n_iter_no_change`` epochs.
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
    observed_mean_ : numpy.ndarray, shape (N,)
        Each unit's mean over its observed values; stands in for unobserved
        values (see ``mask``) as encoder input.
    history_ : dict of numpy.ndarray
        Per-epoch ``total, reconstruction, kl, pc, bd`` of the kept restart
        (and ``validation`` with early stopping).
    init_objectives_ : numpy.ndarray, shape (n_init,)
        Final objective of every restart; ``best_init_`` indexes the kept one.
    n_features_in_, n_samples_, n_epochs_, stopped_early_, fit_time_ :
        Units, training transitions, epochs run, whether early stopping ended
        the fit, seconds spent in ``fit``.
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
        smoothing: float | None = None,
        hidden_size: int = 64,
        penalty: str = "partial",
        postprocess: str | None = None,
        init: str = "auto",
        n_init: int = 4,
        max_epochs: int = 100,
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
        self.smoothing = smoothing
        self.hidden_size = hidden_size
        self.penalty = penalty
        self.postprocess = postprocess
        self.init = init
        self.n_init = n_init
        self.max_epochs = max_epochs
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
        """Set hyperparameters; unknown names raise ValueError."""
        for k, v in params.items():
            if k not in self._param_names():
                raise ValueError(f"unknown FacRNN parameter {k!r}; known: {self._param_names()}")
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
            raise ValueError(f"unknown preset {name!r}; choose one of {list(baselines.PRESETS)}")
        return cls(**{**baselines.PRESETS[name], **overrides})

    @property
    def n_latents(self) -> int:
        """``K = n_groups * group_rank``."""
        return self.n_groups * self.group_rank

    def _validate_params(self) -> None:
        def check(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        def is_int(v: Any) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        for name in ("n_groups", "group_rank", "n_init", "max_epochs", "batch_size", "devices"):
            v = getattr(self, name)
            check(is_int(v) and v >= 1, f"{name} must be an integer >= 1, got {v!r}")
        check(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        for name in ("beta", "alpha"):
            v = getattr(self, name)
            check(
                isinstance(v, int | float) and math.isfinite(v) and v >= 0,
                f"{name} must be a finite number >= 0, got {v!r}",
            )
        check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate!r}")
        choices = {
            "observation": ("gaussian", "poisson"),
            "encoder": ("linear", "mlp"),
            "decoder": ("linear", "mlp"),
            "output_activation": tuple(OUTPUT_ACTIVATIONS),
            "nonlinearity": tuple(NONLINEARITIES),
            "penalty": ("partial", "total"),
            "postprocess": (None, "ica", "svd"),
            "init": ("auto", "ica", "pca"),
        }
        for name, allowed in choices.items():
            v = getattr(self, name)
            check(v in allowed, f"{name} must be one of {allowed}, got {v!r}")
        linear = self.encoder == "linear" and self.decoder == "linear"
        check(
            self.alpha == 0 or linear,
            "alpha > 0 (block-diagonal penalty on B A) needs encoder='linear' and decoder='linear'",
        )
        check(
            self.postprocess is None or linear,
            f"postprocess={self.postprocess!r} needs encoder='linear' and decoder='linear'",
        )
        check(
            self.observation == "gaussian" or self.output_activation is None,
            "output_activation applies to the Gaussian observation only; Poisson rates are "
            "always softplus(A z + a + u)",
        )
        check(
            self.smoothing is None or self.smoothing >= 0,
            f"smoothing must be None or a time constant >= 0 (bins), got {self.smoothing!r}",
        )
        check(
            0 < self.validation_fraction < 1,
            f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}",
        )

    def _torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return torch.device(self.device)
        except RuntimeError as err:
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]': {err}") from None

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
        X : array, shape (T, N) or (n_trials, T, N), or NeuralData
            Binned spike counts, rates or dF/F traces; no transition crosses a
            trial boundary.  A :class:`~nwb_facrnn.NeuralData` (from
            :func:`~nwb_facrnn.read_nwb`) brings its own ``mask`` and ``inputs``.
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
        X, inputs, mask = unpack_neural_data(X, inputs, mask)
        seqs = as_sequences(blank_unobserved(X, mask), "X")
        observed = observed_like(mask, seqs)
        if self.observation == "poisson" and (impute(seqs, observed, np.zeros(1)) < 0).any():
            raise ValueError("observation='poisson' needs non-negative counts in X")
        u = inputs_like(inputs, seqs)
        step = step_mask_like(step_mask, seqs)
        parallel, device = self._parallel_plan()
        start = time.perf_counter()
        self.observed_mean_ = observed_mean(seqs, observed)
        data = make_transitions(
            seqs, u, self.smoothing, device, step, observed, self.observed_mean_
        )
        if len(data) < 2:
            raise ValueError(
                f"X has {len(data)} training transition(s); at least 2 are needed "
                "(check T and step_mask)"
            )
        validation = None
        if self.early_stopping:
            perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed))
            n_val = max(1, round(self.validation_fraction * len(data)))
            validation = data.subset(perm[:n_val].to(device))
            data = data.subset(perm[n_val:].to(device))

        k = self.n_latents
        self.n_features_in_ = seqs.shape[2]
        self.n_samples_ = len(data)
        self.latent_std_ = float(self.n_samples_ ** (-1.0 / (k + 4)))
        module = self._new_module(self.n_init).to(device)
        self._initialize(module, data)
        objective = self._objective()
        result = self._train(
            parallel,
            module,
            objective,
            data,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            validation=validation,
            n_iter_no_change=self.n_iter_no_change,
            progress=self.progress,
            callback=None if callback is None else _per_epoch(callback),
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
        self.stopped_early_ = result.stopped_early
        self.module_ = self._new_module(1).to(device)
        self.module_.load_state_dict(module.select(best))
        self.module_.eval()
        self._postprocess(data)
        self.fit_time_ = time.perf_counter() - start
        return self

    def _parallel_plan(self) -> tuple[str, torch.device]:
        """How ``fit`` trains, and on which device: ``("single", d)`` in this process,
        ``("spawn", d)`` in ``devices`` new processes, ``("group", d)`` across the
        processes of a ``torchrun`` launch.  Refuses impossible plans (ValueError)
        before any data moves to the device."""
        device = self._torch_device()
        if self.devices == 1:
            return "single", device
        from . import distributed

        world = distributed.launched_world_size()
        if world > 1:
            if self.devices != world:
                raise ValueError(
                    f"devices={self.devices}, but this process is one of {world} launched "
                    f"processes (torchrun or an initialised process group): use devices={world} "
                    "to train across them, or devices=1 for an independent fit in each"
                )
            if device.type == "cuda" and device.index is None:
                device = torch.device("cuda", distributed.local_rank())
            return "group", device
        distributed.check_devices(self.devices, device)
        return "spawn", device

    def _train(
        self,
        parallel: str,
        module: LowRankRNNVAE,
        objective: Objective,
        data: Transitions,
        **kwargs: Any,
    ) -> TrainResult:
        """Run the training loop in this process, in spawned workers, or in the launched group."""
        if parallel == "single":
            return train(module, objective, data, **kwargs)
        from . import distributed

        if parallel == "spawn":
            result = distributed.train_spawned(
                module,
                self._module_kwargs(module.n_copies),
                objective,
                data,
                devices=self.devices,
                **kwargs,
            )
        else:
            result = distributed.train_in_group(module, objective, data, **kwargs)
        if result.rank_divergence:
            warnings.warn(
                f"data-parallel fit: the {self.devices} processes' parameters drifted apart by "
                f"up to {result.rank_divergence:.3g}: the gradient reduction was not identical "
                "on every process (spawned workers return rank 0's parameters)",
                RuntimeWarning,
                stacklevel=3,
            )
        return result

    def _module_kwargs(self, n_copies: int) -> dict[str, Any]:
        return {
            "n_copies": n_copies,
            "n_neurons": self.n_features_in_,
            "n_latents": self.n_latents,
            "observation": self.observation,
            "encoder": self.encoder,
            "decoder": self.decoder,
            "hidden_size": self.hidden_size,
            "nonlinearity": self.nonlinearity,
            "output_activation": self.output_activation,
            "seed": self.seed,
        }

    def _new_module(self, n_copies: int) -> LowRankRNNVAE:
        return LowRankRNNVAE(**self._module_kwargs(n_copies))

    def _init_kind(self) -> str:
        if self.init != "auto":
            return self.init
        linear = self.encoder == "linear" and self.decoder == "linear"
        return "ica" if linear and self.beta > 0 and self.n_latents > 1 else "pca"

    def _initialize(self, module: LowRankRNNVAE, data: Transitions) -> None:
        """Start every restart from the reduced-rank regression of the data.

        ``"pca"``: restart 0 takes the principal axes of the rank-K fit, the
        others random rotations of them.  ``"ica"``: the FastICA components of
        the rank-K latents, grouped so that dependent components share a group
        (the independent-subspace solution that ICA plus grouping gives,
        Cardoso's separation principle); restart ``r`` takes the ``r``-th best
        grouping, so the restarts differ exactly where ICA is unsure.  The
        partial-correlation penalty then refines every start.
        """
        base = reduced_rank_regression(module, data, self.n_latents)
        load_copy(module, 0, base)  # MLP parts keep their random weights
        if module.encoder_kind != "linear" or module.decoder_kind != "linear":
            for r in range(1, module.n_copies):
                load_copy(module, r, base)
            return
        k, kind = self.n_latents, self._init_kind()
        gen = torch.Generator().manual_seed(self.seed)
        starts = []  # (mixing, center) per restart
        if kind == "ica":
            z = module.phi(data.prev).double().cpu().numpy() @ base["B"].T + base["b"]
            unmixing, center = baselines.ica_unmixing(z, self.seed)
            orders = baselines.group_components(
                (z - center) @ unmixing.T,
                self.n_groups,
                self.group_rank,
                self.seed,
                n_best=module.n_copies,
            )
            starts = [(unmixing[order], center) for order in orders]
        while len(starts) < module.n_copies:  # "pca", or fewer distinct groupings than restarts
            rotation = np.eye(k) if not starts else random_rotation(k, gen)
            starts.append((rotation, np.zeros(k)))
        for r, (mixing, center) in enumerate(starts):
            load_copy(module, r, {**base, **baselines.transform_latents(base, mixing, center)})

    def _objective(self) -> Objective:
        return Objective(
            sigma=self.latent_std_,
            dataset_size=self.n_samples_,
            pc_groups=self.n_latents if self.penalty == "total" else self.n_groups,
            bd_groups=self.n_groups,
            beta=float(self.beta),
            alpha=float(self.alpha),
        )

    def _postprocess(self, data) -> None:
        """Apply ICA / SVD transforms and group dims where training did not."""
        regroup = self.penalty == "total" and self.n_groups < self.n_latents
        if self.postprocess is None and not regroup:
            return
        with torch.no_grad():
            z = self.module_.encode(data.prev)[0].cpu().double().numpy()
        params = self._linear_params()
        if self.postprocess == "ica":
            mixing, center = baselines.ica_unmixing(z, self.seed)
        elif self.postprocess == "svd":
            mixing, center = baselines.svd_factorization(params)
        else:
            mixing, center = np.eye(self.n_latents), np.zeros(self.n_latents)
        if regroup:
            z_new = (z - center) @ mixing.T
            order = baselines.group_components(z_new, self.n_groups, self.group_rank, self.seed)
            mixing = mixing[order[0]]
        self._set_linear_params(baselines.transform_latents(params, mixing, center))

    def _linear_params(self) -> dict[str, np.ndarray]:
        m = self.module_
        return {k: getattr(m, k)[0].detach().cpu().double().numpy() for k in ("A", "B", "a", "b")}

    def _set_linear_params(self, params: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for k, v in params.items():
                p = getattr(self.module_, k)
                p[0] = torch.as_tensor(v, dtype=p.dtype, device=p.device)

    # --------------------------------------------------------------- inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError("this FacRNN is not fitted yet; call fit(X) first")

    def _prepare(
        self, X: ArrayLike | NeuralDataLike, inputs: ArrayLike | None, mask: ArrayLike | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
        """Validated (seqs, inputs, observed, single) with unobserved values imputed."""
        self._check_fitted()
        X, inputs, mask = unpack_neural_data(X, inputs, mask)
        single = np.ndim(X) == 2
        seqs = as_sequences(blank_unobserved(X, mask), "X", n_features=self.n_features_in_)
        observed = observed_like(mask, seqs)
        u = inputs_like(inputs, seqs)
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
        prev = torch.as_tensor(lagged(seqs, self.smoothing), device=self._device())
        with torch.no_grad():
            z = self.module_.encode(prev.reshape(-1, seqs.shape[2]))[0]
        z = z.reshape(*seqs.shape[:2], -1).cpu().numpy()
        if observed is not None:
            z[~encoded_steps(observed)] = np.nan
        return z[0] if single else z

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
        z = torch.as_tensor(self.transform(seqs), device=self._device())
        with torch.no_grad():
            out = self.module_.decode(
                z.reshape(1, -1, z.shape[-1]),
                torch.as_tensor(u.reshape(-1, u.shape[-1]), device=self._device()),
            )[0]
        out = out.reshape(seqs.shape).cpu().numpy()
        return out[0] if single else out

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
            raise ValueError("no time step to score: step_mask selects none after step 0")
        m = self.module_
        with torch.no_grad():
            mu = m.encode(data.prev)  # (1, M, K)
            closed = (
                data.weight is None
                and m.observation == "gaussian"
                and m.decoder_kind == "linear"
                and self.output_activation is None
            )
            if closed:
                mean = m.decode(mu, data.inputs)[0]
                cov = torch.diag(torch.exp(2 * m.log_std[0])) + self.latent_std_**2 * (
                    m.A[0] @ m.A[0].T
                )
                dist = torch.distributions.MultivariateNormal(
                    torch.zeros_like(mean[0]), covariance_matrix=cov.double()
                )
                return float(dist.log_prob((data.curr - mean).double()).mean())
            return self._mc_log_likelihood(mu, data, n_samples)

    def _mc_log_likelihood(self, mu: torch.Tensor, data: Transitions, n_samples: int) -> float:
        """Monte Carlo ``log p(x_t | x_{t-1})`` averaged over samples (nats per step)."""
        m = self.module_
        gen = torch.Generator(device=mu.device).manual_seed(self.seed)
        total = 0.0
        for idx in torch.split(torch.arange(mu.shape[1], device=mu.device), 512):
            mu_b = mu[0, idx]
            eps = torch.randn(
                (n_samples, *mu_b.shape), generator=gen, device=mu.device, dtype=mu.dtype
            )
            out = m.decode(mu_b + self.latent_std_ * eps, data.inputs[idx])  # (S, M, N)
            w = None if data.weight is None else data.weight[idx]
            if m.observation == "poisson":
                ll = -poisson_nll(data.curr[idx], out, w)
            else:
                ll = -gaussian_nll(data.curr[idx], out, m.log_std, w)
            total += float((torch.logsumexp(ll, 0) - math.log(n_samples)).sum())
        return total / mu.shape[1]

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
        x_prev = np.asarray(x0, dtype=np.float32)
        n = self.n_features_in_
        if x_prev.shape != (n,) or not np.isfinite(x_prev).all():
            raise ValueError(f"x0 must be a finite vector of shape ({n},), got {x_prev.shape}")
        if not isinstance(n_steps, int | np.integer) or n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
        u = np.zeros((n_steps, n), np.float32) if inputs is None else np.asarray(inputs, np.float32)
        if u.shape != (n_steps, n):
            raise ValueError(f"inputs must have shape (n_steps, N) = {(n_steps, n)}, got {u.shape}")
        dev, m = self._device(), self.module_
        gen = torch.Generator(device=dev).manual_seed(seed)
        lam = 1.0 - math.exp(-1.0 / self.smoothing) if self.smoothing else 1.0
        state = torch.as_tensor(x_prev, device=dev)[None]
        u_t = torch.as_tensor(u, device=dev)
        xs, zs = [], []
        with torch.no_grad():
            for t in range(n_steps):
                z = m.encode(state)  # (1, 1, K)
                if noise:
                    z = z + self.latent_std_ * torch.randn(z.shape, generator=gen, device=dev)
                out = m.decode(z, u_t[t : t + 1])[0]
                if noise and m.observation == "poisson":
                    out = torch.poisson(out, generator=gen)
                elif noise:
                    out = out + torch.exp(m.log_std) * torch.randn(
                        out.shape, generator=gen, device=dev
                    )
                state = (1.0 - lam) * state + lam * out
                xs.append(out[0])
                zs.append(z[0, 0])
        return torch.stack(xs).cpu().numpy(), torch.stack(zs).cpu().numpy()

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
        """Per-unit Gaussian noise std, shape (N,)."""
        self._check_fitted()
        if self.module_.log_std is None:
            raise AttributeError("noise_std_ exists for observation='gaussian' only")
        return torch.exp(self.module_.log_std[0]).detach().cpu().numpy()

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
            raise ValueError(f"group index must be in [0, {self.n_groups}), got {g}")
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
        self._check_fitted()
        meta = {
            "format": SAVE_FORMAT,
            "nwb_facrnn_version": __version__,
            "params": {k: v for k, v in self.get_params().items() if k != "device"},
            **{k: _FITTED_SCALARS[k](getattr(self, k)) for k in _FITTED_SCALARS},
        }
        weights = {k: v.detach().cpu().numpy()[0] for k, v in self.module_.state_dict().items()}
        return ModelState(
            meta=meta,
            weights=weights,
            history={k: np.asarray(v) for k, v in self.history_.items()},
            init_objectives=np.asarray(self.init_objectives_, dtype=np.float64),
            observed_mean=np.asarray(self.observed_mean_, dtype=np.float32),
        )

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
        meta = state.meta
        if meta.get("format") != SAVE_FORMAT:
            raise ValueError(
                f"{origin}: unsupported model format {meta.get('format')!r}, "
                f"expected {SAVE_FORMAT!r}"
            )
        model = cls(**meta["params"], device=device)
        try:
            for k, kind in _FITTED_SCALARS.items():
                setattr(model, k, kind(meta[k]))
        except KeyError as err:
            raise ValueError(f"{origin}: the saved model lacks {err.args[0]!r}") from None
        model.history_ = dict(state.history)
        model.init_objectives_ = np.asarray(state.init_objectives)
        model.observed_mean_ = np.asarray(state.observed_mean)
        model.module_ = model._new_module(1).to(model._torch_device())
        expected = model.module_.state_dict()
        missing = sorted(set(expected) - set(state.weights))
        if missing:
            raise ValueError(f"{origin}: the saved model lacks the weights {missing}")
        loaded = {}
        for k, v in expected.items():
            w = np.asarray(state.weights[k])
            if w.shape != tuple(v.shape[1:]):
                raise ValueError(
                    f"{origin}: weight {k!r} has shape {w.shape}, expected {tuple(v.shape[1:])}"
                )
            loaded[k] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))[None]
        model.module_.load_state_dict(loaded)
        model.module_.eval()
        return model

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
        state = self.to_state()
        path = Path(path)
        arrays = {f"state/{k}": v[None] for k, v in state.weights.items()}
        arrays.update({f"history/{k}": v for k, v in state.history.items()})
        arrays["init_objectives_"] = state.init_objectives
        arrays["observed_mean_"] = state.observed_mean
        arrays["meta"] = np.array(json.dumps(state.meta))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> FacRNN:
        """Load a model written by :meth:`save` (never unpickles)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a saved FacRNN model ({err})") from None
        if "meta" not in arrays or "observed_mean_" not in arrays:
            raise ValueError(f"{path}: not a saved FacRNN model (no 'meta' entry)")
        state = ModelState(
            meta=json.loads(str(arrays["meta"])),
            weights={k[6:]: v[0] for k, v in arrays.items() if k.startswith("state/")},
            history={k[8:]: v for k, v in arrays.items() if k.startswith("history/")},
            init_objectives=arrays["init_objectives_"],
            observed_mean=arrays["observed_mean_"],
        )
        return cls.from_state(state, device=device, origin=str(path))


_FITTED_SCALARS: dict[str, type] = {
    "n_features_in_": int,
    "n_samples_": int,
    "latent_std_": float,
    "best_init_": int,
    "n_epochs_": int,
    "stopped_early_": bool,
    "fit_time_": float,
}


@dataclass
class ModelState:
    """A fitted :class:`FacRNN` as plain data (see :meth:`FacRNN.to_state`).

    Attributes
    ----------
    meta : dict
        ``format``, ``nwb_facrnn_version``, ``params`` (constructor arguments but ``device``)
        and the scalar learned attributes (``n_features_in_``, ``latent_std_``, ...).
    weights : dict of str to numpy.ndarray
        Module weights by state-dict key (``"A"`` (N, K), ``"B"`` (K, N), ``"a"``, ``"b"``,
        ``"log_std"``, MLP ``"enc.w1"`` ...), float32.
    history : dict of str to numpy.ndarray
        Per-epoch loss terms, each shape (n_epochs,).
    init_objectives : numpy.ndarray, shape (n_init,)
    observed_mean : numpy.ndarray, shape (N,)
    """

    meta: dict[str, Any]
    weights: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    init_objectives: np.ndarray
    observed_mean: np.ndarray


def _per_epoch(
    callback: Callable[[int, dict[str, float]], None],
) -> Callable[[int, np.ndarray], None]:
    """Adapt a user callback to the trainer's ``(epoch, terms (5, R))`` signature."""

    def call(epoch: int, terms: np.ndarray) -> None:
        best = int(np.nanargmin(terms[0])) if np.isfinite(terms[0]).any() else 0
        callback(epoch, {t: float(terms[i, best]) for i, t in enumerate(TERMS)})

    return call
