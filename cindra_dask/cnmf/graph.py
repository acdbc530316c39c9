"""Plan of CNMF over a plane: patches as tasks, components merged on the client, the activity refitted
over the whole field from streamed statistics, CaImAn's evaluation; then the accepted components are
written as the plane's ROIs, as sparse detection writes them.

Chunking: one task per patch holds that patch's frames (T × (2·rf)² values; CaImAn holds the same);
the field-wide refit and the evaluation stream the registered frames by their Zarr chunks, one
task per chunk returning (K, t) projections or per-component sums of a few frames, so no task holds
the field's movie.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Generator, NamedTuple

import numpy as np
from scipy.sparse import csr_matrix

from cindra_dask.chunking import chunk_starts, patch_starts
from cindra_dask.cnmf.components import embed_footprints, field_background, footprint_masks, significant_frame_sums, stack_rows
from cindra_dask.cnmf.evaluation import accepted_components, event_exceptionality_snr, significant_frames, spatial_consistency
from cindra_dask.cnmf.merging import merge_components
from cindra_dask.cnmf.patch import fit_patch
from cindra_dask.cnmf.updates import project_frames, unexplained_traces, update_temporal
from cindra_dask.runner.plans import Compute, Request

if TYPE_CHECKING:
    from cindra_dask.config import SourceExtractionSettings


class FieldComponents(NamedTuple):
    """CNMF result over a (T, h, w) field.

    Attributes
    ----------
    spatial : (K, h·w) float64 CSR footprints (unit L2 norm after merging).
    temporal : (K, T) float64 non-negative activity refitted over the field.
    raw_traces : (K, T) float64 activity plus each component's share of the residual (C + YrA).
    background_spatial : (nb, h·w) float64; background_temporal : (nb, T) float64.
    snr : (K,) event-exceptionality SNR of the raw traces.
    r_values : (K,) spatial consistency.
    accepted : (K,) bool CaImAn's acceptance.
    patch_count : patches fitted; merged_group_count : groups merged across and within patches.
    """

    spatial: csr_matrix
    temporal: np.ndarray
    raw_traces: np.ndarray
    background_spatial: np.ndarray
    background_temporal: np.ndarray
    snr: np.ndarray
    r_values: np.ndarray
    accepted: np.ndarray
    patch_count: int
    merged_group_count: int


def _frame_blocks(frames: Any) -> list[tuple[int, Any]]:
    """(first frame, delayed block) of every time chunk of a (T, h, w) dask array with one spatial chunk."""
    if len(frames.chunks[1]) != 1 or len(frames.chunks[2]) != 1:
        frames = frames.rechunk({1: -1, 2: -1})
    return list(zip(chunk_starts(frames.chunks[0]), frames.to_delayed().ravel()))


def field_components(frames: Any, *, settings: SourceExtractionSettings, event_frames: int, label: str) -> Generator[Request, Any, FieldComponents]:
    """CNMF of a (T, h, w) field of registered frames (a dask array chunked along time).

    Yields the runner's `Compute` requests (patches; the field-wide projections; the evaluation sums)
    and returns the `FieldComponents`. ``event_frames`` is the SNR's run length ⌈fr · decay time⌉.
    """
    import dask

    frame_count, height, width = frames.shape
    patch_px = 2 * settings.rf
    origins = [(y, x) for y in patch_starts(length_px=height, patch_px=patch_px, overlap_px=min(settings.stride, patch_px - 1))
               for x in patch_starts(length_px=width, patch_px=patch_px, overlap_px=min(settings.stride, patch_px - 1))]
    options = settings.patch_fit_options()
    fits = [dask.delayed(fit_patch, pure=True)(frames[:, y : y + patch_px, x : x + patch_px], **options) for y, x in origins]
    patches = yield Compute(fits, f"CNMF patches ({label})")

    shape = (height, width)
    spatial = stack_rows([embed_footprints(patch.spatial, origin_px=origin, frame_shape=shape) for patch, origin in zip(patches, origins)])
    raw = np.vstack([patch.raw_traces for patch in patches]).astype(np.float64)
    merged = merge_components(spatial=spatial, temporal=raw, correlation_threshold=settings.merge_thr)
    background_count = settings.nb
    if background_count:
        background_spatial, background_temporal = field_background(
            [patch.background_spatial for patch in patches], [patch.background_temporal for patch in patches], origins_px=origins, frame_shape=shape
        )
    else:
        background_spatial, background_temporal = np.zeros((0, height * width)), np.zeros((0, frame_count))
    stacked = stack_rows([merged.spatial, csr_matrix(background_spatial)])
    shared = dask.delayed(stacked, pure=True)
    blocks = _frame_blocks(frames)
    projections = yield Compute([dask.delayed(project_frames, pure=True)(block, shared) for _, block in blocks], f"CNMF field-wide projections ({label})")
    projection = np.hstack(projections)
    gram = (stacked @ stacked.T).toarray()
    start = np.vstack([np.maximum(merged.temporal, 0.0), background_temporal])
    temporal = update_temporal(data_projection=projection, spatial_gram=gram, temporal=start, iterations=settings.maxIter)
    traces = unexplained_traces(data_projection=projection, spatial_gram=gram, temporal=temporal)
    component_count = merged.spatial.shape[0]

    snr = event_exceptionality_snr(traces[:component_count], event_frames=event_frames)
    chosen = significant_frames(spatial=merged.spatial, temporal=temporal[:component_count])
    pixel_lists = [merged.spatial.indices[merged.spatial.indptr[row] : merged.spatial.indptr[row + 1]] for row in range(component_count)]
    sums = yield Compute(
        [dask.delayed(significant_frame_sums, pure=True)(block, first_frame=first, frame_lists=chosen, pixel_lists=pixel_lists) for first, block in blocks],
        f"CNMF evaluation ({label})",
    )
    r_values = np.zeros(component_count)
    for row in range(component_count):
        mean_frame = np.zeros(height * width)
        mean_frame[pixel_lists[row]] = sum(chunk[row] for chunk in sums) / max(len(chosen[row]), 1)
        footprint = merged.spatial[row].toarray().ravel()
        r_values[row] = spatial_consistency(footprint=footprint, mean_frame=mean_frame)
    accepted = accepted_components(snr, r_values, **settings.acceptance_options())
    return FieldComponents(
        merged.spatial,
        temporal[:component_count],
        traces[:component_count],
        background_spatial,
        temporal[component_count:],
        snr,
        r_values,
        accepted,
        len(origins),
        merged.merged_group_count,
    )


def event_run_frames(*, decay_time_s: float, frame_rate_hz: float) -> int:
    """CaImAn's SNR run length N = ⌈fr · decay_time⌉ (≥ 1)."""
    return max(1, math.ceil(frame_rate_hz * decay_time_s))


def accepted_masks(components: FieldComponents, *, frame_shape: tuple[int, int], threshold_fraction: float) -> tuple[Any, np.ndarray]:
    """ROI masks (in field coordinates) of the accepted components and their (n,) int64 component indices."""
    kept = np.flatnonzero(components.accepted)
    return footprint_masks(components.spatial[kept], frame_shape=frame_shape, threshold_fraction=threshold_fraction), kept
