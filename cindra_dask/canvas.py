"""The combined canvas (cindra §3.8): where each plane sits, and images and ROIs moved onto it.

Pure functions on small arrays (numpy only); `cindra_dask.combine` plans the combine step with them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numpy as np

from cindra_dask.rois import RaggedRois


class PlaneTile(NamedTuple):
    """Where a plane sits on the combined canvas (px)."""

    plane: int
    y_offset: int
    x_offset: int
    height: int
    width: int


def plane_tiles(planes: Sequence[dict[str, Any]], *, frame_width: int) -> list[PlaneTile]:
    """cindra's placement of virtual planes on the combined canvas.

    Parameters
    ----------
    planes : per virtual plane, a mapping with ``index``, ``physical_plane``, ``row_start``, ``row_stop``,
        ``y_offset``, ``x_offset`` (the store's ``planes`` attribute).
    frame_width : plane width (px).

    Returns
    -------
    One `PlaneTile` per plane, in plane order. Without MROI (one virtual plane per physical plane)
    plane p sits at ``((p // ncols)·H, (p % ncols)·W)`` with ``ncols = ceil(sqrt(H·W·P) / W)``; MROI
    regions of a single z-plane sit at their own (y, x) coordinates; with several z-planes each
    z-plane's MROI canvas is one tile, tiles laid out on the same kind of grid by z index.
    """
    physical = sorted({plane["physical_plane"] for plane in planes})
    heights = [plane["row_stop"] - plane["row_start"] for plane in planes]
    if len(physical) == len(planes):  # one region per z-plane: grid of frames
        height = max(heights)
        columns = math.ceil(math.sqrt(height * frame_width * len(planes)) / frame_width)
        return [PlaneTile(plane["index"], (rank // columns) * height, (rank % columns) * frame_width, size, frame_width) for rank, (plane, size) in enumerate(zip(planes, heights))]
    region_y = [int(round(plane["y_offset"])) for plane in planes]
    region_x = [int(round(plane["x_offset"])) for plane in planes]
    canvas_height = max(y + size for y, size in zip(region_y, heights))
    canvas_width = max(x + frame_width for x in region_x)
    columns = math.ceil(math.sqrt(canvas_height * canvas_width * len(physical)) / canvas_width) if len(physical) > 1 else 1
    tiles = []
    for plane, y, x, size in zip(planes, region_y, region_x, heights):
        rank = physical.index(plane["physical_plane"])
        tiles.append(PlaneTile(plane["index"], (rank // columns) * canvas_height + y, (rank % columns) * canvas_width + x, size, frame_width))
    return tiles


def canvas_shape(tiles: Sequence[PlaneTile]) -> tuple[int, int]:
    """(H, W) px of the combined canvas: the largest tile extent."""
    return max(tile.y_offset + tile.height for tile in tiles), max(tile.x_offset + tile.width for tile in tiles)


def paste_images(images: Sequence[np.ndarray], tiles: Sequence[PlaneTile], *, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 canvas with each (h, w) image at its tile (zeros elsewhere)."""
    canvas = np.zeros(shape, np.float32)
    for image, tile in zip(images, tiles):
        canvas[tile.y_offset : tile.y_offset + tile.height, tile.x_offset : tile.x_offset + tile.width] = image
    return canvas


def combine_rois(rois: Sequence[RaggedRois], tiles: Sequence[PlaneTile]) -> RaggedRois:
    """Every plane's masks in canvas coordinates, concatenated in plane order."""
    if not rois:
        return RaggedRois.empty()
    sizes = [np.diff(item.pixel_offsets) for item in rois]
    pixel_offsets = np.concatenate([[0], np.cumsum(np.concatenate(sizes))]).astype(np.int64)
    ypix = np.concatenate([item.ypix + tile.y_offset for item, tile in zip(rois, tiles)]).astype(np.int32)
    xpix = np.concatenate([item.xpix + tile.x_offset for item, tile in zip(rois, tiles)]).astype(np.int32)
    return RaggedRois(pixel_offsets, ypix, xpix, np.concatenate([item.lam for item in rois]).astype(np.float32))
