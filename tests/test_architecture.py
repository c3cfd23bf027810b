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
            if name.split(".")[0] == "napari":  # `nwb-facrnn view` runs napari's event loop
                assert path.relative_to(PACKAGE).as_posix() == "cli/view.py", (
                    f"{path} imports {name}"
                )


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


# ---------------------------------------------------------------- one pipeline, public names
PLUGIN = PACKAGE.parent / "napari_plugin" / "napari_facrnn"
#: What writes a fit's results into NWB (any of these names in a module means it writes).
WRITERS = {"store_results", "write_results"}


def _calls_fit_and_writer(tree: ast.AST) -> tuple[bool, bool]:
    fits = writes = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            fits |= name == "fit"
            writes |= name in WRITERS
    return fits, writes


def _sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *PLUGIN.rglob("*.py")])


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.name)
def test_read_fit_write_is_composed_only_in_the_pipeline(path):
    """Outside tests, only ``nwb_facrnn/pipeline.py`` both fits a model and writes results:
    the CLI, sweeps, the demo and the napari widget call :func:`nwb_facrnn.fit_source`."""
    fits, writes = _calls_fit_and_writer(ast.parse(path.read_text()))
    if path == PACKAGE / "pipeline.py":
        assert fits and writes, "the pipeline no longer composes fit and write"
    else:
        assert not (fits and writes), f"{path.name} fits a model and writes results itself"


def test_the_composition_check_catches_a_second_pipeline():
    copy = "model.fit(data)\nwrite_results(model, data, out)\n"
    assert _calls_fit_and_writer(ast.parse(copy)) == (True, True)
    assert _calls_fit_and_writer(ast.parse("fit_source(path)\n")) == (False, False)


@pytest.mark.parametrize("path", sorted(PLUGIN.rglob("*.py")), ids=lambda p: p.name)
def test_the_plugin_imports_only_public_names(path):
    """The plugin uses nwb_facrnn's public API: names in the ``__all__`` of ``nwb_facrnn``,
    ``nwb_facrnn.io`` or ``nwb_facrnn.report``, never private modules or names."""
    import importlib

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] != "nwb_facrnn" or alias.name == "nwb_facrnn"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nwb_facrnn"):
            module = importlib.import_module(node.module)
            public = set(getattr(module, "__all__", ()))
            for alias in node.names:
                assert alias.name in public, f"{path.name}: {node.module}.{alias.name} is private"
