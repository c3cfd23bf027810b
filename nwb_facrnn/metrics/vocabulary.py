"""The vocabulary: one name per quantity, in every table and file."""

from __future__ import annotations

#: Every metric a fit is scored with, by the name it has everywhere (the fit table, the NWB
#: ``fit_metrics`` table, a sweep's ``summary.csv``, the benchmark CSV) and what it measures.
#: Which time steps a value was computed on (all of them, or the held-out odd ones) is
#: recorded beside it (``steps``), never folded into the name.  ``<behavior>_decoding_r2``
#: stands for one metric per behavioural series.
METRICS: dict[str, str] = {
    "log_likelihood": "Mean one-step predictive log-likelihood log p(x_t | x_{t-1}) "
    "(FacRNN.score), nats per time step, summed over units.",
    "gaussian_partial_correlation": "Partial correlation between the latent groups under a "
    "Gaussian fit of the latents: the KL divergence from the product of the group marginals, "
    "nats (0 = independent groups; 0 for one group).",
    "kernel_partial_correlation": "Partial correlation between the latent groups estimated "
    "with Gaussian kernel densities (the paper's estimator), nats (0 = independent groups).",
    "reconstruction_r2": "Variance-weighted R^2 of the one-step prediction of the observed "
    "activity (FacRNN.predict), pooled over units.",
    "group_latent_r2": "R^2 of the true latent groups from the fitted ones (one affine map per "
    "matched group), mean over groups.",
    "component_latent_r2": "R^2 of all true latents from all fitted ones (one affine map).",
    "subconnectivity_corr": "Correlation of each true group's connectivity A_g B_g with its "
    "matched fitted group's, mean over groups.",
    "connectivity_corr": "Correlation of the true connectivity W with the fitted W = A B.",
    "<behavior>_decoding_r2": "Cross-validated R^2 of a behavioural series decoded from the "
    "latents by ridge regression, whole trials held out.",
}
#: Which steps a fit was scored on: all fitted steps, or the held-out (odd) ones of the
#: interleaved split (trained on the even steps).
STEPS = ("all", "heldout")
#: Names older files and tables used, and the name each has now.
LEGACY_METRIC_NAMES = {
    "partial_correlation": "gaussian_partial_correlation",
    "heldout_log_likelihood": "log_likelihood",
    "heldout_partial_correlation": "gaussian_partial_correlation",
    "heldout_reconstruction_r2": "reconstruction_r2",
    "test_log_likelihood": "log_likelihood",
}


def metric_definition(name: str) -> str:
    """What the metric ``name`` measures (:data:`METRICS`); ``KeyError`` for unknown names."""
    if name.endswith("_decoding_r2") and name not in METRICS:
        return METRICS["<behavior>_decoding_r2"]
    return METRICS[name]


def canonical_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` under today's names (:data:`LEGACY_METRIC_NAMES`), for files written before
    the vocabulary was unified; ``heldout_<x>_decoding_r2`` becomes ``<x>_decoding_r2``."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = LEGACY_METRIC_NAMES.get(key, key)
        if name.startswith("heldout_") and name.endswith("_decoding_r2"):
            name = name[len("heldout_") :]
        out.setdefault(name, value)
    return out
