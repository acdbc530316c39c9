"""ROI selection per recording before tracking (cindra §4.1): only confident, compact cells take part.

ROI i of a recording is selected when its cell probability is at least the threshold, its pixel
count is at most the maximum size and, in MROI recordings, its centroid column lies more than the
margin away from every region border (borders: the regions' sorted left edges minus the smallest).
The second channel's limits default to the first channel's (cindra's ``*_channel_2`` fields).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SelectionLimits(NamedTuple):
    """The limits applied to one channel's ROIs.

    Attributes
    ----------
    probability_threshold : minimum cell probability (kept when ≥).
    maximum_size_px : largest pixel count (kept when ≤).
    mroi_region_margin_px : minimum |centroid column − border| (kept when >), MROI only.
    """

    probability_threshold: float
    maximum_size_px: int
    mroi_region_margin_px: int


def channel_limits(
    first_channel: SelectionLimits,
    *,
    channel: int,
    probability_threshold_channel_2: float | None,
    maximum_size_channel_2_px: int | None,
    mroi_region_margin_channel_2_px: int | None,
) -> SelectionLimits:
    """The limits of channel ``channel`` (0 or 1): channel 1 takes each set ``*_channel_2`` value, else inherits.

    Parameters
    ----------
    first_channel : the limits of channel 0.
    channel : 0-based channel whose ROIs are selected.
    probability_threshold_channel_2, maximum_size_channel_2_px, mroi_region_margin_channel_2_px :
        channel 1's own values; None inherits channel 0's.
    """
    if channel not in (0, 1):
        raise ValueError(f"channel must be 0 or 1, got {channel}")
    if channel == 0:
        return first_channel
    overrides = (probability_threshold_channel_2, maximum_size_channel_2_px, mroi_region_margin_channel_2_px)
    return SelectionLimits(*(own if own is not None else inherited for own, inherited in zip(overrides, first_channel)))


def region_borders(roi_x_coordinates: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """(k,) float64 MROI region borders (px): sorted left edges minus the smallest; empty without MROI."""
    coordinates = np.sort(np.asarray(roi_x_coordinates, np.float64))
    return coordinates - coordinates[0] if coordinates.size > 1 else np.zeros(0)


def select_rois(
    cell_probability: np.ndarray,
    pixel_count: np.ndarray,
    centroids: np.ndarray,
    *,
    limits: SelectionLimits,
    region_borders_px: np.ndarray,
) -> np.ndarray:
    """Indices of the ROIs that take part in tracking.

    Parameters
    ----------
    cell_probability : (n,) classifier probability (``cell_classification[:, 1]``).
    pixel_count : (n,) pixels per ROI.
    centroids : (n, 2) (y, x) px.
    limits : the channel's `SelectionLimits`.
    region_borders_px : (k,) MROI region borders in px (`region_borders`); empty without MROI.

    Returns
    -------
    (m,) int64 ascending indices of the selected ROIs.
    """
    keep = (np.asarray(cell_probability) >= limits.probability_threshold) & (np.asarray(pixel_count) <= limits.maximum_size_px)
    borders = np.asarray(region_borders_px, np.float64)
    if borders.size:
        distance = np.abs(np.asarray(centroids, np.float64)[:, 1, None] - borders[None, :])
        keep &= np.all(distance > limits.mroi_region_margin_px, axis=1)
    return np.flatnonzero(keep).astype(np.int64)
