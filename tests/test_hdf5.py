"""HDF5 movie input: the same frames as TIFFs ingest byte for byte, bad files are one clear line, the whole pipeline runs."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Sequence

import h5py
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.config import AcquisitionParameters, configuration_from_mapping, save_configuration
from cindra_dask.io.hdf5 import HDF5_READER, inspect_hdf5
from cindra_dask.io.ingest import ingest_graph
from cindra_dask.io.tiff import build_ingest_plan, read_plane_frames
from cindra_dask.pipeline import run_single_recording
from cindra_dask.store import RecordingStore, frames_path
from tests.conftest import single_configuration, write_tiff_recording

PLANES, CHANNELS, FRAMES = 2, 2, 37
TIFF_PAGES = (61, 50, 37)
HDF5_FRAMES = (45, 66, 37)  # other file boundaries than the TIFFs; none a whole number of volumes
ACQUISITION = {"frame_rate": 30.0, "plane_number": PLANES, "channel_number": CHANNELS}


def write_hdf5_recording(
    directory: Path, frames: np.ndarray, *, file_frame_counts: Sequence[int], acquisition: dict[str, Any] | None, dataset: str = "data", chunks: Sequence[Any] = (), stem: str = "recording", dtype: Any = None
) -> list[Path]:
    """Write ``frames`` (n, H, W) into HDF5 files of the given frame counts; ``chunks[i]`` (None: contiguous, or a chunk shape, gzip) per file."""
    directory.mkdir(parents=True, exist_ok=True)
    assert sum(file_frame_counts) == len(frames)
    paths, start = [], 0
    for index, count in enumerate(file_frame_counts):
        path = directory / f"{stem}_{index + 1}.h5"
        chunk = chunks[index] if index < len(chunks) else None
        with h5py.File(path, "w") as handle:
            options = {"chunks": tuple(chunk), "compression": "gzip"} if chunk is not None else {}
            handle.create_dataset(dataset, data=frames[start : start + count], dtype=dtype or frames.dtype, **options)
        paths.append(path)
        start += count
    if acquisition is not None:
        (directory / "cindra_parameters.json").write_text(json.dumps(acquisition))
    return paths


@pytest.fixture(scope="module")
def twin_ingests(tmp_path_factory: pytest.TempPathFactory, client: Any) -> tuple[np.ndarray, RecordingStore, RecordingStore]:
    """The same 2 planes × 2 channels × 37 frames ingested from 3 TIFFs and from 3 HDF5 files (odd dataset chunks, one contiguous)."""
    root = tmp_path_factory.mktemp("twins")
    pages = np.random.default_rng(11).integers(0, 60_000, size=(PLANES * CHANNELS * FRAMES, 24, 30)).astype(np.uint16)
    write_tiff_recording(root / "tiff" / "session", pages, file_page_counts=TIFF_PAGES, acquisition=ACQUISITION)
    write_hdf5_recording(root / "hdf5" / "session", pages, file_frame_counts=HDF5_FRAMES, acquisition=ACQUISITION, chunks=[(7, 11, 30), None, (5, 24, 13)])
    stores = []
    for kind in ("tiff", "hdf5"):
        # chunks of 4 frames: 37 = 9 × 4 + 1
        configuration = single_configuration(root / kind, root / f"out_{kind}", main={"two_channels": True}, registration={"batch_size": 4})
        stores.append(RecordingStore(run_single_recording(configuration, client=client, phases=["ingest"]).store_path))
    return pages, stores[0], stores[1]


def test_hdf5_and_tiff_ingest_to_identical_raw_arrays(twin_ingests: tuple[np.ndarray, RecordingStore, RecordingStore]) -> None:
    pages, from_tiff, from_hdf5 = twin_ingests
    assert from_hdf5.array_paths() == from_tiff.array_paths()
    assert len([path for path in from_hdf5.array_paths() if "/raw/" in path]) == PLANES * CHANNELS
    for plane in range(PLANES):
        for channel in range(CHANNELS):
            path = frames_path(plane, channel)
            tiff_frames, hdf5_frames = from_tiff.read(path), from_hdf5.read(path)
            assert hdf5_frames.dtype == tiff_frames.dtype == np.uint16
            assert hdf5_frames.tobytes() == tiff_frames.tobytes()
            # and both are the interleaved pages: frame t of (plane, channel) is page t·4 + plane·2 + channel
            np.testing.assert_array_equal(hdf5_frames, pages[plane * CHANNELS + channel :: PLANES * CHANNELS])
            assert from_hdf5.array(path).chunks == (4, 24, 30)
    assert from_hdf5.attributes()["frames_per_plane"] == FRAMES


def test_hdf5_store_records_its_input_files(twin_ingests: tuple[np.ndarray, RecordingStore, RecordingStore]) -> None:
    _, from_tiff, from_hdf5 = twin_ingests
    attributes = from_hdf5.attributes()
    assert attributes["input_format"] == "hdf5"
    assert attributes["hdf5_files"] == ["recording_1.h5", "recording_2.h5", "recording_3.h5"]
    assert attributes["hdf5_dataset"] == "data"
    assert Path(attributes["hdf5_directory"]).name == "session"
    assert "tiff_files" not in attributes
    tiff_attributes = from_tiff.attributes()
    assert tiff_attributes["input_format"] == "tiff" and tiff_attributes["tiff_files"] == ["recording_1.tif", "recording_2.tif", "recording_3.tif"]
    assert "hdf5_files" not in tiff_attributes
    record = from_hdf5.phase_record("ingest")
    assert record is not None and record.complete


def test_another_dataset_is_another_ingest(tmp_path: Path) -> None:
    """The ingest's identity includes the dataset read: pointing file_io.hdf5_dataset elsewhere re-ingests."""
    from cindra_dask.pipeline import preflight
    from cindra_dask.runner.single import ingest_hash

    data = _good_hdf5(tmp_path, file_frame_counts=(120,))
    with h5py.File(data / "recording_1.h5", "a") as handle:
        handle.create_dataset("denoised", data=np.ones((120, 12, 14), np.int16))
    contexts = [preflight(single_configuration(data, tmp_path / "out", file_io={"hdf5_dataset": name})) for name in ("data", "denoised")]
    assert [context.plan.files[0].dataset for context in contexts] == ["data", "denoised"]
    assert ingest_hash(contexts[0]) != ingest_hash(contexts[1])
    assert read_plane_frames(contexts[1].plan, plane=contexts[1].plan.virtual_planes[0], channel=0, frame_start=0, frame_stop=60).sum() == 60 * 12 * 14


def test_big_endian_and_strided_reads_match(tmp_path: Path) -> None:
    """Big-endian int16 (as in some Allen files) comes back native with the same values; one plane's frames are a strided selection."""
    frames = np.random.default_rng(2).integers(-3000, 3000, size=(3 * 10, 9, 8)).astype(np.int16)
    paths = write_hdf5_recording(tmp_path, frames, file_frame_counts=(13, 17), acquisition=None, dtype=">i2", chunks=[(4, 9, 8)])
    infos = [inspect_hdf5(path, dataset="data") for path in paths]
    assert [info.page_count for info in infos] == [13, 17] and infos[0].dtype == "<i2"
    plan = build_ingest_plan(infos, AcquisitionParameters(frame_rate=10, plane_number=3, channel_number=1), chunk_frames=4, reader=HDF5_READER)
    assert plan.frames_per_plane == 10
    for plane in plan.virtual_planes:
        read = read_plane_frames(plan, plane=plane, channel=0, frame_start=2, frame_stop=7)  # global frames 6+z .. 18+z: across the file boundary at 13
        assert read.dtype == np.dtype("<i2")
        np.testing.assert_array_equal(read, frames[plane.index :: 3][2:7])


def test_hdf5_ingest_memory_stays_flat_from_2_000_to_20_000_frames(tmp_path: Path) -> None:
    """Ingest reads one 50-frame task at a time (issue 19: a 20 000-frame HDF5 with memory flat): from a
    2 000- to a 20 000-frame movie (4 and 39 MiB) the traced peak grows by what dask keeps per task
    (0.6 -> 2.6 MiB measured, ≈ 5 KiB for each of the 360 more tasks), not by frames, and stays far
    below the movie; the frames come back whole."""
    import dask

    def ingest_writes(name: str, frame_count: int) -> tuple[list[Any], RecordingStore, Path]:
        frames = np.random.default_rng(4).integers(0, 4096, size=(frame_count, 32, 32)).astype(np.int16)
        paths = write_hdf5_recording(tmp_path / name, frames, file_frame_counts=(frame_count,), acquisition=None, chunks=[(10, 32, 32)])
        plan = build_ingest_plan([inspect_hdf5(paths[0], dataset="data")], AcquisitionParameters(frame_rate=30, plane_number=1, channel_number=1), chunk_frames=50, reader=HDF5_READER)
        store = RecordingStore(tmp_path / f"{name}.zarr")
        return ingest_graph(plan, store), store, paths[0]

    def traced_peak_bytes(writes: list[Any]) -> int:
        tracemalloc.start()
        try:
            dask.compute(*writes, scheduler="synchronous")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    warm_up, _, _ = ingest_writes("warm_up", 120)  # the first ingest imports codecs: ~11 MiB of module objects, not data
    dask.compute(*warm_up, scheduler="synchronous")
    peaks = {}
    for frame_count in (2_000, 20_000):
        writes, store, path = ingest_writes(f"movie_{frame_count}", frame_count)
        peaks[frame_count] = traced_peak_bytes(writes)
        with h5py.File(path) as handle:
            np.testing.assert_array_equal(store.read(frames_path(0, 0)), handle["data"][()])
    frame_bytes = 32 * 32 * 2
    assert peaks[20_000] - peaks[2_000] < 18_000 * frame_bytes / 8, f"peaks {peaks[2_000] / 2**20:.1f} and {peaks[20_000] / 2**20:.1f} MiB"
    assert peaks[20_000] < 20_000 * frame_bytes / 8


# -- bad input: one line naming the file and what to do, nothing written ---------------------------------


def _config(root: Path, data: Path, **file_io: Any) -> Path:
    payload = {"runtime": {"display_progress_bars": False}, "file_io": {"data_path": str(data), "output_path": str(root / "out"), **file_io}, "cluster": {"workers": 1}}
    return save_configuration(configuration_from_mapping(payload, source="test"), root / "config.yaml")


def _good_hdf5(root: Path, file_frame_counts: tuple[int, ...] = (48, 72)) -> Path:
    """2 planes × 60 frames (the 50 frames per plane that processing needs, and more) in HDF5 files of the given frame counts."""
    data = root / "data"
    frames = np.random.default_rng(0).integers(0, 100, size=(2 * 60, 12, 14)).astype(np.int16)
    write_hdf5_recording(data, frames, file_frame_counts=file_frame_counts, acquisition={"frame_rate": 30.0, "plane_number": 2, "channel_number": 1})
    return data


def _not_hdf5(root: Path) -> tuple[Path, str]:
    data = _good_hdf5(root)
    (data / "recording_3.h5").write_bytes(b"this is not an HDF5 file" * 20)
    return _config(root, data), "recording_3.h5: not an HDF5 file"


def _missing_dataset(root: Path) -> tuple[Path, str]:
    data = _good_hdf5(root, file_frame_counts=(120,))  # one file, one line (each file lacking it is named)
    return _config(root, data, hdf5_dataset="imaging"), "recording_1.h5: dataset 'imaging' is missing (datasets present: 'data' (120×12×14 int16)); set file_io.hdf5_dataset"


def _dataset_is_a_group(root: Path) -> tuple[Path, str]:
    data = root / "data"
    write_hdf5_recording(data, np.zeros((120, 12, 14), np.int16), file_frame_counts=(120,), acquisition={"frame_rate": 30.0, "plane_number": 2, "channel_number": 1}, dataset="acquisition/frames")
    return _config(root, data, hdf5_dataset="acquisition"), "dataset 'acquisition' is a group, not a dataset (datasets present: 'acquisition/frames' (120×12×14 int16))"


def _wrong_rank(root: Path) -> tuple[Path, str]:
    data = _good_hdf5(root)
    with h5py.File(data / "recording_3.h5", "w") as handle:
        handle.create_dataset("data", data=np.zeros((4, 3, 12, 14, 2), np.uint8))  # sima's (t, z, y, x, c) layout
    return _config(root, data), "recording_3.h5: dataset 'data' has shape (4, 3, 12, 14, 2) (5-D); expected a 3-D (frames, height, width) movie"


def _unsupported_dtype(root: Path) -> tuple[Path, str]:
    data = _good_hdf5(root)
    with h5py.File(data / "recording_3.h5", "w") as handle:
        handle.create_dataset("data", data=np.zeros((4, 12, 14), np.complex64))
    return _config(root, data), "recording_3.h5: dataset 'data' has pixel type complex64, which is not supported"


def _truncated_hdf5(root: Path) -> tuple[Path, str]:
    data = _good_hdf5(root)
    path = data / "recording_2.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return _config(root, data), "recording_2.h5: truncated HDF5 file"


def _frames_not_divisible(root: Path) -> tuple[Path, str]:
    data = root / "data"
    write_hdf5_recording(data, np.zeros((61, 12, 14), np.int16), file_frame_counts=(30, 31), acquisition={"frame_rate": 30.0, "plane_number": 2, "channel_number": 1})
    return _config(root, data), "61 frames in 2 files is not a multiple of plane_number × channel_number = 2"


def _too_few_frames(root: Path) -> tuple[Path, str]:
    data = root / "data"
    write_hdf5_recording(data, np.zeros((40, 12, 14), np.int16), file_frame_counts=(40,), acquisition={"frame_rate": 30.0, "plane_number": 2, "channel_number": 1})
    return _config(root, data), f"{data}: 20 frames per plane (40 HDF5 frames / 2 planes / 1 channel); registration and detection need at least 50 (200+ recommended): record longer or add the missing HDF5 files"


def _tiff_and_hdf5_together(root: Path) -> tuple[Path, str]:
    data = _good_hdf5(root)
    tifffile.imwrite(data / "extra.tif", np.zeros((2, 12, 14), np.int16), photometric="minisblack")
    return _config(root, data), "holds both TIFF (1) and HDF5 (2) movie files; set file_io.input_format to 'tiff' or 'hdf5'"


def _hdf5_requested_none_found(root: Path) -> tuple[Path, str]:
    data = root / "data"
    write_tiff_recording(data, np.zeros((120, 12, 14), np.int16), file_page_counts=(120,), acquisition={"frame_rate": 30.0, "plane_number": 2, "channel_number": 1})
    return _config(root, data, input_format="hdf5"), "no .h5/.hdf5 files found (file_io.input_format is 'hdf5'"


CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    function.__name__.strip("_"): function
    for function in (_not_hdf5, _missing_dataset, _dataset_is_a_group, _wrong_rank, _unsupported_dtype, _truncated_hdf5, _frames_not_divisible, _too_few_frames, _tiff_and_hdf5_together, _hdf5_requested_none_found)
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_hdf5_input_gives_one_clear_line_and_writes_nothing(tmp_path: Path, case: str, command: str) -> None:
    config_path, expected = CASES[case](tmp_path)
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, [command, str(config_path)])
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0], result.output
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before


def test_validate_says_which_format_it_found(tmp_path: Path) -> None:
    data = _good_hdf5(tmp_path)
    result = CliRunner().invoke(app, ["validate", str(_config(tmp_path, data))])
    assert result.exit_code == 0, result.output
    assert "OK — 2 HDF5 files (dataset 'data') (input_format auto: found hdf5), 60 frames × 2 planes × 1 channels of 12×14 <i2" in result.output
    (tmp_path / "config.yaml").unlink()
    tiffs = tmp_path / "tiffs"
    write_tiff_recording(tiffs, np.zeros((120, 12, 14), np.int16), file_page_counts=(120,), acquisition={"frame_rate": 30.0, "plane_number": 2, "channel_number": 1})
    result = CliRunner().invoke(app, ["validate", str(_config(tmp_path, tiffs, input_format="tiff"))])
    assert result.exit_code == 0 and "OK — 1 TIFF files (input_format tiff), 60 frames × 2 planes" in result.output, result.output


# -- the whole pipeline on a simulated recording written as HDF5 ------------------------------------------


def test_pipeline_on_hdf5_finds_the_same_rois_as_on_tiffs(tmp_path: Path, client: Any) -> None:
    from cindra_dask.evaluate import score_recording
    from cindra_dask.simulate import SimulationParameters, load_ground_truth, write_recording

    simulation = SimulationParameters(frame_height=112, frame_width=112, frame_count=400, cell_count=25, non_cell_count=5, file_count=2, seed=19)
    tiffs = write_recording(simulation, tmp_path / "tiffs")
    hdf5 = tmp_path / "hdf5"
    hdf5.mkdir()
    for path in sorted(tiffs.glob("*.tif")):  # each TIFF becomes one HDF5 file with the same pages
        with h5py.File(hdf5 / f"{path.stem}.h5", "w") as handle:
            handle.create_dataset("movie", data=tifffile.imread(path), chunks=(16, 56, 112), compression="gzip")
    shutil.copy(tiffs / "cindra_parameters.json", hdf5)
    sections = {"runtime": {"max_chunk_memory": "1MiB"}, "main": {"tau": simulation.tau_s}, "nonrigid_registration": {"block_size": [64, 64]}}
    stores = []
    for data, extra in ((tiffs, {}), (hdf5, {"hdf5_dataset": "movie"})):
        configuration = single_configuration(data, tmp_path / f"out_{data.name}", file_io=extra, **sections)
        stores.append(RecordingStore(run_single_recording(configuration, client=client).store_path))
    from_tiff, from_hdf5 = stores
    assert from_hdf5.read(frames_path(0, 0)).tobytes() == from_tiff.read(frames_path(0, 0)).tobytes()
    rois_tiff, rois_hdf5 = from_tiff.read_rois("plane_0/rois"), from_hdf5.read_rois("plane_0/rois")
    assert rois_hdf5.count == rois_tiff.count >= 12
    for name in ("pixel_offsets", "ypix", "xpix", "lam"):
        np.testing.assert_array_equal(getattr(rois_hdf5, name), getattr(rois_tiff, name))
    np.testing.assert_allclose(from_hdf5.read("plane_0/extraction/spikes"), from_tiff.read("plane_0/extraction/spikes"), rtol=1e-6, atol=1e-6)
    scores = score_recording(from_hdf5.path, load_ground_truth(tiffs / "ground_truth.npz"), plane=0)
    # seed 19 measured: 13 ROIs, 11 matched (precision 0.92, recall 0.5), trace r 0.97, spike r 0.96 — the same from TIFFs
    assert scores.matched_cells >= 10 and scores.detection_precision >= 0.9 and scores.trace_correlation >= 0.9, scores


def test_hdf5_inputs_in_exports_and_maintenance(tmp_path: Path, client: Any) -> None:
    """suite2p's ops name the HDF5 files (h5py, h5py_key); dropping the raw frames is refused once an input file is gone."""
    from cindra_dask.errors import OutputError
    from cindra_dask.export.suite2p import _input_ops
    from cindra_dask.runner.maintenance import clean_store

    data = _good_hdf5(tmp_path)
    store = RecordingStore(run_single_recording(single_configuration(data, tmp_path / "out"), client=client, phases=["ingest"]).store_path)
    ops = _input_ops(store.attributes())
    assert ops["input_format"] == "h5" and ops["h5py_key"] == "data"
    assert ops["file_list"] == ["recording_1.h5", "recording_2.h5"] and ops["h5py"] == [str(data / "recording_1.h5"), str(data / "recording_2.h5")]
    (data / "recording_2.h5").rename(tmp_path / "moved.h5")
    with pytest.raises(OutputError, match=r"input files are not all available \(recording_2.h5 missing"):
        clean_store(store.path, what=(), remove_raw=True)
    assert store.read(frames_path(1, 0)).shape == (60, 12, 14)
