"""Evaluation metrics for FacRNN fits (Li et al., arXiv 2511.13899).

Pure functions on numpy arrays. Wherever an argument is documented as ``(T, K)`` an array of
shape ``(n_trials, T, K)`` is accepted too; its trials are concatenated along time first.

Latent groups are contiguous: with ``K = G * H`` latent dims and ``G`` groups, group ``g`` is
made of dims ``[g * H, (g + 1) * H)``.
"""

from __future__ import annotations

from .decoding import DecodingResult, behavior_decoding_r2, decoding_r2
from .independence import gaussian_partial_correlation, partial_correlation, total_correlation
from .observation import (
    PooledR2,
    bits_per_spike,
    gaussian_log_likelihood,
    poisson_log_likelihood,
    reconstruction_r2,
)
from .recovery import (
    GroupAlignment,
    component_latent_r2,
    connectivity_metrics,
    group_latent_r2,
    subconnectivity_metrics,
)
from .vocabulary import LEGACY_METRIC_NAMES, METRICS, STEPS, canonical_metrics, metric_definition

__all__ = [
    "LEGACY_METRIC_NAMES",
    "METRICS",
    "STEPS",
    "DecodingResult",
    "GroupAlignment",
    "PooledR2",
    "behavior_decoding_r2",
    "bits_per_spike",
    "canonical_metrics",
    "component_latent_r2",
    "connectivity_metrics",
    "decoding_r2",
    "gaussian_log_likelihood",
    "gaussian_partial_correlation",
    "group_latent_r2",
    "metric_definition",
    "partial_correlation",
    "poisson_log_likelihood",
    "reconstruction_r2",
    "subconnectivity_metrics",
    "total_correlation",
]
