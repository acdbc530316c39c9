"""Ground-truth simulator: two-photon (or one-photon) recordings with everything planted known.

The project's test bench. Every later stage is tested by recovering what this module plants:
footprints (detection), rigid and nonrigid motion (registration), the odd-line offset
(bidirectional correction), calcium and spikes (extraction, OASIS), red labels
(colocalization), per-session deformations and cell identities (multi-recording tracking).

Scene model (per plane, photons per pixel per frame; ``t`` = plane frame index)::

    scene_t = bleach_t · ( Σ_k footprint_k · baseline_k · (1 + calcium_k(t))
                           + Σ_m neuropil_m · (1 + neuropil_activity_m(t)) + background )
    ideal_t(y, x) = scene_t(y − Dy_t(y, x), x − Dx_t(y, x)),   D_t = rigid_t + nonrigid_t(y, x)
    raw_t(y, x)   = illumination(y, x) · (ideal_t(y, x + b·[y odd]) + bleach_t · sensor_background(y, x))
                    (b = bidirectional offset; the sensor background is fixed to the camera: 1P glow)
    pixel         = Poisson(raw_t) + Normal(0, read_noise), rounded and clipped to the dtype

The scene is rendered on a canvas padded by ``scene_padding_px`` on every side, so motion brings
real (neuropil, background) content into view; resampling is cubic-spline
(``scipy.ndimage.map_coordinates(order=3, mode="nearest")``). Channel 2 (structural, red) is
``bleach_t · (Σ_k footprint_k · red_k + red background + red_bleedthrough · green scene_t)``,
moved by the same motion. Blank bad frames show the (bleached) background only; shifted bad
frames carry a rigid offset of at least 3× ``rigid_shift_px`` (and ≥ 15 % of the frame side),
beyond cindra's registration limit. Shot noise of frame ``t``, plane ``p``, channel ``c`` comes
from ``numpy.random.default_rng([seed, 4, p, c, t])``, so the bytes do not depend on chunking.
Plane p's frame t is taken at time (t·P + p) / frame_rate_hz: all planes share one motion trace.
``write_recording`` streams (memory grows with sources × frames for the truth, not with pixels);
2000 frames of 256² render and write in about 20 s on one core.

Sign conventions (CONVENTIONS.md): ``rigid_offsets[p, t] = (dy, dx)`` means frame t shows the
reference scene moved by +dy rows and +dx columns: frame_t(y, x) ≈ reference(y − dy, x − dx).
The nonrigid field uses the same sign and is defined on frame (output) coordinates.
``bidirectional_offset_px = b`` means odd rows (1, 3, 5, …) of every raw frame show the ideal row
moved left by b columns (raw[odd, x] = ideal[odd, x + b]); cindra's estimator returns +b and its
correction (odd rows moved right by b) undoes it. A session's ``session_deformation`` D is the
backward map from the shared field of view: session_image(y, x) = shared_image(y − Dy, x − Dx).

``ground_truth.npz`` keys (``save_ground_truth``; n sources over all planes, P planes, T frames
per plane, H × W frames, Hp = H + 2·pad, Wp = W + 2·pad, M neuropil modes, gy × gx knots)::

    parameters_json          str        the SimulationParameters as JSON
    footprint_pixel_offsets  (n+1,) i8  source k owns entries [offsets[k], offsets[k+1]) below
    footprint_ypix           (Σ,) i4    row of each footprint pixel (frame coordinates)
    footprint_xpix           (Σ,) i4    column of each footprint pixel
    footprint_weights        (Σ,) f4    relative brightness, unit mean over each source's pixels
    source_baseline_photons  (n,) f4    photons per footprint pixel at rest (× weight)
    red_photons              (n,) f4    static channel-2 photons per pixel (× weight); 0 if not red
    plane_index              (n,) i4    plane of each source
    is_cell                  (n,) bool  soma (True) or dendrite-like / irregular source (False)
    is_red                   (n,) bool  labelled in the structural channel
    centroids                (n, 2) f4  weighted footprint centroid (y, x), px
    cell_identity            (n,) i8    stable source identity shared across sessions
    spikes                   (n, T) f4  spike count per frame
    calcium                  (n, T) f4  dF/F: AR(1) of the spikes, decay exp(−1/(tau_s·fs_plane));
                                        with ``activity_bank_path``, each spiking source's real dF/F
                                        segment (floored at −0.9) and ``spikes`` its real spike counts
    active                   (n,) bool  has at least one spike
    neuropil_images          (P, M, Hp, Wp) f4  neuropil modes at rest, photons (padded canvas)
    neuropil_activity        (P, M, T) f4       multiplicative activity of each mode (dF/F)
    background_images        (P, C, Hp, Wp) f4  static background per channel, photons
    sensor_background        (P, C, H, W) f4    photons fixed to the sensor, not moved (1P glow; 0 in 2P)
    illumination             (H, W) f4          static multiplicative field after motion (1P vignetting)
    bleaching                (P, T) f4          multiplicative bleaching factor, 1 at t = 0
    rigid_offsets            (P, T, 2) f4       (dy, dx) px, sign as above (bad frames included)
    nonrigid_grid            (P, T, 2, gy, gx) f4  knot values of the nonrigid field, px
    nonrigid_knots_y         (gy,) f4, nonrigid_knots_x (gx,) f4   knot positions, px
    nonrigid_sigma_px        (2,) f4            Gaussian kernel widths (y, x) of the knot interpolation
    bad_frames               (P, T) bool        blanked or far-shifted frames
    blank_frames             (P, T) bool        the blanked subset
    session_deformation      (2, H, W) f4       (dy, dx) backward map from the shared space (0 if single)
    bidirectional_offset_px  int;  tau_s, frame_rate_hz (volume rate as cindra's frame_rate) float;
    scene_padding_px         int
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator, Literal, NamedTuple, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage, sparse
from scipy.signal import lfilter

from cindra_dask.errors import ConfigurationError, OutputError
from cindra_dask.rois import RaggedRois
from cindra_dask.simulate_bank import ActivityBank, load_activity_bank

ACQUISITION_FILE_NAME = "cindra_parameters.json"
GROUND_TRUTH_FILE_NAME = "ground_truth.npz"
NEUROPIL_MODE_COUNT = 4
CHUNK_BYTES = 2**25

_ATLAS_STREAM, _ACTIVITY_STREAM, _MOTION_STREAM, _NOISE_STREAM, _SESSION_STREAM, _BANK_STREAM = 1, 2, 3, 4, 5, 6
LOWEST_PLANTED_DFF = -0.9


class SimulationParameters(BaseModel):
    """Everything that defines a simulated recording (one seed makes it reproducible)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    frame_height: int = Field(256, ge=32, le=4096, description="Frame height (rows), px.")
    frame_width: int = Field(256, ge=32, le=4096, description="Frame width (columns), px.")
    frame_count: int = Field(2000, ge=1, le=10_000_000, description="Frames per plane (and channel).")
    plane_count: int = Field(1, ge=1, le=16, description="Interleaved z-planes.")
    channel_count: int = Field(1, ge=1, le=2, description="1, or 2 with a structural (red) second channel.")
    frame_rate_hz: float = Field(30.0, gt=0, le=10_000, description="cindra's frame_rate: per-plane rate = frame_rate_hz / plane_count.")
    cell_count: int = Field(120, ge=0, le=100_000, description="Somata per plane.")
    non_cell_count: int = Field(30, ge=0, le=100_000, description="Dendrite-like elongated or irregular active sources per plane.")
    cell_diameter_px: float = Field(12.0, ge=3, le=100, description="Mean soma diameter, px (each cell jittered around it).")
    silent_fraction: float = Field(0.1, ge=0, le=1, description="Fraction of sources that never spike (visible in the mean image only).")
    spike_rate_hz: float = Field(0.5, ge=0, le=50, description="Mean spike rate of spiking sources, Hz (per-source rates vary, bursty).")
    tau_s: float = Field(1.0, gt=0, le=10, description="Calcium decay time constant, s.")
    spike_amplitude_dff: float = Field(0.4, gt=0, le=10, description="Mean calcium jump of one spike, dF/F.")
    spike_amplitude_jitter: float = Field(0.3, ge=0, le=2, description="Relative standard deviation of each spike's amplitude.")
    baseline_photons: float = Field(60.0, gt=0, le=10_000, description="Mean photons per footprint pixel of a source at rest (per frame).")
    brightness_jitter: float = Field(0.35, ge=0, le=2, description="Log-normal sigma of per-source resting brightness.")
    neuropil_photons: float = Field(30.0, ge=0, le=10_000, description="Mean neuropil photons per pixel at rest (two-photon).")
    neuropil_coupling: float = Field(0.3, ge=0, le=2, description="Standard deviation of the neuropil's multiplicative activity (dF/F); partly driven by the sources.")
    background_photons: float = Field(8.0, ge=0, le=10_000, description="Static, spatially smooth background photons per pixel (two-photon).")
    vessel_count: int = Field(2, ge=0, le=50, description="Blood vessels: dark curvilinear shadows in neuropil and background.")
    read_noise: float = Field(2.0, ge=0, le=1000, description="Gaussian read noise standard deviation, photons.")
    bleaching_fraction: float = Field(0.1, ge=0, lt=1, description="Total exponential brightness drop over the recording (0.1 = 10 %).")
    rigid_shift_px: float = Field(4.0, ge=0, le=200, description="Largest rigid offset per axis, px (slow drift + bouts + jitter, subpixel).")
    nonrigid_shift_px: float = Field(1.5, ge=0, le=50, description="Largest nonrigid displacement component over the recording, px (smooth, zero-mean field varying smoothly in time); 0 disables.")
    nonrigid_grid_spacing_px: float = Field(64.0, ge=8, le=4096, description="Knot spacing of the nonrigid field, px.")
    bad_frame_count: int = Field(0, ge=0, description="Frames per plane that are blanked or shifted far beyond the registration limit.")
    bidirectional_offset_px: int = Field(0, ge=-20, le=20, description="Planted odd-line offset, px: raw[odd, x] = ideal[odd, x + offset].")
    one_photon: bool = Field(False, description="One-photon mode: dominant smooth, slowly varying glow (half of it fixed to the sensor), blurred footprints, vignetting.")
    one_photon_background_ratio: float = Field(8.0, ge=0, le=1000, description="One-photon out-of-focus glow photons / baseline_photons (replaces neuropil_photons).")
    red_cell_fraction: float = Field(0.3, ge=0, le=1, description="Fraction of somata labelled in the structural channel.")
    red_photons: float = Field(40.0, ge=0, le=10_000, description="Mean static channel-2 photons per footprint pixel of a labelled cell.")
    red_bleedthrough: float = Field(0.05, ge=0, le=1, description="Fraction of channel-1 photons that bleed into channel 2.")
    file_count: int = Field(3, ge=1, le=100_000, description="TIFF files the pages are spread over (unequal page counts).")
    dtype: Literal["int16", "uint16"] = Field("int16", description="Integer dtype of the TIFF pages (values clipped to its range).")
    seed: int = Field(0, ge=0, description="Seed of every random choice.")
    activity_bank_path: str | None = Field(
        None,
        description="Activity bank file (cindra_dask.simulate_bank; benchmarks/accuracy/fetch_cascade.py builds one from CASCADE): every spiking source gets a real dF/F segment and its real spike train instead of AR(1) calcium; None: the AR(1) model.",
    )

    @model_validator(mode="after")
    def _check_counts(self) -> "SimulationParameters":
        if self.bad_frame_count > max(0, self.frame_count - 1):
            raise ValueError(f"bad_frame_count ({self.bad_frame_count}) must be smaller than frame_count ({self.frame_count})")
        if self.file_count > self.frame_count * self.plane_count * self.channel_count:
            raise ValueError(f"file_count ({self.file_count}) exceeds the number of pages ({self.frame_count * self.plane_count * self.channel_count})")
        return self

    @property
    def plane_frame_rate_hz(self) -> float:
        """Sampling rate of one plane, Hz."""
        return self.frame_rate_hz / self.plane_count

    @property
    def scene_padding_px(self) -> int:
        """Margin of the rendered scene around the field of view, px."""
        return int(math.ceil(self.rigid_shift_px + self.nonrigid_shift_px)) + abs(self.bidirectional_offset_px) + 6


class GroundTruth(NamedTuple):
    """Everything planted in a simulated recording; see the module docstring for shapes and units."""

    parameters_json: str
    footprint_pixel_offsets: np.ndarray
    footprint_ypix: np.ndarray
    footprint_xpix: np.ndarray
    footprint_weights: np.ndarray
    source_baseline_photons: np.ndarray
    red_photons: np.ndarray
    plane_index: np.ndarray
    is_cell: np.ndarray
    is_red: np.ndarray
    centroids: np.ndarray
    cell_identity: np.ndarray
    spikes: np.ndarray
    calcium: np.ndarray
    active: np.ndarray
    neuropil_images: np.ndarray
    neuropil_activity: np.ndarray
    background_images: np.ndarray
    sensor_background: np.ndarray
    illumination: np.ndarray
    bleaching: np.ndarray
    rigid_offsets: np.ndarray
    nonrigid_grid: np.ndarray
    nonrigid_knots_y: np.ndarray
    nonrigid_knots_x: np.ndarray
    nonrigid_sigma_px: np.ndarray
    bad_frames: np.ndarray
    blank_frames: np.ndarray
    session_deformation: np.ndarray
    bidirectional_offset_px: int
    tau_s: float
    frame_rate_hz: float
    scene_padding_px: int

    @property
    def parameters(self) -> SimulationParameters:
        """The parameters this truth was simulated with."""
        return SimulationParameters.model_validate_json(self.parameters_json)

    def rois(self, *, plane: int | None = None, cells_only: bool = False) -> RaggedRois:
        """The true footprints as ``RaggedRois`` (optionally one plane, somata only)."""
        keep = np.ones(len(self.is_cell), bool)
        if plane is not None:
            keep &= self.plane_index == plane
        if cells_only:
            keep &= self.is_cell
        all_rois = RaggedRois(self.footprint_pixel_offsets, self.footprint_ypix, self.footprint_xpix, self.footprint_weights)
        return all_rois.select(np.flatnonzero(keep))


class SimulatedRecording(NamedTuple):
    """An in-memory simulated recording.

    Attributes
    ----------
    movie : (P, C, T, H, W) pages in the output dtype.
    truth : what was planted.
    """

    movie: np.ndarray
    truth: GroundTruth


class SimulatedSession(NamedTuple):
    """One session of a multi-session simulation: its parameters (own seed) and truth."""

    parameters: SimulationParameters
    truth: GroundTruth


# ----------------------------------------------------------------------------------------------
# Smooth fields: Gaussian-kernel interpolation of knot values (nonrigid motion, deformations)
# ----------------------------------------------------------------------------------------------


class _KnotGrid(NamedTuple):
    knots_y: np.ndarray
    knots_x: np.ndarray
    sigma_px: np.ndarray


def _knot_axis(length: int, spacing_px: float) -> tuple[np.ndarray, float]:
    count = max(2, int(round((length - 1) / spacing_px)) + 1)
    knots = np.linspace(0.0, length - 1.0, count)
    return knots, 0.6 * (length - 1.0) / (count - 1)


def _knot_grid(height: int, width: int, spacing_px: float) -> _KnotGrid:
    knots_y, sigma_y = _knot_axis(height, spacing_px)
    knots_x, sigma_x = _knot_axis(width, spacing_px)
    return _KnotGrid(knots_y.astype(np.float32), knots_x.astype(np.float32), np.array([sigma_y, sigma_x], np.float32))


def _interpolation_weights(positions: np.ndarray, knots: np.ndarray, sigma_px: float) -> np.ndarray:
    """(len(positions), len(knots)) float64 normalized Gaussian weights (rows sum to 1)."""
    exponent = -0.5 * ((np.asarray(positions, np.float64)[:, None] - np.asarray(knots, np.float64)[None, :]) / float(sigma_px)) ** 2
    weights = np.exp(exponent - exponent.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def _evaluate_knots(values: np.ndarray, grid: _KnotGrid, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Dense field (..., len(rows), len(columns)) float64 from knot values (..., gy, gx)."""
    row_weights = _interpolation_weights(rows, grid.knots_y, grid.sigma_px[0])
    column_weights = _interpolation_weights(columns, grid.knots_x, grid.sigma_px[1])
    return row_weights @ np.asarray(values, np.float64) @ column_weights.T


def _lattice(length: int) -> np.ndarray:
    """Every 4th pixel along an axis plus the last: where field maxima are measured."""
    return np.union1d(np.arange(0, length, 4), [length - 1])


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
    grid = _KnotGrid(truth.nonrigid_knots_y, truth.nonrigid_knots_x, truth.nonrigid_sigma_px)
    height, width = truth.illumination.shape
    values = truth.nonrigid_grid[plane][frames]
    return _evaluate_knots(values, grid, np.arange(height), np.arange(width)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Source shapes (analytic, in the shared field of view) and their footprints
# ----------------------------------------------------------------------------------------------


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


class _Deformation(NamedTuple):
    """A static smooth backward map D: session(y, x) = shared(y − Dy, x − Dx)."""

    grid: _KnotGrid
    values: np.ndarray  # (2, gy, gx) px
    amplitude_px: float

    def dense(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        return _evaluate_knots(self.values, self.grid, rows, columns)

    def at(self, row: float, column: float) -> np.ndarray:
        return self.dense(np.array([row]), np.array([column]))[:, 0, 0]


class _Footprint(NamedTuple):
    ypix: np.ndarray
    xpix: np.ndarray
    weights: np.ndarray
    centroid: np.ndarray


def _render_footprint(
    shape: _Soma | _Chain,
    *,
    frame_shape: tuple[int, int],
    deformation: _Deformation | None,
    blur_px: float,
) -> _Footprint | None:
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
    return _Footprint(ypix, xpix, weights.astype(np.float32), centroid)


# ----------------------------------------------------------------------------------------------
# The atlas: sources and static images in the shared field of view (one per simulation)
# ----------------------------------------------------------------------------------------------


class _Atlas(NamedTuple):
    shapes: list[list[_Soma | _Chain]]  # per plane: cells first, then non-cells
    cell_pool: int
    brightness: np.ndarray  # (P, pool) relative resting brightness
    red_photons: np.ndarray  # (P, pool)
    neuropil_modes: np.ndarray  # (P, M, Hq, Wq) photons
    backgrounds: np.ndarray  # (P, C, Hq, Wq) photons
    sensor_backgrounds: np.ndarray  # (P, C, H, W) photons, not moved
    margin_px: int


def _standardized(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    centred = values - values.mean(axis=axis, keepdims=True)
    spread = centred.std(axis=axis, keepdims=True)
    return centred / np.where(spread > 0, spread, 1.0)


def _smooth_random_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Standardized Gaussian-filtered white noise (float64)."""
    return _standardized(ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap"))


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


def _build_atlas(parameters: SimulationParameters, *, seed: int, cell_pool: int, non_cell_pool: int, extra_margin_px: int) -> _Atlas:
    """Sources and static images of every plane in the shared field of view."""
    height, width = parameters.frame_height, parameters.frame_width
    diameter = parameters.cell_diameter_px
    margin = parameters.scene_padding_px + extra_margin_px
    canvas_shape = (height + 2 * margin, width + 2 * margin)
    size_scale = diameter / 12.0
    shapes, brightness, red, modes, backgrounds, sensor_backgrounds = [], [], [], [], [], []
    for plane in range(parameters.plane_count):
        rng = np.random.default_rng([seed, _ATLAS_STREAM, plane])
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
    return _Atlas(
        shapes,
        cell_pool,
        np.array(brightness),
        np.array(red),
        np.array(modes, np.float32),
        np.array(backgrounds, np.float32),
        np.array(sensor_backgrounds, np.float32),
        margin,
    )


# ----------------------------------------------------------------------------------------------
# Activity, motion, bad frames
# ----------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_samples: float) -> np.ndarray:
    """Standardized (along the last axis) Gaussian-filtered white noise, float64."""
    white = rng.standard_normal(shape)
    if sigma_samples > 0:
        white = ndimage.gaussian_filter1d(white, sigma_samples, axis=-1, mode="reflect")
    return _standardized(white, axis=-1)


class _Activity(NamedTuple):
    spikes: np.ndarray
    calcium: np.ndarray


def _simulate_activity(rng: np.random.Generator, parameters: SimulationParameters, source_count: int) -> _Activity:
    """Bursty, weakly correlated spike trains and their AR(1) calcium (dF/F)."""
    frame_count = parameters.frame_count
    sampling_hz = parameters.plane_frame_rate_hz
    rates = parameters.spike_rate_hz * rng.gamma(4.0, 0.25, source_count)
    rates[rng.random(source_count) < parameters.silent_fraction] = 0.0
    shared = _smooth_noise(rng, (1, frame_count), 2.0 * sampling_hz)
    private = _smooth_noise(rng, (source_count, frame_count), 2.0 * sampling_hz)
    modulation_sigma = 0.7
    drive = math.sqrt(0.3) * shared + math.sqrt(0.7) * private
    modulation = np.exp(modulation_sigma * drive - 0.5 * modulation_sigma**2)
    spikes = rng.poisson(rates[:, None] / sampling_hz * modulation).astype(np.float64)
    source_index, frame_index = np.nonzero(spikes)
    counts = spikes[source_index, frame_index].astype(int)
    amplitudes = parameters.spike_amplitude_dff * np.clip(1.0 + parameters.spike_amplitude_jitter * rng.standard_normal(counts.sum()), 0.2, None)
    increments = np.zeros_like(spikes)
    np.add.at(increments, (np.repeat(source_index, counts), np.repeat(frame_index, counts)), amplitudes)
    decay = math.exp(-1.0 / (parameters.tau_s * sampling_hz))
    calcium = lfilter([1.0], [1.0, -decay], increments, axis=1)
    return _Activity(spikes.astype(np.float32), calcium.astype(np.float32))


def _bank_activity(rng: np.random.Generator, simulated: _Activity, bank: ActivityBank) -> _Activity:
    """Replace every spiking source's activity by a bank segment (drawn without replacement while the
    bank lasts): its real spike counts and its real dF/F, floored at ``LOWEST_PLANTED_DFF`` so photons
    stay positive. Sources the AR(1) model left silent stay silent."""
    spiking = np.flatnonzero(simulated.spikes.sum(axis=1) > 0)
    if len(spiking) and len(bank.dff) == 0:
        raise ValueError("the activity bank has no segment as long as the recording (frame_count at the per-plane rate)")
    chosen = rng.choice(len(bank.dff), size=len(spiking), replace=len(spiking) > len(bank.dff)) if len(spiking) else np.zeros(0, np.int64)
    spikes, calcium = simulated.spikes.copy(), simulated.calcium.copy()
    spikes[spiking] = bank.spikes[chosen]
    calcium[spiking] = np.maximum(bank.dff[chosen], LOWEST_PLANTED_DFF)
    return _Activity(spikes, calcium)


def _neuropil_activity(rng: np.random.Generator, parameters: SimulationParameters, mode_weights: np.ndarray, calcium: np.ndarray) -> np.ndarray:
    """(M, T) multiplicative neuropil activity: slow fluctuations mixed with the local sources' calcium."""
    slow = _smooth_noise(rng, (len(mode_weights), parameters.frame_count), parameters.tau_s * parameters.plane_frame_rate_hz)
    local = _standardized(mode_weights @ calcium.astype(np.float64), axis=-1) if len(calcium) else np.zeros_like(slow)
    mixed = _standardized(0.6 * slow + 0.4 * local, axis=-1)
    return np.clip(parameters.neuropil_coupling * mixed, -0.8, None).astype(np.float32)


def _simulate_rigid_motion(rng: np.random.Generator, parameters: SimulationParameters) -> np.ndarray:
    """(P, T, 2) rigid offsets: slow drift + movement bouts + jitter, max |offset| per axis = rigid_shift_px."""
    sample_count = parameters.frame_count * parameters.plane_count
    rate = parameters.frame_rate_hz
    drift = _smooth_noise(rng, (2, sample_count), 3.0 * rate)
    jitter = _smooth_noise(rng, (2, sample_count), 1.0)
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


def _simulate_nonrigid_motion(rng: np.random.Generator, parameters: SimulationParameters, grid: _KnotGrid) -> np.ndarray:
    """(P, T, 2, gy, gx) knot values: each frame's dense field has zero spatial mean; its largest
    |component| over the recording (on a 4-px lattice) is nonrigid_shift_px."""
    sample_count = parameters.frame_count * parameters.plane_count
    gy, gx = len(grid.knots_y), len(grid.knots_x)
    values = _smooth_noise(rng, (2, gy, gx, sample_count), 0.5 * parameters.frame_rate_hz).transpose(3, 0, 1, 2)
    row_mean = _interpolation_weights(np.arange(parameters.frame_height), grid.knots_y, grid.sigma_px[0]).mean(axis=0)
    column_mean = _interpolation_weights(np.arange(parameters.frame_width), grid.knots_x, grid.sigma_px[1]).mean(axis=0)
    values -= np.einsum("a,ncab,b->nc", row_mean, values, column_mean)[:, :, None, None]
    lattice_rows, lattice_columns = _lattice(parameters.frame_height), _lattice(parameters.frame_width)
    peak = max(float(np.abs(_evaluate_knots(values[start : start + 64], grid, lattice_rows, lattice_columns)).max()) for start in range(0, sample_count, 64))
    values *= parameters.nonrigid_shift_px / (peak if peak > 0 else 1.0)
    return values.reshape(parameters.frame_count, parameters.plane_count, 2, gy, gx).transpose(1, 0, 2, 3, 4).astype(np.float32)


def _plant_bad_frames(rng: np.random.Generator, parameters: SimulationParameters, rigid_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


# ----------------------------------------------------------------------------------------------
# Ground truth assembly
# ----------------------------------------------------------------------------------------------


def _session_truth(
    parameters: SimulationParameters,
    atlas: _Atlas,
    present: list[np.ndarray],
    deformation: _Deformation | None,
) -> GroundTruth:
    """Truth of one recording: the atlas sources ``present[plane]`` seen through ``deformation``."""
    height, width = parameters.frame_height, parameters.frame_width
    pad = parameters.scene_padding_px
    padded_rows, padded_columns = np.arange(-pad, height + pad, dtype=np.float64), np.arange(-pad, width + pad, dtype=np.float64)
    if deformation is not None:
        field = deformation.dense(padded_rows, padded_columns)
        coordinates = np.stack(np.meshgrid(padded_rows, padded_columns, indexing="ij")) - field + atlas.margin_px
        session_deformation = field[:, pad : pad + height, pad : pad + width].astype(np.float32)
    else:
        coordinates = None
        session_deformation = np.zeros((2, height, width), np.float32)

    def to_session(image: np.ndarray) -> np.ndarray:
        """Atlas canvas image → this session's padded canvas (warped by the deformation)."""
        if coordinates is not None:
            return ndimage.map_coordinates(image, coordinates, order=3, mode="nearest", output=np.float32)
        crop = atlas.margin_px - pad
        return np.array(image[crop : crop + height + 2 * pad, crop : crop + width + 2 * pad], np.float32)

    blur = 0.25 * parameters.cell_diameter_px if parameters.one_photon else 0.0
    pool = atlas.brightness.shape[1]
    footprints: list[_Footprint] = []
    columns: dict[str, list[np.ndarray]] = {name: [] for name in ("plane", "is_cell", "baseline", "red", "identity", "spikes", "calcium")}
    neuropil_images, neuropil_activity, backgrounds = [], [], []
    bank = None
    if parameters.activity_bank_path is not None:
        bank = load_activity_bank(parameters.activity_bank_path, frame_rate_hz=parameters.plane_frame_rate_hz, segment_frames=parameters.frame_count)
    for plane in range(parameters.plane_count):
        rng = np.random.default_rng([parameters.seed, _ACTIVITY_STREAM, plane])
        modes = np.stack([to_session(mode) for mode in atlas.neuropil_modes[plane]])
        backgrounds.append(np.stack([to_session(image) for image in atlas.backgrounds[plane]]))
        kept = []
        for source in present[plane]:
            footprint = _render_footprint(atlas.shapes[plane][source], frame_shape=(height, width), deformation=deformation, blur_px=blur)
            if footprint is not None:
                footprints.append(footprint)
                kept.append(int(source))
        kept_array = np.array(kept, np.int64)
        count = len(kept_array)
        session_brightness = np.exp(rng.normal(0, 0.1, count))
        activity = _simulate_activity(rng, parameters, count)
        if bank is not None:
            activity = _bank_activity(np.random.default_rng([parameters.seed, _BANK_STREAM, plane]), activity, bank)
        centroids = np.array([footprint.centroid for footprint in footprints[len(footprints) - count :]]).reshape(count, 2)
        mode_share = modes[:, np.round(centroids[:, 0]).astype(int) + pad, np.round(centroids[:, 1]).astype(int) + pad]
        mode_share = mode_share / np.maximum(mode_share.sum(axis=0, keepdims=True), 1e-12)
        neuropil_activity.append(_neuropil_activity(rng, parameters, mode_share, activity.calcium))
        neuropil_images.append(modes)
        columns["plane"].append(np.full(count, plane, np.int32))
        columns["is_cell"].append(kept_array < atlas.cell_pool)
        columns["baseline"].append(parameters.baseline_photons * atlas.brightness[plane, kept_array] * session_brightness)
        columns["red"].append(atlas.red_photons[plane, kept_array])
        columns["identity"].append(plane * pool + kept_array)
        columns["spikes"].append(activity.spikes)
        columns["calcium"].append(activity.calcium)

    motion_rng = np.random.default_rng([parameters.seed, _MOTION_STREAM])
    rigid_offsets = _simulate_rigid_motion(motion_rng, parameters)
    knot_grid = _knot_grid(height, width, parameters.nonrigid_grid_spacing_px)
    nonrigid_grid = _simulate_nonrigid_motion(motion_rng, parameters, knot_grid)
    bad, blank = _plant_bad_frames(motion_rng, parameters, rigid_offsets)
    frame_index = np.arange(parameters.frame_count)
    bleaching = np.exp(math.log(1.0 - parameters.bleaching_fraction) * frame_index / max(parameters.frame_count - 1, 1))
    illumination = np.ones((height, width), np.float32)
    if parameters.one_photon:
        yy, xx = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
        illumination = (1.0 - 0.35 * (yy**2 + xx**2) / 2.0).astype(np.float32)

    ragged = RaggedRois.from_masks([(fp.ypix, fp.xpix, fp.weights) for fp in footprints])
    spikes = np.concatenate(columns["spikes"]) if footprints else np.zeros((0, parameters.frame_count), np.float32)
    calcium = np.concatenate(columns["calcium"]) if footprints else np.zeros((0, parameters.frame_count), np.float32)
    red = np.concatenate(columns["red"]).astype(np.float32)
    return GroundTruth(
        parameters_json=parameters.model_dump_json(),
        footprint_pixel_offsets=ragged.pixel_offsets,
        footprint_ypix=ragged.ypix,
        footprint_xpix=ragged.xpix,
        footprint_weights=ragged.lam,
        source_baseline_photons=np.concatenate(columns["baseline"]).astype(np.float32),
        red_photons=red,
        plane_index=np.concatenate(columns["plane"]),
        is_cell=np.concatenate(columns["is_cell"]).astype(bool),
        is_red=red > 0,
        centroids=np.array([fp.centroid for fp in footprints], np.float32).reshape(-1, 2),
        cell_identity=np.concatenate(columns["identity"]).astype(np.int64),
        spikes=spikes,
        calcium=calcium,
        active=spikes.sum(axis=1) > 0,
        neuropil_images=np.array(neuropil_images, np.float32),
        neuropil_activity=np.array(neuropil_activity, np.float32),
        background_images=np.array(backgrounds, np.float32),
        sensor_background=atlas.sensor_backgrounds,
        illumination=illumination,
        bleaching=np.tile(bleaching.astype(np.float32), (parameters.plane_count, 1)),
        rigid_offsets=rigid_offsets,
        nonrigid_grid=nonrigid_grid,
        nonrigid_knots_y=knot_grid.knots_y,
        nonrigid_knots_x=knot_grid.knots_x,
        nonrigid_sigma_px=knot_grid.sigma_px,
        bad_frames=bad,
        blank_frames=blank,
        session_deformation=session_deformation,
        bidirectional_offset_px=int(parameters.bidirectional_offset_px),
        tau_s=float(parameters.tau_s),
        frame_rate_hz=float(parameters.frame_rate_hz),
        scene_padding_px=int(pad),
    )


def generate_ground_truth(parameters: SimulationParameters) -> GroundTruth:
    """Plant sources, activity, motion and artefacts of one recording (no pixels rendered)."""
    atlas = _build_atlas(parameters, seed=parameters.seed, cell_pool=parameters.cell_count, non_cell_pool=parameters.non_cell_count, extra_margin_px=0)
    present = [np.arange(parameters.cell_count + parameters.non_cell_count)] * parameters.plane_count
    return _session_truth(parameters, atlas, present, None)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


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
        grid = _KnotGrid(truth.nonrigid_knots_y, truth.nonrigid_knots_x, truth.nonrigid_sigma_px)
        offset = truth.bidirectional_offset_px
        self.row_weights = _interpolation_weights(np.arange(height), grid.knots_y, grid.sigma_px[0])
        self.column_weights = _interpolation_weights(np.arange(width), grid.knots_x, grid.sigma_px[1])
        self.shifted_column_weights = _interpolation_weights(np.arange(width) + offset, grid.knots_x, grid.sigma_px[1])
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
                    rng = np.random.default_rng([parameters.seed, _NOISE_STREAM, self.plane, channel, int(frame)])
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


def _check_truth(parameters: SimulationParameters, truth: GroundTruth) -> None:
    expected = (parameters.plane_count, parameters.frame_count, 2)
    if truth.rigid_offsets.shape != expected or truth.illumination.shape != (parameters.frame_height, parameters.frame_width):
        raise ValueError(f"ground truth (offsets {truth.rigid_offsets.shape}, frame {truth.illumination.shape}) does not match the parameters")
    if truth.calcium.shape[1] != parameters.frame_count or truth.background_images.shape[1] != parameters.channel_count or truth.scene_padding_px != parameters.scene_padding_px:
        raise ValueError("ground truth channels or scene padding do not match the parameters")


def _volume_chunks(parameters: SimulationParameters, truth: GroundTruth) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first frame, (frames, P, C, H, W) pages in the output dtype) chunk by chunk."""
    renderers = [_PlaneRenderer(parameters, truth, plane) for plane in range(parameters.plane_count)]
    step = _chunk_frame_count(parameters)
    for start in range(0, parameters.frame_count, step):
        frames = np.arange(start, min(start + step, parameters.frame_count))
        planes = [to_output_dtype(renderer.render(frames, motion=True, noise=True), parameters.dtype) for renderer in renderers]
        yield start, np.stack(planes).transpose(2, 0, 1, 3, 4)


def simulate_recording(parameters: SimulationParameters, *, truth: GroundTruth | None = None) -> SimulatedRecording:
    """Simulate a recording in memory (small sizes: tests of other stages).

    Returns
    -------
    SimulatedRecording with ``movie`` (P, C, T, H, W) in ``parameters.dtype``; pages are the
    same bytes ``write_recording`` writes.
    """
    truth = generate_ground_truth(parameters) if truth is None else truth
    _check_truth(parameters, truth)
    movie = np.empty((parameters.plane_count, parameters.channel_count, parameters.frame_count, parameters.frame_height, parameters.frame_width), parameters.dtype)
    for start, volumes in _volume_chunks(parameters, truth):
        movie[:, :, start : start + len(volumes)] = volumes.transpose(1, 2, 0, 3, 4)
    return SimulatedRecording(movie, truth)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def file_page_counts(total_pages: int, *, file_count: int, cycle_pages: int) -> np.ndarray:
    """Pages per TIFF file: unequal (growing ~25 % per file) and, when ``cycle_pages`` > 1, no
    file boundary falls on a whole plane×channel cycle.

    Returns
    -------
    (k,) int64 page counts summing to ``total_pages`` (k = ``file_count``, fewer only when there
    are too few pages).
    """
    weights = 1.0 + 0.25 * np.arange(file_count)
    boundaries = np.floor(total_pages * np.cumsum(weights)[:-1] / weights.sum()).astype(np.int64)
    if cycle_pages > 1:
        boundaries += (boundaries % cycle_pages == 0) & (boundaries + 1 < total_pages)
    boundaries = np.unique(boundaries[(boundaries > 0) & (boundaries < total_pages)])
    return np.diff(np.concatenate([[0], boundaries, [total_pages]])).astype(np.int64)


def acquisition_parameters(parameters: SimulationParameters) -> dict[str, object]:
    """The ``cindra_parameters.json`` content of a simulated recording."""
    return {
        "frame_rate": parameters.frame_rate_hz,
        "plane_number": parameters.plane_count,
        "channel_number": parameters.channel_count,
        "roi_number": 1,
        "roi_lines": [],
        "roi_x_coordinates": [],
        "roi_y_coordinates": [],
    }


SIMULATED_TIFF_PATTERN = "recording_[0-9][0-9][0-9].tif"
"""Names of the TIFF files `write_recording` writes."""


def prepare_output_directory(directory: Path | str, *, overwrite: bool) -> Path:
    """Make ``directory`` ready for `write_recording`: new or empty, or (``overwrite``) holding a previous simulation.

    A folder that holds anything is refused unless ``overwrite``; then the previous simulation's
    files (``recording_NNN.tif``, ``cindra_parameters.json``, ``ground_truth.npz``) are removed first,
    so no file of it survives next to the new ones (a new recording with fewer files or another frame
    size would otherwise be ingested together with the old files). Other TIFF files are never
    removed: a folder holding any is refused. Other files are left alone. Returns ``directory``.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: is a file, not a folder; give a folder to write the simulated recording into")
    entries = sorted(directory.iterdir()) if directory.is_dir() else []
    if not entries:
        return directory
    names = ", ".join(entry.name for entry in entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    if not overwrite:
        raise OutputError(f"{directory}: not empty ({names}); simulate into a new or empty folder, or pass --overwrite to replace the simulated recording there")
    ours = {*directory.glob(SIMULATED_TIFF_PATTERN), directory / ACQUISITION_FILE_NAME, directory / GROUND_TRUTH_FILE_NAME}
    foreign = [entry.name for entry in entries if entry.suffix.lower() in (".tif", ".tiff") and entry not in ours]
    if foreign:
        raise OutputError(f"{directory}: holds TIFF files the simulator did not write ({', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}), which would be read with the simulated ones; simulate into another folder")
    for path in ours:
        path.unlink(missing_ok=True)
    return directory


def write_recording(parameters: SimulationParameters, directory: Path | str, *, truth: GroundTruth | None = None) -> Path:
    """Render and write a recording chunk by chunk (memory does not grow with frame_count).

    Writes ``recording_000.tif``, … (pages p0c0, p0c1, p1c0, … per volume, the cycle continuing
    across files; page counts from ``file_page_counts``), ``cindra_parameters.json`` and
    ``ground_truth.npz``. Returns ``directory``.
    """
    import tifffile

    directory = Path(directory)
    truth = generate_ground_truth(parameters) if truth is None else truth
    _check_truth(parameters, truth)
    directory.mkdir(parents=True, exist_ok=True)
    page_bytes = parameters.frame_height * parameters.frame_width * np.dtype(parameters.dtype).itemsize
    cycle = parameters.plane_count * parameters.channel_count
    counts = file_page_counts(parameters.frame_count * cycle, file_count=parameters.file_count, cycle_pages=cycle)
    file_index, written_in_file, writer = 0, 0, None
    try:
        for _, volumes in _volume_chunks(parameters, truth):
            pages = volumes.reshape(-1, parameters.frame_height, parameters.frame_width)
            position = 0
            while position < len(pages):
                if writer is None:
                    path = directory / f"recording_{file_index:03d}.tif"
                    writer = tifffile.TiffWriter(path, bigtiff=bool(counts[file_index] * page_bytes > 2**31))
                take = min(len(pages) - position, int(counts[file_index]) - written_in_file)
                writer.write(pages[position : position + take], contiguous=True, photometric="minisblack", metadata=None)
                position += take
                written_in_file += take
                if written_in_file == counts[file_index]:
                    writer.close()
                    writer, file_index, written_in_file = None, file_index + 1, 0
    finally:
        if writer is not None:
            writer.close()
    (directory / ACQUISITION_FILE_NAME).write_text(json.dumps(acquisition_parameters(parameters), indent=2))
    save_ground_truth(truth, directory / GROUND_TRUTH_FILE_NAME)
    return directory


_SCALAR_TYPES = {"parameters_json": str, "bidirectional_offset_px": int, "tau_s": float, "frame_rate_hz": float, "scene_padding_px": int}


def save_ground_truth(truth: GroundTruth, path: Path | str) -> Path:
    """Write the truth to ``path`` (``np.savez_compressed``, no pickles); keys = the field names."""
    path = Path(path)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **{name: np.asarray(value) for name, value in truth._asdict().items()})
    return path


def load_ground_truth(path: Path | str) -> GroundTruth:
    """Read a truth written by ``save_ground_truth``."""
    with np.load(Path(path), allow_pickle=False) as archive:
        values = {name: (_SCALAR_TYPES[name](archive[name][()]) if name in _SCALAR_TYPES else archive[name]) for name in GroundTruth._fields}
    return GroundTruth(**values)


# ----------------------------------------------------------------------------------------------
# Sessions
# ----------------------------------------------------------------------------------------------


def _turnover_sets(rng: np.random.Generator, count: int, *, session_count: int, turnover_count: int, first_index: int) -> list[np.ndarray]:
    """Per session, the atlas indices present: each session replaces ``turnover_count`` of the previous session's."""
    current = np.arange(first_index, first_index + count)
    next_new = first_index + count
    sessions = [current]
    for _ in range(1, session_count):
        dropped = rng.choice(current, turnover_count, replace=False)
        current = np.sort(np.concatenate([np.setdiff1d(current, dropped), np.arange(next_new, next_new + turnover_count)]))
        next_new += turnover_count
        sessions.append(current)
    return sessions


def simulate_sessions(
    parameters: SimulationParameters,
    *,
    session_count: int = 4,
    deformation_px: float = 4.0,
    turnover_fraction: float = 0.2,
    deformation_spacing_px: float = 96.0,
    seed: int | None = None,
) -> list[SimulatedSession]:
    """Several sessions of one field of view.

    Each session sees the shared sources through its own smooth static deformation (largest
    |component| over the frame = ``deformation_px``, a translation included; stored as
    ``session_deformation``) and has its own
    activity, motion and noise (its parameters carry a derived seed). Between consecutive sessions
    ``round(turnover_fraction · count)`` somata (and as many non-cells) disappear and as many new
    ones appear; ``cell_identity`` names each source across sessions.
    """
    if session_count < 1 or not 0 <= turnover_fraction <= 1 or deformation_px < 0:
        raise ValueError("need session_count ≥ 1, 0 ≤ turnover_fraction ≤ 1 and deformation_px ≥ 0")
    seed = parameters.seed if seed is None else seed
    cell_turnover = int(round(turnover_fraction * parameters.cell_count))
    non_cell_turnover = int(round(turnover_fraction * parameters.non_cell_count))
    cell_pool = parameters.cell_count + (session_count - 1) * cell_turnover
    non_cell_pool = parameters.non_cell_count + (session_count - 1) * non_cell_turnover
    extra_margin = int(math.ceil(deformation_px)) + 2
    atlas = _build_atlas(parameters, seed=seed, cell_pool=cell_pool, non_cell_pool=non_cell_pool, extra_margin_px=extra_margin)
    rng = np.random.default_rng([seed, _SESSION_STREAM])
    per_plane = []
    for _ in range(parameters.plane_count):
        cells = _turnover_sets(rng, parameters.cell_count, session_count=session_count, turnover_count=cell_turnover, first_index=0)
        non_cells = _turnover_sets(rng, parameters.non_cell_count, session_count=session_count, turnover_count=non_cell_turnover, first_index=cell_pool)
        per_plane.append([np.concatenate([c, n]) for c, n in zip(cells, non_cells)])
    grid = _knot_grid(parameters.frame_height, parameters.frame_width, deformation_spacing_px)
    lattice_rows, lattice_columns = _lattice(parameters.frame_height), _lattice(parameters.frame_width)
    sessions = []
    for session in range(session_count):
        values = rng.standard_normal((2, len(grid.knots_y), len(grid.knots_x)))
        values *= deformation_px / max(float(np.abs(_evaluate_knots(values, grid, lattice_rows, lattice_columns)).max()), 1e-12)
        session_seed = int(np.random.SeedSequence([seed, session]).generate_state(1)[0])
        session_parameters = SimulationParameters.model_validate({**parameters.model_dump(), "seed": session_seed})
        deformation = _Deformation(grid, values, float(deformation_px))
        present = [per_plane[plane][session] for plane in range(parameters.plane_count)]
        sessions.append(SimulatedSession(session_parameters, _session_truth(session_parameters, atlas, present, deformation)))
    return sessions


def write_sessions(parameters: SimulationParameters, directory: Path | str, **session_options: float | int | None) -> list[Path]:
    """``simulate_sessions`` then ``write_recording`` of each into ``directory/session_000``, …"""
    directory = Path(directory)
    return [
        write_recording(session.parameters, directory / f"session_{index:03d}", truth=session.truth)
        for index, session in enumerate(simulate_sessions(parameters, **session_options))  # type: ignore[arg-type]
    ]
