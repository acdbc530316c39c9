"""Registration kernels against planted ground truth.

Images are synthetic: a smoothed random field (the classic sub-pixel test image) and a cell-like
scene (disc somata with dimmer nuclei on textured neuropil, blurred by a PSF). Motion is planted
with Fourier shifts (circular on the frame, or on a larger canvas that is then cropped so content
enters at the edges, as in real data) and nonrigid fields with cubic resampling; shot noise is
Poisson. Offsets use the project convention: frame(y, x) = reference(y − dy, x − dx), which is
what ``scipy.ndimage.fourier_shift(spectrum, (dy, dx))`` produces. The accuracy figures are
printed (``pytest -s``).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import fourier_shift, gaussian_filter, map_coordinates

from cindra_dask.registration.bad_frames import bad_frame_mask, valid_crop
from cindra_dask.registration.bidiphase import correct_bidirectional_offset, estimate_bidirectional_offset
from cindra_dask.registration.kernels import apply_offsets, build_reference_plan, register_frames, temporal_halo_frames
from cindra_dask.registration.metrics import registration_metrics
from cindra_dask.registration.nonrigid import block_layout, displacement_field
from cindra_dask.registration.one_photon import one_photon_prefilter
from cindra_dask.config import RegistrationSettings
from cindra_dask.registration.reference import compute_reference_image
from tests.conftest import registration_options


def smooth_random_image(size: int, *, seed: int) -> np.ndarray:
    """Smoothed random blobs, values 20…120."""
    rng = np.random.default_rng(seed)
    image = gaussian_filter(rng.standard_normal((size, size)), 2.0) + 0.5 * gaussian_filter(rng.standard_normal((size, size)), 8.0)
    image -= image.min()
    return (20 + 100 * image / image.max()).astype(np.float32)


def cell_scene(size: int, *, seed: int, photons: float) -> np.ndarray:
    """Somata (discs of radius 4–7 px, dimmer nucleus) on textured neuropil, blurred by a σ = 1 px PSF.

    Mean ≈ ``photons`` per pixel.
    """
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:size, :size].astype(np.float64)
    texture = gaussian_filter(rng.standard_normal((size, size)), 1.5)
    scene = 1.0 + 0.25 * texture / texture.std()
    for _ in range(size * size // 200):
        center_y, center_x = rng.uniform(0, size, 2)
        radius, brightness = rng.uniform(4, 7), rng.uniform(0.5, 2.0)
        distance = np.hypot(rows - center_y, columns - center_x)
        scene += brightness * (distance <= radius) * np.where(distance < 0.45 * radius, 0.4, 1.0)
    scene = gaussian_filter(np.maximum(scene, 0), 1.0)
    return (scene * photons / scene.mean()).astype(np.float32)


def fourier_shifted(image: np.ndarray, shifts: np.ndarray, *, crop: int = 0) -> np.ndarray:
    """(T, h, w) copies of ``image`` moved by +shifts (dy, dx), then cropped by ``crop`` px per side."""
    spectrum = np.fft.fft2(image)
    moved = np.stack([np.fft.ifft2(fourier_shift(spectrum, shift)).real for shift in shifts])
    return moved[:, crop : image.shape[0] - crop, crop : image.shape[1] - crop].astype(np.float32)


def offset_rms(estimated: np.ndarray, truth: np.ndarray | float) -> float:
    """RMS length (px) of the offset error vectors (last axis (dy, dx))."""
    return float(np.sqrt(np.mean(np.sum((np.asarray(estimated, np.float64) - truth) ** 2, axis=-1))))


PAD = 24
"""Canvas margin (px) around the 128² field of view of the shared cell scene."""
BAD_FRAME_OPTIONS = {"maximum_offset_fraction": RegistrationSettings().maximum_offset_fraction, "bad_frame_threshold": RegistrationSettings().bad_frame_threshold}
"""The configuration's bad-frame options."""


@pytest.fixture(scope="session")
def planted_shifts() -> np.ndarray:
    rng = np.random.default_rng(1)
    integer = np.array([[3.0, 0.0], [0.0, -2.0], [5.0, 4.0], [0.0, 0.0], [-6.0, -1.0]])
    return np.concatenate([integer, rng.uniform(-6, 6, size=(45, 2))])


@pytest.fixture(scope="session")
def scene() -> np.ndarray:
    """128² cell scene on a canvas padded by PAD px; mean 15 photons per pixel."""
    return cell_scene(128 + 2 * PAD, seed=3, photons=15.0)


# ------------------------------------------------------------------------------------------------
# Rigid
# ------------------------------------------------------------------------------------------------


def test_sign_convention_and_integer_shift() -> None:
    reference = smooth_random_image(128, seed=0)
    frame = np.roll(reference, (3, -2), axis=(0, 1))  # frame(y, x) = reference(y − 3, x + 2)
    plan = build_reference_plan(reference, options=registration_options(nonrigid=False))
    result = register_frames(frame[None], plan=plan)
    np.testing.assert_allclose(result.rigid_offsets[0], [3.0, -2.0], atol=0.005)
    interior = (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(result.registered[0][interior], reference[interior], atol=0.05)  # values 20…120


def test_subpixel_shifts_noise_free(planted_shifts: np.ndarray, scene: np.ndarray) -> None:
    # circular Fourier shifts of a smooth random image
    image = smooth_random_image(128, seed=0)
    plan = build_reference_plan(image, options=registration_options(nonrigid=False))
    circular_error = np.abs(register_frames(fourier_shifted(image, planted_shifts), plan=plan, workers=1).rigid_offsets - planted_shifts).max()
    # shifts on a larger canvas: content enters at the edges
    plan = build_reference_plan(scene[PAD:-PAD, PAD:-PAD], options=registration_options(nonrigid=False))
    cropped_error = np.abs(register_frames(fourier_shifted(scene, planted_shifts, crop=PAD), plan=plan).rigid_offsets - planted_shifts).max()
    print(f"noise-free max |error|: circular {circular_error:.4f} px, cropped {cropped_error:.4f} px")
    assert circular_error <= 0.02
    assert cropped_error <= 0.02


def test_subpixel_shifts_with_shot_noise(planted_shifts: np.ndarray, scene: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    frames = rng.poisson(np.maximum(fourier_shifted(scene, planted_shifts, crop=PAD), 0)).astype(np.float32)
    plan = build_reference_plan(scene[PAD:-PAD, PAD:-PAD], options=registration_options(nonrigid=False))
    rms = offset_rms(register_frames(frames, plan=plan).rigid_offsets, planted_shifts)
    print(f"Poisson noise (15 photons/px mean) rigid RMS error {rms:.4f} px")
    assert rms <= 0.05


def test_registered_frames_match_the_reference(scene: np.ndarray) -> None:
    shifts = np.array([[2.3, -1.7], [-4.6, 3.2], [0.5, 0.5]])
    reference = scene[PAD:-PAD, PAD:-PAD]
    result = register_frames(fourier_shifted(scene, shifts, crop=PAD), plan=build_reference_plan(reference, options=registration_options(nonrigid=False)))
    interior = (slice(8, -8), slice(8, -8))
    relative_error = np.sqrt(np.mean((result.registered[:, interior[0], interior[1]] - reference[interior]) ** 2)) / reference[interior].std()
    print(f"cubic warp: relative RMS difference to the reference {relative_error:.4f}")
    assert relative_error < 0.02


# ------------------------------------------------------------------------------------------------
# Nonrigid
# ------------------------------------------------------------------------------------------------


def test_block_layout_follows_cindra() -> None:
    layout = block_layout(frame_shape=(256, 200), block_size_px=(128, 256))
    assert layout.y_starts.tolist() == [0, 64, 128] and layout.x_starts.tolist() == [0]
    assert layout.block_shape == (128, 200) and layout.block_count == 3
    np.testing.assert_allclose(layout.centers[:, 0], [63.5, 127.5, 191.5])


@pytest.fixture(scope="session")
def nonrigid_movie() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, frames, truth): 8 frames of 192² with rigid ±3 px plus a smooth ~2 px field.

    ``truth[t]`` is the (2, H, W) displacement in output coordinates: registered(y, x) must sample
    the frame at (y, x) + truth, the fixed point of D_out(p) = D(p + D_out(p)).
    """
    size, pad = 192, 16
    canvas = cell_scene(size + 2 * pad, seed=4, photons=20.0)
    rng = np.random.default_rng(2)
    rows, columns = np.mgrid[:size, :size].astype(np.float64)
    frames, truth = [], []
    for _ in range(8):
        rigid = rng.uniform(-3, 3, 2)
        phases, amplitude = rng.uniform(0, 2 * np.pi, 4), rng.uniform(1.2, 2.0, 2)
        field_y = rigid[0] + amplitude[0] * np.sin(2 * np.pi * columns / 500 + phases[0]) * np.cos(2 * np.pi * rows / 600 + phases[1])
        field_x = rigid[1] + amplitude[1] * np.cos(2 * np.pi * rows / 500 + phases[2]) * np.sin(2 * np.pi * columns / 600 + phases[3])
        frames.append(map_coordinates(canvas, [rows + pad - field_y, columns + pad - field_x], order=3, mode="nearest"))
        output = np.stack([field_y, field_x])
        for _ in range(6):
            output = np.stack([map_coordinates(component, [rows + output[0], columns + output[1]], order=1, mode="nearest") for component in (field_y, field_x)])
        truth.append(output)
    return canvas[pad:-pad, pad:-pad], rng.poisson(np.maximum(np.array(frames), 0)).astype(np.float32), np.array(truth)


def test_nonrigid_field_is_recovered(nonrigid_movie: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    reference, frames, truth = nonrigid_movie
    plan = build_reference_plan(reference, options=registration_options(block_size_px=(64, 64)))
    result = register_frames(frames, plan=plan)
    layout = plan.layout
    (top, left), (bottom, right) = layout.centers.min(axis=0).astype(int), layout.centers.max(axis=0).astype(int)
    estimated = np.stack([displacement_field(rigid_offset=rigid, nonrigid_offsets=blocks, layout=layout) for rigid, blocks in zip(result.rigid_offsets, result.nonrigid_offsets)])
    between_centers = (estimated - truth)[:, :, top : bottom + 1, left : right + 1]
    field_rms = float(np.sqrt(np.mean(np.sum(between_centers**2, axis=1))))
    planted_rms = float(np.sqrt(np.mean(np.sum((truth - truth.mean(axis=(2, 3), keepdims=True)) ** 2, axis=1))))
    again = register_frames(result.registered, plan=plan)
    residual_rms = offset_rms(again.rigid_offsets[:, None, :] + again.nonrigid_offsets, 0.0)
    print(f"nonrigid: planted field RMS (minus rigid) {planted_rms:.3f} px, estimated field error RMS {field_rms:.3f} px, re-estimated residual RMS {residual_rms:.3f} px")
    assert planted_rms > 0.8
    assert field_rms <= 0.15
    assert residual_rms <= 0.15


def test_featureless_blocks_borrow_from_their_neighbours() -> None:
    size, pad = 192, 16
    canvas = cell_scene(size + 2 * pad, seed=12, photons=10.0)
    canvas[: pad + 80, : pad + 80] = canvas.mean()  # no structure in the top-left corner block
    rng = np.random.default_rng(4)
    shifts = rng.uniform(-3, 3, (12, 2))  # rigid motion only: every block offset should be ~0
    frames = rng.poisson(np.maximum(fourier_shifted(canvas, shifts, crop=pad), 0)).astype(np.float32)
    largest = {}
    for threshold in (1.2, 1e-9):  # cindra's default, and neighbour smoothing switched off
        plan = build_reference_plan(canvas[pad:-pad, pad:-pad], options=registration_options(block_size_px=(64, 64), signal_to_noise_threshold=threshold))
        result = register_frames(frames, plan=plan)
        largest[threshold] = np.hypot(result.nonrigid_offsets[..., 0], result.nonrigid_offsets[..., 1]).max(axis=0)
    print(f"largest block offset: corner block {largest[1.2][0]:.2f} px with SNR smoothing, {largest[1e-9][0]:.2f} px without; others ≤ {largest[1.2][1:].max():.2f} px")
    assert largest[1.2].max() < 0.4
    assert largest[1e-9][0] > 2.0


def test_second_channel_moves_like_the_first(nonrigid_movie: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    reference, frames, _ = nonrigid_movie
    plan = build_reference_plan(reference, options=registration_options(block_size_px=(96, 96)))
    result = register_frames(frames[:3], plan=plan, bidirectional_offset_px=1)
    moved = apply_offsets(
        frames[:3], rigid_offsets=result.rigid_offsets, nonrigid_offsets=result.nonrigid_offsets, layout=plan.layout, bidirectional_offset_px=1
    )
    np.testing.assert_array_equal(moved, result.registered)


def test_temporal_smoothing_does_not_depend_on_chunking() -> None:
    size, pad, frame_count = 64, 12, 197
    canvas = cell_scene(size + 2 * pad, seed=5, photons=5.0)
    rng = np.random.default_rng(3)
    shifts = np.cumsum(rng.normal(0, 0.3, (frame_count, 2)), axis=0)
    frames = rng.poisson(np.maximum(fourier_shifted(canvas, shifts, crop=pad), 0)).astype(np.float32)
    sigma = 1.5
    plan = build_reference_plan(canvas[pad:-pad, pad:-pad], options=registration_options(temporal_smoothing_sigma_frames=sigma, block_size_px=(32, 32)))
    halo = temporal_halo_frames(temporal_smoothing_sigma_frames=sigma, nonrigid=True)
    assert halo == 24
    whole = register_frames(frames, plan=plan)
    pieces = []
    for start, stop in [(0, 97), (97, 194), (194, 197)]:
        first, last = max(0, start - halo), min(frame_count, stop + halo)
        pieces.append(register_frames(frames[first:last], plan=plan, halo_before_frames=start - first, halo_after_frames=last - stop))
    for name in whole._fields:
        np.testing.assert_allclose(np.concatenate([getattr(piece, name) for piece in pieces]), getattr(whole, name), rtol=0, atol=1e-5, err_msg=name)
    unsmoothed = register_frames(frames, plan=build_reference_plan(canvas[pad:-pad, pad:-pad], options=registration_options(nonrigid=False)))
    assert np.abs(np.diff(whole.rigid_offsets, axis=0)).max() < np.abs(np.diff(unsmoothed.rigid_offsets, axis=0)).max()


# ------------------------------------------------------------------------------------------------
# Reference, bidirectional phase, one-photon
# ------------------------------------------------------------------------------------------------


def test_reference_from_shifted_noisy_copies_is_sharp(scene: np.ndarray) -> None:
    rng = np.random.default_rng(11)
    shifts = rng.uniform(-4, 4, size=(60, 2))
    frames = rng.poisson(np.maximum(fourier_shifted(scene, shifts, crop=PAD), 0)).astype(np.float32)
    truth = scene[PAD:-PAD, PAD:-PAD]
    reference = compute_reference_image(frames, options=registration_options())
    aligned = register_frames(reference[None], plan=build_reference_plan(truth, options=registration_options(nonrigid=False))).registered[0]
    interior = (slice(8, -8), slice(8, -8))
    correlation = np.corrcoef(aligned[interior].ravel(), truth[interior].ravel())[0, 1]
    blurred = np.corrcoef(frames.mean(axis=0)[interior].ravel(), truth[interior].ravel())[0, 1]
    print(f"reference correlation with the true image {correlation:.4f} (plain mean of the sample: {blurred:.4f})")
    assert correlation > 0.95
    assert blurred < correlation - 0.05


@pytest.mark.parametrize("planted", [2, -1])
def test_bidirectional_offset_is_recovered_and_corrected(planted: int) -> None:
    rng = np.random.default_rng(planted + 10)
    truth = np.stack([smooth_random_image(96, seed=seed) for seed in rng.integers(0, 1000, 6)])
    raw = truth.copy()
    raw[:, 1::2, :] = np.roll(truth[:, 1::2, :], -planted, axis=2)  # raw[odd, x] = true[odd, x + b]
    assert estimate_bidirectional_offset(raw) == planted
    corrected = correct_bidirectional_offset(raw, offset_px=planted)
    np.testing.assert_array_equal(corrected[:, :, 4:-4], truth[:, :, 4:-4])


def test_one_photon_prefilter_is_needed_under_a_strong_static_background() -> None:
    size = 128
    scene = cell_scene(size + 2 * PAD, seed=3, photons=200.0)
    rng = np.random.default_rng(5)
    shifts = rng.uniform(-5, 5, size=(30, 2))
    rows, columns = np.mgrid[:size, :size]
    texture = gaussian_filter(rng.standard_normal((size, size)), 30.0)
    glow = 3000.0 * np.exp(-((rows - 40) ** 2 + (columns - 80) ** 2) / (2 * 35.0**2)) + 900.0 * texture / texture.std()
    glow -= glow.min()  # fixed to the sensor; its contrast is ~20× the cells'
    frames = rng.poisson(fourier_shifted(scene, shifts, crop=PAD) + glow).astype(np.float32)
    reference = scene[PAD:-PAD, PAD:-PAD] + glow
    errors = {}
    for one_photon in (False, True):
        plan = build_reference_plan(reference, options=registration_options(one_photon=one_photon, nonrigid=False))
        errors[one_photon] = offset_rms(register_frames(frames, plan=plan).rigid_offsets, shifts)
    print(f"one-photon: RMS error without prefilter {errors[False]:.3f} px, with {errors[True]:.3f} px")
    assert errors[True] <= 0.2
    assert errors[False] > 0.3
    with pytest.raises(ValueError, match="even"):
        one_photon_prefilter(frames, highpass_window_px=41, presmoothing_window_px=0)


# ------------------------------------------------------------------------------------------------
# Bad frames, PC metrics
# ------------------------------------------------------------------------------------------------


def test_bad_frames_flag_blank_and_far_shifted_frames() -> None:
    size, pad, frame_count = 96, 40, 240
    canvas = cell_scene(size + 2 * pad, seed=6, photons=10.0)
    rng = np.random.default_rng(8)
    time = np.arange(frame_count)
    shifts = np.stack([2.0 * np.sin(2 * np.pi * time / 700), 1.5 * np.cos(2 * np.pi * time / 900)], axis=1) + rng.normal(0, 0.1, (frame_count, 2))
    blank, far = np.array([30, 31, 150]), np.array([70, 200])
    shifts[far] += [[0.16 * size, -0.12 * size], [-0.18 * size, 0.05 * size]]  # beyond the 10 % search radius
    ideal = fourier_shifted(canvas, shifts, crop=pad)
    ideal[blank] = canvas[pad:-pad, pad:-pad].min()
    frames = rng.poisson(np.maximum(ideal, 0)).astype(np.float32)
    reference = canvas[pad:-pad, pad:-pad]
    result = register_frames(frames, plan=build_reference_plan(reference, options=registration_options(nonrigid=False)))
    mask = bad_frame_mask(rigid_offsets=result.rigid_offsets, rigid_correlations=result.rigid_correlations, frame_shape=(size, size), user_bad_frames=[5], **BAD_FRAME_OPTIONS)
    assert np.flatnonzero(mask).tolist() == sorted([5, *blank, *far])
    clean = np.setdiff1d(time, np.concatenate([blank, far]))
    assert not bad_frame_mask(rigid_offsets=result.rigid_offsets[clean], rigid_correlations=result.rigid_correlations[clean], frame_shape=(size, size), **BAD_FRAME_OPTIONS).any()
    crop = valid_crop(rigid_offsets=result.rigid_offsets, bad_frames=mask, frame_shape=(size, size))
    margins = np.ceil(np.abs(shifts[~mask]).max(axis=0)).astype(int)  # from the truth: (3, 2)
    assert crop == ((margins[0], size - margins[0]), (margins[1], size - margins[1]))


def test_pc_metrics_measure_a_planted_residual_shift(scene: np.ndarray) -> None:
    rng = np.random.default_rng(9)
    frame_count = 120
    residual = np.array([1.2, -0.6])
    shifts = np.where((np.arange(frame_count) % 2 == 1)[:, None], residual, 0.0)
    frames = rng.poisson(np.maximum(fourier_shifted(scene, shifts, crop=PAD), 0)).astype(np.float32)
    plan = build_reference_plan(frames.mean(axis=0), options=registration_options(block_size_px=(64, 64)))
    metrics = registration_metrics(frames, plan_options=plan.options, principal_component_count=3, seed=0)
    print(f"PC metrics (planted {np.hypot(*residual):.3f} px): {np.round(metrics.shift_metrics, 3).tolist()}")
    assert metrics.shift_metrics.shape == (3, 3)
    assert abs(metrics.shift_metrics[0, 0] - np.hypot(*residual)) < 0.05
    assert metrics.shift_metrics[0, 2] < 0.15
    assert metrics.shift_metrics[1:, 0].max() < 0.3


def test_a_plan_does_not_depend_on_the_reference_buffer_alignment() -> None:
    """A reference a worker received from another process can start at an odd address; the plan must be the same.

    The reference image's initial pick is zero-mean, so the taper fill (its mean) is pure rounding, which
    numpy's float32 sum of an unaligned buffer of 256² values rounds differently.
    """
    reference = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32) * 100
    reference -= reference.mean()
    buffer = np.empty(reference.nbytes + 1, np.uint8)
    unaligned = buffer[1:].view(np.float32).reshape(reference.shape)
    unaligned[...] = reference
    assert not unaligned.flags.aligned
    options = registration_options(normalize_frames=False)  # as the reference image's passes (clipping would copy)
    aligned_plan, unaligned_plan = build_reference_plan(reference, options=options), build_reference_plan(unaligned, options=options)
    assert all(np.array_equal(a, b) for a, b in zip(aligned_plan.rigid, unaligned_plan.rigid))
