"""Sparse detection over overlapping spatial tiles, so that no task holds a large field's whole binned movie.

The field (the valid crop) is cut into a grid of cores of ``tile_size_px``; each tile is its core
plus a halo (`tile_halo_px`) on every side the field continues, and every tile origin lies on the
coarsest pyramid grid (multiples of 2^(SCALE_COUNT−1) px), so inside a tile the box responses equal
the whole field's except within the halo of its cut edges. Two passes:

1. each tile's `cindra_dask.detection.sparsery.region_scale_peaks` in its core; `scale_of_peaks` of
   them all is the field's scale (cindra's estimate, from the brightest peaks of every core);
2. each tile detected at that scale (`cindra_dask.detection.sparsery.detect_rois`); `merge_tiles` keeps
   every ROI whose centroid lies in its tile's core, so an ROI seen by two tiles is kept once.

An ROI whose centroid is farther than the halo from the edges of its tile is the whole field's
(same pixels), up to the order ROIs are extracted in, which can change where two ROIs overlap and
one lies near a tile's edge. Each tile has the detection loop's iteration limit.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from cindra_dask.detection.sparsery import SCALE_COUNT, SparseDetection
from cindra_dask.rois import RaggedRois

TILE_ALIGNMENT_PX = 2 ** (SCALE_COUNT - 1)
"""Tile sizes and halos are multiples of this (the coarsest pyramid level's pixel), px."""

_LARGEST_BOX_PX = 3 * TILE_ALIGNMENT_PX
"""Side of the coarsest pyramid box (the largest seed square), px."""


class DetectionTile(NamedTuple):
    """One tile of a field, as [start, stop) px in the field: its ``core`` and the ``padded`` region it detects on (y0, y1, x0, x1)."""

    core: tuple[int, int, int, int]
    padded: tuple[int, int, int, int]

    @property
    def core_in_padded(self) -> tuple[int, int, int, int]:
        """The core in the padded region's coordinates (y0, y1, x0, x1) px."""
        y0, _, x0, _ = self.padded
        return (self.core[0] - y0, self.core[1] - y0, self.core[2] - x0, self.core[3] - x0)


def tile_halo_px(*, spatial_highpass_window_px: int, residual_motion_window_px: int) -> int:
    """Halo around each tile's core, px: half the widest filter of the preprocessing plus the largest
    seed square (3·2^(SCALE_COUNT−1) px), rounded up to `TILE_ALIGNMENT_PX`."""
    reach = max(spatial_highpass_window_px, residual_motion_window_px) // 2 + _LARGEST_BOX_PX
    return -(-reach // TILE_ALIGNMENT_PX) * TILE_ALIGNMENT_PX


def detection_tiles(*, field_shape: tuple[int, int], tile_size_px: int, halo_px: int) -> list[DetectionTile]:
    """Tiles covering a (H, W) field, row by row: cores of ``tile_size_px`` (the last ones shorter),
    padded by ``halo_px`` clipped to the field; one tile, the whole field, where it is no larger than a core.

    ``tile_size_px`` and ``halo_px`` are positive multiples of `TILE_ALIGNMENT_PX`.
    """
    if tile_size_px <= 0 or tile_size_px % TILE_ALIGNMENT_PX or halo_px < 0 or halo_px % TILE_ALIGNMENT_PX:
        raise ValueError(f"tile size ({tile_size_px} px) and halo ({halo_px} px) must be multiples of {TILE_ALIGNMENT_PX} px, the tile size positive")
    height, width = field_shape
    tiles = []
    for y0 in range(0, height, tile_size_px):
        for x0 in range(0, width, tile_size_px):
            y1, x1 = min(y0 + tile_size_px, height), min(x0 + tile_size_px, width)
            padded = (max(0, y0 - halo_px), min(height, y1 + halo_px), max(0, x0 - halo_px), min(width, x1 + halo_px))
            tiles.append(DetectionTile((y0, y1, x0, x1), padded))
    return tiles


def merge_tiles(tiles: Sequence[DetectionTile], detections: Sequence[SparseDetection], *, field_shape: tuple[int, int]) -> SparseDetection:
    """One field's `SparseDetection` from its tiles' (each detected on its padded region at the field's scale).

    ROIs (tile by tile, each tile's in detection order) whose centroid lies in their tile's core, in
    field coordinates; the maximum projection and correlation map assembled from the cores; exhausted
    when every tile is; scale, diameter and thresholds the tiles'.
    """
    masks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    centroids, footprints = [], []
    maximum_projection = np.zeros(field_shape, np.float32)
    correlation_map = np.zeros(field_shape, np.float32)
    for tile, detection in zip(tiles, detections, strict=True):
        y0, y1, x0, x1 = tile.core_in_padded
        origin = np.array(tile.padded[::2], np.int32)
        inside = (detection.centroids[:, 0] >= y0) & (detection.centroids[:, 0] < y1) & (detection.centroids[:, 1] >= x0) & (detection.centroids[:, 1] < x1)
        for index in np.flatnonzero(inside):
            ypix, xpix, lam = detection.rois.roi(int(index))
            masks.append(((ypix + origin[0]).astype(np.int32), (xpix + origin[1]).astype(np.int32), lam))
        centroids.append(detection.centroids[inside] + origin)
        footprints.append(detection.footprints[inside])
        core = (slice(tile.core[0], tile.core[1]), slice(tile.core[2], tile.core[3]))
        maximum_projection[core] = detection.maximum_projection[y0:y1, x0:x1]
        correlation_map[core] = detection.correlation_map[y0:y1, x0:x1]
    first = detections[0]
    return first._replace(
        rois=RaggedRois.from_masks(masks),
        centroids=np.concatenate(centroids).astype(np.int32).reshape(-1, 2),
        footprints=np.concatenate(footprints).astype(np.int8),
        maximum_projection=maximum_projection,
        correlation_map=correlation_map,
        exhausted=all(detection.exhausted for detection in detections),
    )
