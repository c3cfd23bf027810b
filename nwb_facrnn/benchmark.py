"""The paper's synthetic experiment: six methods on ground-truth chaotic groups.

Every method (``lrRNN``, ``lrRNN+ICA``, ``LINT``, ``bdRNN``, ``FacRNN-full``,
``FacRNN``) is fit with ``K = n_groups * group_rank`` latents on the even time
steps of a synthetic dataset and evaluated on the odd ones (the paper's
interleaved split), over several seeds.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import metrics
from .atomic import write_file
from .evaluation import evaluate
from .model import FacRNN
from .synthetic import make_lowrank_rnn_dataset

METHODS = ("lrRNN", "lrRNN+ICA", "LINT", "bdRNN", "FacRNN-full", "FacRNN")
#: The headline metrics (names of :data:`nwb_facrnn.metrics.METRICS`) and their labels.
METRICS = {
    "kernel_partial_correlation": "kernel partial correlation (nats, lower is better)",
    "group_latent_r2": "group latent R²",
    "subconnectivity_corr": "sub-connectivity correlation",
    "connectivity_corr": "connectivity correlation",
    "reconstruction_r2": "reconstruction R²",
}


@dataclass(frozen=True)
class BenchmarkRow:
    """One fit of one method on one seed, scored on held-out (odd) time steps."""

    method: str
    seed: int
    steps: str
    kernel_partial_correlation: float
    gaussian_partial_correlation: float
    group_latent_r2: float
    component_latent_r2: float
    subconnectivity_corr: float
    connectivity_corr: float
    reconstruction_r2: float
    log_likelihood: float
    fit_time_s: float


def evaluate_method(
    method: str, seed: int, n_groups: int = 2, group_rank: int = 3, **fit_params
) -> BenchmarkRow:
    """Fit ``method`` on the synthetic dataset of ``seed`` and score it on held-out steps."""
    data = make_lowrank_rnn_dataset(n_groups=n_groups, group_rank=group_rank, seed=seed)
    train = np.arange(data.n_steps) % 2 == 0
    test = ~train
    model = FacRNN.preset(
        method, n_groups=n_groups, group_rank=group_rank, seed=seed, progress=False, **fit_params
    )
    start = time.perf_counter()
    model.fit(data.x, data.u, step_mask=train)
    fit_time = time.perf_counter() - start
    z_all = model.transform(data.x, data.u)
    scores = evaluate(model, data.x, test, inputs=data.u, latents=z_all, kernel=True)
    z = z_all[test]
    alignment = metrics.group_latent_r2(data.z[test], z, n_groups)
    sub = metrics.subconnectivity_metrics(
        data.A,
        data.B,
        model.output_loadings_,
        model.input_loadings_,
        n_groups,
        assignment=alignment.assignment,
    )
    return BenchmarkRow(
        method=method,
        seed=seed,
        steps="heldout",
        kernel_partial_correlation=scores["kernel_partial_correlation"],
        gaussian_partial_correlation=scores["gaussian_partial_correlation"],
        group_latent_r2=alignment.mean,
        component_latent_r2=metrics.component_latent_r2(data.z[test], z),
        subconnectivity_corr=sub["correlation"],
        connectivity_corr=metrics.connectivity_metrics(data.connectivity, model.connectivity_)[
            "correlation"
        ],
        reconstruction_r2=scores["reconstruction_r2"],
        log_likelihood=scores["log_likelihood"],
        fit_time_s=fit_time,
    )


def run_synthetic_benchmark(
    seeds: Iterable[int] = range(5),
    methods: Iterable[str] = METHODS,
    n_groups: int = 2,
    group_rank: int = 3,
    on_result: Callable[[BenchmarkRow], None] | None = None,
    **fit_params,
) -> list[BenchmarkRow]:
    """Fit every method on every seed.

    Parameters
    ----------
    seeds : iterable of int
        Dataset and fit seeds.
    methods : iterable of str
        Preset names (see :data:`METHODS`).
    on_result : callable, optional
        Called with each :class:`BenchmarkRow` as soon as it is ready (progress).
    **fit_params
        Extra FacRNN hyperparameters for every method (e.g. ``max_epochs``).
    """
    rows = []
    for seed in seeds:
        for method in methods:
            row = evaluate_method(method, seed, n_groups, group_rank, **fit_params)
            rows.append(row)
            if on_result is not None:
                on_result(row)
    return rows


def summarize(rows: list[BenchmarkRow]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and standard deviation of every metric, per method (in method order)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for method in dict.fromkeys(r.method for r in rows):
        sel = [asdict(r) for r in rows if r.method == method]
        out[method] = {
            k: (float(np.mean([s[k] for s in sel])), float(np.std([s[k] for s in sel])))
            for k in (*METRICS, "gaussian_partial_correlation", "log_likelihood", "fit_time_s")
        }
    return out


def write_csv(rows: list[BenchmarkRow], path: str | Path) -> Path:
    """One line per (method, seed), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(asdict(rows[0])), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    return write_file(path, buf.getvalue())


def plot(rows: list[BenchmarkRow], path: str | Path) -> Path:
    """Box plots of the five headline metrics per method (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r.method for r in rows))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 4.2))
    colors = plt.get_cmap("tab10")(np.arange(len(methods)))
    for ax, (key, label) in zip(axes, METRICS.items(), strict=True):
        values = [[getattr(r, key) for r in rows if r.method == m] for m in methods]
        box = ax.boxplot(values, patch_artist=True, widths=0.6)
        for patch, color in zip(box["boxes"], colors, strict=True):
            patch.set_facecolor(color)
            patch.set_alpha(0.6)
        for i, v in enumerate(values, start=1):
            ax.scatter(np.full(len(v), i), v, s=10, color="k", zorder=3)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=40, ha="right")
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    n_seeds = len({r.seed for r in rows})
    fig.suptitle(f"Synthetic benchmark: held-out (odd) steps, {n_seeds} seed(s)")
    fig.tight_layout()
    try:
        return write_file(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)


def markdown_table(rows: list[BenchmarkRow]) -> str:
    """The summary as a Markdown table (mean ± std over seeds), as quoted in the README."""
    summary = summarize(rows)
    cols = [*METRICS, "fit_time_s"]
    head = "| method | " + " | ".join(METRICS.get(c, "fit time (s)") for c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for method, stats in summary.items():
        cells = [f"{stats[c][0]:.3f} ± {stats[c][1]:.3f}" for c in cols]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
