"""A full disk during a run (issue 20): one line naming the file, exit code 2, no traceback, nothing
that looks complete; the rerun of the same command resumes. The faults are injected into the
writers (zarr's chunk writer on the workers, the JSON writer of the phase records on the client)."""

from __future__ import annotations

import errno
import functools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cindra_dask.config import save_configuration
from cindra_dask.pipeline import store_status
from cindra_dask.store import RecordingStore, frames_path
from tests.conftest import single_configuration, write_tiff_recording

RESUME = "; the unfinished step is left incomplete; free space and rerun the same command to resume"


def _cli(*arguments: Any) -> Any:
    from typer.testing import CliRunner

    from cindra_dask.cli import app

    return CliRunner().invoke(app, [str(argument) for argument in arguments])


def _one_error_line(result: Any) -> str:
    """The one error line, the last, of a run that failed with a user error (exit code 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.output
    return lines[-1]


def test_a_full_disk_ends_the_run_in_one_line_and_the_rerun_resumes(tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import zarr.storage._local as zarr_local

    import cindra_dask.pipeline

    pages = np.random.default_rng(5).integers(0, 500, size=(60, 12, 16)).astype(np.int16)
    write_tiff_recording(tmp_path / "data", pages, file_page_counts=(30, 30), acquisition={"frame_rate": 30.0, "plane_number": 1, "channel_number": 1})
    config_path = save_configuration(single_configuration(tmp_path / "data", tmp_path / "out", registration={"batch_size": 8}), tmp_path / "run.yaml")
    monkeypatch.setattr(cindra_dask.pipeline, "run_configuration", functools.partial(cindra_dask.pipeline.run_configuration, client=client))
    store = RecordingStore(tmp_path / "out" / "data.zarr")
    full_chunk = store.path / frames_path(0, 0) / "c" / "3" / "0" / "0"

    put = zarr_local._put

    def full_disk(path: Path, value: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path) == full_chunk:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return put(path, value, *args, **kwargs)

    monkeypatch.setattr(zarr_local, "_put", full_disk)  # a worker task's chunk write
    line = _one_error_line(_cli("run", config_path, "--phase", "ingest", "--no-progress"))
    assert line.startswith(f"error: {full_chunk}: no space left on the device (") and line.endswith(f"free there){RESUME}"), line
    assert store.phase_record("ingest").status == "running"
    assert any(line.startswith("step ingest") and "INCOMPLETE" in line for line in store_status(store.path))
    assert not (store.path / "datapackage.json").exists() and not store.lock_path.exists()

    monkeypatch.setattr(zarr_local, "_put", put)
    dump = json.dump

    def quota_at_completion(payload: Any, stream: Any, *args: Any, **kwargs: Any) -> None:
        if payload.get("attributes", {}).get("phases", {}).get("ingest", {}).get("status") == "complete":
            stream.write('{"attributes": {"pha')  # what a full quota leaves of the file
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        dump(payload, stream, *args, **kwargs)

    monkeypatch.setattr(json, "dump", quota_at_completion)  # the client's write of the completion marker
    line = _one_error_line(_cli("run", config_path, "--phase", "ingest", "--no-progress"))
    assert line.startswith(f"error: {store.path / 'zarr.json'}: disk quota exceeded (") and line.endswith(f"free there){RESUME}"), line
    assert json.loads((store.path / "zarr.json").read_text())["attributes"]["phases"]["ingest"]["status"] == "running"  # the old file, intact
    assert sorted(path.name for path in store.path.glob(".*.tmp")) == [] and not store.lock_path.exists()

    monkeypatch.setattr(json, "dump", dump)
    result = _cli("run", config_path, "--phase", "ingest", "--no-progress")
    assert result.exit_code == 0, result.output
    assert store.phase_record("ingest").complete and (store.path / "datapackage.json").is_file()
    np.testing.assert_array_equal(store.read(frames_path(0, 0)), pages)


def test_a_worker_does_not_log_the_traceback_of_a_full_disk() -> None:
    """The worker's "Compute Failed" report of a disk-full write is dropped (the run's one line says it); other failures stay."""
    from cindra_dask.cluster import QuietHeartbeatFailures

    QuietHeartbeatFailures().setup(worker=None)
    logger = logging.getLogger("distributed.worker")

    def logged(exception_text: str) -> bool:
        record = logger.makeRecord(logger.name, logging.ERROR, "worker.py", 1, "Compute Failed\nKey: %s\nState: %s\nTask: %s\nException: %r\nTraceback: %r\n", ("key", "executing", "task", exception_text, "tb"), None)
        return all(quiet.filter(record) for quiet in logger.filters)

    assert not logged("OSError(28, 'No space left on device')") and not logged("OSError(122, 'Disk quota exceeded')")
    assert logged("ZeroDivisionError('division by zero')") and logged("OSError(2, 'No such file or directory')")
