"""One-photon prefilter for the correlation copies of frames (cindra §3.2.10).

Widefield and one-photon frames carry a large, smooth background (out-of-focus glow, vignetting)
that is fixed to the sensor and would pull phase correlation towards zero shift. The copies used
to *estimate* offsets are therefore (optionally) box-smoothed and spatially high-passed; the
frames that are *shifted* stay untouched.

Both box filters average over the in-frame part of the window only (zero padding divided by the
box mean of ones), so the frame border is not darkened. cindra normalizes the high-pass that way
but not the pre-smoothing; normalizing both keeps the filtered frame free of a static edge ramp.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter


def _box_mean(frames: np.ndarray, window_px: int) -> np.ndarray:
    """Mean over the in-frame pixels of a ``window_px`` square box around each pixel, frame by frame."""
    size = (1, window_px, window_px)
    ones = np.ones((1, *frames.shape[1:]), np.float32)
    coverage = uniform_filter(ones, size=size, mode="constant")
    return uniform_filter(frames, size=size, mode="constant") / coverage


def one_photon_prefilter(frames: np.ndarray, *, highpass_window_px: int, presmoothing_window_px: int) -> np.ndarray:
    """High-pass (and optionally pre-smooth) frames for correlation only.

    Parameters
    ----------
    frames : (T, H, W) or (H, W) array, any real dtype.
    highpass_window_px : even box width (px); the box mean over this window is subtracted.
    presmoothing_window_px : even box width (px) of a smoothing applied first; 0 disables it.

    Returns
    -------
    (T, H, W) or (H, W) float32 filtered frames (same shape as ``frames``).
    """
    for name, window in (("highpass_window_px", highpass_window_px), ("presmoothing_window_px", presmoothing_window_px)):
        if window < 0 or window % 2:
            raise ValueError(f"{name} must be a non-negative even number of pixels, got {window}")
    if highpass_window_px == 0:
        raise ValueError("highpass_window_px must be positive")
    stack = np.asarray(frames, np.float32)
    single = stack.ndim == 2
    stack = stack[None] if single else stack
    if presmoothing_window_px:
        stack = _box_mean(stack, presmoothing_window_px)
    filtered = stack - _box_mean(stack, highpass_window_px)
    return filtered[0] if single else filtered
