"""Merging of CNMF components that are one source (CaImAn's ``merge_components``).

Two components are linked when their footprints overlap (a_i·a_j > 0) and their activity correlates
above ``merge_thr``; every connected group of links becomes one component, the best rank-1
factorisation a·cᵀ (a ≥ 0, unit norm) of the group's summed contribution Σ_k a_k·c_kᵀ (alternating
least squares from the norm-weighted sum of the footprints, computed without forming the sum).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.sparse import csr_matrix, vstack
from scipy.sparse.csgraph import connected_components

_RANK_ONE_ITERATIONS = 10
_EPSILON = float(np.finfo(np.float32).eps)


class MergedComponents(NamedTuple):
    """Result of `merge_components`.

    Attributes
    ----------
    spatial : (K', P) float64 CSR footprints (groups merged, other components unchanged).
    temporal : (K', T) float64 activity.
    source_group : (K,) int64 row of the output each input component went into.
    merged_group_count : groups of two or more components that were merged.
    """

    spatial: np.ndarray
    temporal: np.ndarray
    source_group: np.ndarray
    merged_group_count: int


def activity_correlation(temporal: np.ndarray) -> np.ndarray:
    """(K, K) float64 Pearson r between activity rows (0 for a constant row)."""
    centred = np.asarray(temporal, np.float64) - np.mean(temporal, axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("kt,kt->k", centred, centred))
    scaled = centred / np.where(norms > 0, norms, np.inf)[:, None]
    return scaled @ scaled.T


def rank_one_merge(spatial: np.ndarray, temporal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a (P,) ≥ 0 of unit norm and c (T,) with a·cᵀ ≈ Σ_k spatial[k]ᵀ·temporal[k] (least squares, alternating).

    The footprint is kept non-negative; the trace is the least-squares one of that footprint, signed
    when the inputs are (traces with their residual share), non-negative for non-negative activity.
    spatial : (k, P); temporal : (k, T).
    """
    spatial = np.asarray(spatial, np.float64)
    temporal = np.asarray(temporal, np.float64)
    footprint = np.linalg.norm(temporal, axis=1) @ spatial
    footprint /= max(float(np.linalg.norm(footprint)), _EPSILON)
    trace = np.zeros(temporal.shape[1])
    for _ in range(_RANK_ONE_ITERATIONS):
        trace = (spatial @ footprint) @ temporal
        footprint = np.maximum((temporal @ trace) @ spatial, 0.0)
        footprint /= max(float(np.linalg.norm(footprint)), _EPSILON)
    return footprint, (spatial @ footprint) @ temporal


def merge_components(*, spatial: np.ndarray | csr_matrix, temporal: np.ndarray, correlation_threshold: float) -> MergedComponents:
    """Merge overlapping, correlated components.

    Parameters
    ----------
    spatial : (K, P) non-negative footprints, dense or CSR (a whole field's are sparse).
    temporal : (K, T) activity (CaImAn correlates C + its residual share; the merged trace is fitted to it too).
    correlation_threshold : activity correlation above which overlapping components merge (``merge_thr``).
    """
    footprints = csr_matrix(spatial, dtype=np.float64)
    temporal = np.asarray(temporal, np.float64)
    count = footprints.shape[0]
    if count == 0:
        return MergedComponents(footprints, temporal, np.zeros(0, np.int64), 0)
    support = (footprints > 0).astype(np.float64)
    overlapping = (support @ support.T).toarray() > 0
    linked = overlapping & (activity_correlation(temporal) > correlation_threshold)
    np.fill_diagonal(linked, False)
    group_count, labels = connected_components(csr_matrix(linked), directed=False)
    rows: list[csr_matrix] = []
    merged_temporal = np.zeros((group_count, temporal.shape[1]))
    merged = 0
    for group in range(group_count):
        members = np.flatnonzero(labels == group)
        if members.size == 1:
            rows.append(footprints[members[0]])
            merged_temporal[group] = temporal[members[0]]
            continue
        merged += 1
        footprint, merged_temporal[group] = rank_one_merge(footprints[members].toarray(), temporal[members])
        rows.append(csr_matrix(footprint[None]))
    return MergedComponents(vstack(rows, format="csr"), merged_temporal, labels.astype(np.int64), merged)
