"""CNMF-E for one-photon data (Zhou et al. 2018; CaImAn's ``greedyROI_corr`` and ``compute_W``): kernels.

**Initialisation from the correlation × peak-to-noise image.** Every frame is filtered with a
Gaussian of the cell size (``gSig``, window ``gSiz``) minus its mean over the window, which removes
the smooth background; each pixel's temporal median is subtracted. A pixel's noise σ is the root of
its mean power spectral density over the upper half of the frequencies (CaImAn's ``get_noise_fft``);
its peak-to-noise ratio (PNR) is max_t / σ; its local correlation the mean Pearson r with its 8
neighbours of the filtered data with samples below 3σ set to 0. Repeatedly, the pixel of largest
correlation × PNR among those above ``min_corr`` and ``min_pnr`` is a seed: its filtered trace c is
the activity (no other seed within a quarter window of it, none within half a window of the
patch's edge: overlapping patches, ``stride`` ≥ gSiz / 2, cover those), its footprint the non-negative coefficient of c when the raw data of the ``gSiz``
window are regressed on c, a local background course and a constant; the filtered component is
subtracted and both images are updated around it.

**Ring-model background.** With the cells' contribution removed, X = Y − A·C, the background of
pixel p is B_p(t) = b0_p + Σ_q W_pq (X_q(t) − b0_q) over the pixels q on a ring of radius
``ring_size_factor`` · gSiz around p (b0 the temporal mean of X; W by least squares from the
(P, P) covariance of X). The background is the ring weights W (a sparse (P, P) matrix) and b0,
never a T × P array: Y − B = (I − W)(Y − b0) + W·A·C, and (I − W)(Y − b0) ≈ (I − W)·A·C is the
model the field-wide refit streams (`ring_residual_frames`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import correlate
from scipy.sparse import csr_matrix, identity

from cindra_dask.cnmf.initialization import InitialComponents

_EPSILON = float(np.finfo(np.float32).eps)
ACTIVE_NOISE_MULTIPLE = 3.0
"""Samples of the filtered data below this many σ count as 0 in the correlation image (CaImAn: 3)."""
BACKGROUND_CORRELATION = 0.3
"""Pixels of a seed's window whose filtered trace correlates below this with the seed's are its local background (CaImAn's ``max_corr_bg``)."""
_SOLVE_BATCH = 128
"""Pixels whose ring regressions are solved in one batched call (memory 8·batch·n² bytes for n ring pixels)."""
_RIDGE = 1e-6
"""Ridge of each ring regression, relative to the mean variance on the ring (keeps the solve defined on flat data)."""


class RingBackground(NamedTuple):
    """Ring-model background of a (h, w) field.

    Attributes
    ----------
    weights : (P, P) float32 CSR W, row p the weights of p's ring pixels (P = h·w, row-major).
    mean : (P,) float32 b0, the temporal mean of the data less the cells, data units.
    """

    weights: csr_matrix
    mean: np.ndarray


def centred_gaussian_kernel(*, sigma_px: tuple[float, float], size_px: tuple[int, int]) -> np.ndarray:
    """(sy, sx) float32 2-D Gaussian of standard deviation ``sigma_px`` on an odd window ``size_px``, minus its mean, unit L2 norm
    (CaImAn's ``gen_filter_kernel`` with ``center_psf``): smooth backgrounds filter to ≈ 0."""
    half = (int(size_px[0]) // 2, int(size_px[1]) // 2)
    rows, columns = np.mgrid[-half[0] : half[0] + 1, -half[1] : half[1] + 1].astype(np.float64)
    kernel = np.exp(-(rows**2) / (2 * float(sigma_px[0]) ** 2) - columns**2 / (2 * float(sigma_px[1]) ** 2))
    kernel -= kernel.mean()
    return (kernel / np.linalg.norm(kernel)).astype(np.float32)


def filter_frames(frames: np.ndarray, *, sigma_px: tuple[float, float], size_px: tuple[int, int]) -> np.ndarray:
    """(T, h, w) float32 frames correlated with `centred_gaussian_kernel` (reflected edges), each pixel's temporal median subtracted."""
    kernel = centred_gaussian_kernel(sigma_px=sigma_px, size_px=size_px)
    filtered = correlate(np.asarray(frames, np.float32), kernel[None], mode="reflect")
    filtered -= np.median(filtered, axis=0)
    return filtered


def spectral_noise(frames: np.ndarray) -> np.ndarray:
    """(h, w) float32 noise σ of each pixel's trace: √(mean |FFT|² / T over frequencies in (0.25, 0.5] of the sampling rate).

    frames : (T, h, w); white noise of standard deviation σ gives σ.
    """
    frame_count = frames.shape[0]
    spectrum = np.fft.rfft(np.asarray(frames, np.float32), axis=0)
    frequencies = np.fft.rfftfreq(frame_count)
    band = (frequencies > 0.25) & (frequencies <= 0.5)
    power = (spectrum[band].real ** 2 + spectrum[band].imag ** 2).mean(axis=0) / frame_count
    return np.sqrt(power).astype(np.float32)


def local_correlation(filtered: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(h, w) float32 mean Pearson r of each pixel with its (up to 8) neighbours, samples below 3σ set to 0.

    filtered : (T, h, w) `filter_frames` output; noise : (h, w) σ.
    """
    active = np.where(filtered >= ACTIVE_NOISE_MULTIPLE * noise, filtered, 0.0).astype(np.float32)
    active -= active.mean(axis=0)
    norms = np.sqrt(np.einsum("tyx,tyx->yx", active, active))
    active /= np.where(norms > 0, norms, np.inf)
    height, width = noise.shape
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.float64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            rows, columns = slice(max(dy, 0), height + min(dy, 0)), slice(max(dx, 0), width + min(dx, 0))
            shifted_rows, shifted_columns = slice(max(-dy, 0), height + min(-dy, 0)), slice(max(-dx, 0), width + min(-dx, 0))
            total[rows, columns] += np.einsum("tyx,tyx->yx", active[:, rows, columns], active[:, shifted_rows, shifted_columns])
            count[rows, columns] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def peak_to_noise(filtered: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(h, w) float32 max_t of the filtered data / σ (0 where σ = 0)."""
    return (filtered.max(axis=0) / np.where(noise > 0, noise, np.inf)).astype(np.float32)


def _seed_component(raw: np.ndarray, filtered: np.ndarray, trace: np.ndarray) -> np.ndarray:
    """(n,) float32 non-negative footprint of ``trace`` in a (T, n) raw window: its coefficient when each pixel is regressed on
    the trace, the mean raw course of the window's background pixels and a constant; 0 where the filtered trace correlates < 0.3."""
    centred = filtered - filtered.mean(axis=0)
    seed = trace - trace.mean()
    correlation = (seed @ centred) / np.maximum(np.linalg.norm(seed) * np.linalg.norm(centred, axis=0), _EPSILON)
    regressors = [trace, np.ones_like(trace)]
    background = correlation < BACKGROUND_CORRELATION
    if background.any():
        regressors.append(raw[:, background].mean(axis=1))
    coefficients = np.linalg.lstsq(np.column_stack(regressors).astype(np.float64), raw.astype(np.float64), rcond=None)[0][0]
    return np.where(correlation >= BACKGROUND_CORRELATION, np.maximum(coefficients, 0.0), 0.0).astype(np.float32)


def _update_images(filtered: np.ndarray, noise: np.ndarray, correlation: np.ndarray, pnr: np.ndarray, *, rows: slice, columns: slice) -> None:
    """Recompute ``correlation`` and ``pnr`` (in place) over the block ``rows`` × ``columns`` after ``filtered`` changed there."""
    height, width = noise.shape
    outer_rows, outer_columns = slice(max(rows.start - 1, 0), min(rows.stop + 1, height)), slice(max(columns.start - 1, 0), min(columns.stop + 1, width))
    block = local_correlation(filtered[:, outer_rows, outer_columns], noise[outer_rows, outer_columns])
    correlation[rows, columns] = block[rows.start - outer_rows.start : rows.stop - outer_rows.start, columns.start - outer_columns.start : columns.stop - outer_columns.start]
    pnr[rows, columns] = peak_to_noise(filtered[:, rows, columns], noise[rows, columns])


def correlation_pnr_components(
    frames: np.ndarray,
    *,
    component_count: int,
    gaussian_sigma_px: tuple[float, float],
    gaussian_size_px: tuple[int, int],
    min_correlation: float,
    min_peak_to_noise: float,
) -> InitialComponents:
    """CNMF-E initialisation of up to ``component_count`` components (see the module docstring); no background rows.

    Parameters
    ----------
    frames : (T, h, w) patch of the registered movie (any real dtype).
    component_count : most components (``K``); fewer when no pixel passes both thresholds.
    gaussian_sigma_px : (y, x) Gaussian standard deviation, px (``gSig``); gaussian_size_px : (y, x) window (``gSiz``, made odd).
    min_correlation : a seed's local correlation must exceed this (``min_corr``).
    min_peak_to_noise : a seed's peak-to-noise ratio must exceed this (``min_pnr``).

    Returns
    -------
    `InitialComponents` with unit-norm footprints, activity in data units × footprint norm, and
    (0, h, w), (0, T) background arrays.
    """
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (T ≥ 2, h, w), got shape {frames.shape}")
    raw = np.asarray(frames, np.float32)
    frame_count, height, width = raw.shape
    half = (int(gaussian_size_px[0]) // 2, int(gaussian_size_px[1]) // 2)
    size = (2 * half[0] + 1, 2 * half[1] + 1)
    kernel = centred_gaussian_kernel(sigma_px=gaussian_sigma_px, size_px=size)
    filtered = filter_frames(raw, sigma_px=gaussian_sigma_px, size_px=size)
    noise = spectral_noise(filtered)
    correlation, pnr = local_correlation(filtered, noise), peak_to_noise(filtered, noise)
    searched = np.ones((height, width), bool)  # no seed within half a window of the edge, where the filter sees the edge
    searched[half[0] : height - half[0], half[1] : width - half[1]] = False
    spatial = np.zeros((component_count, height, width), np.float32)
    temporal = np.zeros((component_count, frame_count), np.float32)
    centers = np.zeros((component_count, 2), np.int64)
    found = 0
    while found < component_count:
        score = np.where((correlation > min_correlation) & (pnr > min_peak_to_noise) & ~searched, correlation * pnr, -np.inf)
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        if not np.isfinite(score[y, x]):
            break
        searched[max(y - half[0] // 2, 0) : y + half[0] // 2 + 1, max(x - half[1] // 2, 0) : x + half[1] // 2 + 1] = True
        rows, columns = slice(max(y - half[0], 0), min(y + half[0] + 1, height)), slice(max(x - half[1], 0), min(x + half[1] + 1, width))
        trace = filtered[:, y, x].copy()
        footprint = _seed_component(raw[:, rows, columns].reshape(frame_count, -1), filtered[:, rows, columns].reshape(frame_count, -1), trace)
        norm = float(np.linalg.norm(footprint))
        if norm <= 0:
            continue
        spatial[found, rows, columns] = (footprint / norm).reshape(rows.stop - rows.start, columns.stop - columns.start)
        temporal[found] = trace * norm
        centers[found] = (y, x)
        near_rows = slice(max(y - 2 * half[0], 0), min(y + 2 * half[0] + 1, height))
        near_columns = slice(max(x - 2 * half[1], 0), min(x + 2 * half[1] + 1, width))
        local = np.zeros((near_rows.stop - near_rows.start, near_columns.stop - near_columns.start), np.float32)
        local[rows.start - near_rows.start : rows.stop - near_rows.start, columns.start - near_columns.start : columns.stop - near_columns.start] = (
            footprint.reshape(rows.stop - rows.start, columns.stop - columns.start)
        )
        filtered[:, near_rows, near_columns] -= trace[:, None, None] * correlate(local, kernel, mode="constant")[None]
        _update_images(filtered, noise, correlation, pnr, rows=near_rows, columns=near_columns)
        found += 1
    return InitialComponents(spatial[:found], temporal[:found], centers[:found], np.zeros((0, height, width), np.float32), np.zeros((0, frame_count), np.float32))


def ring_offsets(*, radius_px: float) -> np.ndarray:
    """(n, 2) int64 (dy, dx) of the pixels at a distance in [radius, radius + 1) px: the ring (CaImAn's ``compute_W`` ring)."""
    reach = int(np.ceil(radius_px)) + 1
    rows, columns = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    distance = np.hypot(rows, columns)
    on_ring = (distance >= radius_px) & (distance < radius_px + 1)
    return np.column_stack([rows[on_ring], columns[on_ring]]).astype(np.int64)


def ring_model(residual: np.ndarray, *, frame_shape: tuple[int, int], radius_px: float) -> RingBackground:
    """Ring weights W and mean b0 of the data less the cells (see the module docstring).

    Each pixel's weights solve the least squares of its centred trace on its ring pixels' (inside
    the field; none outside), from the (P, P) covariance of the data, so the memory is T·P + P².

    residual : (T, P) data less the cells' contribution, P = h·w row-major; radius_px : ring radius
    (``ring_size_factor`` · gSiz), px.
    """
    data = np.asarray(residual, np.float64)
    mean = data.mean(axis=0)
    centred = data - mean
    covariance = centred.T @ centred
    height, width = frame_shape
    offsets = ring_offsets(radius_px=radius_px)
    rows, columns = np.divmod(np.arange(height * width), width)
    ring_rows, ring_columns = rows[:, None] + offsets[:, 0], columns[:, None] + offsets[:, 1]
    inside = (ring_rows >= 0) & (ring_rows < height) & (ring_columns >= 0) & (ring_columns < width)
    neighbours = np.where(inside, ring_rows * width + ring_columns, 0)
    weights = np.zeros(inside.shape)
    for first in range(0, height * width, _SOLVE_BATCH):  # batched solves, the ring's outside entries as identity rows
        batch = slice(first, min(first + _SOLVE_BATCH, height * width))
        ring, mask = neighbours[batch], inside[batch]
        gram = covariance[ring[:, :, None], ring[:, None, :]] * (mask[:, :, None] & mask[:, None, :])
        ridge = _RIDGE * np.maximum(np.einsum("bii->b", gram) / np.maximum(mask.sum(axis=1), 1), _EPSILON)
        gram += np.eye(offsets.shape[0])[None] * np.where(mask, ridge[:, None], 1.0)[:, :, None]
        target = covariance[ring, np.arange(batch.start, batch.stop)[:, None]] * mask
        weights[batch] = np.linalg.solve(gram, target[:, :, None])[:, :, 0] * mask
    order = np.argsort(np.where(inside, neighbours, np.iinfo(np.int64).max), axis=1)
    counts = inside.sum(axis=1)
    kept = np.arange(offsets.shape[0])[None, :] < counts[:, None]
    indices = np.take_along_axis(neighbours, order, axis=1)[kept]
    values = np.take_along_axis(weights, order, axis=1)[kept]
    matrix = csr_matrix((values.astype(np.float32), indices, np.concatenate([[0], np.cumsum(counts)])), shape=(height * width, height * width))
    return RingBackground(matrix, mean.astype(np.float32))


def subtract_ring_background(frames: np.ndarray, *, ring: RingBackground, cells: np.ndarray | None) -> np.ndarray:
    """Frames less their ring-model background, Y − B = (Y − b0) − (Y − b0 − A·C)·Wᵀ, same shape as ``frames``, float32 (float64 in, float64 out).

    frames : (t, h, w) or (t, P); cells : the cells' contribution A·C over the same frames, (t, P), or
    None for (Y − b0)(I − W)ᵀ, the whitened data the field-wide refit projects.
    """
    flat = np.asarray(frames).reshape(frames.shape[0], -1)
    dtype = np.float64 if flat.dtype == np.float64 else np.float32
    centred = flat.astype(dtype) - ring.mean.astype(dtype)
    leaked = centred if cells is None else centred - cells
    return (centred - np.asarray(ring.weights.dot(leaked.T).T, dtype)).reshape(frames.shape)


def whitened_footprints(spatial: csr_matrix | np.ndarray, *, ring: RingBackground) -> csr_matrix:
    """(K, P) CSR footprints through the ring model, rows aᵀ(I − W)ᵀ: what a cell looks like in `subtract_ring_background`'s whitened data."""
    footprints = csr_matrix(spatial, dtype=np.float64)
    pixel_count = footprints.shape[1]
    return csr_matrix(footprints @ (identity(pixel_count, format="csr") - ring.weights.astype(np.float64)).T)
