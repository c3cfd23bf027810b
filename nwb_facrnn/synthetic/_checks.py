"""Validation of the generators' arguments: each check raises OptionError naming the value."""

from __future__ import annotations

import math

import numpy as np

from ..errors import OptionError


def check_int(name: str, value: object, minimum: int) -> None:
    """An int (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise OptionError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_float(name: str, value: object, *, positive: bool = False) -> None:
    """A finite real number ``>= 0`` (``> 0`` if ``positive``)."""
    bound = "> 0" if positive else ">= 0"
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise OptionError(f"{name} must be a finite number {bound}, got {value!r}")


def check_fraction(name: str, value: object, *, upper_open: bool = False) -> None:
    """A real number in [0, 1] (or [0, 1) if ``upper_open``)."""
    check_float(name, value)
    if value > 1 or (upper_open and value == 1):
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise OptionError(f"{name} must be a number in {bound}, got {value!r}")


def check_seed(seed: object) -> int:
    """Validate a seed (a non-negative int) and return it as a Python int."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise OptionError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def check_group_shape(n_groups: object, group_rank: object) -> None:
    """``n_groups`` an int >= 1 and ``group_rank`` 3 (each chaotic system is 3-D)."""
    check_int("n_groups", n_groups, 1)
    check_int("group_rank", group_rank, 1)
    if group_rank != 3:
        raise OptionError(f"group_rank must be 3 (each chaotic system is 3-D), got {group_rank!r}")
