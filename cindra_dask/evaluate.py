"""Accuracy against ground truth: the scorers behind the tests, the demo and the benchmarks.

Users can score their own labelled data with the same functions (e.g. ROIs drawn by hand).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import linear_sum_assignment

from cindra_dask.rois import RaggedRois, binary_mask_matrix


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


def displacement_rms_error(estimated: np.ndarray, truth: np.ndarray, *, margin_px: int = 0) -> float:
    """RMS (px) of the dense displacement error, up to the reference's own (static) displacement.

    The reference image is an average of moving frames, so it carries a fixed displacement of its
    own: each pixel's median error over time is removed before the RMS.

    Parameters
    ----------
    estimated, truth : (T, 2, H, W) (dy, dx) px; frame t shows the reference displaced by the field.
    margin_px : border excluded on every side (content there enters and leaves the frame).
    """
    difference = np.asarray(estimated, np.float64) - np.asarray(truth, np.float64)
    if margin_px:
        difference = difference[..., margin_px:-margin_px, margin_px:-margin_px]
    difference -= np.median(difference, axis=0)
    return float(np.sqrt(np.mean(np.sum(difference**2, axis=1))))


def registration_displacement(*, rigid_offsets: np.ndarray, nonrigid_offsets: np.ndarray, block_centers: np.ndarray, frame_shape: tuple[int, int], block_size_px: tuple[int, int]) -> np.ndarray:
    """Dense (T, 2, H, W) float32 displacement a registration corrected, from its stored offsets.

    ``rigid_offsets`` (T, 2), ``nonrigid_offsets`` (T, n_blocks, 2) as in ``plane_k/registration``;
    no blocks (n_blocks = 0) means rigid only.
    """
    from cindra_dask.registration.nonrigid import block_layout, displacement_field

    layout = block_layout(frame_shape=frame_shape, block_size_px=block_size_px)
    if len(block_centers) and len(block_centers) != len(layout.centers):
        raise ValueError(f"{len(block_centers)} stored block centres but block_size_px {block_size_px} gives {len(layout.centers)}")
    return np.stack(
        [displacement_field(rigid_offset=rigid, nonrigid_offsets=blocks if blocks.size else None, layout=layout) for rigid, blocks in zip(rigid_offsets, nonrigid_offsets)]
    )


class RecordingScores(NamedTuple):
    """Accuracy of one processed plane against the simulator's truth.

    Attributes
    ----------
    rigid_offset_rms_px : `offset_rms_error` of the rigid offsets over the truly good frames.
    displacement_rms_px : `displacement_rms_error` of the dense (rigid + nonrigid) correction on
        up to 100 evenly spaced good frames, 8 px border excluded.
    detection_precision, detection_recall, detection_f1 : ROIs classified as cells vs active true
        somata (Hungarian matching, IoU ≥ 0.3).
    trace_correlation : median Pearson r of F − c·Fneu (c: each ROI's stored ``neuropil_coefficient``,
        else the run's ``spike_deconvolution.neuropil_coefficient``) of the matched cells vs their true calcium.
    spike_correlation : median r of inferred vs true spikes, both smoothed (σ = 2 frames).
    matched_cells : matched pairs the correlations are over.
    """

    rigid_offset_rms_px: float
    displacement_rms_px: float
    detection_precision: float
    detection_recall: float
    detection_f1: float
    trace_correlation: float
    spike_correlation: float
    matched_cells: int


def score_recording(store_path: Any, truth: Any, *, plane: int = 0) -> RecordingScores:
    """Score a processed store against the `cindra_dask.simulate.GroundTruth` it was simulated with.

    Parameters
    ----------
    store_path : the recording store (after ``process``).
    truth : ground truth (``load_ground_truth(data / "ground_truth.npz")``).
    plane : plane to score.
    """
    from cindra_dask.extraction.baseline import subtract_neuropil
    from cindra_dask.simulate import nonrigid_displacement
    from cindra_dask.store import RecordingStore

    store = RecordingStore(store_path)
    registration, rois_group, extraction = f"plane_{plane}/registration", f"plane_{plane}/rois", f"plane_{plane}/extraction"
    configuration = store.recorded_configuration()
    good = ~np.asarray(truth.bad_frames[plane], bool)
    rigid = store.read(f"{registration}/rigid_offsets")
    rigid_error = offset_rms_error(rigid, truth.rigid_offsets[plane], valid=good)
    frames = np.flatnonzero(good)[np.linspace(0, good.sum(), 1 + min(100, int(good.sum())))[:-1].astype(np.int64)]
    frame_shape = store.read(f"{registration}/reference_image").shape
    block_size = tuple(configuration.nonrigid_registration.block_size)
    estimated = registration_displacement(
        rigid_offsets=rigid[frames], nonrigid_offsets=store.read(f"{registration}/nonrigid_offsets")[frames],
        block_centers=store.read(f"{registration}/block_centers"), frame_shape=frame_shape, block_size_px=block_size,
    )
    planted = nonrigid_displacement(truth, plane, frames) + truth.rigid_offsets[plane][frames][:, :, None, None]
    displacement_error = displacement_rms_error(estimated, planted, margin_px=8)

    sources = np.flatnonzero((truth.plane_index == plane) & truth.is_cell & truth.active)
    rois = store.read_rois(rois_group)
    is_cell = store.read(f"{extraction}/cell_classification")[:, 0] == 1
    cells = np.flatnonzero(is_cell)
    matching = match_rois(rois.select(cells), truth.rois().select(sources), frame_shape=frame_shape)
    detected, true_sources = cells[matching.detected_index], sources[matching.true_index]
    if f"{extraction}/neuropil_coefficient" in store:
        coefficient = store.read(f"{extraction}/neuropil_coefficient")[detected]
    else:
        coefficient = configuration.spike_deconvolution.neuropil_coefficient
    corrected = subtract_neuropil(store.read(f"{extraction}/cell_fluorescence")[detected], store.read(f"{extraction}/neuropil_fluorescence")[detected], neuropil_coefficient=coefficient)
    trace_r = row_correlations(corrected, truth.calcium[true_sources]) if len(detected) else np.zeros(0)
    spike_r = smoothed_spike_correlations(store.read(f"{extraction}/spikes")[detected], truth.spikes[true_sources]) if len(detected) else np.zeros(0)
    return RecordingScores(rigid_error, displacement_error, matching.precision, matching.recall, matching.f1, _median(trace_r), _median(spike_r), len(detected))


def _median(values: np.ndarray) -> float:
    """Median ignoring NaN (constant rows); NaN when empty."""
    return float(np.nanmedian(values)) if len(values) else float("nan")
