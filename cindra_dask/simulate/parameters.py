"""What defines a simulated recording (`SimulationParameters`) and the records a simulation returns
(`GroundTruth`, `SimulatedRecording`, `SimulatedSession`); the random streams every part draws from."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cindra_dask.rois import RaggedRois

NEUROPIL_MODE_COUNT = 4
ATLAS_STREAM, ACTIVITY_STREAM, MOTION_STREAM, NOISE_STREAM, SESSION_STREAM, BANK_STREAM = 1, 2, 3, 4, 5, 6
"""Second entry of every generator's seed, ``default_rng([seed, STREAM, ...])``: one stream per part of the simulation."""


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
    dtype: Literal["int16", "uint16", "uint8"] = Field("int16", description="Integer dtype of the pages (values clipped to its range; uint8 for 8-bit miniscope AVIs).")
    photons_per_gray_level: float = Field(1.0, gt=0, le=10_000, description="Photons per output count: pages hold photons / this, rounded (8-bit cameras: tens).")
    seed: int = Field(0, ge=0, description="Seed of every random choice.")
    activity_bank_path: str | None = Field(
        None,
        description="Activity bank file (cindra_dask.simulate.bank; benchmarks/accuracy/fetch_cascade.py builds one from CASCADE): every spiking source gets a real dF/F segment and its real spike train instead of AR(1) calcium; None: the AR(1) model.",
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
    """Everything planted in a simulated recording; see the `cindra_dask.simulate` docstring for shapes and units."""

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
