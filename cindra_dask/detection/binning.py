"""Temporal binning of registered frames for detection (cindra §3.3.1).

Bins are fixed by frame index: bin ``b`` holds frames ``[b·bin_size, (b+1)·bin_size)``. A bin is the
mean of its *good* frames; a bin whose frames are all bad is dropped; the trailing incomplete bin
(``T % bin_size`` frames) is dropped. Because bins never straddle a multiple of ``bin_size``,
binning chunks whose lengths are multiples of ``bin_size`` and concatenating the results gives
exactly the bins of the whole-array computation.

This differs from cindra, which drops bad frames first (only in 500-frame batches that are mostly
good), bins the remaining frames consecutively and discards every batch's remainder; here a bad
frame shortens its own bin instead of shifting all later bins, and only the recording's last
remainder is lost.

`bins_per_chunk` gives a graph the output length of every bin-aligned chunk
(`cindra_dask.chunking.bin_aligned_chunks`) before computing it; `bin_chunk` bins one such chunk
and `concatenate_bins` joins the binned chunks into the movie detection works on.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cindra_dask.chunking import chunk_starts


class BinnedFrames(NamedTuple):
    """Binned movie.

    Attributes
    ----------
    frames : (n_bins, H, W) float32 mean of each kept bin's good frames.
    good_frame_counts : (n_bins,) int64 good frames averaged into each kept bin (≥ 1).
    """

    frames: np.ndarray
    good_frame_counts: np.ndarray


def bin_size_frames(*, frame_count: int, tau_s: float, frame_rate_hz: float, maximum_binned_frames: int, maximum_bin_duration_s: float) -> int:
    """Frames per temporal bin: ``max(1, T // maximum_binned_frames, round(min(tau, maximum_bin_duration)·fs))``;
    ``maximum_bin_duration_s`` 0 means no cap, i.e. cindra's ``round(tau·fs)`` (§3.3.1)."""
    if frame_count < 0 or tau_s <= 0 or frame_rate_hz <= 0 or maximum_binned_frames <= 0 or maximum_bin_duration_s < 0:
        raise ValueError("frame_count and maximum_bin_duration_s must be ≥ 0; tau_s, frame_rate_hz and maximum_binned_frames must be > 0")
    bin_duration_s = min(tau_s, maximum_bin_duration_s) if maximum_bin_duration_s > 0 else tau_s
    return int(max(1, frame_count // maximum_binned_frames, round(bin_duration_s * frame_rate_hz)))


def bin_good_frame_counts(good_frames: np.ndarray, *, bin_size: int) -> np.ndarray:
    """(T // bin_size,) int64 good frames in each complete bin; bins with 0 are dropped by `bin_frames`.

    Lets a graph builder know every chunk's output length before computing it.
    """
    if bin_size <= 0:
        raise ValueError("bin_size must be > 0")
    good = np.asarray(good_frames, dtype=bool)
    bin_count = good.shape[0] // bin_size
    return good[: bin_count * bin_size].reshape(bin_count, bin_size).sum(axis=1, dtype=np.int64)


def bin_frames(frames: np.ndarray, *, bin_size: int, good_frames: np.ndarray | None = None) -> BinnedFrames:
    """Mean of each complete bin of good frames.

    Parameters
    ----------
    frames : (T, H, W) any real dtype (raw integers or float32).
    bin_size : frames per bin (> 0).
    good_frames : (T,) bool, True for frames to use; None uses every frame.

    Returns
    -------
    BinnedFrames with float32 bins; bins without a good frame and the last ``T % bin_size`` frames
    are dropped.
    """
    if bin_size <= 0:
        raise ValueError("bin_size must be > 0")
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got shape {frames.shape}")
    frame_count, height, width = frames.shape
    good = np.ones(frame_count, dtype=bool) if good_frames is None else np.asarray(good_frames, dtype=bool)
    if good.shape != (frame_count,):
        raise ValueError(f"good_frames must have shape ({frame_count},), got {good.shape}")
    counts = bin_good_frame_counts(good, bin_size=bin_size)
    bin_count = counts.shape[0]
    sums = np.zeros((bin_count, height, width), dtype=np.float32)
    for offset in range(bin_size):
        # Frame `offset` of every bin at once: a strided view, added only where that frame is good.
        np.add(sums, frames[offset : bin_count * bin_size : bin_size], out=sums, where=good[offset : bin_count * bin_size : bin_size, None, None])
    kept = counts > 0
    binned = sums[kept] if not kept.all() else sums
    binned /= counts[kept].astype(np.float32)[:, None, None]
    return BinnedFrames(frames=binned, good_frame_counts=counts[kept])


def bins_per_chunk(good_frames: np.ndarray, chunks: tuple[int, ...], *, bin_size: int) -> tuple[int, ...]:
    """Bins each bin-aligned chunk yields (complete bins with at least one good frame)."""
    good = np.asarray(good_frames, bool)
    return tuple(int(np.count_nonzero(bin_good_frame_counts(good[start : start + length], bin_size=bin_size))) for start, length in zip(chunk_starts(chunks), chunks))


def bin_chunk(frames: np.ndarray, good_frames: np.ndarray, *, bin_size: int) -> np.ndarray:
    """(n_bins, H, W) float32 bins of one bin-aligned chunk of (t, H, W) frames; ``good_frames`` is (t, 1, 1) bool."""
    return bin_frames(frames, bin_size=bin_size, good_frames=good_frames[:, 0, 0]).frames


def concatenate_bins(chunks: list[np.ndarray]) -> np.ndarray:
    """The binned movie (n_bins, H, W) as one new C-contiguous float32 array (detection overwrites it)."""
    return np.concatenate(chunks, axis=0).astype(np.float32, copy=False)
