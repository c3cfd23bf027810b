"""The latent axes of a FacRNN: where every restart starts, and the transforms after training.

Before training, every restart starts from the reduced-rank regression of ``x_t`` on
``phi(x_{t-1})`` in axes chosen by ``init`` (:func:`initialize`); after training, the kept
model's latents may be re-expressed (FastICA, the SVD of ``W``, grouping by dependence) with
every prediction unchanged (:func:`postprocess`).
"""

from __future__ import annotations

import numpy as np
import torch

from . import baselines
from .data import Transitions
from .linear_start import load_copy, random_rotation, reduced_rank_regression
from .modules import LowRankRNNVAE

#: Samples (at most) whose latents choose the axes (FastICA and the grouping by dependence):
#: a long recording's axes come from a random subset of this size.
AXES_SAMPLES = 200_000


def initialize(
    module: LowRankRNNVAE, data: Transitions, n_groups: int, group_rank: int, seed: int, kind: str
) -> None:
    """Start every restart of ``module`` from the reduced-rank regression of ``data``.

    ``kind="pca"``: restart 0 takes the principal axes of the rank-K fit, the
    others random rotations of them.  ``"ica"``: the FastICA components of
    the rank-K latents, grouped so that dependent components share a group
    (the independent-subspace solution that ICA plus grouping gives,
    Cardoso's separation principle); restart ``r`` takes the ``r``-th best
    grouping, so the restarts differ exactly where ICA is unsure.  The
    partial-correlation penalty then refines every start.  An MLP encoder or
    decoder keeps its random weights and every restart the regression's axes.
    """
    k = n_groups * group_rank
    base = reduced_rank_regression(module, data, k)
    load_copy(module, 0, base)  # MLP parts keep their random weights
    if module.encoder_kind != "linear" or module.decoder_kind != "linear":
        for r in range(1, module.n_copies):
            load_copy(module, r, base)
        return
    gen = torch.Generator().manual_seed(seed)
    starts = []  # (mixing, center) per restart
    if kind == "ica":
        sample = data.sample(AXES_SAMPLES, seed)
        z = np.concatenate(
            [
                module.encoder_input(block.prev).double().cpu().numpy() @ base["B"].T
                for block in sample.blocks()
            ]
        )
        z += base["b"]
        unmixing, center = baselines.ica_unmixing(z, seed)
        orders = baselines.group_components(
            (z - center) @ unmixing.T, n_groups, group_rank, seed, n_best=module.n_copies
        )
        starts = [(unmixing[order], center) for order in orders]
    while len(starts) < module.n_copies:  # "pca", or fewer distinct groupings than restarts
        rotation = np.eye(k) if not starts else random_rotation(k, gen)
        starts.append((rotation, np.zeros(k)))
    for r, (mixing, center) in enumerate(starts):
        load_copy(module, r, {**base, **baselines.transform_latents(base, mixing, center)})


def postprocess(
    module: LowRankRNNVAE,
    data: Transitions,
    n_groups: int,
    group_rank: int,
    seed: int,
    transform: str | None,
    regroup: bool,
) -> None:
    """Re-express the latents of the one-copy ``module`` in place.

    ``transform`` ``"ica"`` (FastICA of the latents of ``data``), ``"svd"`` (the SVD
    factorization of ``W``) or None, then with ``regroup`` the latent dims are grouped by
    dependence into ``n_groups`` groups of ``group_rank``.
    """
    if transform is None and not regroup:
        return
    with torch.no_grad():
        sample = data.sample(AXES_SAMPLES, seed)
        z = np.concatenate(
            [module.encode(block.prev)[0].cpu().double().numpy() for block in sample.blocks()]
        )
    params = linear_params(module)
    k = n_groups * group_rank
    if transform == "ica":
        mixing, center = baselines.ica_unmixing(z, seed)
    elif transform == "svd":
        mixing, center = baselines.svd_factorization(params)
    else:
        mixing, center = np.eye(k), np.zeros(k)
    if regroup:
        z_new = (z - center) @ mixing.T
        order = baselines.group_components(z_new, n_groups, group_rank, seed)
        mixing = mixing[order[0]]
    load_copy(module, 0, baselines.transform_latents(params, mixing, center))


def linear_params(module: LowRankRNNVAE) -> dict[str, np.ndarray]:
    """``A, B, a, b`` of copy 0 as float64 arrays."""
    return {k: getattr(module, k)[0].detach().cpu().double().numpy() for k in ("A", "B", "a", "b")}
