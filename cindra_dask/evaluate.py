"""Accuracy against ground truth: the scorers behind the tests, the demo and the benchmarks.

Users can score their own labelled data with the same functions (e.g. ROIs drawn by hand).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import linear_sum_assignment

from cindra_dask.rois import RaggedRois


class RoiMatching(NamedTuple):
    """One-to-one matching of detected ROIs to true ROIs.

    Attributes
    ----------
    detected_index, true_index : (m,) int64 matched pairs.
    iou : (m,) float64 intersection over union of each pair (binarised masks).
    precision, recall, f1 : matched / detected, matched / true, their harmonic mean.
    """

    detected_index: np.ndarray
    true_index: np.ndarray
    iou: np.ndarray
    precision: float
    recall: float
    f1: float


def binary_mask_matrix(rois: RaggedRois, *, frame_shape: tuple[int, int]) -> sparse.csr_matrix:
    """(n_rois, Ly·Lx) 0/1 matrix of the ROIs' pixels (weights ignored, duplicates merged)."""
    rows = np.repeat(np.arange(rois.count), rois.pixel_counts())
    columns = rois.ypix.astype(np.int64) * frame_shape[1] + rois.xpix
    matrix = sparse.csr_matrix((np.ones(len(columns), np.float32), (rows, columns)), shape=(rois.count, frame_shape[0] * frame_shape[1]))
    matrix.data[:] = 1.0
    return matrix


def intersection_over_union(first: RaggedRois, second: RaggedRois, *, frame_shape: tuple[int, int]) -> np.ndarray:
    """(n_first, n_second) IoU of binarised masks."""
    a, b = binary_mask_matrix(first, frame_shape=frame_shape), binary_mask_matrix(second, frame_shape=frame_shape)
    intersection = (a @ b.T).toarray()
    union = np.asarray(a.sum(axis=1)) + np.asarray(b.sum(axis=1)).T - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def match_rois(detected: RaggedRois, truth: RaggedRois, *, frame_shape: tuple[int, int], iou_threshold: float = 0.3) -> RoiMatching:
    """Hungarian matching on 1 − IoU; pairs below ``iou_threshold`` do not count."""
    if detected.count == 0 or truth.count == 0:
        empty = np.zeros(0, np.int64)
        return RoiMatching(empty, empty, np.zeros(0), 0.0, 0.0, 0.0)
    iou = intersection_over_union(detected, truth, frame_shape=frame_shape)
    rows, columns = linear_sum_assignment(1.0 - iou)
    keep = iou[rows, columns] >= iou_threshold
    rows, columns = rows[keep], columns[keep]
    matched = len(rows)
    precision, recall = matched / detected.count, matched / truth.count
    f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
    return RoiMatching(rows.astype(np.int64), columns.astype(np.int64), iou[rows, columns], precision, recall, f1)


def offset_rms_error(estimated: np.ndarray, truth: np.ndarray, *, valid: np.ndarray | None = None) -> float:
    """RMS (px) of the per-frame offset error after removing the median difference.

    The reference image sits at an arbitrary position, so offsets are compared up to one
    constant (dy, dx). ``estimated``, ``truth``: (T, 2) px; ``valid``: (T,) bool frames to score.
    """
    difference = np.asarray(estimated, np.float64) - np.asarray(truth, np.float64)
    if valid is not None:
        difference = difference[np.asarray(valid, bool)]
    difference -= np.median(difference, axis=0)
    return float(np.sqrt(np.mean(np.sum(difference**2, axis=-1))))


def row_correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(n,) Pearson r between matching rows of two (n, T) arrays (NaN where a row is constant)."""
    a = np.asarray(first, np.float64)
    b = np.asarray(second, np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / denominator


def smoothed_spike_correlations(inferred: np.ndarray, truth: np.ndarray, *, sigma_frames: float = 2.0) -> np.ndarray:
    """(n,) Pearson r of spike trains after Gaussian smoothing (σ in frames) along time."""
    return row_correlations(gaussian_filter1d(np.asarray(inferred, np.float64), sigma_frames, axis=1), gaussian_filter1d(np.asarray(truth, np.float64), sigma_frames, axis=1))
