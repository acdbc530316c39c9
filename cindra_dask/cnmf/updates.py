"""HALS updates of CNMF footprints and activity from the data's sufficient statistics (CaImAn's ``hals``).

With the background stacked after the cells (A = [A_cells, b], K = cells + nb rows, C = [C; f]),
the model Y ≈ Aᵀ·C (here A is (K, P): one footprint per row) is refined by exact block-coordinate
steps, one component at a time:

    C[m] ← max(0, C[m] + (U[m] − V[m]·C) / V[m, m]),   U = A·Yᵀ (K, T),  V = A·Aᵀ (K, K);
    A[m] ← max(0, A[m] + (W[m] − G[m]·A) / G[m, m]) on the support of m,   W = C·Y (K, P),  G = C·Cᵀ.

U and W are sums over frames, so a graph computes them chunk by chunk (`project_frames`,
`correlate_frames`) and no task holds the movie. A cell's support is its footprint dilated by a
small box (CaImAn: 3 px); background rows have the whole patch.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

_EPSILON = float(np.finfo(np.float32).eps)


def project_frames(frames: np.ndarray, spatial: np.ndarray) -> np.ndarray:
    """(K, t) float64 A·Yᵀ of a chunk: each footprint's weighted sum of every frame.

    frames : (t, h, w); spatial : (K, h·w) footprints (row per component).
    """
    return spatial.astype(np.float64) @ np.asarray(frames, np.float64).reshape(frames.shape[0], -1).T


def correlate_frames(frames: np.ndarray, temporal: np.ndarray) -> np.ndarray:
    """(K, h·w) float64 C·Y of a chunk: each activity row's correlation with every pixel.

    frames : (t, h, w); temporal : (K, t) the activity over the same frames.
    """
    return temporal.astype(np.float64) @ np.asarray(frames, np.float64).reshape(frames.shape[0], -1)


def footprint_support(spatial: np.ndarray, *, dilation_px: int) -> np.ndarray:
    """(K, h, w) bool: each footprint's non-zero pixels dilated by a ``dilation_px`` box (CaImAn's ``bSiz``)."""
    if dilation_px <= 1:
        return spatial > 0
    smoothed = uniform_filter((spatial > 0).astype(np.float32), size=(1, dilation_px, dilation_px), mode="constant")
    return smoothed > 1e-6


def update_temporal(*, data_projection: np.ndarray, spatial_gram: np.ndarray, temporal: np.ndarray, iterations: int) -> np.ndarray:
    """HALS activity update (CaImAn's ``HALS4activity``).

    Parameters
    ----------
    data_projection : (K, T) U = A·Yᵀ.
    spatial_gram : (K, K) V = A·Aᵀ.
    temporal : (K, T) current activity (start).
    iterations : sweeps over the components.

    Returns
    -------
    (K, T) float64 non-negative activity.
    """
    activity = np.array(temporal, np.float64)
    gram = np.asarray(spatial_gram, np.float64) + _EPSILON
    for _ in range(iterations):
        for m in range(activity.shape[0]):
            activity[m] = np.maximum(activity[m] + (data_projection[m] - gram[m] @ activity) / gram[m, m], 0.0)
    return activity


def update_spatial(*, data_correlation: np.ndarray, temporal_gram: np.ndarray, spatial: np.ndarray, support: np.ndarray, iterations: int) -> np.ndarray:
    """HALS footprint update (CaImAn's ``HALS4shape``), each footprint kept inside its support.

    Parameters
    ----------
    data_correlation : (K, P) W = C·Y.
    temporal_gram : (K, K) G = C·Cᵀ.
    spatial : (K, P) current footprints (start); zero outside ``support``.
    support : (K, P) bool pixels each component may occupy.
    iterations : sweeps over the components.

    Returns
    -------
    (K, P) float64 non-negative footprints.
    """
    footprints = np.where(support, np.asarray(spatial, np.float64), 0.0)
    gram = np.asarray(temporal_gram, np.float64) + _EPSILON
    for _ in range(iterations):
        for m in range(footprints.shape[0]):
            pixels = np.flatnonzero(support[m])
            step = (data_correlation[m, pixels] - gram[m] @ footprints[:, pixels]) / gram[m, m]
            footprints[m, pixels] = np.maximum(footprints[m, pixels] + step, 0.0)
    return footprints


def unexplained_traces(*, data_projection: np.ndarray, spatial_gram: np.ndarray, temporal: np.ndarray) -> np.ndarray:
    """(K, T) float64 C + (U − V·C) / diag(V): each component's activity plus its share of the residual
    (CaImAn's ``C + YrA``, the trace component evaluation and deconvolution start from)."""
    gram = np.asarray(spatial_gram, np.float64)
    return temporal + (data_projection - gram @ temporal) / np.maximum(np.diag(gram), _EPSILON)[:, None]
