"""write_results / read_results / FacRNN.from_nwb: FacRNN results stored in NWB and read back."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import tree_sha256 as _sha256

from nwb_facrnn import FacRNN, read_nwb, read_results, write_results
from nwb_facrnn.io.backend import open_io
from nwb_facrnn.synthetic import make_imaging_session, make_spiking_session

CASES = [
    ("spikes", "session.nwb"),
    ("spikes", "session.nwb.zarr"),
    ("ophys", "session.nwb"),
    ("ophys", "session.nwb.zarr"),
]


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


class Fit:
    """A fitted session and its results file."""

    def __init__(self, kind, path, truth, data, model, out):
        self.kind, self.path, self.truth, self.data, self.model, self.out = (
            kind,
            path,
            truth,
            data,
            model,
            out,
        )


def _fit_session(kind: str, path: Path) -> Fit:
    if kind == "spikes":
        truth = _quiet(make_spiking_session, path, seed=4, n_units=30, n_trials=16)
        data = _quiet(
            read_nwb, path, align="move_onset_time", window=(-0.25, 0.45), units="heldout == False"
        )
        model = FacRNN(n_groups=2, group_rank=2, observation="poisson", smoothing=2.0)
    else:
        truth = _quiet(
            make_imaging_session, path, seed=2, n_rois=24, frame_shape=(80, 80), duration=1.0
        )
        data = _quiet(read_nwb, path, rois={"accepted": True})
        model = FacRNN(n_groups=2, group_rank=3)
    model.set_params(max_epochs=8, n_init=2, progress=False, seed=1)
    model.fit(data)
    sha = _sha256(path)
    out = write_results(model, data)
    assert _sha256(path) == sha, "the source changed"
    return Fit(kind, path, truth, data, model, out)


@pytest.fixture(scope="module", params=CASES, ids=[f"{k}-{b}" for k, b in CASES])
def fit(request, tmp_path_factory):
    kind, name = request.param
    return _fit_session(kind, tmp_path_factory.mktemp(kind) / name)


def _flat_latents(model, data):
    z = model.transform(data)
    z = z.reshape(-1, z.shape[-1])
    keep = np.isfinite(z).all(axis=1)
    return z[keep], keep


# ----------------------------------------------------------------------------- round trip
def test_results_read_back_equal_what_was_fit(fit):
    model, data = fit.model, fit.data
    assert fit.out.name == fit.path.name.replace("session", "session_facrnn")
    res = read_results(fit.out)
    assert res.name == f"facrnn_G2H{model.group_rank}_beta20_seed1"
    module = "ecephys" if fit.kind == "spikes" else "ophys"
    assert res.object_path == f"/processing/{module}/{res.name}"

    z, keep = _flat_latents(model, data)
    np.testing.assert_array_equal(res.latents, z)
    centres = (data.timestamps + data.bin_size / 2).reshape(-1)[keep]
    np.testing.assert_allclose(res.timestamps, centres, rtol=0, atol=1e-9)
    if data.is_continuous:
        assert res.trial_ids is None
    else:
        np.testing.assert_array_equal(res.trial_ids, np.repeat(data.trial_ids, data.n_bins)[keep])
    np.testing.assert_array_equal(res.output_loadings, model.output_loadings_)
    np.testing.assert_array_equal(res.input_loadings, model.input_loadings_)
    np.testing.assert_allclose(res.connectivity, model.connectivity_, rtol=1e-6, atol=1e-7)

    # group strength: the std of each group's contribution A[i, g] . z_g(t), computed here
    a = model.output_loadings_.astype(np.float64)
    want = np.stack(
        [(z[:, model.group_slice(g)] @ a[:, model.group_slice(g)].T).std(0) for g in range(2)],
        axis=1,
    )
    np.testing.assert_allclose(res.group_strength, want, rtol=1e-4)
    np.testing.assert_array_equal(res.dominant_group, want.argmax(1))
    assert set(res.dominant_group) <= {0, 1}

    np.testing.assert_array_equal(res.unit_ids, data.unit_ids)
    assert res.unit_table == data.unit_table
    assert (res.n_groups, res.group_rank, res.bin_size) == (2, model.group_rank, data.bin_size)
    params = model.get_params()
    params.pop("device")
    assert res.params == params
    assert res.metrics["log_likelihood"] == pytest.approx(model.score(data), rel=1e-9)
    assert 0 <= res.metrics["gaussian_partial_correlation"] < 1
    assert res.steps == "all"
    assert res.metrics["reconstruction_r2"] < 1
    assert set(res.history) == set(model.history_)
    for k, v in model.history_.items():
        np.testing.assert_array_equal(res.history[k], v)
    assert res.provenance["source"] == str(fit.path)
    assert res.provenance["identifier"] == data.provenance["identifier"]
    assert res.provenance["options"] == data.provenance["options"]

    df = res.to_dataframe()
    assert list(df.index) == list(data.unit_ids)
    np.testing.assert_array_equal(df["dominant_group"], res.dominant_group)
    lat = res.latents_dataframe()
    assert lat.shape == (len(z), 2 * model.group_rank + (1 if data.is_continuous else 2))


def test_from_nwb_reloads_a_model_with_identical_transforms(fit):
    model = FacRNN.from_nwb(fit.out, device="cpu")
    want, got = fit.model.get_params(), model.get_params()
    assert {k: v for k, v in got.items() if k != "device"} == {
        k: v for k, v in want.items() if k != "device"
    }
    np.testing.assert_array_equal(model.transform(fit.data), fit.model.transform(fit.data))
    np.testing.assert_array_equal(model.predict(fit.data), fit.model.predict(fit.data))
    assert model.score(fit.data) == fit.model.score(fit.data)
    np.testing.assert_array_equal(model.observed_mean_, fit.model.observed_mean_)
    assert model.latent_std_ == fit.model.latent_std_
    assert model.n_epochs_ == fit.model.n_epochs_


def test_region_links_point_at_the_fitted_units_or_rois(fit):
    """The connectivity rows link to the source table rows that were fit, in the output."""
    io = open_io(fit.out)
    try:
        nwbfile = io.read()
        res = read_results(fit.out)
        conn = nwbfile.processing[res.object_path.split("/")[2]][res.name].connectivity
        if fit.kind == "spikes":
            region = conn["units"]
            assert region.table is nwbfile.units
            rows = np.asarray(region.data[:])
            heldout = np.asarray(nwbfile.units["heldout"].data[:])[rows]
            np.testing.assert_array_equal(heldout, fit.truth.heldout[fit.data.unit_ids])
            spikes = nwbfile.units["spike_times"]
            for j, r in enumerate(rows[:5]):
                np.testing.assert_array_equal(
                    spikes[int(r)], fit.truth.spike_times[fit.data.unit_ids[j]]
                )
        else:
            region = conn["rois"]
            ps = nwbfile.processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
            assert region.table is ps
            rows = np.asarray(region.data[:])
            masks = np.asarray(ps["image_mask"].data[:])[rows]
            np.testing.assert_array_equal(masks, fit.truth.image_masks[fit.data.unit_ids])
        np.testing.assert_array_equal(np.asarray(region.table.id[:])[rows], fit.data.unit_ids)
    finally:
        io.close()


# ----------------------------------------------------------------------- without the package
READER = textwrap.dedent(
    """
    import json, sys
    sys.modules["nwb_facrnn"] = None  # this package cannot be imported
    try:
        import nwb_facrnn
    except ImportError:
        pass
    else:
        raise SystemExit("nwb_facrnn was importable")
    import numpy as np
    path, module, name = sys.argv[1:4]
    if path.endswith(".zarr"):
        from hdmf_zarr.nwb import NWBZarrIO as IO
        kw = {}
    else:
        from pynwb import NWBHDF5IO as IO
        kw = {"load_namespaces": True}
    with IO(path, mode="r", **kw) as io:
        nwbfile = io.read()
        fit = nwbfile.processing[module][name]
        latents = fit.latents
        table = fit.connectivity.to_dataframe(index=True)
        region = fit.connectivity["units" if module == "ecephys" else "rois"]
        print(json.dumps({
            "type": type(fit).__name__,
            "latents": np.asarray(latents.data[:]).tolist(),
            "timestamps": np.asarray(latents.get_timestamps()[:]).tolist(),
            "group_boundaries": np.asarray(latents.group_boundaries).tolist(),
            "output_loadings": np.stack(table["output_loadings"]).tolist(),
            "dominant_group": table["dominant_group"].tolist(),
            "unit_ids": np.asarray(region.table.id[:])[np.asarray(region.data[:])].tolist(),
            "n_groups": int(fit.model.n_groups),
            "beta": float(fit.model.beta),
        }))
    """
)


def test_plain_pynwb_reads_the_results_through_the_cached_spec(fit, tmp_path):
    res = read_results(fit.out)
    module = res.object_path.split("/")[2]
    script = tmp_path / "read_without_nwb_facrnn.py"
    script.write_text(READER)
    run = subprocess.run(
        [sys.executable, str(script), str(fit.out), module, res.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository root, where the package sits
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["type"] == "FacRNNResults"
    np.testing.assert_array_equal(np.asarray(got["latents"], np.float32), res.latents)
    np.testing.assert_allclose(got["timestamps"], res.timestamps)
    assert got["group_boundaries"] == [0, res.group_rank, 2 * res.group_rank]
    np.testing.assert_array_equal(
        np.asarray(got["output_loadings"], np.float32), res.output_loadings
    )
    assert got["dominant_group"] == res.dominant_group.tolist()
    assert got["unit_ids"] == fit.data.unit_ids.tolist()
    assert got["n_groups"] == 2 and got["beta"] == 20.0


# ------------------------------------------------------------------------- NWB judges
def test_nwbinspector_and_the_pynwb_validator_pass(fit):
    from nwbinspector import Importance, inspect_nwbfile
    from pynwb import validate

    zarr = fit.out.suffix == ".zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the inspector's own validation goes through pynwb's HDF5 path; Zarr is validated below
        found = list(inspect_nwbfile(nwbfile_path=fit.out, skip_validate=zarr))
    serious = [
        f"{m.importance.name} {m.check_function_name} {m.location}: {m.message}"
        for m in found
        if m.importance in (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)
    ]
    assert serious == []
    if zarr:
        from hdmf_zarr.nwb import NWBZarrIO

        with NWBZarrIO(str(fit.out), mode="r") as io:
            errors = validate(io=io)
    else:
        errors = validate(path=str(fit.out))
    assert errors == []


def test_the_output_links_the_sources_bulk_data(fit):
    """Large TimeSeries data stay in the source and are linked; tables are copied."""
    linked = _links(fit.out)
    bulk = "/acquisition/OnePhotonSeries/data" if fit.kind == "ophys" else None
    if fit.kind == "spikes":
        bulk = "/processing/behavior/hand_vel/data"
    assert bulk in linked
    assert all(p.endswith(("/data", "/timestamps")) for p in linked)
    assert not any("facrnn" in p for p in linked)


def _links(path: Path) -> set[str]:
    """Paths of datasets that are links to another file (HDF5) or store (Zarr)."""
    found: set[str] = set()
    if path.is_dir():
        for attrs in path.rglob(".zattrs"):
            group = attrs.parent.relative_to(path).as_posix()
            for link in json.loads(attrs.read_text()).get("zarr_link", []):
                if link["source"] not in (".", ""):
                    found.add(f"/{group}/{link['name']}")
        return found

    def walk(group, prefix=""):
        for key in group:
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                found.add(f"{prefix}/{key}")
            elif isinstance(group[key], h5py.Group):
                walk(group[key], f"{prefix}/{key}")

    with h5py.File(path, "r") as f:
        walk(f)
    return found


@pytest.mark.parametrize("encoder, decoder", [("mlp", "mlp"), ("linear", "mlp")])
def test_mlp_models_and_a_single_group_round_trip(tmp_path, encoder, decoder):
    src = _quiet(
        make_imaging_session,
        tmp_path / "s.nwb",
        seed=3,
        n_rois=10,
        frame_shape=(48, 48),
        duration=0.4,
        n_rejected=0,
    ).path
    data = read_nwb(src)
    model = FacRNN(
        n_groups=1,
        group_rank=2,
        encoder=encoder,
        decoder=decoder,
        hidden_size=8,
        max_epochs=3,
        n_init=1,
        progress=False,
    ).fit(data)
    res = read_results(write_results(model, data))
    assert res.output_loadings is None and res.dominant_group is None
    assert res.group_strength is None
    if encoder == "linear":
        np.testing.assert_array_equal(res.input_loadings, model.input_loadings_)
    else:
        assert res.input_loadings is None
    # one group: nothing to be independent of, and the formula gives exactly 0
    assert res.metrics["gaussian_partial_correlation"] == 0.0
    np.testing.assert_array_equal(res.unit_ids, data.unit_ids)
    again = FacRNN.from_nwb(res.path)
    np.testing.assert_array_equal(again.transform(data), model.transform(data))
    np.testing.assert_array_equal(again.predict(data), model.predict(data))


def test_region_rows_follow_ids_that_are_not_row_numbers(tmp_path):
    """Units with ids 907, 3, 55 ...: the links go to the rows holding those ids."""
    from datetime import UTC, datetime

    import pynwb

    from nwb_facrnn.io import write_nwbfile

    rng = np.random.default_rng(0)
    ids = np.array([907, 3, 55, 12, 600, 41, 8, 77])
    f = pynwb.NWBFile("ids", "ids", datetime(2025, 1, 1, tzinfo=UTC))
    f.add_unit_column("label", "which unit")
    trains = {}
    for uid in ids:
        trains[uid] = np.sort(rng.uniform(0, 20, rng.integers(200, 400)))
        f.add_unit(id=int(uid), spike_times=trains[uid], label=f"u{uid}")
    src = write_nwbfile(f, tmp_path / "ids.nwb")
    data = read_nwb(src, bin_size=0.05, units="label != 'u3'")
    assert data.unit_ids.tolist() == [907, 55, 12, 600, 41, 8, 77]
    model = FacRNN(n_groups=1, group_rank=2, observation="poisson", max_epochs=2, n_init=1)
    model.set_params(progress=False).fit(data)
    res = read_results(write_results(model, data))
    np.testing.assert_array_equal(res.unit_ids, data.unit_ids)
    io = open_io(res.path)
    try:
        region = io.read().processing["ecephys"][res.name].connectivity["units"]
        rows = np.asarray(region.data[:])
        assert rows.tolist() == [0, 2, 3, 4, 5, 6, 7]
        for row, uid in zip(rows, data.unit_ids, strict=True):
            assert region.table["label"][int(row)] == f"u{uid}"
            np.testing.assert_array_equal(region.table["spike_times"][int(row)], trains[uid])
    finally:
        io.close()
