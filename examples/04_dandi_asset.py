"""Fit FacRNN to a DANDI asset streamed from the archive, without downloading the file, and
decode hand velocity from its latents.

The default source is MC_Maze, the Neural Latents Benchmark's reaching session on the
public DANDI archive (dandiset 000128)::

    DANDI:000128/sub-Jenkins/sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb

``read_nwb`` resolves the asset through the DANDI API and reads it over HTTP in ranged
requests of 1 MiB blocks: only the Units table (spike times, obs_intervals, the ``heldout``
column), the trials and the hand velocity are fetched, and every block is kept in the
on-disk cache (``NWB_FACRNN_CACHE_DIR``, else ``~/.cache/nwb-facrnn/http``), so a second run
fetches nothing.  The script bins the held-in units in 20 ms bins, -250..+450 ms around
movement onset, fits a Poisson FacRNN (2 groups of rank 3), decodes hand velocity from the
latents (ridge regression, 5-fold cross-validated over trials) and writes the results to
a standalone local NWB file, ``<output-dir>/<asset name>_facrnn.nwb`` (a remote file cannot
be written in place): the session's metadata, the trials, a copy of the Units table the
results link to, and the results, whose provenance names the dandiset, version, asset path,
asset id and digest.

Run (needs the internet)::

    python examples/04_dandi_asset.py [--output-dir results/examples] [--seed 0] [--quick]
        [--source DANDI:<dandiset>/<path>.nwb] [--dandi-api-url URL]

``--source`` takes any form ``read_nwb`` streams (``DANDI:000128@<version>/<path>``, a
DANDI archive, ``dandi://`` or asset download URL, an https URL) or a local path; it must
hold a Units table, trials with ``move_onset_time`` and a ``hand_vel`` series.
``--dandi-api-url`` chooses another DANDI instance (default: the environment variable
``DANDI_API_URL``, else the public archive); the tests point it at a local DANDI-like
server.  ``--seed`` seeds the fit and the decoding folds.  ``--quick`` fits the first 200
trials only, for 30 epochs instead of 100 (the whole session is still read: the spike
times are one array).  The full MC_Maze fit (about 2300 trials of 137 held-in units) takes
many minutes on a CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path, PurePosixPath

from nwb_facrnn import FacRNN, read_nwb, read_results, write_results
from nwb_facrnn.metrics import decoding_r2

MC_MAZE = "DANDI:000128/sub-Jenkins/sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb"
QUICK_TRIALS = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("results/examples"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"the first {QUICK_TRIALS} trials, 30 epochs instead of 100",
    )
    parser.add_argument("--source", default=MC_MAZE, help=f"default: {MC_MAZE}")
    parser.add_argument(
        "--dandi-api-url",
        default=os.environ.get("DANDI_API_URL"),
        help="the DANDI instance's API (default: $DANDI_API_URL, else the public archive)",
    )
    args = parser.parse_args()
    start = time.perf_counter()

    data = read_nwb(
        args.source,
        bin_size=0.02,
        align="move_onset_time",
        window=(-0.25, 0.45),
        units={"heldout": False},
        behavior="hand_vel",
        dandi_api_url=args.dandi_api_url,
    )
    remote = data.provenance.get("remote")
    print(f"read {data.provenance['source']}")
    if remote is not None:
        size = remote["size"] or 0
        share = f" = {remote['bytes_fetched'] / size:.1%} of the file" if size else ""
        print(
            f"streamed {remote['bytes_fetched'] / 1e6:.2f} MB of {size / 1e6:.1f} MB{share} "
            f"({remote['cache_hits']} block(s) from the cache) in "
            f"{time.perf_counter() - start:.1f} s"
        )
    print(data)
    if args.quick and data.n_trials > QUICK_TRIALS:
        data = data.select_trials(slice(0, QUICK_TRIALS))
        print(f"--quick: the first {QUICK_TRIALS} trials")

    model = FacRNN(
        n_groups=2,
        group_rank=3,
        observation="poisson",
        smoothing=2.0,
        max_epochs=30 if args.quick else 100,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    model.fit(data)
    print(f"fit: {data.n_trials} trials, {model.n_epochs_} epochs in {model.fit_time_:.1f} s")
    z = model.transform(data)
    decoding = decoding_r2(z, data.behavior["hand_vel"], seed=args.seed)
    per_dim = ", ".join(f"{v:.3f}" for v in decoding.r2_per_dim)
    print(
        f"hand velocity decoded from the latents (5-fold over trials): R² = {decoding.r2:.3f} "
        f"(x, y: {per_dim})"
    )

    # a remote file cannot be written in place: a standalone local file, named after the asset
    asset = (remote or {}).get("dandi", {}).get("path") or str(args.source).split("?")[0]
    stem = PurePosixPath(asset).name.removesuffix(".nwb")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / f"{stem}_facrnn.nwb"
    out.unlink(missing_ok=True)  # an earlier run's results
    write_results(model, data, out)  # scores the fit: hand_vel_decoding_r2 among them
    res = read_results(out)
    print(
        f"results: {out} ({out.stat().st_size / 1e6:.1f} MB; {res.object_path}: latents "
        f"{res.latents.shape}, {len(res.unit_ids)} units of {res.unit_table})"
    )
    dandi = res.provenance.get("remote", {}).get("dandi") or {}
    if dandi.get("dandiset_id"):
        print(
            f"provenance: DANDI:{dandi['dandiset_id']}@{dandi['version']}/{dandi['path']} "
            f"(asset {dandi['asset_id']}, {dandi['api_url']})"
        )
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
