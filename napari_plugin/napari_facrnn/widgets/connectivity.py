"""The low-rank connectivity ``W = A B`` of the fit, whole or one group's part."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QComboBox

from ._common import SceneWidget, current_scene, fit_key, mpl_canvas, style_axes

ALL = "all groups"


class ConnectivityWidget(SceneWidget):
    """``W`` (N x N, fitted ROIs sorted by dominant group) or ``A[:, g] B[g, :]``.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "Low-rank connectivity")
        self.choice = QComboBox()
        self.layout().addWidget(self.choice)
        self.figure, self.canvas = mpl_canvas(height=3.5)
        self.layout().addWidget(self.canvas)
        self.scene = None
        self.shown: np.ndarray | None = None
        self.order: np.ndarray | None = None
        self._drawn: tuple[int, int] | bool | None = False  # fit_key of the matrix drawn
        self.choice.currentIndexChanged.connect(lambda _i: self.draw())
        self.refresh()

    def refresh(self) -> None:
        scene = current_scene(self.viewer, with_results=True)
        if fit_key(scene) == self._drawn:
            return  # the same fit: nothing to redraw
        self._drawn = fit_key(scene)
        changed = scene is not self.scene or (
            scene is not None and self.choice.count() != scene.n_groups + 1
        )
        self.scene = scene
        if changed:
            self.choice.blockSignals(True)
            self.choice.clear()
            if scene is not None:
                self.choice.addItems([ALL] + [f"group {g}" for g in range(scene.n_groups)])
            self.choice.blockSignals(False)
        self.draw()

    def select(self, group: int | None) -> None:
        """Show the whole ``W`` (None) or group ``group``'s part."""
        self.choice.setCurrentIndex(0 if group is None else group + 1)
        self.draw()

    def draw(self) -> None:
        self.figure.clear()
        self.shown = None
        scene = self.scene
        res = None if scene is None else scene.results
        if res is None or res.output_loadings is None or res.input_loadings is None:
            why = "no FacRNN fit open" if res is None else "needs a linear encoder and decoder"
            self.title.setText(f"Low-rank connectivity: {why}")
            self.canvas.draw_idle()
            return
        index = max(self.choice.currentIndex(), 0)
        w = res.connectivity if index == 0 else res.group_connectivity(index - 1)
        groups = (
            res.dominant_group
            if res.dominant_group is not None
            else np.zeros(len(res.unit_ids), dtype=int)
        )
        self.order = np.argsort(groups, kind="stable")
        self.shown = w[np.ix_(self.order, self.order)]
        what = "W = A B" if index == 0 else f"group {index - 1}: A[:, g] B[g, :]"
        self.title.setText(
            f"{what} of {res.name}; {len(self.order)} ROIs sorted by dominant group "
            "(row: to, column: from)"
        )
        ax = self.figure.subplots()
        style_axes(ax)
        lim = float(np.abs(self.shown).max()) or 1.0
        image = ax.imshow(self.shown, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        sorted_groups = groups[self.order]
        for g in range(res.n_groups):
            idx = np.flatnonzero(sorted_groups == g)
            if len(idx):
                color = scene.colors[g]
                ax.plot(
                    [-1.5, -1.5], [idx[0] - 0.5, idx[-1] + 0.5], color=color, lw=4, clip_on=False
                )
                ax.plot(
                    [idx[0] - 0.5, idx[-1] + 0.5], [-1.5, -1.5], color=color, lw=4, clip_on=False
                )
        ax.set_xlabel("presynaptic ROI", fontsize=8)
        ax.set_ylabel("postsynaptic ROI", fontsize=8)
        cbar = self.figure.colorbar(image, ax=ax, shrink=0.8)
        cbar.ax.tick_params(colors="#d0d0d0", labelsize=7)
        self.canvas.draw_idle()
