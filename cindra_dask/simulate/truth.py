"""Ground truth of one recording: the atlas sources present, seen through a session's deformation,
with their activity, motion and artefacts (no pixels rendered)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from cindra_dask.rois import RaggedRois
from cindra_dask.simulate.activity import bank_activity, simulate_activity, simulate_neuropil_activity
from cindra_dask.simulate.bank import load_activity_bank
from cindra_dask.simulate.fields import build_knot_grid
from cindra_dask.simulate.motion import plant_bad_frames, simulate_nonrigid_motion, simulate_rigid_motion
from cindra_dask.simulate.parameters import ACTIVITY_STREAM, BANK_STREAM, MOTION_STREAM, GroundTruth, SimulationParameters
from cindra_dask.simulate.scene import Atlas, Deformation, Footprint, build_atlas, render_footprint


def session_truth(
    parameters: SimulationParameters,
    atlas: Atlas,
    present: list[np.ndarray],
    deformation: Deformation | None,
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
    footprints: list[Footprint] = []
    columns: dict[str, list[np.ndarray]] = {name: [] for name in ("plane", "is_cell", "baseline", "red", "identity", "spikes", "calcium")}
    neuropil_images, neuropil_activity, backgrounds = [], [], []
    bank = None
    if parameters.activity_bank_path is not None:
        bank = load_activity_bank(parameters.activity_bank_path, frame_rate_hz=parameters.plane_frame_rate_hz, segment_frames=parameters.frame_count)
    for plane in range(parameters.plane_count):
        rng = np.random.default_rng([parameters.seed, ACTIVITY_STREAM, plane])
        modes = np.stack([to_session(mode) for mode in atlas.neuropil_modes[plane]])
        backgrounds.append(np.stack([to_session(image) for image in atlas.backgrounds[plane]]))
        kept = []
        for source in present[plane]:
            footprint = render_footprint(atlas.shapes[plane][source], frame_shape=(height, width), deformation=deformation, blur_px=blur)
            if footprint is not None:
                footprints.append(footprint)
                kept.append(int(source))
        kept_array = np.array(kept, np.int64)
        count = len(kept_array)
        session_brightness = np.exp(rng.normal(0, 0.1, count))
        activity = simulate_activity(rng, parameters, count)
        if bank is not None:
            activity = bank_activity(np.random.default_rng([parameters.seed, BANK_STREAM, plane]), activity, bank)
        centroids = np.array([footprint.centroid for footprint in footprints[len(footprints) - count :]]).reshape(count, 2)
        mode_share = modes[:, np.round(centroids[:, 0]).astype(int) + pad, np.round(centroids[:, 1]).astype(int) + pad]
        mode_share = mode_share / np.maximum(mode_share.sum(axis=0, keepdims=True), 1e-12)
        neuropil_activity.append(simulate_neuropil_activity(rng, parameters, mode_share, activity.calcium))
        neuropil_images.append(modes)
        columns["plane"].append(np.full(count, plane, np.int32))
        columns["is_cell"].append(kept_array < atlas.cell_pool)
        columns["baseline"].append(parameters.baseline_photons * atlas.brightness[plane, kept_array] * session_brightness)
        columns["red"].append(atlas.red_photons[plane, kept_array])
        columns["identity"].append(plane * pool + kept_array)
        columns["spikes"].append(activity.spikes)
        columns["calcium"].append(activity.calcium)

    motion_rng = np.random.default_rng([parameters.seed, MOTION_STREAM])
    rigid_offsets = simulate_rigid_motion(motion_rng, parameters)
    knot_grid = build_knot_grid(height, width, parameters.nonrigid_grid_spacing_px)
    nonrigid_grid = simulate_nonrigid_motion(motion_rng, parameters, knot_grid)
    bad, blank = plant_bad_frames(motion_rng, parameters, rigid_offsets)
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
    atlas = build_atlas(parameters, seed=parameters.seed, cell_pool=parameters.cell_count, non_cell_pool=parameters.non_cell_count, extra_margin_px=0)
    present = [np.arange(parameters.cell_count + parameters.non_cell_count)] * parameters.plane_count
    return session_truth(parameters, atlas, present, None)
