"""Where a fit trains: in this process, in spawned workers, or across a ``torchrun`` group.

:func:`plan` decides from the ``devices`` hyperparameter and the process's launch (before any
data moves to the device); :meth:`Plan.run` runs :func:`~.training.train` there.  The
data-parallel machinery itself is :mod:`.distributed`, imported only for ``devices > 1``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import OptionError
from .training import TERMS, Callback, Problem, TrainOptions, TrainResult, train


@dataclass(frozen=True)
class Plan:
    """Where a fit trains (see :func:`plan`).

    Attributes
    ----------
    where : {"single", "spawn", "group"}
        In this process, in ``devices`` new processes, or across the processes of a
        ``torchrun`` launch.
    device : torch.device
        The fit's device (this process's, in a launched group).
    devices : int
        Processes that train.
    """

    where: str
    device: torch.device
    devices: int

    def run(
        self,
        problem: Problem,
        options: TrainOptions,
        module_kwargs: dict[str, Any],
        callback: Callback | None = None,
    ) -> TrainResult:
        """Train as :func:`~.training.train` does, where planned.

        ``module_kwargs`` rebuild the module in spawned workers; ``callback`` is the
        trainer's.  A data-parallel fit whose processes drifted apart warns
        (RuntimeWarning, attributed to the caller of ``fit``).
        """
        if self.where == "single":
            return train(problem, options, callback=callback)
        from . import distributed

        if self.where == "spawn":
            result = distributed.train_spawned(
                problem, options, module_kwargs, self.devices, callback
            )
        else:
            result = distributed.train_in_group(problem, options, callback)
        if result.rank_divergence:
            warnings.warn(
                f"data-parallel fit: the {self.devices} processes' parameters drifted apart by "
                f"up to {result.rank_divergence:.3g}: the gradient reduction was not identical "
                "on every process (spawned workers return rank 0's parameters)",
                RuntimeWarning,
                stacklevel=3,
            )
        return result


def plan(devices: int, device: torch.device) -> Plan:
    """How a fit with ``devices`` processes on ``device`` trains; refuses impossible plans
    (OptionError) before any data moves to the device.

    Under ``torchrun`` (``devices`` must then equal the number of launched processes),
    ``cuda`` means ``cuda:LOCAL_RANK``.
    """
    if devices == 1:
        return Plan("single", device, devices)
    from . import distributed

    world = distributed.launched_world_size()
    if world > 1:
        if devices != world:
            raise OptionError(
                f"devices={devices}, but this process is one of {world} launched "
                f"processes (torchrun or an initialised process group): use devices={world} "
                "to train across them, or devices=1 for an independent fit in each"
            )
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", distributed.local_rank())
        return Plan("group", device, devices)
    distributed.check_devices(devices, device)
    return Plan("spawn", device, devices)


def per_epoch(callback: Callable[[int, dict[str, float]], None]) -> Callback:
    """Adapt a user callback to the trainer's ``(epoch, terms (5, R))`` signature: the
    terms of the restart with the lowest objective in that epoch, by name."""

    def call(epoch: int, terms: np.ndarray) -> None:
        best = int(np.nanargmin(terms[0])) if np.isfinite(terms[0]).any() else 0
        callback(epoch, {t: float(terms[i, best]) for i, t in enumerate(TERMS)})

    return call
