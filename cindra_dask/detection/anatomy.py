"""Anatomical soma detection on the mean image and its merge with the activity ROIs (not in cindra).

Sparse detection finds a cell only when it fires; a silent soma is visible in the mean image alone.
Here somata are found classically (suite2p's anatomical mode uses cellpose instead):

1. `soma_candidates`: blobs of the enhanced mean image (`enhanced_mean_image` at the expected
   diameter d) are the local maxima of its scale-normalised Laplacian of Gaussian at σ = d / (2√2)
   (the scale whose response peaks on a disk of diameter d) that are blobs, not ridges (`_blob_like`:
   the Hessian at that scale curves down along both axes). A seeded watershed of the lightly
   smoothed enhanced image, restricted to its above-background pixels, grows each seed into a mask;
   pixels farther than d from the seed are dropped. Masks smaller than ``minimum_area_fraction`` of
   π·(d/2)² or more elongated than ``maximum_elongation`` (major / minor axis) are discarded. Each
   candidate's *relative contrast* is its mean-image brightness over the median of a ring around it
   (2 px wide, 1 px away), minus 1.
2. `merge_anatomical_rois`: a candidate and an activity ROI are the same cell when most of the
   smaller one's pixels lie inside the other (intersection ≥ ``match_fraction`` of the smaller mask).
   The activity ROI is kept (its mask and weights come from the activity) and flagged "both".
   Unmatched candidates are added ("anatomy") when their relative contrast reaches
   ``contrast_fraction`` × the median relative contrast of the candidates that activity confirmed:
   the recording's own active somata calibrate what a soma looks like in its mean image, so the
   threshold follows the indicator's resting brightness and the neuropil instead of a fixed scale.
   Without any confirmed candidate no anatomical ROI is added.

The codes of `DetectionSource` are the store's ``rois/detection_source``.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from cindra_dask.detection.images import enhanced_mean_image
from cindra_dask.rois import RaggedRois, binary_mask_matrix

_RING_GAP_PX = 1
_RING_WIDTH_PX = 2
_MASK_SMOOTHING_SIGMA_PX = 1.0


class DetectionSource(enum.IntEnum):
    """Which detector found an ROI (stored as int8 in ``rois/detection_source``)."""

    ACTIVITY = 0
    ANATOMY = 1
    BOTH = 2


class SomaCandidates(NamedTuple):
    """Somata found in a mean image, in its coordinates.

    Attributes
    ----------
    rois : ragged masks; ``lam`` is the smoothed enhanced-image contrast above background (> 0).
    centroids : (n, 2) int32 (y, x) px of each seed (the Laplacian-of-Gaussian peak).
    relative_contrast : (n,) float32 mean-image brightness of the mask over the median of its
        surrounding ring, minus 1 (0: as bright as its surround).
    """

    rois: RaggedRois
    centroids: np.ndarray
    relative_contrast: np.ndarray


class MergedRois(NamedTuple):
    """Activity ROIs followed by the anatomical ROIs that activity did not find.

    Attributes
    ----------
    rois : the activity ROIs (unchanged, in their order), then the added candidates.
    centroids : (n, 2) int32 (y, x) px.
    detection_source : (n,) int8 `DetectionSource` codes.
    added_indices : (n_added,) int64 index of each added ROI in the candidates.
    contrast_threshold : relative contrast an unmatched candidate needed (NaN without confirmed candidates).
    """

    rois: RaggedRois
    centroids: np.ndarray
    detection_source: np.ndarray
    added_indices: np.ndarray
    contrast_threshold: float


def _ring_median(mean_image: np.ndarray, region: np.ndarray, window: tuple[slice, slice]) -> float:
    """Median of ``mean_image`` over the ring 1–3 px outside ``region`` (a bool mask of ``window``)."""
    inner = ndimage.binary_dilation(region, iterations=_RING_GAP_PX)
    outer = ndimage.binary_dilation(inner, iterations=_RING_WIDTH_PX)
    ring = outer & ~inner
    return float(np.median(mean_image[window][ring])) if ring.any() else float("nan")


def elongation(rows: np.ndarray, columns: np.ndarray) -> float:
    """Ratio of the major to the minor axis of a pixel set's second moments (1 for a disk; ≥ 1)."""
    coordinates = np.vstack([rows, columns]).astype(np.float64)
    if coordinates.shape[1] < 3:
        return float("inf")
    smallest, largest = np.linalg.eigvalsh(np.cov(coordinates))
    return float(np.sqrt(largest / smallest)) if smallest > 0 else float("inf")


def _blob_like(image: np.ndarray, peaks: np.ndarray, *, sigma_px: float, maximum_elongation: float) -> np.ndarray:
    """(n_peaks,) bool: peaks where the image smoothed at scale σ curves down along both Hessian axes, the
    steeper at most ``maximum_elongation``² times the flatter (a Gaussian blob with axes a ≥ b has the ratio
    (a / b)²; a ridge such as a dendrite has one flat axis)."""
    rows, columns = peaks[:, 0], peaks[:, 1]
    yy, xx, xy = (ndimage.gaussian_filter(image, sigma_px, order=order)[rows, columns] for order in ((2, 0), (0, 2), (1, 1)))
    half_trace, root = 0.5 * (yy + xx), np.sqrt(0.25 * (yy - xx) ** 2 + xy**2)
    steep, flat = half_trace - root, half_trace + root  # eigenvalues, steep ≤ flat
    return (flat < 0) & (steep >= maximum_elongation**2 * flat)


def soma_candidates(mean_image: np.ndarray, *, diameter_px: float, minimum_area_fraction: float, maximum_elongation: float) -> SomaCandidates:
    """Soma-like blobs of a mean image with their masks and relative contrast.

    Parameters
    ----------
    mean_image : (H, W) real image (the valid crop; intensity units of the movie, > 0 on tissue).
    diameter_px : expected soma diameter d, px (> 0).
    minimum_area_fraction : masks with fewer pixels than this fraction of π·(d/2)² are dropped.
    maximum_elongation : masks whose `elongation` exceeds this are dropped (fragments of dendrites
        and processes; somata are rarely longer than twice their width).

    Returns
    -------
    SomaCandidates in ``mean_image`` coordinates, ordered by decreasing blob response.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if diameter_px <= 0:
        raise ValueError("diameter_px must be > 0")
    image = np.asarray(mean_image, np.float32)
    radius_px = 0.5 * float(diameter_px)
    contrast = enhanced_mean_image(image, diameter_px=diameter_px) - np.float32(0.5)
    blob_response = -(radius_px**2 / 2) * ndimage.gaussian_laplace(contrast, radius_px / np.sqrt(2))
    peaks = peak_local_max(blob_response, min_distance=max(1, int(round(radius_px / 2))), threshold_abs=0.0, exclude_border=False)
    peaks = peaks[_blob_like(contrast, peaks, sigma_px=radius_px / np.sqrt(2), maximum_elongation=maximum_elongation)]
    smoothed = ndimage.gaussian_filter(contrast, _MASK_SMOOTHING_SIGMA_PX)
    markers = np.zeros(image.shape, np.int32)
    markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, peaks.shape[0] + 1)
    labels = watershed(-smoothed, markers, mask=smoothed > 0)
    minimum_pixels = minimum_area_fraction * np.pi * radius_px**2
    pad = _RING_GAP_PX + _RING_WIDTH_PX
    masks, centroids, relative = [], [], []
    for label, region_slices in enumerate(ndimage.find_objects(labels), start=1):
        if region_slices is None:
            continue
        seed_y, seed_x = peaks[label - 1]
        window = tuple(slice(max(0, part.start - pad), min(size, part.stop + pad)) for part, size in zip(region_slices, image.shape))
        rows, columns = np.mgrid[window[0], window[1]]
        region = (labels[window] == label) & ((rows - seed_y) ** 2 + (columns - seed_x) ** 2 <= float(diameter_px) ** 2)
        ypix, xpix = rows[region], columns[region]
        if ypix.size < max(1.0, minimum_pixels) or elongation(ypix, xpix) > maximum_elongation:
            continue
        surround = _ring_median(image, region, window)
        masks.append((ypix, xpix, smoothed[ypix, xpix]))
        centroids.append((seed_y, seed_x))
        relative.append(float(image[ypix, xpix].mean()) / surround - 1.0 if surround > 0 else float("nan"))
    return SomaCandidates(RaggedRois.from_masks(masks), np.asarray(centroids, np.int32).reshape(-1, 2), np.asarray(relative, np.float32))


def same_cell_pairs(activity: RaggedRois, anatomy: RaggedRois, *, frame_shape: tuple[int, int], match_fraction: float) -> np.ndarray:
    """(n_activity, n_anatomy) bool: intersection ≥ ``match_fraction`` × the smaller mask's pixel count."""
    if activity.count == 0 or anatomy.count == 0:
        return np.zeros((activity.count, anatomy.count), bool)
    first, second = binary_mask_matrix(activity, frame_shape=frame_shape), binary_mask_matrix(anatomy, frame_shape=frame_shape)
    intersection = (first @ second.T).toarray()
    smaller = np.minimum(np.asarray(first.sum(axis=1)), np.asarray(second.sum(axis=1)).T)
    return intersection >= match_fraction * np.maximum(smaller, 1)


def merge_anatomical_rois(
    activity: RaggedRois,
    activity_centroids: np.ndarray,
    candidates: SomaCandidates,
    *,
    frame_shape: tuple[int, int],
    match_fraction: float,
    contrast_fraction: float,
) -> MergedRois:
    """Activity ROIs flagged by anatomical confirmation, plus the somata activity missed.

    Parameters
    ----------
    activity : n_activity activity ROIs (full-frame coordinates).
    activity_centroids : (n_activity, 2) int (y, x) px.
    candidates : `soma_candidates` moved to the same coordinates.
    frame_shape : (Ly, Lx) px.
    match_fraction : a pair is one cell when its intersection is at least this fraction of the smaller mask.
    contrast_fraction : an unmatched candidate is added when its relative contrast is at least this
        times the median relative contrast of the matched candidates.

    Returns
    -------
    MergedRois: activity ROIs first (source ACTIVITY or BOTH), then the added candidates (ANATOMY) in
    candidate order (`soma_candidates` masks are disjoint, so added ROIs never duplicate each other).
    """
    pairs = same_cell_pairs(activity, candidates.rois, frame_shape=frame_shape, match_fraction=match_fraction)
    source = np.where(pairs.any(axis=1), DetectionSource.BOTH, DetectionSource.ACTIVITY).astype(np.int8)
    confirmed = pairs.any(axis=0)
    contrast = candidates.relative_contrast
    confirmed_contrast = contrast[confirmed & np.isfinite(contrast)]
    threshold = contrast_fraction * float(np.median(confirmed_contrast)) if confirmed_contrast.size else float("nan")
    added_indices = np.flatnonzero(~confirmed & (contrast >= threshold)).astype(np.int64) if confirmed_contrast.size else np.zeros(0, np.int64)
    extra = candidates.rois.select(added_indices)
    rois = RaggedRois.from_masks([activity.roi(index) for index in range(activity.count)] + [extra.roi(index) for index in range(extra.count)])
    return MergedRois(
        rois=rois,
        centroids=np.concatenate([np.asarray(activity_centroids, np.int32).reshape(-1, 2), candidates.centroids[added_indices]]).astype(np.int32),
        detection_source=np.concatenate([source, np.full(added_indices.size, DetectionSource.ANATOMY, np.int8)]),
        added_indices=added_indices,
        contrast_threshold=threshold,
    )
