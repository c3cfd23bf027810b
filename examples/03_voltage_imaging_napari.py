"""Fit FacRNN to the ROI traces of a voltage-imaging NWB session and check its groups.

The script writes a synthetic one-photon voltage-imaging session (OnePhotonSeries movie,
PlaneSegmentation with an image mask per soma, Fluorescence and DfOverF traces) whose ROIs
are driven by two independent latent groups, reads the dF/F of the accepted ROIs, fits
FacRNN, writes the results into NWB next to the session (``voltage_imaging_facrnn.nwb``),
reads them back and compares the fitted groups with the ground truth.

Run:  python examples/voltage_imaging_nwb.py [--output-dir results/examples]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from nwb_facrnn import FacRNN, read_nwb, read_results, write_results
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

    out = path.with_name("voltage_imaging_facrnn.nwb")  # write_results' default output
    out.unlink(missing_ok=True)  # an earlier run's results, made from the session replaced above
    write_results(model, data, out)  # the session's content plus the results; the movie linked
    res = read_results(out)
    print(f"results: {out} ({res.object_path}, {out.stat().st_size / 1e6:.1f} MB)")

    alignment = group_latent_r2(truth.z, res.latents, 2)
    print(f"group latent R² per true group: {np.round(alignment.per_group, 3).tolist()}")
    # each ROI's dominant group, as stored in the file: the group whose contribution to the
    # ROI's drive varies most
    true_of_fitted = np.empty(2, dtype=int)
    true_of_fitted[alignment.assignment] = np.arange(2)
    true_groups = truth.roi_groups[np.searchsorted(truth.roi_ids, res.unit_ids)]
    match = np.mean(true_of_fitted[res.dominant_group] == true_groups)
    print(f"ROIs whose dominant fitted group is their true group: {match:.0%}")


if __name__ == "__main__":
    main()
