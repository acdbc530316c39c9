"""Block-PCA denoising of the binned movie (cindra §3.3.2) with bounded memory.

cindra fits PCA on overlapping blocks and builds a full-size reconstruction (a second movie). Here
each block's components are fitted from one block-sized copy and kept (k × block pixels); the
movie is then rebuilt chunk by chunk along time, so the working memory is one block's traces plus
one ≈ 16 MB chunk, and the result may overwrite the input.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

_WORKING_CHUNK_VALUES = 1 << 22
"""float32 values (16 MB) per reconstruction chunk."""


class BlockLayout(NamedTuple):
    """Overlapping blocks covering a frame (cindra's nonrigid-registration layout).

    Attributes
    ----------
    row_starts, column_starts : (n_blocks,) int64 top-left corner of each block, row-major.
    block_shape : (block_height, block_width) px.
    """

    row_starts: np.ndarray
    column_starts: np.ndarray
    block_shape: tuple[int, int]


def block_layout(*, frame_shape: tuple[int, int], block_shape_px: tuple[int, int]) -> BlockLayout:
    """Blocks of ``block_shape_px`` with ≈ 50 % overlap: ceil(1.5·size/block) per axis, evenly spaced.

    An axis whose block size reaches the frame size gets one full-size block.
    """
    starts, sizes = [], []
    for frame_size, block_size in zip(frame_shape, block_shape_px):
        if block_size >= frame_size:
            sizes.append(frame_size)
            starts.append(np.zeros(1, np.int64))
        else:
            count = int(np.ceil(1.5 * frame_size / block_size))
            sizes.append(block_size)
            starts.append(np.linspace(0, frame_size - block_size, count).astype(np.int64))
    rows, columns = np.meshgrid(starts[0], starts[1], indexing="ij")
    return BlockLayout(rows.ravel(), columns.ravel(), (int(sizes[0]), int(sizes[1])))


def sigmoid_taper(*, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """(h, w) float32 mask ≈ 1 in the centre falling off as a sigmoid (slope σ) 2σ inside each edge."""
    sigma = max(float(sigma_px), 1.0)
    tapers = []
    for size in shape:
        distance = np.abs(np.arange(size, dtype=np.float32) - (size - 1) / 2)
        tapers.append(1.0 / (1.0 + np.exp((distance - ((size - 1) / 2 - 2 * sigma)) / sigma)))
    return (tapers[0][:, None] * tapers[1][None, :]).astype(np.float32)


def pca_denoise(
    frames: np.ndarray,
    *,
    block_shape_px: tuple[int, int] = (64, 64),
    component_fraction: float = 0.5,
    overwrite_frames: bool = False,
    blas_threads: int | None = 1,
) -> np.ndarray:
    """Low-rank reconstruction of each overlapping block, blended with a sigmoid taper.

    Per block: subtract the temporal mean image, fit ``PCA(n = min(block pixels, T,
    int(component_fraction·min(block side))), random_state=0)``, reconstruct ``X·Vᵀ·V``; blocks are
    blended with a taper of σ = block height // 4 and normalised by the summed taper; the mean is
    added back.

    Parameters
    ----------
    frames : (T, H, W) binned movie.
    block_shape_px : block size (cindra uses half the nonrigid block size: 64×64).
    component_fraction : components per block relative to the smaller block side.
    overwrite_frames : write the result into ``frames`` (float32, C-contiguous) instead of a new array.
    blas_threads : BLAS threads for the fits and products (None: the library default). Keep 1 inside
        Dask workers; many threads on small blocks mostly contend.

    Returns
    -------
    (T, H, W) float32 denoised movie (``frames`` itself when ``overwrite_frames``).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads):
        return _pca_denoise(frames, block_shape_px=block_shape_px, component_fraction=component_fraction, overwrite_frames=overwrite_frames)


def _pca_denoise(frames: np.ndarray, *, block_shape_px: tuple[int, int], component_fraction: float, overwrite_frames: bool) -> np.ndarray:
    """`pca_denoise` under the caller's BLAS thread limit."""
    from sklearn.decomposition import PCA

    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got shape {frames.shape}")
    if overwrite_frames and (frames.dtype != np.float32 or not frames.flags.c_contiguous or not frames.flags.writeable):
        raise ValueError("overwrite_frames needs a writeable C-contiguous float32 array")
    frame_count, height, width = frames.shape
    layout = block_layout(frame_shape=(height, width), block_shape_px=block_shape_px)
    block_height, block_width = layout.block_shape
    component_count = min(block_height * block_width, frame_count, int(component_fraction * min(block_height, block_width)))
    mean_image = frames.mean(axis=0, dtype=np.float64).astype(np.float32)
    taper = sigmoid_taper(shape=layout.block_shape, sigma_px=block_height // 4)
    normalisation = np.zeros((height, width), np.float32)
    windows = [(slice(row, row + block_height), slice(column, column + block_width)) for row, column in zip(layout.row_starts, layout.column_starts)]

    components = []
    for rows, columns in windows:
        block = np.asarray(frames[:, rows, columns], np.float32).reshape(frame_count, -1) - mean_image[rows, columns].ravel()
        if component_count == 0 or np.ptp(block) == 0:
            components.append(np.zeros((0, block.shape[1]), np.float32))
        else:
            components.append(PCA(n_components=component_count, random_state=0).fit(block).components_.astype(np.float32))
        normalisation[rows, columns] += taper
        del block

    result = frames if overwrite_frames else np.empty((frame_count, height, width), np.float32)
    chunk_frames = max(1, _WORKING_CHUNK_VALUES // max(1, height * width))
    for start in range(0, frame_count, chunk_frames):
        stop = min(frame_count, start + chunk_frames)
        reconstruction = np.zeros((stop - start, height, width), np.float32)
        for (rows, columns), basis in zip(windows, components):
            centered = np.asarray(frames[start:stop, rows, columns], np.float32).reshape(stop - start, -1) - mean_image[rows, columns].ravel()
            low_rank = (centered @ basis.T) @ basis
            reconstruction[:, rows, columns] += low_rank.reshape(stop - start, block_height, block_width) * taper
        reconstruction /= normalisation
        reconstruction += mean_image
        result[start:stop] = reconstruction
    return result
