"""One name per metric: the fit table, NWB ``fit_metrics``, a sweep's summary.csv and the
benchmark CSV all use the names of :data:`nwb_facrnn.metrics.METRICS`."""

from __future__ import annotations

import csv
import re
import warnings

import pytest
from click.testing import CliRunner

from nwb_facrnn import metrics
from nwb_facrnn.benchmark import evaluate_method, write_csv
from nwb_facrnn.cli import main
from nwb_facrnn.io import open_nwbfile
from nwb_facrnn.synthetic import make_spiking_session

#: The metrics every fit is scored with (plus one decoding R² per behavioural series).
SHARED = {"log_likelihood", "gaussian_partial_correlation", "reconstruction_r2"}
#: Names of one quantity used before the vocabulary was unified; none may come back.
LEGACY = re.compile(r"\b(partial_correlation|test_log_likelihood|heldout_\w+)\b")


def _known(name: str) -> bool:
    return name in metrics.METRICS or name.endswith("_decoding_r2")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    d = tmp_path_factory.mktemp("vocabulary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = make_spiking_session(d / "maze.nwb", seed=2, n_units=12, n_trials=8)
    return truth.path


def _stored_names(path, name: str) -> list[str]:
    with open_nwbfile(path) as (nwbfile, _source, _backend):
        table = nwbfile.processing["ecephys"][name].model.fit_metrics
        names = [str(m) for m in table["metric"][:]]
        steps = {str(s) for s in table["steps"][:]}
    assert len(steps) == 1
    return names


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, terminal_width=240)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_fit_table_nwb_summary_and_benchmark_share_metric_names(session, tmp_path):
    options = ["--behavior", "hand_vel", "--max-epochs", "2", "--n-init", "1"]
    out = tmp_path / "fit.nwb"
    table = _invoke(["fit", str(session), *options, "--output", str(out)])
    stored = _stored_names(out, "facrnn_G2H3_beta20_seed0")
    assert SHARED | {"hand_vel_decoding_r2"} <= set(stored)
    assert all(_known(n) for n in stored), stored
    for name in stored:  # the fit table names each stored metric as NWB does
        assert re.search(rf"\b{name}\b", table), (name, table)

    sweep_dir = tmp_path / "sweep"
    grid = ["--n-groups", "2", "--group-rank", "3", "--beta", "20", "--seeds", "0"]
    _invoke(["sweep", str(session), *options, *grid, "--serial", "--output-dir", str(sweep_dir)])
    with (sweep_dir / "summary.csv").open() as fh:
        header = next(csv.reader(fh))
    row = next(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert row["steps"] == "heldout"
    metric_columns = {c for c in header if _known(c)}
    assert metric_columns == set(stored)  # the same names, scored on the held-out steps
    assert set(_stored_names(row["path"], row["fit_name"])) == set(stored)

    rows = [evaluate_method("FacRNN", seed=0, max_epochs=1, n_init=1)]
    bench = write_csv(rows, tmp_path / "bench.csv")
    with bench.open() as fh:
        bench_header = next(csv.reader(fh))
    assert SHARED <= set(bench_header)
    assert {"kernel_partial_correlation", "group_latent_r2"} <= set(bench_header)
    other = ("method", "seed", "steps", "fit_time_s")
    assert all(_known(c) for c in bench_header if c not in other)

    for text in (table, " ".join(stored), " ".join(header), " ".join(bench_header)):
        assert not LEGACY.search(text), LEGACY.search(text)


def test_legacy_names_are_read_under_todays_names():
    old = {
        "partial_correlation": 0.1,
        "heldout_log_likelihood": -3.0,
        "heldout_hand_vel_decoding_r2": 0.4,
        "log_likelihood": -2.0,
    }
    new = metrics.canonical_metrics(old)
    assert new == {
        "gaussian_partial_correlation": 0.1,
        "log_likelihood": -3.0,
        "hand_vel_decoding_r2": 0.4,
    }
    assert metrics.metric_definition("x_decoding_r2") == metrics.METRICS["<behavior>_decoding_r2"]
    with pytest.raises(KeyError):
        metrics.metric_definition("nonsense")
