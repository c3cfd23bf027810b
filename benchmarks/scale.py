"""How a default FacRNN fit scales with the recording: length T and units N, up to whole sessions.

Three parts, each in fresh subprocesses (``--only`` picks some; all three by default):

**grid** -- for every (T, N) of the grid, a subprocess simulates the paper's ground truth
(G = 2 groups of rank H = 3: the model of
:func:`nwb_facrnn.synthetic.make_lowrank_rnn_dataset`, drawn a chunk of rows at a time by
:class:`_voltage_session.ChunkedTruth` so that T = 900 000 fits in memory; the same ``x``,
``u`` and ``z`` for the same seed), fits ``FacRNN(n_groups=2, group_rank=3)`` with its defaults
(the step budget: 100 epochs or 2000 steps, whichever comes first; successive halving of the 4
restarts) and reports

* the fit time (initialisation included) and the training samples per second,
* the peak resident memory of the process during the fit (``VmHWM``, reset after the
  simulation) next to the float32 activity array, and ``fit_peak_over_activity``: (peak during
  the fit - resident memory before it) / activity (the process also holds the inputs ``u``,
  as large as the activity, through the fit),
* the group latent R^2 of the fitted latents against the true ones.

A combination is skipped (with the reason printed) when its estimated peak (x and u, plus
about twice the activity for the fit) is over ``--memory-fraction`` of the machine's available
memory.  Rows go to ``<output-dir>/scale.csv``, with a figure ``<output-dir>/scale.png``
(fit time and samples/s against T, one line per N).

**end-to-end** -- a synthetic voltage-imaging NWB file (``--e2e-frames`` x ``--e2e-rois``,
default 900 000 frames x 300 ROIs at 1 kHz, float32 dF/F in ``processing/ophys/DfOverF/dff``
from the same kind of ground truth, written without holding the traces in memory:
:func:`_voltage_session.write_voltage_session`) is fit by the command line, ``python -m
nwb_facrnn.cli fit FILE --series dff --output OUT``, in a subprocess: the wall time of the whole
command (read -> fit -> evaluate -> write), its peak resident memory (``ru_maxrss`` of that
child) over the float32 activity, and the group latent R^2 of the latents stored in OUT
(:func:`nwb_facrnn.read_results`) against the true ones.  The same command with ten times the
step budget (``--max-steps`` and ``--max-epochs`` x ``--e2e-long-factor``) tells whether the
default fit is within 0.01 of a fit ten times longer.

**capped** -- a session whose float32 activity (``--capped-frames`` x ``--capped-rois``, default
900 000 x 1000 = 3.6 GB) is larger than the address space the fit may use
(``--capped-limit-mb``, default 3300 MB, set with ``RLIMIT_AS`` in the child, with
``MALLOC_ARENA_MAX=2``): ``--chunked never`` must fail cleanly (its last stderr line is
reported) and ``--chunked auto`` (the default) must fit it by reading it lazily, chunk by chunk.
The cap must leave room for the chunked fit's own working set, which grows with N, not T:
about 2.9 GB of address space (2.3 GB resident) at N = 1000 and 2.1 GB at N = 400.

The end-to-end and capped rows go to ``<output-dir>/scale_end_to_end.csv`` (column ``kind``).
Temporary files (sessions, results) go to a folder under ``--workdir``, deleted at the end.
Timings need an otherwise idle machine: with 2 threads on 2 cores shared with another busy
process, the same fit was seen to take from 35 s to 350 s.

Run:  python benchmarks/scale.py [--T 2000 20000 200000 900000] [--N 20 200 1000]
                                 [--output-dir docs] [--threads 2] [--only grid end-to-end capped]
      (the full run on an idle 2-core CPU: grid 4 min, end-to-end and capped 3.5 min together,
      most of it writing the two sessions)
Small check of every part (a few minutes):
      python benchmarks/scale.py --T 2000 20000 --N 20 --e2e-frames 20000 --e2e-rois 50
                                 --capped-frames 20000 --capped-rois 100 --output-dir /tmp/scale
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("grid", "end-to-end", "capped")

CHILD = r"""
import json, sys, time
import numpy as np


def hwm():  # peak resident memory of this process (MB)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


T, N = int(sys.argv[1]), int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from nwb_facrnn import FacRNN, metrics
from _voltage_session import ChunkedTruth

start = time.perf_counter()
truth = ChunkedTruth.simulate(N, T, seed=0)  # make_lowrank_rnn_dataset's x, u, z, by chunks
x, u = truth.arrays()
z = truth.z
del truth
sim_time = time.perf_counter() - start
try:  # start the high-water mark afresh: the fit's peak, not the simulation's
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
except OSError:
    pass
base = hwm()
start = time.perf_counter()
model = FacRNN(n_groups=2, group_rank=3, seed=0, progress=False).fit(x, u)
fit_time = time.perf_counter() - start
peak = hwm()
r2 = metrics.group_latent_r2(z, model.transform(x, u), 2).mean
print(json.dumps({
    "T": T, "N": N, "fit_s": fit_time, "steps": model.n_steps_, "epochs": model.n_epochs_,
    "samples_per_s": model.samples_per_second_, "group_latent_r2": float(r2),
    "peak_rss_mb": peak, "rss_before_fit_mb": base, "activity_mb": x.nbytes / 1e6,
    "fit_peak_over_activity": (peak - base) / (x.nbytes / 1e6), "simulate_s": sim_time,
}))
"""

#: A grid fit's peak above the simulated x and u, in units of the activity (measured: 1.9
#: at T = 200 000, N = 200, 0.5 at T = 100 000, N = 1000); with x and u the child holds
#: about 4x the activity.
GRID_FIT_FACTOR = 2.0
#: Resident memory of the child before it holds any data (interpreter, torch), MB.
GRID_BASE_MB = 600.0


# --------------------------------------------------------------------------- helpers


def memory_mb(key: str = "MemAvailable") -> float:
    """``MemAvailable`` (or another ``/proc/meminfo`` field) of the machine (MB)."""
    for line in open("/proc/meminfo"):
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def run_measured(
    cmd: list[str], env: dict[str, str], log: Path, limit_mb: float | None = None
) -> dict:
    """Run ``cmd`` to completion, stdout and stderr to ``log`` (``.out``, ``.err``).

    Parameters
    ----------
    cmd : list of str
    env : dict
        The child's environment.
    log : pathlib.Path
        Stem of the two log files.
    limit_mb : float, optional
        Address-space limit of the child (``RLIMIT_AS``), MB.

    Returns
    -------
    dict
        ``exit_code`` (negative: killed by that signal), ``wall_s``, ``peak_rss_mb`` (the
        child's own ``ru_maxrss``), ``stdout`` and ``stderr``.
    """

    def limit() -> None:
        cap = int(limit_mb * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    out, err = log.with_suffix(".out"), log.with_suffix(".err")
    with open(out, "w") as fo, open(err, "w") as fe:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=fo, stderr=fe, env=env, preexec_fn=limit if limit_mb else None
        )
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit_code": proc.returncode,
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "stdout": out.read_text(errors="replace"),
        "stderr": err.read_text(errors="replace"),
    }


def child_env(threads: int, **extra: str) -> dict[str, str]:
    """The environment of a measured child: ``threads`` BLAS/torch threads, no colours."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NO_COLOR": "1", "COLUMNS": "120"}
    env.update(extra)
    return env


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (progress bars' carriage returns split too)."""
    lines = [s.strip() for s in re.split(r"[\r\n]+", text) if s.strip()]
    return lines[-1] if lines else ""


def cli_has_chunked() -> bool:
    """Whether ``nwb_facrnn.cli fit`` has the ``--chunked`` option."""
    proc = subprocess.run(
        [sys.executable, "-m", "nwb_facrnn.cli", "fit", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env=child_env(1),
    )
    return "--chunked" in proc.stdout


def default_budget() -> tuple[int, int]:
    """FacRNN's default step budget: (epochs, steps)."""
    try:
        from nwb_facrnn.model.training import DEFAULT_EPOCHS, DEFAULT_STEPS
    except ImportError:  # pragma: no cover - older layouts
        return 100, 2000
    return DEFAULT_EPOCHS, DEFAULT_STEPS


def latent_r2(out: Path, z_path: Path, rate: float) -> tuple[float, int]:
    """Group latent R^2 of the fit stored in ``out`` against the true latents (``.npy``,
    one row per frame), and the number of bins compared."""
    import numpy as np

    from nwb_facrnn import metrics, read_results

    res = read_results(out)
    z = np.load(z_path, mmap_mode="r")
    frame = np.rint(np.asarray(res.timestamps) * rate - 0.5).astype(np.int64)  # bin centres
    if frame.min() < 0 or frame.max() >= len(z) or len(np.unique(frame)) != len(frame):
        raise RuntimeError(f"{out}: latent timestamps do not map one to one onto frames")
    r2 = metrics.group_latent_r2(np.asarray(z[frame]), res.latents, 2).mean
    return float(r2), len(frame)


def table_value(stdout: str, label: str) -> str:
    """A value of the CLI's fit table (``label`` is the row's first cell), or ""."""
    match = re.search(rf"{re.escape(label)}\s*[│|]\s*([^│|\n]+?)\s*[│|]", stdout)
    return match.group(1) if match else ""


# --------------------------------------------------------------------------- grid


def run_grid_child(t: int, n: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(t), str(n), str(HERE)],
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
    import matplotlib.ticker

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
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axes[0].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[0].yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[1].set_ylim(bottom=0)
    axes[0].legend(frameon=False, loc="upper left")
    fig.suptitle("Default FacRNN fit (G = 2, H = 3) against T and N")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def grid(args: argparse.Namespace) -> None:
    """The (T, N) grid: ``scale.csv`` and ``scale.png``."""
    rows = []
    print(f"{'T':>8} {'N':>5} {'fit (s)':>8} {'steps':>6} {'samples/s':>10} {'peak RSS (MB)':>14} "
          f"{'activity (MB)':>14} {'fit/act':>8} {'group R2':>9}")  # fmt: skip
    for t in args.T:
        for n in args.N:
            act = t * n * 4 / 1e6
            need = GRID_BASE_MB + act * (2 + GRID_FIT_FACTOR)
            avail = memory_mb()
            if need > args.memory_fraction * avail:
                print(
                    f"{t:>8} {n:>5}  skipped: needs about {need:,.0f} MB (x and u, "
                    f"{act:,.0f} MB each, and the fit), over {args.memory_fraction:g} of the "
                    f"{avail:,.0f} MB available"
                )
                continue
            r = run_grid_child(t, n, args.threads)
            rows.append(r)
            print(
                f"{t:>8} {n:>5} {r['fit_s']:>8.1f} {r['steps']:>6} {r['samples_per_s']:>10,.0f} "
                f"{r['peak_rss_mb']:>14,.0f} {r['activity_mb']:>14,.1f} "
                f"{r['fit_peak_over_activity']:>8.2f} {r['group_latent_r2']:>9.3f}",
                flush=True,
            )
    if not rows:
        print("grid: no row ran; scale.csv left as it is")
        return
    out = args.output_dir / "scale.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.output_dir / "scale.png")
    print(f"table: {out}\nfigure: {args.output_dir / 'scale.png'}")


# --------------------------------------------------------------------------- NWB sessions

E2E_FIELDS = [
    "kind", "frames", "rois", "activity_mb", "chunked", "max_steps", "max_epochs", "limit_mb",
    "exit_code", "wall_s", "fit_s", "steps", "peak_rss_mb", "import_rss_mb",
    "peak_over_activity", "peak_minus_import_over_activity", "group_latent_r2",
    "r2_vs_long", "bins_scored", "write_session_s", "last_stderr",
]  # fmt: skip


def write_session(workdir: Path, frames: int, rois: int, rate: float) -> tuple[Path, Path, float]:
    """Write a voltage-imaging session and its true latents; (nwb, z.npy, seconds)."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from _voltage_session import write_voltage_session

    path = workdir / f"voltage_{frames}x{rois}.nwb"
    start = time.perf_counter()
    z = write_voltage_session(path, frames, rois, rate=rate)
    seconds = time.perf_counter() - start
    z_path = path.with_suffix(".z.npy")
    np.save(z_path, z)
    size = path.stat().st_size / 1e6
    print(f"session: {path.name}, {frames} frames x {rois} ROIs, {size:,.0f} MB on disk, "
          f"written in {seconds:.1f} s", flush=True)  # fmt: skip
    return path, z_path, seconds


def import_rss(threads: int, workdir: Path) -> float:
    """Peak resident memory (MB) of a child that only imports what ``fit`` uses."""
    code = "import torch, pynwb, h5py, nwb_facrnn.pipeline, nwb_facrnn.model, nwb_facrnn.cli"
    r = run_measured([sys.executable, "-c", code], child_env(threads), workdir / "imports")
    return r["peak_rss_mb"]


def fit_cli(
    kind: str,
    session: Path,
    z_path: Path,
    workdir: Path,
    args: argparse.Namespace,
    *,
    extra: list[str],
    base_mb: float,
    limit_mb: float | None = None,
    chunked: str = "",
) -> dict:
    """One ``nwb_facrnn.cli fit`` of ``session`` in a measured child: its row."""
    out = workdir / f"{kind}_facrnn.nwb"
    cmd = [sys.executable, "-m", "nwb_facrnn.cli", "fit", str(session), "--series", "dff",
           "--output", str(out), *(["--chunked", chunked] if chunked else []), *extra]  # fmt: skip
    env = child_env(args.threads, **({"MALLOC_ARENA_MAX": "2"} if limit_mb else {}))
    r = run_measured(cmd, env, workdir / kind, limit_mb)
    frames, rois = (int(v) for v in session.stem.split("_")[1].split("x"))
    act = frames * rois * 4 / 1e6
    opt = dict(zip(extra[::2], extra[1::2], strict=True))
    row = {
        "kind": kind,
        "frames": frames,
        "rois": rois,
        "activity_mb": act,
        "chunked": chunked or "(default)",
        "max_steps": opt.get("--max-steps", "(default)"),
        "max_epochs": opt.get("--max-epochs", "(default)"),
        "limit_mb": limit_mb or "",
        "exit_code": r["exit_code"],
        "wall_s": r["wall_s"],
        "fit_s": table_value(r["stdout"], "fit time (s)"),
        "steps": table_value(r["stdout"], "steps (epochs)"),
        "peak_rss_mb": r["peak_rss_mb"],
        "import_rss_mb": base_mb,
        "peak_over_activity": r["peak_rss_mb"] / act,
        "peak_minus_import_over_activity": (r["peak_rss_mb"] - base_mb) / act,
        "group_latent_r2": math.nan,
        "bins_scored": "",
        "last_stderr": last_line(r["stderr"]) if r["exit_code"] else "",
    }
    if r["exit_code"] == 0:
        row["group_latent_r2"], row["bins_scored"] = latent_r2(out, z_path, args.rate)
    return row


def print_header() -> None:
    print(f"{'kind':<14} {'frames x ROIs':>15} {'act (MB)':>9} {'chunked':>9} {'cap (MB)':>8} "
          f"{'exit':>4} {'wall (s)':>8} {'fit (s)':>7} {'peak (MB)':>9} {'peak/act':>8} "
          f"{'group R2':>8}")  # fmt: skip


def print_row(r: dict) -> None:
    r2 = r["group_latent_r2"]
    print(
        f"{r['kind']:<14} {r['frames']:>8} x {r['rois']:<4} {r['activity_mb']:>9,.0f} "
        f"{r['chunked']:>9} {r['limit_mb'] or '-':>8} {r['exit_code']:>4} "
        f"{r['wall_s']:>8.1f} {r['fit_s'] or '-':>7} {r['peak_rss_mb']:>9,.0f} "
        f"{r['peak_over_activity']:>8.2f} {'-' if math.isnan(r2) else f'{r2:.3f}':>8}",
        flush=True,
    )
    if r["last_stderr"]:
        print(f"{'':<14} stderr: {r['last_stderr']}")


def end_to_end(args: argparse.Namespace, workdir: Path, base_mb: float, rows: list) -> None:
    """The voltage-imaging session, read -> fit -> write by the CLI, and a fit 10x longer."""
    session, z_path, write_s = write_session(workdir, args.e2e_frames, args.e2e_rois, args.rate)
    epochs, steps = default_budget()
    f = args.e2e_long_factor
    chunked = args.e2e_chunked or ""
    runs = [
        ("e2e", []),
        (f"e2e-{f}x-steps", ["--max-steps", str(f * steps), "--max-epochs", str(f * epochs)]),
    ]
    new = []
    print_header()
    for kind, extra in runs:
        row = fit_cli(
            kind, session, z_path, workdir, args, extra=extra, base_mb=base_mb, chunked=chunked
        )
        row["write_session_s"] = write_s
        new.append(row)
        print_row(row)
    if all(r["exit_code"] == 0 for r in new):
        gap = new[0]["group_latent_r2"] - new[1]["group_latent_r2"]
        new[0]["r2_vs_long"] = gap
        verdict = "within" if abs(gap) <= 0.01 else "NOT within"
        print(f"group latent R^2 {new[0]['group_latent_r2']:.4f} vs {new[1]['group_latent_r2']:.4f}"
              f" for {f}x the steps: {verdict} 0.01 ({gap:+.4f})")  # fmt: skip
    r = new[0]
    print(f"end-to-end: {r['wall_s']:.1f} s (target <= 180), peak {r['peak_rss_mb']:,.0f} MB = "
          f"{r['peak_over_activity']:.2f} x the {r['activity_mb']:,.0f} MB activity (target <= 3;"
          f" {r['peak_minus_import_over_activity']:.2f} x above the {base_mb:,.0f} MB of the "
          "imports)")  # fmt: skip
    rows.extend(new)
    session.unlink()


def capped(args: argparse.Namespace, workdir: Path, base_mb: float, rows: list) -> None:
    """A session larger than the child's address space: never fails, auto reads lazily."""
    if not cli_has_chunked():
        print("capped: skipped: the CLI has no --chunked")
        return
    act = args.capped_frames * args.capped_rois * 4 / 1e6
    cap = args.capped_limit_mb
    if cap >= act:
        print(f"capped: note: the cap ({cap:,.0f} MB) is not below the activity ({act:,.0f} MB) "
              "at this size, so this run does not show a fit larger than its memory")  # fmt: skip
    session, z_path, write_s = write_session(
        workdir, args.capped_frames, args.capped_rois, args.rate
    )
    print_header()
    for mode in ("never", "auto"):
        row = fit_cli(
            f"capped-{mode}",
            session,
            z_path,
            workdir,
            args,
            extra=[],
            base_mb=base_mb,
            limit_mb=cap,
            chunked=mode,
        )
        row["write_session_s"] = write_s
        expected = (row["exit_code"] != 0) == (mode == "never" and cap < act)
        print_row(row)
        if not expected:
            print(f"{'':<14} unexpected: --chunked {mode} exited with {row['exit_code']}")
        rows.append(row)
    session.unlink()


def sessions(args: argparse.Namespace, parts: set[str]) -> None:
    """The end-to-end and capped parts: ``scale_end_to_end.csv``."""
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="facrnn-scale-", dir=args.workdir))
    rows: list[dict] = []
    try:
        base_mb = import_rss(args.threads, workdir)
        print(f"imports alone (torch, pynwb, nwb_facrnn): {base_mb:,.0f} MB resident")
        if "end-to-end" in parts:
            end_to_end(args, workdir, base_mb, rows)
        if "capped" in parts:
            capped(args, workdir, base_mb, rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not rows:
        return
    out = args.output_dir / "scale_end_to_end.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=E2E_FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    print("\nend-to-end and capped fits:")
    print_header()
    for row in rows:
        print_row(row)
    print(f"table: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="the parts to run (default: all three)",
    )
    parser.add_argument("--T", type=int, nargs="+", default=[2000, 20000, 200000, 900000])
    parser.add_argument("--N", type=int, nargs="+", default=[20, 200, 1000])
    parser.add_argument(
        "--memory-fraction",
        type=float,
        default=0.8,
        help="grid: skip sizes needing more of the available memory",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("docs"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the temporary sessions and results go",
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="frames per second")
    parser.add_argument("--e2e-frames", type=int, default=900_000)
    parser.add_argument("--e2e-rois", type=int, default=300)
    parser.add_argument(
        "--e2e-long-factor",
        type=int,
        default=10,
        help="the longer fit's step and epoch budget over the default's",
    )
    parser.add_argument(
        "--e2e-chunked",
        choices=["auto", "always", "never"],
        help="--chunked of the end-to-end fits (default: the CLI's own)",
    )
    parser.add_argument("--capped-frames", type=int, default=900_000)
    parser.add_argument("--capped-rois", type=int, default=1000)
    parser.add_argument(
        "--capped-limit-mb",
        type=float,
        default=3300.0,
        help="address-space limit of the capped fits (MB)",
    )
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    parts = set(args.only)
    if "grid" in parts:
        grid(args)
    if parts & {"end-to-end", "capped"}:
        sessions(args, parts)


if __name__ == "__main__":
    main()
