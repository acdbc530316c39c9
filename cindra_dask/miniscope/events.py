"""Calcium event detection on dF/F traces (the miniscope pipeline's ``find_calcium_events_with_derivatives``).

The source finds peaks (``scipy.signal.find_peaks``) of the ``derivative_for_estimates`` derivative
(``zeroth``: the trace, ``first``: np.diff, ``second``: np.diff twice) of each CNMF-E trace above
``event_height`` in the trace's own units. Here the derivative of the dF/F is divided by its robust
noise σ (MAD of the derivative / 0.6745, so a planted transient crosses the same threshold whatever
the cell's brightness or the background under it), ``event_height`` is in those σ, and two events of
a row are at least ``minimum_event_interval`` apart (find_peaks' ``distance``; the larger peak wins).

An event's frame is the peak's index plus the derivative's order: for ``first`` the frame whose value
jumped (the onset of a transient that rises within a frame), for ``zeroth`` the peak of the trace.
Its amplitude is the derivative there, in dF/F units (``first``: the rise in one frame).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.signal import find_peaks

DERIVATIVE_ORDERS = {"zeroth": 0, "first": 1, "second": 2}
"""``miniscope_analysis.derivative_for_estimates`` values and the derivative order each takes."""
MAD_TO_SIGMA = 0.6745
"""Median absolute deviation of a unit normal variable."""


class CalciumEvents(NamedTuple):
    """Events of n traces as ragged rows.

    Attributes
    ----------
    event_offsets : (n+1,) int64; row i's events are entries [offsets[i], offsets[i+1]).
    event_frames : (E,) int64 frame of each event, ascending within a row.
    event_amplitudes : (E,) float32 the derivative at the event, dF/F (per frame^order).
    noise_sigma : (n,) float32 robust σ of each row's derivative, dF/F (NaN: the row has no finite value).
    """

    event_offsets: np.ndarray
    event_frames: np.ndarray
    event_amplitudes: np.ndarray
    noise_sigma: np.ndarray


def detect_calcium_events(delta_f_over_f: np.ndarray, *, derivative_for_estimates: str, event_height: float, minimum_event_interval_frames: int) -> CalciumEvents:
    """Events of every row of ``delta_f_over_f`` (module docstring).

    Parameters
    ----------
    delta_f_over_f : (n, T) float32 dF/F (NaN frames are treated as 0 change).
    derivative_for_estimates : "zeroth", "first" or "second".
    event_height : threshold in noise σ of the derivative.
    minimum_event_interval_frames : least distance between two events of a row, frames (≥ 1).
    """
    if derivative_for_estimates not in DERIVATIVE_ORDERS:
        raise ValueError(f"derivative_for_estimates must be one of {', '.join(DERIVATIVE_ORDERS)}, got {derivative_for_estimates!r}")
    order = DERIVATIVE_ORDERS[derivative_for_estimates]
    signal = np.diff(np.asarray(delta_f_over_f, np.float64), n=order, axis=1) if order else np.asarray(delta_f_over_f, np.float64)
    frames, amplitudes, counts, sigmas = [], [], [], []
    for row in signal:
        finite = row[np.isfinite(row)]
        sigma = float(np.median(np.abs(finite - np.median(finite))) / MAD_TO_SIGMA) if finite.size else np.nan
        peaks = np.zeros(0, np.int64)
        if finite.size and sigma > 0 and row.size:
            centred = np.nan_to_num(row - np.median(finite), nan=0.0)
            peaks, _ = find_peaks(centred, height=event_height * sigma, distance=max(1, int(minimum_event_interval_frames)))
        frames.append(peaks.astype(np.int64) + order)
        amplitudes.append(row[peaks].astype(np.float32))
        counts.append(len(peaks))
        sigmas.append(sigma)
    return CalciumEvents(
        np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
        np.concatenate(frames).astype(np.int64) if frames else np.zeros(0, np.int64),
        np.concatenate(amplitudes).astype(np.float32) if amplitudes else np.zeros(0, np.float32),
        np.asarray(sigmas, np.float32),
    )
