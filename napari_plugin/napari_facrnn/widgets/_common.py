"""What the dock widgets share: finding scenes in a viewer, and a matplotlib canvas."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..layers import GROUP, ROLE_KEY, SCENE_KEY
from ..scene import Scene


def scenes_in(viewer: Any) -> list[Scene]:
    """The scenes of the viewer's layers, in layer order, each once."""
    seen: dict[int, Scene] = {}
    for layer in viewer.layers:
        scene = layer.metadata.get(SCENE_KEY)
        if isinstance(scene, Scene):
            seen.setdefault(id(scene), scene)
    return list(seen.values())


def current_scene(viewer: Any, *, with_results: bool = False) -> Scene | None:
    """The scene of the active layer, else the last scene added (with a fit if asked)."""
    active = viewer.layers.selection.active
    scene = active.metadata.get(SCENE_KEY) if active is not None else None
    if isinstance(scene, Scene) and (scene.results is not None or not with_results):
        return scene
    candidates = [s for s in scenes_in(viewer) if s.results is not None or not with_results]
    return candidates[-1] if candidates else None


def fit_key(scene: Scene | None) -> tuple[int, int] | None:
    """What a drawing of a scene's fit depends on: the scene and its results object (a new
    fit replaces the object). Widgets redraw only when it changes, not on every layer event."""
    return None if scene is None else (id(scene), id(scene.results))


def layers_of(viewer: Any, scene: Scene, role: str) -> list[Any]:
    """The viewer's layers of ``scene`` with role ``role``."""
    return [
        layer
        for layer in viewer.layers
        if layer.metadata.get(SCENE_KEY) is scene and layer.metadata.get(ROLE_KEY) == role
    ]


def group_layers_of(viewer: Any, scene: Scene) -> dict[int, Any]:
    """Group index to layer for the scene's current fit."""
    fit = scene.results.name if scene.results is not None else None
    return {
        layer.metadata["group"]: layer
        for layer in layers_of(viewer, scene, GROUP)
        if layer.metadata.get("fit") == fit
    }


class SceneWidget(QWidget):
    """A dock widget that redraws (``refresh``) when the viewer's FacRNN layers change."""

    def __init__(self, napari_viewer: Any, title: str):
        super().__init__()
        self.viewer = napari_viewer
        self.setLayout(QVBoxLayout())
        self.title = QLabel(title)
        self.title.setWordWrap(True)
        self.layout().addWidget(self.title)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.viewer.layers.selection.events.active.connect(self._layers_changed)

    def _layers_changed(self, event: Any = None) -> None:
        self.refresh()

    def refresh(self) -> None:
        raise NotImplementedError


def mpl_canvas(height: float = 3.0):
    """A matplotlib Figure in a Qt canvas (dark, like napari), at least ``height`` inches
    (at 72 dpi) tall so a dock cannot squash it to nothing."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, height), facecolor="#262930", layout="constrained")
    canvas = FigureCanvasQTAgg(fig)
    canvas.setMinimumHeight(int(72 * height))
    return fig, canvas


def style_axes(ax) -> None:
    ax.set_facecolor("#262930")
    ax.tick_params(colors="#d0d0d0", labelsize=7)
    for spine in ax.spines.values():
        spine.set_color("#808080")
    ax.xaxis.label.set_color("#d0d0d0")
    ax.yaxis.label.set_color("#d0d0d0")
    ax.title.set_color("#d0d0d0")
