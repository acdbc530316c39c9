"""CNMF of one patch held in memory: greedy initialisation, HALS refinement, merging, HALS again
(`fit_patch`, two-photon: low-rank background), or CNMF-E's correlation × PNR initialisation with
the ring-model background re-estimated around the same refinement and merging
(`fit_patch_one_photon`).

The patch graph runs this on each (overlapping) patch of the field, on the registered frames of
that patch; the components of all patches are then merged and refitted over the whole field by
the streamed updates (`cindra_dask.cnmf.updates`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cindra_dask.cnmf.initialization import greedy_components
from cindra_dask.cnmf.merging import merge_components
from cindra_dask.cnmf.one_photon import RingBackground, correlation_pnr_components, ring_model, subtract_ring_background
from cindra_dask.cnmf.updates import footprint_support, project_frames, unexplained_traces, update_spatial, update_temporal


class PatchComponents(NamedTuple):
    """CNMF result of one (T, h, w) patch.

    Attributes
    ----------
    spatial : (K, h, w) float32 non-negative footprints (unit L2 norm).
    temporal : (K, T) float32 activity (data units × footprint norm).
    raw_traces : (K, T) float32 activity plus each component's share of the residual (CaImAn's C + YrA).
    background_spatial : (nb, h, w) float32; background_temporal : (nb, T) float32 (nb = 0 with the ring model).
    merged_group_count : groups merged after the first refinement.
    ring : the ring-model background of the patch (CNMF-E), or None (low-rank background).
    """

    spatial: np.ndarray
    temporal: np.ndarray
    raw_traces: np.ndarray
    background_spatial: np.ndarray
    background_temporal: np.ndarray
    merged_group_count: int
    ring: RingBackground | None = None


def _refine(frames_2d: np.ndarray, spatial: np.ndarray, temporal: np.ndarray, support: np.ndarray, *, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """``rounds`` alternations of the activity and footprint HALS updates (two sweeps each) on (T, P) data."""
    for _ in range(rounds):
        temporal = update_temporal(data_projection=spatial @ frames_2d.T, spatial_gram=spatial @ spatial.T, temporal=temporal, iterations=2)
        spatial = update_spatial(data_correlation=temporal @ frames_2d, temporal_gram=temporal @ temporal.T, spatial=spatial, support=support, iterations=2)
    return spatial, temporal


def _normalised(spatial: np.ndarray, temporal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Footprints scaled to unit L2 norm, activity scaled inversely (the product unchanged); empty footprints dropped."""
    norms = np.linalg.norm(spatial, axis=1)
    kept = norms > 0
    return spatial[kept] / norms[kept, None], temporal[kept] * norms[kept, None]


def fit_patch(
    frames: np.ndarray,
    *,
    component_count: int,
    gaussian_sigma_px: tuple[float, float],
    gaussian_size_px: tuple[int, int],
    background_count: int,
    merge_threshold: float,
    refinement_rounds: int,
    support_dilation_px: int,
    initialization_iterations: int,
) -> PatchComponents:
    """CNMF of one patch.

    Parameters
    ----------
    frames : (T, h, w) registered frames of the patch.
    component_count, gaussian_sigma_px, gaussian_size_px, background_count, initialization_iterations :
        see `cindra_dask.cnmf.initialization.greedy_components` (``K``, ``gSig``, ``gSiz``, ``nb``, ``nIter``).
    merge_threshold : activity correlation above which overlapping components merge (``merge_thr``).
    refinement_rounds : HALS alternations before and after merging (CaImAn's ``maxIter`` of ``hals``).
    support_dilation_px : box by which a footprint may grow per refinement (CaImAn's ``bSiz``).
    """
    frame_count, height, width = frames.shape
    frames_2d = np.asarray(frames, np.float64).reshape(frame_count, -1)
    initial = greedy_components(
        frames,
        component_count=component_count,
        gaussian_sigma_px=gaussian_sigma_px,
        gaussian_size_px=gaussian_size_px,
        refinement_iterations=initialization_iterations,
        background_count=background_count,
    )
    cell_count = initial.temporal.shape[0]
    spatial = np.vstack([initial.spatial.reshape(cell_count, -1), initial.background_spatial.reshape(background_count, -1)]).astype(np.float64)
    temporal = np.vstack([initial.temporal, initial.background_temporal]).astype(np.float64)

    def support_of(cells: np.ndarray) -> np.ndarray:
        cell_support = footprint_support(cells.reshape(-1, height, width), dilation_px=support_dilation_px).reshape(cells.shape[0], -1)
        return np.vstack([cell_support, np.ones((background_count, height * width), bool)])

    spatial, temporal = _refine(frames_2d, spatial, temporal, support_of(spatial[:cell_count]), rounds=refinement_rounds)
    traces = unexplained_traces(data_projection=spatial @ frames_2d.T, spatial_gram=spatial @ spatial.T, temporal=temporal)
    merged = merge_components(spatial=spatial[:cell_count], temporal=traces[:cell_count], correlation_threshold=merge_threshold)
    if merged.merged_group_count:
        cell_count = merged.spatial.shape[0]
        spatial = np.vstack([merged.spatial.toarray(), spatial[-background_count:] if background_count else np.zeros((0, spatial.shape[1]))])
        temporal = np.vstack([merged.temporal, temporal[-background_count:] if background_count else np.zeros((0, temporal.shape[1]))])
        spatial, temporal = _refine(frames_2d, spatial, temporal, support_of(spatial[:cell_count]), rounds=refinement_rounds)
    cells, activity = _normalised(spatial[:cell_count], temporal[:cell_count])
    stacked = np.vstack([cells, spatial[cell_count:]])
    traces = unexplained_traces(data_projection=project_frames(frames, stacked), spatial_gram=stacked @ stacked.T, temporal=np.vstack([activity, temporal[cell_count:]]))
    return PatchComponents(
        cells.reshape(-1, height, width).astype(np.float32),
        activity.astype(np.float32),
        traces[: cells.shape[0]].astype(np.float32),
        spatial[cell_count:].reshape(background_count, height, width).astype(np.float32),
        temporal[cell_count:].astype(np.float32),
        merged.merged_group_count,
    )


RING_ROUNDS = 2
"""Ring-model estimates in a CNMF-E patch: after the initialisation (then refinement and merging)
and after that refinement (then refinement again; the patch's background), as CaImAn's ``compute_W`` runs twice."""


def fit_patch_one_photon(
    frames: np.ndarray,
    *,
    component_count: int,
    gaussian_sigma_px: tuple[float, float],
    gaussian_size_px: tuple[int, int],
    min_correlation: float,
    min_peak_to_noise: float,
    ring_radius_px: float,
    merge_threshold: float,
    refinement_rounds: int,
    support_dilation_px: int,
) -> PatchComponents:
    """CNMF-E of one patch: `correlation_pnr_components`, then `RING_ROUNDS` times the ring background of
    the data less the cells and HALS refinement of the cells on the data less that background (merging
    after the first); the traces C + YrA on the data less the last background, which is returned.

    Parameters
    ----------
    frames : (T, h, w) registered frames of the patch (memory: T·h·w + (h·w)² values for the ring's covariance).
    component_count, gaussian_sigma_px, gaussian_size_px, min_correlation, min_peak_to_noise :
        see `cindra_dask.cnmf.one_photon.correlation_pnr_components` (``K``, ``gSig``, ``gSiz``, ``min_corr``, ``min_pnr``).
    ring_radius_px : ring radius of the background model, px (``ring_size_factor`` · gSiz).
    merge_threshold, refinement_rounds, support_dilation_px : as `fit_patch` (``merge_thr``, ``maxIter``, ``bSiz``).
    """
    frame_count, height, width = frames.shape
    frames_2d = np.asarray(frames, np.float64).reshape(frame_count, -1)
    initial = correlation_pnr_components(
        frames,
        component_count=component_count,
        gaussian_sigma_px=gaussian_sigma_px,
        gaussian_size_px=gaussian_size_px,
        min_correlation=min_correlation,
        min_peak_to_noise=min_peak_to_noise,
    )
    spatial = initial.spatial.reshape(initial.spatial.shape[0], height * width).astype(np.float64)
    temporal = initial.temporal.astype(np.float64)
    merged_group_count = 0
    for ring_round in range(RING_ROUNDS):
        cells = temporal.T @ spatial
        ring = ring_model(frames_2d - cells, frame_shape=(height, width), radius_px=ring_radius_px)
        signal = subtract_ring_background(frames_2d, ring=ring, cells=cells)
        support = footprint_support(spatial.reshape(-1, height, width), dilation_px=support_dilation_px).reshape(spatial.shape[0], height * width)
        spatial, temporal = _refine(signal, spatial, temporal, support, rounds=refinement_rounds)
        if ring_round == 0 and spatial.shape[0]:
            traces = unexplained_traces(data_projection=spatial @ signal.T, spatial_gram=spatial @ spatial.T, temporal=temporal)
            merged = merge_components(spatial=spatial, temporal=traces, correlation_threshold=merge_threshold)
            merged_group_count = merged.merged_group_count
            if merged_group_count:
                spatial, temporal = merged.spatial.toarray(), np.maximum(merged.temporal, 0.0)
    cells, activity = _normalised(spatial, temporal)
    signal = subtract_ring_background(frames_2d, ring=ring, cells=activity.T @ cells)
    traces = unexplained_traces(data_projection=cells @ signal.T, spatial_gram=cells @ cells.T, temporal=activity)
    return PatchComponents(
        cells.reshape(-1, height, width).astype(np.float32),
        activity.astype(np.float32),
        traces.astype(np.float32),
        np.zeros((0, height, width), np.float32),
        np.zeros((0, frame_count), np.float32),
        merged_group_count,
        ring,
    )
