"""The paper's synthetic experiment: six methods on ground-truth chaotic groups.

Every method (``lrRNN``, ``lrRNN+ICA``, ``LINT``, ``bdRNN``, ``FacRNN-full``,
``FacRNN``) is fit with ``K = n_groups * group_rank`` latents on the even time
steps of a synthetic dataset and evaluated on the odd ones (the paper's
interleaved split), over several seeds.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import metrics
from .model import FacRNN
from .synthetic import make_lowrank_rnn_dataset

METHODS = ("lrRNN", "lrRNN+ICA", "LINT", "bdRNN", "FacRNN-full", "FacRNN")
METRICS = {
    "partial_correlation": "partial correlation (nats, lower is better)",
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
    partial_correlation: float
    group_latent_r2: float
    component_latent_r2: float
    subconnectivity_corr: float
    connectivity_corr: float
    reconstruction_r2: float
    test_log_likelihood: float
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
    z = model.transform(data.x, data.u)[test]
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
        partial_correlation=metrics.partial_correlation(z, n_groups, seed=seed),
        group_latent_r2=alignment.mean,
        component_latent_r2=metrics.component_latent_r2(data.z[test], z),
        subconnectivity_corr=sub["correlation"],
        connectivity_corr=metrics.connectivity_metrics(data.connectivity, model.connectivity_)[
            "correlation"
        ],
        reconstruction_r2=metrics.reconstruction_r2(
            data.x[test], model.predict(data.x, data.u)[test]
        ),
        test_log_likelihood=model.score(data.x, data.u, step_mask=test),
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
            for k in (*METRICS, "test_log_likelihood", "fit_time_s")
        }
    return out


def write_csv(rows: list[BenchmarkRow], path: str | Path) -> Path:
    """One line per (method, seed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    return path


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
