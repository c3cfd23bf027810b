"""Activity from a plain 2-D TimeSeries (time x units), e.g. binned firing rates.

Some files hold their activity neither as a Units table nor as ROI traces, but as one
``TimeSeries`` with one column per unit (``/processing/ecephys/binned_rates``,
``/acquisition/rates`` ...).  Such a series is read like ROI traces: its samples are averaged
onto the bins of the layout (:func:`nwb_facrnn.io.binning.bin_series`), NaN samples are
unobserved, and the units are its columns ``0 .. N-1`` (there is no unit table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .binning import BinGrid, bin_series
from .errors import NWBReadError
from .nwb_objects import data_shape, iter_time_series, series_timestamps

#: Where fittable series are looked for (stimuli are inputs, not activity).
_ACTIVITY_GROUPS = ("/acquisition/", "/processing/")


@dataclass
class ActivitySeries:
    """A 2-D TimeSeries read as activity.

    Attributes
    ----------
    series : pynwb.TimeSeries
    path : str
        Its path in the file.
    n_columns : int
        Number of columns (units).
    timestamps : numpy.ndarray, float64, shape (n_samples,)
    """

    series: Any
    path: str
    n_columns: int
    timestamps: np.ndarray

    @property
    def sampling_interval(self) -> float:
        """Seconds between samples: ``1 / rate``, else the median timestamp step."""
        if self.series.rate:
            return 1.0 / float(self.series.rate)
        ts = self.timestamps
        return float(np.median(np.diff(ts))) if len(ts) > 1 else 1.0

    def extent(self) -> tuple[float, float]:
        """First sample time and the end of the last sample's interval (s)."""
        return float(self.timestamps[0]), float(self.timestamps[-1] + self.sampling_interval)


def _is_excluded(series: Any) -> bool:
    """ROI traces (read as imaging), movies, extracellular voltage (channels, not units; an
    explicit ``series=`` still reads it) and FacRNN latents are not listed as activity."""
    from pynwb.ecephys import ElectricalSeries
    from pynwb.image import ImageSeries
    from pynwb.ophys import RoiResponseSeries

    if isinstance(series, RoiResponseSeries | ImageSeries | ElectricalSeries):
        return True
    return type(series).__name__ == "LatentTrajectories"


def _numeric(data: Any) -> bool:
    dtype = getattr(data, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(data[:1]).dtype
        except Exception:  # an unreadable first row: not usable as activity
            return False
    return np.dtype(dtype).kind in "biuf"


def list_activity_series(nwbfile: Any) -> list[tuple[str, Any, tuple[int, ...]]]:
    """Every TimeSeries in acquisition and processing that can be fit as activity.

    That is 2-D numeric data with at least 3 samples and 2 columns (time x units), and not
    a RoiResponseSeries (read as imaging), an ImageSeries, an ElectricalSeries or a FacRNN
    fit's latents.  Only
    metadata is read.

    Returns
    -------
    list of (path, series, shape)
    """
    found = []
    for path, s in iter_time_series(nwbfile):
        if not path.startswith(_ACTIVITY_GROUPS) or _is_excluded(s) or s.data is None:
            continue
        shape = data_shape(s.data)
        # at least 3 samples: 2 transitions, the fewest a fit takes
        if len(shape) == 2 and shape[0] >= 3 and shape[1] >= 2 and _numeric(s.data):
            found.append((path, s, shape))
    return found


def describe_activity_series(nwbfile: Any) -> str:
    """The fittable 2-D series as ``path (samples x columns)``, or "" when there are none."""
    return ", ".join(
        f"{path} ({shape[0]} x {shape[1]})" for path, _, shape in list_activity_series(nwbfile)
    )


def match_time_series(nwbfile: Any, name: str) -> list[tuple[str, Any]]:
    """The TimeSeries ``name`` refers to: the one at that path, else those of that name.

    RoiResponseSeries are left out (they are read as imaging).
    """
    from pynwb.ophys import RoiResponseSeries

    found = [(p, s) for p, s in iter_time_series(nwbfile) if not isinstance(s, RoiResponseSeries)]
    target = "/" + name.strip("/")
    exact = [(p, s) for p, s in found if p == target]
    return exact or [(p, s) for p, s in found if s.name == name]


def find_activity_series(nwbfile: Any, source: str, name: str) -> ActivitySeries:
    """The 2-D TimeSeries ``name`` (a path or a unique name), checked to be fittable.

    Raises
    ------
    NWBReadError
        No such series, several of that name, or data that is not 2-D numeric with at least
        2 columns (time x units).
    """
    matches = match_time_series(nwbfile, name)
    target = "/" + name.strip("/")
    if not matches:
        present = describe_activity_series(nwbfile) or "none"
        raise NWBReadError(
            source, target, f"no TimeSeries named {name!r}; 2-D series present: {present}"
        )
    if len(matches) > 1:
        raise NWBReadError(
            source,
            target,
            f"{name!r} matches several series ({', '.join(p for p, _ in matches)}); "
            "pass the full path",
        )
    path, s = matches[0]
    expected = "expected 2-D numeric data (time x units) with at least 2 columns, one per unit"
    if s.data is None:
        raise NWBReadError(source, path, f"a {type(s).__name__} without data; {expected}")
    shape = data_shape(s.data)
    kind = type(s).__name__
    if len(shape) != 2:
        raise NWBReadError(
            source,
            path + "/data",
            f"a {kind} with {len(shape)}-D data, shape {shape}; {expected}",
        )
    if shape[0] == 0:
        raise NWBReadError(source, path + "/data", "the series has no samples")
    if shape[1] < 2:
        raise NWBReadError(
            source, path + "/data", f"a {kind} with {shape[1]} column(s), shape {shape}; {expected}"
        )
    if not _numeric(s.data):
        dtype = getattr(s.data, "dtype", "?")
        raise NWBReadError(
            source, path + "/data", f"a {kind} of dtype {dtype}, not numbers; {expected}"
        )
    return ActivitySeries(s, path, int(shape[1]), series_timestamps(s, source))


def bin_activity(
    series: ActivitySeries, grid: BinGrid, max_rows: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of every column in every bin: values (n_seq, T, N) and the observed mask.

    Read in slabs of at most ``max_rows`` samples; NaN samples are unobserved.
    """
    data = series.series.data

    def read_rows(i0: int, i1: int) -> np.ndarray:
        return np.asarray(data[i0:i1], dtype=np.float64).reshape(i1 - i0, -1)

    return bin_series(series.timestamps, read_rows, grid, max_rows=max_rows, dtype=np.float32)
