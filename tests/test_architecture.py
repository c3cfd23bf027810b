"""The data flows one way: the model knows nothing of NWB at import time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[1] / "nwb_facrnn" / "model"
NWB_MODULES = ("pynwb", "hdmf", "hdmf_zarr", "h5py", "zarr", "nwbinspector")


@pytest.mark.parametrize("path", sorted(MODEL.glob("*.py")), ids=lambda p: p.name)
def test_model_modules_import_no_nwb_library_at_module_level(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only; FacRNN.from_nwb imports the io side lazily
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [("." * node.level) + (node.module or "")]
        for name in names:
            assert name.split(".")[0] not in NWB_MODULES, f"{path.name} imports {name}"
            assert not name.startswith("..io"), f"{path.name} imports {name}"


PACKAGE = MODEL.parent


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_the_package_never_imports_the_napari_plugin_or_napari(path):
    """The plugin depends on nwb_facrnn, never the reverse: ``nwb-facrnn view`` reaches the
    plugin through napari's plugin discovery (npe2), not by importing it."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        for name in names:
            assert name.split(".")[0] != "napari_facrnn", f"{path.name} imports {name}"
            if name.split(".")[0] == "napari":
                assert path.name == "cli.py", f"{path.name} imports {name}"


def test_reading_results_does_not_import_torch():
    """Viewers open results without the model: the package imports torch on first use only."""
    import subprocess
    import sys

    code = (
        "import sys, nwb_facrnn, nwb_facrnn.io.fov, nwb_facrnn.io.results; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "nwb_facrnn.FacRNN; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
