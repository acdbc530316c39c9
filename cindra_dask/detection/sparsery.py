"""Sparse multiscale ROI detection on a binned movie (cindra/suite2p "sparsery", cindra §3.3.3–3.3.5).

Algorithm (cindra's, step for step, with one optional step of ours): temporal high-pass; residual
motion removed (ours, `subtract_residual_motion`); maximum projection; per-pixel noise
normalisation; spatial high-pass; a 5-scale pyramid of 3×3 box responses; a scale estimate from
the brightest peaks; then, until the strongest thresholded-variance peak falls below the stopping
threshold: seed a square at the peak, grow it by dilation over three extension passes, test a
two-component split, subtract the ROI from the residual movie and update the variance maps.

Memory. cindra keeps the residual movie *and* the five convolved pyramid scales (≈ 1.33 movies)
plus full-size temporaries (≈ 3.6 movies at peak). Here the pyramid is never stored: the scale-``s``
response of coarse pixel (i, j) is a box sum of the residual,

    conv_s[i, j] = Σ X over fine rows [(i−1)·2^s, (i+2)·2^s) × columns [(j−1)·2^s, (j+2)·2^s) / (3·2^s),

(clipped to the frame), which is exactly cindra's ``3·uniform_filter(2·downsample(…))`` recursion
including its tapered odd edges. The per-scale maximum images and the thresholded variance maps
(for each of the four thresholds the scale estimate can pick) come from one streaming pass over
the frames; after each ROI the variance maps change only on its multiscale footprint and only in
its active frames, so they are updated by the difference of the responses there, before and after
the subtraction, computed from a local block-sum pyramid. Preprocessing runs in chunks of ≈ 16 MB.
The peak is one movie (the residual: the caller's array with ``overwrite_frames=True``) plus about
(5 + 1.33·6)·H·W float32 of maps and 16 MB of chunk buffers.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from scipy.interpolate import RectBivariateSpline
from scipy.ndimage import gaussian_filter, gaussian_filter1d, maximum_filter, uniform_filter

from cindra_dask.pixel_regions import dilated_region
from cindra_dask.rois import RaggedRois

SCALE_COUNT = 5
"""Pyramid levels; level s has box side 3·2^s px."""

_BASE_BOX_PX = 3
_BASE_THRESHOLD = 5.0
_EXTENSION_PASSES = 3
_SPLIT_ENERGY_RATIO = 1.25
_REFERENCE_BIN_COUNT = 1200
_ITERATIONS_PER_UNIT = 250
_MINIMUM_WEIGHT_FRACTION = 0.2
_MAXIMUM_ROI_PIXELS = 10_000
_NOISE_FLOOR = 1e-10
_GAUSSIAN_WINDOW_LIMIT = 10
_PEAK_WINDOW_PX = 11
_PEAK_TOLERANCE = 1e-4
_PEAK_COUNT = 50
_ALS_ROUNDS = 3
_ALS_EPSILON = 1e-6
_GRADIENT_SMOOTHING_PX = 1.0
_MOTION_REGULARISATION = 1e-6
_WORKING_CHUNK_VALUES = 1 << 22
"""float32 values (16 MB) per working chunk of the preprocessing passes."""


class SparseDetection(NamedTuple):
    """Result of `detect_rois`.

    Attributes
    ----------
    rois : ragged masks in detection order; ``lam`` in binned-movie intensity units (weights × noise).
    centroids : (n, 2) int32 (y, x) px: the seed peak, or for a split ROI the pixel nearest its median.
    footprints : (n,) int8 pyramid scale of each ROI's seed peak.
    diameter_px : estimated cell diameter 3·2^scale px.
    scale : estimated pyramid scale (≥ 1).
    maximum_projection : (H, W) float32 maximum over time of the temporally high-passed movie.
    correlation_map : (H, W) float32 pixelwise maximum over scales of the per-scale maximum images.
    peak_threshold : threshold on box responses (``threshold_scaling·5·max(1, scale)``).
    stopping_threshold : peak variance below which detection stops.
    exhausted : True when detection stopped below the stopping threshold (not at the iteration limit).
    """

    rois: RaggedRois
    centroids: np.ndarray
    footprints: np.ndarray
    diameter_px: int
    scale: int
    maximum_projection: np.ndarray
    correlation_map: np.ndarray
    peak_threshold: float
    stopping_threshold: float
    exhausted: bool


class _ScaleGrid(NamedTuple):
    """Coarse grids of all scales.

    ``heights``/``widths`` (SCALE_COUNT,) ceil(n / 2^s); ``offsets`` (SCALE_COUNT + 1,) where scale s
    starts in the flat per-scale layout (index offsets[s] + i·W_s + j); the fine-resolution
    coordinate of every coarse row / column per scale.
    """

    heights: np.ndarray
    widths: np.ndarray
    offsets: np.ndarray
    row_coordinates: list[np.ndarray]
    column_coordinates: list[np.ndarray]


def _working_chunk_frames(height: int, width: int) -> int:
    """Frames per preprocessing chunk."""
    return max(1, _WORKING_CHUNK_VALUES // max(1, height * width))


def subtract_temporal_baseline(frames: np.ndarray, *, window_frames: int) -> None:
    """Temporal high-pass in place (cindra §3.3.3 step 1).

    ``window_frames`` < 10: subtract a Gaussian (σ = window, reflecting ends) along time; otherwise
    subtract the mean of consecutive non-overlapping windows of ``window_frames`` frames, the leftover
    frames merged into the last window.

    Parameters
    ----------
    frames : (T, H, W) float32, modified in place.
    window_frames : window (or σ) in binned frames (> 0).
    """
    if window_frames <= 0:
        raise ValueError("window_frames must be > 0")
    frame_count, height, width = frames.shape
    if window_frames < _GAUSSIAN_WINDOW_LIMIT:
        rows_per_tile = max(1, _WORKING_CHUNK_VALUES // max(1, frame_count * width))
        for row_start in range(0, height, rows_per_tile):
            tile = frames[:, row_start : row_start + rows_per_tile]
            tile -= gaussian_filter1d(tile, float(window_frames), axis=0)
        return
    window_count = max(1, frame_count // window_frames)
    for window_index in range(window_count):
        start = window_index * window_frames
        stop = frame_count if window_index == window_count - 1 else start + window_frames
        window = frames[start:stop]
        window -= window.mean(axis=0, dtype=np.float64).astype(np.float32)


def subtract_residual_motion(frames: np.ndarray, *, mean_image: np.ndarray, window_px: int) -> None:
    """Remove, in place, what a small local shift of the mean image explains in each frame (residual motion).

    Not in cindra. To first order a frame displaced by d(y, x) from the mean image M differs from it
    by −d·∇M. Per frame and pixel, d is the least-squares fit of that model over the
    ``window_px`` × ``window_px`` box around the pixel, and the fitted change is subtracted. What
    registration leaves (motion finer than its blocks, subpixel error) would otherwise turn the edges
    of bright somata and vessels into "active" crescents. A cell's own activity changes its pixels
    in proportion to its footprint F, which is nearly orthogonal to the gradient of its mean image
    (∫ F ∂F = 0), so it stays.

    Parameters
    ----------
    frames : (T, H, W) float32 temporally high-passed frames, modified in place.
    mean_image : (H, W) mean of the frames before the high-pass.
    window_px : side of the fitting box, px (> 0).
    """
    if window_px <= 0:
        raise ValueError("window_px must be > 0")
    gradient_y, gradient_x = np.gradient(gaussian_filter(mean_image.astype(np.float64), _GRADIENT_SMOOTHING_PX))
    yy, xy, xx = (uniform_filter(product, size=window_px, mode="constant") for product in (gradient_y * gradient_y, gradient_y * gradient_x, gradient_x * gradient_x))
    determinant = yy * xx - xy * xy + _MOTION_REGULARISATION * float(np.mean(yy + xx)) ** 2 + _NOISE_FLOOR
    inverse_yy, inverse_xy, inverse_xx = ((matrix / determinant).astype(np.float32) for matrix in (xx, -xy, yy))
    gradient_y, gradient_x = gradient_y.astype(np.float32), gradient_x.astype(np.float32)
    frame_count, height, width = frames.shape
    chunk_frames = _working_chunk_frames(height, width)
    for start in range(0, frame_count, chunk_frames):
        chunk = frames[start : start + chunk_frames]
        along_y = uniform_filter(chunk * gradient_y, size=(1, window_px, window_px), mode="constant")
        along_x = uniform_filter(chunk * gradient_x, size=(1, window_px, window_px), mode="constant")
        chunk -= (inverse_yy * along_y + inverse_xy * along_x) * gradient_y + (inverse_xy * along_y + inverse_xx * along_x) * gradient_x


@numba.njit(cache=True)
def _difference_noise(frames: np.ndarray) -> np.ndarray:
    """(H, W) float32 ``sqrt(Σ_t (x[t+1] − x[t])² / T)``, floored at 1e-10."""
    frame_count, height, width = frames.shape
    totals = np.zeros((height, width), np.float64)
    for t in range(1, frame_count):
        for y in range(height):
            for x in range(width):
                difference = np.float64(frames[t, y, x]) - np.float64(frames[t - 1, y, x])
                totals[y, x] += difference * difference
    noise = np.empty((height, width), np.float32)
    for y in range(height):
        for x in range(width):
            noise[y, x] = max(_NOISE_FLOOR, np.sqrt(totals[y, x] / max(frame_count, 1)))
    return noise


def subtract_spatial_background(frames: np.ndarray, *, window_px: int) -> None:
    """Spatial high-pass in place: ``x −= uniform_filter(x, window, zero-padded) / edge response`` per frame.

    Parameters
    ----------
    frames : (T, H, W) float32, modified in place.
    window_px : box side in pixels (> 0).
    """
    if window_px <= 0:
        raise ValueError("window_px must be > 0")
    frame_count, height, width = frames.shape
    edge_response = uniform_filter(np.ones((height, width), np.float32), size=window_px, mode="constant")
    inverse_response = (np.float32(1.0) / edge_response).astype(np.float32)
    chunk_frames = _working_chunk_frames(height, width)
    for start in range(0, frame_count, chunk_frames):
        chunk = frames[start : start + chunk_frames]
        background = uniform_filter(chunk, size=(1, window_px, window_px), mode="constant")
        background *= inverse_response
        chunk -= background


def _scale_grid(height: int, width: int) -> _ScaleGrid:
    """Sizes ceil(n / 2^s) and coarse coordinates (mean of the fine coordinates each coarse pixel covers)."""
    rows, columns = [np.arange(height, dtype=np.float32)], [np.arange(width, dtype=np.float32)]
    for _ in range(1, SCALE_COUNT):
        for coordinates in (rows, columns):
            previous = coordinates[-1]
            paired_count = 2 * (previous.size // 2)
            paired = previous[:paired_count].reshape(-1, 2).mean(axis=1)
            coordinates.append(np.concatenate([paired, previous[paired_count:]]).astype(np.float32))
    heights_array, widths_array, offsets = _pyramid_layout(height, width)
    return _ScaleGrid(heights_array, widths_array, offsets, rows, columns)


@numba.njit(cache=True)
def _pyramid_layout(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(SCALE_COUNT,) int64 heights and widths ceil(n / 2^s), and (SCALE_COUNT + 1,) flat offsets."""
    heights = np.empty(SCALE_COUNT, np.int64)
    widths = np.empty(SCALE_COUNT, np.int64)
    offsets = np.zeros(SCALE_COUNT + 1, np.int64)
    heights[0], widths[0] = height, width
    for scale in range(SCALE_COUNT):
        if scale > 0:
            heights[scale] = (heights[scale - 1] + 1) // 2
            widths[scale] = (widths[scale - 1] + 1) // 2
        offsets[scale + 1] = offsets[scale] + heights[scale] * widths[scale]
    return heights, widths, offsets


@numba.njit(cache=True)
def _fill_block_sum_pyramid(frame: np.ndarray, pyramid: np.ndarray, heights: np.ndarray, widths: np.ndarray, offsets: np.ndarray) -> None:
    """Flat ``pyramid`` of scale-s sums of the 2^s × 2^s blocks of ``frame`` (truncated at the far edges)."""
    for y in range(heights[0]):
        for x in range(widths[0]):
            pyramid[y * widths[0] + x] = frame[y, x]
    for scale in range(1, SCALE_COUNT):
        fine_offset, fine_height, fine_width = offsets[scale - 1], heights[scale - 1], widths[scale - 1]
        for i in range(heights[scale]):
            for j in range(widths[scale]):
                total = np.float32(0.0)
                for fine_i in range(2 * i, min(2 * i + 2, fine_height)):
                    for fine_j in range(2 * j, min(2 * j + 2, fine_width)):
                        total += pyramid[fine_offset + fine_i * fine_width + fine_j]
                pyramid[offsets[scale] + i * widths[scale] + j] = total


@numba.njit(cache=True, inline="always")
def _box_response(pyramid: np.ndarray, scale: int, i: int, j: int, heights: np.ndarray, widths: np.ndarray, offsets: np.ndarray) -> float:
    """Scale-``scale`` response of coarse pixel (i, j): 3×3 sum of block sums / (3·2^scale)."""
    total = 0.0
    width = widths[scale]
    for near_i in range(max(i - 1, 0), min(i + 2, heights[scale])):
        row = offsets[scale] + near_i * width
        for near_j in range(max(j - 1, 0), min(j + 2, width)):
            total += pyramid[row + near_j]
    return total / (_BASE_BOX_PX * 2**scale)


@numba.njit(cache=True)
def _frame_response_statistics(frames: np.ndarray, thresholds: np.ndarray, maxima: np.ndarray, squared_sums: np.ndarray) -> None:
    """Over all frames and every coarse pixel of every scale: running maximum and thresholded Σ response².

    The 3×3 box sums are separable here (rows, then columns), unlike the sparse `_box_response`.

    frames : (T, H, W) float32; thresholds : (k,) ascending.
    maxima : (n,) float32 in the flat per-scale layout, updated in place.
    squared_sums : (k, n) float32, += response² where response > thresholds[k].
    """
    heights, widths, offsets = _pyramid_layout(frames.shape[1], frames.shape[2])
    pyramid = np.zeros(offsets[SCALE_COUNT], np.float32)
    row_sums = np.zeros(offsets[SCALE_COUNT], np.float32)
    for t in range(frames.shape[0]):
        _fill_block_sum_pyramid(frames[t], pyramid, heights, widths, offsets)
        for scale in range(SCALE_COUNT):
            height, width, offset = heights[scale], widths[scale], offsets[scale]
            for i in range(height):
                row = offset + i * width
                for j in range(width):
                    total = pyramid[row + j]
                    if j > 0:
                        total += pyramid[row + j - 1]
                    if j + 1 < width:
                        total += pyramid[row + j + 1]
                    row_sums[row + j] = total
            normalisation = np.float32(1.0 / (_BASE_BOX_PX * 2**scale))
            for i in range(height):
                row = offset + i * width
                for j in range(width):
                    total = row_sums[row + j]
                    if i > 0:
                        total += row_sums[row - width + j]
                    if i + 1 < height:
                        total += row_sums[row + width + j]
                    response = total * normalisation
                    if response > maxima[row + j]:
                        maxima[row + j] = response
                    for k in range(thresholds.shape[0]):
                        if response <= thresholds[k]:
                            break
                        squared_sums[k, row + j] += response * response


@numba.njit(cache=True)
def _footprint_squared_sums(frames: np.ndarray, frame_indices: np.ndarray, region: tuple[int, int, int, int], points: np.ndarray, threshold: float) -> np.ndarray:
    """(n,) float64 Σ over ``frame_indices`` of response² [response > threshold] at region-local ``points``.

    region : (row_start, row_stop, column_start, column_stop) fine px; starts are multiples of
        2^(SCALE_COUNT−1), stops multiples of it or the frame size, so block sums match the frame's.
    points : (n, 3) int64 (scale, row, column) in region-local coarse coordinates.
    """
    row_start, row_stop, column_start, column_stop = region
    heights, widths, offsets = _pyramid_layout(row_stop - row_start, column_stop - column_start)
    pyramid = np.zeros(offsets[SCALE_COUNT], np.float32)
    squared_sums = np.zeros(points.shape[0], np.float64)
    for t in frame_indices:
        _fill_block_sum_pyramid(frames[t, row_start:row_stop, column_start:column_stop], pyramid, heights, widths, offsets)
        for p in range(points.shape[0]):
            response = _box_response(pyramid, points[p, 0], points[p, 1], points[p, 2], heights, widths, offsets)
            if response > threshold:
                squared_sums[p] += response * response
    return squared_sums


def _upsample_to_frame(image: np.ndarray, rows: np.ndarray, columns: np.ndarray, height: int, width: int) -> np.ndarray:
    """Cubic (or lower-order) spline of a coarse image, evaluated on the fine grid (cindra's RectBivariateSpline)."""
    coarse_height, coarse_width = image.shape
    if coarse_height == height and coarse_width == width:
        return image.astype(np.float32)
    if coarse_height < 2 or coarse_width < 2:
        row_index = np.searchsorted(rows, np.arange(height), side="right").clip(1, coarse_height) - 1
        column_index = np.searchsorted(columns, np.arange(width), side="right").clip(1, coarse_width) - 1
        return image[np.ix_(row_index, column_index)].astype(np.float32)
    spline = RectBivariateSpline(rows, columns, image.astype(np.float64), kx=min(3, coarse_height - 1), ky=min(3, coarse_width - 1))
    return spline(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64)).astype(np.float32)


class ScalePeaks(NamedTuple):
    """The brightest 11×11 peaks of the max-over-scales image (at most 50): ``values`` (n,) float32, ``scales`` (n,) int64."""

    values: np.ndarray
    scales: np.ndarray


def _brightest(values: np.ndarray, scales: np.ndarray) -> ScalePeaks:
    """The `_PEAK_COUNT` largest ``values`` with their ``scales`` (all when fewer)."""
    if values.size > _PEAK_COUNT:
        brightest = np.argpartition(values, -_PEAK_COUNT)[-_PEAK_COUNT:]
        values, scales = values[brightest], scales[brightest]
    return ScalePeaks(values, scales)


def _scale_peaks(scale_images: np.ndarray, *, region: tuple[int, int, int, int] | None) -> ScalePeaks:
    """`ScalePeaks` of (SCALE_COUNT, H, W) images, among the peaks inside ``region`` (y0, y1, x0, x1) px, or all."""
    best_image = scale_images.max(axis=0)
    best_scale = scale_images.argmax(axis=0)
    is_peak = np.abs(best_image - maximum_filter(best_image, size=_PEAK_WINDOW_PX)) < _PEAK_TOLERANCE
    if region is not None:
        inside = np.zeros_like(is_peak)
        inside[region[0] : region[1], region[2] : region[3]] = True
        is_peak &= inside
    return _brightest(best_image[is_peak], best_scale[is_peak])


def scale_of_peaks(peaks: list[ScalePeaks]) -> int:
    """Pyramid scale (≥ 1) of a field from the `ScalePeaks` of its parts: the mode of the best scale
    over the 50 brightest peaks of them all (cindra's estimate; one part: the whole field's)."""
    brightest = _brightest(np.concatenate([part.values for part in peaks]), np.concatenate([part.scales for part in peaks]))
    return max(1, int(np.bincount(brightest.scales, minlength=SCALE_COUNT).argmax()))


@numba.njit(cache=True)
def _project(frames_2d: np.ndarray, pixels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(T,) float32 time course Σ_p X[t, pixels[p]]·weights[p]."""
    frame_count = frames_2d.shape[0]
    course = np.empty(frame_count, np.float32)
    for t in range(frame_count):
        total = np.float32(0.0)
        for p in range(pixels.shape[0]):
            total += frames_2d[t, pixels[p]] * weights[p]
        course[t] = total
    return course


@numba.njit(cache=True)
def _active_mean(frames_2d: np.ndarray, active: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(n_pixels,) float32 mean of X over the ``active`` frames at ``pixels``."""
    totals = np.zeros(pixels.shape[0], np.float64)
    for a in range(active.shape[0]):
        t = active[a]
        for p in range(pixels.shape[0]):
            totals[p] += frames_2d[t, pixels[p]]
    return (totals / max(active.shape[0], 1)).astype(np.float32)


@numba.njit(cache=True)
def _subtract_component(frames_2d: np.ndarray, active: np.ndarray, course: np.ndarray, pixels: np.ndarray, weights: np.ndarray) -> None:
    """X[t, pixels] −= course[t]·weights for t in ``active`` (in place)."""
    for a in range(active.shape[0]):
        t = active[a]
        amplitude = course[t]
        for p in range(pixels.shape[0]):
            frames_2d[t, pixels[p]] -= amplitude * weights[p]


def _seed_square(center_y: int, center_x: int, side_px: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of a ``side_px`` square (offsets −(side−1)//2 …) around the centre, clipped to the frame."""
    offsets = np.arange(side_px) - (side_px - 1) // 2
    rows = center_y + offsets
    columns = center_x + offsets
    rows = rows[(rows >= 0) & (rows < height)]
    columns = columns[(columns >= 0) & (columns < width)]
    grid_rows, grid_columns = np.meshgrid(rows, columns, indexing="ij")
    return grid_rows.ravel().astype(np.int64), grid_columns.ravel().astype(np.int64)


def _dilate_cross(rows: np.ndarray, columns: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels plus their 4-neighbours inside the frame, without repeats, sorted by flat index (int64)."""
    top, left, region = dilated_region(rows, columns, 1, height, width)
    grown_rows, grown_columns = np.nonzero(region)
    return grown_rows + top, grown_columns + left


def _grow_mask(frames_2d: np.ndarray, rows: np.ndarray, columns: np.ndarray, active: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One extension pass: dilate while the kept pixel count grows; weights = unit-norm active-frame means."""
    previous_count = 0
    weights = np.zeros(rows.size, np.float32)
    while previous_count < _MAXIMUM_ROI_PIXELS:
        previous_count = rows.size
        rows, columns = _dilate_cross(rows, columns, height, width)
        weights = _active_mean(frames_2d, active, rows * width + columns)
        keep = weights > max(0.0, float(weights.max()) * _MINIMUM_WEIGHT_FRACTION)
        kept_count = int(keep.sum())
        if kept_count == 0:
            break
        rows, columns, weights = rows[keep], columns[keep], weights[keep]
        if kept_count <= previous_count:
            break
        previous_count = rows.size
    norm = float(np.linalg.norm(weights))
    return rows, columns, (weights / norm if norm > 0 else weights).astype(np.float32)


class _SplitTest(NamedTuple):
    """Two-component ALS result: energy ratio (two / one component) and the dominant component."""

    energy_ratio: float
    weights: np.ndarray
    active_course: np.ndarray
    active: np.ndarray


def _split_test(pixel_frames: np.ndarray, weights: np.ndarray, threshold: float) -> _SplitTest:
    """cindra's two non-negative component ALS on the ROI's (T, n) pixel traces (modified as a work buffer)."""
    total_energy = float(np.vdot(pixel_frames, pixel_frames))
    course = pixel_frames @ weights
    single_active = course > threshold
    single_course = course[single_active]
    pixel_frames[single_active] -= np.outer(single_course, weights)
    single_energy = total_energy - float(np.vdot(pixel_frames, pixel_frames))
    seed_frame = int(np.argmax(np.maximum(pixel_frames, 0).sum(axis=1)))
    masks = [np.where(pixel_frames[seed_frame] < 0, weights, 0).astype(np.float32), np.where(pixel_frames[seed_frame] > 0, weights, 0).astype(np.float32)]
    pixel_frames[single_active] += np.outer(single_course, weights)
    component_active, component_courses = [], []
    for mask in masks:
        mask /= np.float32(np.linalg.norm(mask) + _ALS_EPSILON)
        component_course = pixel_frames @ mask
        pixel_frames[single_active] -= np.outer(component_course[single_active], mask)
        component_active.append(single_active)
        component_courses.append(component_course[single_active])
    converged = [False, False]
    component_energy = np.zeros(2)
    for _ in range(_ALS_ROUNDS):
        for index in range(2):
            if converged[index]:
                continue
            pixel_frames[component_active[index]] += np.outer(component_courses[index], masks[index])
            component_course = pixel_frames @ masks[index]
            component_active[index] = component_course > threshold
            component_energy[index] = float(component_course @ component_course)
            active_count = int(component_active[index].sum())
            if active_count == 0:
                converged[index] = True
                component_energy[index] = -1.0
                continue
            component_courses[index] = component_course[component_active[index]]
            mask = (component_courses[index] @ pixel_frames[component_active[index]] / active_count).astype(np.float32)
            mask[mask < 0] = 0
            mask /= np.float32(_ALS_EPSILON + np.linalg.norm(mask))
            masks[index] = mask
            pixel_frames[component_active[index]] -= np.outer(component_courses[index], mask)
    best = int(np.argmax(component_energy))
    residual_energy = float(np.vdot(pixel_frames, pixel_frames))
    ratio = (total_energy - residual_energy) / single_energy if single_energy > 0 else 0.0
    return _SplitTest(ratio, masks[best], component_courses[best], component_active[best])


class _Footprint(NamedTuple):
    """Multiscale footprint of a mask: the local region, region-local (scale, row, column) points, flat indices."""

    region: tuple[int, int, int, int]
    points: np.ndarray
    flat_indices: np.ndarray


_NEIGHBOUR_ROWS = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1])
_NEIGHBOUR_COLUMNS = np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1])


def _multiscale_footprint(rows: np.ndarray, columns: np.ndarray, grid: _ScaleGrid) -> _Footprint:
    """Coarse pixels (row >> s, column >> s) of the mask at every scale, dilated 3×3, and a region holding their boxes.

    Where cindra's multiscale mask has non-zero weight, i.e. where subtracting the ROI changes a
    response.
    """
    coarsest = SCALE_COUNT - 1
    block = 1 << coarsest
    height, width = int(grid.heights[0]), int(grid.widths[0])
    row_start = max(0, ((int(rows.min()) >> coarsest) - 2) * block)
    row_stop = min(height, ((int(rows.max()) >> coarsest) + 3) * block)
    column_start = max(0, ((int(columns.min()) >> coarsest) - 2) * block)
    column_stop = min(width, ((int(columns.max()) >> coarsest) + 3) * block)
    points, flat_indices = [], []
    for scale in range(SCALE_COUNT):
        scale_height, scale_width = int(grid.heights[scale]), int(grid.widths[scale])
        coarse = np.unique((rows >> scale) * scale_width + (columns >> scale))
        near_rows = (coarse[:, None] // scale_width + _NEIGHBOUR_ROWS).ravel()
        near_columns = (coarse[:, None] % scale_width + _NEIGHBOUR_COLUMNS).ravel()
        inside = (near_rows >= 0) & (near_rows < scale_height) & (near_columns >= 0) & (near_columns < scale_width)
        flat = np.unique(near_rows[inside] * scale_width + near_columns[inside])
        local_rows, local_columns = flat // scale_width - (row_start >> scale), flat % scale_width - (column_start >> scale)
        points.append(np.stack([np.full(flat.size, scale), local_rows, local_columns], axis=1))
        flat_indices.append(grid.offsets[scale] + flat)
    return _Footprint((row_start, row_stop, column_start, column_stop), np.concatenate(points).astype(np.int64), np.concatenate(flat_indices))


def _peak_location(flat_index: int, grid: _ScaleGrid) -> tuple[int, int, int]:
    """(scale, row, column) of a flat per-scale index."""
    scale = int(np.searchsorted(grid.offsets, flat_index, side="right") - 1)
    row, column = divmod(flat_index - int(grid.offsets[scale]), int(grid.widths[scale]))
    return scale, row, column


class _Preprocessed(NamedTuple):
    """The residual movie and maps `detect_rois` starts its loop from (`_preprocess`)."""

    residual: np.ndarray
    noise: np.ndarray
    maximum_projection: np.ndarray
    grid: _ScaleGrid
    candidate_thresholds: np.ndarray
    squared_sums: np.ndarray
    scale_images: np.ndarray


def _preprocess(
    frames: np.ndarray, *, temporal_highpass_window_frames: int, spatial_highpass_window_px: int, threshold_scaling: float, residual_motion_window_px: int, overwrite_frames: bool
) -> _Preprocessed:
    """Checks, high-passes, noise normalisation and the response statistics of `detect_rois` (same arguments)."""
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (T ≥ 1, H, W), got shape {frames.shape}")
    if threshold_scaling <= 0:
        raise ValueError("threshold_scaling and maximum_iterations must be > 0")
    if overwrite_frames:
        if frames.dtype != np.float32 or not frames.flags.c_contiguous or not frames.flags.writeable:
            raise ValueError("overwrite_frames needs a writeable C-contiguous float32 array")
        residual = frames
    else:
        residual = np.array(frames, dtype=np.float32, order="C", copy=True)
    frame_count, height, width = residual.shape

    mean_image = residual.mean(axis=0, dtype=np.float64) if residual_motion_window_px > 0 else None
    subtract_temporal_baseline(residual, window_frames=temporal_highpass_window_frames)
    if mean_image is not None:
        subtract_residual_motion(residual, mean_image=mean_image, window_px=residual_motion_window_px)
    maximum_projection = residual.max(axis=0)
    noise = _difference_noise(residual)
    residual /= noise
    subtract_spatial_background(residual, window_px=spatial_highpass_window_px)

    grid = _scale_grid(height, width)
    candidate_thresholds = threshold_scaling * _BASE_THRESHOLD * np.arange(1, SCALE_COUNT, dtype=np.float64)
    maxima = np.full(int(grid.offsets[-1]), -np.inf, np.float32)
    squared_sums = np.zeros((candidate_thresholds.size, int(grid.offsets[-1])), np.float32)
    _frame_response_statistics(residual, candidate_thresholds, maxima, squared_sums)

    scale_images = np.empty((SCALE_COUNT, height, width), np.float32)
    for scale in range(SCALE_COUNT):
        coarse = maxima[grid.offsets[scale] : grid.offsets[scale + 1]].reshape(grid.heights[scale], grid.widths[scale])
        scale_images[scale] = _upsample_to_frame(coarse, grid.row_coordinates[scale], grid.column_coordinates[scale], height, width)
    return _Preprocessed(residual, noise, maximum_projection, grid, candidate_thresholds, squared_sums, scale_images)


def region_scale_peaks(
    frames: np.ndarray,
    *,
    region: tuple[int, int, int, int],
    temporal_highpass_window_frames: int,
    spatial_highpass_window_px: int,
    threshold_scaling: float,
    residual_motion_window_px: int,
) -> ScalePeaks:
    """`ScalePeaks` of a binned movie's peaks inside ``region`` (y0, y1, x0, x1) px, after `detect_rois`'s
    preprocessing (same options); `scale_of_peaks` of the parts of a field gives its scale. ``frames``
    (T, H, W) float32 C-contiguous is **overwritten** (the residual work buffer)."""
    preprocessed = _preprocess(
        frames,
        temporal_highpass_window_frames=temporal_highpass_window_frames,
        spatial_highpass_window_px=spatial_highpass_window_px,
        threshold_scaling=threshold_scaling,
        residual_motion_window_px=residual_motion_window_px,
        overwrite_frames=True,
    )
    return _scale_peaks(preprocessed.scale_images, region=region)


def detect_rois(
    frames: np.ndarray,
    *,
    temporal_highpass_window_frames: int,
    spatial_highpass_window_px: int,
    threshold_scaling: float,
    maximum_iterations: int,
    residual_motion_window_px: int,
    overwrite_frames: bool = False,
    scale: int | None = None,
) -> SparseDetection:
    """Detect ROIs in a binned movie by cindra's sparse multiscale algorithm.

    Parameters
    ----------
    frames : (T, H, W) binned movie (float32 preferred).
    temporal_highpass_window_frames : high-pass window in binned frames (< 10: Gaussian σ).
    spatial_highpass_window_px : box side of the spatial high-pass (neuropil removal).
    threshold_scaling : multiplies the base threshold 5.
    maximum_iterations : loop limit is 250 × this.
    residual_motion_window_px : > 0: first remove residual motion (`subtract_residual_motion`) fitted
        over boxes of this side; 0: cindra's algorithm.
    overwrite_frames : use ``frames`` (float32, C-contiguous) as the residual work buffer instead
        of copying it; its contents are destroyed.
    scale : pyramid scale (≥ 1) to detect at, e.g. a whole field's for one of its tiles
        (`scale_of_peaks`); None: estimated from this movie.

    Returns
    -------
    SparseDetection (zero ROIs for a movie without supra-threshold activity).
    """
    if maximum_iterations <= 0:
        raise ValueError("threshold_scaling and maximum_iterations must be > 0")
    if scale is not None and not 1 <= scale < SCALE_COUNT:
        raise ValueError(f"scale must be in [1, {SCALE_COUNT - 1}], got {scale}")
    residual, noise, maximum_projection, grid, candidate_thresholds, squared_sums, scale_images = _preprocess(
        frames,
        temporal_highpass_window_frames=temporal_highpass_window_frames,
        spatial_highpass_window_px=spatial_highpass_window_px,
        threshold_scaling=threshold_scaling,
        residual_motion_window_px=residual_motion_window_px,
        overwrite_frames=overwrite_frames,
    )
    frame_count, height, width = residual.shape
    correlation_map = scale_images.max(axis=0)
    if scale is None:
        scale = scale_of_peaks([_scale_peaks(scale_images, region=None)])
    del scale_images

    peak_threshold = float(candidate_thresholds[scale - 1])
    stopping_threshold = peak_threshold * max(1.0, frame_count / _REFERENCE_BIN_COUNT)
    variance = np.sqrt(squared_sums[scale - 1])
    del squared_sums

    residual_2d = residual.reshape(frame_count, height * width)
    masks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    centroids: list[tuple[int, int]] = []
    footprints: list[int] = []
    exhausted = False
    for _ in range(_ITERATIONS_PER_UNIT * maximum_iterations):
        peak_index = int(np.argmax(variance))
        if variance[peak_index] < stopping_threshold:
            exhausted = True
            break
        peak_scale, peak_row, peak_column = _peak_location(peak_index, grid)
        center = (int(grid.row_coordinates[peak_scale][peak_row]), int(grid.column_coordinates[peak_scale][peak_column]))
        rows, columns = _seed_square(*center, _BASE_BOX_PX * 2**peak_scale, height, width)
        weights = np.full(rows.size, 1.0 / np.sqrt(rows.size), np.float32)
        course = _project(residual_2d, rows * width + columns, weights)
        active = np.flatnonzero(course > peak_threshold)
        for _pass in range(_EXTENSION_PASSES):
            if active.size == 0:
                break
            rows, columns, weights = _grow_mask(residual_2d, rows, columns, active, height, width)
            course = _project(residual_2d, rows * width + columns, weights)
            active = np.flatnonzero(course > peak_threshold)
        if active.size == 0:
            variance[_multiscale_footprint(rows, columns, grid).flat_indices] = 0
            variance[peak_index] = 0
            continue

        pixels = rows * width + columns
        split = _split_test(residual_2d[:, pixels], weights, peak_threshold)
        if split.energy_ratio > _SPLIT_ENERGY_RATIO and split.active.any() and split.weights.max() > 0:
            active = np.flatnonzero(split.active)
            course[active] = split.active_course
            keep = split.weights > split.weights.max() * _MINIMUM_WEIGHT_FRACTION
            rows, columns, weights = rows[keep], columns[keep], split.weights[keep]
            median_row, median_column = np.median(rows), np.median(columns)
            nearest = int(np.argmin((columns - median_column) ** 2 + (rows - median_row) ** 2))
            center = (int(rows[nearest]), int(columns[nearest]))
            pixels = rows * width + columns

        # Only the active frames change, so the variance maps are updated by their change on those frames.
        footprint = _multiscale_footprint(rows, columns, grid)
        before = _footprint_squared_sums(residual, active, footprint.region, footprint.points, peak_threshold)
        _subtract_component(residual_2d, active, course, pixels, weights)
        after = _footprint_squared_sums(residual, active, footprint.region, footprint.points, peak_threshold)
        updated = variance[footprint.flat_indices].astype(np.float64) ** 2 + after - before
        variance[footprint.flat_indices] = np.sqrt(np.maximum(updated, 0.0)).astype(np.float32)
        masks.append((rows.astype(np.int32), columns.astype(np.int32), (weights * noise[rows, columns]).astype(np.float32)))
        centroids.append(center)
        footprints.append(int(peak_scale))

    return SparseDetection(
        rois=RaggedRois.from_masks(masks),
        centroids=np.array(centroids, np.int32).reshape(-1, 2),
        footprints=np.array(footprints, np.int8),
        diameter_px=int(_BASE_BOX_PX * 2**scale),
        scale=int(scale),
        maximum_projection=maximum_projection.astype(np.float32),
        correlation_map=correlation_map.astype(np.float32),
        peak_threshold=peak_threshold,
        stopping_threshold=float(stopping_threshold),
        exhausted=exhausted,
    )
