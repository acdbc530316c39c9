"""Component fluorescence, detrending and dF/F of CNMF-E traces (the miniscope pipeline's preprocessing).

The miniscope pipeline detrends and normalises its movie before CNMF-E; here the same operations run on
each component's fluorescence after it, F_k(t) = b_k + (C + YrA)_k(t): its CNMF-E trace (activity plus
its share of the residual, in the units of the movie for a unit-L2-norm footprint a_k) on top of
b_k = a_kᵀ b0, the mean ring-model background seen through the footprint (so F_k is a_kᵀ Y for an
isolated component and F0 is the resting fluorescence under the cell, as CaImAn's ``detrend_df_f``
takes F0 = baseline of F + background).

Detrending (``detrend_method``):

* ``linear``: each row minus its least-squares line (``scipy.signal.detrend``), plus the row's mean,
  so the level that dF/F divides by stays (the source detrends a movie and then shifts it positive).
* ``median``: the source's photobleaching correction: the mean over rows m(t) minus its median over
  time, subtracted from every row (the source takes the mean over pixels of its movie).

dF/F (CaImAn's ``movie.computeDFF``, which the source calls): the baseline F0 is the ``quantile_min``
percentile of each block of ``secs_window`` · fs frames (the trace reflected at both ends to whole
blocks), linearly interpolated between block centres (constant beyond the first and last);
``delta_f_over_f`` is (F − F0) / F0 (NaN where F0 ≤ 0), ``delta_f_over_sqrt_f`` (F − F0) / √F0.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import detrend

from cindra_dask.extraction.baseline import delta_f_over_f
from cindra_dask.rois import RaggedRois

DETREND_METHODS = ("linear", "median")
"""The source's detrending methods (``miniscope_analysis.detrend_method``; None: no detrending)."""
DF_OVER_F_METHODS = ("delta_f_over_f", "delta_f_over_sqrt_f")
"""The source's normalisations (``miniscope_analysis.df_over_f_method``)."""


def footprint_background(footprints: RaggedRois, background_mean: np.ndarray) -> np.ndarray:
    """(n,) float32 b_k = a_kᵀ b0: the mean background under each footprint.

    Parameters
    ----------
    footprints : n footprints (``lam`` the weights, unit L2 norm) in frame coordinates.
    background_mean : (Ly, Lx) float32 b0, the ring model's mean background (movie units).
    """
    weighted = footprints.lam.astype(np.float64) * background_mean[footprints.ypix, footprints.xpix]
    owners = np.repeat(np.arange(footprints.count), np.diff(footprints.pixel_offsets))
    return np.bincount(owners, weights=weighted, minlength=footprints.count).astype(np.float32)


def detrend_traces(traces: np.ndarray, *, detrend_method: str | None, mean_trace: np.ndarray) -> np.ndarray:
    """(n, T) float32 ``traces`` with their slow trend removed (module docstring); None returns a copy.

    Parameters
    ----------
    traces : (n, T) float32 fluorescence (a block of rows with the whole time axis).
    detrend_method : "linear", "median" or None.
    mean_trace : (T,) mean over every row of the plane, not only this block's (used by ``median``).
    """
    traces = np.asarray(traces, np.float32)
    if detrend_method is None:
        return traces.copy()
    if detrend_method == "linear":
        return (detrend(traces, axis=1, type="linear") + traces.mean(axis=1, keepdims=True)).astype(np.float32)
    if detrend_method == "median":
        mean_trace = np.asarray(mean_trace, np.float64)
        return (traces - (mean_trace - np.median(mean_trace))[None, :]).astype(np.float32)
    raise ValueError(f"detrend_method must be one of {', '.join(DETREND_METHODS)} or None, got {detrend_method!r}")


def windowed_percentile_baseline(traces: np.ndarray, *, window_frames: int, quantile_min: float) -> np.ndarray:
    """(n, T) float32 F0: the ``quantile_min`` percentile of blocks of ``window_frames`` frames, interpolated.

    Parameters
    ----------
    traces : (n, T) float32 fluorescence.
    window_frames : block length (≥ 1; CaImAn's int(secs_window · fs)); the trace is reflected at both
        ends to a whole number of blocks, as CaImAn pads.
    quantile_min : percentile in [0, 100].
    """
    traces = np.asarray(traces, np.float32)
    frame_count = traces.shape[1]
    window_frames = max(1, min(int(window_frames), frame_count))
    missing = -frame_count % window_frames
    before = missing // 2
    padded = np.pad(traces, ((0, 0), (before, missing - before)), mode="reflect" if frame_count > 1 else "edge")
    blocks = np.percentile(padded.reshape(len(traces), -1, window_frames), quantile_min, axis=2)
    centres = np.arange(blocks.shape[1]) * window_frames + (window_frames - 1) / 2.0 - before
    frames = np.arange(frame_count)
    return np.stack([np.interp(frames, centres, row) for row in blocks]).astype(np.float32) if len(traces) else np.zeros_like(traces)


def miniscope_delta_f_over_f(traces: np.ndarray, *, window_frames: int, quantile_min: float, df_over_f_method: str) -> np.ndarray:
    """(n, T) float32 dF/F or dF/√F of ``traces`` against `windowed_percentile_baseline` (NaN where F0 ≤ 0)."""
    baseline = windowed_percentile_baseline(traces, window_frames=window_frames, quantile_min=quantile_min)
    if df_over_f_method == "delta_f_over_f":
        return delta_f_over_f(traces, baseline)
    if df_over_f_method == "delta_f_over_sqrt_f":
        return delta_f_over_f(traces, baseline) * np.sqrt(np.where(baseline > 0, baseline, np.nan)).astype(np.float32)
    raise ValueError(f"df_over_f_method must be one of {', '.join(DF_OVER_F_METHODS)}, got {df_over_f_method!r}")
