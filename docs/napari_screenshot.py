"""Make the README's napari screenshot (docs/napari_view.png) from a fresh fit.

Writes the synthetic voltage-imaging session of ``examples/03_voltage_imaging_napari.py``
(48 ROIs, two latent groups, 4 s at 500 Hz), fits FacRNN with its ground-truth group number,
writes the results into NWB, then opens them with ``nwb-facrnn view``'s viewer (every dock
widget) and saves a screenshot of the window. Needs a display; without one it starts Xvfb.

Run:  python docs/napari_screenshot.py [--output-dir results/screenshot]
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("results/screenshot"))
    parser.add_argument("--image", type=Path, default=DOCS / "napari_view.png")
    parser.add_argument("--time", type=float, default=1.234, help="viewer time (s)")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the results file of an earlier run"
    )
    args = parser.parse_args()

    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        Display(visible=False, size=(1700, 1000)).start()

    from nwb_facrnn import FacRNN, read_nwb, write_results
    from nwb_facrnn.synthetic import make_imaging_session

    session = args.output_dir / "voltage_imaging.nwb"
    output = args.output_dir / "voltage_imaging_facrnn.nwb"
    if not (args.reuse and output.exists()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_imaging_session(session, seed=0, overwrite=True)
        data = read_nwb(session, series="DfOverF", rois={"accepted": True})
        model = FacRNN(n_groups=2, group_rank=3, seed=0, progress=False).fit(data)
        output.unlink(missing_ok=True)
        write_results(model, data, output)
    print(f"results: {output}")

    from napari_facrnn.viewer import open_viewer
    from qtpy.QtWidgets import QApplication

    viewer = open_viewer(output)
    viewer.window._qt_window.resize(1600, 900)
    for _ in range(3):
        QApplication.processEvents()
    viewer.reset_view()
    viewer.dims.set_point(0, args.time)
    rois = next(layer for layer in viewer.layers if layer.name == "ROIs")
    viewer.layers.selection.active = rois
    # show one ROI's loadings, as a click on it would
    roi_panel = viewer.window.dock_widgets["ROI loadings"]
    scene = rois.metadata["facrnn_scene"]
    roi_panel.show_roi(int(scene.fit_rows[0]))
    viewer.window._wrapped_dock_widgets["ROI loadings"].raise_()
    for _ in range(5):
        QApplication.processEvents()
    viewer.screenshot(str(args.image), canvas_only=False)
    print(f"screenshot: {args.image}")
    viewer.close()


if __name__ == "__main__":
    main()
