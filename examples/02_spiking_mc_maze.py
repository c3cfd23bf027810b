"""Fit FacRNN to a spiking NWB session laid out like MC_Maze and decode hand velocity from
its latents.

The script writes a synthetic session in the layout of the Neural Latents Benchmark's
MC_Maze (``nwb_facrnn.synthetic.make_spiking_session``: a Units table with spike_times,
obs_intervals, electrodes and a ``heldout`` column; trials with ``move_onset_time``; hand
velocity under ``processing/behavior``), reads it the way one reads MC_Maze (20 ms bins,
-250..+450 ms around movement onset, held-in units, hand velocity on the same bins), fits a
Poisson FacRNN (2 groups of rank 3) and reports:

- hand velocity decoded from the latents: ridge regression, 5-fold cross-validated over
  trials (``nwb_facrnn.metrics.decoding_r2``), R² pooled over x and y;
- group latent R² of the fitted latents against the session's ground-truth latents.

The latents, the low-rank connectivity linked to the Units table and the model go into
``<output-dir>/mc_maze_like_facrnn.nwb`` (the session's content plus the results, with
the decoding R² stored among the fit's metrics), which is read back.

Run::

    python examples/02_spiking_mc_maze.py [--output-dir results/examples] [--seed 0] [--quick]

``--seed`` draws the session and seeds the fit.  ``--quick`` writes 60 trials instead of
80 and trains 50 epochs instead of 100 (seconds instead of a minute on 2 cores; decoding
R² about 0.4-0.5 either way).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from nwb_facrnn import FacRNN, read_nwb, read_results, write_results
from nwb_facrnn.metrics import decoding_r2, group_latent_r2
from nwb_facrnn.synthetic import make_spiking_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("results/examples"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="60 trials instead of 80, 50 epochs instead of 100"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    n_trials, epochs = (60, 50) if args.quick else (80, 100)

    path = args.output_dir / "mc_maze_like.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynwb's dtype-conversion notices
        truth = make_spiking_session(path, seed=args.seed, n_trials=n_trials, overwrite=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")

    data = read_nwb(
        path,
        bin_size=0.02,
        align="move_onset_time",
        window=(-0.25, 0.45),
        units={"heldout": False},
        behavior="hand_vel",
    )
    print(data)

    model = FacRNN(
        n_groups=2,
        group_rank=3,
        observation="poisson",
        smoothing=2.0,
        max_epochs=epochs,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    model.fit(data)
    print(f"fit: {model.n_epochs_} epochs in {model.fit_time_:.1f} s")
    z = model.transform(data)

    decoding = decoding_r2(z, data.behavior["hand_vel"], seed=args.seed)
    per_dim = ", ".join(f"{v:.3f}" for v in decoding.r2_per_dim)
    print(
        f"hand velocity decoded from the latents (5-fold over trials): R² = {decoding.r2:.3f} "
        f"(x, y: {per_dim})"
    )

    # ground truth: latents on the same bins (mean of the 1 kHz truth in each bin)
    idx = np.clip(np.round(data.timestamps[..., None] * 1000).astype(int) + np.arange(20), 0, None)
    z_true = truth.z[np.minimum(idx, len(truth.z) - 1)].mean(axis=2)
    alignment = group_latent_r2(z_true, z, 2)
    per_group = ", ".join(f"{v:.3f}" for v in alignment.per_group)
    print(f"group latent R² against the ground truth: {alignment.mean:.3f} ({per_group})")

    # the latents, the connectivity linked to the Units table and the model, stored in NWB
    out = path.with_name("mc_maze_like_facrnn.nwb")  # write_results' default output
    out.unlink(missing_ok=True)  # an earlier run's results, made from the session replaced above
    write_results(model, data, out)  # scores the fit: hand_vel_decoding_r2 among them
    res = read_results(out)
    print(
        f"results: {out} ({res.object_path}: latents {res.latents.shape}, "
        f"{len(res.unit_ids)} units of {res.unit_table})"
    )
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
