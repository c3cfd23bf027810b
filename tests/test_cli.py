"""The ``nwb-facrnn`` command: demo, report, fit --figures, --debug and error handling.

``fit`` and ``--config`` are covered in test_cli_fit.py, ``info`` in test_io_info.py,
``benchmark synthetic`` in test_benchmark_cli.py, ``view`` in test_napari_viewer.py.
"""

from __future__ import annotations

import re
import sys
import warnings

import pytest
from cli_process import run_cli
from click.testing import CliRunner

from nwb_facrnn import FacRNN, read_nwb, read_results, write_results
from nwb_facrnn import cli as cli_module
from nwb_facrnn.cli import main
from nwb_facrnn.errors import OptionError
from nwb_facrnn.synthetic import make_spiking_session

FIGURES = ("latents_time", "latents_state", "connectivity", "group_strength", "training")


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, terminal_width=200)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _cell(text: str, label: str) -> str:
    """The value in a rich table row whose first cell is ``label``."""
    m = re.search(rf"│ {re.escape(label)}\s*│\s*([^│]+?)\s*│", text)
    assert m, f"no row {label!r} in\n{text}"
    return m.group(1)


@pytest.fixture(scope="module")
def spiking_fit(tmp_path_factory):
    """A small MC_Maze-like session and a 3-epoch fit of it written next to it."""
    d = tmp_path_factory.mktemp("cli")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = make_spiking_session(d / "maze.nwb", seed=1, n_units=16, n_trials=12)
    data = read_nwb(truth.path, align="move_onset_time", window=(-0.2, 0.3))
    model = FacRNN(n_groups=2, group_rank=2, max_epochs=3, n_init=1, seed=0, progress=False)
    out = write_results(model.fit(data), data, d / "maze_facrnn.nwb")
    return truth.path, out


# ------------------------------------------------------------------------------------ demo
@pytest.mark.slow
def test_demo_recovers_the_ground_truth_and_prints_what_it_wrote(tmp_path):
    text = _invoke(["demo", "--output-dir", str(tmp_path)])
    results = tmp_path / "voltage_imaging_facrnn.nwb"
    for label in ("group latent R² (lorenz)", "group latent R² (thomas)"):
        assert float(_cell(text, label)) >= 0.85, text
    assert _cell(text, "ROIs in their true group") == "100 %"
    assert float(_cell(text, "Gaussian partial correlation between groups (nats)")) < 0.05
    assert f"nwbinspector on {results}: no issues" in text
    assert f"nwb-facrnn view {results}" in text
    res = read_results(results)
    assert (res.n_groups, res.group_rank, res.latents.shape) == (2, 3, (2000, 6))
    assert res.unit_table.endswith("PlaneSegmentation") and len(res.unit_ids) == 46
    assert float(_cell(text, "reconstruction R² of dF/F")) == pytest.approx(
        res.metrics["reconstruction_r2"], abs=5e-4
    )
    html = tmp_path / "figures" / f"{res.name}_report.html"
    assert html.is_file() and str(html) in text.replace("\n", "")
    for key in FIGURES:
        assert (tmp_path / "figures" / f"{res.name}_{key}.png").stat().st_size > 10_000
    took = float(re.search(r"demo done in (\d+) s", text).group(1))
    assert took > 0


# ---------------------------------------------------------------------------------- report
def test_report_draws_the_figures_next_to_the_file(spiking_fit):
    _, out = spiking_fit
    text = _invoke(["report", str(out)])
    res = read_results(out)
    folder = out.parent / "maze_facrnn_figures"
    for key in FIGURES:
        png = folder / f"{res.name}_{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = folder / f"{res.name}_report.html"
    assert str(html) in text.replace("\n", "")
    page = html.read_text()
    assert res.name in page and "condition" in page  # trials coloured by their condition


def test_report_options_and_bad_input(spiking_fit, tmp_path):
    session, out = spiking_fit
    res = read_results(out)
    _invoke(["report", str(out), "--name", res.name, "--output-dir", str(tmp_path / "f")])
    assert (tmp_path / "f" / f"{res.name}_report.html").is_file()
    cases = [
        (["report", str(out), "--name", "nope"], "nope"),
        (["report", str(session)], str(session)),  # a session without a fit
        (
            ["report", str(out), "--color-by", "nope", "--output-dir", str(tmp_path / "g")],
            "/intervals/trials",
        ),
    ]
    for args, message in cases:
        run = run_cli(*args)
        assert run.returncode == 2, run.stdout + run.stderr
        assert message in run.stderr and run.stderr.startswith("error:"), run.stderr
        assert "Traceback" not in run.stderr
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())


def test_fit_figures_option(spiking_fit, tmp_path):
    session, _ = spiking_fit
    out, figures = tmp_path / "fit.nwb", tmp_path / "figs"
    text = _invoke(
        [
            *["fit", str(session), "--align", "move_onset_time", "--window", "-0.2", "0.3"],
            *["--epochs", "2", "--n-init", "1", "--group-rank", "1", "--output", str(out)],
            *["--figures", str(figures)],
        ]
    )
    res = read_results(out)
    assert f"results: {out}" in text and "Figures" in text
    # (writers keep a hidden .<name>.lock beside what they write)
    assert sorted(p.name for p in figures.iterdir() if not p.name.startswith(".")) == sorted(
        [f"{res.name}_{k}.png" for k in FIGURES] + [f"{res.name}_report.html"]
    )


# --------------------------------------------------------------------- errors and --debug
def test_debug_shows_the_traceback_anywhere_on_the_line(tmp_path):
    missing = str(tmp_path / "missing.nwb")
    plain = run_cli("fit", missing)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().count("\n") == 0, plain.stderr  # one line
    for args in (["--debug", "fit", missing], ["fit", missing, "--debug"]):
        run = run_cli(*args)
        assert run.returncode != 0 and "Traceback" in run.stderr, run.stderr
        assert "missing.nwb" in run.stderr


def test_a_bug_inside_the_fit_is_an_internal_error_with_a_hint(
    spiking_fit, tmp_path, monkeypatch, capsys
):
    """A plain ValueError from inside the package is a bug (exit 1), not the user's mistake."""
    session, _ = spiking_fit

    def broken(self, *args, **kwargs):
        raise ValueError("a shape mismatch deep inside")

    monkeypatch.setattr(FacRNN, "fit", broken)
    monkeypatch.setitem(cli_module._debug, "on", False)
    out = tmp_path / "never.nwb"
    argv = ["nwb-facrnn", "fit", str(session), "--epochs", "1", "--output", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        cli_module.run()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "internal error: ValueError: a shape mismatch deep inside" in err
    assert "run again with --debug for the traceback" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0 and not out.exists()


def test_an_internal_error_is_one_line_with_a_hint(monkeypatch, capsys):
    def broken(**kwargs):
        raise TypeError("something inside went wrong")

    monkeypatch.setattr(cli_module, "main", broken)
    monkeypatch.setitem(cli_module._debug, "on", False)
    with pytest.raises(SystemExit) as stop:
        cli_module.run()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "internal error: TypeError: something inside went wrong" in err
    assert "--debug" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (OptionError("n_groups must be an integer >= 1, got 0"), 2, "error: n_groups must be"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_user_errors_exit_2_and_ctrl_c_130(monkeypatch, capsys, raised, code, line):
    def broken(**kwargs):
        raise raised

    monkeypatch.setattr(cli_module, "main", broken)
    monkeypatch.setitem(cli_module._debug, "on", False)
    with pytest.raises(SystemExit) as stop:
        cli_module.run()
    assert stop.value.code == code
    err = capsys.readouterr().err
    assert err.startswith(line) and err.strip().count("\n") == 0 and "internal" not in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["info", "{tmp}/none.nwb"], 2, "none.nwb"),
        (["view", "{tmp}/none.nwb"], 2, "does not exist"),
        (["report", "{tmp}/none.nwb"], 2, "does not exist"),
        (["fit", "{tmp}/none.nwb", "--n-groups", "two"], 2, "'two' is not a valid integer"),
        (["fit", "{tmp}/none.nwb", "--observation", "cauchy"], 2, "'cauchy' is not one of"),
        (["demo", "--seed", "x"], 2, "'x' is not a valid integer"),
        (["benchmark", "synthetic", "--seeds", "a-b"], 2, "expected a list like '0-4'"),
        (["fit", "{tmp}/none.nwb", "--init", "svd"], 2, "'svd' is not one of"),
        (["sweep", "{tmp}/none.nwb", "--output", "{tmp}/s"], 2, "use --output-dir DIR"),
        (["select", "{tmp}", "--rule", "aic"], 2, "'aic' is not one of"),
        (["nonsense"], 2, "No such command 'nonsense'"),
    ],
)
def test_every_command_refuses_bad_input_in_one_line(tmp_path, args, code, message):
    run = run_cli(*(a.format(tmp=tmp_path) for a in args))
    assert run.returncode == code, run.stdout + run.stderr
    assert message in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_demo_refuses_an_output_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    run = run_cli("demo", "--output-dir", str(blocker))
    assert run.returncode == 2 and str(blocker) in run.stdout + run.stderr
    assert blocker.read_text() == "not a directory"


def test_help_lists_every_command():
    text = _invoke(["--help"])
    for command in ("benchmark", "demo", "fit", "info", "report", "view"):
        assert re.search(rf"^\s+{command}\s", text, re.M), text
    fit_help = _invoke(["fit", "--help"])
    for option in ("--n-groups", "--group-rank", "--beta", "--alpha", "--series", "--bin-size"):
        assert option in fit_help
    for option in ("--align", "--window", "--seed", "--output", "--config", "--figures"):
        assert option in fit_help
    assert all(o in fit_help for o in ("--debug", "--device", "--epochs", "--batch-size"))


def test_fit_and_sweep_have_an_option_for_every_facrnn_argument():
    """Every FacRNN argument (but progress) is an option named as in Python, dashed, with the
    signature's default and the model's choices; sweep takes the grid as lists."""
    import inspect

    from nwb_facrnn.model.hyperparams import CHOICES

    signature = inspect.signature(FacRNN.__init__).parameters
    fit_help = _invoke(["fit", "--help"])
    commands = {name: {p.name: p for p in main.commands[name].params} for name in ("fit", "sweep")}
    for name, arg in signature.items():
        if name in ("self", "progress"):
            continue
        flag = "--" + name.replace("_", "-")
        assert flag in fit_help, flag
        for command, params in commands.items():
            if command == "sweep" and name in ("n_groups", "group_rank", "beta", "seed"):
                assert ("seeds" if name == "seed" else name) in params  # a list, e.g. 1,2,3
                continue
            option = params[name]
            assert option.opts[0] == flag, (command, option.opts)
            assert option.default == ("auto" if name == "observation" else arg.default), name
            if name in CHOICES:
                allowed = {"none" if c is None else c for c in CHOICES[name]}
                extra = {"auto"} if name == "observation" else set()
                assert set(option.type.choices) == allowed | extra, name
    assert "progress" not in commands["fit"] and "progress" not in commands["sweep"]
    assert "--epochs" in commands["fit"]["max_epochs"].opts  # the old name still works
    flag = commands["fit"]["early_stopping"]
    assert (flag.opts, flag.secondary_opts) == (["--early-stopping"], ["--no-early-stopping"])


def test_choices_take_dashes_or_underscores_and_none(tmp_path):
    fit = main.commands["fit"]
    given = ["s.nwb", "--output-activation", "none", "--postprocess", "ica", "--no-trials"]
    params = fit.make_context("fit", given).params
    assert params["output_activation"] is None and params["postprocess"] == "ica"
    select = main.commands["select"]
    for spelling in ("one-se", "one_se"):
        ctx = select.make_context("select", [str(tmp_path), "--rule", spelling])
        assert ctx.params["rule"] == "one_se"


def test_under_torchrun_only_rank_0_writes(spiking_fit, tmp_path, monkeypatch):
    """Every process torchrun starts runs the command; the others train and stay quiet."""
    session, _ = spiking_fit
    out = tmp_path / "ranked.nwb"
    args = ["fit", str(session), "--epochs", "1", "--n-init", "1", "--output", str(out)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    text = _invoke(args)  # devices=1: each process fits on its own
    assert text == "" and not out.exists()
    monkeypatch.setenv("RANK", "0")
    text = _invoke(args)
    assert f"results: {out}" in text and read_results(out).params["max_epochs"] == 1
