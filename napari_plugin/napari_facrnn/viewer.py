"""Open a napari viewer on an NWB file with every FacRNN dock widget (``nwb-facrnn view``)."""

from __future__ import annotations

import os
from typing import Any

# (widget class path, dock title, area, tabbed with the previous dock of its area)
DOCK_WIDGETS = (
    ("napari_facrnn.widgets.groups:GroupTableWidget", "Latent groups", "right", False),
    ("napari_facrnn.widgets.roi:RoiLoadingsWidget", "ROI loadings", "right", False),
    (
        "napari_facrnn.widgets.connectivity:ConnectivityWidget",
        "Low-rank connectivity",
        "right",
        True,
    ),
    ("napari_facrnn.widgets.fit:FitWidget", "Fit FacRNN", "right", True),
    ("napari_facrnn.widgets.latents:LatentPlotWidget", "Latent trajectories", "bottom", False),
)


def _load(spec: str):
    import importlib

    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def open_viewer(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    show: bool = True,
    viewer: Any = None,
    widgets: bool = True,
) -> Any:
    """A napari viewer showing ``path`` (see :mod:`napari_facrnn.layers`) and the widgets.

    Parameters
    ----------
    path : path
        NWB file or Zarr store.
    name : str, optional
        The fit to show when the file holds several.
    show : bool, default True
        Show the window.
    viewer : napari.Viewer, optional
        Use this viewer instead of a new one.
    widgets : bool, default True
        Dock the group table, latent plot, ROI loadings, connectivity and fit widgets.

    Raises
    ------
    nwb_facrnn.NWBReadError
        The file cannot be shown (no imaging ROIs, no such fit, not NWB).
    """
    import napari

    from .scene import open_scene
    from .widgets.fit import add_scene

    scene = open_scene(path, name=name)  # errors before a window opens
    viewer = viewer or napari.Viewer(title=f"nwb-facrnn: {scene.path}", show=show)
    add_scene(viewer, scene)
    viewer.dims.axis_labels = ("time (s)", "y", "x")[-viewer.dims.ndim :]
    if widgets:
        for spec, title, area, tabify in DOCK_WIDGETS:
            viewer.window.add_dock_widget(_load(spec)(viewer), name=title, area=area, tabify=tabify)
    return viewer
