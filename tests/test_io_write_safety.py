"""write_results never loses data: second fits, overwrite, in-place writes, failures and kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import tree_sha256 as _sha256
from test_io_results import _links

from nwb_facrnn import FacRNN, NWBReadError, atomic, read_nwb, read_results, write_results
from nwb_facrnn.io import destination, writer
from nwb_facrnn.synthetic import make_imaging_session

SMALL = dict(seed=5, n_rois=16, frame_shape=(64, 64), duration=0.6, n_rejected=2)


def _session(path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_imaging_session(path, **SMALL)
    return path


def _fit(data, **kw):
    params = dict(n_groups=2, group_rank=2, max_epochs=3, n_init=1, progress=False)
    return FacRNN(**{**params, **kw}).fit(data)


@pytest.fixture(scope="module", params=["s.nwb", "s.nwb.zarr"])
def source(request, tmp_path_factory):
    return _session(tmp_path_factory.mktemp("safety") / request.param)


@pytest.fixture(scope="module")
def data(source):
    return read_nwb(source, rois={"accepted": True})


def _partials(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".partial-"))


def _visible(directory: Path) -> list[str]:
    """Entries but the writers' lock files."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


# ------------------------------------------------------------------------- several fits
def test_second_fits_add_containers_and_overwrite_is_explicit(source, data, tmp_path):
    out = tmp_path / f"fits{''.join(source.suffixes)}"
    a = _fit(data, seed=0)
    assert write_results(a, data, out) == out
    b = _fit(data, seed=1)  # another seed: a second container
    write_results(b, data, out)
    c = _fit(data, seed=0, alpha=0.5)  # same G, H, beta, seed, other settings: suffixed
    write_results(c, data, out)
    names = ["facrnn_G2H2_beta20_seed0", "facrnn_G2H2_beta20_seed1", "facrnn_G2H2_beta20_seed0_2"]
    for name, model in zip(names, (a, b, c), strict=True):
        np.testing.assert_array_equal(
            read_results(out, name=name).output_loadings, model.output_loadings_
        )
    with pytest.raises(NWBReadError, match="several FacRNN fits; choose one with name=: facrnn_"):
        read_results(out)
    with pytest.raises(NWBReadError, match="no FacRNN fit named 'nope'; fits: facrnn_G2H2"):
        read_results(out, name="nope")

    # the same fit again: refused unless overwrite=True, which replaces it
    sha = _sha256(out)
    with pytest.raises(FileExistsError, match=r"already holds this fit .* overwrite=True"):
        write_results(a, data, out)
    with pytest.raises(FileExistsError, match=r"already holds this fit"):  # a bar is no setting
        write_results(a.set_params(progress=True), data, out)
    a.set_params(progress=False)
    assert _sha256(out) == sha
    # overwrite replaces the fit with the same settings, not another one of the same name
    c2 = _fit(data, seed=0, alpha=0.5)
    write_results(c2, data, out, overwrite=True)
    assert read_results(out, name=names[0]).params["alpha"] == 0.0
    assert read_results(out, name=names[2]).params["alpha"] == 0.5
    # the same settings on other data (other units) is another fit
    sub = data.select_units(slice(0, 8))
    d = _fit(sub, seed=0)
    write_results(d, sub, out)
    np.testing.assert_array_equal(
        read_results(out, name="facrnn_G2H2_beta20_seed0_3").unit_ids, sub.unit_ids
    )
    a2 = _fit(data, seed=0, max_epochs=4)
    write_results(a2, data, out, name="facrnn_G2H2_beta20_seed0", overwrite=True)
    np.testing.assert_array_equal(
        read_results(out, name=names[0]).output_loadings, a2.output_loadings_
    )
    assert read_results(out, name=names[0]).params["max_epochs"] == 4
    np.testing.assert_array_equal(
        read_results(out, name=names[1]).output_loadings, b.output_loadings_
    )
    # a name of the user's choice
    write_results(a, data, out, name="my_fit")
    assert read_results(out, name="my_fit").name == "my_fit"
    assert _partials(tmp_path) == []
    # after all these rewrites the source's movie is still linked and reads the same
    assert "/acquisition/OnePhotonSeries/data" in _links(out)
    np.testing.assert_array_equal(_movie_frame(out), _movie_frame(source))
    np.testing.assert_array_equal(read_nwb(out, rois={"accepted": True}).activity, data.activity)


def _movie_frame(path: Path) -> np.ndarray:
    from nwb_facrnn.io.backend import open_io

    io = open_io(path)
    try:
        return np.asarray(io.read().acquisition["OnePhotonSeries"].data[3])
    finally:
        io.close()


def test_copy_writes_a_standalone_file(source, data, tmp_path):
    model = _fit(data)
    out = write_results(model, data, tmp_path / f"standalone{''.join(source.suffixes)}", copy=True)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.replace(out, moved / out.name)  # no link to the source left to break
    res = read_results(moved / out.name)
    np.testing.assert_array_equal(res.unit_ids, data.unit_ids)
    again = read_nwb(moved / out.name, rois={"accepted": True})
    np.testing.assert_array_equal(again.activity, data.activity)


# --------------------------------------------------------------------------- in place
def test_in_place_adds_the_results_to_the_source(tmp_path):
    src = _session(tmp_path / "copy.nwb")
    data = read_nwb(src, rois={"accepted": True})
    mode = 0o640
    src.chmod(mode)
    model = _fit(data)
    assert write_results(model, data, in_place=True) == src
    assert src.stat().st_mode & 0o777 == mode  # permissions kept
    res = read_results(src)
    np.testing.assert_array_equal(res.latents, model.transform(data))
    again = read_nwb(src, rois={"accepted": True})
    np.testing.assert_array_equal(again.activity, data.activity)
    assert not (tmp_path / "copy_facrnn.nwb").exists()
    assert _partials(tmp_path) == []


def test_in_place_on_a_zarr_store_swaps_atomically(tmp_path):
    src = _session(tmp_path / "store.nwb.zarr")
    data = read_nwb(src, rois={"accepted": True})
    model = _fit(data)
    write_results(model, data, in_place=True)
    np.testing.assert_array_equal(read_results(src).output_loadings, model.output_loadings_)
    np.testing.assert_array_equal(read_nwb(src, rois={"accepted": True}).activity, data.activity)
    assert _visible(tmp_path) == ["store.nwb.zarr"]


def test_a_failure_mid_write_leaves_every_file_as_it_was(source, data, tmp_path, monkeypatch):
    out = tmp_path / f"r{''.join(source.suffixes)}"
    model = _fit(data)
    write_results(model, data, out)
    before_src, before_out = _sha256(source), _sha256(out)

    def broken_export(src_io, nwbfile, path, *args, **kwargs):
        Path(path).mkdir() if str(path).endswith(".zarr") else Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(writer, "export_nwbfile", broken_export)
    other = _fit(data, seed=3)
    with pytest.raises(OSError, match="disk full"):
        write_results(other, data, out)
    with pytest.raises(OSError, match="disk full"):
        write_results(other, data, in_place=True)
    assert _sha256(source) == before_src and _sha256(out) == before_out
    assert _partials(tmp_path) == [] and _partials(source.parent) == []


# --------------------------------------------------------------------------- SIGKILL
WRITER = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("ignore")
    from nwb_facrnn import FacRNN, read_nwb, write_results
    data = read_nwb(sys.argv[1], rois={"accepted": True})
    model = FacRNN(n_groups=2, group_rank=2, max_epochs=2, n_init=1, progress=False).fit(data)
    print("writing", flush=True)
    write_results(model, data, in_place=True)
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("name", ["big.nwb", "big.nwb.zarr"])
def test_a_writer_killed_mid_write_leaves_the_source_unchanged(tmp_path, name):
    """Acceptance: SIGKILL while writing in place leaves the source byte-identical and readable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = make_imaging_session(
            tmp_path / name, seed=6, n_rois=30, frame_shape=(128, 128), duration=2.0
        ).path
    before = _sha256(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = read_nwb(src, rois={"accepted": True})
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(src)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed_mid_write = False
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            partial = _partials(tmp_path)
            if partial and _size(tmp_path / partial[0]) > 0:  # the export has started writing
                time.sleep(0.05)
                proc.send_signal(signal.SIGKILL)
                killed_mid_write = bool(_partials(tmp_path))
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    assert killed_mid_write, "the writer finished before it could be killed"
    assert _sha256(src) == before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = read_nwb(src, rois={"accepted": True})
    np.testing.assert_array_equal(data.activity, original.activity)
    with pytest.raises(NWBReadError, match="no FacRNN results"):
        read_results(src)
    # the killed writer's temporary is found and removed by the next write
    leftover = _partials(tmp_path)
    assert leftover and str(proc.pid) in leftover[0]
    model = _fit(data)
    write_results(model, data, in_place=True)
    assert _partials(tmp_path) == []
    np.testing.assert_array_equal(read_results(src).output_loadings, model.output_loadings_)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_recover_cleans_up_after_killed_writers(tmp_path):
    dest = tmp_path / "f.nwb.zarr"
    partial = tmp_path / ".partial-999999-0123abcd-f.nwb.zarr"
    other = tmp_path / ".partial-1-0123abcd-g.nwb"  # another destination: left alone
    old = tmp_path / ".old-0123abcd-f.nwb.zarr"  # a replace interrupted between its renames
    for p in (partial, old):
        p.mkdir()
        (p / "x").write_text(p.name)
    other.write_bytes(b"x")
    # a destination whose name ends like this one's is another destination, with its own lock
    theirs = [
        tmp_path / ".partial-1-0123abcd-x-f.nwb.zarr",
        tmp_path / ".old-0123abcd-x-f.nwb.zarr",
    ]
    for p in theirs:
        p.mkdir()
    assert atomic.recover(dest) == [partial]
    assert all(p.exists() for p in theirs)
    assert dest.is_dir() and (dest / "x").read_text() == old.name  # the old store is back
    assert other.exists() and not old.exists() and not partial.exists()
    old.mkdir()  # the new store was already in place: the old one goes
    assert atomic.recover(dest) == [old] and dest.is_dir()


def test_concurrent_writers_of_one_output_both_land(source, data, tmp_path):
    out = tmp_path / f"shared{''.join(source.suffixes)}"
    write_results(_fit(data, seed=0), data, out)
    script = tmp_path / "append.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, warnings
            warnings.simplefilter("ignore")
            from nwb_facrnn import FacRNN, read_nwb, write_results
            data = read_nwb(sys.argv[1], rois={"accepted": True})
            model = FacRNN(n_groups=2, group_rank=2, max_epochs=3, n_init=1, progress=False,
                           seed=int(sys.argv[3])).fit(data)
            write_results(model, data, sys.argv[2])
            """
        )
    )
    procs = [
        subprocess.Popen([sys.executable, str(script), str(source), str(out), str(seed)])
        for seed in (1, 2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    for seed in (0, 1, 2):
        assert read_results(out, name=f"facrnn_G2H2_beta20_seed{seed}").params["seed"] == seed


# ------------------------------------------------------------------------- bad calls
def test_bad_calls_say_what_to_do(source, data, tmp_path):
    model = _fit(data)
    with pytest.raises(ValueError, match="is the source file; pass in_place=True"):
        write_results(model, data, source)
    with pytest.raises(ValueError, match="in_place=True writes into the source"):
        write_results(model, data, tmp_path / "x.nwb", in_place=True)
    with pytest.raises(ValueError, match="name must be a non-empty string without '/'"):
        write_results(model, data, tmp_path / "x.nwb", name="a/b")
    with pytest.raises(ValueError, match="fit on 14 units but data has 5"):
        write_results(model, data.select_units(slice(0, 5)), tmp_path / "x.nwb")
    with pytest.raises(AttributeError, match="not fitted"):
        write_results(FacRNN(), data, tmp_path / "x.nwb")
    with pytest.raises(TypeError, match="NeuralData"):
        write_results(model, data.activity, tmp_path / "x.nwb")
    moved = data.__class__(**{**data.__dict__, "provenance": {"source": "<in-memory NWBFile>"}})
    with pytest.raises(ValueError, match="pass source=PATH"):
        write_results(model, moved, tmp_path / "x.nwb")
    other_ids = data.__class__(**{**data.__dict__, "unit_ids": data.unit_ids + 1000})
    with pytest.raises(NWBReadError, match=r"PlaneSegmentation: has no row with id \[10\d\d"):
        write_results(model, other_ids, tmp_path / "x.nwb")
    assert not (tmp_path / "x.nwb").exists() and _partials(tmp_path) == []
    with pytest.raises(NWBReadError, match="no FacRNN results"):
        read_results(source)
    with pytest.raises(NWBReadError, match="no FacRNN results"):
        FacRNN.from_nwb(source)


def test_results_of_a_rewritten_source_do_not_mix_with_older_ones(tmp_path):
    src = _session(tmp_path / "s.nwb")
    data = read_nwb(src, rois={"accepted": True})
    out = write_results(_fit(data), data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_imaging_session(src, overwrite=True, **SMALL)  # same content, a new file
    newer = read_nwb(src, rois={"accepted": True})
    sha = _sha256(out)
    with pytest.raises(
        ValueError, match=r"s_facrnn\.nwb holds results made from another version of .*s\.nwb"
    ):
        write_results(_fit(newer, seed=2), newer)
    assert _sha256(out) == sha
    # data read before the source was rewritten cannot go into the rewritten file either
    with pytest.raises(ValueError, match=r"s\.nwb changed after the data was read from it"):
        write_results(_fit(data, seed=3), data, in_place=True)


# ------------------------------------------------------------- sources that changed or moved
def test_data_read_from_another_version_of_the_source_is_refused(tmp_path):
    src = _session(tmp_path / "s.nwb")
    data = read_nwb(src, rois={"accepted": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_imaging_session(src, overwrite=True, **{**SMALL, "seed": 9})  # same ids
    with pytest.raises(ValueError, match=r"s\.nwb changed after the data was read from it"):
        write_results(_fit(data), data)
    assert _visible(tmp_path) == ["s.nwb"]


def test_a_results_file_can_be_the_source_of_another(tmp_path):
    src = _session(tmp_path / "s.nwb")
    data = read_nwb(src, rois={"accepted": True})
    first = write_results(_fit(data), data)
    again = read_nwb(first, rois={"accepted": True})
    out = write_results(_fit(again, seed=1), again)
    assert out.name == "s_facrnn_facrnn.nwb"
    assert {r for r in ("facrnn_G2H2_beta20_seed0", "facrnn_G2H2_beta20_seed1")} == {
        read_results(out, name=n).name
        for n in ("facrnn_G2H2_beta20_seed0", "facrnn_G2H2_beta20_seed1")
    }


def test_broken_links_are_refused_not_dropped(tmp_path):
    src = _session(tmp_path / "s.nwb")
    data = read_nwb(src, rois={"accepted": True})
    out = write_results(_fit(data), data)  # links the movie of s.nwb
    linked = read_nwb(out, rois={"accepted": True})
    standalone = write_results(_fit(linked, seed=1), linked, tmp_path / "c.nwb", copy=True)
    assert _links(standalone) == set()  # copy=True copies what the source links, too
    derived = write_results(_fit(linked, seed=1), linked)  # keeps the link to s.nwb
    assert "/acquisition/OnePhotonSeries/data" in _links(derived)
    moved = tmp_path / "moved"
    moved.mkdir()
    os.replace(src, moved / "s.nwb")
    shas = _sha256(out), _sha256(derived)
    link = r"/acquisition/OnePhotonSeries/data: links to s\.nwb:/acquisition/OnePhotonSeries/data"
    with pytest.raises(NWBReadError, match=rf"s_facrnn\.nwb: {link}, which is missing"):
        write_results(_fit(linked, seed=2), linked, tmp_path / "new.nwb")
    with pytest.raises(NWBReadError, match=rf"s_facrnn_facrnn\.nwb: {link}"):
        write_results(_fit(linked, seed=2), linked)  # appending would drop the movie link
    with pytest.raises(NWBReadError, match=rf"s_facrnn\.nwb: {link}"):
        write_results(_fit(linked, seed=3), linked, in_place=True)
    assert (_sha256(out), _sha256(derived)) == shas
    assert not (tmp_path / "new.nwb").exists()
    os.replace(moved / "s.nwb", src)
    write_results(_fit(linked, seed=3), linked, in_place=True)  # restored: fine
    assert "/acquisition/OnePhotonSeries/data" in _links(out)


def test_existing_files_that_are_not_outputs_are_not_rewritten(source, data, tmp_path):
    other = _session(tmp_path / f"other{''.join(source.suffixes)}")
    sha = _sha256(other)
    with pytest.raises(FileExistsError, match="holds no FacRNN results"):
        write_results(_fit(data), data, other)
    assert _sha256(other) == sha


def test_symlinked_and_read_only_destinations(tmp_path):
    real = _session(tmp_path / "real.nwb")
    link = tmp_path / "link.nwb"
    link.symlink_to(real)
    data = read_nwb(link, rois={"accepted": True})
    write_results(_fit(data), data, in_place=True)
    assert link.is_symlink() and read_results(real).unit_ids.tolist() == data.unit_ids.tolist()
    out = write_results(_fit(data, seed=1), data)
    out.chmod(0o444)
    sha = _sha256(out)
    with pytest.raises(PermissionError, match=r"link_facrnn\.nwb is read-only"):
        write_results(_fit(data, seed=2), data)
    assert _sha256(out) == sha


def test_a_zarr_store_without_the_suffix_gets_a_zarr_output(tmp_path):
    from nwb_facrnn.io.backend import detect_backend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = make_imaging_session(tmp_path / "x.nwb.zarr", **SMALL).path
    plain = tmp_path / "store.nwb"
    os.replace(src, plain)  # a Zarr store named like an HDF5 file
    data = read_nwb(plain, rois={"accepted": True})
    out = write_results(_fit(data), data)
    assert out.name == "store_facrnn.nwb.zarr" and detect_backend(out) == "zarr"
    assert "/acquisition/OnePhotonSeries/data" in _links(out)


def test_a_zarr_output_whose_source_moved_says_so(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = make_imaging_session(tmp_path / "s.nwb.zarr", **SMALL).path
    data = read_nwb(src, rois={"accepted": True})
    out = write_results(_fit(data), data)
    (tmp_path / "moved").mkdir()
    os.replace(src, tmp_path / "moved" / src.name)
    with pytest.raises(NWBReadError, match=r"links to \.\./s\.nwb\.zarr:.*keep the two files"):
        read_results(out)


def test_the_fingerprint_of_the_data_follows_mask_and_inputs(data):
    from dataclasses import replace

    base = destination.data_fingerprint(data)
    assert destination.data_fingerprint(replace(data)) == base
    mask = data.mask.copy()
    mask[::2, 0] = False  # e.g. held-out bins of one unit
    assert destination.data_fingerprint(replace(data, mask=mask)) != base
    inputs = np.zeros_like(data.activity)
    assert destination.data_fingerprint(replace(data, inputs=inputs)) != base


def test_a_symlink_from_another_folder_reads_the_links_from_the_real_file(tmp_path):
    src = _session(tmp_path / "real" / "s.nwb")
    data = read_nwb(src, rois={"accepted": True})
    out = write_results(_fit(data), data)  # s_facrnn.nwb links ../s.nwb's movie
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    link = tmp_path / "elsewhere" / "deep" / "r.nwb"
    link.symlink_to(out)
    linked = read_nwb(link, rois={"accepted": True})
    written = write_results(_fit(linked, seed=1), linked)
    assert written == tmp_path / "elsewhere" / "deep" / "r_facrnn.nwb"
    assert "/acquisition/OnePhotonSeries/data" in _links(written)


def test_an_unwritable_folder_is_named_before_anything_runs(data, tmp_path, monkeypatch):
    out = tmp_path / "locked" / "r.nwb"
    out.parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        destination.os, "access", lambda p, m: False if Path(p) == out.parent else real_access(p, m)
    )
    model = FacRNN(n_groups=2, group_rank=2)  # not fitted: the check comes first
    with pytest.raises(PermissionError, match=r"cannot write in .*locked: it is read-only"):
        destination.check_destination(model.get_params(), data, destination.Destination(out))


def test_a_failed_second_rename_puts_the_old_store_back(tmp_path, monkeypatch):
    dest, new = tmp_path / "d.zarr", tmp_path / "n.zarr"
    for p in (dest, new):
        p.mkdir()
        (p / "x").write_text(p.name)
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # e.g. NFS
    real_replace, calls = os.replace, []

    def failing(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise OSError("disk gone")
        return real_replace(a, b)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OSError, match="disk gone"):
        atomic.replace_atomically(new, dest)
    assert (dest / "x").read_text() == "d.zarr"


def test_other_atomic_writers_clean_up_after_killed_ones(tmp_path):
    from nwb_facrnn.io import write_nwbfile
    from nwb_facrnn.synthetic import imaging_nwbfile

    dest = tmp_path / "made.nwb"
    stale = tmp_path / ".partial-999999-0123abcd-made.nwb"
    stale.write_bytes(b"half")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nwbfile, _ = imaging_nwbfile(**{**SMALL, "seed": 1})
        write_nwbfile(nwbfile, dest)
    assert not stale.exists() and _visible(tmp_path) == ["made.nwb"]
