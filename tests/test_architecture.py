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
