"""How a default FacRNN fit scales with the recording: length T and units N.

For every (T, N) of the grid, a fresh subprocess simulates the paper's ground truth
(:func:`nwb_facrnn.synthetic.make_lowrank_rnn_dataset`, G = 2 groups of rank H = 3) at that
size, fits ``FacRNN(n_groups=2, group_rank=3)`` with its defaults (the step budget: 100 epochs
or 2000 steps, whichever comes first; successive halving of the 4 restarts) and reports

* the fit time (initialisation included) and the training samples per second,
* the peak resident memory of the process during the fit (``VmHWM``, reset after the
  simulation) next to the float32 activity array,
* the group latent R^2 of the fitted latents against the true ones.

Combinations whose activity array would not fit in a quarter of the machine's memory are
skipped.  Rows are printed as they finish and written to ``<output-dir>/scale.csv``, with a
figure ``<output-dir>/scale.png`` (fit time and samples/s against T, one line per N).

Run:  python benchmarks/scale.py [--T 2000 20000 200000 900000] [--N 20 200 1000]
                                 [--output-dir docs] [--threads 2]

Still to come (issue 17): the end-to-end read -> fit -> write of a 900 000-frame x 300-ROI
voltage-imaging NWB session, and a fit whose activity is read lazily, chunk by chunk.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np


def hwm():  # peak resident memory of this process (MB)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


T, N = int(sys.argv[1]), int(sys.argv[2])
from nwb_facrnn import FacRNN, metrics
from nwb_facrnn.synthetic import make_lowrank_rnn_dataset

data = make_lowrank_rnn_dataset(n_neurons=N, n_steps=T, seed=0)
x, u, z = data.x, data.u, data.z
del data
try:  # start the high-water mark afresh: the fit's peak, not the simulation's
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
except OSError:
    pass
base = hwm()
start = time.perf_counter()
model = FacRNN(n_groups=2, group_rank=3, seed=0, progress=False).fit(x, u)
fit_time = time.perf_counter() - start
r2 = metrics.group_latent_r2(z, model.transform(x, u), 2).mean
print(json.dumps({
    "T": T, "N": N, "fit_s": fit_time, "steps": model.n_steps_, "epochs": model.n_epochs_,
    "samples_per_s": model.samples_per_second_, "group_latent_r2": float(r2),
    "peak_rss_mb": hwm(), "rss_before_fit_mb": base, "activity_mb": x.nbytes / 1e6,
}))
"""


def memory_mb() -> float:
    """Total memory of the machine (MB)."""
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def run(t: int, n: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(t), str(n)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"T={t} N={n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for n in sorted({r["N"] for r in rows}):
        sub = sorted((r for r in rows if r["N"] == n), key=lambda r: r["T"])
        ts = [r["T"] for r in sub]
        axes[0].plot(ts, [r["fit_s"] for r in sub], "o-", label=f"N = {n}")
        axes[1].plot(ts, [r["samples_per_s"] for r in sub], "o-", label=f"N = {n}")
    for ax, label in zip(axes, ("fit time (s)", "training samples/s"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("recording length T (bins)")
        ax.set_ylabel(label)
        ax.legend(frameon=False)
    axes[0].set_yscale("log")
    fig.suptitle("Default FacRNN fit (G = 2, H = 3) against T and N")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, nargs="+", default=[2000, 20000, 200000, 900000])
    parser.add_argument("--N", type=int, nargs="+", default=[20, 200, 1000])
    parser.add_argument("--output-dir", type=Path, default=Path("docs"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    budget = memory_mb() / 4
    rows = []
    print(f"{'T':>8} {'N':>5} {'fit (s)':>8} {'steps':>6} {'samples/s':>10} "
          f"{'peak RSS (MB)':>14} {'activity (MB)':>14} {'group R2':>9}")  # fmt: skip
    for t in args.T:
        for n in args.N:
            if t * n * 4 / 1e6 * 8 > budget:  # the simulation holds several T x N arrays
                print(f"{t:>8} {n:>5}  skipped: over a quarter of the machine's memory")
                continue
            r = run(t, n, args.threads)
            rows.append(r)
            print(
                f"{t:>8} {n:>5} {r['fit_s']:>8.1f} {r['steps']:>6} {r['samples_per_s']:>10,.0f} "
                f"{r['peak_rss_mb']:>14,.0f} {r['activity_mb']:>14,.1f} "
                f"{r['group_latent_r2']:>9.3f}",
                flush=True,
            )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / "scale.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.output_dir / "scale.png")
    print(f"table: {out}\nfigure: {args.output_dir / 'scale.png'}")


if __name__ == "__main__":
    main()
