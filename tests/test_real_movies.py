"""Real movies without labels (issue 24 item 1): the pipeline runs on the cached Allen crops and its ROIs are plausible.

The movies come from ``benchmarks/accuracy/fetch_real_movies.py`` (cached outside git); every test
skips, naming that command, when they are absent. ``benchmarks/accuracy/bench_real_movies.py``
writes the full report with pictures (``benchmarks/accuracy/results/real_movies.md``).

Why these ranges: ``allen_movie_100`` is a 100 × 100 px crop of an Allen Brain Observatory
movie. Allen's own suite2p segmentation uses a 12 px soma diameter (0.78 µm/px), and an Allen
400 × 400 µm field yields 50–300 segmented cells, so the crop (3.8 % of a field) holds about 2–11;
on its mean image the bright puncta are 2–4 px, far smaller than a 12 px soma, and activity over
its 100 frames (3.2 s at 31 Hz) marks only a few cells. So at most 12 ROIs, each at least a
quarter of a 12 px soma's area (28 px) with the indicator's tau, and never the pipeline's own
minimum (a quarter of its detected cell area) with the defaults. ``allen_792757260_frames`` is
frames sampled across a session (no temporal continuity): activity detection must find next to
nothing.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.config import configuration_from_mapping, save_configuration
from cindra_dask.pipeline import run_single_recording
from cindra_dask.store import RecordingStore

FETCH_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy" / "fetch_real_movies.py"
FETCH_COMMAND = "python benchmarks/accuracy/fetch_real_movies.py --allen <AllenInstitute/ophys_etl_pipelines git dir> --sima <losonczylab/sima git dir>"


def _fetch_module() -> Any:
    if str(FETCH_SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(FETCH_SCRIPT.parent))  # the script imports its sibling data_cache
    spec = importlib.util.spec_from_file_location("fetch_real_movies", FETCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FETCH = _fetch_module()
MOVIES = {movie.name: movie for movie in FETCH.MOVIES}


def cached_movie_folder(name: str) -> Path:
    movie = MOVIES[name]
    if not FETCH.movie_file(movie).is_file():
        pytest.skip(f"real movie {name} not cached at {FETCH.movie_folder(movie)}; run {FETCH_COMMAND}")
    return FETCH.movie_folder(movie)


def _run(name: str, output: Path, client: Any, **sections: Any) -> RecordingStore:
    movie = MOVIES[name]
    file_io = {"data_path": str(cached_movie_folder(name)), "output_path": str(output)}
    if movie.hdf5_dataset not in ("", "data"):
        file_io["hdf5_dataset"] = movie.hdf5_dataset
    configuration = configuration_from_mapping({"runtime": {"display_progress_bars": False}, "file_io": file_io, **sections}, source="test")
    return RecordingStore(run_single_recording(configuration, client=client).store_path)


def _sizes(store: RecordingStore) -> np.ndarray:
    return np.diff(store.read_rois("plane_0/rois").pixel_offsets)


@pytest.fixture(scope="module")
def allen_runs(tmp_path_factory: pytest.TempPathFactory, client: Any) -> dict[str, RecordingStore]:
    root = tmp_path_factory.mktemp("allen")
    movie = MOVIES["allen_movie_100"]
    return {"defaults": _run(movie.name, root / "defaults", client), "tau": _run(movie.name, root / "tau", client, main={"tau": movie.tau_s})}


def test_allen_movie_with_the_indicator_tau_gives_few_soma_sized_rois(allen_runs: dict[str, RecordingStore]) -> None:
    store = allen_runs["tau"]
    sizes = _sizes(store)
    quarter_soma = math.pi * (MOVIES["allen_movie_100"].cell_diameter_px / 2) ** 2 / 4  # 28 px
    assert 1 <= len(sizes) <= 12, sizes
    assert sizes.min() >= quarter_soma, sizes  # measured: 2 ROIs of 41 and 53 px, both classified cells
    classification = store.read("plane_0/extraction/cell_classification")
    assert int((classification[:, 0] > 0.5).sum()) >= 1


def test_allen_movie_with_defaults_has_no_specks(allen_runs: dict[str, RecordingStore]) -> None:
    store = allen_runs["defaults"]
    sizes = _sizes(store)
    diameter = store.group_attributes("plane_0/rois")["diameter_px"]
    assert len(sizes) <= 12, sizes  # measured: 4 ROIs of 17, 29, 31 and 168 px
    assert sizes.min() > 1 and sizes.min() >= math.pi * (diameter / 2) ** 2 / 4, (sizes, diameter)  # no 1-px ROI; the pipeline's own minimum


def test_allen_frames_without_temporal_continuity_give_no_activity_rois(tmp_path: Path, client: Any) -> None:
    with pytest.warns(UserWarning, match="detection found no ROIs"):
        store = _run("allen_792757260_frames", tmp_path, client, main={"tau": MOVIES["allen_792757260_frames"].tau_s})
    assert len(_sizes(store)) <= 2


def test_validate_names_the_real_files(tmp_path: Path) -> None:
    """The Allen file read as a user would first try it (default dataset), then with its dataset named."""
    folder = cached_movie_folder("allen_792757260_frames")

    def validate(**file_io: Any) -> Any:
        payload = {"runtime": {"display_progress_bars": False}, "file_io": {"data_path": str(folder), "output_path": str(tmp_path / "out"), **file_io}}
        return CliRunner().invoke(app, ["validate", str(save_configuration(configuration_from_mapping(payload, source="test"), tmp_path / "config.yaml"))])

    refused = validate()
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [
        f"error: {folder / '792757260_test_data.h5'}: dataset 'data' is missing (datasets present: 'ave_image' (100×100 float64), 'input_frames' (100×100×100 int16), "
        "'ops' (scalar object), 'reference_img' (100×100 int16)); set file_io.hdf5_dataset to the one holding the movie"
    ]
    accepted = validate(hdf5_dataset="input_frames")
    assert accepted.exit_code == 0, accepted.output
    assert "OK — 1 HDF5 files (dataset 'input_frames') (input_format auto: found hdf5), 100 frames × 1 planes × 1 channels of 100×100 <i2" in accepted.output


def test_sima_clip_below_the_frame_minimum_is_one_clear_line(tmp_path: Path) -> None:
    """20 frames, below the 50 per plane registration and detection need: refused in one line naming the folder and the count."""
    folder = cached_movie_folder("sima_example")
    payload = {"runtime": {"display_progress_bars": False}, "file_io": {"data_path": str(folder), "output_path": str(tmp_path / "out")}}
    result = CliRunner().invoke(app, ["validate", str(save_configuration(configuration_from_mapping(payload, source="test"), tmp_path / "config.yaml"))])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: {folder}: 20 frames per plane (20 TIFF pages / 1 plane / 1 channel); registration and detection need at least 50 (200+ recommended): record longer or add the missing TIFF files"
    ]


def test_bench_pictures_are_valid_pngs(tmp_path: Path) -> None:
    """The bench writes its PNGs with zlib alone; an independent reader gets the pixels back."""
    from skimage.io import imread

    if str(FETCH_SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(FETCH_SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_real_movies", FETCH_SCRIPT.parent / "bench_real_movies.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    image = np.random.default_rng(0).integers(0, 256, size=(7, 11, 3)).astype(np.uint8)
    bench.write_png(tmp_path / "picture.png", image)
    np.testing.assert_array_equal(imread(tmp_path / "picture.png"), image)
