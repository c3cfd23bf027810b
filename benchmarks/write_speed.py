"""Writing benchmark: results of a fit on a file with a large imaging movie, three ways.

An imaging file with a ~2 GB OnePhotonSeries movie and a DfOverF series of 100 ROIs (the file
of ``read_speed.py``); a FacRNN is fit to the traces, then its results are written

1. to the default ``<stem>_facrnn.nwb``, the movie and traces linked (``write_results``),
2. as a standalone copy (``copy=True``),
3. into the source itself (``in_place=True``, on a copy of the source),

each in a fresh subprocess whose time, peak resident memory and output size are reported.

Run:  python benchmarks/write_speed.py [--workdir DIR] [--movie-gb 2.0]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from read_speed import make_imaging_file

_CHILD = """
import sys, time, warnings
warnings.simplefilter("ignore")
from nwb_facrnn import FacRNN, read_nwb, write_results
def hwm():  # peak resident memory of this process (MB)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
path, mode, out = sys.argv[1:4]
data = read_nwb(path, series="DfOverF", time_range=(0.0, 20.0))
model = FacRNN(n_groups=2, group_rank=3, max_epochs=5, n_init=1, progress=False).fit(data)
base = hwm()
kw = {"in_place": True} if mode == "in_place" else {"output": out, "copy": mode == "copy"}
t = time.perf_counter()
written = write_results(model, data, **kw)
dt = time.perf_counter() - t
print(f"{dt:.2f} {base:.0f} {hwm():.0f} {written}")
"""


def _size_gb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e9
    return path.stat().st_size / 1e9


def bench(workdir: Path, movie_gb: float) -> None:
    src = workdir / "imaging_large_movie.nwb"
    t = time.perf_counter()
    size = make_imaging_file(src, movie_gb)
    print(
        f"wrote {src.name}: movie {size:.2f} GB, file {_size_gb(src):.2f} GB "
        f"({time.perf_counter() - t:.0f} s)"
    )
    for mode in ("linked", "copy", "in_place"):
        target = src
        out = workdir / f"results_{mode}.nwb"
        if mode == "in_place":
            target = workdir / "in_place_copy.nwb"
            shutil.copyfile(src, target)
        run = subprocess.run(
            [sys.executable, "-c", _CHILD, str(target), mode, str(out)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise SystemExit(run.stderr[-3000:])
        dt, base, peak, written = run.stdout.split()[-4:]
        print(
            f"write_results {mode:<9} {dt:>6} s   peak RSS {peak} MB (before writing {base} MB)"
            f"   output {_size_gb(Path(written)):.3f} GB"
        )
        if mode == "in_place":
            target.unlink()
        else:
            out.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go")
    parser.add_argument("--movie-gb", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        bench(workdir, args.movie_gb)


if __name__ == "__main__":
    main()
