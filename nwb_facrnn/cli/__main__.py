"""``python -m nwb_facrnn.cli`` (and ``torchrun -m nwb_facrnn.cli``)."""

from . import run

run()
