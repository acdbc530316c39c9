"""OASIS spike deconvolution for an AR(1) calcium model (Friedrich, Zhou & Paninski 2017), as cindra
and suite2p run it (cindra §3.6 "OASIS").

For each trace y (length T) with the fixed decay g = exp(−1 / (tau · fs)) it solves

    minimise ½ Σ_t (c_t − y_t)² + λ Σ_{t≥1} s_t   subject to   s_t = c_t − g · c_{t−1} ≥ 0 (t ≥ 1),

with c_0 free (no baseline, noise or s_min estimation; cindra/suite2p use λ = 0). The pool-adjacent-
violators pass keeps pools (value v, weight w, start, length l) of frames sharing one exponential
decay c_{start+j} = v · g^j; a new frame starts a pool, and while the previous pool decays above it
(v_prev · g^{l_prev} > v) the two merge into

    v = (w_prev · v_prev + g^{l_prev} · w · v) / (w_prev + g^{2 l_prev} · w),  w = w_prev + g^{2 l_prev} · w.

Spikes sit at pool starts: s_start(k) = v_k − g^{l_{k−1}} · v_{k−1} (the first frame carries none).
A penalty λ > 0 is the same problem on y shifted by −λ · a with a = (−g, 1−g, …, 1−g, 1).
Pool arithmetic is float64; one workspace per call is reused for every row.

The AR(1) model rises instantaneously; a real indicator does not. For a response to one spike of
exp(−t/τ_decay) − exp(−t/τ_rise) the AR(1) inverse, s = c + τ_decay · dc/dt, is ∝ exp(−t/τ_rise):
the spike is spread over the rising phase with its centre of mass τ_rise after the onset (plus
any latency). `advance_spikes` moves every spike back by that lag (not in cindra; the
``spike_deconvolution.rise_time`` option; measured per indicator in
``benchmarks/accuracy/results/spike_timing.md``).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np


class Deconvolution(NamedTuple):
    """OASIS result for n traces of T frames.

    Attributes
    ----------
    spikes : (n, T) float32 inferred spike amplitudes (≥ 0, trace units; 0 in the first frame).
    calcium : (n, T) float32 denoised calcium c (trace units).
    """

    spikes: np.ndarray
    calcium: np.ndarray


def decay_factor(*, tau_s: float, frame_rate_hz: float) -> float:
    """Per-frame AR(1) decay g = exp(−1 / (tau · fs))."""
    return float(np.exp(-1.0 / (tau_s * frame_rate_hz)))


@numba.njit(cache=True)
def _oasis_rows(
    traces: np.ndarray,
    decay_powers: np.ndarray,
    penalty_shift: np.ndarray,
    spikes: np.ndarray,
    calcium: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Pool-adjacent-violators on every row of ``traces``; fills ``spikes`` and ``calcium``."""
    row_count, frame_count = traces.shape
    values = np.empty(frame_count, dtype=np.float64)
    weights = np.empty(frame_count, dtype=np.float64)
    starts = np.empty(frame_count, dtype=np.int64)
    lengths = np.empty(frame_count, dtype=np.int64)
    for row in range(row_count):
        pool_count = 0
        for t in range(frame_count):
            values[pool_count] = traces[row, t] - penalty_shift[t]
            weights[pool_count] = 1.0
            starts[pool_count] = t
            lengths[pool_count] = 1
            while pool_count > 0:
                previous = pool_count - 1
                decay = decay_powers[lengths[previous]]
                if values[previous] * decay <= values[pool_count]:
                    break
                merged_weight = weights[previous] + decay * decay * weights[pool_count]
                values[previous] = (weights[previous] * values[previous] + decay * weights[pool_count] * values[pool_count]) / merged_weight
                weights[previous] = merged_weight
                lengths[previous] += lengths[pool_count]
                pool_count = previous
            pool_count += 1
        spikes[row, 0] = 0.0
        for pool in range(pool_count):
            start = starts[pool]
            if pool > 0:
                spikes[row, start] = values[pool] - decay_powers[lengths[pool - 1]] * values[pool - 1]
            calcium[row, start] = values[pool]
            for offset in range(1, lengths[pool]):
                spikes[row, start + offset] = 0.0
                calcium[row, start + offset] = values[pool] * decay_powers[offset]


MAD_OF_UNIT_NORMAL = 0.6745
"""Median absolute deviation of a standard normal variable."""


def robust_standard_deviation(values: np.ndarray) -> np.ndarray:
    """(...,) standard deviation along the last axis from the median absolute deviation (/ 0.6745), in the
    values' dtype and units; NaNs are left out (a row without finite values gives NaN)."""
    median = np.nanmedian if np.isnan(values).any() else np.median
    return median(np.abs(values - median(values, axis=-1, keepdims=True)), axis=-1) / MAD_OF_UNIT_NORMAL


def difference_noise(traces: np.ndarray) -> np.ndarray:
    """(n,) float32 robust noise standard deviation per row: that of the frame-to-frame differences / √2."""
    if traces.shape[1] < 2:
        return np.zeros(len(traces), np.float32)
    return (robust_standard_deviation(np.diff(np.asarray(traces, np.float32), axis=1)) / np.sqrt(2.0)).astype(np.float32)


def deconvolve_oasis(
    traces: np.ndarray, *, tau_s: float, frame_rate_hz: float, minimum_spike_noise_multiple: float, sparsity_penalty: float = 0.0
) -> Deconvolution:
    """Non-negative AR(1) deconvolution of every row.

    Parameters
    ----------
    traces : (n, T) float32 baseline-subtracted fluorescence (an ROI block with the whole time axis).
    tau_s : indicator decay time constant in seconds.
    frame_rate_hz : per-plane sampling rate.
    sparsity_penalty : λ ≥ 0 on Σ s (trace units); 0 is cindra's and suite2p's unpenalised OASIS.
    minimum_spike_noise_multiple : spikes smaller than this multiple of the row's `difference_noise`
        are set to 0 afterwards (CaImAn's minimum spike size, s_min, in noise units); 0 keeps all.

    Returns
    -------
    Deconvolution with (n, T) float32 spikes and calcium.
    """
    traces = np.ascontiguousarray(traces, dtype=np.float32)
    if traces.ndim != 2:
        raise ValueError(f"traces must be (n, T), got shape {traces.shape}")
    frame_count = traces.shape[1]
    decay = decay_factor(tau_s=tau_s, frame_rate_hz=frame_rate_hz)
    decay_powers = decay ** np.arange(frame_count + 1, dtype=np.float64)
    penalty_shift = np.full(frame_count, sparsity_penalty * (1.0 - decay))
    if frame_count >= 2:
        penalty_shift[0] = -sparsity_penalty * decay
        penalty_shift[-1] = sparsity_penalty
    else:
        penalty_shift[:] = 0.0
    spikes = np.empty_like(traces)
    calcium = np.empty_like(traces)
    _oasis_rows(traces, decay_powers, penalty_shift, spikes, calcium)
    if minimum_spike_noise_multiple > 0:
        spikes[spikes < minimum_spike_noise_multiple * difference_noise(traces)[:, None]] = 0.0
    return Deconvolution(spikes, calcium)


def advance_spikes(spikes: np.ndarray, *, rise_time_s: float, frame_rate_hz: float) -> np.ndarray:
    """Every spike moved ``rise_time_s`` earlier: from the indicator's rising phase to its onset.

    The shift is d = rise_time_s · frame_rate_hz frames = m + φ (m whole, 0 ≤ φ < 1): the amplitude
    at frame t goes (1 − φ) to frame t − m and φ to frame t − m − 1, so each spike's centre of mass
    moves by exactly d; amplitude that would land before frame 0 is added to frame 0, so every
    row keeps its total.

    Parameters
    ----------
    spikes : (n, T) float32 spike amplitudes (`deconvolve_oasis`).
    rise_time_s : lag from a spike to the centre of its AR(1) spike mass, s (≥ 0; 0 returns a copy).
    frame_rate_hz : per-plane sampling rate.

    Returns
    -------
    (n, T) float32 advanced spikes.
    """
    spikes = np.asarray(spikes, dtype=np.float32)
    if spikes.ndim != 2:
        raise ValueError(f"spikes must be (n, T), got shape {spikes.shape}")
    if rise_time_s < 0:
        raise ValueError(f"rise_time_s must be ≥ 0, got {rise_time_s}")
    shift_frames = rise_time_s * frame_rate_hz
    whole = int(np.floor(shift_frames))
    fraction = shift_frames - whole
    frame_count = spikes.shape[1]
    advanced = np.zeros_like(spikes)
    for offset, weight in ((whole, 1.0 - fraction), (whole + 1, fraction)):
        if weight == 0.0:
            continue
        kept = max(frame_count - offset, 0)
        advanced[:, :kept] += np.float32(weight) * spikes[:, offset:]
        advanced[:, 0] += np.float32(weight) * spikes[:, : min(offset, frame_count)].sum(axis=1)
    return advanced
