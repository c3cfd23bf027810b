"""The group table: colour (the legend of the ROI and group layers), rank, ROIs, variance."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QCheckBox, QTableWidget, QTableWidgetItem

from ..colors import to_hex
from ._common import SceneWidget, current_scene, group_layers_of

COLUMNS = ("colour", "group", "rank", "ROIs", "variance explained", "visible")


class GroupTableWidget(SceneWidget):
    """One row per latent group of the current fit, with a visibility toggle.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "No FacRNN fit open")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.layout().addWidget(self.table)
        self.checkboxes: list[QCheckBox] = []
        self.scene = None
        self.refresh()

    def refresh(self) -> None:
        scene = current_scene(self.viewer, with_results=True)
        self.scene = scene
        self.checkboxes = []
        if scene is None:
            self.title.setText("No FacRNN fit open: open an NWB file with results, or fit one.")
            self.table.setRowCount(0)
            return
        res = scene.results
        saved = scene.saved_to or "not saved"
        self.title.setText(
            f"<b>{res.name}</b>: {res.n_groups} groups of rank {res.group_rank}, "
            f"β = {res.params.get('beta', float('nan')):g}, bin {res.bin_size * 1e3:g} ms "
            f"({saved})"
        )
        rows = scene.group_summaries()
        layers = group_layers_of(self.viewer, scene)
        self.table.setRowCount(len(rows))
        for r, summary in enumerate(rows):
            swatch = QTableWidgetItem("")
            swatch.setBackground(QColor(to_hex(summary.color)))
            swatch.setToolTip(to_hex(summary.color))
            self.table.setItem(r, 0, swatch)
            values = (
                str(summary.group),
                str(summary.rank),
                str(summary.n_rois),
                f"{100 * summary.variance_explained:.1f} %",
            )
            for c, text in enumerate(values, start=1):
                item = QTableWidgetItem(text)
                item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                self.table.setItem(r, c, item)
            box = QCheckBox()
            layer = layers.get(summary.group)
            box.setChecked(layer is not None and layer.visible)
            box.setEnabled(layer is not None)
            box.toggled.connect(lambda on, g=summary.group: self.set_group_visible(g, on))
            self.table.setCellWidget(r, len(COLUMNS) - 1, box)
            self.checkboxes.append(box)
        self.table.resizeColumnsToContents()

    def set_group_visible(self, g: int, visible: bool) -> None:
        """Show or hide group ``g``'s layer."""
        if self.scene is None:
            return
        layer = group_layers_of(self.viewer, self.scene).get(g)
        if layer is not None:
            layer.visible = visible
        if g < len(self.checkboxes) and self.checkboxes[g].isChecked() != visible:
            self.checkboxes[g].setChecked(visible)

    def row_text(self, r: int) -> list[str]:
        """The text of table row ``r`` (for tests and copying)."""
        return [
            self.table.item(r, c).text() if self.table.item(r, c) else ""
            for c in range(len(COLUMNS) - 1)
        ]
