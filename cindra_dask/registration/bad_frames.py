"""Bad frames and the valid crop from rigid offsets (cindra §3.2.7).

A frame is bad when the user lists it, when its offset jumps away from the running median while its
correlation drops (``hypot(dy − med dy, dx − med dx) / mean(...)`` divided by ``corr / med corr``
above 100 × threshold), or when an offset exceeds 95 % of the maximum offset
(``0.95 · maximum_offset_fraction · W`` for dx, ``… · H`` for dy). Running medians use a window of
``min(2·(T//2) − 1, 101)`` frames; at the ends of the recording they repeat the edge value
(cindra's ``scipy.signal.medfilt`` pads with zeros instead, which pulls the medians towards 0
near the ends).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Sequence

import numpy as np
from scipy.ndimage import median_filter

MEDIAN_WINDOW_FRAMES = 101
"""Longest running-median window (frames)."""
OFFSET_LIMIT_FRACTION = 0.95
"""Offsets beyond this fraction of the maximum offset are bad."""
MINIMUM_CORRELATION_RATIO = 0.1
"""Frames whose correlation peak is below this fraction of its running median are bad: blank, or
moved beyond the search range (beyond cindra, whose outlier metric alone misses such frames when
their estimated offset happens to fall near the running median; see tests/test_registration_graph.py)."""


class ValidCrop(NamedTuple):
    """Pixel ranges that hold data in every good registered frame.

    Attributes
    ----------
    y_range : (start, stop) rows.
    x_range : (start, stop) columns.
    """

    y_range: tuple[int, int]
    x_range: tuple[int, int]


def _running_median(values: np.ndarray) -> np.ndarray:
    """Median over a centred window of ``min(2·(T//2) − 1, 101)`` frames, edge values repeated."""
    count = len(values)
    window = max(1, min(2 * (count // 2) - 1, MEDIAN_WINDOW_FRAMES))
    return median_filter(values, size=window, mode="nearest")


def bad_frame_mask(
    *,
    rigid_offsets: np.ndarray,
    rigid_correlations: np.ndarray,
    frame_shape: tuple[int, int],
    maximum_offset_fraction: float,
    bad_frame_threshold: float,
    user_bad_frames: Sequence[int] = (),
) -> np.ndarray:
    """Frames to exclude (detection binning, crop, metrics).

    Parameters
    ----------
    rigid_offsets : (T, 2) px (dy, dx) of the whole recording.
    rigid_correlations : (T,) phase-correlation peaks.
    frame_shape : (H, W) px.
    maximum_offset_fraction : the registration's maximum offset fraction.
    bad_frame_threshold : outlier-metric cutoff (× 100).
    user_bad_frames : frame indices marked bad by the user (out-of-range indices are an error).

    Returns
    -------
    (T,) bool, True for bad frames.
    """
    offsets = np.asarray(rigid_offsets, np.float64)
    correlations = np.asarray(rigid_correlations, np.float64)
    deviation = np.hypot(offsets[:, 0] - _running_median(offsets[:, 0]), offsets[:, 1] - _running_median(offsets[:, 1]))
    if deviation.mean() > 0:
        deviation /= deviation.mean()
    median_correlation = _running_median(correlations)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative_correlation = np.maximum(0.0, correlations / median_correlation)
        metric = deviation / relative_correlation
    bad = np.nan_to_num(metric, nan=0.0, posinf=np.inf) > 100 * bad_frame_threshold
    bad |= relative_correlation < MINIMUM_CORRELATION_RATIO
    bad |= np.abs(offsets[:, 0]) > OFFSET_LIMIT_FRACTION * maximum_offset_fraction * frame_shape[0]
    bad |= np.abs(offsets[:, 1]) > OFFSET_LIMIT_FRACTION * maximum_offset_fraction * frame_shape[1]
    user = np.asarray(user_bad_frames, np.int64).ravel()
    if user.size and (user.min() < 0 or user.max() >= len(bad)):
        raise ValueError(f"user bad frames must lie in [0, {len(bad)}), got {user.min()}…{user.max()}")
    bad[user] = True
    return bad


def valid_crop(*, rigid_offsets: np.ndarray, bad_frames: np.ndarray, frame_shape: tuple[int, int]) -> ValidCrop:
    """Symmetric crop by the largest rigid offset of the good frames (all frames if half are bad).

    Parameters
    ----------
    rigid_offsets : (T, 2) px.
    bad_frames : (T,) bool.
    frame_shape : (H, W) px.
    """
    offsets = np.abs(np.asarray(rigid_offsets, np.float64))
    good = ~np.asarray(bad_frames, bool)
    if good.mean() <= 0.5:
        warnings.warn(f"{int((~good).sum())} of {len(good)} frames are bad; the valid crop uses all frames", stacklevel=2)
        good = np.ones_like(good)
    margins = [min(math.ceil(offsets[good, axis].max()), (frame_shape[axis] - 1) // 2) if good.any() else 0 for axis in (0, 1)]
    return ValidCrop((margins[0], frame_shape[0] - margins[0]), (margins[1], frame_shape[1] - margins[1]))
