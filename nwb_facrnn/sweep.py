"""Sweeps: the same FacRNN fit over a grid of ``(G, H, beta, seed)`` and many sessions.

Every fit of a sweep is one task: it reads its own source (a local NWB file or a DANDI asset),
fits FacRNN on the even time steps (the paper's interleaved split), scores it on the odd ones,
writes its results into NWB (``DIR/fits/<key>.nwb``) and returns one row of metrics.  The
tasks run on `Ray <https://docs.ray.io>`_ (the ``distributed`` extra) -- a local Ray instance by
default, or an existing cluster -- or, without Ray, one after another in this process, with
the same rows and files.

A sweep is resumable: a fit whose row (``DIR/fits/<key>.json``, written after its NWB file is
complete) says ``"ok"`` is not run again; a failed fit is recorded with its error and retried
by the next run.  :func:`write_summary` gathers the rows into ``DIR/summary.csv`` and
:func:`select_model` picks ``(G, H, beta)`` from them::

    from nwb_facrnn.sweep import (expand_sources, plan_sweep, run_sweep, select_model,
                                  write_summary)
    specs = plan_sweep(expand_sources(["sessions/*.nwb"]), n_groups=[1, 2, 3],
                       group_rank=[1, 2, 3], beta=[20], seeds=range(5),
                       read_options={"series": "DfOverF"}, fit_options={"max_epochs": 40})
    rows = run_sweep(specs, "sweep")
    write_summary(rows, "sweep")
    print(select_model(rows).choice)

On a cluster (``address="ray://head:10001"`` or ``"auto"``) every worker node needs
nwb-facrnn installed (the same version) and ``DIR`` must be storage that the workers share
(e.g. NFS): the tasks write there.  ``ray://`` addresses need the Ray Client
(``pip install 'ray[client]'``), and a cluster with Ray's token authentication (on by default
in recent Ray, e.g. 2.60) the cluster's token, as every Ray driver does.  Run one sweep per
``DIR`` at a time.  Ray is imported only when a sweep runs on it (and torch only when fits
are planned or run): reading a summary and selecting a model need neither.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import inspect
import io
import json
import math
import os
import re
import shutil
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

#: Row columns of ``summary.csv``, in this order; the ``<name>_decoding_r2`` columns of the
#: behavioural series go after ``heldout_reconstruction_r2`` (sorted by name).
COLUMNS = (
    "source",
    "key",
    "n_groups",
    "group_rank",
    "beta",
    "seed",
    "status",
    "heldout_log_likelihood",
    "heldout_partial_correlation",
    "heldout_reconstruction_r2",
    "n_units",
    "n_epochs",
    "fit_time_s",
    "path",
    "fit_name",
    "error",
)
_INT_COLUMNS = ("n_groups", "group_rank", "seed", "n_units", "n_epochs")
_TEXT_COLUMNS = ("source", "key", "status", "path", "fit_name", "error")
#: What the metrics of a row mean (units), for tables and docs.
METRIC_DOCS = {
    "heldout_log_likelihood": "mean one-step predictive log-likelihood log p(x_t | x_{t-1}) "
    "on the odd (held-out) time steps, nats per time step (summed over units)",
    "heldout_partial_correlation": "Gaussian partial correlation between the latent groups on "
    "the odd time steps, nats (0: independent groups; 0 for G = 1)",
    "heldout_reconstruction_r2": "variance-weighted R^2 of the one-step prediction of the "
    "odd time steps, pooled over units",
}
#: Environment variables a task needs from the driver (DANDI instance, cache, HTTP settings).
#: Workers of a local Ray instance inherit the driver's environment when the instance starts;
#: these are passed with every task so that later changes count too.  ``DANDI_API_KEY`` is
#: not sent along (a secret in task arguments); set it on the workers for embargoed data.
FORWARDED_ENV = (
    "DANDI_API_URL",
    "DANDI_NO_ET",
    "NWB_FACRNN_CACHE_DIR",
    "NWB_FACRNN_HTTP_TIMEOUT",
    "NWB_FACRNN_HTTP_RETRIES",
)
_FIT_KEYS = ("n_groups", "group_rank", "beta", "seed")
#: read_nwb arguments that change how a file is fetched, not what is read (not in the key).
_FETCH_ONLY = ("cache", "download")
_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_NWB_SUFFIXES = (".nwb", ".zarr", ".h5", ".hdf5")


# --------------------------------------------------------------------------- what to fit
@dataclass(frozen=True)
class FitSpec:
    """One fit of a sweep.

    Attributes
    ----------
    source : str
        A local NWB file or Zarr store (absolute path) or a remote source (``DANDI:...`` ID or
        URL), as :func:`nwb_facrnn.read_nwb` takes it.
    n_groups, group_rank : int
        ``G`` latent groups of rank ``H`` (``K = G * H`` latents).
    beta : float
        Weight of the partial-correlation penalty.
    seed : int
        Seed of the fit.
    read_options : dict
        Keyword arguments of :func:`nwb_facrnn.read_nwb` (``series``, ``bin_size``,
        ``trials``, ``behavior``, ``dandi_api_url``, ``cache`` ...).
    fit_options : dict
        Other :class:`~nwb_facrnn.FacRNN` arguments (``max_epochs``, ``batch_size``,
        ``n_init``, ``smoothing``, ``device`` ...); ``observation="auto"`` (the default here)
        is Poisson for spikes and Gaussian for imaging.
    """

    source: str
    n_groups: int
    group_rank: int
    beta: float
    seed: int
    read_options: dict[str, Any] = field(default_factory=dict, hash=False)
    fit_options: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def fit_name(self) -> str:
        """``facrnn_G{G}H{H}_beta{beta}_seed{seed}``, the results container's name."""
        return f"facrnn_G{self.n_groups}H{self.group_rank}_beta{self.beta:g}_seed{self.seed}"

    @property
    def options_hash(self) -> str:
        """8 hex digits of sha256 over the source and the options that change the fit.

        Options at their default value and the fetch-only read options (``cache``,
        ``download``) are left out, so the same fit asked for from Python or the command line
        gets the same hash.
        """
        read, fit = changed_options(self.read_options, self.fit_options)
        ident = {"source": self.source, "read": read, "fit": fit}
        text = json.dumps(ident, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def key(self) -> str:
        """A stable, filesystem-safe id: ``<source stem>_<fit name>_<options hash>``.

        E.g. ``session_facrnn_G2H3_beta20_seed0_1a2b3c4d``; the hash covers the whole source
        (two files with the same name in different folders differ) and the options.
        """
        return f"{source_stem(self.source)}_{self.fit_name}_{self.options_hash}"

    def fit_params(self) -> dict[str, Any]:
        """The :class:`~nwb_facrnn.FacRNN` arguments of this fit (``observation`` may be
        ``"auto"``; ``progress`` off)."""
        return {
            **_fit_defaults(),
            **self.fit_options,
            "n_groups": self.n_groups,
            "group_rank": self.group_rank,
            "beta": self.beta,
            "seed": self.seed,
            "progress": False,
        }


def source_stem(source: str) -> str:
    """The file name of a source without its NWB suffixes, filesystem-safe (at most 60 chars).

    ``/data/sub-1_ses-2.nwb`` -> ``sub-1_ses-2``; ``DANDI:000128/sub-x/sub-x_ecephys.nwb`` ->
    ``sub-x_ecephys``; ``a.nwb.zarr`` -> ``a``.
    """
    text = str(source).split("?", 1)[0].rstrip("/")
    name = PurePosixPath(text.replace("\\", "/")).name or "source"
    while name.lower().endswith(_NWB_SUFFIXES):
        name = name[: name.rfind(".")]
    return _UNSAFE.sub("_", name).strip("._")[:60] or "source"


def _defaults(fn) -> dict[str, Any]:
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


def _facrnn_defaults() -> dict[str, Any]:
    from .model.estimator import FacRNN  # torch: only when a sweep is planned or run

    return _defaults(FacRNN.__init__)


# FacRNN's defaults, but observation "auto" (from the modality); filled in on first use
_SWEEP_FIT_DEFAULTS: dict[str, Any] = {}


def _fit_defaults() -> dict[str, Any]:
    if not _SWEEP_FIT_DEFAULTS:
        defaults = _facrnn_defaults()
        for key in (*_FIT_KEYS, "progress"):
            defaults.pop(key)
        _SWEEP_FIT_DEFAULTS.update(defaults, observation="auto")
    return _SWEEP_FIT_DEFAULTS


def _normalized_read(options: dict[str, Any]) -> dict[str, Any]:
    from .io.reader import read_nwb

    defaults = _defaults(read_nwb)
    out = {}
    for k, v in options.items():
        if k in _FETCH_ONLY:
            continue
        if isinstance(v, tuple):
            v = list(v)
        if v is None or (isinstance(v, list) and not v) or v == defaults.get(k, object()):
            continue
        out[k] = v
    return out


def _normalized_fit(options: dict[str, Any]) -> dict[str, Any]:
    defaults = _fit_defaults()
    return {k: v for k, v in options.items() if not (k in defaults and v == defaults[k])}


def changed_options(
    read_options: dict[str, Any], fit_options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The read and fit options that differ from their defaults (what identifies a fit).

    ``cache`` and ``download`` (how a remote file is fetched) are left out too; tuples
    become lists.
    """
    return _normalized_read(read_options), _normalized_fit(fit_options)


def _check_options(read_options: dict[str, Any], fit_options: dict[str, Any]) -> None:
    from .io.reader import read_nwb

    readable = [p for p in inspect.signature(read_nwb).parameters if p != "source"]
    unknown = sorted(set(read_options) - set(readable))
    if unknown:
        raise ValueError(f"unknown read option(s) {unknown}; read_nwb takes {readable}")
    allowed = sorted(_fit_defaults())
    unknown = sorted(set(fit_options) - set(allowed))
    if unknown:
        swept = sorted(set(unknown) & {*_FIT_KEYS, "progress"})
        hint = f" ({swept} are set by the sweep grid)" if swept else ""
        raise ValueError(f"unknown fit option(s) {unknown}{hint}; FacRNN takes {allowed}")


# --------------------------------------------------------------------------- sources
def expand_sources(patterns: Iterable[str], dandi_api_url: str | None = None) -> list[str]:
    """The NWB sources that ``patterns`` name, in order, each once.

    Parameters
    ----------
    patterns : iterable of str
        Local paths and globs (``sessions/*.nwb``, ``data/**/*.nwb``; sorted matches),
        remote assets as given (``DANDI:000128/sub-x/x.nwb``, DANDI or https URLs), whole
        dandisets (``DANDI:000128``, ``DANDI:000128@0.220113.0400``: their NWB assets) and
        globs over a dandiset's asset paths (``DANDI:000128/sub-*/*.nwb``).
    dandi_api_url : str, optional
        The DANDI instance to list dandisets on (default ``$DANDI_API_URL``, else the
        public archive).

    Returns
    -------
    list of str
        Local sources as absolute paths, remote ones as ``DANDI:<id>@<version>/<path>``
        (assets of a listed dandiset) or as given.

    Raises
    ------
    ValueError
        A local pattern that matches nothing, a local path that does not exist, a dandiset
        without NWB assets.
    """
    from .io.dandi import is_remote, list_nwb_assets, parse_source

    out: list[str] = []
    for pattern in patterns:
        pattern = str(pattern).strip()
        if not pattern:
            raise ValueError("an empty source was given")
        if is_remote(pattern):
            parsed = parse_source(pattern)
            if parsed.kind == "dandiset":
                name, rows = list_nwb_assets(pattern, dandi_api_url)
                if not rows:
                    raise ValueError(f"{pattern}: the dandiset {name} has no NWB assets")
                out.extend(f"{name}/{row['path']}" for row in rows)
            elif parsed.kind == "asset" and _GLOB_CHARS.search(parsed.path or ""):
                out.extend(_dandi_glob(pattern, parsed, dandi_api_url, list_nwb_assets))
            else:
                out.append(pattern)
        elif _GLOB_CHARS.search(pattern):
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            if not matches:
                raise ValueError(f"{pattern}: no file matches this pattern")
            out.extend(str(Path(m).resolve()) for m in matches)
        else:
            path = Path(pattern).expanduser()
            if not path.exists():
                raise ValueError(f"{pattern}: no such file or directory")
            out.append(str(path.resolve()))
    return list(dict.fromkeys(out))


def _dandi_glob(pattern: str, parsed, dandi_api_url: str | None, list_nwb_assets) -> list[str]:
    from fnmatch import fnmatchcase

    dandiset = f"DANDI:{parsed.dandiset_id}" + (f"@{parsed.version}" if parsed.version else "")
    name, rows = list_nwb_assets(dandiset, dandi_api_url)
    matches = [f"{name}/{r['path']}" for r in rows if fnmatchcase(r["path"], parsed.path)]
    if not matches:
        raise ValueError(f"{pattern}: no NWB asset of {name} matches this pattern")
    return matches


def _local_or_remote(source: str) -> str:
    from .io.dandi import is_remote

    return source if is_remote(source) else str(Path(source).expanduser().resolve())


def plan_sweep(
    sources: Iterable[str],
    n_groups: Iterable[int],
    group_rank: Iterable[int],
    beta: Iterable[float],
    seeds: Iterable[int],
    read_options: dict[str, Any] | None = None,
    fit_options: dict[str, Any] | None = None,
) -> list[FitSpec]:
    """Every fit of the grid: sources x n_groups x group_rank x beta x seeds, in that order.

    Parameters
    ----------
    sources : iterable of str
        NWB sources (see :func:`expand_sources`); local paths are made absolute.
    n_groups, group_rank : iterable of int
        ``G`` and ``H`` values (each >= 1).
    beta : iterable of float
        Partial-correlation weights (each finite and >= 0).
    seeds : iterable of int
    read_options : dict, optional
        :func:`nwb_facrnn.read_nwb` keyword arguments, the same for every source.
    fit_options : dict, optional
        Other :class:`~nwb_facrnn.FacRNN` arguments (``max_epochs``, ``n_init`` ...).

    Returns
    -------
    list of FitSpec
        Duplicates removed.

    Raises
    ------
    ValueError
        An empty list, a value out of range, or an unknown option.
    """
    read_options = dict(read_options or {})
    fit_options = dict(fit_options or {})
    _check_options(read_options, fit_options)
    srcs = list(dict.fromkeys(_local_or_remote(str(s)) for s in sources))
    gs = _ints(n_groups, "n_groups", 1)
    hs = _ints(group_rank, "group_rank", 1)
    seeds_ = _ints(seeds, "seeds", None)
    betas = list(dict.fromkeys(float(b) for b in beta))
    if not betas or not all(math.isfinite(b) and b >= 0 for b in betas):
        raise ValueError(f"beta must be one or more finite numbers >= 0, got {betas}")
    if not srcs:
        raise ValueError("no source to fit")
    return [
        FitSpec(src, g, h, b, s, read_options, fit_options)
        for src in srcs
        for g in gs
        for h in hs
        for b in betas
        for s in seeds_
    ]


def _ints(values: Iterable[int], name: str, minimum: int | None) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name} must be integers, got {v!r}")
        if minimum is not None and v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {v}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name}: no value given")
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- one fit
def interleaved_steps(data) -> np.ndarray:
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


def heldout_partial_correlation(z: np.ndarray, steps: np.ndarray, n_groups: int) -> float:
    """Gaussian partial correlation between latent groups on some time steps (nats).

    ``0.5 * (sum_g log det S_gg - log det S)`` of the latents' covariance ``S`` on the
    selected steps: the KL divergence between the joint Gaussian and the product of its
    group marginals.  With one group there is nothing for the group to depend on and the
    formula is exactly 0, which is what is returned for ``n_groups == 1``.

    Parameters
    ----------
    z : numpy.ndarray, shape (T, K) or (n_trials, T, K)
        Posterior-mean latents (``FacRNN.transform``); NaN rows (unobserved steps) are
        left out.
    steps : numpy.ndarray of bool, shape (T,) or (n_trials, T)
        Which steps count (e.g. the held-out ones).
    n_groups : int
        ``G``; must divide ``K``.

    Returns
    -------
    float
        Nats; NaN when it is undefined (fewer usable steps than ``K + 1``, or a latent
        without variance).
    """
    from .metrics import gaussian_partial_correlation

    if n_groups == 1:
        return 0.0
    rows = np.asarray(z, dtype=np.float64)[np.asarray(steps, dtype=bool)]
    rows = rows[np.isfinite(rows).all(axis=1)]
    if len(rows) <= rows.shape[1]:
        return float("nan")
    try:
        return gaussian_partial_correlation(np.cov(rows.T), n_groups)
    except ValueError:
        return float("nan")


def _metric_name(behavior: str) -> str:
    """``<behavior>_decoding_r2`` with the name made an identifier (``a/b vel`` -> ``a_b_vel``)."""
    return re.sub(r"\W+", "_", behavior).strip("_") + "_decoding_r2"


def fits_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir/fits``: one ``<key>.nwb`` and one ``<key>.json`` per fit."""
    return Path(out_dir) / "fits"


def finished_row(spec: FitSpec, out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The stored row of ``spec`` if it finished: its JSON says ``"ok"`` and its NWB file
    exists; else None (never run, failed, or its files are incomplete)."""
    path = fits_dir(out_dir) / f"{spec.key}.json"
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict) or row.get("status") != "ok" or row.get("key") != spec.key:
        return None
    result = row.get("path")
    if not result or not Path(result).exists():
        return None
    for k, v in row.items():  # non-finite metrics are stored as strings (see _jsonable)
        if v in ("nan", "inf", "-inf") and k not in _TEXT_COLUMNS:
            row[k] = float(v)
    return {**row, "reused": True}


def run_fit(
    spec: FitSpec, out_dir: str | os.PathLike, *, threads: int | None = None
) -> dict[str, Any]:
    """Fit one spec, write its results into NWB and return its row; never raises.

    The fit uses the even time steps of every trial (the paper's interleaved split) and is
    scored on the odd ones: held-out log-likelihood (:meth:`FacRNN.score`), Gaussian
    partial correlation between the groups (:func:`heldout_partial_correlation`) and
    reconstruction R^2 of the one-step prediction; every behavioural series of the data
    gets a cross-validated decoding R^2 from the latents
    (:func:`nwb_facrnn.metrics.behavior_decoding_r2`).  The model, its latents and these
    metrics (``heldout_*``, ``*_decoding_r2``) are written with
    :func:`nwb_facrnn.io.writer.write_fit` to ``out_dir/fits/<key>.nwb`` (``.nwb.zarr`` for a
    Zarr source; linked to a local source's data, a standalone file for a remote source),
    then the row to ``out_dir/fits/<key>.json`` (atomically, after the NWB file is
    complete).  A spec that already finished (:func:`finished_row`) is not fit again.

    Parameters
    ----------
    spec : FitSpec
    out_dir : path
        The sweep's directory (created).
    threads : int, optional
        Torch threads for this fit (restored afterwards); default: leave as is.

    Returns
    -------
    dict
        The row: the :data:`COLUMNS` (``status`` ``"ok"`` or ``"failed"``, ``error`` as
        ``"Type: message"`` on one line), the decoding columns, ``reused`` (True when the
        stored row was returned) and, in the JSON only, ``read_options``, ``fit_options``,
        ``warnings`` and a failure's ``traceback``.
    """
    done = finished_row(spec, out_dir)
    if done is not None:
        return done
    start = time.perf_counter()
    row = _failed_row(spec)
    caught: list[warnings.WarningMessage] = []
    try:
        fits = fits_dir(out_dir)
        fits.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(record=True) as caught, _torch_threads(threads):
            warnings.simplefilter("always")
            row.update(_fit_and_write(spec, fits))
        row["status"] = "ok"
    except Exception as err:
        row["error"] = _one_line(err)
        row["traceback"] = traceback.format_exc(limit=20)
    row["wall_time_s"] = round(time.perf_counter() - start, 3)
    row["warnings"] = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    row["read_options"] = spec.read_options
    row["fit_options"] = spec.fit_options
    with contextlib.suppress(Exception):  # the row is returned even when it cannot be stored
        _write_json(fits_dir(out_dir) / f"{spec.key}.json", row)
    return {**row, "reused": False}


def _fit_and_write(spec: FitSpec, fits: Path) -> dict[str, Any]:
    from .io.backend import detect_backend
    from .io.dandi import is_remote
    from .io.reader import read_nwb
    from .io.writer import write_fit
    from .metrics import behavior_decoding_r2, reconstruction_r2
    from .model.estimator import FacRNN

    data = read_nwb(spec.source, **spec.read_options)
    params = spec.fit_params()
    if params["observation"] == "auto":
        params["observation"] = "poisson" if data.modality == "spikes" else "gaussian"
    model = FacRNN(**params)
    train = interleaved_steps(data)
    test = ~train
    model.fit(data, step_mask=train)
    z = model.transform(data)
    pred = model.predict(data)
    scored = data.mask & test[..., None] & np.isfinite(pred)
    metrics = {
        "heldout_log_likelihood": float(model.score(data, step_mask=test)),
        "heldout_partial_correlation": heldout_partial_correlation(z, test, spec.n_groups),
        "heldout_reconstruction_r2": float(
            reconstruction_r2(data.activity, np.where(scored, pred, 0.0), scored)
        ),
    }
    if data.behavior:
        scores = behavior_decoding_r2(z, data.behavior, seed=spec.seed)
        metrics.update({_metric_name(k): float(v) for k, v in scores.items()})
    zarr = not is_remote(spec.source) and detect_backend(spec.source) == "zarr"
    dest = fits / f"{spec.key}{'.nwb.zarr' if zarr else '.nwb'}"
    _remove(dest)  # a leftover of a run killed between this file and its row
    path, name = write_fit(model, data, dest, name=spec.fit_name, metrics=metrics)
    return {
        **metrics,
        "n_units": int(data.n_units),
        "n_epochs": int(model.n_epochs_),
        "fit_time_s": round(float(model.fit_time_), 3),
        "path": str(Path(path).resolve()),
        "fit_name": name,
        "observation": params["observation"],
    }


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _one_line(err: BaseException, limit: int = 500) -> str:
    message = " ".join(str(err).split()) or "(no message)"
    text = f"{type(err).__name__}: {message}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write_json(path: Path, row: dict[str, Any]) -> None:
    _write_text(path, json.dumps(_jsonable(row), indent=1, default=str) + "\n")


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` atomically: a temporary file beside it, flushed, then renamed over it.

    One writer per file (a fit's row, the summary), so no lock file is needed.
    """
    import uuid

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".partial-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    """NaN and inf as JSON strings would not round-trip; store them as strings Python reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------- many fits
def _ray_task(
    spec: FitSpec, out_dir: str, env: dict[str, str], threads: int
) -> dict[str, Any]:  # pragma: no cover - runs in a Ray worker
    """The Ray task: :func:`run_fit` with the driver's DANDI/cache settings."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return run_fit(spec, out_dir, threads=threads)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ray_available() -> bool:
    """Whether Ray (the ``distributed`` extra) can be imported."""
    return _importable("ray")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_sweep(
    specs: Sequence[FitSpec],
    out_dir: str | os.PathLike,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    backend: str = "auto",
    cpus_per_fit: int = 1,
    gpus_per_fit: float = 0,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every fit of ``specs`` (each a Ray task, or one after another) and return the rows.

    Fits that already finished (:func:`finished_row`) are not run again: their stored rows
    come back with ``reused=True``.  A failing fit gives a row with ``status="failed"`` and
    its error; the others go on.

    Parameters
    ----------
    specs : sequence of FitSpec
        From :func:`plan_sweep`.
    out_dir : path
        The sweep's directory: ``fits/<key>.nwb`` and ``fits/<key>.json`` per fit.  With a
        cluster it must be storage every worker shares.
    address : str, optional
        An existing Ray cluster (``"ray://head:10001"``, ``"auto"``, ``"host:6379"``);
        implies ``backend="ray"``.  Default: a local Ray instance, started here and shut down
        at the end (an instance already initialized in this process is used as it is).
    num_cpus : int, optional
        CPUs of the local Ray instance (default: all of this machine's).
    backend : {"auto", "ray", "serial"}
        ``"auto"``: Ray when it is installed, else serial.  ``"serial"``: in this process,
        one fit after another.
    cpus_per_fit : int
        CPUs a Ray task reserves, and torch threads of its fit (default 1: the fits are
        small, and more threads per fit than cores per fit oversubscribe the machine).
    gpus_per_fit : float
        GPUs a Ray task reserves (e.g. ``1`` or ``0.5`` with ``fit_options={"device":
        "cuda"}``); Ray hides the GPUs from tasks that reserve none.
    on_result : callable, optional
        Called with every row as soon as it is ready (reused rows first), in completion
        order: progress.

    Returns
    -------
    list of dict
        One row per spec, in the order of ``specs``.

    Raises
    ------
    ImportError
        ``backend="ray"`` or ``address`` without Ray installed; a ``ray://`` address without
        the Ray Client (``pip install 'ray[client]'``).
    ValueError
        An unknown backend.
    """
    if backend not in ("auto", "ray", "serial"):
        raise ValueError(f"backend must be 'auto', 'ray' or 'serial', got {backend!r}")
    if backend == "serial" and address is not None:
        raise ValueError("address= names a Ray cluster; it cannot be used with backend='serial'")
    use_ray = backend == "ray" or address is not None or (backend == "auto" and ray_available())
    if use_ray and not ray_available():
        raise ImportError(
            "Ray is not installed: pip install 'nwb-facrnn[distributed]' (or run the sweep "
            "serially: backend='serial', --serial)"
        )
    if use_ray and str(address or "").startswith("ray://") and not _importable("grpc"):
        raise ImportError(
            f"connecting to {address} needs the Ray Client: pip install 'ray[client]' (or run "
            "the sweep on the cluster's head node with address='auto')"
        )
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    unique = list({s.key: s for s in specs}.values())
    rows: dict[str, dict[str, Any]] = {}
    pending = []
    for spec in unique:
        done = finished_row(spec, out)
        if done is None:
            pending.append(spec)
        else:
            rows[spec.key] = done
            if on_result is not None:
                on_result(done)
    if pending and use_ray:
        _run_ray(pending, out, rows, address, num_cpus, cpus_per_fit, gpus_per_fit, on_result)
    else:
        for spec in pending:
            rows[spec.key] = row = run_fit(spec, out)
            if on_result is not None:
                on_result(row)
    return [rows[s.key] for s in specs]


def _run_ray(
    specs: list[FitSpec],
    out: Path,
    rows: dict[str, dict[str, Any]],
    address: str | None,
    num_cpus: int | None,
    cpus_per_fit: int,
    gpus_per_fit: float,
    on_result: Callable[[dict[str, Any]], None] | None,
) -> None:
    import logging

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # it would report to the internet
    import ray

    started = False
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        started = True
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    task = ray.remote(_ray_task).options(num_cpus=cpus_per_fit, num_gpus=gpus_per_fit)
    refs = {task.remote(s, str(out), env, cpus_per_fit): s for s in specs}
    waiting = list(refs)
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            spec = refs[ready[0]]
            try:
                row = ray.get(ready[0])
            except Exception as err:  # the worker died (killed, out of memory), not the fit
                row = _task_failure(spec, out, err)
            rows[spec.key] = row
            if on_result is not None:
                on_result(row)
    except BaseException:
        for ref in waiting:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _failed_row(spec: FitSpec) -> dict[str, Any]:
    """A fit's row before it has finished: what it is, and ``status`` "failed"."""
    return {
        "source": spec.source,
        "key": spec.key,
        "n_groups": spec.n_groups,
        "group_rank": spec.group_rank,
        "beta": spec.beta,
        "seed": spec.seed,
        "status": "failed",
    }


def _task_failure(spec: FitSpec, out: Path, err: BaseException) -> dict[str, Any]:
    """The row of a task whose worker failed (the task itself never raises)."""
    row = {
        **_failed_row(spec),
        "error": _one_line(err),
        "read_options": spec.read_options,
        "fit_options": spec.fit_options,
    }
    with contextlib.suppress(Exception):
        _write_json(fits_dir(out) / f"{spec.key}.json", row)
    return {**row, "reused": False}


# --------------------------------------------------------------------------- the table
def summary_columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The columns of ``rows`` in a stable order: :data:`COLUMNS` with the decoding columns
    (sorted) after ``heldout_reconstruction_r2``."""
    decoding = sorted({k for r in rows for k in r if k.endswith("_decoding_r2")})
    cols = list(COLUMNS)
    at = cols.index("heldout_reconstruction_r2") + 1
    return [*cols[:at], *decoding, *cols[at:]]


def write_summary(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/summary.csv`` (atomically): one line per fit, failed ones included.

    Columns: :func:`summary_columns`; empty cells where a value does not apply (a failed
    fit's metrics, a behaviour the source does not have), ``nan`` where a metric is
    undefined.

    Returns
    -------
    pathlib.Path
    """
    cols = summary_columns(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in cols})
    path = Path(out_dir) / "summary.csv"
    _write_text(path, buf.getvalue())
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def read_summary(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``summary.csv`` (or of ``DIR/summary.csv``), with numbers as numbers.

    Empty cells become None; integer columns are ``int``, metrics ``float``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "summary.csv"
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror}); run a sweep first") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"status", *_FIT_KEYS} <= set(reader.fieldnames):
        raise ValueError(f"{path}: not a sweep summary (no status/n_groups/... columns)")
    out = []
    for raw in reader:
        row: dict[str, Any] = {}
        for k, v in raw.items():
            if v is None or v == "":
                row[k] = None
            elif k in _TEXT_COLUMNS:
                row[k] = v
            elif k in _INT_COLUMNS:
                row[k] = int(v)
            else:
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
        out.append(row)
    return out


# --------------------------------------------------------------------------- selection
#: Default disentanglement threshold (nats), see :func:`select_model`.
PC_THRESHOLD = 0.1


@dataclass
class Selection:
    """The outcome of :func:`select_model`.

    Attributes
    ----------
    table : list of dict
        One row per ``(n_groups, group_rank, beta)``, in grid order: ``n_latents``,
        ``n_fits`` (finished), ``n_failed``, ``<metric>_mean``, ``<metric>_std`` and
        ``<metric>_se`` (over the finished fits: seeds and sources),
        ``heldout_partial_correlation_mean``, ``heldout_reconstruction_r2_mean``, every
        ``<name>_decoding_r2_mean``, ``eligible``, ``reason`` (why not eligible) and ``chosen``.
    choice : dict
        The chosen row of ``table``.
    metric : str
    pc_threshold : float
    rule : str
    best : dict
        The eligible row with the highest mean metric (the choice of ``rule="best"``).
    ignored_sources : list of str
        Sources of which no fit finished (e.g. not an NWB file); left out of the table.
    """

    table: list[dict[str, Any]]
    choice: dict[str, Any]
    metric: str
    pc_threshold: float
    rule: str
    best: dict[str, Any]
    ignored_sources: list[str] = field(default_factory=list)

    @property
    def n_groups(self) -> int:
        return int(self.choice["n_groups"])

    @property
    def group_rank(self) -> int:
        return int(self.choice["group_rank"])

    @property
    def beta(self) -> float:
        return float(self.choice["beta"])


def select_model(
    rows: Iterable[dict[str, Any]],
    pc_threshold: float = PC_THRESHOLD,
    metric: str = "heldout_log_likelihood",
    rule: str = "best",
) -> Selection:
    """Choose ``(G, H, beta)`` by held-out likelihood among disentangled configurations.

    Rows are aggregated over seeds and sources per ``(n_groups, group_rank, beta)`` (a
    source of which no fit finished, e.g. a file that is not NWB, is left out).  A
    configuration is eligible when all its fits finished (means over different fits are not
    comparable) and the mean partial correlation between its groups is below
    ``pc_threshold``; among the eligible ones:

    - ``rule="best"`` (default): the highest mean ``metric``;
    - ``rule="one_se"``: the one-standard-error rule (Breiman et al. 1984; Hastie, Tibshirani
      & Friedman, *The Elements of Statistical Learning*, 7.10): among the configurations
      whose mean is within one standard error (of the best one's mean, over its fits) of the
      best mean, the one with the fewest latents ``K = G * H`` (then the highest mean).
      Where held-out likelihood keeps creeping up with ``K`` by less than the seed-to-seed
      spread once the latent dimension is reached, this stops at the simplest model that is
      not measurably worse.  It needs several seeds (one fit has no standard error).

    Parameters
    ----------
    rows : iterable of dict
        Sweep rows (:func:`run_sweep`, :func:`read_summary`).
    pc_threshold : float
        Nats.  Default 0.1: the Gaussian partial correlation is the mutual information
        between the groups; 0.1 nats is what one pair of latents correlated at
        ``|r| = 0.43`` gives (``-0.5 log(1 - r^2)``), while independent groups estimated on
        ``T`` steps give about ``H_1 H_2 / (2 T)`` (0.005 nats for two rank-3 groups on
        1000 steps), and a group split in two or two groups that share a latent give
        several tenths.
    metric : str
        A row column where higher is better; default the held-out log-likelihood (nats per
        time step).
    rule : {"one_se", "best"}

    Returns
    -------
    Selection

    Raises
    ------
    ValueError
        No finished fit, or no eligible configuration (the smallest partial correlation seen
        is named).
    """
    if rule not in ("one_se", "best"):
        raise ValueError(f"rule must be 'one_se' or 'best', got {rule!r}")
    if not (isinstance(pc_threshold, int | float) and pc_threshold > 0):
        raise ValueError(f"pc_threshold must be a number > 0 (nats), got {pc_threshold!r}")
    rows = list(rows)
    ok_rows = [r for r in rows if r.get("status") == "ok"]
    if not ok_rows:
        raise ValueError(f"no finished fit among the {len(rows)} row(s): nothing to select from")
    readable = {r.get("source") for r in ok_rows}
    ignored = sorted({str(r.get("source")) for r in rows} - {str(s) for s in readable})
    groups: dict[tuple[int, int, float], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("source") in readable:  # a source no fit could use does not count
            config = (int(r["n_groups"]), int(r["group_rank"]), float(r["beta"]))
            groups.setdefault(config, []).append(r)
    pc_key = "heldout_partial_correlation"
    extra = [
        "heldout_reconstruction_r2",
        *sorted({k for r in ok_rows for k in r if k.endswith("_decoding_r2")}),
    ]
    table = []
    for (g, h, b), members in groups.items():
        ok = [r for r in members if r.get("status") == "ok"]
        values = _floats(r.get(metric) for r in ok)
        pcs = _floats(r.get(pc_key) for r in ok)
        row: dict[str, Any] = {
            "n_groups": g,
            "group_rank": h,
            "beta": b,
            "n_latents": g * h,
            "n_fits": len(ok),
            "n_failed": len(members) - len(ok),
            f"{metric}_mean": _mean(values),
            f"{metric}_std": _std(values),
            f"{metric}_se": _std(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0,
            f"{pc_key}_mean": _mean(pcs),
        }
        for k in extra:
            if k != metric:
                row[f"{k}_mean"] = _mean(_floats(r.get(k) for r in ok))
        reason = ""
        if not ok:
            reason = "no finished fit"
        elif len(ok) < len(members):
            reason = f"{len(members) - len(ok)} of {len(members)} fits failed (rerun the sweep)"
        elif not math.isfinite(row[f"{metric}_mean"]):
            reason = f"{metric} undefined"
        elif not math.isfinite(row[f"{pc_key}_mean"]):
            reason = "partial correlation undefined"
        elif row[f"{pc_key}_mean"] >= pc_threshold:
            reason = f"partial correlation {row[f'{pc_key}_mean']:.3g} >= {pc_threshold:g}"
        row["eligible"] = not reason
        row["reason"] = reason
        row["chosen"] = False
        table.append(row)
    eligible = [r for r in table if r["eligible"]]
    if not eligible:
        incomplete = sum(r["n_failed"] > 0 for r in table)
        complete = [r for r in table if r["n_failed"] == 0]
        seen = [r for r in complete if math.isfinite(r[f"{pc_key}_mean"])]
        details = [f"{incomplete} of {len(table)} have failed fits (rerun the sweep)"][
            : 1 if incomplete else 0
        ]
        if seen:
            low = min(seen, key=lambda r: r[f"{pc_key}_mean"])
            details.append(
                f"the smallest mean partial correlation is {low[f'{pc_key}_mean']:.3g} nats "
                f"(G={low['n_groups']}, H={low['group_rank']}, beta={low['beta']:g}): raise "
                "the threshold, or add G = 1 or a larger beta to the sweep"
            )
        raise ValueError(
            f"no configuration is eligible (every fit finished, mean partial correlation < "
            f"{pc_threshold:g} nats): " + "; ".join(details or ["no metric is defined"])
        )
    mean = f"{metric}_mean"
    best = max(eligible, key=lambda r: r[mean])
    if rule == "best":
        choice = best
    else:
        close = [r for r in eligible if r[mean] >= best[mean] - best[f"{metric}_se"]]
        choice = min(close, key=lambda r: (r["n_latents"], -r[mean]))
    choice["chosen"] = True
    return Selection(table, choice, metric, float(pc_threshold), rule, best, ignored)


def _floats(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def selection_markdown(selection: Selection) -> str:
    """The selection table as Markdown (the README's table), the chosen row in bold."""
    m = selection.metric
    decoding = [k for k in selection.table[0] if k.endswith("_decoding_r2_mean")]
    head = ["G", "H", "beta", "K", "fits", f"{_label(m)} (mean ± sd)", "PC (nats)", "recon R²"]
    head += [f"{k[: -len('_decoding_r2_mean')]} decoding R²" for k in decoding]
    head += ["eligible", "chosen"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in selection.table:
        cells = [
            str(r["n_groups"]),
            str(r["group_rank"]),
            f"{r['beta']:g}",
            str(r["n_latents"]),
            f"{r['n_fits']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else ""),
            f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}",
            f"{r['heldout_partial_correlation_mean']:.3f}",
            f"{r['heldout_reconstruction_r2_mean']:.3f}",
            *(f"{r[k]:.3f}" for k in decoding),
            "yes" if r["eligible"] else f"no ({r['reason']})",
            "**◀ chosen**" if r["chosen"] else "",
        ]
        if r["chosen"]:
            cells[:5] = [f"**{c}**" for c in cells[:5]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(metric: str) -> str:
    return {"heldout_log_likelihood": "held-out LL (nats/step)"}.get(metric, metric)
