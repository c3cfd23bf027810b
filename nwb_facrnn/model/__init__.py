"""The FacRNN model: pure torch and numpy (no NWB)."""

from .baselines import PRESETS
from .estimator import FacRNN, ModelState, NotFittedError

__all__ = ["PRESETS", "FacRNN", "ModelState", "NotFittedError"]
