"""Output manifest: checksums that stream, verification, reset and clean of a store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from cindra_dask.config import configuration_to_yaml
from cindra_dask.errors import OutputError
from cindra_dask.manifest import MANIFEST_FILE_NAME, array_checksum, read_manifest, verify_store, write_manifest
from cindra_dask.runner.maintenance import clean_store, reset_store
from cindra_dask.rois import RaggedRois
from cindra_dask.store import RecordingStore
from tests.conftest import single_configuration


class SyntheticStore(NamedTuple):
    """A store holding every DESIGN §3 array of a small two-plane recording (no pipeline run).

    Attributes
    ----------
    path : the ``.zarr`` folder.
    rigid_offsets : (planes, T, 2) f4 planted (dy, dx): frame t = reference rolled by (+dy, +dx).
    rois : per plane, the ragged masks written.
    is_cell : per plane, (n,) bool classification written.
    """

    path: Path
    rigid_offsets: np.ndarray
    rois: list[RaggedRois]
    is_cell: list[np.ndarray]


FRAMES, HEIGHT, WIDTH, PLANES, CHUNK_FRAMES = 60, 32, 40, 2, 16
ROI_CENTERS = ((8, 8), (8, 30), (20, 14), (24, 32), (16, 22))


def _disc(center: tuple[int, int], radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = yy**2 + xx**2 <= radius**2
    ypix, xpix = yy[inside] + center[0], xx[inside] + center[1]
    lam = np.exp(-(yy[inside] ** 2 + xx[inside] ** 2) / (2.0 * radius**2)).astype(np.float32)
    return ypix.astype(np.int32), xpix.astype(np.int32), lam


def write_synthetic_store(directory: Path, *, name: str = "synthetic") -> SyntheticStore:
    """Write a complete two-plane store directly with `RecordingStore` (DESIGN §3 layout)."""
    rng = np.random.default_rng(7)
    directory.mkdir(parents=True, exist_ok=True)
    tiffs = directory / "tiffs"
    tiffs.mkdir(exist_ok=True)
    (tiffs / "recording_1.tif").write_bytes(b"placeholder")
    store = RecordingStore(directory / f"{name}.zarr")
    configuration = single_configuration(tiffs, directory, main={"tau": 0.7}, nonrigid_registration={"block_size": [16, 16]})
    store.update_attributes(
        acquisition={"frame_rate": 30.0, "plane_number": PLANES, "channel_number": 1, "roi_number": 1, "roi_lines": [], "roi_x_coordinates": [], "roi_y_coordinates": []},
        configuration=configuration_to_yaml(configuration),
        tiff_directory=str(tiffs),
        tiff_files=["recording_1.tif"],
        frames_per_plane=FRAMES,
        planes=[{"index": plane, "physical_plane": plane, "row_start": 0, "row_stop": HEIGHT, "y_offset": 0.0, "x_offset": 0.0} for plane in range(PLANES)],
        bad_frame_indices=[3],
    )
    started = store.mark_phase_started("ingest", config_hash="h-ingest")
    all_offsets, all_rois, all_cells = [], [], []
    for plane in range(PLANES):
        reference = (100 + 40 * rng.random((HEIGHT, WIDTH))).astype(np.float32)
        offsets = np.stack([rng.integers(-3, 4, FRAMES), rng.integers(-3, 4, FRAMES)], axis=1).astype(np.float32)
        raw = np.stack([np.roll(reference, (int(dy), int(dx)), axis=(0, 1)) for dy, dx in offsets]).astype(np.int16)
        array = store.create_array(f"plane_{plane}/raw/channel_0", shape=raw.shape, dtype=np.int16, chunks=(CHUNK_FRAMES, HEIGHT, WIDTH), dimension_names=("t", "y", "x"))
        array[...] = raw
        all_offsets.append(offsets)
    store.mark_phase_complete("ingest", config_hash="h-ingest", started=started)
    for plane in range(PLANES):
        reference = store.read(f"plane_{plane}/raw/channel_0")[0].astype(np.float32)
        offsets = all_offsets[plane]
        reference = np.roll(reference, (-int(offsets[0, 0]), -int(offsets[0, 1])), axis=(0, 1))
        started = store.mark_phase_started(f"registration/plane_{plane}", config_hash=f"h-reg-{plane}")
        registered = store.create_array(f"plane_{plane}/registered/channel_0", shape=(FRAMES, HEIGHT, WIDTH), dtype=np.int16, chunks=(CHUNK_FRAMES, HEIGHT, WIDTH), dimension_names=("t", "y", "x"))
        registered[...] = np.broadcast_to(reference.astype(np.int16), (FRAMES, HEIGHT, WIDTH))
        group = f"plane_{plane}/registration"
        store.write_array(f"{group}/reference_image", reference, dimension_names=("y", "x"))
        store.write_array(f"{group}/rigid_offsets", offsets)
        store.write_array(f"{group}/rigid_correlations", (0.5 + 0.4 * rng.random(FRAMES)).astype(np.float32))
        bad = np.zeros(FRAMES, bool)
        bad[[10, 40]] = True
        store.write_array(f"{group}/bad_frames", bad)
        store.write_array(f"{group}/nonrigid_offsets", (0.3 * rng.standard_normal((FRAMES, 6, 2))).astype(np.float32))
        store.write_array(f"{group}/nonrigid_correlations", rng.random((FRAMES, 6)).astype(np.float32))
        store.write_array(f"{group}/block_centers", np.array([[y, x] for y in (8.0, 24.0) for x in (8.0, 20.0, 32.0)], np.float32))
        store.write_array(f"{group}/pc_shift_metrics", np.array([[0.5, 0.2, 0.4], [0.1, 0.05, 0.1]], np.float32))
        store.write_array(f"{group}/pc_projections", rng.standard_normal((20, 2)).astype(np.float32))
        store.write_array(f"{group}/pc_low_images", rng.random((2, HEIGHT - 6, WIDTH - 6)).astype(np.float32))
        store.write_array(f"{group}/pc_high_images", rng.random((2, HEIGHT - 6, WIDTH - 6)).astype(np.float32))
        _set_group_attributes(store, group, valid_y_range=[3, HEIGHT - 3], valid_x_range=[3, WIDTH - 3], bidirectional_offset_px=0)
        store.mark_phase_complete(f"registration/plane_{plane}", config_hash=f"h-reg-{plane}", started=started)

        started = store.mark_phase_started(f"detection/plane_{plane}", config_hash=f"h-det-{plane}")
        images = {"mean_image": reference, "enhanced_mean_image": reference / reference.max(), "maximum_projection": reference * 1.5, "correlation_map": rng.random((HEIGHT, WIDTH)).astype(np.float32)}
        for image_name, image in images.items():
            store.write_array(f"plane_{plane}/detection/{image_name}", image.astype(np.float32), dimension_names=("y", "x"))
        centers = ROI_CENTERS[: 5 - plane]  # plane 1 has 4 ROIs
        rois = RaggedRois.from_masks([_disc(center, 3 - (index % 2)) for index, center in enumerate(centers)])
        count = rois.count
        per_roi = {
            "centroids": np.array(centers, np.int32),
            "footprint": np.ones(count, np.int8),
            "pixel_count": rois.pixel_counts(),
            "soma_pixel_count": rois.pixel_counts(),
            "mean_radius": np.full(count, 1.1, np.float32),
            "baseline_mean_radius": np.ones(count, np.float32),
            "compactness": np.full(count, 1.1, np.float32),
            "solidity": np.full(count, 0.9, np.float32),
            "normalized_pixel_count": np.ones(count, np.float32),
            "radius_px": np.full(count, 3.0, np.float32),
            "aspect_ratio": np.ones(count, np.float32),
            "skewness": np.linspace(0.5, 2.0, count).astype(np.float32),
        }
        store.write_rois(f"plane_{plane}/rois", rois, **per_roi)
        store.write_array(f"plane_{plane}/rois/soma_mask", np.ones(int(rois.pixel_offsets[-1]), bool))
        store.write_array(f"plane_{plane}/rois/overlap_mask", np.zeros(int(rois.pixel_offsets[-1]), bool))
        _set_group_attributes(store, f"plane_{plane}/rois", diameter_px=6, bin_size=3)
        store.mark_phase_complete(f"detection/plane_{plane}", config_hash=f"h-det-{plane}", started=started)

        started = store.mark_phase_started(f"extraction/plane_{plane}", config_hash=f"h-ext-{plane}")
        time = np.arange(FRAMES, dtype=np.float32)
        traces = {
            "cell_fluorescence": 200 + 20 * np.sin(time[None] / (3 + np.arange(count)[:, None])) + rng.standard_normal((count, FRAMES)),
            "neuropil_fluorescence": 100 + rng.standard_normal((count, FRAMES)),
            "subtracted_fluorescence": rng.standard_normal((count, FRAMES)),
            "spikes": np.maximum(0, rng.standard_normal((count, FRAMES)) - 1.5),
        }
        for trace_name, values in traces.items():
            target = store.create_array(f"plane_{plane}/extraction/{trace_name}", shape=(count, FRAMES), dtype=np.float32, chunks=(2, FRAMES), dimension_names=("roi", "t"))
            target[...] = values.astype(np.float32)
        is_cell = np.array([True, True, False, True, False][:count])
        probability = np.where(is_cell, 0.9, 0.2).astype(np.float32)
        store.write_array(f"plane_{plane}/extraction/cell_classification", np.column_stack([is_cell.astype(np.float32), probability]))
        store.mark_phase_complete(f"extraction/plane_{plane}", config_hash=f"h-ext-{plane}", started=started)
        all_rois.append(rois)
        all_cells.append(is_cell)
    started = store.mark_phase_started("combine", config_hash="h-combine")
    combined = np.concatenate([store.read(f"plane_{plane}/extraction/cell_fluorescence") for plane in range(PLANES)])
    store.write_array("combined/extraction/cell_fluorescence", combined)
    store.write_array("combined/rois/plane_index", np.repeat(np.arange(PLANES), [rois.count for rois in all_rois]).astype(np.int32))
    store.mark_phase_complete("combine", config_hash="h-combine", started=started)
    return SyntheticStore(store.path, np.stack(all_offsets), all_rois, all_cells)


def _set_group_attributes(store: RecordingStore, group: str, **attributes: Any) -> None:
    import zarr

    zarr.open_group(str(store.path / group), mode="r+").attrs.update(attributes)


@pytest.fixture(scope="session")
def synthetic_store_template(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStore:
    """Written once per session; tests that modify a store work on a copy (`synthetic_store`)."""
    return write_synthetic_store(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture()
def synthetic_store(synthetic_store_template: SyntheticStore, tmp_path: Path) -> SyntheticStore:
    """A private copy of the synthetic store (with its placeholder TIFF folder)."""
    source = synthetic_store_template.path.parent
    shutil.copytree(source, tmp_path / "copy")
    copied = tmp_path / "copy"
    store = RecordingStore(copied / synthetic_store_template.path.name)
    store.update_attributes(tiff_directory=str(copied / "tiffs"))
    return synthetic_store_template._replace(path=store.path)


# ---------------------------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------------------------


def _expected_checksum(folder: Path, grid: tuple[int, ...]) -> str:
    """The digest `array_checksum` defines, spelled out for an unsharded array with '/'-separated chunk keys."""
    import itertools

    digest = hashlib.sha256()
    for coordinates in itertools.product(*map(range, grid)):
        chunk = folder.joinpath("c", *map(str, coordinates))
        if chunk.is_file():
            digest.update(chunk.stat().st_size.to_bytes(8, "little") + chunk.read_bytes())
        else:
            digest.update((2**64 - 1).to_bytes(8, "little"))
    return digest.hexdigest()


def test_checksum_covers_every_stored_chunk_in_grid_order_and_marks_absent_ones(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "s.zarr")
    values = np.arange(37 * 5 * 3, dtype=np.float32).reshape(37, 5, 3)
    values[8:12] = 0  # one chunk all fill value: not stored
    array = store.create_array("a", shape=values.shape, dtype=values.dtype, chunks=(4, 2, 3), dimension_names=("t", "y", "x"))
    array[...] = values
    folder = store.path / "a"
    assert not (folder / "c" / "2" / "0" / "0").exists()
    before = array_checksum(folder)
    assert before == _expected_checksum(folder, (10, 3, 1))
    array[20, 4, 2] = -1.0  # one value of one chunk
    after = array_checksum(folder)
    assert after != before and after == _expected_checksum(folder, (10, 3, 1))
    empty = store.create_array("empty", shape=(0, 4), dtype=np.float32, chunks=(8, 4), dimension_names=("roi", "t"))
    assert array_checksum(store.path / "empty") == hashlib.sha256(b"").hexdigest() and empty.shape == (0, 4)


# ---------------------------------------------------------------------------------------------
# manifest and verification
# ---------------------------------------------------------------------------------------------


def test_manifest_lists_every_array_configuration_versions_and_phases(synthetic_store: SyntheticStore) -> None:
    store = RecordingStore(synthetic_store.path)
    path = write_manifest(store)
    assert path == synthetic_store.path / MANIFEST_FILE_NAME
    descriptor = json.loads(path.read_text())
    assert descriptor["profile"] == "data-package" and descriptor["name"] == "synthetic"
    resources = {resource["path"]: resource for resource in descriptor["resources"]}
    assert sorted(resources) == store.array_paths()
    raw = resources["plane_0/raw/channel_0"]
    assert raw["shape"] == [FRAMES, HEIGHT, WIDTH] and raw["dtype"] == "int16" and raw["chunks"] == [CHUNK_FRAMES, HEIGHT, WIDTH]
    assert raw["dimension_names"] == ["t", "y", "x"]
    assert raw["hash"] == "sha256:" + _expected_checksum(store.path / "plane_0" / "raw" / "channel_0", (-(-FRAMES // CHUNK_FRAMES), 1, 1))
    assert resources["plane_0/registration/bad_frames"]["dtype"] == "bool"
    assert descriptor["configuration"] == store.attributes()["configuration"] and "tau: 0.7" in descriptor["configuration"]
    assert descriptor["versions"]["cindra_dask"]
    assert descriptor["phases"]["registration/plane_1"]["status"] == "complete"
    assert descriptor["total_duration_s"] >= 0
    assert verify_store(store.path) == []


def test_verify_detects_a_flipped_byte_a_removed_array_and_an_extra_one(synthetic_store: SyntheticStore) -> None:
    store = RecordingStore(synthetic_store.path)
    write_manifest(store)
    chunk = store.path / "plane_0" / "raw" / "channel_0" / "c" / "1" / "0" / "0"
    payload = bytearray(chunk.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    chunk.write_bytes(bytes(payload))
    store.delete("plane_1/extraction/spikes")
    store.write_array("plane_1/extraction/extra", np.zeros(3, np.float32), dimension_names=("roi",))
    differences = verify_store(store.path)
    assert len(differences) == 3, differences
    assert differences[0].startswith("plane_0/raw/channel_0: contents differ")
    assert any(line.startswith("plane_1/extraction/spikes: missing") for line in differences)
    assert any(line.startswith("plane_1/extraction/extra: not in the manifest") for line in differences)


def test_verify_detects_changed_values_and_a_changed_shape(synthetic_store: SyntheticStore) -> None:
    store = RecordingStore(synthetic_store.path)
    write_manifest(store)
    traces = store.array("plane_0/extraction/cell_fluorescence", mode="r+")
    traces[1, 5] = traces[1, 5] + 1.0  # a data change only: metadata and attributes untouched
    store.write_array("plane_1/registration/rigid_correlations", np.zeros(FRAMES + 1, np.float32))
    differences = verify_store(store.path)
    assert len(differences) == 2, differences
    assert differences[0].startswith("plane_0/extraction/cell_fluorescence: contents differ")
    assert "cindra-dask reset" in differences[0] and "--phase process" in differences[0]
    assert differences[1].startswith("plane_1/registration/rigid_correlations: shape/dtype (61,)")


def test_rewritten_manifest_rehashes_exactly_the_arrays_written_since(synthetic_store: SyntheticStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import cindra_dask.manifest as manifest

    store = RecordingStore(synthetic_store.path)
    write_manifest(store)
    hashed: list[str] = []
    describe = manifest.describe_array
    monkeypatch.setattr(manifest, "describe_array", lambda store, array_path, **options: hashed.append(array_path) or describe(store, array_path, **options))
    write_manifest(store)
    assert hashed == []  # nothing written since: every entry kept
    traces = store.array("plane_0/extraction/cell_fluorescence", mode="r+")
    traces[1, 5] = traces[1, 5] + 1.0  # rewrites one chunk file
    raw = store.array("plane_0/raw/channel_0", mode="r+")
    raw[:CHUNK_FRAMES] = 0  # an all-fill chunk: Zarr removes its file, only the folder's mtime changes
    path = write_manifest(store)
    assert sorted(hashed) == ["plane_0/extraction/cell_fluorescence", "plane_0/raw/channel_0"]
    resources = {resource["path"]: resource for resource in json.loads(path.read_text())["resources"]}
    assert resources["plane_0/raw/channel_0"]["hash"] == "sha256:" + _expected_checksum(store.path / "plane_0" / "raw" / "channel_0", (-(-FRAMES // CHUNK_FRAMES), 1, 1))
    assert verify_store(store.path) == []
    hashed.clear()
    write_manifest(store, rehash=True)
    assert sorted(hashed) == store.array_paths()


def test_verify_refuses_a_manifest_whose_checksums_are_defined_otherwise(synthetic_store: SyntheticStore) -> None:
    store = RecordingStore(synthetic_store.path)
    path = write_manifest(store)
    descriptor = json.loads(path.read_text())
    descriptor["cindra_dask_manifest_version"] = 1
    path.write_text(json.dumps(descriptor))
    with pytest.raises(OutputError, match="manifest version 1 defines its checksums differently.*--rehash"):
        verify_store(store.path)
    write_manifest(store)  # a version-1 manifest's entries are never reused: every array is hashed again
    assert verify_store(store.path) == []


def test_verify_without_a_manifest_says_how_to_write_one(synthetic_store: SyntheticStore) -> None:
    with pytest.raises(OutputError, match="no manifest; write one with `cindra-dask manifest"):
        verify_store(synthetic_store.path)
    with pytest.raises(OutputError, match="not a cindra-dask store"):
        verify_store(synthetic_store.path.parent / "absent.zarr")


# ---------------------------------------------------------------------------------------------
# reset and clean
# ---------------------------------------------------------------------------------------------


def test_reset_process_removes_exactly_its_arrays_and_records(synthetic_store: SyntheticStore) -> None:
    store = RecordingStore(synthetic_store.path)
    write_manifest(store)
    before = set(store.array_paths())
    change = reset_store(store.path, phase="process")
    after = set(store.array_paths())
    assert after == {path for path in before if path.split("/")[1] == "raw"}
    assert set(change.removed_arrays) == before - after
    assert set(change.forgotten_records) == {f"{step}/plane_{plane}" for step in ("registration", "detection", "extraction") for plane in range(PLANES)} | {"combine"}
    assert list(store.phase_records()) == ["ingest"]
    descriptor = read_manifest(store)
    assert {resource["path"] for resource in descriptor["resources"]} == after
    assert list(descriptor["phases"]) == ["ingest"] and descriptor["history"][-1]["action"] == "reset"
    assert verify_store(store.path) == []


def test_reset_combine_and_ingest(synthetic_store: SyntheticStore) -> None:
    store = RecordingStore(synthetic_store.path)
    change = reset_store(store.path, phase="combine")
    assert change.removed_arrays == ("combined/extraction/cell_fluorescence", "combined/rois/plane_index")
    assert change.forgotten_records == ("combine",)
    assert "plane_0/registered/channel_0" in store
    change = reset_store(store.path, phase="ingest")
    assert store.array_paths() == [] and store.phase_records() == {}
    assert "plane_0/raw/channel_0" in change.removed_arrays
    assert store.attributes()["configuration"]  # the recording's description stays
    with pytest.raises(OutputError, match="unknown phase"):
        reset_store(store.path, phase="registration")


def test_reset_and_clean_refuse_while_a_run_holds_the_lock(synthetic_store: SyntheticStore) -> None:
    store = RecordingStore(synthetic_store.path)
    store.lock_path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    try:
        with pytest.raises(OutputError, match="locked by another run"):
            reset_store(store.path, phase="combine")
        with pytest.raises(OutputError, match="locked by another run"):
            clean_store(store.path)
    finally:
        store.lock_path.unlink()
    assert "combined/extraction/cell_fluorescence" in store


def test_clean_removes_registered_movies_but_never_raw_without_the_option(synthetic_store: SyntheticStore) -> None:
    store = RecordingStore(synthetic_store.path)
    write_manifest(store)
    with pytest.raises(OutputError, match="remove_raw=True"):
        clean_store(store.path, what=("registered", "raw"))
    with pytest.raises(OutputError, match="unknown intermediate"):
        clean_store(store.path, what=("rois",))
    assert "plane_0/registered/channel_0" in store and "plane_0/raw/channel_0" in store
    change = clean_store(store.path)
    assert change.removed_arrays == ("plane_0/registered/channel_0", "plane_1/registered/channel_0")
    assert "plane_0/raw/channel_0" in store and "plane_0/extraction/spikes" in store
    assert verify_store(store.path) == []  # the manifest followed
    assert "registered" in store.attributes()["removed_intermediates"]
    assert clean_store(store.path).removed_arrays == ()  # idempotent
    tiff = Path(store.attributes()["tiff_directory"]) / "recording_1.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="removing the raw frames"):
            clean_store(store.path, what=(), remove_raw=True)
    assert "plane_0/raw/channel_0" in store  # the warning came before anything was removed
    tiff.unlink()
    with pytest.raises(OutputError, match="refusing to remove the raw frames"):
        clean_store(store.path, what=(), remove_raw=True)
    tiff.write_bytes(b"placeholder")
    with pytest.warns(UserWarning, match="removing the raw frames"):
        change = clean_store(store.path, what=(), remove_raw=True)
    assert change.removed_arrays == ("plane_0/raw/channel_0", "plane_1/raw/channel_0")
    assert tiff.read_bytes() == b"placeholder"
    assert verify_store(store.path) == []


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def test_cli_manifest_verify_reset_clean_export_report(synthetic_store: SyntheticStore, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cindra_dask.cli import app

    runner = CliRunner()
    path = str(synthetic_store.path)
    result = runner.invoke(app, ["verify", path])
    assert result.exit_code == 2 and "error: " in result.output and "no manifest" in result.output
    assert runner.invoke(app, ["manifest", path]).exit_code == 0
    result = runner.invoke(app, ["verify", path])
    assert result.exit_code == 0 and "OK" in result.output
    store = RecordingStore(synthetic_store.path)
    store.delete("plane_0/extraction/spikes")
    result = runner.invoke(app, ["verify", path])
    assert result.exit_code == 1 and "difference: plane_0/extraction/spikes: missing" in result.output
    result = runner.invoke(app, ["export", "suite2p", path, str(tmp_path / "s2p")])
    assert result.exit_code == 0 and "plane0, plane1" in result.output and (tmp_path / "s2p" / "plane1" / "ops.npy").is_file()
    assert runner.invoke(app, ["export", "suite2p", path, str(tmp_path / "s2p")]).exit_code == 2
    assert runner.invoke(app, ["export", "suite2p", path, str(tmp_path / "s2p"), "--overwrite"]).exit_code == 0
    result = runner.invoke(app, ["report", path, "--output", str(tmp_path / "r.html")])
    assert result.exit_code == 0 and (tmp_path / "r.html").is_file()
    result = runner.invoke(app, ["clean", path])
    assert result.exit_code == 2 and "nothing selected" in result.output
    result = runner.invoke(app, ["clean", path, "--registered"])
    assert result.exit_code == 0 and "removed plane_1/registered/channel_0" in result.output and "plane_0/raw/channel_0" in store
    result = runner.invoke(app, ["clean", path, "--raw"])
    assert result.exit_code == 0 and "warning: " in result.output and "plane_0/raw/channel_0" not in store
    result = runner.invoke(app, ["reset", path, "--phase", "combine"])
    assert result.exit_code == 0 and "forgot step(s) combine" in result.output
    result = runner.invoke(app, ["reset", path, "--phase", "everything"])
    assert result.exit_code == 2 and "unknown phase" in result.output


# ---------------------------------------------------------------------------------------------
# end to end on a real (tiny) run
# ---------------------------------------------------------------------------------------------


def test_manifest_export_report_reset_and_rerun_on_a_real_run(client: Any, tmp_path: Path) -> None:
    import re

    from cindra_dask.export import export_suite2p
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.export.report import write_report
    from cindra_dask.simulate import SimulationParameters, write_recording

    data = tmp_path / "data" / "tiny"
    write_recording(SimulationParameters(frame_height=96, frame_width=96, frame_count=300, cell_count=12, seed=2), data)
    configuration = single_configuration(data, tmp_path / "out", runtime={"max_chunk_memory": "4MiB"}, main={"tau": 0.7})
    first = run_single_recording(configuration, client=client)
    store = RecordingStore(first.store_path)
    assert [outcome.state for outcome in first.outcomes if outcome.name.startswith(("registration", "detection", "extraction"))] == ["ran"] * 3
    assert verify_store(store.path) == []
    arrays = set(store.array_paths())
    first_hashes = {resource["path"]: resource["hash"] for resource in read_manifest(store)["resources"]}

    written = export_suite2p(store.path, tmp_path / "suite2p")
    stat = np.load(tmp_path / "suite2p" / "plane0" / "stat.npy", allow_pickle=True)
    rois = store.read_rois("plane_0/rois")
    assert rois.count > 0 and len(stat) == rois.count and len(written) == 10
    np.testing.assert_array_equal(np.load(tmp_path / "suite2p" / "plane0" / "F.npy"), store.read("plane_0/extraction/cell_fluorescence"))
    assert all(np.array_equal(stat[index]["ypix"], rois.roi(index)[0]) and np.array_equal(stat[index]["xpix"], rois.roi(index)[1]) for index in range(rois.count))
    ops = np.load(tmp_path / "suite2p" / "plane0" / "ops.npy", allow_pickle=True).item()
    offsets = store.read("plane_0/registration/rigid_offsets")
    np.testing.assert_allclose(ops["yoff"], offsets[:, 0])
    np.testing.assert_allclose(ops["xoff"], offsets[:, 1])

    text = write_report(store.path).read_text()
    figure = re.search(r'<svg class="roi-image" data-plane="0" data-image="mean_image".*?</svg>', text, re.S)
    assert figure is not None and figure.group(0).count('<path class="roi ') == rois.count
    cells = int((store.read("plane_0/extraction/cell_classification")[:, 0] > 0.5).sum())
    assert f'<td id="plane-0-rois">{rois.count}</td>' in text and f'<td id="plane-0-cells">{cells}</td>' in text

    change = reset_store(store.path, phase="process")
    assert set(store.array_paths()) == {"plane_0/raw/channel_0"} and list(store.phase_records()) == ["ingest"]
    assert set(change.removed_arrays) == arrays - {"plane_0/raw/channel_0"}
    second = run_single_recording(configuration, client=client)
    states = {outcome.name: outcome.state for outcome in second.outcomes}
    assert states["ingest"] == "skipped" and all(states[f"{step}/plane_0"] == "ran" for step in ("registration", "detection", "extraction"))
    assert set(store.array_paths()) == arrays
    assert verify_store(store.path) == []  # the runner rewrote the manifest after the rerun
    second_hashes = {resource["path"]: resource["hash"] for resource in read_manifest(store)["resources"]}
    changed = sorted(path for path, digest in first_hashes.items() if second_hashes.get(path) != digest)
    assert changed == [], f"the rerun is not bit-identical (DESIGN §4.5 determinism): {changed}"
