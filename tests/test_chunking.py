"""Chunk planning invariants (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cindra_dask.chunking import METRICS_SAMPLE_CHUNKS, chunk_starts, even_chunks, frames_per_chunk, ingest_chunk_frames, metrics_sample_frames, plan_frame_chunks, roi_chunk_size
from cindra_dask.config import RuntimeSettings


@given(st.integers(1, 2048), st.integers(1, 2048), st.integers(1, 2**32), st.integers(1, 64))
def test_frames_per_chunk_fits_the_budget(height: int, width: int, budget: int, multiple: int) -> None:
    frames = frames_per_chunk(frame_height=height, frame_width=width, max_chunk_bytes=budget, multiple_of=multiple)
    assert frames % multiple == 0 and frames >= multiple
    if frames > multiple:
        assert frames * height * width * 4 <= budget
    assert (frames + multiple) * height * width * 4 > budget  # the largest multiple that fits


@given(st.integers(0, 100_000), st.integers(1, 5000))
def test_plan_covers_every_frame_once(frame_count: int, chunk_frames: int) -> None:
    plan = plan_frame_chunks(frame_count, chunk_frames)
    assert sum(plan.chunks) == frame_count
    assert all(length == plan.chunk_frames for length in plan.chunks[:-1])
    assert 0 <= plan.chunks[-1] <= plan.chunk_frames
    starts = chunk_starts(plan.chunks)
    assert starts[0] == 0 and all(b - a == length for a, b, length in zip(starts, starts[1:], plan.chunks))


@given(st.integers(1, 10**6), st.integers(0, 10**5), st.integers(1, 2**31), st.integers(1, 5000))
def test_roi_chunks_respect_budget_and_bound(frame_count: int, roi_count: int, budget: int, bound: int) -> None:
    rois = roi_chunk_size(frame_count=frame_count, roi_count=roi_count, max_chunk_bytes=budget, upper_bound=bound)
    assert 1 <= rois <= bound and rois <= max(1, roi_count)
    assert rois == 1 or rois * frame_count * 4 <= budget


@given(st.integers(1, 2048), st.integers(1, 2048), st.integers(1, 2**32), st.integers(1, 100_000))
def test_ingest_chunks_fit_the_budget_and_the_batch_size(height: int, width: int, budget: int, batch_size: int) -> None:
    frames = ingest_chunk_frames(frame_height=height, frame_width=width, max_chunk_bytes=budget, batch_size=batch_size)
    assert 1 <= frames <= batch_size
    assert frames == 1 or frames * height * width * 4 <= budget


@given(st.integers(0, 100_000), st.integers(1, 2**24), st.integers(1, 2**32))
def test_even_chunks_are_the_fewest_that_fit(count: int, item_bytes: int, budget: int) -> None:
    chunks = even_chunks(count, item_bytes=item_bytes, max_chunk_bytes=budget)
    assert sum(chunks) == count and all(length >= 1 for length in chunks)
    assert not chunks or chunks[0] - chunks[-1] <= 1 and all(a >= b for a, b in zip(chunks, chunks[1:]))
    fitting = max(1, budget // item_bytes)
    assert all(length <= fitting for length in chunks)  # each fits the budget (or holds one item)
    assert len(chunks) <= 1 or (len(chunks) - 1) * fitting < count  # one chunk fewer would not fit


def test_reference_sample_chunks_and_gram_blocks_at_256_px() -> None:
    """500 float32 frames of 256² in 32 MiB: four chunks of 125 frames and four column blocks of 16 384 pixels."""
    assert even_chunks(500, item_bytes=4 * 256 * 256, max_chunk_bytes=32 * 2**20) == (125,) * 4
    assert even_chunks(256 * 256, item_bytes=4 * 500, max_chunk_bytes=32 * 2**20) == (16_384,) * 4


@given(st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 2**32))
def test_metrics_sample_fits_its_share_of_the_budget(height: int, width: int, budget: int) -> None:
    frames = metrics_sample_frames(frame_height=height, frame_width=width, max_chunk_bytes=budget)
    share = METRICS_SAMPLE_CHUNKS * budget
    assert frames >= 2
    assert frames == 2 or frames * height * width * 4 <= share  # fits (or is the 2-frame minimum)
    assert (frames + 1) * height * width * 4 > share  # the most that fit
    assert metrics_sample_frames(frame_height=height, frame_width=width, max_chunk_bytes=2 * budget) >= frames


DEFAULT_BUDGET = RuntimeSettings().max_chunk_bytes


@given(st.integers(1, 4096), st.integers(1, 4096))
def test_metrics_sample_at_the_default_budget_is_the_former_fixed_256_mib(height: int, width: int) -> None:
    """At the default max_chunk_memory (32 MiB) the sample is bounded by 256 MiB, as it was before it followed the budget."""
    assert DEFAULT_BUDGET == 32 * 2**20
    assert metrics_sample_frames(frame_height=height, frame_width=width, max_chunk_bytes=DEFAULT_BUDGET) == max(2, 256 * 2**20 // (4 * height * width))


@given(length=st.integers(1, 600), patch=st.integers(1, 200), overlap_fraction=st.floats(0, 0.95))
def test_patches_cover_the_axis_overlapping_by_at_least_the_overlap(length: int, patch: int, overlap_fraction: float) -> None:
    from cindra_dask.chunking import patch_starts

    overlap = int(overlap_fraction * patch)
    starts = patch_starts(length_px=length, patch_px=patch, overlap_px=overlap)
    covered = np.zeros(length, bool)
    for start in starts:
        covered[start : start + patch] = True
    assert covered.all() and starts[0] == 0 and all(start + min(patch, length) <= length for start in starts)
    assert all(previous + patch - later >= overlap for previous, later in zip(starts, starts[1:]))
    assert list(starts) == sorted(set(starts))
