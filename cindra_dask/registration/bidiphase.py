"""Bidirectional (odd/even line) phase offset of resonant-scanner frames (cindra §3.2.2).

Convention (shared with the simulator): an offset ``b`` means odd rows (1, 3, 5, …) show the true
row moved left by ``b`` columns, ``raw[odd, x] = true[odd, x + b]``. `estimate_bidirectional_offset`
returns ``b``; `correct_bidirectional_offset` moves odd rows right by ``b``. Columns that the move
leaves without data repeat the row's nearest valid pixel (cindra fills them with zeros, which
puts a dark comb on the frame edge).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

_EPSILON = np.float32(1e-5)


def estimate_bidirectional_offset(frames: np.ndarray, *, maximum_offset_px: int = 10, workers: int = 1) -> int:
    """Integer odd/even row offset of a stack of frames.

    Parameters
    ----------
    frames : (n, H, W) array (H ≥ 2), e.g. the frames sampled for the reference image.
    maximum_offset_px : search radius (px).
    workers : threads for ``scipy.fft``.

    Returns
    -------
    Offset ``b`` in px (see module docstring for the sign).
    """
    stack = np.asarray(frames, np.float32)
    width = stack.shape[-1]
    odd = scipy.fft.rfft(stack[:, 1::2, :], axis=-1, workers=workers)
    even = scipy.fft.rfft(stack[:, 0::2, :][:, : odd.shape[1], :], axis=-1, workers=workers)
    odd /= np.abs(odd) + _EPSILON
    even /= np.abs(even) + _EPSILON
    # correlation[s] = Σ_x odd(x + s)·even(x): peaks at s = −b
    correlation = scipy.fft.irfft(odd * np.conj(even), n=width, axis=-1, workers=workers).mean(axis=(0, 1))
    radius = min(maximum_offset_px, (width - 1) // 2)
    lags = np.arange(-radius, radius + 1)
    return int(-lags[np.argmax(correlation[lags % width])])


def correct_bidirectional_offset(frames: np.ndarray, *, offset_px: int) -> np.ndarray:
    """Move odd rows right by ``offset_px`` columns (left if negative).

    Parameters
    ----------
    frames : (T, H, W) or (H, W) array.
    offset_px : the offset ``b`` from `estimate_bidirectional_offset`.

    Returns
    -------
    float32 copy of ``frames`` with odd rows moved; vacated columns repeat the nearest valid pixel.
    """
    corrected = np.array(frames, np.float32)
    if offset_px == 0:
        return corrected
    width = corrected.shape[-1]
    source_columns = np.clip(np.arange(width) - offset_px, 0, width - 1)
    corrected[..., 1::2, :] = corrected[..., 1::2, :][..., source_columns]
    return corrected
