"""cindra's iterative reference image, driven by the runner as futures on a persisted sample.

A registration plan yields a `cindra_dask.runner.plans.ReferenceImage` request; the executor runs
`cluster_reference_image`. The loop (an initial pick from the correlation matrix, then 8
refinement passes) is submitted as futures on the persisted sample chunks rather than as one Dask
graph: the same passes built as a graph (delayed and blockwise layers chained pass to pass) took
88 s to build at 300 sample chunks under dask 2026's graph optimisation, the futures run at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cindra_dask.chunking import chunk_count, chunk_starts, even_chunks
from cindra_dask.config import SingleRecordingConfiguration
from cindra_dask.registration.bidiphase import correct_bidirectional_offset, estimate_bidirectional_offset
from cindra_dask.registration.graph import ReferenceResult, plan_options
from cindra_dask.registration.one_photon import one_photon_prefilter
from cindra_dask.registration.reference import (
    REFINEMENT_ITERATIONS,
    centered_sum,
    column_block_gram,
    column_slice,
    correlation_matrix,
    frame_means,
    gather_frames,
    initial_reference_indices,
    pass_selection,
    reference_rigid_plan,
    rigid_estimates,
    selected_aligned_sum,
    selection_mean,
)

if TYPE_CHECKING:
    from cindra_dask.runner.execution import Executor


MAXIMUM_GRAM_SLICES = 4096
"""Most column slices (sample chunks × Gram column blocks) the initial pick submits; a small
``max_chunk_memory`` makes the blocks larger than it rather than the task count quadratic
(192² frames at 64 KiB: 683 blocks × 300 chunks without the cap; 32 MiB at 512² × 500: 16 × 16)."""

def _chunk_futures(persisted: Any) -> list[Any]:
    """The futures of a persisted (n, H, W) dask array's chunks, in frame order."""
    from dask.core import flatten
    from distributed import futures_of

    by_key = {future.key: future for future in futures_of(persisted)}
    return [by_key[key] for key in flatten(persisted.__dask_keys__())]


def cluster_reference_image(
    executor: Executor,
    movie: Any,
    sample_indices: np.ndarray,
    *,
    configuration: SingleRecordingConfiguration,
    bidirectional_correction: bool = True,
) -> ReferenceResult:
    """cindra's reference image (`cindra_dask.registration.reference.compute_reference_image`) on the cluster.

    Parameters
    ----------
    executor : the run's executor (its client runs the tasks).
    movie : (T, H, W) frames (any dtype): a ``zarr.Array``, read by the tasks, or a small numpy
        array (embedded in every read task).
    sample_indices : (n,) sorted indices of the sampled frames (`reference_sample_indices`).
    configuration : registration options.
    bidirectional_correction : estimate/apply the bidirectional offset (False for already corrected frames).

    Chunking: the sample (float32) is read and persisted in `cindra_dask.chunking.even_chunks` of
    at most ``max_chunk_memory`` (the same on any cluster), one task per chunk reading its frames
    one Zarr chunk at a time, and stays on the workers. Initial pick: the frames' columns are cut
    into `even_chunks` blocks of at most ``max_chunk_memory`` (fewer, larger ones where there would be
    more than `MAXIMUM_GRAM_SLICES` column slices); one task per block gathers its
    columns of every chunk and computes that block's (n, n) Gram matrix of mean-subtracted frames;
    the client sums them, picks the 20 frames, and each chunk sums its chosen frames. The 8 passes
    are submitted at once, as futures: per pass, the plan is one node, each chunk's rigid estimate
    returns (n_chunk, 3) offsets, one task picks the frames to average, each chunk sums its chosen
    frames moved back, one task averages the sums. Only (n, 3) arrays, column blocks and single
    images move between tasks; the (n, n) Gram matrices and the final image reach the client.
    """
    import dask
    import dask.array as da

    client = executor.client
    registration = configuration.registration
    options = plan_options(configuration)
    budget = configuration.runtime.max_chunk_bytes
    frame_shape = tuple(movie.shape[1:])
    pixel_count = int(np.prod(frame_shape))
    sample_indices = np.asarray(sample_indices, np.int64)
    sample_chunks = even_chunks(len(sample_indices), item_bytes=4 * pixel_count, max_chunk_bytes=budget)
    source_chunk_frames = int(getattr(movie, "chunks", movie.shape)[0])
    chunk_indices = [sample_indices[start : start + length] for start, length in zip(chunk_starts(sample_chunks), sample_chunks)]
    frames = da.concatenate(
        [
            da.from_delayed(dask.delayed(gather_frames, pure=False)(movie, indices, source_chunk_frames=source_chunk_frames), shape=(len(indices), *frame_shape), dtype=np.float32)
            for indices in chunk_indices
        ]
    )
    offset = registration.bidirectional_phase_offset_override if bidirectional_correction else 0
    if offset == 0 and bidirectional_correction and registration.compute_bidirectional_phase_offset:
        (offset,) = executor.compute([dask.delayed(estimate_bidirectional_offset)(frames)], label="bidirectional offset")
    if offset:
        frames = frames.map_blocks(correct_bidirectional_offset, offset_px=offset, dtype=np.float32)
    correlation_frames = frames
    if options.one_photon:
        correlation_frames = frames.map_blocks(
            one_photon_prefilter, highpass_window_px=options.one_photon_highpass_window_px, presmoothing_window_px=options.one_photon_presmoothing_window_px, dtype=np.float32
        )
    frames, correlation_frames = client.persist([frames, correlation_frames])
    frame_chunks, correlation_chunks = _chunk_futures(frames), _chunk_futures(correlation_frames)
    # Gram matrix by column blocks of at most ``max_chunk_memory``: a block task receives only its
    # columns of every chunk (views where the chunk lives), so a worker's peak grows by a few
    # blocks, not by a copy of the sample (a column rechunk added ≈ 450 MiB per worker at 512²)
    means = np.concatenate(client.gather(client.map(frame_means, frame_chunks)))
    block_limit = max(1, MAXIMUM_GRAM_SLICES // len(sample_chunks))
    column_bytes = 4 * len(sample_indices)
    column_blocks = even_chunks(pixel_count, item_bytes=column_bytes, max_chunk_bytes=max(budget, column_bytes * chunk_count(pixel_count, block_limit)))
    block_grams = [
        client.submit(column_block_gram, client.map(column_slice, frame_chunks, start=start, stop=start + length), frame_means=means)
        for start, length in zip(chunk_starts(column_blocks), column_blocks)
    ]
    chosen = np.sort(initial_reference_indices(correlation_matrix(np.sum(client.gather(block_grams), axis=0))))
    del block_grams
    starts = np.cumsum([0, *frames.chunks[0]])
    chosen_in_chunks = [chosen[(chosen >= start) & (chosen < stop)] for start, stop in zip(starts[:-1], starts[1:])]
    chosen_sums = [client.submit(centered_sum, chunk, local_indices=indices - start, frame_means=means[indices]) for chunk, indices, start in zip(frame_chunks, chosen_in_chunks, starts)]
    reference = (np.sum(client.gather(chosen_sums), axis=0) / len(chosen)).astype(np.float32)  # the initial reference
    # the 8 passes submitted at once as futures on the persisted chunks (no client round trips, no
    # client-side graph merging): only (n, 3) estimates and (H, W) images move between tasks
    for iteration in range(REFINEMENT_ITERATIONS):
        plan = client.submit(reference_rigid_plan, reference, options=options)  # one task: each worker fetches it once
        estimates = client.map(rigid_estimates, correlation_chunks, plan=plan, refine=iteration == REFINEMENT_ITERATIONS - 1)
        selection = client.submit(pass_selection, estimates, iteration=iteration, iteration_count=REFINEMENT_ITERATIONS)
        partial_sums = client.map(selected_aligned_sum, frame_chunks, range(len(frame_chunks)), selection=selection)
        reference = client.submit(selection_mean, partial_sums, selection=selection)
    reference = reference.result()
    return ReferenceResult(reference, int(offset))
