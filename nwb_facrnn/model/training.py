"""The training loop of FacRNN (the linear start is in :mod:`.linear_start`).

Training is a lean loop over device-resident tensors: the model is small, so
the per-step cost is dominated by framework overhead, and all restarts
(``n_init``) are trained at once as one batched model (see
:mod:`nwb_facrnn.model.modules`).

Data-parallel training over several processes (``FacRNN(devices=N)``, see
:mod:`nwb_facrnn.model.distributed`) runs this same loop with a ``shard``: every
process draws the same global minibatch and encoder noise, computes the loss
terms of its contiguous part of the minibatch, and the gradients are summed
across processes before every (identical) Adam step.  Without a shard the loop
is exactly the one-process loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import Transitions
from .halving import HALVING_AT, Pruning, better_half, evaluation_sample
from .losses import (
    block_offdiag_penalty,
    gaussian_nll,
    kl_to_standard_normal,
    partial_correlation,
    poisson_nll,
)
from .modules import LowRankRNNVAE

TERMS = ("total", "reconstruction", "kl", "pc", "bd")


@dataclass(frozen=True)
class BatchPart:
    """This process's contiguous part of a global minibatch (data-parallel training).

    Attributes
    ----------
    start, stop : int
        The part is samples ``start .. stop - 1`` of the global minibatch.
    sizes : tuple of int
        Samples of every process's part, in rank order (they sum to ``batch_size``).
    world_size : int
        Number of processes.
    gather : callable
        ``gather(mu)`` maps this part's encoder means (R, stop - start, K) to those of
        the whole minibatch (R, batch_size, K), differentiably: the backward pass
        returns to every process the gradient of all processes' losses with respect
        to its own means.
    """

    start: int
    stop: int
    sizes: tuple[int, ...]
    world_size: int
    gather: Callable[[torch.Tensor], torch.Tensor]

    @property
    def batch_size(self) -> int:
        """``M``, samples in the global minibatch."""
        return sum(self.sizes)


class Shard(Protocol):
    """What :func:`train` needs of a process group (see
    :class:`nwb_facrnn.model.distributed.ProcessShard`)."""

    rank: int
    world_size: int

    def part(self, batch_size: int) -> BatchPart:
        """This process's part of a global minibatch of ``batch_size`` samples."""
        ...

    def sum_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace every parameter's gradient by its sum over the processes."""
        ...

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the processes in place (identical result on every rank)."""
        ...


@dataclass
class Objective:
    """Weights and constants of the FacRNN objective."""

    #: The reconstruction term of a linear Gaussian decoder takes
    #: :func:`~.losses.linear_gaussian_nll` (no (R, M, N) tensor) from this many elements of
    #: the decoded means (R x M x N) up; below, the few elementwise passes of the direct form
    #: cost less than its fixed overhead.  (A plain class attribute, not a dataclass field.)
    FAST_NLL_MIN_ELEMENTS = 1 << 16

    sigma: float  # encoder std sigma_q
    dataset_size: int  # n, for the minibatch-weighted PC estimate
    pc_groups: int  # groups of the PC penalty (K for the total-correlation variant)
    bd_groups: int  # groups of the block-diagonal penalty
    beta: float = 0.0
    alpha: float = 0.0

    def terms(
        self,
        module: LowRankRNNVAE,
        batch: Transitions,
        gen: torch.Generator | None,
        part: BatchPart | None = None,
    ) -> torch.Tensor:
        """Loss terms per copy, shape (5, R), in the order of :data:`TERMS`.

        Parameters
        ----------
        module : LowRankRNNVAE
        batch : Transitions
            The minibatch, of ``M`` samples; with ``part``, this process's part of it.
        gen : torch.Generator or None
            Draws the encoder noise, shape (R, M, K), for the whole minibatch.
        part : BatchPart, optional
            Data-parallel training: ``batch`` is samples ``part.start .. part.stop - 1``
            of a global minibatch of ``part.batch_size`` samples.  The returned terms
            are then this process's share: per-sample terms summed over its samples
            and divided by the global ``M``, parameter-only terms (BD) divided by the
            number of processes, so that the sum over processes is the one-process
            value.

        Returns
        -------
        torch.Tensor, shape (5, R)
            Minibatch means (nats per sample) of total, reconstruction, KL, PC and BD.
        """
        mu = module.encode(batch.prev)
        # every restart draws its noise as if all restarts were still trained (see
        # halving.Pruning): dropping the losing ones never changes the others
        copies = getattr(module, "copy_ids", None)
        n_drawn = mu.shape[0] if copies is None else module.n_drawn
        if part is None:
            shape = (n_drawn, *mu.shape[1:])
            eps = torch.randn(shape, generator=gen, device=mu.device, dtype=mu.dtype)
        else:  # the same draw as one process makes for the whole minibatch, then our slice
            shape = (n_drawn, part.batch_size, mu.shape[2])
            eps = torch.randn(shape, generator=gen, device=mu.device, dtype=mu.dtype)
            eps = eps[:, part.start : part.stop]
        if copies is not None:
            eps = eps[copies]
        z = torch.add(mu, eps, alpha=self.sigma)
        rec = self.reconstruction(module, batch, z)
        kl = kl_to_standard_normal(mu, self.sigma)
        if part is None:
            rec, kl = rec.mean(-1), kl.mean(-1)
            zero = rec.new_zeros(rec.shape)
            pc = (
                partial_correlation(z, mu, self.sigma, self.pc_groups, self.dataset_size)
                if self.beta > 0 and z.shape[1] > 1
                else zero
            )
            bd = (
                block_offdiag_penalty(module.B, module.A, self.bd_groups)
                if self.alpha > 0
                else zero
            )
        else:
            m = part.batch_size
            rec, kl = rec.sum(-1) / m, kl.sum(-1) / m
            zero = rec.new_zeros(rec.shape)
            pc = (
                partial_correlation(
                    z,
                    part.gather(mu),
                    self.sigma,
                    self.pc_groups,
                    self.dataset_size,
                    offset=part.start,
                    reduction="sum",
                )
                / m
                if self.beta > 0 and m > 1
                else zero
            )
            bd = (
                block_offdiag_penalty(module.B, module.A, self.bd_groups) / part.world_size
                if self.alpha > 0
                else zero
            )
        total = rec + kl
        if self.beta > 0:
            total = total + self.beta * pc
        if self.alpha > 0:
            total = total + self.alpha * bd
        return torch.stack([total, rec, kl, pc, bd])

    @classmethod
    def reconstruction(
        cls, module: LowRankRNNVAE, batch: Transitions, z: torch.Tensor
    ) -> torch.Tensor:
        """Negative log-likelihood of ``batch.curr`` given latents ``z`` (R, M, K); (R, M).

        A linear Gaussian decoder without an output activation, with every value observed
        (the default FacRNN), takes :func:`~.losses.linear_gaussian_nll`, which forms no
        (R, M, N) tensor, once that tensor would have :attr:`FAST_NLL_MIN_ELEMENTS`; every
        other model (and a smaller one) decodes the mean or rate and sums the elementwise
        likelihood.  ``batch.inputs`` may be None (no external input).
        """
        from .losses import linear_gaussian_nll

        inputs = batch.inputs
        if (
            module.observation == "gaussian"
            and module.decoder_kind == "linear"
            and module.identity_output
            and batch.weight is None
            and z.shape[0] * z.shape[1] * batch.curr.shape[-1] >= cls.FAST_NLL_MIN_ELEMENTS
        ):
            offset, scale = module.output_affine()
            return linear_gaussian_nll(
                batch.curr, z, module.A, module.a, module.log_std, offset, scale, inputs
            )
        out = module.decode(z, inputs)
        if module.observation == "poisson":
            return poisson_nll(batch.curr, out, batch.weight)
        return gaussian_nll(batch.curr, out, module.obs_log_std(), batch.weight)


#: ``callback(epoch, terms)`` with the epoch's (5, R) loss terms (:data:`TERMS` by copy).
Callback = Callable[[int, np.ndarray], None]


@dataclass
class Problem:
    """What :func:`train` optimises.

    Attributes
    ----------
    module : LowRankRNNVAE
        The model; all its copies (restarts) are trained at once, in place.
    objective : Objective
    data : Transitions
        The training samples.
    validation : Transitions or None
        Held-out samples; when given, training stops once no copy's held-out
        objective has improved for ``n_iter_no_change`` epochs (see
        :class:`TrainOptions`), and each copy is restored to its best held-out state.
    """

    module: LowRankRNNVAE
    objective: Objective
    data: Transitions
    validation: Transitions | None = None


@dataclass(frozen=True)
class TrainOptions:
    """How :func:`train` optimises (plain values: pickled to data-parallel workers).

    Attributes
    ----------
    max_epochs : int or None
        Passes over all training samples, at most (None: no limit in epochs).
    batch_size : int
        Samples ``M`` per minibatch (per global minibatch in data-parallel training).
    learning_rate : float
        Initial Adam step size; a cosine schedule lowers it to 1 % of that.
    seed : int
        Seeds the minibatch permutations (``seed``) and the encoder noise (``seed + 1``).
    n_iter_no_change : int
        With validation samples: rows (see :func:`step_plan`) without improvement
        before training stops.
    progress : bool
        Show a progress bar with the loss terms.
    max_steps : int or None
        Optimisation steps (minibatches), at most (None: no limit in steps).  With
        neither limit, the default budget applies: :data:`DEFAULT_EPOCHS` epochs or
        :data:`DEFAULT_STEPS` steps, whichever comes first.
    halving : bool
        Successive halving of the restarts (copies): at each of
        :data:`HALVING_AT` of the steps, only the better half (by the objective on a
        fixed evaluation sample) trains on.  Not with validation samples.
    """

    max_epochs: int | None
    batch_size: int
    learning_rate: float
    seed: int
    n_iter_no_change: int = 50
    progress: bool = True
    max_steps: int | None = None
    halving: bool = False


@dataclass(frozen=True)
class StepPlan:
    """How long :func:`train` runs and how it reports.

    Attributes
    ----------
    total : int
        Optimisation steps: ``max_epochs`` passes of ``per_epoch`` minibatches, or
        ``max_steps`` when that is fewer.
    per_epoch : int
        Minibatches per pass over the training samples.
    row : int
        Steps per row of the history: one epoch when the epochs end the fit (as every
        fit of a short recording), else a hundredth of the steps.  The learning rate
        follows its cosine schedule row by row; the callback, the progress bar and
        early stopping work per row.
    """

    total: int
    per_epoch: int
    row: int

    @property
    def n_rows(self) -> int:
        return math.ceil(self.total / self.row)


#: The default budget (neither ``max_epochs`` nor ``max_steps`` given): a short recording
#: trains this many epochs, as FacRNN always did ...
DEFAULT_EPOCHS = 100
#: ... and a long one stops after this many steps, which its fit needs whatever its length.
DEFAULT_STEPS = 2000


def step_plan(n_samples: int, options: TrainOptions, per_epoch: int | None = None) -> StepPlan:
    """The :class:`StepPlan` of training on ``n_samples`` samples with ``options``
    (``per_epoch``: minibatches per pass, default ``ceil(n_samples / batch_size)``)."""
    if per_epoch is None:
        per_epoch = max(1, math.ceil(n_samples / options.batch_size))
    epochs, steps = options.max_epochs, options.max_steps
    if epochs is None and steps is None:
        epochs, steps = DEFAULT_EPOCHS, DEFAULT_STEPS
    by_epochs = math.inf if epochs is None else epochs * per_epoch
    if steps is None or steps >= by_epochs:
        return StepPlan(int(by_epochs), per_epoch, per_epoch)
    return StepPlan(steps, per_epoch, max(1, math.ceil(steps / 100)))


#: The final objective of every restart (which one is kept) is computed on at most this
#: many samples, drawn at random: on a long recording a full pass would cost as much as a
#: few hundred training steps and tell the same.
FINAL_SAMPLES = 1 << 17


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    history : numpy.ndarray, shape (n_rows, 5, R)
        Mean of each loss term (:data:`TERMS`) for every copy over each row of steps
        (an epoch, or a hundredth of a fit that the step budget ends; see
        :func:`step_plan`).
    val_history : numpy.ndarray or None, shape (n_rows, R)
        Held-out objective per row when early stopping is on.
    final : numpy.ndarray, shape (5, R)
        Terms of the final model on the training (or validation) samples (a random
        :data:`FINAL_SAMPLES` of them on a long recording).
    n_epochs : int
        Passes over the training samples begun (the last may be partial).
    stopped_early : bool
    rank_divergence : float or None
        Data-parallel training only: the largest absolute difference between the
        processes' final parameters (0.0 when they stayed in lockstep, as they
        should); None for one process.
    """

    history: np.ndarray
    val_history: np.ndarray | None
    final: np.ndarray
    n_epochs: int
    stopped_early: bool = False
    rank_divergence: float | None = None
    n_steps: int = 0
    samples_seen: int = 0
    train_time: float = 0.0
    steps_per_row: int = 1


@torch.no_grad()
def evaluate(
    module: LowRankRNNVAE,
    objective: Objective,
    data: Transitions,
    batch_size: int,
    seed: int,
    shard: Shard | None = None,
) -> np.ndarray:
    """Mean loss terms over ``data`` with fixed noise; (5, R).

    With ``shard`` (data-parallel training) every process evaluates its part of
    each chunk and the sums are reduced, so every process gets the same array.
    """
    gen = torch.Generator(device=data.device).manual_seed(seed)
    acc = 0.0
    for window, idx in epoch_batches(data, batch_size, torch.Generator().manual_seed(seed)):
        if shard is None:
            acc = acc + objective.terms(module, window.subset(idx), gen) * len(idx)
        else:
            acc = acc + _part_terms(objective, module, window, idx, gen, shard) * len(idx)
    if shard is not None:
        acc = shard.all_reduce(acc)
    return (acc / len(data)).cpu().numpy()


def epoch_batches(
    data: Transitions, batch_size: int, gen: torch.Generator
) -> Iterator[tuple[Transitions, torch.Tensor]]:
    """One pass over ``data`` in minibatches: ``(window, indices into the window)``.

    Each window (all of in-memory data; a chunk of chunked data, in a random order) is
    shuffled with ``gen`` and cut into minibatches of at most about ``batch_size``.
    """
    for window in data.windows(gen):
        perm = torch.randperm(len(window), generator=gen).to(window.device)
        for idx in torch.tensor_split(perm, window.batches_per_epoch(batch_size)):
            yield window, idx


def _part_terms(
    objective: Objective,
    module: LowRankRNNVAE,
    data: Transitions,
    idx: torch.Tensor,
    gen: torch.Generator,
    shard: Shard,
) -> torch.Tensor:
    """This process's share (5, R) of the terms of the global minibatch ``data[idx]``."""
    part = shard.part(len(idx))
    return objective.terms(module, data.subset(idx[part.start : part.stop]), gen, part)


def train(
    problem: Problem,
    options: TrainOptions,
    *,
    callback: Callback | None = None,
    shard: Shard | None = None,
) -> TrainResult:
    """Train every copy of ``problem.module`` on ``problem.data`` with Adam, in place.

    Parameters
    ----------
    problem : Problem
        The module, the objective, the training samples and the held-out samples.
    options : TrainOptions
        Epochs, minibatch size, learning rate, seed, patience and progress bar.
    callback : callable, optional
        Called as ``callback(epoch, terms)`` with the epoch's (5, R) terms.
    shard : Shard, optional
        Data-parallel training in a process group (see
        :mod:`nwb_facrnn.model.distributed`).  Every process holds all of
        ``data`` and the same ``module``; the permutation and the encoder noise
        are drawn identically on every process, which computes its contiguous
        part of every minibatch; the gradients are summed across processes
        before each Adam step, so every process takes the step one process
        would take (up to floating-point summation order), and the history,
        validation and final terms are reduced so that every process gets the
        same values (and the same early-stopping decisions).
    """
    module, objective, data, validation = (
        problem.module,
        problem.objective,
        problem.data,
        problem.validation,
    )
    batch_size, seed = options.batch_size, options.seed
    learning_rate, progress = options.learning_rate, options.progress
    device = data.device
    n = len(data)
    plan = step_plan(n, options, data.batches_per_epoch(batch_size))
    perm_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    opt = torch.optim.Adam(
        module.parameters(), lr=learning_rate, fused=device.type in ("cpu", "cuda")
    )
    # cosine decay to 1% of the initial rate, row by row: large early steps, a precise
    # optimum at the end
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, plan.n_rows, eta_min=learning_rate / 100
    )
    history, val_history = [], []
    best_val, best_state, since_best = None, None, 0
    stopped = False
    bar = tqdm(total=plan.total, desc="FacRNN fit", unit="step", disable=not progress, leave=False)
    started = time.perf_counter()
    steps = seen = epochs = 0
    batches: Iterator[tuple[Transitions, torch.Tensor]] | None = None
    n_full = module.n_copies
    halve_at = []
    if options.halving and validation is None and n_full > 1:
        halve_at = sorted({max(1, round(f * plan.total)) for f in HALVING_AT})
    pruning = Pruning(module, opt, n_full) if halve_at else None
    try:  # the bar is closed also when a callback stops the fit
        for row in range(plan.n_rows):
            acc = torch.zeros(len(TERMS), module.n_copies, device=device)
            in_row = 0
            for _ in range(min(plan.row, plan.total - steps)):
                window, idx = next(batches, (None, None)) if batches else (None, None)
                if window is None:  # a new pass over the samples
                    batches = epoch_batches(data, batch_size, perm_gen)
                    window, idx = next(batches)
                    epochs += 1
                if shard is None:
                    terms = objective.terms(module, window.subset(idx), noise_gen)
                else:
                    terms = _part_terms(objective, module, window, idx, noise_gen, shard)
                opt.zero_grad(set_to_none=True)
                terms[0].sum().backward()
                if shard is not None:
                    shard.sum_gradients(module.parameters())
                opt.step()
                acc += terms.detach() * len(idx)
                in_row += len(idx)
                steps += 1
                if halve_at and steps == halve_at[0] and module.n_copies > 1:
                    halve_at.pop(0)
                    sample = evaluation_sample(data, seed)
                    total = evaluate(module, objective, sample, batch_size, seed, shard)[0]
                    keep = better_half(total)
                    acc = acc[:, keep.to(acc.device)]
                    pruning.keep(keep)
            seen += in_row
            bar.update(steps - bar.n)
            if shard is not None:
                shard.all_reduce(acc)
            sched.step()
            row_terms = (acc / in_row).cpu().numpy()
            if pruning is not None:
                row_terms = pruning.widen(row_terms)
            history.append(row_terms)
            if callback is not None:
                callback(row, row_terms)
            if progress and (row % 10 == 0 or row == plan.n_rows - 1):
                best = int(np.nanargmin(row_terms[0]))  # (NaN: restarts halving dropped)
                bar.set_postfix({t: f"{row_terms[i, best]:.3g}" for i, t in enumerate(TERMS)})
            if validation is not None:
                val = evaluate(module, objective, validation, batch_size, seed, shard)[0]
                val_history.append(val)
                if best_val is None:
                    best_val, best_state = val.copy(), _clone(module)
                    continue
                improved = val < best_val - 1e-4 * np.abs(best_val)
                if improved.any():
                    since_best = 0
                    _copy_rows(best_state, module, improved)
                    best_val = np.where(improved, val, best_val)
                else:
                    since_best += 1
                    if since_best >= options.n_iter_no_change:
                        stopped = True
                        break
    finally:
        bar.close()
    train_time = time.perf_counter() - started
    batches = None  # (a chunked fit's last window: not held through the final pass)
    if best_state is not None:
        module.load_state_dict(best_state)
    final_data = validation if validation is not None else data
    if len(final_data) > FINAL_SAMPLES and shard is None:  # a long recording: a fixed sample
        final_data = final_data.sample(FINAL_SAMPLES, seed + 11)
    final = evaluate(module, objective, final_data, batch_size, seed, shard)
    if pruning is not None:  # every copy again, the dropped ones as they were dropped
        final = pruning.widen(final)
        pruning.restore()
    return TrainResult(
        history=np.stack(history),
        val_history=np.stack(val_history) if val_history else None,
        final=final,
        n_epochs=epochs,
        stopped_early=stopped,
        n_steps=steps,
        samples_seen=seen,
        train_time=train_time,
        steps_per_row=plan.row,
    )


def _clone(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _copy_rows(state: dict[str, torch.Tensor], module: torch.nn.Module, rows: np.ndarray) -> None:
    idx = torch.as_tensor(np.flatnonzero(rows), device=next(module.parameters()).device)
    for k, v in module.state_dict().items():
        state[k][idx] = v.detach()[idx]
