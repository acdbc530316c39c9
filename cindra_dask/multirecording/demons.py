"""Diffeomorphic demons registration of recordings' images into one common space (cindra §4.2).

Conventions. A *sampling field* ``D`` (2, H, W) float32, (dy, dx) px, is defined on the grid of the
image it produces: ``warped(p) = source(p + D(p))``. Composition follows cindra:
``compose_fields(D, increment) = increment + D∘(x + increment)`` is the field of "first move by the
increment, then by D". Per recording the group result is

* ``forward`` on the common grid: ``common(c) = recording(c + forward(c))`` (recording → common
  space, used to carry masks and images into the common space), and
* ``backward`` on the recording grid: ``recording(r) = common(r + backward(r))`` (its inverse,
  used to project templates back into the recording).

Pair registration (`register_pair`) is cindra's groupwise demons for two images: both images move
towards their midpoint space, each iteration by one regularised symmetric demons step
(`pooled_demons_increment`) on a cubic B-spline knot grid of spacing
``((scale − 1) · grid_sampling_factor + 1) · final_grid_sampling_px`` whose knots are soft-limited
to ``spacing / 2.046392675 · min(deformation_limit · scale / spacing, 0.9)`` (the injectivity bound
of cubic B-splines); the step is added to the first image's field and subtracted from the second's
by composition. Scales: ``L`` pyramid levels, the smallest with ``2^(L−1) ≥ max(H, W) / 4``; the
coarsest is skipped and level ``l`` runs ``scale_sampling`` iterations with the scale falling
smoothly from ``2^(l+1)`` to ``2^l`` (Gaussian σ = scale px on an image subsampled by ``2^l``, never
below 16 px a side); bilinear interpolation except cubic for the last quarter of the finest level.

Groupwise space (`group_deformation`): cindra sums every pair's force into each image's field at
every iteration, which couples all pairs at every step. Here each unordered pair is registered on
its own (so pairs run as independent tasks) and the common space is the mean position: a pixel
``p`` of recording i maps to ``p + (1/N) Σ_{j≠i} u_{i→j}(p)``, where ``u_{i→j}`` carries recording
i's pixels to recording j's. To first order this is the fixed point of cindra's averaged forces;
the cost is the same N(N−1)/2 pair registrations.

Deliberate differences from cindra, each needed on simulated sessions (mean images of sessions
whose cells partly differ) to get the pairwise error from several pixels to about 0.1–0.2 px:

* images are contrast-normalised first (`normalize_contrast`), over their valid pixels only, and
  pixels outside a registration's valid crop exert no force;
* the demons force is pooled per knot before it is normalised (see `pooled_demons_increment`);
  cindra normalises per pixel and then fits the knots, so structureless pixels push as hard as
  edges;
* displacements are rescaled between pyramid levels (cindra's ``resize_field`` does not);
* edges are not frozen (a translation between sessions is legal), so every level contributes;
* Gaussian smoothing uses ``scipy.ndimage.gaussian_filter`` instead of Lindeberg's discrete kernel.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import numba
import numpy as np
from scipy import ndimage

INJECTIVITY_DIVISOR = 2.046392675
"""Knot displacements below spacing / this keep a cubic B-spline deformation injective (Choi & Lee)."""

MAXIMUM_LIMIT_FRACTION = 0.9
"""Upper bound of the injectivity fraction (cindra)."""

MINIMUM_LEVEL_SIDE_PX = 16
"""Pyramid images are never subsampled below this many pixels a side."""

CUBIC_FRACTION = 0.25
"""Share of the finest level's iterations that warp with cubic instead of bilinear interpolation."""

INVERSION_ITERATIONS = 30
"""Fixed-point iterations of `invert_field`."""

CONTRAST_CLIP = 4.0
"""`normalize_contrast` clips the locally normalised image to ± this many local deviations."""

DENOMINATOR_FLOOR = 0.04
"""Added to the pooled force denominator (images of unit variance), so flat, structureless regions
and coarse levels get small steps instead of contrast-independent, noise-driven ones."""

FULL_STEP_SPEED_FACTOR = 3.0
"""``speed_factor`` at which an iteration takes the full Gauss–Newton step (cindra's default)."""


class PairDeformation(NamedTuple):
    """Correspondence between two images found by `register_pair`.

    Attributes
    ----------
    first_to_second : (2, H, W) float32 (dy, dx) px on the first image's grid: pixel p of the first
        image shows the point that the second image shows at p + first_to_second(p).
    second_to_first : (2, H, W) float32, the same from the second image to the first.
    """

    first_to_second: np.ndarray
    second_to_first: np.ndarray


class GroupDeformation(NamedTuple):
    """One recording's maps to and from the common space.

    Attributes
    ----------
    forward : (2, H, W) float32 (dy, dx) px on the common grid: common(c) = recording(c + forward(c)).
    backward : (2, H, W) float32 (dy, dx) px on the recording grid: recording(r) = common(r + backward(r)).
    """

    forward: np.ndarray
    backward: np.ndarray


# ---------------------------------------------------------------------------------------------
# images and fields
# ---------------------------------------------------------------------------------------------


def normalize_contrast(image: np.ndarray, *, sigma_px: float, valid: np.ndarray | None = None) -> np.ndarray:
    """Remove the local background and equalise the local contrast of an image.

    ``r = m − G_σ(m)``; ``r /= sqrt(G_σ(r²))``, clipped to ±`CONTRAST_CLIP` and standardised to zero
    mean and unit variance over the valid pixels. Local means are normalised convolutions over the
    valid pixels only (``G_σ(m·v) / G_σ(v)``), so a registration's invalid border leaves no edge; invalid
    pixels are 0. Mean images of different sessions differ in brightness, bleaching and neuropil;
    after this only structure remains, which is what the demons force compares.

    Parameters
    ----------
    image : (H, W) real image (mean image, enhanced mean image or maximum projection).
    sigma_px : Gaussian σ (px) of the local background and contrast windows (> 0).
    valid : (H, W) bool pixels with data (None: all).

    Returns
    -------
    (H, W) float32 (all zeros for a constant image).
    """
    if sigma_px <= 0:
        raise ValueError("sigma_px must be > 0")
    weight = np.ones(image.shape) if valid is None else np.asarray(valid, np.float64)

    def local_mean(values: np.ndarray) -> np.ndarray:
        total = ndimage.gaussian_filter(values * weight, sigma_px, mode="nearest")
        norm = ndimage.gaussian_filter(weight, sigma_px, mode="nearest")
        return np.divide(total, norm, out=np.zeros_like(total), where=norm > 1e-6)

    values = np.asarray(image, np.float64)
    residual = (values - local_mean(values)) * weight
    deviation = np.sqrt(local_mean(residual * residual))
    positive = deviation[(deviation > 0) & (weight > 0)]
    scale = float(np.median(positive)) if positive.size else 1.0
    normalised = np.divide(residual, deviation + 1e-3 * scale, out=np.zeros_like(residual), where=deviation > 0)
    np.clip(normalised, -CONTRAST_CLIP, CONTRAST_CLIP, out=normalised)
    inside = weight > 0
    if inside.any():
        normalised[inside] -= normalised[inside].mean()
        spread = normalised[inside].std()
        if spread > 0:
            normalised /= spread
    normalised[~inside] = 0.0
    return normalised.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _identity_grid(shape: tuple[int, int]) -> np.ndarray:
    """(2, H, W) float64 pixel coordinates (row, column); cached, read-only."""
    grid = np.stack(np.meshgrid(np.arange(shape[0], dtype=np.float64), np.arange(shape[1], dtype=np.float64), indexing="ij"))
    grid.flags.writeable = False
    return grid


@numba.njit(cache=True)
def _bilinear(image: np.ndarray, row: float, column: float) -> float:  # pragma: no cover - numba
    """Bilinear sample of ``image`` at (row, column), positions clamped to the grid (edge repeated)."""
    height, width = image.shape
    row = min(max(row, 0.0), height - 1.0)
    column = min(max(column, 0.0), width - 1.0)
    top, left = int(row), int(column)
    bottom, right = min(top + 1, height - 1), min(left + 1, width - 1)
    down, across = row - top, column - left
    upper = (1.0 - across) * image[top, left] + across * image[top, right]
    lower = (1.0 - across) * image[bottom, left] + across * image[bottom, right]
    return (1.0 - down) * upper + down * lower


@numba.njit(cache=True)
def _warp_bilinear(image: np.ndarray, field: np.ndarray, output: np.ndarray) -> None:  # pragma: no cover - numba
    """output[y, x] = image(y + field[0, y, x], x + field[1, y, x])."""
    for y in range(output.shape[0]):
        for x in range(output.shape[1]):
            output[y, x] = _bilinear(image, y + field[0, y, x], x + field[1, y, x])


@numba.njit(cache=True)
def _compose_bilinear(field: np.ndarray, increment: np.ndarray, output: np.ndarray) -> None:  # pragma: no cover - numba
    """output = increment + field∘(x + increment), both components."""
    for y in range(output.shape[1]):
        for x in range(output.shape[2]):
            row, column = y + increment[0, y, x], x + increment[1, y, x]
            output[0, y, x] = increment[0, y, x] + _bilinear(field[0], row, column)
            output[1, y, x] = increment[1, y, x] + _bilinear(field[1], row, column)


@numba.njit(cache=True)
def _invert_bilinear(field: np.ndarray, iterations: int, inverse: np.ndarray) -> None:  # pragma: no cover - numba
    """inverse ← −field(x + inverse), ``iterations`` times per pixel (each pixel's fixed point is independent)."""
    for y in range(inverse.shape[1]):
        for x in range(inverse.shape[2]):
            dy, dx = -field[0, y, x], -field[1, y, x]
            for _ in range(iterations):
                row, column = y + dy, x + dx
                dy, dx = -_bilinear(field[0], row, column), -_bilinear(field[1], row, column)
            inverse[0, y, x], inverse[1, y, x] = dy, dx


def warp_image(image: np.ndarray, field: np.ndarray, *, order: int = 1) -> np.ndarray:
    """``warped(p) = image(p + field(p))``; samples outside repeat the nearest edge pixel.

    Parameters
    ----------
    image : (H, W) real.
    field : (2, H, W) sampling field (dy, dx) px on the image grid.
    order : 1 bilinear (numba), 3 cubic spline (``scipy.ndimage.map_coordinates``, mode "nearest").

    Returns
    -------
    (H, W) float32.
    """
    image32 = np.asarray(image, np.float32)
    if order == 1:
        warped = np.empty(image32.shape, np.float32)
        _warp_bilinear(image32, np.asarray(field, np.float32), warped)
        return warped
    coordinates = _identity_grid(tuple(image32.shape)) + field
    return ndimage.map_coordinates(image32, coordinates, order=order, mode="nearest", output=np.float32)


def compose_fields(field: np.ndarray, increment: np.ndarray) -> np.ndarray:
    """``increment + field∘(x + increment)``: move by ``increment`` first, then by ``field`` (bilinear).

    Parameters
    ----------
    field, increment : (2, H, W) sampling fields, px, on the same grid.

    Returns
    -------
    (2, H, W) float32.
    """
    composed = np.empty(field.shape, np.float32)
    _compose_bilinear(np.asarray(field, np.float32), np.asarray(increment, np.float32), composed)
    return composed


def invert_field(field: np.ndarray, *, iterations: int = INVERSION_ITERATIONS) -> np.ndarray:
    """The field ``G`` with ``x + G(x) = y`` wherever ``y + field(y) = x`` (fixed-point iteration).

    ``G(x) = −field(x + G(x))`` (bilinear); converges when the field's Jacobian norm is below 1
    (smooth, injective deformations). Positions outside the grid use the nearest edge value.

    Parameters
    ----------
    field : (2, H, W) sampling field, px.
    iterations : fixed-point iterations.

    Returns
    -------
    (2, H, W) float32.
    """
    inverse = np.empty(field.shape, np.float32)
    _invert_bilinear(np.asarray(field, np.float32), iterations, inverse)
    return inverse


def resample_field(field: np.ndarray, *, factor_from: int, factor_to: int, shape_to: tuple[int, int]) -> np.ndarray:
    """A field on a grid subsampled by ``factor_from`` carried to a grid subsampled by ``factor_to``.

    Pixel k of a grid subsampled by f sits at full-resolution coordinate ``k·f + (f − 1)/2``;
    displacements are in that grid's pixels and are rescaled by ``factor_from / factor_to``.

    Parameters
    ----------
    field : (2, h, w) field, px of its own grid.
    factor_from, factor_to : subsampling factors of the source and target grids (≥ 1).
    shape_to : (h', w') of the target grid.

    Returns
    -------
    (2, h', w') float32.
    """
    if factor_from == factor_to and tuple(field.shape[1:]) == tuple(shape_to):
        return np.asarray(field, np.float32)
    target = _identity_grid(tuple(shape_to)) * factor_to + (factor_to - 1) / 2
    coordinates = (target - (factor_from - 1) / 2) / factor_from
    return np.stack([ndimage.map_coordinates(np.asarray(component, np.float64), coordinates, order=1, mode="nearest") * (factor_from / factor_to) for component in field]).astype(np.float32)


def _subsample(image: np.ndarray, factor: int) -> np.ndarray:
    """(ceil(H/f), ceil(W/f)) float32 samples at ``k·f + (f − 1)/2`` (bilinear)."""
    if factor == 1:
        return np.asarray(image, np.float32)
    shape = (math.ceil(image.shape[0] / factor), math.ceil(image.shape[1] / factor))
    coordinates = _identity_grid(shape) * factor + (factor - 1) / 2
    return ndimage.map_coordinates(np.asarray(image, np.float32), coordinates, order=1, mode="nearest", output=np.float32)


# ---------------------------------------------------------------------------------------------
# B-spline regularisation and the demons force
# ---------------------------------------------------------------------------------------------


def bspline_basis(length: int, *, grid_spacing_px: float) -> np.ndarray:
    """Cubic B-spline basis of a knot grid over ``length`` samples.

    Knot k sits at ``(k − 1) · spacing``; there are ``int((length − 1) / spacing) + 4`` knots, so
    every sample has its four supporting knots.

    Returns
    -------
    (length, n_knots) float64; rows sum to 1.
    """
    knot_count = int((length - 1) / grid_spacing_px) + 4
    position = np.arange(length, dtype=np.float64) / grid_spacing_px
    first = np.floor(position).astype(np.int64)
    u = position - first
    weights = np.stack([(1 - u) ** 3, 3 * u**3 - 6 * u**2 + 4, -3 * u**3 + 3 * u**2 + 3 * u + 1, u**3], axis=1) / 6.0
    basis = np.zeros((length, knot_count))
    rows = np.arange(length)
    for offset in range(4):
        basis[rows, first + offset] = weights[:, offset]
    return basis


def soft_limit(values: np.ndarray, *, limit: float) -> np.ndarray:
    """``limit · (1 − e^{−|v|/limit}) · sign(v)``: identity for small values, never beyond ``limit``."""
    return limit * -np.expm1(-np.abs(values) / limit) * np.sign(values)


def pooled_demons_increment(
    first: np.ndarray,
    second: np.ndarray,
    *,
    weight: np.ndarray | None = None,
    grid_spacing_px: float,
    knot_limit_px: float,
    speed_factor: float,
    noise_factor: float,
) -> np.ndarray:
    """One regularised symmetric demons step: the first image's field increment (the second gets its negative).

    With ``d = I₁ − I₂`` and ``G = ∇I₁ + ∇I₂``, every knot k of a cubic B-spline grid gets
    ``c_k = −(speed_factor / 3) · Σ_p B_k(p) d(p) G(p) / Σ_p B_k(p) (|G(p)|² + 4α²d(p)² + ε)``
    (B_k: the knot's tensor-product basis weight times the pixel ``weight``, α = ``noise_factor``,
    ε = `DENOMINATOR_FLOOR`; a knot without weighted pixels gets 0),
    soft-limited to ``knot_limit_px`` and evaluated on the grid. This is cindra's symmetric demons
    force with its numerator and denominator pooled over each knot's support before dividing (a
    Gauss–Newton step of the pooled squared difference, full at cindra's default speed 3):
    cindra divides per pixel and then fits the knots, so a structureless pixel pushes as hard as an
    edge, which drifts on mean images of sessions whose cells differ.

    Parameters
    ----------
    first, second : (h, w) float32 images warped into the shared space.
    weight : (h, w) weight of each pixel in the pooled sums (0 where either image has no data); None: 1.
    grid_spacing_px : knot spacing in pixels of these images.
    knot_limit_px : soft limit of every knot value, px.
    speed_factor : cindra's force gain; 3 takes the full Gauss–Newton step.
    noise_factor : α.

    Returns
    -------
    (2, h, w) float32 (dy, dx) px.
    """
    difference = first - second
    gradient = np.stack(np.gradient(first))
    gradient += np.stack(np.gradient(second))
    denominator = (gradient**2).sum(axis=0) + (2 * noise_factor * difference) ** 2 + DENOMINATOR_FLOOR
    if weight is not None:
        difference = difference * weight
        denominator = denominator * weight
    rows = bspline_basis(first.shape[0], grid_spacing_px=grid_spacing_px)
    columns = bspline_basis(first.shape[1], grid_spacing_px=grid_spacing_px)
    pooled_denominator = rows.T @ denominator @ columns
    numerators = np.stack([rows.T @ (difference * component) @ columns for component in gradient])
    knots = np.divide(numerators, pooled_denominator, out=np.zeros_like(numerators), where=pooled_denominator > 1e-12)
    knots = soft_limit(-(speed_factor / FULL_STEP_SPEED_FACTOR) * knots, limit=knot_limit_px)
    return np.stack([rows @ component @ columns.T for component in knots]).astype(np.float32)


class _Level(NamedTuple):
    """One pyramid level: its index l, subsampling factor and base scale 2^l (σ of its images, px)."""

    index: int
    factor: int
    base_scale: float


def demons_levels(shape: tuple[int, int]) -> list[_Level]:
    """Pyramid levels visited, coarse to fine (the coarsest of cindra's L levels is skipped)."""
    level_count = 1
    while 2 ** (level_count - 1) < 0.25 * max(shape):
        level_count += 1
    maximum_power = max(0, int(math.floor(math.log2(max(1.0, min(shape) / MINIMUM_LEVEL_SIDE_PX)))))
    indices = range(level_count - 2, -1, -1) if level_count > 1 else range(0, -1, -1)
    return [_Level(index, 2 ** min(index, maximum_power), float(2**index)) for index in indices]


def _level_image(image: np.ndarray, level: _Level) -> np.ndarray:
    """The image (taken as scale 1) smoothed to the level's base scale and subsampled by its factor."""
    sigma_px = math.sqrt(level.base_scale**2 - 1.0)
    smoothed = ndimage.gaussian_filter(np.asarray(image, np.float32), sigma_px, mode="nearest") if sigma_px > 0 else np.asarray(image, np.float32)
    return _subsample(smoothed, level.factor)


def _level_mask(valid: np.ndarray | None, level: _Level, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 1 where a level's pixel and its neighbours lie wholly in the valid region, else 0."""
    if valid is None:
        return np.ones(shape, np.float32)
    inside = _subsample(np.asarray(valid, np.float32), level.factor) > 0.999
    return ndimage.binary_erosion(inside, iterations=1, border_value=1).astype(np.float32)


def _midpoint_fields(
    first: np.ndarray,
    second: np.ndarray,
    *,
    first_valid: np.ndarray | None,
    second_valid: np.ndarray | None,
    speed_factor: float,
    final_grid_sampling_px: float,
    grid_sampling_factor: float,
    scale_sampling: int,
    noise_factor: float,
    deformation_limit: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The two images' (2, H, W) sampling fields from their midpoint space (the pyramid loop of `register_pair`)."""
    shape = first.shape
    step = 0.5 ** (1.0 / scale_sampling)
    levels = demons_levels(shape)
    first_field = np.zeros((2, *shape), np.float32)
    second_field = np.zeros((2, *shape), np.float32)
    previous_factor = 1
    for position, level in enumerate(levels):
        first_level, second_level = _level_image(first, level), _level_image(second, level)
        level_shape = first_level.shape
        first_mask, second_mask = _level_mask(first_valid, level, level_shape), _level_mask(second_valid, level, level_shape)
        first_field = resample_field(first_field, factor_from=previous_factor, factor_to=level.factor, shape_to=level_shape)
        second_field = resample_field(second_field, factor_from=previous_factor, factor_to=level.factor, shape_to=level_shape)
        previous_factor = level.factor
        finest = position == len(levels) - 1
        scale = 2.0 ** (level.index + 1)
        for iteration in range(scale_sampling):
            scale = max(1.0, scale * step)
            extra_sigma = math.sqrt(max(scale**2 - level.base_scale**2, 0.0)) / level.factor
            first_image = ndimage.gaussian_filter(first_level, extra_sigma, mode="nearest") if extra_sigma > 0.05 else first_level
            second_image = ndimage.gaussian_filter(second_level, extra_sigma, mode="nearest") if extra_sigma > 0.05 else second_level
            order = 3 if finest and iteration >= (1.0 - CUBIC_FRACTION) * scale_sampling else 1
            weight = (warp_image(first_mask, first_field) > 0.999) & (warp_image(second_mask, second_field) > 0.999)
            spacing_px = ((scale - 1.0) * grid_sampling_factor + 1.0) * final_grid_sampling_px
            limit_fraction = min(deformation_limit * scale / spacing_px, MAXIMUM_LIMIT_FRACTION)
            level_spacing_px = spacing_px / level.factor
            increment = pooled_demons_increment(
                warp_image(first_image, first_field, order=order),
                warp_image(second_image, second_field, order=order),
                weight=weight.astype(np.float32),
                grid_spacing_px=level_spacing_px,
                knot_limit_px=level_spacing_px / INJECTIVITY_DIVISOR * limit_fraction,
                speed_factor=speed_factor,
                noise_factor=noise_factor,
            )
            first_field = compose_fields(first_field, increment)
            second_field = compose_fields(second_field, -increment)
    return (
        resample_field(first_field, factor_from=previous_factor, factor_to=1, shape_to=shape),
        resample_field(second_field, factor_from=previous_factor, factor_to=1, shape_to=shape),
    )


def register_pair(
    first: np.ndarray,
    second: np.ndarray,
    *,
    first_valid: np.ndarray | None = None,
    second_valid: np.ndarray | None = None,
    speed_factor: float,
    final_grid_sampling_px: float,
    grid_sampling_factor: float,
    scale_sampling: int,
    noise_factor: float = 1.0,
    deformation_limit: float = 1.0,
) -> PairDeformation:
    """Symmetric diffeomorphic demons registration of two images (see the module docstring).

    Single-threaded (BLAS limited to one thread), so the result is bit-identical on any worker.

    Parameters
    ----------
    first, second : (H, W) contrast-normalised images (`normalize_contrast`) of one shape.
    first_valid, second_valid : (H, W) bool pixels with data (e.g. inside the registration's valid
        crop); the force ignores pixels where either warped image has none. None: all pixels.
    speed_factor : demons force gain (cindra ``speed_factor``; 3 = full Gauss–Newton steps).
    final_grid_sampling_px : knot spacing at scale 1, px.
    grid_sampling_factor : growth of the knot spacing with scale, in (0, 1].
    scale_sampling : iterations per pyramid level.
    noise_factor : α of the force denominators (cindra's hidden default 1).
    deformation_limit : factor of the injectivity limit of every increment (cindra's hidden default 1).

    Returns
    -------
    PairDeformation with (2, H, W) float32 fields.
    """
    from threadpoolctl import threadpool_limits

    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"images must be 2-D and of one shape, got {first.shape} and {second.shape}")
    with threadpool_limits(limits=1):
        first_field, second_field = _midpoint_fields(
            first,
            second,
            first_valid=first_valid,
            second_valid=second_valid,
            speed_factor=speed_factor,
            final_grid_sampling_px=final_grid_sampling_px,
            grid_sampling_factor=grid_sampling_factor,
            scale_sampling=scale_sampling,
            noise_factor=noise_factor,
            deformation_limit=deformation_limit,
        )
    return PairDeformation(
        first_to_second=compose_fields(second_field, invert_field(first_field)),
        second_to_first=compose_fields(first_field, invert_field(second_field)),
    )


def group_deformation(to_others: Sequence[np.ndarray], *, recording_count: int) -> GroupDeformation:
    """One recording's forward and backward fields from its pairwise correspondences.

    Parameters
    ----------
    to_others : the (2, H, W) fields ``u_{i→j}`` (on recording i's grid) for every other recording j.
    recording_count : N (``len(to_others) == N − 1``).

    Returns
    -------
    GroupDeformation: backward = (1/N) Σ_j u_{i→j}; forward = its inverse.
    """
    if len(to_others) != recording_count - 1 or recording_count < 2:
        raise ValueError(f"expected {recording_count - 1} pairwise fields for {recording_count} recordings, got {len(to_others)}")
    backward = (np.sum(np.asarray(to_others, np.float64), axis=0) / recording_count).astype(np.float32)
    return GroupDeformation(forward=invert_field(backward), backward=backward)
