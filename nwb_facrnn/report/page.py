"""The report's HTML page: one self-contained file with the figures embedded as PNG images, the
fit's metrics, parameters and provenance."""

from __future__ import annotations

import base64
import html
from typing import Any

import numpy as np

from ..io.results import FitResults
from .figures import FIGURE_KEYS
from .style import fit_title, n_units, unit_noun

#: Caption of every figure on the page.
CAPTIONS = {
    "latents_time": (
        "Latents over time, one panel per group (its dims as line styles or shades). Trial "
        "data: the trial-averaged trajectory of each condition against time in the trial; "
        "continuous data: against session time (long recordings drawn as the min/max of "
        "blocks of bins)."
    ),
    "latents_state": (
        "State-space trajectories of every group in its first two (or three) latent dims; a "
        "rank-1 group is drawn against its own value one bin later. Trial data: thin lines are "
        "single trials, thick lines condition means; continuous data: coloured by time."
    ),
    "connectivity": (
        "Low-rank connectivity W = A B and each group's part A_g B_g (shared colour scale), "
        "units sorted by dominant group, group boundaries marked."
    ),
    "group_strength": (
        "Strength of every group in each unit's drive (s.d. of the group's contribution), "
        "stacked; below, as a share of the total. Units sorted by dominant group."
    ),
    "training": (
        "Every term of the training objective per epoch (log scale where all values are "
        "positive and span a decade or more); held-out objective where early stopping was on."
    ),
}

_KEY_PARAMS = (
    "n_groups",
    "group_rank",
    "beta",
    "alpha",
    "seed",
    "observation",
    "encoder",
    "decoder",
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-size: 0.9em; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.4em; }
.meta { color: #555; font-size: 0.9em; }
"""


def _format_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _table(rows: list[tuple[str, Any]], head: tuple[str, str]) -> str:
    e = html.escape
    body = "".join(
        f'<tr><th>{e(str(k))}</th><td class="num">{e(_format_value(v))}</td></tr>' for k, v in rows
    )
    return f"<table><tr><th>{e(head[0])}</th><th>{e(head[1])}</th></tr>{body}</table>"


def html_page(
    results: FitResults, conditions: tuple[str, np.ndarray] | None, pngs: dict[str, bytes]
) -> str:
    """The page of a fit: its figures (``pngs``, keyed as :data:`FIGURE_KEYS`) embedded, the
    column the trials are coloured by (``conditions``), metrics, parameters, provenance."""
    e = html.escape
    p = results.params
    params = [("bin_size (s)", results.bin_size)]
    params += [(k, p[k]) for k in _KEY_PARAMS if k in p]
    params += [(k, v) for k, v in sorted(p.items()) if k not in _KEY_PARAMS]
    prov = results.provenance
    n_unit = n_units(results)
    data = f"{len(results.latents)} bins"
    if results.trial_ids is not None:
        data += f" in {len(np.unique(results.trial_ids))} trials"
    if n_unit is not None:
        data += f" × {n_unit} {unit_noun(results)}s"
    meta = [
        ("fit", results.name),
        ("results file", f"{results.path}  ({results.object_path})"),
        ("source", prov.get("source", "")),
        ("data", data),
        ("layout", ", ".join(f"{k}={v}" for k, v in (prov.get("layout") or {}).items())),
        ("colour by", conditions[0] if conditions is not None else ""),
        ("written", prov.get("written", "")),
        ("nwb_facrnn", prov.get("nwb_facrnn_version", "")),
    ]
    meta_html = "".join(
        f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in meta if v not in ("", None)
    )
    figures = "".join(
        f'<figure id="{key}"><img alt="{e(key)}" '
        f'src="data:image/png;base64,{base64.b64encode(pngs[key]).decode("ascii")}">'
        f"<figcaption>{e(CAPTIONS[key])}</figcaption></figure>\n"
        for key in FIGURE_KEYS
    )
    metrics = (
        _table(list(results.metrics.items()), ("metric", "value"))
        if results.metrics
        else "<p>none stored</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>FacRNN fit {e(results.name)}</title><style>{_STYLE}</style></head><body>\n"
        f"<h1>FacRNN fit {e(results.name)}</h1>\n"
        f'<p class="meta">{e(fit_title(results))}</p>\n'
        f"<table>{meta_html}</table>\n"
        f"<h2>Metrics</h2>\n{metrics}\n"
        f"<h2>Parameters</h2>\n{_table(params, ('parameter', 'value'))}\n"
        f"<h2>Figures</h2>\n{figures}</body></html>\n"
    )
