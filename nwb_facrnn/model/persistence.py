"""Saving and loading fitted FacRNN models: :class:`ModelState` and the ``.npz`` format.

A fitted model is plain data (:class:`ModelState`): JSON-able metadata (format, version,
hyperparameters and the scalar learned attributes) and numpy arrays (module weights,
per-epoch history, restart objectives, observed means).  :meth:`FacRNN.save
<nwb_facrnn.FacRNN.save>` writes it to one ``.npz`` file (no pickle) and the NWB writer
stores it in an NWB file; both are read back through :func:`from_state`.

``.npz`` entries: ``state/<key>`` (each weight with a leading axis of length 1),
``history/<term>``, ``init_objectives_``, ``observed_mean_`` and ``meta`` (the metadata as a
JSON string).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import __version__
from ..atomic import write_file
from ..errors import OptionError

if TYPE_CHECKING:
    from .estimator import FacRNN

SAVE_FORMAT = "nwb-facrnn-model/1"

#: The scalar learned attributes stored in the metadata, with their types.
FITTED_SCALARS: dict[str, type] = {
    "n_features_in_": int,
    "n_samples_": int,
    "latent_std_": float,
    "best_init_": int,
    "n_epochs_": int,
    "stopped_early_": bool,
    "fit_time_": float,
    "n_steps_": int,
    "samples_seen_": int,
    "samples_per_second_": float,
    "steps_per_row_": int,
}

#: Learned attributes that models saved before they existed lack: 0 or NaN (unknown).
_UNKNOWN_BEFORE = {
    "n_steps_": 0,
    "samples_seen_": 0,
    "samples_per_second_": float("nan"),
    "steps_per_row_": 0,
}


#: The standardization buffers of models saved before it existed: none (the identity).
_IDENTITY = {"offset": 0.0, "scale": 1.0}


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
        ``"log_std"``, MLP ``"enc.w1"`` ..., and the standardization ``"offset"`` and
        ``"scale"`` (N,)), float32.
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


def to_state(model: FacRNN) -> ModelState:
    """The fitted ``model`` as a :class:`ModelState` (NotFittedError before ``fit``)."""
    model._check_fitted()
    meta = {
        "format": SAVE_FORMAT,
        "nwb_facrnn_version": __version__,
        "params": {k: v for k, v in model.get_params().items() if k != "device"},
        **{k: kind(getattr(model, k)) for k, kind in FITTED_SCALARS.items()},
    }
    weights = {k: v.detach().cpu().numpy()[0] for k, v in model.module_.state_dict().items()}
    return ModelState(
        meta=meta,
        weights=weights,
        history={k: np.asarray(v) for k, v in model.history_.items()},
        init_objectives=np.asarray(model.init_objectives_, dtype=np.float64),
        observed_mean=np.asarray(model.observed_mean_, dtype=np.float32),
    )


def from_state(cls: type[FacRNN], state: ModelState, device: str, origin: str) -> FacRNN:
    """Rebuild a fitted ``cls`` from ``state``; ``origin`` names the source in errors.

    Raises
    ------
    OptionError
        An unknown format, a missing entry or a weight of the wrong shape.
    """
    meta = state.meta
    if meta.get("format") != SAVE_FORMAT:
        raise OptionError(
            f"{origin}: unsupported model format {meta.get('format')!r}, expected {SAVE_FORMAT!r}"
        )
    # models saved before standardization existed did not standardize
    model = cls(**{"standardize": "never", **meta["params"]}, device=device)
    try:
        for k, kind in FITTED_SCALARS.items():
            setattr(model, k, kind(meta[k] if k in meta else _UNKNOWN_BEFORE[k]))
    except KeyError as err:
        raise OptionError(f"{origin}: the saved model lacks {err.args[0]!r}") from None
    model.history_ = dict(state.history)
    model.init_objectives_ = np.asarray(state.init_objectives)
    model.observed_mean_ = np.asarray(state.observed_mean)
    model.module_ = model._new_module(1).to(model._torch_device())
    expected = model.module_.state_dict()
    n = model.n_features_in_
    # models saved before standardization existed worked in the data's units
    weights = {**{k: np.full(n, v, np.float32) for k, v in _IDENTITY.items()}, **state.weights}
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise OptionError(f"{origin}: the saved model lacks the weights {missing}")
    loaded = {}
    for k, v in expected.items():
        w = np.asarray(weights[k])
        if w.shape != tuple(v.shape[1:]):
            raise OptionError(
                f"{origin}: weight {k!r} has shape {w.shape}, expected {tuple(v.shape[1:])}"
            )
        loaded[k] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))[None]
    model.module_.load_state_dict(loaded)
    model.module_.eval()
    return model


def save(model: FacRNN, path: str | os.PathLike) -> Path:
    """Write the fitted ``model`` to one ``.npz`` file, atomically (see the module docstring)."""
    arrays = _npz_arrays(to_state(model))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez appends no ".npz" suffix
            np.savez(fh, **arrays)

    return write_file(path, write)


def load(cls: type[FacRNN], path: str | os.PathLike, device: str) -> FacRNN:
    """Read a model written by :func:`save` (never unpickles).

    Raises
    ------
    OptionError
        ``path`` is not a saved model (or one :func:`from_state` refuses).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise OptionError(f"{path}: not a saved FacRNN model ({err})") from None
    if "meta" not in arrays or "observed_mean_" not in arrays:
        raise OptionError(f"{path}: not a saved FacRNN model (no 'meta' entry)")
    state = ModelState(
        meta=json.loads(str(arrays["meta"])),
        weights={k[6:]: v[0] for k, v in arrays.items() if k.startswith("state/")},
        history={k[8:]: v for k, v in arrays.items() if k.startswith("history/")},
        init_objectives=arrays["init_objectives_"],
        observed_mean=arrays["observed_mean_"],
    )
    return from_state(cls, state, device, str(path))


def _npz_arrays(state: ModelState) -> dict[str, np.ndarray]:
    """The ``.npz`` entries of ``state``."""
    arrays = {f"state/{k}": v[None] for k, v in state.weights.items()}
    arrays.update({f"history/{k}": v for k, v in state.history.items()})
    arrays["init_objectives_"] = state.init_objectives
    arrays["observed_mean_"] = state.observed_mean
    arrays["meta"] = np.array(json.dumps(state.meta))
    return arrays
