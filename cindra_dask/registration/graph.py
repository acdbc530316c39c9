"""Graph builder of the registration step: ``plane_k/raw/channel_c`` → ``registered/`` and ``registration/``.

Per plane (cindra §3.2):

1. Reference: ``reference_frame_count`` evenly spaced raw frames of the alignment channel are read in
   parallel and persisted on the workers in chunks; cindra's initial pick runs over those chunks and
   its 8 refinement passes are submitted at once as tasks on them (the runner drives this loop,
   `cindra_dask.runner.reference_image`, with the chunk functions of `cindra_dask.registration.reference`),
   so the reference does not hold one worker for tens of seconds. Only (n, 3) offsets, the (n, n)
   correlation matrix and single images reach the client; the rest of the movie is never read.
2. Plan: one task turns the reference into a `ReferencePlan` (tapers, kernels, spectra, block
   layout). It is a graph node, so each worker receives it once, not once per task.
3. One pass: one task per Zarr chunk of frames reads its raw frames (plus a temporal halo when
   ``temporal_smoothing_sigma`` > 0), estimates rigid + nonrigid offsets, warps the alignment
   channel and moves every other channel by the same offsets, writes the registered chunks (the
   source dtype, rounded and clipped) and returns only its offsets and correlations.
4. On the client (small, (T, ...) arrays): bad frames (cindra's outlier metric + ``bad_frames.npy``),
   the valid crop, and the arrays of ``plane_k/registration/``.
5. PC metrics: a bounded sample of registered good frames, cropped, gathered into one task.

``two_step_registration`` repeats 1–3 with a reference built from the first pass's registered frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np

from cindra_dask.chunking import metrics_sample_frames
from cindra_dask.registration.bad_frames import bad_frame_mask, valid_crop
from cindra_dask.registration.kernels import PlanOptions, ReferencePlan, apply_offsets, build_reference_plan, register_frames, temporal_halo_frames, to_source_dtype
from cindra_dask.registration.metrics import registration_metrics
from cindra_dask.registration.nonrigid import block_layout
from cindra_dask.runner.plans import Compute, ReferenceImage, StepPlan
from cindra_dask.store import RAW, REGISTERED, REGISTRATION, RecordingStore, frames_path, stage_path

if TYPE_CHECKING:
    from cindra_dask.config import SingleRecordingConfiguration
    from cindra_dask.runner.context import RecordingContext

METRICS_SAMPLE_FRAMES = 2000
"""Most registered frames sampled for the PC metrics (cindra samples up to 2 000); fewer where
`cindra_dask.chunking.metrics_sample_frames` bounds the sample's bytes."""
OFFSETS_SIGN = "rigid_offsets[t] = (dy, dx) px: frame t shows the reference moved by +dy rows and +dx columns; registration moved it by (-dy, -dx)"


class ReferenceResult(NamedTuple):
    """What the reference task returns.

    Attributes
    ----------
    reference_image : (H, W) float32.
    bidirectional_offset_px : odd-row offset applied before registering (estimated or the override).
    """

    reference_image: np.ndarray
    bidirectional_offset_px: int


class ChunkOffsets(NamedTuple):
    """Offsets of one chunk (see `cindra_dask.registration.kernels.RegisteredChunk` for shapes)."""

    rigid_offsets: np.ndarray
    rigid_correlations: np.ndarray
    nonrigid_offsets: np.ndarray
    nonrigid_correlations: np.ndarray


class RegistrationOutputs(NamedTuple):
    """Everything written to ``plane_k/registration/`` (arrays) and its attributes."""

    reference_image: np.ndarray
    rigid_offsets: np.ndarray
    rigid_correlations: np.ndarray
    nonrigid_offsets: np.ndarray
    nonrigid_correlations: np.ndarray
    block_centers: np.ndarray
    bad_frames: np.ndarray
    bidirectional_offset_px: int
    valid_y_range: tuple[int, int]
    valid_x_range: tuple[int, int]


def reference_sample_indices(*, frame_count: int, reference_frame_count: int) -> np.ndarray:
    """cindra's evenly spaced reference frames: ``linspace(0, T, 1 + min(n, T))[:-1]`` as int64."""
    count = min(reference_frame_count, frame_count)
    return np.linspace(0, frame_count, 1 + count)[:-1].astype(np.int64)


def metrics_sample_indices(good_frames: np.ndarray, *, frame_shape: tuple[int, int], max_chunk_bytes: int) -> np.ndarray:
    """Evenly spaced good frames for the PC metrics, at most `METRICS_SAMPLE_FRAMES` and
    `metrics_sample_frames` of the (height, width) = ``frame_shape`` valid crop."""
    good = np.flatnonzero(good_frames)
    count = min(len(good), METRICS_SAMPLE_FRAMES, metrics_sample_frames(frame_height=frame_shape[0], frame_width=frame_shape[1], max_chunk_bytes=max_chunk_bytes))
    return good[np.linspace(0, len(good), 1 + count)[:-1].astype(np.int64)] if count else good


def plan_options(configuration: SingleRecordingConfiguration) -> PlanOptions:
    """The registration options (`build_reference_plan`'s, and the reference image's) from the
    configuration's ``registration``, ``one_photon_registration`` and ``nonrigid_registration``."""
    registration, one_photon, nonrigid = configuration.registration, configuration.one_photon_registration, configuration.nonrigid_registration
    return PlanOptions(
        maximum_offset_fraction=registration.maximum_offset_fraction,
        spatial_smoothing_sigma_px=registration.spatial_smoothing_sigma,
        temporal_smoothing_sigma_frames=registration.temporal_smoothing_sigma,
        normalize_frames=registration.normalize_frames,
        one_photon=one_photon.enabled,
        one_photon_highpass_window_px=one_photon.spatial_highpass_window,
        one_photon_presmoothing_window_px=one_photon.pre_smoothing_sigma,
        one_photon_edge_taper_px=one_photon.edge_taper_pixels,
        nonrigid=nonrigid.enabled,
        block_size_px=tuple(nonrigid.block_size),
        signal_to_noise_threshold=nonrigid.signal_to_noise_threshold,
        maximum_block_offset_px=nonrigid.maximum_block_offset,
    )


def _plan_task(reference: ReferenceResult, *, options: PlanOptions) -> ReferencePlan:
    """Dask task: the per-worker plan (built once; workers fetch it once)."""
    return build_reference_plan(reference.reference_image, options=options)


def _register_chunk_task(
    plan: ReferencePlan,
    reference: ReferenceResult,
    *,
    raw_arrays: Sequence[Any],
    registered_arrays: Sequence[Any],
    alignment_channel: int,
    frame_start: int,
    frame_stop: int,
    halo_frames: int,
) -> ChunkOffsets:
    """Dask task: register frames [frame_start, frame_stop) of every channel and write them."""
    frame_count = raw_arrays[alignment_channel].shape[0]
    read_start, read_stop = max(0, frame_start - halo_frames), min(frame_count, frame_stop + halo_frames)
    result = register_frames(
        raw_arrays[alignment_channel][read_start:read_stop],
        plan=plan,
        halo_before_frames=frame_start - read_start,
        halo_after_frames=read_stop - frame_stop,
        bidirectional_offset_px=reference.bidirectional_offset_px,
    )
    for channel, (raw, registered) in enumerate(zip(raw_arrays, registered_arrays)):
        if channel == alignment_channel:
            moved = result.registered
        else:
            moved = apply_offsets(
                raw[frame_start:frame_stop],
                rigid_offsets=result.rigid_offsets,
                nonrigid_offsets=result.nonrigid_offsets,
                layout=plan.layout,
                bidirectional_offset_px=reference.bidirectional_offset_px,
            )
        registered[frame_start:frame_stop] = to_source_dtype(moved, registered.dtype)
    return ChunkOffsets(result.rigid_offsets, result.rigid_correlations, result.nonrigid_offsets, result.nonrigid_correlations)


def _gather_offsets(chunks: Sequence[ChunkOffsets]) -> ChunkOffsets:
    """Concatenate per-chunk offsets along time (client side, small)."""
    return ChunkOffsets(*(np.concatenate(parts) for parts in zip(*chunks)))


def registration_graph(
    raw_arrays: Sequence[Any],
    registered_arrays: Sequence[Any],
    *,
    reference: Any,
    configuration: SingleRecordingConfiguration,
    alignment_channel: int,
) -> list[Any]:
    """One delayed `ChunkOffsets` per Zarr chunk of frames; each task writes its registered chunks.

    Parameters
    ----------
    raw_arrays : per channel, (T, H, W) ``zarr.Array`` of raw frames (same chunks).
    registered_arrays : per channel, (T, H, W) ``zarr.Array`` created with the same chunks.
    reference : the `ReferenceResult` (`cindra_dask.runner.reference_image.cluster_reference_image`).
    configuration : supplies the plan options.
    alignment_channel : channel the offsets are estimated on.

    Chunking: one task per Zarr chunk along time, so tasks never share a chunk; with temporal
    smoothing a task also reads ``temporal_halo_frames(...)`` frames on each side (not written).
    """
    import dask

    options = plan_options(configuration)
    plan = dask.delayed(_plan_task, pure=True)(reference, options=options)
    halo_frames = temporal_halo_frames(temporal_smoothing_sigma_frames=options.temporal_smoothing_sigma_frames, nonrigid=options.nonrigid)
    frame_count, chunk_frames = raw_arrays[alignment_channel].shape[0], raw_arrays[alignment_channel].chunks[0]
    return [
        dask.delayed(_register_chunk_task, pure=False)(
            plan,
            reference,
            raw_arrays=raw_arrays,
            registered_arrays=registered_arrays,
            alignment_channel=alignment_channel,
            frame_start=start,
            frame_stop=min(frame_count, start + chunk_frames),
            halo_frames=halo_frames,
        )
        for start in range(0, frame_count, chunk_frames)
    ]


def summarize_registration(
    offsets: ChunkOffsets,
    reference: ReferenceResult,
    *,
    configuration: SingleRecordingConfiguration,
    user_bad_frames: np.ndarray,
) -> RegistrationOutputs:
    """Bad frames, valid crop and block centres from the gathered offsets (client side)."""
    frame_shape = reference.reference_image.shape
    registration, nonrigid = configuration.registration, configuration.nonrigid_registration
    bad = bad_frame_mask(
        rigid_offsets=offsets.rigid_offsets,
        rigid_correlations=offsets.rigid_correlations,
        frame_shape=frame_shape,
        maximum_offset_fraction=registration.maximum_offset_fraction,
        bad_frame_threshold=registration.bad_frame_threshold,
        user_bad_frames=user_bad_frames,
    )
    crop = valid_crop(rigid_offsets=offsets.rigid_offsets, bad_frames=bad, frame_shape=frame_shape)
    centers = block_layout(frame_shape=frame_shape, block_size_px=tuple(nonrigid.block_size)).centers if nonrigid.enabled else np.zeros((0, 2))
    return RegistrationOutputs(
        reference.reference_image,
        *offsets[:2],
        *offsets[2:],
        np.asarray(centers, np.float32),
        bad,
        reference.bidirectional_offset_px,
        crop.y_range,
        crop.x_range,
    )


def metrics_graph(registered: Any, *, outputs: RegistrationOutputs, configuration: SingleRecordingConfiguration) -> Any:
    """Delayed `RegistrationMetrics` of a bounded, evenly spaced sample of registered good frames (cropped).

    Chunking: one task holds the whole sample, `metrics_sample_indices` (at most 2 000 frames and
    `cindra_dask.chunking.METRICS_SAMPLE_CHUNKS` × ``runtime.max_chunk_memory`` of float32 frames).
    """
    import dask

    (y_start, y_stop), (x_start, x_stop) = outputs.valid_y_range, outputs.valid_x_range
    indices = metrics_sample_indices(~outputs.bad_frames, frame_shape=(y_stop - y_start, x_stop - x_start), max_chunk_bytes=configuration.runtime.max_chunk_bytes)
    return dask.delayed(registration_metrics, pure=True)(
        registered[indices, y_start:y_stop, x_start:x_stop],
        plan_options=plan_options(configuration),
        principal_component_count=configuration.registration.registration_metric_principal_components,
        seed=configuration.runtime.seed,
    )


def _write_outputs(store: RecordingStore, *, plane: int, outputs: RegistrationOutputs, alignment_channel: int) -> None:
    """The arrays and attributes of ``plane_k/registration/``."""
    group = stage_path(plane, REGISTRATION)
    for name in ("reference_image", "rigid_offsets", "rigid_correlations", "nonrigid_offsets", "nonrigid_correlations", "block_centers", "bad_frames"):
        values = getattr(outputs, name)
        attributes = {"sign": OFFSETS_SIGN} if name in ("rigid_offsets", "nonrigid_offsets") else None
        store.write_array(f"{group}/{name}", values, attributes=attributes)  # dims: cindra_dask.store.ARRAY_DIMENSIONS
    store.update_group_attributes(
        group,
        {
            "valid_y_range": list(outputs.valid_y_range),
            "valid_x_range": list(outputs.valid_x_range),
            "alignment_channel": alignment_channel,
            "bidirectional_offset_px": outputs.bidirectional_offset_px,
            "bad_frame_count": int(outputs.bad_frames.sum()),
            "offsets_sign": OFFSETS_SIGN,
        }
    )


def _write_metrics(store: RecordingStore, *, plane: int, metrics: Any) -> None:
    group = stage_path(plane, REGISTRATION)
    store.write_array(f"{group}/pc_shift_metrics", metrics.shift_metrics, attributes={"columns": ["rigid_px", "nonrigid_mean_px", "nonrigid_max_px"]})
    store.write_array(f"{group}/pc_low_images", metrics.low_images)
    store.write_array(f"{group}/pc_high_images", metrics.high_images)
    store.write_array(f"{group}/pc_projections", metrics.projections)


def plan_registration_step(context: RecordingContext, *, plane: int) -> StepPlan:
    """Plan of the registration step of one plane.

    Reads ``plane_k/raw/channel_c``; writes ``plane_k/registered/channel_c`` (same shape, dtype and
    chunks as raw) and ``plane_k/registration/{reference_image, rigid_offsets, rigid_correlations,
    nonrigid_offsets, nonrigid_correlations, block_centers, bad_frames}`` plus, with
    ``registration_metric_principal_components`` > 0, ``pc_shift_metrics`` (k, 3) px,
    ``pc_low_images``/``pc_high_images`` (k, h, w) and ``pc_projections`` (n, k); attributes
    ``valid_y_range``, ``valid_x_range``, ``alignment_channel``, ``bidirectional_offset_px``.
    Raw frames are only read.

    Chunking: see `cindra_dask.runner.reference_image.cluster_reference_image` and `registration_graph` (one task per raw Zarr chunk).
    """
    import dask.array as da

    configuration, store = context.configuration, context.store
    channel_count = context.plan.channel_number
    alignment_channel = 0 if configuration.registration.align_by_first_channel or channel_count == 1 else 1
    raw_arrays = [store.array(frames_path(plane, channel, kind=RAW)) for channel in range(channel_count)]
    registered_arrays = [
        store.create_array(frames_path(plane, channel, kind=REGISTERED), shape=raw.shape, dtype=raw.dtype, chunks=raw.chunks)
        for channel, raw in enumerate(raw_arrays)
    ]
    frame_count = raw_arrays[alignment_channel].shape[0]
    sample_indices = reference_sample_indices(frame_count=frame_count, reference_frame_count=configuration.registration.reference_frame_count)
    reference = yield ReferenceImage(raw_arrays[alignment_channel], sample_indices, configuration, bidirectional_correction=True)
    passes = 2 if configuration.registration.two_step_registration else 1
    for step in range(passes):
        label = f"registration (plane {plane}{f', pass {step + 1} of {passes}' if passes > 1 else ''})"
        chunk_graphs = registration_graph(raw_arrays, registered_arrays, reference=reference, configuration=configuration, alignment_channel=alignment_channel)
        chunk_offsets = yield Compute(chunk_graphs, label)
        if step + 1 < passes:  # second pass: reference from the registered (already bidirectionally corrected) frames; raw frames still need the offset
            second = yield ReferenceImage(registered_arrays[alignment_channel], sample_indices, configuration, bidirectional_correction=False)
            reference = second._replace(bidirectional_offset_px=reference.bidirectional_offset_px)
    outputs = summarize_registration(_gather_offsets(chunk_offsets), reference, configuration=configuration, user_bad_frames=context.bad_frame_indices)
    _write_outputs(store, plane=plane, outputs=outputs, alignment_channel=alignment_channel)
    if configuration.registration.registration_metric_principal_components > 0 and (~outputs.bad_frames).sum() >= 2:
        (metrics,) = yield Compute([metrics_graph(da.from_zarr(registered_arrays[alignment_channel]), outputs=outputs, configuration=configuration)], f"registration metrics (plane {plane})")
        _write_metrics(store, plane=plane, metrics=metrics)

