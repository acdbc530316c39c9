"""Pixel-set geometry shared by detection and extraction (numba kernels on ROI pixel lists)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def dilated_region(ypix: np.ndarray, xpix: np.ndarray, border_px: int, height: int, width: int) -> tuple[int, int, np.ndarray]:
    """Pixels grown by ``border_px`` 4-neighbour dilations, clipped to the frame.

    Parameters
    ----------
    ypix, xpix : (n ≥ 1,) integer pixel coordinates.
    border_px : dilations (0 marks the pixels only).
    height, width : frame size, px.

    Returns
    -------
    (top, left, region): region is the bool grid of the grown pixels' bounding box, whose
    top-left pixel is (top, left) in the frame.
    """
    top = max(0, ypix.min() - border_px)
    left = max(0, xpix.min() - border_px)
    bottom = min(height - 1, ypix.max() + border_px)
    right = min(width - 1, xpix.max() + border_px)
    region = np.zeros((bottom - top + 1, right - left + 1), dtype=np.bool_)
    for pixel in range(ypix.size):
        region[ypix[pixel] - top, xpix[pixel] - left] = True
    grown = region.copy()
    rows, columns = region.shape
    for _ in range(border_px):
        for y in range(rows):
            for x in range(columns):
                if region[y, x]:
                    continue
                if (y > 0 and region[y - 1, x]) or (y + 1 < rows and region[y + 1, x]) or (x > 0 and region[y, x - 1]) or (x + 1 < columns and region[y, x + 1]):
                    grown[y, x] = True
        for y in range(rows):  # a loop, not region[:, :] = grown: the slice assignment took numba 4 of this kernel's 5 s to compile
            for x in range(columns):
                region[y, x] = grown[y, x]
    return top, left, region
