"""ROI shape statistics and overlap removal (cindra §3.4) on ragged masks.

All per-ROI loops run in numba over the ragged arrays of `cindra_dask.rois.RaggedRois`; nothing
is materialised per ROI in Python. Distances are in units of the cell diameter ``d`` (the detection
scale diameter) unless a name says ``_px``.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from cindra_dask.rois import RaggedRois

_MINIMUM_CROP_PIXELS = 10
_MINIMUM_HULL_PIXELS = 10
_DEFAULT_HULL_AREA = 10.0
_GRADIENT_DIVISOR = 3.0
_ELLIPSE_SIGMAS = 2.5
_NORMALISATION_ROIS = 100
_EPSILON = 1e-10


class RoiStatistics(NamedTuple):
    """Per-ROI statistics, in the order of the ROIs they were computed for.

    Attributes
    ----------
    soma_mask : (total_pixels,) bool, ragged like the ROIs: pixels inside the soma crop.
    overlap_mask : (total_pixels,) bool, ragged: pixels covered by more than one ROI of the set.
    mean_radius : (n,) float32 mean distance (in d) of soma pixels from their coordinate median.
    baseline_mean_radius : (n,) float32 the same for the most compact set of as many pixels.
    compactness : (n,) float32 max(1, mean_radius / baseline_mean_radius).
    solidity : (n,) float32 soma pixels / convex-hull area (hull area 10 for ≤ 10 px or a flat hull).
    pixel_count, soma_pixel_count : (n,) int64.
    normalized_pixel_count : (n,) float32 soma pixels / mean soma pixels of the first 100 ROIs.
    radius_px : (n,) float32 major semi-axis (px) of the 2.5-σ ellipse of the soma's weighted covariance.
    aspect_ratio : (n,) float32 2·major / (major + minor + 0.01) ∈ [0, 2); 1 for a disk.
    """

    soma_mask: np.ndarray
    overlap_mask: np.ndarray
    mean_radius: np.ndarray
    baseline_mean_radius: np.ndarray
    compactness: np.ndarray
    solidity: np.ndarray
    pixel_count: np.ndarray
    soma_pixel_count: np.ndarray
    normalized_pixel_count: np.ndarray
    radius_px: np.ndarray
    aspect_ratio: np.ndarray


class CuratedRois(NamedTuple):
    """ROIs left after overlap removal, with their statistics.

    Attributes
    ----------
    rois : surviving masks, detection order kept.
    centroids : (m, 2) int32 (y, x) px.
    kept_indices : (m,) int64 index of each survivor in the input.
    statistics : `RoiStatistics` of the survivors (normalised pixel counts from the full input set, as
        in cindra; overlap masks recomputed among survivors).
    """

    rois: RaggedRois
    centroids: np.ndarray
    kept_indices: np.ndarray
    statistics: RoiStatistics


@numba.njit(cache=True)
def _median_centroids(offsets: np.ndarray, ypix: np.ndarray, xpix: np.ndarray) -> np.ndarray:
    """(n, 2) int32 pixel of each ROI nearest the coordinate-wise median."""
    count = offsets.shape[0] - 1
    centroids = np.zeros((count, 2), np.int32)
    for roi in range(count):
        start, stop = offsets[roi], offsets[roi + 1]
        if stop == start:
            continue
        rows = ypix[start:stop].astype(np.float64)
        columns = xpix[start:stop].astype(np.float64)
        median_row, median_column = np.median(rows), np.median(columns)
        nearest = np.argmin((columns - median_column) ** 2 + (rows - median_row) ** 2)
        centroids[roi, 0] = ypix[start + nearest]
        centroids[roi, 1] = xpix[start + nearest]
    return centroids


def median_centroids(rois: RaggedRois) -> np.ndarray:
    """(n, 2) int32 (y, x) of each ROI's pixel nearest its coordinate median."""
    return _median_centroids(rois.pixel_offsets, rois.ypix, rois.xpix)


@numba.njit(cache=True)
def _soma_masks(offsets: np.ndarray, ypix: np.ndarray, xpix: np.ndarray, lam: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Soma crop per ROI: first radius after the cumulative-weight gradient exceeds max/3 where it drops below it."""
    soma = np.ones(ypix.shape[0], np.bool_)
    for roi in range(offsets.shape[0] - 1):
        start, stop = offsets[roi], offsets[roi + 1]
        if stop - start <= _MINIMUM_CROP_PIXELS:
            continue
        distances = np.sqrt((ypix[start:stop] - np.float64(centroids[roi, 0])) ** 2 + (xpix[start:stop] - np.float64(centroids[roi, 1])) ** 2)
        order = np.argsort(distances)
        sorted_distances = distances[order]
        cumulative = np.cumsum(lam[start:stop][order].astype(np.float64))
        radius_count = int(distances.max())
        if radius_count < 2:
            continue
        weight_at_radius = np.zeros(radius_count)
        for k in range(radius_count):
            index = np.searchsorted(sorted_distances, np.float64(k + 1))
            weight_at_radius[k] = cumulative[index - 1] if index > 0 else 0.0
        gradient = np.diff(weight_at_radius)
        if gradient.max() == 0:
            continue
        threshold = gradient.max() / _GRADIENT_DIVISOR
        crop_radius = np.float64(radius_count)
        above = np.flatnonzero(gradient > threshold)
        if above.size > 0:
            for k in range(above[0], gradient.shape[0]):
                if gradient[k] < threshold:
                    crop_radius = np.float64(k + 1)
                    break
        inside = distances < crop_radius
        if inside.sum() > 0:
            soma[start:stop] = inside
    return soma


@numba.njit(cache=True)
def _cross(origin_y: float, origin_x: float, first_y: float, first_x: float, second_y: float, second_x: float) -> float:
    """z of (first − origin) × (second − origin) in (x, y) order."""
    return (first_x - origin_x) * (second_y - origin_y) - (first_y - origin_y) * (second_x - origin_x)


@numba.njit(cache=True)
def _convex_hull_area(rows: np.ndarray, columns: np.ndarray) -> float:
    """Area of the convex hull of integer points (Andrew's monotone chain + shoelace); 0 if flat."""
    count = rows.shape[0]
    order = np.argsort(columns.astype(np.int64) * (np.int64(rows.max()) + 1) + rows.astype(np.int64))
    hull_y = np.empty(2 * count + 1, np.float64)
    hull_x = np.empty(2 * count + 1, np.float64)
    size = 0
    for pass_index in range(2):
        start = size
        for position in range(count):
            k = order[position] if pass_index == 0 else order[count - 1 - position]
            y, x = np.float64(rows[k]), np.float64(columns[k])
            while size >= start + 2 and _cross(hull_y[size - 2], hull_x[size - 2], hull_y[size - 1], hull_x[size - 1], y, x) <= 0:
                size -= 1
            hull_y[size] = y
            hull_x[size] = x
            size += 1
        size -= 1
    area = 0.0
    for k in range(size):
        following = (k + 1) % size
        area += hull_x[k] * hull_y[following] - hull_x[following] * hull_y[k]
    return abs(area) / 2.0


@numba.njit(cache=True)
def _shape_statistics(
    offsets: np.ndarray, ypix: np.ndarray, xpix: np.ndarray, lam: np.ndarray, soma: np.ndarray, diameter: float, baseline_distances: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean radius, baseline radius, solidity, soma count, ellipse major/minor (in d) and pixel count per ROI."""
    count = offsets.shape[0] - 1
    mean_radius = np.zeros(count, np.float32)
    baseline = np.zeros(count, np.float32)
    solidity = np.zeros(count, np.float32)
    soma_count = np.zeros(count, np.int64)
    major = np.zeros(count, np.float32)
    minor = np.zeros(count, np.float32)
    pixel_count = np.zeros(count, np.int64)
    for roi in range(count):
        start, stop = offsets[roi], offsets[roi + 1]
        pixel_count[roi] = stop - start
        selected = soma[start:stop]
        rows = ypix[start:stop][selected].astype(np.float64)
        columns = xpix[start:stop][selected].astype(np.float64)
        weights = lam[start:stop][selected].astype(np.float64)
        n = rows.shape[0]
        soma_count[roi] = n
        if n == 0:
            continue
        median_row, median_column = np.median(rows), np.median(columns)
        mean_radius[roi] = np.mean(np.sqrt(((rows - median_row) / diameter) ** 2 + ((columns - median_column) / diameter) ** 2))
        baseline[roi] = np.mean(baseline_distances[: min(n, baseline_distances.shape[0])])
        if n <= _MINIMUM_HULL_PIXELS:
            solidity[roi] = n / _DEFAULT_HULL_AREA
        else:
            area = _convex_hull_area(ypix[start:stop][selected], xpix[start:stop][selected])
            solidity[roi] = n / (area if area > 0 else _DEFAULT_HULL_AREA)
        positive = weights > 0
        if positive.sum() == 0:
            continue
        w = weights[positive] / weights[positive].sum()
        y = rows[positive] / diameter
        x = columns[positive] / diameter
        center_y, center_x = np.dot(w, y), np.dot(w, x)
        covariance_yy = np.dot(w, (y - center_y) ** 2)
        covariance_xx = np.dot(w, (x - center_x) ** 2)
        covariance_yx = np.dot(w, (y - center_y) * (x - center_x))
        trace = covariance_yy + covariance_xx
        discriminant = np.sqrt(max(0.0, trace * trace - 4.0 * (covariance_yy * covariance_xx - covariance_yx * covariance_yx)))
        major[roi] = _ELLIPSE_SIGMAS * np.sqrt(max(0.0, (trace + discriminant) / 2.0))
        minor[roi] = _ELLIPSE_SIGMAS * np.sqrt(max(0.0, (trace - discriminant) / 2.0))
    return mean_radius, baseline, solidity, soma_count, major, minor, pixel_count


def overlap_count_image(rois: RaggedRois, *, frame_shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 number of ROIs covering each pixel."""
    flat = rois.ypix.astype(np.int64) * frame_shape[1] + rois.xpix
    return np.bincount(flat, minlength=frame_shape[0] * frame_shape[1]).astype(np.int32).reshape(frame_shape)


def overlap_masks(rois: RaggedRois, *, frame_shape: tuple[int, int]) -> np.ndarray:
    """(total_pixels,) bool, ragged like ``rois``: pixel covered by more than one ROI."""
    return overlap_count_image(rois, frame_shape=frame_shape)[rois.ypix, rois.xpix] > 1


@numba.njit(cache=True)
def _overlap_survivors(offsets: np.ndarray, ypix: np.ndarray, xpix: np.ndarray, counts: np.ndarray, maximum_overlap: float) -> np.ndarray:
    """Visit ROIs last to first; drop one whose overlapped fraction exceeds the limit and release its pixels."""
    count = offsets.shape[0] - 1
    keep = np.ones(count, np.bool_)
    for roi in range(count - 1, -1, -1):
        start, stop = offsets[roi], offsets[roi + 1]
        if stop == start:
            continue
        shared = 0
        for p in range(start, stop):
            if counts[ypix[p], xpix[p]] > 1:
                shared += 1
        if shared / (stop - start) > maximum_overlap:
            keep[roi] = False
            for p in range(start, stop):
                counts[ypix[p], xpix[p]] -= 1
    return keep


def overlap_survivors(rois: RaggedRois, *, frame_shape: tuple[int, int], maximum_overlap: float) -> np.ndarray:
    """(n,) bool ROIs kept by cindra's overlap removal.

    ROIs are visited in reverse detection order; one whose fraction of pixels covered by another
    (still kept) ROI exceeds ``maximum_overlap`` is removed. ``maximum_overlap`` ≥ 1 keeps all.
    """
    if not 0 < maximum_overlap:
        raise ValueError("maximum_overlap must be > 0")
    if maximum_overlap >= 1:
        return np.ones(rois.count, bool)
    counts = overlap_count_image(rois, frame_shape=frame_shape)
    return _overlap_survivors(rois.pixel_offsets, rois.ypix, rois.xpix, counts, float(maximum_overlap))


def _baseline_distances(diameter_px: int) -> np.ndarray:
    """Sorted distances (in d) of a (4d+1)² grid from its centre: the most compact pixel sets."""
    offsets = np.arange(-2 * diameter_px, 2 * diameter_px + 1, dtype=np.float32)
    return np.sort((np.hypot(*np.meshgrid(offsets, offsets)) / diameter_px).ravel()).astype(np.float64)


def roi_statistics(rois: RaggedRois, *, frame_shape: tuple[int, int], diameter_px: int, centroids: np.ndarray | None = None, crop_to_soma: bool) -> RoiStatistics:
    """Shape statistics of every ROI (cindra §3.4).

    Parameters
    ----------
    rois : ragged masks (weights ``lam`` used for the soma crop and the ellipse).
    frame_shape : (H, W) px.
    diameter_px : cell diameter d in px (the detection scale diameter; cindra's default is 10).
    centroids : (n, 2) int (y, x) px used for the soma crop; None uses `median_centroids`.
    crop_to_soma : crop ROIs with > 10 px to the soma before the statistics.
    """
    if diameter_px <= 0:
        raise ValueError("diameter_px must be > 0")
    centres = median_centroids(rois) if centroids is None else np.asarray(centroids, np.int64).reshape(-1, 2)
    if centres.shape[0] != rois.count:
        raise ValueError(f"{centres.shape[0]} centroids for {rois.count} ROIs")
    lam = rois.lam.astype(np.float32)
    soma = _soma_masks(rois.pixel_offsets, rois.ypix, rois.xpix, lam, centres) if crop_to_soma else np.ones(rois.ypix.shape[0], bool)
    mean_radius, baseline, solidity, soma_count, major, minor, pixel_count = _shape_statistics(
        rois.pixel_offsets, rois.ypix, rois.xpix, lam, soma, float(diameter_px), _baseline_distances(int(diameter_px))
    )
    reference_count = soma_count[:_NORMALISATION_ROIS].mean() if rois.count else 1.0
    return RoiStatistics(
        soma_mask=soma,
        overlap_mask=overlap_masks(rois, frame_shape=frame_shape),
        mean_radius=mean_radius,
        baseline_mean_radius=baseline,
        compactness=np.maximum(1.0, mean_radius / (baseline + _EPSILON)).astype(np.float32),
        solidity=solidity,
        pixel_count=pixel_count,
        soma_pixel_count=soma_count,
        normalized_pixel_count=(soma_count / max(reference_count, _EPSILON)).astype(np.float32),
        radius_px=(major * diameter_px).astype(np.float32),
        aspect_ratio=(2 * major / (major + minor + 0.01)).astype(np.float32),
    )


def _select_ragged(values: np.ndarray, offsets: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Concatenated ragged entries of the ROIs at ``indices``."""
    if indices.size == 0:
        return values[:0]
    return np.concatenate([values[offsets[index] : offsets[index + 1]] for index in indices])


def curate_rois(
    rois: RaggedRois,
    *,
    frame_shape: tuple[int, int],
    diameter_px: int,
    centroids: np.ndarray | None = None,
    crop_to_soma: bool,
    maximum_overlap: float,
) -> CuratedRois:
    """cindra's statistics pass: statistics of all ROIs, overlap removal, overlap masks of the survivors."""
    centres = median_centroids(rois) if centroids is None else np.asarray(centroids, np.int32).reshape(-1, 2)
    statistics = roi_statistics(rois, frame_shape=frame_shape, diameter_px=diameter_px, centroids=centres, crop_to_soma=crop_to_soma)
    kept = np.flatnonzero(overlap_survivors(rois, frame_shape=frame_shape, maximum_overlap=maximum_overlap)).astype(np.int64)
    survivors = rois.select(kept)
    selected = {
        name: (_select_ragged(value, rois.pixel_offsets, kept) if name == "soma_mask" else value[kept])
        for name, value in statistics._asdict().items()
        if name != "overlap_mask"
    }
    curated_statistics = RoiStatistics(overlap_mask=overlap_masks(survivors, frame_shape=frame_shape), **selected)
    return CuratedRois(rois=survivors, centroids=centres[kept].astype(np.int32), kept_indices=kept, statistics=curated_statistics)
