"""The errors that mean "the input is wrong", as opposed to a bug in nwb-facrnn.

Everything the user controls -- a file, an option, an object named in a file, where the
output goes, a remote source -- is checked up front, and a problem with it raises a
:class:`UserError`.  The command line prints such an error as one line and exits with 2;
any other exception is a bug, printed with a hint to rerun with ``--debug`` (exit 1).

Each class also derives from the built-in exception a Python caller would expect
(``ValueError`` for a bad value, ``FileExistsError`` for an existing output ...), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """Base class of the problems with the user's input (files, options, outputs)."""


class OptionError(UserError, ValueError):
    """An argument or option has a value that cannot be used; the message says what was
    given and what is expected."""


class NWBReadError(UserError, ValueError):
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

    def __reduce__(self):  # picklable (Ray sends errors between processes)
        return type(self), (self.source, self.object_path, self.reason)


class OutputExistsError(UserError, FileExistsError):
    """The output already holds what would be written (pass ``overwrite`` or another name)."""


class OutputPermissionError(UserError, PermissionError):
    """The output or its folder cannot be written by this user."""


def source_name(source: object) -> str | None:
    """A printable name for a source: a path, or the file an open NWBFile was read from."""
    if isinstance(source, str | os.PathLike):
        return str(Path(source))
    container_source = getattr(source, "container_source", None)
    return str(container_source) if container_source else None
