"""Reading NWB sources into :class:`~nwb_facrnn.NeuralData` and storing results in NWB.

The names listed in ``__all__`` are the public reading and writing API (the napari plugin
uses only these).
"""

from .backend import detect_backend, write_nwbfile
from .destination import Destination
from .errors import NWBReadError
from .extension import ndx_facrnn
from .fov import FieldOfView, NoImagingError, plane_segmentations, read_field_of_view
from .nwb_objects import object_path
from .reader import open_nwbfile, read_nwb
from .results import FitResults, find_results, read_results
from .selection import parse_selection
from .writer import WrittenFit, store_results

__all__ = [
    "Destination",
    "FieldOfView",
    "FitResults",
    "NWBReadError",
    "NoImagingError",
    "WrittenFit",
    "detect_backend",
    "find_results",
    "ndx_facrnn",
    "object_path",
    "open_nwbfile",
    "parse_selection",
    "plane_segmentations",
    "read_field_of_view",
    "read_nwb",
    "read_results",
    "store_results",
    "write_nwbfile",
]
