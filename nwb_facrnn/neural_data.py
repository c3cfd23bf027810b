"""``NeuralData``: binned activity with everything needed to fit, evaluate and link back.

This is the hand-off point of the data flow *source -> NeuralData -> FacRNN.fit*: readers
(:func:`nwb_facrnn.read_nwb`) fill it, :meth:`nwb_facrnn.FacRNN.fit` consumes it, and the NWB
writer uses its unit ids, table path and provenance to link results back to the source.
It holds plain numpy arrays only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from .errors import OptionError

Modality = Literal["spikes", "ophys", "series"]


@dataclass
class NeuralData:
    """Binned neural activity of one session.

    Shapes use ``n_trials`` trials of ``T`` bins of ``N`` units (or ROIs).  Continuous data
    (no trials) drops the leading axis: activity ``(T, N)``, timestamps ``(T,)``.

    Attributes
    ----------
    activity : numpy.ndarray, float32, shape (n_trials, T, N) or (T, N)
        Spike counts per bin, or the mean ROI trace in each bin (e.g. dF/F).  Unobserved
        values are 0 and marked False in ``mask``.
    mask : numpy.ndarray, bool, same shape as ``activity``
        True where the value was observed: inside the unit's ``obs_intervals``, inside the
        trial (shorter trials are padded at the end), with at least one imaging frame.
    timestamps : numpy.ndarray, float64, shape (n_trials, T) or (T,)
        Start time of every bin, in session seconds (padding bins continue the grid).
    bin_size : float
        Bin width in seconds.
    unit_ids : numpy.ndarray, shape (N,)
        The ``id`` of each unit or ROI in its table; for a plain TimeSeries read as activity,
        the column of each unit in the series (``0 .. N-1``).
    unit_table : str
        Path of that table in the NWB file, e.g. ``"/units"`` or
        ``"/processing/ophys/ImageSegmentation/PlaneSegmentation"``; ``""`` when the units
        are the columns of a TimeSeries (modality ``"series"``), which have no table (the
        series' path is ``provenance["objects"]["activity"]``).
    modality : {"spikes", "ophys", "series"}
        Spike counts (Units table), ROI traces (RoiResponseSeries), or the columns of a
        plain 2-D TimeSeries (e.g. binned rates).
    unit_columns : dict of str to numpy.ndarray
        Per-unit metadata of the selected units, each shape (N,) (e.g. ``electrode_group``,
        ``location``, ``accepted``).
    trial_ids : numpy.ndarray or None, shape (n_trials,)
        ``id`` of each trial in the trials table; None for continuous data.
    trials : dict of str to numpy.ndarray
        Trial columns (conditions, split, event times), each shape (n_trials,).
    behavior : dict of str to numpy.ndarray
        Behavioural series on the same bins, shape ``activity.shape[:-1] + (D,)``; NaN where
        the series has no sample.  For evaluation only; never used by the fit.
    inputs : numpy.ndarray or None, float32, same shape as ``activity``
        External input ``u_t`` per unit, fed to the model.
    provenance : dict
        ``source``, ``backend``, NWB ``identifier``, object paths read and the options used.
    """

    activity: np.ndarray
    mask: np.ndarray
    timestamps: np.ndarray
    bin_size: float
    unit_ids: np.ndarray
    unit_table: str
    modality: Modality
    unit_columns: dict[str, np.ndarray] = field(default_factory=dict)
    trial_ids: np.ndarray | None = None
    trials: dict[str, np.ndarray] = field(default_factory=dict)
    behavior: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = self.activity
        if a.ndim not in (2, 3):
            raise OptionError(f"activity must be (T, N) or (n_trials, T, N), got shape {a.shape}")
        if self.mask.shape != a.shape or self.mask.dtype != bool:
            raise OptionError(
                f"mask must be bool with the activity's shape {a.shape}, got "
                f"{self.mask.dtype} {self.mask.shape}"
            )
        if self.timestamps.shape != a.shape[:-1]:
            raise OptionError(
                f"timestamps must have shape {a.shape[:-1]}, got {self.timestamps.shape}"
            )
        if len(self.unit_ids) != a.shape[-1]:
            raise OptionError(f"{len(self.unit_ids)} unit_ids for {a.shape[-1]} units")
        if (self.trial_ids is None) != (a.ndim == 2):
            raise OptionError("trial_ids must be given exactly when activity has a trial axis")
        if self.inputs is not None and self.inputs.shape != a.shape:
            raise OptionError(f"inputs must have shape {a.shape}, got {self.inputs.shape}")

    # ------------------------------------------------------------------ sizes
    @property
    def n_units(self) -> int:
        """Number of units or ROIs ``N``."""
        return self.activity.shape[-1]

    @property
    def n_trials(self) -> int:
        """Number of trials (1 for continuous data)."""
        return 1 if self.activity.ndim == 2 else self.activity.shape[0]

    @property
    def n_bins(self) -> int:
        """Bins per trial ``T`` (the longest trial; shorter ones are padded)."""
        return self.activity.shape[-2]

    @property
    def is_continuous(self) -> bool:
        """True when there is no trial axis."""
        return self.activity.ndim == 2

    @property
    def fraction_observed(self) -> float:
        """Fraction of (bin, unit) values that were observed."""
        return float(self.mask.mean())

    def __repr__(self) -> str:
        layout = "continuous" if self.is_continuous else f"{self.n_trials} trials x"
        beh = f", behavior={sorted(self.behavior)}" if self.behavior else ""
        return (
            f"NeuralData({self.modality}: {layout} {self.n_bins} bins x {self.n_units} units, "
            f"bin_size={self.bin_size:g} s, observed={self.fraction_observed:.1%}{beh}, "
            f"source={self.provenance.get('source')!r})"
        )

    # -------------------------------------------------------------- selection
    def select_trials(self, which: np.ndarray | list[int] | slice) -> NeuralData:
        """A copy restricted to some trials.

        Parameters
        ----------
        which : bool mask of shape (n_trials,), integer positions, or a slice
            E.g. ``data.select_trials(data.trials["split"] == "train")``.
        """
        if self.is_continuous:
            raise OptionError("select_trials needs trials; this NeuralData is continuous")
        idx = np.arange(self.n_trials)[which]
        if idx.size == 0:
            raise OptionError("select_trials selected no trial")
        return replace(
            self,
            activity=self.activity[idx],
            mask=self.mask[idx],
            timestamps=self.timestamps[idx],
            trial_ids=self.trial_ids[idx],
            trials={k: v[idx] for k, v in self.trials.items()},
            behavior={k: v[idx] for k, v in self.behavior.items()},
            inputs=None if self.inputs is None else self.inputs[idx],
        )

    def select_units(self, which: np.ndarray | list[int] | slice) -> NeuralData:
        """A copy restricted to some units (bool mask, positions or slice over ``N``)."""
        idx = np.arange(self.n_units)[which]
        if idx.size == 0:
            raise OptionError("select_units selected no unit")
        return replace(
            self,
            activity=self.activity[..., idx],
            mask=self.mask[..., idx],
            unit_ids=self.unit_ids[idx],
            unit_columns={k: v[idx] for k, v in self.unit_columns.items()},
            inputs=None if self.inputs is None else self.inputs[..., idx],
        )
