"""``nwb-facrnn fit``: read, fit and write results into NWB from the command line."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_facrnn import FacRNN, read_nwb, read_results
from nwb_facrnn.cli import main
from nwb_facrnn.metrics import behavior_decoding_r2
from nwb_facrnn.synthetic import make_imaging_session, make_spiking_session


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spk = make_spiking_session(d / "spiking.nwb", seed=0, n_units=20, n_trials=10)
        img = make_imaging_session(
            d / "imaging.nwb", seed=0, n_rois=16, frame_shape=(64, 64), duration=0.5
        )
    return spk.path, img.path


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, terminal_width=200)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_fit_writes_the_results_and_prints_where(sessions, tmp_path):
    _, img = sessions
    out = tmp_path / "fit.nwb"
    args = ["fit", str(img), "--rois", "accepted == True", "--n-groups", "2", "--group-rank"]
    args += ["2", "--epochs", "3", "--n-init", "1", "--seed", "4", "--output", str(out)]
    text = _invoke(args)
    assert f"results: {out}  (container /processing/ophys/facrnn_G2H2_beta20_seed4)" in text
    res = read_results(out)
    assert (res.n_groups, res.group_rank, res.params["seed"], res.params["max_epochs"]) == (
        2,
        2,
        4,
        3,
    )
    assert res.params["observation"] == "gaussian"  # auto: imaging
    assert "data: NeuralData(" in text and f"writes: {out} (facrnn_G2H2_beta20_seed4)" in text
    assert "metrics on all time steps" in text and res.steps == "all"
    for key in ("log_likelihood", "gaussian_partial_correlation", "reconstruction_r2"):
        shown = float(re.search(rf"{key}\s*│\s*(-?[\d.]+)", text).group(1))  # METRICS names
        assert shown == pytest.approx(res.metrics[key], abs=1e-4)
    assert f'read with: nwb_facrnn.read_results("{out}", name="facrnn_G2H2_beta20_seed4")' in text
    # the same fit from Python gives the same model (seeded, CPU)
    data = read_nwb(img, rois={"accepted": True})
    model = FacRNN(n_groups=2, group_rank=2, max_epochs=3, n_init=1, seed=4, progress=False)
    np.testing.assert_allclose(res.output_loadings, model.fit(data).output_loadings_, atol=1e-6)

    info = _invoke(["info", str(out)])
    assert "FacRNN fits" in info and "facrnn_G2H2_beta20_seed4" in info
    assert "/processing/ophys/facrnn_G2H2_beta20_seed4/latents" not in info  # not "behaviour"

    # the same fit again is refused before it trains
    again = CliRunner().invoke(main, args, terminal_width=200)
    assert isinstance(again.exception, FileExistsError)
    assert "already holds this fit" in str(again.exception) and "--overwrite" in str(
        again.exception
    )
    assert "epoch" not in again.output

    # a second fit with another seed goes into the same file
    _invoke([*args[:-2], "--seed", "5", "--output", str(out)])
    info = _invoke(["info", str(out)])
    assert "facrnn_G2H2_beta20_seed4" in info and "facrnn_G2H2_beta20_seed5" in info


def test_fit_spikes_with_trial_alignment(sessions, tmp_path):
    spk, _ = sessions
    args = ["fit", str(spk), "--align", "move_onset_time", "--window", "-0.2", "0.3"]
    args += ["--units", "heldout == False", "--behavior", "hand_vel", "--epochs", "2"]
    args += ["--n-init", "1", "--group-rank", "1", "--smoothing", "2", "--name", "aligned"]
    text = _invoke(args)
    out = spk.with_name("spiking_facrnn.nwb")
    assert f"results: {out}" in text
    res = read_results(out, name="aligned")
    assert res.params["observation"] == "poisson" and res.params["smoothing"] == 2.0
    assert res.provenance["options"]["window"] == [-0.2, 0.3]
    assert res.unit_table == "/units" and res.trial_ids is not None
    assert len(np.unique(res.trial_ids)) == 10
    # hand velocity decoded from the latents: in the table and stored with the fit
    shown = re.search(r"hand_vel_decoding_r2\s*│\s*(-?[\d.]+)", text)
    assert shown, text
    stored = res.metrics["hand_vel_decoding_r2"]
    assert float(shown.group(1)) == pytest.approx(stored, abs=1e-4)
    data = read_nwb(
        spk,
        align="move_onset_time",
        window=(-0.2, 0.3),
        units={"heldout": False},
        behavior="hand_vel",
    )
    z = FacRNN.from_nwb(out, name="aligned").transform(data)
    assert stored == pytest.approx(
        behavior_decoding_r2(z, data.behavior, seed=0)["hand_vel"], abs=1e-6
    )


def test_fit_bad_input_is_one_line_and_exit_code_2(sessions, tmp_path):
    _, img = sessions
    broken = tmp_path / "broken.nwb"
    broken.write_text("not an NWB file")
    cases = [
        ([str(tmp_path / "missing.nwb")], "missing.nwb: /: no such file or directory"),
        ([str(broken)], "broken.nwb: /: not an NWB file"),
        ([str(img), "--series", "Nope"], "no RoiResponseSeries"),
        ([str(img), "--output", str(img)], "is the source file; pass in_place=True"),
    ]
    for extra, message in cases:
        run = subprocess.run(
            [sys.executable, "-m", "nwb_facrnn.cli", "fit", *extra, "--epochs", "1"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 2, run.stderr
        err = run.stdout + run.stderr
        assert message in err, err
        assert "Traceback" not in err and run.stderr.strip().count("\n") == 0  # one line


@pytest.mark.parametrize("kind", ["toml", "yaml"])
def test_fit_takes_its_options_from_a_config_file(sessions, tmp_path, kind):
    """TOML or YAML, flat or in tables, Python names or option names; the command line wins."""
    _, img = sessions
    out = tmp_path / "from_config.nwb"
    if kind == "toml":
        text = (
            f'source = "{img}"\n[data]\nrois = "accepted == True"\nbin_size = 0.004\n'
            f"[model]\nn_groups = 2\ngroup-rank = 2\nepochs = 3\nn_init = 1\nseed = 7\n"
            "learning_rate = 0.01\noutput_activation = 'relu'\n"
            f'[output]\noutput = "{out}"\n'
        )
    else:
        text = (
            f"source: {img}\ndata:\n  rois: accepted == True\n  bin_size: 0.004\n"
            f"model:\n  n_groups: 2\n  group_rank: 2\n  max_epochs: 3\n  n_init: 1\n  seed: 7\n"
            "  learning-rate: 0.01\n  output_activation: relu\n"
            f"output: {out}\n"
        )
    config = tmp_path / f"fit.{kind}"
    config.write_text(text)
    printed = _invoke(["fit", "--config", str(config), "--seed", "9"])
    assert f"results: {out}" in printed
    res = read_results(out)
    assert (res.n_groups, res.group_rank, res.params["max_epochs"], res.bin_size) == (
        2,
        2,
        3,
        0.004,
    )
    assert res.params["seed"] == 9  # the command line wins over the file
    assert res.params["learning_rate"] == 0.01 and res.params["output_activation"] == "relu"
    assert res.provenance["options"]["rois"] == "accepted == True"


def test_bad_config_files_are_one_line_errors(sessions, tmp_path):
    _, img = sessions
    cases = {
        "typo.toml": ("n_group = 2\n", r"typo\.toml: unknown setting 'n_group'; known: .*n_groups"),
        "broken.toml": ("n_groups = \n", r"broken\.toml: not valid TOML"),
        "list.yaml": ("- 1\n- 2\n", r"list\.yaml: must hold a table of settings, not list"),
        "twice.toml": ("seed = 1\n[model]\nseed = 2\n", r"twice\.toml: 'seed' is set twice"),
        "fit.json": ("{}", r"fit\.json: a config file is \.toml, \.yaml or \.yml"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        out = subprocess.run(
            [sys.executable, "-m", "nwb_facrnn.cli", "fit", str(img), "--config", str(path)],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2, out.stderr
        assert re.search(message, out.stderr.replace("\n", " ")), (name, out.stderr)
        assert "Traceback" not in out.stderr
