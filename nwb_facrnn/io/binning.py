"""Vectorized binning of spike trains and sampled series onto a grid of time windows.

Everything here is pure numpy.  A :class:`BinGrid` is a set of sequences (trials, aligned
windows, or one continuous stretch), each a run of equal bins.  Bin ``k`` of sequence ``s``
covers ``[edge(s, k), edge(s, k + 1))`` with ``edge(s, k) = starts[s] + k * bin_size``; this
one formula defines membership everywhere, so counts are exact and reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import OptionError


@dataclass(frozen=True)
class BinGrid:
    """Sequences of equal time bins.

    Attributes
    ----------
    starts : numpy.ndarray, float64, shape (n_seq,)
        Start time of each sequence (s).
    n_valid : numpy.ndarray, int64, shape (n_seq,)
        Bins of each sequence inside its window; bins ``>= n_valid`` are padding.
    bin_size : float
        Bin width (s).
    """

    starts: np.ndarray
    n_valid: np.ndarray
    bin_size: float

    @property
    def n_seq(self) -> int:
        return len(self.starts)

    @property
    def n_bins(self) -> int:
        """Bins per sequence ``T``: the longest sequence."""
        return int(self.n_valid.max()) if len(self.n_valid) else 0

    def edges(self, k: np.ndarray | int, seq: np.ndarray | slice = slice(None)) -> np.ndarray:
        """``starts[seq] + k * bin_size`` (the single definition of a bin edge)."""
        return self.starts[seq] + np.asarray(k) * self.bin_size

    def timestamps(self) -> np.ndarray:
        """Bin start times, shape (n_seq, T)."""
        return self.starts[:, None] + np.arange(self.n_bins) * self.bin_size

    def valid(self) -> np.ndarray:
        """Which bins lie inside their window, bool (n_seq, T)."""
        return np.arange(self.n_bins)[None, :] < self.n_valid[:, None]

    def ends(self) -> np.ndarray:
        """End of each sequence's last valid bin, shape (n_seq,)."""
        return self.edges(self.n_valid)


def n_whole_bins(duration: np.ndarray | float, bin_size: float) -> np.ndarray:
    """Whole bins that fit in ``duration`` (tolerant to float round-off), int64."""
    return np.floor(np.asarray(duration) / bin_size + 1e-9).astype(np.int64)


def ragged_segments(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(begin, end) offsets of each row of a ragged NWB column from its ``*_index`` data."""
    ends = np.asarray(index, dtype=np.int64)
    begins = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return begins, ends


def bin_spike_times(
    times: np.ndarray, begins: np.ndarray, ends: np.ndarray, grid: BinGrid
) -> np.ndarray:
    """Spike counts of several units in every bin of ``grid``.

    Parameters
    ----------
    times : numpy.ndarray, float64, shape (S,)
        The flat ``spike_times`` data of the Units table (all units, concatenated).
    begins, ends : numpy.ndarray, int64, shape (N,)
        Offsets of each selected unit's spikes in ``times``.
    grid : BinGrid

    Returns
    -------
    numpy.ndarray, float32, shape (n_seq, T, N)
        Counts; padding bins are 0.

    Notes
    -----
    One ``searchsorted`` per unit finds the spikes inside each window, and one ``bincount``
    over all of them fills the counts; no Python loop over spikes or bins.  Unsorted spike
    trains are sorted first (the NWB schema does not require order).
    """
    n_units, n_seq, n_bins = len(begins), grid.n_seq, grid.n_bins
    w_start, w_end = grid.starts, grid.ends()
    lo = np.empty((n_units, n_seq), dtype=np.int64)
    hi = np.empty((n_units, n_seq), dtype=np.int64)
    times = np.asarray(times, dtype=np.float64)
    copied = False
    for u in range(n_units):
        seg = times[begins[u] : ends[u]]
        if seg.size > 1 and np.any(seg[1:] < seg[:-1]):
            if not copied:  # never sort the caller's array in place
                times, copied = times.copy(), True
            seg = times[begins[u] : ends[u]]
            seg.sort()
        lo[u] = begins[u] + np.searchsorted(seg, w_start, side="left")
        hi[u] = begins[u] + np.searchsorted(seg, w_end, side="left")
    n = (hi - lo).ravel()  # spikes per (unit, window)
    total = int(n.sum())
    if total == 0:
        return np.zeros((n_seq, n_bins, n_units), dtype=np.float32)
    pair = np.repeat(np.arange(n.size), n)  # (unit, window) of every selected spike
    offset = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    t = times[np.repeat(lo.ravel(), n) + offset]
    seq = pair % n_seq
    s0 = w_start[seq]
    k = np.floor((t - s0) / grid.bin_size).astype(np.int64)
    # exact membership under the edge formula, whatever the division rounded to
    k -= t < s0 + k * grid.bin_size
    k += t >= s0 + (k + 1) * grid.bin_size
    np.clip(k, 0, grid.n_valid[seq] - 1, out=k)
    key = seq * n_bins + k
    # spikes are grouped by unit: count each unit's spikes into one cache-friendly row
    per_unit = n.reshape(n_units, n_seq).sum(axis=1)
    bounds = np.concatenate([[0], np.cumsum(per_unit)])
    rows = np.empty((n_units, n_seq * n_bins), dtype=np.float32)
    for u in range(n_units):
        rows[u] = np.bincount(key[bounds[u] : bounds[u + 1]], minlength=n_seq * n_bins)
    return np.ascontiguousarray(rows.T).reshape(n_seq, n_bins, n_units)


def observed_bins(intervals: list[np.ndarray | None], grid: BinGrid) -> np.ndarray:
    """Which bins each unit was observed in, from its ``obs_intervals``.

    A bin counts as observed only when it lies entirely inside the union of the unit's
    intervals (a partly observed bin would under-count spikes).  Overlapping or touching
    intervals are merged first; comparisons allow a round-off of ``1e-9 * bin_size``.

    Parameters
    ----------
    intervals : list of (n_i, 2) arrays or None, length N
        Observation intervals of each unit in seconds.  None means observed throughout;
        an empty array means never observed.
    grid : BinGrid

    Returns
    -------
    numpy.ndarray, bool, shape (n_seq, T, N)
        Padding bins are False.
    """
    k = np.arange(grid.n_bins)
    b0 = grid.starts[:, None] + k[None, :] * grid.bin_size
    b1 = grid.starts[:, None] + (k[None, :] + 1) * grid.bin_size
    tol = 1e-9 * grid.bin_size
    valid = grid.valid()
    lo, hi = float(b0[:, 0].min()), float(grid.ends().max())  # span of the valid bins
    rows = np.empty((len(intervals), grid.n_seq, grid.n_bins), dtype=bool)  # unit-major
    for u, iv in enumerate(intervals):
        if iv is None:
            rows[u] = valid
            continue
        merged = merge_intervals(np.asarray(iv, dtype=np.float64).reshape(-1, 2), tol)
        if len(merged) == 0:
            rows[u] = False
            continue
        if len(merged) == 1 and merged[0, 0] <= lo + tol and hi - tol <= merged[0, 1]:
            rows[u] = valid  # one interval covering every bin
            continue
        j = np.searchsorted(merged[:, 0], b0 + tol, side="right") - 1
        inside = (j >= 0) & (b1 - tol <= merged[np.maximum(j, 0), 1])
        rows[u] = inside & valid
    return np.ascontiguousarray(rows.transpose(1, 2, 0))


def merge_intervals(iv: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Union of intervals (n, 2) as sorted, disjoint intervals; gaps up to ``tol`` are closed."""
    if len(iv) == 0:
        return iv.reshape(0, 2)
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    reach = np.maximum.accumulate(iv[:, 1])
    new = np.concatenate([[True], iv[1:, 0] > reach[:-1] + tol])  # starts a new run
    starts = iv[new, 0]
    ends = reach[np.concatenate([np.flatnonzero(new)[1:] - 1, [len(iv) - 1]])]
    return np.stack([starts, ends], axis=1)


def check_increasing(t: np.ndarray) -> int | None:
    """Index of the first sample whose time does not increase, or None when all do."""
    bad = np.flatnonzero(~(np.diff(t) > 0))
    return int(bad[0]) + 1 if bad.size else None


def bin_series(
    timestamps: np.ndarray,
    read_rows: Callable[[int, int], np.ndarray],
    grid: BinGrid,
    *,
    interpolate: bool = True,
    max_rows: int = 16384,
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Average a sampled series (imaging traces, behaviour) over the bins of ``grid``.

    Each bin takes the mean of the samples whose time falls inside it.  A bin without a
    sample (bins shorter than the sampling interval) takes the linear interpolation between
    its neighbours at the bin centre, if ``interpolate`` and the neighbours are no further
    apart than 1.5 sampling intervals; otherwise it is unobserved.  NaN samples are ignored.

    Parameters
    ----------
    timestamps : numpy.ndarray, float64, shape (S,)
        Strictly increasing sample times (s).
    read_rows : callable
        ``read_rows(i0, i1)`` returns samples ``i0:i1`` as an array (i1 - i0, D); only the
        rows that some bin needs are read, in slabs of at most ``max_rows`` rows, so memory
        stays bounded by the output plus one slab.
    grid : BinGrid
    dtype : numpy dtype
        Of ``values`` (float32 for activity: the output is the only full-size array made).

    Returns
    -------
    values : numpy.ndarray, ``dtype``, shape (n_seq, T, D)
        Bin means (0 where unobserved).
    observed : numpy.ndarray, bool, shape (n_seq, T, D)
    """
    if len(timestamps) == 0:
        raise OptionError("bin_series needs at least one sample")
    n_seq, n_bins = grid.n_seq, grid.n_bins
    valid = grid.valid().ravel()
    b0 = grid.timestamps().ravel()
    tol = 1e-6 * grid.bin_size
    lo = np.searchsorted(timestamps, b0 - tol, side="left")
    hi = np.searchsorted(timestamps, b0 + grid.bin_size - tol, side="left")
    hi = np.where(valid, hi, lo)
    order = np.argsort(lo, kind="stable")
    probe = read_rows(0, min(1, len(timestamps)))
    n_cols = probe.shape[1] if probe.ndim == 2 else 1
    # a slab's float64 temporaries (sums, counts, cumulative sums) stay near 8 MB each
    max_rows = min(max_rows, max(256, (1 << 20) // max(n_cols, 1)))
    values = np.zeros((n_seq * n_bins, n_cols), dtype=dtype)
    observed = np.zeros((n_seq * n_bins, n_cols), dtype=bool)
    i = 0
    his_sorted = np.maximum.accumulate(hi[order]) if len(order) else hi
    while i < len(order):
        first = lo[order[i]]
        # the bins whose samples all lie within one slab starting at `first`
        j = int(np.searchsorted(his_sorted, first + max_rows, side="right"))
        j = max(j, i + 1)
        sel = order[i:j]
        last = int(his_sorted[j - 1])
        if last > first:
            slab = np.asarray(read_rows(int(first), last), dtype=np.float64)
            slab = slab.reshape(last - first, n_cols)
            finite = np.isfinite(slab)
            cs = np.zeros((slab.shape[0] + 1, n_cols))
            np.cumsum(np.where(finite, slab, 0.0), axis=0, out=cs[1:])
            cn = np.zeros((slab.shape[0] + 1, n_cols), dtype=np.int64)
            np.cumsum(finite, axis=0, out=cn[1:])
            a, b = lo[sel] - first, hi[sel] - first
            sums, counts = cs[b] - cs[a], cn[b] - cn[a]
            seen = counts > 0
            values[sel] = np.divide(sums, counts, out=np.zeros_like(sums), where=seen)
            observed[sel] = seen
        i = j
    if interpolate and len(timestamps) > 1:
        _interpolate_empty(timestamps, read_rows, b0 + grid.bin_size / 2, valid, values, observed)
    return values.reshape(n_seq, n_bins, n_cols), observed.reshape(n_seq, n_bins, n_cols)


def _interpolate_empty(
    timestamps: np.ndarray,
    read_rows: Callable[[int, int], np.ndarray],
    centres: np.ndarray,
    valid: np.ndarray,
    values: np.ndarray,
    observed: np.ndarray,
) -> None:
    """Fill valid bins with no sample by linear interpolation between close neighbours."""
    empty = valid & ~observed.any(axis=1)
    if not empty.any():
        return
    step = float(np.median(np.diff(timestamps)))
    right = np.searchsorted(timestamps, centres[empty], side="right")
    ok = (right > 0) & (right < len(timestamps))
    left_t = timestamps[np.clip(right - 1, 0, None)]
    right_t = timestamps[np.clip(right, None, len(timestamps) - 1)]
    ok &= (right_t - left_t) <= 1.5 * step
    rows = np.flatnonzero(empty)[ok]
    if rows.size == 0:
        return
    r = right[ok]
    need = np.unique(np.concatenate([r - 1, r]))
    # read the neighbouring samples (contiguous runs keep the reads few)
    breaks = np.flatnonzero(np.diff(need) > 1) + 1
    samples = {}
    for run in np.split(need, breaks):
        block = np.asarray(read_rows(int(run[0]), int(run[-1]) + 1), dtype=np.float64)
        block = block.reshape(len(run), -1)
        for idx, row in zip(run, block, strict=True):
            samples[int(idx)] = row
    y0 = np.stack([samples[int(x)] for x in r - 1])
    y1 = np.stack([samples[int(x)] for x in r])
    t0, t1 = timestamps[r - 1], timestamps[r]
    w = ((centres[rows] - t0) / (t1 - t0))[:, None]
    interp = (1 - w) * y0 + w * y1
    good = np.isfinite(interp)
    values[rows] = np.where(good, interp, 0.0)
    observed[rows] = good
