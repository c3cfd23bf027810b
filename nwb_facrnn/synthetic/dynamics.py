"""Ground-truth generators for FacRNN's synthetic experiment.

FacRNN (Li et al., arXiv 2511.13899) is the factorized low-rank RNN

    x_t = A z_t + a + u_t + noise,    z_t = B tanh(x_{t-1}) + b,

with ``K = G * H`` latent dimensions split into ``G`` groups of rank ``H`` (latent dimensions
``[g*H, (g+1)*H)`` form group ``g``) and rank-``K`` connectivity ``W = A B``. The paper's
synthetic experiment drives each group with an independent 3-D chaotic system, so ``H = 3``.

This module builds such ground truths with numpy only, fully reproducibly from an integer seed:

* :func:`chaotic_trajectory` integrates one standardized chaotic trajectory,
* :func:`make_lowrank_rnn_dataset` builds Gaussian activity (the paper's configuration),
* :func:`make_poisson_dataset` builds Poisson spike counts from the same kind of latents.

Time is measured in samples (bins) throughout; chaotic systems are integrated in their own
dimensionless ODE time and sampled every ``dt`` ODE time units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import brentq

from ..errors import OptionError
from ._checks import check_float, check_group_shape, check_int

_Vec3 = tuple[float, float, float]

# Width (in bins) of the Gaussian kernel that smooths the external input u.
_INPUT_SMOOTHING_BINS = 5.0
# Scale of the output bias a of the Gaussian dataset.
_OUTPUT_BIAS_STD = 0.1


# --------------------------------------------------------------------------- chaotic systems


def _lorenz(x: float, y: float, z: float) -> _Vec3:
    return 10.0 * (y - x), x * (28.0 - z) - y, x * y - (8.0 / 3.0) * z


def _thomas(x: float, y: float, z: float) -> _Vec3:
    # b = 0.18 gives one cyclically symmetric chaotic attractor (largest Lyapunov exponent
    # ~0.036); with the often quoted b = 0.208186 trajectories settle on one of two coexisting,
    # far less chaotic attractors (exponent ~0.01).
    b = 0.18
    return math.sin(y) - b * x, math.sin(z) - b * y, math.sin(x) - b * z


def _rossler(x: float, y: float, z: float) -> _Vec3:
    return -y - z, x + 0.2 * y, 0.2 + z * (x - 5.7)


def _chen(x: float, y: float, z: float) -> _Vec3:
    return 35.0 * (y - x), -7.0 * x - x * z + 28.0 * y, x * y - 3.0 * z


def _halvorsen(x: float, y: float, z: float) -> _Vec3:
    a = 1.4
    return (
        -a * x - 4.0 * y - 4.0 * z - y * y,
        -a * y - 4.0 * z - 4.0 * x - z * z,
        -a * z - 4.0 * x - 4.0 * y - x * x,
    )


class _System(NamedTuple):
    rhs: Callable[[float, float, float], _Vec3]
    dt: float  # default sampling interval (ODE time units); 2000 samples span ~30-40 loops
    max_step: float  # largest internal RK4 step (ODE time units)
    center: _Vec3  # centre of the random initial conditions
    spread: float  # standard deviation of the random initial conditions


_SYSTEMS: dict[str, _System] = {
    "lorenz": _System(_lorenz, 0.015, 0.0025, (0.0, 1.0, 25.0), 1.0),
    "thomas": _System(_thomas, 0.2, 0.05, (1.0, 0.0, 0.0), 1.0),
    "rossler": _System(_rossler, 0.1, 0.01, (1.0, 1.0, 0.0), 1.0),
    "chen": _System(_chen, 0.005, 0.001, (-5.0, 0.0, 25.0), 1.0),
    "halvorsen": _System(_halvorsen, 0.03, 0.004, (-5.0, 0.0, 0.0), 1.0),
}

CHAOTIC_SYSTEMS: tuple[str, ...] = tuple(_SYSTEMS)
"""Names accepted by :func:`chaotic_trajectory` and the ``systems`` arguments."""


def _get_system(system: str) -> _System:
    if system not in _SYSTEMS:
        raise OptionError(f"unknown chaotic system {system!r}; known systems: {CHAOTIC_SYSTEMS}")
    return _SYSTEMS[system]


def _simulate(
    system: str, initial_state: ArrayLike, n_steps: int, dt: float | None = None
) -> np.ndarray:
    """Integrate a chaotic system with classical RK4, without any post-processing.

    Parameters
    ----------
    system : str
        One of :data:`CHAOTIC_SYSTEMS`.
    initial_state : array_like, shape (3,)
        State at time 0, in the system's own units.
    n_steps : int
        Number of samples to return.
    dt : float, optional
        Sampling interval in ODE time units; the system's default when None. Each interval is
        split into equal RK4 sub-steps no longer than the system's ``max_step``.

    Returns
    -------
    numpy.ndarray, shape (n_steps, 3), float64
        States at times ``dt, 2 dt, ..., n_steps dt`` (the initial state is not included).
    """
    spec = _get_system(system)
    dt = spec.dt if dt is None else dt
    n_sub = max(1, math.ceil(dt / spec.max_step - 1e-9))
    h = dt / n_sub
    f = spec.rhs
    x, y, z = (float(v) for v in np.asarray(initial_state, dtype=float).reshape(3))
    out = np.empty((n_steps, 3))
    for i in range(n_steps):
        for _ in range(n_sub):
            k1x, k1y, k1z = f(x, y, z)
            k2x, k2y, k2z = f(x + 0.5 * h * k1x, y + 0.5 * h * k1y, z + 0.5 * h * k1z)
            k3x, k3y, k3z = f(x + 0.5 * h * k2x, y + 0.5 * h * k2y, z + 0.5 * h * k2z)
            k4x, k4y, k4z = f(x + h * k3x, y + h * k3y, z + h * k3z)
            x += h / 6.0 * (k1x + 2.0 * k2x + 2.0 * k3x + k4x)
            y += h / 6.0 * (k1y + 2.0 * k2y + 2.0 * k3y + k4y)
            z += h / 6.0 * (k1z + 2.0 * k2z + 2.0 * k3z + k4z)
        out[i] = x, y, z
    return out


def chaotic_trajectory(
    system: str,
    n_steps: int,
    *,
    seed: int = 0,
    dt: float | None = None,
    burn_in: int = 1000,
) -> np.ndarray:
    """Standardized trajectory of one 3-D chaotic system.

    The system is integrated with classical RK4 (internal sub-steps finer than the sampling
    interval) from a random initial condition near the attractor drawn from ``seed``; the first
    ``burn_in`` samples are discarded and each dimension is then standardized.

    Parameters
    ----------
    system : str
        One of :data:`CHAOTIC_SYSTEMS`: ``"lorenz"`` (sigma=10, rho=28, beta=8/3), ``"thomas"``
        (b=0.18), ``"rossler"`` (a=b=0.2, c=5.7), ``"chen"`` (a=35, b=3, c=28) or
        ``"halvorsen"`` (a=1.4).
    n_steps : int
        Number of samples returned (at least 2).
    seed : int, default 0
        Seed of the random initial condition.
    dt : float, optional
        Sampling interval in the system's ODE time units. By default each system uses its own
        interval (lorenz 0.015, thomas 0.2, rossler 0.1, chen 0.005, halvorsen 0.03) so that
        2000 samples span roughly 30-40 loops of the attractor, at distinct loop frequencies.
    burn_in : int, default 1000
        Number of initial samples (each ``dt`` long) discarded to reach the attractor.

    Returns
    -------
    numpy.ndarray, shape (n_steps, 3), float64
        The trajectory, dimensionless, with zero mean and unit variance per dimension.

    Raises
    ------
    OptionError
        If ``system`` is unknown (the message lists the known systems) or an argument is out of
        range.
    """
    spec = _get_system(system)
    check_int("n_steps", n_steps, 2)
    check_int("burn_in", burn_in, 0)
    if dt is not None:
        check_float("dt", dt, positive=True)
    rng = np.random.default_rng(seed)
    initial_state = np.asarray(spec.center) + spec.spread * rng.standard_normal(3)
    trajectory = _simulate(system, initial_state, burn_in + n_steps, dt)[burn_in:]
    return (trajectory - trajectory.mean(axis=0)) / trajectory.std(axis=0)


# --------------------------------------------------------------------------- dataset container


@dataclass(frozen=True, eq=False)
class SyntheticDataset:
    """A FacRNN ground truth and the activity it generates.

    ``T`` is the number of time bins, ``N`` the number of neurons and ``K = n_groups *
    group_rank`` the number of latent dimensions; latent group ``g`` is columns
    ``[g * group_rank, (g + 1) * group_rank)`` of ``z`` (and of ``A``, rows of ``B``).

    Attributes
    ----------
    x : numpy.ndarray, shape (T, N), float32
        Observed activity: ``A z + a + u + noise`` (arbitrary units) for Gaussian data, spike
        counts per bin for Poisson data.
    z : numpy.ndarray, shape (T, K), float32
        True latents; each group is an independent standardized chaotic trajectory.
    u : numpy.ndarray, shape (T, N), float32
        External input (zeros for Poisson data).
    A : numpy.ndarray, shape (N, K), float64
        True output loadings.
    B : numpy.ndarray, shape (K, N), float64
        True input loadings (least-squares fit of the recurrence, see the builders).
    a : numpy.ndarray, shape (N,), float64
        Output bias.
    b : numpy.ndarray, shape (K,), float64
        Latent bias.
    n_groups : int
        Number of latent groups ``G``.
    group_rank : int
        Rank ``H`` of each group.
    systems : tuple of str
        Chaotic system driving each group, length ``G``.
    observation : str
        ``"gaussian"`` or ``"poisson"``.
    noise_std : float
        Standard deviation of the Gaussian observation noise (0.0 for Poisson data).
    rates : numpy.ndarray or None, shape (T, N), float32
        Poisson rates in spikes per bin; None for Gaussian data.
    bin_size : float or None
        Seconds per bin for Poisson data; None for Gaussian data.
    """

    x: np.ndarray
    z: np.ndarray
    u: np.ndarray
    A: np.ndarray
    B: np.ndarray
    a: np.ndarray
    b: np.ndarray
    n_groups: int
    group_rank: int
    systems: tuple[str, ...]
    observation: str
    noise_std: float
    rates: np.ndarray | None = None
    bin_size: float | None = None

    def __post_init__(self) -> None:
        if np.ndim(self.x) != 2:
            raise OptionError(f"x must be 2-D (T, N), got shape {np.shape(self.x)}")
        t, n, k = self.x.shape[0], self.x.shape[1], self.n_groups * self.group_rank
        expected = {
            "x": (t, n),
            "z": (t, k),
            "u": (t, n),
            "A": (n, k),
            "B": (k, n),
            "a": (n,),
            "b": (k,),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise OptionError(
                    f"{name} must have shape {shape}, got {getattr(self, name).shape}"
                )
        if self.observation not in ("gaussian", "poisson"):
            raise OptionError(
                f"observation must be 'gaussian' or 'poisson', got {self.observation!r}"
            )
        if len(self.systems) != self.n_groups:
            raise OptionError(
                f"systems must have n_groups={self.n_groups} entries, got {self.systems}"
            )

    @property
    def n_neurons(self) -> int:
        """Number of neurons ``N``."""
        return self.x.shape[1]

    @property
    def n_latents(self) -> int:
        """Number of latent dimensions ``K = n_groups * group_rank``."""
        return self.z.shape[1]

    @property
    def n_steps(self) -> int:
        """Number of time bins ``T``."""
        return self.x.shape[0]

    @property
    def connectivity(self) -> np.ndarray:
        """True rank-``K`` connectivity ``W = A @ B``, shape (N, N)."""
        return self.A @ self.B

    def group_connectivity(self, g: int) -> np.ndarray:
        """Connectivity of latent group ``g``, shape (N, N); the groups' terms sum to ``W``."""
        check_int("g", g, 0)
        if g >= self.n_groups:
            raise OptionError(f"g must be an int in [0, {self.n_groups}), got {g!r}")
        cols = slice(g * self.group_rank, (g + 1) * self.group_rank)
        return self.A[:, cols] @ self.B[cols, :]


# --------------------------------------------------------------------------- dataset builders


def make_lowrank_rnn_dataset(
    n_groups: int = 2,
    group_rank: int = 3,
    n_neurons: int = 20,
    n_steps: int = 2000,
    noise_std: float = 0.1,
    input_std: float = 0.05,
    systems: Sequence[str] | None = None,
    seed: int = 0,
) -> SyntheticDataset:
    """Gaussian FacRNN ground truth; the defaults are the paper's synthetic configuration.

    Each latent group is an independent standardized chaotic trajectory (its own sub-seed, so
    repeated systems are still independent). ``A`` has i.i.d. ``N(0, 1/K)`` entries, so the
    clean activity has roughly unit variance and tanh works in its informative range; ``a`` has
    i.i.d. ``N(0, 0.1^2)`` entries. The external input ``u`` is white noise smoothed over time
    by a Gaussian kernel (sigma = 5 bins) and scaled to mean 0 and std ``input_std`` per neuron.
    With the clean activity ``r_t = A z_t + a + u_t``, the observation is
    ``x_t = r_t + noise_std * eps_t`` with ``eps_t ~ N(0, I)``.

    The chaotic latents are not generated by the RNN, so the true ``B`` and ``b`` are defined
    as the ordinary least-squares solution of the model's own recurrence applied to the
    noise-free activity, ``z_t ~ B tanh(r_{t-1}) + b`` for ``t = 1, ..., T-1``. With the
    defaults this recurrence explains about 98% of the latent variance.

    The groups are independent in distribution, but over a finite window their sample
    cross-correlations are not zero: for ``T = 2000`` they are typically 0.1-0.3, shrinking
    like ``1 / sqrt(T)``. A phase-coherent system used by two groups (e.g. ``"rossler"`` twice)
    can be strongly correlated over a short window.

    Parameters
    ----------
    n_groups : int, default 2
        Number of latent groups ``G`` (at least 1).
    group_rank : int, default 3
        Rank ``H`` of each group; must be 3 since each chaotic system is 3-D.
    n_neurons : int, default 20
        Number of neurons ``N`` (at least 1).
    n_steps : int, default 2000
        Number of time bins ``T`` (at least 3).
    noise_std : float, default 0.1
        Standard deviation of the observation noise (at least 0).
    input_std : float, default 0.05
        Standard deviation of the external input per neuron (at least 0).
    systems : sequence of str, optional
        Chaotic system of each group (length ``n_groups``); by default the first ``n_groups``
        of :data:`CHAOTIC_SYSTEMS`, cycling when there are more groups than systems.
    seed : int, default 0
        Seed of every random draw.

    Returns
    -------
    SyntheticDataset
        With ``observation="gaussian"``, ``rates=None`` and ``bin_size=None``.
    """
    check_float("noise_std", noise_std)
    check_float("input_std", input_std)
    rng = np.random.default_rng(seed)
    systems, z, A = _latents_and_loadings(n_groups, group_rank, n_neurons, n_steps, systems, rng)
    a = _OUTPUT_BIAS_STD * rng.standard_normal(n_neurons)
    u = input_std * _smooth_noise(rng, n_steps, n_neurons)
    clean = z @ A.T + a + u
    x = clean + noise_std * rng.standard_normal(clean.shape)
    return _dataset(
        x, z, u, A, a, clean, n_groups, group_rank, systems, "gaussian", float(noise_std)
    )


def make_poisson_dataset(
    n_groups: int = 2,
    group_rank: int = 3,
    n_neurons: int = 100,
    n_steps: int = 2000,
    mean_rate: float = 1.0,
    bin_size: float = 0.02,
    systems: Sequence[str] | None = None,
    seed: int = 0,
) -> SyntheticDataset:
    """Poisson spike-count FacRNN ground truth.

    Latents and ``A`` are drawn exactly as in :func:`make_lowrank_rnn_dataset` (the same seed
    gives the same ``z``; ``A`` too when ``n_neurons`` matches). Each ``a_i`` is solved for so
    that neuron ``i``'s rate, averaged over time, equals ``mean_rate``. With the drive
    ``r_t = A z_t + a``, the rates are ``softplus(r_t)`` spikes per bin and ``x`` are Poisson
    counts; there is no external input (``u = 0``).

    The true ``B`` and ``b`` are the ordinary least-squares solution of
    ``z_t ~ B tanh(r_{t-1}) + b`` for ``t = 1, ..., T-1``.

    Parameters
    ----------
    n_groups, group_rank, n_neurons, n_steps, systems, seed
        As in :func:`make_lowrank_rnn_dataset` (``n_neurons`` defaults to 100 here).
    mean_rate : float, default 1.0
        Time-averaged rate of every neuron, in spikes per bin (greater than 0).
    bin_size : float, default 0.02
        Bin width in seconds (greater than 0); only recorded, since rates are per bin.

    Returns
    -------
    SyntheticDataset
        With ``observation="poisson"``, ``noise_std=0.0``, ``u`` zeros, ``x`` the counts (as
        float32) and ``rates`` the Poisson rates.
    """
    check_float("mean_rate", mean_rate, positive=True)
    check_float("bin_size", bin_size, positive=True)
    rng = np.random.default_rng(seed)
    systems, z, A = _latents_and_loadings(n_groups, group_rank, n_neurons, n_steps, systems, rng)
    a = _bias_for_mean_rate(z @ A.T, mean_rate)
    drive = z @ A.T + a
    rates = np.logaddexp(0.0, drive)
    counts = rng.poisson(rates)
    u = np.zeros(counts.shape, dtype=np.float32)
    return _dataset(
        counts,
        z,
        u,
        A,
        a,
        drive,
        n_groups,
        group_rank,
        systems,
        "poisson",
        0.0,
        rates=rates.astype(np.float32),
        bin_size=float(bin_size),
    )


# --------------------------------------------------------------------------- private helpers


def _latents_and_loadings(
    n_groups: int,
    group_rank: int,
    n_neurons: int,
    n_steps: int,
    systems: Sequence[str] | None,
    rng: np.random.Generator,
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Validate the shared arguments and draw the latents ``z`` (T, K) and loadings ``A`` (N, K).

    Returns the systems used, ``z`` and ``A``; ``A`` has i.i.d. ``N(0, 1/K)`` entries.
    """
    check_group_shape(n_groups, group_rank)
    check_int("n_neurons", n_neurons, 1)
    check_int("n_steps", n_steps, 3)
    systems = _resolve_systems(systems, n_groups)
    z = group_latents(rng, systems, n_steps)
    n_latents = n_groups * group_rank
    A = rng.standard_normal((n_neurons, n_latents)) / np.sqrt(n_latents)
    return systems, z, A


def _dataset(
    x: np.ndarray,
    z: np.ndarray,
    u: np.ndarray,
    A: np.ndarray,
    a: np.ndarray,
    activity: np.ndarray,
    n_groups: int,
    group_rank: int,
    systems: tuple[str, ...],
    observation: str,
    noise_std: float,
    **poisson: Any,
) -> SyntheticDataset:
    """The dataset (arrays as float32), with ``B, b`` fit to the noise-free ``activity``."""
    B, b = _fit_recurrence(z, activity)
    return SyntheticDataset(
        x=x.astype(np.float32),
        z=z.astype(np.float32),
        u=u.astype(np.float32),
        A=A,
        B=B,
        a=a,
        b=b,
        n_groups=n_groups,
        group_rank=group_rank,
        systems=systems,
        observation=observation,
        noise_std=noise_std,
        **poisson,
    )


def group_latents(
    rng: np.random.Generator, systems: Sequence[str], n_steps: int, time_scale: float = 1.0
) -> np.ndarray:
    """Independent standardized chaotic latents, one 3-D system per group.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of each group's sub-seed.
    systems : sequence of str, length G
        The system of each group (validated).
    n_steps : int
        Number of samples ``T``.
    time_scale : float
        Each system is sampled every ``time_scale`` times its default interval (see
        :func:`chaotic_trajectory`), where 2000 samples span about 30-40 loops of the
        attractor: ``time_scale=0.25`` gives loops of ~100-400 samples.

    Returns
    -------
    numpy.ndarray, shape (T, 3 G), float64
        Zero mean and unit variance per column.
    """
    seeds = rng.integers(0, 2**63, size=len(systems))
    burn_in = max(1000, round(1000 / time_scale))
    return np.concatenate(
        [
            chaotic_trajectory(
                s, n_steps, seed=int(sd), dt=_get_system(s).dt * time_scale, burn_in=burn_in
            )
            for s, sd in zip(systems, seeds, strict=True)
        ],
        axis=1,
    )


def _resolve_systems(systems: Sequence[str] | None, n_groups: int) -> tuple[str, ...]:
    """The system of each group: ``systems`` validated, or the default cycle."""
    if systems is None:
        return tuple(CHAOTIC_SYSTEMS[g % len(CHAOTIC_SYSTEMS)] for g in range(n_groups))
    if isinstance(systems, str):
        raise OptionError(f"systems must be a sequence of system names, not the string {systems!r}")
    systems = tuple(systems)
    if len(systems) != n_groups:
        raise OptionError(f"systems must have n_groups={n_groups} entries, got {len(systems)}")
    for system in systems:
        _get_system(system)
    return systems


def _smooth_noise(rng: np.random.Generator, n_steps: int, n_units: int) -> np.ndarray:
    """Temporally smooth Gaussian noise, shape (n_steps, n_units), mean 0 and std 1 per unit."""
    white = rng.standard_normal((n_steps, n_units))
    smooth = gaussian_filter1d(white, _INPUT_SMOOTHING_BINS, axis=0, mode="reflect")
    return (smooth - smooth.mean(axis=0)) / smooth.std(axis=0)


def _bias_for_mean_rate(drive: np.ndarray, mean_rate: float) -> np.ndarray:
    """Per-column offsets ``a`` with ``mean_t softplus(drive[t, i] + a_i) == mean_rate``.

    ``drive`` has shape (T, N); returns shape (N,). Softplus is increasing, so the root of each
    column lies between the offsets that put its maximum and its minimum at the target.
    """
    target = mean_rate + np.log(-np.expm1(-mean_rate))  # softplus^{-1}(mean_rate)
    offsets = []
    for column in drive.T:

        def excess(c: float, column: np.ndarray = column) -> float:
            return float(np.logaddexp(0.0, column + c).mean() - mean_rate)

        offsets.append(brentq(excess, target - column.max(), target - column.min(), xtol=1e-12))
    return np.array(offsets)


def _fit_recurrence(z: np.ndarray, activity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``B`` (K, N), ``b`` (K,) with ``z[t] ~ B tanh(activity[t-1]) + b``, t >= 1."""
    features = np.tanh(activity[:-1])
    design = np.hstack([features, np.ones((features.shape[0], 1))])
    coef, *_ = np.linalg.lstsq(design, z[1:], rcond=None)
    return coef[:-1].T, coef[-1]
