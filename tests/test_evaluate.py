"""The scorers themselves: planted matches, known errors, known correlations."""

from __future__ import annotations

import numpy as np

from cindra_dask.evaluate import match_rois, offset_rms_error, row_correlations, smoothed_spike_correlations
from cindra_dask.rois import RaggedRois


def _square(y: int, x: int, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[y : y + side, x : x + side]
    return yy.ravel(), xx.ravel(), np.ones(side * side)


def test_match_rois_counts_only_pairs_above_the_iou_threshold() -> None:
    truth = RaggedRois.from_masks([_square(0, 0, 6), _square(20, 20, 6), _square(40, 0, 6)])
    detected = RaggedRois.from_masks([_square(21, 21, 6), _square(1, 0, 6), _square(40, 5, 6), _square(50, 50, 4)])
    matching = match_rois(detected, truth, frame_shape=(64, 64), iou_threshold=0.3)
    pairs = sorted(zip(matching.detected_index.tolist(), matching.true_index.tolist()))
    assert pairs == [(0, 1), (1, 0)]  # the (40, 5) square overlaps its truth by 1/11 only
    np.testing.assert_allclose(sorted(matching.iou), [25 / 47, 30 / 42])
    assert matching.precision == 2 / 4 and matching.recall == 2 / 3
    np.testing.assert_allclose(matching.f1, 2 * (0.5 * 2 / 3) / (0.5 + 2 / 3))
    assert match_rois(RaggedRois.empty(), truth, frame_shape=(64, 64)).f1 == 0.0


def test_offset_error_ignores_a_constant_and_measures_the_rest() -> None:
    truth = np.random.default_rng(0).normal(size=(500, 2))
    estimated = truth + np.array([3.0, -2.0])
    assert offset_rms_error(estimated, truth) < 1e-12
    noise = np.zeros_like(truth)
    noise[::2, 0] = 0.1
    noise[1::2, 0] = -0.1
    assert abs(offset_rms_error(truth + noise, truth) - 0.1) < 1e-9


def test_correlations() -> None:
    rng = np.random.default_rng(1)
    signal = rng.normal(size=(3, 1000))
    np.testing.assert_allclose(row_correlations(signal, 2 * signal + 1), 1.0)
    np.testing.assert_allclose(row_correlations(signal, -signal), -1.0)
    spikes = (rng.random((2, 1000)) < 0.02).astype(float)
    shifted = np.roll(spikes, 1, axis=1)
    assert np.all(smoothed_spike_correlations(shifted, spikes, sigma_frames=2.0) > 0.85)
    assert np.all(row_correlations(shifted, spikes) < 0.2)
