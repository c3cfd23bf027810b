"""The synthetic benchmark, the command line and the example."""

import csv
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from nwb_facrnn.benchmark import (
    METHODS,
    BenchmarkRow,
    evaluate_method,
    markdown_table,
    summarize,
)
from nwb_facrnn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_evaluate_method_scores_held_out_steps():
    row = evaluate_method("LINT", seed=3, max_epochs=20, n_init=1)
    assert row.method == "LINT" and row.seed == 3
    assert 0.3 < row.group_latent_r2 <= 1.0
    assert row.component_latent_r2 > 0.9  # the subspace is found, the grouping is arbitrary
    assert row.connectivity_corr > 0.7
    assert row.reconstruction_r2 > 0.8
    assert row.fit_time_s > 0


def test_summary_and_markdown_table():
    rows = [
        BenchmarkRow(
            method=m,
            seed=s,
            steps="heldout",
            kernel_partial_correlation=0.1 * s,
            gaussian_partial_correlation=0.05 * s,
            group_latent_r2=0.5 + 0.1 * s,
            component_latent_r2=0.9,
            subconnectivity_corr=0.8,
            connectivity_corr=0.9,
            reconstruction_r2=0.95,
            log_likelihood=-1.0,
            fit_time_s=1.0,
        )
        for m in ("lrRNN", "FacRNN")
        for s in (0, 1, 2)
    ]
    summary = summarize(rows)
    assert list(summary) == ["lrRNN", "FacRNN"]
    mean, std = summary["FacRNN"]["group_latent_r2"]
    assert mean == np.float64(0.6) and std == np.std([0.5, 0.6, 0.7])
    table = markdown_table(rows)
    assert table.count("\n") == 3 and "| FacRNN | 0.100 ± 0.082 | 0.600 ± 0.082" in table


def test_cli_benchmark_writes_table_figure_and_markdown(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "benchmark",
            "synthetic",
            "--seeds",
            "1",
            "--max-epochs",
            "3",
            "--output-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    with (tmp_path / "synthetic_benchmark.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == list(METHODS)
    assert all(0 <= float(r["group_latent_r2"]) <= 1 for r in rows)
    png = (tmp_path / "synthetic_benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "FacRNN-full" in (tmp_path / "synthetic_benchmark.md").read_text()
    for method in METHODS:
        assert method in result.output
    assert "metrics on the held-out (odd) time steps" in result.output
    assert all(r["steps"] == "heldout" for r in rows)
    assert str(tmp_path / "synthetic_benchmark.csv") in result.output


def test_cli_rejects_bad_seeds():
    result = CliRunner().invoke(main, ["benchmark", "synthetic", "--seeds", "a-b"])
    assert result.exit_code == 2
    assert "expected a list like '0-4'" in result.output
