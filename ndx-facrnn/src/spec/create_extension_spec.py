"""Build the ``ndx-facrnn`` spec with pynwb's spec API and write its YAML into ``spec/``.

This script is the single source of the spec; the YAML it writes (``spec/ndx-facrnn.*.yaml``)
is committed, ships inside the ``ndx_facrnn`` package and is cached in every file written, so
any NWB reader (pynwb with ``load_namespaces=True``, MatNWB, Neurosift) opens the results.
Regenerate the YAML after a change with::

    python src/spec/create_extension_spec.py

(``src/pynwb/tests/test_ndx_facrnn.py`` checks that the committed YAML is what this writes.)
The namespace, the type names, their attributes, datasets and docs are a file format: files
written before must still read, so change them only with a new ``SPEC_VERSION``.

Types
-----
``FacRNNResults`` (NWBDataInterface)
    One fit, stored in a processing module (``ecephys`` for units, ``ophys`` for ROIs) under
    the fit's name (e.g. ``facrnn_G2H3_beta20_seed0``).  Holds the three types below.
``FacRNNModel`` (NWBContainer)
    Hyperparameters as attributes, every weight needed to reload the model, the training
    history and the fit metrics, and the provenance of the data that was fit.
``LatentTrajectories`` (TimeSeries)
    Posterior-mean latents ``(T, K)`` at the centres of the bins that were fit, trial after
    trial, in session seconds; ``group_boundaries`` gives the latent dims of every group.
``LowRankConnectivity`` (DynamicTable)
    One row per modeled unit or ROI: a region into the Units table or PlaneSegmentation,
    its output loadings (row of ``A``), input loadings (column of ``B``), the strength of
    every group and the dominant group.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# kept equal to ndx_facrnn.NAMESPACE and ndx_facrnn.SPEC_VERSION (the package tests check it)
NAMESPACE = "ndx-facrnn"
SPEC_VERSION = "0.2.0"
SPEC_DIR = Path(__file__).resolve().parents[2] / "spec"

# dataset name of every FacRNNModel weight (the values of ndx_facrnn.WEIGHT_NAMES): doc, dims
_WEIGHT_DOCS = {
    "output_loadings": ("A, the output loadings (linear decoder).", ["num_units", "num_latents"]),
    "output_bias": ("a, the output bias (linear decoder).", ["num_units"]),
    "input_loadings": ("B, the input loadings (linear encoder).", ["num_latents", "num_units"]),
    "latent_bias": ("b, the latent bias (linear encoder).", ["num_latents"]),
    "noise_log_std": (
        "Log of each unit's Gaussian noise std (Gaussian observation).",
        ["num_units"],
    ),
    "encoder_hidden_weight": ("MLP encoder, hidden layer weight.", ["num_hidden", "num_units"]),
    "encoder_hidden_bias": ("MLP encoder, hidden layer bias.", ["num_hidden"]),
    "encoder_output_weight": ("MLP encoder, output layer weight.", ["num_latents", "num_hidden"]),
    "encoder_output_bias": ("MLP encoder, output layer bias.", ["num_latents"]),
    "decoder_hidden_weight": ("MLP decoder, hidden layer weight.", ["num_hidden", "num_latents"]),
    "decoder_hidden_bias": ("MLP decoder, hidden layer bias.", ["num_hidden"]),
    "decoder_output_weight": ("MLP decoder, output layer weight.", ["num_units", "num_hidden"]),
    "decoder_output_bias": ("MLP decoder, output layer bias.", ["num_units"]),
    "activity_offset": (
        "Per-unit offset of the standardization the model works in: it sees (x - "
        "activity_offset) / activity_scale, x in the data's units (0 when not "
        "standardized; absent in files of ndx-facrnn 0.1.0, which did not standardize).",
        ["num_units"],
    ),
    "activity_scale": (
        "Per-unit scale of that standardization, in the data's units (1 when not "
        "standardized). A Gaussian mean is activity_offset + activity_scale * (A z + a) + u "
        "(activity_scale * f(A z + a + u / activity_scale) with an output activation f), the "
        "noise std activity_scale * exp(noise_log_std); Poisson rates are not scaled.",
        ["num_units"],
    ),
}


def _specs():
    from pynwb.spec import NWBAttributeSpec, NWBDatasetSpec, NWBGroupSpec

    def attr(name, dtype, doc, **kw):
        return NWBAttributeSpec(name=name, dtype=dtype, doc=doc, **kw)

    group_shape = [
        attr("n_groups", "int32", "G, the number of independent latent groups."),
        attr("group_rank", "int32", "H, the rank (number of latent dims) of every group."),
    ]
    weights = [
        NWBDatasetSpec(
            name=name,
            dtype="float32",
            doc=doc,
            dims=dims,
            shape=[None] * len(dims),
            quantity="?",
        )
        for name, (doc, dims) in _WEIGHT_DOCS.items()
    ]
    model = NWBGroupSpec(
        neurodata_type_def="FacRNNModel",
        neurodata_type_inc="NWBContainer",
        doc=(
            "A fitted FacRNN model (factorized low-rank RNN, Li et al., ICML 2026): its "
            "hyperparameters, the weights that reload it, its training history and fit "
            "metrics, and the provenance of the data it was fit on."
        ),
        attributes=[
            *group_shape,
            attr("beta", "float64", "Weight of the partial-correlation penalty between groups."),
            attr("alpha", "float64", "Weight of the block-diagonal penalty on J = B A (bdRNN)."),
            attr("observation", "text", "Observation model: 'gaussian' or 'poisson'."),
            attr("encoder", "text", "Encoder B: 'linear' or 'mlp'."),
            attr("decoder", "text", "Decoder A: 'linear' or 'mlp'."),
            attr(
                "output_activation",
                "text",
                "Activation on the Gaussian decoder's mean: 'none', 'relu' or 'softplus'.",
            ),
            attr("nonlinearity", "text", "phi in z_t = B phi(x_{t-1}) + b: 'tanh' or 'identity'."),
            attr("bin_size", "float64", "Bin width of the fitted data, in seconds."),
            attr("seed", "int32", "Random seed of the fit (stored as int64)."),
            attr("nwb_facrnn_version", "text", "Version of nwb-facrnn that fit the model."),
            attr("format", "text", "Version of this model layout, e.g. 'nwb-facrnn-model/1'."),
            attr(
                "parameters",
                "text",
                "Every constructor argument of nwb_facrnn.FacRNN, as a JSON object.",
            ),
            attr(
                "fitted_attributes",
                "text",
                "Scalar learned attributes (n_features_in_, n_samples_, latent_std_, "
                "best_init_, n_epochs_, stopped_early_, fit_time_), as a JSON object.",
            ),
            attr(
                "provenance",
                "text",
                "Where the fitted data came from (source file or DANDI asset, NWB identifier, "
                "object paths read, read options) and the software versions, as JSON.",
            ),
        ],
        datasets=[
            *weights,
            NWBDatasetSpec(
                name="observed_mean",
                dtype="float32",
                doc="Every unit's mean over its observed values (stands in for unobserved "
                "values as encoder input).",
                dims=["num_units"],
                shape=[None],
            ),
            NWBDatasetSpec(
                name="init_objectives",
                dtype="float64",
                doc="Final training objective of every restart (the best one was kept).",
                dims=["num_restarts"],
                shape=[None],
            ),
        ],
        groups=[
            NWBGroupSpec(
                name="training_history",
                neurodata_type_inc="DynamicTable",
                doc="One row per epoch: the objective and each of its terms (total, "
                "reconstruction, kl, pc, bd; validation with early stopping), per sample.",
            ),
            NWBGroupSpec(
                name="fit_metrics",
                neurodata_type_inc="DynamicTable",
                doc="Metrics of the fit on the data it was fit on: one row per metric, with "
                "columns metric, value and definition.",
                quantity="?",
            ),
        ],
    )
    latents = NWBGroupSpec(
        neurodata_type_def="LatentTrajectories",
        neurodata_type_inc="TimeSeries",
        doc=(
            "Posterior-mean FacRNN latents z_t = B phi(x_{t-1}) + b, one row per fitted bin, "
            "trial after trial; timestamps are bin centres in session time.  Latent dims "
            "group_boundaries[g]:group_boundaries[g + 1] form group g."
        ),
        attributes=[
            *group_shape,
            attr(
                "group_boundaries",
                "int32",
                "First latent dim of every group, then K: group g is "
                "[group_boundaries[g], group_boundaries[g + 1]).",
                dims=["num_groups_plus_one"],
                shape=[None],
            ),
        ],
        datasets=[
            NWBDatasetSpec(
                name="data",
                dtype="float32",
                doc="Latents, shape (time, K); dimensionless (unit 'a.u.').",
                dims=["num_times", "num_latents"],
                shape=[None, None],
            ),
            NWBDatasetSpec(
                name="trial_ids",
                dtype="int64",
                doc="id of the row of the trials table every time point belongs to.",
                dims=["num_times"],
                shape=[None],
                quantity="?",
            ),
        ],
    )
    column = dict(neurodata_type_inc="VectorData", dtype="float32")
    connectivity = NWBGroupSpec(
        neurodata_type_def="LowRankConnectivity",
        neurodata_type_inc="DynamicTable",
        doc=(
            "The low-rank connectivity W = A B of a FacRNN fit, one row per modeled unit or "
            "ROI.  Unit i's row of W is output_loadings[i] @ input_loadings.T; group g's part "
            "uses the latent dims of group g only."
        ),
        attributes=list(group_shape),
        datasets=[
            NWBDatasetSpec(
                name="units",
                neurodata_type_inc="DynamicTableRegion",
                doc="The modeled unit: a row of the Units table (spiking data).",
                quantity="?",
            ),
            NWBDatasetSpec(
                name="rois",
                neurodata_type_inc="DynamicTableRegion",
                doc="The modeled ROI: a row of the PlaneSegmentation (imaging data).",
                quantity="?",
            ),
            NWBDatasetSpec(
                name="output_loadings",
                doc="Row i of A: how each latent drives this unit, shape (N, K).",
                dims=["num_units", "num_latents"],
                shape=[None, None],
                quantity="?",
                **column,
            ),
            NWBDatasetSpec(
                name="input_loadings",
                doc="Column i of B: how this unit drives each latent, shape (N, K).",
                dims=["num_units", "num_latents"],
                shape=[None, None],
                quantity="?",
                **column,
            ),
            NWBDatasetSpec(
                name="group_strength",
                doc="Std over the fitted bins of each group's contribution A[i, g] . z_g(t) "
                "to this unit's drive, shape (N, G), in the units of the fitted activity.",
                dims=["num_units", "num_groups"],
                shape=[None, None],
                quantity="?",
                **column,
            ),
            NWBDatasetSpec(
                name="dominant_group",
                neurodata_type_inc="VectorData",
                dtype="int32",
                doc="Index of the group with the largest group_strength.",
                dims=["num_units"],
                shape=[None],
                quantity="?",
            ),
        ],
    )
    results = NWBGroupSpec(
        neurodata_type_def="FacRNNResults",
        neurodata_type_inc="NWBDataInterface",
        doc="One FacRNN fit: the model, its latent trajectories and its low-rank connectivity.",
        groups=[
            NWBGroupSpec(name="model", neurodata_type_inc="FacRNNModel", doc="The fitted model."),
            NWBGroupSpec(
                name="latents",
                neurodata_type_inc="LatentTrajectories",
                doc="Latent trajectories of the fitted data.",
            ),
            NWBGroupSpec(
                name="connectivity",
                neurodata_type_inc="LowRankConnectivity",
                doc="Per unit or ROI loadings and groups (linear encoder and decoder).",
                quantity="?",
            ),
        ],
    )
    return [results, model, latents, connectivity]


def write_spec(directory: str | os.PathLike = SPEC_DIR) -> Path:
    """Write the namespace and extension YAML files into ``directory``; return the namespace."""
    from pynwb.spec import NWBNamespaceBuilder

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    builder = NWBNamespaceBuilder(
        doc="Results of FacRNN, the factorized low-rank RNN (Li et al., ICML 2026): latent "
        "trajectories, low-rank connectivity linked to units or ROIs, and the fitted model.",
        name=NAMESPACE,
        version=SPEC_VERSION,
        author=["nwb-facrnn developers"],
        contact=["https://github.com/nwb-facrnn/nwb-facrnn"],
    )
    builder.include_namespace("core")
    namespace = f"{NAMESPACE}.namespace.yaml"
    extension = f"{NAMESPACE}.extensions.yaml"
    for spec in _specs():
        builder.add_spec(extension, spec)
    builder.export(namespace, outdir=str(directory))
    return directory / namespace


def main(argv: list[str] | None = None) -> None:
    """``create_extension_spec.py [DIRECTORY]``: write the YAML (default: ``spec/``)."""
    args = sys.argv[1:] if argv is None else argv
    print(write_spec(*args[:1]))


if __name__ == "__main__":
    main()
