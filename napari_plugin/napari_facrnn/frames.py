"""Lazy (time, y, x) array-likes for napari: frames are computed or read only when shown.

napari slices an array-like with ``data[key]`` (a tuple of ints and slices) and needs only
``shape``, ``dtype`` and ``ndim``; so a 10-minute, 500 Hz session opens without reading or
computing its 300 000 frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class Timeline:
    """A regular time grid and, for each grid position, the data row shown there.

    Data sampled on a regular grid (frames at ``rate``, contiguous latent bins) map one to
    one; data with gaps (trials) or repeated samples map to the nearest grid position and the
    positions without a sample show nothing (row ``-1``).

    Attributes
    ----------
    start : float
        Time of grid position 0 (s): the first sample's time.
    step : float
        Grid step (s).
    n : int
        Number of grid positions.
    rows : numpy.ndarray or None, int64, shape (n,)
        Data row of each grid position (``-1``: none); None when position ``k`` is row ``k``.
    """

    start: float
    step: float
    n: int
    rows: np.ndarray | None = None

    @classmethod
    def regular(cls, start: float, step: float, n: int) -> Timeline:
        """``n`` samples every ``step`` seconds from ``start``."""
        if not step > 0:
            raise ValueError(f"a time step must be positive, got {step!r}")
        return cls(float(start), float(step), int(n))

    @classmethod
    def from_timestamps(
        cls, timestamps: np.ndarray, step: float | None = None, start: float | None = None
    ) -> Timeline:
        """Samples at ``timestamps`` (s, in any order) on a grid of ``step`` (default: the
        median positive interval) from ``start`` (default: the earliest sample).

        Samples that round to one grid position (overlapping trial windows) keep the last
        one in ``timestamps`` order.
        """
        ts = np.asarray(timestamps, dtype=np.float64)
        if ts.ndim != 1 or len(ts) == 0 or not np.isfinite(ts).all():
            raise ValueError("timestamps must be a non-empty 1-D array of finite times")
        if step is None:
            diffs = np.diff(np.sort(ts))
            diffs = diffs[diffs > 0]
            step = float(np.median(diffs)) if len(diffs) else 1.0
        if not step > 0:
            raise ValueError(f"a time step must be positive, got {step!r}")
        origin = float(ts.min()) if start is None else float(start)
        pos = np.rint((ts - origin) / step).astype(np.int64)
        if pos.min() < 0:
            raise ValueError(f"timestamps start before the grid's start {origin}")
        if np.array_equal(pos, np.arange(len(ts))):
            return cls(origin, float(step), len(ts))
        rows = np.full(int(pos.max()) + 1, -1, dtype=np.int64)
        rows[pos] = np.arange(len(ts))
        return cls(origin, float(step), len(rows), rows)

    def rows_at(self, positions: np.ndarray) -> np.ndarray:
        """Data row at each grid position (``-1`` where there is none)."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.rows is None:
            return positions.copy()
        return self.rows[positions]

    def position_of(self, t: float) -> int:
        """Nearest grid position of time ``t`` (s), clipped to the grid."""
        return int(np.clip(np.rint((t - self.start) / self.step), 0, self.n - 1))

    def time_of(self, position: int) -> float:
        """Time of grid position ``position`` (s)."""
        return self.start + position * self.step

    @property
    def stop(self) -> float:
        """Time of the last grid position (s)."""
        return self.time_of(self.n - 1)


# Largest block of frames computed or read by one index (napari's 3-D view asks for every
# frame at once; a 10-minute recording would be hundreds of GB).
MAX_BYTES = 2**30


def _time_positions(key: Any, n: int) -> tuple[np.ndarray, bool]:
    """Grid positions a time index selects, and whether it dropped the time axis."""
    if isinstance(key, bool | np.bool_):
        raise IndexError("boolean scalars are not valid frame indices")
    if isinstance(key, int | np.integer):
        return np.array([range(n)[int(key)]], dtype=np.int64), True
    if isinstance(key, slice):
        return np.arange(n, dtype=np.int64)[key], False
    idx = np.asarray(key)
    if idx.dtype == bool:
        return np.flatnonzero(idx), False
    return np.arange(n, dtype=np.int64)[idx.astype(np.int64)], False


def _split_key(key: Any, ndim: int = 3) -> tuple[Any, tuple]:
    """(time index, spatial indices) of a key, with ``...`` expanded to full slices."""
    if not isinstance(key, tuple):
        key = (key,)
    where = [i for i, k in enumerate(key) if k is Ellipsis]
    if where:
        i = where[0]
        fill = ndim - (len(key) - 1)
        key = key[:i] + (slice(None),) * fill + key[i + 1 :]
    if not key:
        return slice(None), ()
    return key[0], tuple(key[1:])


class _LazyFrames:
    """Base of the array-likes: shape (n_positions, H, W), frames built by ``_frames``."""

    def __init__(self, timeline: Timeline, frame_shape: tuple[int, int], dtype: Any):
        self.timeline = timeline
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.dtype = np.dtype(dtype)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.timeline.n, *self.frame_shape)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.timeline.n

    def _frames(self, rows: np.ndarray) -> np.ndarray:
        """Frames (len(rows), H, W) of data rows ``rows`` (all >= 0, sorted)."""
        raise NotImplementedError

    def __getitem__(self, key: Any) -> np.ndarray:
        tkey, rest = _split_key(key)
        positions, drop = _time_positions(tkey, self.timeline.n)
        nbytes = len(positions) * int(np.prod(self.frame_shape)) * self.dtype.itemsize
        if nbytes > MAX_BYTES:
            raise MemoryError(
                f"{len(positions)} frames of {self.frame_shape} ({nbytes / 2**30:.1f} GiB) are "
                "computed frame by frame and are too many at once; view them in 2-D"
            )
        rows = self.timeline.rows_at(positions)
        out = np.zeros((len(positions), *self.frame_shape), dtype=self.dtype)
        valid = np.flatnonzero(rows >= 0)
        if len(valid):
            wanted = rows[valid]
            unique, inverse = np.unique(wanted, return_inverse=True)
            out[valid] = self._frames(unique)[inverse]
        if drop:
            out = out[0]
            return out[rest] if rest else out
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)


class MaskedFrames(_LazyFrames):
    """Frames that paint one value per ROI into its mask: ``frame = sum_i value_i * mask_i``.

    Parameters
    ----------
    masks : scipy.sparse matrix, shape (R, H * W)
        Mask weights of the R ROIs painted, row-major pixels.
    values : callable
        ``values(rows)`` gives the (len(rows), R) values at data rows ``rows`` (sorted, >= 0).
    timeline : Timeline
        Time grid of the frames and the data row of each.
    frame_shape : (int, int)
        ``(H, W)``.
    """

    def __init__(
        self,
        masks: sparse.spmatrix,
        values: Callable[[np.ndarray], np.ndarray],
        timeline: Timeline,
        frame_shape: tuple[int, int],
    ):
        super().__init__(timeline, frame_shape, np.float32)
        self._paint = sparse.csr_matrix(masks, dtype=np.float32).T.tocsr()  # (H*W, R)
        self._values = values

    def _frames(self, rows: np.ndarray) -> np.ndarray:
        vals = np.asarray(self._values(rows), dtype=np.float32)  # (n, R)
        pixels = self._paint @ vals.T  # (H*W, n)
        return np.ascontiguousarray(pixels.T, dtype=np.float32).reshape(-1, *self.frame_shape)


class DatasetFrames(_LazyFrames):
    """The frames of an (T, H, W) HDF5 or Zarr dataset, read when shown.

    Parameters
    ----------
    dataset : h5py.Dataset or zarr.Array
        The imaging series' data, kept open by the caller.
    timeline : Timeline
        Time of every frame.
    """

    def __init__(self, dataset: Any, timeline: Timeline):
        super().__init__(timeline, tuple(dataset.shape[1:3]), dataset.dtype)
        self._dataset = dataset

    def _frames(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 1:
            return np.asarray(self._dataset[int(rows[0])])[None]
        if np.array_equal(rows, np.arange(rows[0], rows[-1] + 1)):
            return np.asarray(self._dataset[int(rows[0]) : int(rows[-1]) + 1])
        return np.stack([np.asarray(self._dataset[int(r)]) for r in rows])
