"""A lab without nwb-facrnn: ``pip install ./ndx-facrnn`` next to pynwb reads the results.

The test builds that environment offline: a fresh virtual environment (no pip, no system
site-packages), ``ndx-facrnn`` installed into it by pip from a copy of ``ndx-facrnn/`` (no
index, no build isolation: the build backend is this environment's setuptools), and
pynwb with the dependency closure of ``ndx-facrnn``'s declared requirements made visible by
symlinks to this environment's installed distributions (a ``.pth`` file), nothing else.  In
it, ``import nwb_facrnn`` fails while plain pynwb reads a file written by nwb_facrnn today
and one written by nwb-facrnn 0.1.0 (``tests/data/results_v0.1.0.nwb``).
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from nwb_facrnn import read_results

REPO = Path(__file__).resolve().parents[1]
RESULTS_V010 = REPO / "tests" / "data" / "results_v0.1.0.nwb"

pytestmark = pytest.mark.slow


def _closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions that ``requirements`` need, transitively (no extras)."""
    out: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        dist = metadata.distribution(req.name)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key not in out:
            out[key] = dist
            todo.extend(Requirement(r) for r in dist.requires or [])
    return list(out.values())


def _link_distributions(dists: list[metadata.Distribution], into: Path) -> set[str]:
    """Symlink every top-level file or folder of ``dists`` (packages, modules, bundled
    libraries, the .dist-info) into ``into``; return the names linked."""
    into.mkdir()
    names: set[str] = set()
    for dist in dists:
        site = Path(dist.locate_file(""))
        for file in dist.files or []:
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth") or top in names:
                continue
            assert (site / top).exists(), f"{dist.metadata['Name']}: {top} is missing"
            (into / top).symlink_to(site / top)
            names.add(top)
    return names


def _env() -> dict[str, str]:
    # the subprocesses must not see this environment's packages through the environment
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PIP_")}
    return {**env, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def lab_python(tmp_path_factory) -> Path:
    """The python of a fresh venv with ndx-facrnn (pip-installed) and pynwb, no nwb_facrnn."""
    setuptools = metadata.version("setuptools")
    assert int(setuptools.split(".")[0]) >= 77, (
        f"building ndx-facrnn offline needs setuptools>=77 here, found {setuptools}"
    )
    root = tmp_path_factory.mktemp("lab")
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=_env()
    )
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
            env=_env(),
        ).stdout.strip()
    )
    assert site.is_dir() and not any(site.glob("*pynwb*")), "the new venv is not empty"

    # pip install ./ndx-facrnn: a copy of the folder, as the build writes build/ and egg-info
    source = root / "ndx-facrnn"
    shutil.copytree(
        REPO / "ndx-facrnn",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"),
    )
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    run = subprocess.run(
        [*pip, "--no-build-isolation", "--target", str(site), str(source)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=root,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    installed = metadata.PathDistribution(next(site.glob("ndx_facrnn-*.dist-info")))
    assert installed.metadata["Name"] == "ndx-facrnn"
    assert (site / "ndx_facrnn" / "spec" / "ndx-facrnn.namespace.yaml").is_file()

    # its requirements, as declared, from this environment: pynwb, hdmf and what they need
    dists = _closure(installed.requires or [])
    names = {d.metadata["Name"].lower() for d in dists}
    assert {"pynwb", "hdmf", "h5py", "numpy"} <= names
    assert not names & {"nwb-facrnn", "napari-facrnn", "torch"}, names
    linked = _link_distributions(dists, root / "deps")
    assert "nwb_facrnn" not in linked and "ndx_facrnn" not in linked
    (site / "lab_deps.pth").write_text(f"{root / 'deps'}\n")
    return python


READER = textwrap.dedent(
    """
    import json, sys

    try:
        import nwb_facrnn
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"nwb_facrnn is importable: {nwb_facrnn.__file__}")

    import numpy as np
    import pynwb
    from pynwb import NWBHDF5IO

    import ndx_facrnn
    from ndx_facrnn import FacRNNModel, FacRNNResults, LowRankConnectivity  # the shipped spec

    out = {
        "ndx_facrnn": ndx_facrnn.__file__,
        "spec": str(ndx_facrnn.NAMESPACE_PATH),
        "pynwb": pynwb.__file__,
        "sys_path": sys.path,
        "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("nwb_facrnn", "torch")),
        "fits": [],
    }
    for path, module, name, region_name in json.loads(sys.argv[1]):
        with NWBHDF5IO(path, "r", load_namespaces=True) as io:
            nwbfile = io.read()
            fit = nwbfile.processing[module][name]
            assert type(fit) is FacRNNResults, type(fit)
            assert type(fit.model) is FacRNNModel and type(fit.connectivity) is LowRankConnectivity
            latents, model, conn = fit.latents, fit.model, fit.connectivity
            table = conn.to_dataframe(index=True)  # the region column: row indices
            region = conn[region_name]
            metrics = model.fit_metrics.to_dataframe()
            out["fits"].append({
                "latents": np.asarray(latents.data[:]).tolist(),
                "timestamps": np.asarray(latents.get_timestamps()[:]).tolist(),
                "trial_ids": None
                if latents.trial_ids is None
                else np.asarray(latents.trial_ids[:]).tolist(),
                "group_boundaries": np.asarray(latents.group_boundaries).tolist(),
                "output_loadings": np.stack(table["output_loadings"]).tolist(),
                "input_loadings": np.stack(table["input_loadings"]).tolist(),
                "dominant_group": table["dominant_group"].tolist(),
                "region_table": region.table.name,
                "unit_ids": np.asarray(region.table.id[:])[np.asarray(region.data[:])].tolist(),
                "expanded_rows": len(conn.to_dataframe()[region_name]),
                "n_groups": int(model.n_groups),
                "group_rank": int(model.group_rank),
                "beta": float(model.beta),
                "bin_size": float(model.bin_size),
                "parameters": json.loads(model.parameters),
                "weights": {
                    "output_loadings": np.asarray(model.output_loadings[:]).tolist(),
                    "input_loadings": np.asarray(model.input_loadings[:]).tolist(),
                },
                "observed_mean": np.asarray(model.observed_mean[:]).tolist(),
                "history": list(model.training_history.colnames),
                "epochs": len(model.training_history),
                "metrics": metrics["metric"].tolist(),
                "values": metrics["value"].tolist(),
            })
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def fit_today(tmp_path_factory) -> Path:
    """A tiny imaging fit written by this nwb_facrnn (the movie linked to the session)."""
    from nwb_facrnn import FacRNN, read_nwb, write_results
    from nwb_facrnn.synthetic import make_imaging_session

    root = tmp_path_factory.mktemp("today")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = make_imaging_session(
            root / "s.nwb", seed=1, n_rois=8, frame_shape=(48, 48), duration=0.3, n_rejected=0
        ).path
        data = read_nwb(src)
        model = FacRNN(n_groups=2, group_rank=2, max_epochs=2, n_init=1, progress=False)
        return Path(write_results(model.fit(data), data))


def test_plain_pynwb_with_ndx_facrnn_alone_reads_results(lab_python, fit_today, tmp_path):
    files = [(fit_today, "ophys", "rois"), (RESULTS_V010, "ecephys", "units")]
    expected = [read_results(path) for path, _, _ in files]
    args = [
        (str(path), module, res.name, region)
        for (path, module, region), res in zip(files, expected, strict=True)
    ]
    run = subprocess.run(
        [lab_python, "-I", "-c", READER, json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository root
        env=_env(),
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])

    # the non-editable install found the spec it ships; nothing of nwb_facrnn (or torch) loaded
    site = Path(got["ndx_facrnn"]).parent.parent
    assert site.is_relative_to(Path(lab_python).parents[1])
    assert Path(got["spec"]) == site / "ndx_facrnn" / "spec" / "ndx-facrnn.namespace.yaml"
    assert not Path(got["pynwb"]).resolve().is_relative_to(REPO / "nwb_facrnn")
    assert got["modules"] == []
    assert not [p for p in got["sys_path"] if Path(p).is_relative_to(REPO)], got["sys_path"]

    for res, fit, (_, _, region) in zip(expected, got["fits"], files, strict=True):
        np.testing.assert_array_equal(np.asarray(fit["latents"], np.float32), res.latents)
        np.testing.assert_allclose(fit["timestamps"], res.timestamps)
        if res.trial_ids is None:
            assert fit["trial_ids"] is None
        else:
            np.testing.assert_array_equal(fit["trial_ids"], res.trial_ids)
        k, h = res.n_groups * res.group_rank, res.group_rank
        assert fit["group_boundaries"] == list(range(0, k + 1, h))
        ol = np.asarray(fit["output_loadings"], np.float32)
        np.testing.assert_array_equal(ol, res.output_loadings)
        il = np.asarray(fit["input_loadings"], np.float32)
        np.testing.assert_array_equal(il, res.input_loadings.T)
        assert fit["dominant_group"] == res.dominant_group.tolist()
        assert fit["region_table"] == ("units" if region == "units" else "PlaneSegmentation")
        assert fit["unit_ids"] == res.unit_ids.tolist()
        assert fit["expanded_rows"] == len(res.unit_ids)
        assert (fit["n_groups"], fit["group_rank"]) == (res.n_groups, res.group_rank)
        assert (fit["beta"], fit["bin_size"]) == (20.0, res.bin_size)
        assert fit["parameters"] == res.params
        w = fit["weights"]
        np.testing.assert_array_equal(np.float32(w["output_loadings"]), res.output_loadings)
        np.testing.assert_array_equal(np.float32(w["input_loadings"]), res.input_loadings)
        assert len(fit["observed_mean"]) == len(res.unit_ids)
        assert set(fit["history"]) == set(res.history)
        assert fit["epochs"] == 2
        assert len(fit["metrics"]) == len(res.metrics)
        assert "log_likelihood" in fit["metrics"]
        assert fit["values"][fit["metrics"].index("log_likelihood")] == pytest.approx(
            res.metrics["log_likelihood"]
        )
