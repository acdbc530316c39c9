"""Component evaluation without the CNN (CaImAn's ``evaluate_components``: SNR and spatial consistency).

**Trace SNR (event exceptionality).** Each trace's baseline is its half-sample mode; the noise σ is
the root mean square of the samples below it. With z = (x − mode) / (3σ), the log tail probability
log(1 − Φ(z)) summed over N consecutive frames (N = ⌈fr · decay_time⌉) is smallest at the most
exceptional event; SNR = −Φ⁻¹(exp(min / N)).

**Spatial consistency (r value).** The ≤ 5 highest peaks of a component's activity above 30 % of its
range, each widened to frames [peak − 3, peak + 10), less the frames when an overlapping component
(normalised footprint overlap > 0.1) is active, select frames; the Pearson r between the mean of the
data over them and the footprint, over the footprint's pixels, is the component's r value.

A component is accepted when its SNR ≥ ``min_SNR`` or its r ≥ ``rval_thr``, and neither is below its
lowest bound (``SNR_lowest``, ``rval_lowest``).

**Cell probability.** With the SNR measured in units of (``min_SNR`` − ``SNR_lowest``) and r in units
of (``rval_thr`` − ``rval_lowest``) (1 where a unit is not positive), the acceptance margin is
m = min(max(s − s_thr, r − r_thr), s − s_lowest, r − r_lowest): non-decreasing in both scores, ≥ 0
exactly when the component is accepted, −1 at the lowest bounds. The probability is the logistic
1 / (1 + exp(−4 m)): 0.5 on the acceptance boundary, 0.98 one unit inside it, 0.02 one unit outside.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.stats import norm

PEAK_COUNT = 5
FRAMES_BEFORE_PEAK = 3
FRAMES_AFTER_PEAK = 10
PEAK_THRESHOLD_FRACTION = 0.3
OVERLAP_THRESHOLD = 0.1
_NOISE_SCALE = 3.0
PROBABILITY_SLOPE = 4.0
"""Slope of the logistic of the acceptance margin (per unit of margin)."""


def half_sample_mode(values: np.ndarray) -> float:
    """Half-sample mode of a 1-D sample (Bickel & Frühwirth; CaImAn's ``mode_robust``)."""
    data = np.sort(np.asarray(values, np.float64).ravel())
    while data.size > 3:
        half = data.size // 2 + data.size % 2
        widths = data[half - 1 :] - data[: data.size - half + 1]
        start = int(np.argmin(widths))
        data = data[start : start + half]
    if data.size == 3:
        lower, upper = data[1] - data[0], data[2] - data[1]
        return float(data[:2].mean() if lower < upper else data[1:].mean() if upper < lower else data[1])
    return float(data.mean())


def event_exceptionality_snr(traces: np.ndarray, *, event_frames: int) -> np.ndarray:
    """(K,) float64 SNR of each trace's most exceptional run of ``event_frames`` frames (see the module docstring).

    traces : (K, T) component traces (activity plus residual); event_frames : N ≥ 1.
    """
    traces = np.asarray(traces, np.float64)
    snr = np.zeros(traces.shape[0])
    kernel = np.ones(int(event_frames))
    for row, trace in enumerate(traces):
        mode = half_sample_mode(trace)
        below = trace[trace < mode] - mode
        if below.size == 0:
            continue
        noise = np.sqrt(np.mean(below**2))
        log_tail = norm.logsf((trace - mode) / (_NOISE_SCALE * noise))
        fitness = float(np.min(np.convolve(log_tail, kernel, mode="full")[: trace.size]))
        snr[row] = -norm.ppf(np.exp(fitness / event_frames))
    return snr


def peak_frames(trace: np.ndarray) -> np.ndarray:
    """(≤ 5,) int64 the highest local maxima of ``trace`` above 30 % of its range, highest first (peakutils' ``indexes``)."""
    trace = np.asarray(trace, np.float64)
    if trace.size < 3 or np.ptp(trace) == 0:
        return np.zeros(0, np.int64)
    threshold = trace.min() + PEAK_THRESHOLD_FRACTION * np.ptp(trace)
    slope = np.diff(trace)
    candidates = np.flatnonzero((np.hstack([slope, 0.0]) < 0) & (np.hstack([0.0, slope]) > 0) & (trace > threshold))
    return candidates[np.argsort(trace[candidates])[::-1]][:PEAK_COUNT].astype(np.int64)


def active_frames(temporal: np.ndarray) -> list[np.ndarray]:
    """Per component, the sorted frames [peak − 3, peak + 10) around its `peak_frames` (clipped to the recording)."""
    frame_count = temporal.shape[1]
    windows = np.arange(-FRAMES_BEFORE_PEAK, FRAMES_AFTER_PEAK)
    return [np.unique(np.clip((peak_frames(trace)[:, None] + windows).ravel(), 0, frame_count - 1)) for trace in temporal]


def significant_frames(*, spatial: np.ndarray, temporal: np.ndarray) -> list[np.ndarray]:
    """Per component, its `active_frames` less those of components whose footprints overlap it
    (normalised overlap > 0.1); all of its own when nothing would be left.

    spatial : (K, P) dense or CSR; temporal : (K, T).
    """
    footprints = csr_matrix(spatial, dtype=np.float64)
    norms = np.sqrt(np.asarray(footprints.multiply(footprints).sum(axis=1)).ravel())
    overlap = (footprints @ footprints.T).toarray() / np.maximum(np.outer(norms, norms), np.finfo(np.float64).tiny)
    np.fill_diagonal(overlap, 0.0)
    own = active_frames(temporal)
    chosen = []
    for index, frames in enumerate(own):
        others = [own[other] for other in np.flatnonzero(overlap[:, index] > OVERLAP_THRESHOLD)]
        kept = np.setdiff1d(frames, np.concatenate(others)) if others else frames
        chosen.append(kept if kept.size else frames)
    return chosen


def spatial_consistency(*, footprint: np.ndarray, mean_frame: np.ndarray) -> float:
    """Pearson r between the data's mean over a component's significant frames and its footprint, over the footprint's pixels
    (0 with fewer than 3 pixels). footprint, mean_frame : (P,)."""
    pixels = np.flatnonzero(footprint > 0)
    if pixels.size < 3:
        return 0.0
    return float(np.corrcoef(mean_frame[pixels], footprint[pixels])[0, 1])


def acceptance_margin(snr: np.ndarray, r_values: np.ndarray, *, min_SNR: float, rval_thr: float, SNR_lowest: float, rval_lowest: float) -> np.ndarray:  # noqa: N803 - CaImAn's names
    """(K,) float64 signed distance of each component to CaImAn's acceptance boundary, in units of the threshold gaps
    (see the module docstring; NaN r counts as 0): ≥ 0 exactly when CaImAn accepts it (SNR ≥ min_SNR or r ≥ rval_thr,
    and SNR ≥ SNR_lowest and r ≥ rval_lowest). snr, r_values : (K,)."""
    snr = np.asarray(snr, np.float64)
    r_values = np.nan_to_num(np.asarray(r_values, np.float64))
    snr_unit = min_SNR - SNR_lowest if min_SNR > SNR_lowest else 1.0
    r_unit = rval_thr - rval_lowest if rval_thr > rval_lowest else 1.0
    either = np.maximum((snr - min_SNR) / snr_unit, (r_values - rval_thr) / r_unit)
    return np.minimum(either, np.minimum((snr - SNR_lowest) / snr_unit, (r_values - rval_lowest) / r_unit))


def acceptance_probability(margin: np.ndarray) -> np.ndarray:
    """(K,) float64 cell probability 1 / (1 + exp(−4 m)) of `acceptance_margin` m (0.5 on the boundary)."""
    return 0.5 * (1.0 + np.tanh(0.5 * PROBABILITY_SLOPE * np.asarray(margin, np.float64)))
