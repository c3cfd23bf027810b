"""nwb-facrnn: fit FacRNN, the factorized low-rank RNN, to NWB and DANDI recordings."""

__version__ = "0.1.0"

from .io import FitResults, NWBReadError, read_nwb, read_results, write_results
from .model import FacRNN
from .neural_data import NeuralData

__all__ = [
    "FacRNN",
    "FitResults",
    "NWBReadError",
    "NeuralData",
    "__version__",
    "read_nwb",
    "read_results",
    "write_results",
]
