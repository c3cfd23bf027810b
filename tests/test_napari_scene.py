"""The napari plugin's data side, without a display: time grids, lazy frames, scenes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from napari_facrnn.frames import DatasetFrames, MaskedFrames, Timeline
from napari_facrnn.reader import NOTHING, get_reader, is_nwb
from napari_facrnn.scene import NoImagingError, open_scene
from scipy import sparse

from nwb_facrnn import NWBReadError, read_results


# --------------------------------------------------------------------------- time grids
def test_a_regular_timeline_maps_each_position_to_its_row():
    tl = Timeline.regular(1.5, 0.002, 1000)
    assert tl.rows is None and tl.n == 1000
    assert tl.time_of(10) == pytest.approx(1.52)
    assert tl.position_of(1.5209) == 10 and tl.position_of(-5) == 0 and tl.position_of(99) == 999
    np.testing.assert_array_equal(tl.rows_at([0, 7]), [0, 7])


def test_trials_with_gaps_leave_empty_positions():
    # two trials of 3 bins of 10 ms, the second starting 46 ms after the first
    ts = np.array([0.0, 0.01, 0.02, 0.046, 0.056, 0.066])
    tl = Timeline.from_timestamps(ts, step=0.01)
    assert tl.n == 8  # 0 .. 0.07 on the 10 ms grid; each bin at its nearest position
    assert list(tl.rows_at(np.arange(tl.n))) == [0, 1, 2, -1, -1, 3, 4, 5]
    # the grid step defaults to the median interval
    assert Timeline.from_timestamps(np.arange(5) * 0.25).step == pytest.approx(0.25)
    with pytest.raises(ValueError, match="positive"):
        Timeline.regular(0, 0, 3)


# --------------------------------------------------------------------------- lazy frames
def _masks(rng, n, shape):
    dense = (rng.random((n, *shape)) < 0.1).astype(np.float32) * rng.random((n, *shape))
    return dense, sparse.csr_matrix(dense.reshape(n, -1))


def test_masked_frames_paint_each_value_into_its_mask():
    rng = np.random.default_rng(0)
    dense, masks = _masks(rng, 5, (6, 7))
    values = rng.standard_normal((20, 5)).astype(np.float32)
    calls = []

    def lookup(rows):
        calls.append(rows.copy())
        return values[rows]

    frames = MaskedFrames(masks, lookup, Timeline.regular(0, 0.1, 20), (6, 7))
    assert frames.shape == (20, 6, 7) and frames.ndim == 3 and frames.dtype == np.float32
    expected = np.einsum("tr,rhw->thw", values, dense)
    np.testing.assert_allclose(frames[3], expected[3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frames[-1], expected[-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frames[2:9:3], expected[2:9:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frames[4, 1:3, 2], expected[4, 1:3, 2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frames[(5, Ellipsis)], expected[5], rtol=1e-5, atol=1e-6)
    # only the rows asked for are looked up: nothing is computed ahead
    assert [list(c) for c in calls] == [[3], [19], [2, 5, 8], [4], [5]]


def test_masked_frames_show_nothing_where_the_timeline_has_no_row():
    dense, masks = _masks(np.random.default_rng(1), 3, (4, 4))
    tl = Timeline.from_timestamps(np.array([0.0, 0.1, 0.4]), step=0.1)
    frames = MaskedFrames(masks, lambda rows: np.ones((len(rows), 3)), tl, (4, 4))
    assert frames.shape == (5, 4, 4)
    assert not frames[2].any() and not frames[3].any()
    np.testing.assert_allclose(frames[4], dense.sum(axis=0), rtol=1e-6)


def test_dataset_frames_read_only_the_frames_shown():
    reads = []

    class Recording:
        def __init__(self, array):
            self.array, self.shape, self.dtype = array, array.shape, array.dtype

        def __getitem__(self, key):
            reads.append(key)
            return self.array[key]

    array = np.arange(10 * 3 * 4, dtype=np.uint16).reshape(10, 3, 4)
    frames = DatasetFrames(Recording(array), Timeline.regular(0, 0.5, 10))
    np.testing.assert_array_equal(frames[7], array[7])
    np.testing.assert_array_equal(frames[2:5, 1], array[2:5, 1])
    assert reads == [7, slice(2, 5)]


# --------------------------------------------------------------------------- scenes
def test_a_results_file_opens_as_a_scene_of_its_fit(imaging_fit):
    truth, res = imaging_fit["truth"], read_results(imaging_fit["results"])
    scene = open_scene(imaging_fit["results"])
    fov = scene.fov
    assert fov.table == "/processing/ophys/ImageSegmentation/PlaneSegmentation"
    assert fov.frame_shape == (128, 128) and fov.pixel_size == (1.0, 1.0)
    assert fov.image_source == "/processing/ophys/summary_images/mean"
    np.testing.assert_array_equal(fov.roi_ids, truth.roi_ids)
    np.testing.assert_array_equal(
        fov.masks.toarray().reshape(truth.image_masks.shape), truth.image_masks
    )
    # the linked movie is reachable and on the frame grid of the session
    assert fov.movie.path == "/acquisition/OnePhotonSeries"
    movie = scene.movie_frames()
    assert movie.shape == (1000, 128, 128) and movie.timeline.step == pytest.approx(0.002)
    # each ROI's label sits on its centre; the label image is empty outside the masks
    labels = fov.label_image()
    for row, (cy, cx) in enumerate(truth.roi_centers):
        assert labels[round(cy), round(cx)] == row + 1
    assert (labels > 0).sum() == (truth.image_masks.sum(axis=0) > 0).sum()
    # the fit: its ROIs, groups and the time grid of its bins
    assert scene.results.name == res.name and scene.other_fits == []
    np.testing.assert_array_equal(fov.roi_ids[scene.fit_rows], res.unit_ids)
    groups = scene.roi_groups()
    np.testing.assert_array_equal(groups[scene.fit_rows], res.dominant_group)
    assert (groups[~truth.accepted] == -1).all()
    tl = scene.latent_timeline()
    assert tl.n == len(res.timestamps) and tl.rows is None
    assert tl.start == pytest.approx(res.timestamps[0])  # bin centres
    assert scene.movie_timeline().start == pytest.approx(0.001)  # frame centres
    scene.close()


def test_group_frames_are_each_groups_contribution_to_each_roi(imaging_fit):
    res = read_results(imaging_fit["results"])
    truth = imaging_fit["truth"]
    scene = open_scene(imaging_fit["results"])
    masks = truth.image_masks[np.searchsorted(truth.roi_ids, res.unit_ids)]
    for g in range(2):
        frames = scene.group_frames(g)
        assert frames.shape == (len(res.timestamps), 128, 128)
        for k in (0, 417, len(res.timestamps) - 1):
            s = res.group_slice(g)
            contribution = res.output_loadings[:, s] @ res.latents[k, s]  # (N,)
            expected = np.einsum("i,ihw->hw", contribution, masks)
            np.testing.assert_allclose(frames[k], expected, rtol=1e-4, atol=1e-6)
    # the display range follows the strongest ROI of each group
    assert scene.group_display_max(0) == pytest.approx(2 * res.group_strength[:, 0].max())
    scene.close()


def test_group_table_numbers(imaging_fit):
    res = read_results(imaging_fit["results"])
    scene = open_scene(imaging_fit["results"])
    rows = scene.group_summaries()
    assert [r.group for r in rows] == [0, 1] and all(r.rank == 3 for r in rows)
    assert [r.n_rois for r in rows] == list(np.bincount(res.dominant_group, minlength=2))
    a, z = res.output_loadings.astype(float), res.latents.astype(float)
    total = np.var(z @ a.T, axis=0).sum()
    for r in rows:
        s = res.group_slice(r.group)
        assert r.variance_explained == pytest.approx(
            np.var(z[:, s] @ a[:, s].T, axis=0).sum() / total
        )
    # the groups are near independent: their shares add up to about one
    assert sum(r.variance_explained for r in rows) == pytest.approx(1.0, abs=0.1)
    assert np.allclose(rows[0].color, [230 / 255, 159 / 255, 0, 1])
    scene.close()


def test_the_fitted_groups_are_the_true_groups(imaging_fit):
    """The picture is right: each ROI's colour (dominant group) is its ground-truth group."""
    from nwb_facrnn.metrics import group_latent_r2

    truth = imaging_fit["truth"]
    scene = open_scene(imaging_fit["results"])
    res = scene.results
    alignment = group_latent_r2(truth.z, res.latents, 2)
    true_of_fitted = np.empty(2, dtype=int)
    true_of_fitted[alignment.assignment] = np.arange(2)
    groups = scene.roi_groups()
    accepted = np.flatnonzero(truth.accepted)
    # FacRNN: 22 of 22; the low-rank RNN without the penalty: 20 of 22 (0.909) or fewer
    assert np.mean(true_of_fitted[groups[accepted]] == truth.roi_groups[accepted]) >= 0.95
    scene.close()


def test_zarr_results_open_the_same_way(imaging_fit_zarr):
    res = read_results(imaging_fit_zarr["results"])
    scene = open_scene(imaging_fit_zarr["results"])
    assert scene.results.name == res.name
    assert scene.movie_frames().shape == (1000, 128, 128)
    frame = scene.group_frames(1)[10]
    s = res.group_slice(1)
    masks = scene.fov.masks.toarray()[scene.fit_rows]
    expected = (res.output_loadings[:, s] @ res.latents[10, s]) @ masks
    np.testing.assert_allclose(frame.ravel(), expected, rtol=1e-4, atol=1e-6)
    assert is_nwb(imaging_fit_zarr["results"]) and get_reader(str(imaging_fit_zarr["results"]))
    scene.close()


def test_a_session_without_results_has_no_groups_but_its_traces(imaging_fit):
    scene = open_scene(imaging_fit["session"])
    assert scene.results is None and scene.n_groups == 0 and scene.group_summaries() == []
    assert (scene.roi_groups() == -1).all()
    traces = scene.trace_frames()
    truth = imaging_fit["truth"]
    assert traces.shape == (truth.n_frames, 128, 128)
    expected = np.einsum("i,ihw->hw", truth.dff[123], truth.image_masks)
    np.testing.assert_allclose(traces[123], expected, rtol=1e-5, atol=1e-6)
    scene.close()


def test_without_summary_images_the_view_is_the_mean_of_the_first_frames(tmp_path):
    from nwb_facrnn.io.backend import write_nwbfile
    from nwb_facrnn.synthetic import imaging_nwbfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nwbfile, _ = imaging_nwbfile(3, duration=0.5, n_rois=10, frame_shape=(64, 48))
        nwbfile.processing["ophys"].data_interfaces.pop("summary_images")
        path = write_nwbfile(nwbfile, tmp_path / "no_summary.nwb")
    scene = open_scene(path)
    import h5py

    with h5py.File(path, "r") as f:
        movie = f["acquisition/OnePhotonSeries/data"][:100].astype(np.float64)
    np.testing.assert_allclose(scene.fov.image, movie.mean(axis=0), rtol=1e-6)
    assert scene.fov.image_source == "mean of frames 0-99 of /acquisition/OnePhotonSeries"
    assert scene.fov.frame_shape == (64, 48)
    scene.close()


def test_pixel_masks_are_read_along_the_image_axes(tmp_path):
    """pixel_mask (x, y, weight): x along the first image axis, as image_mask's (num_x, num_y)
    and pynwb's image_to_pixel; pixels outside the frame are an error, not dropped."""
    from pynwb.ophys import ImageSegmentation, PlaneSegmentation

    from nwb_facrnn.io.backend import write_nwbfile
    from nwb_facrnn.synthetic import imaging_nwbfile

    image = np.zeros((40, 50))
    image[2:5, 40:45] = 1.0  # rows 2-4, columns 40-44: only fits one way round
    image[15, 5] = 0.5

    def session(pixels, name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nwbfile, _ = imaging_nwbfile(4, duration=0.5, n_rois=6, frame_shape=(40, 50))
            seg = ImageSegmentation(name="PixelSegmentation")
            nwbfile.processing["ophys"].add(seg)
            ps = seg.create_plane_segmentation(
                name="Pixels",
                description="pixel masks",
                imaging_plane=nwbfile.imaging_planes["ImagingPlane"],
            )
            ps.add_roi(pixel_mask=pixels)
            return write_nwbfile(nwbfile, tmp_path / name)

    pixels = [tuple(p) for p in PlaneSegmentation.image_to_pixel(image)]
    scene = open_scene(
        session(pixels, "pixels.nwb"), table="/processing/ophys/PixelSegmentation/Pixels"
    )
    np.testing.assert_array_equal(scene.fov.masks.toarray().reshape(40, 50), image)
    scene.close()
    swapped = [(y, x, w) for x, y, w in pixels]
    with pytest.raises(NWBReadError, match=r"Pixels/pixel_mask: 15 pixels lie outside the 40 x 50"):
        open_scene(
            session(swapped, "swapped.nwb"), table="/processing/ophys/PixelSegmentation/Pixels"
        )


def test_lazy_frames_take_every_key_numpy_takes():
    dense, masks = _masks(np.random.default_rng(2), 3, (4, 5))
    values = np.arange(30, dtype=np.float32).reshape(10, 3)
    frames = MaskedFrames(masks, lambda rows: values[rows], Timeline.regular(0, 1, 10), (4, 5))
    expected = np.einsum("tr,rhw->thw", values, dense)
    for key in [
        (Ellipsis, 2),
        (3, Ellipsis, 2),
        (slice(0, 4), Ellipsis, slice(0, 2)),
        (np.int64(-2),),
        (slice(None, None, 3), 1),
        np.array([True] + [False] * 9),
        (Ellipsis,),
    ]:
        np.testing.assert_allclose(frames[key], expected[key], rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError, match="boolean"):
        frames[True]
    # napari's 3-D view of a long recording asks for every frame: a clear error, not 300 GB
    huge = MaskedFrames(
        masks, lambda rows: values[rows % 10], Timeline.regular(0, 1, 10**8), (4, 5)
    )
    with pytest.raises(MemoryError, match="view them in 2-D"):
        huge[:]


def test_bins_longer_than_frames_line_up_with_their_frames():
    """With 10 ms bins over 2 ms frames, frames 5k..5k+4 show with bin k."""
    frames = Timeline.regular(0.001, 0.002, 50)  # frame centres of a 500 Hz series from 0 s
    bins = Timeline.from_timestamps(0.005 + 0.01 * np.arange(10), step=0.01)  # bin centres
    for j in range(50):
        t = frames.time_of(j)
        assert frames.position_of(t) == j and bins.position_of(t) == j // 5
    # trials in any order: positions from the earliest bin
    tl = Timeline.from_timestamps(np.array([0.35, 0.36, 0.05, 0.06]), step=0.01)
    assert tl.start == pytest.approx(0.05) and list(tl.rows_at([0, 1, 30, 31])) == [2, 3, 0, 1]


def test_a_spiking_session_says_it_has_no_imaging(tmp_path):
    from nwb_facrnn.synthetic import make_spiking_session

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_spiking_session(tmp_path / "spikes.nwb", seed=0, n_units=10, n_trials=4)
    with pytest.raises(NoImagingError, match=r"spikes\.nwb: /processing: has no imaging ROIs"):
        open_scene(tmp_path / "spikes.nwb")
    assert issubclass(NoImagingError, NWBReadError)


def test_the_last_written_fit_is_shown_and_others_are_named(imaging_fit, tmp_path):
    import shutil

    from nwb_facrnn import FacRNN, write_results

    path = tmp_path / imaging_fit["results"].name
    shutil.copy(imaging_fit["results"], path)
    shutil.copy(imaging_fit["session"], tmp_path)  # the results link its movie
    first = read_results(path).name
    data = imaging_fit["data"]
    # a later fit whose name sorts first: the time it was written decides, not its name
    model = FacRNN(n_groups=2, group_rank=3, seed=1, max_epochs=3, progress=False).fit(data)
    import time

    time.sleep(1.1)  # the written time has one-second resolution
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_results(model, data, path, name="a_later_fit")
    scene = open_scene(path)
    assert scene.results.name == "a_later_fit" and scene.other_fits == [first]
    scene.close()
    scene = open_scene(path, name=first)
    assert scene.results.name == first and scene.other_fits == ["a_later_fit"]
    scene.close()


def test_bad_timestamps_of_the_movie_name_the_series(tmp_path):
    from datetime import UTC, datetime

    from pynwb import NWBFile
    from pynwb.ophys import ImageSegmentation, OnePhotonSeries, OpticalChannel

    from nwb_facrnn.io.backend import write_nwbfile

    nwbfile = NWBFile("movie with reversed timestamps", "bad-ts", datetime(2026, 1, 1, tzinfo=UTC))
    device = nwbfile.create_device("camera")
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel("Green", "green", 520.0),
        description="plane",
        device=device,
        excitation_lambda=480.0,
        imaging_rate=100.0,
        indicator="GCaMP",
        location="CA1",
    )
    nwbfile.add_acquisition(
        OnePhotonSeries(
            name="Movie",
            data=np.zeros((10, 32, 32), np.uint16),
            imaging_plane=plane,
            unit="n.a.",
            timestamps=np.arange(10)[::-1] * 0.01,  # going back in time
        )
    )
    ophys = nwbfile.create_processing_module("ophys", "ophys")
    seg = ImageSegmentation(name="ImageSegmentation")
    ophys.add(seg)
    ps = seg.create_plane_segmentation(name="Plane", description="rois", imaging_plane=plane)
    mask = np.zeros((32, 32), np.float32)
    mask[3:6, 4:8] = 1
    ps.add_roi(image_mask=mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_nwbfile(nwbfile, tmp_path / "bad_ts.nwb")
    expected = r"/acquisition/Movie/timestamps: timestamps must strictly increase; sample 1"
    with pytest.raises(NWBReadError, match=expected):
        open_scene(path)


def test_bad_requests_name_the_file_and_object(imaging_fit, tmp_path):
    with pytest.raises(
        NWBReadError, match=r"has no FacRNN fit named 'nope'; fits over it: facrnn_"
    ):
        open_scene(imaging_fit["results"], name="nope")
    with pytest.raises(NWBReadError, match=r"/processing/x: is not a PlaneSegmentation; present: "):
        open_scene(imaging_fit["results"], table="/processing/x")
    with pytest.raises(NWBReadError, match="does not exist"):
        open_scene(tmp_path / "missing.nwb")
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "other.zarr").mkdir()
    (tmp_path / "other.zarr" / ".zattrs").write_text("{}")
    assert get_reader(str(tmp_path / "plain.txt")) is None
    assert get_reader(str(tmp_path / "other.zarr")) is None  # a Zarr store, not NWB
    assert get_reader(str(imaging_fit["results"])) is not None
    assert NOTHING == [(None,)]
