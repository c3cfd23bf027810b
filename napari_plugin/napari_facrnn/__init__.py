"""napari plugin of nwb-facrnn: FacRNN latent groups over NWB imaging fields of view.

The reader (:func:`napari_facrnn.reader.get_reader`) turns an NWB imaging session into layers
(:mod:`napari_facrnn.layers`) built from a :class:`napari_facrnn.scene.Scene`; the dock
widgets in :mod:`napari_facrnn.widgets` find that scene through the layers' metadata.
"""

from .scene import NoImagingError, Scene, open_scene

__version__ = "0.1.0"
__all__ = ["NoImagingError", "Scene", "open_scene"]
