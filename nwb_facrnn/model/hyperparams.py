"""Checking and interpreting FacRNN's hyperparameters (the constructor arguments)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import OptionError
from .modules import NONLINEARITIES, OUTPUT_ACTIVATIONS

#: The allowed values of every hyperparameter that names a choice.
CHOICES: dict[str, tuple] = {
    "observation": ("gaussian", "poisson"),
    "encoder": ("linear", "mlp"),
    "decoder": ("linear", "mlp"),
    "output_activation": tuple(OUTPUT_ACTIVATIONS),
    "nonlinearity": tuple(NONLINEARITIES),
    "penalty": ("partial", "total"),
    "postprocess": (None, "ica", "svd"),
    "init": ("auto", "ica", "pca"),
    "standardize": ("auto", "always", "never"),
}


def check_params(p: Mapping[str, Any]) -> None:
    """Raise OptionError, naming the value, unless the hyperparameters ``p`` can be fit."""

    def check(cond: bool, msg: str) -> None:
        if not cond:
            raise OptionError(msg)

    def is_int(v: Any) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    for name in ("n_groups", "group_rank", "n_init", "batch_size", "devices"):
        v = p[name]
        check(is_int(v) and v >= 1, f"{name} must be an integer >= 1, got {v!r}")
    for name in ("max_epochs", "max_steps"):
        v = p[name]
        ok = v is None or (is_int(v) and v >= 1)
        check(ok, f"{name} must be None or an integer >= 1, got {v!r}")
    check(p["batch_size"] >= 2, f"batch_size must be >= 2, got {p['batch_size']}")
    for name in ("beta", "alpha"):
        v = p[name]
        check(
            isinstance(v, int | float) and math.isfinite(v) and v >= 0,
            f"{name} must be a finite number >= 0, got {v!r}",
        )
    check(p["learning_rate"] > 0, f"learning_rate must be > 0, got {p['learning_rate']!r}")
    for name, allowed in CHOICES.items():
        v = p[name]
        check(v in allowed, f"{name} must be one of {allowed}, got {v!r}")
    linear = is_linear(p)
    check(
        p["alpha"] == 0 or linear,
        "alpha > 0 (block-diagonal penalty on B A) needs encoder='linear' and decoder='linear'",
    )
    check(
        p["postprocess"] is None or linear,
        f"postprocess={p['postprocess']!r} needs encoder='linear' and decoder='linear'",
    )
    check(
        p["observation"] == "gaussian" or p["output_activation"] is None,
        "output_activation applies to the Gaussian observation only; Poisson rates are "
        "always softplus(A z + a + u)",
    )
    check(
        p["smoothing"] is None or p["smoothing"] >= 0,
        f"smoothing must be None or a time constant >= 0 (bins), got {p['smoothing']!r}",
    )
    check(
        0 < p["validation_fraction"] < 1,
        f"validation_fraction must be in (0, 1), got {p['validation_fraction']!r}",
    )


def is_linear(p: Mapping[str, Any]) -> bool:
    """Linear encoder and decoder (``B`` and ``A`` are matrices)."""
    return p["encoder"] == "linear" and p["decoder"] == "linear"


def torch_device(device: str) -> torch.device:
    """The torch device of the ``device`` hyperparameter (``"auto"``: CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise OptionError(f"device must be 'auto', 'cpu' or 'cuda[:i]': {err}") from None


def module_kwargs(p: Mapping[str, Any], n_copies: int, n_neurons: int) -> dict[str, Any]:
    """The :class:`~.modules.LowRankRNNVAE` arguments of ``n_copies`` restarts for ``n_neurons``
    units."""
    return {
        "n_copies": n_copies,
        "n_neurons": n_neurons,
        "n_latents": p["n_groups"] * p["group_rank"],
        "observation": p["observation"],
        "encoder": p["encoder"],
        "decoder": p["decoder"],
        "hidden_size": p["hidden_size"],
        "nonlinearity": p["nonlinearity"],
        "output_activation": p["output_activation"],
        "seed": p["seed"],
    }


def init_kind(p: Mapping[str, Any]) -> str:
    """``"ica"`` or ``"pca"``: the ``init`` hyperparameter with ``"auto"`` resolved."""
    if p["init"] != "auto":
        return p["init"]
    n_latents = p["n_groups"] * p["group_rank"]
    return "ica" if is_linear(p) and p["beta"] > 0 and n_latents > 1 else "pca"


def standardizes(mode: str, seqs: np.ndarray, observed: np.ndarray | None) -> bool:
    """Whether a fit with ``standardize=mode`` standardizes the activity ``seqs``."""
    from .data import needs_standardization

    return mode == "always" or (mode == "auto" and needs_standardization(seqs, observed))
