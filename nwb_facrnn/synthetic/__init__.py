"""Ground-truth generators: latent dynamics, activity and synthetic NWB sessions.

* :mod:`.dynamics` -- chaotic latents and FacRNN-style activity as numpy arrays.
* :mod:`.spiking` -- a spiking session laid out like the Neural Latents Benchmark's MC_Maze
  files (:func:`spiking_nwbfile`, :func:`make_spiking_session`, :class:`SpikingTruth`).
* :mod:`.imaging` -- a one-photon voltage-imaging session (:func:`imaging_nwbfile`,
  :func:`make_imaging_session`, :class:`ImagingTruth`).
"""

from .dynamics import (
    CHAOTIC_SYSTEMS,
    SyntheticDataset,
    chaotic_trajectory,
    make_lowrank_rnn_dataset,
    make_poisson_dataset,
)
from .imaging import ImagingTruth, imaging_nwbfile, make_imaging_session
from .spiking import SpikingTruth, make_spiking_session, spiking_nwbfile

__all__ = [
    "CHAOTIC_SYSTEMS",
    "ImagingTruth",
    "SpikingTruth",
    "SyntheticDataset",
    "chaotic_trajectory",
    "imaging_nwbfile",
    "make_imaging_session",
    "make_lowrank_rnn_dataset",
    "make_poisson_dataset",
    "make_spiking_session",
    "spiking_nwbfile",
]
