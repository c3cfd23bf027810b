"""Reading NWB sources into :class:`~nwb_facrnn.NeuralData` and writing results into NWB."""

from .backend import detect_backend, write_nwbfile
from .errors import NWBReadError
from .reader import open_nwbfile, read_nwb
from .results import FitResults, read_results
from .selection import parse_selection
from .writer import write_results

__all__ = [
    "FitResults",
    "NWBReadError",
    "detect_backend",
    "open_nwbfile",
    "parse_selection",
    "read_nwb",
    "read_results",
    "write_nwbfile",
    "write_results",
]
