"""Detection kernels against their definitions and against planted ground truth.

Binning and the summary images are checked against plain numpy definitions and for chunking
invariance; sparse detection against cindra's pyramid recursion and against the simulator's
planted somata; statistics and denoising against shapes and signals with known answers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, map_coordinates, uniform_filter
from scipy.spatial import ConvexHull

from cindra_dask.detection.binning import bin_frames, bin_good_frame_counts, bin_size_frames
from cindra_dask.detection.denoise import pca_denoise
from cindra_dask.detection.images import combine_image_sums, enhanced_mean_image, finalize_images, image_sums, summary_images
from cindra_dask.detection.sparsery import (
    subtract_residual_motion,
    SCALE_COUNT,
    SparseDetection,
    _frame_response_statistics,
    _scale_grid,
    _split_test,
    detect_rois,
    subtract_temporal_baseline,
)
from cindra_dask.detection.stats import curate_rois, overlap_survivors, roi_statistics
from cindra_dask.evaluate import match_rois
from cindra_dask.rois import RaggedRois
from tests.conftest import detection_options

DEFAULTS = detection_options()
SPARSE_DETECTION = {
    name: getattr(DEFAULTS, name) for name in ("temporal_highpass_window_frames", "spatial_highpass_window_px", "threshold_scaling", "maximum_iterations", "residual_motion_window_px")
}
"""`detect_rois`'s options of the default configuration."""


def _mask(selection: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ypix, xpix, lam) of a boolean image (unit weights unless given as an image)."""
    rows, columns = np.nonzero(selection)
    return rows, columns, np.ones(rows.size) if weights is None else weights[rows, columns]


# ------------------------------------------------------------------------------------------------
# Binning
# ------------------------------------------------------------------------------------------------


def test_bin_size_follows_cindra_up_to_the_maximum_bin_duration() -> None:
    assert bin_size_frames(frame_count=2000, tau_s=0.4, frame_rate_hz=30.0, maximum_binned_frames=5000, maximum_bin_duration_s=0.0) == 12
    assert bin_size_frames(frame_count=100_000, tau_s=0.4, frame_rate_hz=30.0, maximum_binned_frames=5000, maximum_bin_duration_s=0.0) == 20
    assert bin_size_frames(frame_count=10, tau_s=0.01, frame_rate_hz=10.0, maximum_binned_frames=5000, maximum_bin_duration_s=0.0) == 1
    assert bin_size_frames(frame_count=2000, tau_s=1.5, frame_rate_hz=30.0, maximum_binned_frames=5000, maximum_bin_duration_s=0.0) == 45  # cindra: round(tau·fs)
    assert bin_size_frames(frame_count=2000, tau_s=1.5, frame_rate_hz=30.0, maximum_binned_frames=5000, maximum_bin_duration_s=0.4) == 12  # capped at 0.4 s
    assert bin_size_frames(frame_count=2000, tau_s=0.2, frame_rate_hz=30.0, maximum_binned_frames=5000, maximum_bin_duration_s=0.4) == 6  # a shorter tau wins
    assert bin_size_frames(frame_count=100_000, tau_s=1.5, frame_rate_hz=30.0, maximum_binned_frames=5000, maximum_bin_duration_s=0.4) == 20  # the bin-count cap still holds


def test_chunked_binning_equals_whole_binning_and_excludes_bad_frames() -> None:
    rng = np.random.default_rng(0)
    bin_size, frame_count = 4, 103  # 25 complete bins, 3 leftover frames
    frames = rng.integers(-300, 3000, size=(frame_count, 5, 6)).astype(np.int16)
    good = rng.random(frame_count) > 0.3
    good[8:12] = False  # bin 2 entirely bad: dropped
    good[40:44] = [True, False, False, False]  # bin 10 keeps a single frame
    whole = bin_frames(frames, bin_size=bin_size, good_frames=good)

    expected = [frames[start : start + bin_size][good[start : start + bin_size]].astype(np.float64).mean(axis=0) for start in range(0, 100, bin_size) if good[start : start + bin_size].any()]
    assert whole.frames.dtype == np.float32 and len(whole.frames) == 24
    np.testing.assert_allclose(whole.frames, np.array(expected), rtol=1e-6)
    np.testing.assert_array_equal(whole.frames[9], frames[40])  # bin 10 is the 10th kept bin: bin 2 was dropped
    np.testing.assert_array_equal(whole.good_frame_counts, bin_good_frame_counts(good, bin_size=bin_size)[bin_good_frame_counts(good, bin_size=bin_size) > 0])

    chunks = [8, 12, 4, 40, 39]  # multiples of the bin size, then the remainder
    starts = np.concatenate([[0], np.cumsum(chunks)[:-1]])
    pieces = [bin_frames(frames[start : start + length], bin_size=bin_size, good_frames=good[start : start + length]) for start, length in zip(starts, chunks)]
    np.testing.assert_array_equal(np.concatenate([piece.frames for piece in pieces]), whole.frames)
    np.testing.assert_array_equal(np.concatenate([piece.good_frame_counts for piece in pieces]), whole.good_frame_counts)

    all_good = bin_frames(frames, bin_size=bin_size)
    np.testing.assert_allclose(all_good.frames, frames[:100].reshape(25, 4, 5, 6).mean(axis=1), rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Summary images
# ------------------------------------------------------------------------------------------------


def _local_correlation_by_definition(frames: np.ndarray) -> np.ndarray:
    """Mean Pearson r of each pixel's trace with its (up to 8) neighbours, pair by pair."""
    _, height, width = frames.shape
    result = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            values = [np.corrcoef(frames[:, y, x], frames[:, y + dy, x + dx])[0, 1] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy or dx) and 0 <= y + dy < height and 0 <= x + dx < width]
            result[y, x] = np.mean(values)
    return result


def test_summary_images_equal_numpy_definitions_and_stream_over_odd_chunks() -> None:
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(60, 1, 1))
    frames = (100 + rng.normal(size=(60, 9, 11)) + shared * np.linspace(0, 2, 11)).astype(np.float32)
    images = summary_images(frames)
    np.testing.assert_allclose(images.mean_image, frames.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(images.maximum_projection, frames.max(axis=0))
    reference = _local_correlation_by_definition(frames.astype(np.float64))
    np.testing.assert_allclose(images.local_correlation, reference, atol=2e-5)
    assert reference[:, -1].mean() > reference[:, 0].mean() + 0.5  # the shared signal grows with x

    bounds = np.cumsum([0, 7, 13, 1, 29, 10])
    partial = [image_sums(frames[start:stop]) for start, stop in zip(bounds[:-1], bounds[1:])]
    total = partial[0]
    for piece in partial[1:]:
        total = combine_image_sums(total, piece)
    streamed = finalize_images(total)
    for name in images._fields:
        np.testing.assert_allclose(getattr(streamed, name), getattr(images, name), rtol=1e-6, atol=1e-6)


def test_enhanced_mean_image_is_the_contrast_normalised_residual() -> None:
    yy, xx = np.mgrid[:64, :64]
    mean_image = (50 + 0.5 * xx + 30 * np.exp(-((yy - 32) ** 2 + (xx - 20) ** 2) / 8.0)).astype(np.float32)
    enhanced = enhanced_mean_image(mean_image, diameter_px=12)
    image = mean_image.astype(np.float64)
    residual = image - gaussian_filter(image, 6.0)
    residual /= gaussian_filter(np.abs(residual), 6.0) + 1e-10
    np.testing.assert_allclose(enhanced, (np.clip(residual, -6, 6) + 6) / 12, atol=1e-3)  # float32 arithmetic
    assert enhanced[32, 20] > 0.6 and abs(np.median(enhanced) - 0.5) < 0.1 and enhanced.min() >= 0 and enhanced.max() <= 1


# ------------------------------------------------------------------------------------------------
# Sparse detection
# ------------------------------------------------------------------------------------------------


def _cindra_downsample(movie: np.ndarray) -> np.ndarray:
    """cindra's 2×2 mean with odd edges tapered by 0.5."""
    frames, height, width = movie.shape
    even_height, even_width = height // 2 * 2, width // 2 * 2
    result = np.zeros((frames, (height + 1) // 2, (width + 1) // 2), np.float64)
    result[:, : even_height // 2, : even_width // 2] = movie[:, :even_height, :even_width].reshape(frames, even_height // 2, 2, even_width // 2, 2).mean(axis=(2, 4))
    if width % 2:
        result[:, : even_height // 2, -1] = movie[:, :even_height, -1].reshape(frames, -1, 2).mean(axis=2) * 0.5
    if height % 2:
        result[:, -1, : even_width // 2] = movie[:, -1, :even_width].reshape(frames, -1, 2).mean(axis=2) * 0.5
    if height % 2 and width % 2:
        result[:, -1, -1] = movie[:, -1, -1] * 0.25
    return result


def test_streamed_pyramid_responses_equal_cindras_convolved_scales() -> None:
    movie = np.random.default_rng(2).normal(scale=3.0, size=(9, 37, 29)).astype(np.float32)
    thresholds = np.array([1.0, 2.5, 4.0])
    grid = _scale_grid(37, 29)
    maxima = np.full(int(grid.offsets[-1]), -np.inf, np.float32)
    squared_sums = np.zeros((3, int(grid.offsets[-1])), np.float32)
    _frame_response_statistics(movie, thresholds, maxima, squared_sums)
    level = movie.astype(np.float64)
    for scale in range(SCALE_COUNT):
        convolved = 3 * uniform_filter(level, size=(1, 3, 3), mode="constant")
        block = slice(grid.offsets[scale], grid.offsets[scale + 1])
        np.testing.assert_allclose(maxima[block], convolved.max(axis=0).ravel(), atol=1e-4)
        for index, threshold in enumerate(thresholds):
            expected = (np.where(convolved > threshold, convolved, 0) ** 2).sum(axis=0).ravel()
            np.testing.assert_allclose(squared_sums[index, block], expected, rtol=1e-4, atol=1e-3)
        level = 2 * _cindra_downsample(level)


def test_temporal_baseline_windows_and_gaussian() -> None:
    frames = np.random.default_rng(3).normal(size=(250, 3, 4)).astype(np.float32) + np.arange(250, dtype=np.float32)[:, None, None]
    windowed = frames.copy()
    subtract_temporal_baseline(windowed, window_frames=100)
    np.testing.assert_allclose(windowed[:100], frames[:100] - frames[:100].mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(windowed[100:], frames[100:] - frames[100:].mean(axis=0), atol=1e-4)  # 50 leftovers join the last window
    smoothed = frames.copy()
    subtract_temporal_baseline(smoothed, window_frames=3)
    np.testing.assert_allclose(smoothed, frames - gaussian_filter(frames, sigma=(3, 0, 0)), atol=1e-4)


def _assert_residual_exhausted(residual: np.ndarray, detection: SparseDetection) -> None:
    """Recomputed from scratch, the final residual's variance maps stay below the stopping threshold.

    Checks the incremental variance-map updates of the detection loop against a full recomputation.
    """
    grid = _scale_grid(*residual.shape[1:])
    squared_sums = np.zeros((1, int(grid.offsets[-1])), np.float32)
    _frame_response_statistics(residual, np.array([detection.peak_threshold]), np.full(int(grid.offsets[-1]), -np.inf, np.float32), squared_sums)
    assert detection.exhausted and np.sqrt(squared_sums.max()) < detection.stopping_threshold


class _PlantedRecording(NamedTuple):
    """Binned simulated movie, its active somata and the frame shape."""

    binned: np.ndarray
    true_cells: RaggedRois
    frame_shape: tuple[int, int]


@pytest.fixture(scope="session")
def planted_recording() -> _PlantedRecording:
    """Simulated 256² × 2000-frame recording, 120 somata, no motion; binned as cindra would.

    Dendrite-like sources are left out (rejecting them is the classifier's job), and so is
    bleaching: over only 66 bins the 100-bin high-pass keeps the bleaching trend of bright silent
    cells, which detection then finds as sources.
    """
    from cindra_dask.simulate import SimulationParameters, simulate_recording

    parameters = SimulationParameters(frame_count=2000, cell_count=120, non_cell_count=0, rigid_shift_px=0.0, nonrigid_shift_px=0.0, bleaching_fraction=0.0, file_count=1, seed=0)
    recording = simulate_recording(parameters)
    bin_size = bin_size_frames(frame_count=parameters.frame_count, tau_s=parameters.tau_s, frame_rate_hz=parameters.frame_rate_hz, maximum_binned_frames=5000,
                               maximum_bin_duration_s=0.0)
    binned = bin_frames(recording.movie[0, 0], bin_size=bin_size).frames
    truth = recording.truth
    true_cells = truth.rois().select(np.flatnonzero(truth.is_cell & truth.active))
    return _PlantedRecording(binned, true_cells, (parameters.frame_height, parameters.frame_width))


def test_detection_recovers_planted_somata(planted_recording: _PlantedRecording) -> None:
    residual = planted_recording.binned.copy()
    detection = detect_rois(residual, **SPARSE_DETECTION, overwrite_frames=True)
    assert detection.exhausted and detection.diameter_px == 12  # 12-px somata: scale 2
    curated = curate_rois(
        detection.rois, frame_shape=planted_recording.frame_shape, diameter_px=detection.diameter_px, centroids=detection.centroids, crop_to_soma=DEFAULTS.crop_to_soma, maximum_overlap=DEFAULTS.maximum_overlap
    )
    matching = match_rois(curated.rois, planted_recording.true_cells, frame_shape=planted_recording.frame_shape, iou_threshold=0.3)
    assert matching.recall >= 0.95 and matching.f1 >= 0.9, matching
    assert np.median(matching.iou) > 0.75

    assert np.all(curated.rois.lam > 0) and set(np.unique(detection.footprints)) <= set(range(SCALE_COUNT))
    inside = np.zeros(planted_recording.frame_shape, bool)
    inside[planted_recording.true_cells.ypix, planted_recording.true_cells.xpix] = True
    assert detection.correlation_map[inside].mean() > 2 * detection.correlation_map[~inside].mean()

    _assert_residual_exhausted(residual, detection)


def test_noise_and_empty_movies_give_no_rois() -> None:
    rng = np.random.default_rng(4)
    noise = (100 + 5 * rng.standard_normal((300, 64, 64))).astype(np.float32)
    detection = detect_rois(noise, **SPARSE_DETECTION)
    assert detection.rois.count == 0 and detection.exhausted
    assert detection.centroids.shape == (0, 2) and detection.correlation_map.shape == (64, 64)
    empty = detect_rois(np.zeros((50, 40, 40), np.float32), **SPARSE_DETECTION)
    assert empty.rois.count == 0 and np.all(empty.correlation_map == 0) and np.all(empty.maximum_projection == 0)


def test_touching_cells_with_independent_activity_are_separate_rois() -> None:
    rng = np.random.default_rng(5)
    height, width = 125, 123  # odd sizes, not multiples of 16: partial blocks at every scale
    yy, xx = np.mgrid[:height, :width]
    # 16 touching pairs (centres 9 px apart), dense enough for the scale estimate to see cells, not noise.
    centres = [(row, column + offset) for row in range(15, height, 32) for column in range(12, width, 31) for offset in (0, 9)]
    footprints = np.array([np.exp(-((yy - row) ** 2 + (xx - column) ** 2) / 12.0) for row, column in centres], np.float32)
    activity = (rng.random((len(centres), 500)) < 0.05) * rng.uniform(20, 40, (len(centres), 500))
    frames = (np.tensordot(activity.T, footprints, axes=1) + rng.standard_normal((500, height, width))).astype(np.float32)
    detection = detect_rois(frames, **SPARSE_DETECTION, overwrite_frames=True)
    truth = RaggedRois.from_masks([_mask(footprint > 0.2) for footprint in footprints])
    matching = match_rois(detection.rois, truth, frame_shape=(height, width))
    assert detection.rois.count == len(centres) and matching.recall == 1.0 and matching.iou.min() > 0.4, matching.iou
    _assert_residual_exhausted(frames, detection)


def test_split_test_prefers_two_components_for_two_independent_cells() -> None:
    rng = np.random.default_rng(7)
    pixels = np.arange(20)
    first, second = np.exp(-((pixels - 6) ** 2) / 8.0), np.exp(-((pixels - 13) ** 2) / 8.0)
    amplitudes = (rng.random((2, 500)) < 0.3) * rng.uniform(20, 40, (2, 500))
    traces = (np.outer(amplitudes[0], first) + np.outer(amplitudes[1], second) + rng.standard_normal((500, 20))).astype(np.float32)
    merged = ((first + second) / np.linalg.norm(first + second)).astype(np.float32)
    split = _split_test(traces.copy(), merged, 10.0)
    assert split.energy_ratio > 1.25
    dominant = split.weights**2
    assert max(dominant[:10].sum(), dominant[10:].sum()) > 0.9 * dominant.sum()  # one cell's pixels only
    single = _split_test((np.outer(amplitudes[0], first) + rng.standard_normal((500, 20))).astype(np.float32), (first / np.linalg.norm(first)).astype(np.float32), 10.0)
    assert single.energy_ratio < 1.1


# ------------------------------------------------------------------------------------------------
# ROI statistics
# ------------------------------------------------------------------------------------------------


def test_disk_is_compact_and_round_ellipse_is_not() -> None:
    yy, xx = np.mgrid[:80, :80]
    disk = np.hypot(yy - 20, xx - 20) < 6
    ellipse = ((yy - 55) / 3.0) ** 2 + ((xx - 45) / 14.0) ** 2 < 1
    rois = RaggedRois.from_masks([_mask(disk), _mask(ellipse)])
    statistics = roi_statistics(rois, frame_shape=(80, 80), diameter_px=12, crop_to_soma=False)
    assert statistics.compactness[0] < 1.05 < 1.3 < statistics.compactness[1]
    assert abs(statistics.aspect_ratio[0] - 1.0) < 0.02 and statistics.aspect_ratio[1] > 1.5
    # 2.5 σ of a uniform disk of radius R is 2.5·R/2.
    np.testing.assert_allclose(statistics.radius_px[0], 2.5 * np.sqrt(np.mean((np.nonzero(disk)[0] - 20.0) ** 2)), rtol=1e-4)
    for index, selection in enumerate((disk, ellipse)):
        points = np.argwhere(selection)
        np.testing.assert_allclose(statistics.solidity[index], len(points) / ConvexHull(points).volume, rtol=1e-6)
    np.testing.assert_array_equal(statistics.pixel_count, [disk.sum(), ellipse.sum()])
    np.testing.assert_allclose(statistics.normalized_pixel_count, [disk.sum(), ellipse.sum()] / np.mean([disk.sum(), ellipse.sum()]), rtol=1e-6)


def test_soma_crop_cuts_a_dim_tail() -> None:
    yy, xx = np.mgrid[:60, :60]
    soma = np.hypot(yy - 20, xx - 20) <= 5
    tail = (np.abs(yy - 20) <= 1) & (xx > 25) & (xx < 55)
    weights = np.where(soma, 1.0, 0.02)
    rois = RaggedRois.from_masks([_mask(soma | tail, weights)])
    statistics = roi_statistics(rois, frame_shape=(60, 60), diameter_px=12, centroids=np.array([[20, 20]]), crop_to_soma=True)
    kept_columns = rois.xpix[statistics.soma_mask]
    assert kept_columns.max() <= 26 and statistics.soma_pixel_count[0] >= 0.8 * soma.sum()
    assert statistics.pixel_count[0] == (soma | tail).sum()


def test_overlap_removal_drops_the_later_of_two_overlapping_rois() -> None:
    yy, xx = np.mgrid[:64, :64]
    first = np.hypot(yy - 20, xx - 20) < 6
    second = np.hypot(yy - 20, xx - 21) < 6  # 90 % of its pixels shared with the first
    third = np.hypot(yy - 45, xx - 45) < 6
    rois = RaggedRois.from_masks([_mask(first), _mask(third), _mask(second)])
    np.testing.assert_array_equal(overlap_survivors(rois, frame_shape=(64, 64), maximum_overlap=0.75), [True, True, False])
    np.testing.assert_array_equal(overlap_survivors(rois, frame_shape=(64, 64), maximum_overlap=1.0), [True, True, True])
    curated = curate_rois(rois, frame_shape=(64, 64), diameter_px=12, crop_to_soma=True, maximum_overlap=0.75)
    np.testing.assert_array_equal(curated.kept_indices, [0, 1])
    assert curated.rois.count == 2 and not curated.statistics.overlap_mask.any()
    assert curated.statistics.soma_mask.size == curated.rois.ypix.size


# ------------------------------------------------------------------------------------------------
# Denoising
# ------------------------------------------------------------------------------------------------


def test_block_pca_denoising_recovers_a_low_rank_movie() -> None:
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[:96, :80]
    patterns = np.array([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0) for cy, cx in rng.uniform(5, 75, (12, 2))])
    clean = (50 + np.tensordot(rng.gamma(1.0, 5.0, (300, 12)), patterns, axes=1)).astype(np.float32)
    noisy = (clean + 3 * rng.standard_normal(clean.shape)).astype(np.float32)
    denoised = pca_denoise(noisy, block_shape_px=(48, 48))
    error_before = np.sqrt(np.mean((noisy - clean) ** 2))
    error_after = np.sqrt(np.mean((denoised - clean) ** 2))
    assert error_after < 0.5 * error_before
    in_place = noisy.copy()
    assert pca_denoise(in_place, block_shape_px=(48, 48), overwrite_frames=True) is in_place
    np.testing.assert_allclose(in_place, denoised, atol=1e-4)


class _ShakenField(NamedTuple):
    """A field of 32 bright silent blobs and 8 active ones, shifted every frame by a small affine field (residual motion)."""

    frames: np.ndarray
    active_rois: RaggedRois
    activity: np.ndarray
    active_footprints: np.ndarray


def _shaken_field(*, seed: int, motion_px: float, size: int = 128, frame_count: int = 300) -> _ShakenField:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    centres = rng.uniform(8, size - 8, (40, 2))
    blobs = np.array([np.exp(-((yy - row) ** 2 + (xx - column) ** 2) / 18.0) for row, column in centres])
    static = 20 + np.tensordot(rng.uniform(50, 150, 32), blobs[:32], axes=1)
    events = (rng.random((8, frame_count)) < 0.03) * rng.uniform(40, 80, (8, frame_count))
    activity = np.zeros_like(events)
    for t in range(frame_count):
        activity[:, t] = events[:, t] + (0.8 * activity[:, t - 1] if t else 0.0)
    offsets, gradients = motion_px * rng.standard_normal((2, frame_count, 2))
    frames = np.empty((frame_count, size, size), np.float32)
    for t in range(frame_count):
        scene = static + np.tensordot(activity[:, t], blobs[32:], axes=1)
        rows = yy + offsets[t, 0] + gradients[t, 0] * (yy - size / 2) / size
        columns = xx + offsets[t, 1] + gradients[t, 1] * (xx - size / 2) / size
        frames[t] = map_coordinates(scene, [rows, columns], order=3, mode="nearest")
    frames += (rng.standard_normal(frames.shape) * np.sqrt(np.maximum(frames, 1))).astype(np.float32)
    active_rois = RaggedRois.from_masks([_mask(blob > 0.3) for blob in blobs[32:]])
    return _ShakenField(frames, active_rois, activity, blobs[32:].astype(np.float32))


def test_residual_motion_removal_leaves_activity_and_removes_shift_edges() -> None:
    still = _shaken_field(seed=8, motion_px=0.0)
    high_passed = still.frames.copy()
    subtract_temporal_baseline(high_passed, window_frames=100)
    cleaned = high_passed.copy()
    subtract_residual_motion(cleaned, mean_image=still.frames.mean(axis=0), window_px=64)
    weights = still.active_footprints.reshape(8, -1)
    before, after = high_passed.reshape(len(high_passed), -1) @ weights.T, cleaned.reshape(len(cleaned), -1) @ weights.T
    for cell in range(8):  # without motion, each active cell's trace is kept: same shape, ≥ 95 % of its size
        assert np.corrcoef(before[:, cell], after[:, cell])[0, 1] > 0.995
        assert 0.95 < np.std(after[:, cell]) / np.std(before[:, cell]) < 1.05

    shaken = _shaken_field(seed=8, motion_px=0.3)  # the same scene, activity and noise draws, now shifted
    moved = shaken.frames.copy()
    subtract_temporal_baseline(moved, window_frames=100)
    motion_energy = float(np.sum((moved - high_passed) ** 2))
    subtract_residual_motion(moved, mean_image=shaken.frames.mean(axis=0), window_px=64)
    assert float(np.sum((moved - cleaned) ** 2)) < 0.1 * motion_energy  # 0.03 measured: first order leaves the curvature term


@pytest.mark.parametrize("seed", [8, 9])
def test_residual_motion_removal_stops_shift_edges_becoming_rois(seed: int) -> None:
    """0.3 px of residual shift on bright silent blobs: cindra's algorithm returns ~140 ROIs, almost all on
    blob edges; with the motion removed, every active blob is still found among at most 14 ROIs."""
    field = _shaken_field(seed=seed, motion_px=0.3)
    options = dict(SPARSE_DETECTION, residual_motion_window_px=0)
    plain = match_rois(detect_rois(field.frames, **options).rois, field.active_rois, frame_shape=field.frames.shape[1:])
    options["residual_motion_window_px"] = 64
    detection = detect_rois(field.frames, **options)
    cleaned = match_rois(detection.rois, field.active_rois, frame_shape=field.frames.shape[1:])
    assert plain.recall == 1.0 and plain.precision < 0.1, plain
    assert cleaned.recall == 1.0 and detection.rois.count <= 14, (detection.rois.count, cleaned)


def test_tiled_detection_finds_the_whole_fields_rois_away_from_tile_borders(planted_recording: _PlantedRecording, client: Any) -> None:
    """``roi_detection.tile_size`` 128 on the 256² field (4 tiles, two passes each, through the graph):
    every ROI with all its pixels two cell diameters or more from the tile borders has the same
    pixels and weights as the whole field's (the 3 of 116 that differ reach within 15 px of a border), the scale is the same and F1 against the planted somata is
    within 0.01; a field no larger than a tile is the whole-field graph itself."""
    import dask.array as da

    from cindra_dask.detection.graph import plane_detection
    from cindra_dask.detection.plane import detect_plane

    frame_shape = planted_recording.frame_shape
    arguments: dict[str, Any] = {"crop_origin_px": (0, 0), "frame_shape": frame_shape, "options": DEFAULTS, "shape_classifier": None}
    lazy = da.from_array(planted_recording.binned, chunks=(25, *frame_shape))
    assert plane_detection(lazy, **arguments, tile_size_px=256).key == plane_detection(lazy, **arguments, tile_size_px=0).key
    whole = detect_plane(planted_recording.binned.copy(), **arguments)
    tiled = client.compute(plane_detection(lazy, **arguments, tile_size_px=128), sync=True)
    assert tiled.diameter_px == whole.diameter_px == 12

    def away_from_borders(detection: Any) -> dict[frozenset[tuple[int, int]], np.ndarray]:
        """Pixel set → weights of each ROI whose pixels are all 24 px or more from the tile borders (row 128, column 128)."""
        masks = (detection.rois.roi(index) for index in range(detection.rois.count))
        return {
            frozenset(zip(ypix.tolist(), xpix.tolist())): lam[np.lexsort((xpix, ypix))]
            for ypix, xpix, lam in masks
            if min(np.abs(ypix - 128).min(), np.abs(xpix - 128).min()) >= 2 * whole.diameter_px
        }

    whole_interior, tiled_interior = away_from_borders(whole), away_from_borders(tiled)
    assert len(whole_interior) >= 50 and whole_interior.keys() == tiled_interior.keys()
    assert max(float(np.max(np.abs(tiled_interior[pixels] / whole_interior[pixels] - 1))) for pixels in whole_interior) < 1e-3
    f1 = [match_rois(detection.rois, planted_recording.true_cells, frame_shape=frame_shape, iou_threshold=0.3).f1 for detection in (whole, tiled)]
    assert abs(f1[0] - f1[1]) <= 0.01, f1

    from cindra_dask.config import SingleRecordingConfiguration, configuration_from_mapping
    from cindra_dask.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as raised:
        configuration_from_mapping({"roi_detection": {"tile_size": 100}}, source="config.yaml", model=SingleRecordingConfiguration)
    assert str(raised.value) == "config.yaml: roi_detection.tile_size: Input should be a multiple of 16"
