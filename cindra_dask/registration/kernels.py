"""Per-chunk registration: the reference plan built once per worker, and one pass over a chunk.

A graph builder (``registration/graph.py``) builds one `ReferencePlan` from the reference image,
ships it to the workers once, and maps `register_frames` over frame chunks. With temporal
smoothing, each chunk is given ``temporal_halo_frames(...)`` extra frames on each side (fewer at
the ends of the recording) and the results do not depend on the chunking; the second channel is
moved with `apply_offsets`.

Per chunk: bidirectional correction (odd rows) → correlation copy (one-photon prefilter, clipping
to the reference's 1st/99th percentiles) → rigid offsets (subpixel) → block offsets on the rigidly
corrected copy → one cubic warp of the bidirectionally corrected frames by rigid + interpolated
block offsets (a single interpolation; see `cindra_dask.registration.nonrigid`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cindra_dask.registration.bidiphase import correct_bidirectional_offset
from cindra_dask.registration.nonrigid import (
    BlockLayout,
    NonrigidPlan,
    block_layout,
    build_nonrigid_plan,
    estimate_nonrigid_offsets,
    warp_frames,
)
from cindra_dask.registration.one_photon import one_photon_prefilter
from cindra_dask.registration.rigid import (
    ClipRange,
    RigidPlan,
    aligned_float32,
    build_rigid_plan,
    clip_range,
    estimate_rigid_offsets,
    normalize_frames,
    temporal_radius_frames,
)

_STAGES_PER_ESTIMATE = 2
"""Rigid and nonrigid estimation each smooth over time twice (integer search, refinement)."""
FRAME_BATCH_BYTES = 2 * 2**20
"""Without temporal smoothing frames are registered in batches of about this many float32 bytes, so a
batch's temporaries (blocks, spectra) stay in cache through all stages: 10–20 % less CPU per frame than
whole 100-frame chunks at 256² and 512² (2 MiB: 8 frames at 256², 2 at 512²; results identical)."""


class PlanOptions(NamedTuple):
    """The registration options a `ReferencePlan` is built with; no defaults here: they are the
    configuration's (`cindra_dask.registration.graph.plan_options` maps its fields to these names).

    Attributes
    ----------
    maximum_offset_fraction : rigid search radius as a fraction of min(H, W).
    spatial_smoothing_sigma_px : Gaussian sigma (px) of the correlation kernels; the 2P taper slope is 3σ.
    temporal_smoothing_sigma_frames : Gaussian sigma (frames) smoothing correlation surfaces over time.
    normalize_frames : clip reference and frames to the reference's 1st/99th percentiles.
    one_photon : high-pass (and optionally pre-smooth) the correlation copies.
    one_photon_highpass_window_px : even box width (px) of the high-pass.
    one_photon_presmoothing_window_px : even box width (px) of the pre-smoothing; 0 disables it.
    one_photon_edge_taper_px : taper slope (px) used instead of 3σ in one-photon mode.
    nonrigid : estimate and correct block offsets.
    block_size_px : (h, w) block size (px).
    signal_to_noise_threshold : blocks below it borrow correlation from their neighbours.
    maximum_block_offset_px : block search radius (px) relative to the rigid offset.
    """

    maximum_offset_fraction: float
    spatial_smoothing_sigma_px: float
    temporal_smoothing_sigma_frames: float
    normalize_frames: bool
    one_photon: bool
    one_photon_highpass_window_px: int
    one_photon_presmoothing_window_px: int
    one_photon_edge_taper_px: float
    nonrigid: bool
    block_size_px: tuple[int, int]
    signal_to_noise_threshold: float
    maximum_block_offset_px: float


class ReferencePlan(NamedTuple):
    """Everything precomputed from one reference image; build once per worker, reuse per chunk.

    Attributes
    ----------
    reference_image : (H, W) float32 reference as given (not filtered or clipped).
    options : the options it was built with.
    clip : intensity range frames are clipped to before correlating, or None.
    rigid : rigid taper, reference mean fill, kernels and search radius.
    nonrigid : block layout, block tapers and kernels, SNR smoothing; None when nonrigid is off.
    """

    reference_image: np.ndarray
    options: PlanOptions
    clip: ClipRange | None
    rigid: RigidPlan
    nonrigid: NonrigidPlan | None

    @property
    def layout(self) -> BlockLayout | None:
        """The block layout, or None without nonrigid registration."""
        return None if self.nonrigid is None else self.nonrigid.layout


class RegisteredChunk(NamedTuple):
    """Result of `register_frames` for the non-halo frames of a chunk.

    Attributes
    ----------
    registered : (T, H, W) float32 motion-corrected frames.
    rigid_offsets : (T, 2) float32 (dy, dx) px: frame t shows the reference moved by +dy rows, +dx columns.
    rigid_correlations : (T,) float32 phase-correlation peak values.
    nonrigid_offsets : (T, n_blocks, 2) float32 px relative to the rigidly corrected frame (n_blocks = 0 without nonrigid).
    nonrigid_correlations : (T, n_blocks) float32.
    """

    registered: np.ndarray
    rigid_offsets: np.ndarray
    rigid_correlations: np.ndarray
    nonrigid_offsets: np.ndarray
    nonrigid_correlations: np.ndarray


def build_reference_plan(reference_image: np.ndarray, *, options: PlanOptions, workers: int = 1) -> ReferencePlan:
    """Precompute registration against a reference image.

    Parameters
    ----------
    reference_image : (H, W) reference (e.g. from `cindra_dask.registration.reference.compute_reference_image`).
    options : the registration options.
    workers : threads for ``scipy.fft``.
    """
    reference = aligned_float32(reference_image)
    clip = clip_range(_correlation_copy(reference, options=options, clip=None)) if options.normalize_frames else None
    correlation_reference = _correlation_copy(reference, options=options, clip=clip)
    rigid_plan = build_rigid_plan(
        correlation_reference,
        maximum_offset_fraction=options.maximum_offset_fraction,
        spatial_smoothing_sigma_px=options.spatial_smoothing_sigma_px,
        taper_slope_px=options.one_photon_edge_taper_px if options.one_photon else 3 * options.spatial_smoothing_sigma_px,
        workers=workers,
    )
    nonrigid_plan = None
    if options.nonrigid:
        nonrigid_plan = build_nonrigid_plan(
            correlation_reference,
            layout=block_layout(frame_shape=reference.shape, block_size_px=tuple(options.block_size_px)),
            frame_taper_mask=rigid_plan.taper_mask,
            spatial_smoothing_sigma_px=options.spatial_smoothing_sigma_px,
            maximum_block_offset_px=options.maximum_block_offset_px,
            signal_to_noise_threshold=options.signal_to_noise_threshold,
            workers=workers,
        )
    return ReferencePlan(reference, options, clip, rigid_plan, nonrigid_plan)


def _correlation_copy(frames: np.ndarray, *, options: PlanOptions, clip: ClipRange | None) -> np.ndarray:
    """One-photon prefilter (when enabled) then clipping (when ``clip`` is given), float32."""
    filtered = np.asarray(frames, np.float32)
    if options.one_photon:
        filtered = one_photon_prefilter(
            filtered, highpass_window_px=options.one_photon_highpass_window_px, presmoothing_window_px=options.one_photon_presmoothing_window_px
        )
    return filtered if clip is None else normalize_frames(filtered, clip=clip)


def correlation_frames(frames: np.ndarray, *, plan: ReferencePlan) -> np.ndarray:
    """The copy of frames offsets are estimated on: one-photon filtered and clipped as the plan says.

    Parameters
    ----------
    frames : (T, H, W) bidirectionally corrected frames.
    plan : from `build_reference_plan`.

    Returns
    -------
    (T, H, W) float32.
    """
    return _correlation_copy(frames, options=plan.options, clip=plan.clip)


def temporal_halo_frames(*, temporal_smoothing_sigma_frames: float, nonrigid: bool) -> int:
    """Context frames a chunk needs on each side so that `register_frames` is chunking-independent.

    Rigid estimation smooths over time twice and nonrigid estimation (which uses the rigid offsets)
    twice more, each reading ``int(4·sigma + 0.5)`` frames on each side. 0 without smoothing.
    """
    radius = temporal_radius_frames(temporal_smoothing_sigma_frames=temporal_smoothing_sigma_frames)
    return radius * _STAGES_PER_ESTIMATE * (2 if nonrigid else 1)


def frame_batches(frame_count: int, *, frame_shape: tuple[int, int]) -> list[slice]:
    """Consecutive slices of about `FRAME_BATCH_BYTES` of float32 frames (at least one frame; one empty slice for none)."""
    size = max(1, FRAME_BATCH_BYTES // (4 * int(np.prod(frame_shape))))
    return [slice(start, min(start + size, frame_count)) for start in range(0, frame_count, size)] or [slice(0, 0)]


def register_frames(
    frames: np.ndarray,
    *,
    plan: ReferencePlan,
    halo_before_frames: int = 0,
    halo_after_frames: int = 0,
    bidirectional_offset_px: int = 0,
    workers: int = 1,
) -> RegisteredChunk:
    """Register a chunk of frames in one pass (rigid, then nonrigid, then one warp).

    Parameters
    ----------
    frames : (halo_before + T + halo_after, H, W) raw frames, any real dtype. The halo frames are
        context for temporal smoothing only (give ``temporal_halo_frames(...)`` on each side where
        the recording has them, none beyond its ends); they are not returned.
    plan : from `build_reference_plan` (same H, W).
    halo_before_frames, halo_after_frames : leading / trailing context frames in ``frames``.
    bidirectional_offset_px : odd-row offset to correct first (see `cindra_dask.registration.bidiphase`).
    workers : threads for ``scipy.fft``.

    Returns
    -------
    `RegisteredChunk` for the T non-halo frames.
    """
    total = len(frames)
    core = slice(halo_before_frames, total - halo_after_frames)
    if halo_before_frames < 0 or halo_after_frames < 0 or core.start > core.stop:
        raise ValueError(f"halos ({halo_before_frames}, {halo_after_frames}) do not fit {total} frames")
    if tuple(frames.shape[1:]) != plan.reference_image.shape:
        raise ValueError(f"frames are {tuple(frames.shape[1:])}, the reference is {plan.reference_image.shape}")
    if plan.options.temporal_smoothing_sigma_frames > 0:  # surfaces are smoothed across the whole stack
        return _register_stack(frames, plan=plan, core=core, bidirectional_offset_px=bidirectional_offset_px, workers=workers)
    frames = frames[core]  # halo frames only serve temporal smoothing
    batches = [
        _register_stack(frames[batch], plan=plan, core=slice(None), bidirectional_offset_px=bidirectional_offset_px, workers=workers)
        for batch in frame_batches(len(frames), frame_shape=plan.reference_image.shape)
    ]
    return RegisteredChunk(*(np.concatenate(parts) for parts in zip(*batches)))


def _register_stack(frames: np.ndarray, *, plan: ReferencePlan, core: slice, bidirectional_offset_px: int, workers: int) -> RegisteredChunk:
    """`register_frames` on one stack at once: offsets from all its frames, results for ``frames[core]``."""
    smoothing = plan.options.temporal_smoothing_sigma_frames
    corrected = correct_bidirectional_offset(frames, offset_px=bidirectional_offset_px)
    correlation_copy = correlation_frames(corrected, plan=plan)
    rigid_estimate = estimate_rigid_offsets(correlation_copy, plan=plan.rigid, temporal_smoothing_sigma_frames=smoothing, workers=workers)
    if plan.nonrigid is None:
        nonrigid_offsets = np.zeros((len(corrected), 0, 2), np.float32)
        nonrigid_correlations = np.zeros((len(corrected), 0), np.float32)
    else:
        blocks = estimate_nonrigid_offsets(
            correlation_copy, rigid_offsets=rigid_estimate.offsets, plan=plan.nonrigid, temporal_smoothing_sigma_frames=smoothing, workers=workers
        )
        nonrigid_offsets, nonrigid_correlations = blocks.offsets, blocks.correlations
    del correlation_copy
    rigid_offsets, nonrigid_offsets = rigid_estimate.offsets[core].copy(), nonrigid_offsets[core].copy()
    registered = warp_frames(corrected[core], rigid_offsets=rigid_offsets, nonrigid_offsets=nonrigid_offsets, layout=plan.layout)
    return RegisteredChunk(registered, rigid_offsets, rigid_estimate.correlations[core].copy(), nonrigid_offsets, nonrigid_correlations[core].copy())


def apply_offsets(
    frames: np.ndarray,
    *,
    rigid_offsets: np.ndarray,
    nonrigid_offsets: np.ndarray | None = None,
    layout: BlockLayout | None = None,
    bidirectional_offset_px: int = 0,
) -> np.ndarray:
    """Move frames (e.g. the second channel) by offsets estimated elsewhere, as `register_frames` does.

    Parameters
    ----------
    frames : (T, H, W) raw frames.
    rigid_offsets : (T, 2) px.
    nonrigid_offsets : (T, n_blocks, 2) px or None.
    layout : block layout of ``nonrigid_offsets`` (``plan.layout``).
    bidirectional_offset_px : odd-row offset to correct first.

    Returns
    -------
    (T, H, W) float32 registered frames.
    """
    corrected = correct_bidirectional_offset(frames, offset_px=bidirectional_offset_px)
    return warp_frames(corrected, rigid_offsets=rigid_offsets, nonrigid_offsets=nonrigid_offsets, layout=layout)


def to_source_dtype(frames: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Registered float32 frames in the raw frames' dtype: rounded and clipped to its range for integers.

    Parameters
    ----------
    frames : (T, H, W) float32.
    dtype : target dtype (the raw array's).
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        return frames.astype(dtype)
    limits = np.iinfo(dtype)
    return np.clip(np.rint(frames), limits.min, limits.max).astype(dtype)
