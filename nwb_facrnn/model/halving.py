"""Successive halving of the restarts a fit trains together (``successive_halving``).

A FacRNN fit trains its ``n_init`` restarts as one batched module (a leading copy axis on
every parameter).  At :data:`HALVING_AT` of the steps, the trainer ranks the copies on a
fixed sample of the training data and keeps the better half: :class:`Pruning` slices every
parameter, buffer and Adam moment to the kept copies, parks the dropped ones, and puts all
of them back at the end, so the caller sees the module it passed in.  Each copy draws its
noise as if all were trained (``module.copy_ids``, ``module.n_drawn``; see
:meth:`~.training.Objective.terms`), so a kept copy ends exactly as without halving.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .data import Transitions
from .modules import LowRankRNNVAE

#: Fractions of the steps at which successive halving keeps the better half of the restarts.
HALVING_AT = (0.25, 0.5)
#: Samples of the fixed evaluation set that ranks the restarts.
HALVING_SAMPLES = 2048


def evaluation_sample(data: Transitions, seed: int) -> Transitions:
    """The fixed sample (at most :data:`HALVING_SAMPLES` of the training samples) on
    which the restarts are ranked; the same on every process."""
    if not isinstance(data, Transitions):  # chunked: a sample drawn window by window
        return data.sample(HALVING_SAMPLES, seed + 7)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 7))
    return data.subset(perm[:HALVING_SAMPLES].to(data.device))


def better_half(objective: np.ndarray) -> torch.Tensor:
    """Positions of the ``ceil(R / 2)`` copies with the lowest ``objective`` (R,), in order
    (a non-finite objective ranks last)."""
    order = np.argsort(np.where(np.isfinite(objective), objective, np.inf), kind="stable")
    keep = np.sort(order[: math.ceil(len(objective) / 2)])
    return torch.as_tensor(keep, dtype=torch.long)


class Pruning:
    """Successive halving of ``module``'s copies in place, and putting them back.

    :meth:`keep` slices every parameter, buffer and Adam moment to the kept copies (the
    parameters stay the same objects, so the optimizer goes on); the dropped copies are
    parked as they were.  :meth:`restore` rebuilds all ``n_full`` copies in their
    original order, so the caller sees the module it passed in.
    """

    def __init__(self, module: LowRankRNNVAE, opt: torch.optim.Optimizer, n_full: int):
        self.module, self.opt, self.n_full = module, opt, n_full
        self.ids = torch.arange(n_full)
        self.parked: dict[int, dict[str, torch.Tensor]] = {}
        module.n_drawn = n_full
        module.copy_ids = self.ids

    def _tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.module.state_dict(keep_vars=True))

    @torch.no_grad()
    def keep(self, keep: torch.Tensor) -> None:
        tensors = self._tensors()
        for pos in range(len(self.ids)):
            if pos not in keep.tolist():
                self.parked[int(self.ids[pos])] = {
                    k: v[pos].detach().clone() for k, v in tensors.items()
                }
        dev_keep = keep.to(next(self.module.parameters()).device)
        for name, v in tensors.items():
            if isinstance(v, torch.nn.Parameter):
                # a new Parameter: autograd keeps the shape of a leaf it has seen
                new = torch.nn.Parameter(v.detach()[dev_keep].contiguous())
                state = self.opt.state.pop(v, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key] = state[key][dev_keep].contiguous()
                if state:
                    self.opt.state[new] = state
                for group in self.opt.param_groups:
                    group["params"] = [new if q is v else q for q in group["params"]]
                self._set(name, new, "_parameters")
            else:
                self._set(name, v[dev_keep].contiguous(), "_buffers")
        self.ids = self.ids[keep]
        self.module.copy_ids = self.ids

    def _set(self, name: str, value: torch.Tensor, kind: str) -> None:
        """Put ``value`` in place of the parameter or buffer ``name`` (``kind``)."""
        owner, _, leaf = name.rpartition(".")
        target = self.module.get_submodule(owner) if owner else self.module
        getattr(target, kind)[leaf] = value

    def widen(self, values: np.ndarray) -> np.ndarray:
        """``values`` (..., R kept) as (..., n_full), NaN for the dropped copies."""
        out = np.full((*values.shape[:-1], self.n_full), np.nan, dtype=values.dtype)
        out[..., self.ids.numpy()] = values
        return out

    @torch.no_grad()
    def restore(self) -> None:
        tensors = self._tensors()
        pos = {int(c): i for i, c in enumerate(self.ids)}
        for name, v in tensors.items():
            rows = [
                v[pos[c]] if c in pos else self.parked[c][name].to(v) for c in range(self.n_full)
            ]
            full = torch.stack(rows).contiguous()
            if isinstance(v, torch.nn.Parameter):
                self._set(name, torch.nn.Parameter(full), "_parameters")
            else:
                self._set(name, full, "_buffers")
        del self.module.copy_ids, self.module.n_drawn
