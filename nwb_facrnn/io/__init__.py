"""Reading NWB sources into :class:`~nwb_facrnn.NeuralData` and writing NWB files."""

from .backend import detect_backend, write_nwbfile
from .errors import NWBReadError

__all__ = ["NWBReadError", "detect_backend", "write_nwbfile"]
