"""Clustering of ROIs registered into the common space into cells tracked across recordings (cindra §4.3).

All recordings' deformed masks are pooled. The common space is tiled row-major by square bins of
``step_px``; a bin collects the still unassigned ROIs whose centroid lies strictly inside the bin
grown by ``bin_margin_px`` on every side. Inside a bin, pairs from different recordings whose
centroids are closer than ``maximum_distance_px`` get the Jaccard distance of their pixel sets
(1 − |A∩B| / |A∪B|, weights ignored); every other pair gets 10 000. Complete linkage cut at
``threshold`` (``scipy.cluster.hierarchy``, criterion "distance") then groups at most one ROI per
recording. A cluster becomes a tracked cell when it spans at least
``ceil(mask_prevalence_percent / 100 · N)`` recordings (at least 1) and its mean centroid lies in the
bin itself (so each cluster is decided by one bin); its members are then assigned and skipped by
later bins.

Template of a cell: the pixels held by at least ``pixel_prevalence_percent`` % of its members, each
weighted by the mean weight of the members holding it. Templates with fewer than
``minimum_size_px`` pixels that no other template covers are dropped (their members become
untracked); with ``minimum_size_px`` None the limit is `MINIMUM_SIZE_MEDIAN_FRACTION` of the median
template's pixel count (not in cindra, whose fixed 25 px suits its 12-px cells of about 110 px but
drops a quarter of the links between one-photon cells of about 46 px). Track ids number the kept templates 0, 1, … in the order the bins found them.

Confidence of a tracked cell (not in cindra): a silhouette on Jaccard distances,
``max(0, 1 − d_in / d_out)``, where ``d_in`` is the largest distance between two members (the
complete-linkage height of the cluster) and ``d_out`` the smallest distance from a member to an ROI
outside the cell from another recording than that member (1 when none overlaps). It is near
1 − (worst pairwise IoU distance) for an isolated, consistently detected cell, falls towards 0 when
a competing ROI overlaps a member about as well as the members overlap each other, and is 0 for a
single-recording cell (no cross-recording evidence).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import sparse
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from cindra_dask.detection.stats import median_centroids
from cindra_dask.rois import RaggedRois, binary_mask_matrix

MINIMUM_SIZE_MEDIAN_FRACTION = 0.25
"""Share of the median template's pixel count below which a template's uncovered pixels drop it (``minimum_size_px`` None)."""

UNLINKED_DISTANCE = 10_000.0
"""Distance of pairs that must never share a cluster (same recording, or centroids too far apart)."""

UNTRACKED = -1
"""Track id of an ROI that belongs to no tracked cell."""


class Tracking(NamedTuple):
    """Cells tracked across N recordings.

    Attributes
    ----------
    templates : m template masks in the common space.
    recording_count : (m,) int32 recordings (members) per cell.
    confidence : (m,) float32 in [0, 1] (see the module docstring).
    track_ids : per recording, (n_r,) int64 track id of each of its ROIs (`UNTRACKED` = −1).
    """

    templates: RaggedRois
    recording_count: np.ndarray
    confidence: np.ndarray
    track_ids: tuple[np.ndarray, ...]


class _PooledRois(NamedTuple):
    """Every recording's ROIs in one list, with what clustering needs about them."""

    rois: RaggedRois
    recording: np.ndarray  # (n,) int64
    centroids: np.ndarray  # (n, 2) float64
    intersections: sparse.csr_matrix  # (n, n) pixel counts of A ∩ B
    sizes: np.ndarray  # (n,) float64


def _pool(rois_per_recording: Sequence[RaggedRois], frame_shape: tuple[int, int]) -> _PooledRois:
    """Pool the recordings' ROIs; centroids are the pixels nearest the coordinate medians."""
    masks = [rois.roi(index) for rois in rois_per_recording for index in range(rois.count)]
    pooled = RaggedRois.from_masks(masks)
    recording = np.repeat(np.arange(len(rois_per_recording)), [rois.count for rois in rois_per_recording]).astype(np.int64)
    binary = binary_mask_matrix(pooled, frame_shape=frame_shape)
    return _PooledRois(pooled, recording, median_centroids(pooled).astype(np.float64), (binary @ binary.T).tocsr(), np.asarray(binary.sum(axis=1)).ravel())


def _jaccard_distances(pool: _PooledRois, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(len(rows), len(columns)) float64 Jaccard distances between pooled ROIs."""
    intersection = pool.intersections[rows][:, columns].toarray()
    union = pool.sizes[rows, None] + pool.sizes[None, columns] - intersection
    return 1.0 - np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _bin_clusters(pool: _PooledRois, members: np.ndarray, *, threshold: float, maximum_distance_px: float) -> list[np.ndarray]:
    """Complete-linkage clusters (arrays of pooled indices) of one bin's ROIs."""
    if members.size == 1:
        return [members]
    centroids = pool.centroids[members]
    recordings = pool.recording[members]
    separation = np.hypot(centroids[:, None, 0] - centroids[None, :, 0], centroids[:, None, 1] - centroids[None, :, 1])
    candidate = (separation < maximum_distance_px) & (recordings[:, None] != recordings[None, :])
    distances = np.where(candidate, _jaccard_distances(pool, members, members), UNLINKED_DISTANCE)
    np.fill_diagonal(distances, 0.0)
    labels = fcluster(linkage(squareform(distances, checks=False), method="complete"), t=threshold, criterion="distance")
    order = np.argsort(labels, kind="stable")
    return np.split(members[order], np.flatnonzero(np.diff(labels[order])) + 1)


def _template(pool: _PooledRois, members: np.ndarray, *, frame_width: int, pixel_prevalence_percent: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ypix, xpix, lam) of a cell's template."""
    masks = [pool.rois.roi(int(member)) for member in members]
    pixels = np.concatenate([ypix.astype(np.int64) * frame_width + xpix for ypix, xpix, _ in masks])
    weights = np.concatenate([lam for _, _, lam in masks]).astype(np.float64)
    unique, inverse, counts = np.unique(pixels, return_inverse=True, return_counts=True)
    weight_sums = np.bincount(inverse, weights=weights, minlength=unique.size)
    keep = counts >= pixel_prevalence_percent / 100.0 * members.size
    return unique[keep] // frame_width, unique[keep] % frame_width, (weight_sums[keep] / counts[keep]).astype(np.float32)


def _confidence(pool: _PooledRois, members: np.ndarray) -> float:
    """Silhouette ``max(0, 1 − d_in / d_out)`` of one cell (0 for a single member)."""
    if members.size < 2:
        return 0.0
    inside = _jaccard_distances(pool, members, members).max()
    overlapping = np.unique(pool.intersections[members].indices)
    outside = np.setdiff1d(overlapping, members)
    nearest = 1.0
    if outside.size:
        distances = _jaccard_distances(pool, members, outside)
        rival = pool.recording[members][:, None] != pool.recording[outside][None, :]
        if rival.any():
            nearest = float(distances[rival].min())
    return max(0.0, 1.0 - inside / nearest) if nearest > 0 else 0.0


def _uncovered_pixel_counts(templates: RaggedRois, frame_shape: tuple[int, int]) -> np.ndarray:
    """(m,) pixels of each template that no other template holds."""
    pixels = templates.ypix.astype(np.int64) * frame_shape[1] + templates.xpix
    owners = np.bincount(pixels, minlength=frame_shape[0] * frame_shape[1])
    holder = np.repeat(np.arange(templates.count), templates.pixel_counts())
    return np.bincount(holder, weights=(owners[pixels] == 1), minlength=templates.count).astype(np.int64)


def keep_tracks(tracking: Tracking, keep: np.ndarray) -> Tracking:
    """The tracked cells where ``keep`` (m,) bool is true, renumbered 0, 1, …; the others' ROIs become untracked."""
    keep = np.asarray(keep, bool)
    new_ids = np.full(keep.size + 1, UNTRACKED, np.int64)  # last entry maps UNTRACKED (−1) to itself
    new_ids[np.flatnonzero(keep)] = np.arange(int(keep.sum()))
    kept = np.flatnonzero(keep)
    return Tracking(
        templates=tracking.templates.select(kept),
        recording_count=tracking.recording_count[kept],
        confidence=tracking.confidence[kept],
        track_ids=tuple(new_ids[ids] for ids in tracking.track_ids),
    )


def track_rois(
    rois_per_recording: Sequence[RaggedRois],
    *,
    frame_shape: tuple[int, int],
    threshold: float,
    mask_prevalence_percent: float,
    pixel_prevalence_percent: float,
    step_px: int,
    bin_margin_px: int,
    maximum_distance_px: float,
    minimum_size_px: int | None,
) -> Tracking:
    """Tracked cells from the ROIs of N recordings registered into the common space.

    Parameters
    ----------
    rois_per_recording : N ragged mask sets on the common (H, W) grid (each ROI's pixels unique).
    frame_shape : (H, W) of the common space.
    threshold : Jaccard-distance cut of the complete linkage, in [0, 1].
    mask_prevalence_percent : minimum percentage of the recordings a cell spans.
    pixel_prevalence_percent : minimum percentage of a cell's members holding a template pixel.
    step_px : bin side, px.
    bin_margin_px : margin around each bin within which centroids are collected, px.
    maximum_distance_px : largest centroid distance of a candidate pair, px.
    minimum_size_px : smallest number of template pixels no other template covers; None:
        `MINIMUM_SIZE_MEDIAN_FRACTION` of the median template's pixel count.

    Returns
    -------
    Tracking (see the module docstring for the algorithm and the confidence).
    """
    recording_count = len(rois_per_recording)
    pool = _pool(rois_per_recording, frame_shape)
    required = max(1, math.ceil(mask_prevalence_percent / 100.0 * recording_count))
    pooled_ids = np.full(pool.rois.count, UNTRACKED, np.int64)
    masks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    spans: list[int] = []
    confidences: list[float] = []
    height, width = frame_shape
    centroids = pool.centroids
    for top in range(0, height, step_px):
        for left in range(0, width, step_px):
            collected = (
                (pooled_ids == UNTRACKED)
                & (centroids[:, 0] > top - bin_margin_px)
                & (centroids[:, 0] < top + step_px + bin_margin_px)
                & (centroids[:, 1] > left - bin_margin_px)
                & (centroids[:, 1] < left + step_px + bin_margin_px)
            )
            members_of_bin = np.flatnonzero(collected)
            if members_of_bin.size == 0:
                continue
            for members in _bin_clusters(pool, members_of_bin, threshold=threshold, maximum_distance_px=maximum_distance_px):
                centre = centroids[members].mean(axis=0)
                owned = top <= centre[0] < top + step_px and left <= centre[1] < left + step_px
                if not owned or np.unique(pool.recording[members]).size < required:
                    continue
                pooled_ids[members] = len(masks)
                masks.append(_template(pool, members, frame_width=width, pixel_prevalence_percent=pixel_prevalence_percent))
                spans.append(members.size)
                confidences.append(_confidence(pool, members))
    boundaries = np.cumsum([rois.count for rois in rois_per_recording])[:-1]
    tracking = Tracking(
        templates=RaggedRois.from_masks(masks),
        recording_count=np.asarray(spans, np.int32),
        confidence=np.asarray(confidences, np.float32),
        track_ids=tuple(np.split(pooled_ids, boundaries)),
    )
    return keep_tracks(tracking, _uncovered_pixel_counts(tracking.templates, frame_shape) >= _minimum_uncovered_px(tracking.templates, minimum_size_px))


def _minimum_uncovered_px(templates: RaggedRois, minimum_size_px: int | None) -> float:
    """The uncovered-pixel limit of `track_rois`: ``minimum_size_px``, or when None
    `MINIMUM_SIZE_MEDIAN_FRACTION` × the median template pixel count (1 when there is no template)."""
    if minimum_size_px is not None:
        return float(minimum_size_px)
    counts = templates.pixel_counts()
    return MINIMUM_SIZE_MEDIAN_FRACTION * float(np.median(counts)) if counts.size else 1.0
