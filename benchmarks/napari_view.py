"""napari benchmark: a 10-minute, 500 Hz, 200-ROI imaging session -- time to first display and
time per time step.

The file
--------
A one-photon voltage-imaging session of 10 min at 500 Hz (300 000 frames of 256 x 256 pixels,
200 ROIs) and a FacRNN fit over it (``<stem>_facrnn.nwb``, the source linked, as
``write_results`` writes it by default).  Rendering the whole movie would take ~40 GB, so:

* the ``OnePhotonSeries`` is a (300 000, 256, 256) uint16 HDF5 dataset, chunked by 50 frames
  and gzip-compressed like :mod:`nwb_facrnn.synthetic.imaging`'s movies, of which only the first
  ``--movie-seconds`` (default 4 s, 2000 frames) are real camera frames
  (:func:`~nwb_facrnn.synthetic.imaging_nwbfile`); the rest of the dataset is never written
  (HDF5 returns its fill value, 0, and stores nothing);
* masks, ``accepted`` column and summary images (``mean``/``max`` of the real frames) are the
  synthetic session's;
* the DfOverF ``RoiResponseSeries`` is real data over all 300 000 frames x 200 ROIs: the
  synthetic session's dF/F for the first ``--movie-seconds``, then the same ROIs' latent-driven
  subthreshold dF/F (new chaotic latents through the session's loadings, plus noise; no spikes);
* the FacRNN (2 groups of rank 3, one restart, one epoch) is fit on the first ``--fit-seconds``
  (default 30 s) of the accepted ROIs' dF/F and its latents are written for all 300 000
  frames.  The fit is not meant to be good: only the sizes of what the viewer draws matter.

The files are cached in the output directory and reused (``--rebuild`` makes them again).

What is measured
----------------
In a fresh Python process (so the first open pays for importing the plugin, pynwb and the NWB
namespaces), with a virtual X server (pyvirtualdisplay, Xvfb) when ``DISPLAY`` is unset:

1. ``napari.Viewer(show=True)`` until its canvas has first painted (reported apart);
2. *open to first display*: ``viewer.open(results, plugin="napari-facrnn")`` plus the Qt event
   loop until the canvas has finished its next paint.  A callback connected last to vispy's
   ``draw`` event runs ``glFinish`` inside ``paintGL``, so the time includes slicing every layer,
   uploading the textures and all the GL work of the frame.  Cold (the first open in the
   process), warm (all layers removed, the same file opened again) and warm through
   ``napari_facrnn.viewer.open_viewer`` (``nwb-facrnn view``: the same layers plus the dock
   widgets); and the plugin's own part of a warm open (``open_scene`` + ``scene_layers``);
3. *time step redraw*: ``viewer.dims.set_current_step(0, k)`` (``slice``: napari slices the
   visible layers, the plugin reads or computes their frames), then the event loop until the
   canvas has finished painting (``paint``) and until no Qt event is pending (``idle``: adds
   the composition of the window and the dock widgets' matplotlib redraws).  ``--steps``
   consecutive steps and ``--random`` random far-apart times with the default layers (field of
   view, ROIs, the two group layers) and with the hidden movie layer shown (times within its
   real frames, decompressed from their 50-frame gzip chunks); ``--extra`` steps each of a
   static redraw (a paint with nothing changed: the floor of every step), the movie at unwritten
   times, the ROI-traces layer at random times, and consecutive steps with the dock widgets.

The GL renderer is printed: on a machine without a GPU (Xvfb) it is Mesa's software rasterizer,
so paints are slower than on a workstation with a graphics card.

Run:  python benchmarks/napari_view.py [--outdir DIR] [--rebuild] [--movie-seconds 4]
      [--steps 200] [--random 50] [--extra 30]     (default DIR: results/benchmark/napari_view)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_OUTDIR = Path(__file__).resolve().parents[1] / "results" / "benchmark" / "napari_view"
SOURCE_NAME = "napari_view_10min.nwb"
RESULTS_NAME = "napari_view_10min_facrnn.nwb"
BUILD_INFO = "napari_view_build.json"
# Canvas window size and the 30 s timeout of one paint.
WINDOW = (1400, 900)
PAINT_TIMEOUT = 30.0


# --------------------------------------------------------------------------- the file


def _params(args: argparse.Namespace) -> dict:
    return {
        "minutes": args.minutes,
        "rate": 500.0,
        "n_rois": 200,
        "frame_shape": [256, 256],
        "movie_seconds": args.movie_seconds,
        "fit_seconds": args.fit_seconds,
        "seed": 0,
    }


def _dff(truth, n_frames: int, seed: int) -> np.ndarray:
    """(n_frames, R) float32 dF/F: the session's own for its frames, then the same ROIs'
    subthreshold dF/F driven by new chaotic latents (loadings, bias and gain of ``truth``)."""
    from nwb_facrnn.synthetic import chaotic_trajectory

    rng = np.random.default_rng(seed + 1)
    z = np.concatenate(
        [chaotic_trajectory(s, n_frames, seed=seed + 1 + g) for g, s in enumerate(truth.systems)],
        axis=1,
    ).astype(np.float32)
    dff = z @ truth.A.T.astype(np.float32)
    dff += truth.a.astype(np.float32)
    dff += np.float32(0.1) * rng.standard_normal(dff.shape, dtype=np.float32)
    dff *= truth.dff_gain.astype(np.float32)
    dff += np.float32(0.005) * rng.standard_normal(dff.shape, dtype=np.float32)
    n_real = min(len(truth.dff), n_frames)
    dff[:n_real] = truth.dff[:n_real]
    return dff


def _write_source(path: Path, p: dict) -> tuple[int, int]:
    """Write the imaging session; return (frames in the movie dataset, real frames)."""
    import h5py
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBFile
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import DfOverF, ImageSegmentation, OnePhotonSeries, OpticalChannel

    from nwb_facrnn.io import write_nwbfile
    from nwb_facrnn.synthetic import imaging_nwbfile

    rate, (height, width) = p["rate"], p["frame_shape"]
    n_frames = round(p["minutes"] * 60 * rate)
    short, truth = imaging_nwbfile(
        p["seed"],
        n_rois=p["n_rois"],
        frame_shape=(height, width),
        rate=rate,
        duration=p["movie_seconds"],
        backend=None,
    )
    movie = short.acquisition["OnePhotonSeries"].data  # (n_real, H, W) uint16, in memory
    summary = short.processing["ophys"]["summary_images"].images
    n_real = len(movie)

    from datetime import UTC, datetime

    f = NWBFile(
        session_description=(
            f"napari benchmark: {p['minutes']:g} min of one-photon voltage imaging at {rate:g} Hz "
            f"({n_frames} frames of {height} x {width}), {p['n_rois']} ROIs; only the first "
            f"{n_real} frames of the movie are written (the rest reads as 0)."
        ),
        identifier=f"napari-view-benchmark-{p['seed']}",
        session_start_time=datetime(2025, 1, 1, tzinfo=UTC),
    )
    camera = f.create_device(name="sCMOS camera", description="Simulated sCMOS camera.")
    plane = f.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel(
            name="Green", description="Voltron2-JF525 emission.", emission_lambda=549.0
        ),
        description="Single focal plane.",
        device=camera,
        excitation_lambda=525.0,
        imaging_rate=rate,
        indicator="Voltron2-JF525",
        location="Field CA1",
        grid_spacing=[1.0e-6, 1.0e-6],
        grid_spacing_unit="meters",
    )
    series = OnePhotonSeries(
        name="OnePhotonSeries",
        description=f"Camera frames; frames {n_real} and later were never written (fill 0).",
        data=H5DataIO(
            movie,
            chunks=(50, height, width),
            maxshape=(None, height, width),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        ),
        imaging_plane=plane,
        unit="n.a.",
        rate=rate,
        starting_time=0.0,
        dimension=[height, width],
        device=camera,
    )
    f.add_acquisition(series)
    ophys = f.create_processing_module("ophys", "Segmentation, summary images and dF/F.")
    segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(segmentation)
    planes = segmentation.create_plane_segmentation(
        name="PlaneSegmentation",
        description="Somata (filled ellipses).",
        imaging_plane=plane,
        reference_images=series,
    )
    planes.add_column("accepted", "True for ROIs accepted as neurons.")
    for i in range(truth.n_rois):
        planes.add_roi(image_mask=truth.image_masks[i], accepted=bool(truth.accepted[i]))
    ophys.add(
        Images(
            name="summary_images",
            description=f"Summary images of the {n_real} real frames.",
            images=[
                GrayscaleImage(name=n, data=summary[n].data, description=f"{n} of the frames")
                for n in ("mean", "max")
            ],
        )
    )
    dff = DfOverF(name="DfOverF")
    ophys.add(dff)
    dff.create_roi_response_series(
        name="RoiResponseSeries",
        description="dF/F of every ROI over the whole session.",
        data=_dff(truth, n_frames, p["seed"]),
        rois=planes.create_roi_table_region(
            region=list(range(truth.n_rois)), description="All ROIs."
        ),
        unit="n.a.",
        rate=rate,
        starting_time=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_nwbfile(f, path, overwrite=True)
    with h5py.File(path, "r+") as h5:  # the unwritten rest of the movie: no chunks, no disk
        h5["acquisition/OnePhotonSeries/data"].resize(n_frames, axis=0)
    return n_frames, n_real


def _fit(source: Path, results: Path, p: dict) -> float:
    """Fit FacRNN on the first seconds, write its latents over the whole session."""
    from nwb_facrnn import FacRNN, read_nwb, write_results

    rois = {"accepted": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        part = read_nwb(source, series="DfOverF", rois=rois, time_range=(0.0, p["fit_seconds"]))
        model = FacRNN(
            n_groups=2, group_rank=3, n_init=1, max_epochs=1, progress=False, seed=p["seed"]
        ).fit(part)
        data = read_nwb(source, series="DfOverF", rois=rois)
        write_results(model, data, results, overwrite=True)
    return model.fit_time_


def build(outdir: Path, p: dict, rebuild: bool) -> dict:
    """Make (or reuse) the source and results files; return the build record."""
    source, results, info = outdir / SOURCE_NAME, outdir / RESULTS_NAME, outdir / BUILD_INFO
    if not rebuild and source.exists() and results.exists() and info.exists():
        record = json.loads(info.read_text())
        if record.get("params") == p:
            record["cached"] = True
            return record
    for stale in (source, results, info):
        stale.unlink(missing_ok=True)
    outdir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    n_frames, n_real = _write_source(source, p)
    t_source = time.perf_counter() - t
    t = time.perf_counter()
    fit_time = _fit(source, results, p)
    record = {
        "params": p,
        "n_frames": n_frames,
        "n_real_frames": n_real,
        "source_seconds": t_source,
        "fit_time": fit_time,
        "results_seconds": time.perf_counter() - t,
    }
    info.write_text(json.dumps(record, indent=1))
    record["cached"] = False
    return record


# --------------------------------------------------------------------------- the measurement


class _PaintClock:
    """Counts the canvas' finished paints: a callback connected last to vispy's draw event runs
    ``glFinish`` (the context is current inside ``paintGL``) and counts."""

    def __init__(self, scene_canvas, app):
        self.canvas, self.app, self.count, self.renderer = scene_canvas, app, 0, None
        scene_canvas.events.draw.connect(self._on_draw, position="last")

    def _on_draw(self, event) -> None:
        from vispy.gloo import gl

        gl.glFinish()
        if self.renderer is None:
            self.renderer = f"{gl.glGetParameter(gl.GL_RENDERER)}"
        self.count += 1

    def wait_paint(self) -> None:
        """Run the Qt event loop until the canvas has finished one more paint."""
        n = self.count
        self.canvas.update()  # napari has asked for one already after a change; never a second
        deadline = time.perf_counter() + PAINT_TIMEOUT
        while self.count == n:
            self.app.processEvents()
            if time.perf_counter() > deadline:
                raise TimeoutError("the canvas did not paint within 30 s")

    def drain(self) -> None:
        """Process what the paint and the step left pending (timers of 0 ms, repaints)."""
        for _ in range(3):
            self.app.processEvents()


def _open_and_paint(clock: _PaintClock, opener) -> tuple[float, float]:
    t = time.perf_counter()
    opener()
    call = time.perf_counter() - t
    clock.wait_paint()
    first = time.perf_counter() - t
    clock.drain()
    return call, first


def _steps(viewer, clock: _PaintClock, positions) -> dict:
    """Time each step: the ``set_current_step`` call (napari slices every visible layer, the
    plugin reads or computes their frames), to the finished paint, and to an idle event loop."""
    call, paint, idle = [], [], []
    for k in positions:
        t = time.perf_counter()
        if k is not None:
            viewer.dims.set_current_step(0, int(k))
        call.append(time.perf_counter() - t)
        clock.wait_paint()
        paint.append(time.perf_counter() - t)
        clock.drain()
        idle.append(time.perf_counter() - t)
    return {"call": call, "paint": paint, "idle": idle}


def measure(path: str, n_real: int, n_steps: int, n_random: int, n_extra: int) -> dict:
    """Everything of "What is measured" (module docstring), in this process."""
    import gc

    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000), color_depth=24)
        display.start()
    out: dict = {"load_before": os.getloadavg()[0]}
    t = time.perf_counter()
    import napari
    from qtpy.QtWidgets import QApplication

    out["import_napari"] = time.perf_counter() - t
    t = time.perf_counter()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    app = QApplication.instance()
    scene_canvas = viewer.window._qt_viewer.canvas._scene_canvas
    clock = _PaintClock(scene_canvas, app)
    clock.wait_paint()
    clock.drain()
    out["viewer"] = time.perf_counter() - t
    out["plugin_imported_before_open"] = "napari_facrnn.reader" in sys.modules
    out["renderer"] = clock.renderer
    out["canvas_px"] = list(scene_canvas.physical_size)

    def plain_open():
        viewer.open(path, plugin="napari-facrnn")

    out["open_cold"] = _open_and_paint(clock, plain_open)
    out["layers"] = [(layer.name, bool(layer.visible)) for layer in viewer.layers]
    out["time_steps"] = int(viewer.dims.nsteps[0])

    # The plugin alone, warm: the file read into a Scene and its layer-data tuples.
    from napari_facrnn.layers import scene_layers
    from napari_facrnn.scene import open_scene

    t = time.perf_counter()
    scene = open_scene(path)
    out["plugin_scene"] = time.perf_counter() - t
    t = time.perf_counter()
    scene_layers(scene)
    out["plugin_layers"] = time.perf_counter() - t
    scene.close()
    del scene

    rng = np.random.default_rng(0)
    total = out["time_steps"]
    mid = total // 2
    real_start = max(0, min(n_real // 4, n_real - n_steps))
    runs = {}
    runs["static redraw (nothing changed)"] = _steps(viewer, clock, [None] * n_extra)
    runs["default layers, consecutive"] = _steps(viewer, clock, range(mid, mid + n_steps))
    runs["default layers, random far apart"] = _steps(
        viewer, clock, rng.integers(0, total, n_random)
    )
    movie = next(la for la in viewer.layers if la.name.startswith("movie"))
    movie.visible = True
    clock.wait_paint()
    runs["+ movie, consecutive (real frames)"] = _steps(
        viewer, clock, range(real_start, real_start + n_steps)
    )
    runs["+ movie, random (real frames)"] = _steps(viewer, clock, rng.integers(0, n_real, n_random))
    runs["+ movie, random (unwritten frames)"] = _steps(
        viewer, clock, rng.integers(n_real, total, n_extra)
    )
    movie.visible = False
    viewer.layers["ROI traces"].visible = True
    clock.wait_paint()
    runs["+ ROI traces, random far apart"] = _steps(viewer, clock, rng.integers(0, total, n_extra))

    viewer.layers.clear()
    gc.collect()
    clock.drain()
    out["open_warm"] = _open_and_paint(clock, plain_open)

    from napari_facrnn.viewer import open_viewer

    viewer.layers.clear()
    gc.collect()
    clock.drain()
    out["open_view_widgets"] = _open_and_paint(clock, lambda: open_viewer(path, viewer=viewer))
    runs["with the dock widgets, consecutive"] = _steps(viewer, clock, range(mid, mid + n_extra))
    out["runs"] = runs
    out["load_after"] = os.getloadavg()[0]
    viewer.close()
    if display is not None:
        display.stop()
    return out


# --------------------------------------------------------------------------- report


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:,.0f} MB"


def report(outdir: Path, record: dict, m: dict) -> None:
    p = record["params"]
    n_frames, n_real = record["n_frames"], record["n_real_frames"]
    h, w = p["frame_shape"]
    gen = record["source_seconds"] + record["results_seconds"]
    print(
        f"session: {p['minutes']:g} min at {p['rate']:g} Hz = {n_frames:,} frames of {h} x {w}, "
        f"{p['n_rois']} ROIs; the movie dataset is {n_frames * h * w * 2 / 1e9:.1f} GB, of which "
        f"the first {n_real:,} frames ({n_real / p['rate']:g} s) are real camera frames and the "
        f"rest unwritten (reads 0); dF/F and FacRNN latents are real over all {n_frames:,} frames"
    )
    print(
        f"files: {SOURCE_NAME} {_size(outdir / SOURCE_NAME)}, {RESULTS_NAME} "
        f"{_size(outdir / RESULTS_NAME)} (opened; links the source); generated in {gen:.0f} s "
        f"(session {record['source_seconds']:.0f} s; FacRNN fit on the first "
        f"{p['fit_seconds']:g} s of dF/F {record['fit_time']:.0f} s, with the latents and "
        f"results file {record['results_seconds']:.0f} s)"
        f"{'  [cached, --rebuild to remake]' if record['cached'] else ''}"
    )
    print(
        f"GL renderer: {m['renderer']}; canvas {m['canvas_px'][0]} x {m['canvas_px'][1]} px; "
        f"time axis {m['time_steps']:,} steps; {os.cpu_count()} CPUs, load average "
        f"{m['load_before']:.1f} before / {m['load_after']:.1f} after"
    )
    print(f"layers: {', '.join(n + ('' if v else ' (hidden)') for n, v in m['layers'])}")
    print()
    print(f"{'opening':<56} {'open() s':>9} {'to first paint s':>17}")
    print(f"{'import napari':<56} {'':>9} {m['import_napari']:>17.2f}")
    print(f"{'napari.Viewer(show=True), apart':<56} {'':>9} {m['viewer']:>17.2f}")
    rows = [
        ("cold: first open in the process", m["open_cold"]),
        ("warm: layers removed, the same file again", m["open_warm"]),
        ("warm: open_viewer (nwb-facrnn view: + 5 dock widgets)", m["open_view_widgets"]),
    ]
    for label, (call, first) in rows:
        print(f"{label:<56} {call:>9.2f} {first:>17.2f}")
    print(
        f"{'  of which the plugin (warm): open_scene + scene_layers':<56} "
        f"{m['plugin_scene'] + m['plugin_layers']:>9.2f}"
    )
    if m["plugin_imported_before_open"]:
        print("(note: the plugin was already imported before the cold open)")
    print()
    print(
        f"{'time step (ms)':<40} {'steps':>5} {'slice':>6} {'paint median':>13} {'p95':>6} "
        f"{'max':>6} {'idle median':>12} {'p95':>6}"
    )
    for label, r in m["runs"].items():
        call, paint, idle = (np.asarray(r[k]) * 1e3 for k in ("call", "paint", "idle"))
        print(
            f"{label:<40} {len(paint):>5} {np.median(call):>6.1f} {np.median(paint):>13.1f} "
            f"{np.percentile(paint, 95):>6.1f} {paint.max():>6.1f} {np.median(idle):>12.1f} "
            f"{np.percentile(idle, 95):>6.1f}"
        )
    print(
        "slice: median of the set_current_step call (napari slicing + the plugin's reads); "
        "paint: to the canvas' finished paint;\nidle: to no pending Qt event (window "
        "composition, dock widgets' redraws)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=DEFAULT_OUTDIR, help="files and cache")
    parser.add_argument("--rebuild", action="store_true", help="make the files again")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--movie-seconds", type=float, default=4.0, help="real movie frames")
    parser.add_argument("--fit-seconds", type=float, default=30.0, help="dF/F the fit sees")
    parser.add_argument("--steps", type=int, default=200, help="consecutive time steps")
    parser.add_argument("--random", type=int, default=50, help="random far-apart times")
    parser.add_argument("--extra", type=int, default=30, help="steps of the other rows")
    parser.add_argument("--measure", nargs=2, metavar=("FILE", "N_REAL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = ["--steps", str(args.steps), "--random", str(args.random), "--extra", str(args.extra)]
    if args.measure:  # the child process
        path, n_real = args.measure[0], int(args.measure[1])
        m = measure(path, n_real, args.steps, args.random, args.extra)
        print("RESULT " + json.dumps(m), flush=True)
        sys.stderr.flush()
        os._exit(0)  # PySide6 may crash while the interpreter finalizes its Qt objects
    record = build(args.outdir, _params(args), args.rebuild)
    child = [sys.executable, __file__, *counts]
    child += ["--measure", str(args.outdir / RESULTS_NAME), str(record["n_real_frames"])]
    run = subprocess.run(child, capture_output=True, text=True)
    lines = [s for s in run.stdout.splitlines() if s.startswith("RESULT ")]
    if run.returncode != 0 or not lines:
        raise SystemExit(run.stdout[-2000:] + run.stderr[-4000:])
    report(args.outdir, record, json.loads(lines[-1][len("RESULT ") :]))


if __name__ == "__main__":
    main()
