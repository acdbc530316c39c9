"""ROI selection for tracking (cindra §4.1): compact ROIs take part, confident cells are kept.

ROI i of a recording takes part in tracking when its pixel count is at most the maximum size and,
in MROI recordings, its centroid column lies more than the margin away from every region border
(borders: the regions' sorted left edges minus the smallest). A tracked cell is kept when at least
one of its members has a cell probability of at least the threshold (`confident_tracks`).
The second channel's limits default to the first channel's (cindra's ``*_channel_2`` fields).

Deliberate difference from cindra, which drops every ROI below the probability threshold before
tracking: a cell the classifier doubts in one session (dim, or few events there) but trusts in
another then loses every link of that session. On four-session benches (issue 24:
``benchmarks/accuracy/results/tracking.md``) ROI-level selection cost 0.27–0.53 of the link recall;
deciding per tracked cell keeps cindra's threshold and precision 1.0.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np


class SelectionLimits(NamedTuple):
    """The limits applied to one channel's ROIs.

    Attributes
    ----------
    probability_threshold : minimum cell probability of a tracked cell's most confident member (kept when ≥).
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
    pixel_count: np.ndarray,
    centroids: np.ndarray,
    *,
    limits: SelectionLimits,
    region_borders_px: np.ndarray,
) -> np.ndarray:
    """Indices of the ROIs that take part in tracking (size and MROI margin; the probability is judged per tracked cell).

    Parameters
    ----------
    pixel_count : (n,) pixels per ROI.
    centroids : (n, 2) (y, x) px.
    limits : the channel's `SelectionLimits`.
    region_borders_px : (k,) MROI region borders in px (`region_borders`); empty without MROI.

    Returns
    -------
    (m,) int64 ascending indices of the selected ROIs.
    """
    keep = np.asarray(pixel_count) <= limits.maximum_size_px
    borders = np.asarray(region_borders_px, np.float64)
    if borders.size:
        distance = np.abs(np.asarray(centroids, np.float64)[:, 1, None] - borders[None, :])
        keep &= np.all(distance > limits.mroi_region_margin_px, axis=1)
    return np.flatnonzero(keep).astype(np.int64)


def confident_tracks(track_ids: Sequence[np.ndarray], confident: Sequence[np.ndarray], *, track_count: int) -> np.ndarray:
    """(m,) bool: the tracked cells with at least one confident member.

    Parameters
    ----------
    track_ids : per recording, (n_r,) int64 track id of each selected ROI (−1 = untracked).
    confident : per recording, (n_r,) bool: the same ROIs' cell probability ≥ their channel's
        `SelectionLimits.probability_threshold`.
    track_count : m, the number of tracked cells.
    """
    kept = np.zeros(track_count, bool)
    for ids, trusted in zip(track_ids, confident):
        ids = np.asarray(ids)
        kept[ids[(ids >= 0) & np.asarray(trusted, bool)]] = True
    return kept
