"""The ``nwb-facrnn`` command.

One module per command (:mod:`.fit`, :mod:`.sweep` with ``select``, :mod:`.info`,
:mod:`.report`, :mod:`.view`, :mod:`.demo`, :mod:`.benchmark`), each a thin layer over the
package's functions; :mod:`.app` holds the group and the consoles, :mod:`.options` and
:mod:`.model_options` the shared options, :mod:`.tables` the printed tables.  :func:`run`
(the console script) turns errors into exit codes.
"""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from ..errors import UserError
from . import benchmark, demo, fit, info, report, sweep, view  # noqa: F401  (the commands)
from .app import debug as _debug
from .app import errors, main
from .options import read_config
from .view import open_in_napari

__all__ = ["main", "open_in_napari", "read_config", "run"]


def run() -> None:
    """Console entry point: exit codes, and one line instead of a traceback.

    A mistake in the input (:class:`nwb_facrnn.errors.UserError`, or a usage error click
    finds) is one line on stderr and exit code 2; any other exception is a bug: one line
    with a hint to rerun with ``--debug`` (which shows the traceback), exit code 1 (running
    out of memory is exit code 2, with the way to fit the data chunk by chunk);
    Ctrl-C exits with 130.
    """
    try:
        code = main(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        errors.print("interrupted")
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except Exception as err:
        if _debug["on"]:
            raise
        message = str(err) or type(err).__name__
        if isinstance(err, UserError):
            errors.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
            sys.exit(2)
        if isinstance(err, MemoryError):  # the data, not a bug: say what to do
            errors.print(
                f"[red]error:[/] out of memory ({escape(message)}); imaging and series "
                "traces can stay on disk and be fit a chunk at a time: --chunked always "
                "(docs/reading.md, 'Sessions larger than memory')",
                soft_wrap=True,
                highlight=False,
            )
            sys.exit(2)
        errors.print(
            f"[red]internal error:[/] {type(err).__name__}: {escape(message)} "
            "(run again with --debug for the traceback, and please report it)",
            soft_wrap=True,
            highlight=False,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
