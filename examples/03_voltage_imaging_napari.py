"""Fit FacRNN to the ROI traces of a voltage-imaging NWB session and look at the result in
napari.

The script writes a synthetic one-photon voltage-imaging session
(``nwb_facrnn.synthetic.make_imaging_session``: 4 s at 500 Hz, 128 x 128 pixels, an
OnePhotonSeries movie, a PlaneSegmentation with an image mask per soma, Fluorescence and
DfOverF traces) whose 48 ROIs are driven by two independent latent groups.  It reads the
dF/F of the accepted ROIs, fits FacRNN (2 groups of rank 3), writes the results into NWB
next to the session (``voltage_imaging_facrnn.nwb``: the session's content plus the
results, the movie linked, not copied), reads them back and compares the fitted groups with
the ground truth:

- group latent R² of each true group (its best-matching fitted group regressed on it);
- the share of ROIs whose dominant fitted group (stored in the file) is their true group.

It then prints the command that opens the results in napari with the FacRNN widgets
(``nwb-facrnn view <results>``): the field of view with each ROI coloured by its group, one
additive image layer per group following the latents in time, the group table, the latent
plot, each ROI's loadings and the connectivity.

Run::

    python examples/03_voltage_imaging_napari.py [--output-dir results/examples] [--seed 0]
        [--quick] [--view] [--screenshot PNG]

``--seed`` draws the session and seeds the fit.  ``--quick`` trains 40 epochs instead of
100 on the same session (group latent R² above 0.9 either way).  ``--view`` opens the
results in napari at once (needs napari and the napari-facrnn plugin, ``make install``).
``--screenshot PNG`` opens the same viewer, saves the field of view as drawn (one pixel per
image pixel, ``viewer.export_figure``) to PNG and closes it without entering the event
loop; it needs a display (e.g. ``xvfb-run python examples/03_voltage_imaging_napari.py
--screenshot view.png``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from nwb_facrnn import FacRNN, read_nwb, read_results, write_results
from nwb_facrnn.metrics import group_latent_r2
from nwb_facrnn.synthetic import make_imaging_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("results/examples"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="40 epochs instead of 100")
    parser.add_argument("--view", action="store_true", help="open the results in napari")
    parser.add_argument(
        "--screenshot", type=Path, metavar="PNG", help="save napari's view of the results"
    )
    args = parser.parse_args()
    if (args.view or args.screenshot) and sys.platform.startswith("linux"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            parser.error("--view and --screenshot need a display (e.g. run under xvfb-run)")
    start = time.perf_counter()
    epochs = 40 if args.quick else 100

    path = args.output_dir / "voltage_imaging.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynwb's dtype-conversion notices
        truth = make_imaging_session(path, seed=args.seed, overwrite=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB)")

    data = read_nwb(path, series="DfOverF", rois={"accepted": True})
    print(data)
    model = FacRNN(
        n_groups=2, group_rank=3, max_epochs=epochs, seed=args.seed, progress=sys.stderr.isatty()
    )
    model.fit(data)
    print(f"fit: {model.n_epochs_} epochs in {model.fit_time_:.1f} s")

    out = path.with_name("voltage_imaging_facrnn.nwb")  # write_results' default output
    out.unlink(missing_ok=True)  # an earlier run's results, made from the session replaced above
    write_results(model, data, out)  # the session's content plus the results; the movie linked
    res = read_results(out)
    print(f"results: {out} ({res.object_path}, {out.stat().st_size / 1e6:.1f} MB)")

    alignment = group_latent_r2(truth.z, res.latents, 2)
    print(f"group latent R² per true group: {np.round(alignment.per_group, 3).tolist()}")
    # each ROI's dominant group, as stored in the file: the group whose contribution to the
    # ROI's drive varies most
    true_of_fitted = np.empty(2, dtype=int)
    true_of_fitted[alignment.assignment] = np.arange(2)
    true_groups = truth.roi_groups[np.searchsorted(truth.roi_ids, res.unit_ids)]
    match = np.mean(true_of_fitted[res.dominant_group] == true_groups)
    print(f"ROIs whose dominant fitted group is their true group: {match:.0%}")
    print(f"done in {time.perf_counter() - start:.1f} s")

    print(f"open the results in napari:  nwb-facrnn view {out}")
    if args.view or args.screenshot:
        show(out, args.screenshot, args.view)


def show(results: Path, screenshot: Path | None, view: bool) -> None:
    """Open ``results`` in napari as ``nwb-facrnn view`` does; save a screenshot, and run the
    event loop (``view``) or close the viewer."""
    import click

    from nwb_facrnn.cli import open_in_napari

    try:
        viewer = open_in_napari(results)  # the napari-facrnn reader and every dock widget
    except click.ClickException as err:  # napari or the plugin is not installed
        sys.exit(f"error: {err.format_message()}")
    names = ", ".join(layer.name for layer in viewer.layers)
    print(f"napari: {len(viewer.layers)} layers: {names}")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        viewer.dims.set_point(0, 1.0)  # 1 s into the recording
        image = viewer.export_figure(str(screenshot), scale_factor=4)  # 4 x 4 per image pixel
        print(f"screenshot: {screenshot} ({image.shape[1]} x {image.shape[0]} pixels)")
    if view:
        import napari

        napari.run()
    else:
        viewer.close()


if __name__ == "__main__":
    main()
