"""The napari plugin in a real viewer, rendered under Xvfb (pytest-xvfb starts the server).

Rendering needs a shown window on an X display (a ``show=False`` viewer screenshots black,
and ``QT_QPA_PLATFORM=offscreen`` has no GL context); ``make test`` installs Xvfb.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from napari_facrnn.layers import GROUP, ROIS, ROLE_KEY, SCENE_KEY
from napari_facrnn.widgets import (
    ConnectivityWidget,
    FitWidget,
    GroupTableWidget,
    LatentPlotWidget,
    RoiLoadingsWidget,
)
from napari_facrnn.widgets.latents import text_overlay

from nwb_facrnn import read_results

PLUGIN = "napari-facrnn"


def _open(viewer, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return viewer.open(str(path), plugin=PLUGIN)


def _role(viewer, role):
    return [layer for layer in viewer.layers if layer.metadata.get(ROLE_KEY) == role]


def _docked(viewer, widget_class):
    """A widget docked in the viewer, so the viewer fixture closes it with the window."""
    widget = widget_class(viewer)
    viewer.window.add_dock_widget(widget, name=widget_class.__name__)
    return widget


def _only(viewer, *keep):
    """Show only the given layers."""
    for layer in viewer.layers:
        layer.visible = layer in keep


# --------------------------------------------------------------------------- discovery
def test_the_manifest_validates_and_napari_finds_the_plugin():
    npe2 = Path(sys.executable).with_name("npe2")
    out = subprocess.run(
        [str(npe2), "validate", PLUGIN, "--imports"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest(PLUGIN)
    assert manifest.package_metadata.name == PLUGIN
    readers = [r.command for r in manifest.contributions.readers]
    assert readers == ["napari-facrnn.get_reader"]
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {
        "Latent groups",
        "Latent trajectories",
        "ROI loadings",
        "Low-rank connectivity",
        "Fit FacRNN",
    }


# --------------------------------------------------------------------------- the reader
def test_the_reader_adds_the_layers_with_their_shapes_scales_and_time_axis(
    make_napari_viewer, imaging_fit
):
    viewer = make_napari_viewer()
    res = read_results(imaging_fit["results"])
    layers = _open(viewer, imaging_fit["results"])
    names = [layer.name for layer in layers]
    assert names == [
        "field of view",
        "movie (OnePhotonSeries)",
        "ROI traces",
        "ROIs",
        f"group 0 ({res.name})",
        f"group 1 ({res.name})",
    ]
    fov, movie, traces, rois, g0, g1 = layers
    assert fov.data.shape == (128, 128) and tuple(fov.scale) == (1.0, 1.0)
    assert rois.data.shape == (128, 128) and rois.data.max() == 24
    assert movie.data.shape == (1000, 128, 128) and not movie.visible and not traces.visible
    for layer in (movie, traces):  # each frame at its centre: frame j from j to j+1 frames
        np.testing.assert_allclose(layer.scale, [0.002, 1, 1])
        np.testing.assert_allclose(layer.translate, [0.001, 0, 0])
    for layer in (g0, g1):
        assert layer.data.shape == (len(res.timestamps), 128, 128)
        assert layer.blending == "additive" and layer.visible
        np.testing.assert_allclose(layer.scale, [res.bin_size, 1, 1])
        # each bin at its centre: the bin of one frame lines up with that frame
        np.testing.assert_allclose(layer.translate, [res.timestamps[0], 0, 0])
        assert [str(u) for u in layer.units] == ["second", "micrometer", "micrometer"]
    assert viewer.dims.axis_labels == ("time", "y", "x")
    # the time slider runs over the session in seconds, one step per frame
    start, stop, step = viewer.dims.range[0]
    assert (start, step) == pytest.approx((0.001, 0.002)) and stop == pytest.approx(1.999)
    viewer.dims.set_point(0, 1.2345)
    assert viewer.dims.current_step[0] in (616, 617)  # the frame around 1.2345 s
    assert movie.world_to_data(viewer.dims.point)[0] == pytest.approx(viewer.dims.current_step[0])
    assert g0.world_to_data(viewer.dims.point)[0] == pytest.approx(viewer.dims.current_step[0])
    # the ROI features name each label's id and group
    feats = rois.features
    row = 5
    assert feats.loc[row + 1, "roi_id"] == imaging_fit["truth"].roi_ids[row]


def test_a_file_without_results_opens_with_its_traces(make_napari_viewer, imaging_fit):
    viewer = make_napari_viewer()
    layers = _open(viewer, imaging_fit["session"])
    assert [layer.name for layer in layers] == [
        "field of view",
        "movie (OnePhotonSeries)",
        "ROI traces",
        "ROIs",
    ]
    assert layers[2].visible  # the traces are what there is to see
    grey = layers[3].colormap.map(np.array([1, 2, 3]))
    assert np.allclose(grey[:, :3], 0.75)


def test_a_spiking_file_shows_a_message_instead_of_raising(
    make_napari_viewer, tmp_path, monkeypatch
):
    import napari.utils.notifications as notifications

    from nwb_facrnn.synthetic import make_spiking_session

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_spiking_session(tmp_path / "spikes.nwb", seed=0, n_units=10, n_trials=4)
    shown = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    viewer = make_napari_viewer()
    layers = _open(viewer, tmp_path / "spikes.nwb")
    assert layers == [] and len(viewer.layers) == 0
    assert len(shown) == 1 and "has no imaging ROIs (no PlaneSegmentation)" in shown[0]


# --------------------------------------------------------------------------- rendering
def _centre_pixels(image, scene, rows):
    centres = scene.fov.centroids()[rows]
    return np.array([image[round(cy), round(cx), :3] for cy, cx in centres], float)


def test_the_screenshot_shows_each_group_colour_in_its_rois_only(make_napari_viewer, imaging_fit):
    viewer = make_napari_viewer(show=True)
    _open(viewer, imaging_fit["results"])
    scene = viewer.layers[0].metadata[SCENE_KEY]
    viewer.dims.set_point(0, 0.7)
    image = viewer.export_figure()  # one screen pixel per data pixel
    assert image.shape[:2] == (128, 128)
    groups = scene.roi_groups()
    fitted = np.flatnonzero(groups >= 0)
    pixels = _centre_pixels(image, scene, fitted)
    # the hue of each ROI's centre is its group's colour: nearest in chroma direction
    chroma = pixels - pixels.mean(axis=1, keepdims=True)
    palette = scene.colors[:, :3] - scene.colors[:, :3].mean(axis=1, keepdims=True)
    cosine = (chroma @ palette.T) / (
        np.linalg.norm(chroma, axis=1, keepdims=True) * np.linalg.norm(palette, axis=1)
    )
    assert (cosine.argmax(axis=1) == groups[fitted]).all()
    assert (cosine.max(axis=1) > 0.9).all()
    # outside every ROI: the grey field of view, no group colour
    labels = scene.fov.label_image()
    from scipy.ndimage import binary_dilation

    background = ~binary_dilation(labels > 0, iterations=3)
    bg = image[background][:, :3].astype(float)
    assert (bg.max(axis=1) - bg.min(axis=1) <= 2).all()
    # ROIs outside the fit (rejected) are light grey
    rejected = _centre_pixels(image, scene, np.flatnonzero(groups < 0))
    assert (rejected.max(axis=1) - rejected.min(axis=1) <= 2).all()


def test_moving_in_time_redraws_the_group_layers_as_the_latents_say(
    make_napari_viewer, imaging_fit
):
    viewer = make_napari_viewer(show=True)
    _open(viewer, imaging_fit["results"])
    scene = viewer.layers[0].metadata[SCENE_KEY]
    res = scene.results
    layer = _role(viewer, GROUP)[0]
    _only(viewer, layer)
    fitted = np.flatnonzero(scene.roi_groups() >= 0)
    channel = int(np.argmax(scene.colors[0][:3]))  # orange: red
    hi = scene.group_display_max(0)
    seen = []
    for k in (100, 640):
        viewer.dims.set_point(0, scene.latent_timeline().time_of(k))
        image = viewer.export_figure()
        measured = _centre_pixels(image, scene, fitted)[:, channel] / 255
        contribution = scene.contributions(0, np.array([k]))[0]  # (N,) in fit order
        expected = np.clip(contribution / hi, 0, 1) * scene.colors[0][channel]
        np.testing.assert_allclose(measured, expected, atol=2.5 / 255)
        seen.append(measured)
    assert np.abs(seen[0] - seen[1]).max() > 0.1  # the picture did change
    assert res.latents.shape[0] > 640


# --------------------------------------------------------------------------- widgets
def test_the_group_table_lists_the_groups_and_toggles_their_layers(make_napari_viewer, imaging_fit):
    viewer = make_napari_viewer()
    _open(viewer, imaging_fit["results"])
    scene = viewer.layers[0].metadata[SCENE_KEY]
    table = _docked(viewer, GroupTableWidget)
    rows = scene.group_summaries()
    for r, summary in enumerate(rows):
        text = table.row_text(r)
        assert text[1:4] == [str(r), "3", str(summary.n_rois)]
        assert text[4] == f"{100 * summary.variance_explained:.1f} %"
    assert table.table.item(0, 0).background().color().name() == "#e69f00"
    assert table.table.item(1, 0).background().color().name() == "#56b4e9"
    from qtpy.QtCore import Qt

    layer = _role(viewer, GROUP)[1]
    assert table.is_shown(1)
    table.table.item(1, 5).setCheckState(Qt.Unchecked)  # a click on the box
    assert not layer.visible and _role(viewer, GROUP)[0].visible
    table.set_group_visible(1, True)
    assert layer.visible and table.is_shown(1)
    layer.visible = False  # from the layer list
    assert not table.is_shown(1)


def test_the_latent_plot_follows_the_viewer_and_moves_it(make_napari_viewer, imaging_fit):
    from matplotlib.backend_bases import MouseEvent

    viewer = make_napari_viewer()
    _open(viewer, imaging_fit["results"])
    plot = _docked(viewer, LatentPlotWidget)
    assert len(plot.figure.axes) == 2
    # each panel draws its group's latents
    res = viewer.layers[0].metadata[SCENE_KEY].results
    line = plot.figure.axes[1].lines[0]
    np.testing.assert_allclose(line.get_xdata(), res.timestamps)
    np.testing.assert_allclose(line.get_ydata(), res.latents[:, 3])
    viewer.dims.set_point(0, 1.5)
    now = viewer.dims.point[0]  # on the frame grid: 1.499 or 1.501
    assert now == pytest.approx(1.5, abs=0.0011)
    assert plot.cursor_time() == pytest.approx(now)
    assert text_overlay(viewer).text == f"t = {now:.3f} s"
    # a time step redraws only the cursor (blitting): the white line moved in the picture
    plot.canvas.draw()

    def white_rows(t):
        pixels = np.asarray(plot.canvas.buffer_rgba())
        x = plot.figure.axes[0].transData.transform((t, 0))[0]
        column = pixels[:, round(x), :3].astype(int)
        return int((column.min(axis=1) > 230).sum())

    assert white_rows(now) > 50 and white_rows(0.25) < 5
    viewer.dims.set_point(0, 0.25)
    assert white_rows(viewer.dims.point[0]) > 50 and white_rows(now) < 5
    # a click on the plot moves the viewer's time
    plot.canvas.draw()
    ax = plot.figure.axes[0]
    x, y = ax.transData.transform((0.42, 0.0))
    MouseEvent("button_press_event", plot.canvas, x, y, button=1)._process()
    assert viewer.dims.point[0] == pytest.approx(0.42, abs=0.0021)
    assert plot.cursor_time() == pytest.approx(viewer.dims.point[0])


def test_clicking_an_roi_shows_its_loadings(make_napari_viewer, imaging_fit):
    viewer = make_napari_viewer()
    _open(viewer, imaging_fit["results"])
    panel = _docked(viewer, RoiLoadingsWidget)
    rois = _role(viewer, ROIS)[0]
    assert panel._hook in rois.mouse_drag_callbacks
    scene = rois.metadata[SCENE_KEY]
    res = scene.results
    row = int(scene.fit_rows[4])
    cy, cx = scene.fov.centroids()[row]
    panel._on_click(rois, SimpleNamespace(position=(0.0, cy, cx)))
    assert panel.row == row
    np.testing.assert_array_equal(panel.shown, res.output_loadings[4])
    assert f"ROI {res.unit_ids[4]}" in panel.title.text()
    assert f"dominant group {res.dominant_group[4]}" in panel.title.text()
    panel._on_click(rois, SimpleNamespace(position=(0.0, 0.0, 0.0)))  # background
    assert panel.row is None and panel.shown is None


def test_the_connectivity_view_shows_w_and_each_groups_part(make_napari_viewer, imaging_fit):
    viewer = make_napari_viewer()
    _open(viewer, imaging_fit["results"])
    res = read_results(imaging_fit["results"])
    view = _docked(viewer, ConnectivityWidget)
    order = np.argsort(res.dominant_group, kind="stable")
    np.testing.assert_allclose(view.shown, res.connectivity[np.ix_(order, order)], rtol=1e-6)
    view.select(1)
    np.testing.assert_allclose(
        view.shown, res.group_connectivity(1)[np.ix_(order, order)], rtol=1e-6
    )
    assert view.choice.count() == 3


def test_the_fit_widget_fits_in_the_background_and_adds_the_layers(
    make_napari_viewer, qtbot, tmp_path
):
    from nwb_facrnn.synthetic import make_imaging_session

    path = tmp_path / "small.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_imaging_session(path, seed=2, duration=0.4, n_rois=10, frame_shape=(64, 64))
    viewer = make_napari_viewer()
    _open(viewer, path)
    assert _role(viewer, GROUP) == []
    widget = _docked(viewer, FitWidget)
    assert Path(str(widget.file.value)) == path  # the open file
    widget.epochs.value = 5
    output = tmp_path / "small_fit.nwb"
    widget.output.value = output
    worker = widget.start()
    assert worker is not None and widget.worker is worker
    assert not widget.fit_button.enabled  # one fit at a time
    qtbot.waitUntil(lambda: widget.worker is None, timeout=180_000)
    assert widget.error is None, widget.error
    groups = _role(viewer, GROUP)
    assert len(groups) == 2 and groups[0].data.shape == (200, 64, 64)
    saved = read_results(output)
    assert widget.status.value == f"{saved.name}: saved to {output}"
    np.testing.assert_allclose(widget.result.latents, saved.latents, rtol=1e-6)
    scene = groups[0].metadata[SCENE_KEY]
    assert scene.saved_to == str(output) and len(scene.fov.roi_ids) == 10
    # the ROI labels now show the groups
    rois = _role(viewer, ROIS)[0]
    label = int(scene.fit_rows[0]) + 1
    colour = rois.colormap.map(np.array([label]))[0]
    np.testing.assert_allclose(colour, scene.colors[saved.dominant_group[0]])


def test_a_cancelled_fit_writes_nothing(make_napari_viewer, qtbot, imaging_fit, tmp_path):
    viewer = make_napari_viewer()
    _open(viewer, imaging_fit["session"])
    widget = _docked(viewer, FitWidget)
    widget.epochs.value = 10_000
    output = tmp_path / "never.nwb"
    widget.output.value = output
    widget.start()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert "cancelled" in widget.status.value and not output.exists()
    assert _role(viewer, GROUP) == []


def test_nwb_facrnn_view_opens_the_file_with_the_widgets(
    make_napari_viewer, imaging_fit, monkeypatch
):
    import napari
    from click.testing import CliRunner

    from nwb_facrnn.cli import main

    made = []

    def viewer_factory(**kwargs):  # the fixture's viewers are cleaned up by the fixture
        made.append(make_napari_viewer(**kwargs))
        return made[-1]

    monkeypatch.setattr(napari, "Viewer", viewer_factory)
    monkeypatch.setattr(napari, "run", lambda: None)
    result = CliRunner().invoke(main, ["view", str(imaging_fit["results"])])
    assert result.exit_code == 0, result.output
    assert len(made) == 1 and f"napari: {imaging_fit['results']} (6 layers)" in result.output
    docks = set(made[0].window.dock_widgets)
    assert docks == {
        "Latent groups",
        "Latent trajectories",
        "ROI loadings",
        "Low-rank connectivity",
        "Fit FacRNN",
    }
    bad = CliRunner().invoke(main, ["view", str(imaging_fit["results"]), "--name", "nope"])
    assert bad.exit_code != 0 and "has no FacRNN fit named 'nope'" in str(bad.exception)
    assert len(made) == 1  # refused before a window opened
