"""The latent trajectories of each group over time, with a cursor at the viewer's time."""

from __future__ import annotations

from typing import Any

from nwb_facrnn.report import minmax_decimate

from ._common import SceneWidget, current_scene, fit_key, mpl_canvas, style_axes

# Points drawn per latent: longer recordings are drawn decimated (min/max per block, as the
# report's figures).
MAX_POINTS = 4000


def text_overlay(viewer: Any) -> Any:
    """The viewer's text overlay (``viewer.canvas.overlays.text`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and "text" in overlays:
        return overlays["text"]
    return viewer.text_overlay


class LatentPlotWidget(SceneWidget):
    """One panel per group: its latents over time (s). Clicking moves the viewer's time.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "Latent trajectories")
        self.figure, self.canvas = mpl_canvas(height=3.5)
        self.layout().addWidget(self.canvas)
        self.cursors: list[Any] = []
        self.scene = None
        self._background = None  # the figure without its cursors, for blitting
        self._drawn: tuple[int, int] | bool | None = False  # fit_key of the figure drawn
        self.canvas.mpl_connect("button_press_event", self._on_click)
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self.viewer.dims.events.current_step.connect(self._on_time)
        self.refresh()

    def refresh(self) -> None:
        scene = current_scene(self.viewer, with_results=True)
        if fit_key(scene) == self._drawn:
            return  # the same fit: keep the figure (a full draw takes seconds on long fits)
        self._drawn = fit_key(scene)
        self.scene = scene
        self.figure.clear()
        self.cursors = []
        self._background = None
        if scene is None:
            self.title.setText("Latent trajectories: no FacRNN fit open")
            self.canvas.draw_idle()
            return
        res = scene.results
        self.title.setText(f"Latent trajectories of {res.name} (click to move in time)")
        axes = self.figure.subplots(res.n_groups, 1, sharex=True, squeeze=False)[:, 0]
        t = res.timestamps
        for g, ax in enumerate(axes):
            style_axes(ax)
            z = res.latents[:, res.group_slice(g)]
            color = scene.colors[g]
            for j in range(z.shape[1]):
                shade = color[:3] * (1.0 - 0.25 * j)
                ax.plot(*minmax_decimate(t, z[:, j], MAX_POINTS)[:2], color=shade, lw=0.7)
            ax.set_ylabel(f"group {g}", fontsize=8)
            cursor = ax.axvline(self.current_time(), color="white", lw=0.8, animated=True)
            self.cursors.append(cursor)
        axes[-1].set_xlabel("time (s)", fontsize=8)
        self.canvas.draw_idle()
        self._on_time()

    def current_time(self) -> float:
        """The viewer's time (s): its point along the first (time) axis."""
        point = self.viewer.dims.point
        return float(point[0]) if len(point) >= 3 else 0.0

    def _on_draw(self, event: Any) -> None:
        """After a full draw: keep the figure without cursors, then draw the cursors."""
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._draw_cursors()

    def _draw_cursors(self) -> None:
        for line in self.cursors:
            line.axes.draw_artist(line)

    def _on_time(self, event: Any = None) -> None:
        t = self.current_time()
        for line in self.cursors:
            line.set_xdata([t, t])
        if self.scene is not None:
            overlay = text_overlay(self.viewer)
            overlay.visible = True
            overlay.text = f"t = {t:.3f} s"
        if self._background is None:
            self.canvas.draw_idle()
            return
        # a time step redraws only the cursors (blitting), not the whole figure
        self.canvas.restore_region(self._background)
        self._draw_cursors()
        self.canvas.blit(self.figure.bbox)

    def cursor_time(self) -> float | None:
        """Where the cursor is drawn (s), None without a fit."""
        return float(self.cursors[0].get_xdata()[0]) if self.cursors else None

    def _on_click(self, event: Any) -> None:
        if event.inaxes is None or event.xdata is None or len(self.viewer.dims.point) < 3:
            return
        self.viewer.dims.set_point(0, float(event.xdata))
