"""CNMF of one patch held in memory: greedy initialisation, HALS refinement, merging, HALS again.

The patch graph runs this on each (overlapping) patch of the field, on the registered frames of
that patch; the components of all patches are then merged and refitted over the whole field by
the streamed updates (`cindra_dask.cnmf.updates`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cindra_dask.cnmf.initialization import greedy_components
from cindra_dask.cnmf.merging import merge_components
from cindra_dask.cnmf.updates import footprint_support, project_frames, unexplained_traces, update_spatial, update_temporal


class PatchComponents(NamedTuple):
    """CNMF result of one (T, h, w) patch.

    Attributes
    ----------
    spatial : (K, h, w) float32 non-negative footprints (unit L2 norm).
    temporal : (K, T) float32 activity (data units × footprint norm).
    raw_traces : (K, T) float32 activity plus each component's share of the residual (CaImAn's C + YrA).
    background_spatial : (nb, h, w) float32; background_temporal : (nb, T) float32.
    merged_group_count : groups merged after the first refinement.
    """

    spatial: np.ndarray
    temporal: np.ndarray
    raw_traces: np.ndarray
    background_spatial: np.ndarray
    background_temporal: np.ndarray
    merged_group_count: int


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
