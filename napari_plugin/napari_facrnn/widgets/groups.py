"""The group table: colour (the legend of the ROI and group layers), rank, ROIs, variance."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem

from ..colors import to_hex
from ._common import SceneWidget, current_scene, group_layers_of

COLUMNS = ("", "group", "rank", "ROIs", "variance", "show")
SHOW = len(COLUMNS) - 1


class GroupTableWidget(SceneWidget):
    """One row per latent group of the current fit, with a visibility toggle.

    The first column is the group's colour: the legend of the ``ROIs`` layer (each ROI in
    its dominant group's colour) and of the group layers.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "No FacRNN fit open")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeaderItem(4).setToolTip(
            "share of the variance of the fitted ROIs' latent drive carried by the group"
        )
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.NoSelection)
        self.table.itemChanged.connect(self._item_changed)
        self.layout().addWidget(self.table)
        self.scene = None
        self._watched: set[int] = set()
        self.refresh()

    def refresh(self) -> None:
        scene = current_scene(self.viewer, with_results=True)
        self.scene = scene
        self.table.blockSignals(True)
        try:
            self._fill(scene)
        finally:
            self.table.blockSignals(False)

    def _fill(self, scene) -> None:
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
            swatch.setFlags(Qt.ItemIsEnabled)
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
                item.setFlags(Qt.ItemIsEnabled)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, c, item)
            layer = layers.get(summary.group)
            if layer is not None and id(layer) not in self._watched:
                # hiding the layer in the layer list unticks its box
                layer.events.visible.connect(lambda _e=None: self.refresh())
                self._watched.add(id(layer))
            show = QTableWidgetItem("")
            show.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled if layer else Qt.NoItemFlags)
            show.setCheckState(Qt.Checked if layer is not None and layer.visible else Qt.Unchecked)
            self.table.setItem(r, SHOW, show)
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(0, 28)
        height = self.table.horizontalHeader().height() + 2
        height += sum(self.table.rowHeight(r) for r in range(len(rows)))
        self.table.setMinimumHeight(min(height + 4, 320))

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == SHOW:
            self.set_group_visible(item.row(), item.checkState() == Qt.Checked)

    def is_shown(self, g: int) -> bool:
        """Whether group ``g``'s box is ticked."""
        return self.table.item(g, SHOW).checkState() == Qt.Checked

    def set_group_visible(self, g: int, visible: bool) -> None:
        """Show or hide group ``g``'s layer (and tick its box accordingly)."""
        if self.scene is None:
            return
        layer = group_layers_of(self.viewer, self.scene).get(g)
        if layer is not None:
            layer.visible = visible
        item = self.table.item(g, SHOW)
        if item is not None and (item.checkState() == Qt.Checked) != visible:
            self.table.blockSignals(True)
            item.setCheckState(Qt.Checked if visible else Qt.Unchecked)
            self.table.blockSignals(False)

    def row_text(self, r: int) -> list[str]:
        """The text of table row ``r`` (for tests and copying)."""
        return [
            self.table.item(r, c).text() if self.table.item(r, c) else ""
            for c in range(len(COLUMNS) - 1)
        ]
