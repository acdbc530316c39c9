"""Summary images of a movie: mean image, maximum projection, local correlation image, enhanced mean image.

The first three come from running sums over time (`image_sums`), so a graph reduces chunks with
`combine_image_sums` and calls `finalize_images` once (`full_frame_images` for the detection step:
finalised, enhanced and embedded into full frames); the result does not depend on the chunking
(up to float64 rounding). The sparse-detection ``correlation_map`` (max over scales of the per-scale
maximum images) is produced by `cindra_dask.detection.sparsery` itself.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from scipy.ndimage import gaussian_filter

NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))
"""(dy, dx) of the four forward neighbours whose products are summed; with symmetry they give all 8."""

_ENHANCED_CLIP = 6.0
_CONTRAST_EPSILON = 1e-10


class ImageSums(NamedTuple):
    """Running sums over time of a (T, H, W) movie; add two with `combine_image_sums`.

    Attributes
    ----------
    frame_count : frames summed.
    sum, sum_of_squares : (H, W) float64 Σ x and Σ x².
    neighbour_products : (4, H, W) float64 Σ x(y, x)·x(y + dy, x + dx) for `NEIGHBOUR_OFFSETS`
        (0 where the neighbour is outside the frame).
    maximum : (H, W) float32 maximum over time (−inf for zero frames).
    """

    frame_count: int
    sum: np.ndarray
    sum_of_squares: np.ndarray
    neighbour_products: np.ndarray
    maximum: np.ndarray


class SummaryImages(NamedTuple):
    """Images of a movie (all (H, W) float32).

    Attributes
    ----------
    mean_image : mean over time.
    maximum_projection : maximum over time.
    local_correlation : mean Pearson correlation of each pixel's trace with its 8 neighbours (fewer at
        the border); 0 where a trace is constant.
    """

    mean_image: np.ndarray
    maximum_projection: np.ndarray
    local_correlation: np.ndarray


class DetectionImages(NamedTuple):
    """Full-frame detection images, (Ly, Lx) float32 each.

    Attributes
    ----------
    mean_image : mean of the binned movie; 0 outside the valid crop.
    enhanced_mean_image : contrast-normalised mean image in [0, 1]; its interior minimum outside the crop.
    maximum_projection : maximum over time of the binned movie; 0 outside the crop.
    correlation_map : mean correlation of each pixel's binned trace with its 8 neighbours; 0 outside the crop.
    """

    mean_image: np.ndarray
    enhanced_mean_image: np.ndarray
    maximum_projection: np.ndarray
    correlation_map: np.ndarray


@numba.njit(cache=True)
def _accumulate_image_sums(frames: np.ndarray, sums: np.ndarray, squares: np.ndarray, products: np.ndarray, maximum: np.ndarray) -> None:
    """Add one chunk's Σx, Σx², forward-neighbour products and maximum into float64 accumulators (in place)."""
    frame_count, height, width = frames.shape
    for t in range(frame_count):
        for y in range(height):
            for x in range(width):
                value = np.float64(frames[t, y, x])
                sums[y, x] += value
                squares[y, x] += value * value
                if value > maximum[y, x]:
                    maximum[y, x] = value
                if x + 1 < width:
                    products[0, y, x] += value * frames[t, y, x + 1]
                if y + 1 < height:
                    products[1, y, x] += value * frames[t, y + 1, x]
                    if x + 1 < width:
                        products[2, y, x] += value * frames[t, y + 1, x + 1]
                    if x >= 1:
                        products[3, y, x] += value * frames[t, y + 1, x - 1]


def image_sums(frames: np.ndarray) -> ImageSums:
    """Running sums of one chunk of frames.

    Parameters
    ----------
    frames : (T, H, W) real array (any dtype; accumulated in float64).
    """
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got shape {frames.shape}")
    _, height, width = frames.shape
    sums = np.zeros((height, width), np.float64)
    squares = np.zeros((height, width), np.float64)
    products = np.zeros((len(NEIGHBOUR_OFFSETS), height, width), np.float64)
    maximum = np.full((height, width), -np.inf, np.float64)
    _accumulate_image_sums(np.ascontiguousarray(frames), sums, squares, products, maximum)
    return ImageSums(int(frames.shape[0]), sums, squares, products, maximum.astype(np.float32))


def combine_image_sums(first: ImageSums, second: ImageSums) -> ImageSums:
    """Sums of two disjoint sets of frames (associative and commutative)."""
    return ImageSums(
        first.frame_count + second.frame_count,
        first.sum + second.sum,
        first.sum_of_squares + second.sum_of_squares,
        first.neighbour_products + second.neighbour_products,
        np.maximum(first.maximum, second.maximum),
    )


def _shifted_view(image: np.ndarray, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices (of pixel p, of its neighbour p + (dy, dx)) over the pixels whose neighbour is inside."""
    height, width = image.shape[-2:]
    rows_first, rows_second = slice(0, height - dy), slice(dy, height)
    if dx >= 0:
        columns_first, columns_second = slice(0, width - dx), slice(dx, width)
    else:
        columns_first, columns_second = slice(-dx, width), slice(0, width + dx)
    return (rows_first, columns_first), (rows_second, columns_second)


def finalize_images(sums: ImageSums) -> SummaryImages:
    """Mean image, maximum projection and local correlation image from running sums."""
    count = sums.frame_count
    if count == 0:
        raise ValueError("no frames were summed")
    mean = sums.sum / count
    variance = np.maximum(sums.sum_of_squares / count - mean * mean, 0.0)
    deviation = np.sqrt(variance)
    correlation_total = np.zeros_like(mean)
    neighbour_count = np.zeros_like(mean)
    for index, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
        first, second = _shifted_view(mean, dy, dx)
        covariance = sums.neighbour_products[index][first] / count - mean[first] * mean[second]
        denominator = deviation[first] * deviation[second]
        pair_correlation = np.divide(covariance, denominator, out=np.zeros_like(covariance), where=denominator > 0)
        correlation_total[first] += pair_correlation
        correlation_total[second] += pair_correlation
        neighbour_count[first] += 1
        neighbour_count[second] += 1
    local_correlation = correlation_total / np.maximum(neighbour_count, 1)
    return SummaryImages(mean.astype(np.float32), sums.maximum.astype(np.float32), local_correlation.astype(np.float32))


def summary_images(frames: np.ndarray) -> SummaryImages:
    """`finalize_images` of the whole movie in one call. ``frames``: (T, H, W), T ≥ 1."""
    return finalize_images(image_sums(frames))


def enhanced_mean_image(mean_image: np.ndarray, *, diameter_px: float) -> np.ndarray:
    """Background-removed, contrast-normalised mean image (cindra 2.0, §3.3.6).

    ``r = m − G_σ(m)``, ``r /= G_σ(|r|) + 1e-10`` with σ = 0.5·``diameter_px`` (Gaussian, reflecting
    borders), clipped to [−6, 6] and rescaled to [0, 1].

    Parameters
    ----------
    mean_image : (H, W) real image (the valid crop; the caller fills any border).
    diameter_px : estimated cell diameter in pixels (> 0).

    Returns
    -------
    (H, W) float32 in [0, 1].
    """
    if diameter_px <= 0:
        raise ValueError("diameter_px must be > 0")
    sigma_px = 0.5 * float(diameter_px)
    image = np.asarray(mean_image, np.float32)
    residual = image - gaussian_filter(image, sigma_px)
    residual /= gaussian_filter(np.abs(residual), sigma_px) + np.float32(_CONTRAST_EPSILON)
    np.clip(residual, -_ENHANCED_CLIP, _ENHANCED_CLIP, out=residual)
    return ((residual + _ENHANCED_CLIP) / (2 * _ENHANCED_CLIP)).astype(np.float32)


def full_frame_images(sums: ImageSums, *, diameter_px: float, valid_y_range: tuple[int, int], valid_x_range: tuple[int, int], frame_shape: tuple[int, int]) -> DetectionImages:
    """Finalise the binned movie's running sums into full-frame detection images.

    Parameters
    ----------
    sums : running sums over the binned movie of the valid crop.
    diameter_px : detected cell diameter (sets the enhanced mean's filter width).
    valid_y_range, valid_x_range : [start, stop) of the crop in the full frame.
    frame_shape : (Ly, Lx).
    """
    images = finalize_images(sums)
    enhanced = enhanced_mean_image(images.mean_image, diameter_px=diameter_px)
    crop = (slice(*valid_y_range), slice(*valid_x_range))

    def embed(image: np.ndarray, fill: float) -> np.ndarray:
        frame = np.full(frame_shape, fill, np.float32)
        frame[crop] = image
        return frame

    return DetectionImages(
        mean_image=embed(images.mean_image, 0.0),
        enhanced_mean_image=embed(enhanced, float(enhanced.min())),
        maximum_projection=embed(images.maximum_projection, 0.0),
        correlation_map=embed(images.local_correlation, 0.0),
    )
