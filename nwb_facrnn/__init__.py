"""nwb-facrnn: fit FacRNN, the factorized low-rank RNN, to NWB and DANDI recordings."""

__version__ = "0.1.0"

from .model import FacRNN

__all__ = ["FacRNN", "__version__"]
