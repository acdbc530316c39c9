"""Extraction kernels against planted ground truth and plain reference implementations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, gaussian_filter1d, percentile_filter
from scipy.optimize import lsq_linear, minimize

from cindra_dask.extraction.baseline import (
    NEUROPIL_COEFFICIENT_RANGE,
    delta_f_over_f,
    estimate_neuropil_coefficients,
    maximin_baseline,
    neuropil_corrected_delta_f_over_f,
    neuropil_corrected_skewness,
    smoothed_minima,
    subtract_baseline,
    subtract_neuropil,
)
from cindra_dask.extraction.colocalization import correct_bleedthrough, functional_colocalization, structural_colocalization
from cindra_dask.extraction.masks import (
    NEUROPIL_GROWTH_PX,
    NEUROPIL_MAXIMUM_GROWTH_STEPS,
    build_extraction_masks,
    cell_pixel_map,
    cell_weight_matrix,
    neuropil_weight_matrix,
)
from cindra_dask.extraction.oasis import advance_spikes, decay_factor, deconvolve_oasis
from cindra_dask.extraction.traces import extract_traces
from cindra_dask.rois import RaggedRois

MASK_OPTIONS: dict[str, Any] = {
    "allow_overlap": False,
    "extract_neuropil": True,
    "cell_probability_percentile": 50.0,
    "inner_neuropil_border_radius_px": 2,
    "minimum_neuropil_pixels": 350,
}


def disk_roi(center_y: float, center_x: float, radius_px: float, frame_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ypix, xpix, lam) of a disk with Gaussian-profile weights, clipped to the frame."""
    height, width = frame_shape
    rows, columns = np.mgrid[0:height, 0:width]
    distance_sq = (rows - center_y) ** 2 + (columns - center_x) ** 2
    inside = distance_sq <= radius_px**2
    lam = np.exp(-distance_sq[inside] / (2 * (radius_px / 2) ** 2)).astype(np.float32)
    return rows[inside].astype(np.int32), columns[inside].astype(np.int32), lam


def grid_rois(frame_shape: tuple[int, int], *, spacing_px: int, radius_px: float, margin_px: int, rng: np.random.Generator) -> RaggedRois:
    """Disks on a jittered grid (non-overlapping when spacing > 2·radius + 2)."""
    height, width = frame_shape
    masks = []
    for center_y in range(margin_px, height - margin_px + 1, spacing_px):
        for center_x in range(margin_px, width - margin_px + 1, spacing_px):
            jitter = rng.uniform(-1, 1, 2)
            masks.append(disk_roi(center_y + jitter[0], center_x + jitter[1], radius_px, frame_shape))
    return RaggedRois.from_masks(masks)


def ar1_calcium(spikes: np.ndarray, decay: float) -> np.ndarray:
    """c_t = decay · c_{t−1} + s_t along axis 1 (float64)."""
    calcium = np.zeros(spikes.shape)
    calcium[:, 0] = spikes[:, 0]
    for t in range(1, spikes.shape[1]):
        calcium[:, t] = decay * calcium[:, t - 1] + spikes[:, t]
    return calcium


def row_correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson r of matching rows."""
    first = first - first.mean(axis=1, keepdims=True)
    second = second - second.mean(axis=1, keepdims=True)
    return (first * second).sum(axis=1) / np.sqrt((first**2).sum(axis=1) * (second**2).sum(axis=1))


# ----------------------------------------------------------------------------------------- masks


def test_overlap_exclusion_on_a_hand_built_pair() -> None:
    first = (np.repeat(np.arange(3), 3), np.tile(np.arange(3), 3), np.arange(1, 10, dtype=np.float32))
    second = (np.repeat(np.arange(1, 4), 3), np.tile(np.arange(1, 4), 3), np.full(9, 2.0, np.float32))
    covered = (np.array([1, 2]), np.array([1, 2]), np.array([1.0, 1.0], np.float32))  # inside both others
    rois = RaggedRois.from_masks([first, second, covered])
    shape = (5, 5)
    exclusive = cell_weight_matrix(rois, frame_shape=shape, allow_overlap=False).toarray().reshape(3, 5, 5)
    shared = {(1, 1), (1, 2), (2, 1), (2, 2)}
    expected_first = np.zeros((5, 5))
    kept = [(y, x, w) for y, x, w in zip(*first) if (y, x) not in shared]
    for y, x, w in kept:
        expected_first[y, x] = w / sum(item[2] for item in kept)
    expected_second = np.zeros((5, 5))
    kept_second = [(y, x) for y, x in zip(second[0], second[1]) if (y, x) not in shared]
    for y, x in kept_second:
        expected_second[y, x] = 1 / len(kept_second)
    np.testing.assert_allclose(exclusive[0], expected_first, rtol=1e-6)
    np.testing.assert_allclose(exclusive[1], expected_second, rtol=1e-6)
    assert not exclusive[2].any()  # every pixel shared: empty row
    overlapping = cell_weight_matrix(rois, frame_shape=shape, allow_overlap=True).toarray()
    np.testing.assert_allclose(overlapping.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(overlapping[0].reshape(5, 5)[2, 2], 9 / 45, rtol=1e-6)


@pytest.mark.parametrize(("radius_px", "percentile"), [(2.0, 50.0), (1.5, 30.0), (12.0, 50.0), (3.0, 100.0), (3.0, 0.0)])
def test_cell_pixel_map_matches_scipy_percentile_rule(radius_px: float, percentile: float) -> None:
    rng = np.random.default_rng(3)
    shape = (40, 37)
    masks = [disk_roi(*rng.uniform(-2, 40, 2), rng.uniform(2, 5), shape) for _ in range(25)]
    rois = RaggedRois.from_masks([mask for mask in masks if mask[0].size])
    weight_map = np.zeros(shape)
    np.maximum.at(weight_map, (rois.ypix, rois.xpix), rois.lam)
    if percentile == 0:
        expected = weight_map > 0
    else:
        local = percentile_filter(weight_map, percentile=percentile, size=int(5 * radius_px))
        expected = ~((weight_map < local) | (weight_map == 0))
    result = cell_pixel_map(rois, frame_shape=shape, roi_radii_px=np.full(rois.count, radius_px), cell_probability_percentile=percentile)
    np.testing.assert_array_equal(result, expected)
    assert 0 < result.sum() <= (weight_map > 0).sum()


def reference_neuropil_pixels(ypix: np.ndarray, xpix: np.ndarray, cell_pixels: np.ndarray, border_px: int, minimum_pixels: int) -> np.ndarray:
    """cindra's neuropil rule written plainly: dilate, grow the box while too few pixels, subtract."""
    height, width = cell_pixels.shape
    inner = np.zeros((height, width), bool)
    inner[ypix, xpix] = True
    if border_px:
        inner = binary_dilation(inner, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool), iterations=border_px)
    region = inner.copy()
    inner_free = np.sum(inner & ~cell_pixels)
    steps = 0
    while steps < NEUROPIL_MAXIMUM_GROWTH_STEPS and np.sum(region & ~cell_pixels) - inner_free <= minimum_pixels:
        rows, columns = np.nonzero(region)
        region = np.zeros((height, width), bool)
        region[
            max(0, rows.min() - NEUROPIL_GROWTH_PX) : min(height, rows.max() + NEUROPIL_GROWTH_PX + 1),
            max(0, columns.min() - NEUROPIL_GROWTH_PX) : min(width, columns.max() + NEUROPIL_GROWTH_PX + 1),
        ] = True
        steps += 1
    return np.flatnonzero(region & ~cell_pixels & ~inner)


@pytest.mark.parametrize("percentile", [50.0, 0.0])
def test_neuropil_masks_follow_cindra_rule(percentile: float) -> None:
    rng = np.random.default_rng(5)
    shape = (90, 70)
    rois = RaggedRois.from_masks([disk_roi(*rng.uniform(0, 89, 1), *rng.uniform(0, 69, 1), rng.uniform(3, 6), shape) for _ in range(30)])
    radii = np.full(rois.count, 4.0)
    cell_pixels = cell_pixel_map(rois, frame_shape=shape, roi_radii_px=radii, cell_probability_percentile=percentile)
    for border_px, minimum_pixels in [(2, 350), (0, 120), (4, 5000)]:
        neuropil = neuropil_weight_matrix(rois, cell_pixels=cell_pixels, inner_neuropil_border_radius_px=border_px, minimum_neuropil_pixels=minimum_pixels)
        for roi in range(rois.count):
            ypix, xpix, _ = rois.roi(roi)
            row = neuropil.getrow(roi)
            expected = reference_neuropil_pixels(ypix, xpix, cell_pixels, border_px, minimum_pixels)
            np.testing.assert_array_equal(row.indices, expected)
            np.testing.assert_allclose(row.data, 1.0 / expected.size, rtol=1e-6)
            assert not cell_pixels.ravel()[row.indices].any()
            if minimum_pixels < 1000:
                assert row.indices.size > minimum_pixels
            border = np.zeros(shape, bool)
            border[ypix, xpix] = True
            if border_px:
                border = binary_dilation(border, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool), iterations=border_px)
            assert not border.ravel()[row.indices].any()
    if percentile == 0:  # every ROI pixel is a cell pixel: no neuropil mask touches any ROI
        every_roi = np.zeros(shape[0] * shape[1], bool)
        every_roi[rois.ypix.astype(np.int64) * shape[1] + rois.xpix] = True
        assert not every_roi[neuropil.indices].any()


def test_build_extraction_masks_rows_and_switches() -> None:
    rng = np.random.default_rng(6)
    shape = (64, 64)
    rois = grid_rois(shape, spacing_px=14, radius_px=4, margin_px=8, rng=rng)
    masks = build_extraction_masks(rois, frame_shape=shape, roi_radii_px=np.full(rois.count, 4.0), **MASK_OPTIONS)
    assert masks.cell_weights.shape == masks.neuropil_weights.shape == (rois.count, 64 * 64)
    assert masks.cell_weights.dtype == masks.neuropil_weights.dtype == np.float32
    np.testing.assert_allclose(np.asarray(masks.cell_weights.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(masks.neuropil_weights.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    without = build_extraction_masks(rois, frame_shape=shape, roi_radii_px=np.full(rois.count, 4.0), **{**MASK_OPTIONS, "extract_neuropil": False})
    assert without.neuropil_weights.nnz == 0 and without.neuropil_weights.shape == (rois.count, 64 * 64)
    with pytest.raises(ValueError, match="outside"):
        build_extraction_masks(rois, frame_shape=(30, 30), roi_radii_px=np.full(rois.count, 4.0), **MASK_OPTIONS)


# ---------------------------------------------------------------------------------------- traces


@pytest.fixture(scope="module")
def small_masks() -> tuple[RaggedRois, Any]:
    rng = np.random.default_rng(7)
    shape = (48, 40)
    rois = RaggedRois.from_masks([disk_roi(*rng.uniform(0, 47, 1), *rng.uniform(0, 39, 1), rng.uniform(2, 5), shape) for _ in range(15)])
    masks = build_extraction_masks(rois, frame_shape=shape, roi_radii_px=np.full(rois.count, 3.0), **{**MASK_OPTIONS, "allow_overlap": True, "minimum_neuropil_pixels": 200})
    return rois, masks


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_extract_traces_equals_dense_loop(small_masks: tuple[RaggedRois, Any], dtype: type) -> None:
    rois, masks = small_masks
    rng = np.random.default_rng(8)
    frames = (rng.normal(300, 80, (60, 48, 40))).astype(dtype)
    traces = extract_traces(frames, masks=masks)
    frames64 = frames.astype(np.float64)
    expected_cell = np.stack([(frames64[:, ypix, xpix] * (lam / lam.sum())).sum(axis=1) for ypix, xpix, lam in (rois.roi(i) for i in range(rois.count))])
    expected_neuropil = np.stack([frames64.reshape(60, -1)[:, masks.neuropil_weights.getrow(i).indices].mean(axis=1) for i in range(rois.count)])
    assert traces.cell_fluorescence.dtype == traces.neuropil_fluorescence.dtype == np.float32
    np.testing.assert_allclose(traces.cell_fluorescence, expected_cell, rtol=1e-6)
    np.testing.assert_allclose(traces.neuropil_fluorescence, expected_neuropil, rtol=1e-6)


def test_chunked_extraction_concatenates_to_whole_movie(small_masks: tuple[RaggedRois, Any]) -> None:
    _, masks = small_masks
    frames = np.random.default_rng(9).normal(100, 20, (197, 48, 40)).astype(np.float32)
    whole = extract_traces(frames, masks=masks)
    pieces = [extract_traces(frames[start:stop], masks=masks) for start, stop in [(0, 97), (97, 194), (194, 197)]]
    np.testing.assert_array_equal(np.concatenate([piece.cell_fluorescence for piece in pieces], axis=1), whole.cell_fluorescence)
    np.testing.assert_array_equal(np.concatenate([piece.neuropil_fluorescence for piece in pieces], axis=1), whole.neuropil_fluorescence)


def test_planted_movie_neuropil_corrected_traces_track_calcium() -> None:
    rng = np.random.default_rng(10)
    shape, frame_count, frame_rate_hz, tau_s, contamination = (64, 64), 1000, 30.0, 0.7, 0.7
    rois = grid_rois(shape, spacing_px=16, radius_px=4.5, margin_px=8, rng=rng)
    spikes = (rng.random((rois.count, frame_count)) < 1.0 / frame_rate_hz) * rng.uniform(0.5, 2.0, (rois.count, frame_count))
    calcium = ar1_calcium(spikes, decay_factor(tau_s=tau_s, frame_rate_hz=frame_rate_hz))
    footprints = np.zeros((rois.count, shape[0] * shape[1]))
    for roi in range(rois.count):
        ypix, xpix, lam = rois.roi(roi)
        footprints[roi, ypix * shape[1] + xpix] = lam / lam.max()
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    sources = [np.exp(-((rows - cy) ** 2 + (columns - cx) ** 2) / (2 * 30.0**2)).ravel() for cy, cx in [(0, 0), (63, 63), (0, 63)]]
    source_traces = gaussian_filter1d(rng.normal(0, 1, (3, frame_count)), 15, axis=1) * 40  # slow, strong neuropil
    occlusion = 1.0 - (1.0 - contamination) * (footprints.max(axis=0) > 0)  # cells hide part of the neuropil
    neuropil = (source_traces.T @ np.stack(sources)) * occlusion
    movie = 100.0 + calcium.T @ footprints * 3.0 + neuropil + rng.normal(0, 1.0, (frame_count, shape[0] * shape[1]))
    masks = build_extraction_masks(rois, frame_shape=shape, roi_radii_px=np.full(rois.count, 4.5), **{**MASK_OPTIONS, "minimum_neuropil_pixels": 300})
    traces = extract_traces(movie.reshape(frame_count, *shape).astype(np.float32), masks=masks)
    corrected = subtract_neuropil(traces.cell_fluorescence, traces.neuropil_fluorescence, neuropil_coefficient=contamination)
    corrected_r = row_correlations(corrected, calcium)
    raw_r = row_correlations(traces.cell_fluorescence, calcium)
    print(f"planted extraction: median r corrected {np.median(corrected_r):.4f} (min {corrected_r.min():.4f}), raw F {np.median(raw_r):.4f}")
    assert np.median(corrected_r) >= 0.95
    assert corrected_r.min() >= 0.8  # corner ROIs sit on the steepest neuropil gradients
    assert np.median(raw_r) < 0.8  # the neuropil really contaminates F
    skewness = neuropil_corrected_skewness(traces.cell_fluorescence, traces.neuropil_fluorescence, neuropil_coefficient=contamination)
    assert skewness.shape == (rois.count,) and skewness.dtype == np.float32
    assert np.all(skewness > 0.5)  # sparse positive transients


def test_estimated_neuropil_coefficients_recover_planted_contamination() -> None:
    """F = baseline + transients + k·neuropil + noise with k planted per ROI in [0.2, 1.4]; the neuropil is
    slow and partly the population's calcium (so F and Fneu correlate through the cells too)."""
    rng = np.random.default_rng(21)
    roi_count, frame_count = 40, 3000
    planted = rng.uniform(0.2, 1.4, roi_count)
    spikes = (rng.random((roi_count, frame_count)) < 0.5 / 30.0) * rng.uniform(0.5, 1.5, (roi_count, frame_count))
    calcium = ar1_calcium(spikes, decay_factor(tau_s=1.0, frame_rate_hz=30.0))
    slow = gaussian_filter1d(rng.normal(0, 1, (1, frame_count)), 30, axis=1) + gaussian_filter1d(rng.normal(0, 1, (roi_count, frame_count)), 30, axis=1)
    neuropil_signal = 100.0 + 400.0 * slow + 5.0 * calcium.mean(axis=0)
    cell = 60.0 + 40.0 * calcium + planted[:, None] * neuropil_signal + rng.normal(0, 2.0, (roi_count, frame_count))
    neuropil = neuropil_signal + rng.normal(0, 0.5, (roi_count, frame_count))
    estimated = estimate_neuropil_coefficients(cell.astype(np.float32), neuropil.astype(np.float32), initial_coefficient=0.7, quiet_fraction=0.2)
    assert estimated.shape == (roi_count,) and estimated.dtype == np.float32
    error = np.abs(estimated - planted)
    assert np.median(error) < 0.02 and error.max() < 0.08
    fixed_r = row_correlations(subtract_neuropil(cell, neuropil, neuropil_coefficient=0.7), calcium)
    estimated_r = row_correlations(subtract_neuropil(cell, neuropil, neuropil_coefficient=estimated), calcium)
    assert estimated_r.min() > 0.98 and np.median(fixed_r) < 0.9

    flat_and_steep = estimate_neuropil_coefficients(
        np.stack([cell[0], cell[0] + 2.0 * neuropil_signal[0]]).astype(np.float32), np.stack([np.zeros(frame_count), neuropil[0]]).astype(np.float32), initial_coefficient=0.7, quiet_fraction=0.2
    )
    assert flat_and_steep[0] == np.float32(0.7)  # no neuropil to fit: the initial coefficient
    assert flat_and_steep[1] == np.float32(NEUROPIL_COEFFICIENT_RANGE[1])  # k ≈ 2.4 is clipped


# ----------------------------------------------------------------------------------------- OASIS


def naive_oasis(trace: np.ndarray, decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators with Python lists: (spikes, calcium)."""
    pools: list[list[float]] = []  # [value, weight, start, length]
    for t, value in enumerate(trace.astype(float)):
        pools.append([value, 1.0, t, 1])
        while len(pools) > 1 and pools[-2][0] * decay ** pools[-2][3] > pools[-1][0]:
            last = pools.pop()
            previous = pools[-1]
            factor = decay ** previous[3]
            weight = previous[1] + factor**2 * last[1]
            previous[0] = (previous[1] * previous[0] + factor * last[1] * last[0]) / weight
            previous[1] = weight
            previous[3] += last[3]
    spikes, calcium = np.zeros(trace.size), np.zeros(trace.size)
    for index, (value, _, start, length) in enumerate(pools):
        if index > 0:
            before = pools[index - 1]
            spikes[start] = value - before[0] * decay ** before[3]
        for offset in range(length):
            calcium[start + offset] = value * decay**offset
    return spikes, calcium


def test_oasis_noise_free_spikes_are_exact() -> None:
    rng = np.random.default_rng(11)
    frame_rate_hz, tau_s = 30.0, 1.0
    spikes = (rng.random((20, 2000)) < 0.03) * rng.uniform(0.5, 3.0, (20, 2000))
    spikes[:, 0] = 0.0
    calcium = ar1_calcium(spikes, decay_factor(tau_s=tau_s, frame_rate_hz=frame_rate_hz))
    result = deconvolve_oasis(calcium.astype(np.float32), tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0)
    error = np.abs(result.spikes - spikes).max()
    print(f"OASIS noise-free: max spike error {error:.2e}")
    assert error < 1e-4
    np.testing.assert_array_equal(result.spikes > 1e-4, spikes > 0)
    np.testing.assert_allclose(result.calcium, calcium, atol=1e-4)


def test_oasis_recovers_spikes_in_noise() -> None:
    rng = np.random.default_rng(12)
    frame_rate_hz, tau_s, frame_count = 30.0, 1.0, 6000
    spikes = (rng.random((30, frame_count)) < 0.5 / frame_rate_hz) * rng.uniform(0.5, 2.0, (30, frame_count))
    calcium = ar1_calcium(spikes, decay_factor(tau_s=tau_s, frame_rate_hz=frame_rate_hz))
    noisy = calcium + rng.normal(0, 0.4, calcium.shape)  # SNR: unit spike / noise σ = 2.5
    result = deconvolve_oasis(noisy.astype(np.float32), tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0)
    correlation = row_correlations(gaussian_filter1d(result.spikes.astype(np.float64), 2, axis=1), gaussian_filter1d(spikes, 2, axis=1))
    print(f"OASIS noisy: median r {np.median(correlation):.4f}, min {correlation.min():.4f}")
    assert np.median(correlation) >= 0.9
    assert correlation.min() >= 0.85
    assert np.all(result.spikes >= 0)


def test_oasis_agrees_with_naive_pava() -> None:
    rng = np.random.default_rng(13)
    frame_rate_hz, tau_s = 15.0, 0.5
    decay = decay_factor(tau_s=tau_s, frame_rate_hz=frame_rate_hz)
    spikes = (rng.random((6, 400)) < 0.05) * rng.uniform(0.2, 2.0, (6, 400))
    traces = (ar1_calcium(spikes, decay) + rng.normal(0, 0.3, spikes.shape) - 0.2).astype(np.float32)
    result = deconvolve_oasis(traces, tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0)
    for row in range(traces.shape[0]):
        naive_spikes, naive_calcium = naive_oasis(traces[row], decay)
        np.testing.assert_allclose(result.spikes[row], naive_spikes, atol=1e-5)
        np.testing.assert_allclose(result.calcium[row], naive_calcium, atol=1e-5)


@pytest.mark.parametrize("penalty", [0.0, 0.3])
def test_oasis_is_optimal(penalty: float) -> None:
    rng = np.random.default_rng(14)
    frame_rate_hz, tau_s, frame_count = 10.0, 0.8, 60
    decay = decay_factor(tau_s=tau_s, frame_rate_hz=frame_rate_hz)
    trace = ar1_calcium((rng.random((1, frame_count)) < 0.1) * 2.0, decay)[0] + rng.normal(0, 0.3, frame_count)
    kernel = np.tril(decay ** np.subtract.outer(np.arange(frame_count), np.arange(frame_count)).clip(0))  # c = K · (c0, s1, …)

    def objective(variables: np.ndarray) -> float:
        return 0.5 * float(np.sum((kernel @ variables - trace) ** 2)) + penalty * float(variables[1:].sum())

    result = deconvolve_oasis(trace[None].astype(np.float32), tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0, sparsity_penalty=penalty)
    ours = np.concatenate([[result.calcium[0, 0]], result.spikes[0, 1:]]).astype(np.float64)
    bounds_low = np.r_[-np.inf, np.zeros(frame_count - 1)]
    if penalty == 0:
        reference = lsq_linear(kernel, trace, bounds=(bounds_low, np.inf), tol=1e-12).x
    else:
        reference = minimize(objective, np.r_[trace[0], np.zeros(frame_count - 1)], jac=lambda v: kernel.T @ (kernel @ v - trace) + penalty * np.r_[0.0, np.ones(frame_count - 1)], bounds=[(None, None)] + [(0, None)] * (frame_count - 1), method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20000}).x
    assert objective(ours) <= objective(reference) + 1e-5
    np.testing.assert_allclose(kernel @ ours, kernel @ reference, atol=2e-3)
    if penalty > 0:
        unpenalised = deconvolve_oasis(trace[None].astype(np.float32), tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0)
        assert result.spikes[0, 1:].sum() < unpenalised.spikes[0, 1:].sum()


# -------------------------------------------------------------------------------------- baselines


def test_maximin_recovers_slow_drift() -> None:
    rng = np.random.default_rng(15)
    frame_rate_hz, frame_count = 30.0, 30000
    time_s = np.arange(frame_count) / frame_rate_hz
    drift = np.stack([np.sin(2 * np.pi * time_s / period_s + phase) + slope * time_s / 1000 for period_s, phase, slope in [(1000, 0.0, 0.5), (800, 1.0, -1.0), (1200, 2.0, 0.0), (900, 3.0, 2.0)]])
    transients = ar1_calcium((rng.random(drift.shape) < 0.05 / frame_rate_hz) * rng.uniform(1.0, 3.0, drift.shape), decay_factor(tau_s=1.0, frame_rate_hz=frame_rate_hz))
    traces = (drift + transients + rng.normal(0, 0.1, drift.shape)).astype(np.float32)
    baseline = maximin_baseline(traces, baseline_window_s=60.0, baseline_sigma_frames=10.0, frame_rate_hz=frame_rate_hz)
    error = np.abs(baseline - drift)  # drift amplitude 1, transients 1–3, noise σ 0.1
    window_frames = int(60.0 * frame_rate_hz)
    interior = error[:, window_frames:-window_frames]
    print(f"maximin drift error: mean |e| {error.mean():.4f}, interior max |e| {interior.max():.4f}, max |e| {error.max():.4f}")
    assert error.mean() < 0.04
    assert interior.max() < 0.12
    assert error.max() < 0.3  # the ends see a one-sided window
    subtracted = subtract_baseline(traces, baseline_method="maximin", baseline_window_s=60.0, baseline_sigma_frames=10.0, baseline_percentile=8.0, frame_rate_hz=frame_rate_hz)
    np.testing.assert_allclose(subtracted, traces - baseline, atol=1e-6)


def test_constant_and_percentile_baselines() -> None:
    rng = np.random.default_rng(16)
    traces = (rng.normal(0, 1, (6, 500)) + np.arange(6)[:, None]).astype(np.float32)
    options = {"baseline_window_s": 60.0, "baseline_sigma_frames": 10.0, "baseline_percentile": 8.0, "frame_rate_hz": 30.0}
    whole = subtract_baseline(traces, baseline_method="constant", **options)
    global_minimum = gaussian_filter1d(traces.astype(np.float64), 10.0, axis=1).min()
    np.testing.assert_allclose(whole, traces - global_minimum, atol=1e-5)
    minimum = min(float(smoothed_minima(traces[:4], baseline_sigma_frames=10.0).min()), float(smoothed_minima(traces[4:], baseline_sigma_frames=10.0).min()))
    chunked = np.concatenate([subtract_baseline(block, baseline_method="constant", constant_baseline=minimum, **options) for block in (traces[:4], traces[4:])])
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    percentile = subtract_baseline(traces, baseline_method="constant_percentile", **options)
    np.testing.assert_allclose(np.mean(percentile < 0, axis=1), 0.08, atol=0.005)
    unsmoothed = maximin_baseline(traces, baseline_window_s=1.0, baseline_sigma_frames=0.0, frame_rate_hz=30.0)
    assert np.all(unsmoothed <= traces + 1e-6)  # an opening never exceeds the trace
    ratio = delta_f_over_f(np.full((1, 3), 150.0, np.float32), np.full((1, 3), 100.0, np.float32))
    np.testing.assert_allclose(ratio, 0.5)


@pytest.mark.parametrize("baseline_method", ["maximin", "constant", "constant_percentile"])
def test_delta_f_over_f_of_a_planted_trace_is_its_definition(baseline_method: str) -> None:
    """F = c·Fneu + F0·(1 + x): every baseline method recovers F0 per ROI, so dF/F = x exactly.

    The planted x is zero except for short transients (2 s every 10 s) on a flat F0 that differs
    per ROI (100 and 40), so the maximin opening, the smoothed minimum and the 8th percentile all
    equal F0; a row whose corrected trace sits below zero gets NaN, never a huge ratio.
    """
    rng = np.random.default_rng(23)
    frame_rate_hz, frame_count = 10.0, 1200
    t = np.arange(frame_count) / frame_rate_hz
    transient = np.where((t % 10.0) >= 8.0, 0.5 * np.exp(-((t % 10.0) - 8.0) / 0.7), 0.0)
    resting = np.array([100.0, 40.0, -5.0])[:, None]
    planted = np.stack([transient, 2.0 * transient, transient])
    neuropil = (50.0 + 5.0 * rng.standard_normal((3, frame_count))).astype(np.float32)
    coefficients = np.array([0.7, 1.1, 0.7], np.float32)
    cell = (coefficients[:, None] * neuropil + resting * (1.0 + planted)).astype(np.float32)
    ratio = neuropil_corrected_delta_f_over_f(
        cell,
        neuropil,
        neuropil_coefficient=coefficients,
        baseline_method=baseline_method,
        baseline_window_s=20.0,
        baseline_sigma_frames=2.0,
        baseline_percentile=8.0,
        frame_rate_hz=frame_rate_hz,
    )
    assert ratio.shape == cell.shape and ratio.dtype == np.float32
    np.testing.assert_allclose(ratio[:2], planted[:2], atol=2e-5)  # (F_c − F0) / F0 with F0 = 100, 40
    assert np.isnan(ratio[2]).all()  # F0 = −5: no ratio
    corrected = cell - coefficients[:, None] * neuropil
    np.testing.assert_allclose(delta_f_over_f(corrected[:2], resting[:2]), planted[:2], atol=2e-5)


# -------------------------------------------------------------------------------- colocalization


def test_structural_colocalization_finds_planted_red_cells() -> None:
    rng = np.random.default_rng(17)
    shape = (120, 120)
    rois = grid_rois(shape, spacing_px=15, radius_px=4.5, margin_px=8, rng=rng)
    red = rng.random(rois.count) < 0.4
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    functional = 40.0 + 10 * np.sin(rows / 20.0) + rng.normal(0, 1, shape)
    red_image = np.zeros(shape)
    for roi in range(rois.count):
        ypix, xpix, lam = rois.roi(roi)
        functional[ypix, xpix] += rng.uniform(60, 120) * lam / lam.max()
        if red[roi]:
            red_image[ypix, xpix] += rng.uniform(40, 80) * lam / lam.max()
    bleed_gain = 0.3 + 0.4 * columns / shape[1]  # smooth, position-dependent bleed-through
    structural = 10.0 + red_image + bleed_gain * functional + rng.normal(0, 1, shape)
    masks = build_extraction_masks(rois, frame_shape=shape, roi_radii_px=np.full(rois.count, 4.5), **{**MASK_OPTIONS, "minimum_neuropil_pixels": 200})
    result = structural_colocalization(functional, structural, masks=masks, colocalization_threshold=0.65)
    flagged = result.cell_colocalization[:, 0] > 0
    np.testing.assert_array_equal(flagged, result.cell_colocalization[:, 1] > 0.65)
    precision = (flagged & red).sum() / max(flagged.sum(), 1)
    recall = (flagged & red).sum() / red.sum()
    print(f"structural colocalization: precision {precision:.3f}, recall {recall:.3f} ({red.sum()} red of {rois.count})")
    assert precision >= 0.9 and recall >= 0.9
    assert result.corrected_structural_image.dtype == np.float32 and np.all(result.corrected_structural_image >= 0)
    uncorrected_inside = masks.cell_weights @ structural.ravel()
    corrected_inside = masks.cell_weights @ result.corrected_structural_image.ravel()
    assert np.median(corrected_inside[~red]) < 0.2 * np.median(uncorrected_inside[~red])  # bleed-through removed


def test_bleedthrough_correction_removes_uniform_gain() -> None:
    rng = np.random.default_rng(18)
    functional = rng.uniform(10, 100, (60, 45))
    corrected = correct_bleedthrough(functional, 0.4 * functional)
    np.testing.assert_allclose(corrected, 0.0, atol=1e-4)


def test_functional_colocalization_pairs_planted_overlaps() -> None:
    shape = (80, 80)
    centers = [(10, 10), (10, 30), (10, 50), (30, 10), (30, 30), (30, 50), (50, 10), (50, 30), (68, 60), (68, 68)]
    first = RaggedRois.from_masks([disk_roi(cy, cx, 4, shape) for cy, cx in centers])
    second_masks = [disk_roi(cy + 1, cx, 4, shape) for cy, cx in centers[:6]]  # 0–5: shifted copies
    second_masks.append(disk_roi(50 + 5, 10, 4, shape))  # 6: a weak overlap with first ROI 6 (< 0.65)
    second_masks.append(disk_roi(50, 30, 1.5, shape))  # 7: small ROI inside first ROI 7 (overlap 1.0)
    second_masks.append(disk_roi(51, 31, 4, shape))  # 8: good but worse match of first ROI 7
    second_masks.append(disk_roi(68, 62, 4, shape))  # 9: between first 8 (better) and 9
    second_masks.append(disk_roi(70, 10, 4, shape))  # 10: overlaps nothing
    second = RaggedRois.from_masks(second_masks)
    matches = functional_colocalization(first, second, frame_shape=shape, colocalization_threshold=0.65)
    assert matches.shape == (10, 2) and matches.dtype == np.float32
    np.testing.assert_array_equal(matches[:, 0], [0, 1, 2, 3, 4, 5, -1, 7, 9, -1])
    size = first.pixel_counts()[0]
    shifted = RaggedRois.from_masks([disk_roi(10, 10, 4, shape), disk_roi(11, 10, 4, shape)])
    overlap = len({*zip(*shifted.roi(0)[:2])} & {*zip(*shifted.roi(1)[:2])}) / size
    np.testing.assert_allclose(matches[:6, 1], overlap, rtol=1e-6)
    assert matches[7, 1] == 1.0
    assert np.all(matches[[6, 9], 1] == 0)


def test_minimum_spike_size_drops_only_noise_sized_spikes() -> None:
    """Spikes below k noise standard deviations vanish; the planted ones (≫ noise) stay where they were."""
    from cindra_dask.extraction.oasis import difference_noise

    rng = np.random.default_rng(12)
    tau_s, frame_rate_hz = 0.5, 30.0
    decay = np.exp(-1 / (tau_s * frame_rate_hz))
    truth = np.zeros(3000)
    truth[rng.choice(np.arange(10, 3000), 40, replace=False)] = 3.0
    calcium = np.zeros_like(truth)
    for t in range(1, len(truth)):
        calcium[t] = decay * calcium[t - 1] + truth[t]
    noisy = (calcium + rng.normal(0, 0.2, calcium.shape)).astype(np.float32)[None]
    plain = deconvolve_oasis(noisy, tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0).spikes[0]
    thresholded = deconvolve_oasis(noisy, tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=2.0).spikes[0]
    noise = float(difference_noise(noisy)[0])
    assert 0.15 < noise < 0.25
    assert np.all((thresholded == 0) | (thresholded >= 2.0 * noise))
    np.testing.assert_array_equal(thresholded[thresholded > 0], plain[thresholded > 0])
    assert np.count_nonzero(thresholded) < np.count_nonzero(plain)
    assert set(np.flatnonzero(truth)) <= set(np.flatnonzero(thresholded))


def test_advance_spikes_moves_every_spike_by_the_rise_time_and_keeps_each_total() -> None:
    spikes = np.zeros((3, 12), np.float32)
    spikes[0, 6] = 1.0
    spikes[1, [1, 8]] = [2.0, 1.0]
    spikes[2, 11] = 4.0
    advanced = advance_spikes(spikes, rise_time_s=0.05, frame_rate_hz=30.0)  # 1.5 frames: half to t − 1, half to t − 2
    np.testing.assert_allclose(advanced[0, [4, 5]], [0.5, 0.5])
    np.testing.assert_allclose(advanced[1, [0, 6, 7]], [2.0, 0.5, 0.5])  # frame 1's spike would land at −0.5: kept in frame 0
    np.testing.assert_allclose(advanced.sum(axis=1), spikes.sum(axis=1), rtol=1e-6)
    frames = np.arange(12)
    assert (advanced[2] * frames).sum() / advanced[2].sum() == pytest.approx(11 - 1.5)  # the centre of mass moves by exactly the shift
    np.testing.assert_array_equal(advance_spikes(spikes, rise_time_s=0.0, frame_rate_hz=30.0), spikes)
    np.testing.assert_allclose(advance_spikes(spikes, rise_time_s=10.0, frame_rate_hz=30.0)[:, 0], spikes.sum(axis=1))  # past the start: all in frame 0
    with pytest.raises(ValueError, match="≥ 0"):
        advance_spikes(spikes, rise_time_s=-0.01, frame_rate_hz=30.0)


def test_rise_time_places_spikes_of_a_difference_of_exponentials_at_their_onsets() -> None:
    """Isolated spikes at continuous onset times, each a response exp(−t/τ_d) − exp(−t/τ_r) sampled at the
    frame centres: AR(1) OASIS centres each spike τ_r + half a frame after its onset (measured: 96.6 ms at
    30 Hz with τ_r 80 ms); with rise_time = τ_r the half frame of sampling is all that is left (17.3 ms)."""
    rng = np.random.default_rng(21)
    frame_rate_hz, decay_s, rise_s, frame_count = 30.0, 1.0, 0.08, 9000
    onsets_s = np.cumsum(rng.uniform(2.0, 4.0, 80))
    onsets_s = onsets_s[onsets_s < frame_count / frame_rate_hz - 3]
    time_s = (np.arange(frame_count) + 0.5) / frame_rate_hz
    trace = np.zeros(frame_count)
    for onset_s, amplitude in zip(onsets_s, rng.uniform(0.5, 1.5, len(onsets_s))):
        elapsed = np.clip(time_s - onset_s, 0.0, None)
        trace += amplitude * (time_s > onset_s) * (np.exp(-elapsed / decay_s) - np.exp(-elapsed / rise_s))
    trace += rng.normal(0.0, 0.02, frame_count)
    spikes = deconvolve_oasis(trace[None].astype(np.float32), tau_s=decay_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0).spikes

    def centre_errors_frames(rise_time_s: float) -> np.ndarray:
        advanced = advance_spikes(spikes, rise_time_s=rise_time_s, frame_rate_hz=frame_rate_hz)[0]
        errors = []
        for onset_s in onsets_s:
            window = np.arange(int(onset_s * frame_rate_hz) - 15, int(onset_s * frame_rate_hz) + 30)
            centre_s = ((window + 0.5) * advanced[window]).sum() / advanced[window].sum() / frame_rate_hz
            errors.append((centre_s - onset_s) * frame_rate_hz)
        return np.asarray(errors)

    half_frame = 0.5
    uncorrected, corrected = centre_errors_frames(0.0), centre_errors_frames(rise_s)
    print(f"spike centre − onset, frames: rise_time 0 {uncorrected.mean():.2f}, rise_time τ_r {corrected.mean():.2f} (max |·| {np.abs(corrected).max():.2f})")
    assert uncorrected.mean() == pytest.approx(rise_s * frame_rate_hz + half_frame, abs=0.15)
    assert corrected.mean() == pytest.approx(half_frame, abs=0.15)
    assert np.abs(corrected - half_frame).max() < 0.75


def test_quiet_frame_threshold_is_the_partition_value_with_ties() -> None:
    """The written-out quickselect (numba compiles np.partition for 10 s) picks np.partition's value:
    coefficients equal those of the same iteration with np.partition, on data full of ties."""
    from cindra_dask.extraction.baseline import NEUROPIL_COEFFICIENT_MAXIMUM_ITERATIONS, NEUROPIL_COEFFICIENT_RANGE, NEUROPIL_COEFFICIENT_TOLERANCE

    rng = np.random.default_rng(5)
    neuropil = rng.integers(0, 6, size=(7, 97)).astype(np.float32)
    cell = (0.6 * neuropil + rng.integers(0, 4, size=neuropil.shape)).astype(np.float32)
    cell[3] = 5.0  # every residual tied at the first iteration
    for quiet_fraction in (0.01, 0.2, 0.5, 1.0):
        quiet_count = min(97, max(2, int(np.ceil(quiet_fraction * 97))))
        expected = []
        for row in range(len(cell)):
            coefficient = 0.7
            for _ in range(NEUROPIL_COEFFICIENT_MAXIMUM_ITERATIONS):
                residual = cell[row].astype(np.float64) - coefficient * neuropil[row]
                quiet = residual <= np.partition(residual, quiet_count - 1)[quiet_count - 1]
                deviation = neuropil[row][quiet] - neuropil[row][quiet].mean()
                variance = float(np.sum(deviation * deviation))
                if variance <= 0:
                    coefficient = 0.7
                    break
                updated = min(max(float(np.sum((cell[row][quiet] - cell[row][quiet].mean()) * deviation)) / variance, NEUROPIL_COEFFICIENT_RANGE[0]), NEUROPIL_COEFFICIENT_RANGE[1])
                converged = abs(updated - coefficient) < NEUROPIL_COEFFICIENT_TOLERANCE
                coefficient = updated
                if converged:
                    break
            expected.append(coefficient)
        np.testing.assert_allclose(estimate_neuropil_coefficients(cell, neuropil, initial_coefficient=0.7, quiet_fraction=quiet_fraction), np.float32(expected), rtol=1e-6)
