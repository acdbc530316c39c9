"""The indicator's decay time constant estimated from the traces (an AR(1) fit of their autocovariance).

A baseline-subtracted trace y = c + ε, with calcium c_t = g · c_{t−1} + s_t driven by spikes that are
independent from frame to frame and white noise ε, has the autocovariance

    γ(0) = σ_c² + σ_ε²,     γ(k) = σ_c² · g^k  (k ≥ 1),

so g = γ(k+1) / γ(k) at every lag k ≥ 1, whatever the noise (OASIS' and CaImAn's
``estimate_time_constant`` fit the same equations but include lag 0 and need a separate noise
estimate). Per ROI, g is the least-squares slope of γ(k+1) on γ(k) over k = 1 … L with L = the
current estimate of τ·fs in frames (at least 1), refined `DECAY_REFINEMENTS` times from
g = γ(2) / γ(1); then τ = −1 / (fs · ln g). The sample autocovariance (unbiased normalisation
1 / (T − k)) is shifted down by the variance of the sample mean, ≈ (σ_c² (1 + g) / (1 − g) + σ_ε²) / T;
each refinement adds that back with the current g, σ_c² = γ(1) / g and σ_ε² = γ(0) − σ_c² (without
it the estimate runs 5–10 % short on a minute of data). An indicator rise (AR(2)) only adds a fast
term to γ(k) at small lags, which lengthens the estimate by a few per cent.

The spikes must be uncorrelated from frame to frame for γ(k) ∝ g^k: firing whose rate drifts on
the time scale of τ (bursts, up/down states, shared drive) adds a slow component that no
second-order statistic separates from the decay, and lengthens the estimate. On the project's
simulator (log-rate modulated with 2 s smoothing) even the noise-free calcium reads 1.39 s for a
planted 1.0 s; the warning threshold (`TAU_MISMATCH_FRACTION`) is wide for that reason.

A trace whose signal-to-noise ratio σ_c / σ_ε is below ``minimum_signal_to_noise`` (silent cells,
noise ROIs, cells with a handful of events), or whose fit leaves no decay within a quarter of the
recording (g ≤ 0, or τ·fs > T / 4, the longest lag used), gets NaN. The recording's
estimate is the median over ROIs classified as cells with a finite estimate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DECAY_REFINEMENTS = 4
"""Refinements of the lag window and the mean correction (the estimate changes < 0.1 % after 3 on
the AR(1) bench)."""

MINIMUM_TRACE_FRAMES = 8
"""Traces shorter than this give NaN (too few lags for a fit)."""

TAU_MISMATCH_FRACTION = 0.3
"""The report and the status warn when ``main.tau`` differs from the estimate by more than this
fraction of the estimate."""


class RecordingDecay(NamedTuple):
    """The recording's indicator decay estimate.

    Attributes
    ----------
    tau_s : median of the per-ROI estimates of the cells used, s (None when no cell was usable).
    cell_count : cells (classified as cells, with a finite per-ROI estimate) the median is over.
    """

    tau_s: float | None
    cell_count: int


def _autocovariances(traces: np.ndarray, *, maximum_lag: int) -> np.ndarray:
    """(n, maximum_lag + 1) float64 mean-removed autocovariances, normalised by 1 / (T − k)."""
    frame_count = traces.shape[1]
    centred = (traces - traces.mean(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)
    spectrum = np.fft.rfft(centred, n=2 * frame_count, axis=1)
    lagged_sums = np.fft.irfft(spectrum * np.conj(spectrum), n=2 * frame_count, axis=1)[:, : maximum_lag + 1]
    return lagged_sums.astype(np.float64) / (frame_count - np.arange(maximum_lag + 1))


def estimate_decay_time_constants(traces: np.ndarray, *, frame_rate_hz: float, minimum_signal_to_noise: float) -> np.ndarray:
    """Per-ROI indicator decay time constant of baseline-subtracted traces (module docstring).

    Parameters
    ----------
    traces : (n, T) float32 neuropil- and baseline-subtracted fluorescence (``subtracted_fluorescence``),
        any units; an ROI block with the whole time axis.
    frame_rate_hz : per-plane sampling rate fs, Hz.
    minimum_signal_to_noise : least σ_c / σ_ε (calcium over noise standard deviation) of a trace
        that gets an estimate.

    Returns
    -------
    (n,) float32 τ in seconds; NaN where the trace is too short (< `MINIMUM_TRACE_FRAMES`), too
    noisy or not decaying within T / 4 frames. Rows are independent (equal, to float32 rounding of
    the batched FFT, under any ROI chunking).
    """
    traces = np.asarray(traces, np.float32)
    row_count, frame_count = traces.shape
    if frame_count < MINIMUM_TRACE_FRAMES or row_count == 0:
        return np.full(row_count, np.nan, np.float32)
    maximum_lag = frame_count // 4
    measured = _autocovariances(traces, maximum_lag=maximum_lag)
    rows = np.arange(row_count)
    autocovariance = measured
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = np.clip(measured[:, 2] / measured[:, 1], 1e-3, 1 - 1e-6)
        for _ in range(DECAY_REFINEMENTS):
            window = np.clip(np.round(-1.0 / np.log(decay)), 1, maximum_lag - 1).astype(np.int64)
            products = np.cumsum(autocovariance[:, 1:-1] * autocovariance[:, 2:], axis=1)
            squares = np.cumsum(autocovariance[:, 1:-1] ** 2, axis=1)
            slope = products[rows, window - 1] / squares[rows, window - 1]
            decay = np.clip(np.nan_to_num(slope, nan=1e-3), 1e-3, 1 - 1e-6)
            calcium_variance = autocovariance[:, 1] / decay
            noise_variance = np.maximum(autocovariance[:, 0] - calcium_variance, 0.0)
            mean_variance = (np.maximum(calcium_variance, 0.0) * (1 + decay) / (1 - decay) + noise_variance) / frame_count
            autocovariance = measured + mean_variance[:, None]
        calcium_variance = autocovariance[:, 1] / decay
        noise_variance = autocovariance[:, 0] - calcium_variance
        tau_frames = -1.0 / np.log(decay)
        usable = (slope > 0) & (tau_frames <= maximum_lag) & (calcium_variance > 0) & (calcium_variance >= minimum_signal_to_noise**2 * np.maximum(noise_variance, 0.0))
    return np.where(usable, tau_frames / frame_rate_hz, np.nan).astype(np.float32)


def recording_decay_time_constant(tau_s: np.ndarray, *, is_cell: np.ndarray) -> RecordingDecay:
    """The recording's decay: median of the finite per-ROI estimates of the cells.

    Parameters
    ----------
    tau_s : (n,) per-ROI estimates, s (NaN: none), from `estimate_decay_time_constants`.
    is_cell : (n,) bool, ROIs classified as cells.

    Returns
    -------
    `RecordingDecay` (tau_s None when no cell has an estimate).
    """
    values = np.asarray(tau_s, np.float64)[np.asarray(is_cell, bool)]
    values = values[np.isfinite(values)]
    return RecordingDecay(float(np.median(values)) if values.size else None, int(values.size))


def describe_indicator_tau(*, configured_tau_s: float, estimated_tau_s: float | None, cell_count: int, mismatch_fraction: float) -> str:
    """One line comparing the configured ``main.tau`` with the estimate, with a warning on a mismatch.

    Parameters
    ----------
    configured_tau_s : ``main.tau`` of the run, s.
    estimated_tau_s : the recording's estimate, s (None: not estimated).
    cell_count : cells the estimate is over.
    mismatch_fraction : warn when |configured − estimated| > mismatch_fraction · estimated.

    Returns
    -------
    e.g. "indicator tau: configured 0.40 s, estimated 1.02 s from 87 cells — differs by > 30 %: check
    main.tau against your indicator's decay (~1.02 s here; ...)".
    """
    head = f"indicator tau: configured {configured_tau_s:.2f} s"
    if estimated_tau_s is None:
        return f"{head}, not estimated (no cell with enough signal)"
    head += f", estimated {estimated_tau_s:.2f} s from {cell_count} cell{'s' if cell_count != 1 else ''}"
    percent = f"{100 * mismatch_fraction:.0f} %"
    if abs(configured_tau_s - estimated_tau_s) > mismatch_fraction * estimated_tau_s:
        return f"{head} — differs by > {percent}: check main.tau against your indicator's decay (~{estimated_tau_s:.2f} s here; the estimate reads long when firing is bursty or slowly modulated)"
    return f"{head} — agrees within {percent}"
