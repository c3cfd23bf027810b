"""Reading benchmarks: spike binning at MC_Maze size, and the memory of reading ROI traces.

1. Binning: a Units table the size of the Neural Latents Benchmark's MC_Maze training file
   (182 units, 3.6 million spikes over ~4000 s) binned at 20 ms, (a) in memory with
   :func:`nwb_facrnn.io.binning.bin_spike_times` and (b) end to end with ``read_nwb`` from an
   HDF5 file (opening, reading ``spike_times`` once, binning, masks), continuous and aligned.
2. Memory: an imaging file with a ~2 GB OnePhotonSeries movie and a DfOverF series of 100 ROIs;
   ``read_nwb`` runs in a fresh subprocess and its peak resident memory is reported next to
   the movie size (the movie is never read).

Run:  python benchmarks/read_speed.py [--workdir DIR] [--movie-gb 2.0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

N_UNITS, N_SPIKES, DURATION, N_TRIALS = 182, 3_600_000, 4000.0, 2000


def make_units_file(path: Path, seed: int = 0) -> int:
    import pynwb

    from nwb_facrnn.io import write_nwbfile

    rng = np.random.default_rng(seed)
    f = pynwb.NWBFile(
        session_description="MC_Maze-sized benchmark",
        identifier="bench-units",
        session_start_time=datetime(2025, 1, 1, tzinfo=UTC),
    )
    rates = rng.lognormal(0.0, 0.8, N_UNITS)
    counts = rng.multinomial(N_SPIKES, rates / rates.sum())
    for n in counts:
        f.add_unit(
            spike_times=np.sort(rng.uniform(0.0, DURATION, n)), obs_intervals=[[0, DURATION]]
        )
    f.add_trial_column("move_onset_time", "movement onset (s)")
    starts = np.linspace(1.0, DURATION - 3.0, N_TRIALS)
    for s in starts:
        f.add_trial(start_time=s, stop_time=s + 1.5, move_onset_time=s + 0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_nwbfile(f, path, overwrite=True)
    return int(counts.sum())


def bench_binning(workdir: Path) -> None:
    from nwb_facrnn import read_nwb
    from nwb_facrnn.io.binning import BinGrid, bin_spike_times, ragged_segments

    path = workdir / "units_mc_maze_size.nwb"
    t = time.perf_counter()
    n_spikes = make_units_file(path)
    print(
        f"wrote {path.name}: {N_UNITS} units, {n_spikes:,} spikes ({time.perf_counter() - t:.1f} s)"
    )

    rng = np.random.default_rng(1)
    lens = rng.multinomial(N_SPIKES, np.full(N_UNITS, 1 / N_UNITS))
    times = np.concatenate([np.sort(rng.uniform(0, DURATION, n)) for n in lens])
    begins, ends = ragged_segments(np.cumsum(lens))
    grid = BinGrid(np.array([0.0]), np.array([int(DURATION / 0.02)]), 0.02)
    best = min(_timed(lambda: bin_spike_times(times, begins, ends, grid)) for _ in range(3))
    print(f"bin_spike_times (in memory, continuous, 20 ms, {grid.n_bins:,} bins): {best:.3f} s")

    for label, kw in [
        ("continuous", dict(trials=False)),
        ("aligned -0.25..+0.45 s", dict(align="move_onset_time", window=(-0.25, 0.45))),
        ("whole trials", {}),
    ]:
        best = min(_timed(lambda kw=kw: read_nwb(path, bin_size=0.02, **kw)) for _ in range(3))
        data = read_nwb(path, bin_size=0.02, **kw)
        print(f"read_nwb {label:<24} {best:.3f} s  -> activity {data.activity.shape}")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def make_imaging_file(path: Path, movie_gb: float, n_rois: int = 100, seed: int = 0) -> float:
    """Write the movie frame block by frame block (never all in memory); return its size in GB."""
    import pynwb
    from hdmf.data_utils import DataChunkIterator
    from pynwb.ophys import DfOverF, ImageSegmentation, OnePhotonSeries, OpticalChannel

    from nwb_facrnn.io import write_nwbfile

    shape = (256, 256)
    n_frames = int(movie_gb * 1e9 / (shape[0] * shape[1] * 2))
    rate = 500.0
    rng = np.random.default_rng(seed)
    f = pynwb.NWBFile(
        session_description="2 GB movie benchmark",
        identifier="bench-imaging",
        session_start_time=datetime(2025, 1, 1, tzinfo=UTC),
    )
    device = f.create_device("camera")
    plane = f.create_imaging_plane(
        name="plane",
        optical_channel=OpticalChannel(name="green", description="emission", emission_lambda=520.0),
        description="plane",
        device=device,
        excitation_lambda=488.0,
        imaging_rate=rate,
        indicator="Voltron2",
        location="cortex",
    )

    def frames():
        block = rng.integers(0, 4000, size=(64, *shape), dtype=np.uint16)
        for _ in range(n_frames):
            yield block[rng.integers(64)]

    movie = OnePhotonSeries(
        name="OnePhotonSeries",
        data=DataChunkIterator(frames(), maxshape=(n_frames, *shape), buffer_size=64),
        imaging_plane=plane,
        rate=rate,
        unit="n.a.",
    )
    f.add_acquisition(movie)
    module = f.create_processing_module("ophys", "ophys")
    seg = ImageSegmentation()
    module.add(seg)
    ps = seg.create_plane_segmentation("rois", plane, "PlaneSegmentation", movie)
    for i in range(n_rois):
        mask = np.zeros(shape, dtype=np.float32)
        mask[(i // 10) * 25 : (i // 10) * 25 + 8, (i % 10) * 25 : (i % 10) * 25 + 8] = 1.0
        ps.add_roi(image_mask=mask)
    region = ps.create_roi_table_region("all", region=list(range(n_rois)))
    dff = DfOverF()
    module.add(dff)
    dff.create_roi_response_series(
        name="RoiResponseSeries",
        data=rng.standard_normal((n_frames, n_rois)).astype(np.float32),
        rois=region,
        unit="n.a.",
        rate=rate,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_nwbfile(f, path, overwrite=True)
    return n_frames * shape[0] * shape[1] * 2 / 1e9


_CHILD = """
import sys, time
from nwb_facrnn import read_nwb
def hwm():  # peak resident memory of this process (MB); VmHWM starts afresh at exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
base = hwm()
t = time.perf_counter()
data = read_nwb(sys.argv[1], series="DfOverF")
dt = time.perf_counter() - t
peak = hwm()
print(f"{base:.0f} {peak:.0f} {dt:.2f} {data.activity.nbytes / 1e6:.1f} {data.activity.shape}")
"""


def bench_memory(workdir: Path, movie_gb: float) -> None:
    path = workdir / "imaging_2gb_movie.nwb"
    t = time.perf_counter()
    size = make_imaging_file(path, movie_gb)
    print(
        f"wrote {path.name}: movie {size:.2f} GB, file {path.stat().st_size / 1e9:.2f} GB "
        f"({time.perf_counter() - t:.0f} s)"
    )
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=4)
    base, peak, dt, traces_mb, shape = out
    print(
        f"read_nwb ROI traces {shape.strip()}: {dt} s, peak RSS {peak} MB "
        f"(after imports {base} MB; traces {traces_mb} MB; movie {size * 1e3:.0f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go")
    parser.add_argument("--movie-gb", type=float, default=2.0)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        bench_binning(workdir)
        if not args.skip_memory:
            bench_memory(workdir, args.movie_gb)


if __name__ == "__main__":
    main()
