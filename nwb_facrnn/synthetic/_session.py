"""The outline shared by the synthetic NWB sessions (:mod:`.spiking`, :mod:`.imaging`).

Every session generator ``<kind>_nwbfile(seed, **params)``

1. validates ``seed`` and collects its parameters by name (:func:`arguments`);
2. validates the parameters and simulates from independent random streams (:func:`streams`):
   grouped chaotic latents (:func:`latents`), cells balanced over the groups
   (:func:`balanced_groups`) with block-sparse loadings (:func:`block_loadings`), and a
   ground truth deriving from :class:`SessionTruth` (:func:`truth_fields`);
3. builds the NWBFile with deterministic metadata (:func:`._nwb.new_nwbfile`);

and ``make_<kind>_session(path, seed, overwrite, **params)`` writes it (:func:`write`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np

from ._checks import check_seed
from .dynamics import _resolve_systems, group_latents


@dataclass(eq=False)
class SessionTruth:
    """What every synthetic session's ground truth holds first.

    Attributes
    ----------
    path : pathlib.Path or None
        Where the session was written (None for an in-memory file).
    seed : int
        Seed of every random draw.
    n_groups, group_rank : int
        ``G`` and ``H``; latent group ``g`` is columns ``[g H, (g+1) H)`` of ``z`` and ``A``.
    systems : tuple of str
        Chaotic system of each group.
    """

    path: Path | None
    seed: int
    n_groups: int
    group_rank: int
    systems: tuple[str, ...]


Truth = TypeVar("Truth", bound=SessionTruth)


def arguments(given: Mapping[str, Any], *, exclude: Iterable[str] = ()) -> tuple[int, Any]:
    """The validated seed and the parameters of a session generator called with ``given``.

    ``given`` is the generator's ``locals()`` on entry (its arguments by name); the
    parameters are every argument but ``seed`` and ``exclude`` (arguments that do not change
    the session's content, such as a storage backend), as attributes of a namespace whose
    ``vars`` name the session in its identifier.
    """
    seed = check_seed(given["seed"])
    skip = {"seed", *exclude}
    return seed, SimpleNamespace(**{k: v for k, v in given.items() if k not in skip})


def streams(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent random generators spawned from ``seed`` (one per part of a session,
    so that e.g. changing the number of cells keeps the latents)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def latents(
    rng: np.random.Generator, n_groups: int, n_steps: int, time_scale: float
) -> tuple[tuple[str, ...], np.ndarray]:
    """The default chaotic system of each group and their standardized latents (T, 3 G).

    See :func:`.dynamics.group_latents` for ``time_scale``.
    """
    systems = _resolve_systems(None, n_groups)
    return systems, group_latents(rng, systems, n_steps, time_scale)


def balanced_groups(rng: np.random.Generator, n: int, n_groups: int) -> np.ndarray:
    """Group label of each of ``n`` cells, shape (n,) int: sizes differ by at most one, shuffled."""
    return rng.permutation(np.arange(n) % n_groups)


def block_loadings(
    rng: np.random.Generator,
    groups: np.ndarray,
    n_groups: int,
    group_rank: int,
    gain: tuple[float, float],
) -> np.ndarray:
    """Block-sparse loadings, shape (n, n_groups * group_rank).

    Row ``i`` is zero outside group ``groups[i]``'s columns (all zero when ``groups[i] < 0``);
    inside, it is a uniformly random direction scaled by a norm drawn uniformly from ``gain``.
    Because each group's latents are standardized, the loaded signal has a std of about that
    norm.
    """
    n = len(groups)
    loadings = np.zeros((n, n_groups * group_rank))
    directions = rng.standard_normal((n, group_rank))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = rng.uniform(gain[0], gain[1], size=n)
    for i, g in enumerate(groups):
        if g >= 0:
            loadings[i, g * group_rank : (g + 1) * group_rank] = norms[i] * directions[i]
    return loadings


def truth_fields(
    seed: int,
    params: Any,
    systems: tuple[str, ...],
    z: np.ndarray,
    model: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """The ground-truth fields every session shares: the :class:`SessionTruth` fields (no
    path yet), the FacRNN parameters ``model = (A, a, B, b)`` and the latents ``z`` (float32)."""
    A, a, B, b = model
    return {
        "path": None,
        "seed": seed,
        "n_groups": params.n_groups,
        "group_rank": params.group_rank,
        "systems": systems,
        "A": A,
        "a": a,
        "B": B,
        "b": b,
        "z": z.astype(np.float32),
    }


def write(path: str | os.PathLike, overwrite: bool, session: tuple[Any, Truth]) -> Truth:
    """Write ``session = (nwbfile, truth)`` to ``path`` (backend by suffix, atomically) and
    return its truth with ``path`` set."""
    from ..io.backend import write_nwbfile

    nwbfile, truth = session
    truth.path = write_nwbfile(nwbfile, path, overwrite=overwrite)
    return truth
