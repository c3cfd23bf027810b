"""The error every reader raises for input it cannot use."""

from __future__ import annotations

import os
from pathlib import Path


class NWBReadError(ValueError):
    """An NWB source cannot be read as asked.

    The message names the file, the NWB object (its path inside the file) and what was
    expected, e.g. ``session.nwb: /units/spike_times: ...``.

    Attributes
    ----------
    source : str
        The file, store or URL.
    object_path : str
        Path of the offending object inside the file (``"/"`` for the file itself).
    reason : str
        What was found and what was expected.
    """

    def __init__(self, source: str | os.PathLike | None, object_path: str, reason: str):
        self.source = str(source) if source is not None else "<in-memory NWBFile>"
        self.object_path = object_path
        self.reason = reason
        super().__init__(f"{self.source}: {object_path}: {reason}")


def source_name(source: object) -> str | None:
    """A printable name for a source: a path, or the file an open NWBFile was read from."""
    if isinstance(source, str | os.PathLike):
        return str(Path(source))
    container_source = getattr(source, "container_source", None)
    return str(container_source) if container_source else None
