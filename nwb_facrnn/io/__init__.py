"""Reading NWB sources into :class:`~nwb_facrnn.NeuralData` and writing NWB files."""

from .backend import detect_backend, write_nwbfile
from .errors import NWBReadError
from .reader import open_nwbfile, read_nwb
from .selection import parse_selection

__all__ = [
    "NWBReadError",
    "detect_backend",
    "open_nwbfile",
    "parse_selection",
    "read_nwb",
    "write_nwbfile",
]
