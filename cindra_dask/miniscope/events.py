"""Calcium event detection on dF/F traces (the miniscope pipeline's ``find_calcium_events_with_derivatives``
and ``find_calcium_events_with_deconvolution``: ``event_method`` ``derivative`` or ``deconvolution``).

``derivative``: the source finds peaks (``scipy.signal.find_peaks``) of the ``derivative_for_estimates`` derivative
(``zeroth``: the trace, ``first``: np.diff, ``second``: np.diff twice) of each CNMF-E trace above
``event_height`` in the trace's own units. Here the derivative of the dF/F is divided by its robust
noise σ (MAD of the derivative / 0.6745, so a planted transient crosses the same threshold whatever
the cell's brightness or the background under it), ``event_height`` is in those σ, and two events of
a row are at least ``minimum_event_interval`` apart (find_peaks' ``distance``; the larger peak wins).

An event's frame is the peak's index plus the derivative's order: for ``first`` the frame whose value
jumped (the onset of a transient that rises within a frame), for ``zeroth`` the peak of the trace.
Its amplitude is the derivative there, in dF/F units (``first``: the rise in one frame).

``deconvolution``: the source takes every frame where CaImAn's deconvolved activity S is positive; here
S is OASIS AR(1) of the dF/F (`cindra_dask.extraction.oasis`, decay ``main.tau``) and its events are
its peaks above ``event_height`` σ, σ the robust noise of the dF/F's frame-to-frame difference (the
noise of s_t = c_t − g·c_{t−1} for g near 1), at least ``minimum_event_interval`` apart; an event's
frame is the spike's, its amplitude the spike (dF/F).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.signal import find_peaks

from cindra_dask.extraction.oasis import deconvolve_oasis, robust_standard_deviation

EVENT_METHODS = ("derivative", "deconvolution")
"""``miniscope_analysis.event_method`` values."""
DERIVATIVE_ORDERS = {"zeroth": 0, "first": 1, "second": 2}
"""``miniscope_analysis.derivative_for_estimates`` values and the derivative order each takes."""


class CalciumEvents(NamedTuple):
    """Events of n traces as ragged rows.

    Attributes
    ----------
    event_offsets : (n+1,) int64; row i's events are entries [offsets[i], offsets[i+1]).
    event_frames : (E,) int64 frame of each event, ascending within a row.
    event_amplitudes : (E,) float32 the derivative (dF/F per frame^order) or the spike (dF/F) at the event.
    noise_sigma : (n,) float32 robust σ of each row's derivative (deconvolution: of its first difference), dF/F (NaN: no finite value).
    """

    event_offsets: np.ndarray
    event_frames: np.ndarray
    event_amplitudes: np.ndarray
    noise_sigma: np.ndarray


def detect_calcium_events(
    delta_f_over_f: np.ndarray,
    *,
    event_method: str,
    derivative_for_estimates: str,
    event_height: float,
    minimum_event_interval_frames: int,
    tau_s: float,
    frame_rate_hz: float,
) -> CalciumEvents:
    """Events of every row of ``delta_f_over_f`` (module docstring).

    Parameters
    ----------
    delta_f_over_f : (n, T) float32 dF/F (NaN frames count as no change; deconvolution: as the baseline, 0).
    event_method : "derivative" or "deconvolution".
    derivative_for_estimates : "zeroth", "first" or "second" (``derivative``).
    event_height : threshold in noise σ.
    minimum_event_interval_frames : least distance between two events of a row, frames (≥ 1).
    tau_s, frame_rate_hz : indicator decay (s) and sampling rate (Hz) of the OASIS model (``deconvolution``).
    """
    if event_method not in EVENT_METHODS:
        raise ValueError(f"event_method must be one of {', '.join(EVENT_METHODS)}, got {event_method!r}")
    if derivative_for_estimates not in DERIVATIVE_ORDERS:
        raise ValueError(f"derivative_for_estimates must be one of {', '.join(DERIVATIVE_ORDERS)}, got {derivative_for_estimates!r}")
    traces = np.asarray(delta_f_over_f, np.float64)
    if event_method == "deconvolution":
        order = 0
        signal = deconvolve_oasis(np.nan_to_num(traces, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32), tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0).spikes.astype(np.float64)
        noise_source = np.diff(traces, axis=1)
    else:
        order = DERIVATIVE_ORDERS[derivative_for_estimates]
        signal = np.diff(traces, n=order, axis=1) if order else traces
        noise_source = signal
    frames, amplitudes, counts, sigmas = [], [], [], []
    for row, noise_row in zip(signal, noise_source):
        finite = noise_row[np.isfinite(noise_row)]
        sigma = float(robust_standard_deviation(finite)) if finite.size else np.nan
        peaks = np.zeros(0, np.int64)
        if finite.size and sigma > 0 and row.size:
            centred = np.nan_to_num(row if event_method == "deconvolution" else row - np.median(finite), nan=0.0)
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
