"""What a sweep fits: its sources, its grid of ``(G, H, beta, seed)`` and every fit's key."""

from __future__ import annotations

import glob
import hashlib
import inspect
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import OptionError

#: The FacRNN arguments the grid sets, one value per fit.
FIT_KEYS = ("n_groups", "group_rank", "beta", "seed")
#: read_nwb arguments that change how a file is fetched, not what is read (not in the key).
_FETCH_ONLY = ("cache", "download")
_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_NWB_SUFFIXES = (".nwb", ".zarr", ".h5", ".hdf5")


@dataclass(frozen=True)
class FitSpec:
    """One fit of a sweep.

    Attributes
    ----------
    source : str
        A local NWB file or Zarr store (absolute path) or a remote source (``DANDI:...`` ID or
        URL), as :func:`nwb_facrnn.read_nwb` takes it.
    n_groups, group_rank : int
        ``G`` latent groups of rank ``H`` (``K = G * H`` latents).
    beta : float
        Weight of the partial-correlation penalty.
    seed : int
        Seed of the fit.
    read_options : dict
        Keyword arguments of :func:`nwb_facrnn.read_nwb` (``series``, ``bin_size``,
        ``trials``, ``behavior``, ``dandi_api_url``, ``cache`` ...).
    fit_options : dict
        Other :class:`~nwb_facrnn.FacRNN` arguments (``max_epochs``, ``batch_size``,
        ``n_init``, ``smoothing``, ``device`` ...); ``observation="auto"`` (the default here)
        is Poisson for spikes and Gaussian for imaging.
    """

    source: str
    n_groups: int
    group_rank: int
    beta: float
    seed: int
    read_options: dict[str, Any] = field(default_factory=dict, hash=False)
    fit_options: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def fit_name(self) -> str:
        """``facrnn_G{G}H{H}_beta{beta}_seed{seed}``, the results container's name."""
        return f"facrnn_G{self.n_groups}H{self.group_rank}_beta{self.beta:g}_seed{self.seed}"

    @property
    def options_hash(self) -> str:
        """8 hex digits of sha256 over the source and the options that change the fit.

        Options at their default value and the fetch-only read options (``cache``,
        ``download``) are left out, so the same fit asked for from Python or the command line
        gets the same hash.
        """
        read, fit = changed_options(self.read_options, self.fit_options)
        ident = {"source": self.source, "read": read, "fit": fit}
        text = json.dumps(ident, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def key(self) -> str:
        """A stable, filesystem-safe id: ``<source stem>_<fit name>_<options hash>``.

        E.g. ``session_facrnn_G2H3_beta20_seed0_1a2b3c4d``; the hash covers the whole source
        (two files with the same name in different folders differ) and the options.
        """
        return f"{source_stem(self.source)}_{self.fit_name}_{self.options_hash}"

    def fit_params(self) -> dict[str, Any]:
        """The :class:`~nwb_facrnn.FacRNN` arguments of this fit (``observation`` may be
        ``"auto"``; ``progress`` off)."""
        return {
            **fit_defaults(),
            **self.fit_options,
            "n_groups": self.n_groups,
            "group_rank": self.group_rank,
            "beta": self.beta,
            "seed": self.seed,
            "progress": False,
        }


def source_stem(source: str) -> str:
    """The file name of a source without its NWB suffixes, filesystem-safe (at most 60 chars).

    ``/data/sub-1_ses-2.nwb`` -> ``sub-1_ses-2``; ``DANDI:000128/sub-x/sub-x_ecephys.nwb`` ->
    ``sub-x_ecephys``; ``a.nwb.zarr`` -> ``a``.
    """
    text = str(source).split("?", 1)[0].rstrip("/")
    name = PurePosixPath(text.replace("\\", "/")).name or "source"
    while name.lower().endswith(_NWB_SUFFIXES):
        name = name[: name.rfind(".")]
    return _UNSAFE.sub("_", name).strip("._")[:60] or "source"


# --------------------------------------------------------------------------- options
def _defaults(fn) -> dict[str, Any]:
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


# FacRNN's defaults, but observation "auto" (from the modality); filled in on first use
_SWEEP_FIT_DEFAULTS: dict[str, Any] = {}


def fit_defaults() -> dict[str, Any]:
    """The defaults of the FacRNN arguments a sweep passes through (all but the grid's and
    ``progress``), with ``observation="auto"``."""
    if not _SWEEP_FIT_DEFAULTS:
        from ..model.estimator import FacRNN  # torch: only when a sweep is planned or run

        defaults = _defaults(FacRNN.__init__)
        for key in (*FIT_KEYS, "progress"):
            defaults.pop(key)
        _SWEEP_FIT_DEFAULTS.update(defaults, observation="auto")
    return _SWEEP_FIT_DEFAULTS


def _normalized_read(options: dict[str, Any]) -> dict[str, Any]:
    from ..io.reader import read_nwb

    defaults = _defaults(read_nwb)
    out = {}
    for k, v in options.items():
        if k in _FETCH_ONLY:
            continue
        if isinstance(v, tuple):
            v = list(v)
        if v is None or (isinstance(v, list) and not v) or v == defaults.get(k, object()):
            continue
        out[k] = v
    return out


def _normalized_fit(options: dict[str, Any]) -> dict[str, Any]:
    defaults = fit_defaults()
    return {k: v for k, v in options.items() if not (k in defaults and v == defaults[k])}


def changed_options(
    read_options: dict[str, Any], fit_options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The read and fit options that differ from their defaults (what identifies a fit).

    ``cache`` and ``download`` (how a remote file is fetched) are left out too; tuples
    become lists.
    """
    return _normalized_read(read_options), _normalized_fit(fit_options)


def _check_options(read_options: dict[str, Any], fit_options: dict[str, Any]) -> None:
    from ..io.reader import read_nwb

    readable = [p for p in inspect.signature(read_nwb).parameters if p != "source"]
    unknown = sorted(set(read_options) - set(readable))
    if unknown:
        raise OptionError(f"unknown read option(s) {unknown}; read_nwb takes {readable}")
    allowed = sorted(fit_defaults())
    unknown = sorted(set(fit_options) - set(allowed))
    if unknown:
        swept = sorted(set(unknown) & {*FIT_KEYS, "progress"})
        hint = f" ({swept} are set by the sweep grid)" if swept else ""
        raise OptionError(f"unknown fit option(s) {unknown}{hint}; FacRNN takes {allowed}")


# --------------------------------------------------------------------------- sources
def expand_sources(patterns: Iterable[str], dandi_api_url: str | None = None) -> list[str]:
    """The NWB sources that ``patterns`` name, in order, each once.

    Parameters
    ----------
    patterns : iterable of str
        Local paths and globs (``sessions/*.nwb``, ``data/**/*.nwb``; sorted matches),
        remote assets as given (``DANDI:000128/sub-x/x.nwb``, DANDI or https URLs), whole
        dandisets (``DANDI:000128``, ``DANDI:000128@0.220113.0400``: their NWB assets) and
        globs over a dandiset's asset paths (``DANDI:000128/sub-*/*.nwb``).
    dandi_api_url : str, optional
        The DANDI instance to list dandisets on (default ``$DANDI_API_URL``, else the
        public archive).

    Returns
    -------
    list of str
        Local sources as absolute paths, remote ones as ``DANDI:<id>@<version>/<path>``
        (assets of a listed dandiset) or as given.

    Raises
    ------
    OptionError
        A local pattern that matches nothing, a local path that does not exist, a dandiset
        without NWB assets.
    """
    from ..io.dandi import is_remote, list_nwb_assets, parse_source

    out: list[str] = []
    for pattern in patterns:
        pattern = str(pattern).strip()
        if not pattern:
            raise OptionError("an empty source was given")
        if is_remote(pattern):
            parsed = parse_source(pattern)
            if parsed.kind == "dandiset":
                name, rows = list_nwb_assets(pattern, dandi_api_url)
                if not rows:
                    raise OptionError(f"{pattern}: the dandiset {name} has no NWB assets")
                out.extend(f"{name}/{row['path']}" for row in rows)
            elif parsed.kind == "asset" and _GLOB_CHARS.search(parsed.path or ""):
                out.extend(_dandi_glob(pattern, parsed, dandi_api_url, list_nwb_assets))
            else:
                out.append(pattern)
        elif _GLOB_CHARS.search(pattern):
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            if not matches:
                raise OptionError(f"{pattern}: no file matches this pattern")
            out.extend(str(Path(m).resolve()) for m in matches)
        else:
            path = Path(pattern).expanduser()
            if not path.exists():
                raise OptionError(f"{pattern}: no such file or directory")
            out.append(str(path.resolve()))
    return list(dict.fromkeys(out))


def _dandi_glob(pattern: str, parsed, dandi_api_url: str | None, list_nwb_assets) -> list[str]:
    from fnmatch import fnmatchcase

    dandiset = f"DANDI:{parsed.dandiset_id}" + (f"@{parsed.version}" if parsed.version else "")
    name, rows = list_nwb_assets(dandiset, dandi_api_url)
    matches = [f"{name}/{r['path']}" for r in rows if fnmatchcase(r["path"], parsed.path)]
    if not matches:
        raise OptionError(f"{pattern}: no NWB asset of {name} matches this pattern")
    return matches


def _local_or_remote(source: str) -> str:
    from ..io.dandi import is_remote

    return source if is_remote(source) else str(Path(source).expanduser().resolve())


# --------------------------------------------------------------------------- the grid
def plan_sweep(
    sources: Iterable[str],
    n_groups: Iterable[int],
    group_rank: Iterable[int],
    beta: Iterable[float],
    seeds: Iterable[int],
    read_options: dict[str, Any] | None = None,
    fit_options: dict[str, Any] | None = None,
) -> list[FitSpec]:
    """Every fit of the grid: sources x n_groups x group_rank x beta x seeds, in that order.

    Parameters
    ----------
    sources : iterable of str
        NWB sources (see :func:`expand_sources`); local paths are made absolute.
    n_groups, group_rank : iterable of int
        ``G`` and ``H`` values (each >= 1).
    beta : iterable of float
        Partial-correlation weights (each finite and >= 0).
    seeds : iterable of int
    read_options : dict, optional
        :func:`nwb_facrnn.read_nwb` keyword arguments, the same for every source.
    fit_options : dict, optional
        Other :class:`~nwb_facrnn.FacRNN` arguments (``max_epochs``, ``n_init`` ...).

    Returns
    -------
    list of FitSpec
        Duplicates removed.

    Raises
    ------
    OptionError
        An empty list, a value out of range, or an unknown option.
    """
    read_options = dict(read_options or {})
    fit_options = dict(fit_options or {})
    _check_options(read_options, fit_options)
    srcs = list(dict.fromkeys(_local_or_remote(str(s)) for s in sources))
    gs = _ints(n_groups, "n_groups", 1)
    hs = _ints(group_rank, "group_rank", 1)
    seeds_ = _ints(seeds, "seeds", None)
    betas = list(dict.fromkeys(float(b) for b in beta))
    if not betas or not all(math.isfinite(b) and b >= 0 for b in betas):
        raise OptionError(f"beta must be one or more finite numbers >= 0, got {betas}")
    if not srcs:
        raise OptionError("no source to fit")
    return [
        FitSpec(src, g, h, b, s, read_options, fit_options)
        for src in srcs
        for g in gs
        for h in hs
        for b in betas
        for s in seeds_
    ]


def _ints(values: Iterable[int], name: str, minimum: int | None) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise OptionError(f"{name} must be integers, got {v!r}")
        if minimum is not None and v < minimum:
            raise OptionError(f"{name} must be >= {minimum}, got {v}")
        out.append(int(v))
    if not out:
        raise OptionError(f"{name}: no value given")
    return list(dict.fromkeys(out))
