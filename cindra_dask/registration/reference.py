"""Reference image from a sample of frames (cindra §3.2.3–3.2.4).

The caller samples evenly spaced frames (cindra: ``linspace(0, T, 1 + min(500, T))[:-1]``) and
corrects their bidirectional offset first. The initial reference is the mean of the 20 frames most
correlated with the frame that is, on average, most correlated with its 19 best partners. Eight
refinement passes follow: rigid offsets of every sample frame against the current reference; the
``k = max(2, int(n·(i + 1)/16))`` best-correlated frames *except the best one* (cindra's ranks
1…k−1) are moved onto the reference and averaged, re-centred on their mean offset.

Differences from cindra, on purpose: offsets are subpixel and frames are moved by cubic
interpolation from the *original* sample each pass (cindra rolls the frames it already rolled, by
integers); the re-centring is folded into that one move. In one-photon mode only the correlation
copies are filtered and the averages are of unfiltered frames, so the returned reference is an
ordinary image (cindra returns the filtered one; the filters are linear, so the plan built from
this reference filters it to the same thing).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from cindra_dask.registration.kernels import PlanOptions, build_reference_plan, frame_batches
from cindra_dask.registration.nonrigid import warp_frames
from cindra_dask.registration.one_photon import one_photon_prefilter
from cindra_dask.registration.rigid import RigidPlan, aligned_float32, estimate_rigid_offsets

INITIAL_REFERENCE_FRAME_COUNT = 20
"""Frames averaged into the initial reference (and 1 + partners scored per frame)."""
REFINEMENT_ITERATIONS = 8
"""cindra's refinement passes."""


class ChunkSelection(NamedTuple):
    """The frames of one sample chunk that a refinement pass averages.

    Attributes
    ----------
    local_indices : (k,) int64 indices into the chunk.
    rigid_offsets : (k, 2) float64 px, re-centred on the pass's mean offset.
    """

    local_indices: np.ndarray
    rigid_offsets: np.ndarray


def initial_reference_indices(correlation_matrix: np.ndarray) -> np.ndarray:
    """Frames averaged into the initial reference, from the (n, n) correlation matrix of the sample.

    The seed is the frame whose 19 best partners correlate best with it on average; it and its
    partners (20 frames, seed included) are returned, most correlated first.
    """
    best_partners = -np.sort(-correlation_matrix, axis=1)[:, 1:INITIAL_REFERENCE_FRAME_COUNT]
    seed = int(np.argmax(best_partners.mean(axis=1))) if best_partners.size else 0
    return np.argsort(-correlation_matrix[seed], kind="stable")[:INITIAL_REFERENCE_FRAME_COUNT]


def correlation_matrix(gram: np.ndarray) -> np.ndarray:
    """(n, n) Pearson correlations from the Gram matrix of row-mean-subtracted flattened frames."""
    norms = np.sqrt(np.maximum(np.diag(gram), np.finfo(np.float32).tiny))
    return gram / np.outer(norms, norms)


def pick_initial_reference(frames: np.ndarray) -> np.ndarray:
    """cindra's (suite2p's) initial reference from the most mutually correlated frames.

    Parameters
    ----------
    frames : (n, H, W) sample frames.

    Returns
    -------
    (H, W) float32 mean of the chosen frames, each with its own mean subtracted.
    """
    count = len(frames)
    flat = np.asarray(frames, np.float32).reshape(count, -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    chosen = initial_reference_indices(correlation_matrix(flat @ flat.T))
    return flat[chosen].mean(axis=0).reshape(frames.shape[1:]).astype(np.float32)


def reference_rigid_plan(reference: np.ndarray, *, options: PlanOptions, workers: int = 1) -> RigidPlan:
    """The rigid plan one refinement pass aligns the sample against: `build_reference_plan`'s, without
    clipping (one-photon filtered when asked)."""
    return build_reference_plan(reference, options=options._replace(normalize_frames=False, nonrigid=False), workers=workers).rigid


def refinement_frame_indices(correlations: np.ndarray, *, iteration: int, iteration_count: int) -> np.ndarray:
    """cindra's ranks 1…k−1 of the sample by correlation, k = max(2, int(n·(i + 1)/(2·iterations)))."""
    keep = max(2, int(len(correlations) * (1 + iteration) / (2 * iteration_count)))
    return np.argsort(-np.asarray(correlations), kind="stable")[1:keep]


def aligned_sum(frames: np.ndarray, *, rigid_offsets: np.ndarray) -> np.ndarray:
    """(H, W) float64 sum of frames moved back by ``rigid_offsets`` (T, 2) px (cubic interpolation)."""
    if len(frames) == 0:
        return np.zeros(frames.shape[1:], np.float64)
    return warp_frames(frames, rigid_offsets=rigid_offsets).sum(axis=0, dtype=np.float64)


def compute_reference_image(frames: np.ndarray, *, options: PlanOptions, iteration_count: int = REFINEMENT_ITERATIONS, workers: int = 1) -> np.ndarray:
    """Sharp reference image from evenly spaced sample frames (in one process).

    Parameters
    ----------
    frames : (n, H, W) sample frames (n ≥ 2), bidirectionally corrected.
    options : registration options; the rigid search, correlation kernel and one-photon prefilter
        of the correlation copies are used (the taper slope is 3σ, or the one-photon slope).
    iteration_count : refinement passes (cindra: 8).
    workers : threads for ``scipy.fft``.

    Returns
    -------
    (H, W) float32 reference image (intensity units of the frames). The Dask version,
    `cindra_dask.runner.reference_image.cluster_reference_image`, runs the same steps over chunks
    with the chunk functions below.
    """
    sample = np.asarray(frames, np.float32)
    if sample.ndim != 3 or len(sample) < 2:
        raise ValueError(f"need a (n ≥ 2, H, W) stack of frames, got shape {sample.shape}")
    correlation_sample = sample
    if options.one_photon:
        correlation_sample = one_photon_prefilter(sample, highpass_window_px=options.one_photon_highpass_window_px, presmoothing_window_px=options.one_photon_presmoothing_window_px)
    reference = pick_initial_reference(sample)
    for iteration in range(iteration_count):
        plan = reference_rigid_plan(reference, options=options, workers=workers)
        estimate = estimate_rigid_offsets(correlation_sample, plan=plan, temporal_smoothing_sigma_frames=0.0, refine=iteration == iteration_count - 1, workers=workers)
        chosen = refinement_frame_indices(estimate.correlations, iteration=iteration, iteration_count=iteration_count)
        offsets = estimate.offsets[chosen].astype(np.float64)
        reference = (aligned_sum(sample[chosen], rigid_offsets=offsets - offsets.mean(axis=0)) / len(chosen)).astype(np.float32)
    return reference


# ---------------------------------------------------------------------------------------------
# the same steps on chunks of the sample (task bodies of the cluster version)
# ---------------------------------------------------------------------------------------------


def gather_frames(movie: Any, indices: np.ndarray, *, source_chunk_frames: int) -> np.ndarray:
    """(len(indices), H, W) float32 copy of ``movie[indices]`` (sorted indices) of a (T, H, W) array,
    read one source chunk of ``source_chunk_frames`` at a time, so each chunk it touches is decoded once and held alone."""
    block = np.empty((len(indices), *movie.shape[1:]), np.float32)
    source_chunks = indices // source_chunk_frames
    for source_chunk in np.unique(source_chunks):
        where = np.flatnonzero(source_chunks == source_chunk)
        block[where] = movie[indices[where]]
    return block


def frame_means(frames: np.ndarray) -> np.ndarray:
    """(n,) float32 mean of each (H, W) frame of an (n, H, W) chunk (aligned first: see `aligned_float32`)."""
    return aligned_float32(frames).mean(axis=(1, 2), dtype=np.float32)


def column_slice(frames: np.ndarray, *, start: int, stop: int) -> np.ndarray:
    """(n, stop − start) columns of the chunk's flattened (n, H·W) frames (a view)."""
    return frames.reshape(len(frames), -1)[:, start:stop]


def column_block_gram(row_blocks: Sequence[np.ndarray], *, frame_means: np.ndarray) -> np.ndarray:
    """(n, n) float64 Gram matrix of one column block of the mean-subtracted frames.

    ``row_blocks`` are every chunk's (n_chunk, columns) rows of the block, in frame order;
    ``frame_means`` (n,) the frames' means.
    """
    columns = np.concatenate(row_blocks)
    columns -= frame_means[:, None]
    return (columns @ columns.T).astype(np.float64)


def centered_sum(frames: np.ndarray, *, local_indices: np.ndarray, frame_means: np.ndarray) -> np.ndarray:
    """(H, W) float64 sum of the chunk's frames ``local_indices``, each minus its mean (``frame_means``, one per index; zeros if none)."""
    return (frames[local_indices] - frame_means[:, None, None]).sum(axis=0, dtype=np.float64)


def rigid_estimates(correlation_frames: np.ndarray, *, plan: RigidPlan, refine: bool) -> np.ndarray:
    """(n, 3) float32 [dy px, dx px, correlation] of (n, H, W) correlation frames against one pass's reference (no temporal smoothing)."""
    batches = frame_batches(len(correlation_frames), frame_shape=correlation_frames.shape[1:])
    estimates = [estimate_rigid_offsets(correlation_frames[batch], plan=plan, temporal_smoothing_sigma_frames=0.0, refine=refine) for batch in batches]
    return np.concatenate([np.column_stack([estimate.offsets, estimate.correlations]) for estimate in estimates]).astype(np.float32)


def pass_selection(estimates: Sequence[np.ndarray], *, iteration: int, iteration_count: int) -> list[ChunkSelection]:
    """Per sample chunk, the frames refinement pass ``iteration`` averages, their offsets re-centred on the pass's mean.

    ``estimates`` are the chunks' (n_chunk, 3) `rigid_estimates`, in sample order.
    """
    estimate = np.concatenate(estimates)
    chosen = refinement_frame_indices(estimate[:, 2], iteration=iteration, iteration_count=iteration_count)
    offsets = estimate[chosen, :2].astype(np.float64)
    offsets -= offsets.mean(axis=0)
    chunk_of = np.repeat(np.arange(len(estimates)), [len(chunk) for chunk in estimates])[chosen]
    starts = np.cumsum([0, *(len(chunk) for chunk in estimates)])
    return [ChunkSelection(chosen[chunk_of == chunk] - starts[chunk], offsets[chunk_of == chunk]) for chunk in range(len(estimates))]


def selected_aligned_sum(frames: np.ndarray, chunk: int, *, selection: Sequence[ChunkSelection]) -> np.ndarray:
    """(H, W) float64 `aligned_sum` of chunk ``chunk``'s (n_chunk, H, W) frames that ``selection`` chose (zeros if none)."""
    local_indices, rigid_offsets = selection[chunk]
    return aligned_sum(frames[local_indices], rigid_offsets=rigid_offsets)


def selection_mean(partial_sums: Sequence[np.ndarray], *, selection: Sequence[ChunkSelection]) -> np.ndarray:
    """The pass's (H, W) float32 reference: the chunks' (H, W) partial sums over the number of chosen frames."""
    return (np.sum(partial_sums, axis=0) / sum(len(chunk.local_indices) for chunk in selection)).astype(np.float32)
