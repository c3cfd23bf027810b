"""``nwb-facrnn`` run as a user runs it: a subprocess through ``run()`` (one-line errors,
exit codes), with one torch thread so that concurrent test processes do not oversubscribe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str | Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``nwb-facrnn ARGS...``; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "nwb_facrnn.cli", *map(str, args)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
