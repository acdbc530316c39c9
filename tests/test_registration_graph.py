"""Registration graph: chunking-independence, simulator ground truth, two channels, one-photon, bad frames.

Each simulated recording is ingested through the pipeline and registered with the registration step
alone (detection and extraction are tested elsewhere). Accuracy figures print with ``pytest -s``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cindra_dask.evaluate import displacement_rms_error, offset_rms_error, registration_displacement
from cindra_dask.pipeline import run_plan
from cindra_dask.registration.graph import _gather_offsets, plan_registration_step, registration_graph
from cindra_dask.runner.plans import ReferenceImage
from cindra_dask.registration.kernels import apply_offsets, build_reference_plan, register_frames, to_source_dtype
from cindra_dask.registration.reference import compute_reference_image
from cindra_dask.simulate import SimulationParameters, load_ground_truth, nonrigid_displacement, simulate_recording, write_recording
from cindra_dask.store import FRAME_DIMENSIONS, RecordingStore
from tests.conftest import single_configuration

SMALL = {"frame_height": 96, "frame_width": 96, "cell_count": 20, "non_cell_count": 4, "file_count": 2}


def _requested(request: Any) -> Any:
    """A plan of one request that returns its result."""
    return (yield request)


def registered_store(tmp_path: Path, client: Any, *, simulation: dict[str, Any], **sections: Any) -> tuple[RecordingStore, Any, Path]:
    """Simulate, ingest and register plane 0; return the store, the truth and the data folder."""
    from cindra_dask.pipeline import preflight, run_single_recording

    data = write_recording(SimulationParameters(**simulation), tmp_path / "data")
    configuration = single_configuration(data, tmp_path / "out", **sections)
    run_single_recording(configuration, client=client, phases=["ingest"])
    context = preflight(configuration)
    run_plan(plan_registration_step(context, plane=0), client)
    return context.store, load_ground_truth(data / "ground_truth.npz"), data


def test_graph_equals_kernel_on_whole_array_under_odd_chunks(tmp_path: Path, client: Any) -> None:
    """97-frame chunks with a last chunk of 3, temporal smoothing (halos) and nonrigid blocks, two channels."""
    from cindra_dask.config import configuration_from_mapping

    parameters = SimulationParameters(frame_height=64, frame_width=64, frame_count=197, channel_count=2, cell_count=12, non_cell_count=2, seed=3)
    movie = simulate_recording(parameters).movie[0]  # (C, T, H, W)
    configuration = configuration_from_mapping(
        {"registration": {"temporal_smoothing_sigma": 1.5}, "nonrigid_registration": {"block_size": [32, 32]}, "main": {"two_channels": True}}, source="test"
    )
    store = RecordingStore(tmp_path / "parity.zarr")
    raw = [store.create_array(f"raw/{channel}", shape=movie[channel].shape, dtype=movie.dtype, chunks=(97, 64, 64), dimension_names=FRAME_DIMENSIONS) for channel in range(2)]
    registered = [store.create_array(f"registered/{channel}", shape=movie[channel].shape, dtype=movie.dtype, chunks=(97, 64, 64), dimension_names=FRAME_DIMENSIONS) for channel in range(2)]
    for channel in range(2):
        raw[channel][...] = movie[channel]
    sample = movie[0, ::2]
    reference = run_plan(_requested(ReferenceImage(raw[0], np.arange(0, 197, 2), configuration, bidirectional_correction=True)), client)
    from cindra_dask.registration.graph import plan_options

    whole_reference = compute_reference_image(sample, options=plan_options(configuration))
    assert np.abs(reference.reference_image - whole_reference).max() <= 1e-3 * np.abs(whole_reference).max()  # same steps, sums in another order
    offsets = _gather_offsets(client.gather(client.compute(registration_graph(raw, registered, reference=reference, configuration=configuration, alignment_channel=0))))

    plan = build_reference_plan(reference.reference_image, options=plan_options(configuration))
    whole = register_frames(movie[0], plan=plan)
    np.testing.assert_allclose(offsets.rigid_offsets, whole.rigid_offsets, atol=1e-4)
    np.testing.assert_allclose(offsets.nonrigid_offsets, whole.nonrigid_offsets, atol=1e-4)
    np.testing.assert_allclose(offsets.rigid_correlations, whole.rigid_correlations, rtol=1e-4)
    assert np.abs(registered[0][...].astype(np.int32) - to_source_dtype(whole.registered, movie.dtype)).max() <= 1
    second = apply_offsets(movie[1], rigid_offsets=whole.rigid_offsets, nonrigid_offsets=whole.nonrigid_offsets, layout=plan.layout)
    assert np.abs(registered[1][...].astype(np.int32) - to_source_dtype(second, movie.dtype)).max() <= 1
    assert len(offsets.rigid_offsets) == 197 and offsets.nonrigid_offsets.shape[1] == 9


def test_rigid_recording_recovered_to_five_hundredths_of_a_pixel_and_raw_unchanged(tmp_path: Path, client: Any) -> None:
    simulation = {**SMALL, "frame_height": 128, "frame_width": 128, "frame_count": 300, "nonrigid_shift_px": 0.0, "rigid_shift_px": 5.0, "bad_frame_count": 4, "seed": 5}
    from cindra_dask.pipeline import preflight, run_single_recording

    data = write_recording(SimulationParameters(**simulation), tmp_path / "data")
    configuration = single_configuration(data, tmp_path / "out", nonrigid_registration={"enabled": False})
    run_single_recording(configuration, client=client, phases=["ingest"])
    store = preflight(configuration).store
    tiff_digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(data.glob("*.tif"))}
    raw_digest = hashlib.sha256(store.read("plane_0/raw/channel_0").tobytes()).hexdigest()
    before = set(store.array_paths())
    run_plan(plan_registration_step(preflight(configuration), plane=0), client)
    truth = load_ground_truth(data / "ground_truth.npz")
    good = ~truth.bad_frames[0]
    error = offset_rms_error(store.read("plane_0/registration/rigid_offsets"), truth.rigid_offsets[0], valid=good)
    print(f"rigid RMS error {error:.4f} px")
    assert error <= 0.05
    flagged = store.read("plane_0/registration/bad_frames")
    assert flagged[truth.bad_frames[0]].all(), "every planted bad frame (blank or far-shifted) is flagged"
    assert flagged[good].sum() <= 2
    new = set(store.array_paths()) - before
    assert new and all(path.startswith(("plane_0/registered/", "plane_0/registration/")) for path in new)
    assert hashlib.sha256(store.read("plane_0/raw/channel_0").tobytes()).hexdigest() == raw_digest
    assert {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(data.glob("*.tif"))} == tiff_digests
    assert store.read("plane_0/registration/pc_shift_metrics").shape == (5, 3)


def test_nonrigid_residual_field_below_a_fifth_of_a_pixel(tmp_path: Path, client: Any) -> None:
    simulation = {**SMALL, "frame_height": 192, "frame_width": 192, "cell_count": 70, "non_cell_count": 15, "frame_count": 300, "nonrigid_shift_px": 2.0, "seed": 6}
    store, truth, _ = registered_store(tmp_path, client, simulation=simulation, nonrigid_registration={"block_size": [64, 64]}, registration={"registration_metric_principal_components": 0})
    frames = np.arange(0, 300, 3)
    rigid, blocks = store.read("plane_0/registration/rigid_offsets")[frames], store.read("plane_0/registration/nonrigid_offsets")[frames]
    estimated = registration_displacement(rigid_offsets=rigid, nonrigid_offsets=blocks, block_centers=store.read("plane_0/registration/block_centers"), frame_shape=(192, 192), block_size_px=(64, 64))
    planted = nonrigid_displacement(truth, 0, frames) + truth.rigid_offsets[0][frames][:, :, None, None]
    residual, uncorrected = displacement_rms_error(estimated, planted, margin_px=8), displacement_rms_error(np.zeros_like(planted), planted, margin_px=8)
    print(f"nonrigid residual field {residual:.3f} px RMS (uncorrected {uncorrected:.2f} px)")
    assert residual <= 0.2 < uncorrected


def test_bidirectional_offset_and_second_channel_alignment(tmp_path: Path, client: Any) -> None:
    """Planted odd-line offset, offsets from the structural channel, two-step registration (the second
    pass builds its reference from registered frames and must keep the first pass's line offset)."""
    simulation = {**SMALL, "frame_count": 200, "channel_count": 2, "bidirectional_offset_px": 2, "red_cell_fraction": 0.6, "nonrigid_shift_px": 0.0, "seed": 7}
    store, truth, _ = registered_store(
        tmp_path,
        client,
        simulation=simulation,
        main={"two_channels": True},
        registration={"compute_bidirectional_phase_offset": True, "align_by_first_channel": False, "two_step_registration": True},
        nonrigid_registration={"enabled": False},
    )
    attributes = dict(store.root()["plane_0/registration"].attrs)
    assert attributes["bidirectional_offset_px"] == 2
    assert attributes["alignment_channel"] == 1
    error = offset_rms_error(store.read("plane_0/registration/rigid_offsets"), truth.rigid_offsets[0])
    print(f"offsets from the structural channel: RMS error {error:.3f} px")
    assert error <= 0.1
    raw_functional = store.read("plane_0/raw/channel_0")
    moved = apply_offsets(raw_functional, rigid_offsets=store.read("plane_0/registration/rigid_offsets"), bidirectional_offset_px=2)
    assert np.abs(store.read("plane_0/registered/channel_0").astype(np.int32) - to_source_dtype(moved, raw_functional.dtype)).max() <= 1


def test_one_photon_prefiltering_registers_strong_background(tmp_path: Path, client: Any) -> None:
    """The glow is ~8× the cells' brightness and half of it is fixed to the sensor; without the
    prefilter the offsets are pulled towards zero. The high-pass window is set to ~1.7 cell diameters
    (cindra's default 42 px suits 512² fields; here 42 px leaves 0.33 px RMS, 20 px 0.17 px)."""
    simulation = {**SMALL, "frame_height": 128, "frame_width": 128, "frame_count": 200, "one_photon": True, "nonrigid_shift_px": 0.0, "seed": 8}
    store, truth, _ = registered_store(
        tmp_path, client, simulation=simulation, one_photon_registration={"enabled": True, "spatial_highpass_window": 20}, nonrigid_registration={"enabled": False}, registration={"registration_metric_principal_components": 0}
    )
    error = offset_rms_error(store.read("plane_0/registration/rigid_offsets"), truth.rigid_offsets[0])
    print(f"one-photon RMS error {error:.3f} px")
    assert error <= 0.2
