"""Channel-2 colocalization (cindra §3.7).

Structural channel 2 (only channel 1 functional): the channel-1 mean image F bleeds into the
channel-2 mean image S. The frame is cut into 3×3 blocks; in each block b the bleed-through gain is
w_b = Σ F·S / Σ F² (0 where Σ F² = 0); the block indicator images are smoothed by a Gaussian of
σ = round((Ly + Lx) / 6 · 0.25) px and normalised to sum 1 at every pixel, giving a smooth gain map
G = Σ_b mask_b · w_b; the corrected image is S' = max(0, S − G · F). Per ROI, inside = Σ λ · S'
(normalised λ) floored at 1e-3 and outside = mean of S' over the neuropil mask; the probability
p = inside / (inside + outside) and the ROI is red when p > threshold.

Functional channel 2 (both channels functional, independent ROI sets): overlap of ROI pixel sets
A (channel 1) and B (channel 2) is |A ∩ B| / min(|A|, |B|); a channel-1 ROI is matched to its best
channel-2 ROI when that ROI's best channel-1 ROI is it in turn and the overlap is ≥ threshold
(ties go to the lower index).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.sparse import csr_matrix

from cindra_dask.extraction.masks import ExtractionMasks
from cindra_dask.rois import RaggedRois

BLEEDTHROUGH_BLOCKS = 3
"""Blocks per axis of the bleed-through regression."""

BLEEDTHROUGH_SMOOTHING_FRACTION = 0.25
"""Gaussian σ of the block masks as a fraction of the mean block side."""

MINIMUM_INSIDE_INTENSITY = 1e-3
"""Floor of an ROI's weighted structural intensity."""


def good_frame_sum(frames: np.ndarray, good_frames: np.ndarray) -> np.ndarray:
    """(1, Ly, Lx) float64 sum of the good frames of a (T, Ly, Lx) chunk, ``good_frames`` (T,) bool: one
    partial sum of a mean image (the leading axis stacks the chunks' sums)."""
    return frames[good_frames].sum(axis=0, dtype=np.float64)[None]


class StructuralColocalization(NamedTuple):
    """Intensity colocalization with a structural channel 2.

    Attributes
    ----------
    cell_colocalization : (n, 2) float32 [1.0 if p > threshold else 0.0, p] per ROI.
    corrected_structural_image : (Ly, Lx) float32 channel-2 mean image minus the channel-1 bleed-through, ≥ 0.
    """

    cell_colocalization: np.ndarray
    corrected_structural_image: np.ndarray


def correct_bleedthrough(functional_mean_image: np.ndarray, structural_mean_image: np.ndarray) -> np.ndarray:
    """Remove channel-1 bleed-through from the channel-2 mean image.

    Parameters
    ----------
    functional_mean_image : (Ly, Lx) channel-1 mean image F.
    structural_mean_image : (Ly, Lx) channel-2 mean image S, same units.

    Returns
    -------
    (Ly, Lx) float32 max(0, S − G · F) with G the smoothed 3×3 block gain map.
    """
    functional = np.asarray(functional_mean_image, np.float64)
    structural = np.asarray(structural_mean_image, np.float64)
    height, width = functional.shape
    row_edges = np.linspace(0, height, BLEEDTHROUGH_BLOCKS + 1).astype(int)
    column_edges = np.linspace(0, width, BLEEDTHROUGH_BLOCKS + 1).astype(int)
    sigma_px = float(np.round((height + width) / (2 * BLEEDTHROUGH_BLOCKS) * BLEEDTHROUGH_SMOOTHING_FRACTION))
    weighted_masks = np.zeros((height, width))
    mask_sum = np.zeros((height, width))
    for block_row in range(BLEEDTHROUGH_BLOCKS):
        for block_column in range(BLEEDTHROUGH_BLOCKS):
            rows = slice(row_edges[block_row], row_edges[block_row + 1])
            columns = slice(column_edges[block_column], column_edges[block_column + 1])
            block_functional, block_structural = functional[rows, columns], structural[rows, columns]
            energy = float((block_functional * block_functional).sum())
            gain = float((block_functional * block_structural).sum()) / energy if energy > 0 else 0.0
            indicator = np.zeros((height, width))
            indicator[rows, columns] = 1.0
            smoothed = gaussian_filter(indicator, sigma_px)
            weighted_masks += gain * smoothed
            mask_sum += smoothed
    gain_map = weighted_masks / mask_sum
    return np.maximum(0.0, structural - gain_map * functional).astype(np.float32)


def structural_colocalization(
    functional_mean_image: np.ndarray,
    structural_mean_image: np.ndarray,
    *,
    masks: ExtractionMasks,
    colocalization_threshold: float,
) -> StructuralColocalization:
    """Which channel-1 ROIs are bright in a structural channel 2.

    Parameters
    ----------
    functional_mean_image, structural_mean_image : (Ly, Lx) mean images of channel 1 and channel 2.
    masks : the plane's `ExtractionMasks` (cell weights and neuropil averaging weights).
    colocalization_threshold : p above which an ROI is colocalized (cindra default 0.65).

    Returns
    -------
    StructuralColocalization.
    """
    corrected = correct_bleedthrough(functional_mean_image, structural_mean_image)
    flat = corrected.ravel().astype(np.float64)
    inside = np.maximum(MINIMUM_INSIDE_INTENSITY, masks.cell_weights @ flat)
    outside = masks.neuropil_weights @ flat
    probability = inside / (inside + outside)
    colocalization = np.stack([(probability > colocalization_threshold).astype(np.float64), probability], axis=1)
    return StructuralColocalization(colocalization.astype(np.float32), corrected)


def _pixel_set_matrix(rois: RaggedRois, frame_shape: tuple[int, int]) -> csr_matrix:
    """(n, Ly·Lx) float64 CSR with 1 on each ROI pixel."""
    height, width = frame_shape
    raveled = rois.ypix.astype(np.int64) * width + rois.xpix.astype(np.int64)
    return csr_matrix((np.ones(raveled.size), raveled, rois.pixel_offsets.astype(np.int64)), shape=(rois.count, height * width))


class _BestPartners(NamedTuple):
    index: np.ndarray
    score: np.ndarray


def _best_partners(owners: np.ndarray, partners: np.ndarray, scores: np.ndarray, owner_count: int) -> _BestPartners:
    """Each owner's highest-scoring partner (lowest index on ties): index (−1 if none) and score (0 if none)."""
    best = _BestPartners(np.full(owner_count, -1, dtype=np.int64), np.zeros(owner_count))
    order = np.lexsort((partners, -scores, owners))
    sorted_owners = owners[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = sorted_owners[1:] != sorted_owners[:-1]
    best.index[sorted_owners[first]] = partners[order][first]
    best.score[sorted_owners[first]] = scores[order][first]
    return best


def functional_colocalization(
    first_rois: RaggedRois,
    second_rois: RaggedRois,
    *,
    frame_shape: tuple[int, int],
    colocalization_threshold: float,
) -> np.ndarray:
    """Match channel-1 ROIs to independently detected channel-2 ROIs by pixel overlap.

    Parameters
    ----------
    first_rois, second_rois : n1 channel-1 and n2 channel-2 ROIs (pixels unique within an ROI).
    frame_shape : (Ly, Lx) px.
    colocalization_threshold : smallest overlap |A ∩ B| / min(|A|, |B|) accepted (cindra default 0.65).

    Returns
    -------
    (n1, 2) float32 [matched channel-2 index or −1, overlap or 0].
    """
    intersections = (_pixel_set_matrix(first_rois, frame_shape) @ _pixel_set_matrix(second_rois, frame_shape).T).tocoo()
    rows, columns = intersections.row.astype(np.int64), intersections.col.astype(np.int64)
    scores = intersections.data / np.minimum(first_rois.pixel_counts()[rows], second_rois.pixel_counts()[columns])
    best_second = _best_partners(rows, columns, scores, first_rois.count)
    best_first = _best_partners(columns, rows, scores, second_rois.count)
    candidates = np.flatnonzero(best_second.index >= 0)
    mutual = best_first.index[best_second.index[candidates]] == candidates
    accepted = candidates[mutual & (best_second.score[candidates] >= colocalization_threshold)]
    matches = np.zeros((first_rois.count, 2), dtype=np.float32)
    matches[:, 0] = -1
    matches[accepted, 0] = best_second.index[accepted]
    matches[accepted, 1] = best_second.score[accepted]
    return matches
