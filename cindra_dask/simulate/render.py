"""Rendering frames from the ground truth: scene, motion, sensor background, illumination, shot and
read noise; whole recordings in memory, chunk by chunk."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage, sparse

from cindra_dask.simulate.fields import KnotGrid, interpolation_weights
from cindra_dask.simulate.parameters import NEUROPIL_MODE_COUNT, NOISE_STREAM, GroundTruth, SimulatedRecording, SimulationParameters
from cindra_dask.simulate.truth import generate_ground_truth

CHUNK_BYTES = 2**25


class _PlaneRenderer:
    """Renders frames of one plane (all channels) from the ground truth."""

    def __init__(self, parameters: SimulationParameters, truth: GroundTruth, plane: int) -> None:
        self.parameters, self.truth, self.plane = parameters, truth, plane
        height, width = parameters.frame_height, parameters.frame_width
        pad = truth.scene_padding_px
        self.padded_shape = (height + 2 * pad, width + 2 * pad)
        sources = np.flatnonzero(truth.plane_index == plane)
        offsets = truth.footprint_pixel_offsets
        pixel_rows = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in sources]) if len(sources) else np.zeros(0, int)
        owner = np.repeat(np.arange(len(sources)), np.diff(offsets)[sources])
        flat = (truth.footprint_ypix[pixel_rows].astype(np.int64) + pad) * self.padded_shape[1] + truth.footprint_xpix[pixel_rows] + pad
        self.footprints = sparse.csr_matrix(
            (truth.footprint_weights[pixel_rows], (flat, owner)), shape=(self.padded_shape[0] * self.padded_shape[1], len(sources)), dtype=np.float32
        )
        self.baseline = truth.source_baseline_photons[sources]
        self.calcium = truth.calcium[sources]
        self.neuropil = truth.neuropil_images[plane].reshape(NEUROPIL_MODE_COUNT, -1)
        self.background = truth.background_images[plane].reshape(truth.background_images.shape[1], -1)
        self.red_static = (self.footprints @ truth.red_photons[sources]).astype(np.float32) + self.background[-1] if parameters.channel_count == 2 else None
        grid = KnotGrid(truth.nonrigid_knots_y, truth.nonrigid_knots_x, truth.nonrigid_sigma_px)
        offset = truth.bidirectional_offset_px
        self.row_weights = interpolation_weights(np.arange(height), grid.knots_y, grid.sigma_px[0])
        self.column_weights = interpolation_weights(np.arange(width), grid.knots_x, grid.sigma_px[1])
        self.shifted_column_weights = interpolation_weights(np.arange(width) + offset, grid.knots_x, grid.sigma_px[1])
        rows, columns = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
        columns[1::2] += offset
        self.sample_grid = np.stack([rows, columns]) + pad
        self.integer_grid = self.sample_grid.astype(np.int64)

    def scenes(self, frames: np.ndarray) -> np.ndarray:
        """(C, len(frames), Hp·Wp) float32 photons at reference coordinates, bleached."""
        truth = self.truth
        activity = self.baseline[:, None] * (1.0 + self.calcium[:, frames])
        green = np.asarray((self.footprints @ activity).T, np.float32)
        green += (1.0 + truth.neuropil_activity[self.plane][:, frames]).T @ self.neuropil
        green += self.background[0]
        blank = truth.blank_frames[self.plane, frames]
        green[blank] = self.background[0]
        channels = [green]
        if self.red_static is not None:
            red = self.red_static + self.parameters.red_bleedthrough * green
            red[blank] = self.background[-1]
            channels.append(red)
        scenes = np.stack(channels)
        scenes *= truth.bleaching[self.plane, frames][None, :, None]
        return scenes

    def sample_coordinates(self, frame: int) -> np.ndarray:
        """(2, H, W) float64 canvas coordinates the raw frame samples (motion + odd-line offset)."""
        grid = self.truth.nonrigid_grid[self.plane, frame].astype(np.float64)
        field = self.row_weights @ grid @ self.column_weights.T
        if self.truth.bidirectional_offset_px:
            field[:, 1::2] = (self.row_weights[1::2] @ grid @ self.shifted_column_weights.T)
        field += self.truth.rigid_offsets[self.plane, frame].astype(np.float64)[:, None, None]
        return self.sample_grid - field

    def render(self, frames: np.ndarray, *, motion: bool, noise: bool) -> np.ndarray:
        """(C, len(frames), H, W) float32 photons (noisy when ``noise``)."""
        parameters, truth = self.parameters, self.truth
        height, width = parameters.frame_height, parameters.frame_width
        scenes = self.scenes(frames).reshape(-1, len(frames), *self.padded_shape)
        output = np.empty((len(scenes), len(frames), height, width), np.float32)
        for position, frame in enumerate(frames):
            coordinates = self.sample_coordinates(int(frame)) if motion else None
            for channel in range(len(scenes)):
                scene = scenes[channel, position]
                if motion:
                    ndimage.map_coordinates(scene, coordinates, output=output[channel, position], order=3, mode="nearest")
                else:
                    output[channel, position] = scene[self.integer_grid[0], self.integer_grid[1]]
                output[channel, position] += truth.sensor_background[self.plane, channel] * truth.bleaching[self.plane, frame]
                output[channel, position] *= truth.illumination
                if noise:
                    rng = np.random.default_rng([parameters.seed, NOISE_STREAM, self.plane, channel, int(frame)])
                    photons = rng.poisson(np.maximum(output[channel, position], 0.0))
                    output[channel, position] = photons
                    if parameters.read_noise > 0:
                        output[channel, position] += np.float32(parameters.read_noise) * rng.standard_normal((height, width), dtype=np.float32)
        return output


def render_frames(
    parameters: SimulationParameters, truth: GroundTruth, *, plane: int, frames: Sequence[int] | np.ndarray, motion: bool = True, noise: bool = True
) -> np.ndarray:
    """Render frames of one plane from the ground truth.

    Parameters
    ----------
    parameters, truth : the recording.
    plane : plane index.
    frames : frame indices of that plane.
    motion : apply rigid + nonrigid motion (False: frames at reference coordinates).
    noise : add Poisson shot noise and read noise (False: expected photons).

    Returns
    -------
    (C, len(frames), H, W) float32 photons; ``to_output_dtype`` converts to the page dtype.
    """
    return _PlaneRenderer(parameters, truth, plane).render(np.asarray(frames, np.int64), motion=motion, noise=noise)


def to_output_dtype(photons: np.ndarray, dtype: str) -> np.ndarray:
    """Round and clip float photons into the integer ``dtype`` (no overflow)."""
    limits = np.iinfo(dtype)
    return np.clip(np.rint(photons), limits.min, limits.max).astype(dtype)


def _chunk_frame_count(parameters: SimulationParameters) -> int:
    pad = parameters.scene_padding_px
    frame_bytes = (parameters.frame_height + 2 * pad) * (parameters.frame_width + 2 * pad) * 4 * (parameters.channel_count + 1)
    return int(max(1, min(parameters.frame_count, CHUNK_BYTES // frame_bytes)))


def check_truth(parameters: SimulationParameters, truth: GroundTruth) -> None:
    expected = (parameters.plane_count, parameters.frame_count, 2)
    if truth.rigid_offsets.shape != expected or truth.illumination.shape != (parameters.frame_height, parameters.frame_width):
        raise ValueError(f"ground truth (offsets {truth.rigid_offsets.shape}, frame {truth.illumination.shape}) does not match the parameters")
    if truth.calcium.shape[1] != parameters.frame_count or truth.background_images.shape[1] != parameters.channel_count or truth.scene_padding_px != parameters.scene_padding_px:
        raise ValueError("ground truth channels or scene padding do not match the parameters")


def volume_chunks(parameters: SimulationParameters, truth: GroundTruth) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first frame, (frames, P, C, H, W) pages in the output dtype) chunk by chunk."""
    renderers = [_PlaneRenderer(parameters, truth, plane) for plane in range(parameters.plane_count)]
    step = _chunk_frame_count(parameters)
    for start in range(0, parameters.frame_count, step):
        frames = np.arange(start, min(start + step, parameters.frame_count))
        planes = [to_output_dtype(renderer.render(frames, motion=True, noise=True) / np.float32(parameters.photons_per_gray_level), parameters.dtype) for renderer in renderers]
        yield start, np.stack(planes).transpose(2, 0, 1, 3, 4)


def simulate_recording(parameters: SimulationParameters, *, truth: GroundTruth | None = None) -> SimulatedRecording:
    """Simulate a recording in memory (small sizes: tests of other stages).

    Returns
    -------
    SimulatedRecording with ``movie`` (P, C, T, H, W) in ``parameters.dtype``; pages are the
    same bytes ``write_recording`` writes.
    """
    truth = generate_ground_truth(parameters) if truth is None else truth
    check_truth(parameters, truth)
    movie = np.empty((parameters.plane_count, parameters.channel_count, parameters.frame_count, parameters.frame_height, parameters.frame_width), parameters.dtype)
    for start, volumes in volume_chunks(parameters, truth):
        movie[:, :, start : start + len(volumes)] = volumes.transpose(1, 2, 0, 3, 4)
    return SimulatedRecording(movie, truth)
