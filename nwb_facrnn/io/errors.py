"""The error every reader raises for input it cannot use (defined in :mod:`nwb_facrnn.errors`)."""

from __future__ import annotations

from ..errors import NWBReadError, source_name

__all__ = ["NWBReadError", "source_name"]
