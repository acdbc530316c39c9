"""Multi-taper spectrogram, power spectrum and Hilbert phase of traces (the miniscope pipeline's
``compute_miniscope_spectrogram`` and ``compute_miniscope_phase``, here of every component's dF/F).

Spectrogram (Prerau's ``multitaper_spectrogram``, as the source calls it, per row): windows of
``window_length`` s every ``window_step`` s (one window of the whole trace when it is shorter), each
with its mean removed (the source's ``detrend_opt='constant'``), tapered by the 2·TW − 1 DPSS tapers
of time-bandwidth TW = ``time_bandwidth``, zero-padded to the next power of two, and averaged over
tapers with unit weights; one-sided PSD |X|² / fs (doubled off 0 Hz and Nyquist), (trace units)² / Hz,
at the frequencies within ``freq_lims``. The power spectrum is the mean over windows (Welch's average
of multi-taper estimates) and the dominant frequency its largest bin above 0 Hz.

Phase: the row band-passed by a Butterworth filter of order ``filter_order`` between ``filter_cut``
(forward and backward: no phase lag; the source's ``FilterMiniscopeData``, n = 2, cut 0.1–1.5 Hz),
then the angle of its analytic signal (``scipy.signal.hilbert``), radians in (−π, π]; a cosine
cos(2π f t + φ) in the band has phase 2π f t + φ.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.signal import butter, hilbert, sosfiltfilt
from scipy.signal.windows import dpss


class Spectrogram(NamedTuple):
    """Multi-taper spectrogram of n rows.

    Attributes
    ----------
    power : (n, W, F) float32 PSD per window, (trace units)² / Hz.
    window_times_s : (W,) float64 window centres, s from the first frame.
    frequencies_hz : (F,) float64 frequencies within the limits, Hz.
    power_spectrum : (n, F) float32 mean of ``power`` over windows.
    dominant_frequency_hz : (n,) float32 frequency of the largest ``power_spectrum`` bin above 0 Hz (NaN: none).
    """

    power: np.ndarray
    window_times_s: np.ndarray
    frequencies_hz: np.ndarray
    power_spectrum: np.ndarray
    dominant_frequency_hz: np.ndarray


class SpectrogramLayout(NamedTuple):
    """Windows and frequencies of `multitaper_spectrogram` for a trace length (the shapes of its outputs)."""

    window_frames: int
    window_starts: np.ndarray
    fft_length: int
    frequency_mask: np.ndarray
    window_times_s: np.ndarray
    frequencies_hz: np.ndarray


def centred_rows(traces: np.ndarray) -> np.ndarray:
    """(n, T) float64 each row minus the mean of its finite values, NaN and ±inf set to 0 (the mean)."""
    traces = np.asarray(traces, np.float64)
    finite = np.isfinite(traces)
    filled = np.where(finite, traces, 0.0)
    means = filled.sum(axis=1, keepdims=True) / np.maximum(1, finite.sum(axis=1, keepdims=True))
    return np.where(finite, filled - means, 0.0)


def spectrogram_layout(*, frame_count: int, frame_rate_hz: float, window_length_s: float, window_step_s: float, freq_lims_hz: tuple[float, float]) -> SpectrogramLayout:
    """Window length (frames, ≤ ``frame_count``), starts, FFT length and kept frequencies."""
    window_frames = max(2, min(frame_count, int(round(window_length_s * frame_rate_hz))))
    step_frames = max(1, int(round(window_step_s * frame_rate_hz)))
    starts = np.arange(0, max(1, frame_count - window_frames + 1), step_frames)
    fft_length = max(window_frames, 1 << int(np.ceil(np.log2(window_frames))))
    all_frequencies = np.fft.rfftfreq(fft_length, 1.0 / frame_rate_hz)
    mask = (all_frequencies >= freq_lims_hz[0]) & (all_frequencies <= freq_lims_hz[1])
    return SpectrogramLayout(window_frames, starts, fft_length, mask, (starts + window_frames / 2.0) / frame_rate_hz, all_frequencies[mask])


def multitaper_spectrogram(
    traces: np.ndarray, *, frame_rate_hz: float, window_length_s: float, window_step_s: float, freq_lims_hz: tuple[float, float], time_bandwidth: float
) -> Spectrogram:
    """`Spectrogram` of every row of ``traces`` (n, T) float32 (module docstring; NaN counts as the row's mean)."""
    row_count, frame_count = traces.shape
    layout = spectrogram_layout(frame_count=frame_count, frame_rate_hz=frame_rate_hz, window_length_s=window_length_s, window_step_s=window_step_s, freq_lims_hz=freq_lims_hz)
    taper_count = max(1, int(2 * time_bandwidth - 1))
    tapers = np.atleast_2d(dpss(layout.window_frames, time_bandwidth, Kmax=taper_count))
    one_sided = np.full(layout.fft_length // 2 + 1, 2.0)
    one_sided[0] = 1.0
    if layout.fft_length % 2 == 0:
        one_sided[-1] = 1.0
    scale = (one_sided / frame_rate_hz)[layout.frequency_mask]
    filled = centred_rows(traces)
    power = np.empty((row_count, len(layout.window_starts), int(layout.frequency_mask.sum())), np.float32)
    for window, start in enumerate(layout.window_starts):
        segment = filled[:, start : start + layout.window_frames]
        segment = segment - segment.mean(axis=1, keepdims=True)
        spectra = np.fft.rfft(segment[:, None, :] * tapers[None, :, :], n=layout.fft_length, axis=2)[:, :, layout.frequency_mask]
        power[:, window] = (np.abs(spectra) ** 2).mean(axis=1) * scale
    power_spectrum = power.mean(axis=1) if power.shape[1] else np.zeros((row_count, power.shape[2]), np.float32)
    above_zero = layout.frequencies_hz > 0
    dominant = np.full(row_count, np.nan, np.float32)
    if above_zero.any() and row_count:
        dominant[:] = layout.frequencies_hz[above_zero][np.argmax(power_spectrum[:, above_zero], axis=1)]
    return Spectrogram(power, layout.window_times_s, layout.frequencies_hz, power_spectrum.astype(np.float32), dominant)


def band_problem(*, filter_cut_hz: tuple[float, float], frame_rate_hz: float) -> str | None:
    """What is wrong with a band-pass of edges ``filter_cut_hz`` (Hz) at ``frame_rate_hz``, or None when 0 < low < high < fs / 2."""
    low, high = filter_cut_hz
    if 0 < low < high < frame_rate_hz / 2:
        return None
    return f"the band {low:g}–{high:g} Hz must satisfy 0 < low < high < {frame_rate_hz / 2:g} Hz (half the frame rate)"


def instantaneous_phase(traces: np.ndarray, *, frame_rate_hz: float, filter_order: int, filter_cut_hz: tuple[float, float] | None) -> np.ndarray:
    """(n, T) float32 Hilbert phase (radians) of every row (NaN counts as the row's mean), band-passed first unless ``filter_cut_hz`` is None.

    Raises
    ------
    ValueError : the band is not 0 < low < high < fs / 2.
    """
    frame_count = traces.shape[1]
    centred = centred_rows(traces)
    if filter_cut_hz is not None and frame_count > 1:
        problem = band_problem(filter_cut_hz=filter_cut_hz, frame_rate_hz=frame_rate_hz)
        if problem is not None:
            raise ValueError(problem)
        sos = butter(filter_order, filter_cut_hz, btype="bandpass", fs=frame_rate_hz, output="sos")
        centred = sosfiltfilt(sos, centred, axis=1, padlen=min(3 * (2 * len(sos) + 1), frame_count - 1))
    if not frame_count:
        return np.zeros(traces.shape, np.float32)
    return np.angle(hilbert(centred, axis=1)).astype(np.float32)
