"""Neuropil subtraction, slow baselines, dF/F and trace skewness on ROI blocks (cindra §3.6).

Every function works on an (n_rois, T) block that holds the whole time axis (a Dask ROI chunk); rows
are independent except for the ``constant`` baseline, which cindra takes as **one scalar for all ROIs
and frames** (the minimum of the Gaussian-smoothed traces). On ROI chunks the graph takes the minimum
of `smoothed_minima` over all chunks and passes it as ``constant_baseline``; without it the block's
own minimum is used (identical to cindra when the block holds every ROI).

Baselines (fs = per-plane rate in Hz):

* ``maximin``: Gaussian along time (σ = ``baseline_sigma_frames``, truncate 3) → minimum filter →
  maximum filter, both of window int(``baseline_window_s`` · fs) frames made odd, mode "nearest".
* ``constant``: Gaussian (σ = ``baseline_sigma_frames``, scipy's default truncate 4), then the global
  minimum (a scalar).
* ``constant_percentile``: each ROI's ``baseline_percentile`` percentile over time.

dF/F (`neuropil_corrected_delta_f_over_f`): (F_c − F0) / F0 with F_c = F − c·Fneu and F0 the same
baseline of F_c, taken per ROI for every method (``constant``: the ROI's own smoothed minimum, not the
global scalar); NaN where F0 ≤ 0.

Neuropil coefficient per ROI (not in cindra, which uses one fixed c): F is regressed on Fneu over
the ROI's quiet frames, those with the lowest ``quiet_fraction`` of F − c·Fneu (the cell at rest,
so what is left of F follows the neuropil), and c is updated until it stops changing. Cell
transients only raise F − c·Fneu, so they stay out of the fit; the true contamination ratio is a
fixed point of the iteration when the cell's activity is independent of the neuropil's.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d, minimum_filter1d


BASELINE_METHODS = ("maximin", "constant", "constant_percentile")
"""cindra's baseline methods (the values of ``spike_deconvolution.baseline_method``)."""
MAXIMIN_GAUSSIAN_TRUNCATE = 3.0
"""Gaussian truncation (in σ) of the maximin pre-smoothing."""

CONSTANT_GAUSSIAN_TRUNCATE = 4.0
"""Gaussian truncation (in σ) of the constant-baseline pre-smoothing (scipy's default)."""

NEUROPIL_COEFFICIENT_RANGE = (0.0, 1.5)
"""Bounds of an estimated neuropil coefficient (a ratio above 1.5 is not physical contamination)."""

NEUROPIL_COEFFICIENT_TOLERANCE = 1e-3
"""The quiet-frame iteration stops when c changes by less than this."""

NEUROPIL_COEFFICIENT_MAXIMUM_ITERATIONS = 50
"""Quiet-frame iterations after which the last c is kept."""


def subtract_neuropil(cell_fluorescence: np.ndarray, neuropil_fluorescence: np.ndarray, *, neuropil_coefficient: float | np.ndarray) -> np.ndarray:
    """F − c · Fneu.

    Parameters
    ----------
    cell_fluorescence, neuropil_fluorescence : (n, T) float32.
    neuropil_coefficient : c, one for all rows (cindra default 0.7) or (n,) one per row.

    Returns
    -------
    (n, T) float32 neuropil-corrected fluorescence.
    """
    coefficient = np.asarray(neuropil_coefficient, np.float32)
    if coefficient.ndim == 1:
        coefficient = coefficient[:, None]
    return np.asarray(cell_fluorescence, np.float32) - coefficient * np.asarray(neuropil_fluorescence, np.float32)


@numba.njit(cache=True)
def _quiet_frame_coefficients(
    cell: np.ndarray, neuropil: np.ndarray, initial: float, quiet_count: int, lowest: float, highest: float, tolerance: float, maximum_iterations: int, coefficients: np.ndarray
) -> None:  # pragma: no cover - numba
    """coefficients[row] = slope of F on Fneu over the ``quiet_count`` frames of lowest F − c·Fneu, iterated from ``initial``.

    The threshold, the ``quiet_count``-th smallest residual, comes from a quickselect written out here:
    ``np.partition`` gives the same value but takes numba about 10 s to compile (of the kernels' 50 s).
    """
    row_count, frame_count = cell.shape
    residual = np.empty(frame_count, dtype=np.float64)
    selected = np.empty(frame_count, dtype=np.float64)
    rank = quiet_count - 1
    for row in range(row_count):
        coefficient = initial
        for _ in range(maximum_iterations):
            for t in range(frame_count):
                residual[t] = cell[row, t] - coefficient * neuropil[row, t]
                selected[t] = residual[t]
            low, high = 0, frame_count - 1
            while low < high:  # Hoare quickselect: selected[rank] becomes the rank-th smallest
                pivot = selected[(low + high) // 2]
                left, right = low, high
                while left <= right:
                    while selected[left] < pivot:
                        left += 1
                    while selected[right] > pivot:
                        right -= 1
                    if left <= right:
                        selected[left], selected[right] = selected[right], selected[left]
                        left += 1
                        right -= 1
                if rank <= right:
                    high = right
                elif rank >= left:
                    low = left
                else:
                    break
            threshold = selected[rank]
            cell_sum, neuropil_sum, quiet = 0.0, 0.0, 0
            for t in range(frame_count):
                if residual[t] <= threshold:
                    cell_sum += cell[row, t]
                    neuropil_sum += neuropil[row, t]
                    quiet += 1
            cell_mean, neuropil_mean = cell_sum / quiet, neuropil_sum / quiet
            covariance, variance = 0.0, 0.0
            for t in range(frame_count):
                if residual[t] <= threshold:
                    neuropil_deviation = neuropil[row, t] - neuropil_mean
                    covariance += (cell[row, t] - cell_mean) * neuropil_deviation
                    variance += neuropil_deviation * neuropil_deviation
            if variance <= 0.0:  # flat neuropil (none extracted): nothing to estimate
                coefficient = initial
                break
            updated = min(max(covariance / variance, lowest), highest)
            converged = abs(updated - coefficient) < tolerance
            coefficient = updated
            if converged:
                break
        coefficients[row] = coefficient


def estimate_neuropil_coefficients(
    cell_fluorescence: np.ndarray, neuropil_fluorescence: np.ndarray, *, initial_coefficient: float, quiet_fraction: float
) -> np.ndarray:
    """Per-ROI neuropil coefficient from the ROI's quiet frames (see the module docstring).

    Parameters
    ----------
    cell_fluorescence, neuropil_fluorescence : (n, T) float32 (ROI block with the whole time axis).
    initial_coefficient : c the iteration starts from, and the result for a row whose neuropil is
        constant over its quiet frames (e.g. all zero).
    quiet_fraction : share of the frames in (0, 1] taken as quiet, ⌈quiet_fraction · T⌉ frames, at least 2.

    Returns
    -------
    (n,) float32 coefficients within `NEUROPIL_COEFFICIENT_RANGE` (dimensionless, F units per Fneu unit).
    """
    cell = np.ascontiguousarray(cell_fluorescence, dtype=np.float32)
    neuropil = np.ascontiguousarray(neuropil_fluorescence, dtype=np.float32)
    lowest, highest = NEUROPIL_COEFFICIENT_RANGE
    initial = min(max(float(initial_coefficient), lowest), highest)
    frame_count = cell.shape[1]
    coefficients = np.full(cell.shape[0], initial, dtype=np.float64)
    if frame_count >= 2:
        quiet_count = min(frame_count, max(2, int(np.ceil(quiet_fraction * frame_count))))
        _quiet_frame_coefficients(cell, neuropil, initial, quiet_count, lowest, highest, NEUROPIL_COEFFICIENT_TOLERANCE, NEUROPIL_COEFFICIENT_MAXIMUM_ITERATIONS, coefficients)
    return coefficients.astype(np.float32)


def neuropil_corrected_skewness(cell_fluorescence: np.ndarray, neuropil_fluorescence: np.ndarray, *, neuropil_coefficient: float | np.ndarray) -> np.ndarray:
    """Skewness over time of F − c · Fneu per ROI (a classifier feature).

    Parameters
    ----------
    cell_fluorescence, neuropil_fluorescence : (n, T) float32.
    neuropil_coefficient : c, scalar or (n,) per row.

    Returns
    -------
    (n,) float32 biased estimator m3 / m2^1.5 of the central moments, as ``scipy.stats.skew``
    (NaN for a constant trace: m2 ≤ (ε·mean)²). Written with numpy: importing scipy.stats costs a
    fresh worker 0.3 s.
    """
    corrected = subtract_neuropil(cell_fluorescence, neuropil_fluorescence, neuropil_coefficient=neuropil_coefficient).astype(np.float64)
    mean = corrected.mean(axis=1, keepdims=True)
    centered = corrected - mean
    squared = centered * centered
    second_moment = squared.mean(axis=1)
    third_moment = (squared * centered).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        skewness = np.where(second_moment <= (np.finfo(np.float64).eps * mean[:, 0]) ** 2, np.nan, third_moment / second_moment**1.5)
    return skewness.astype(np.float32)


def _smooth(traces: np.ndarray, sigma_frames: float, truncate: float) -> np.ndarray:
    """Gaussian along time (axis 1); σ = 0 returns a float32 copy."""
    traces = np.asarray(traces, np.float32)
    if sigma_frames <= 0:
        return traces.copy()
    return gaussian_filter1d(traces, sigma_frames, axis=1, truncate=truncate)


def maximin_window_frames(*, baseline_window_s: float, frame_rate_hz: float) -> int:
    """Maximin filter window: int(window · fs) frames, made odd."""
    window_frames = int(baseline_window_s * frame_rate_hz)
    return window_frames + 1 if window_frames % 2 == 0 else window_frames


def maximin_baseline(traces: np.ndarray, *, baseline_window_s: float, baseline_sigma_frames: float, frame_rate_hz: float) -> np.ndarray:
    """Maximin baseline of every row.

    Parameters
    ----------
    traces : (n, T) float32 (neuropil-corrected fluorescence).
    baseline_window_s : min/max filter window in seconds.
    baseline_sigma_frames : Gaussian pre-smoothing σ in frames (0: none).
    frame_rate_hz : per-plane sampling rate.

    Returns
    -------
    (n, T) float32 baseline.
    """
    window_frames = maximin_window_frames(baseline_window_s=baseline_window_s, frame_rate_hz=frame_rate_hz)
    smoothed = _smooth(traces, baseline_sigma_frames, MAXIMIN_GAUSSIAN_TRUNCATE)
    lower = minimum_filter1d(smoothed, window_frames, axis=1, mode="nearest")
    return maximum_filter1d(lower, window_frames, axis=1, mode="nearest")


def smoothed_minima(traces: np.ndarray, *, baseline_sigma_frames: float) -> np.ndarray:
    """(n,) float32 minimum over time of each Gaussian-smoothed row; their minimum is the ``constant`` baseline."""
    return _smooth(traces, baseline_sigma_frames, CONSTANT_GAUSSIAN_TRUNCATE).min(axis=1)


def percentile_baseline(traces: np.ndarray, *, baseline_percentile: float) -> np.ndarray:
    """(n, 1) float32 per-ROI percentile over time (the ``constant_percentile`` baseline)."""
    return np.percentile(np.asarray(traces, np.float32), baseline_percentile, axis=1, keepdims=True).astype(np.float32)


def subtract_baseline(
    traces: np.ndarray,
    *,
    baseline_method: str,
    baseline_window_s: float,
    baseline_sigma_frames: float,
    baseline_percentile: float,
    frame_rate_hz: float,
    constant_baseline: float | None = None,
) -> np.ndarray:
    """Baseline-subtracted fluorescence (cindra's ``subtracted_fluorescence``, the OASIS input).

    Parameters
    ----------
    traces : (n, T) float32 neuropil-corrected fluorescence (ROI block with the whole time axis).
    baseline_method : "maximin", "constant" or "constant_percentile".
    baseline_window_s, baseline_sigma_frames, baseline_percentile, frame_rate_hz : cindra's
        ``spike_deconvolution`` options (window in s, σ in frames, percentile in [0, 100], fs in Hz).
    constant_baseline : the global scalar for ``constant`` (min of `smoothed_minima` over every ROI
        chunk); None takes this block's minimum.

    Returns
    -------
    (n, T) float32 traces − baseline.
    """
    traces = np.asarray(traces, np.float32)
    if baseline_method not in BASELINE_METHODS:
        raise ValueError(f"baseline_method must be one of {', '.join(BASELINE_METHODS)}, got {baseline_method!r}")
    if baseline_method == "maximin":
        baseline = maximin_baseline(traces, baseline_window_s=baseline_window_s, baseline_sigma_frames=baseline_sigma_frames, frame_rate_hz=frame_rate_hz)
    elif baseline_method == "constant":
        if constant_baseline is None:
            constant_baseline = float(smoothed_minima(traces, baseline_sigma_frames=baseline_sigma_frames).min()) if traces.size else 0.0
        baseline = np.float32(constant_baseline)
    else:
        baseline = percentile_baseline(traces, baseline_percentile=baseline_percentile)
    return (traces - baseline).astype(np.float32, copy=False)


def delta_f_over_f(traces: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """(F − F0) / F0, NaN where F0 ≤ 0 (a ratio to a non-positive baseline has no meaning).

    Parameters
    ----------
    traces : (n, T) float32 fluorescence.
    baseline : F0, broadcastable to ``traces`` ((n, T), (n, 1) or scalar), same units.

    Returns
    -------
    (n, T) float32 dimensionless dF/F.
    """
    traces = np.asarray(traces, np.float32)
    baseline = np.broadcast_to(np.asarray(baseline, np.float32), traces.shape)
    ratio = np.full(traces.shape, np.nan, np.float32)
    positive = baseline > 0
    np.divide(traces - baseline, baseline, out=ratio, where=positive)
    return ratio


def delta_f_over_f_baseline(
    traces: np.ndarray, *, baseline_method: str, baseline_window_s: float, baseline_sigma_frames: float, baseline_percentile: float, frame_rate_hz: float
) -> np.ndarray:
    """F0 of every row for dF/F: the ``baseline_method`` baseline, always per ROI.

    ``maximin`` and ``constant_percentile`` are the baselines `subtract_baseline` removes;
    ``constant`` is each row's minimum of its Gaussian-smoothed trace (`smoothed_minima`), not the
    one scalar over all ROIs that `subtract_baseline` uses, because dividing every ROI by the
    dimmest ROI's baseline would not give a ratio to the ROI's own resting fluorescence.

    Parameters
    ----------
    traces : (n, T) float32 neuropil-corrected fluorescence (ROI block with the whole time axis).
    baseline_method, baseline_window_s, baseline_sigma_frames, baseline_percentile, frame_rate_hz :
        as `subtract_baseline`.

    Returns
    -------
    (n, T) (maximin) or (n, 1) float32 F0, in the units of ``traces``.
    """
    traces = np.asarray(traces, np.float32)
    if baseline_method not in BASELINE_METHODS:
        raise ValueError(f"baseline_method must be one of {', '.join(BASELINE_METHODS)}, got {baseline_method!r}")
    if baseline_method == "maximin":
        return maximin_baseline(traces, baseline_window_s=baseline_window_s, baseline_sigma_frames=baseline_sigma_frames, frame_rate_hz=frame_rate_hz)
    if baseline_method == "constant":
        return smoothed_minima(traces, baseline_sigma_frames=baseline_sigma_frames)[:, None]
    return percentile_baseline(traces, baseline_percentile=baseline_percentile)


def neuropil_corrected_delta_f_over_f(
    cell_fluorescence: np.ndarray,
    neuropil_fluorescence: np.ndarray,
    *,
    neuropil_coefficient: float | np.ndarray,
    baseline_method: str,
    baseline_window_s: float,
    baseline_sigma_frames: float,
    baseline_percentile: float,
    frame_rate_hz: float,
) -> np.ndarray:
    """dF/F of every ROI: (F_c − F0) / F0 with F_c = F − c · Fneu and F0 = `delta_f_over_f_baseline` of F_c.

    Parameters
    ----------
    cell_fluorescence, neuropil_fluorescence : (n, T) float32 (ROI block with the whole time axis).
    neuropil_coefficient : c, scalar or (n,) per row.
    baseline_method, baseline_window_s, baseline_sigma_frames, baseline_percentile, frame_rate_hz :
        as `subtract_baseline` (``spike_deconvolution``'s options).

    Returns
    -------
    (n, T) float32 dimensionless dF/F; NaN where F0 ≤ 0 (neuropil subtraction left no positive
    resting fluorescence).
    """
    corrected = subtract_neuropil(cell_fluorescence, neuropil_fluorescence, neuropil_coefficient=neuropil_coefficient)
    baseline = delta_f_over_f_baseline(
        corrected,
        baseline_method=baseline_method,
        baseline_window_s=baseline_window_s,
        baseline_sigma_frames=baseline_sigma_frames,
        baseline_percentile=baseline_percentile,
        frame_rate_hz=frame_rate_hz,
    )
    return delta_f_over_f(corrected, baseline)
