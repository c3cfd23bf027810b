"""The ndx-facrnn extension: the shipped spec is the generated one and files carry it."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from nwb_facrnn import FacRNN
from nwb_facrnn.io.extension import TYPES, ndx_facrnn
from nwb_facrnn.io.extension_spec import NAMESPACE, NAMESPACE_PATH, SPEC_VERSION, write_spec
from nwb_facrnn.model.estimator import ModelState


def test_the_shipped_yaml_is_what_the_spec_module_generates(tmp_path):
    write_spec(tmp_path)
    for name in (NAMESPACE_PATH.name, f"{NAMESPACE}.extensions.yaml"):
        assert (tmp_path / name).read_text() == (NAMESPACE_PATH.parent / name).read_text(), (
            f"{name} is stale: run `python -m nwb_facrnn.io.extension_spec`"
        )


def test_the_spec_defines_the_four_types_on_nwb_core():
    ns = yaml.safe_load(NAMESPACE_PATH.read_text())["namespaces"][0]
    assert (ns["name"], ns["version"]) == (NAMESPACE, SPEC_VERSION)
    ext = yaml.safe_load((NAMESPACE_PATH.parent / f"{NAMESPACE}.extensions.yaml").read_text())
    types = {g["neurodata_type_def"]: g for g in ext["groups"]}
    assert set(types) == set(TYPES)
    assert types["LatentTrajectories"]["neurodata_type_inc"] == "TimeSeries"
    assert types["LowRankConnectivity"]["neurodata_type_inc"] == "DynamicTable"
    assert types["FacRNNResults"]["neurodata_type_inc"] == "NWBDataInterface"
    attrs = {a["name"] for a in types["FacRNNModel"]["attributes"]}
    assert {"n_groups", "group_rank", "beta", "alpha", "bin_size", "seed"} <= attrs
    cols = {d["name"] for d in types["LowRankConnectivity"]["datasets"]}
    assert cols == {
        "units",
        "rois",
        "output_loadings",
        "input_loadings",
        "group_strength",
        "dominant_group",
    }
    classes = ndx_facrnn()
    assert classes.LatentTrajectories.__name__ == "LatentTrajectories"


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
        cached = f[f"specifications/{NAMESPACE}/{SPEC_VERSION}"]
        assert set(cached) == {"namespace", f"{NAMESPACE}.extensions"}
        text = cached[f"{NAMESPACE}.extensions"][()]
        assert b"LowRankConnectivity" in (text if isinstance(text, bytes) else text.encode())
        assert f["processing/ophys/facrnn_G1H2_beta20_seed0"].attrs["namespace"] == NAMESPACE


def test_model_state_errors_name_the_origin():
    x = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    model = FacRNN(n_groups=1, group_rank=2, max_epochs=2, n_init=1, progress=False).fit(x)
    state = model.to_state()
    assert set(state.weights) == {"A", "a", "B", "b", "log_std"}
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
