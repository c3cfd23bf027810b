"""Sweeps (``nwb_facrnn.sweep``, ``nwb-facrnn sweep`` / ``select``): Ray tasks or one fit after
another, the summary table, resume, failures, model selection, sources from globs and DANDI."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import warnings

import pytest
from click.testing import CliRunner

from nwb_facrnn import FacRNN, read_nwb, read_results
from nwb_facrnn.cli import main
from nwb_facrnn.evaluation import interleaved_steps
from nwb_facrnn.sweep import (
    FitSpec,
    expand_sources,
    finished_row,
    plan_sweep,
    read_summary,
    run_sweep,
    select_model,
    selection_markdown,
    write_summary,
)
from nwb_facrnn.sweep import running as sweep_running
from nwb_facrnn.sweep.rows import write_row
from nwb_facrnn.synthetic import make_imaging_session, make_spiking_session

READ = {"series": "DfOverF"}
FIT = {"max_epochs": 3, "n_init": 1, "batch_size": 64}
METRICS = ("log_likelihood", "gaussian_partial_correlation", "reconstruction_r2")


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """Two small imaging sessions, a spiking one with trials and hand velocity, a non-NWB
    file named like NWB."""
    d = tmp_path_factory.mktemp("sweep_sessions")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in (1, 2):
            make_imaging_session(
                d / f"img{i}.nwb", seed=i, n_rois=12, frame_shape=(48, 48), duration=0.6
            )
        make_spiking_session(d / "spk.nwb", seed=0, n_units=16, n_trials=8)
    (d / "broken.nwb").write_text("not an NWB file")
    return d


@pytest.fixture(scope="module")
def ray_sweep(sessions, tmp_path_factory):
    """4 fits of img1 (G 1, 2 x seeds 0, 1) and the same 4 of a file that is not NWB, as Ray
    tasks on a local 2-CPU instance that run_sweep starts and shuts down."""
    import ray  # the distributed extra, installed by make install

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out = tmp_path_factory.mktemp("ray_sweep")
    sources = [str(sessions / "img1.nwb"), str(sessions / "broken.nwb")]
    specs = plan_sweep(sources, [1, 2], [2], [20], [0, 1], READ, FIT)
    seen = []
    rows = run_sweep(specs, out, backend="ray", num_cpus=2, on_result=seen.append)
    assert not ray.is_initialized()  # the instance it started is shut down
    return specs, rows, out, seen


# ------------------------------------------------------------------------------ Ray
def test_ray_sweep_writes_one_nwb_file_per_fit_and_the_summary(ray_sweep, sessions):
    specs, rows, out, seen = ray_sweep
    assert [r["key"] for r in rows] == [s.key for s in specs]  # in the order of the specs
    assert sorted(r["key"] for r in seen) == sorted(s.key for s in specs)  # progress: all
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4 and {r["source"] for r in ok} == {str(sessions / "img1.nwb")}
    assert {(r["n_groups"], r["seed"]) for r in ok} == {(1, 0), (1, 1), (2, 0), (2, 1)}

    data = read_nwb(sessions / "img1.nwb", **READ)
    odd = ~interleaved_steps(data)
    for row in ok:
        assert row["path"] == str(out / "fits" / f"{row['key']}.nwb")
        res = read_results(row["path"], name=row["fit_name"])
        assert (res.n_groups, res.group_rank, res.params["seed"]) == (
            row["n_groups"],
            2,
            row["seed"],
        )
        assert res.params["max_epochs"] == 3 and res.params["observation"] == "gaussian"
        assert (
            row["steps"] == res.steps == "heldout"
        )  # trained on the even steps, scored on the odd
        for key in METRICS:  # stored in the NWB file as in the table
            assert res.metrics[key] == pytest.approx(row[key], rel=1e-12)
        # the held-out log-likelihood again from the model in the file, on the odd steps
        model = FacRNN.from_nwb(row["path"], name=row["fit_name"], device="cpu")
        assert model.score(data, step_mask=odd) == pytest.approx(row["log_likelihood"], rel=1e-6)
        if row["n_groups"] == 1:
            assert row["gaussian_partial_correlation"] == 0.0  # nothing to disentangle
        else:
            assert 0 < row["gaussian_partial_correlation"] < 1
        assert 0 < row["reconstruction_r2"] < 1 and row["n_epochs"] == 3

    path = write_summary(rows, out)
    assert path == out / "summary.csv"
    table = read_summary(out)
    assert [r["key"] for r in table] == [r["key"] for r in rows]
    for got, row in zip(table, rows, strict=True):
        assert got["status"] == row["status"] and got["seed"] == row["seed"]
        for key in METRICS:
            assert got[key] == (row.get(key) if row["status"] == "ok" else None)


def test_a_failing_fit_is_recorded_and_the_others_go_on(ray_sweep):
    _, rows, out, _ = ray_sweep
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 4
    for row in failed:
        assert row["error"].startswith("NWBReadError: ") and "not an NWB file" in row["error"]
        assert "\n" not in row["error"]
        stored = json.loads((out / "fits" / f"{row['key']}.json").read_text())
        assert stored["status"] == "failed" and "Traceback" in stored["traceback"]
        assert not (out / "fits" / f"{row['key']}.nwb").exists()
    table = read_summary(write_summary(rows, out))
    assert sum(r["status"] == "failed" for r in table) == 4
    assert all(r["error"] for r in table if r["status"] == "failed")


def test_serial_gives_the_rows_ray_gives(ray_sweep, tmp_path):
    specs, rows, _, _ = ray_sweep
    ok = [s for s, r in zip(specs, rows, strict=True) if r["status"] == "ok"]
    serial = run_sweep(ok[:2], tmp_path, backend="serial")
    by_key = {r["key"]: r for r in rows}
    for row in serial:
        assert row["status"] == "ok" and not row["reused"]
        for key in METRICS:
            assert row[key] == pytest.approx(by_key[row["key"]][key], rel=1e-5, abs=1e-7)


def test_a_finished_ray_sweep_is_not_run_again(ray_sweep):
    specs, rows, out, _ = ray_sweep
    ok = [s for s, r in zip(specs, rows, strict=True) if r["status"] == "ok"]
    files = [out / "fits" / f"{s.key}{ext}" for s in ok for ext in (".json", ".nwb")]
    before = [f.stat().st_mtime_ns for f in files]
    again = run_sweep(ok, out, backend="ray", num_cpus=2)  # nothing to run: Ray not started
    assert all(r["reused"] and r["status"] == "ok" for r in again)
    assert [f.stat().st_mtime_ns for f in files] == before
    by_key = {r["key"]: r for r in rows}
    for row in again:
        for key in METRICS:
            assert row[key] == by_key[row["key"]][key]


# ------------------------------------------------------------------------------ resume
def test_resume_skips_finished_fits_and_retries_failed_ones(sessions, tmp_path, monkeypatch):
    bad = tmp_path / "later.nwb"
    bad.write_text("not yet")
    specs = plan_sweep([str(sessions / "img2.nwb"), str(bad)], [1], [2], [0], [0], READ, FIT)
    ran = []
    real = sweep_running.run_fit
    monkeypatch.setattr(
        sweep_running, "run_fit", lambda spec, out, **kw: ran.append(spec.key) or real(spec, out)
    )
    first = run_sweep(specs, tmp_path / "out", backend="serial")
    assert [r["status"] for r in first] == ["ok", "failed"] and len(ran) == 2
    done = tmp_path / "out" / "fits" / f"{specs[0].key}.nwb"
    mtime = done.stat().st_mtime_ns

    ran.clear()
    second = run_sweep(specs, tmp_path / "out", backend="serial")
    assert ran == [specs[1].key]  # only the failed one
    assert second[0]["reused"] and second[0] == {**first[0], "reused": True}
    assert second[1]["status"] == "failed" and done.stat().st_mtime_ns == mtime

    shutil.copy(sessions / "img1.nwb", bad)  # the failure is fixed: the retry succeeds
    ran.clear()
    third = run_sweep(specs, tmp_path / "out", backend="serial")
    assert ran == [specs[1].key] and [r["status"] for r in third] == ["ok", "ok"]

    # a run killed after the NWB file but before its row: fit again, the file replaced
    (tmp_path / "out" / "fits" / f"{specs[0].key}.json").unlink()
    ran.clear()
    fourth = run_sweep(specs, tmp_path / "out", backend="serial")
    assert ran == [specs[0].key] and fourth[0]["status"] == "ok"
    assert fourth[0]["log_likelihood"] == pytest.approx(first[0]["log_likelihood"], rel=1e-6)


def test_without_ray_the_sweep_runs_serially(sessions, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_running, "ray_available", lambda: False)
    specs = plan_sweep([str(sessions / "img1.nwb")], [1], [1], [0], [3], READ, FIT)
    rows = run_sweep(specs, tmp_path)  # backend="auto"
    assert rows[0]["status"] == "ok"
    with pytest.raises(ImportError, match=r"pip install 'nwb-facrnn\[distributed\]'"):
        run_sweep(specs, tmp_path, backend="ray")
    with pytest.raises(ImportError, match="distributed"):
        run_sweep(specs, tmp_path, address="ray://head:10001")
    with pytest.raises(ValueError, match="backend must be"):
        run_sweep(specs, tmp_path, backend="dask")


def test_a_ray_client_address_needs_the_ray_client(sessions, tmp_path, monkeypatch):
    importable = sweep_running._importable  # make install brings the client: hide it
    monkeypatch.setattr(sweep_running, "_importable", lambda m: m != "grpc" and importable(m))
    specs = plan_sweep([str(sessions / "img1.nwb")], [1], [1], [0], [0], READ, FIT)
    with pytest.raises(ImportError, match=r"pip install 'ray\[client\]'"):
        run_sweep(specs, tmp_path, address="ray://127.0.0.1:10001")


def test_trials_and_behaviour_give_decoding_columns(sessions, tmp_path):
    read = {"units": "heldout == False", "behavior": ["hand_vel"]}
    read |= {"align": "move_onset_time", "window": (-0.2, 0.3)}
    specs = plan_sweep([str(sessions / "spk.nwb")], [2], [1], [20], [0], read, FIT)
    (row,) = run_sweep(specs, tmp_path, backend="serial")
    assert row["status"] == "ok", row.get("error")
    res = read_results(row["path"])
    assert res.params["observation"] == "poisson"  # auto: spikes
    assert res.metrics["hand_vel_decoding_r2"] == pytest.approx(row["hand_vel_decoding_r2"])
    data = read_nwb(sessions / "spk.nwb", **read)
    steps = interleaved_steps(data)
    assert steps.shape == data.activity.shape[:2] and (steps == steps[:1]).all()
    path = write_summary(run_sweep(specs, tmp_path, backend="serial"), tmp_path)
    header = path.read_text().splitlines()[0].split(",")
    assert header.index("hand_vel_decoding_r2") == header.index("reconstruction_r2") + 1


# ------------------------------------------------------------------------------ specs
def test_keys_are_stable_and_options_never_collide(sessions, tmp_path):
    src = str(sessions / "img1.nwb")
    spec = FitSpec(src, 2, 3, 20.0, 0, {"series": "DfOverF"}, {"max_epochs": 40})
    assert spec.key.startswith("img1_facrnn_G2H3_beta20_seed0_")
    # defaults, fetch options and tuples vs lists do not change the key
    same = FitSpec(
        src,
        2,
        3,
        20.0,
        0,
        {"series": "DfOverF", "bin_size": None, "zscore": False, "cache": False},
        {"max_epochs": 40, "n_init": 4, "observation": "auto"},
    )
    assert same.key == spec.key
    keys = {
        spec.key,
        FitSpec(src, 2, 3, 20.0, 0, {"series": "DfOverF", "zscore": True}, {}).key,
        FitSpec(src, 2, 3, 20.0, 0, {"series": "DfOverF"}, {"max_epochs": 41}).key,
        FitSpec(str(tmp_path / "img1.nwb"), 2, 3, 20.0, 0, {"series": "DfOverF"}, {}).key,
        FitSpec(src, 2, 3, 0.5, 0, {"series": "DfOverF"}, {"max_epochs": 40}).key,
    }
    assert len(keys) == 5
    assert all(k.replace("_", "").replace("-", "").replace(".", "").isalnum() for k in keys)
    specs = plan_sweep([src], [1, 2, 2], [3], [0, 5.0], range(2))
    assert len(specs) == 2 * 2 * 2 and len({s.key for s in specs}) == 8
    with pytest.raises(ValueError, match="unknown fit option"):
        plan_sweep([src], [1], [1], [0], [0], fit_options={"n_groups": 2})
    with pytest.raises(ValueError, match="unknown read option"):
        plan_sweep([src], [1], [1], [0], [0], read_options={"serie": "x"})
    with pytest.raises(ValueError, match="n_groups must be >= 1"):
        plan_sweep([src], [0], [1], [0], [0])
    with pytest.raises(ValueError, match="beta"):
        plan_sweep([src], [1], [1], [-1], [0])


def test_local_globs_expand_and_a_glob_matching_nothing_is_an_error(sessions, monkeypatch):
    monkeypatch.chdir(sessions)
    assert expand_sources(["img*.nwb"]) == [str(sessions / "img1.nwb"), str(sessions / "img2.nwb")]
    assert expand_sources(["img2.nwb", str(sessions / "img*.nwb")]) == [
        str(sessions / "img2.nwb"),
        str(sessions / "img1.nwb"),
    ]
    with pytest.raises(ValueError, match=r"nothing\*\.nwb: no file matches"):
        expand_sources(["img1.nwb", "nothing*.nwb"])
    with pytest.raises(ValueError, match=r"missing\.nwb: no such file"):
        expand_sources(["missing.nwb"])


def test_a_dandiset_expands_to_its_nwb_assets_and_an_asset_is_fit(
    fake_dandi, sessions, tmp_path, monkeypatch
):
    monkeypatch.setenv("NWB_FACRNN_CACHE_DIR", str(tmp_path / "cache"))
    a, b = "sub-01/sub-01_ses-1_ophys.nwb", "sub-02/sub-02_ses-1_ophys.nwb"
    asset = fake_dandi.add_asset("000321", a, sessions / "img1.nwb")
    fake_dandi.add_asset("000321", b, sessions / "img2.nwb")
    notes = tmp_path / "notes.txt"
    notes.write_text("not NWB")
    fake_dandi.add_asset("000321", "sub-01/notes.txt", notes)
    assert expand_sources(["DANDI:000321"]) == [
        f"DANDI:000321@draft/{a}",
        f"DANDI:000321@draft/{b}",
    ]
    assert expand_sources(["DANDI:000321/sub-02/*.nwb"]) == [f"DANDI:000321@draft/{b}"]
    assert expand_sources([f"DANDI:000321/{a}"]) == [f"DANDI:000321/{a}"]  # as given
    with pytest.raises(ValueError, match="no NWB asset of DANDI:000321@draft matches"):
        expand_sources(["DANDI:000321/sub-09/*.nwb"])

    specs = plan_sweep(expand_sources(["DANDI:000321"])[:1], [1], [2], [0], [0], READ, FIT)
    assert specs[0].key.startswith("sub-01_ses-1_ophys_facrnn_G1H2_beta0_seed0_")
    (row,) = run_sweep(specs, tmp_path / "out", backend="serial")
    assert row["status"] == "ok", row.get("error")
    res = read_results(row["path"])
    remote = res.provenance["remote"]["dandi"]
    assert remote["path"] == a and remote["asset_id"] == asset
    assert res.provenance["source"] == f"DANDI:000321@draft/{a}"


# ------------------------------------------------------------------------------ selection
def _row(g, h, beta, seed, ll, pc, status="ok", source="s.nwb"):
    return {
        "source": source,
        "key": f"s_G{g}H{h}_b{beta}_s{seed}",
        "n_groups": g,
        "group_rank": h,
        "beta": beta,
        "seed": seed,
        "status": status,
        "log_likelihood": ll if status == "ok" else None,
        "gaussian_partial_correlation": pc if status == "ok" else None,
        "reconstruction_r2": 0.5 if status == "ok" else None,
    }


def test_select_model_takes_the_best_disentangled_configuration():
    rows = [
        # the highest likelihood, but its groups are entangled
        *(_row(3, 3, 0.0, s, 12.0 + s * 0.1, 0.4) for s in range(3)),
        *(_row(2, 3, 20.0, s, 11.0 + s * 0.1, 0.02) for s in range(3)),
        *(_row(2, 2, 20.0, s, 10.95 + s * 0.1, 0.01) for s in range(3)),
        *(_row(1, 3, 20.0, s, 9.0, 0.0) for s in range(3)),
        # better still, but one of its fits failed: not comparable
        *(_row(1, 6, 20.0, s, 13.0, 0.0) for s in range(2)),
        _row(1, 6, 20.0, 2, None, None, status="failed"),
    ]
    sel = select_model(rows)
    assert (sel.n_groups, sel.group_rank, sel.beta) == (2, 3, 20.0)
    assert sel.choice["log_likelihood_mean"] == pytest.approx(11.1)
    assert sel.choice["n_fits"] == 3 and sel.choice["chosen"]
    by = {(r["n_groups"], r["group_rank"], r["beta"]): r for r in sel.table}
    assert not by[(3, 3, 0.0)]["eligible"]
    assert "partial correlation 0.4" in by[(3, 3, 0.0)]["reason"]
    assert not by[(1, 6, 20.0)]["eligible"]
    assert "1 of 3 fits failed" in by[(1, 6, 20.0)]["reason"]
    assert sum(r["chosen"] for r in sel.table) == 1
    # the one-standard-error rule: (2, 2) is within one SE of (2, 3) and has fewer latents
    one_se = select_model(rows, rule="one_se")
    assert (one_se.n_groups, one_se.group_rank) == (2, 2)
    assert (one_se.best["n_groups"], one_se.best["group_rank"]) == (2, 3)
    # a looser threshold makes the entangled one eligible
    assert select_model(rows, pc_threshold=0.5).n_groups == 3
    text = selection_markdown(sel)
    assert "| **2** | **3** | **20** |" in text and "◀ chosen" in text


def test_select_model_errors_and_ignored_sources():
    rows = [_row(2, 2, 5.0, s, 1.0, 0.3) for s in range(2)] + [_row(3, 1, 5.0, 0, 2.0, 0.2)]
    with pytest.raises(ValueError, match=r"smallest mean partial correlation is 0\.2 .*G=3, H=1"):
        select_model(rows)
    with pytest.raises(ValueError, match="no finished fit"):
        select_model([_row(1, 1, 0.0, 0, None, None, status="failed")])
    with pytest.raises(ValueError, match="rule must be"):
        select_model(rows, rule="aic")
    broken = [_row(g, 1, 0.0, 0, None, None, "failed", "bad.nwb") for g in (1, 2)]
    sel = select_model([_row(1, 1, 0.0, 0, 1.0, 0.0), _row(2, 1, 0.0, 0, 2.0, 0.05), *broken])
    assert sel.n_groups == 2 and sel.ignored_sources == ["bad.nwb"]
    assert all(r["n_failed"] == 0 for r in sel.table)
    nan = [_row(1, 1, 0.0, 0, 1.0, 0.0), _row(2, 1, 0.0, 0, 5.0, math.nan)]
    assert select_model(nan).n_groups == 1  # an undefined partial correlation is not eligible


# ------------------------------------------------------------------------------ CLI
def _invoke(args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args], terminal_width=200)
    assert result.exit_code == code, result.output + repr(result.exception)
    return result


def test_cli_sweep_prints_the_table_and_select_prints_the_choice(sessions, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", sessions / "img1.nwb", sessions / "broken.nwb", "--series", "DfOverF"]
    args += ["--n-groups", "1,2", "--group-rank", "2", "--seeds", "0", "--epochs", "3"]
    args += ["--n-init", "1", "--output-dir", out, "--serial"]
    text = _invoke(args).output
    assert "4 fits on this process, one after another" in text
    assert "Sweep (metrics on the held-out (odd) time steps)" in text
    assert all(name in text for name in METRICS)  # the metrics' names, as in summary.csv
    assert "4 fits: 2 run, 0 finished before (skipped), 2 failed" in text
    assert "failed broken_facrnn_G1H2_beta20_seed0_" in text and "not an NWB file" in text
    assert f"summary: {out / 'summary.csv'}" in text
    rows = read_summary(out / "summary.csv")
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed"]
    assert all(r["steps"] == "heldout" for r in rows)
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert "steps" in header and not any(c.startswith("heldout_") for c in header)
    # the same fits from Python have the same keys: the CLI's defaults change nothing
    fit = {"max_epochs": 3, "n_init": 1}
    specs = plan_sweep([sessions / "img1.nwb"], [1, 2], [2], [20], [0], READ, fit)
    assert [s.key for s in specs] == [r["key"] for r in rows[:2]]

    again = _invoke(args).output
    assert "4 fits: 0 run, 2 finished before (skipped), 2 failed" in again

    chosen = _invoke(["select", out]).output
    best = max((r for r in rows if r["status"] == "ok"), key=lambda r: r["log_likelihood"])
    assert f"chosen: G = {best['n_groups']}, H = 2, beta = 20" in chosen
    assert "◀ chosen" in chosen and "left out (no fit of it finished)" in chosen
    command = (
        f"nwb-facrnn fit {sessions / 'img1.nwb'} --n-groups {best['n_groups']} "
        f"--group-rank 2 --beta 20 --seed 0 --series DfOverF --n-init 1 --max-epochs 3"
    )
    assert f"fit it: {command}" in chosen
    given = main.commands["fit"].make_context("fit", shlex.split(command)[2:]).params
    assert (given["n_groups"], given["max_epochs"], given["series"]) == (
        best["n_groups"],
        3,
        "DfOverF",
    )
    assert best["path"] in chosen
    strict = _invoke(["select", out / "summary.csv", "--pc-threshold", "1e-9"]).output
    assert "chosen: G = 1, H = 2" in strict  # only G = 1 (PC = 0) is disentangled enough
    assert "no: partial correlation" in strict
    one_se = _invoke(["select", out, "--rule", "one-se"]).output
    assert "rule one_se" in one_se


def test_cli_sweep_where_every_fit_fails_exits_2(sessions, tmp_path):
    args = ["sweep", sessions / "broken.nwb", "--seeds", "0-1", "-o", tmp_path, "--serial"]
    result = _invoke(args, code=2)
    assert "2 fits: 0 run, 0 finished before (skipped), 2 failed" in result.output
    assert "every fit failed (the first: NWBReadError:" in result.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--n-groups", "1,x", "expected a list like '1,2,3'"),
        ("--n-groups", "0,1", "every value must be a number >= 1"),
        ("--group-rank", "", "expected a list like '1,2,3'"),
        ("--beta", "0,-5", "every value must be a number >= 0"),
        ("--beta", "nan", "every value must be a number >= 0"),
        ("--seeds", "a-b", "expected a list like '0-4'"),
    ],
)
def test_cli_sweep_rejects_bad_lists(sessions, tmp_path, option, value, message):
    args = ["sweep", str(sessions / "img1.nwb"), "-o", str(tmp_path), option, value]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output and f"'{option}'" in result.output
    assert not (tmp_path / "fits").exists()


def test_cli_sweep_sources_must_exist(sessions, tmp_path):
    args = ["sweep", str(sessions / "nothing*.nwb"), "-o", str(tmp_path), "--serial"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "nothing*.nwb: no file matches" in result.output


def test_cli_sweep_reads_lists_from_a_config_file(sessions, tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(
        '[data]\nseries = "DfOverF"\n[model]\nn_groups = [1, 2]\ngroup_rank = "1"\n'
        "beta = [0.0]\nseeds = [4]\nepochs = 2\nn_init = 1\n"
    )
    out = tmp_path / "out"
    text = _invoke(
        ["sweep", sessions / "img2.nwb", "--config", config, "-o", out, "--serial"]
    ).output
    assert "n_groups 1,2, group_rank 1, beta 0, seeds 4" in text
    rows = read_summary(out)
    assert [(r["n_groups"], r["seed"], r["beta"]) for r in rows] == [(1, 4, 0.0), (2, 4, 0.0)]


def test_undefined_metrics_round_trip(tmp_path):
    spec = FitSpec(str(tmp_path / "a.nwb"), 2, 2, 0.0, 0)
    (tmp_path / "fits").mkdir()
    (tmp_path / "fits" / "x.nwb").write_bytes(b"")
    row = {"key": spec.key, "status": "ok", "path": str(tmp_path / "fits" / "x.nwb")}
    write_row(
        tmp_path / "fits" / f"{spec.key}.json", {**row, "gaussian_partial_correlation": math.nan}
    )
    stored = json.loads((tmp_path / "fits" / f"{spec.key}.json").read_text())  # plain JSON
    assert stored["gaussian_partial_correlation"] == "nan"
    again = finished_row(spec, tmp_path)
    assert again["reused"] and math.isnan(again["gaussian_partial_correlation"])
    (tmp_path / "fits" / "x.nwb").unlink()
    assert finished_row(spec, tmp_path) is None  # its NWB file is gone: fit again


def test_sweeps_written_with_the_old_metric_names_resume_and_select(tmp_path):
    """Before the names were unified, rows had heldout_* columns: read under today's names."""
    old_rows = [
        {
            **{"source": "s.nwb", "key": f"k{g}", "n_groups": g, "group_rank": 1, "beta": 0.0},
            **{"seed": 0, "status": "ok", "heldout_log_likelihood": ll},
            **{"heldout_partial_correlation": pc, "heldout_reconstruction_r2": 0.5},
            "hand_vel_decoding_r2": 0.1,
        }
        for g, ll, pc in ((1, 1.0, 0.0), (2, 2.0, 0.05))
    ]
    # an old summary.csv
    columns = list(old_rows[0])
    lines = [",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in old_rows]
    (tmp_path / "summary.csv").write_text("\n".join(lines) + "\n")
    read = read_summary(tmp_path)
    assert [r["log_likelihood"] for r in read] == [1.0, 2.0]
    assert all(r["steps"] == "heldout" and "heldout_log_likelihood" not in r for r in read)
    assert read[0]["hand_vel_decoding_r2"] == 0.1
    sel = select_model(read)
    assert sel.n_groups == 2 and sel.choice["log_likelihood_mean"] == 2.0
    assert select_model(old_rows, metric="heldout_log_likelihood").n_groups == 2
    # an old fit's JSON row: the fit is not run again, its row has today's names
    spec = FitSpec(str(tmp_path / "a.nwb"), 2, 1, 0.0, 0)
    (tmp_path / "fits").mkdir()
    (tmp_path / "fits" / "x.nwb").write_bytes(b"")
    stored = {**old_rows[1], "key": spec.key, "path": str(tmp_path / "fits" / "x.nwb")}
    write_row(tmp_path / "fits" / f"{spec.key}.json", stored)
    again = finished_row(spec, tmp_path)
    assert again["log_likelihood"] == 2.0 and again["steps"] == "heldout"
    assert not any(k.startswith("heldout_") for k in again)
