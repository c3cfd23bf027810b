"""The imaging field of view of an NWB file: ROI masks, a summary image, the movie and traces.

What a viewer needs to draw an imaging plane and its ROIs. Masks are read once into a sparse
matrix; the movie and the ROI traces stay in the file (HDF5 or Zarr datasets) and are read
frame by frame by the caller, so the file must stay open while they are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from .errors import NWBReadError
from .nwb_objects import data_shape, object_path, series_timestamps

# Summary-image names, most wanted first (matched case-insensitively as substrings).
_SUMMARY_PREFERENCE = ("mean", "average", "avg", "ref", "max", "corr", "std")
# Frames averaged for the field of view when the file has no summary image.
N_MEAN_FRAMES = 100
# ROIs read per image-mask slab.
_MASK_SLAB = 32


class NoImagingError(NWBReadError):
    """The file has no imaging plane with ROIs (no PlaneSegmentation)."""


@dataclass
class ImagingSeries:
    """An imaging movie: the (T, H, W) dataset and its frame times.

    Attributes
    ----------
    path : str
        Path of the series in the file.
    data : h5py.Dataset or zarr.Array, shape (T, H, W)
        Left in the file.
    start : float
        Time of the first frame (s).
    rate : float or None
        Frames per second, when the series has a rate.
    timestamps : numpy.ndarray or None, float64, shape (T,)
        Frame times (s), when the series has timestamps instead of a rate.
    """

    path: str
    data: Any
    start: float
    rate: float | None
    timestamps: np.ndarray | None


@dataclass
class RoiTraces:
    """A RoiResponseSeries over (some of) the plane's ROIs.

    Attributes
    ----------
    path : str
    data : h5py.Dataset or zarr.Array, shape (T, n_columns)
    rows : numpy.ndarray, int64, shape (n_columns,)
        Row of the PlaneSegmentation of each column.
    start, rate, timestamps
        As in :class:`ImagingSeries`.
    unit : str
    """

    path: str
    data: Any
    rows: np.ndarray
    start: float
    rate: float | None
    timestamps: np.ndarray | None
    unit: str


@dataclass
class FieldOfView:
    """One imaging plane: its ROIs and what there is to draw under them.

    ``R`` is the number of ROIs (rows of the PlaneSegmentation), ``(H, W)`` the frame shape.

    Attributes
    ----------
    source : str
        The file.
    table : str
        Path of the PlaneSegmentation.
    roi_ids : numpy.ndarray, shape (R,)
        Its ``id`` column.
    masks : scipy.sparse.csr_matrix, float32, shape (R, H * W)
        Mask weight of each ROI at each pixel (row-major).
    frame_shape : (int, int)
        ``(H, W)``: rows and columns of the frames and masks.
    pixel_size : (float, float) or None
        Micrometres per pixel along rows and columns (the imaging plane's ``grid_spacing``),
        None when the file does not say.
    image : numpy.ndarray, float32, shape (H, W)
        The field of view: the plane's summary image, else the mean of the first frames.
    image_source : str
        Where ``image`` came from (a path, or "mean of frames 0-99 of /acquisition/...").
    movie : ImagingSeries or None
        The plane's imaging series.
    traces : RoiTraces or None
        The plane's dF/F (else fluorescence) series.
    columns : dict of str to numpy.ndarray
        The table's one-dimensional columns (e.g. ``accepted``), shape (R,) each.
    """

    source: str
    table: str
    roi_ids: np.ndarray
    masks: sparse.csr_matrix
    frame_shape: tuple[int, int]
    pixel_size: tuple[float, float] | None
    image: np.ndarray
    image_source: str
    movie: ImagingSeries | None
    traces: RoiTraces | None
    columns: dict[str, np.ndarray]

    @property
    def n_rois(self) -> int:
        return len(self.roi_ids)

    def label_image(self) -> np.ndarray:
        """(H, W) int32: ``1 + row`` of the ROI with the largest mask weight, 0 elsewhere."""
        coo = self.masks.tocoo()
        labels = np.zeros(coo.shape[1], dtype=np.int32)
        order = np.argsort(coo.data, kind="stable")  # the heaviest weight is written last
        rows, cols, vals = coo.row[order], coo.col[order], coo.data[order]
        keep = vals > 0
        labels[cols[keep]] = rows[keep] + 1
        return labels.reshape(self.frame_shape)

    def centroids(self) -> np.ndarray:
        """(R, 2) mask-weighted centre (row, column) of each ROI, in pixels."""
        h, w = self.frame_shape
        yy, xx = np.divmod(np.arange(h * w), w)
        total = np.asarray(self.masks.sum(axis=1)).ravel()
        total[total == 0] = np.nan
        cy = (self.masks @ yy.astype(np.float64)) / total
        cx = (self.masks @ xx.astype(np.float64)) / total
        return np.column_stack([cy, cx])


def plane_segmentations(nwbfile: Any) -> list[Any]:
    """Every PlaneSegmentation of the file's ImageSegmentation containers."""
    from pynwb.ophys import ImageSegmentation, PlaneSegmentation

    found = []
    for module in nwbfile.processing.values():
        for obj in module.data_interfaces.values():
            if isinstance(obj, ImageSegmentation):
                found.extend(obj.plane_segmentations.values())
            elif isinstance(obj, PlaneSegmentation):
                found.append(obj)
    return found


def read_field_of_view(nwbfile: Any, source: str, table: str | None = None) -> FieldOfView:
    """Read an imaging plane's ROIs and field of view from an open NWB file.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
        Open; keep it open while the returned movie and traces are read.
    source : str
        The file's name, for messages.
    table : str, optional
        Path of the PlaneSegmentation (e.g. ``/processing/ophys/ImageSegmentation/
        PlaneSegmentation``); default: the only one, or the first one.

    Raises
    ------
    NoImagingError
        The file has no PlaneSegmentation (e.g. a spiking-only session).
    NWBReadError
        No PlaneSegmentation at ``table``, masks of the wrong shape, or an empty table.
    """
    planes = plane_segmentations(nwbfile)
    if not planes:
        raise NoImagingError(
            source,
            "/processing",
            "has no imaging ROIs (no PlaneSegmentation): the napari view needs an imaging "
            "session; a spiking session's fits are read with nwb_facrnn.read_results",
        )
    if table is None:
        ps = planes[0]
    else:
        matches = [p for p in planes if object_path(p) == "/" + table.strip("/")]
        if not matches:
            listing = ", ".join(object_path(p) for p in planes)
            raise NWBReadError(source, table, f"is not a PlaneSegmentation; present: {listing}")
        ps = matches[0]
    path = object_path(ps)
    roi_ids = np.asarray(ps.id[:])
    if len(roi_ids) == 0:
        raise NWBReadError(source, path, "has no ROIs")
    movie = _imaging_series(nwbfile, ps, source)
    masks, frame_shape = _read_masks(ps, source, path, movie)
    image, image_source = _field_image(nwbfile, ps, source, frame_shape, movie)
    return FieldOfView(
        source=source,
        table=path,
        roi_ids=roi_ids,
        masks=masks,
        frame_shape=frame_shape,
        pixel_size=_pixel_size(ps.imaging_plane),
        image=image,
        image_source=image_source,
        movie=movie,
        traces=_roi_traces(nwbfile, ps, source),
        columns=_flat_columns(ps, len(roi_ids)),
    )


# --------------------------------------------------------------------------- pieces


def _read_masks(ps: Any, source: str, path: str, movie: ImagingSeries | None):
    names = set(ps.colnames)
    n = len(ps.id)
    if "image_mask" in names:
        data = ps["image_mask"].data
        shape = data_shape(data)
        if len(shape) != 3:
            raise NWBReadError(
                source, f"{path}/image_mask", f"must be (n_rois, height, width), is {shape}"
            )
        frame_shape = (int(shape[1]), int(shape[2]))
        blocks = []
        for start in range(0, n, _MASK_SLAB):
            slab = np.asarray(data[start : start + _MASK_SLAB], dtype=np.float32)
            blocks.append(sparse.csr_matrix(slab.reshape(len(slab), -1)))
        return sparse.vstack(blocks, format="csr"), frame_shape
    if "pixel_mask" in names:
        frame_shape = _frame_shape_without_image_masks(ps, movie)
        if frame_shape is None:
            raise NWBReadError(
                source, path, "has pixel masks but no image of the plane gives the frame shape"
            )
        h, w = frame_shape
        rows, cols, vals = [], [], []
        column = ps["pixel_mask"]
        outside = 0
        for i in range(n):
            px = np.asarray([tuple(p)[:3] for p in column[i]], dtype=np.float64).reshape(-1, 3)
            # NWB: pixel (x, y, weight), x along the first image axis, as image_mask's
            # (num_x, num_y) and pynwb's image_to_pixel (suite2p writes (ypix, xpix, lam))
            r, c, wgt = px[:, 0].astype(np.int64), px[:, 1].astype(np.int64), px[:, 2]
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            outside += int((~inside).sum())
            rows.append(np.full(int(inside.sum()), i))
            cols.append(r[inside] * w + c[inside])
            vals.append(wgt[inside].astype(np.float32))
        if outside:
            raise NWBReadError(
                source,
                f"{path}/pixel_mask",
                f"{outside} pixels lie outside the {h} x {w} frame (x is read along the first "
                "image axis, as image_mask's (num_x, num_y))",
            )
        m = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, h * w)
        )
        return m, frame_shape
    raise NWBReadError(source, path, "has neither image_mask nor pixel_mask (voxel masks: 3-D)")


def _frame_shape_without_image_masks(ps: Any, movie: ImagingSeries | None):
    if movie is not None:
        return tuple(int(s) for s in movie.data.shape[1:3])
    for img in _summary_candidates(ps):
        return tuple(int(s) for s in data_shape(img.data)[:2])
    return None


def _references(ps: Any) -> list[Any]:
    """The PlaneSegmentation's ``reference_images`` (pynwb reads them back as a list)."""
    refs = getattr(ps, "reference_images", None)
    if refs is None:
        return []
    if isinstance(refs, dict):
        return list(refs.values())
    if isinstance(refs, list | tuple):
        return list(refs)
    return [refs]


def _frame_times(s: Any, source: str) -> tuple[float, float | None, np.ndarray | None]:
    """(start, rate, timestamps) of a series; timestamps checked (length, increasing)."""
    if s.rate:
        return float(s.starting_time or 0.0), float(s.rate), None
    ts = series_timestamps(s, source)  # raises NWBReadError naming .../timestamps
    return float(ts[0]), None, ts


def _imaging_series(nwbfile: Any, ps: Any, source: str) -> ImagingSeries | None:
    from pynwb.image import ImageSeries

    candidates = [r for r in _references(ps) if isinstance(r, ImageSeries)]
    for obj in nwbfile.acquisition.values():
        if getattr(obj, "imaging_plane", None) is ps.imaging_plane:
            candidates.append(obj)
    for module in nwbfile.processing.values():
        for obj in module.data_interfaces.values():
            if getattr(obj, "imaging_plane", None) is ps.imaging_plane and isinstance(
                obj, ImageSeries
            ):
                candidates.append(obj)  # e.g. a motion-corrected movie
    for s in candidates:
        if s.data is None or len(data_shape(s.data)) != 3 or isinstance(s.data, np.ndarray | list):
            continue  # volumetric, external file, or in-memory data
        if len(data_shape(s.data)) and data_shape(s.data)[0] == 0:
            continue
        start, rate, ts = _frame_times(s, source)
        return ImagingSeries(object_path(s), s.data, start, rate, ts)
    return None


def _summary_candidates(ps: Any) -> list[Any]:
    """GrayscaleImages in the plane's module (then any module) and its reference images."""
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage

    found = []
    for refs in _references(ps):
        if isinstance(refs, Images):
            found.extend(v for v in refs.images.values() if isinstance(v, GrayscaleImage))
    module = ps.parent.parent if ps.parent is not None else None
    modules = [module] if module is not None and hasattr(module, "data_interfaces") else []
    nwbfile = ps.get_ancestor("NWBFile")
    if nwbfile is not None:
        modules += [m for m in nwbfile.processing.values() if m is not module]
    for m in modules:
        for obj in m.data_interfaces.values():
            if isinstance(obj, Images):
                found.extend(v for v in obj.images.values() if isinstance(v, GrayscaleImage))
    return found


def _preference(name: str) -> int:
    name = name.lower()
    for i, key in enumerate(_SUMMARY_PREFERENCE):
        if key in name:
            return i
    return len(_SUMMARY_PREFERENCE)


def _field_image(
    nwbfile: Any, ps: Any, source: str, frame_shape: tuple[int, int], movie
) -> tuple[np.ndarray, str]:
    images = [im for im in _summary_candidates(ps) if tuple(data_shape(im.data)[:2]) == frame_shape]
    if images:
        best = min(images, key=lambda im: _preference(im.name))
        return np.asarray(best.data[:], dtype=np.float32), object_path(best)
    if movie is not None:
        n = min(N_MEAN_FRAMES, movie.data.shape[0])
        image = np.asarray(movie.data[:n], dtype=np.float64).mean(axis=0).astype(np.float32)
        return image, f"mean of frames 0-{n - 1} of {movie.path}"
    # no image at all: the ROIs themselves
    return np.zeros(frame_shape, dtype=np.float32), "none (no summary image or movie)"


def _pixel_size(plane: Any) -> tuple[float, float] | None:
    spacing = getattr(plane, "grid_spacing", None)
    if spacing is None:
        return None
    spacing = np.asarray(spacing[:], dtype=np.float64)
    if len(spacing) < 2 or not np.all(spacing > 0):
        return None
    scale = {"meters": 1e6, "meter": 1e6, "m": 1e6, "millimeters": 1e3, "mm": 1e3}
    unit = str(getattr(plane, "grid_spacing_unit", "meters")).lower()
    factor = scale.get(unit, 1.0 if unit in ("micrometers", "um", "µm") else None)
    if factor is None:
        return None
    return float(spacing[0] * factor), float(spacing[1] * factor)


def _roi_traces(nwbfile: Any, ps: Any, source: str) -> RoiTraces | None:
    from .ophys import list_roi_series

    for path, _kind, s in list_roi_series(nwbfile):
        if s.rois.table is not ps or len(data_shape(s.data)) != 2:
            continue
        rows = np.asarray(s.rois.data[:], dtype=np.int64)
        start, rate, ts = _frame_times(s, source)
        return RoiTraces(path, s.data, rows, start, rate, ts, str(s.unit))
    return None


def _flat_columns(ps: Any, n: int) -> dict[str, np.ndarray]:
    from hdmf.common import DynamicTableRegion, VectorIndex

    out = {}
    for col in ps.columns:
        if col.name in ("image_mask", "pixel_mask", "voxel_mask") or isinstance(
            col, VectorIndex | DynamicTableRegion
        ):
            continue
        if len(data_shape(col.data)) == 1 and data_shape(col.data)[0] == n:
            values = np.asarray(col.data[:])
            if values.dtype.kind in "biufU":
                out[col.name] = values
    return out
