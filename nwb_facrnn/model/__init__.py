"""The FacRNN model: pure torch and numpy (no NWB)."""

from .baselines import PRESETS
from .estimator import FacRNN, NotFittedError

__all__ = ["PRESETS", "FacRNN", "NotFittedError"]
