"""Chunk planning invariants (Hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cindra_dask.chunking import chunk_starts, frames_per_chunk, plan_frame_chunks, roi_chunk_size


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


@given(st.integers(1, 10**6), st.integers(1, 2**31), st.integers(1, 5000))
def test_roi_chunks_respect_budget_and_bound(frame_count: int, budget: int, bound: int) -> None:
    rois = roi_chunk_size(frame_count=frame_count, max_chunk_bytes=budget, upper_bound=bound)
    assert 1 <= rois <= bound
    assert rois == 1 or rois * frame_count * 4 <= budget
