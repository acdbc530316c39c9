"""Smooth random signals and fields: standardised smoothed noise, and Gaussian-kernel interpolation of
knot values (the nonrigid motion field, a session's deformation)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage


class KnotGrid(NamedTuple):
    knots_y: np.ndarray
    knots_x: np.ndarray
    sigma_px: np.ndarray


def _knot_axis(length: int, spacing_px: float) -> tuple[np.ndarray, float]:
    count = max(2, int(round((length - 1) / spacing_px)) + 1)
    knots = np.linspace(0.0, length - 1.0, count)
    return knots, 0.6 * (length - 1.0) / (count - 1)


def build_knot_grid(height: int, width: int, spacing_px: float) -> KnotGrid:
    knots_y, sigma_y = _knot_axis(height, spacing_px)
    knots_x, sigma_x = _knot_axis(width, spacing_px)
    return KnotGrid(knots_y.astype(np.float32), knots_x.astype(np.float32), np.array([sigma_y, sigma_x], np.float32))


def interpolation_weights(positions: np.ndarray, knots: np.ndarray, sigma_px: float) -> np.ndarray:
    """(len(positions), len(knots)) float64 normalized Gaussian weights (rows sum to 1)."""
    exponent = -0.5 * ((np.asarray(positions, np.float64)[:, None] - np.asarray(knots, np.float64)[None, :]) / float(sigma_px)) ** 2
    weights = np.exp(exponent - exponent.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def evaluate_knots(values: np.ndarray, grid: KnotGrid, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Dense field (..., len(rows), len(columns)) float64 from knot values (..., gy, gx)."""
    row_weights = interpolation_weights(rows, grid.knots_y, grid.sigma_px[0])
    column_weights = interpolation_weights(columns, grid.knots_x, grid.sigma_px[1])
    return row_weights @ np.asarray(values, np.float64) @ column_weights.T


def lattice(length: int) -> np.ndarray:
    """Every 4th pixel along an axis plus the last: where field maxima are measured."""
    return np.union1d(np.arange(0, length, 4), [length - 1])


def standardized(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    centred = values - values.mean(axis=axis, keepdims=True)
    spread = centred.std(axis=axis, keepdims=True)
    return centred / np.where(spread > 0, spread, 1.0)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_samples: float) -> np.ndarray:
    """Standardized (along the last axis) Gaussian-filtered white noise, float64."""
    white = rng.standard_normal(shape)
    if sigma_samples > 0:
        white = ndimage.gaussian_filter1d(white, sigma_samples, axis=-1, mode="reflect")
    return standardized(white, axis=-1)
