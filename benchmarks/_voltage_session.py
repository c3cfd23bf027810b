"""Large FacRNN ground truths for :mod:`scale`, simulated and written a stretch of time at a time.

:func:`nwb_facrnn.synthetic.make_lowrank_rnn_dataset` holds several (T, N) float64 arrays at
once (white noise, its smoothed copy, the clean activity, the observation noise, the tanh
features of the least-squares ``B``), about 40 bytes per value: 36 GB at T = 900 000 and
N = 1000.  :class:`ChunkedTruth` draws the same model a chunk of rows at a time:

* the same latents ``z`` (:func:`nwb_facrnn.synthetic.dynamics.group_latents`, T x 6, small),
  loadings ``A`` and bias ``a``, from the same seed in the same order;
* the same external input ``u``: the white noise is drawn from the generator in the same
  order, smoothed over time with the same Gaussian kernel (each chunk with 20 rows of its
  neighbours on either side, so the filter sees what it sees on the whole array) and scaled
  with the per-neuron mean and std accumulated over a first pass;
* the same observation noise: the generator's state after the last white-noise draw is kept
  and a second generator continues from it.

So ``x``, ``u`` and ``z`` equal the package's to float32 rounding (the per-neuron mean and std
are summed in another order; :func:`check_against_package` checks it on a small size).  The
least-squares ``B`` and ``b`` of the package, which need every row at once and which the
benchmark does not use, are not computed.

:func:`write_voltage_session` writes such a ground truth as a voltage-imaging NWB file
(``processing/ophys/DfOverF/dff``, dF/F-like traces ``dff_scale * x`` at 1 kHz) without ever
holding the traces in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from nwb_facrnn.synthetic import CHAOTIC_SYSTEMS
from nwb_facrnn.synthetic.dynamics import group_latents

# As in nwb_facrnn.synthetic.dynamics: the input's smoothing kernel (bins), its radius with
# scipy's default truncation (4 sigma), and the scale of the output bias a.
_INPUT_SMOOTHING_BINS = 5.0
_KERNEL_RADIUS = int(4.0 * _INPUT_SMOOTHING_BINS + 0.5)
_OUTPUT_BIAS_STD = 0.1
#: Values per chunk of the simulation (about 32 MB per float64 array).
CHUNK_VALUES = 1 << 22


@dataclass
class ChunkedTruth:
    """The Gaussian FacRNN ground truth of ``make_lowrank_rnn_dataset``, drawn by chunks.

    Build it with :meth:`simulate`; :meth:`chunks` then yields the activity.

    Attributes
    ----------
    z : numpy.ndarray, shape (T, 3 G), float64
        The true latents.
    A : numpy.ndarray, shape (N, 3 G)
    a : numpy.ndarray, shape (N,)
    systems : tuple of str
    noise_std, input_std : float
    """

    z: np.ndarray
    A: np.ndarray
    a: np.ndarray
    systems: tuple[str, ...]
    noise_std: float
    input_std: float
    _input_state: dict
    _noise_state: dict
    _u_mean: np.ndarray | None
    _u_std: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, N)``."""
        return self.z.shape[0], self.A.shape[0]

    @classmethod
    def simulate(
        cls,
        n_neurons: int,
        n_steps: int,
        *,
        n_groups: int = 2,
        noise_std: float = 0.1,
        input_std: float = 0.05,
        seed: int = 0,
    ) -> ChunkedTruth:
        """Draw the latents and parameters, and take one pass over the input noise.

        Parameters
        ----------
        n_neurons, n_steps, n_groups, noise_std, input_std, seed
            As in :func:`nwb_facrnn.synthetic.make_lowrank_rnn_dataset` (group rank 3, the
            default systems).  With ``input_std=0`` the input is zero, but its white noise is
            still drawn (quickly, without smoothing) so that the observation noise is the
            package's.

        Returns
        -------
        ChunkedTruth
        """
        rng = np.random.default_rng(seed)
        systems = tuple(CHAOTIC_SYSTEMS[g % len(CHAOTIC_SYSTEMS)] for g in range(n_groups))
        z = group_latents(rng, systems, n_steps)
        k = z.shape[1]
        A = rng.standard_normal((n_neurons, k)) / np.sqrt(k)
        a = _OUTPUT_BIAS_STD * rng.standard_normal(n_neurons)
        input_state = rng.bit_generator.state
        mean = std = None
        if input_std > 0:
            count, mean, m2 = 0, np.zeros(n_neurons), np.zeros(n_neurons)
            for _, smooth in _smoothed_noise(rng, n_steps, n_neurons):
                # Chan et al.'s merge of the chunk's mean and sum of squared deviations
                n_b = len(smooth)
                mean_b = smooth.mean(axis=0)
                m2_b = ((smooth - mean_b) ** 2).sum(axis=0)
                delta = mean_b - mean
                total = count + n_b
                mean = mean + delta * n_b / total
                m2 = m2 + m2_b + delta**2 * count * n_b / total
                count = total
            std = np.sqrt(m2 / count)
        else:
            for i0, i1 in _spans(n_steps, n_neurons):
                rng.standard_normal((i1 - i0, n_neurons))
        return cls(
            z=z,
            A=A,
            a=a,
            systems=systems,
            noise_std=float(noise_std),
            input_std=float(input_std),
            _input_state=input_state,
            _noise_state=rng.bit_generator.state,
            _u_mean=mean,
            _u_std=std,
        )

    def chunks(self, rows: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """The activity in order: ``(i0, x, u)`` for rows ``i0 .. i0 + len(x) - 1``.

        Parameters
        ----------
        rows : int, optional
            Rows per chunk (default: about :data:`CHUNK_VALUES` values).

        Yields
        ------
        i0 : int
        x, u : numpy.ndarray, shape (rows, N), float32
            Observation and external input (zeros when ``input_std`` is 0).
        """
        t, n = self.shape
        noise = np.random.Generator(np.random.PCG64())
        noise.bit_generator.state = self._noise_state
        if self.input_std > 0:
            inputs = np.random.Generator(np.random.PCG64())
            inputs.bit_generator.state = self._input_state
            smoothed = _smoothed_noise(inputs, t, n, rows)
        else:
            smoothed = ((i0, None) for i0, _ in _spans(t, n, rows))
        for i0, smooth in smoothed:
            m = len(smooth) if smooth is not None else min(_rows(n, rows), t - i0)
            clean = self.z[i0 : i0 + m] @ self.A.T + self.a
            if smooth is None:
                u = np.zeros((m, n), dtype=np.float32)
            else:
                u64 = self.input_std * ((smooth - self._u_mean) / self._u_std)
                clean += u64
                u = u64.astype(np.float32)
                del u64, smooth
            clean += self.noise_std * noise.standard_normal((m, n))
            yield i0, clean.astype(np.float32), u
            del clean, u

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``x`` and ``u``, shape (T, N) float32 each, filled chunk by chunk."""
        x = np.empty(self.shape, dtype=np.float32)
        u = np.empty(self.shape, dtype=np.float32)
        for i0, xc, uc in self.chunks():
            x[i0 : i0 + len(xc)] = xc
            u[i0 : i0 + len(uc)] = uc
        return x, u


def _rows(n: int, rows: int | None) -> int:
    return rows or max(1024, CHUNK_VALUES // n)


def _spans(t: int, n: int, rows: int | None = None) -> list[tuple[int, int]]:
    step = _rows(n, rows)
    return [(i, min(i + step, t)) for i in range(0, t, step)]


def _smoothed_noise(
    rng: np.random.Generator, t: int, n: int, rows: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """White noise (t, n) drawn from ``rng`` row-major, smoothed over time as
    ``gaussian_filter1d(white, 5, axis=0, mode="reflect")`` smooths it whole: ``(i0, block)``."""
    r = _KERNEL_RADIUS
    buffer = np.empty((0, n))  # drawn rows buffer_start .. buffer_start + len(buffer) - 1
    start = 0
    drawn = 0
    for i0, i1 in _spans(t, n, rows):
        need = min(t, i1 + r)  # the block needs rows up to i1 + r (exclusive)
        if need > drawn:
            buffer = np.concatenate([buffer, rng.standard_normal((need - drawn, n))])
            drawn = need
        lo = max(0, i0 - r)
        block = buffer[lo - start : need - start]
        smooth = gaussian_filter1d(block, _INPUT_SMOOTHING_BINS, axis=0, mode="reflect")
        yield i0, smooth[i0 - lo : i1 - lo]
        keep = max(0, i1 - r)  # the next block starts at i1 - r
        buffer, start = buffer[keep - start :], keep


def check_against_package(n_neurons: int = 30, n_steps: int = 5000, seed: int = 3) -> float:
    """Largest absolute difference of ``x``, ``u``, ``z`` against
    :func:`~nwb_facrnn.synthetic.make_lowrank_rnn_dataset` with the same arguments (the
    chunks are made small so that there are many)."""
    from nwb_facrnn.synthetic import make_lowrank_rnn_dataset

    ref = make_lowrank_rnn_dataset(n_neurons=n_neurons, n_steps=n_steps, seed=seed)
    truth = ChunkedTruth.simulate(n_neurons, n_steps, seed=seed)
    x = np.concatenate([c[1] for c in truth.chunks(rows=777)])
    u = np.concatenate([c[2] for c in truth.chunks(rows=1000)])
    assert np.array_equal(truth.A, ref.A) and np.array_equal(truth.a, ref.a)
    return max(
        float(np.abs(x - ref.x).max()),
        float(np.abs(u - ref.u).max()),
        float(np.abs(truth.z.astype(np.float32) - ref.z).max()),
    )


# --------------------------------------------------------------------------- the NWB file


def _data_iterator(truth: ChunkedTruth, rows: int, scale: float):
    """An hdmf data-chunk iterator over ``scale * x`` (float32), ``rows`` frames a chunk."""
    from hdmf.data_utils import AbstractDataChunkIterator, DataChunk

    class Traces(AbstractDataChunkIterator):
        def __init__(self) -> None:
            self._chunks = truth.chunks(rows)

        def __iter__(self):
            return self

        def __next__(self) -> DataChunk:
            i0, x, _ = next(self._chunks)
            x *= np.float32(scale)
            return DataChunk(data=x, selection=np.s_[i0 : i0 + len(x), :])

        def recommended_chunk_shape(self):
            return (min(rows, truth.shape[0]), truth.shape[1])

        def recommended_data_shape(self):
            return truth.shape

        @property
        def dtype(self):
            return np.dtype(np.float32)

        @property
        def maxshape(self):
            return truth.shape

    return Traces()


def write_voltage_session(
    path: str | Path,
    n_frames: int,
    n_rois: int,
    *,
    rate: float = 1000.0,
    dff_scale: float = 0.02,
    noise_std: float = 0.1,
    input_std: float = 0.0,
    seed: int = 0,
    chunk_frames: int = 8192,
) -> np.ndarray:
    """Write a synthetic voltage-imaging session whose dF/F traces come from a FacRNN.

    The ROI traces are ``dff_scale * x`` with ``x`` the Gaussian ground truth of
    :class:`ChunkedTruth` (G = 2 groups of rank 3): about zero mean and a std of
    ``dff_scale`` (2 % dF/F by default), observation noise included.  The file has an
    ImagingPlane, a PlaneSegmentation of ``n_rois`` 3 x 3-pixel ROIs (pixel masks) on a
    square field of view (64 x 64 pixels, or larger for more than 441 ROIs), and the traces as
    ``processing/ophys/DfOverF/dff`` (a RoiResponseSeries, float32, ``rate`` Hz from 0 s,
    HDF5 chunks of ``(chunk_frames, n_rois)``, uncompressed); no movie.

    Parameters
    ----------
    path : path
        The NWB (HDF5) file to write.
    n_frames, n_rois : int
        T and N.
    rate : float
        Frames per second.
    dff_scale : float
        dF/F per unit of the ground truth's activity.
    noise_std, input_std, seed
        Of the ground truth (:meth:`ChunkedTruth.simulate`).  The default ``input_std=0``
        gives no external input: the file holds no inputs to fit with.
    chunk_frames : int
        Frames per HDF5 chunk (and per simulated chunk).

    Returns
    -------
    numpy.ndarray, shape (n_frames, 6), float32
        The true latents ``z`` of every frame.
    """
    from datetime import UTC, datetime

    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ophys import DfOverF, ImageSegmentation, OpticalChannel, RoiResponseSeries

    truth = ChunkedTruth.simulate(
        n_rois, n_frames, noise_std=noise_std, input_std=input_std, seed=seed
    )
    nwbfile = NWBFile(
        session_description=(
            f"Synthetic voltage imaging: {n_frames} frames x {n_rois} ROIs at {rate:g} Hz, "
            "dF/F from a FacRNN ground truth (2 groups of rank 3)."
        ),
        identifier=f"facrnn-scale-voltage-{n_frames}x{n_rois}-seed{seed}",
        session_start_time=datetime(2024, 1, 1, 9, 30, tzinfo=UTC),
    )
    camera = nwbfile.create_device(name="camera", description="Simulated sCMOS camera.")
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel(
            name="Green", description="Voltage indicator emission.", emission_lambda=549.0
        ),
        description="One focal plane.",
        device=camera,
        excitation_lambda=525.0,
        imaging_rate=rate,
        indicator="Voltron2-JF525",
        location="CA1",
    )
    ophys = nwbfile.create_processing_module("ophys", "ROIs and their dF/F traces.")
    segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(segmentation)
    rois = segmentation.create_plane_segmentation(
        name="PlaneSegmentation",
        description="3 x 3-pixel square ROIs on a grid (pixel masks).",
        imaging_plane=plane,
    )
    per_side = math.ceil(math.sqrt(n_rois))
    for i in range(n_rois):
        r, c = 3 * (i // per_side), 3 * (i % per_side)
        rois.add_roi(pixel_mask=[(c + dc, r + dr, 1.0 / 9) for dr in range(3) for dc in range(3)])
    dff = DfOverF(name="DfOverF")
    ophys.add(dff)
    dff.add_roi_response_series(
        RoiResponseSeries(
            name="dff",
            description=f"dF/F: {dff_scale:g} x the FacRNN ground truth's activity.",
            data=H5DataIO(
                data=_data_iterator(truth, chunk_frames, dff_scale),
                chunks=(min(chunk_frames, n_frames), n_rois),
            ),
            rois=rois.create_roi_table_region(region=list(range(n_rois)), description="All ROIs."),
            unit="n.a.",
            rate=float(rate),
            starting_time=0.0,
        )
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return truth.z.astype(np.float32)
