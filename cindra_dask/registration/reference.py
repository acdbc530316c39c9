"""Reference image from a sample of frames (cindra §3.2.3–3.2.4).

The caller samples evenly spaced frames (cindra: ``linspace(0, T, 1 + min(500, T))[:-1]``) and
corrects their bidirectional offset first. The initial reference is the mean of the 20 frames most
correlated with the frame that is, on average, most correlated with its 19 best partners. Eight
refinement passes follow: rigid offsets of every sample frame against the current reference; the
``k = max(2, int(n·(i + 1)/16))`` best-correlated frames *except the best one* (cindra's ranks
1…k−1) are moved onto the reference and averaged, re-centred on their mean offset.

Differences from cindra, on purpose: offsets are subpixel and frames are moved by cubic
interpolation from the *original* sample each pass (cindra rolls the frames it already rolled, by
integers); the re-centring is folded into that one move. In one-photon mode only the correlation
copies are filtered and the averages are of unfiltered frames, so the returned reference is an
ordinary image (cindra returns the filtered one; the filters are linear, so the plan built from
this reference filters it to the same thing).
"""

from __future__ import annotations

import numpy as np

from cindra_dask.registration.nonrigid import warp_frames
from cindra_dask.registration.one_photon import one_photon_prefilter
from cindra_dask.registration.rigid import RigidPlan, build_rigid_plan, estimate_rigid_offsets

INITIAL_REFERENCE_FRAME_COUNT = 20
"""Frames averaged into the initial reference (and 1 + partners scored per frame)."""
REFINEMENT_ITERATIONS = 8
"""cindra's refinement passes."""


def initial_reference_indices(correlation_matrix: np.ndarray) -> np.ndarray:
    """Frames averaged into the initial reference, from the (n, n) correlation matrix of the sample.

    The seed is the frame whose 19 best partners correlate best with it on average; it and its
    partners (20 frames, seed included) are returned, most correlated first.
    """
    best_partners = -np.sort(-correlation_matrix, axis=1)[:, 1:INITIAL_REFERENCE_FRAME_COUNT]
    seed = int(np.argmax(best_partners.mean(axis=1))) if best_partners.size else 0
    return np.argsort(-correlation_matrix[seed], kind="stable")[:INITIAL_REFERENCE_FRAME_COUNT]


def correlation_matrix(gram: np.ndarray) -> np.ndarray:
    """(n, n) Pearson correlations from the Gram matrix of row-mean-subtracted flattened frames."""
    norms = np.sqrt(np.maximum(np.diag(gram), np.finfo(np.float32).tiny))
    return gram / np.outer(norms, norms)


def pick_initial_reference(frames: np.ndarray) -> np.ndarray:
    """cindra's (suite2p's) initial reference from the most mutually correlated frames.

    Parameters
    ----------
    frames : (n, H, W) sample frames.

    Returns
    -------
    (H, W) float32 mean of the chosen frames, each with its own mean subtracted.
    """
    count = len(frames)
    flat = np.asarray(frames, np.float32).reshape(count, -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    chosen = initial_reference_indices(correlation_matrix(flat @ flat.T))
    return flat[chosen].mean(axis=0).reshape(frames.shape[1:]).astype(np.float32)


def reference_rigid_plan(
    reference: np.ndarray,
    *,
    maximum_offset_fraction: float,
    spatial_smoothing_sigma_px: float,
    one_photon: bool,
    one_photon_highpass_window_px: int,
    one_photon_presmoothing_window_px: int,
    one_photon_edge_taper_px: float,
    workers: int = 1,
) -> RigidPlan:
    """The rigid plan one refinement pass aligns the sample against (one-photon filtered when asked)."""
    correlation_reference = reference
    if one_photon:
        correlation_reference = one_photon_prefilter(reference[None], highpass_window_px=one_photon_highpass_window_px, presmoothing_window_px=one_photon_presmoothing_window_px)[0]
    return build_rigid_plan(
        correlation_reference,
        maximum_offset_fraction=maximum_offset_fraction,
        spatial_smoothing_sigma_px=spatial_smoothing_sigma_px,
        taper_slope_px=one_photon_edge_taper_px if one_photon else 3 * spatial_smoothing_sigma_px,
        workers=workers,
    )


def refinement_frame_indices(correlations: np.ndarray, *, iteration: int, iteration_count: int) -> np.ndarray:
    """cindra's ranks 1…k−1 of the sample by correlation, k = max(2, int(n·(i + 1)/(2·iterations)))."""
    keep = max(2, int(len(correlations) * (1 + iteration) / (2 * iteration_count)))
    return np.argsort(-np.asarray(correlations), kind="stable")[1:keep]


def aligned_sum(frames: np.ndarray, *, rigid_offsets: np.ndarray) -> np.ndarray:
    """(H, W) float64 sum of frames moved back by ``rigid_offsets`` (T, 2) px (cubic interpolation)."""
    if len(frames) == 0:
        return np.zeros(frames.shape[1:], np.float64)
    return warp_frames(frames, rigid_offsets=rigid_offsets).sum(axis=0, dtype=np.float64)


def compute_reference_image(
    frames: np.ndarray,
    *,
    maximum_offset_fraction: float = 0.1,
    spatial_smoothing_sigma_px: float = 1.15,
    one_photon: bool = False,
    one_photon_highpass_window_px: int = 42,
    one_photon_presmoothing_window_px: int = 0,
    one_photon_edge_taper_px: float = 40.0,
    iteration_count: int = REFINEMENT_ITERATIONS,
    workers: int = 1,
) -> np.ndarray:
    """Sharp reference image from evenly spaced sample frames (in one process).

    Parameters
    ----------
    frames : (n, H, W) sample frames (n ≥ 2), bidirectionally corrected.
    maximum_offset_fraction : rigid search radius as a fraction of min(H, W).
    spatial_smoothing_sigma_px : Gaussian sigma (px) of the correlation kernel; taper slope 3σ.
    one_photon, one_photon_highpass_window_px, one_photon_presmoothing_window_px,
    one_photon_edge_taper_px : one-photon prefilter of the correlation copies (see
        `cindra_dask.registration.one_photon`) and its taper slope (px).
    iteration_count : refinement passes (cindra: 8).
    workers : threads for ``scipy.fft``.

    Returns
    -------
    (H, W) float32 reference image (intensity units of the frames). The Dask version,
    `cindra_dask.registration.graph.cluster_reference_image`, runs the same steps over chunks.
    """
    sample = np.asarray(frames, np.float32)
    if sample.ndim != 3 or len(sample) < 2:
        raise ValueError(f"need a (n ≥ 2, H, W) stack of frames, got shape {sample.shape}")
    plan_options = {
        "maximum_offset_fraction": maximum_offset_fraction,
        "spatial_smoothing_sigma_px": spatial_smoothing_sigma_px,
        "one_photon": one_photon,
        "one_photon_highpass_window_px": one_photon_highpass_window_px,
        "one_photon_presmoothing_window_px": one_photon_presmoothing_window_px,
        "one_photon_edge_taper_px": one_photon_edge_taper_px,
    }
    correlation_sample = sample
    if one_photon:
        correlation_sample = one_photon_prefilter(sample, highpass_window_px=one_photon_highpass_window_px, presmoothing_window_px=one_photon_presmoothing_window_px)
    reference = pick_initial_reference(sample)
    for iteration in range(iteration_count):
        plan = reference_rigid_plan(reference, workers=workers, **plan_options)
        estimate = estimate_rigid_offsets(correlation_sample, plan=plan, refine=iteration == iteration_count - 1, workers=workers)
        chosen = refinement_frame_indices(estimate.correlations, iteration=iteration, iteration_count=iteration_count)
        offsets = estimate.offsets[chosen].astype(np.float64)
        reference = (aligned_sum(sample[chosen], rigid_offsets=offsets - offsets.mean(axis=0)) / len(chosen)).astype(np.float32)
    return reference
