"""Activity as labs store it: raw fluorescence, dF/F in percent and in fractions, spike
counts at high rates.  ``info`` lists each file and ``fit`` with default options recovers
the ground truth as well as on well-scaled data (the model standardizes what is off
``tanh``'s range and says so in the fit table)."""

from __future__ import annotations

import re
import shutil
import warnings
from datetime import UTC, datetime

import h5py
import numpy as np
import pytest
from cli_process import run_cli

from nwb_facrnn import metrics, read_results

IMAGING_FIT = ["--n-groups", "2", "--group-rank", "3", "--max-epochs", "30", "--n-init", "1"]
IMAGING_FIT += ["--rois", "accepted == True"]


def _standardized(stdout: str) -> str:
    match = re.search(r"standardized\s*│\s*(\w+)", stdout)
    assert match, stdout
    return match.group(1)


def _recovery(out, truth_z, n_groups=2):
    return metrics.group_latent_r2(truth_z, read_results(out).latents, n_groups, n_groups).mean


@pytest.fixture(scope="module")
def imaging(tmp_path_factory):
    """A 2 s, 24-ROI synthetic session (dF/F in fractions, ~0.02) and a copy whose dF/F is
    stored in percent."""
    from nwb_facrnn.synthetic import make_imaging_session

    root = tmp_path_factory.mktemp("scales")
    fractions = root / "fractions.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = make_imaging_session(fractions, seed=0, duration=2.0, n_rois=24)
    percent = root / "percent.nwb"
    shutil.copy(fractions, percent)
    with h5py.File(percent, "a") as f:
        ds = f["processing/ophys/DfOverF/RoiResponseSeries/data"]
        ds[...] = ds[...] * 100
        ds.attrs["unit"] = "percent"
    return {"fractions": fractions, "percent": percent, "truth": truth}


def test_dff_in_percent_fits_as_well_as_in_fractions(imaging, tmp_path):
    truth = imaging["truth"]
    info = run_cli("info", imaging["percent"])
    assert info.returncode == 0 and "DfOverF/RoiResponseSeries" in info.stdout, info.stderr
    fits = {}
    for kind in ("fractions", "percent"):
        out = tmp_path / f"{kind}_fit.nwb"
        proc = run_cli("fit", imaging[kind], "--series", "DfOverF", *IMAGING_FIT, "--output", out)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
        fits[kind] = (_standardized(proc.stdout), _recovery(out, truth.z))
    # fractions around 0.02 are in tanh's working range; percent (max RMS > 3) is not
    assert fits["fractions"][0] == "no" and fits["percent"][0] == "yes"
    assert fits["fractions"][1] > 0.8
    assert fits["percent"][1] == pytest.approx(fits["fractions"][1], abs=0.05)


def test_raw_fluorescence_fits_and_states_its_scaling(imaging, tmp_path):
    out = tmp_path / "raw_fit.nwb"
    proc = run_cli(
        "fit", imaging["fractions"], "--series", "Fluorescence", *IMAGING_FIT, "--output", out
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"standardized\s*│\s*yes \(auto; scale [\d.]+-[\d.]+\)", proc.stdout)
    assert _recovery(out, imaging["truth"].z) > 0.25  # 0.00 when fit unscaled


# ------------------------------------------------------------- spike counts at high rates


def _high_rate_session(path, seed=1):
    """Units firing ~200 Hz: the Poisson FacRNN ground truth's rates (1 spike per bin on
    average) times 10, counted in 50 ms bins, the spikes spread uniformly inside their bins.
    Returns the ground truth."""
    from pynwb import NWBHDF5IO, NWBFile

    from nwb_facrnn.synthetic import make_poisson_dataset

    data = make_poisson_dataset(2, 3, n_neurons=24, n_steps=1000, mean_rate=1.0, seed=seed)
    rng = np.random.default_rng(seed)
    f = NWBFile("high rates", f"high-rates-{seed}", datetime(2024, 1, 1, tzinfo=UTC))
    bin_size = 0.05
    for counts in rng.poisson(10 * data.rates).T:
        starts = np.repeat(np.arange(len(counts)) * bin_size, counts)
        f.add_unit(spike_times=np.sort(starts + rng.uniform(0.001, bin_size - 0.001, len(starts))))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return data


def test_high_rate_spike_counts_fit_by_default(tmp_path):
    path = tmp_path / "fast.nwb"
    data = _high_rate_session(path)
    info = run_cli("info", path)
    assert info.returncode == 0 and "│    24 │" in info.stdout, info.stdout + info.stderr
    args = ["--bin-size", "0.05", "--no-trials", "--max-epochs", "30", "--n-init", "1"]
    recovery = {}
    for mode in ("auto", "never"):
        out = tmp_path / f"fit_{mode}.nwb"
        proc = run_cli("fit", path, *args, "--standardize", mode, "--output", out)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _standardized(proc.stdout) == ("yes" if mode == "auto" else "no")
        latents = read_results(out).latents
        recovery[mode] = metrics.group_latent_r2(data.z[: len(latents)], latents, 2, 2).mean
    # counts near 10 per bin saturate tanh: the standardized encoder reads the dynamics
    # (session seeds 1, 2, 3: 0.71, 0.66, 0.83 against 0.26, 0.33, 0.28 unscaled)
    assert recovery["auto"] > 0.5
    assert recovery["auto"] > recovery["never"] + 0.2
