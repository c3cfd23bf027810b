"""Synthetic spiking session laid out like the Neural Latents Benchmark's MC_Maze files.

A simulated monkey performs ``n_trials`` reaches while ``n_units`` sorted units on two arrays
(``"M1"`` and ``"PMd"``) are recorded. The units' firing rates are driven by a FacRNN ground
truth: ``G`` independent groups of standardized 3-D chaotic latents, each unit loading on the
latents of exactly one group. Everything is deterministic from ``seed``.

Time grids
----------
* The latents ``z``, the rates and the behaviour live on a 1 kHz grid covering the whole
  session: sample ``k`` is the millisecond ``[k, k + 1) ms``, stamped ``k / 1000`` s.
* Spike times are quantized to a 30 kHz recording clock (``Units.resolution = 1/30000``).
* ``A``, ``a``, ``B`` and ``b`` are the parameters of the FacRNN Poisson model on 20 ms bins
  (:data:`BIN_SIZE`): rate ``softplus(A z + a)`` spikes per bin.

File layout (as in MC_Maze)
---------------------------
* ``/intervals/trials``: ``start_time``, ``stop_time``, ``move_onset_time``, ``condition``
  (int), ``split`` (``"train"``, ``"val"`` or ``"test"``).
* ``/units``: ``spike_times``, ``obs_intervals``, ``electrodes``, ``electrode_group`` and a
  boolean ``heldout`` column.
* ``/general/extracellular_ephys``: one ``"Utah array"`` device, electrode groups ``"M1"`` and
  ``"PMd"``, one electrode per unit.
* ``/processing/behavior``: ``hand_pos`` (SpatialSeries, millimeters) and ``hand_vel``
  (TimeSeries, millimeters/second), both at 1 kHz, stored directly in the module like in the
  MC_Maze files (no Position / BehavioralTimeSeries container).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OptionError
from . import _nwb, _session
from ._checks import check_float, check_fraction, check_group_shape, check_int
from ._session import SessionTruth
from .dynamics import _bias_for_mean_rate, _fit_recurrence

SAMPLING_RATE = 1000.0
"""Rate (Hz) of the latent, rate and behaviour grid."""
SPIKE_CLOCK = 30000.0
"""Rate (Hz) of the recording clock spike times are quantized to."""
BIN_SIZE = 0.02
"""Bin width (s) on which ``A, a, B, b`` define the FacRNN Poisson model."""

# Latent time scale: each system is sampled every quarter of its default interval, so one loop
# of the attractor takes ~120-430 ms at 1 kHz (lorenz ~250 ms, thomas ~200 ms).
_LATENT_TIME_SCALE = 0.25
# Range of the norm of each unit's loading vector (log-rate modulation, standardized latents).
_LOADING_GAIN = (0.7, 1.3)
# Hand-velocity readout: standard deviation (mm/s) of each velocity component.
_VELOCITY_STD = 80.0
# Trial timing (ms): start of the first trial, delay to movement onset, movement duration,
# inter-trial gap, and the recording after the last trial.
_FIRST_TRIAL_MS = 1000
_DELAY_MS = (300, 600)
_MOVE_MS = (500, 800)
_GAP_MS = (200, 500)
_TAIL_MS = 1000
# Unobserved chunk of the units with a gap: length and earliest/latest position (fractions of
# the session).
_GAP_LENGTH = (0.15, 0.30)
_GAP_WINDOW = (0.25, 0.75)
_MAX_MEAN_RATE = 100.0
# Electrode pitch of the Utah arrays (micrometres).
_PITCH_UM = 400.0
_AREAS = {"M1": "primary motor cortex", "PMd": "dorsal premotor cortex"}


@dataclass(eq=False)
class SpikingTruth(SessionTruth):
    """Ground truth of a synthetic spiking session.

    ``N`` is the number of units, ``K = n_groups * group_rank`` the number of latents and
    ``T = session_end * 1000`` the number of 1 ms samples. The first attributes, ``path``,
    ``seed``, ``n_groups``, ``group_rank`` and ``systems``, are those of every session (see
    :class:`~nwb_facrnn.synthetic._session.SessionTruth`).

    Attributes
    ----------
    unit_ids : numpy.ndarray, shape (N,), int
        Ids of the units table (``0 .. N-1``).
    unit_groups : numpy.ndarray, shape (N,), int
        Latent group of each unit (balanced across groups).
    spike_times : list of N numpy.ndarray, float64
        Spike times in seconds, sorted, exactly as written (multiples of 1/30000 s).
    obs_intervals : list of N numpy.ndarray, shape (n_i, 2), float64
        Observation intervals in seconds: ``[[0, session_end]]``, or two intervals around the
        unobserved chunk of a unit with a gap.
    heldout : numpy.ndarray, shape (N,), bool
        The ``heldout`` column.
    electrode_group_of_unit : numpy.ndarray, shape (N,), str
        ``"M1"`` or ``"PMd"``; unit ``i`` is recorded on electrode row ``i``.
    electrode_positions : numpy.ndarray, shape (N, 2), float64
        ``rel_x``, ``rel_y`` of electrode ``i`` in micrometres: distinct sites of a square grid
        with 400 um pitch (10 x 10 unless an array has more than 100 units).
    A : numpy.ndarray, shape (N, K), float64
        Block-sparse loadings: unit ``i`` loads only on its group's columns.
    a : numpy.ndarray, shape (N,), float64
        Biases; the rate of unit ``i`` is ``softplus(A[i] @ z + a[i]) / bin_size`` Hz.
    B : numpy.ndarray, shape (K, N), float64
        Least-squares input loadings of ``z_j ~ B tanh(A z_{j-1} + a) + b`` on 20 ms bins
        (``z`` averaged over each bin).
    b : numpy.ndarray, shape (K,), float64
        Latent bias of that recurrence.
    z : numpy.ndarray, shape (T, K), float32
        Latents on the 1 kHz grid; each group is a standardized chaotic trajectory.
    z_times : numpy.ndarray, shape (T,), float64
        Time stamps (s) of ``z``, ``rates`` and the behaviour: ``arange(T) / 1000``.
    rates : numpy.ndarray, shape (T, N), float32
        Firing rates in Hz. A unit fires in the 1 ms sample ``k`` with probability
        ``1 - exp(-rates[k] * 1 ms)`` (at most one spike per ms), except while unobserved.
    bin_size : float
        20 ms, the bin of the Poisson parametrization and of ``B, b``.
    mean_rate : float
        Target time-averaged rate (Hz) of every unit.
    trials : dict of str to numpy.ndarray, each shape (n_trials,)
        ``start_time``, ``stop_time``, ``move_onset_time`` (s, float64), ``condition`` (int)
        and ``split`` (str).
    behavior : dict of str to (timestamps, data)
        ``"hand_vel"`` (mm/s) and ``"hand_pos"`` (mm), each ``(z_times, data (T, 2))``. The
        velocity is ``z[:, group 0] @ velocity_readout`` and the position its cumulative
        integral ``cumsum(hand_vel) / 1000``.
    velocity_readout : numpy.ndarray, shape (group_rank, 2), float64
        Readout (mm/s per latent unit) of the hand velocity from group 0's latents.
    session_end : float
        End of the session (s); the session spans ``[0, session_end]``.
    """

    unit_ids: np.ndarray
    unit_groups: np.ndarray
    spike_times: list[np.ndarray]
    obs_intervals: list[np.ndarray]
    heldout: np.ndarray
    electrode_group_of_unit: np.ndarray
    electrode_positions: np.ndarray
    A: np.ndarray
    a: np.ndarray
    B: np.ndarray
    b: np.ndarray
    z: np.ndarray
    z_times: np.ndarray
    rates: np.ndarray
    bin_size: float
    mean_rate: float
    trials: dict[str, np.ndarray]
    behavior: dict[str, tuple[np.ndarray, np.ndarray]]
    velocity_readout: np.ndarray
    session_end: float

    @property
    def n_units(self) -> int:
        """Number of units ``N``."""
        return len(self.unit_ids)


# --------------------------------------------------------------------------- public API


def spiking_nwbfile(
    seed: int = 0,
    *,
    n_groups: int = 2,
    group_rank: int = 3,
    n_units: int = 60,
    n_trials: int = 40,
    n_conditions: int = 4,
    mean_rate: float = 15.0,
    heldout_fraction: float = 0.2,
    gap_fraction: float = 0.1,
) -> tuple[Any, SpikingTruth]:
    """Build a synthetic MC_Maze-like spiking session in memory.

    Trials are laid end to end from 1 s on: each has a delay of 0.3-0.6 s from ``start_time``
    to ``move_onset_time`` and a movement of 0.5-0.8 s until ``stop_time`` (so trials differ
    in length), followed by an inter-trial gap of 0.2-0.5 s; the session ends 1 s after the
    last trial. All trial times are whole milliseconds. Conditions are balanced and shuffled;
    they label trials but do not change the dynamics. The split is ~70/15/15 % train/val/test
    (at least one val and one test trial).

    The latents of the ``G`` groups are independent chaotic trajectories (lorenz, thomas,
    rossler, ... in group order) sampled at 1 kHz with one loop every ~100-400 ms. Unit ``i``
    of group ``g`` has the rate ``softplus(A[i, g] @ z[g] + a_i) / 0.02`` Hz, where the norm of
    ``A[i, g]`` is drawn in [0.7, 1.3] and ``a_i`` makes its time-averaged rate ``mean_rate``.
    ``round(gap_fraction * N)`` units are unobserved during one contiguous chunk of 15-30 % of
    the session (inside its middle half) and have no spikes there; ``round(heldout_fraction *
    N)`` units are marked held out.

    Parameters
    ----------
    seed : int, default 0
        Seed of every random draw (non-negative). Latents, trials, units and spikes use
        independent streams, so e.g. changing ``n_units`` keeps the latents and trials.
    n_groups : int, default 2
        Number of independent latent groups ``G``.
    group_rank : int, default 3
        Rank ``H`` of each group; must be 3 (the chaotic systems are 3-D).
    n_units : int, default 60
        Number of units ``N`` (at least ``n_groups``).
    n_trials : int, default 40
        Number of trials (at least 3, so that every split has a trial).
    n_conditions : int, default 4
        Number of reach conditions (at least 1).
    mean_rate : float, default 15.0
        Time-averaged firing rate of every unit, in Hz (in (0, 100]).
    heldout_fraction : float, default 0.2
        Fraction of units marked ``heldout`` (in [0, 1)).
    gap_fraction : float, default 0.1
        Fraction of units with a gap in their ``obs_intervals`` (in [0, 1]).

    Returns
    -------
    nwbfile : pynwb.NWBFile
        The session, not yet written (an NWBFile can be written once).
    truth : SpikingTruth
        The ground truth, with ``path=None``.

    Raises
    ------
    OptionError
        If a parameter is out of range.
    """
    seed, p = _session.arguments(locals())
    _validate(p)
    truth = _simulate(seed, p)
    return _build_nwbfile(truth, p), truth


def make_spiking_session(
    path: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    **params: Any,
) -> SpikingTruth:
    """Build a synthetic spiking session and write it to ``path``.

    Parameters
    ----------
    path : path
        Destination: a ``.zarr`` suffix (e.g. ``session.nwb.zarr``) writes a Zarr store,
        anything else HDF5. Written atomically.
    seed : int, default 0
        Seed of every random draw.
    overwrite : bool, default False
        Replace an existing file; otherwise an existing ``path`` raises ``FileExistsError``.
    **params
        Keyword arguments of :func:`spiking_nwbfile`.

    Returns
    -------
    SpikingTruth
        The ground truth, with ``path`` set to ``Path(path)``.
    """
    return _session.write(path, overwrite, spiking_nwbfile(seed, **params))


# --------------------------------------------------------------------------- simulation


def _validate(p: Any) -> None:
    check_group_shape(p.n_groups, p.group_rank)
    check_int("n_units", p.n_units, 1)
    if p.n_units < p.n_groups:
        raise OptionError(
            f"n_units must be at least n_groups={p.n_groups} (every group needs a unit), "
            f"got {p.n_units!r}"
        )
    check_int("n_trials", p.n_trials, 3)
    check_int("n_conditions", p.n_conditions, 1)
    check_float("mean_rate", p.mean_rate, positive=True)
    if p.mean_rate > _MAX_MEAN_RATE:
        raise OptionError(f"mean_rate must be at most {_MAX_MEAN_RATE} Hz, got {p.mean_rate!r}")
    check_fraction("heldout_fraction", p.heldout_fraction, upper_open=True)
    check_fraction("gap_fraction", p.gap_fraction)


def _simulate(seed: int, p: Any) -> SpikingTruth:
    rng_latent, rng_trials, rng_units, rng_spikes, rng_behavior, rng_electrodes = _session.streams(
        seed, 6
    )
    trials, n_steps = _make_trials(rng_trials, p.n_trials, p.n_conditions)
    session_end = n_steps / SAMPLING_RATE
    z_times = np.arange(n_steps) / SAMPLING_RATE

    systems, z = _session.latents(rng_latent, p.n_groups, n_steps, _LATENT_TIME_SCALE)

    n_units = p.n_units
    unit_groups = _session.balanced_groups(rng_units, n_units, p.n_groups)
    A = _session.block_loadings(rng_units, unit_groups, p.n_groups, p.group_rank, _LOADING_GAIN)
    heldout = np.zeros(n_units, dtype=bool)
    heldout[rng_units.permutation(n_units)[: round(p.heldout_fraction * n_units)]] = True
    n_m1 = math.ceil(n_units / 2)
    electrode_groups = rng_units.permutation(np.array(["M1"] * n_m1 + ["PMd"] * (n_units - n_m1)))
    gaps = _make_gaps(rng_units, n_units, p.gap_fraction, n_steps)

    # Rates: softplus(A z + a) spikes per 20 ms bin, a_i solved on every 10th ms (plenty for a
    # time average over >= 10^4 samples).
    loaded = z @ A.T
    a = _bias_for_mean_rate(loaded[::10], p.mean_rate * BIN_SIZE)
    drive = loaded + a
    del loaded
    rates = np.logaddexp(0.0, drive) / BIN_SIZE

    per_bin = round(BIN_SIZE * SAMPLING_RATE)
    n_bins = n_steps // per_bin
    z_bins = z[: n_bins * per_bin].reshape(n_bins, per_bin, -1).mean(axis=1)
    B, b = _fit_recurrence(z_bins, z_bins @ A.T + a)
    del drive

    spike_times, obs_intervals = _draw_spikes(rng_spikes, rates, gaps, session_end)

    readout = _velocity_readout(rng_behavior, p.group_rank)
    hand_vel = z[:, : p.group_rank] @ readout
    hand_pos = np.cumsum(hand_vel, axis=0) / SAMPLING_RATE
    behavior = {"hand_vel": (z_times, hand_vel), "hand_pos": (z_times, hand_pos)}

    return SpikingTruth(
        **_session.truth_fields(seed, p, systems, z, (A, a, B, b)),
        unit_ids=np.arange(n_units),
        unit_groups=unit_groups,
        spike_times=spike_times,
        obs_intervals=obs_intervals,
        heldout=heldout,
        electrode_group_of_unit=electrode_groups,
        electrode_positions=_array_positions(rng_electrodes, electrode_groups),
        z_times=z_times,
        rates=rates.astype(np.float32),
        bin_size=BIN_SIZE,
        mean_rate=float(p.mean_rate),
        trials=trials,
        behavior=behavior,
        velocity_readout=readout,
        session_end=session_end,
    )


def _make_trials(
    rng: np.random.Generator, n_trials: int, n_conditions: int
) -> tuple[dict[str, np.ndarray], int]:
    """Trial table (times in s, whole ms) and the session length in ms."""
    delay = rng.integers(_DELAY_MS[0], _DELAY_MS[1] + 1, size=n_trials)
    move = rng.integers(_MOVE_MS[0], _MOVE_MS[1] + 1, size=n_trials)
    gap = rng.integers(_GAP_MS[0], _GAP_MS[1] + 1, size=n_trials)
    start = _FIRST_TRIAL_MS + np.concatenate([[0], np.cumsum(delay + move + gap)[:-1]])
    onset = start + delay
    stop = onset + move
    n_steps = int(stop[-1]) + _TAIL_MS

    condition = rng.permutation(np.arange(n_trials) % n_conditions)
    n_val = n_test = max(1, round(0.15 * n_trials))
    split = np.array(["train"] * (n_trials - n_val - n_test) + ["val"] * n_val + ["test"] * n_test)
    split = split[rng.permutation(n_trials)]
    trials = {
        "start_time": start / SAMPLING_RATE,
        "stop_time": stop / SAMPLING_RATE,
        "move_onset_time": onset / SAMPLING_RATE,
        "condition": condition.astype(np.int64),
        "split": split,
    }
    return trials, n_steps


def _make_gaps(
    rng: np.random.Generator, n_units: int, gap_fraction: float, n_steps: int
) -> dict[int, tuple[int, int]]:
    """Unobserved chunk ``[first, stop)`` (1 ms samples) of each unit that has one."""
    chosen = np.sort(rng.permutation(n_units)[: round(gap_fraction * n_units)])
    gaps = {}
    for i in chosen:
        length = rng.uniform(*_GAP_LENGTH)
        begin = rng.uniform(_GAP_WINDOW[0], _GAP_WINDOW[1] - length)
        first = round(begin * n_steps)
        gaps[int(i)] = (first, first + max(1, round(length * n_steps)))
    return gaps


def _draw_spikes(
    rng: np.random.Generator,
    rates: np.ndarray,
    gaps: dict[int, tuple[int, int]],
    session_end: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Spike times (s, on the 30 kHz clock) and observation intervals of every unit.

    Unit ``i`` spikes in sample ``k`` with probability ``1 - exp(-rates[k, i] / 1000)``, at a
    uniformly random 30 kHz tick inside that millisecond; nothing is drawn while unobserved.
    """
    fires = rng.random(rates.shape) < -np.expm1(-rates / SAMPLING_RATE)
    ticks_per_sample = round(SPIKE_CLOCK / SAMPLING_RATE)
    spike_times, obs_intervals = [], []
    for i in range(rates.shape[1]):
        if i in gaps:
            first, stop = gaps[i]
            fires[first:stop, i] = False
            obs = np.array([[0.0, first / SAMPLING_RATE], [stop / SAMPLING_RATE, session_end]])
        else:
            obs = np.array([[0.0, session_end]])
        samples = np.flatnonzero(fires[:, i])
        ticks = samples * ticks_per_sample + rng.integers(0, ticks_per_sample, size=samples.size)
        spike_times.append(ticks / SPIKE_CLOCK)
        obs_intervals.append(obs)
    return spike_times, obs_intervals


def _velocity_readout(rng: np.random.Generator, group_rank: int) -> np.ndarray:
    """Readout (group_rank, 2) with orthogonal columns of norm ``_VELOCITY_STD``."""
    q, _ = np.linalg.qr(rng.standard_normal((group_rank, 2)))
    return _VELOCITY_STD * q


# --------------------------------------------------------------------------- NWB file


def _build_nwbfile(truth: SpikingTruth, p: Any):
    from pynwb import TimeSeries
    from pynwb.behavior import SpatialSeries
    from pynwb.misc import Units

    nwbfile = _nwb.new_nwbfile(
        kind="spiking",
        seed=truth.seed,
        params=vars(p),
        animal="monkey",
        session_description=(
            "Simulated delayed center-out maze reaching session in the layout of the Neural "
            f"Latents Benchmark MC_Maze files: {len(truth.trials['start_time'])} trials, "
            f"{truth.n_units} sorted units on two Utah arrays (M1, PMd), hand position and "
            "velocity at 1 kHz."
        ),
        experiment_description=(
            f"firing rates are driven by {truth.n_groups} independent groups of "
            f"{truth.group_rank}-D chaotic latents ({', '.join(truth.systems)}); each unit "
            "loads on one group and hand velocity is a linear readout of group 0."
        ),
        keywords=["motor cortex", "reaching", "spiking", "Neural Latents Benchmark"],
    )

    # Trials.
    nwbfile.add_trial_column(
        "move_onset_time", "Time of movement onset (s), between start_time and stop_time."
    )
    nwbfile.add_trial_column(
        "condition", f"Reach condition (maze), an integer in [0, {p.n_conditions})."
    )
    nwbfile.add_trial_column(
        "split", "Data split of the trial: 'train', 'val' or 'test' (about 70/15/15 %)."
    )
    t = truth.trials
    for j in range(len(t["start_time"])):
        nwbfile.add_trial(
            start_time=float(t["start_time"][j]),
            stop_time=float(t["stop_time"][j]),
            move_onset_time=float(t["move_onset_time"][j]),
            condition=int(t["condition"][j]),
            split=str(t["split"][j]),
        )

    # Electrodes: one Utah array device, two electrode groups, one electrode per unit.
    device = nwbfile.create_device(
        name="Utah array",
        description="Two simulated 96-channel Utah arrays (Blackrock Microsystems, 400 um pitch).",
    )
    groups = {
        name: nwbfile.create_electrode_group(
            name=name,
            description=f"Simulated Utah array implanted in {location} ({name}).",
            location=location,
            device=device,
        )
        for name, location in _AREAS.items()
    }
    # rel_x, rel_y: position (micrometres) on the array's 400 um grid.
    positions = truth.electrode_positions
    for i, name in enumerate(truth.electrode_group_of_unit):
        nwbfile.add_electrode(
            group=groups[name],
            location=_AREAS[name],
            rel_x=float(positions[i, 0]),
            rel_y=float(positions[i, 1]),
        )

    # Units.
    nwbfile.units = Units(
        name="units",
        description=(
            "Simulated sorted units. Spike times (s) are quantized to a 30 kHz clock; a unit "
            "with two obs_intervals was not observed between them and has no spikes there."
        ),
        resolution=1.0 / SPIKE_CLOCK,
        electrode_table=nwbfile.electrodes,
    )
    nwbfile.units.add_column(
        "heldout", "True for units held out from the model inputs (to be predicted)."
    )
    for i in range(truth.n_units):
        nwbfile.add_unit(
            id=int(truth.unit_ids[i]),
            spike_times=truth.spike_times[i],
            obs_intervals=truth.obs_intervals[i],
            electrodes=[i],
            electrode_group=groups[str(truth.electrode_group_of_unit[i])],
            heldout=bool(truth.heldout[i]),
        )

    # Behaviour, directly in the module as in MC_Maze.
    behavior = nwbfile.create_processing_module(
        "behavior", "Simulated hand kinematics sampled at 1 kHz."
    )
    kinematics = {
        "hand_pos": (
            SpatialSeries,
            "Hand position, the cumulative integral of hand_vel.",
            "millimeters",
            {"reference_frame": "Origin at the hand position at the session start; x right, y up."},
        ),
        "hand_vel": (
            TimeSeries,
            "Hand velocity (x, y), a linear readout of latent group 0.",
            "millimeters/second",
            {},
        ),
    }
    for name, (series, description, unit, extra) in kinematics.items():
        data = truth.behavior[name][1]
        behavior.add(
            series(
                name=name,
                description=description,
                data=data,
                unit=unit,
                rate=SAMPLING_RATE,
                starting_time=0.0,
                **extra,
            )
        )
    return nwbfile


def _array_positions(rng: np.random.Generator, electrode_groups: np.ndarray) -> np.ndarray:
    """Distinct (x, y) positions (um) on a square grid (400 um pitch) per array, shape (N, 2)."""
    positions = np.zeros((len(electrode_groups), 2))
    for name in _AREAS:
        rows = np.flatnonzero(electrode_groups == name)
        side = max(10, math.ceil(math.sqrt(len(rows))))
        cells = rng.choice(side * side, size=len(rows), replace=False)
        positions[rows, 0] = (cells % side) * _PITCH_UM
        positions[rows, 1] = (cells // side) * _PITCH_UM
    return positions
