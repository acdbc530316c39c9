"""Greedy initialisation of CNMF components on one patch (CaImAn's ``greedyROI``, CNMF for two-photon data).

The movie minus each pixel's temporal median is blurred with a Gaussian of the expected cell size
(``gSig``, window ``gSiz``, each 1-D kernel of unit L2 norm, zero padding), and the energy of the
blurred movie Σ_t ρ² is the seed map. Repeatedly: the pixel of largest energy is a centre; a rank-1
non-negative factorisation of the data in the ``gSiz`` window around it (a few power iterations from
the blurred trace at the centre) gives a footprint and a trace; that component is subtracted from
the data and, blurred, from ρ, and the energy is updated around it. What is left (plus the medians)
is factorised into ``nb`` non-negative background components.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import correlate1d

from cindra_dask.cnmf.updates import update_spatial, update_temporal

_EPSILON = float(np.finfo(np.float32).eps)
_SVD_OVERSAMPLING = 5
BACKGROUND_ITERATIONS = 10
"""HALS sweeps of the initial background factorisation (CaImAn's fixed NMF ``max_iter``)."""


class InitialComponents(NamedTuple):
    """Result of `greedy_components` on a (T, h, w) patch.

    Attributes
    ----------
    spatial : (K, h, w) float32 non-negative footprints, each of unit L2 norm.
    temporal : (K, T) float32 activity of each footprint (data units × footprint norm).
    centers_px : (K, 2) int64 (y, x) seed pixel of each component.
    background_spatial : (nb, h, w) float32 non-negative background footprints.
    background_temporal : (nb, T) float32 non-negative background activity.
    """

    spatial: np.ndarray
    temporal: np.ndarray
    centers_px: np.ndarray
    background_spatial: np.ndarray
    background_temporal: np.ndarray


def gaussian_kernel(*, sigma_px: float, size_px: int) -> np.ndarray:
    """(2·(size//2) + 1,) float32 Gaussian of standard deviation ``sigma_px``, scaled to unit L2 norm."""
    half = int(size_px) // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    kernel = np.exp(-(offsets**2) / (2.0 * float(sigma_px) ** 2))
    return (kernel / np.sqrt(kernel @ kernel)).astype(np.float32)


def blur_frames(frames: np.ndarray, *, sigma_px: tuple[float, float], size_px: tuple[int, int]) -> np.ndarray:
    """(T, h, w) float32 separable Gaussian correlation of every frame (zero outside the patch)."""
    blurred = correlate1d(np.asarray(frames, np.float32), gaussian_kernel(sigma_px=sigma_px[0], size_px=size_px[0]), axis=1, mode="constant")
    return correlate1d(blurred, gaussian_kernel(sigma_px=sigma_px[1], size_px=size_px[1]), axis=2, mode="constant")


def _rank_one_refinement(window: np.ndarray, trace: np.ndarray, *, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Footprint a ≥ 0 (unit norm) and trace c = Σ_pixels window·a from ``iterations`` power steps from ``trace``.

    window : (T, n) data; trace : (T,) start. Returns (n,) and (T,) float32.
    """
    footprint = np.zeros(window.shape[1], np.float32)
    for _ in range(iterations):
        footprint = np.maximum(trace @ window, 0.0)
        footprint /= np.float32(np.sqrt(footprint @ footprint + _EPSILON))
        trace = window @ footprint
    return footprint.astype(np.float32), np.asarray(trace, np.float32)


def nonnegative_background(residual: np.ndarray, *, background_count: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative rank-``background_count`` factorisation b·f of max(residual, 0) (CaImAn: NMF, ``nndsvdar`` start, 10 iterations).

    The start is NNDSVD of a randomised (seeded, so deterministic) rank-``background_count`` SVD: each
    singular pair's larger sign-consistent part; then ``iterations`` HALS sweeps.

    residual : (T, P) data. Returns (nb, P) footprints and (nb, T) activity, float32.
    """
    frame_count, pixel_count = residual.shape
    if background_count == 0:
        return np.zeros((0, pixel_count), np.float32), np.zeros((0, frame_count), np.float32)
    data = np.maximum(np.asarray(residual, np.float64), 0.0)
    probe = np.random.default_rng(0).standard_normal((pixel_count, background_count + _SVD_OVERSAMPLING))
    basis = np.linalg.qr(data @ (data.T @ (data @ probe)))[0]
    left, values, right = np.linalg.svd(basis.T @ data, full_matrices=False)
    left = basis @ left
    temporal = np.zeros((background_count, frame_count))
    spatial = np.zeros((background_count, pixel_count))
    for index in range(background_count):
        for sign in (1.0, -1.0):
            course, image = np.maximum(sign * left[:, index], 0.0), np.maximum(sign * right[index], 0.0)
            weight = np.linalg.norm(course) * np.linalg.norm(image)
            if weight > np.linalg.norm(temporal[index]) * np.linalg.norm(spatial[index]):
                temporal[index], spatial[index] = np.sqrt(values[index]) * course, np.sqrt(values[index]) * image
    all_pixels = np.ones_like(spatial, bool)
    for _ in range(iterations):
        temporal = update_temporal(data_projection=spatial @ data.T, spatial_gram=spatial @ spatial.T, temporal=temporal, iterations=1)
        spatial = update_spatial(data_correlation=temporal @ data, temporal_gram=temporal @ temporal.T, spatial=spatial, support=all_pixels, iterations=1)
    return spatial.astype(np.float32), temporal.astype(np.float32)


def greedy_components(
    frames: np.ndarray,
    *,
    component_count: int,
    gaussian_sigma_px: tuple[float, float],
    gaussian_size_px: tuple[int, int],
    refinement_iterations: int,
    background_count: int,
) -> InitialComponents:
    """CaImAn's greedy initialisation of ``component_count`` components and ``background_count`` background ones.

    Parameters
    ----------
    frames : (T, h, w) patch of the registered movie (any real dtype).
    component_count : components to find (``K``); fewer when the energy runs out.
    gaussian_sigma_px : (y, x) Gaussian standard deviation, px: the expected half-size (radius) of a cell (``gSig``).
    gaussian_size_px : (y, x) window of the kernel and of each footprint (``gSiz``; made odd).
    refinement_iterations : power iterations per component (CaImAn's ``nIter``, 5).
    background_count : background components (``nb``).
    """
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (T ≥ 2, h, w), got shape {frames.shape}")
    data = np.array(frames, np.float32)
    frame_count, height, width = data.shape
    medians = np.median(data, axis=0)
    data -= medians
    half = (int(gaussian_size_px[0]) // 2, int(gaussian_size_px[1]) // 2)
    size = (2 * half[0] + 1, 2 * half[1] + 1)
    blurred = blur_frames(data, sigma_px=gaussian_sigma_px, size_px=size)
    energy = np.einsum("tyx,tyx->yx", blurred, blurred, dtype=np.float64)
    spatial = np.zeros((component_count, height, width), np.float32)
    temporal = np.zeros((component_count, frame_count), np.float32)
    centers = np.zeros((component_count, 2), np.int64)
    found = 0
    for index in range(component_count):
        y, x = np.unravel_index(int(np.argmax(energy)), energy.shape)
        if energy[y, x] <= 0:
            break
        rows = slice(max(y - half[0], 0), min(y + half[0] + 1, height))
        columns = slice(max(x - half[1], 0), min(x + half[1] + 1, width))
        window = data[:, rows, columns]
        footprint, trace = _rank_one_refinement(window.reshape(frame_count, -1), blurred[:, y, x].copy(), iterations=refinement_iterations)
        footprint = footprint.reshape(window.shape[1:])
        window -= trace[:, None, None] * footprint[None]
        spatial[index, rows, columns] = footprint
        temporal[index] = trace
        centers[index] = (y, x)
        found = index + 1
        near_rows = slice(max(y - 2 * half[0], 0), min(y + 2 * half[0] + 1, height))
        near_columns = slice(max(x - 2 * half[1], 0), min(x + 2 * half[1] + 1, width))
        local = np.zeros((1, near_rows.stop - near_rows.start, near_columns.stop - near_columns.start), np.float32)
        local[0, rows.start - near_rows.start : rows.stop - near_rows.start, columns.start - near_columns.start : columns.stop - near_columns.start] = footprint
        blurred_footprint = blur_frames(local, sigma_px=gaussian_sigma_px, size_px=size)[0]
        blurred[:, near_rows, near_columns] -= trace[:, None, None] * blurred_footprint[None]
        near = blurred[:, near_rows, near_columns]
        energy[near_rows, near_columns] = np.einsum("tyx,tyx->yx", near, near, dtype=np.float64)
    data += medians
    background_spatial, background_temporal = nonnegative_background(data.reshape(frame_count, -1), background_count=background_count, iterations=BACKGROUND_ITERATIONS)
    return InitialComponents(
        spatial[:found],
        temporal[:found],
        centers[:found],
        background_spatial.reshape(background_count, height, width),
        background_temporal,
    )
