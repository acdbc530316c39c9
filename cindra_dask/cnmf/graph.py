"""Plan of the CNMF step of a plane: patches as tasks, components merged on the client, the activity
refitted over the whole field from streamed statistics, CaImAn's evaluation; then every component is
written as one of the plane's ROIs, as sparse detection writes them (so extraction, deconvolution,
combine, export and tracking run unchanged), most probable first, and every component with its
scores, cell probability, traces and the background under ``plane_k/cnmf/``. The evaluation, not
the classifier, labels the ROIs: extraction's ``cell_classification`` is [accepted, probability].

With ``method: cnmf_e`` the patches are CNMF-E fits (`fit_patch_one_photon`); the field's ring
model takes each pixel's ring weights from the patch whose centre is nearest, and the refit and the
evaluation run on the whitened data (Y − b0)(I − W)ᵀ, computed chunk by chunk, against the
whitened footprints (`whitened_footprints`), so the background never exists as a T × pixels array.

Chunking: one task per patch holds that patch's frames (T × (2·rf)² values; CaImAn holds the same),
read by read tasks of its own from the store (`patch_fits`: no chunk is shared between patches);
the field-wide refit and the evaluation stream the registered frames by their Zarr chunks, one
task per chunk returning (K, t) projections or per-component sums of a few frames, so no task holds
the field's movie. The field's ring weights (P × ~2π·radius entries) enter the graph once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Generator, NamedTuple

import numpy as np
from scipy.sparse import csr_matrix

from cindra_dask.chunking import chunk_starts, patch_starts
from cindra_dask.cnmf.components import embed_footprints, field_background, field_ring_background, footprint_masks, significant_frame_sums, stack_rows
from cindra_dask.cnmf.evaluation import acceptance_margin, acceptance_probability, event_exceptionality_snr, significant_frames, spatial_consistency
from cindra_dask.cnmf.merging import merge_components
from cindra_dask.cnmf.one_photon import RingBackground, subtract_ring_background, whitened_footprints
from cindra_dask.cnmf.patch import fit_patch, fit_patch_one_photon
from cindra_dask.cnmf.updates import project_frames, unexplained_traces, update_temporal
from cindra_dask.detection.anatomy import DetectionSource
from cindra_dask.detection.graph import binned_image_sums, detection_images, read_functional_crop, write_detection_outputs
from cindra_dask.detection.plane import PlaneDetection
from cindra_dask.detection.stats import curate_rois
from cindra_dask.rois import RaggedRois
from cindra_dask.runner.plans import Compute, Request, StepPlan
from cindra_dask.config import SourceExtractionMethod
from cindra_dask.store import CNMF, REGISTERED, frames_path, stage_path

if TYPE_CHECKING:
    from cindra_dask.config import SourceExtractionSettings
    from cindra_dask.runner.context import RecordingContext

NOT_A_PYRAMID_SCALE = -1
"""``rois/footprint`` of a CNMF ROI (sparse detection stores the pyramid scale of its seed there)."""


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
    probability : (K,) float64 cell probability of the acceptance margin (≥ 0.5 exactly when accepted).
    patch_count : patches fitted; merged_group_count : groups merged across and within patches.
    ring : the field's ring-model background (``cnmf_e``; nb = 0 then), or None.
    """

    spatial: csr_matrix
    temporal: np.ndarray
    raw_traces: np.ndarray
    background_spatial: np.ndarray
    background_temporal: np.ndarray
    snr: np.ndarray
    r_values: np.ndarray
    accepted: np.ndarray
    probability: np.ndarray
    patch_count: int
    merged_group_count: int
    ring: RingBackground | None


def _frame_blocks(frames: Any) -> list[tuple[int, Any]]:
    """(first frame, delayed block) of every time chunk of a (T, h, w) dask array with one spatial chunk."""
    if len(frames.chunks[1]) != 1 or len(frames.chunks[2]) != 1:
        frames = frames.rechunk({1: -1, 2: -1})
    return list(zip(chunk_starts(frames.chunks[0]), frames.to_delayed().ravel()))


def movie_frames(movie: Any, *, crop_px: tuple[tuple[int, int], tuple[int, int]], chunk_frames: int, name: str | None) -> Any:
    """The (T, y1 − y0, x1 − x0) crop ((y0, y1), (x0, x1)) of a (T, H, W) array-like movie (a Zarr array) as a dask array of
    ``chunk_frames``-frame chunks; ``name`` keys its read tasks (None: from the movie's token)."""
    import dask.array as da

    (y_start, y_stop), (x_start, x_stop) = crop_px
    return da.from_array(movie, chunks=(chunk_frames, *movie.shape[1:]), name=name)[:, y_start:y_stop, x_start:x_stop]


def patch_fits(movie: Any, *, crop_px: tuple[tuple[int, int], tuple[int, int]], chunk_frames: int, origins_px: list[tuple[int, int]], patch_px: int,
               fit: Any, options: dict[str, Any]) -> list[Any]:
    """Delayed ``fit(patch frames, **options)`` of each patch (origins in crop coordinates), each patch reading its own frames.

    Every patch has read tasks of its own (keys named after the patch), one per chunk, each keeping
    only the patch's region of the chunk it decompresses, so no chunk is shared between patches and
    none outlives the read: the cluster holds the frames of the patches being fitted, never the
    movie, whatever dask fuses (each chunk is decompressed once per patch that covers it in time).
    """
    import dask
    from dask.base import tokenize

    (y_start, y_stop), (x_start, x_stop) = crop_px
    token = tokenize(movie, crop_px, chunk_frames, patch_px)
    fits = []
    for y, x in origins_px:
        region = ((y_start + y, min(y_start + y + patch_px, y_stop)), (x_start + x, min(x_start + x + patch_px, x_stop)))
        frames = movie_frames(movie, crop_px=region, chunk_frames=chunk_frames, name=f"cnmf-patch-{y}-{x}-{token}")
        fits.append(dask.delayed(fit, pure=True)(frames, **options))
    return fits


def field_components(movie: Any, *, crop_px: tuple[tuple[int, int], tuple[int, int]], chunk_frames: int, settings: SourceExtractionSettings, event_frames: int,
                     label: str) -> Generator[Request, Any, FieldComponents]:
    """CNMF of the (T, h, w) field ``crop_px`` ((y0, y1), (x0, x1)) of a (T, H, W) array-like movie of registered frames (a Zarr
    array), read in ``chunk_frames``-frame chunks.

    Yields the runner's `Compute` requests (patches; the field-wide projections; the evaluation sums)
    and returns the `FieldComponents`. ``event_frames`` is the SNR's run length ⌈fr · decay time⌉.
    """
    import dask

    frames = movie_frames(movie, crop_px=crop_px, chunk_frames=chunk_frames, name=None)
    frame_count, height, width = frames.shape
    patch_px = 2 * settings.rf
    origins = [(y, x) for y in patch_starts(length_px=height, patch_px=patch_px, overlap_px=min(settings.stride, patch_px - 1))
               for x in patch_starts(length_px=width, patch_px=patch_px, overlap_px=min(settings.stride, patch_px - 1))]
    one_photon = settings.method is SourceExtractionMethod.CNMF_E
    fit, options = (fit_patch_one_photon, settings.one_photon_patch_options()) if one_photon else (fit_patch, settings.patch_fit_options())
    fits = patch_fits(movie, crop_px=crop_px, chunk_frames=chunk_frames, origins_px=origins, patch_px=patch_px, fit=fit, options=options)
    patches = yield Compute(fits, f"CNMF patches ({label})")

    shape = (height, width)
    spatial = stack_rows([embed_footprints(patch.spatial, origin_px=origin, frame_shape=shape) for patch, origin in zip(patches, origins)])
    raw = np.vstack([patch.raw_traces for patch in patches]).astype(np.float64)
    merged = merge_components(spatial=spatial, temporal=raw, correlation_threshold=settings.merge_thr)
    blocks = _frame_blocks(frames)
    if one_photon:
        ring = field_ring_background([patch.ring for patch in patches], origins_px=origins, patch_shapes=[patch.spatial.shape[1:] for patch in patches], frame_shape=shape)
        shared_ring = dask.delayed(ring, pure=True)
        blocks = [(first, dask.delayed(subtract_ring_background, pure=True)(block, ring=shared_ring, cells=None)) for first, block in blocks]
        background_spatial, background_temporal = np.zeros((0, height * width)), np.zeros((0, frame_count))
        stacked = whitened_footprints(merged.spatial, ring=ring)
    else:
        ring = None
        if settings.nb:
            background_spatial, background_temporal = field_background(
                [patch.background_spatial for patch in patches], [patch.background_temporal for patch in patches], origins_px=origins, frame_shape=shape
            )
        else:
            background_spatial, background_temporal = np.zeros((0, height * width)), np.zeros((0, frame_count))
        stacked = stack_rows([merged.spatial, csr_matrix(background_spatial)])
    shared = dask.delayed(stacked, pure=True)
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
    frame_lists, pixels = dask.delayed(chosen, pure=True), dask.delayed(pixel_lists, pure=True)  # one copy in the graph, not one per chunk task
    sums = yield Compute(
        [dask.delayed(significant_frame_sums, pure=True)(block, first_frame=first, frame_lists=frame_lists, pixel_lists=pixels) for first, block in blocks],
        f"CNMF evaluation ({label})",
    )
    r_values = np.zeros(component_count)
    for row in range(component_count):
        mean_frame = np.zeros(height * width)
        mean_frame[pixel_lists[row]] = sum(chunk[row] for chunk in sums) / max(len(chosen[row]), 1)
        footprint = merged.spatial[row].toarray().ravel()
        r_values[row] = spatial_consistency(footprint=footprint, mean_frame=mean_frame)
    margin = acceptance_margin(snr, r_values, **settings.acceptance_options())
    return FieldComponents(
        merged.spatial,
        temporal[:component_count],
        traces[:component_count],
        background_spatial,
        temporal[component_count:],
        snr,
        r_values,
        margin >= 0,
        acceptance_probability(margin),
        len(origins),
        merged.merged_group_count,
        ring,
    )


def event_run_frames(*, decay_time_s: float, frame_rate_hz: float) -> int:
    """CaImAn's SNR run length N = ⌈fr · decay_time⌉ (≥ 1)."""
    return max(1, math.ceil(frame_rate_hz * decay_time_s))


def component_masks(components: FieldComponents, *, frame_shape: tuple[int, int], threshold_fraction: float) -> tuple[Any, np.ndarray]:
    """ROI masks (in field coordinates) of the components with pixels above the threshold, most probable first (overlap removal
    keeps the earlier of two ROIs), and their (n,) int64 component indices."""
    order = np.argsort(-components.probability, kind="stable")
    masks = footprint_masks(components.spatial[order], frame_shape=frame_shape, threshold_fraction=threshold_fraction)
    nonempty = np.flatnonzero(masks.pixel_counts() > 0)
    return masks.select(nonempty), order[nonempty]


def plan_cnmf_step(context: RecordingContext, *, plane: int) -> StepPlan:
    """Plan of the CNMF step of one plane (``source_extraction.method: cnmf``).

    Reads the functional channel's registered frames inside the registration's valid crop (all
    frames: CNMF models bad frames as CaImAn does) and writes ``plane_k/cnmf/*`` (every component),
    ``plane_k/rois/*`` (every component, most probable first, with sparse detection's statistics and overlap removal)
    and ``plane_k/detection/*`` (the images of the binned good frames, as detection writes them).

    Chunking: see the module docstring; the detection images are the same tree reduction of binned
    chunks as in detection.
    """
    configuration = context.configuration
    settings = configuration.source_extraction
    store = context.store
    crop = read_functional_crop(context, plane=plane, step="CNMF")
    registration, binned, bin_size, channel = crop.registration, crop.binned, crop.bin_size, crop.channel
    (y_start, y_stop), (x_start, x_stop) = registration.valid_y_range, registration.valid_x_range
    height, width = crop.frame_shape
    frame_rate_hz = context.acquisition.plane_frame_rate_hz
    event_frames = event_run_frames(decay_time_s=configuration.main.tau, frame_rate_hz=frame_rate_hz)
    registered = store.array(frames_path(plane, channel, kind=REGISTERED))
    components = yield from field_components(registered, crop_px=((y_start, y_stop), (x_start, x_stop)), chunk_frames=registered.chunks[0], settings=settings,
                                             event_frames=event_frames, label=f"plane {plane}")
    crop_shape = (y_stop - y_start, x_stop - x_start)
    masks, source_component = component_masks(components, frame_shape=crop_shape, threshold_fraction=settings.footprint_threshold)
    rois = RaggedRois(masks.pixel_offsets, (masks.ypix + y_start).astype(np.int32), (masks.xpix + x_start).astype(np.int32), masks.lam)
    diameter_px = int(round(2 * float(np.mean(settings.gSig))))
    curated = curate_rois(rois, frame_shape=(height, width), diameter_px=diameter_px, centroids=None,
                          crop_to_soma=configuration.roi_detection.crop_to_soma, maximum_overlap=configuration.roi_detection.maximum_overlap)
    kept = curated.rois.count
    detection = PlaneDetection(
        rois=curated.rois,
        centroids=curated.centroids,
        footprints=np.full(kept, NOT_A_PYRAMID_SCALE, np.int8),
        statistics=curated.statistics,
        diameter_px=diameter_px,
        binned_frame_count=int(binned.shape[0]),
        exhausted=True,
        detection_source=np.full(kept, DetectionSource.ACTIVITY, np.int8),
    )
    (images,) = yield Compute([detection_images(binned_image_sums(binned), diameter_px, valid_y_range=registration.valid_y_range, valid_x_range=registration.valid_x_range, frame_shape=(height, width))], f"CNMF detection images (plane {plane})")
    write_detection_outputs(store, plane=plane, images=images, detection=detection,
                            attributes={"diameter_px": diameter_px, "bin_size": bin_size, "binned_frame_count": int(binned.shape[0]), "functional_channel": channel, "detection_exhausted": True})
    store.write_array(f"{stage_path(plane, 'rois')}/source_component", source_component[curated.kept_indices].astype(np.int64))
    _write_components(store, plane=plane, components=components, crop=((y_start, y_stop), (x_start, x_stop)), frame_shape=(height, width), event_frames=event_frames)


def _frame_pixels(flat: np.ndarray, *, crop_origin: tuple[int, int], crop_width: int, frame_width: int) -> np.ndarray:
    """(n,) int64 row-major frame indices of row-major pixel indices of a crop whose top-left pixel is ``crop_origin`` (y, x)."""
    rows, columns = np.divmod(np.asarray(flat, np.int64), crop_width)
    return (rows + crop_origin[0]) * frame_width + columns + crop_origin[1]


def _write_components(store: Any, *, plane: int, components: FieldComponents, crop: tuple[tuple[int, int], tuple[int, int]], frame_shape: tuple[int, int], event_frames: int) -> None:
    """Every component's footprint, scores and traces, and the background, under ``plane_k/cnmf/``."""
    (y_start, y_stop), (x_start, x_stop) = crop
    group = stage_path(plane, CNMF)
    everything = footprint_masks(components.spatial, frame_shape=(y_stop - y_start, x_stop - x_start), threshold_fraction=0.0)
    store.write_rois(
        group,
        RaggedRois(everything.pixel_offsets, (everything.ypix + y_start).astype(np.int32), (everything.xpix + x_start).astype(np.int32), everything.lam),
        snr=components.snr.astype(np.float32),
        r_values=components.r_values.astype(np.float32),
        accepted=components.accepted,
        cell_probability=components.probability.astype(np.float32),
    )
    store.write_array(f"{group}/temporal", components.temporal.astype(np.float32))
    store.write_array(f"{group}/raw_traces", components.raw_traces.astype(np.float32))
    background = np.zeros((components.background_spatial.shape[0], *frame_shape), np.float32)
    background[:, y_start:y_stop, x_start:x_stop] = components.background_spatial.reshape(-1, y_stop - y_start, x_stop - x_start)
    store.write_array(f"{group}/background_spatial", background)
    store.write_array(f"{group}/background_temporal", components.background_temporal.astype(np.float32))
    if components.ring is not None:
        crop_width = x_stop - x_start
        weights = components.ring.weights.tocsr()
        counts = np.zeros(frame_shape[0] * frame_shape[1], np.int64)
        counts[_frame_pixels(np.arange(weights.shape[0]), crop_origin=(y_start, x_start), crop_width=crop_width, frame_width=frame_shape[1])] = np.diff(weights.indptr)
        store.write_array(f"{group}/ring_weight_offsets", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        store.write_array(f"{group}/ring_weight_pixels", _frame_pixels(weights.indices, crop_origin=(y_start, x_start), crop_width=crop_width, frame_width=frame_shape[1]).astype(np.int32))
        store.write_array(f"{group}/ring_weights", weights.data.astype(np.float32))
        mean = np.zeros(frame_shape, np.float32)
        mean[y_start:y_stop, x_start:x_stop] = components.ring.mean.reshape(y_stop - y_start, crop_width)
        store.write_array(f"{group}/background_mean", mean)
    store.update_group_attributes(group, {"patch_count": components.patch_count, "merged_group_count": components.merged_group_count, "event_frames": event_frames})
