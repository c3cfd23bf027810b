"""Click an ROI: its id, dominant group, loadings on every latent and group strengths."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layers import ROIS
from ._common import SceneWidget, current_scene, layers_of, mpl_canvas, style_axes


def _weak_click(widget: Any):
    """A layer mouse callback calling ``widget._on_click`` while the widget lives."""
    import weakref

    ref = weakref.ref(widget)

    def alive(target: Any) -> bool:
        try:
            target.objectName()  # raises once Qt has deleted the widget
        except RuntimeError:
            return False
        return True

    def hook(layer: Any, event: Any) -> None:
        target = ref()
        if target is None or not alive(target):
            if hook in layer.mouse_drag_callbacks:
                layer.mouse_drag_callbacks.remove(hook)
            return
        target._on_click(layer, event)

    return hook


class RoiLoadingsWidget(SceneWidget):
    """The output loadings ``A[i, :]`` of the ROI clicked in the ``ROIs`` layer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "Click an ROI to see its loadings")
        self.figure, self.canvas = mpl_canvas(height=2.5)
        self.layout().addWidget(self.canvas)
        self.scene = None
        self.row: int | None = None
        self.shown: np.ndarray | None = None
        self._hooked: list[Any] = []
        # the layer holds a weak hook: once this widget is gone, the hook removes itself
        self._hook = _weak_click(self)
        self.refresh()

    def refresh(self) -> None:
        self.scene = current_scene(self.viewer)
        for layer in list(self._hooked):
            if layer not in self.viewer.layers:
                self._unhook(layer)
        for scene in {id(s): s for s in [self.scene] if s is not None}.values():
            for layer in layers_of(self.viewer, scene, ROIS):
                if layer not in self._hooked:
                    layer.mouse_drag_callbacks.append(self._hook)
                    self._hooked.append(layer)
        self.show_roi(self.row)

    def _unhook(self, layer: Any) -> None:
        if self._hook in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._hook)
        self._hooked.remove(layer)

    def closeEvent(self, event: Any) -> None:
        for layer in list(self._hooked):
            self._unhook(layer)
        super().closeEvent(event)

    def _on_click(self, layer: Any, event: Any) -> None:
        label = layer.get_value(event.position, world=True)
        scene = layer.metadata.get("facrnn_scene")
        if scene is not None:
            self.scene = scene
        self.show_roi(None if label is None else scene.roi_row_of_label(int(label)))

    def show_roi(self, row: int | None) -> None:
        """Show PlaneSegmentation row ``row`` (None: nothing selected)."""
        self.row = row
        self.shown = None
        self.figure.clear()
        scene = self.scene
        if scene is None or row is None:
            self.title.setText("Click an ROI to see its loadings")
            self.canvas.draw_idle()
            return
        roi_id = scene.fov.roi_ids[row]
        res = scene.results
        index = scene.fitted_index(row)
        if res is None or index is None or res.output_loadings is None:
            why = (
                "no fit open"
                if res is None
                else "not in the fit"
                if index is None
                else "the fit's decoder is an MLP: no per-ROI loadings"
            )
            self.title.setText(f"ROI {roi_id} (row {row}): {why}")
            self.canvas.draw_idle()
            return
        a = res.output_loadings[index]
        self.shown = a
        group = int(res.dominant_group[index]) if res.dominant_group is not None else -1
        strengths = (
            ""
            if res.group_strength is None
            else ", ".join(f"{s:.3g}" for s in res.group_strength[index])
        )
        self.title.setText(
            f"<b>ROI {roi_id}</b> (row {row}): dominant group {group}; "
            f"group strengths [{strengths}]"
        )
        ax = self.figure.subplots()
        style_axes(ax)
        colors = [scene.colors[k // res.group_rank] for k in range(len(a))]
        ax.bar(np.arange(len(a)), a, color=colors)
        ax.axhline(0, color="#808080", lw=0.5)
        ax.set_xticks(np.arange(len(a)))
        ax.set_xticklabels(
            [f"g{k // res.group_rank}.{k % res.group_rank}" for k in range(len(a))], fontsize=7
        )
        ax.set_ylabel("loading A[i, k]", fontsize=8)
        self.canvas.draw_idle()
