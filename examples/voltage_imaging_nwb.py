"""Fit FacRNN to the ROI traces of a voltage-imaging NWB session and check its groups.

The script writes a synthetic one-photon voltage-imaging session (OnePhotonSeries movie,
PlaneSegmentation with an image mask per soma, Fluorescence and DfOverF traces) whose ROIs
are driven by two independent latent groups, reads the dF/F of the accepted ROIs, fits
FacRNN and compares the fitted groups with the ground truth.

Run:  python examples/voltage_imaging_nwb.py [--output-dir results/examples]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from nwb_facrnn import FacRNN, read_nwb
from nwb_facrnn.metrics import group_latent_r2
from nwb_facrnn.synthetic import make_imaging_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("results/examples"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    path = args.output_dir / "voltage_imaging.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynwb's dtype-conversion notices
        truth = make_imaging_session(path, seed=args.seed, overwrite=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB)")

    data = read_nwb(path, series="DfOverF", rois={"accepted": True})
    print(data)
    model = FacRNN(n_groups=2, group_rank=3, seed=args.seed).fit(data)

    alignment = group_latent_r2(truth.z, model.transform(data), 2)
    print(f"group latent R² per true group: {np.round(alignment.per_group, 3).tolist()}")
    # each ROI's dominant fitted group: the largest norm of its output loadings
    loadings = model.output_loadings_.reshape(data.n_units, 2, 3)
    dominant = np.linalg.norm(loadings, axis=2).argmax(axis=1)
    true_of_fitted = np.empty(2, dtype=int)
    true_of_fitted[alignment.assignment] = np.arange(2)
    match = np.mean(true_of_fitted[dominant] == truth.roi_groups[truth.accepted])
    print(f"ROIs whose dominant fitted group is their true group: {match:.0%}")


if __name__ == "__main__":
    main()
