"""Scoring a fitted FacRNN, and the results object a fit is stored and shown as.

:func:`evaluate` is the one place a fit's metrics are computed, on all fitted time steps or
on held-out ones, under the names of :data:`nwb_facrnn.metrics.METRICS`.
:func:`build_results` turns a fitted model and its data into the
:class:`~nwb_facrnn.FitResults` that the NWB writer stores as it is and that viewers show
before anything is written.
"""

from __future__ import annotations

import datetime
import platform
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__, metrics
from .errors import OptionError
from .io.results import FitResults, results_name
from .neural_data import NeuralData

if TYPE_CHECKING:
    from .model import FacRNN


def interleaved_steps(data: NeuralData) -> np.ndarray:
    """The paper's train/test split: True on the even time steps (training targets).

    Parameters
    ----------
    data : NeuralData
        Continuous ``(T, N)`` or trials ``(n_trials, T, N)``.

    Returns
    -------
    numpy.ndarray of bool, shape (T,) or (n_trials, T)
        The same split in every trial; the odd steps (``~mask``) are held out.
    """
    even = np.arange(data.n_bins) % 2 == 0
    return even if data.is_continuous else np.broadcast_to(even, data.activity.shape[:2]).copy()


def behavior_metric_name(behavior: str) -> str:
    """``<behavior>_decoding_r2``, the name made an identifier (``a/b vel`` -> ``a_b_vel``)."""
    return re.sub(r"\W+", "_", behavior).strip("_") + "_decoding_r2"


def evaluate(
    model: FacRNN,
    data: NeuralData | np.ndarray,
    steps: np.ndarray | None = None,
    *,
    inputs: np.ndarray | None = None,
    latents: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
    kernel: bool = False,
    decoding: bool = True,
) -> dict[str, float]:
    """A fit's metrics on some time steps, under the names of
    :data:`nwb_facrnn.metrics.METRICS`.

    Parameters
    ----------
    model : FacRNN
        Fitted.
    data : NeuralData or array, shape (T, N) or (n_trials, T, N)
        What it was fit on (a NeuralData brings its mask, inputs and behaviour).
    steps : bool array, shape (T,) or (n_trials, T), optional
        The steps to score (e.g. the held-out odd ones, ``~interleaved_steps(data)``);
        default all.
    inputs : array, optional
        External inputs, for array ``data``.
    latents, prediction : array, optional
        ``model.transform(data)`` and ``model.predict(data)`` when already computed.
    kernel : bool
        Also the kernel-density partial correlation (the paper's estimator; slow on long
        data).
    decoding : bool
        Cross-validated decoding R^2 of every behavioural series of ``data`` from the
        latents of all steps (whole trials are held out by the cross-validation).

    Returns
    -------
    dict of str to float
        ``log_likelihood`` (nats per step), ``gaussian_partial_correlation`` (nats; 0 for
        one group, NaN when undefined: fewer scored steps than latents, or a latent without
        variance), ``reconstruction_r2``, optionally ``kernel_partial_correlation`` and
        ``<behavior>_decoding_r2``.
    """
    arrays = () if isinstance(data, NeuralData) else (inputs,)
    z = model.transform(data, *arrays) if latents is None else latents
    chosen = np.ones(z.shape[:-1], bool) if steps is None else np.asarray(steps, dtype=bool)
    if chosen.shape != z.shape[:-1]:
        raise OptionError(f"steps must have shape {z.shape[:-1]}, got {chosen.shape}")
    step_mask = None if steps is None else chosen
    out = {
        "log_likelihood": float(model.score(data, *arrays, step_mask=step_mask)),
        "gaussian_partial_correlation": _gaussian_pc(z, chosen, model.n_groups),
    }
    if kernel:
        rows = z[chosen]
        out["kernel_partial_correlation"] = float(
            metrics.partial_correlation(
                rows[np.isfinite(rows).all(axis=1)], model.n_groups, seed=model.seed
            )
        )
    out["reconstruction_r2"] = _reconstruction_r2(model, data, arrays, chosen, prediction)
    if decoding and isinstance(data, NeuralData) and data.behavior:
        scores = metrics.behavior_decoding_r2(z, data.behavior, seed=model.seed)
        out.update({behavior_metric_name(k): float(v) for k, v in scores.items()})
    return out


def _reconstruction_r2(
    model: FacRNN,
    data: NeuralData | np.ndarray,
    arrays: tuple,
    chosen: np.ndarray,
    prediction: np.ndarray | None,
) -> float:
    """Pooled reconstruction R^2 on the observed entries of the ``chosen`` steps, block by
    block (no full copy of the prediction unless one is given)."""
    from .model.data import step_blocks  # torch: reading results must not import it

    x = data.activity if isinstance(data, NeuralData) else np.asarray(data)
    mask = data.mask if isinstance(data, NeuralData) else None
    if hasattr(x, "sequences"):  # chunked on disk: every value observed, read by blocks
        x3, mask = x.sequences(), None

        def rows(i: int, t0: int, t1: int) -> np.ndarray:
            return x3.read_rows(t0, t1)
    else:
        x3 = x.reshape(-1, *x.shape[-2:]) if x.ndim == 3 else x[None]

        def rows(i: int, t0: int, t1: int) -> np.ndarray:
            return x3[i, t0:t1]

    m3 = None if mask is None else mask.reshape(x3.shape)
    steps = chosen.reshape(x3.shape[:2])
    if prediction is not None:
        p3 = np.asarray(prediction).reshape(x3.shape)
        blocks = ((i, t0, t1, p3[i, t0:t1]) for i, t0, t1 in step_blocks(x3.shape))
    else:
        blocks = model.predict_blocks(data, *arrays)
    acc = metrics.PooledR2()
    for i, t0, t1, pred in blocks:
        xb = rows(i, t0, t1)
        w = np.isfinite(pred) & steps[i, t0:t1, None]
        w &= np.isfinite(xb) if m3 is None else m3[i, t0:t1]
        acc.add(xb, np.where(w, pred, 0.0), w)
    return acc.value()


def _gaussian_pc(z: np.ndarray, steps: np.ndarray, n_groups: int) -> float:
    if n_groups == 1:
        return 0.0  # nothing for one group to depend on: the formula is exactly 0
    rows = np.asarray(z, dtype=np.float64)[steps]
    rows = rows[np.isfinite(rows).all(axis=1)]
    if len(rows) <= rows.shape[1]:
        return float("nan")
    try:
        return metrics.gaussian_partial_correlation(np.cov(rows.T), n_groups)
    except ValueError:  # a latent without variance
        return float("nan")


def build_results(
    model: FacRNN,
    data: NeuralData,
    *,
    steps: str = "all",
    extra_metrics: dict[str, float] | None = None,
    name: str | None = None,
) -> FitResults:
    """The :class:`~nwb_facrnn.FitResults` of a fitted model: what the NWB writer stores.

    Latents at bin centres (unobserved bins left out), the low-rank connectivity with
    each unit's group strengths, the metrics (:func:`evaluate`), the training history,
    the parameters, the provenance and the model's state (its weights).

    Parameters
    ----------
    model : FacRNN
        Fitted on ``data``.
    data : NeuralData
    steps : {"all", "heldout"}
        Score every fitted step, or the held-out odd steps of the interleaved split
        (:func:`interleaved_steps`; the model was trained on the even ones).
    extra_metrics : dict of str to float, optional
        More metrics to store (names must be identifiers).
    name : str, optional
        The container name; default ``facrnn_G{G}H{H}_beta{beta}_seed{seed}``.

    Returns
    -------
    FitResults
        ``path`` is the data's source and ``object_path`` empty until it is written.
    """
    if steps not in metrics.STEPS:
        raise OptionError(f"steps must be one of {metrics.STEPS}, got {steps!r}")
    if not isinstance(data, NeuralData):
        raise TypeError(f"data must be the NeuralData the model was fit on, got {type(data)}")
    state = model.to_state()  # raises if the model is not fitted
    if state.meta["n_features_in_"] != data.n_units:
        raise OptionError(
            f"the model was fit on {state.meta['n_features_in_']} units but data has "
            f"{data.n_units}; pass the NeuralData the model was fit on"
        )
    z = model.transform(data)  # (T, K) or (n_trials, T, K); NaN where no unit was observed
    chosen = None if steps == "all" else ~interleaved_steps(data)
    scores = evaluate(model, data, chosen, latents=z)
    scores.update(_checked(extra_metrics or {}))

    k = z.shape[-1]
    z2 = z.reshape(-1, k)
    keep = np.isfinite(z2).all(axis=1)
    latents = z2[keep].astype(np.float32)
    centres = (data.timestamps + data.bin_size / 2).reshape(-1)[keep].astype(np.float64)
    trial_ids = None
    if not data.is_continuous:
        trial_ids = np.repeat(np.asarray(data.trial_ids, np.int64), data.n_bins)[keep]
    g, h = int(model.n_groups), int(model.group_rank)
    a = state.weights.get("A") if model.decoder == "linear" else None
    b = state.weights.get("B") if model.encoder == "linear" else None
    strength = dominant = None
    if a is not None:
        # each unit's std over time of the part of its drive from each group, A_g z_g: the
        # square root of diag(A_g cov(z_g) A_g^T), without forming (T, N) drives
        cov = np.atleast_2d(np.cov(latents.astype(np.float64), rowvar=False, bias=True))
        strength = np.stack(
            [
                np.sqrt(np.maximum(np.einsum("nk,kl,nl->n", a[:, s], cov[s, s], a[:, s]), 0))
                for s in _slices(g, h)
            ],
            axis=1,
        ).astype(np.float32)
        dominant = strength.argmax(axis=1).astype(np.int32)
    return FitResults(
        name=name or results_name(model.get_params()),
        path=str(data.provenance.get("source", "")),
        object_path="",
        latents=latents,
        timestamps=centres,
        trial_ids=trial_ids,
        unit_ids=np.asarray(data.unit_ids),
        unit_table=data.unit_table,
        output_loadings=None if a is None else a.astype(np.float32),
        input_loadings=None if b is None else b.astype(np.float32),
        group_strength=strength,
        dominant_group=dominant,
        n_groups=g,
        group_rank=h,
        bin_size=float(data.bin_size),
        params=dict(state.meta["params"]),
        metrics=scores,
        history={key: np.asarray(v) for key, v in state.history.items()},
        provenance=provenance(data),
        steps=steps,
        trials=_trials(data),
        state=state,
    )


def _slices(g: int, h: int) -> list[slice]:
    return [slice(i * h, (i + 1) * h) for i in range(g)]


def _checked(extra: dict[str, float]) -> dict[str, float]:
    out = {}
    for key, value in extra.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.\-]*", key):
            raise OptionError(f"metric names must be identifiers, got {key!r}")
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise OptionError(f"metric {key!r} must be a number, got {value!r}") from None
    return out


def _trials(data: NeuralData) -> dict[str, np.ndarray]:
    """The fitted trials' scalar columns with their ids (empty for continuous data)."""
    if data.is_continuous or data.trial_ids is None:
        return {}
    out = {"id": np.asarray(data.trial_ids)}
    for key, values in data.trials.items():
        arr = np.asarray(values)
        if arr.ndim == 1 and len(arr) == len(out["id"]) and key != "id":
            out[key] = arr
    return out


def provenance(data: NeuralData) -> dict[str, Any]:
    """Where the data came from (the read's provenance) and the software that made the fit."""
    import torch

    software = {"nwb_facrnn": __version__, "python": platform.python_version()}
    software.update(torch=torch.__version__, numpy=np.__version__)
    for module in ("pynwb", "hdmf", "h5py"):
        try:
            software[module] = __import__(module).__version__
        except ImportError:  # pragma: no cover - dependencies of the package
            pass
    return {
        **data.provenance,
        "unit_table": data.unit_table,
        "modality": data.modality,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "software": software,
    }


__all__ = [
    "behavior_metric_name",
    "build_results",
    "evaluate",
    "interleaved_steps",
    "provenance",
]
