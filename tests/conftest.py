"""Shared fixtures: one in-process Dask client for the session, small TIFF recordings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest


@pytest.fixture(scope="session")
def client() -> Any:
    """One threaded, in-process Dask client shared by every test that needs a cluster.

    BLAS runs single-threaded, as in worker processes (the nanny sets OMP_NUM_THREADS=1), so results
    are bit-identical to runs on process clusters (BLAS sums in a thread-count-dependent order).
    """
    from distributed import Client
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"), Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as shared:
        yield shared


ONE_PHOTON = {"frame_height": 80, "frame_width": 80, "frame_count": 500, "cell_count": 16, "seed": 7}
"""`cindra_dask.simulate.one_photon_parameters` changes of the one-photon recording `one_photon_run` processes."""


@pytest.fixture(scope="session")
def one_photon_run(tmp_path_factory: pytest.TempPathFactory, client: Any) -> tuple[Path, Any]:
    """The one-photon preset (glow ≈ 20× a spike's dF, 8-bit) as a Miniscope V4 folder, through the `CNMF_E_PRESET`
    configuration (CNMF-E, then the miniscope step): (the folder, the run's report)."""
    from cindra_dask.config import CNMF_E_PRESET
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.simulate import one_photon_parameters, write_miniscope_recording

    root = tmp_path_factory.mktemp("cnmf_e")
    parameters = one_photon_parameters(**ONE_PHOTON)
    data = write_miniscope_recording(parameters, root / "miniscope", version="v4", frames_per_file=200)
    configuration = single_configuration(data, root / "out", main={"tau": parameters.tau_s}, runtime={"max_chunk_memory": "1MiB"}, **CNMF_E_PRESET)
    return data, run_single_recording(configuration, client=client)


def write_tiff_recording(
    directory: Path,
    pages: np.ndarray,
    *,
    file_page_counts: Sequence[int],
    acquisition: dict[str, Any] | None,
    stem: str = "recording",
    compression: str | None = None,
) -> list[Path]:
    """Write ``pages`` (n_pages, H, W) into TIFF files of the given page counts (+ parameters JSON)."""
    directory.mkdir(parents=True, exist_ok=True)
    import tifffile

    assert sum(file_page_counts) == len(pages)
    paths, start = [], 0
    for index, count in enumerate(file_page_counts):
        path = directory / f"{stem}_{index + 1}.tif"
        tifffile.imwrite(path, pages[start : start + count], compression=compression, photometric="minisblack")
        paths.append(path)
        start += count
    if acquisition is not None:
        (directory / "cindra_parameters.json").write_text(json.dumps(acquisition))
    return paths


def single_configuration(data_path: Path, output_path: Path, **sections: Any) -> Any:
    """A single-recording configuration for tests (no progress bars, small chunks)."""
    from cindra_dask.config import configuration_from_mapping

    payload: dict[str, Any] = {"runtime": {"display_progress_bars": False, "max_chunk_memory": "1MiB"}, "file_io": {"data_path": str(data_path), "output_path": str(output_path)}}
    for name, values in sections.items():
        payload.setdefault(name, {}).update(values)
    return configuration_from_mapping(payload, source="test")


def registration_options(**changes: Any) -> Any:
    """The default configuration's registration options (`cindra_dask.registration.kernels.PlanOptions`) with ``changes``."""
    from cindra_dask.config import SingleRecordingConfiguration
    from cindra_dask.registration.graph import plan_options

    return plan_options(SingleRecordingConfiguration())._replace(**changes)


def detection_options(**changes: Any) -> Any:
    """The default configuration's detection options (`cindra_dask.detection.plane.DetectionOptions`) with ``changes``."""
    from cindra_dask.config import SingleRecordingConfiguration, roi_detection_options

    return roi_detection_options(SingleRecordingConfiguration())._replace(**changes)
