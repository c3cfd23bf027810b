"""DANDI benchmark: bytes served and time to the first training epoch, streamed, cached, downloaded.

A spiking session in MC_Maze layout that also holds a large raw movie (``--movie-mb``, default
500 MB, as a lab's file with imaging next to the units would) is published as a DANDI asset on
the DANDI-like server of the tests (127.0.0.1).  A units-only fit reads it

1. streamed with an empty cache,
2. streamed again (the block cache holds what the first read fetched),
3. downloaded whole (``download=True``, digest-checked) into an empty cache,

and the script prints the bytes the server sent over the file size and the seconds from the
call to ``read_nwb`` to the end of the first training epoch.  The server is local, so the
times leave out network latency and bandwidth; the bytes are what a real archive would send.

Run:  python benchmarks/dandi_speed.py [--movie-mb 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

PATH = "sub-Jenkins/sub-Jenkins_ses-full_desc-train_behavior+ecephys+movie.nwb"
READ = dict(units="heldout == False", align="move_onset_time", window=(-0.25, 0.45))


def make_file(path: Path, movie_mb: float) -> None:
    from hdmf.data_utils import DataChunkIterator
    from pynwb import TimeSeries

    from nwb_facrnn.io import write_nwbfile
    from nwb_facrnn.synthetic import spiking_nwbfile

    nwbfile, _ = spiking_nwbfile(0, n_trials=80)
    frame = (256, 256)
    n_frames = int(movie_mb * 1e6 / (frame[0] * frame[1] * 2))
    rng = np.random.default_rng(0)
    block = rng.integers(0, 4000, size=(32, *frame), dtype=np.uint16)

    def frames():
        for i in range(n_frames):
            yield block[i % 32]

    nwbfile.add_acquisition(
        TimeSeries(
            name="movie",
            data=DataChunkIterator(frames(), maxshape=(n_frames, *frame), buffer_size=32),
            unit="n.a.",
            rate=30.0,
            description="raw movie, never read by a units-only fit",
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_nwbfile(nwbfile, path, overwrite=True)


def first_epoch(source: str, **kw) -> tuple[float, object]:
    from nwb_facrnn import FacRNN, read_nwb

    start = time.perf_counter()
    data = read_nwb(source, **READ, **kw)
    FacRNN(
        n_groups=2, group_rank=3, observation="poisson", max_epochs=1, n_init=1, progress=False
    ).fit(data)
    return time.perf_counter() - start, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movie-mb", type=float, default=500.0)
    args = parser.parse_args()
    os.environ["DANDI_NO_ET"] = "1"
    from dandi_server import FakeDandi

    with tempfile.TemporaryDirectory() as tmp, FakeDandi() as server:
        tmp = Path(tmp)
        src = tmp / "session.nwb"
        t = time.perf_counter()
        make_file(src, args.movie_mb)
        size = src.stat().st_size
        print(f"wrote {src.name}: {size / 1e6:.0f} MB ({time.perf_counter() - t:.0f} s)")
        server.add_asset("000140", PATH, src)
        os.environ["DANDI_API_URL"] = server.api_url
        source = f"DANDI:000140/{PATH}"
        first_epoch(str(src))  # warm-up: imports, first torch calls
        runs = [
            ("streamed, empty cache", tmp / "cache1", {}),
            ("streamed again, cached", tmp / "cache1", {}),
            ("downloaded (digest-checked)", tmp / "cache2", {"download": True}),
        ]
        for label, cache, kw in runs:
            os.environ["NWB_FACRNN_CACHE_DIR"] = str(cache)
            server.reset_counters()
            seconds, _ = first_epoch(source, cache=cache, **kw)
            served = sum(server.bytes_served.values())
            print(
                f"{label:<34} {served / 1e6:8.2f} MB = {100 * served / size:5.2f} % "
                f"{seconds:8.2f} s to the first epoch"
            )
        local, _ = first_epoch(str(src))
        print(f"{'the local file itself':<34} {'-':>16} {local:8.2f} s to the first epoch")


if __name__ == "__main__":
    main()
