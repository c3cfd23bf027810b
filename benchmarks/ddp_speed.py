"""Data-parallel training speed: a one-process fit against ``FacRNN(devices=N)`` on the CPU.

A larger problem than the paper's (by default N = 200 units, T = 20 000 steps, batch 1024,
K = 6, four restarts) is fitted twice, once in this process and once with ``devices``
processes (torch.distributed, gloo backend), from the same initialisation and seed.

Prints, for both fits
1. training steps per second (Adam steps over the epochs after the first, timed from the
   per-epoch callbacks, so process start-up and the initialisation are left out);
2. the wall time of ``fit`` (initialisation, spawning the workers and training);
and the largest relative difference between the two fits' loadings, history and latents
(float tolerance: the summation order differs).

Data-parallel training only pays off when every process gets cores (or a GPU) of its own:
on a machine with few cores the processes share them and the collectives add latency,
so expect no speed-up there.  Pass ``--device cuda`` on a machine with ``devices`` GPUs
(nccl backend, rank r on cuda:r).

Run: ``.venv/bin/python benchmarks/ddp_speed.py [--devices 2] [--units 200] [--steps 20000]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from nwb_facrnn import FacRNN
from nwb_facrnn.synthetic import make_lowrank_rnn_dataset


def timed_fit(x: np.ndarray, u: np.ndarray, devices: int, **params) -> tuple[FacRNN, dict]:
    """Fit and time it; returns the model and its timings."""
    stamps: list[float] = []
    model = FacRNN(**params, devices=devices)
    start = time.perf_counter()
    model.fit(x, u, callback=lambda epoch, terms: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - start
    n = model.n_samples_
    steps_per_epoch = max(1, -(-n // model.batch_size))
    steady = (len(stamps) - 1) * steps_per_epoch / (stamps[-1] - stamps[0])
    return model, {"wall_s": wall, "steps_per_s": steady, "first_epoch_at_s": stamps[0] - start}


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |a|."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2, help="processes of the parallel fit")
    parser.add_argument("--units", type=int, default=200, help="N, neurons")
    parser.add_argument("--steps", type=int, default=20_000, help="T, time steps")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-init", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for N GPUs")
    args = parser.parse_args()

    data = make_lowrank_rnn_dataset(n_neurons=args.units, n_steps=args.steps, seed=0)
    params = {
        "n_groups": 2,
        "group_rank": 3,
        "beta": 20.0,
        "n_init": args.n_init,
        "max_epochs": args.epochs,
        "batch_size": args.batch_size,
        "device": args.device,
        "progress": False,
        "seed": 0,
    }
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU(s), {torch.get_num_threads()} "
        f"intra-op thread(s) in this process (each of the {args.devices} workers gets "
        f"{max(1, torch.get_num_threads() // args.devices)}), device {args.device}"
    )
    print(
        f"N = {args.units} units, T = {args.steps} steps, batch {args.batch_size}, "
        f"K = 6, n_init = {args.n_init}, {args.epochs} epochs\n"
    )
    one, t1 = timed_fit(data.x, data.u, 1, **params)
    par, tn = timed_fit(data.x, data.u, args.devices, **params)
    print(f"{'':>12} {'steps/s':>9} {'fit wall (s)':>13} {'1st epoch done at (s)':>22}")
    for label, t in (("1 process", t1), (f"{args.devices} processes", tn)):
        print(
            f"{label:>12} {t['steps_per_s']:9.2f} {t['wall_s']:13.1f} {t['first_epoch_at_s']:22.1f}"
        )
    print(f"\nspeed-up of the training steps: {tn['steps_per_s'] / t1['steps_per_s']:.2f}x")
    print("largest relative difference, parallel vs one process:")
    print(f"  output loadings A  {max_rel_diff(one.output_loadings_, par.output_loadings_):.2e}")
    print(f"  input loadings B   {max_rel_diff(one.input_loadings_, par.input_loadings_):.2e}")
    print(f"  history (total)    {max_rel_diff(one.history_['total'], par.history_['total']):.2e}")
    z1, zn = one.transform(data.x), par.transform(data.x)
    print(f"  latents            {max_rel_diff(z1, zn):.2e}")


if __name__ == "__main__":
    main()
