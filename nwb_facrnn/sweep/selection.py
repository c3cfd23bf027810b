"""Choosing ``(G, H, beta)`` from a sweep's rows, and the table of that choice."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import OptionError
from ..metrics import LEGACY_METRIC_NAMES
from .rows import canonical_row

#: Default disentanglement threshold (nats), see :func:`select_model`.
PC_THRESHOLD = 0.1
#: Selection rules (``"one-se"`` is accepted for ``"one_se"``).
RULES = ("best", "one_se")
_PC = "gaussian_partial_correlation"


@dataclass
class Selection:
    """The outcome of :func:`select_model`.

    Attributes
    ----------
    table : list of dict
        One row per ``(n_groups, group_rank, beta)``, in grid order: ``n_latents``,
        ``n_fits`` (finished), ``n_failed``, ``<metric>_mean``, ``<metric>_std`` and
        ``<metric>_se`` (over the finished fits: seeds and sources),
        ``gaussian_partial_correlation_mean``, ``reconstruction_r2_mean``, every
        ``<name>_decoding_r2_mean``, ``eligible``, ``reason`` (why not eligible) and ``chosen``.
    choice : dict
        The chosen row of ``table``.
    metric : str
    pc_threshold : float
    rule : str
    best : dict
        The eligible row with the highest mean metric (the choice of ``rule="best"``).
    ignored_sources : list of str
        Sources of which no fit finished (e.g. not an NWB file); left out of the table.
    """

    table: list[dict[str, Any]]
    choice: dict[str, Any]
    metric: str
    pc_threshold: float
    rule: str
    best: dict[str, Any]
    ignored_sources: list[str] = field(default_factory=list)

    @property
    def n_groups(self) -> int:
        return int(self.choice["n_groups"])

    @property
    def group_rank(self) -> int:
        return int(self.choice["group_rank"])

    @property
    def beta(self) -> float:
        return float(self.choice["beta"])


def select_model(
    rows: Iterable[dict[str, Any]],
    pc_threshold: float = PC_THRESHOLD,
    metric: str = "log_likelihood",
    rule: str = "best",
) -> Selection:
    """Choose ``(G, H, beta)`` by held-out likelihood among disentangled configurations.

    Rows are aggregated over seeds and sources per ``(n_groups, group_rank, beta)`` (a
    source of which no fit finished, e.g. a file that is not NWB, is left out).  A
    configuration is eligible when all its fits finished (means over different fits are not
    comparable) and the mean partial correlation between its groups
    (``gaussian_partial_correlation``) is below ``pc_threshold``; among the eligible ones:

    - ``rule="best"`` (default): the highest mean ``metric``;
    - ``rule="one_se"``: the one-standard-error rule (Breiman et al. 1984; Hastie, Tibshirani
      & Friedman, *The Elements of Statistical Learning*, 7.10): among the configurations
      whose mean is within one standard error (of the best one's mean, over its fits) of the
      best mean, the one with the fewest latents ``K = G * H`` (then the highest mean).
      Where held-out likelihood keeps creeping up with ``K`` by less than the seed-to-seed
      spread once the latent dimension is reached, this stops at the simplest model that is
      not measurably worse.  It needs several seeds (one fit has no standard error).

    Parameters
    ----------
    rows : iterable of dict
        Sweep rows (:func:`run_sweep`, :func:`read_summary`); older rows' ``heldout_*``
        columns are read under today's names.
    pc_threshold : float
        Nats.  Default 0.1: the Gaussian partial correlation is the mutual information
        between the groups; 0.1 nats is what one pair of latents correlated at
        ``|r| = 0.43`` gives (``-0.5 log(1 - r^2)``), while independent groups estimated on
        ``T`` steps give about ``H_1 H_2 / (2 T)`` (0.005 nats for two rank-3 groups on
        1000 steps), and a group split in two or two groups that share a latent give
        several tenths.
    metric : str
        A row column where higher is better; default the log-likelihood on the held-out
        steps (nats per time step).
    rule : {"best", "one_se"}
        ``"one-se"`` is the same as ``"one_se"``.

    Returns
    -------
    Selection

    Raises
    ------
    OptionError
        An unknown rule, a threshold that is not a positive number, no finished fit, or no
        eligible configuration (the smallest partial correlation seen is named).
    """
    rule = str(rule).replace("-", "_")
    if rule not in RULES:
        raise OptionError(f"rule must be 'one_se' or 'best', got {rule!r}")
    if not (isinstance(pc_threshold, int | float) and pc_threshold > 0):
        raise OptionError(f"pc_threshold must be a number > 0 (nats), got {pc_threshold!r}")
    metric = LEGACY_METRIC_NAMES.get(metric, metric)
    rows = [canonical_row(r) for r in rows]
    ok_rows = [r for r in rows if r.get("status") == "ok"]
    if not ok_rows:
        raise OptionError(f"no finished fit among the {len(rows)} row(s): nothing to select from")
    readable = {r.get("source") for r in ok_rows}
    ignored = sorted({str(r.get("source")) for r in rows} - {str(s) for s in readable})
    groups: dict[tuple[int, int, float], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("source") in readable:  # a source no fit could use does not count
            config = (int(r["n_groups"]), int(r["group_rank"]), float(r["beta"]))
            groups.setdefault(config, []).append(r)
    extra = ["reconstruction_r2", *sorted({k for r in ok_rows for k in r if _decoding(k)})]
    table = [
        _config_row(config, members, metric, extra, pc_threshold)
        for config, members in groups.items()
    ]
    eligible = [r for r in table if r["eligible"]]
    if not eligible:
        raise OptionError(_none_eligible(table, pc_threshold))
    mean = f"{metric}_mean"
    best = max(eligible, key=lambda r: r[mean])
    if rule == "best":
        choice = best
    else:
        close = [r for r in eligible if r[mean] >= best[mean] - best[f"{metric}_se"]]
        choice = min(close, key=lambda r: (r["n_latents"], -r[mean]))
    choice["chosen"] = True
    return Selection(table, choice, metric, float(pc_threshold), rule, best, ignored)


def _decoding(column: str) -> bool:
    return column.endswith("_decoding_r2")


def _config_row(
    config: tuple[int, int, float],
    members: list[dict[str, Any]],
    metric: str,
    extra: list[str],
    pc_threshold: float,
) -> dict[str, Any]:
    """One configuration's line of the selection table."""
    g, h, b = config
    ok = [r for r in members if r.get("status") == "ok"]
    values = _floats(r.get(metric) for r in ok)
    row: dict[str, Any] = {
        "n_groups": g,
        "group_rank": h,
        "beta": b,
        "n_latents": g * h,
        "n_fits": len(ok),
        "n_failed": len(members) - len(ok),
        f"{metric}_mean": _mean(values),
        f"{metric}_std": _std(values),
        f"{metric}_se": _std(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0,
        f"{_PC}_mean": _mean(_floats(r.get(_PC) for r in ok)),
    }
    for k in extra:
        if k != metric:
            row[f"{k}_mean"] = _mean(_floats(r.get(k) for r in ok))
    pc = row[f"{_PC}_mean"]
    reason = ""
    if not ok:
        reason = "no finished fit"
    elif len(ok) < len(members):
        reason = f"{len(members) - len(ok)} of {len(members)} fits failed (rerun the sweep)"
    elif not math.isfinite(row[f"{metric}_mean"]):
        reason = f"{metric} undefined"
    elif not math.isfinite(pc):
        reason = "partial correlation undefined"
    elif pc >= pc_threshold:
        reason = f"partial correlation {pc:.3g} >= {pc_threshold:g}"
    row.update(eligible=not reason, reason=reason, chosen=False)
    return row


def _none_eligible(table: list[dict[str, Any]], pc_threshold: float) -> str:
    """Why no configuration is eligible, and what to change."""
    incomplete = sum(r["n_failed"] > 0 for r in table)
    details = []
    if incomplete:
        details.append(f"{incomplete} of {len(table)} have failed fits (rerun the sweep)")
    seen = [r for r in table if r["n_failed"] == 0 and math.isfinite(r[f"{_PC}_mean"])]
    if seen:
        low = min(seen, key=lambda r: r[f"{_PC}_mean"])
        details.append(
            f"the smallest mean partial correlation is {low[f'{_PC}_mean']:.3g} nats "
            f"(G={low['n_groups']}, H={low['group_rank']}, beta={low['beta']:g}): raise "
            "the threshold, or add G = 1 or a larger beta to the sweep"
        )
    return (
        f"no configuration is eligible (every fit finished, mean partial correlation < "
        f"{pc_threshold:g} nats): " + "; ".join(details or ["no metric is defined"])
    )


def _floats(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


# --------------------------------------------------------------------------- the table
def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell (``-`` when missing)."""
    if value is None:
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def selection_table(selection: Selection) -> tuple[list[str], list[list[str]]]:
    """The selection table as text: its header and one list of cells per configuration (in
    the order of ``selection.table``).  The last cell is ``"◀ chosen"`` on the chosen row.

    Used by :func:`selection_markdown` and ``nwb-facrnn select``.
    """
    m = selection.metric
    decoding = [k for k in selection.table[0] if _decoding(k.removesuffix("_mean"))]
    head = ["G", "H", "beta", "K", "fits", f"{m} (mean ± sd)", _PC, "reconstruction_r2"]
    head += [k.removesuffix("_mean") for k in decoding]
    head += ["eligible", "chosen"]
    body = []
    for r in selection.table:
        body.append(
            [
                str(r["n_groups"]),
                str(r["group_rank"]),
                f"{r['beta']:g}",
                str(r["n_latents"]),
                f"{r['n_fits']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else ""),
                f"{fmt(r[f'{m}_mean'])} ± {fmt(r[f'{m}_std'])}",
                fmt(r[f"{_PC}_mean"]),
                fmt(r["reconstruction_r2_mean"]),
                *(fmt(r[k]) for k in decoding),
                "yes" if r["eligible"] else f"no: {r['reason']}",
                "◀ chosen" if r["chosen"] else "",
            ]
        )
    return head, body


def selection_markdown(selection: Selection) -> str:
    """The selection table as Markdown (the README's table), the chosen row in bold."""
    head, body = selection_table(selection)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, cells in zip(selection.table, body, strict=True):
        if r["chosen"]:
            cells = [*(f"**{c}**" for c in cells[:5]), *cells[5:-1], f"**{cells[-1]}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
