"""Synthetic one-photon voltage-imaging session with a FacRNN ground truth.

A simulated mouse expresses a voltage indicator in a field of somata imaged with an sCMOS
camera at ``rate`` frames per second. The subthreshold voltage of each accepted ROI is driven
by ``G`` independent groups of standardized 3-D chaotic latents (each ROI loads on one group);
spikes fire while the voltage is above a threshold. ``n_rejected`` ROIs are background blobs
with no latent signal (``accepted=False``). Everything is deterministic from ``seed``.

Signal chain, for ROI ``i`` and frame ``t`` (time ``t / rate`` s)
-----------------------------------------------------------------
* voltage ``v = A z + a + 0.1 eps`` (dimensionless, ``A z`` has a std of about 1); spikes at
  the frames where the noise-free voltage is above ``mean + spike_threshold * std``: the first
  frame of each supra-threshold excursion and then every 20 ms while it lasts;
* true dF/F ``dff_true = gain_i v + spike_amplitude * sum_spikes w(t - t_spike)`` with
  ``gain_i ~ subthreshold_amplitude * U(0.8, 1.2)`` and ``w`` a 2 ms exponential decay;
* raw fluorescence ``F = F0_i (1 + dff_true) exp(-t / tau_i) + shot noise`` with
  ``tau_i ~ bleach_tau * U(0.85, 1.15)`` and Gaussian shot noise of variance
  ``shot_noise^2 * F0_i * F_clean`` (relative std ``shot_noise`` before bleaching);
* stored dF/F: what a standard pipeline computes from ``F`` -- an exponential baseline
  ``exp(c0 + c1 t)`` fit to ``log F`` by least squares per ROI, then ``F / baseline - 1``
  (bleach-corrected, noisy, offset so that each trace has about zero mean);
* movie ``= 100 + background * exp(-t / (1.2 bleach_tau)) + sum_i mask_i F_i + camera noise``,
  rounded and clipped to uint16 (camera counts).

File layout
-----------
* ``/acquisition/OnePhotonSeries``: the movie, (n_frames, H, W) uint16; chunks of
  (<=50, H, W) frames, gzip level 4 with shuffle for HDF5 or Blosc-zstd for Zarr.
* ``/general/optophysiology/ImagingPlane`` (OpticalChannel ``"Green"``, device
  ``"sCMOS camera"``, indicator ``"Voltron2-JF525"``).
* ``/processing/ophys``: ``ImageSegmentation/PlaneSegmentation`` (image masks, boolean
  ``accepted`` column), ``summary_images`` (GrayscaleImages ``mean`` and ``max`` of the
  movie), ``Fluorescence/RoiResponseSeries`` (raw F) and ``DfOverF/RoiResponseSeries``
  (dF/F), both over all ROIs with ``rate`` and ``starting_time``.

The default session (128 x 128 pixels, 2000 frames) holds 65.5 MB of raw movie: 39 MB on disk
as HDF5 (written in ~2 s) and 33 MB as Zarr (~1 s); the noisy camera frames compress little.

This module holds the parameters, the ground truth and the signal chain; the field of view
(ROI shapes, background, rendered movie) is :mod:`._imaging_fov` and the file layout
:mod:`._imaging_nwb`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..errors import OptionError
from . import _imaging_fov, _session
from ._checks import check_float, check_group_shape, check_int
from ._imaging_nwb import Backend, build_nwbfile
from ._session import SessionTruth
from .dynamics import _fit_recurrence

# Latent time scale at 500 Hz: each system is sampled at its default interval, one loop of the
# attractor every ~50-110 frames (~100-220 ms); at other rates the interval scales so the time
# scale in seconds is the same.
_REFERENCE_RATE = 500.0
# Norm range of each accepted ROI's loading vector; std of the voltage noise; std of the bias.
_LOADING_GAIN = (0.8, 1.2)
_VOLTAGE_NOISE = 0.1
_BIAS_STD = 0.1
# Spikes: re-fire period while above threshold (s) and decay of the spike waveform (s).
_SPIKE_PERIOD = 0.02
_SPIKE_DECAY = 0.002
# Resting fluorescence (camera counts per pixel) of accepted and of rejected ROIs.
_F0_ACCEPTED = (600.0, 1500.0)
_F0_REJECTED = (300.0, 600.0)
# dF/F std of the slow fluctuation of rejected ROIs (neuropil-like, no latent signal).
_REJECTED_DFF_STD = 0.005


@dataclass(eq=False)
class ImagingTruth(SessionTruth):
    """Ground truth of a synthetic voltage-imaging session.

    ``T`` is the number of frames, ``R`` the number of ROIs (accepted and rejected), ``(H, W)``
    the frame shape and ``K = n_groups * group_rank`` the number of latents. ``path``,
    ``seed``, ``n_groups``, ``group_rank`` and ``systems`` come first, as in every session
    (:class:`~nwb_facrnn.synthetic._session.SessionTruth`).

    Attributes
    ----------
    roi_ids : numpy.ndarray, shape (R,), int
        Ids of the PlaneSegmentation rows (``0 .. R-1``).
    roi_groups : numpy.ndarray, shape (R,), int
        Latent group of each ROI, balanced over the accepted ROIs; -1 for rejected ROIs.
    accepted : numpy.ndarray, shape (R,), bool
        The ``accepted`` column.
    image_masks : numpy.ndarray, shape (R, H, W), float32
        Filled ellipses (1 inside, 0 outside), non-overlapping, inside the frame.
    roi_centers : numpy.ndarray, shape (R, 2), float64
        Ellipse centres (row, column) in pixels.
    roi_axes : numpy.ndarray, shape (R, 2), float64
        Semi-major and semi-minor axes in pixels (mask area ~ pi * product).
    roi_angles : numpy.ndarray, shape (R,), float64
        Orientation of the major axis (radians, from the row axis towards the column axis).
    A : numpy.ndarray, shape (R, K), float64
        Block-sparse loadings of the voltage; zero rows for rejected ROIs.
    a : numpy.ndarray, shape (R,), float64
        Voltage bias (0 for rejected ROIs).
    B : numpy.ndarray, shape (K, R), float64
        Least-squares input loadings of ``z_t ~ B tanh(A z_{t-1} + a) + b`` on the frame grid
        (zero columns for rejected ROIs).
    b : numpy.ndarray, shape (K,), float64
        Latent bias of that recurrence.
    z : numpy.ndarray, shape (T, K), float32
        Latents per frame; each group is a standardized chaotic trajectory.
    voltage : numpy.ndarray, shape (T, R), float32
        Subthreshold voltage ``A z + a + noise`` (dimensionless); zeros for rejected ROIs.
    spike_thresholds : numpy.ndarray, shape (R,), float64
        Threshold of the noise-free voltage (``inf`` for rejected ROIs).
    spikes : numpy.ndarray, shape (T, R), bool
        Frames with a spike.
    dff_gain : numpy.ndarray, shape (R,), float64
        dF/F per unit of voltage (0 for rejected ROIs).
    dff_true : numpy.ndarray, shape (T, R), float64
        Noise-free dF/F relative to the resting fluorescence ``F0``.
    F0 : numpy.ndarray, shape (R,), float64
        Resting fluorescence before bleaching (camera counts per pixel).
    bleach_taus : numpy.ndarray, shape (R,), float64
        Photobleaching time constant of each ROI (s).
    fluorescence : numpy.ndarray, shape (T, R), float32
        Raw fluorescence exactly as written (``Fluorescence/RoiResponseSeries``).
    baseline : numpy.ndarray, shape (T, R), float64
        The exponential baseline the dF/F pipeline fit to ``fluorescence``.
    dff : numpy.ndarray, shape (T, R), float32
        dF/F exactly as written (``DfOverF/RoiResponseSeries``): ``fluorescence / baseline - 1``.
    background : numpy.ndarray, shape (H, W), float32
        Background fluorescence at time 0 (counts), excluding the camera offset.
    background_bleach : numpy.ndarray, shape (T,), float64
        Bleaching factor of the background per frame.
    camera_offset : float
        Constant camera offset (counts). Without camera noise and rounding the movie would be
        ``camera_offset + background * background_bleach[t] + sum_i image_masks[i] * F[t, i]``.
    camera_noise : float
        Std of the per-pixel Gaussian camera noise (counts).
    rate : float
        Frame rate (Hz).
    starting_time : float
        Time of the first frame (s).
    timestamps : numpy.ndarray, shape (T,), float64
        ``starting_time + arange(T) / rate``.
    frame_shape : tuple of int
        ``(H, W)``.
    """

    roi_ids: np.ndarray
    roi_groups: np.ndarray
    accepted: np.ndarray
    image_masks: np.ndarray
    roi_centers: np.ndarray
    roi_axes: np.ndarray
    roi_angles: np.ndarray
    A: np.ndarray
    a: np.ndarray
    B: np.ndarray
    b: np.ndarray
    z: np.ndarray
    voltage: np.ndarray
    spike_thresholds: np.ndarray
    spikes: np.ndarray
    dff_gain: np.ndarray
    dff_true: np.ndarray
    F0: np.ndarray
    bleach_taus: np.ndarray
    fluorescence: np.ndarray
    baseline: np.ndarray
    dff: np.ndarray
    background: np.ndarray
    background_bleach: np.ndarray
    camera_offset: float
    camera_noise: float
    rate: float
    starting_time: float
    timestamps: np.ndarray
    frame_shape: tuple[int, int]

    @property
    def n_rois(self) -> int:
        """Number of ROIs ``R`` (accepted and rejected)."""
        return len(self.roi_ids)

    @property
    def n_frames(self) -> int:
        """Number of frames ``T``."""
        return len(self.timestamps)


# --------------------------------------------------------------------------- public API


def imaging_nwbfile(
    seed: int = 0,
    *,
    n_groups: int = 2,
    group_rank: int = 3,
    n_rois: int = 48,
    frame_shape: Sequence[int] = (128, 128),
    rate: float = 500.0,
    duration: float = 4.0,
    n_rejected: int = 2,
    bleach_tau: float = 8.0,
    spike_amplitude: float = 0.08,
    subthreshold_amplitude: float = 0.02,
    spike_threshold: float = 1.5,
    shot_noise: float = 0.005,
    camera_noise: float = 10.0,
    backend: Backend | None = "hdf5",
) -> tuple[Any, ImagingTruth]:
    """Build a synthetic voltage-imaging session in memory.

    See the module docstring for the signal chain and the file layout.

    Parameters
    ----------
    seed : int, default 0
        Seed of every random draw (non-negative). Latents, ROIs, traces and the movie use
        independent streams.
    n_groups : int, default 2
        Number of independent latent groups ``G``.
    group_rank : int, default 3
        Rank ``H`` of each group; must be 3 (the chaotic systems are 3-D).
    n_rois : int, default 48
        Number of ROIs ``R``, accepted and rejected (the frame must fit them without
        overlap: about 40 per 100 x 100 pixels at most).
    frame_shape : (int, int), default (128, 128)
        Frame height and width in pixels (each at least 32).
    rate : float, default 500.0
        Frame rate in Hz (at least 100).
    duration : float, default 4.0
        Length of the movie in seconds; ``round(duration * rate)`` frames (at least 100).
    n_rejected : int, default 2
        ROIs with ``accepted=False``: background only, no latent group. At most
        ``n_rois - n_groups``.
    bleach_tau : float, default 8.0
        Photobleaching time constant in seconds (> 0).
    spike_amplitude : float, default 0.08
        Peak dF/F of a spike (>= 0).
    subthreshold_amplitude : float, default 0.02
        dF/F per unit of voltage (the latent-driven voltage has a std of about 1) (> 0).
    spike_threshold : float, default 1.5
        Spike threshold in standard deviations of the noise-free voltage above its mean (> 0).
    shot_noise : float, default 0.005
        Relative std of the fluorescence shot noise at the resting brightness (>= 0).
    camera_noise : float, default 10.0
        Std of the per-pixel camera read noise in counts (>= 0).
    backend : {"hdf5", "zarr", None}, default "hdf5"
        Storage backend the file will be written with; selects the movie's chunking and
        compression wrapper (``H5DataIO`` gzip or ``ZarrDataIO`` Blosc-zstd). None stores a
        plain array. Any choice can be written by either backend (hdmf-zarr ignores the
        ``H5DataIO`` settings and uses its default chunks and Blosc-lz4; HDF5 stores a plain
        array uncompressed); :func:`make_imaging_session` picks the one matching its path.

    Returns
    -------
    nwbfile : pynwb.NWBFile
        The session, not yet written (an NWBFile can be written once).
    truth : ImagingTruth
        The ground truth, with ``path=None``.

    Raises
    ------
    OptionError
        If a parameter is out of range, or the ROIs do not fit in the frame.
    """
    seed, p = _session.arguments(locals(), exclude=["backend"])
    if backend not in ("hdf5", "zarr", None):
        raise OptionError(f"backend must be 'hdf5', 'zarr' or None, got {backend!r}")
    p.frame_shape = _check_frame_shape(frame_shape)
    _validate(p)
    truth, movie, mean_image, max_image = _simulate(seed, p)
    nwbfile = build_nwbfile(truth, p, movie, mean_image, max_image, backend)
    return nwbfile, truth


def make_imaging_session(
    path: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    **params: Any,
) -> ImagingTruth:
    """Build a synthetic voltage-imaging session and write it to ``path``.

    Parameters
    ----------
    path : path
        Destination: a ``.zarr`` suffix (e.g. ``session.nwb.zarr``) writes a Zarr store,
        anything else HDF5. Written atomically; the movie is compressed either way.
    seed : int, default 0
        Seed of every random draw.
    overwrite : bool, default False
        Replace an existing file; otherwise an existing ``path`` raises ``FileExistsError``.
    **params
        Keyword arguments of :func:`imaging_nwbfile` except ``backend`` (taken from ``path``).

    Returns
    -------
    ImagingTruth
        The ground truth, with ``path`` set to ``Path(path)``.
    """
    from ..io.backend import backend_for_new

    if "backend" in params:
        raise OptionError("backend is decided by the path's suffix; do not pass it")
    session = imaging_nwbfile(seed, backend=backend_for_new(path), **params)
    return _session.write(path, overwrite, session)


# --------------------------------------------------------------------------- validation


def _check_frame_shape(frame_shape: object) -> tuple[int, int]:
    ok = isinstance(frame_shape, Sequence | np.ndarray) and len(frame_shape) == 2
    if ok:
        ok = all(
            isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 32
            for n in frame_shape
        )
    if not ok:
        raise OptionError(
            f"frame_shape must be two ints >= 32 (height, width), got {frame_shape!r}"
        )
    return int(frame_shape[0]), int(frame_shape[1])


def _validate(p: Any) -> None:
    check_group_shape(p.n_groups, p.group_rank)
    check_int("n_rois", p.n_rois, 1)
    check_int("n_rejected", p.n_rejected, 0)
    if p.n_rois - p.n_rejected < p.n_groups:
        raise OptionError(
            f"n_rois - n_rejected must be at least n_groups={p.n_groups} (every group needs an "
            f"accepted ROI), got n_rois={p.n_rois!r}, n_rejected={p.n_rejected!r}"
        )
    check_float("rate", p.rate, positive=True)
    if p.rate < 100:
        raise OptionError(f"rate must be at least 100 Hz for voltage imaging, got {p.rate!r}")
    check_float("duration", p.duration, positive=True)
    if round(p.duration * p.rate) < 100:
        raise OptionError(
            f"duration * rate must give at least 100 frames, got {p.duration!r} s at {p.rate!r} Hz"
        )
    check_float("bleach_tau", p.bleach_tau, positive=True)
    check_float("spike_amplitude", p.spike_amplitude)
    check_float("subthreshold_amplitude", p.subthreshold_amplitude, positive=True)
    check_float("spike_threshold", p.spike_threshold, positive=True)
    check_float("shot_noise", p.shot_noise)
    check_float("camera_noise", p.camera_noise)
    if (p.spike_amplitude + 3 * p.subthreshold_amplitude) >= 0.5:
        raise OptionError(
            "spike_amplitude + 3 * subthreshold_amplitude must stay below 0.5 (dF/F of a "
            f"voltage indicator is a few %), got {p.spike_amplitude!r}, "
            f"{p.subthreshold_amplitude!r}"
        )


# --------------------------------------------------------------------------- simulation


def _simulate(seed: int, p: Any) -> tuple[ImagingTruth, np.ndarray, np.ndarray, np.ndarray]:
    rng_latent, rng_rois, rng_traces, rng_movie = _session.streams(seed, 4)
    rate, n_rois = p.rate, p.n_rois
    n_frames = round(p.duration * rate)
    timestamps = np.arange(n_frames) / rate
    systems, z = _session.latents(rng_latent, p.n_groups, n_frames, _REFERENCE_RATE / rate)

    # ROIs: shapes, which are rejected, groups and loadings.
    masks, centers, axes, angles = _imaging_fov.place_rois(rng_rois, n_rois, p.frame_shape)
    accepted = np.ones(n_rois, dtype=bool)
    accepted[rng_rois.permutation(n_rois)[: p.n_rejected]] = False
    roi_groups = np.full(n_rois, -1)
    roi_groups[accepted] = _session.balanced_groups(rng_rois, int(accepted.sum()), p.n_groups)
    A = _session.block_loadings(rng_rois, roi_groups, p.n_groups, p.group_rank, _LOADING_GAIN)
    a = np.where(accepted, _BIAS_STD * rng_rois.standard_normal(n_rois), 0.0)
    gain = np.where(accepted, p.subthreshold_amplitude * rng_rois.uniform(0.8, 1.2, n_rois), 0.0)
    F0 = np.where(
        accepted, rng_rois.uniform(*_F0_ACCEPTED, n_rois), rng_rois.uniform(*_F0_REJECTED, n_rois)
    )
    taus = p.bleach_tau * rng_rois.uniform(0.85, 1.15, n_rois)

    # Voltage, spikes and true dF/F.
    clean = z @ A.T + a
    B, b = _fit_recurrence(z, clean)
    voltage_noise = _VOLTAGE_NOISE * rng_traces.standard_normal(clean.shape)
    voltage = np.where(accepted, clean + voltage_noise, 0.0)
    thresholds = np.where(
        accepted, clean.mean(axis=0) + p.spike_threshold * clean.std(axis=0), np.inf
    )
    spikes = _threshold_spikes(clean, thresholds, max(3, round(_SPIKE_PERIOD * rate)))
    dff_true = gain * voltage + p.spike_amplitude * _spike_transients(spikes, rate)
    slow = gaussian_filter1d(rng_traces.standard_normal((n_frames, n_rois)), 0.05 * rate, axis=0)
    slow /= slow.std(axis=0)
    dff_true[:, ~accepted] = _REJECTED_DFF_STD * slow[:, ~accepted]

    # Raw fluorescence and the pipeline's dF/F.
    bleach = np.exp(-timestamps[:, None] / taus)
    f_clean = F0 * (1.0 + dff_true) * bleach
    noise = p.shot_noise * np.sqrt(F0 * f_clean) * rng_traces.standard_normal(f_clean.shape)
    fluorescence = (f_clean + noise).astype(np.float32)
    baseline = _exponential_baseline(fluorescence, timestamps)
    dff = (fluorescence / baseline - 1.0).astype(np.float32)

    # Movie.
    background = _imaging_fov.background_image(rng_movie, p.frame_shape)
    background_bleach = np.exp(-timestamps / (1.2 * p.bleach_tau))
    movie, mean_image, max_image = _imaging_fov.render_movie(
        rng_movie, masks, fluorescence, background, background_bleach, p.camera_noise
    )

    truth = ImagingTruth(
        **_session.truth_fields(seed, p, systems, z, (A, a, B, b)),
        roi_ids=np.arange(n_rois),
        roi_groups=roi_groups,
        accepted=accepted,
        image_masks=masks,
        roi_centers=centers,
        roi_axes=axes,
        roi_angles=angles,
        voltage=voltage.astype(np.float32),
        spike_thresholds=thresholds,
        spikes=spikes,
        dff_gain=gain,
        dff_true=dff_true,
        F0=F0,
        bleach_taus=taus,
        fluorescence=fluorescence,
        baseline=baseline,
        dff=dff,
        background=background.astype(np.float32),
        background_bleach=background_bleach,
        camera_offset=_imaging_fov.CAMERA_OFFSET,
        camera_noise=float(p.camera_noise),
        rate=float(rate),
        starting_time=0.0,
        timestamps=timestamps,
        frame_shape=p.frame_shape,
    )
    return truth, movie, mean_image, max_image


def _threshold_spikes(clean: np.ndarray, thresholds: np.ndarray, period: int) -> np.ndarray:
    """Spikes (T, R) bool at the first supra-threshold frame of each excursion, then every
    ``period`` frames while the voltage stays above threshold."""
    above = clean >= thresholds
    n_frames = above.shape[0]
    index = np.arange(n_frames)[:, None]
    onset = above & ~np.vstack([np.zeros((1, above.shape[1]), dtype=bool), above[:-1]])
    # Frame index of the latest onset at or before each frame.
    last_onset = np.maximum.accumulate(np.where(onset, index, -1), axis=0)
    return above & ((index - last_onset) % period == 0)


def _spike_transients(spikes: np.ndarray, rate: float) -> np.ndarray:
    """Sum of unit-peak exponential transients (decay ``_SPIKE_DECAY`` s) at the spikes."""
    n_taps = max(1, math.ceil(5 * _SPIKE_DECAY * rate))
    kernel = np.exp(-np.arange(n_taps) / (_SPIKE_DECAY * rate))
    out = np.zeros(spikes.shape)
    for k, w in enumerate(kernel):
        out[k:] += w * spikes[: spikes.shape[0] - k]
    return out


def _exponential_baseline(fluorescence: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Per-ROI least-squares fit of ``log F ~ c0 + c1 t``; returns ``exp(c0 + c1 t)`` (T, R)."""
    design = np.column_stack([np.ones_like(times), times])
    log_f = np.log(np.clip(fluorescence.astype(np.float64), 1e-3, None))
    coef, *_ = np.linalg.lstsq(design, log_f, rcond=None)
    return np.exp(design @ coef)
