"""Figures of a FacRNN fit and a self-contained HTML page of them.

:func:`make_report` reads a fit written by :func:`~nwb_facrnn.write_results` (or takes a
:class:`~nwb_facrnn.FitResults`), draws five figures with :func:`report_figures` and writes
them as PNG files plus one HTML page that embeds them (``nwb-facrnn report FILE`` and
``nwb-facrnn fit --figures DIR``).  Trials are coloured by a condition-like column of the
trials the fit carries (:attr:`FitResults.trials <nwb_facrnn.FitResults>`), chosen by
:func:`trial_conditions`; the NWB file is read once, by :func:`~nwb_facrnn.read_results`.

The modules, one job each:

* :mod:`~nwb_facrnn.report.conditions`: which trials column colours the trials;
* :mod:`~nwb_facrnn.report.figures`: the five figures (:func:`report_figures`), drawn by
  :mod:`~nwb_facrnn.report.latents`, :mod:`~nwb_facrnn.report.loadings` and
  :mod:`~nwb_facrnn.report.training` with the colours of :mod:`~nwb_facrnn.report.style`;
* :mod:`~nwb_facrnn.report.page`: the HTML page;
* here: :func:`make_report`, which renders them and writes the files.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_files
from ..errors import OptionError
from ..io.results import FitResults, read_results
from .conditions import MAX_CONDITIONS, trial_conditions
from .figures import FIGURE_KEYS, report_figures
from .latents import MAX_LINE_POINTS, MAX_STATE_POINTS, MAX_TRIAL_LINES, minmax_decimate
from .page import html_page
from .style import GROUP_COLORS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_KEYS",
    "GROUP_COLORS",
    "MAX_CONDITIONS",
    "MAX_LINE_POINTS",
    "MAX_STATE_POINTS",
    "MAX_TRIAL_LINES",
    "Report",
    "make_report",
    "minmax_decimate",
    "report_figures",
    "trial_conditions",
]


@dataclass(frozen=True)
class Report:
    """What :func:`make_report` wrote.

    Attributes
    ----------
    html : pathlib.Path
        The self-contained page, ``<out_dir>/<fit name>_report.html`` (images embedded).
    figures : dict of str to pathlib.Path
        The PNG files, ``<out_dir>/<fit name>_<key>.png``, keyed (in this order)
        ``"latents_time"``, ``"latents_state"``, ``"connectivity"``, ``"group_strength"``,
        ``"training"``.
    """

    html: Path
    figures: dict[str, Path]


def make_report(
    results: FitResults | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    color_by: str | None = None,
) -> Report:
    """Write the figures of a fit as PNG files and one self-contained HTML page.

    Parameters
    ----------
    results : FitResults or path
        The fit, or an NWB file holding it (read with ``read_results(path, name=name)``).
    out_dir : path
        Folder of the report (created if needed).  Writes ``<fit name>_<key>.png`` for every
        figure (see :func:`report_figures`) and ``<fit name>_report.html``, which embeds the
        PNG images (base64), the fit's metrics, parameters and provenance.
    name : str, optional
        The fit, when the file holds several.
    color_by : str, optional
        Trial data: the trials column whose values colour the trials.  Default: a
        condition-like column found automatically (see :func:`trial_conditions`), if any.

    Returns
    -------
    Report

    Raises
    ------
    NWBReadError
        From :func:`~nwb_facrnn.read_results` (no fit, no fit of that name) or
        :func:`trial_conditions` (``color_by`` not a trials column).
    OptionError
        (a ``ValueError``) ``color_by`` for continuous data; ``name`` differs from the name
        of the FitResults given.
    ValueError
        The fit has no bins.

    Notes
    -----
    Files of the same names are replaced atomically and all together: everything is
    rendered and written to temporary files beside the destinations first, then moved into
    place; if anything fails, every file is left as it was and no new or partial file stays.
    """
    if isinstance(results, FitResults):
        if name is not None and name != results.name:
            raise OptionError(f"name={name!r} given with the FitResults of fit {results.name!r}")
    else:
        results = read_results(results, name=name)
    conditions = trial_conditions(results, color_by)
    figures = report_figures(results, conditions)
    pngs = {}
    for key, fig in figures.items():
        pngs[key] = _png_bytes(fig)
        fig.clear()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = _file_stem(results.name)
    paths = {key: out / f"{stem}_{key}.png" for key in FIGURE_KEYS}
    html_path = out / f"{stem}_report.html"
    files = {paths[key]: pngs[key] for key in FIGURE_KEYS}
    files[html_path] = html_page(results, conditions, pngs).encode("utf-8")
    write_files(files)
    return Report(html=html_path, figures=paths)


def _file_stem(name: str) -> str:
    """The fit's name as a file name stem (other characters than letters, digits, ``._-``
    replaced by ``_``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return stem or "facrnn"


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()
