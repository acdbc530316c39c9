"""Registration quality metrics from principal components of registered frames (cindra §3.2.11).

The caller passes a bounded, evenly spaced sample of registered frames (cindra: ≤ 2000, or ≤ 5000
for frames ≤ 700 px with T ≥ 5000), cropped to the valid range. Frames minus the mean image, each
then centred over its pixels (as ``sklearn.decomposition.PCA`` on pixels × frames does), are
decomposed by randomized SVD; for each component the mean of the ``min(300, n // 2)`` frames with
the lowest and with the highest projection form a low and a high image, and the high image is
registered to the low one with the recording's registration options. Residual motion shows up as
components whose extremes are shifted copies of each other.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from cindra_dask.registration.kernels import PlanOptions, build_reference_plan, register_frames

EXTREME_FRAME_COUNT = 300
"""Most frames averaged into each low / high image."""


class RegistrationMetrics(NamedTuple):
    """Principal-component registration metrics.

    Attributes
    ----------
    shift_metrics : (k, 3) float32 px per component: rigid offset magnitude, mean and maximum
        block offset magnitude (0 without nonrigid).
    low_images, high_images : (k, H, W) float32 extreme images per component.
    projections : (n, k) float32 frame projections on the components (unit norm per component).
    """

    shift_metrics: np.ndarray
    low_images: np.ndarray
    high_images: np.ndarray
    projections: np.ndarray


def registration_metrics(
    frames: np.ndarray,
    *,
    plan_options: PlanOptions,
    principal_component_count: int,
    seed: int,
    workers: int = 1,
) -> RegistrationMetrics:
    """Shift metrics of the top principal components of registered frames.

    Parameters
    ----------
    frames : (n, H, W) registered sample frames (n ≥ 2), cropped to the valid range.
    plan_options : registration options (``plan.options`` of the recording's plan); temporal
        smoothing is not used here.
    principal_component_count : k (≤ n − 1).
    seed : randomized SVD seed.
    workers : threads for ``scipy.fft``.

    Returns
    -------
    `RegistrationMetrics`.
    """
    from sklearn.utils.extmath import randomized_svd  # here, not at module level: sklearn costs workers 0.6 s to import

    sample = np.asarray(frames, np.float32)
    count = len(sample)
    components = min(principal_component_count, count - 1)
    if components < 1:
        raise ValueError(f"need at least 2 frames and 1 component, got {count} frames, {principal_component_count} components")
    centered = sample.reshape(count, -1) - sample.mean(axis=0).reshape(1, -1)
    centered -= centered.mean(axis=1, keepdims=True)
    with threadpool_limits(limits=1):  # bit-identical on any worker: BLAS sums in a thread-count-dependent order
        projections, _, _ = randomized_svd(centered, n_components=components, random_state=np.random.default_rng(seed).integers(2**31))
    del centered
    extreme_count = max(1, min(EXTREME_FRAME_COUNT, count // 2))
    options = plan_options._replace(temporal_smoothing_sigma_frames=0.0)
    low_images, high_images, shift_metrics = [], [], []
    for component in range(components):
        order = np.argsort(projections[:, component], kind="stable")
        low, high = sample[order[:extreme_count]].mean(axis=0), sample[order[-extreme_count:]].mean(axis=0)
        registered = register_frames(high[None], plan=build_reference_plan(low, options=options, workers=workers), workers=workers)
        block_magnitudes = np.hypot(registered.nonrigid_offsets[0, :, 0], registered.nonrigid_offsets[0, :, 1])
        shift_metrics.append([np.hypot(*registered.rigid_offsets[0]), block_magnitudes.mean() if block_magnitudes.size else 0.0, block_magnitudes.max(initial=0.0)])
        low_images.append(low)
        high_images.append(high)
    return RegistrationMetrics(
        np.asarray(shift_metrics, np.float32), np.asarray(low_images, np.float32), np.asarray(high_images, np.float32), projections.astype(np.float32)
    )
