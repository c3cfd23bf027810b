"""``nwb_facrnn.report``: the conditions of a fit's trials (carried by ``FitResults.trials``),
the figures, checked by the numbers they draw, and the HTML page and PNG files ``make_report``
writes (all together or not at all)."""

from __future__ import annotations

import base64
import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

import nwb_facrnn.atomic as atomic
import nwb_facrnn.io.nwb_objects as nwb_objects
import nwb_facrnn.io.reader as reader
import nwb_facrnn.report as report
from nwb_facrnn import FacRNN, FitResults, NWBReadError, read_nwb, read_results, write_results
from nwb_facrnn.errors import OptionError
from nwb_facrnn.report import (
    FIGURE_KEYS,
    GROUP_COLORS,
    MAX_LINE_POINTS,
    MAX_STATE_POINTS,
    Report,
    make_report,
    report_figures,
    trial_conditions,
)
from nwb_facrnn.synthetic import make_spiking_session

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WINDOW = (-0.25, 0.45)


# ---------------------------------------------------------------------- fits to draw
@pytest.fixture(scope="module")
def spiking(tmp_path_factory):
    """An MC_Maze-like session (trials with ``condition``), a 5-epoch fit of movement-aligned
    windows, and its results file."""
    d = tmp_path_factory.mktemp("report_spiking")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = make_spiking_session(d / "spiking.nwb", seed=0, n_units=16, n_trials=12)
        data = read_nwb(truth.path, bin_size=0.02, align="move_onset_time", window=WINDOW)
        model = FacRNN(n_groups=2, group_rank=2, max_epochs=5, n_init=1, seed=0, progress=False)
        model.fit(data)
        output = write_results(model, data, d / "fit.nwb")
    return {"session": truth.path, "results": output, "fit": read_results(output)}


@pytest.fixture(scope="module")
def spiking_trials(spiking):
    """The session's trials table as pynwb reads it (a DataFrame indexed by trial id)."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(spiking["session"]), "r") as io:
        return io.read().trials.to_dataframe()


@pytest.fixture(scope="module")
def spiking_figures(spiking):
    """The conditions of the fit's bins and its five figures coloured by them."""
    fit = spiking["fit"]
    conditions = trial_conditions(fit)
    return conditions, report_figures(fit, conditions)


def fake_fit(
    *,
    n_groups: int = 2,
    group_rank: int = 2,
    n_units: int = 12,
    n_bins: int = 240,
    n_trials: int | None = None,
    linear: bool = True,
    seed: int = 0,
    name: str = "fake_G2H2",
    trials: dict[str, np.ndarray] | None = None,
) -> FitResults:
    """A FitResults built by hand (random latents and loadings), continuous or in
    ``n_trials`` equal trials (ids 100, 101, ...) of 10 ms bins starting 10 s apart."""
    rng = np.random.default_rng(seed)
    k = n_groups * group_rank
    latents = rng.normal(size=(n_bins, k)).astype(np.float32)
    if n_trials is None:
        trial_ids, timestamps = None, 5.0 + 0.01 * np.arange(n_bins)
    else:
        per = n_bins // n_trials
        trial_ids = np.repeat(np.arange(n_trials) + 100, per)
        timestamps = 10.0 * np.repeat(np.arange(n_trials), per) + 0.01 * np.tile(
            np.arange(per), n_trials
        )
    a = rng.normal(size=(n_units, k)).astype(np.float32)
    b = rng.normal(size=(k, n_units)).astype(np.float32)
    strength = np.stack(
        [
            (
                latents[:, g * group_rank : (g + 1) * group_rank]
                @ a[:, g * group_rank : (g + 1) * group_rank].T
            ).std(0)
            for g in range(n_groups)
        ],
        axis=1,
    )
    return FitResults(
        name=name,
        path="",
        object_path=f"/processing/ecephys/{name}",
        latents=latents,
        timestamps=timestamps,
        trial_ids=trial_ids,
        unit_ids=np.arange(n_units) + 1000,
        unit_table="/units",
        output_loadings=a if linear else None,
        input_loadings=b,
        group_strength=strength if linear else None,
        dominant_group=strength.argmax(1) if linear else None,
        n_groups=n_groups,
        group_rank=group_rank,
        bin_size=0.01,
        params={"beta": 2.5, "alpha": 0.0, "seed": 3, "decoder": "linear" if linear else "mlp"},
        metrics={"log_likelihood": -1.234567891, "reconstruction_r2": 0.4321},
        history={
            "total": np.geomspace(100.0, 1.0, 8),
            "kl": np.linspace(3.0, 2.0, 8),
            "pc": np.zeros(8),
            "validation": np.geomspace(120.0, 2.0, 8),
        },
        provenance={"source": "made <by> hand & test", "layout": {"layout": "trials"}},
        trials=trials or {},
    )


def lines_by_gid(ax) -> dict[str, list]:
    out: dict[str, list] = {}
    for line in ax.get_lines():
        out.setdefault(line.get_gid(), []).append(line)
    return out


def legend_colors(fig) -> dict[str, str]:
    """Legend text -> colour (hex) of the figure's legend."""
    (legend,) = fig.legends
    return {
        t.get_text(): to_hex(h.get_color())
        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }


def unit_order(fit: FitResults) -> np.ndarray:
    """Units by dominant group, strongest first within a group (independently of report)."""
    dom = fit.dominant_group
    return np.lexsort((-fit.group_strength[np.arange(len(dom)), dom], dom))


# ---------------------------------------------------------------------- trial conditions
def test_read_results_carries_the_fitted_trials(spiking, spiking_trials):
    fit = spiking["fit"]
    first = np.sort(np.unique(fit.trial_ids, return_index=True)[1])
    assert len(first) == 12
    np.testing.assert_array_equal(fit.trials["id"], fit.trial_ids[first])  # in fitted order
    assert {"id", "start_time", "stop_time", "move_onset_time", "condition", "split"} <= set(
        fit.trials
    )
    for name, values in fit.trials.items():
        if name != "id":
            assert values.shape == (12,)
            assert list(values) == list(spiking_trials.loc[fit.trials["id"], name]), name


def test_an_unreadable_trials_table_is_a_warning(spiking, monkeypatch):
    def broken(table, rows=None):
        raise OSError("simulated read error")

    monkeypatch.setattr(nwb_objects, "table_columns", broken)
    with pytest.warns(UserWarning, match=r"fit\.nwb: /intervals/trials: cannot read.*simulated"):
        fit = read_results(spiking["results"])
    assert fit.trials == {}
    np.testing.assert_array_equal(fit.latents, spiking["fit"].latents)
    assert trial_conditions(fit) is None  # nothing to colour by


def test_trial_conditions_picks_condition_and_follows_trial_ids(spiking, spiking_trials):
    fit = spiking["fit"]
    column, labels = trial_conditions(fit)
    assert column == "condition"
    expected = spiking_trials.loc[fit.trial_ids, "condition"].to_numpy()
    np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(labels)) >= 2
    # any ids, any order, repeats
    ids = np.array([5, 0, 5, 11, 3])
    some = dataclasses.replace(fit, trial_ids=ids)
    column, labels = trial_conditions(some)
    np.testing.assert_array_equal(labels, spiking_trials.loc[ids, "condition"].to_numpy())
    # an explicit column, strings decoded
    column, labels = trial_conditions(some, column="split")
    assert column == "split"
    assert list(labels) == list(spiking_trials.loc[ids, "split"])


def test_trial_conditions_errors_name_file_table_and_columns(spiking, monkeypatch):
    fit = spiking["fit"]
    with pytest.raises(NWBReadError) as info:
        trial_conditions(fit, column="stimulus_id")
    msg = str(info.value)
    assert str(spiking["results"]) in msg and "/intervals/trials" in msg
    assert "'stimulus_id'" in msg
    for existing in ("start_time", "stop_time", "move_onset_time", "condition", "split"):
        assert existing in msg
    two = dataclasses.replace(fit, trial_ids=np.array([1, 1, 0]))
    assert trial_conditions(two, column="start_time")[1].dtype == np.float64
    monkeypatch.setattr(report.conditions, "MAX_CONDITIONS", 5)
    with pytest.raises(NWBReadError, match=r"/intervals/trials/start_time: has 12 distinct"):
        trial_conditions(fit, column="start_time")
    monkeypatch.undo()
    missing = dataclasses.replace(fit, trial_ids=np.array([0, 98, 97, 98]))
    with pytest.raises(NWBReadError, match=r"/intervals/trials: has no trials with id 97, 98"):
        trial_conditions(missing)


def test_trial_conditions_of_fits_in_memory_and_without_trials():
    n = np.arange(4)
    table = {"id": n + 100, "condition": np.array(["a", "b", "a", "c"]), "go_time": n * 1.0}
    fit = fake_fit(n_trials=4, trials=table)
    column, labels = trial_conditions(fit)
    assert column == "condition"
    np.testing.assert_array_equal(labels, np.repeat(["a", "b", "a", "c"], 60))
    # no trials carried (none in the file, or the table unreadable)
    bare = dataclasses.replace(fit, trials={}, path="imaging.nwb")
    assert trial_conditions(bare) is None
    with pytest.raises(NWBReadError, match=r"imaging\.nwb: /intervals/trials: no trials table"):
        trial_conditions(bare, column="condition")
    # continuous data has no trials to colour
    assert trial_conditions(fake_fit()) is None
    with pytest.raises(OptionError, match="colouring by 'condition' needs trial data"):
        trial_conditions(fake_fit(), column="condition")


def test_the_automatic_column_is_the_most_condition_like():
    choose = report.conditions.condition_column
    n = np.arange(30)
    table = {
        "start_time": n * 2.0,
        "go_cue_time": (n % 3).astype(float),  # a *_time column, never chosen
        "split": np.array(["train", "val", "test"] * 10),
        "rewarded": n % 2 == 0,
        "trial_type": n % 4,
        "many": n,  # 30 distinct values: not categorical
    }
    assert choose(table) == "trial_type"
    del table["trial_type"]
    assert choose(table) == "rewarded"  # before "split"
    del table["rewarded"]
    assert choose(table) == "split"
    del table["split"]
    assert choose(table) is None
    assert choose({"stim_id": n % 5, "block": n % 2}) == "stim_id"


# ---------------------------------------------------------------------- the figures
def test_latents_time_draws_the_condition_means(spiking, spiking_figures):
    fit = spiking["fit"]
    conditions, figs = spiking_figures
    assert list(figs) == list(FIGURE_KEYS)
    fig = figs["latents_time"]
    assert fit.name in fig.get_suptitle() and "G=2" in fig.get_suptitle()
    assert "β=20" in fig.get_suptitle()
    # independently: every trial is 35 bins of 20 ms in the aligned window
    ids = np.unique(fit.trial_ids)
    per_trial = np.stack([fit.latents[fit.trial_ids == i] for i in ids])  # (n_trials, 35, K)
    assert per_trial.shape == (12, 35, 4)
    cond = np.array([conditions[1][fit.trial_ids == i][0] for i in ids])
    axes = fig.axes[: fit.n_groups]
    assert axes[-1].get_xlabel() == "time from move_onset_time (s)"
    for g, ax in enumerate(axes):
        lines = lines_by_gid(ax)
        assert sorted(lines) == [f"g{g}_0", f"g{g}_1"]
        for j in range(fit.group_rank):
            assert len(lines[f"g{g}_{j}"]) == len(np.unique(cond))
            for line in lines[f"g{g}_{j}"]:
                c = int(line.get_label().removeprefix("condition = "))
                expected = per_trial[cond == c].mean(axis=0)[:, g * 2 + j]
                np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(
                    line.get_xdata(), WINDOW[0] + 0.02 * (np.arange(35) + 0.5), atol=1e-9
                )
                assert to_hex(line.get_color()) == legend_colors(fig)[line.get_label()]


def test_latents_state_colours_every_trial_by_its_condition(spiking, spiking_figures):
    fit = spiking["fit"]
    conditions, figs = spiking_figures
    fig = figs["latents_state"]
    colors = legend_colors(fig)
    assert len(set(colors.values())) == len(colors) == len(np.unique(conditions[1]))
    for g, ax in enumerate(fig.axes[: fit.n_groups]):
        trial_lines = {k: v for k, v in lines_by_gid(ax).items() if k.startswith("trial ")}
        assert len(trial_lines) == 12
        for gid, (line,) in trial_lines.items():
            tid = int(gid.removeprefix("trial "))
            rows = fit.trial_ids == tid
            label = f"condition = {conditions[1][rows][0]}"
            assert to_hex(line.get_color()) == colors[label]
            np.testing.assert_array_equal(line.get_xdata(), fit.latents[rows, 2 * g])
            np.testing.assert_array_equal(line.get_ydata(), fit.latents[rows, 2 * g + 1])
        means = [k for k in lines_by_gid(ax) if k.startswith("mean ")]
        assert sorted(means) == sorted(f"mean {label}" for label in colors)
    assert not any(ax.get_label() == "<colorbar>" for ax in fig.axes)


def test_unequal_trials_without_conditions_and_rank_one():
    """Whole trials of different lengths with a missing bin; rank-1 groups (delay plot)."""
    fit = fake_fit(group_rank=1, n_bins=60, n_trials=3, name="fake_G2H1")
    keep = np.ones(60, bool)
    keep[30:40] = False  # trial 101 ends early
    keep[45] = False  # trial 102 misses its 6th bin
    fit = dataclasses.replace(
        fit,
        latents=fit.latents[keep],
        timestamps=fit.timestamps[keep],
        trial_ids=fit.trial_ids[keep],
    )
    figs = report_figures(fit)
    grid = np.full((3, 20, 2), np.nan)
    for i, tid in enumerate((100, 101, 102)):
        rows = fit.trial_ids == tid
        idx = np.rint((fit.timestamps[rows] - fit.timestamps[rows][0]) / 0.01).astype(int)
        grid[i, idx] = fit.latents[rows]
    expected = np.nanmean(grid, axis=0)
    ax0, ax1 = figs["latents_time"].axes[:2]
    assert ax1.get_xlabel() == "time from trial start (s)"
    (line,) = lines_by_gid(ax0)["g0_0"]
    np.testing.assert_allclose(line.get_ydata(), expected[:, 0], rtol=1e-6)
    np.testing.assert_allclose(line.get_xdata(), 0.005 + 0.01 * np.arange(20))
    # rank 1: each trial's latent against its value one bin later
    state = figs["latents_state"]
    ax1 = state.axes[1]
    (trial,) = lines_by_gid(ax1)["trial 100"]
    z = fit.latents[fit.trial_ids == 100, 1]
    np.testing.assert_array_equal(trial.get_xdata(), z[:-1])
    np.testing.assert_array_equal(trial.get_ydata(), z[1:])
    assert ax1.get_ylabel() == "g1_0 at t + 0.01 s (a.u.)"
    assert set(legend_colors(state)) == {"mean", "single trials"}


def test_conditions_must_fit_the_trials():
    fit = fake_fit(n_trials=4)
    with pytest.raises(OptionError, match="one label per bin"):
        report_figures(fit, ("condition", np.zeros(3)))
    with pytest.raises(OptionError, match="continuous data has no trials"):
        report_figures(fake_fit(), ("condition", np.zeros(240)))


def test_connectivity_images_are_the_sorted_matrices(spiking, spiking_figures):
    fit = spiking["fit"]
    fig = spiking_figures[1]["connectivity"]
    images = {im.get_gid(): im for ax in fig.axes for im in ax.get_images()}
    assert sorted(images) == ["W", "W_0", "W_1"]
    order = unit_order(fit)
    ix = np.ix_(order, order)
    w = fit.output_loadings @ fit.input_loadings
    np.testing.assert_allclose(images["W"].get_array(), w[ix], rtol=1e-6)
    parts = []
    for g in range(2):
        s = slice(2 * g, 2 * g + 2)
        parts.append((fit.output_loadings[:, s] @ fit.input_loadings[s])[ix])
        np.testing.assert_allclose(images[f"W_{g}"].get_array(), parts[-1], rtol=1e-6)
    vw = np.abs(w).max()
    np.testing.assert_allclose(images["W"].get_clim(), (-vw, vw), rtol=1e-6)
    vg = max(np.abs(p).max() for p in parts)
    for g in range(2):
        np.testing.assert_allclose(images[f"W_{g}"].get_clim(), (-vg, vg), rtol=1e-6)
        assert images[f"W_{g}"].get_cmap().name == "RdBu_r"
    # the boundary between the groups, in the sorted order
    n0 = int((fit.dominant_group == 0).sum())
    ax = images["W"].axes
    vertical = [ln.get_xdata()[0] for ln in ax.get_lines()]
    assert vertical[0] == pytest.approx(n0 - 0.5)


def test_group_strength_bars_in_sorted_order_and_group_colours(spiking, spiking_figures):
    fit = spiking["fit"]
    fig = spiking_figures[1]["group_strength"]
    ax_abs, ax_share = fig.axes[:2]
    order = unit_order(fit)
    strength = fit.group_strength[order]
    for ax, values in ((ax_abs, strength), (ax_share, strength / strength.sum(1, keepdims=True))):
        patches = [p for p in ax.patches if (p.get_gid() or "").startswith("group ")]
        assert [p.get_gid() for p in patches] == ["group 0", "group 1"]
        for g, patch in enumerate(patches):
            data = patch.get_data()
            np.testing.assert_allclose(data.values - data.baseline, values[:, g], rtol=1e-6)
            assert to_hex(patch.get_facecolor()) == GROUP_COLORS[g].lower()
    # strongest first within a group
    dom = fit.dominant_group[order]
    own = strength[np.arange(len(dom)), dom]
    for g in range(2):
        assert np.all(np.diff(own[dom == g]) <= 0)


def test_training_lines_are_the_history():
    fit = fake_fit()
    fig = report_figures(fit)["training"]
    lines = {ln.get_gid(): (ax, ln) for ax in fig.axes for ln in ax.get_lines()}
    assert sorted(lines) == ["kl", "pc", "total", "validation"]
    for term in ("total", "kl", "pc", "validation"):
        ax, line = lines[term]
        np.testing.assert_array_equal(line.get_ydata(), fit.history[term])
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 9))
        assert ax.get_xlabel() == "epoch"
    assert lines["validation"][0] is lines["total"][0]  # held-out on the total's panel
    assert lines["total"][0].get_yscale() == "log"  # positive over two decades
    assert lines["kl"][0].get_yscale() == "linear"  # within a decade
    assert lines["pc"][0].get_yscale() == "linear"  # zeros


def test_a_long_continuous_fit_is_decimated_for_drawing():
    n_bins = 300_000
    fit = fake_fit(group_rank=3, n_bins=n_bins, name="long_G2H3")
    figs = report_figures(fit)
    n_points = 0
    for g, ax in enumerate(figs["latents_time"].axes[:2]):
        assert ax.get_xlabel() in ("", "session time (s)")
        for j in range(3):
            (line,) = lines_by_gid(ax)[f"g{g}_{j}"]
            y, x = line.get_ydata(), line.get_xdata()
            n_points += len(y)
            assert len(y) <= MAX_LINE_POINTS
            # min/max decimation keeps every extreme
            z = fit.latents[:, 3 * g + j]
            assert y.max() == z.max() and y.min() == z.min()
            assert x.min() >= fit.timestamps[0] and x.max() <= fit.timestamps[-1]
            assert np.all(np.diff(x) >= 0)
    assert n_points <= 6 * MAX_LINE_POINTS
    assert "min/max of every" in figs["latents_time"].get_suptitle()
    state = figs["latents_state"]
    collections = [c for ax in state.axes for c in ax.collections if c.get_gid()]
    assert sorted(c.get_gid() for c in collections) == ["trajectory g0", "trajectory g1"]
    for c in collections:
        assert c.axes.name == "3d"  # rank 3
        times = c.get_array()
        assert 100 < len(times) <= MAX_STATE_POINTS
        assert np.all(np.diff(times) > 0) and times[0] == fit.timestamps[0]
    (colorbar,) = [ax for ax in state.axes if ax.get_label() == "<colorbar>"]
    assert colorbar.get_ylabel() == "session time (s)"


def test_zero_bins_is_an_error_naming_the_fit():
    fit = fake_fit()
    empty = dataclasses.replace(
        fit, latents=fit.latents[:0], timestamps=fit.timestamps[:0], name="empty_fit"
    )
    with pytest.raises(ValueError, match=r"fit 'empty_fit'.*no latent bins"):
        report_figures(empty)


# ---------------------------------------------------------------------- make_report
def test_make_report_writes_pngs_and_a_self_contained_page(spiking, tmp_path, monkeypatch):
    fit = spiking["fit"]
    out = tmp_path / "new" / "figures"
    opened = []
    real_open = reader.open_nwbfile
    monkeypatch.setattr(
        reader, "open_nwbfile", lambda *a, **k: opened.append(a) or real_open(*a, **k)
    )
    rep = make_report(spiking["results"], out)
    assert len(opened) == 1  # read once: the conditions come with the results
    assert isinstance(rep, Report)
    assert list(rep.figures) == list(FIGURE_KEYS)
    assert rep.html == out / f"{fit.name}_report.html"
    from matplotlib.image import imread

    for key, path in rep.figures.items():
        assert path == out / f"{fit.name}_{key}.png"
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
        pixels = imread(path)
        assert pixels.shape[1] >= 500 and pixels[..., :3].std() > 0.05  # not blank
    page = rep.html.read_text("utf-8")
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [base64.b64decode(e) for e in embedded] == [p.read_bytes() for p in rep.figures.values()]
    assert f"<h1>FacRNN fit {fit.name}</h1>" in page
    for metric, value in fit.metrics.items():
        assert f'<th>{metric}</th><td class="num">{value:.6g}</td>' in page
    for param in ("n_groups", "group_rank", "beta", "alpha", "seed", "bin_size (s)"):
        assert f"<th>{param}" in page
    assert str(spiking["session"]) in page  # provenance source
    assert "<td>condition</td>" in page  # coloured by
    assert len(re.findall("<figcaption>", page)) == 5


def test_make_report_escapes_text_and_replaces_files(tmp_path, monkeypatch):
    fit = fake_fit(n_trials=4, name="fake_G2H2")
    monkeypatch.setattr(report, "_png_bytes", lambda fig: PNG_SIGNATURE + b"x" * 100)
    old = tmp_path / "fake_G2H2_training.png"
    old.write_bytes(b"old")
    old.chmod(0o640)
    rep = make_report(fit, tmp_path)
    assert old.read_bytes() == PNG_SIGNATURE + b"x" * 100
    assert old.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its permissions
    page = rep.html.read_text("utf-8")
    assert "made &lt;by&gt; hand &amp; test" in page and "<by>" not in page
    assert "β=2.5" in page
    assert _entries(tmp_path) == sorted(p.name for p in (rep.html, *rep.figures.values()))
    with pytest.raises(OptionError, match="name='other' given with the FitResults"):
        make_report(fit, tmp_path, name="other")
    with pytest.raises(OptionError, match="colouring by 'condition' needs trial data"):
        make_report(fake_fit(), tmp_path, color_by="condition")


def _entries(directory: Path) -> list[str]:
    """Entries but the writers' lock files."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


def _old_report(directory: Path, fit: FitResults) -> dict[str, bytes]:
    """Some files of an earlier report: the page and two figures."""
    old = {
        f"{fit.name}_report.html": b"<html>old</html>",
        f"{fit.name}_latents_time.png": b"old latents",
        f"{fit.name}_training.png": b"old training",
    }
    for name, data in old.items():
        (directory / name).write_bytes(data)
    return old


@pytest.mark.parametrize("fail_at", ["render", "write", "replace"])
def test_a_failed_report_leaves_the_old_files_and_nothing_new(tmp_path, monkeypatch, fail_at):
    fit = fake_fit()
    old = _old_report(tmp_path, fit)
    calls = {"n": 0}

    def fail_on_third(real):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(28, "No space left on device (simulated)")
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(report, "_png_bytes", lambda fig: PNG_SIGNATURE + b"new")
    if fail_at == "render":
        monkeypatch.setattr(report, "_png_bytes", fail_on_third(report._png_bytes))
    elif fail_at == "write":
        monkeypatch.setattr(Path, "write_bytes", fail_on_third(Path.write_bytes))
    else:  # the third of the six moves into place: two files are already replaced
        monkeypatch.setattr(atomic, "replace_atomically", fail_on_third(atomic.replace_atomically))
    with pytest.raises(OSError, match="simulated"):
        make_report(fit, tmp_path)
    assert calls["n"] == 3
    assert _entries(tmp_path) == sorted(old)  # no new, partial or backup file
    for name, data in old.items():
        assert (tmp_path / name).read_bytes() == data
    rep = make_report(fit, tmp_path)  # and the next report succeeds
    assert rep.figures["training"].read_bytes().startswith(PNG_SIGNATURE)


def test_an_mlp_fit_report_has_placeholders(tmp_path, monkeypatch):
    mlp = fake_fit(linear=False, n_trials=6, name="mlp_G2H2")
    figs = report_figures(mlp)
    for key, needs in (("connectivity", "linear encoder and decoder"), ("group_strength", "A")):
        (text,) = [t for ax in figs[key].axes for t in ax.texts if t.get_gid() == "placeholder"]
        assert needs in text.get_text() and "decoder='mlp'" in text.get_text()
        assert not any(ax.get_images() for ax in figs[key].axes)
    png = report._png_bytes(figs["connectivity"])
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    monkeypatch.setattr(report, "_png_bytes", lambda fig: PNG_SIGNATURE + b"fast")
    rep = make_report(mlp, tmp_path)
    assert rep.figures["connectivity"].read_bytes() == PNG_SIGNATURE + b"fast"
    assert "mlp_G2H2" in rep.html.read_text("utf-8")


def test_make_report_errors_from_the_file(spiking, tmp_path):
    with pytest.raises(NWBReadError, match=r"fit\.nwb: /processing: has no FacRNN fit named 'x'"):
        make_report(spiking["results"], tmp_path, name="x")
    with pytest.raises(NWBReadError, match=r"/intervals/trials: has no column 'nope'"):
        make_report(spiking["results"], tmp_path, color_by="nope")
    assert _entries(tmp_path) == []
