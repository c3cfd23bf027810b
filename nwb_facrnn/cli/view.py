"""``nwb-facrnn view``: a fit on the field of view in napari, through the napari-facrnn plugin.

The one module of the package that imports napari (when the command runs).
"""

from __future__ import annotations

from pathlib import Path

import click

from .app import command, console, main


@command(main)
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="The fit to show when the file holds several.")
def view(file: Path, name: str | None) -> None:
    """Open FILE (an NWB imaging session, HDF5 or Zarr) in napari with the FacRNN widgets."""
    viewer = open_in_napari(file, name)
    console.print(f"napari: {file} ({len(viewer.layers)} layers)")
    import napari

    napari.run()


def open_in_napari(file: Path, name: str | None = None):
    """A napari viewer on ``file`` through the napari-facrnn plugin (found by napari's plugin
    discovery, so this package never imports the plugin)."""
    try:
        import napari  # noqa: F401
        from npe2 import PluginManager
    except ImportError:
        raise click.ClickException(
            "napari is not installed: pip install 'nwb-facrnn[napari]' ./napari_plugin "
            "(or make install)"
        ) from None
    manager = PluginManager.instance()
    manager.discover()
    try:
        command = manager.get_command("napari-facrnn.open_viewer")
    except KeyError:
        raise click.ClickException(
            "the napari-facrnn plugin is not installed: pip install ./napari_plugin"
        ) from None
    return command.exec(args=(file,), kwargs={"name": name})
