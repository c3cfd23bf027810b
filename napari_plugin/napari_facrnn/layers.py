"""napari layers of a :class:`~napari_facrnn.scene.Scene`, as layer-data tuples.

Axes are (time, y, x) in world units: seconds and micrometres (pixels when the file has no
``grid_spacing``). 2-D layers (the field of view, the ROIs) show at every time. Every layer
carries the scene in ``metadata["facrnn_scene"]`` and its role in ``metadata["facrnn_role"]``
so the dock widgets find what they need.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .colors import UNGROUPED
from .scene import Scene

SCENE_KEY = "facrnn_scene"
ROLE_KEY = "facrnn_role"
# What each layer is, for the widgets.
FOV, MOVIE, TRACES, ROIS, GROUP = "fov", "movie", "traces", "rois", "group"
# Opacity of the ROI labels over the field of view.
ROI_OPACITY = 0.45

LayerData = tuple[Any, dict[str, Any], str]


def _meta(scene: Scene, role: str, **extra: Any) -> dict[str, Any]:
    return {SCENE_KEY: scene, ROLE_KEY: role, "source": scene.path, **extra}


def _space(scene: Scene) -> dict[str, Any]:
    return {
        "scale": scene.pixel_size,
        "units": (scene.space_unit, scene.space_unit),
        "axis_labels": ("y", "x"),
    }


def _space_time(scene: Scene, start: float, step: float) -> dict[str, Any]:
    return {
        "scale": (step, *scene.pixel_size),
        "translate": (start, 0.0, 0.0),
        "units": ("s", scene.space_unit, scene.space_unit),
        "axis_labels": ("time", "y", "x"),
    }


def group_colormap(color: np.ndarray, name: str):
    """Black to ``color``: the additive colormap of a group layer."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=np.array([[0.0, 0.0, 0.0, 1.0], color]), name=name)


def label_colormap(scene: Scene):
    """Each ROI label in its dominant group's colour (grey when not in a group)."""
    from napari.utils.colormaps import DirectLabelColormap

    groups = scene.roi_groups()
    colors: dict[Any, np.ndarray] = {None: np.zeros(4), 0: np.zeros(4)}
    for row, g in enumerate(groups):
        colors[row + 1] = scene.colors[g] if g >= 0 else UNGROUPED
    return DirectLabelColormap(color_dict=colors)


def roi_features(scene: Scene):
    """Per-label features shown in the status bar: ROI id, group and strengths."""
    import pandas as pd

    n = scene.fov.n_rois
    feats = {"index": np.arange(n + 1), "roi_id": np.r_[-1, scene.fov.roi_ids]}
    groups = scene.roi_groups()
    feats["group"] = np.r_[-1, groups]
    res = scene.results
    if res is not None and res.group_strength is not None:
        for g in range(res.n_groups):
            col = np.full(n + 1, np.nan)
            col[scene.fit_rows + 1] = res.group_strength[:, g]
            feats[f"strength_{g}"] = col
    return pd.DataFrame(feats)


def scene_layers(scene: Scene) -> list[LayerData]:
    """The layers of a scene, bottom to top.

    * ``field of view``: the summary image (grey);
    * ``movie``: the imaging series, read lazily (hidden at first);
    * ``ROI traces``: each ROI painted with its dF/F, computed lazily (shown when the file
      has no fit, hidden otherwise);
    * ``ROIs``: labels coloured by dominant group;
    * ``group g``: ``sum_i mask_i * A[i, g] . z_g(t)``, additive in the group's colour.
    """
    out: list[LayerData] = [
        (
            scene.fov.image,
            {
                "name": "field of view",
                "colormap": "gray",
                "contrast_limits": scene.image_display_range(),
                "metadata": _meta(scene, FOV, image_source=scene.fov.image_source),
                **_space(scene),
            },
            "image",
        )
    ]
    movie = scene.movie_frames()
    if movie is not None:
        name = f"movie ({scene.fov.movie.path.rsplit('/', 1)[-1]})"
        limits = scene.image_display_range()
        out.append(_series_layer(scene, movie, name, MOVIE, scene.fov.movie.path, limits))
    traces = scene.trace_frames()
    if traces is not None:
        limits = scene.trace_display_range()
        layer = _series_layer(scene, traces, "ROI traces", TRACES, scene.fov.traces.path, limits)
        layer[1].update(colormap="inferno", blending="additive", visible=scene.results is None)
        out.append(layer)
    out.append(
        (
            scene.fov.label_image(),
            {
                "name": "ROIs",
                "colormap": label_colormap(scene),
                "opacity": ROI_OPACITY,
                "features": roi_features(scene),
                "metadata": _meta(scene, ROIS, table=scene.fov.table),
                **_space(scene),
            },
            "labels",
        )
    )
    out.extend(group_layers(scene))
    return out


def _series_layer(
    scene: Scene, frames: Any, name: str, role: str, series: str, limits: tuple[float, float]
) -> LayerData:
    """A lazily read time series of frames (grey, hidden at first)."""
    tl = frames.timeline
    kwargs = {
        "name": name,
        "colormap": "gray",
        "visible": False,
        "contrast_limits": limits,
        "metadata": _meta(scene, role, series=series),
        **_space_time(scene, tl.start, tl.step),
    }
    return (frames, kwargs, "image")


def group_layers(scene: Scene) -> list[LayerData]:
    """One additive layer per latent group of the scene's fit (none without a fit or with an
    MLP decoder, which has no per-ROI loadings)."""
    res = scene.results
    if res is None or res.output_loadings is None:
        return []
    timeline = scene.latent_timeline()
    out = []
    for g in range(res.n_groups):
        out.append(
            (
                scene.group_frames(g),
                {
                    "name": group_layer_name(scene, g),
                    "colormap": group_colormap(scene.colors[g], f"facrnn group {g}"),
                    "blending": "additive",
                    "contrast_limits": (0.0, scene.group_display_max(g)),
                    "metadata": _meta(scene, GROUP, group=g, fit=res.name),
                    **_space_time(scene, timeline.start, timeline.step),
                },
                "image",
            )
        )
    return out


def group_layer_name(scene: Scene, g: int) -> str:
    return f"group {g} ({scene.results.name})"
