"""Chunk planning from a memory budget: pure functions, no Dask, no I/O.

Chunks along time are derived from ``runtime.max_chunk_memory`` (bytes of float32 frames a task
holds), never from the CPU count, so a graph is the same on a laptop and on a cluster.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class FrameChunking(NamedTuple):
    """How a (T, Ly, Lx) movie is cut along time.

    Attributes
    ----------
    chunk_frames : frames per chunk (the last chunk may be shorter).
    chunks : tuple of chunk lengths, summing to the frame count.
    """

    chunk_frames: int
    chunks: tuple[int, ...]


def frames_per_chunk(*, frame_height: int, frame_width: int, max_chunk_bytes: int, bytes_per_pixel: int = 4, multiple_of: int = 1) -> int:
    """Largest frame count whose ``bytes_per_pixel`` copy fits ``max_chunk_bytes`` (≥ ``multiple_of``).

    The result is a multiple of ``multiple_of`` (e.g. the temporal bin size) and at least one multiple.
    """
    if min(frame_height, frame_width, max_chunk_bytes, bytes_per_pixel, multiple_of) <= 0:
        raise ValueError("frame size, budget, bytes per pixel and multiple must be positive")
    frame_bytes = frame_height * frame_width * bytes_per_pixel
    fitting = max_chunk_bytes // frame_bytes
    return max(multiple_of, (fitting // multiple_of) * multiple_of)


def plan_frame_chunks(frame_count: int, chunk_frames: int) -> FrameChunking:
    """Regular chunks of ``chunk_frames`` frames with a shorter last chunk."""
    if frame_count < 0 or chunk_frames <= 0:
        raise ValueError("frame_count must be ≥ 0 and chunk_frames > 0")
    chunk_frames = min(chunk_frames, max(frame_count, 1))
    full, remainder = divmod(frame_count, chunk_frames)
    chunks = (chunk_frames,) * full + ((remainder,) if remainder else ())
    return FrameChunking(chunk_frames=chunk_frames, chunks=chunks or (0,))


def chunk_starts(chunks: tuple[int, ...]) -> tuple[int, ...]:
    """First frame of each chunk."""
    starts = [0]
    for length in chunks[:-1]:
        starts.append(starts[-1] + length)
    return tuple(starts)


def roi_chunk_size(*, frame_count: int, max_chunk_bytes: int, upper_bound: int, bytes_per_value: int = 4) -> int:
    """ROIs per (roi_chunk, T) trace chunk that fit the budget, at most ``upper_bound``, at least 1."""
    per_roi = max(1, frame_count * bytes_per_value)
    return max(1, min(upper_bound, max_chunk_bytes // per_roi))


def chunk_count(total: int, chunk: int) -> int:
    """Number of chunks of size ``chunk`` covering ``total`` items."""
    return math.ceil(total / chunk) if total else 0
