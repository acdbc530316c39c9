"""The scene of a field of view: source shapes (somata, dendrite-like chains) and their footprints,
and the atlas of every plane's sources and static images (neuropil modes, background, vessels)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from cindra_dask.errors import ConfigurationError
from cindra_dask.simulate.fields import KnotGrid, evaluate_knots, standardized
from cindra_dask.simulate.parameters import ATLAS_STREAM, NEUROPIL_MODE_COUNT, SimulationParameters


class _Soma(NamedTuple):
    center: tuple[float, float]
    radii: tuple[float, float]
    angle: float
    nucleus_depth: float
    edge_px: float

    def extent(self) -> float:
        return max(self.radii) + 4 * self.edge_px + 1


class _Chain(NamedTuple):
    """Union (maximum) of Gaussian beads: dendrite segments and irregular clusters."""

    points: np.ndarray  # (k, 4): y, x, sigma_px, amplitude

    @property
    def center(self) -> tuple[float, float]:
        return float(self.points[:, 0].mean()), float(self.points[:, 1].mean())

    def extent(self) -> float:
        spread = np.hypot(self.points[:, 0] - self.center[0], self.points[:, 1] - self.center[1])
        return float(np.max(spread + 3 * self.points[:, 2])) + 1


def _shape_intensity(shape: _Soma | _Chain, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Relative brightness (same shape as ``rows``) of a source at shared coordinates."""
    if isinstance(shape, _Soma):
        dy, dx = rows - shape.center[0], columns - shape.center[1]
        cosine, sine = math.cos(shape.angle), math.sin(shape.angle)
        u = (dy * cosine + dx * sine) / shape.radii[0]
        v = (-dy * sine + dx * cosine) / shape.radii[1]
        rho = np.sqrt(u * u + v * v)
        scale = 0.5 * (shape.radii[0] + shape.radii[1]) / shape.edge_px
        body = 1.0 / (1.0 + np.exp(np.clip((rho - 1.0) * scale, -50, 50)))
        nucleus = shape.nucleus_depth / (1.0 + np.exp(np.clip((rho - 0.5) * scale, -50, 50)))
        return body * (1.0 - nucleus)
    points = shape.points
    squared = (rows[..., None] - points[:, 0]) ** 2 + (columns[..., None] - points[:, 1]) ** 2
    return np.max(points[:, 3] * np.exp(-0.5 * squared / points[:, 2] ** 2), axis=-1)


class Deformation(NamedTuple):
    """A static smooth backward map D: session(y, x) = shared(y − Dy, x − Dx)."""

    grid: KnotGrid
    values: np.ndarray  # (2, gy, gx) px
    amplitude_px: float

    def dense(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        return evaluate_knots(self.values, self.grid, rows, columns)

    def at(self, row: float, column: float) -> np.ndarray:
        return self.dense(np.array([row]), np.array([column]))[:, 0, 0]


class Footprint(NamedTuple):
    ypix: np.ndarray
    xpix: np.ndarray
    weights: np.ndarray
    centroid: np.ndarray


def render_footprint(
    shape: _Soma | _Chain,
    *,
    frame_shape: tuple[int, int],
    deformation: Deformation | None,
    blur_px: float,
) -> Footprint | None:
    """Footprint of a source in session frame coordinates (None if it falls outside the frame)."""
    height, width = frame_shape
    center = np.array(shape.center)
    margin = shape.extent() + 3 * blur_px + 2
    if deformation is not None:
        center = center + deformation.at(center[0], center[1])
        margin += deformation.amplitude_px + 2
    y0, y1 = max(0, int(center[0] - margin)), min(height, int(math.ceil(center[0] + margin)) + 1)
    x0, x1 = max(0, int(center[1] - margin)), min(width, int(math.ceil(center[1] + margin)) + 1)
    if y1 <= y0 or x1 <= x0:
        return None
    rows, columns = np.arange(y0, y1, dtype=np.float64), np.arange(x0, x1, dtype=np.float64)
    yy, xx = np.meshgrid(rows, columns, indexing="ij")
    if deformation is not None:
        field = deformation.dense(rows, columns)
        yy, xx = yy - field[0], xx - field[1]
    intensity = _shape_intensity(shape, yy, xx)
    if blur_px > 0:
        intensity = ndimage.gaussian_filter(intensity, blur_px, mode="constant")
    peak = intensity.max()
    if peak <= 0:
        return None
    keep = intensity >= 0.2 * peak
    if keep.sum() < 3:
        return None
    local_y, local_x = np.nonzero(keep)
    weights = intensity[keep]
    weights = weights / weights.mean()
    ypix, xpix = (local_y + y0).astype(np.int32), (local_x + x0).astype(np.int32)
    centroid = np.array([np.average(ypix, weights=weights), np.average(xpix, weights=weights)], np.float32)
    return Footprint(ypix, xpix, weights.astype(np.float32), centroid)


class Atlas(NamedTuple):
    shapes: list[list[_Soma | _Chain]]  # per plane: cells first, then non-cells
    cell_pool: int
    brightness: np.ndarray  # (P, pool) relative resting brightness
    red_photons: np.ndarray  # (P, pool)
    neuropil_modes: np.ndarray  # (P, M, Hq, Wq) photons
    backgrounds: np.ndarray  # (P, C, Hq, Wq) photons
    sensor_backgrounds: np.ndarray  # (P, C, H, W) photons, not moved
    margin_px: int


def _smooth_random_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Standardized Gaussian-filtered white noise (float64)."""
    return standardized(ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap"))


def _random_curve(rng: np.random.Generator, start: np.ndarray, *, length_px: float, curvature_per_px: float) -> np.ndarray:
    """(k, 2) points every 0.5 px along a curve of constant curvature from ``start``."""
    arc = np.arange(0.0, length_px, 0.5)
    heading = rng.uniform(0, 2 * np.pi) + curvature_per_px * arc
    steps = 0.5 * np.stack([np.sin(heading), np.cos(heading)], axis=1)
    return start + np.cumsum(steps, axis=0) - steps[0]


def _vessel_attenuation(rng: np.random.Generator, canvas_shape: tuple[int, int], *, count: int, width_scale: float) -> np.ndarray:
    """(Hq, Wq) transmission in (0, 1]: dark curvilinear vessel shadows."""
    transmission = np.ones(canvas_shape)
    height, width = canvas_shape
    for _ in range(count):
        start = np.array([rng.uniform(0, height), rng.uniform(0, width)])
        curve = _random_curve(rng, start, length_px=1.5 * (height + width), curvature_per_px=rng.normal(0, 1.0 / (height + width)))
        curve = np.concatenate([curve, 2 * start - curve])  # extend both ways
        inside = (curve[:, 0] >= 0) & (curve[:, 0] < height) & (curve[:, 1] >= 0) & (curve[:, 1] < width)
        centre_line = np.ones(canvas_shape, bool)
        centre_line[curve[inside, 0].astype(int), curve[inside, 1].astype(int)] = False
        if centre_line.all():
            continue
        distance = ndimage.distance_transform_edt(centre_line)
        sigma = rng.uniform(2.0, 4.0) * width_scale
        transmission *= 1.0 - 0.7 * np.exp(-0.5 * (distance / sigma) ** 2)
    return transmission


def _place_cells(
    rng: np.random.Generator, count: int, *, frame_shape: tuple[int, int], diameter_px: float, margin_px: float, transmission: np.ndarray, canvas_margin: int
) -> np.ndarray:
    """(count, 2) soma centres at least 0.75 diameters apart, off the vessels."""
    height, width = frame_shape
    minimum_distance = 0.75 * diameter_px
    # disks of diameter minimum_distance around the centres are disjoint inside the centre rectangle grown
    # by half a distance on each side, and no packing beats the hexagonal density pi / (2 sqrt 3)
    grown_area = (max(0.0, height - 1 - 2 * margin_px) + minimum_distance) * (max(0.0, width - 1 - 2 * margin_px) + minimum_distance)
    densest = int(2 * grown_area / (math.sqrt(3) * minimum_distance**2))
    if count > densest:
        raise _too_many_cells(count, diameter_px=diameter_px, frame_shape=frame_shape)
    centres = np.zeros((0, 2))
    for _ in range(200 * max(count, 1)):
        if len(centres) == count:
            return centres
        candidate = np.array([rng.uniform(margin_px, height - 1 - margin_px), rng.uniform(margin_px, width - 1 - margin_px)])
        if transmission[int(candidate[0]) + canvas_margin, int(candidate[1]) + canvas_margin] < 0.7:
            continue
        if len(centres) and np.min(np.hypot(*(centres - candidate).T)) < minimum_distance:
            continue
        centres = np.vstack([centres, candidate])
    raise _too_many_cells(count, diameter_px=diameter_px, frame_shape=frame_shape)


def _too_many_cells(count: int, *, diameter_px: float, frame_shape: tuple[int, int]) -> ConfigurationError:
    return ConfigurationError(
        f"cell_count: could not place {count} cells of {diameter_px:g} px (cell_diameter_px) at least {0.75 * diameter_px:g} px apart in {frame_shape[0]}×{frame_shape[1]} frames; "
        "lower cell_count or cell_diameter_px, or raise frame_height/frame_width"
    )


def _make_soma(rng: np.random.Generator, centre: np.ndarray, diameter_px: float) -> _Soma:
    radius = 0.5 * diameter_px * float(np.clip(rng.normal(1.0, 0.12), 0.7, 1.4))
    elongation = float(np.clip(rng.normal(1.0, 0.12), 0.75, 1.35))
    nucleus_depth = float(rng.uniform(0.3, 0.7)) if rng.random() < 0.7 else 0.0
    return _Soma((float(centre[0]), float(centre[1])), (radius * elongation, radius / elongation), float(rng.uniform(0, np.pi)), nucleus_depth, float(rng.uniform(0.4, 0.7)))


def _make_non_cell(rng: np.random.Generator, *, frame_shape: tuple[int, int], diameter_px: float, margin_px: float) -> _Chain:
    height, width = frame_shape
    start = np.array([rng.uniform(margin_px, height - 1 - margin_px), rng.uniform(margin_px, width - 1 - margin_px)])
    if rng.random() < 0.7:  # dendrite segment with varicosities
        length = rng.uniform(2.0, 5.0) * diameter_px
        curve = _random_curve(rng, start, length_px=length, curvature_per_px=rng.normal(0, 1.5 / length))
        arc = 0.5 * np.arange(len(curve))
        amplitude = 1.0 + 0.4 * np.sin(2 * np.pi * arc / rng.uniform(5, 9) + rng.uniform(0, 2 * np.pi))
        sigma = np.full(len(curve), rng.uniform(0.8, 1.4))
        return _Chain(np.column_stack([curve, sigma, amplitude]))
    blob_count = int(rng.integers(3, 7))  # irregular cluster of boutons / fragments
    offsets = rng.normal(0, 0.35 * diameter_px, size=(blob_count, 2))
    sigma = rng.uniform(1.0, 2.2, blob_count) * diameter_px / 12.0
    return _Chain(np.column_stack([start + offsets, sigma, rng.uniform(0.6, 1.0, blob_count)]))


def build_atlas(parameters: SimulationParameters, *, seed: int, cell_pool: int, non_cell_pool: int, extra_margin_px: int) -> Atlas:
    """Sources and static images of every plane in the shared field of view."""
    height, width = parameters.frame_height, parameters.frame_width
    diameter = parameters.cell_diameter_px
    margin = parameters.scene_padding_px + extra_margin_px
    canvas_shape = (height + 2 * margin, width + 2 * margin)
    size_scale = diameter / 12.0
    shapes, brightness, red, modes, backgrounds, sensor_backgrounds = [], [], [], [], [], []
    for plane in range(parameters.plane_count):
        rng = np.random.default_rng([seed, ATLAS_STREAM, plane])
        transmission = _vessel_attenuation(rng, canvas_shape, count=parameters.vessel_count, width_scale=size_scale * (2.0 if parameters.one_photon else 1.0))
        edge_margin = 0.5 * diameter + 2 + extra_margin_px
        centres = _place_cells(rng, cell_pool, frame_shape=(height, width), diameter_px=diameter, margin_px=edge_margin, transmission=transmission, canvas_margin=margin)
        plane_shapes: list[_Soma | _Chain] = [_make_soma(rng, centre, diameter) for centre in centres]
        plane_shapes += [_make_non_cell(rng, frame_shape=(height, width), diameter_px=diameter, margin_px=edge_margin) for _ in range(non_cell_pool)]
        shapes.append(plane_shapes)
        pool = cell_pool + non_cell_pool
        brightness.append(np.exp(rng.normal(0, parameters.brightness_jitter, pool)))
        red_count = int(round(parameters.red_cell_fraction * cell_pool))
        plane_red = np.zeros(pool)
        plane_red[rng.choice(cell_pool, red_count, replace=False)] = parameters.red_photons * np.exp(rng.normal(0, 0.3, red_count))
        red.append(plane_red)

        smooth_scale = 0.25 * min(height, width)
        weights = np.exp(1.5 * np.stack([_smooth_random_field(rng, canvas_shape, smooth_scale) for _ in range(NEUROPIL_MODE_COUNT)]))
        weights /= weights.sum(axis=0, keepdims=True)
        sensor = np.zeros((parameters.channel_count, height, width))
        if parameters.one_photon:  # out-of-focus glow: half moves with the tissue, half is fixed to the sensor
            glow_photons = 0.5 * parameters.one_photon_background_ratio * parameters.baseline_photons
            level = np.exp(0.5 * _smooth_random_field(rng, canvas_shape, 0.2 * min(height, width)) + 0.05 * _smooth_random_field(rng, canvas_shape, 2.0 * size_scale))
            level *= glow_photons / level.mean()
            static = parameters.baseline_photons * np.exp(0.3 * _smooth_random_field(rng, canvas_shape, 0.3 * min(height, width)))
            sensor[0] = np.exp(0.5 * _smooth_random_field(rng, (height, width), 0.08 * min(height, width)))
            sensor[0] *= glow_photons / sensor[0].mean()
        else:
            level = np.exp(0.3 * _smooth_random_field(rng, canvas_shape, 1.5 * size_scale) + 0.25 * _smooth_random_field(rng, canvas_shape, diameter))
            level *= parameters.neuropil_photons / level.mean()
            static = parameters.background_photons * np.exp(0.2 * _smooth_random_field(rng, canvas_shape, 0.3 * min(height, width)))
        level *= transmission
        static *= 0.5 + 0.5 * transmission
        modes.append(level[None] * weights)
        plane_backgrounds = [static]
        if parameters.channel_count == 2:
            plane_backgrounds.append(0.5 * static + 0.15 * level)
        backgrounds.append(np.stack(plane_backgrounds))
        sensor_backgrounds.append(sensor)
    return Atlas(
        shapes,
        cell_pool,
        np.array(brightness),
        np.array(red),
        np.array(modes, np.float32),
        np.array(backgrounds, np.float32),
        np.array(sensor_backgrounds, np.float32),
        margin,
    )
