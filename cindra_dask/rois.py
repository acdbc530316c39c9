"""Ragged ROI masks: the in-memory form of the store's ``pixel_offsets``/``ypix``/``xpix``/``lam``.

ROI ``i`` owns entries ``pixel_offsets[i]:pixel_offsets[i + 1]`` of the pixel arrays. Kernels,
graph builders and the store all pass ROIs in this one form.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from scipy import sparse


class RaggedRois(NamedTuple):
    """ROI masks of one plane as ragged arrays.

    Attributes
    ----------
    pixel_offsets : (n + 1,) int64, starts at 0, non-decreasing.
    ypix, xpix : (total_pixels,) int32 row / column of each pixel.
    lam : (total_pixels,) float32 pixel weight.
    """

    pixel_offsets: np.ndarray
    ypix: np.ndarray
    xpix: np.ndarray
    lam: np.ndarray

    @property
    def count(self) -> int:
        """Number of ROIs."""
        return int(self.pixel_offsets.shape[0] - 1)

    def roi(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ypix, xpix, lam) of ROI ``index``."""
        start, stop = self.pixel_offsets[index], self.pixel_offsets[index + 1]
        return self.ypix[start:stop], self.xpix[start:stop], self.lam[start:stop]

    def pixel_counts(self) -> np.ndarray:
        """(n,) int64 pixels per ROI."""
        return np.diff(self.pixel_offsets)

    def select(self, indices: np.ndarray) -> "RaggedRois":
        """The ROIs at ``indices`` (in that order)."""
        return RaggedRois.from_masks([self.roi(int(index)) for index in np.asarray(indices)])

    @staticmethod
    def empty() -> "RaggedRois":
        """Zero ROIs."""
        return RaggedRois(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32))

    @staticmethod
    def from_masks(masks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> "RaggedRois":
        """Build from a sequence of (ypix, xpix, lam) per ROI."""
        if len(masks) == 0:
            return RaggedRois.empty()
        counts = np.array([len(mask[0]) for mask in masks], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return RaggedRois(
            offsets,
            np.concatenate([np.asarray(mask[0], np.int32) for mask in masks]),
            np.concatenate([np.asarray(mask[1], np.int32) for mask in masks]),
            np.concatenate([np.asarray(mask[2], np.float32) for mask in masks]),
        )


def binary_mask_matrix(rois: RaggedRois, *, frame_shape: tuple[int, int]) -> sparse.csr_matrix:
    """(n_rois, Ly·Lx) 0/1 matrix of the ROIs' pixels (weights ignored, duplicates merged)."""
    rows = np.repeat(np.arange(rois.count), rois.pixel_counts())
    columns = rois.ypix.astype(np.int64) * frame_shape[1] + rois.xpix
    matrix = sparse.csr_matrix((np.ones(len(columns), np.float32), (rows, columns)), shape=(rois.count, frame_shape[0] * frame_shape[1]))
    matrix.data[:] = 1.0
    return matrix
