"""The examples run end to end and print the numbers the README quotes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nwb_facrnn import FacRNN

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, tmp_path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text}"
    return float(m.group(1))


def test_voltage_imaging_example_recovers_groups(tmp_path):
    out = _run("voltage_imaging_nwb.py", tmp_path)
    assert (tmp_path / "voltage_imaging.nwb").is_file()
    assert f"results: {tmp_path / 'voltage_imaging_facrnn.nwb'}" in out
    r2 = re.search(r"group latent R² per true group: \[([\d.]+), ([\d.]+)\]", out)
    assert r2 and min(float(r2.group(1)), float(r2.group(2))) >= 0.8
    assert _number(r"dominant fitted group is their true group: (\d+)%", out) >= 90


@pytest.mark.timeout(600)
def test_spiking_example_decodes_behaviour(tmp_path):
    out = _run("spiking_nwb.py", tmp_path)
    assert "80 trials x 35 bins x 48 units" in out
    assert _number(r"hand velocity decoded .*: R² = ([\d.]+)", out) > 0.3
    assert _number(r"group latent R² against the ground truth: ([\d.]+)", out) > 0.45
    from nwb_facrnn import read_results

    res = read_results(tmp_path / "mc_maze_like_facrnn.nwb")
    decoded = _number(r"hand velocity decoded .*: R² = ([\d.]+)", out)
    assert res.metrics["hand_vel_decoding_r2"] == pytest.approx(decoded, abs=5e-4)
    assert res.unit_table == "/units" and len(res.unit_ids) == 48


def test_example_runs_and_saves_a_loadable_model(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "synthetic_groups.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line}
    r2 = {k: float(lines[k].split("group latent R^2 ")[1].split()[0]) for k in ("lrRNN", "FacRNN")}
    assert r2["FacRNN"] >= 0.9 and r2["FacRNN"] > r2["lrRNN"] + 0.1
    model = FacRNN.load(tmp_path / "facrnn_synthetic.npz")
    assert model.connectivity_.shape == (20, 20)
