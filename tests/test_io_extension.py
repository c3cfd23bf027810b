"""The ndx-facrnn extension as nwb_facrnn uses it: one import place, files carry the spec,
and files written by earlier versions still read."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import ndx_facrnn as ndx
import numpy as np
import pytest
import yaml

from nwb_facrnn import FacRNN
from nwb_facrnn.io import extension
from nwb_facrnn.io.extension import NAMESPACE, SPEC_VERSION, TYPES, WEIGHT_NAMES, ndx_facrnn
from nwb_facrnn.model.estimator import ModelState

DATA = Path(__file__).resolve().parent / "data"
#: written by nwb-facrnn 0.1.0 (commit 54cae1b) with tests/data/make_results_v0_1_0.py
RESULTS_V010 = DATA / "results_v0.1.0.nwb"


def test_nwb_facrnn_gets_the_extension_from_the_ndx_facrnn_distribution():
    assert WEIGHT_NAMES is ndx.WEIGHT_NAMES and TYPES == ndx.TYPES
    assert (NAMESPACE, SPEC_VERSION) == (ndx.NAMESPACE, ndx.SPEC_VERSION) == ("ndx-facrnn", "0.2.0")
    classes = ndx_facrnn()
    assert set(vars(classes)) == set(TYPES)
    for name in TYPES:
        assert getattr(classes, name) is getattr(ndx, name)
    assert classes.LatentTrajectories.__name__ == "LatentTrajectories"
    # the spec is no longer part of nwb_facrnn
    package = Path(extension.__file__).parent
    assert not (package / "spec").exists()
    assert importlib.util.find_spec("nwb_facrnn.io.extension_spec") is None


def test_the_spec_defines_the_four_types_on_nwb_core():
    path = ndx.NAMESPACE_PATH
    ns = yaml.safe_load(path.read_text())["namespaces"][0]
    assert (ns["name"], ns["version"]) == (NAMESPACE, SPEC_VERSION)
    ext = yaml.safe_load((path.parent / f"{NAMESPACE}.extensions.yaml").read_text())
    types = {g["neurodata_type_def"]: g for g in ext["groups"]}
    assert set(types) == set(TYPES)
    assert types["LatentTrajectories"]["neurodata_type_inc"] == "TimeSeries"
    assert types["LowRankConnectivity"]["neurodata_type_inc"] == "DynamicTable"
    assert types["FacRNNResults"]["neurodata_type_inc"] == "NWBDataInterface"
    attrs = {a["name"] for a in types["FacRNNModel"]["attributes"]}
    assert {"n_groups", "group_rank", "beta", "alpha", "bin_size", "seed"} <= attrs
    weights = {d["name"] for d in types["FacRNNModel"]["datasets"]}
    assert weights == {*WEIGHT_NAMES.values(), "observed_mean", "init_objectives"}
    cols = {d["name"] for d in types["LowRankConnectivity"]["datasets"]}
    assert cols == {
        "units",
        "rois",
        "output_loadings",
        "input_loadings",
        "group_strength",
        "dominant_group",
    }


def test_every_written_file_caches_the_spec(tmp_path):
    from nwb_facrnn import read_nwb, write_results
    from nwb_facrnn.synthetic import make_imaging_session

    src = make_imaging_session(
        tmp_path / "s.nwb", seed=1, n_rois=8, frame_shape=(48, 48), duration=0.3, n_rejected=0
    ).path
    data = read_nwb(src)
    model = FacRNN(n_groups=1, group_rank=2, max_epochs=2, n_init=1, progress=False).fit(data)
    out = write_results(model, data)
    with h5py.File(out, "r") as f:
        assert _cached_spec(f) == _shipped_spec()
        assert f["processing/ophys/facrnn_G1H2_beta20_seed0"].attrs["namespace"] == NAMESPACE


def _cached_spec(f: h5py.File, version: str = SPEC_VERSION) -> tuple[dict, dict]:
    """The ndx-facrnn namespace and extension a file carries, as the shipped YAML reads."""
    cached = f[f"specifications/{NAMESPACE}/{version}"]
    assert set(cached) == {"namespace", f"{NAMESPACE}.extensions"}
    namespace = json.loads(cached["namespace"][()])
    for item in namespace["namespaces"][0]["schema"]:  # cached sources drop the suffix
        if "source" in item:
            item["source"] += ".yaml"
    return namespace, json.loads(cached[f"{NAMESPACE}.extensions"][()])


def _shipped_spec() -> tuple[dict, dict]:
    path = ndx.NAMESPACE_PATH
    extensions = path.parent / f"{NAMESPACE}.extensions.yaml"
    return yaml.safe_load(path.read_text()), yaml.safe_load(extensions.read_text())


# -------------------------------------------------- a file written by nwb-facrnn 0.1.0
def test_the_shipped_spec_only_adds_the_standardization_to_0_1_0():
    """Namespace, types, attributes, datasets and docs: as nwb-facrnn 0.1.0 wrote them, but
    for the version and FacRNNModel's two new optional datasets (files of 0.1.0 still
    validate and read)."""
    with h5py.File(RESULTS_V010, "r") as f:
        old_namespace, old_extensions = _cached_spec(f, "0.1.0")
    namespace, extensions = _shipped_spec()
    assert namespace["namespaces"][0].pop("version") == "0.2.0"
    assert old_namespace["namespaces"][0].pop("version") == "0.1.0"
    assert namespace == old_namespace
    model = next(g for g in extensions["groups"] if g["neurodata_type_def"] == "FacRNNModel")
    added = [d for d in model["datasets"] if d["name"] in ("activity_offset", "activity_scale")]
    assert [(d["name"], d["quantity"], d["dims"]) for d in added] == [
        ("activity_offset", "?", ["num_units"]),
        ("activity_scale", "?", ["num_units"]),
    ]
    model["datasets"] = [d for d in model["datasets"] if d not in added]
    assert extensions == old_extensions


def test_read_results_reads_a_file_of_nwb_facrnn_0_1_0(sha256):
    from nwb_facrnn import read_results

    before = sha256(RESULTS_V010)
    res = read_results(RESULTS_V010)
    assert res.name == "facrnn_G2H3_beta20_seed0"
    assert res.object_path == "/processing/ecephys/facrnn_G2H3_beta20_seed0"
    assert (res.n_groups, res.group_rank, res.bin_size) == (2, 3, 0.02)
    # latents: 4 trials of 20 ms bins, trial after trial
    assert res.latents.shape == (221, 6) and res.latents.dtype == np.float32
    assert np.isfinite(res.latents).all()
    assert res.timestamps.shape == (221,) and np.all(np.diff(res.timestamps) > 0)
    np.testing.assert_array_equal(np.unique(res.trial_ids), [0, 1, 2, 3])
    # connectivity: one row per fitted unit, linked to the Units table
    np.testing.assert_array_equal(res.unit_ids, np.arange(8))
    assert res.unit_table == "/units"
    assert res.output_loadings.shape == (8, 6) and res.input_loadings.shape == (6, 8)
    assert res.group_strength.shape == (8, 2)
    np.testing.assert_array_equal(res.dominant_group, res.group_strength.argmax(1))
    np.testing.assert_allclose(
        res.connectivity, res.output_loadings @ res.input_loadings, rtol=1e-5, atol=1e-6
    )
    # the model group: parameters, history, metrics (0.1.0's metric names, mapped), provenance
    assert res.params["max_epochs"] == 2 and res.params["n_init"] == 1
    assert set(res.history) == {"total", "reconstruction", "kl", "pc", "bd"}
    assert all(len(v) == 2 for v in res.history.values())
    assert len(res.metrics) == 3 and {"log_likelihood", "reconstruction_r2"} <= set(res.metrics)
    assert res.provenance["nwb_facrnn_version"] == "0.1.0"
    assert res.provenance["modality"] == "spikes"
    assert sha256(RESULTS_V010) == before, "reading changed the file"


def test_from_nwb_reloads_the_model_of_a_file_of_nwb_facrnn_0_1_0():
    from nwb_facrnn import read_results

    res = read_results(RESULTS_V010)
    model = FacRNN.from_nwb(RESULTS_V010, device="cpu")
    assert (model.n_groups, model.group_rank, model.n_features_in_) == (2, 3, 8)
    # 0.1.0 did not standardize: the model works in the data's units, and says so
    assert not model.standardized_ and model.standardize == "never"
    np.testing.assert_array_equal(model.activity_scale_, np.ones(8, np.float32))
    np.testing.assert_array_equal(model.output_loadings_, res.output_loadings)
    np.testing.assert_array_equal(model.input_loadings_, res.input_loadings)
    x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    assert model.transform(x).shape == (40, 6)


def test_model_state_errors_name_the_origin():
    x = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    model = FacRNN(n_groups=1, group_rank=2, max_epochs=2, n_init=1, progress=False).fit(x)
    state = model.to_state()
    assert set(state.weights) == {"A", "a", "B", "b", "log_std", "offset", "scale"}
    assert state.weights["A"].shape == (5, 2)
    again = FacRNN.from_state(state, device="cpu")
    np.testing.assert_array_equal(again.transform(x), model.transform(x))
    bad = ModelState({**state.meta, "format": "other/9"}, *list(state.__dict__.values())[1:])
    with pytest.raises(ValueError, match=r"f\.nwb:/x: unsupported model format 'other/9'"):
        FacRNN.from_state(bad, origin="f.nwb:/x")
    missing = ModelState(state.meta, {"A": state.weights["A"]}, *list(state.__dict__.values())[2:])
    with pytest.raises(ValueError, match=r"lacks the weights \['B', 'a', 'b', 'log_std'\]"):
        FacRNN.from_state(missing)
    wrong = ModelState(
        state.meta,
        {**state.weights, "A": state.weights["A"][:3]},
        *list(state.__dict__.values())[2:],
    )
    with pytest.raises(ValueError, match=r"weight 'A' has shape \(3, 2\), expected \(5, 2\)"):
        FacRNN.from_state(wrong)
