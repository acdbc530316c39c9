"""NWB export (issue 18): a processed simulated store read back with pynwb equals the store; nwbinspector
finds nothing serious; identifiers are fresh; refusals are one line and leave no file; the exporter's
memory stays bounded on a large store; the metadata section and validate's note."""

from __future__ import annotations

import json
import os
import sys
import tracemalloc
import uuid
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("pynwb")

from cindra_dask.cli import app  # noqa: E402
from cindra_dask.config import MetadataSettings, configuration_to_yaml, missing_nwb_metadata  # noqa: E402
from cindra_dask.errors import ConfigurationError, OutputError  # noqa: E402
from cindra_dask.export.nwb import ZarrTraceBlocks, export_nwb, resolve_metadata, trace_layout  # noqa: E402
from cindra_dask.extraction.baseline import neuropil_corrected_delta_f_over_f  # noqa: E402
from cindra_dask.pipeline import run_single_recording  # noqa: E402
from cindra_dask.rois import RaggedRois  # noqa: E402
from cindra_dask.simulate import SimulationParameters, write_recording  # noqa: E402
from cindra_dask.store import RecordingStore, frames_path  # noqa: E402
from tests.conftest import single_configuration  # noqa: E402
from tests.test_manifest import SyntheticStore, write_synthetic_store  # noqa: E402

runner = CliRunner()
SIMULATION = SimulationParameters(frame_height=64, frame_width=72, frame_count=300, plane_count=2, cell_count=10, non_cell_count=2, file_count=2, seed=5)
METADATA = {
    "session_start_time": "2024-05-01T10:30:00+02:00",
    "experiment_description": "Simulated two-photon recording of the cindra-dask test suite.",
    "experimenter": ["Doe, Jane"],
    "institution": "Test Institute",
    "lab": "Imaging Lab",
    "keywords": ["calcium imaging", "simulation"],
    "subject_id": "sim-mouse-1",
    "species": "Mus musculus",
    "sex": "F",
    "age": "P90D",
    "subject_description": "Simulated animal.",
    "indicator": "GCaMP6s",
    "location": "VISp",
    "excitation_wavelength_nm": 920.0,
    "emission_wavelength_nm": 510.0,
    "device": "Simulated two-photon microscope",
    "device_manufacturer": "cindra-dask",
    "pixel_size_um": 1.25,
}
TRACE_SERIES = {
    "cell_fluorescence": ("Fluorescence", "RoiResponseSeries"),
    "neuropil_fluorescence": ("Fluorescence", "Neuropil"),
    "spikes": ("Fluorescence", "Deconvolved"),
    "delta_f_over_f": ("DfOverF", "DfOverF"),
}


class Processed(NamedTuple):
    store: RecordingStore
    data: Path
    configuration: Any


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, client: Any) -> Processed:
    """A two-plane simulated recording through the whole pipeline, its metadata section filled in."""
    root = tmp_path_factory.mktemp("nwb_processed")
    data = root / "data" / "sim_session"
    write_recording(SIMULATION, data)
    configuration = single_configuration(
        data, root / "out", main={"tau": SIMULATION.tau_s}, runtime={"max_chunk_memory": "256KiB"}, nonrigid_registration={"block_size": [32, 32]}, metadata=METADATA
    )
    report = run_single_recording(configuration, client=client)
    return Processed(RecordingStore(report.store_path), data, configuration)


@pytest.fixture(scope="module")
def exported(processed: Processed, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    path = tmp_path_factory.mktemp("nwb_file") / "session.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # complete metadata: no warning at all
        result = export_nwb(processed.store.path, path, movie="registered")
    return path, result


def _read(path: Path) -> Any:
    from pynwb import NWBHDF5IO

    return NWBHDF5IO(str(path), mode="r")


def test_read_back_equals_the_store(processed: Processed, exported: tuple[Path, Any]) -> None:
    store = processed.store
    path, result = exported
    assert result.planes == (0, 1) and result.missing_metadata == () and result.movie == "registered"
    with _read(path) as io:
        nwbfile = io.read()
        assert str(uuid.UUID(nwbfile.identifier)) == nwbfile.identifier == result.identifier
        assert nwbfile.session_start_time.isoformat() == "2024-05-01T10:30:00+02:00"
        assert (nwbfile.subject.subject_id, nwbfile.subject.species, nwbfile.subject.sex, nwbfile.subject.age) == ("sim-mouse-1", "Mus musculus", "F", "P90D")
        assert nwbfile.session_id == "sim_session" and list(nwbfile.experimenter) == ["Doe, Jane"]
        assert "pipeline_type: single-recording" in nwbfile.notes  # the recorded configuration
        ophys = nwbfile.processing["ophys"]
        plane_rate = 30.0 / 2
        for plane in (0, 1):
            suffix = f"Plane{plane}"
            imaging_plane = nwbfile.imaging_planes[f"ImagingPlane{suffix}"]
            assert (imaging_plane.indicator, imaging_plane.location, imaging_plane.excitation_lambda) == ("GCaMP6s", "VISp", 920.0)
            assert imaging_plane.optical_channel[0].emission_lambda == 510.0 and imaging_plane.device.name == "Simulated two-photon microscope"
            np.testing.assert_allclose(imaging_plane.grid_spacing[:], [1.25, 1.25])
            assert imaging_plane.grid_spacing_unit == "micrometers" and imaging_plane.imaging_rate == plane_rate

            segmentation = ophys["ImageSegmentation"][f"PlaneSegmentation{suffix}"]
            rois = store.read_rois(f"plane_{plane}/rois")
            assert rois.count >= 5 and len(segmentation) == rois.count
            np.testing.assert_array_equal(segmentation.id[:], np.arange(rois.count))
            for index in range(rois.count):
                mask = np.asarray(segmentation["pixel_mask"][index])
                ypix, xpix, lam = rois.roi(index)
                np.testing.assert_array_equal(mask["x"], xpix)  # NWB x = column
                np.testing.assert_array_equal(mask["y"], ypix)
                np.testing.assert_array_equal(mask["weight"], lam)
            classification = store.read(f"plane_{plane}/extraction/cell_classification")
            np.testing.assert_array_equal(segmentation["iscell"][:], classification[:, 0] > 0.5)
            np.testing.assert_array_equal(segmentation["probability"][:], classification[:, 1])
            np.testing.assert_array_equal(segmentation["neuropil_coefficient"][:], store.read(f"plane_{plane}/extraction/neuropil_coefficient"))
            for statistic in ("pixel_count", "compactness", "radius_px", "skewness", "detection_source", "centroids"):
                np.testing.assert_array_equal(segmentation[statistic][:], store.read(f"plane_{plane}/rois/{statistic}"), err_msg=statistic)

            for store_name, (container, series_name) in TRACE_SERIES.items():
                series = ophys[container][f"{series_name}{suffix}"]
                expected = store.read(f"plane_{plane}/extraction/{store_name}")
                assert series.data.shape == (SIMULATION.frame_count, rois.count)  # (time, rois)
                np.testing.assert_array_equal(series.data[:], expected.T, err_msg=store_name)
                assert series.rois.table is segmentation and list(series.rois.data[:]) == list(range(rois.count))
                assert series.rate == plane_rate and series.starting_time == plane / 30.0  # interleaved planes
                assert series.data.compression == "gzip"

            rigid = ophys[f"MotionCorrectionRigidOffsets{suffix}"]
            np.testing.assert_array_equal(rigid.data[:], store.read(f"plane_{plane}/registration/rigid_offsets"))
            assert rigid.unit == "pixels"
            nonrigid = ophys[f"MotionCorrectionNonrigidOffsets{suffix}"]
            np.testing.assert_array_equal(nonrigid.data[:], store.read(f"plane_{plane}/registration/nonrigid_offsets"))
            blocks = ophys[f"NonrigidBlocks{suffix}"]
            centers = store.read(f"plane_{plane}/registration/block_centers")
            np.testing.assert_array_equal(np.column_stack([blocks["center_y_px"][:], blocks["center_x_px"][:]]), centers)

            images = ophys[f"SummaryImages{suffix}"]
            for store_name, nwb_name in (("mean_image", "mean"), ("enhanced_mean_image", "enhanced_mean"), ("maximum_projection", "maximum_projection"), ("correlation_map", "correlation")):
                np.testing.assert_array_equal(images[nwb_name].data[:], store.read(f"plane_{plane}/detection/{store_name}").T, err_msg=store_name)  # (x, y)

            movie = ophys[f"TwoPhotonSeriesRegistered{suffix}"]
            registered = store.read(frames_path(plane, 0, kind="registered"))
            assert movie.data.shape == (SIMULATION.frame_count, SIMULATION.frame_width, SIMULATION.frame_height)
            np.testing.assert_array_equal(movie.data[:], registered.transpose(0, 2, 1))
            assert movie.data.dtype == registered.dtype and movie.imaging_plane is imaging_plane


def test_dff_in_the_file_is_the_definition_of_the_stored_traces(processed: Processed, exported: tuple[Path, Any]) -> None:
    """DfOverF = (F_c − F0)/F0 of the F, Fneu and c in the same file, with the run's maximin baseline."""
    deconvolution = processed.configuration.spike_deconvolution
    with _read(exported[0]) as io:
        ophys = io.read().processing["ophys"]
        for plane in (0, 1):
            suffix = f"Plane{plane}"
            cell = ophys["Fluorescence"][f"RoiResponseSeries{suffix}"].data[:].T
            neuropil = ophys["Fluorescence"][f"Neuropil{suffix}"].data[:].T
            coefficients = ophys["ImageSegmentation"][f"PlaneSegmentation{suffix}"]["neuropil_coefficient"][:]
            expected = neuropil_corrected_delta_f_over_f(
                cell,
                neuropil,
                neuropil_coefficient=coefficients,
                baseline_method=deconvolution.baseline_method.value,
                baseline_window_s=deconvolution.baseline_window,
                baseline_sigma_frames=deconvolution.baseline_sigma,
                baseline_percentile=deconvolution.baseline_percentile,
                frame_rate_hz=15.0,
            )
            dff = ophys["DfOverF"][f"DfOverF{suffix}"].data[:].T
            finite_rows = np.isfinite(dff).all(axis=1)  # NaN rows: neuropil subtraction left no positive F0 (the definition's NaN)
            assert finite_rows.mean() >= 0.9 and np.nanmax(dff) > 0.2, finite_rows  # the simulator's transients are ≥ 0.2 dF/F
            np.testing.assert_allclose(dff, expected, rtol=1e-5, atol=1e-6)  # NaN where the definition gives NaN


def test_nwbinspector_and_pynwb_find_nothing_serious(exported: tuple[Path, Any]) -> None:
    nwbinspector = pytest.importorskip("nwbinspector")
    from pynwb import validate

    assert list(validate(path=str(exported[0]))) == []
    messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(exported[0])))
    serious = [f"{message.importance.name} {message.check_function_name} {message.object_name}: {message.message}" for message in messages if message.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION")]
    assert serious == []
    assert messages == []  # not even a suggestion with the metadata section filled in


def test_two_exports_have_different_identifiers(processed: Processed, tmp_path: Path) -> None:
    first = export_nwb(processed.store.path, tmp_path / "first.nwb")
    second = export_nwb(processed.store.path, tmp_path / "second.nwb")
    assert first.identifier != second.identifier
    with _read(first.path) as one, _read(second.path) as two:
        assert one.read().identifier == first.identifier and two.read().identifier == second.identifier
        assert "TwoPhotonSeriesRegisteredPlane0" not in one.read().processing["ophys"].data_interfaces  # --movie none is the default
    assert first.path.stat().st_size < 0.5 * (processed.store.array(frames_path(0, 0, kind="registered")).nbytes)


# ---------------------------------------------------------------------------------------------
# refusals: one line, exit code 2, no file left
# ---------------------------------------------------------------------------------------------


def _error_lines(result: Any) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def _nwb_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if ".nwb" in path.name)


@pytest.fixture()
def synthetic(tmp_path: Path) -> SyntheticStore:
    return write_synthetic_store(tmp_path / "synthetic")


def test_refusals_are_one_line_and_leave_no_file(synthetic: SyntheticStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = ["--set", "metadata.session_start_time=2024-05-01T10:30:00+00:00"]
    out = tmp_path / "out"
    out.mkdir()
    target = out / "session.nwb"

    result = runner.invoke(app, ["export", "nwb", str(synthetic.path), str(target)])  # the synthetic store's metadata is empty
    assert result.exit_code == 2 and _error_lines(result) == [_error_lines(result)[0]] and "metadata.session_start_time: not set" in result.output
    assert _nwb_files(out) == []

    result = runner.invoke(app, ["export", "nwb", str(synthetic.path), str(target), *start])
    assert result.exit_code == 0, result.output
    assert f"warning: {synthetic.path}: metadata.subject_id, metadata.species" in result.output  # exported, but it says what DANDI will miss
    before = target.read_bytes()
    result = runner.invoke(app, ["export", "nwb", str(synthetic.path), str(target), *start])
    assert result.exit_code == 2 and _error_lines(result) == [f"error: {target}: exists; pass --overwrite (overwrite=True) to replace it"]
    assert target.read_bytes() == before and _nwb_files(out) == ["session.nwb"]
    result = runner.invoke(app, ["export", "nwb", str(synthetic.path), str(target), *start, "--overwrite"])
    assert result.exit_code == 0 and target.read_bytes() != before and _nwb_files(out) == ["session.nwb"]

    cases = {
        "not a store": ([str(tmp_path / "missing.zarr"), str(out / "a.nwb"), *start], "not a cindra-dask store"),
        "wrong suffix": ([str(synthetic.path), str(out / "a.h5"), *start], "ends in .nwb"),
        "inside the store": ([str(synthetic.path), str(synthetic.path / "a.nwb"), *start], "inside the store"),
        "no folder": ([str(synthetic.path), str(out / "no" / "a.nwb"), *start], "folder does not exist"),
        "bad metadata": ([str(synthetic.path), str(out / "a.nwb"), *start, "--set", "metadata.age=90 days"], "metadata.age: '90 days' is not an ISO 8601 duration"),
        "not metadata": ([str(synthetic.path), str(out / "a.nwb"), "--set", "main.tau=2"], "only metadata.<field> can be set"),
        "registered movie removed": ([str(synthetic.path), str(out / "a.nwb"), *start, "--movie", "registered"], "plane_0/registered/channel_0 is missing"),
    }
    store = RecordingStore(synthetic.path)
    store.delete("plane_0/registered")
    for name, (arguments, expected) in cases.items():
        result = runner.invoke(app, ["export", "nwb", *arguments])
        lines = _error_lines(result)
        assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], (name, result.output)
        assert "Traceback" not in result.output
    assert _nwb_files(out) == ["session.nwb"] and not list(synthetic.path.rglob("*.nwb"))

    with store.locked():  # a run in progress
        result = runner.invoke(app, ["export", "nwb", str(synthetic.path), str(out / "b.nwb"), *start])
    assert result.exit_code == 2 and len(_error_lines(result)) == 1 and "locked by another run" in result.output

    started = store.mark_phase_started("extraction/plane_1", config_hash="interrupted")  # a run killed mid-extraction
    assert started > 0
    result = runner.invoke(app, ["export", "nwb", str(synthetic.path), str(out / "b.nwb"), *start])
    assert result.exit_code == 2 and _error_lines(result) == [f"error: {synthetic.path}: plane 1's extraction did not finish (interrupted run); run `cindra-dask run` again to complete it"]

    monkeypatch.setitem(sys.modules, "pynwb", None)  # pynwb not installed
    result = runner.invoke(app, ["export", "nwb", str(synthetic.path), str(out / "c.nwb"), *start])
    assert result.exit_code == 2 and _error_lines(result) == ["error: export nwb needs pynwb, which is not installed; install the 'nwb' extra (pip install 'cindra-dask[nwb]')"]
    assert _nwb_files(out) == ["session.nwb"]


def test_a_failure_while_writing_leaves_no_partial_file(synthetic: SyntheticStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metadata = MetadataSettings(session_start_time="2024-05-01T10:30:00+00:00")
    target = tmp_path / "session.nwb"
    with pytest.warns(UserWarning):
        export_nwb(synthetic.path, target, metadata=metadata)
    before = target.read_bytes()
    original = ZarrTraceBlocks.__iter__
    seen: list[Path] = []

    def failing(self: ZarrTraceBlocks) -> Any:
        for count, item in enumerate(original(self)):
            if count == 1:
                seen.extend(tmp_path.glob(".session.partial.*.nwb"))
                raise OSError(28, "No space left on device")
            yield item

    monkeypatch.setattr(ZarrTraceBlocks, "__iter__", failing)
    with pytest.warns(UserWarning), pytest.raises(OutputError, match="could not be written"):
        export_nwb(synthetic.path, target, metadata=metadata, overwrite=True)
    assert len(seen) == 1  # the file was being written beside the target, under a hidden name
    assert sorted(path.name for path in tmp_path.iterdir() if ".nwb" in path.name) == ["session.nwb"]
    assert target.read_bytes() == before  # the earlier export is untouched


# ---------------------------------------------------------------------------------------------
# metadata: section, resolution, validate's note
# ---------------------------------------------------------------------------------------------


def test_metadata_comes_from_the_store_a_file_and_overrides(processed: Processed, tmp_path: Path) -> None:
    stored = resolve_metadata(processed.store.path)
    assert stored == MetadataSettings.model_validate(METADATA) and missing_nwb_metadata(stored) == []
    other = processed.configuration.model_copy(update={"metadata": MetadataSettings(session_start_time="2023-01-02T03:04:05+00:00", subject_id="other")})
    config = tmp_path / "other.yaml"
    config.write_text(configuration_to_yaml(other))
    replaced = resolve_metadata(processed.store.path, configuration_path=config, overrides=["metadata.sex=M"])
    assert (replaced.subject_id, replaced.sex, replaced.species, replaced.session_start_time.isoformat()) == ("other", "M", None, "2023-01-02T03:04:05+00:00")
    assert missing_nwb_metadata(replaced) == [f"metadata.{name}" for name in ("species", "age", "indicator", "location", "excitation_wavelength_nm", "emission_wavelength_nm", "device")]
    with pytest.raises(ConfigurationError, match=r"metadata\.session_start_time: .*has no UTC offset"):
        resolve_metadata(processed.store.path, overrides=["metadata.session_start_time=2024-05-01T10:30:00"])
    with pytest.raises(ConfigurationError, match="metadata.species: 'mouse' is neither a Latin binomial"):
        resolve_metadata(processed.store.path, overrides=["metadata.species=mouse"])


def test_validate_notes_the_metadata_nwb_needs(processed: Processed, tmp_path: Path) -> None:
    payload = yaml.safe_load(configuration_to_yaml(processed.configuration))
    payload["file_io"]["output_path"] = str(tmp_path / "fresh")
    payload["metadata"] = {"session_start_time": "2024-05-01T10:30:00+02:00", "species": "Mus musculus"}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(payload))
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: metadata.subject_id, metadata.sex, metadata.age, metadata.indicator, metadata.location, metadata.excitation_wavelength_nm, "
        "metadata.emission_wavelength_nm, metadata.device not set; processing does not need them, `cindra-dask export nwb` does (set them in the metadata section)"
    ]
    payload["metadata"] = METADATA
    config.write_text(yaml.safe_dump(payload))
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0 and "note:" not in result.output


def test_metadata_changes_no_step_hash(processed: Processed, client: Any) -> None:
    changed = processed.configuration.model_copy(update={"metadata": MetadataSettings(subject_id="someone-else")})
    again = run_single_recording(changed, client=client)
    assert {outcome.state for outcome in again.outcomes} == {"skipped"}


# ---------------------------------------------------------------------------------------------
# memory and chunking
# ---------------------------------------------------------------------------------------------


def write_trace_store(path: Path, *, roi_count: int, frame_count: int, roi_chunk: int) -> RecordingStore:
    """A one-plane store with n single-pixel ROIs and four (n, T) trace arrays in chunks (roi_chunk, T), marked extracted."""
    store = RecordingStore(path)
    side = int(np.ceil(np.sqrt(roi_count)))
    store.update_attributes(
        acquisition={"frame_rate": 30.0, "plane_number": 1, "channel_number": 1},
        planes=[{"index": 0, "physical_plane": 0, "row_start": 0, "row_stop": side, "y_offset": 0.0, "x_offset": 0.0}],
    )
    store.write_rois("plane_0/rois", RaggedRois.from_masks([(np.array([index // side]), np.array([index % side]), np.ones(1, np.float32)) for index in range(roi_count)]))
    time = np.arange(frame_count, dtype=np.float32)
    for offset, name in enumerate(TRACE_SERIES):
        target = store.create_array(f"plane_0/extraction/{name}", shape=(roi_count, frame_count), dtype=np.float32, chunks=(roi_chunk, frame_count), dimension_names=("roi", "t"))
        for start in range(0, roi_count, roi_chunk):
            rows = np.arange(start, min(start + roi_chunk, roi_count), dtype=np.float32)[:, None]
            target[start : start + len(rows)] = np.round(100 + offset + rows + 10 * np.sin(time[None] / 50.0 + rows), 1)
    started = store.mark_phase_started("extraction/plane_0", config_hash="synthetic")
    store.mark_phase_complete("extraction/plane_0", config_hash="synthetic", started=started)
    return store


def test_peak_memory_stays_far_below_the_trace_matrix(tmp_path: Path) -> None:
    """1 000 ROIs × 20 000 frames (76 MiB per matrix, four matrices) in Zarr chunks of 50 ROIs (3.8 MiB):
    the exporter's Python-heap peak (tracemalloc: numpy and Zarr buffers; HDF5's own C buffers are not
    traced) is about two Zarr chunks plus one block, under a quarter of one matrix."""
    roi_count, frame_count = 1000, 20000
    store = write_trace_store(tmp_path / "large.zarr", roi_count=roi_count, frame_count=frame_count, roi_chunk=50)
    metadata = MetadataSettings(session_start_time="2024-05-01T10:30:00+00:00")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the metadata it lacks
        export_nwb(store.path, tmp_path / "warm-up.nwb", metadata=metadata)  # imports and pynwb's caches outside the measurement
        tracemalloc.start()
        try:
            export_nwb(store.path, tmp_path / "large.nwb", metadata=metadata)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    matrix_bytes = roi_count * frame_count * 4
    print(f"peak {peak / 2**20:.1f} MiB for a {matrix_bytes / 2**20:.1f} MiB matrix ({peak / matrix_bytes:.1%})")
    assert peak < 0.25 * matrix_bytes
    with _read(tmp_path / "large.nwb") as io:
        series = io.read().processing["ophys"]["Fluorescence"]["RoiResponseSeriesPlane0"]
        assert series.data.shape == (frame_count, roi_count) and series.data.chunks == (2621, 50)
        expected = store.array("plane_0/extraction/cell_fluorescence")
        for rows in (slice(0, 3), slice(49, 52), slice(997, 1000)):
            np.testing.assert_array_equal(series.data[:, rows], expected[rows].T)
        np.testing.assert_array_equal(series.data[12345], expected[:, 12345])


@pytest.mark.parametrize(("roi_count", "row_chunk", "frame_count"), [(1000, 50, 20000), (1000, 419, 20000), (7, 3, 101), (130, 128, 5), (1, 1, 1)])
def test_trace_blocks_cover_the_matrix_once_in_whole_hdf5_chunks(roi_count: int, row_chunk: int, frame_count: int) -> None:
    """Blocks tile (T, n) exactly, each within one Zarr chunk of rows and made of whole HDF5 chunks (edges aside)."""
    layout = trace_layout(frame_count=frame_count, roi_count=roi_count, row_chunk=row_chunk, itemsize=4)
    chunk_frames, chunk_rois = layout.chunk_shape
    assert row_chunk % chunk_rois == 0 or chunk_rois == roi_count
    assert chunk_frames * chunk_rois * 4 <= max(512 * 2**10, chunk_rois * 4)
    assert layout.block_shape[1] == chunk_rois
    assert layout.block_shape[0] % chunk_frames == 0 or layout.block_shape[0] == frame_count

    class Rows:
        shape, chunks = (roi_count, frame_count), (row_chunk, frame_count)

        def __getitem__(self, rows: slice) -> np.ndarray:
            assert rows.start % row_chunk == 0 and rows.stop - rows.start <= row_chunk  # one Zarr chunk per read
            return np.arange(rows.start, rows.stop, dtype=np.float64)[:, None] * frame_count + np.arange(frame_count)[None]  # row · T + t

    covered = np.zeros((frame_count, roi_count), np.int32)
    for (frames, rois), block in ZarrTraceBlocks(Rows(), layout):
        assert block.flags.c_contiguous and block.shape == (frames.stop - frames.start, rois.stop - rois.start)
        assert rois.start // row_chunk == (rois.stop - 1) // row_chunk
        assert frames.start % chunk_frames == 0 and rois.start % chunk_rois == 0
        np.testing.assert_array_equal(block, (np.arange(rois.start, rois.stop, dtype=np.float64)[None] * frame_count + np.arange(frames.start, frames.stop)[:, None]).astype(np.float32))
        covered[frames, rois] += 1
    assert (covered == 1).all()


# ---------------------------------------------------------------------------------------------
# --movie external: the raw TIFFs linked by relative path
# ---------------------------------------------------------------------------------------------

PAGES_PER_FILE = (25, 20, 15)  # the synthetic store's 60 frames in three TIFF files


def one_plane_tiff_store(synthetic: SyntheticStore) -> RecordingStore:
    """The synthetic store cut to its plane 0, ingested (as its attributes say) from three real TIFFs holding its raw frames."""
    import tifffile

    store = RecordingStore(synthetic.path)
    store.delete("plane_1")
    raw = store.read(frames_path(0, 0))
    tiffs = synthetic.path.parent / "tiffs"
    (tiffs / "recording_1.tif").unlink()
    names = [f"part_{index}.tif" for index in range(len(PAGES_PER_FILE))]
    for name, start, count in zip(names, np.cumsum([0, *PAGES_PER_FILE[:-1]]), PAGES_PER_FILE):
        tifffile.imwrite(tiffs / name, raw[start : start + count])
    acquisition = {**store.attributes()["acquisition"], "plane_number": 1}
    store.update_attributes(acquisition=acquisition, tiff_files=names, planes=store.attributes()["planes"][:1])
    return store


def _serious(path: Path) -> list[str]:
    import nwbinspector

    messages = nwbinspector.inspect_nwbfile(nwbfile_path=str(path))
    return [f"{message.importance.name} {message.check_function_name}: {message.message}" for message in messages if message.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION")]


def test_external_movie_links_the_tiffs_by_relative_path(synthetic: SyntheticStore, tmp_path: Path) -> None:
    """TwoPhotonSeriesRawPlane0 names the three TIFFs relative to the file (in another folder), with
    starting frames 0, 25, 45; the linked pages are the store's raw frames; nwbinspector finds nothing serious."""
    import tifffile

    pytest.importorskip("nwbinspector")
    store = one_plane_tiff_store(synthetic)
    folder = tmp_path / "shared" / "nwb"
    folder.mkdir(parents=True)
    result = runner.invoke(app, ["export", "nwb", str(store.path), str(folder / "session.nwb"), "--movie", "external", *_metadata_options()])
    assert result.exit_code == 0, result.output
    raw = store.read(frames_path(0, 0))
    with _read(folder / "session.nwb") as io:
        nwbfile = io.read()
        series = nwbfile.acquisition["TwoPhotonSeriesRawPlane0"]
        relative = [Path(os.path.relpath(synthetic.path.parent / "tiffs" / f"part_{index}.tif", folder)).as_posix() for index in range(3)]
        assert list(series.external_file[:]) == relative and relative[0].startswith("../")
        assert list(series.starting_frame) == [0, 25, 45] and series.format == "external"
        assert series.imaging_plane is nwbfile.imaging_planes["ImagingPlanePlane0"] and list(series.dimension[:]) == [raw.shape[2], raw.shape[1]]
        traces = nwbfile.processing["ophys"]["Fluorescence"]["RoiResponseSeriesPlane0"]
        assert (series.rate, series.starting_time) == (traces.rate, traces.starting_time) == (30.0, 0.0)
        pages = [tifffile.imread(folder / path) for path in series.external_file[:]]
    assert [len(page) for page in pages] == list(PAGES_PER_FILE) and sum(PAGES_PER_FILE) == store.attributes()["frames_per_plane"] == raw.shape[0] == 60
    np.testing.assert_array_equal(np.concatenate(pages), raw)
    assert _serious(folder / "session.nwb") == []


def _metadata_options() -> list[str]:
    return [option for name, value in METADATA.items() for option in ("--set", f"metadata.{name}={json.dumps(value)}")]


def test_external_movie_refusals_are_one_line_and_write_nothing(synthetic: SyntheticStore, tmp_path: Path) -> None:
    start = ["--set", "metadata.session_start_time=2024-05-01T10:30:00+00:00", "--movie", "external"]
    target = tmp_path / "out.nwb"

    def refused() -> str:
        result = runner.invoke(app, ["export", "nwb", str(synthetic.path), str(target), *start])
        lines = _error_lines(result)
        assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
        assert not target.exists() and not list(tmp_path.glob(".out.partial.*"))
        return lines[0]

    assert "interleave 2 plane(s) x 1 channel(s)" in refused() and "--movie registered" in refused()
    store = one_plane_tiff_store(synthetic)
    tiffs = synthetic.path.parent / "tiffs"
    (tiffs / "part_1.tif").rename(tiffs / "moved.tif")
    assert refused() == f"error: {tiffs / 'part_1.tif'}: input TIFF listed in the store's tiff_files is gone; --movie external links the original files: restore it, or export with --movie registered (movie='registered') instead"
    store.update_attributes(tiff_files=["part_0.tif", "moved.tif"])
    assert refused() == f"error: {tiffs}: the TIFFs hold 45 pages but the store has 60 frames (files changed since ingest); export with --movie registered (movie='registered') instead"
    store.update_attributes(input_format="hdf5")
    assert "input_format is 'hdf5'; --movie external links TIFF files only" in refused()


# ---------------------------------------------------------------------------------------------
# multi-recording: one file per recording, track ids as a column
# ---------------------------------------------------------------------------------------------

TRACK_DATASET = "pair"
# per recording: (combined/rois row, track id) of its selected ROIs; rows 0-4 are plane 0's ROIs, 5-8 plane 1's
SELECTED = {"day_1": ((0, 3), (2, -1), (5, 0), (8, 1)), "day_2": ((1, 0), (4, 3), (6, 2))}
EXPECTED_TRACK_IDS = {"day_1": ([3, -1, -1, -1, -1], [0, -1, -1, 1]), "day_2": ([-1, 0, -1, -1, 3], [-1, 2, -1, -1])}


@pytest.fixture()
def tracked_pair(tmp_path: Path) -> Any:
    """Two synthetic two-plane stores (5 + 4 ROIs) tracked together as dataset ``pair`` (`SELECTED`; tracks 0 and 3 in both)."""
    from cindra_dask.config import MultiRecordingConfiguration, configuration_from_mapping

    paths = []
    for name, selected in SELECTED.items():
        store = RecordingStore(write_synthetic_store(tmp_path / name, name=name).path)
        root = f"multi_recording/{TRACK_DATASET}"
        for phase in ("discover", "extract"):
            started = store.mark_phase_started(f"{root}/{phase}", config_hash="synthetic")
            store.mark_phase_complete(f"{root}/{phase}", config_hash="synthetic", started=started)
        rows, tracks = (np.array(values, np.int64) for values in zip(*selected))
        masks = RaggedRois.from_masks([(np.array([row]), np.array([row]), np.ones(1, np.float32)) for row in rows])
        store.write_rois(f"{root}/rois", masks, track_id=tracks, track_confidence=np.where(tracks >= 0, 0.5 + 0.1 * tracks, np.nan).astype(np.float32), source_roi_index=rows, centroids=np.zeros((len(rows), 2), np.int32))
        templates = RaggedRois.from_masks([(np.array([track]), np.array([track]), np.ones(1, np.float32)) for track in range(4)])
        store.write_rois(f"{root}/templates", templates, template_track_id=np.arange(4, dtype=np.int64), track_confidence=np.full(4, 0.8, np.float32), recording_count=np.array([2, 1, 1, 2], np.int32))
        paths.append(store.path)
    return configuration_from_mapping(
        {"pipeline_type": "multi-recording", "recording_io": {"recording_directories": [str(path) for path in paths], "dataset_name": TRACK_DATASET}}, source="test", model=MultiRecordingConfiguration
    )


def test_tracked_export_writes_one_file_per_recording_with_shared_track_ids(tracked_pair: Any, tmp_path: Path) -> None:
    """`export nwb-tracked`: day_1.nwb and day_2.nwb; each plane's track_id column is the store's
    assignment (−1 for ROIs in no tracked cell); tracks 0 and 3, in both recordings, name the ROIs
    `tracked_cells` pairs; nwbinspector finds nothing serious."""
    from cindra_dask.config import configuration_to_yaml
    from cindra_dask.export.tracked import tracked_cells

    pytest.importorskip("nwbinspector")
    config = tmp_path / "multi.yaml"
    config.write_text(configuration_to_yaml(tracked_pair))
    out = tmp_path / "nwb"
    out.mkdir()
    result = runner.invoke(app, ["export", "nwb-tracked", str(config), str(out), *_metadata_options()])
    assert result.exit_code == 0, result.output
    assert _nwb_files(out) == ["day_1.nwb", "day_2.nwb"] and result.output.count("wrote ") == 2
    cells = tracked_cells(tracked_pair)
    columns: dict[str, np.ndarray] = {}
    with _read(out / "day_1.nwb") as first, _read(out / "day_2.nwb") as second:
        files = {"day_1": first.read(), "day_2": second.read()}
        assert files["day_1"].identifier != files["day_2"].identifier
        for name, nwbfile in files.items():
            segmentations = nwbfile.processing["ophys"]["ImageSegmentation"]
            per_plane = [segmentations[f"PlaneSegmentationPlane{plane}"]["track_id"][:] for plane in (0, 1)]
            assert [values.tolist() for values in per_plane] == [list(values) for values in EXPECTED_TRACK_IDS[name]], name
            columns[name] = np.concatenate(per_plane)  # combined/rois order: plane 0 then plane 1
            confidence = np.concatenate([segmentations[f"PlaneSegmentationPlane{plane}"]["track_confidence"][:] for plane in (0, 1)])
            np.testing.assert_allclose(confidence[columns[name] >= 0], 0.5 + 0.1 * columns[name][columns[name] >= 0], rtol=1e-6)
            assert np.isnan(confidence[columns[name] < 0]).all()
    both = np.flatnonzero((cells.roi_index >= 0).all(axis=1))
    assert both.tolist() == [0, 3]
    for track in both:
        for column, name in enumerate(SELECTED):
            assert columns[name][cells.roi_index[track, column]] == track  # the same cell carries the same id in both files
    assert _serious(out / "day_1.nwb") == [] and _serious(out / "day_2.nwb") == []


@pytest.mark.filterwarnings("ignore:.*not set. the NWB file gets:UserWarning")
def test_tracked_export_refusals_write_no_file(tracked_pair: Any, tmp_path: Path) -> None:
    from cindra_dask.export.nwb import export_tracked_nwb

    out = tmp_path / "nwb"
    start = ["metadata.session_start_time=2024-05-01T10:30:00+00:00"]
    with pytest.raises(OutputError, match="folder does not exist"):
        export_tracked_nwb(tracked_pair, out, overrides=start)
    out.mkdir()
    (out / "day_2.nwb").write_bytes(b"earlier")
    with pytest.raises(OutputError, match=r"day_2\.nwb: exists; pass --overwrite"):
        export_tracked_nwb(tracked_pair, out, overrides=start)
    assert _nwb_files(out) == ["day_2.nwb"]  # day_1 was checked, not written, before day_2 was refused
    first, second = (RecordingStore(path) for path in tracked_pair.recording_io.recording_directories)
    with pytest.raises(ConfigurationError, match=f"{first.path}: metadata.session_start_time: not set"):  # the synthetic stores record no metadata
        export_tracked_nwb(tracked_pair, out, overwrite=True)
    second.write_array("combined/rois/plane_index", np.zeros(9, np.int32))  # a combine that no longer matches the planes
    with pytest.raises(OutputError, match=f"{second.path}: combined/rois holds 9 ROIs of plane 0 but plane_0/extraction 5"):
        export_tracked_nwb(tracked_pair, out, overrides=start, overwrite=True)
    with pytest.raises(OutputError, match=f"{second.path}: no complete tracking of dataset 'other' \\(datasets here: pair\\)"):
        export_nwb(second.path, out / "single.nwb", metadata=MetadataSettings(session_start_time="2024-05-01T10:30:00+00:00"), tracking_dataset="other")
    assert _nwb_files(out) == ["day_2.nwb"] and (out / "day_2.nwb").read_bytes() == b"earlier"
    result = runner.invoke(app, ["export", "nwb-tracked", str(tmp_path / "missing.yaml"), str(out)])
    assert result.exit_code == 2 and len(_error_lines(result)) == 1
