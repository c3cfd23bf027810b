"""Binning primitives and row selection, checked against direct per-bin references."""

from __future__ import annotations

import numpy as np
import pytest

from nwb_facrnn.io.binning import (
    BinGrid,
    bin_series,
    bin_spike_times,
    check_increasing,
    merge_intervals,
    observed_bins,
    ragged_segments,
)
from nwb_facrnn.io.errors import NWBReadError
from nwb_facrnn.io.selection import parse_selection, select_rows


def _reference_counts(trains, grid):
    out = np.zeros((grid.n_seq, grid.n_bins, len(trains)))
    for s in range(grid.n_seq):
        for k in range(grid.n_valid[s]):
            lo, hi = grid.starts[s] + k * grid.bin_size, grid.starts[s] + (k + 1) * grid.bin_size
            for u, tr in enumerate(trains):
                out[s, k, u] = np.sum((tr >= lo) & (tr < hi))
    return out


def test_spike_counts_match_a_per_bin_reference():
    rng = np.random.default_rng(0)
    trains = [np.sort(rng.uniform(0, 10, n)) for n in (0, 5, 300, 1000)]
    # spikes exactly on bin edges belong to the bin that starts there
    trains[1] = np.array([1.0, 1.02, 1.04, 2.5, 9.98])
    times = np.concatenate(trains)
    begins, ends = ragged_segments(np.cumsum([len(t) for t in trains]))
    # overlapping windows of unequal length, one beyond the last spike
    grid = BinGrid(np.array([1.0, 1.01, 5.0, 9.9]), np.array([50, 10, 100, 20]), 0.02)
    counts = bin_spike_times(times, begins, ends, grid)
    assert counts.dtype == np.float32 and counts.shape == (4, 100, 4)
    np.testing.assert_array_equal(counts, _reference_counts(trains, grid))
    assert counts[0, :3, 1].tolist() == [1, 1, 1]
    assert counts[1, 10:].sum() == 0 and counts[3, 20:].sum() == 0  # padding stays empty


def test_unsorted_spike_trains_are_sorted_without_touching_the_input():
    trains = [np.array([0.5, 0.1, 0.3]), np.array([0.05, 0.95])]
    times = np.concatenate(trains)
    before = times.copy()
    begins, ends = ragged_segments([3, 5])
    grid = BinGrid(np.array([0.0]), np.array([10]), 0.1)
    counts = bin_spike_times(times, begins, ends, grid)
    np.testing.assert_array_equal(times, before)
    np.testing.assert_array_equal(
        counts[0], _reference_counts([np.sort(t) for t in trains], grid)[0]
    )


def test_observed_bins_need_the_whole_bin_inside_an_interval():
    grid = BinGrid(np.array([0.0, 2.0]), np.array([10, 5]), 0.1)
    intervals = [None, np.array([[0.0, 0.5], [0.75, 3.0]]), np.array([[0.25, 0.55]])]
    obs = observed_bins(intervals, grid)
    assert obs[0, :, 0].all() and not obs[1, 5:, 0].any()  # padding is unobserved
    # unit 1: bins [0.0, 0.5) observed, [0.5, 0.8) not (gap 0.5..0.75), [0.8, 1.0) observed
    assert obs[0, :, 1].tolist() == [True] * 5 + [False] * 3 + [True] * 2
    # unit 2: only bins fully inside 0.25..0.55 -> [0.3, 0.4), [0.4, 0.5)
    assert np.flatnonzero(obs[0, :, 2]).tolist() == [3, 4]
    assert not obs[1, :, 2].any()


def test_bin_series_means_nans_and_slabs():
    t = np.arange(1000) / 100.0  # 100 Hz
    y = np.stack([np.arange(1000.0), np.sin(t)], axis=1)
    y[500:520, 1] = np.nan
    grid = BinGrid(np.array([0.0, 4.955, 5.0]), np.array([100, 20, 10]), 0.05)
    for max_rows in (7, 16384):  # many slabs or one: same answer
        v, o = bin_series(t, lambda a, b: y[a:b], grid, max_rows=max_rows)
        np.testing.assert_allclose(v[0, :, 0], np.arange(100) * 5 + 2)  # 5 samples per bin
        assert o[0].all()
        # bins over the NaN stretch (5.00-5.20 s) are unobserved for column 1 only
        assert not o[2, :4, 1].any() and o[2, 4:10, 1].all() and o[2, :10, 0].all()
        assert not o[1, 20:].any() and not o[2, 10:].any()


def test_bin_series_interpolates_bins_shorter_than_the_sampling_interval():
    t = np.arange(0, 10, 0.1)
    y = (2.0 * t)[:, None]
    grid = BinGrid(np.array([1.0]), np.array([100]), 0.01)  # 10 bins per sample
    v, o = bin_series(t, lambda a, b: y[a:b], grid)
    assert o.all()
    centres = 1.0 + np.arange(100) * 0.01 + 0.005
    np.testing.assert_allclose(v[0, :, 0], 2 * centres, atol=0.011)
    # a gap of several samples is not bridged
    t_gap = np.concatenate([t[:20], t[40:]])
    v, o = bin_series(t_gap, lambda a, b: y[np.r_[0:20, 40:100]][a:b], grid)
    gap = centres > 1.91  # after the bin holding the 1.9 s sample, before 4.0 s
    assert gap.sum() == 9
    assert not o[0, gap, 0].any() and o[0, ~gap, 0].all()


def test_check_increasing():
    assert check_increasing(np.array([0.0, 1.0, 2.0])) is None
    assert check_increasing(np.array([0.0, 1.0, 1.0, 3.0])) == 2


def test_selection_parsing_and_rows():
    cols = {
        "heldout": np.array([False, True, False, False]),
        "quality": np.array(["good", "good", "mua", "noise"]),
        "depth": np.array([10, 20, 30, 40]),
    }
    assert parse_selection("heldout == False, quality == 'good'") == {
        "heldout": False,
        "quality": "good",
    }
    keep = select_rows(cols, "heldout == False and quality != noise", 4, "f.nwb", "/units")
    assert keep.tolist() == [True, False, True, False]
    keep = select_rows(cols, {"quality": ["good", "mua"], "depth": lambda d: d > 15}, 4, "f", "/u")
    assert keep.tolist() == [False, True, True, False]
    with pytest.raises(NWBReadError, match=r"f.nwb: /units/snr: no column 'snr'.*depth, heldout"):
        select_rows(cols, {"snr": 3}, 4, "f.nwb", "/units")
    with pytest.raises(NWBReadError, match="keeps none of 4 rows"):
        select_rows(cols, {"depth": 99}, 4, "f.nwb", "/units")
    with pytest.raises(ValueError, match="cannot parse selection"):
        parse_selection("depth > 3")


def test_observed_bins_merge_overlaps_tolerate_round_off_and_empty_lists():
    grid = BinGrid(np.array([0.0]), np.array([73]), 0.1)
    obs = observed_bins(
        [
            np.array([[0.0, 7.3]]),  # 0.1 * 73 is 7.300000000000001: still observed
            np.array([[4.0, 7.3], [0.0, 2.9]]),  # unsorted, with a gap
            np.array([[0.0, 5.0], [1.0, 2.0], [5.0, 7.3]]),  # nested and touching
            np.zeros((0, 2)),  # never observed
        ],
        grid,
    )
    assert obs[0].sum(axis=0).tolist() == [73, 62, 73, 0]
    assert merge_intervals(np.array([[5, 6], [0, 2], [1, 3], [3, 4], [7, 8.0]])).tolist() == [
        [0, 4],
        [5, 6],
        [7, 8],
    ]
