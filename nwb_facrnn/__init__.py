"""nwb-facrnn: fit FacRNN, the factorized low-rank RNN, to NWB and DANDI recordings."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from .errors import NWBReadError, OptionError, UserError
from .io import FitResults, read_nwb, read_results
from .neural_data import NeuralData
from .pipeline import fit_source, write_results

if TYPE_CHECKING:
    from .model import FacRNN

__all__ = [
    "FacRNN",
    "FitResults",
    "NWBReadError",
    "NeuralData",
    "OptionError",
    "UserError",
    "__version__",
    "fit_source",
    "read_nwb",
    "read_results",
    "write_results",
]


def __getattr__(name: str):
    # The model (and torch, ~2 s to import) loads on first use, so reading NWB files and
    # viewing results in napari start fast.
    if name == "FacRNN":
        from .model import FacRNN

        return FacRNN
    raise AttributeError(f"module 'nwb_facrnn' has no attribute {name!r}")
