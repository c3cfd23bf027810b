"""The napari reader contribution: NWB imaging sessions (HDF5 ``.nwb`` or Zarr stores)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nwb_facrnn import NWBReadError

from .layers import LayerData, scene_layers
from .scene import open_scene

# The reader's answer when a file has nothing to draw: napari's "handled, no layers" sentinel.
NOTHING = [(None,)]


def is_nwb(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like an NWB file: an HDF5 ``.nwb`` file, or a Zarr store whose
    root carries ``nwb_version`` (other ``.zarr`` stores are left to other readers)."""
    p = Path(path)
    if p.is_dir():
        attrs = p / ".zattrs"
        if not attrs.is_file():
            return False
        import json

        try:
            return "nwb_version" in json.loads(attrs.read_text())
        except (OSError, ValueError):
            return False
    return p.suffix.lower() == ".nwb" and p.is_file()


def get_reader(path: str | os.PathLike | list) -> Callable | None:
    """npe2 ``get_reader``: :func:`read_nwb_layers` for NWB files, None for anything else."""
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(is_nwb(p) for p in paths):
        return None
    return read_nwb_layers


def read_nwb_layers(path: str | os.PathLike | list) -> list[LayerData]:
    """Layers of one or more NWB imaging sessions (see :func:`napari_facrnn.layers.scene_layers`).

    A file without imaging ROIs (a spiking session) adds nothing and says why in the viewer's
    notifications, instead of raising.
    """
    from napari.utils.notifications import show_info, show_warning

    paths = path if isinstance(path, list) else [path]
    layers: list[LayerData] = []
    for p in paths:
        try:
            scene = open_scene(p)
        except NWBReadError as err:  # NoImagingError included: a spiking session
            show_warning(str(err))
            continue
        if scene.other_fits:
            show_info(
                f"{scene.path} holds {len(scene.other_fits) + 1} FacRNN fits over "
                f"{scene.fov.table}; showing {scene.results.name}. Others: "
                f"{', '.join(scene.other_fits)} (nwb-facrnn view FILE --name NAME)"
            )
        layers.extend(scene_layers(scene))
    return layers or NOTHING
