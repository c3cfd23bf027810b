"""Write ``results_v0.1.0.nwb``: a results file of nwb-facrnn 0.1.0 (ndx-facrnn 0.1.0).

The tests read it to check that files written before the extension became its own
distribution (``ndx-facrnn/``) still read, with nwb_facrnn and with pynwb alone.  It was made
with the code of commit 54cae1b, checked out beside the working tree::

    git worktree add /tmp/oldmain 54cae1b
    PYTHONPATH=/tmp/oldmain .venv/bin/python tests/data/make_results_v0_1_0.py
    git worktree remove /tmp/oldmain --force

A tiny synthetic spiking session (8 units, 4 trials), a 2-epoch fit of 2 groups of rank 3
(both linear, so the connectivity table is there) and a standalone results file (``copy=True``:
no external links to the session).  The session's 1 kHz behavior (hand position and velocity)
is deleted before the fit to keep the file small.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import h5py

import nwb_facrnn
from nwb_facrnn import FacRNN, read_nwb, write_results
from nwb_facrnn.synthetic import make_spiking_session

OUTPUT = Path(__file__).resolve().parent / "results_v0.1.0.nwb"


def main() -> None:
    print("nwb_facrnn", nwb_facrnn.__version__, "from", nwb_facrnn.__file__)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = make_spiking_session(
            Path(tmp) / "session.nwb", seed=3, n_units=8, n_trials=4, n_conditions=2
        ).path
        with h5py.File(session, "r+") as f:
            del f["processing/behavior"]  # 1 kHz hand traces: most of the file, not needed
        data = read_nwb(session, bin_size=0.02)
        model = FacRNN(
            n_groups=2, group_rank=3, seed=0, max_epochs=2, n_init=1, progress=False
        ).fit(data)
        OUTPUT.unlink(missing_ok=True)
        write_results(model, data, OUTPUT, copy=True)
    OUTPUT.with_name(f".{OUTPUT.name}.lock").unlink(missing_ok=True)  # the writer's lock file
    print(OUTPUT, OUTPUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
