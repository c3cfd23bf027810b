"""Fit FacRNN to a spiking NWB session laid out like the Neural Latents Benchmark's MC_Maze.

The script writes a synthetic session (Units with spike_times, obs_intervals, electrodes and
heldout; trials with move_onset_time; hand velocity under processing/behavior), reads it
the way one would read MC_Maze, fits a Poisson FacRNN to the held-in units and decodes hand
velocity from the latents on held-out trials.

Run:  python examples/spiking_nwb.py [--output-dir results/examples]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from nwb_facrnn import FacRNN, read_nwb, write_results
from nwb_facrnn.metrics import decoding_r2, group_latent_r2
from nwb_facrnn.synthetic import make_spiking_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("results/examples"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    path = args.output_dir / "mc_maze_like.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynwb's dtype-conversion notices
        truth = make_spiking_session(path, seed=args.seed, n_trials=80, overwrite=True)
    print(f"wrote {path}")

    data = read_nwb(
        path,
        bin_size=0.02,
        align="move_onset_time",
        window=(-0.25, 0.45),
        units={"heldout": False},
        behavior="hand_vel",
    )
    print(data)

    model = FacRNN(n_groups=2, group_rank=3, observation="poisson", smoothing=2.0, seed=args.seed)
    model.fit(data)
    z = model.transform(data)

    decoding = decoding_r2(z, data.behavior["hand_vel"], seed=args.seed)
    print(f"hand velocity decoded from the latents (5-fold over trials): R² = {decoding.r2:.3f}")

    # ground truth: latents on the same bins (mean of the 1 kHz truth in each bin)
    idx = np.clip(np.round(data.timestamps[..., None] * 1000).astype(int) + np.arange(20), 0, None)
    z_true = truth.z[np.minimum(idx, len(truth.z) - 1)].mean(axis=2)
    alignment = group_latent_r2(z_true, z, 2)
    print(f"group latent R² against the ground truth: {alignment.mean:.3f}")

    # the latents, the connectivity linked to the Units table and the model, stored in NWB
    out = path.with_name("mc_maze_like_facrnn.nwb")  # write_results' default output
    out.unlink(missing_ok=True)  # an earlier run's results, made from the session replaced above
    write_results(model, data, out, metrics={"hand_vel_decoding_r2": decoding.r2})
    print(f"results: {out}")


if __name__ == "__main__":
    main()
