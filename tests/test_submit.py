"""`cindra-dask submit` (issue 21): the run goes on after the submitting client has gone, its store
equals a plain run's, a failure shows in `status` and a resubmission resumes; bad input writes nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.config import configuration_to_yaml
from cindra_dask.errors import ConfigurationError
from cindra_dask.pipeline import run_single_recording, store_status
from cindra_dask.runner.submit import submit_run
from cindra_dask.simulate import SimulationParameters, write_recording
from cindra_dask.store import RecordingStore, SubmittedRunRecord
from tests.conftest import single_configuration

runner = CliRunner()
SIMULATION = SimulationParameters(frame_height=64, frame_width=64, frame_count=300, cell_count=10, non_cell_count=1, seed=5)
COMPARED = ("plane_0/registered/channel_0", "plane_0/registration/rigid_offsets", "plane_0/rois/pixel_offsets", "plane_0/extraction/cell_fluorescence", "plane_0/extraction/spikes", "combined/extraction/spikes")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_recording(SIMULATION, tmp_path_factory.mktemp("submit") / "mouse")


@pytest.fixture(scope="module")
def scheduler() -> Any:
    """A LocalCluster of one worker process with two threads (the run's seceded driver and its graphs share them),
    started here as a running scheduler elsewhere would be; its address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def _break_detection(broken: bool) -> None:
    """In a worker process: detection's plan raises (``broken``) or is the real one again."""
    import cindra_dask.detection.graph as graph

    if not hasattr(graph, "_real_plan_detection_step"):
        graph._real_plan_detection_step = graph.plan_detection_step
    graph.plan_detection_step = _broken_detection if broken else graph._real_plan_detection_step


def _broken_detection(context: Any, *, plane: int) -> Any:
    raise RuntimeError("detection broke on purpose\nsecond line")


def _config_file(data: Path, output: Path, path: Path) -> Path:
    path.write_text(configuration_to_yaml(single_configuration(data, output, main={"tau": SIMULATION.tau_s})))
    return path


def _final_record(store: RecordingStore, run_id: str, *, timeout_s: float = 180.0) -> SubmittedRunRecord:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        records = {record.run_id: record for record in store.run_records()}
        if run_id in records and records[run_id].state in ("complete", "failed"):
            return records[run_id]
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end in {timeout_s} s: {store.run_records()}")


def _submit(config: Path, address: str) -> tuple[str, RecordingStore, str]:
    """`cindra-dask submit`: (run id, store, the run's state when the command returned)."""
    result = runner.invoke(app, ["submit", str(config), "--scheduler-address", address])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    run_id = lines[0].split()[2]
    store = RecordingStore(lines[1].split()[-1])
    return run_id, store, {record.run_id: record for record in store.run_records()}[run_id].state


def test_submitted_run_goes_on_without_its_client_and_equals_a_plain_run(data: Path, scheduler: str, tmp_path: Path) -> None:
    from distributed import Client

    run_id, store, state_on_return = _submit(_config_file(data, tmp_path / "submitted", tmp_path / "submit.yaml"), scheduler)
    assert state_on_return in ("submitted", "running")  # the command returned (and closed its client) before the run ended
    record = _final_record(store, run_id)
    assert record.state == "complete", record.error
    assert record.outcomes == ("ingest: ran", "registration/plane_0: ran", "detection/plane_0: ran", "extraction/plane_0: ran", "combine: ran")
    assert any(line.startswith(f"run {run_id} ") and "complete at" in line for line in store_status(store.path))
    assert not store.lock_path.exists()
    with Client(scheduler) as client:
        plain = RecordingStore(run_single_recording(single_configuration(data, tmp_path / "plain", main={"tau": SIMULATION.tau_s}), client=client).store_path)
    assert plain.read("plane_0/rois/pixel_offsets").size > 3
    for path in COMPARED:
        np.testing.assert_array_equal(store.read(path), plain.read(path), err_msg=path)


def test_failed_submitted_run_shows_in_status_and_a_resubmission_resumes(data: Path, scheduler: str, tmp_path: Path) -> None:
    """Detection raises in the workers: the run is recorded failed with its error, the steps before it complete and
    detection incomplete; submitted again without the fault, it skips ingest and registration."""
    from distributed import Client

    config = _config_file(data, tmp_path / "out", tmp_path / "submit.yaml")
    with Client(scheduler) as client:
        client.run(_break_detection, True)
        try:
            run_id, store, _ = _submit(config, scheduler)
            record = _final_record(store, run_id)
        finally:
            client.run(_break_detection, False)
    assert record.state == "failed" and record.error == "RuntimeError: detection broke on purpose"
    lines = store_status(store.path)
    assert f"run {run_id} (submitted {record.submitted} to {scheduler}): FAILED at {record.finished}: RuntimeError: detection broke on purpose; finished steps are kept: fix it and submit again to resume" in lines
    assert any(line.startswith("step registration/plane_0") and " complete " in line for line in lines)
    assert any(line.startswith("step detection/plane_0") and "INCOMPLETE" in line for line in lines)
    again, _, _ = _submit(config, scheduler)
    assert _final_record(store, again).outcomes == ("ingest: skipped", "registration/plane_0: skipped", "detection/plane_0: ran", "extraction/plane_0: ran", "combine: ran")


def test_bad_submissions_write_nothing(data: Path, tmp_path: Path) -> None:
    config = _config_file(data, tmp_path / "out", tmp_path / "submit.yaml")
    result = runner.invoke(app, ["submit", str(config)])
    assert result.exit_code == 2 and result.output.splitlines() == ["error: cluster.scheduler_address: submit needs a running Dask scheduler; give --scheduler-address tcp://HOST:8786 or set cluster.scheduler_address"]
    result = runner.invoke(app, ["submit", str(config), "--scheduler-address", "tcp://127.0.0.1:1", "--set", "registration.batch_size=0"])
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1 and "registration.batch_size" in result.output
    configuration = single_configuration(data, tmp_path / "out", cluster={"scheduler_address": "tcp://127.0.0.1:1"})
    with pytest.raises(ConfigurationError, match=r"^cluster.scheduler_address: cannot reach tcp://127.0.0.1:1 .*is the scheduler running\?$"):
        submit_run(configuration, connect_timeout_s=1.0)
    assert not (tmp_path / "out").exists()
    assert "submit" in runner.invoke(app, ["--help"]).output
    help_text = runner.invoke(app, ["submit", "--help"]).output
    assert "--scheduler-address" in help_text and "status" in help_text


def test_status_of_a_submitted_run_before_its_store_and_after_its_worker_died(tmp_path: Path) -> None:
    """Records alone (no cluster): waiting for a worker before the store exists; a "running" record whose process is gone is STOPPED."""
    store = RecordingStore(tmp_path / "mouse.zarr")
    record = SubmittedRunRecord("20261203T080000-abcdef", "submitted", "tcp://host:8786", "2026-12-03T08:00:00+00:00")
    store.write_run_record(record)
    assert store_status(store.path) == [f"store: {store.path} (not written yet)", "run 20261203T080000-abcdef (submitted 2026-12-03T08:00:00+00:00 to tcp://host:8786): waiting for a worker to start it"]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    store.write_run_record(record._replace(state="running", started=record.submitted, host=socket.gethostname(), pid=int(gone.stdout)))
    assert "STOPPED — its process" in store_status(store.path)[1] and store_status(store.path)[1].endswith("submit again to resume")
