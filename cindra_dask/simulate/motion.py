"""Motion: rigid offsets (drift, bouts, jitter), the smooth nonrigid field, planted bad frames."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cindra_dask.simulate.fields import KnotGrid, evaluate_knots, interpolation_weights, lattice, smooth_noise
from cindra_dask.simulate.parameters import GroundTruth, SimulationParameters


def nonrigid_displacement(truth: GroundTruth, plane: int, frames: Sequence[int] | np.ndarray | slice) -> np.ndarray:
    """Dense nonrigid displacement of the given frames exactly as rendered.

    Parameters
    ----------
    truth : ground truth of the recording.
    plane : plane index.
    frames : frame indices (or a slice) of that plane.

    Returns
    -------
    (len(frames), 2, H, W) float32 (dy, dx) px on frame coordinates, added to the rigid offset.
    """
    grid = KnotGrid(truth.nonrigid_knots_y, truth.nonrigid_knots_x, truth.nonrigid_sigma_px)
    height, width = truth.illumination.shape
    values = truth.nonrigid_grid[plane][frames]
    return evaluate_knots(values, grid, np.arange(height), np.arange(width)).astype(np.float32)


def simulate_rigid_motion(rng: np.random.Generator, parameters: SimulationParameters) -> np.ndarray:
    """(P, T, 2) rigid offsets: slow drift + movement bouts + jitter, max |offset| per axis = rigid_shift_px."""
    sample_count = parameters.frame_count * parameters.plane_count
    rate = parameters.frame_rate_hz
    drift = smooth_noise(rng, (2, sample_count), 3.0 * rate)
    jitter = smooth_noise(rng, (2, sample_count), 1.0)
    bouts = np.zeros((2, sample_count))
    times = np.arange(sample_count)
    for _ in range(rng.poisson(sample_count / (20.0 * rate)) + 1):
        centre, width = rng.uniform(0, sample_count), rng.uniform(1.0, 3.0) * rate
        bump = np.where(np.abs(times - centre) < width, 0.5 * (1 + np.cos(np.pi * (times - centre) / width)), 0.0)
        bouts += rng.normal(0, 1.5, (2, 1)) * bump
    motion = 0.5 * drift + 0.2 * jitter + bouts
    peak = np.abs(motion).max(axis=1, keepdims=True)
    motion *= parameters.rigid_shift_px / np.where(peak > 0, peak, 1.0)
    return motion.T.reshape(parameters.frame_count, parameters.plane_count, 2).transpose(1, 0, 2).astype(np.float32)


def simulate_nonrigid_motion(rng: np.random.Generator, parameters: SimulationParameters, grid: KnotGrid) -> np.ndarray:
    """(P, T, 2, gy, gx) knot values: each frame's dense field has zero spatial mean; its largest
    |component| over the recording (on a 4-px lattice) is nonrigid_shift_px."""
    sample_count = parameters.frame_count * parameters.plane_count
    gy, gx = len(grid.knots_y), len(grid.knots_x)
    values = smooth_noise(rng, (2, gy, gx, sample_count), 0.5 * parameters.frame_rate_hz).transpose(3, 0, 1, 2)
    row_mean = interpolation_weights(np.arange(parameters.frame_height), grid.knots_y, grid.sigma_px[0]).mean(axis=0)
    column_mean = interpolation_weights(np.arange(parameters.frame_width), grid.knots_x, grid.sigma_px[1]).mean(axis=0)
    values -= np.einsum("a,ncab,b->nc", row_mean, values, column_mean)[:, :, None, None]
    lattice_rows, lattice_columns = lattice(parameters.frame_height), lattice(parameters.frame_width)
    peak = max(float(np.abs(evaluate_knots(values[start : start + 64], grid, lattice_rows, lattice_columns)).max()) for start in range(0, sample_count, 64))
    values *= parameters.nonrigid_shift_px / (peak if peak > 0 else 1.0)
    return values.reshape(parameters.frame_count, parameters.plane_count, 2, gy, gx).transpose(1, 0, 2, 3, 4).astype(np.float32)


def plant_bad_frames(rng: np.random.Generator, parameters: SimulationParameters, rigid_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mark bad volumes (every plane), blank half of them, shift the rest far (in place); (bad, blank) (P, T)."""
    planes, frames = parameters.plane_count, parameters.frame_count
    bad = np.zeros((planes, frames), bool)
    blank = np.zeros((planes, frames), bool)
    chosen = rng.choice(np.arange(1, frames), parameters.bad_frame_count, replace=False) if parameters.bad_frame_count else np.zeros(0, int)
    far = 3.0 * max(parameters.rigid_shift_px, 0.05 * min(parameters.frame_height, parameters.frame_width))
    for frame in chosen:
        bad[:, frame] = True
        if rng.random() < 0.5:
            blank[:, frame] = True
        else:
            rigid_offsets[:, frame] = rng.choice([-1.0, 1.0], 2) * rng.uniform(far, 1.3 * far, 2)
    return bad, blank
