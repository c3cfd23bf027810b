"""Dock widgets: group table, latent plot, ROI loadings, connectivity and the fit widget.

Each widget finds the FacRNN scenes of the viewer through the layers' metadata
(:data:`napari_facrnn.layers.SCENE_KEY`) and follows layers being added and removed.
"""

from .connectivity import ConnectivityWidget
from .fit import FitWidget
from .groups import GroupTableWidget
from .latents import LatentPlotWidget
from .roi import RoiLoadingsWidget

__all__ = [
    "ConnectivityWidget",
    "FitWidget",
    "GroupTableWidget",
    "LatentPlotWidget",
    "RoiLoadingsWidget",
]
