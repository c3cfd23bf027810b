"""Sweeps: the same FacRNN fit over a grid of ``(G, H, beta, seed)`` and many sessions.

Every fit of a sweep is one task: it reads its own source (a local NWB file or a DANDI asset),
fits FacRNN on the even time steps (the paper's interleaved split), scores it on the odd ones
and writes its results into NWB (``DIR/fits/<key>.nwb``) -- all of it
:func:`nwb_facrnn.pipeline.fit_source` with ``heldout=True`` -- and returns one row of
metrics.  The tasks run on `Ray <https://docs.ray.io>`_ (the ``distributed`` extra) -- a
local Ray instance by default, or an existing cluster -- or, without Ray, one after another
in this process, with the same rows and files.

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

The metric columns are named as everywhere else (:data:`nwb_facrnn.metrics.METRICS`:
``log_likelihood``, ``gaussian_partial_correlation``, ``reconstruction_r2``,
``<behavior>_decoding_r2``); the ``steps`` column says they were computed on the held-out
steps.

On a cluster (``address="ray://head:10001"`` or ``"auto"``) every worker node needs
nwb-facrnn installed (the same version) and ``DIR`` must be storage that the workers share
(e.g. NFS): the tasks write there.  ``ray://`` addresses need the Ray Client
(``pip install 'ray[client]'``), and a cluster with Ray's token authentication (on by default
in recent Ray, e.g. 2.60) the cluster's token, as every Ray driver does.  Run one sweep per
``DIR`` at a time.  Ray is imported only when a sweep runs on it (and torch only when fits
are planned or run): reading a summary and selecting a model need neither.

The modules: :mod:`~nwb_facrnn.sweep.planning` (sources, grid, keys),
:mod:`~nwb_facrnn.sweep.running` (one fit, Ray or serial), :mod:`~nwb_facrnn.sweep.rows`
(JSON rows, ``summary.csv``) and :mod:`~nwb_facrnn.sweep.selection` (model selection).
"""

from .planning import FIT_KEYS, FitSpec, changed_options, expand_sources, plan_sweep, source_stem
from .rows import COLUMNS, finished_row, fits_dir, read_summary, summary_columns, write_summary
from .running import FORWARDED_ENV, ray_available, run_fit, run_sweep
from .selection import (
    PC_THRESHOLD,
    Selection,
    select_model,
    selection_markdown,
    selection_table,
)

__all__ = [
    "COLUMNS",
    "FIT_KEYS",
    "FORWARDED_ENV",
    "PC_THRESHOLD",
    "FitSpec",
    "Selection",
    "changed_options",
    "expand_sources",
    "finished_row",
    "fits_dir",
    "plan_sweep",
    "ray_available",
    "read_summary",
    "run_fit",
    "run_sweep",
    "select_model",
    "selection_markdown",
    "selection_table",
    "source_stem",
    "summary_columns",
    "write_summary",
]
