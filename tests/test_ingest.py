"""Ingest: every Zarr frame equals its TIFF page; MROI strips; chunk alignment; real processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from cindra_dask.io.tiff import build_ingest_plan, inspect_tiff, natural_sort_key
from cindra_dask.pipeline import run_single_recording
from cindra_dask.store import RecordingStore, frames_path
from tests.conftest import single_configuration, write_tiff_recording

PLANES, CHANNELS, FRAMES = 2, 2, 37
FILE_PAGES = (61, 50, 37)  # 148 pages = 37 volumes; no file is a whole number of volumes


def _independent_frame(paths: list[Path], global_page: int) -> np.ndarray:
    """The page read with tifffile alone (no project code)."""
    for path in paths:
        with tifffile.TiffFile(path) as tif:
            count = len(tif.pages)
        if global_page < count:
            return tifffile.imread(path, key=global_page)
        global_page -= count
    raise IndexError(global_page)


@pytest.fixture(scope="module")
def interleaved(tmp_path_factory: pytest.TempPathFactory, client: Any) -> tuple[list[Path], RecordingStore]:
    root = tmp_path_factory.mktemp("interleaved")
    rng = np.random.default_rng(3)
    pages = rng.integers(0, 4000, size=(PLANES * CHANNELS * FRAMES, 24, 30)).astype(np.uint16)
    paths = write_tiff_recording(root / "data" / "session", pages, file_page_counts=FILE_PAGES, acquisition={"frame_rate": 30.0, "plane_number": PLANES, "channel_number": CHANNELS})
    # chunks of 4 frames ("64KiB" of float32 frames would hold 22; batch_size caps at 4): 37 = 9×4 + 1
    configuration = single_configuration(root / "data", root / "out", main={"two_channels": True}, registration={"batch_size": 4})
    report = run_single_recording(configuration, client=client, phases=["ingest"])
    return paths, RecordingStore(report.store_path)


def test_every_frame_equals_its_tiff_page(interleaved: tuple[list[Path], RecordingStore]) -> None:
    paths, store = interleaved
    for plane in range(PLANES):
        for channel in range(CHANNELS):
            stored = store.read(frames_path(plane, channel))
            assert stored.shape == (FRAMES, 24, 30) and stored.dtype == np.uint16
            for frame in range(FRAMES):
                page = frame * PLANES * CHANNELS + plane * CHANNELS + channel
                np.testing.assert_array_equal(stored[frame], _independent_frame(paths, page))


def test_chunks_follow_the_plan_and_never_straddle(interleaved: tuple[list[Path], RecordingStore]) -> None:
    _, store = interleaved
    array = store.array(frames_path(0, 0))
    assert array.chunks == (4, 24, 30)
    chunk_files = sorted((store.path / frames_path(0, 0) / "c").iterdir(), key=lambda path: int(path.name))
    assert [int(path.name) for path in chunk_files] == list(range(10))  # 9 full chunks + last of 1 frame
    assert store.array(frames_path(0, 0)).metadata.dimension_names == ("t", "y", "x")
    record = store.phase_record("ingest")
    assert record is not None and record.complete
    assert store.attributes()["acquisition"]["plane_number"] == PLANES


def test_ingest_graph_has_one_task_per_chunk(tmp_path: Path) -> None:
    from cindra_dask.io.ingest import ingest_graph

    pages = np.arange(2 * 11 * 6 * 5, dtype=np.int16).reshape(22, 6, 5)
    paths = write_tiff_recording(tmp_path, pages, file_page_counts=(9, 13), acquisition=None)
    from cindra_dask.config import AcquisitionParameters

    plan = build_ingest_plan([inspect_tiff(path) for path in paths], AcquisitionParameters(frame_rate=10, plane_number=2, channel_number=1), chunk_frames=3)
    writes = ingest_graph(plan, RecordingStore(tmp_path / "s.zarr"))
    assert len(writes) == 2
    for write in writes:
        graph = dict(write.__dask_graph__())
        readers = [key for key in graph if isinstance(key, tuple) and str(key[0]).startswith("ingest-")]
        assert len(readers) == 4  # ceil(11 / 3) chunks, one reading task each


def test_mroi_strips_land_in_virtual_planes(tmp_path: Path, client: Any) -> None:
    rng = np.random.default_rng(5)
    pages = rng.integers(0, 1000, size=(2 * 12, 40, 16)).astype(np.int16)  # 2 z-planes, 12 volumes
    acquisition = {"frame_rate": 20.0, "plane_number": 2, "channel_number": 1, "roi_number": 2, "roi_lines": [list(range(0, 15)), list(range(22, 40))], "roi_x_coordinates": [0, 16], "roi_y_coordinates": [0, 0]}
    write_tiff_recording(tmp_path / "data", pages, file_page_counts=(10, 14), acquisition=acquisition)
    report = run_single_recording(single_configuration(tmp_path / "data", tmp_path / "out"), client=client, phases=["ingest"])
    store = RecordingStore(report.store_path)
    for region, (first, last) in enumerate([(0, 14), (22, 39)]):
        for z in range(2):
            virtual = region * 2 + z
            stored = store.read(frames_path(virtual, 0))
            np.testing.assert_array_equal(stored, pages[z::2, first : last + 1])
    assert store.array(frames_path(2, 0)).attrs["x_offset"] == 16


def test_compressed_and_long_single_file(tmp_path: Path, client: Any) -> None:
    pages = (np.arange(3001 * 8 * 8) % 30000).astype(np.int16).reshape(3001, 8, 8)
    write_tiff_recording(tmp_path / "data", pages[:3000], file_page_counts=(3000,), acquisition={"frame_rate": 30.0, "plane_number": 3, "channel_number": 1}, compression="zlib")
    report = run_single_recording(single_configuration(tmp_path / "data", tmp_path / "out", registration={"batch_size": 64}), client=client, phases=["ingest"])
    store = RecordingStore(report.store_path)
    for plane in range(3):
        np.testing.assert_array_equal(store.read(frames_path(plane, 0)), pages[plane:3000:3])


def test_natural_sort() -> None:
    assert sorted(["f_10.tif", "f_2.tif", "F_1.tif"], key=natural_sort_key) == ["F_1.tif", "f_2.tif", "f_10.tif"]


def test_ingest_on_a_multiprocess_local_cluster(tmp_path: Path) -> None:
    """Pickling check: the same graph on real worker processes."""
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(11)
    pages = rng.integers(-2000, 2000, size=(2 * 25, 16, 20)).astype(np.int16)
    write_tiff_recording(tmp_path / "data", pages, file_page_counts=(17, 33), acquisition={"frame_rate": 30.0, "plane_number": 1, "channel_number": 2})
    configuration = single_configuration(tmp_path / "data", tmp_path / "out", main={"two_channels": True}, registration={"batch_size": 7})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as process_client:
        report = run_single_recording(configuration, client=process_client, phases=["ingest"])
    store = RecordingStore(report.store_path)
    np.testing.assert_array_equal(store.read(frames_path(0, 0)), pages[0::2])
    np.testing.assert_array_equal(store.read(frames_path(0, 1)), pages[1::2])
