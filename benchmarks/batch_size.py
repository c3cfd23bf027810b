"""Minibatch size: FacRNN's quality on the paper's problem and its throughput on long data.

Prints, for each batch size (``--batch-sizes``, default 128 / 256 / 512; 128 is the default):

1. the paper's synthetic benchmark for FacRNN alone (T = 2000, N = 20, G = 2, H = 3, fit on
   the even steps, scored on the odd ones, seeds 0-4; :func:`nwb_facrnn.benchmark.
   evaluate_method`): mean group latent R^2 and sub-connectivity correlation.  The default
   budget there is 100 epochs, so a larger batch also means fewer optimisation steps;
2. a default fit of a long recording (``--long-steps`` bins, N = 200): training samples/s and
   group latent R^2.

Run: ``.venv/bin/python benchmarks/batch_size.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from nwb_facrnn import FacRNN, metrics
from nwb_facrnn.benchmark import evaluate_method
from nwb_facrnn.synthetic import make_lowrank_rnn_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..n-1 of the benchmark")
    parser.add_argument("--long-steps", type=int, default=200_000, help="0 skips part 2")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n")
    print(f"1. FacRNN on the paper's problem, held-out steps, seeds 0-{args.seeds - 1}")
    for size in args.batch_sizes:
        rows = [evaluate_method("FacRNN", s, batch_size=size) for s in range(args.seeds)]
        r2 = np.array([r.group_latent_r2 for r in rows])
        sub = np.array([r.subconnectivity_corr for r in rows])
        print(
            f"   batch {size:4d}: group latent R^2 {r2.mean():.3f} +- {r2.std(ddof=1):.3f}, "
            f"sub-connectivity {sub.mean():.3f} +- {sub.std(ddof=1):.3f}"
        )
    if args.long_steps:
        print(f"\n2. default fit on a long recording (T = {args.long_steps}, N = 200)")
        data = make_lowrank_rnn_dataset(n_neurons=200, n_steps=args.long_steps, seed=0)
        for size in args.batch_sizes:
            model = FacRNN(n_groups=2, group_rank=3, batch_size=size, seed=0, progress=False)
            model.fit(data.x, data.u)
            r2 = metrics.group_latent_r2(data.z, model.transform(data.x, data.u), 2).mean
            print(
                f"   batch {size:4d}: {model.samples_per_second_:8.0f} samples/s, "
                f"{model.n_steps_} steps, fit {model.fit_time_:5.1f} s, group latent R^2 {r2:.3f}"
            )


if __name__ == "__main__":
    main()
