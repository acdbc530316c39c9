"""ROI masks carried between a recording's own space and the common space (cindra §4.2, §4.4).

Masks move by nearest-neighbour backward sampling: output pixel p belongs to an ROI when the source
pixel ``round(p + field(p))`` does, and carries its weight. Forward (into the common space) uses a
recording's ``forward`` field, back-projection of tracked templates its ``backward`` field (see
`cindra_dask.multirecording.demons`). A back-projected template on a plane-tiled canvas is given to
the one plane (tile) holding most of its pixels and cropped to it (`assign_to_tiles`), so it is
extracted from one plane's frames. Its statistics are recomputed in the recording's space without
the soma crop, with the templates' own diameter (2·sqrt(median pixel count / π)), as cindra does.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cindra_dask.detection.stats import median_centroids, roi_statistics
from cindra_dask.rois import RaggedRois


class ProjectedTemplates(NamedTuple):
    """Tracked templates in one recording's space.

    Attributes
    ----------
    rois : m masks, each cropped to its tile (empty when it lands in no tile).
    tile : (m,) int64 tile of each template (`assign_to_tiles`; −1: none).
    centroids : (m, 2) int32 (y, x) pixel nearest the coordinate medians (0 for an empty mask).
    radius_px : (m,) float32 ellipse radius (``roi_statistics``; 0 for an empty mask).
    diameter_px : the diameter used for the statistics.
    """

    rois: RaggedRois
    tile: np.ndarray
    centroids: np.ndarray
    radius_px: np.ndarray
    diameter_px: int


def warp_rois(rois: RaggedRois, *, sampling_field: np.ndarray, source_shape: tuple[int, int]) -> RaggedRois:
    """Masks resampled onto the grid of ``sampling_field`` (nearest neighbour, weights carried).

    Parameters
    ----------
    rois : n masks on the source grid.
    sampling_field : (2, H, W) (dy, dx) px on the output grid: output pixel p samples source pixel
        ``round(p + sampling_field(p))``.
    source_shape : (Hs, Ws) of the source grid; samples outside it belong to no ROI.

    Returns
    -------
    n masks on the (H, W) output grid, pixels of each ROI in raveled order (possibly empty).
    """
    output_height, output_width = sampling_field.shape[1:]
    source_height, source_width = source_shape
    rows, columns = np.meshgrid(np.arange(output_height), np.arange(output_width), indexing="ij")
    source_rows = np.rint(rows + sampling_field[0]).astype(np.int64).ravel()
    source_columns = np.rint(columns + sampling_field[1]).astype(np.int64).ravel()
    inside = (source_rows >= 0) & (source_rows < source_height) & (source_columns >= 0) & (source_columns < source_width)
    targets = np.flatnonzero(inside)
    sources = source_rows[inside] * source_width + source_columns[inside]
    order = np.argsort(sources, kind="stable")
    targets_by_source = targets[order]
    counts = np.bincount(sources, minlength=source_height * source_width)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    roi_pixels = rois.ypix.astype(np.int64) * source_width + rois.xpix
    if roi_pixels.size and (rois.ypix.min() < 0 or rois.xpix.min() < 0 or rois.ypix.max() >= source_height or rois.xpix.max() >= source_width):
        raise ValueError(f"ROI pixels lie outside the {source_height}×{source_width} source grid")
    per_pixel = counts[roi_pixels]
    total = int(per_pixel.sum())
    first_of_pixel = np.repeat(np.cumsum(per_pixel) - per_pixel, per_pixel)
    output = targets_by_source[np.repeat(starts[roi_pixels], per_pixel) + np.arange(total) - first_of_pixel]
    owner = np.repeat(np.repeat(np.arange(rois.count), rois.pixel_counts()), per_pixel)
    weights = np.repeat(rois.lam, per_pixel)
    arrangement = np.lexsort((output, owner))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=rois.count))]).astype(np.int64)
    output = output[arrangement]
    return RaggedRois(offsets, (output // output_width).astype(np.int32), (output % output_width).astype(np.int32), weights[arrangement].astype(np.float32))


def template_diameter_px(templates: RaggedRois) -> int:
    """cindra's template diameter: 2·sqrt(median pixel count / π), rounded, at least 1."""
    counts = templates.pixel_counts()
    return max(1, int(round(2 * math.sqrt(float(np.median(counts)) / math.pi)))) if counts.size else 1


def project_templates(templates: RaggedRois, *, backward_field: np.ndarray, tile_origins_px: np.ndarray, tile_shapes_px: np.ndarray, diameter_px: int) -> ProjectedTemplates:
    """Templates from the common space into one recording, each cropped to one plane tile, with statistics.

    Parameters
    ----------
    templates : m masks in the common space (same grid size as the recording's canvas).
    backward_field : (2, H, W) the recording's ``backward`` field (recording canvas → common space).
    tile_origins_px, tile_shapes_px : (k, 2) the recording's plane tiles on the canvas (`assign_to_tiles`).
    diameter_px : diameter for the statistics (`template_diameter_px` of the templates).

    Returns
    -------
    ProjectedTemplates on the recording's (H, W) canvas.
    """
    frame_shape = tuple(backward_field.shape[1:])
    warped = warp_rois(templates, sampling_field=backward_field, source_shape=frame_shape)
    assignment = assign_to_tiles(warped, tile_origins_px=tile_origins_px, tile_shapes_px=tile_shapes_px)
    projected = assignment.rois
    centroids = median_centroids(projected)
    radius_px = np.zeros(projected.count, np.float32)
    non_empty = np.flatnonzero(projected.pixel_counts() > 0)
    if non_empty.size:
        radius_px[non_empty] = roi_statistics(projected.select(non_empty), frame_shape=frame_shape, diameter_px=diameter_px, centroids=centroids[non_empty], crop_to_soma=False).radius_px
    return ProjectedTemplates(projected, assignment.tile, centroids, radius_px, diameter_px)


class TileAssignment(NamedTuple):
    """ROIs of a plane-tiled canvas, each kept inside one tile.

    Attributes
    ----------
    tile : (m,) int64 index of the tile holding most of each ROI's pixels (−1: none inside any tile).
    rois : m masks in canvas coordinates, each cropped to its tile (empty when ``tile`` is −1).
    """

    tile: np.ndarray
    rois: RaggedRois


def assign_to_tiles(rois: RaggedRois, *, tile_origins_px: np.ndarray, tile_shapes_px: np.ndarray) -> TileAssignment:
    """Give each ROI of a combined canvas to the tile (plane) holding most of its pixels, cropped to it.

    Parameters
    ----------
    rois : m masks in canvas coordinates.
    tile_origins_px : (k, 2) int (y, x) of each tile's top-left corner on the canvas.
    tile_shapes_px : (k, 2) int (height, width) of each tile.

    Returns
    -------
    TileAssignment (ties go to the lower tile index).
    """
    origins = np.asarray(tile_origins_px, np.int64).reshape(-1, 2)
    shapes = np.asarray(tile_shapes_px, np.int64).reshape(-1, 2)
    rows, columns = rois.ypix[:, None].astype(np.int64), rois.xpix[:, None].astype(np.int64)
    inside = (rows >= origins[:, 0]) & (rows < origins[:, 0] + shapes[:, 0]) & (columns >= origins[:, 1]) & (columns < origins[:, 1] + shapes[:, 1])
    owner = np.repeat(np.arange(rois.count), rois.pixel_counts())
    pixel_index, tile_index = np.nonzero(inside)
    counts = np.zeros((rois.count, len(origins)), np.int64)
    np.add.at(counts, (owner[pixel_index], tile_index), 1)
    tile = np.full(rois.count, -1, np.int64)
    held = counts.sum(axis=1) > 0
    tile[held] = counts[held].argmax(axis=1)
    keep = np.zeros(owner.size, bool)
    assigned = tile[owner] >= 0
    keep[assigned] = inside[np.flatnonzero(assigned), tile[owner[assigned]]]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner[keep], minlength=rois.count))]).astype(np.int64)
    return TileAssignment(tile, RaggedRois(offsets, rois.ypix[keep], rois.xpix[keep], rois.lam[keep]))


def select_templates(templates: ProjectedTemplates, rows: np.ndarray) -> ProjectedTemplates:
    """The templates at ``rows`` (in that order)."""
    rows = np.asarray(rows, np.int64)
    return ProjectedTemplates(templates.rois.select(rows), templates.tile[rows], templates.centroids[rows], templates.radius_px[rows], templates.diameter_px)
