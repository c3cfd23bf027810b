"""The ``nwb-facrnn`` group, its consoles and ``--debug``: what every command module uses."""

from __future__ import annotations

import sys
import warnings

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import __version__

# wide enough for the summary tables when output is piped to a file or CI log
console = Console(width=None if sys.stdout.isatty() else 180)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 180)
# --debug: let errors end with their traceback (set by any command's --debug flag)
debug = {"on": False}


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        debug["on"] = True


def debug_option(fn):
    """``--debug`` on the group and on every command: tracebacks instead of one-line errors."""
    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_debug,
        help="Show the full traceback when something fails.",
    )(fn)


def command(group: click.Group, *args, **kwargs):
    """``group.command`` with ``--debug``."""

    def decorate(fn):
        return group.command(*args, **kwargs)(debug_option(fn))

    return decorate


def progress_bar() -> Progress:
    """The progress bar of the commands that run many fits (sweep, benchmark)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a warning as ``Category: message`` on one line: no source file, no source line
    (the message itself names the NWB file and object)."""
    text = " ".join(str(message).split())
    print(f"{category.__name__}: {text}", file=sys.stderr if file is None else file)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nwb-facrnn")
@debug_option
def main() -> None:
    """Fit FacRNN, the factorized low-rank RNN, to neural recordings in NWB files, local or
    on DANDI, and write the results back into NWB.

    \b
    Start here:
      nwb-facrnn demo                       the whole path on synthetic imaging data
      nwb-facrnn info FILE|DANDI:ID/PATH    what a file holds that can be fit
      nwb-facrnn fit FILE|DANDI:ID/PATH     fit and write the results into NWB
      nwb-facrnn report RESULTS.nwb         figures of a fit (PNG + HTML)
      nwb-facrnn view RESULTS.nwb           the fit on the field of view in napari
    """
    warnings.showwarning = _one_line_warning
