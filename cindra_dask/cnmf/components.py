"""CNMF components of a whole field: patch results placed in the frame, the field's background, ROI masks,
and the per-chunk sums that the field-wide evaluation needs.

Footprints of the field are (K, P) CSR matrices over the frame's P = H·W pixels (row-major), so a
field of a thousand components stays small.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.sparse import csr_matrix, vstack

from cindra_dask.cnmf.one_photon import RingBackground
from cindra_dask.rois import RaggedRois


def embed_footprints(spatial: np.ndarray, *, origin_px: tuple[int, int], frame_shape: tuple[int, int]) -> csr_matrix:
    """(k, H·W) CSR of (k, h, w) patch footprints whose top-left pixel is at ``origin_px`` (y, x) of the frame."""
    count, height, width = spatial.shape
    rows, columns = np.mgrid[origin_px[0] : origin_px[0] + height, origin_px[1] : origin_px[1] + width]
    flat = (rows * frame_shape[1] + columns).ravel()
    values = spatial.reshape(count, height * width)
    component, pixel = np.nonzero(values)
    return csr_matrix((values[component, pixel].astype(np.float64), (component, flat[pixel])), shape=(count, frame_shape[0] * frame_shape[1]))


def field_background(
    spatial: Sequence[np.ndarray], temporal: Sequence[np.ndarray], *, origins_px: Sequence[tuple[int, int]], frame_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The field's background from the patches' (start of the field-wide refit).

    Background j of the field is, at each pixel, the mean over the patches covering it of their
    b_j · mean(f_j); its activity the mean over patches of f_j / mean(f_j).

    spatial : per patch (nb, h, w); temporal : per patch (nb, T); origins_px : per patch (y, x).
    Returns (nb, H·W) and (nb, T) float64.
    """
    background_count, frame_count = temporal[0].shape
    total = np.zeros((background_count, *frame_shape))
    coverage = np.zeros(frame_shape)
    activity = np.zeros((background_count, frame_count))
    for image, course, (y, x) in zip(spatial, temporal, origins_px):
        mean_course = np.maximum(course.mean(axis=1), np.finfo(np.float64).tiny)
        height, width = image.shape[1:]
        total[:, y : y + height, x : x + width] += image * mean_course[:, None, None]
        coverage[y : y + height, x : x + width] += 1
        activity += course / mean_course[:, None]
    return (total / np.maximum(coverage, 1)).reshape(background_count, -1), activity / len(spatial)


def field_ring_background(rings: Sequence[RingBackground], *, origins_px: Sequence[tuple[int, int]], patch_shapes: Sequence[tuple[int, int]], frame_shape: tuple[int, int]) -> RingBackground:
    """The field's ring-model background from the patches' (CNMF-E): each pixel keeps the ring weights and
    mean of the patch whose centre is nearest to it (its ring then lies inside that patch).

    rings : per patch, W (p, p) and b0 (p,) over its (h, w) pixels; origins_px : per patch (y, x); patch_shapes : per patch (h, w).
    Returns W (H·W, H·W) and b0 (H·W,) of the field.
    """
    height, width = frame_shape
    best = np.full(frame_shape, np.inf)
    owner = np.full(frame_shape, -1, np.int64)
    for index, ((y, x), (patch_height, patch_width)) in enumerate(zip(origins_px, patch_shapes)):
        rows, columns = np.mgrid[y : y + patch_height, x : x + patch_width]
        distance = np.hypot(rows - (y + (patch_height - 1) / 2), columns - (x + (patch_width - 1) / 2))
        closer = distance < best[y : y + patch_height, x : x + patch_width]
        best[y : y + patch_height, x : x + patch_width][closer] = distance[closer]
        owner[y : y + patch_height, x : x + patch_width][closer] = index
    mean = np.zeros(height * width, np.float32)
    row_parts, column_parts, value_parts = [], [], []
    for index, (ring, (y, x), (patch_height, patch_width)) in enumerate(zip(rings, origins_px, patch_shapes)):
        local_owned = np.flatnonzero(owner[y : y + patch_height, x : x + patch_width].ravel() == index)
        local_rows, local_columns = np.divmod(np.arange(patch_height * patch_width), patch_width)
        to_field = (local_rows + y) * width + local_columns + x
        mean[to_field[local_owned]] = ring.mean[local_owned]
        owned = ring.weights[local_owned].tocoo()
        row_parts.append(to_field[local_owned][owned.row])
        column_parts.append(to_field[owned.col])
        value_parts.append(owned.data.astype(np.float32))
    weights = csr_matrix((np.concatenate(value_parts), (np.concatenate(row_parts), np.concatenate(column_parts))), shape=(height * width, height * width))
    return RingBackground(weights, mean)


def footprint_masks(spatial: csr_matrix, *, frame_shape: tuple[int, int], threshold_fraction: float) -> RaggedRois:
    """ROI masks of (K, H·W) footprints: each footprint's pixels above ``threshold_fraction`` of its maximum, weights = footprint values."""
    masks = []
    for row in range(spatial.shape[0]):
        pixels, values = spatial.indices[spatial.indptr[row] : spatial.indptr[row + 1]], spatial.data[spatial.indptr[row] : spatial.indptr[row + 1]]
        kept = values > threshold_fraction * values.max() if values.size else np.zeros(0, bool)
        order = np.argsort(pixels[kept])
        rows, columns = np.divmod(pixels[kept][order], frame_shape[1])
        masks.append((rows.astype(np.int32), columns.astype(np.int32), values[kept][order].astype(np.float32)))
    return RaggedRois.from_masks(masks)


def stack_rows(blocks: Sequence[csr_matrix]) -> csr_matrix:
    """Footprint matrices of the same field one after another (rows concatenated)."""
    return vstack(blocks, format="csr")


def significant_frame_sums(frames: np.ndarray, *, first_frame: int, frame_lists: Sequence[np.ndarray], pixel_lists: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per component, Σ of the chunk's frames among its significant frames, at its pixels ((n_k,) float64 each).

    frames : (t, H, W) frames ``first_frame`` … ``first_frame + t − 1``; frame_lists : per component, its
    significant frames (whole-recording indices); pixel_lists : per component, flat pixel indices.
    """
    flat = np.asarray(frames).reshape(frames.shape[0], -1)
    sums = []
    for chosen, pixels in zip(frame_lists, pixel_lists):
        local = chosen[(chosen >= first_frame) & (chosen < first_frame + frames.shape[0])] - first_frame
        sums.append(flat[np.ix_(local, pixels)].sum(axis=0, dtype=np.float64) if local.size else np.zeros(pixels.size))
    return sums
