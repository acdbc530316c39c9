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

from cindra_dask.config import SingleRecordingConfiguration
from cindra_dask.registration.bidiphase import correct_bidirectional_offset, estimate_bidirectional_offset
from cindra_dask.registration.graph import (
    ReferenceResult,
    _aligned_sum_block,
    _centered_sum_block,
    _column_block_gram,
    _column_slice,
    _estimate_block,
    _frame_means_block,
    _mean_image,
    _pass_selection,
    _reference_options,
    _sample_block,
)
from cindra_dask.registration.one_photon import one_photon_prefilter
from cindra_dask.registration.reference import REFINEMENT_ITERATIONS, correlation_matrix, initial_reference_indices, reference_rigid_plan

if TYPE_CHECKING:
    from cindra_dask.runner.execution import Executor


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

    Chunking: the sample (float32) is read and persisted in chunks of ≈ ``max_chunk_memory``, at
    least two per worker thread (2 workers × 1 thread and 1 × 2 get the same chunks and, in worker
    processes, the same reference), one task per chunk reading its frames one Zarr chunk at a time,
    and stays on the workers. Initial pick: the frames' columns are cut into blocks
    of ≈ ``max_chunk_memory`` (1 to 4 per thread); one task per block gathers its columns of every
    chunk and computes that block's (n, n) Gram matrix of mean-subtracted frames; the client sums
    them, picks the 20 frames, and each chunk sums its chosen frames. The 8 passes are submitted at
    once, as futures: per pass, the plan is one node, each chunk's rigid estimate returns (n_chunk, 3)
    offsets, one task picks the frames to average, each chunk sums its chosen frames moved back, one
    task averages the sums. Only (n, 3) arrays, column blocks and single images move between tasks;
    the (n, n) Gram matrices and the final image reach the client.
    """
    import dask
    import dask.array as da

    client = executor.client
    registration = configuration.registration
    options = _reference_options(configuration)
    frame_shape = tuple(movie.shape[1:])
    sample_indices = np.asarray(sample_indices, np.int64)
    thread_count = max(1, sum(worker["nthreads"] for worker in client.scheduler_info(n_workers=-1)["workers"].values()))
    chunk_frames = max(1, min(configuration.runtime.max_chunk_bytes // (4 * int(np.prod(frame_shape))), -(-len(sample_indices) // (2 * thread_count))))
    source_chunk_frames = int(getattr(movie, "chunks", movie.shape)[0])
    chunk_indices = [sample_indices[start : start + chunk_frames] for start in range(0, len(sample_indices), chunk_frames)]
    frames = da.concatenate(
        [
            da.from_delayed(dask.delayed(_sample_block, pure=False)(movie, indices, source_chunk_frames=source_chunk_frames), shape=(len(indices), *frame_shape), dtype=np.float32)
            for indices in chunk_indices
        ]
    )
    offset = registration.bidirectional_phase_offset_override if bidirectional_correction else 0
    if offset == 0 and bidirectional_correction and registration.compute_bidirectional_phase_offset:
        (offset,) = executor.compute([dask.delayed(estimate_bidirectional_offset)(frames)], label="bidirectional offset")
    if offset:
        frames = frames.map_blocks(correct_bidirectional_offset, offset_px=offset, dtype=np.float32)
    correlation_frames = frames
    if options["one_photon"]:
        correlation_frames = frames.map_blocks(
            one_photon_prefilter, highpass_window_px=options["one_photon_highpass_window_px"], presmoothing_window_px=options["one_photon_presmoothing_window_px"], dtype=np.float32
        )
    frames, correlation_frames = client.persist([frames, correlation_frames])
    frame_chunks, correlation_chunks = _chunk_futures(frames), _chunk_futures(correlation_frames)
    # Gram matrix by column blocks of ≈ ``max_chunk_memory`` (1 to 4 per thread: chunks × blocks
    # slicing tasks): a block task receives only its columns of every chunk (views where the chunk
    # lives), so a worker's peak grows by a few blocks, not by a copy of the sample (a column
    # rechunk added ≈ 450 MiB per worker at 512²)
    frame_means = np.concatenate(client.gather(client.map(_frame_means_block, frame_chunks)))
    frame_count, pixel_count = frames.shape[0], int(np.prod(frame_shape))
    budget_blocks = -(-4 * frame_count * pixel_count // configuration.runtime.max_chunk_bytes)
    block_count = min(pixel_count, max(thread_count, min(budget_blocks, 4 * thread_count)))
    edges = np.linspace(0, pixel_count, block_count + 1).astype(np.int64)
    block_grams = [
        client.submit(_column_block_gram, client.map(_column_slice, frame_chunks, start=int(start), stop=int(stop)), frame_means)
        for start, stop in zip(edges[:-1], edges[1:])
    ]
    chosen = np.sort(initial_reference_indices(correlation_matrix(np.sum(client.gather(block_grams), axis=0))))
    del block_grams
    chunk_starts = np.cumsum([0, *frames.chunks[0]])
    chosen_in_chunks = [chosen[(chosen >= start) & (chosen < stop)] for start, stop in zip(chunk_starts[:-1], chunk_starts[1:])]
    chosen_sums = [client.submit(_centered_sum_block, chunk, indices - start, frame_means[indices]) for chunk, indices, start in zip(frame_chunks, chosen_in_chunks, chunk_starts)]
    reference = (np.sum(client.gather(chosen_sums), axis=0) / len(chosen)).astype(np.float32)  # the initial reference
    # the 8 passes submitted at once as futures on the persisted chunks (no client round trips, no
    # client-side graph merging): only (n, 3) estimates and (H, W) images move between tasks
    for iteration in range(REFINEMENT_ITERATIONS):
        plan = client.submit(reference_rigid_plan, reference, **options)  # one task: each worker fetches it once
        estimates = client.map(_estimate_block, correlation_chunks, plan=plan, refine=iteration == REFINEMENT_ITERATIONS - 1)
        selection = client.submit(_pass_selection, estimates, iteration=iteration)
        partial_sums = client.map(_aligned_sum_block, frame_chunks, range(len(frame_chunks)), selection=selection)
        reference = client.submit(_mean_image, partial_sums, selection)
    reference = reference.result()
    return ReferenceResult(reference, int(offset))
