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
from cindra_dask.registration.rigid import build_rigid_plan, estimate_rigid_offsets

INITIAL_REFERENCE_FRAME_COUNT = 20
"""Frames averaged into the initial reference (and 1 + partners scored per frame)."""


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
    gram = flat @ flat.T
    norms = np.sqrt(np.maximum(np.diag(gram), np.finfo(np.float32).tiny))
    correlation = gram / np.outer(norms, norms)
    best_partners = -np.sort(-correlation, axis=1)[:, 1:INITIAL_REFERENCE_FRAME_COUNT]
    seed = int(np.argmax(best_partners.mean(axis=1))) if best_partners.size else 0
    chosen = np.argsort(-correlation[seed], kind="stable")[:INITIAL_REFERENCE_FRAME_COUNT]
    return flat[chosen].mean(axis=0).reshape(frames.shape[1:]).astype(np.float32)


def compute_reference_image(
    frames: np.ndarray,
    *,
    maximum_offset_fraction: float = 0.1,
    spatial_smoothing_sigma_px: float = 1.15,
    one_photon: bool = False,
    one_photon_highpass_window_px: int = 42,
    one_photon_presmoothing_window_px: int = 0,
    one_photon_edge_taper_px: float = 40.0,
    iteration_count: int = 8,
    workers: int = 1,
) -> np.ndarray:
    """Sharp reference image from evenly spaced sample frames.

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
    (H, W) float32 reference image (intensity units of the frames).
    """
    sample = np.asarray(frames, np.float32)
    if sample.ndim != 3 or len(sample) < 2:
        raise ValueError(f"need a (n ≥ 2, H, W) stack of frames, got shape {sample.shape}")

    def correlation_copy(images: np.ndarray) -> np.ndarray:
        if not one_photon:
            return images
        return one_photon_prefilter(images, highpass_window_px=one_photon_highpass_window_px, presmoothing_window_px=one_photon_presmoothing_window_px)

    correlation_sample = correlation_copy(sample)
    taper_slope_px = one_photon_edge_taper_px if one_photon else 3 * spatial_smoothing_sigma_px
    reference = pick_initial_reference(sample)
    for iteration in range(iteration_count):
        plan = build_rigid_plan(
            correlation_copy(reference),
            maximum_offset_fraction=maximum_offset_fraction,
            spatial_smoothing_sigma_px=spatial_smoothing_sigma_px,
            taper_slope_px=taper_slope_px,
            workers=workers,
        )
        estimate = estimate_rigid_offsets(correlation_sample, plan=plan, refine=iteration == iteration_count - 1, workers=workers)
        keep = max(2, int(len(sample) * (1 + iteration) / (2 * iteration_count)))
        chosen = np.argsort(-estimate.correlations, kind="stable")[1:keep]
        offsets = estimate.offsets[chosen].astype(np.float64)
        reference = warp_frames(sample[chosen], rigid_offsets=offsets - offsets.mean(axis=0)).mean(axis=0)
    return reference.astype(np.float32)
