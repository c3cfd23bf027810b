"""Ground-truth generators: latent dynamics, activity and synthetic NWB sessions.

* :mod:`.dynamics` -- chaotic latents and FacRNN-style activity as numpy arrays.
"""

from .dynamics import (
    CHAOTIC_SYSTEMS,
    SyntheticDataset,
    chaotic_trajectory,
    make_lowrank_rnn_dataset,
    make_poisson_dataset,
)

__all__ = [
    "CHAOTIC_SYSTEMS",
    "SyntheticDataset",
    "chaotic_trajectory",
    "make_lowrank_rnn_dataset",
    "make_poisson_dataset",
]
