"""The whole single-recording pipeline: accuracy, combine, resume, and reliability under faults.

One simulated two-plane recording is processed once, undisturbed, on the shared in-process client
(``reference_run``), and once more on a LocalCluster of worker processes (``process_reference_store``).
The fault tests process the same TIFFs again — on a real ``dask scheduler`` with two ``dask worker``
processes, one of them SIGKILLed mid-registration, and as a ``cindra-dask run`` subprocess SIGKILLed
mid-``process`` then rerun — and their stores must equal the undisturbed process run array for array.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from cindra_dask.config import configuration_to_yaml
from cindra_dask.evaluate import score_recording
from cindra_dask.pipeline import run_single_recording
from cindra_dask.simulate import SimulationParameters, load_ground_truth, write_recording
from cindra_dask.store import RecordingStore
from tests.conftest import single_configuration

VENV_BIN = Path(sys.executable).parent
SIMULATION = SimulationParameters(frame_height=112, frame_width=112, frame_count=400, plane_count=2, cell_count=25, non_cell_count=5, file_count=3, seed=21)
SECTIONS = {"runtime": {"max_chunk_memory": "1MiB"}, "main": {"tau": SIMULATION.tau_s}, "nonrigid_registration": {"block_size": [64, 64]}}


class ReferenceRun(NamedTuple):
    data: Path
    store: RecordingStore
    tiff_digests: dict[str, str]
    outcomes: tuple[Any, ...]


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every TIFF in ``folder``."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.tif"))}


def configuration_for(data: Path, output: Path, **cluster: Any) -> Any:
    sections = {name: dict(values) for name, values in SECTIONS.items()}
    if cluster:
        sections["cluster"] = cluster
    return single_configuration(data, output, **sections)


def assert_same_outputs(store: RecordingStore, reference: RecordingStore) -> None:
    """Every array of ``reference`` exists in ``store`` with the same values.

    Integer and boolean arrays (frames, masks, flags) must be identical; floating-point arrays may
    differ by a few float32 units in the last place (≤ 1e-6 relative or absolute): a task recomputed on another
    worker reads its inputs from buffers with another memory alignment, and numpy's SIMD loops then
    sum in another order (seen on nonrigid block correlations, ≤ 1.5e-8, and block offsets, ≤ 2.5e-7 px).
    """
    paths = reference.array_paths()
    assert store.array_paths() == paths
    for path in paths:
        actual, expected = store.read(path), reference.read(path)
        if actual.dtype.kind == "f":
            np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6, err_msg=path)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=path)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory, client: Any) -> ReferenceRun:
    root = tmp_path_factory.mktemp("end_to_end")
    data = write_recording(SIMULATION, root / "data")
    before = digests(data)
    report = run_single_recording(configuration_for(data, root / "out"), client=client)
    return ReferenceRun(data, RecordingStore(report.store_path), before, report.outcomes)


@pytest.fixture(scope="session")
def process_reference_store(reference_run: ReferenceRun, tmp_path_factory: pytest.TempPathFactory) -> RecordingStore:
    """The same run, undisturbed, on a LocalCluster of worker processes: what the fault runs (worker
    processes too) must equal. Runs on the in-process client differ from runs in worker processes in
    the last bit of some float32 reference pixels (the layout of workers and threads does not matter;
    the cause was not found), which can round one registered pixel the other way."""
    report = run_single_recording(configuration_for(reference_run.data, tmp_path_factory.mktemp("process_reference"), workers=2, threads_per_worker=1, dashboard_address=":0"))
    return RecordingStore(report.store_path)


def test_every_step_ran_and_inputs_are_untouched(reference_run: ReferenceRun) -> None:
    steps = [(outcome.name, outcome.state) for outcome in reference_run.outcomes]
    assert steps == [("ingest", "ran")] + [(f"{step}/plane_{plane}", "ran") for plane in (0, 1) for step in ("registration", "detection", "extraction")] + [("combine", "ran")]
    assert digests(reference_run.data) == reference_run.tiff_digests


def test_accuracy_against_the_truth(reference_run: ReferenceRun) -> None:
    """Small planes (112², 400 frames, 25 somata): the figures print with ``pytest -s``.

    With nonrigid motion the rigid offsets alone are not comparable with the planted rigid part (the
    rigid estimate absorbs the frame-mean of the nonrigid field), so the dense field is scored.
    """
    truth = load_ground_truth(reference_run.data / "ground_truth.npz")
    for plane in (0, 1):
        scores = score_recording(reference_run.store.path, truth, plane=plane)
        print(f"plane {plane}: {scores}")
        assert scores.displacement_rms_px <= 0.3
        assert scores.detection_f1 >= 0.8
        assert scores.trace_correlation >= 0.9 and scores.spike_correlation >= 0.85


def test_combined_view_tiles_planes(reference_run: ReferenceRun) -> None:
    store = reference_run.store
    attributes = dict(store.root()["combined"].attrs)
    assert (attributes["combined_height"], attributes["combined_width"]) == (112, 224)  # ncols = ceil(sqrt(2·112²)/112) = 2
    assert attributes["plane_x_offsets"] == [0, 112] and attributes["included_planes"] == [0, 1]
    counts = [store.read_rois(f"plane_{plane}/rois").count for plane in (0, 1)]
    plane_index = store.read("combined/rois/plane_index")
    np.testing.assert_array_equal(plane_index, np.repeat([0, 1], counts))
    combined = store.read_rois("combined/rois")
    second = store.read_rois("plane_1/rois")
    np.testing.assert_array_equal(combined.xpix[combined.pixel_offsets[counts[0]] :], second.xpix + 112)
    np.testing.assert_array_equal(store.read("combined/extraction/spikes"), np.concatenate([store.read(f"plane_{plane}/extraction/spikes") for plane in (0, 1)]))
    image = store.read("combined/detection/mean_image")
    np.testing.assert_array_equal(image[:, 112:], store.read("plane_1/detection/mean_image"))


def test_rerun_skips_everything_and_a_detection_change_reruns_only_what_follows(reference_run: ReferenceRun, client: Any, tmp_path: Path) -> None:
    configuration = configuration_for(reference_run.data, reference_run.store.path.parent)
    again = run_single_recording(configuration, client=client)
    assert {outcome.state for outcome in again.outcomes} == {"skipped"}
    changed = configuration.model_copy(update={"roi_detection": configuration.roi_detection.model_copy(update={"threshold_scaling": 1.2})})
    rerun = run_single_recording(changed, client=client, target_plane=1)
    states = {outcome.name: outcome.state for outcome in rerun.outcomes}
    assert states == {"ingest": "skipped", "registration/plane_1": "skipped", "detection/plane_1": "ran", "extraction/plane_1": "ran"}
    assert reference_run.store.phase_record("combine") is None  # combine depends on plane 1: forgotten until rerun
    restored = run_single_recording(configuration, client=client)  # back to the reference configuration
    assert {outcome.name for outcome in restored.outcomes if outcome.state == "ran"} == {"detection/plane_1", "extraction/plane_1", "combine"}


# ---------------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def scheduler_with_two_workers(tmp_path: Path) -> Any:
    """A real ``dask scheduler`` and two ``dask worker`` processes (nanny-supervised), as on HPC."""
    scheduler_file = tmp_path / "scheduler.json"
    common = {"cwd": tmp_path, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    processes = [subprocess.Popen([str(VENV_BIN / "dask"), "scheduler", "--scheduler-file", str(scheduler_file), "--port", "0", "--dashboard-address", ":0", "--no-show"], **common)]
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        for name in ("worker-a", "worker-b"):
            processes.append(subprocess.Popen([str(VENV_BIN / "dask"), "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--memory-limit", "3GiB", "--name", name], **common))
        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout="30s") as probe:
            probe.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


def _written_chunks(store_path: Path, array_path: str) -> int:
    folder = store_path / array_path / "c"
    return sum(1 for _ in folder.rglob("*")) if folder.exists() else 0


def test_scheduler_address_run_survives_a_killed_worker(reference_run: ReferenceRun, process_reference_store: RecordingStore, scheduler_with_two_workers: str, tmp_path: Path) -> None:
    """The pipeline against a scheduler address; one worker process is SIGKILLed mid-registration."""
    from distributed import Client

    address = scheduler_with_two_workers
    configuration = configuration_for(reference_run.data, tmp_path / "out", scheduler_address=address)
    with Client(address) as observer:
        worker_pids = list(observer.run(os.getpid).values())
    store_path = tmp_path / "out" / reference_run.store.path.name
    killed: list[int] = []

    def kill_when_registration_is_under_way() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            if _written_chunks(store_path, "plane_0/registered/channel_0") >= 3:
                os.kill(worker_pids[0], signal.SIGKILL)
                killed.append(worker_pids[0])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_registration_is_under_way, daemon=True)
    killer.start()
    report = run_single_recording(configuration)
    killer.join(timeout=5)
    assert killed, "the worker was not killed during registration"
    assert all(outcome.state == "ran" for outcome in report.outcomes)
    assert_same_outputs(RecordingStore(report.store_path), process_reference_store)


def test_killed_run_resumes_and_a_concurrent_run_is_refused(reference_run: ReferenceRun, process_reference_store: RecordingStore, tmp_path: Path) -> None:
    """``cindra-dask run`` SIGKILLed (with its workers) mid-``process``; status shows the step incomplete; the rerun finishes it."""
    configuration = configuration_for(reference_run.data, tmp_path / "out", workers=1, threads_per_worker=2, dashboard_address=":0")
    config_path = tmp_path / "run.yaml"
    config_path.write_text(configuration_to_yaml(configuration))
    command = [str(VENV_BIN / "cindra-dask"), "run", str(config_path), "--no-progress"]
    store = RecordingStore(tmp_path / "out" / reference_run.store.path.name)
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (store.exists and store.phase_record("registration/plane_1") is not None):
            time.sleep(0.05)
        assert store.phase_record("registration/plane_1") is not None, "the run did not reach plane 1"
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "locked by another run" in second.stdout + second.stderr
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    status = subprocess.run([str(VENV_BIN / "cindra-dask"), "status", str(store.path)], capture_output=True, text=True, timeout=60)
    interrupted = [line for line in status.stdout.splitlines() if "INCOMPLETE" in line]
    assert interrupted and any("plane_1" in line for line in interrupted), status.stdout
    finished_before = {name for name, record in store.phase_records().items() if record.complete}
    assert "registration/plane_0" in finished_before

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for name in finished_before:
        assert f"step '{name}': complete" in rerun.stderr
    assert_same_outputs(store, process_reference_store)
