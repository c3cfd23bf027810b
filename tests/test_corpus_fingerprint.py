"""Files of the NWB 2.0b era store no ``object_id`` on their root: pynwb makes up a new one
at every read, so the source's id cannot tell whether the file changed.  A fit of such a file
is written (not refused as "changed"), and a rewritten source is still refused."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import h5py
import pytest
from cli_process import run_cli
from conftest import tree_sha256 as _sha256

from nwb_facrnn import FacRNN, read_nwb, read_results, write_results
from nwb_facrnn.io.destination import Destination, check_destination
from nwb_facrnn.synthetic import make_spiking_session

SMALL = dict(n_units=6, n_trials=4)
NAME = "facrnn_G2H3_beta20_seed0"


def _session(path: Path, seed: int = 0, overwrite: bool = False) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_spiking_session(path, seed=seed, overwrite=overwrite, **SMALL)
    return path


def _drop_root_id(path: Path) -> Path:
    """Imitate a file of the NWB 2.0b era: no ``object_id`` on the root group."""
    if path.is_dir():  # Zarr: the root's attributes, and their copy in the consolidated metadata
        attrs = path / ".zattrs"
        content = json.loads(attrs.read_text())
        assert content.pop("object_id", None) is not None
        attrs.write_text(json.dumps(content))
        consolidated = path / ".zmetadata"
        if consolidated.exists():
            meta = json.loads(consolidated.read_text())
            meta["metadata"][".zattrs"].pop("object_id", None)
            consolidated.write_text(json.dumps(meta))
    else:
        with h5py.File(path, "a") as f:
            assert "object_id" in f.attrs
            del f.attrs["object_id"]
    return path


def _old_session(path: Path, seed: int = 0, overwrite: bool = False) -> Path:
    return _drop_root_id(_session(path, seed, overwrite))


def _cli_fit(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("fit", path, "--max-epochs", "2", "--n-init", "1", *extra)


def _fit(data, **kw):
    params = dict(max_epochs=2, n_init=1, progress=False)
    return FacRNN(**{**params, **kw}).fit(data)


def _stored_ids(path: Path) -> list:
    with h5py.File(path, "r") as f:
        return [f.attrs.get("object_id")]


def test_two_reads_of_an_old_file_get_different_ids(tmp_path):
    src = _old_session(tmp_path / "old.nwb")
    a, b = read_nwb(src), read_nwb(src)
    assert a.provenance["object_id"] != b.provenance["object_id"]  # why ids cannot decide
    assert check_destination(FacRNN().get_params(), a) == (tmp_path / "old_facrnn.nwb", NAME)


def test_the_cli_fits_and_writes_an_old_file_and_refuses_the_same_fit_twice(tmp_path):
    src = _old_session(tmp_path / "old.nwb")
    sha = _sha256(src)
    run = _cli_fit(src)
    assert run.returncode == 0, run.stderr
    assert "changed after the data was read" not in run.stderr
    out = tmp_path / "old_facrnn.nwb"
    assert out.is_file() and _sha256(src) == sha  # the source is not touched
    assert read_results(out, name=NAME).unit_ids.tolist() == read_nwb(src).unit_ids.tolist()
    assert _stored_ids(out) != [None]  # the results file is a new file with its own id
    written = _sha256(out)

    again = _cli_fit(src)  # the same fit again: refused as before, before training
    assert again.returncode != 0
    assert "already holds this fit" in again.stderr
    assert "epoch" not in again.stderr  # refused before any training
    assert _sha256(out) == written

    other = _cli_fit(src, "--seed", "1")  # another fit of the same file goes in beside it
    assert other.returncode == 0, other.stderr
    assert {NAME, "facrnn_G2H3_beta20_seed1"} <= set(
        read_results(out, name=n).name for n in (NAME, "facrnn_G2H3_beta20_seed1")
    )


def test_a_rewritten_old_source_is_still_refused(tmp_path):
    src = _old_session(tmp_path / "old.nwb")
    data = read_nwb(src)
    out = write_results(_fit(data), data)
    sha = _sha256(out)
    _session(src, overwrite=True)  # rewritten by pynwb: it now stores an id
    run = _cli_fit(src, "--seed", "2")
    assert run.returncode != 0
    assert "holds results made from another version of" in run.stderr
    assert "epoch" not in run.stderr  # refused before any training
    assert _sha256(out) == sha
    # data read before the rewrite cannot go into the rewritten file either
    with pytest.raises(ValueError, match=r"old\.nwb changed after the data was read from it"):
        write_results(_fit(data, seed=3), data, in_place=True)
    with pytest.raises(ValueError, match=r"old\.nwb changed after the data was read from it"):
        check_destination(FacRNN(seed=3).get_params(), data, Destination(in_place=True))


def test_an_old_source_replaced_by_another_old_file_is_refused(tmp_path):
    src = _old_session(tmp_path / "old.nwb")
    data = read_nwb(src)
    _old_session(src, seed=1, overwrite=True)  # another session, no stored id either
    with pytest.raises(ValueError, match=r"old\.nwb changed after the data was read from it"):
        write_results(_fit(data), data)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["old.nwb"]
    newer = read_nwb(src)
    out = write_results(_fit(newer), newer)
    # a results file of the old session does not take fits of the new one
    _old_session(src, seed=0, overwrite=True)
    again = read_nwb(src)
    with pytest.raises(ValueError, match=r"holds results made from another version of"):
        write_results(_fit(again, seed=1), again, out)


def test_the_pipeline_refuses_a_changed_old_source_before_training(tmp_path, monkeypatch):
    from nwb_facrnn.pipeline import fit_source

    src = _old_session(tmp_path / "old.nwb")
    data = read_nwb(src)
    _session(src, overwrite=True)  # rewritten: stores an id now

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the destination was checked")

    monkeypatch.setattr(FacRNN, "fit", no_training)
    with pytest.raises(ValueError, match=r"changed after the data was read from it"):
        fit_source(data)


def test_an_old_zarr_store_is_written_and_its_fits_add_up(tmp_path):
    src = _old_session(tmp_path / "old.nwb.zarr")
    data = read_nwb(src)
    assert read_nwb(src).provenance["object_id"] != data.provenance["object_id"]
    out = write_results(_fit(data), data)
    assert out.name == "old_facrnn.nwb.zarr"
    again = read_nwb(src)  # another read: another made-up id
    write_results(_fit(again, seed=1), again)
    with pytest.raises(FileExistsError, match="already holds this fit"):
        write_results(_fit(again, seed=1), again)
    assert read_results(out, name="facrnn_G2H3_beta20_seed1").name.endswith("seed1")
    assert read_results(out, name=NAME).name == NAME
