"""Running a sweep's fits: one fit (:func:`run_fit`), and all of them as Ray tasks or one after
another in this process (:func:`run_sweep`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import OptionError
from .planning import FitSpec
from .rows import finished_row, fits_dir, row_path, spec_row, write_row

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


# --------------------------------------------------------------------------- one fit
def run_fit(
    spec: FitSpec, out_dir: str | os.PathLike, *, threads: int | None = None
) -> dict[str, Any]:
    """Fit one spec, write its results into NWB and return its row; never raises.

    The fit is :func:`nwb_facrnn.pipeline.fit_source` with ``heldout=True``: trained on the
    even time steps of every trial (the paper's interleaved split) and scored on the odd
    ones (:mod:`nwb_facrnn.evaluation`: log-likelihood, Gaussian partial correlation between
    the groups, reconstruction R^2, and a cross-validated decoding R^2 of every behavioural
    series).  The model, its latents and these metrics go to ``out_dir/fits/<key>.nwb``
    (``.nwb.zarr`` for a Zarr source; linked to a local source's data, a standalone file for
    a remote source), then the row to ``out_dir/fits/<key>.json`` (atomically, after the NWB
    file is complete).  A spec that already finished (:func:`finished_row`) is not fit again.

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
        The row: the :data:`~nwb_facrnn.sweep.rows.COLUMNS` (``status`` ``"ok"`` or
        ``"failed"``, ``error`` as ``"Type: message"`` on one line), the decoding columns,
        ``reused`` (True when the stored row was returned) and, in the JSON only,
        ``read_options``, ``fit_options``, ``warnings`` and a failure's ``traceback``.
    """
    done = finished_row(spec, out_dir)
    if done is not None:
        return done
    start = time.perf_counter()
    row = spec_row(spec)
    caught: list[warnings.WarningMessage] = []
    try:
        fits = fits_dir(out_dir)
        fits.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(record=True) as caught, _torch_threads(threads):
            warnings.simplefilter("always")
            row.update(_fit(spec, fits))
        row["status"] = "ok"
    except Exception as err:
        row["error"] = _one_line(err)
        row["traceback"] = traceback.format_exc(limit=20)
    row["wall_time_s"] = round(time.perf_counter() - start, 3)
    row["warnings"] = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    row["read_options"] = spec.read_options
    row["fit_options"] = spec.fit_options
    with contextlib.suppress(Exception):  # the row is returned even when it cannot be stored
        write_row(row_path(spec, out_dir), row)
    return {**row, "reused": False}


def _fit(spec: FitSpec, fits: Path) -> dict[str, Any]:
    """The pipeline's fit of ``spec`` into ``fits/<key>.nwb``; the row's values."""
    from ..io.backend import detect_backend
    from ..io.dandi import is_remote
    from ..pipeline import OutputOptions, fit_source

    zarr = not is_remote(spec.source) and detect_backend(spec.source) == "zarr"
    dest = fits / f"{spec.key}{'.nwb.zarr' if zarr else '.nwb'}"
    _remove(dest)  # a leftover of a run killed between this file and its row
    outcome = fit_source(
        spec.source,
        read_options=spec.read_options,
        model_options=spec.fit_params(),
        output=OutputOptions(output=dest, name=spec.fit_name),
        heldout=True,
    )
    model = outcome.model
    return {
        "steps": outcome.steps,
        **outcome.metrics,
        "n_units": len(outcome.results.unit_ids),
        "n_epochs": int(model.n_epochs_),
        "fit_time_s": round(float(model.fit_time_), 3),
        "path": str(Path(outcome.path).resolve()),
        "fit_name": outcome.fit_name,
        "observation": outcome.results.params["observation"],
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


# --------------------------------------------------------------------------- many fits
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
    OptionError
        An unknown backend, or an address with ``backend="serial"``.
    """
    if backend not in ("auto", "ray", "serial"):
        raise OptionError(f"backend must be 'auto', 'ray' or 'serial', got {backend!r}")
    if backend == "serial" and address is not None:
        raise OptionError("address= names a Ray cluster; it cannot be used with backend='serial'")
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


def _task_failure(spec: FitSpec, out: Path, err: BaseException) -> dict[str, Any]:
    """The row of a task whose worker failed (the task itself never raises)."""
    row = {
        **spec_row(spec),
        "error": _one_line(err),
        "read_options": spec.read_options,
        "fit_options": spec.fit_options,
    }
    with contextlib.suppress(Exception):
        write_row(row_path(spec, out), row)
    return {**row, "reused": False}
