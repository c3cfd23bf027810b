"""A :class:`Scene`: one opened NWB imaging session and, optionally, one FacRNN fit over it.

Everything the layers and widgets show comes from here; no Qt or napari code, so it is
tested on its own. The file stays open (read-only) while the scene lives: the movie and the
ROI traces are read from it frame by frame.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nwb_facrnn import NWBReadError
from nwb_facrnn.io import FieldOfView, FitResults, NoImagingError, find_results, read_field_of_view

from .colors import group_colors
from .frames import DatasetFrames, MaskedFrames, Timeline

__all__ = ["GroupSummary", "NoImagingError", "Scene", "open_scene"]


@dataclass
class GroupSummary:
    """One latent group as the group table shows it.

    Attributes
    ----------
    group : int
    color : numpy.ndarray, float, shape (4,)
        RGBA in [0, 1].
    rank : int
        Latent dimensions in the group (``group_rank``).
    n_rois : int
        Fitted ROIs whose dominant group this is.
    variance_explained : float
        ``sum_i var_t(A[i, g] z_g(t)) / sum_i var_t(A[i] z(t))``: the share of the variance
        of the latent drive of the fitted ROIs that this group's part carries (the shares
        sum to 1 when the groups are uncorrelated).
    """

    group: int
    color: np.ndarray
    rank: int
    n_rois: int
    variance_explained: float


@dataclass
class Scene:
    """An opened NWB imaging session, ready to be drawn.

    Attributes
    ----------
    path : str
        The file (HDF5) or store (Zarr).
    fov : FieldOfView
        ROIs, masks, field-of-view image, movie and traces of the imaging plane.
    results : FitResults or None
        The FacRNN fit shown (None: the file has no fit over this plane).
    other_fits : list of str
        Names of the file's other fits over this plane.
    fit_rows : numpy.ndarray or None, int64, shape (N,)
        Row of the PlaneSegmentation of each fitted ROI.
    colors : numpy.ndarray, float, shape (G, 4)
        RGBA colour of each group.
    saved_to : str or None
        Where the fit is stored; None for a fit made in the viewer and not saved yet.
    """

    path: str
    fov: FieldOfView
    results: FitResults | None = None
    other_fits: list[str] = field(default_factory=list)
    fit_rows: np.ndarray | None = None
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    saved_to: str | None = None
    _closer: Any = field(default=None, repr=False)
    _variance: np.ndarray | None = field(default=None, repr=False)

    # ----------------------------------------------------------------- geometry and time
    @property
    def pixel_size(self) -> tuple[float, float]:
        """Micrometres per pixel (rows, columns); 1 pixel when the file does not say."""
        return self.fov.pixel_size or (1.0, 1.0)

    @property
    def space_unit(self) -> str:
        return "µm" if self.fov.pixel_size else "pixel"

    @property
    def n_groups(self) -> int:
        return 0 if self.results is None else self.results.n_groups

    # Every layer puts each sample at the centre of the time it covers (napari shows the
    # sample nearest the slider's time), so the slider reads physical time: frame j of a
    # series at `rate` is shown from j / rate to (j + 1) / rate after its start, and a latent
    # bin over its bin; a bin of one frame lines up with that frame.
    def latent_timeline(self) -> Timeline:
        """Grid of the latent bins, at their centres; gaps between trials are shown empty."""
        res = self._need_results()
        return Timeline.from_timestamps(res.timestamps, step=res.bin_size)

    def movie_timeline(self) -> Timeline | None:
        movie = self.fov.movie
        return None if movie is None else _series_timeline(movie)

    def traces_timeline(self) -> Timeline | None:
        tr = self.fov.traces
        return None if tr is None else _series_timeline(tr)

    # ----------------------------------------------------------------- what is drawn
    def roi_groups(self) -> np.ndarray:
        """(R,) dominant group of every ROI of the plane; -1 for ROIs not in the fit."""
        out = np.full(self.fov.n_rois, -1, dtype=np.int64)
        res = self.results
        if res is not None and res.dominant_group is not None and self.fit_rows is not None:
            out[self.fit_rows] = res.dominant_group
        return out

    def contributions(self, g: int, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """``A[i, group g] . z_g(t)`` for latent rows ``rows``: shape (len(rows), N)."""
        res = self._need_results()
        if res.output_loadings is None:
            raise ValueError("this fit has an MLP decoder: there are no per-ROI loadings")
        s = res.group_slice(g)
        z = np.asarray(res.latents[rows, s], dtype=np.float32)
        return z @ res.output_loadings[:, s].T.astype(np.float32)

    def group_frames(self, g: int) -> MaskedFrames:
        """Lazy (n_bins, H, W) frames of group ``g``: ``sum_i mask_i * A[i, g] . z_g(t)``."""
        masks = self.fov.masks[self.fit_rows]
        return MaskedFrames(
            masks,
            lambda rows: self.contributions(g, rows),
            self.latent_timeline(),
            self.fov.frame_shape,
        )

    def group_display_max(self, g: int) -> float:
        """Upper contrast limit of group ``g``'s layer: twice its largest ROI strength."""
        res = self._need_results()
        strength = res.group_strength[:, g] if res.group_strength is not None else None
        top = float(np.max(strength)) if strength is not None and len(strength) else 0.0
        return 2.0 * top if top > 0 else 1.0

    def movie_frames(self) -> DatasetFrames | None:
        timeline = self.movie_timeline()
        return None if timeline is None else DatasetFrames(self.fov.movie.data, timeline)

    def trace_frames(self) -> MaskedFrames | None:
        """Lazy frames painting each ROI with its dF/F (or fluorescence) trace."""
        tr = self.fov.traces
        timeline = self.traces_timeline()
        if tr is None or timeline is None:
            return None
        data = tr.data

        def values(rows: np.ndarray) -> np.ndarray:
            if len(rows) == 1:
                return np.asarray(data[int(rows[0])], dtype=np.float32)[None]
            return np.asarray(data[int(rows[0]) : int(rows[-1]) + 1], np.float32)[rows - rows[0]]

        return MaskedFrames(self.fov.masks[tr.rows], values, timeline, self.fov.frame_shape)

    def trace_display_range(self, n_frames: int = 1000) -> tuple[float, float]:
        """Contrast limits of the trace layer: the 1st and 99.5th percentiles of its first
        ``n_frames`` frames (never all of a long recording)."""
        tr = self.fov.traces
        sample = np.asarray(tr.data[: min(n_frames, tr.data.shape[0])], dtype=np.float64)
        sample = sample[np.isfinite(sample)]
        lo, hi = np.percentile(sample, [1, 99.5]) if sample.size else (0.0, 1.0)
        return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)

    def image_display_range(self) -> tuple[float, float]:
        img = self.fov.image
        lo, hi = np.percentile(img, [0.5, 99.8]) if img.size else (0.0, 1.0)
        return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)

    def group_summaries(self) -> list[GroupSummary]:
        """One :class:`GroupSummary` per group (empty without a fit)."""
        res = self.results
        if res is None:
            return []
        groups = self.roi_groups()
        shares = self.variance_explained()
        return [
            GroupSummary(
                group=g,
                color=self.colors[g],
                rank=res.group_rank,
                n_rois=int(np.sum(groups == g)),
                variance_explained=float(shares[g]),
            )
            for g in range(res.n_groups)
        ]

    def variance_explained(self) -> np.ndarray:
        """(G,) share of the fitted ROIs' latent-drive variance carried by each group.

        From the latents' covariance ``C`` (K x K): ``var_t(A_i z) = A_i C A_i^T``, so the
        (T, N) drives are never formed (a 10-minute fit has 300 000 bins). Cached.
        """
        if self._variance is not None:
            return self._variance
        res = self._need_results()
        if res.output_loadings is None:
            return np.full(res.n_groups, np.nan)
        a = res.output_loadings.astype(np.float64)
        cov = np.atleast_2d(np.cov(res.latents.astype(np.float64), rowvar=False, bias=True))
        total = float(np.sum((a @ cov) * a))
        parts = np.array(
            [
                np.sum((a[:, s] @ cov[s, s]) * a[:, s])
                for s in map(res.group_slice, range(res.n_groups))
            ]
        )
        self._variance = parts / total if total > 0 else np.full(res.n_groups, np.nan)
        return self._variance

    def roi_row_of_label(self, label: int) -> int | None:
        """PlaneSegmentation row of a label value of the ROI layer (None for background)."""
        if label is None or label <= 0 or label > self.fov.n_rois:
            return None
        return int(label) - 1

    def fitted_index(self, row: int) -> int | None:
        """Index of PlaneSegmentation row ``row`` among the fitted ROIs (None: not fitted)."""
        if self.fit_rows is None:
            return None
        hits = np.flatnonzero(self.fit_rows == row)
        return int(hits[0]) if len(hits) else None

    # ----------------------------------------------------------------- fits
    def set_results(self, results: FitResults, saved_to: str | None = None) -> None:
        """Show ``results`` (a fit over this plane's ROIs)."""
        if results.unit_table != self.fov.table:
            raise NWBReadError(
                self.path,
                results.object_path or results.name,
                f"is a fit over {results.unit_table}, not over the plane {self.fov.table}",
            )
        index = {int(v): i for i, v in enumerate(self.fov.roi_ids)}
        missing = [int(u) for u in results.unit_ids if int(u) not in index]
        if missing:
            raise NWBReadError(
                self.path,
                self.fov.table,
                f"has no ROI with id {missing[:5]} that the fit {results.name!r} models",
            )
        self.results = results
        self.fit_rows = np.array([index[int(u)] for u in results.unit_ids], dtype=np.int64)
        self.colors = group_colors(results.n_groups)
        self.saved_to = saved_to
        self._variance = None

    def _need_results(self) -> FitResults:
        if self.results is None:
            raise ValueError(f"{self.path} has no FacRNN fit over {self.fov.table}")
        return self.results

    def close(self) -> None:
        """Close the file (the movie and trace layers can no longer be read)."""
        if self._closer is not None:
            self._closer()


def _series_timeline(series: Any) -> Timeline:
    """Frame centres of an ImagingSeries or RoiTraces."""
    if series.rate:
        step = 1.0 / series.rate
        return Timeline.regular(series.start + step / 2, step, series.data.shape[0])
    ts = series.timestamps
    diffs = np.diff(ts)
    step = float(np.median(diffs)) if len(diffs) else 1.0
    return Timeline.from_timestamps(ts + step / 2, step=step)


def _written(res_container: Any) -> str:
    """When a fit was written (ISO time from its provenance; "" when unknown)."""
    import json

    try:
        return str(json.loads(res_container.model.provenance).get("written", ""))
    except (AttributeError, TypeError, ValueError):
        return ""


def _connectivity_table(res_container: Any) -> str | None:
    from hdmf.common import DynamicTableRegion

    from nwb_facrnn.io import object_path

    conn = res_container.connectivity
    if conn is None:
        return None
    for col in conn.columns:
        if isinstance(col, DynamicTableRegion):
            return object_path(col.table)
    return None


def open_scene(
    path: str | os.PathLike, *, name: str | None = None, table: str | None = None
) -> Scene:
    """Open an NWB imaging session (HDF5 or Zarr) and its FacRNN fit, read-only.

    Parameters
    ----------
    path : path
        The NWB file or Zarr store.
    name : str, optional
        The fit to show when the file holds several; default: the last written.
    table : str, optional
        Path of the PlaneSegmentation; default: that of the fit shown (``name``, else the
        last written fit over ROIs), else the file's first.

    Returns
    -------
    Scene
        The file stays open until :meth:`Scene.close` or until the scene is garbage
        collected.

    Raises
    ------
    NoImagingError
        The file has no imaging ROIs (e.g. a spiking-only session).
    NWBReadError
        The file cannot be read, or ``name``/``table`` names nothing in it.
    """
    from nwb_facrnn.io import ndx_facrnn, open_nwbfile, read_results

    if not Path(path).exists():
        raise NWBReadError(str(path), "/", "does not exist")
    ndx_facrnn()  # the results' types, before the file is read
    stack = contextlib.ExitStack()
    try:
        nwbfile, source, _backend = stack.enter_context(open_nwbfile(path))
        # fits in the order they were written (then by name)
        containers = sorted(find_results(nwbfile), key=lambda r: (_written(r), r.name))
        fits = [(r.name, _connectivity_table(r)) for r in containers]
        ophys_fits = [(n, t) for n, t in fits if t is not None and t != "/units"]
        if table is None and ophys_fits:
            wanted = [t for n, t in ophys_fits if n == name] if name else [ophys_fits[-1][1]]
            table = wanted[0] if wanted else None
        fov = read_field_of_view(nwbfile, source, table)
        plane_fits = [n for n, t in fits if t == fov.table]
        if name is not None and name not in plane_fits:
            listing = ", ".join(plane_fits) or "none"
            raise NWBReadError(
                source, fov.table, f"has no FacRNN fit named {name!r}; fits over it: {listing}"
            )
        scene = Scene(path=source, fov=fov)
        if plane_fits:
            chosen = name or plane_fits[-1]
            scene.set_results(read_results(nwbfile, chosen), saved_to=source)
            scene.other_fits = [n for n in plane_fits if n != chosen]
    except BaseException:
        stack.close()
        raise
    scene._closer = weakref.finalize(scene, stack.close)
    return scene
