"""Nonrigid (block-wise) registration and the warp that applies rigid + nonrigid offsets (cindra §3.2.6).

Blocks: per axis, a block side ≥ the frame side gives one block of the whole side; otherwise
``n = ceil(1.5 · side / block)`` blocks start at ``linspace(0, side − block, n)`` (rounded down),
listed row-major. Block centres are ``start + (block − 1)/2`` (cindra uses ``start + block/2``, half
a pixel off).

Per chunk, on the correlation frames (one-photon filtered, clipped) and the rigid offsets:

Stage 1 (cindra): each block is cut from the frame moved back by the *rounded* rigid offset,
    tapered (sigmoid of slope 2σ on the block × the frame taper) and phase-correlated with the
    reference block (whitened, × Gaussian). The fractional rest of the rigid offset is removed from
    the cross-power spectra with a phase ramp, so every surface is in nonrigid coordinates (offset
    relative to the subpixel-rigidly corrected frame) before temporal smoothing. Blocks whose
    signal-to-noise ratio (peak / largest value outside ±3 px of it; cindra's box is 6×6, one pixel
    off-centre) is below the threshold take
    the surfaces smoothed over neighbouring blocks once (Kb) or twice (Kb²),
    ``Kb[i, j] ∝ exp(−|grid_i − grid_j|²)`` (rows sum to 1). Integer peak within the search radius
    plus a Newton step on the integer samples; its value is the reported correlation.
Stage 2 (subpixel, replaces cindra's 0.1-px kriging): each block is cut again where its content now
    is (rounded rigid + stage-1 offset), windowed with the block taper like the reference block,
    cross-correlated with quarter whitening (see `cindra_dask.registration.rigid`), phase-ramped to
    nonrigid coordinates, smoothed over time and over blocks exactly like stage 1, and its maximum
    refined with spectrum-evaluated Newton steps.

Warp: the per-pixel displacement is the rigid offset plus the block offsets interpolated
bilinearly between block centres (constant beyond the outermost centres, as in cindra); the output
pixel (y, x) samples the frame at (y + dy, x + dx) with Keys cubic convolution (a = −0.5). Sample
positions outside the frame are clamped to its edge, so such pixels repeat the nearest edge pixel
(cindra clamps in its nonrigid warp; its rigid ``np.roll`` wraps around). The valid crop from
`cindra_dask.registration.bad_frames.valid_crop` excludes them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from cindra_dask.registration.rigid import (
    coarse_peaks,
    correlation_windows,
    cross_power_spectra,
    gather_blocks,
    phase_correlation_kernel,
    refine_peaks,
    refinement_cross_power,
    refinement_kernel,
    smooth_over_time,
    spatial_taper_mask,
)

SNR_PADDING_PX = 3
"""Ring (px) around the search region kept for the signal-to-noise ratio; also its exclusion box."""
_SMOOTHING_LEVELS = 2
"""Neighbour smoothing is tried once (Kb) and then twice (Kb²) for low-SNR blocks."""


class BlockLayout(NamedTuple):
    """Overlapping blocks of a frame.

    Attributes
    ----------
    frame_shape : (H, W) px.
    block_shape : (h, w) px (a side equals the frame side when the block did not fit).
    y_starts : (gy,) int64 first row of each block row.
    x_starts : (gx,) int64 first column of each block column.
    centers : (n_blocks, 2) float32 (row, column) block centres, row-major.
    """

    frame_shape: tuple[int, int]
    block_shape: tuple[int, int]
    y_starts: np.ndarray
    x_starts: np.ndarray
    centers: np.ndarray

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(gy, gx) blocks per column and per row."""
        return (len(self.y_starts), len(self.x_starts))

    @property
    def block_count(self) -> int:
        """gy · gx."""
        return len(self.y_starts) * len(self.x_starts)

    @property
    def starts(self) -> np.ndarray:
        """(n_blocks, 2) int64 (row, column) of each block's top-left pixel, row-major."""
        rows, columns = np.meshgrid(self.y_starts, self.x_starts, indexing="ij")
        return np.stack([rows.ravel(), columns.ravel()], axis=1)


class NonrigidPlan(NamedTuple):
    """Everything block registration needs from a reference, computed once.

    Attributes
    ----------
    layout : the blocks.
    taper_masks : (n_blocks, h, w) float32 block taper × frame taper (also the stage-2 window).
    taper_fills : (n_blocks, h, w) float32 ``block mean · (1 − mask)``.
    kernel_spectra : (n_blocks, h, w//2 + 1) complex64 stage-1 kernels.
    refinement_spectra : (n_blocks, h, w//2 + 1) complex64 stage-2 kernels.
    search_radius_px : largest block offset (px) relative to the rigid result.
    smoothing_matrices : (3, n_blocks, n_blocks) float32: identity, Kb, Kb².
    signal_to_noise_threshold : blocks below it borrow from their neighbours.
    """

    layout: BlockLayout
    taper_masks: np.ndarray
    taper_fills: np.ndarray
    kernel_spectra: np.ndarray
    refinement_spectra: np.ndarray
    search_radius_px: int
    smoothing_matrices: np.ndarray
    signal_to_noise_threshold: float


class NonrigidEstimate(NamedTuple):
    """Block offsets of a stack of frames.

    Attributes
    ----------
    offsets : (T, n_blocks, 2) float32 (dy, dx) px relative to the rigidly corrected frame.
    correlations : (T, n_blocks) float32 stage-1 peak values.
    """

    offsets: np.ndarray
    correlations: np.ndarray


def block_layout(*, frame_shape: tuple[int, int], block_size_px: tuple[int, int]) -> BlockLayout:
    """cindra's block layout for a frame (see module docstring)."""
    starts, sizes = [], []
    for side, block in zip(frame_shape, block_size_px):
        if block >= side:
            starts.append(np.zeros(1, np.int64))
            sizes.append(int(side))
        else:
            count = math.ceil(1.5 * side / block)
            starts.append(np.linspace(0, side - block, count).astype(np.int64))
            sizes.append(int(block))
    rows, columns = np.meshgrid(starts[0] + (sizes[0] - 1) / 2, starts[1] + (sizes[1] - 1) / 2, indexing="ij")
    centers = np.stack([rows.ravel(), columns.ravel()], axis=1).astype(np.float32)
    return BlockLayout((int(frame_shape[0]), int(frame_shape[1])), (sizes[0], sizes[1]), starts[0], starts[1], centers)


def block_smoothing_matrix(grid_shape: tuple[int, int]) -> np.ndarray:
    """Kb: (n_blocks, n_blocks) float32 weights ``exp(−Δi² − Δj²)`` over grid indices, rows summing to 1."""
    rows, columns = np.meshgrid(np.arange(grid_shape[0]), np.arange(grid_shape[1]), indexing="ij")
    positions = np.stack([rows.ravel(), columns.ravel()], axis=1).astype(np.float64)
    weights = np.exp(-((positions[:, None, :] - positions[None, :, :]) ** 2).sum(axis=-1))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def build_nonrigid_plan(
    correlation_reference: np.ndarray,
    *,
    layout: BlockLayout,
    frame_taper_mask: np.ndarray,
    spatial_smoothing_sigma_px: float,
    maximum_block_offset_px: float,
    signal_to_noise_threshold: float,
    workers: int = 1,
) -> NonrigidPlan:
    """Precompute block registration against one reference.

    Parameters
    ----------
    correlation_reference : (H, W) reference in correlation space (filtered and clipped).
    layout : from `block_layout`.
    frame_taper_mask : (H, W) the rigid taper mask (its block slices multiply the block tapers).
    spatial_smoothing_sigma_px : Gaussian sigma (px) of the kernels; block taper slope is 2σ.
    maximum_block_offset_px : block search radius (px), at most ``min(h, w) // 2 − 3``.
    signal_to_noise_threshold : SNR below which blocks borrow from neighbours.
    workers : threads for ``scipy.fft``.
    """
    reference = np.asarray(correlation_reference, np.float32)
    starts = layout.starts[None]
    reference_blocks = gather_blocks(reference[None], starts=starts, block_shape=layout.block_shape)[0]
    frame_mask_blocks = gather_blocks(np.asarray(frame_taper_mask, np.float32)[None], starts=starts, block_shape=layout.block_shape)[0]
    masks = (spatial_taper_mask(shape=layout.block_shape, slope_px=2 * spatial_smoothing_sigma_px) * frame_mask_blocks).astype(np.float32)
    fills = (reference_blocks.mean(axis=(1, 2), keepdims=True) * (1 - masks)).astype(np.float32)
    radius = max(1, min(int(np.round(maximum_block_offset_px)), min(layout.block_shape) // 2 - SNR_PADDING_PX))
    neighbour = block_smoothing_matrix(layout.grid_shape)
    return NonrigidPlan(
        layout=layout,
        taper_masks=masks,
        taper_fills=fills,
        kernel_spectra=phase_correlation_kernel(reference_blocks, spatial_smoothing_sigma_px=spatial_smoothing_sigma_px, workers=workers),
        refinement_spectra=refinement_kernel(reference_blocks, windows=masks, spatial_smoothing_sigma_px=spatial_smoothing_sigma_px, workers=workers),
        search_radius_px=radius,
        smoothing_matrices=np.stack([np.eye(layout.block_count, dtype=np.float32), neighbour, neighbour @ neighbour]).astype(np.float32),
        signal_to_noise_threshold=float(signal_to_noise_threshold),
    )


def signal_to_noise(windows: np.ndarray, *, search_radius_px: int) -> np.ndarray:
    """Peak in the search region over the largest value outside ±3 px of it (floored at 1e-10).

    Parameters
    ----------
    windows : (..., 2(r + 3) + 1, 2(r + 3) + 1) correlation windows.
    search_radius_px : r.

    Returns
    -------
    (...) float32 ratios.
    """
    pad, size = SNR_PADDING_PX, windows.shape[-1]
    central = windows[..., pad : size - pad, pad : size - pad]
    flat = central.reshape(*central.shape[:-2], -1)
    peak = flat.max(axis=-1)
    peak_rows, peak_columns = np.divmod(flat.argmax(axis=-1), 2 * search_radius_px + 1)
    index = np.arange(size)
    near_rows = np.abs(index - (peak_rows[..., None] + pad)) <= pad
    near_columns = np.abs(index - (peak_columns[..., None] + pad)) <= pad
    excluded = near_rows[..., :, None] & near_columns[..., None, :]
    background = np.maximum(np.where(excluded, -np.inf, windows).max(axis=(-2, -1)), 0.0)
    return (peak / np.maximum(background, 1e-10)).astype(np.float32)


def _mix_blocks(values: np.ndarray, *, matrices: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Replace entries (t, b) with level > 0 by Σ_c matrices[level][b, c] · values[t, c] (a copy)."""
    mixed = values.copy()
    for level in range(1, len(matrices)):
        frames, blocks = np.nonzero(levels == level)
        if len(frames):
            mixed[frames, blocks] = np.einsum("nc,nc...->n...", matrices[level][blocks], values[frames])
    return mixed


def estimate_nonrigid_offsets(
    correlation_frames: np.ndarray,
    *,
    rigid_offsets: np.ndarray,
    plan: NonrigidPlan,
    temporal_smoothing_sigma_frames: float,
    workers: int = 1,
) -> NonrigidEstimate:
    """Subpixel block offsets of frames relative to their rigid correction.

    Parameters
    ----------
    correlation_frames : (T, H, W) frames in correlation space (filtered and clipped).
    rigid_offsets : (T, 2) px from `cindra_dask.registration.rigid.estimate_rigid_offsets`.
    plan : from `build_nonrigid_plan`.
    temporal_smoothing_sigma_frames : Gaussian sigma (frames) over the block surfaces, both stages.
    workers : threads for ``scipy.fft``.

    Returns
    -------
    `NonrigidEstimate`.
    """
    frames = np.asarray(correlation_frames, np.float32)
    rigid = np.asarray(rigid_offsets, np.float64)
    layout, radius = plan.layout, plan.search_radius_px
    block_shape, block_count, frame_count = layout.block_shape, layout.block_count, len(frames)
    rigid_integer = np.round(rigid).astype(np.int64)
    # stage 1: cindra's phase correlation on blocks of the (integer) rigidly corrected frame
    starts = layout.starts[None] + rigid_integer[:, None, :]
    tapered = gather_blocks(frames, starts=starts, block_shape=block_shape, taper_masks=plan.taper_masks, taper_fills=plan.taper_fills)
    spectra = cross_power_spectra(tapered, kernel_spectra=plan.kernel_spectra, offsets=(rigid_integer - rigid)[:, None, :], workers=workers)
    del tapered
    spectra = smooth_over_time(spectra, temporal_smoothing_sigma_frames=temporal_smoothing_sigma_frames)
    windows = correlation_windows(spectra, shape=block_shape, radius_px=radius + SNR_PADDING_PX, workers=workers)
    del spectra
    levels = np.zeros((frame_count, block_count), np.int64)
    chosen = windows
    for level in range(1, _SMOOTHING_LEVELS + 1):
        low = signal_to_noise(chosen, search_radius_px=radius) < plan.signal_to_noise_threshold
        if not low.any():
            break
        levels[low] = level
        chosen = _mix_blocks(windows, matrices=plan.smoothing_matrices, levels=levels)
    window_size = chosen.shape[-1]
    coarse = coarse_peaks(chosen.reshape(-1, window_size, window_size), search_radius_px=radius)
    # stage 2: quarter-whitened correlation of blocks cut where their content is; same smoothing levels
    block_integer = np.round(rigid[:, None, :] + coarse.offsets.reshape(frame_count, block_count, 2)).astype(np.int64)
    refinement = refinement_cross_power(
        frames,
        starts=layout.starts[None] + block_integer,
        windows=plan.taper_masks,
        kernel_spectra=plan.refinement_spectra,
        offsets=block_integer - rigid[:, None, :],
        workers=workers,
    )
    refinement = smooth_over_time(refinement, temporal_smoothing_sigma_frames=temporal_smoothing_sigma_frames)
    refinement = _mix_blocks(refinement, matrices=plan.smoothing_matrices, levels=levels)
    refined = refine_peaks(refinement.reshape(-1, *refinement.shape[-2:]), start_offsets=coarse.offsets, shape=block_shape)
    return NonrigidEstimate(refined.offsets.reshape(frame_count, block_count, 2).astype(np.float32), coarse.values.reshape(frame_count, block_count))


class _GridInterpolation(NamedTuple):
    """Bilinear interpolation between block centres, per row and per column.

    ``lower`` and ``upper`` are grid indices, ``weight`` the weight of ``upper``; positions beyond
    the outermost centres get the outermost value.
    """

    row_lower: np.ndarray
    row_upper: np.ndarray
    row_weight: np.ndarray
    column_lower: np.ndarray
    column_upper: np.ndarray
    column_weight: np.ndarray


def _axis_interpolation(centers: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    unique = np.unique(centers)
    position = np.interp(np.arange(length), unique, np.arange(len(unique), dtype=np.float64))
    lower = np.floor(position).astype(np.int64)
    return lower, np.minimum(lower + 1, len(unique) - 1), position - lower


def _grid_interpolation(layout: BlockLayout | None, frame_shape: tuple[int, int]) -> _GridInterpolation:
    centers = np.zeros((1, 2)) if layout is None else layout.centers
    return _GridInterpolation(*_axis_interpolation(centers[:, 0], frame_shape[0]), *_axis_interpolation(centers[:, 1], frame_shape[1]))


@numba.njit(cache=True)
def _displacement_row(grid: np.ndarray, rigid: np.ndarray, y: int, interpolation: _GridInterpolation, row_line: np.ndarray, displacement: np.ndarray) -> None:
    """displacement[k, x] = rigid[k] + bilinear block offset k at pixel (y, x), for one row."""
    lower, upper, weight = interpolation.row_lower[y], interpolation.row_upper[y], interpolation.row_weight[y]
    for column in range(grid.shape[1]):
        for component in range(2):
            row_line[column, component] = (1 - weight) * grid[lower, column, component] + weight * grid[upper, column, component]
    for x in range(displacement.shape[1]):
        left, right, column_weight = interpolation.column_lower[x], interpolation.column_upper[x], interpolation.column_weight[x]
        for component in range(2):
            displacement[component, x] = rigid[component] + (1 - column_weight) * row_line[left, component] + column_weight * row_line[right, component]


@numba.njit(cache=True, inline="always")
def _cubic_weights(t: float) -> tuple[float, float, float, float]:
    """Keys (a = −0.5) weights of the samples at −1, 0, 1, 2 for a position ``t`` ∈ [0, 1)."""
    return (
        ((-0.5 * t + 1.0) * t - 0.5) * t,
        (1.5 * t - 2.5) * t * t + 1.0,
        ((-1.5 * t + 2.0) * t + 0.5) * t,
        (0.5 * t - 0.5) * t * t,
    )


@numba.njit(cache=True, fastmath=True)
def _warp(frames: np.ndarray, rigid: np.ndarray, grids: np.ndarray, interpolation: _GridInterpolation, out: np.ndarray) -> None:
    """out[t, y, x] = frames[t] sampled (Keys cubic, clamped to the frame) at (y, x) + displacement."""
    frame_count, height, width = frames.shape
    row_line = np.empty((grids.shape[2], 2))
    displacement = np.empty((2, width))
    for t in range(frame_count):
        frame = frames[t]
        for y in range(height):
            _displacement_row(grids[t], rigid[t], y, interpolation, row_line, displacement)
            for x in range(width):
                source_y = min(max(y + displacement[0, x], 0.0), height - 1.0)
                source_x = min(max(x + displacement[1, x], 0.0), width - 1.0)
                base_y = int(source_y)
                base_x = int(source_x)
                wy0, wy1, wy2, wy3 = _cubic_weights(np.float32(source_y - base_y))
                wx0, wx1, wx2, wx3 = _cubic_weights(np.float32(source_x - base_x))
                if 1 <= base_y < height - 2 and 1 <= base_x < width - 2:
                    lines = frame[base_y - 1 : base_y + 3, base_x - 1 : base_x + 3]
                    total = (
                        wy0 * (wx0 * lines[0, 0] + wx1 * lines[0, 1] + wx2 * lines[0, 2] + wx3 * lines[0, 3])
                        + wy1 * (wx0 * lines[1, 0] + wx1 * lines[1, 1] + wx2 * lines[1, 2] + wx3 * lines[1, 3])
                        + wy2 * (wx0 * lines[2, 0] + wx1 * lines[2, 1] + wx2 * lines[2, 2] + wx3 * lines[2, 3])
                        + wy3 * (wx0 * lines[3, 0] + wx1 * lines[3, 1] + wx2 * lines[3, 2] + wx3 * lines[3, 3])
                    )
                else:
                    weights_y = (wy0, wy1, wy2, wy3)
                    weights_x = (wx0, wx1, wx2, wx3)
                    total = 0.0
                    for a in range(4):
                        row = min(max(base_y - 1 + a, 0), height - 1)
                        line = 0.0
                        for b in range(4):
                            line += weights_x[b] * frame[row, min(max(base_x - 1 + b, 0), width - 1)]
                        total += weights_y[a] * line
                out[t, y, x] = total


def _offset_grids(
    nonrigid_offsets: np.ndarray | None, layout: BlockLayout | None, frame_count: int, frame_shape: tuple[int, int]
) -> tuple[np.ndarray, _GridInterpolation]:
    """(T, gy, gx, 2) float64 block-offset grids and their interpolation onto the frame."""
    if nonrigid_offsets is None or layout is None or layout.block_count == 0 or np.size(nonrigid_offsets) == 0:
        return np.zeros((frame_count, 1, 1, 2)), _grid_interpolation(None, frame_shape)
    if tuple(layout.frame_shape) != tuple(frame_shape):
        raise ValueError(f"block layout is for frames {layout.frame_shape}, got {frame_shape}")
    return np.asarray(nonrigid_offsets, np.float64).reshape(frame_count, *layout.grid_shape, 2), _grid_interpolation(layout, frame_shape)


def warp_frames(
    frames: np.ndarray,
    *,
    rigid_offsets: np.ndarray,
    nonrigid_offsets: np.ndarray | None = None,
    layout: BlockLayout | None = None,
) -> np.ndarray:
    """Move frames back onto the reference (see module docstring for interpolation and edges).

    Parameters
    ----------
    frames : (T, H, W) any real dtype.
    rigid_offsets : (T, 2) px (dy, dx).
    nonrigid_offsets : (T, n_blocks, 2) px relative to the rigid correction, or None.
    layout : the block layout of ``nonrigid_offsets``.

    Returns
    -------
    (T, H, W) float32 registered frames.
    """
    stack = np.ascontiguousarray(frames, np.float32)
    grids, interpolation = _offset_grids(nonrigid_offsets, layout, len(stack), stack.shape[1:])
    out = np.empty_like(stack)
    _warp(stack, np.asarray(rigid_offsets, np.float64).reshape(len(stack), 2), grids, interpolation, out)
    return out


def displacement_field(*, rigid_offset: np.ndarray, nonrigid_offsets: np.ndarray | None, layout: BlockLayout) -> np.ndarray:
    """Dense displacement of one frame, as `warp_frames` applies it.

    Parameters
    ----------
    rigid_offset : (2,) px.
    nonrigid_offsets : (n_blocks, 2) px or None.
    layout : block layout (gives the frame shape).

    Returns
    -------
    (2, H, W) float32 (dy, dx) px: output pixel (y, x) samples the frame at (y + dy, x + dx).
    """
    height, width = layout.frame_shape
    grids, interpolation = _offset_grids(None if nonrigid_offsets is None else np.asarray(nonrigid_offsets)[None], layout, 1, layout.frame_shape)
    field = np.empty((2, height, width), np.float64)
    row_line = np.empty((grids.shape[2], 2))
    rigid = np.asarray(rigid_offset, np.float64)
    for y in range(height):
        _displacement_row(grids[0], rigid, y, interpolation, row_line, field[:, y, :])
    return field.astype(np.float32)
