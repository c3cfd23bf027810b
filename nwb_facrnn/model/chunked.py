"""Fitting activity that is read from disk chunk by chunk instead of held in memory.

A recording larger than the memory the process may use is given to
:meth:`~nwb_facrnn.model.FacRNN.fit` as a :class:`ChunkedActivity`: a (T, N) array-like
(an h5py or Zarr dataset, a ``numpy.memmap``) that is only ever read in stretches of rows.
Training draws its minibatches window by window (:class:`ChunkedTransitions`): a window is
a few chunks from random places of the recording, loaded together, shuffled and cut into
minibatches; every pass over the data visits every chunk once, in a new random order.  The
passes that need every sample (statistics, the linear start, the final objective, latents,
scores) read the chunks in order, one block at a time.

Nothing here imports NWB: any object with ``shape`` (T, N), ``dtype`` and row slicing works.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..errors import OptionError
from .data import Transitions, block_rows

#: Rows per chunk (at least; rounded up to the source's own chunking along time).
CHUNK_ROWS = 8192
#: Chunks per training window (at most): minibatches mix this many stretches of the recording.
WINDOW_CHUNKS = 8
#: ... and at most this many bytes of float32 per window array (of the previous and of the
#: current activity), so that a window's memory does not grow with the number of units.
WINDOW_BYTES = 1 << 26


def chunked_activity(
    X: Any, inputs: Any, mask: Any, n_features: int | None, poisson: bool
) -> ChunkedSequences:
    """Validate an estimator call on chunked activity ``X`` (see
    :func:`~.data.validate_activity`); the sequences to read."""
    act = X if isinstance(X, ChunkedActivity) else ChunkedActivity(X)
    if inputs is not None:
        raise OptionError(f"{act.name}: a chunked fit takes no external inputs")
    if mask is not None and not _all_true(mask):
        raise OptionError(
            f"{act.name}: a chunked fit needs every value observed (its mask is not all True)"
        )
    if n_features is not None and act.shape[1] != n_features:
        raise OptionError(
            f"{act.name} has N = {act.shape[1]} units but the model was fit on N = {n_features}"
        )
    seqs = act.sequences()
    if poisson:
        from .data import row_blocks

        if any((x < 0).any() for x, _ in row_blocks(seqs)):
            raise OptionError("observation='poisson' needs non-negative counts in X")
    return seqs


def _all_true(mask: Any) -> bool:
    m = np.asarray(mask)
    if m.dtype != bool:
        return False
    if m.size and all(s == 0 for s in m.strides):  # a broadcast scalar, e.g. "all observed"
        return bool(m.flat[0])
    flat = m.reshape(-1, m.shape[-1]) if m.ndim else m.reshape(1, 1)
    step = block_rows(flat.shape[1])
    return all(flat[i : i + step].all() for i in range(0, len(flat), step))


def is_array_like(x: Any) -> bool:
    """An on-disk (T, N) array-like to read by chunks: not in memory (numpy, torch), but
    with ``shape``, ``dtype`` and slicing (h5py.Dataset, zarr.Array, ...)."""
    if isinstance(x, np.ndarray | torch.Tensor | ChunkedActivity):
        return isinstance(x, ChunkedActivity)
    return all(hasattr(x, attr) for attr in ("shape", "dtype", "__getitem__")) and (
        len(getattr(x, "shape", ())) == 2
    )


class ChunkedActivity:
    """(T, N) activity read from an array-like by stretches of rows, as float32.

    Parameters
    ----------
    source : array-like, shape (T, N_source)
        h5py.Dataset, zarr.Array, numpy.memmap, or anything sliced as ``source[i0:i1]``.
    columns : array of int, optional
        The columns (units, ROIs) to keep, in this order; default all.
    name : str
        How errors name the data, e.g. ``"session.nwb: /processing/ophys/DfOverF/dff"``.
    chunk_rows : int, optional
        Rows per chunk; default :data:`CHUNK_ROWS`, rounded up to a multiple of the
        source's own chunk length along time (HDF5 / Zarr chunking), so a chunk is read whole.

    Attributes
    ----------
    shape : (int, int)
        ``(T, N)``, N the number of kept columns.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(
        self,
        source: Any,
        columns: np.ndarray | None = None,
        name: str = "X",
        chunk_rows: int | None = None,
    ):
        shape = tuple(int(s) for s in getattr(source, "shape", ()))
        if len(shape) != 2:
            raise OptionError(f"{name}: chunked activity must be 2-D (T, N), got shape {shape}")
        if not np.issubdtype(np.dtype(source.dtype), np.number):
            raise OptionError(f"{name}: chunked activity must be numeric, got {source.dtype}")
        self.source, self.name = source, name
        self.columns = None if columns is None else np.asarray(columns, dtype=np.int64)
        n = shape[1] if self.columns is None else len(self.columns)
        if n < 1 or shape[0] < 2:
            raise OptionError(f"{name}: needs at least 2 rows and 1 column, got {(shape[0], n)}")
        self.shape = (shape[0], n)
        own = getattr(source, "chunks", None)
        own = int(own[0]) if own else 1
        rows = chunk_rows or CHUNK_ROWS
        self.chunk_rows = max(1, math.ceil(rows / own)) * own

    def __repr__(self) -> str:
        return f"ChunkedActivity({self.name!r}, shape={self.shape})"

    @property
    def nbytes(self) -> int:
        """Bytes of the whole activity as float32 (never allocated at once)."""
        return 4 * self.shape[0] * self.shape[1]

    def read_rows(self, i0: int, i1: int) -> np.ndarray:
        """Rows ``i0 .. i1 - 1`` (kept columns), float32, shape (i1 - i0, N).

        Raises
        ------
        OptionError
            NaN or inf in the rows (naming the row and column).
        """
        block = np.asarray(self.source[i0:i1])
        if self.columns is not None:
            block = block[:, self.columns]
        block = block.astype(np.float32, copy=False)
        bad = ~np.isfinite(block)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise OptionError(
                f"{self.name}: NaN or inf at row {i0 + int(row)}, column {int(col)}; a chunked "
                "fit needs finite values everywhere (read it into memory to mask them)"
            )
        return block

    def sequences(self) -> ChunkedSequences:
        """This activity as one sequence, shape (1, T, N) (what the estimator works on)."""
        return ChunkedSequences(self)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole activity in memory (what a chunked fit avoids; for small data)."""
        out = np.concatenate(
            [self.read_rows(i, min(i + self.chunk_rows, self.shape[0]))
             for i in range(0, self.shape[0], self.chunk_rows)]
        )  # fmt: skip
        return out if dtype is None else out.astype(dtype, copy=False)


class ChunkedSequences:
    """A :class:`ChunkedActivity` seen as sequences (1, T, N): what the statistics and block
    passes of :mod:`.data` read through ``read_rows``.

    ``moments`` keeps the per-unit count, sum and sum of squares once a statistic has read
    them, so the mean, the standardization test and the standardization of one fit read
    the file once between them.
    """

    def __init__(self, activity: ChunkedActivity):
        self.activity = activity
        self.shape = (1, *activity.shape)
        self.read_rows = activity.read_rows
        self.moments: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def chunk_rows(self) -> int:
        return self.activity.chunk_rows


class ChunkedTransitions:
    """The training samples ``(x_{t-1} -> x_t)`` of a :class:`ChunkedSequences`, loaded a
    window at a time; the interface :func:`~.training.train` uses of
    :class:`~.data.Transitions`."""

    inputs = None
    weight = None

    def __init__(self, seqs: ChunkedSequences, device: torch.device, window_chunks: int = 0):
        self.seqs, self._device = seqs, device
        n = seqs.shape[1] - 1  # samples: targets 1 .. T-1
        step = seqs.chunk_rows
        self.chunks = [(i, min(i + step, n)) for i in range(0, n, step)]
        fit = WINDOW_BYTES // (4 * seqs.shape[2] * step)
        self.window_chunks = window_chunks or max(1, min(WINDOW_CHUNKS, fit))

    def __len__(self) -> int:
        return self.seqs.shape[1] - 1

    @property
    def device(self) -> torch.device:
        return self._device

    def _load(self, spans: list[tuple[int, int]]) -> Transitions:
        """The samples of ``spans`` (sample ranges) in memory: sample ``i`` reads rows
        ``i`` (previous) and ``i + 1`` (current)."""
        n_units = self.seqs.shape[2]
        total = sum(i1 - i0 for i0, i1 in spans)
        prev = np.empty((total, n_units), np.float32)
        curr = np.empty((total, n_units), np.float32)
        at = 0
        for i0, i1 in spans:  # one chunk in flight at a time, copied into place
            rows = self.seqs.read_rows(i0, i1 + 1)
            prev[at : at + i1 - i0], curr[at : at + i1 - i0] = rows[:-1], rows[1:]
            at += i1 - i0
        return Transitions(
            torch.as_tensor(prev, device=self._device), torch.as_tensor(curr, device=self._device)
        )

    def windows(self, gen: torch.Generator) -> Iterator[Transitions]:
        """Every chunk once, in a random order (from ``gen``), :attr:`window_chunks` at a
        time."""
        order = torch.randperm(len(self.chunks), generator=gen).tolist()
        for w in range(0, len(order), self.window_chunks):
            picked = sorted(order[w : w + self.window_chunks])
            yield self._load([self.chunks[i] for i in picked])

    def batches_per_epoch(self, batch_size: int) -> int:
        """Minibatches in one pass (windows taken in chunk order: which window gets the
        shorter last chunk changes the count by at most one)."""
        sizes = [i1 - i0 for i0, i1 in self.chunks]
        wc = self.window_chunks
        per_window = [sum(sizes[w : w + wc]) for w in range(0, len(sizes), wc)]
        return sum(max(1, math.ceil(n / batch_size)) for n in per_window)

    def blocks(self, rows: int | None = None) -> Iterator[Transitions]:
        """All samples in order, one block (of about ``rows``) at a time."""
        step = rows or block_rows(self.seqs.shape[2])
        n = len(self)
        for i in range(0, n, step):
            yield self._load([(i, min(i + step, n))])

    def sample(self, n: int, seed: int) -> Transitions:
        """At most ``n`` samples drawn at random from :attr:`window_chunks` random chunks
        (one window's worth, in memory)."""
        gen = torch.Generator().manual_seed(seed)
        picked = torch.randperm(len(self.chunks), generator=gen)[: self.window_chunks]
        data = self._load([self.chunks[i] for i in sorted(picked.tolist())])
        if len(data) <= n:
            return data
        keep = torch.randperm(len(data), generator=gen)[:n].sort().values
        return data.subset(keep.to(self._device))

    def split(self, fraction: float, seed: int) -> tuple[Transitions, Transitions]:
        raise OptionError(
            "early_stopping holds out samples in memory; a chunked fit has no validation split"
        )


__all__ = [
    "ChunkedActivity",
    "ChunkedSequences",
    "ChunkedTransitions",
    "chunked_activity",
    "is_array_like",
]
