"""Fit speed on the paper's synthetic configuration (T = 2000, N = 20, K = 6).

Prints
1. training steps per second at batch size 128 (one model copy, and all
   ``n_init`` restarts batched together), with and without the
   partial-correlation penalty;
2. the wall time of a default ``FacRNN(n_groups=2, group_rank=3, beta=20)``
   fit, initialisation included, with the held-out group latent R^2 it reaches,
   for several seeds;
3. the quality reached with fewer or more epochs, to show the default sits on
   the plateau ("final quality");
4. the training throughput of a default fit on a long recording (``--long-steps``
   time bins; N = 20, 200 and 1000 units; K = 6 and 12 latents, groups of rank 3):
   ``samples_per_second_`` (training samples seen per second of training) and the
   group latent R^2 it reaches.

Run: ``.venv/bin/python benchmarks/fit_speed.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nwb_facrnn import FacRNN, metrics
from nwb_facrnn.model.data import as_sequences, inputs_like, make_transitions
from nwb_facrnn.model.linear_start import load_copy, reduced_rank_regression
from nwb_facrnn.model.training import Objective
from nwb_facrnn.synthetic import make_lowrank_rnn_dataset


def steps_per_second(
    n_copies: int, beta: float, batch_size: int = 128, n_steps: int = 400
) -> float:
    data = make_lowrank_rnn_dataset(seed=0)
    seqs = as_sequences(data.x)
    trans = make_transitions(seqs, inputs_like(data.u, seqs), None, torch.device("cpu"))
    model = FacRNN(n_init=n_copies)
    model.n_features_in_ = data.n_neurons
    module = model._new_module(n_copies)
    base = reduced_rank_regression(module, trans, 6)
    for r in range(n_copies):
        load_copy(module, r, base)
    objective = Objective(
        sigma=len(trans) ** -0.1, dataset_size=len(trans), pc_groups=2, bd_groups=2, beta=beta
    )
    opt = torch.optim.Adam(module.parameters(), lr=3e-3, fused=True)
    gen = torch.Generator().manual_seed(0)
    batches = [
        trans.subset(torch.randperm(len(trans), generator=gen)[:batch_size]) for _ in range(8)
    ]

    def step(i: int) -> None:
        terms = objective.terms(module, batches[i % 8], gen)
        opt.zero_grad(set_to_none=True)
        terms[0].sum().backward()
        opt.step()

    for i in range(20):
        step(i)
    start = time.perf_counter()
    for i in range(n_steps):
        step(i)
    return n_steps / (time.perf_counter() - start)


def timed_fit(seed: int, **params) -> tuple[float, float, int]:
    data = make_lowrank_rnn_dataset(seed=seed)
    train = np.arange(data.n_steps) % 2 == 0
    model = FacRNN(n_groups=2, group_rank=3, beta=20.0, seed=seed, progress=False, **params)
    start = time.perf_counter()
    model.fit(data.x, data.u, step_mask=train)
    elapsed = time.perf_counter() - start
    z = model.transform(data.x)[~train]
    return elapsed, metrics.group_latent_r2(data.z[~train], z, 2).mean, model.n_epochs_


def long_fit(n_neurons: int, n_steps: int, n_groups: int = 2) -> tuple[float, float, float]:
    """Samples/s, fit time and group latent R^2 of a default fit on a long recording."""
    data = make_lowrank_rnn_dataset(
        n_groups=n_groups, group_rank=3, n_neurons=n_neurons, n_steps=n_steps, seed=0
    )
    model = FacRNN(n_groups=n_groups, group_rank=3, seed=0, progress=False)
    model.fit(data.x, data.u)
    r2 = metrics.group_latent_r2(data.z, model.transform(data.x, data.u), n_groups).mean
    return model.samples_per_second_, model.fit_time_, r2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the default fit")
    parser.add_argument(
        "--long-steps",
        type=int,
        default=200_000,
        help="time bins of the long recording of section 4 (0 skips it)",
    )
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n")
    print("1. training steps per second, batch size 128")
    for beta, label in ((20.0, "FacRNN (beta=20)"), (0.0, "lrRNN (beta=0)")):
        for copies in (1, FacRNN().n_init):
            rate = steps_per_second(copies, beta)
            print(f"   {label:18s} {copies} restart(s) batched: {rate:7.0f} steps/s")
    print("\n2. default fit (n_init=4, max_epochs=100), initialisation included")
    times, r2s = [], []
    timed_fit(0, max_epochs=1)  # warm up imports and allocator
    for seed in range(args.seeds):
        elapsed, r2, epochs = timed_fit(seed)
        times.append(elapsed)
        r2s.append(r2)
        print(
            f"   seed {seed}: {elapsed:5.1f} s, {epochs} epochs, held-out group latent R^2 {r2:.3f}"
        )
    print(f"   mean {np.mean(times):.1f} s (max {np.max(times):.1f} s), R^2 {np.mean(r2s):.3f}")
    print("\n3. quality against epochs (seed 0)")
    for epochs in (1, 25, 50, 100, 300):
        elapsed, r2, _ = timed_fit(0, max_epochs=epochs)
        print(f"   max_epochs={epochs:3d}: {elapsed:5.1f} s, held-out group latent R^2 {r2:.3f}")

    if args.long_steps:
        print(f"\n4. default fit on a long recording (T = {args.long_steps}), training throughput")
        for n_neurons, n_groups in ((20, 2), (200, 2), (200, 4), (1000, 4)):
            rate, elapsed, r2 = long_fit(n_neurons, args.long_steps, n_groups)
            print(
                f"   N={n_neurons:4d} K={3 * n_groups:2d}: {rate:8.0f} samples/s, "
                f"fit {elapsed:5.1f} s (initialisation included), group latent R^2 {r2:.3f}"
            )


if __name__ == "__main__":
    main()
