"""Fitting straight from DANDI: every source form, streaming, the cache, faults and results.

Everything runs against the DANDI-like server of ``tests/dandi_server.py`` on 127.0.0.1 (the
``fake_dandi`` fixture); the real dandi client talks to it.
"""

from __future__ import annotations

import re
import time
import warnings
from urllib.parse import quote

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from nwb_facrnn import FacRNN, NWBReadError, read_nwb, read_results, write_results
from nwb_facrnn.cli import main
from nwb_facrnn.io import write_nwbfile
from nwb_facrnn.synthetic import make_imaging_session, spiking_nwbfile

SPIKES = "sub-Jenkins/sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb"
IMAGING = "sub-01/sub-01_ses-1_ophys.nwb"
READ = dict(units="heldout == False", align="move_onset_time", window=(-0.25, 0.45))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A spiking session that also holds a 30 MB movie, and a small imaging session."""
    from pynwb import TimeSeries

    d = tmp_path_factory.mktemp("dandi_files")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nwbfile, _ = spiking_nwbfile(0, n_units=24, n_trials=12)
        movie = np.random.default_rng(0).integers(0, 4000, (900, 128, 128), dtype=np.uint16)
        nwbfile.add_acquisition(
            TimeSeries(name="movie", data=movie, unit="n.a.", rate=30.0, description="raw")
        )
        spikes = write_nwbfile(nwbfile, d / "spikes.nwb")
        imaging = make_imaging_session(
            d / "imaging.nwb", seed=1, n_rois=12, frame_shape=(64, 64), duration=0.6
        ).path
    (d / "notes.txt").write_text("not NWB")
    return {"spikes": spikes, "imaging": imaging, "text": d / "notes.txt"}


@pytest.fixture
def dandi(fake_dandi, files, tmp_path, monkeypatch):
    """The fake archive with dandisets 000140 (draft + 0.220113.0408) and 000321."""
    ids = {
        "spikes": fake_dandi.add_asset("000140", SPIKES, files["spikes"]),
        "published": fake_dandi.add_asset(
            "000140", SPIKES, files["spikes"], version="0.220113.0408"
        ),
        "imaging": fake_dandi.add_asset("000321", IMAGING, files["imaging"]),
        "text": fake_dandi.add_asset("000321", "sub-01/notes.txt", files["text"]),
    }
    monkeypatch.setenv("DANDI_API_URL", fake_dandi.api_url)
    monkeypatch.setenv("NWB_FACRNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NWB_FACRNN_HTTP_TIMEOUT", "2")
    fake_dandi.ids = ids
    return fake_dandi


def _served(server) -> int:
    return sum(server.bytes_served.values())


# ------------------------------------------------------------------------ source forms
def test_every_source_form_reads_what_the_local_file_holds(dandi, files):
    local = read_nwb(files["spikes"], **READ)
    url = dandi.url
    forms = [
        f"DANDI:000140/{SPIKES}",
        f"DANDI:000140@0.220113.0408/{SPIKES}",
        f"dandi://dandi/000140@draft/{SPIKES}",
        f"https://dandiarchive.org/dandiset/000140/draft/files?location={quote(SPIKES, safe='')}",
        f"{dandi.api_url}/assets/{dandi.ids['spikes']}/download/",
        dandi.add_file("spikes.nwb", files["spikes"]),
    ]
    for source in forms:
        data = read_nwb(source, **READ)
        np.testing.assert_array_equal(data.activity, local.activity, err_msg=source)
        np.testing.assert_array_equal(data.unit_ids, local.unit_ids)
        assert data.provenance["remote"]["bytes_fetched"] >= 0
    assert url.startswith("http://127.0.0.1:")
    # without a version: the most recent published one (as the dandi client chooses)
    data = read_nwb(f"DANDI:000140/{SPIKES}", **READ)
    dandi_info = data.provenance["remote"]["dandi"]
    assert dandi_info["dandiset_id"] == "000140" and dandi_info["version"] == "0.220113.0408"
    assert dandi_info["path"] == SPIKES and dandi_info["asset_id"] == dandi.ids["published"]
    assert data.provenance["source"] == f"DANDI:000140@0.220113.0408/{SPIKES}"
    draft = read_nwb(f"DANDI:000140@draft/{SPIKES}", **READ)
    assert draft.provenance["remote"]["dandi"]["version"] == "draft"


def test_a_dandiset_lists_its_nwb_assets(dandi, files):
    result = CliRunner().invoke(main, ["info", "DANDI:000321"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert IMAGING in result.output and "notes.txt" not in result.output
    size = files["imaging"].stat().st_size / 1e6
    assert f"{size:.1f}" in result.output
    out = CliRunner().invoke(main, ["info", f"DANDI:000321/{IMAGING}"], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "ROI response series" in out.output and "streamed" in out.output


# ---------------------------------------------------------------------- streaming, cache
def test_a_units_only_read_streams_a_small_fraction_and_the_cache_serves_the_rest(dandi, files):
    size = files["spikes"].stat().st_size
    dandi.reset_counters()
    first = read_nwb(f"DANDI:000140/{SPIKES}", **READ)
    served = _served(dandi)
    assert 0 < served < 0.15 * size  # the 30 MB movie is never fetched
    assert first.provenance["remote"]["bytes_fetched"] == served
    dandi.reset_counters()
    again = read_nwb(f"DANDI:000140/{SPIKES}", **READ)
    assert _served(dandi) == 0  # every block from the cache
    assert again.provenance["remote"]["cache_hits"] > 0
    np.testing.assert_array_equal(again.activity, first.activity)
    dandi.reset_counters()
    read_nwb(f"DANDI:000140/{SPIKES}", cache=False, **READ)
    assert _served(dandi) == served  # no cache: fetched again


def test_a_corrupt_cache_block_is_not_used(dandi, tmp_path):
    first = read_nwb(f"DANDI:000140/{SPIKES}", **READ)
    blocks = sorted((tmp_path / "cache").rglob("*.blk"))
    assert blocks
    for b in blocks:
        b.write_bytes(b.read_bytes()[:-7])  # truncated, as by a crash
    dandi.reset_counters()
    again = read_nwb(f"DANDI:000140/{SPIKES}", **READ)
    assert _served(dandi) > 0
    np.testing.assert_array_equal(again.activity, first.activity)


# ------------------------------------------------------------------------------ faults
@pytest.mark.parametrize("kind", ["500", "503", "429", "drop"])
def test_transient_faults_are_retried(dandi, kind):
    dandi.inject(kind, path_prefix="/blobs/", count=2)
    data = read_nwb(f"DANDI:000140/{SPIKES}", cache=False, **READ)
    assert data.n_units > 0


def test_a_stalled_server_ends_in_a_clear_error_not_a_hang(dandi, monkeypatch):
    monkeypatch.setenv("NWB_FACRNN_HTTP_RETRIES", "2")
    dandi.inject("stall", path_prefix="/blobs/", count=100, seconds=6)
    start = time.monotonic()
    with pytest.raises(OSError, match=r"127\.0\.0\.1.*(timed out|timeout)"):
        read_nwb(f"DANDI:000140/{SPIKES}", cache=False, **READ)
    assert time.monotonic() - start < 30


def test_api_faults_are_retried_by_the_client(dandi):
    dandi.inject("500", path_prefix="/api/dandisets/", count=1)
    data = read_nwb(f"DANDI:000140/{SPIKES}", **READ)
    assert data.n_units > 0


def test_what_was_not_found_is_named_with_close_matches(dandi):
    with pytest.raises(NWBReadError, match="dandiset 000404 not found"):
        read_nwb(f"DANDI:000404/{SPIKES}")
    with pytest.raises(NWBReadError, match=r"dandiset 000141 not found.*closest: 000140"):
        read_nwb(f"DANDI:000141/{SPIKES}")
    with pytest.raises(NWBReadError, match=r"no version '0\.220113\.0409'.*0\.220113\.0408"):
        read_nwb(f"DANDI:000140@0.220113.0409/{SPIKES}")
    typo = SPIKES.replace("Jenkins_ses", "Jenkin_ses")
    with pytest.raises(NWBReadError, match=rf"no asset at this path.*closest: {re.escape(SPIKES)}"):
        read_nwb(f"DANDI:000140/{typo}")
    with pytest.raises(NWBReadError, match="not an NWB file: its type is text/plain"):
        read_nwb("DANDI:000321/sub-01/notes.txt")
    with pytest.raises(NWBReadError, match="names a whole dandiset"):
        read_nwb("DANDI:000140")


# ----------------------------------------------------------------------------- results
def test_a_remote_fit_is_written_to_a_standalone_local_file(dandi, files, tmp_path):
    data = read_nwb(f"DANDI:000140/{SPIKES}", **READ)
    model = FacRNN(n_groups=2, group_rank=1, observation="poisson", max_epochs=2, n_init=1)
    model.set_params(progress=False).fit(data)
    out = write_results(model, data, tmp_path / "fit.nwb")
    res = read_results(out)
    np.testing.assert_array_equal(res.unit_ids, data.unit_ids)
    assert res.unit_table == "/units"
    remote = res.provenance["remote"]["dandi"]
    assert remote["dandiset_id"] == "000140" and remote["asset_id"] == dandi.ids["spikes"]
    assert remote["digest"]["dandi:sha2-256"]
    with h5py.File(out, "r") as f:
        assert "movie" not in f["acquisition"] if "acquisition" in f else True
        assert f["general/subject/subject_id"][()]  # subject metadata copied
        assert "units/spike_times" in f and "intervals/trials" in f
    assert out.stat().st_size < 0.2 * files["spikes"].stat().st_size
    with pytest.raises(ValueError, match="is remote: it cannot be written in place"):
        write_results(model, data, in_place=True)


# ---------------------------------------------------------------------------- download
def test_download_verifies_the_digest_and_is_reused(dandi, files, tmp_path, monkeypatch):
    from nwb_facrnn.io import streaming

    local = read_nwb(files["spikes"], **READ)
    dandi.reset_counters()
    dandi.inject("drop", path_prefix="/blobs/", count=1)  # resumed, not restarted
    data = read_nwb(f"DANDI:000140@draft/{SPIKES}", download=True, **READ)
    size = files["spikes"].stat().st_size
    assert size <= _served(dandi) < 2 * size
    np.testing.assert_array_equal(data.activity, local.activity)
    path = data.provenance["remote"]["local_path"]
    assert path.startswith(str(tmp_path / "cache")) and path.endswith(".nwb")
    assert data.provenance["source"] == f"DANDI:000140@draft/{SPIKES}"
    dandi.reset_counters()
    read_nwb(f"DANDI:000140@draft/{SPIKES}", download=True, **READ)
    assert _served(dandi) == 0  # the verified copy is reused
    # a fit on it writes a standalone file, read from the local copy
    model = FacRNN(n_groups=1, group_rank=2, observation="poisson", max_epochs=1, n_init=1)
    out = write_results(model.set_params(progress=False).fit(data), data, tmp_path / "d.nwb")
    assert _served(dandi) == 0
    assert read_results(out).provenance["remote"]["dandi"]["path"] == SPIKES
    # bytes that do not match the digest are refused and removed
    monkeypatch.setattr(streaming, "_expected_digest", lambda d: ("dandi:sha2-256", "0" * 64))
    with pytest.raises(NWBReadError, match="does not match the asset's dandi:sha2-256 digest"):
        read_nwb(f"DANDI:000140/{SPIKES}", download=True, **READ)
    assert not list((tmp_path / "cache" / "assets").glob(f"dandi-{dandi.ids['published']}*.nwb"))


def test_every_form_of_source_can_be_written_and_secrets_stay_out(dandi, files, tmp_path):
    model = FacRNN(n_groups=1, group_rank=1, observation="poisson", max_epochs=1, n_init=1)
    model.set_params(progress=False)
    url = f"{dandi.api_url}/assets/{dandi.ids['spikes']}/download/"
    signed = dandi.add_file("spikes.nwb", files["spikes"]) + "?X-Amz-Signature=SECRETSIG&v=2"
    for i, source in enumerate((url, signed)):
        data = read_nwb(source, **READ)
        out = write_results(model.fit(data), data, tmp_path / f"w{i}.nwb")
        np.testing.assert_array_equal(read_results(out).unit_ids, data.unit_ids)
        assert b"SECRETSIG" not in out.read_bytes()
    assert "v=2" in read_results(tmp_path / "w1.nwb").provenance["remote"]["url"]


def test_epochs_that_refer_to_dropped_series_do_not_break_the_standalone_file(
    fake_dandi, tmp_path, monkeypatch
):
    from pynwb import TimeSeries

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nwbfile, _ = spiking_nwbfile(1, n_units=10, n_trials=6)
        ts = TimeSeries(name="raw", data=np.zeros((100, 2)), unit="V", rate=10.0)
        nwbfile.add_acquisition(ts)
        nwbfile.add_epoch(0.0, 5.0, ["a"], [ts])
        src = write_nwbfile(nwbfile, tmp_path / "e.nwb")
    fake_dandi.add_asset("000777", "sub-1/e.nwb", src)
    monkeypatch.setenv("DANDI_API_URL", fake_dandi.api_url)
    data = read_nwb("DANDI:000777/sub-1/e.nwb", trials=False, bin_size=0.05)
    model = FacRNN(n_groups=1, group_rank=1, observation="poisson", max_epochs=1, n_init=1)
    out = write_results(model.set_params(progress=False).fit(data), data, tmp_path / "o.nwb")
    with h5py.File(out, "r") as f:
        assert "acquisition/raw" not in f and "intervals/epochs" not in f
    assert read_results(out).unit_table == "/units"


def test_the_api_key_goes_only_to_the_instance_the_user_chose(dandi, monkeypatch):
    from nwb_facrnn.io.dandi import PUBLIC_API_URL, api_token

    monkeypatch.setenv("DANDI_API_KEY", "ARCHIVE-KEY")
    assert api_token(PUBLIC_API_URL) == "ARCHIVE-KEY"
    assert api_token(dandi.api_url) == "ARCHIVE-KEY"  # DANDI_API_URL names it
    monkeypatch.delenv("DANDI_API_URL")
    assert api_token("http://127.0.0.1:9/api") is None  # found in a URL, not chosen


def test_urls_that_name_no_asset_are_refused_without_network(dandi):
    start = time.monotonic()
    with pytest.raises(NWBReadError):
        read_nwb("https://dandiarchive.org/dandiset/000140/draft?tab=files")
    assert time.monotonic() - start < 10
