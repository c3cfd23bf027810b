"""ndx-facrnn on its own: the spec it ships, its types, and a round trip with pynwb alone.

Nothing here imports nwb_facrnn: these tests run wherever ``ndx-facrnn`` and pynwb are
installed (``pytest src/pynwb/tests`` in the distribution's folder).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import ndx_facrnn
import numpy as np
import pytest
from ndx_facrnn import NAMESPACE, SPEC_VERSION, TYPES, WEIGHT_NAMES

DISTRIBUTION = Path(__file__).resolve().parents[3]
CREATE_SPEC = DISTRIBUTION / "src" / "spec" / "create_extension_spec.py"


def _spec(name: str):
    from pynwb import get_type_map

    ndx_facrnn.load_namespace()
    return get_type_map().namespace_catalog.get_spec(NAMESPACE, name)


def _own(spec, kind: str) -> set[str]:
    """Names of the datasets, groups or attributes a type defines (not those it inherits)."""
    return {s.name for s in getattr(spec, kind) if not spec.is_inherited_spec(s)}


# ---------------------------------------------------------------------------------- the spec
@pytest.mark.skipif(not CREATE_SPEC.is_file(), reason="not a source tree of ndx-facrnn")
def test_the_committed_yaml_is_what_create_extension_spec_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("create_extension_spec", CREATE_SPEC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (module.NAMESPACE, module.SPEC_VERSION) == (NAMESPACE, SPEC_VERSION)
    assert module.SPEC_DIR == DISTRIBUTION / "spec"
    assert module.write_spec(tmp_path) == tmp_path / f"{NAMESPACE}.namespace.yaml"
    for name in (f"{NAMESPACE}.namespace.yaml", f"{NAMESPACE}.extensions.yaml"):
        assert (tmp_path / name).read_text() == (DISTRIBUTION / "spec" / name).read_text(), (
            f"spec/{name} is stale: run `python src/spec/create_extension_spec.py`"
        )


def test_the_package_finds_the_shipped_spec():
    path = ndx_facrnn.NAMESPACE_PATH
    assert path.is_file() and path.parts[-2:] == ("spec", f"{NAMESPACE}.namespace.yaml")
    assert (path.parent / f"{NAMESPACE}.extensions.yaml").is_file()
    package = Path(ndx_facrnn.__file__).resolve().parent
    # installed: the spec copied into the package; a source tree or an editable install: spec/
    assert path.parent in (package / "spec", DISTRIBUTION / "spec")


def test_the_constants_agree_with_the_spec():
    from pynwb import get_type_map

    ndx_facrnn.load_namespace()
    catalog = get_type_map().namespace_catalog
    assert catalog.get_namespace(NAMESPACE)["version"] == SPEC_VERSION
    included = {
        t
        for ns in catalog.namespaces
        if ns != NAMESPACE
        for t in catalog.get_namespace(ns).get_registered_types()
    }
    own = set(catalog.get_namespace(NAMESPACE).get_registered_types()) - included
    assert own == set(TYPES)
    model = _spec("FacRNNModel")
    assert _own(model, "datasets") == {*WEIGHT_NAMES.values(), "observed_mean", "init_objectives"}
    assert len(set(WEIGHT_NAMES.values())) == len(WEIGHT_NAMES)
    attrs = _own(model, "attributes")
    assert {"n_groups", "group_rank", "beta", "alpha", "bin_size", "seed", "provenance"} <= attrs
    assert _own(_spec("LowRankConnectivity"), "datasets") == {
        "units",
        "rois",
        "output_loadings",
        "input_loadings",
        "group_strength",
        "dominant_group",
    }
    assert _own(_spec("FacRNNResults"), "groups") == {"model", "latents", "connectivity"}
    assert _own(_spec("LatentTrajectories"), "attributes") == {
        "n_groups",
        "group_rank",
        "group_boundaries",
    }


def test_the_types_are_pynwb_classes_of_the_namespace():
    from hdmf.common import DynamicTable
    from pynwb import TimeSeries, get_class
    from pynwb.core import NWBContainer, NWBDataInterface

    bases = {
        "FacRNNResults": NWBDataInterface,
        "FacRNNModel": NWBContainer,
        "LatentTrajectories": TimeSeries,
        "LowRankConnectivity": DynamicTable,
    }
    assert set(bases) == set(TYPES)
    for name, base in bases.items():
        cls = getattr(ndx_facrnn, name)
        assert cls.__name__ == name and issubclass(cls, base)
        assert get_class(name, NAMESPACE) is cls
    assert set(TYPES) <= set(dir(ndx_facrnn))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        ndx_facrnn.Nope  # noqa: B018


# ---------------------------------------------------------------------------- a round trip
N, G, H, T = 4, 2, 2, 30
K = G * H


def _nwbfile():
    """A session with 4 units and a FacRNNResults of a fit of them, built with pynwb only."""
    from datetime import datetime, timezone

    from hdmf.common import DynamicTable, DynamicTableRegion, VectorData
    from ndx_facrnn import FacRNNModel, FacRNNResults, LatentTrajectories, LowRankConnectivity
    from pynwb import NWBFile

    rng = np.random.default_rng(0)
    nwbfile = NWBFile(
        session_description="ndx-facrnn round trip",
        identifier="ndx-facrnn-test",
        session_start_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),  # noqa: UP017 (Python 3.9)
    )
    for i in range(N + 1):  # one more unit than was fit: the region picks rows
        nwbfile.add_unit(spike_times=np.sort(rng.uniform(0, 3, 10 + i)))
    weights = {
        "output_loadings": rng.normal(size=(N, K)),
        "output_bias": rng.normal(size=N),
        "input_loadings": rng.normal(size=(K, N)),
        "latent_bias": rng.normal(size=K),
        "noise_log_std": rng.normal(size=N),
    }
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    history = DynamicTable(
        name="training_history",
        description="One row per epoch.",
        columns=[
            VectorData(name=k, description=k, data=rng.normal(size=3))
            for k in ("total", "reconstruction", "kl")
        ],
    )
    metrics = DynamicTable(
        name="fit_metrics",
        description="One metric per row.",
        columns=[
            VectorData(name="metric", description="name", data=["log_likelihood"]),
            VectorData(name="value", description="value", data=np.array([-1.5])),
            VectorData(name="definition", description="doc", data=["nats per step"]),
        ],
    )
    model = FacRNNModel(
        name="model",
        n_groups=np.int32(G),
        group_rank=np.int32(H),
        beta=20.0,
        alpha=0.0,
        observation="gaussian",
        encoder="linear",
        decoder="linear",
        output_activation="none",
        nonlinearity="tanh",
        bin_size=0.1,
        seed=np.int64(7),
        nwb_facrnn_version="0.1.0",
        format="nwb-facrnn-model/1",
        parameters=json.dumps({"n_groups": G, "group_rank": H}),
        fitted_attributes=json.dumps({"n_features_in_": N}),
        provenance=json.dumps({"source": "made by hand"}),
        observed_mean=rng.normal(size=N).astype(np.float32),
        init_objectives=np.array([3.5]),
        training_history=history,
        fit_metrics=metrics,
        **weights,
    )
    latents = LatentTrajectories(
        name="latents",
        data=rng.normal(size=(T, K)).astype(np.float32),
        starting_time=0.05,
        rate=10.0,
        unit="a.u.",
        description="latents",
        n_groups=np.int32(G),
        group_rank=np.int32(H),
        group_boundaries=np.arange(0, K + 1, H, dtype=np.int32),
        trial_ids=np.repeat(np.arange(3), T // 3).astype(np.int64),
    )
    rows = np.array([0, 1, 3, 4])
    strength = rng.uniform(size=(N, G)).astype(np.float32)
    connectivity = LowRankConnectivity(
        name="connectivity",
        description="one row per unit",
        columns=[
            DynamicTableRegion(
                name="units", data=rows, description="fitted unit", table=nwbfile.units
            ),
            VectorData(name="output_loadings", description="A", data=weights["output_loadings"]),
            VectorData(name="input_loadings", description="B.T", data=weights["input_loadings"].T),
            VectorData(name="group_strength", description="strength", data=strength),
            VectorData(
                name="dominant_group",
                description="argmax",
                data=strength.argmax(1).astype(np.int32),
            ),
        ],
        n_groups=np.int32(G),
        group_rank=np.int32(H),
    )
    results = FacRNNResults(
        name="facrnn_G2H2_beta20_seed7", model=model, latents=latents, connectivity=connectivity
    )
    module = nwbfile.create_processing_module("ecephys", "Processed extracellular ephys data")
    module.add(results)
    return nwbfile, results, rows


# hdmf checks the region's table when the table is built, before the results join the file
@pytest.mark.filterwarnings("ignore:The linked table for DynamicTableRegion:UserWarning")
def test_a_facrnn_results_round_trips_with_pynwb_alone(tmp_path):
    import h5py
    from pynwb import NWBHDF5IO

    nwbfile, written, rows = _nwbfile()
    path = tmp_path / "results.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    with h5py.File(path, "r") as f:  # the spec travels with the file
        assert set(f[f"specifications/{NAMESPACE}/{SPEC_VERSION}"]) == {
            "namespace",
            f"{NAMESPACE}.extensions",
        }
        group = f["processing/ecephys/facrnn_G2H2_beta20_seed7"]
        assert group.attrs["neurodata_type"] == "FacRNNResults"
        assert group.attrs["namespace"] == NAMESPACE

    with NWBHDF5IO(path, "r", load_namespaces=True) as io:
        read = io.read()
        fit = read.processing["ecephys"]["facrnn_G2H2_beta20_seed7"]
        assert isinstance(fit, ndx_facrnn.FacRNNResults)
        assert isinstance(fit.latents, ndx_facrnn.LatentTrajectories)

        lat, want = fit.latents, written.latents
        np.testing.assert_array_equal(lat.data[:], want.data)
        np.testing.assert_array_equal(lat.trial_ids[:], want.trial_ids)
        np.testing.assert_array_equal(lat.group_boundaries, [0, H, K])
        assert (lat.rate, lat.starting_time, lat.unit) == (10.0, 0.05, "a.u.")
        assert (lat.n_groups, lat.group_rank) == (G, H)

        model = fit.model
        assert (model.n_groups, model.group_rank, model.beta, model.seed) == (G, H, 20.0, 7)
        assert (model.observation, model.encoder, model.nonlinearity) == (
            "gaussian",
            "linear",
            "tanh",
        )
        assert json.loads(model.provenance) == {"source": "made by hand"}
        for name in ("output_loadings", "output_bias", "input_loadings", "latent_bias"):
            np.testing.assert_array_equal(getattr(model, name)[:], getattr(written.model, name))
        assert model.encoder_hidden_weight is None  # the MLP weights are optional
        np.testing.assert_array_equal(model.init_objectives[:], [3.5])
        assert list(model.training_history.colnames) == ["total", "reconstruction", "kl"]
        assert model.fit_metrics.to_dataframe()["metric"].tolist() == ["log_likelihood"]

        conn = fit.connectivity
        assert (conn.n_groups, conn.group_rank) == (G, H)
        region = conn["units"]
        assert region.table is read.units
        np.testing.assert_array_equal(region.data[:], rows)
        table = conn.to_dataframe(index=True)
        assert len(table) == N
        np.testing.assert_array_equal(
            np.stack(table["output_loadings"]), written.model.output_loadings
        )
        np.testing.assert_array_equal(
            np.stack(table["input_loadings"]), written.model.input_loadings.T
        )
        np.testing.assert_array_equal(
            table["dominant_group"], np.stack(table["group_strength"]).argmax(1)
        )
        units = conn.to_dataframe()["units"]  # the region expands to the Units rows
        assert len(units) == N
