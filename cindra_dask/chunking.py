"""Chunk planning from a memory budget: pure functions, no Dask, no I/O.

Every chunk, block and sample chunk is derived here from ``runtime.max_chunk_memory`` (the bytes of
float32 data one task holds), never from the CPU count, so a graph is the same on a laptop and on
a cluster: frames per ingested (and registered) chunk, the reference sample's chunks and the column
blocks of its Gram matrix, the registration metrics' sample, the bin-aligned chunks of detection's
temporal binning, ROIs per trace chunk.
"""

from __future__ import annotations

import math
from typing import NamedTuple


METRICS_SAMPLE_CHUNKS = 8
"""Chunk budgets of float32 frames the registration metrics' sample (one task) may hold: 256 MiB at
the default ``max_chunk_memory`` of 32 MiB."""


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


def ingest_chunk_frames(*, frame_height: int, frame_width: int, max_chunk_bytes: int, batch_size: int) -> int:
    """Frames per Zarr chunk of the ingested (and registered) movie: `frames_per_chunk` of float32
    frames, at most ``batch_size`` (``registration.batch_size``)."""
    return min(batch_size, frames_per_chunk(frame_height=frame_height, frame_width=frame_width, max_chunk_bytes=max_chunk_bytes))


def metrics_sample_frames(*, frame_height: int, frame_width: int, max_chunk_bytes: int) -> int:
    """Most frames of the registration metrics' sample: `METRICS_SAMPLE_CHUNKS` × ``max_chunk_bytes``
    of float32 frames of the valid crop (``frame_height`` × ``frame_width`` px), at least 2."""
    return max(2, frames_per_chunk(frame_height=frame_height, frame_width=frame_width, max_chunk_bytes=METRICS_SAMPLE_CHUNKS * max_chunk_bytes))


def even_chunks(count: int, *, item_bytes: int, max_chunk_bytes: int) -> tuple[int, ...]:
    """The fewest chunks of ``count`` items of ``item_bytes`` each that fit ``max_chunk_bytes`` (at
    least one item per chunk), their lengths differing by at most one, longer chunks first.

    For the reference image's sample (items: float32 frames) and its Gram matrix's column blocks
    (items: columns of n float32 values). ``count`` 0 gives ``()``.
    """
    if count < 0 or min(item_bytes, max_chunk_bytes) <= 0:
        raise ValueError("count must be ≥ 0, item bytes and budget positive")
    if count == 0:
        return ()
    pieces = chunk_count(count, max(1, max_chunk_bytes // item_bytes))
    length, longer = divmod(count, pieces)
    return (length + 1,) * longer + (length,) * (pieces - longer)


def plan_frame_chunks(frame_count: int, chunk_frames: int) -> FrameChunking:
    """Regular chunks of ``chunk_frames`` frames with a shorter last chunk."""
    if frame_count < 0 or chunk_frames <= 0:
        raise ValueError("frame_count must be ≥ 0 and chunk_frames > 0")
    chunk_frames = min(chunk_frames, max(frame_count, 1))
    full, remainder = divmod(frame_count, chunk_frames)
    chunks = (chunk_frames,) * full + ((remainder,) if remainder else ())
    return FrameChunking(chunk_frames=chunk_frames, chunks=chunks or (0,))


def bin_aligned_chunks(chunks: tuple[int, ...], *, bin_size: int) -> tuple[int, ...]:
    """Frame chunks for temporal binning: regular chunks of a multiple of ``bin_size`` frames (≤ the largest input chunk, ≥ one bin).

    Every chunk boundary is a multiple of ``bin_size``, so no bin straddles two chunks; the last
    chunk may be shorter (its incomplete bin is the recording's last, dropped by binning anyway).
    """
    if bin_size <= 0:
        raise ValueError("bin_size must be > 0")
    frame_count = int(sum(chunks))
    chunk_frames = max(bin_size, (max(chunks) // bin_size) * bin_size)
    return plan_frame_chunks(frame_count, chunk_frames).chunks


def chunk_starts(chunks: tuple[int, ...]) -> tuple[int, ...]:
    """First frame of each chunk."""
    starts = [0]
    for length in chunks[:-1]:
        starts.append(starts[-1] + length)
    return tuple(starts)


def roi_chunk_size(*, frame_count: int, roi_count: int, max_chunk_bytes: int, upper_bound: int, bytes_per_value: int = 4) -> int:
    """ROIs per (roi_chunk, T) trace chunk of n = ``roi_count`` ROIs: as many as fit the budget, at
    most ``upper_bound`` (``signal_extraction.batch_size``) and n, at least 1."""
    per_roi = max(1, frame_count * bytes_per_value)
    return max(1, min(upper_bound, roi_count, max_chunk_bytes // per_roi))


def chunk_count(total: int, chunk: int) -> int:
    """Number of chunks of size ``chunk`` covering ``total`` items."""
    return math.ceil(total / chunk) if total else 0


def patch_starts(*, length_px: int, patch_px: int, overlap_px: int) -> tuple[int, ...]:
    """Starts of the patches that cover an axis of ``length_px``: every ``patch_px − overlap_px`` px, the
    last one flush with the end (one patch when the axis is no longer than a patch).

    CNMF's patches (CaImAn's ``rf``, ``stride``): ``patch_px = 2·rf``, ``overlap_px = stride``.
    """
    if min(length_px, patch_px) <= 0 or not 0 <= overlap_px < patch_px:
        raise ValueError("length and patch size must be positive and the overlap in [0, patch size)")
    if length_px <= patch_px:
        return (0,)
    starts = list(range(0, length_px - patch_px + 1, patch_px - overlap_px))
    if starts[-1] != length_px - patch_px:
        starts.append(length_px - patch_px)
    return tuple(starts)
