"""Rigid registration by phase correlation (cindra §3.2.5), refined to subpixel accuracy.

Also holds the correlation helpers nonrigid (per-block) registration shares. Frames given to
`estimate_rigid_offsets` are *correlation frames*: one-photon filtered and clipped by the caller
(`cindra_dask.registration.kernels.correlation_frames`).

Stage 1 — cindra's search (robust, integer):
    taper ``frame·mask + fill`` (separable sigmoid mask, ``fill = mean(ref)·(1 − mask)``), rFFT2,
    whitening ``F/(|F| + 1e-5)``, times the kernel ``conj(R)/(|R| + 1e-5) × G`` (G: spectrum of a
    unit-sum Gaussian of σ = spatial smoothing), optional Gaussian smoothing of these spectra over
    frames (the same as cindra's smoothing of correlation surfaces: the inverse FFT is linear),
    integer peak within ``maximum_offset_px``, plus a Newton step of the 2-D quadratic through the
    3×3 integer samples. The peak value is the reported correlation (cindra's measure).

Stage 2 — subpixel refinement (new; cindra is integer-only):
    the frame is moved back by the rounded stage-1 offset (an exact integer gather, edge rows and
    columns repeated), so the remaining offset is below 0.5 px. Frame and reference are multiplied
    by the *same* taper window and made zero-mean; their spectra are partly whitened
    (``F/|F|^¼``) and cross-multiplied, times G. The cross-power spectrum is phase-shifted back by
    the integer offset and the surface maximum is found by two Newton steps on 3×3 samples
    (spacing 0.25, then 0.05 px) evaluated exactly from the spectrum with the matrix-multiply DFT
    of Guizar-Sicairos et al. (2008). Why: full whitening gives equal weight to frequencies whose
    phase is dominated by the static taper and by content entering at the edges, which biased the
    peak by 0.05–0.2 px on images with little fine structure (measured on cropped Fourier-shifted
    smooth images); equally windowed, nearly aligned images have no such bias (≤ 0.01 px
    noise-free). No whitening is best for shot noise but lets a static background (one-photon glow)
    pull the peak towards zero; the exponent ¼ was the measured compromise (within 10 % of the
    noise optimum on cell-like images, and robust to a filtered one-photon background).

Offsets follow the project's sign convention: ``(dy, dx)`` means the frame shows the reference
moved by +dy rows and +dx columns, ``frame(y, x) ≈ reference(y − dy, x − dx)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter1d

WHITENING_EPSILON = np.float32(1e-5)
"""Added to spectrum magnitudes before dividing (cindra's value)."""
TEMPORAL_TRUNCATE = 4.0
"""Temporal Gaussian support in sigmas (``scipy.ndimage.gaussian_filter1d``'s default)."""
_SURFACE_BATCH_ELEMENTS = 2**23
"""Full correlation surfaces are computed this many float32 values (32 MiB) at a time."""
REFINEMENT_SPACINGS_PX = (0.25, 0.05)
"""Sample spacings (px) of the spectrum-evaluated Newton steps of stage 2."""


def aligned_float32(array: np.ndarray) -> np.ndarray:
    """``array`` as C-contiguous, aligned float32 (a copy only where it is not).

    Arrays a Dask worker receives from another process can start at an address that is not a
    multiple of 4; numpy then sums them through buffers in another order, so a float32 mean (the
    taper fill: the mean of a zero-mean reference is pure rounding) differed with where a task's
    inputs had travelled (measured: 1-ulp differences in 2.7 % of a reference image's pixels).
    """
    return np.require(array, np.float32, ["C", "A"])


class ClipRange(NamedTuple):
    """Intensity range frames are clipped to before correlating (reference 1st/99th percentiles)."""

    lower: float
    upper: float


class RigidPlan(NamedTuple):
    """Everything rigid correlation needs from a reference, computed once.

    Attributes
    ----------
    taper_mask : (H, W) float32 multiplicative edge taper (also the stage-2 window).
    taper_fill : (H, W) float32 ``mean(reference)·(1 − taper_mask)``, added after tapering.
    kernel_spectrum : (H, W//2 + 1) complex64 stage-1 kernel ``conj(R)/(|R| + ε) × G``.
    refinement_spectrum : (H, W//2 + 1) complex64 stage-2 kernel: conjugate quarter-whitened
        spectrum of the windowed, zero-mean reference (unit energy), times G.
    maximum_offset_px : search radius of the integer peak (px).
    """

    taper_mask: np.ndarray
    taper_fill: np.ndarray
    kernel_spectrum: np.ndarray
    refinement_spectrum: np.ndarray
    maximum_offset_px: int


class PeakEstimate(NamedTuple):
    """Correlation peaks.

    Attributes
    ----------
    offsets : (N, 2) float64 peak positions (dy, dx) in px relative to zero shift.
    values : (N,) float32 correlation at the peak.
    """

    offsets: np.ndarray
    values: np.ndarray


class RigidEstimate(NamedTuple):
    """Rigid registration result for a stack of frames.

    Attributes
    ----------
    offsets : (T, 2) float32 (dy, dx) in px (sign convention in the module docstring).
    correlations : (T,) float32 stage-1 phase-correlation peak values.
    """

    offsets: np.ndarray
    correlations: np.ndarray


def spatial_taper_mask(*, shape: tuple[int, int], slope_px: float) -> np.ndarray:
    """cindra's separable sigmoid edge taper.

    Per axis of length L, at distance d from the centre (L − 1)/2:
    ``1 / (1 + exp((d − ((L − 1)/2 − 2·slope)) / slope))`` — 0.5 at 2·slope px from the edge.

    Parameters
    ----------
    shape : (H, W) in px.
    slope_px : sigmoid slope (px); 0 gives an all-ones mask.

    Returns
    -------
    (H, W) float32 mask in (0, 1].
    """
    factors = []
    for length in shape:
        if slope_px <= 0:
            factors.append(np.ones(length))
            continue
        half = (length - 1) / 2
        distance = np.abs(np.arange(length) - half)
        factors.append(1.0 / (1.0 + np.exp((distance - (half - 2 * slope_px)) / slope_px)))
    return np.outer(factors[0], factors[1]).astype(np.float32)


def gaussian_spectrum(*, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Real spectrum (rFFT2 layout) of a unit-sum periodic Gaussian centred on sample 0.

    Parameters
    ----------
    shape : (H, W) in px.
    sigma_px : Gaussian sigma (px); 0 gives all ones (no smoothing).

    Returns
    -------
    (H, W//2 + 1) float32.
    """
    factors = []
    for axis, length in enumerate(shape):
        kept = length if axis == 0 else length // 2 + 1
        if sigma_px <= 0:
            factors.append(np.ones(kept))
            continue
        index = np.arange(length)
        distance = np.minimum(index, length - index)
        gaussian = np.exp(-0.5 * (distance / sigma_px) ** 2)
        factors.append(np.fft.fft(gaussian / gaussian.sum()).real[:kept])
    return np.outer(factors[0], factors[1]).astype(np.float32)


def phase_correlation_kernel(reference: np.ndarray, *, spatial_smoothing_sigma_px: float, workers: int = 1) -> np.ndarray:
    """Stage-1 kernel: whitened, conjugated, Gaussian-filtered reference spectrum.

    Parameters
    ----------
    reference : (..., h, w) image(s).
    spatial_smoothing_sigma_px : sigma (px) of the Gaussian filter G.
    workers : threads for ``scipy.fft``.

    Returns
    -------
    (..., h, w//2 + 1) complex64 ``conj(R)/(|R| + ε) × G``.
    """
    image = np.asarray(reference, np.float32)
    spectrum = np.conj(scipy.fft.rfft2(image, workers=workers))
    spectrum /= np.abs(spectrum) + WHITENING_EPSILON
    spectrum *= gaussian_spectrum(shape=image.shape[-2:], sigma_px=spatial_smoothing_sigma_px)
    return spectrum.astype(np.complex64)


@numba.njit(cache=True)
def _center_in_windows(images: np.ndarray, windows: np.ndarray) -> None:
    """In place: images[n] ← windows[n % B] · (images[n] − windows-weighted mean of images[n])."""
    window_count = windows.shape[0]
    for n in range(images.shape[0]):
        window = windows[n % window_count]
        weighted, total = 0.0, 0.0
        for i in range(images.shape[1]):
            for j in range(images.shape[2]):
                weighted += window[i, j] * images[n, i, j]
                total += window[i, j]
        mean = np.float32(weighted / total) if total > 0 else np.float32(0.0)
        for i in range(images.shape[1]):
            for j in range(images.shape[2]):
                images[n, i, j] = window[i, j] * (images[n, i, j] - mean)


@numba.njit(cache=True, fastmath=True)
def _quarter_whiten(spectra: np.ndarray) -> None:
    """In place, per spectrum: S ← S / (|S| + ε)^¼, then scaled to unit energy (zero spectra stay zero)."""
    for n in range(spectra.shape[0]):
        spectrum = spectra[n]
        energy = 0.0
        for i in range(spectrum.shape[0]):
            line = spectrum[i]
            for j in range(line.shape[0]):
                real, imaginary = line[j].real, line[j].imag
                magnitude = np.sqrt(real * real + imaginary * imaginary)
                scale = np.float32(1.0) / np.sqrt(np.sqrt(magnitude + WHITENING_EPSILON))
                line[j] = complex(real * scale, imaginary * scale)
                energy += (magnitude * scale) ** 2
        if energy > 0:
            norm = np.float32(1.0 / np.sqrt(energy))
            for i in range(spectrum.shape[0]):
                for j in range(spectrum.shape[1]):
                    spectrum[i, j] *= norm


def _windowed_spectra_in_place(images: np.ndarray, windows: np.ndarray, workers: int) -> np.ndarray:
    """`windowed_spectra` that overwrites ``images`` (a C-contiguous float32 array it may consume)."""
    _center_in_windows(images.reshape(-1, *images.shape[-2:]), np.ascontiguousarray(windows, np.float32))
    spectra = np.ascontiguousarray(scipy.fft.rfft2(images, workers=workers), np.complex64)
    _quarter_whiten(spectra.reshape(-1, *spectra.shape[-2:]))
    return spectra


def windowed_spectra(images: np.ndarray, *, windows: np.ndarray, workers: int = 1) -> np.ndarray:
    """Stage-2 spectra: rFFT2 of ``window·(image − window-weighted mean)``, quarter-whitened, unit energy.

    Parameters
    ----------
    images : (..., B, h, w) float32.
    windows : (B, h, w) non-negative weights, one per image along the B axis.
    workers : threads for ``scipy.fft``.

    Returns
    -------
    (..., B, h, w//2 + 1) complex64 ``S/|S|^¼`` scaled to unit energy; zero for constant images.
    """
    return _windowed_spectra_in_place(np.array(images, np.float32, order="C"), windows, workers)


def refinement_kernel(reference: np.ndarray, *, windows: np.ndarray, spatial_smoothing_sigma_px: float, workers: int = 1) -> np.ndarray:
    """Stage-2 kernel: ``conj(windowed_spectra(reference)) × G``.

    Parameters
    ----------
    reference : (B, h, w) reference image(s) (B = 1 for rigid, blocks for nonrigid).
    windows : (B, h, w) windows.
    spatial_smoothing_sigma_px : sigma (px) of the Gaussian filter G.
    workers : threads for ``scipy.fft``.

    Returns
    -------
    (B, h, w//2 + 1) complex64.
    """
    spectrum = np.conj(windowed_spectra(reference, windows=windows, workers=workers))
    return (spectrum * gaussian_spectrum(shape=np.shape(reference)[-2:], sigma_px=spatial_smoothing_sigma_px)).astype(np.complex64)


def clip_range(reference: np.ndarray) -> ClipRange:
    """1st and 99th percentiles of a (correlation-space) reference image."""
    lower, upper = np.percentile(np.asarray(reference, np.float32), [1.0, 99.0])
    return ClipRange(float(lower), float(upper))


def normalize_frames(frames: np.ndarray, *, clip: ClipRange) -> np.ndarray:
    """Clip frames to the reference's intensity range (cindra ``normalize_frames``); float32 copy."""
    return np.clip(np.asarray(frames, np.float32), np.float32(clip.lower), np.float32(clip.upper))


def maximum_offset_px(*, frame_shape: tuple[int, int], maximum_offset_fraction: float) -> int:
    """Rigid search radius: ``round(fraction · min(H, W))`` clamped to [1, min(H, W) // 2]."""
    shortest = min(frame_shape)
    return int(min(max(int(np.round(maximum_offset_fraction * shortest)), 1), shortest // 2))


def build_rigid_plan(
    correlation_reference: np.ndarray,
    *,
    maximum_offset_fraction: float,
    spatial_smoothing_sigma_px: float,
    taper_slope_px: float,
    workers: int = 1,
) -> RigidPlan:
    """Precompute the rigid correlation of frames against one reference.

    Parameters
    ----------
    correlation_reference : (H, W) reference in correlation space (one-photon filtered and
        clipped like the frames will be).
    maximum_offset_fraction : search radius as a fraction of min(H, W).
    spatial_smoothing_sigma_px : Gaussian sigma (px) of the kernels.
    taper_slope_px : sigmoid slope (px) of the edge taper (cindra: 3·σ for 2P, 40 for 1P).
    workers : threads for ``scipy.fft``.
    """
    reference = aligned_float32(correlation_reference)
    mask = spatial_taper_mask(shape=reference.shape, slope_px=taper_slope_px)
    return RigidPlan(
        taper_mask=mask,
        taper_fill=(np.float32(reference.mean()) * (1 - mask)).astype(np.float32),
        kernel_spectrum=phase_correlation_kernel(reference, spatial_smoothing_sigma_px=spatial_smoothing_sigma_px, workers=workers),
        refinement_spectrum=refinement_kernel(reference[None], windows=mask[None], spatial_smoothing_sigma_px=spatial_smoothing_sigma_px, workers=workers)[0],
        maximum_offset_px=maximum_offset_px(frame_shape=reference.shape, maximum_offset_fraction=maximum_offset_fraction),
    )


@numba.njit(cache=True, fastmath=True)
def _filter_and_move(spectra: np.ndarray, kernels: np.ndarray, offsets: np.ndarray, width: int, whiten: bool) -> None:
    """In place: spectra[a, b] ← (whitened) spectra[a, b] × kernels[b] × phase ramp moving the surface by offsets[a, b]."""
    outer, inner, height, half_width = spectra.shape
    column_ramp = np.empty(half_width, np.complex64)
    for a in range(outer):
        for b in range(inner):
            for j in range(half_width):
                column_ramp[j] = np.exp(-2j * np.pi * offsets[a, b, 1] * j / width)
            for i in range(height):
                frequency = i / height if i < (height + 1) // 2 else i / height - 1.0
                row_ramp = np.complex64(np.exp(-2j * np.pi * offsets[a, b, 0] * frequency))
                line, kernel = spectra[a, b, i], kernels[b, i]
                for j in range(half_width):
                    value = line[j]
                    if whiten:
                        value = value * (np.float32(1.0) / (np.sqrt(value.real * value.real + value.imag * value.imag) + WHITENING_EPSILON))
                    line[j] = value * (kernel[j] * column_ramp[j]) * row_ramp


def _filtered_and_moved(spectra: np.ndarray, *, kernel_spectra: np.ndarray, offsets: np.ndarray | None, width: int, whiten: bool) -> np.ndarray:
    """Apply `_filter_and_move` to (T, B, h, wh) spectra with (B, h, wh) kernels and (T, B, 2)-broadcastable offsets."""
    spectra = np.ascontiguousarray(spectra, np.complex64)
    moves = np.zeros((*spectra.shape[:2], 2)) if offsets is None else np.ascontiguousarray(np.broadcast_to(np.asarray(offsets, np.float64), (*spectra.shape[:2], 2)))
    _filter_and_move(spectra, np.ascontiguousarray(kernel_spectra, np.complex64), moves, int(width), whiten)
    return spectra


def cross_power_spectra(tapered_images: np.ndarray, *, kernel_spectra: np.ndarray, offsets: np.ndarray | None = None, workers: int = 1) -> np.ndarray:
    """Stage-1 whitened cross-power spectra of tapered images against their kernels.

    Parameters
    ----------
    tapered_images : (T, B, h, w) float32 (B = 1 for rigid, blocks for nonrigid).
    kernel_spectra : (B, h, w//2 + 1) complex64.
    offsets : (T, B, 2)-broadcastable px; each correlation surface is moved by its offset (an
        exact, circular phase ramp) so surfaces share coordinates before smoothing. None: no move.
    workers : threads for ``scipy.fft``.

    Returns
    -------
    (T, B, h, w//2 + 1) complex64.
    """
    spectra = scipy.fft.rfft2(tapered_images, workers=workers)
    return _filtered_and_moved(spectra, kernel_spectra=kernel_spectra, offsets=offsets, width=tapered_images.shape[-1], whiten=True)


def refinement_cross_power(
    images: np.ndarray,
    *,
    starts: np.ndarray,
    windows: np.ndarray,
    kernel_spectra: np.ndarray,
    offsets: np.ndarray,
    workers: int = 1,
) -> np.ndarray:
    """Stage-2 cross-power spectra of blocks cut where their content is, moved to common coordinates.

    Parameters
    ----------
    images : (T, H, W) float32 correlation frames.
    starts : (T, B, 2) integer top-left corners of the blocks to cut (edges repeated beyond the frame);
        the residual offset of each block's content should be below 0.5 px.
    windows : (B, h, w) the windows the kernels were built with.
    kernel_spectra : (B, h, w//2 + 1) complex64 from `refinement_kernel`.
    offsets : (T, B, 2)-broadcastable px added to the surfaces (the integer offsets of the cuts).
    workers : threads for ``scipy.fft``.

    Returns
    -------
    (T, B, h, w//2 + 1) complex64.
    """
    block_shape = windows.shape[-2:]
    spectra = _windowed_spectra_in_place(gather_blocks(images, starts=starts, block_shape=block_shape), windows, workers)
    return _filtered_and_moved(spectra, kernel_spectra=kernel_spectra, offsets=offsets, width=block_shape[1], whiten=False)


def temporal_radius_frames(*, temporal_smoothing_sigma_frames: float) -> int:
    """Frames on each side one temporal smoothing of correlation surfaces reads (0 if off)."""
    if temporal_smoothing_sigma_frames <= 0:
        return 0
    return int(TEMPORAL_TRUNCATE * temporal_smoothing_sigma_frames + 0.5)


def smooth_over_time(values: np.ndarray, *, temporal_smoothing_sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 (frames), reflecting at the ends; identity when sigma is 0."""
    if temporal_smoothing_sigma_frames <= 0:
        return values
    return gaussian_filter1d(values, temporal_smoothing_sigma_frames, axis=0, mode="reflect", truncate=TEMPORAL_TRUNCATE)


def correlation_windows(spectra: np.ndarray, *, shape: tuple[int, int], radius_px: int, workers: int = 1) -> np.ndarray:
    """Correlation surfaces around zero shift.

    Parameters
    ----------
    spectra : (..., h, w//2 + 1) complex64 cross-power spectra.
    shape : (h, w) of the correlated images.
    radius_px : half-size of the window (px).
    workers : threads for ``scipy.fft``.

    Returns
    -------
    (..., 2·radius + 1, 2·radius + 1) float32; element [..., radius + dy, radius + dx] is the
    correlation at shift (dy, dx) (wrapping around for radii beyond half the image).
    """
    lags = np.arange(-radius_px, radius_px + 1)
    rows, columns = lags % shape[0], lags % shape[1]
    windows = np.empty((*spectra.shape[:-2], len(lags), len(lags)), np.float32)
    batch = max(1, _SURFACE_BATCH_ELEMENTS // max(1, int(np.prod(spectra.shape[1:-2])) * shape[0] * shape[1]))
    for start in range(0, len(spectra), batch):  # bounded temporaries
        # the inverse along rows, then only the window's rows along columns (irfft2 without the unused rows)
        row_lines = scipy.fft.ifft(spectra[start : start + batch], axis=-2, workers=workers)[..., rows, :]
        windows[start : start + batch] = scipy.fft.irfft(row_lines, n=shape[1], axis=-1, workers=workers)[..., columns]
    return windows


def _newton_step(samples: np.ndarray, *, spacing_px: float, limit_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Maximum of the quadratic through 3×3 samples (spacing ``spacing_px``) around their centre.

    Returns the (N, 2) step (dy, dx), clamped to ±``limit_px`` per axis, and the (N,) value of the
    quadratic there. Where the 2-D quadratic has no maximum, each axis falls back to its own
    parabola (no step along an axis that is not concave).
    """
    s = samples.astype(np.float64)
    h = spacing_px
    gradient = np.stack([(s[:, 2, 1] - s[:, 0, 1]) / (2 * h), (s[:, 1, 2] - s[:, 1, 0]) / (2 * h)], axis=1)
    curvature_y = (s[:, 2, 1] - 2 * s[:, 1, 1] + s[:, 0, 1]) / h**2
    curvature_x = (s[:, 1, 2] - 2 * s[:, 1, 1] + s[:, 1, 0]) / h**2
    curvature_xy = (s[:, 2, 2] - s[:, 2, 0] - s[:, 0, 2] + s[:, 0, 0]) / (4 * h**2)
    determinant = curvature_y * curvature_x - curvature_xy**2
    concave = (curvature_y < 0) & (curvature_x < 0) & (determinant > 0)
    safe_determinant = np.where(concave, determinant, 1.0)
    joint_y = -(curvature_x * gradient[:, 0] - curvature_xy * gradient[:, 1]) / safe_determinant
    joint_x = -(curvature_y * gradient[:, 1] - curvature_xy * gradient[:, 0]) / safe_determinant
    joint = np.stack([joint_y, joint_x], axis=1)
    axis_curvature = np.stack([curvature_y, curvature_x], axis=1)
    separate = np.where(axis_curvature < 0, -gradient / np.where(axis_curvature < 0, axis_curvature, -1.0), 0.0)
    step = np.clip(np.where(concave[:, None], joint, separate), -limit_px, limit_px)
    if not concave.all():
        curvature_xy = np.where(concave, curvature_xy, 0.0)
    quadratic = curvature_y * step[:, 0] ** 2 + 2 * curvature_xy * step[:, 0] * step[:, 1] + curvature_x * step[:, 1] ** 2
    value = s[:, 1, 1] + (gradient * step).sum(axis=1) + 0.5 * quadratic
    return step, value


def coarse_peaks(windows: np.ndarray, *, search_radius_px: int) -> PeakEstimate:
    """Integer maxima of correlation windows plus a Newton step on the 3×3 integer samples.

    Parameters
    ----------
    windows : (N, 2R + 1, 2R + 1) float32 surfaces around zero shift (`correlation_windows`),
        R ≥ search_radius_px + 1.
    search_radius_px : the integer peak is searched within ±search_radius_px of zero shift.

    Returns
    -------
    `PeakEstimate`: offsets within half a pixel of the integer peak, and the quadratic's value.
    """
    count, size = windows.shape[0], windows.shape[1]
    center, radius = size // 2, search_radius_px
    if center < radius + 1:
        raise ValueError("windows must extend at least one pixel beyond the search radius")
    central = windows[:, center - radius : center + radius + 1, center - radius : center + radius + 1].reshape(count, -1)
    peak_rows, peak_columns = np.divmod(np.argmax(central, axis=1), 2 * radius + 1)
    peak_rows, peak_columns = peak_rows + center - radius, peak_columns + center - radius
    stencil = np.arange(-1, 2)
    neighbourhood = windows[np.arange(count)[:, None, None], (peak_rows[:, None] + stencil)[:, :, None], (peak_columns[:, None] + stencil)[:, None, :]]
    step, values = _newton_step(neighbourhood, spacing_px=1.0, limit_px=0.5)
    offsets = np.stack([peak_rows - center, peak_columns - center], axis=1).astype(np.float64) + step
    return PeakEstimate(offsets, values.astype(np.float32))


@numba.njit(cache=True, fastmath=True)
def _surface_samples(spectra: np.ndarray, rows: np.ndarray, columns: np.ndarray, width: int, samples: np.ndarray) -> None:
    """samples[n, a, b] = surface n at (rows[n, a], columns[n, b]) (3 × 3): a matrix-multiply DFT of its half spectrum.

    Exact evaluation of the band-limited surface off the pixel grid (Guizar-Sicairos et al. 2008);
    interior columns of the half spectrum count twice (Hermitian symmetry), DC and Nyquist once.
    """
    count, height, half_width = spectra.shape
    row_basis = np.empty((3, height), np.complex128)
    column_basis = np.empty((3, half_width), np.complex128)
    for n in range(count):
        for i in range(height):
            frequency = i / height if i < (height + 1) // 2 else i / height - 1.0
            for a in range(3):
                row_basis[a, i] = np.exp(2j * np.pi * rows[n, a] * frequency)
        for j in range(half_width):
            hermitian = 1.0 if j == 0 or (width % 2 == 0 and j == half_width - 1) else 2.0
            for b in range(3):
                column_basis[b, j] = hermitian * np.exp(2j * np.pi * columns[n, b] * j / width)
        total = np.zeros((3, 3), np.complex128)
        for i in range(height):
            line0, line1, line2 = 0j, 0j, 0j
            for j in range(half_width):
                value = spectra[n, i, j]
                line0 += value * column_basis[0, j]
                line1 += value * column_basis[1, j]
                line2 += value * column_basis[2, j]
            for a in range(3):
                total[a, 0] += row_basis[a, i] * line0
                total[a, 1] += row_basis[a, i] * line1
                total[a, 2] += row_basis[a, i] * line2
        for a in range(3):
            for b in range(3):
                samples[n, a, b] = total[a, b].real / (height * width)


def refine_peaks(spectra: np.ndarray, *, start_offsets: np.ndarray, shape: tuple[int, int]) -> PeakEstimate:
    """Maxima of band-limited correlation surfaces near starting points (stage 2).

    Parameters
    ----------
    spectra : (N, h, w//2 + 1) complex64 cross-power spectra.
    start_offsets : (N, 2) px, each within about half a pixel of its peak.
    shape : (h, w) of the correlated images.

    Returns
    -------
    `PeakEstimate` (offsets in px, surface values).
    """
    offsets = np.asarray(start_offsets, np.float64)
    values = np.zeros(len(offsets))
    spectra = np.ascontiguousarray(spectra, np.complex64)
    samples = np.empty((len(offsets), 3, 3))
    for spacing in REFINEMENT_SPACINGS_PX:
        stencil = spacing * np.arange(-1, 2)
        _surface_samples(spectra, offsets[:, :1] + stencil, offsets[:, 1:] + stencil, int(shape[1]), samples)
        step, values = _newton_step(samples, spacing_px=spacing, limit_px=2 * spacing)
        offsets = offsets + step
    return PeakEstimate(offsets, values.astype(np.float32))


@numba.njit(cache=True)
def _gather_blocks(images: np.ndarray, starts: np.ndarray, masks: np.ndarray, fills: np.ndarray, blocks: np.ndarray) -> None:
    """blocks[t, b, i, j] = images[t, clamp(row), clamp(column)]·masks[b % M, i, j] + fills[b % M, i, j]."""
    frame_count, block_count, block_height, block_width = blocks.shape
    height, width = images.shape[1], images.shape[2]
    mask_count = masks.shape[0]
    for t in range(frame_count):
        for b in range(block_count):
            mask, fill = masks[b % mask_count], fills[b % mask_count]
            first_column = starts[t, b, 1]
            inside = first_column >= 0 and first_column + block_width <= width
            for i in range(block_height):
                source = images[t, min(max(starts[t, b, 0] + i, 0), height - 1)]
                target, mask_line, fill_line = blocks[t, b, i], mask[i], fill[i]
                if inside:  # contiguous copy (vectorised)
                    for j in range(block_width):
                        target[j] = source[first_column + j] * mask_line[j] + fill_line[j]
                else:
                    for j in range(block_width):
                        target[j] = source[min(max(first_column + j, 0), width - 1)] * mask_line[j] + fill_line[j]


def gather_blocks(
    images: np.ndarray,
    *,
    starts: np.ndarray,
    block_shape: tuple[int, int],
    taper_masks: np.ndarray | None = None,
    taper_fills: np.ndarray | None = None,
) -> np.ndarray:
    """Cut (and optionally taper) blocks whose corners may lie anywhere; outside pixels repeat the edge.

    Parameters
    ----------
    images : (T, H, W) float32.
    starts : (T, B, 2) integer (row, column) of each block's top-left pixel.
    block_shape : (h, w).
    taper_masks, taper_fills : (B, h, w) float32; blocks become ``block·mask + fill``. None: no taper.

    Returns
    -------
    (T, B, h, w) float32.
    """
    starts = np.ascontiguousarray(starts, np.int64)
    masks = np.ones((1, *block_shape), np.float32) if taper_masks is None else np.ascontiguousarray(taper_masks, np.float32)
    fills = np.zeros((1, *block_shape), np.float32) if taper_fills is None else np.ascontiguousarray(taper_fills, np.float32)
    blocks = np.empty((*starts.shape[:2], *block_shape), np.float32)
    _gather_blocks(np.ascontiguousarray(images, np.float32), starts, masks, fills, blocks)
    return blocks


def estimate_rigid_offsets(
    correlation_frames: np.ndarray,
    *,
    plan: RigidPlan,
    temporal_smoothing_sigma_frames: float,
    refine: bool = True,
    workers: int = 1,
) -> RigidEstimate:
    """Subpixel rigid offsets of frames against the plan's reference.

    Parameters
    ----------
    correlation_frames : (T, H, W) frames in correlation space (one-photon filtered and clipped).
    plan : from `build_rigid_plan`.
    temporal_smoothing_sigma_frames : Gaussian sigma (frames) smoothing the correlation surfaces
        over frames, in both stages (reflecting at the ends of this stack). A frame's result then
        depends on the frames within ``2 · temporal_radius_frames(...)`` of it.
    refine : run the second (refinement) stage; False returns the coarse stage's offsets (faster,
        less precise: for the reference iterations, which only rank and pre-align frames).
    workers : threads for ``scipy.fft``.

    Returns
    -------
    `RigidEstimate` with (T, 2) offsets (px) and (T,) stage-1 correlations.
    """
    frames = np.asarray(correlation_frames, np.float32)
    shape = frames.shape[1:]
    unmoved = np.zeros((len(frames), 1, 2), np.int64)
    tapered = gather_blocks(frames, starts=unmoved, block_shape=shape, taper_masks=plan.taper_mask[None], taper_fills=plan.taper_fill[None])
    spectra = cross_power_spectra(tapered, kernel_spectra=plan.kernel_spectrum[None], workers=workers)[:, 0]
    del tapered
    spectra = smooth_over_time(spectra, temporal_smoothing_sigma_frames=temporal_smoothing_sigma_frames)
    windows = correlation_windows(spectra, shape=shape, radius_px=plan.maximum_offset_px + 1, workers=workers)
    del spectra
    coarse = coarse_peaks(windows, search_radius_px=plan.maximum_offset_px)
    if not refine:
        return RigidEstimate(coarse.offsets.astype(np.float32), coarse.values)
    integer_offsets = np.round(coarse.offsets).astype(np.int64)
    cuts = integer_offsets[:, None, :]
    refinement = refinement_cross_power(
        frames, starts=cuts, windows=plan.taper_mask[None], kernel_spectra=plan.refinement_spectrum[None], offsets=cuts, workers=workers
    )[:, 0]
    refinement = smooth_over_time(refinement, temporal_smoothing_sigma_frames=temporal_smoothing_sigma_frames)
    refined = refine_peaks(refinement, start_offsets=coarse.offsets, shape=shape)
    return RigidEstimate(refined.offsets.astype(np.float32), coarse.values)
