"""`cindra-dask mcp` through the SDK's own client over stdio: configure → validate → run in the background
→ status → results equal to the store's; refused paths, a missing store, a bad field and a huge slice
are tool errors after which the server keeps serving; a run is cancelled."""

from __future__ import annotations

import base64
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters  # noqa: E402

from cindra_dask.evaluate import score_recording  # noqa: E402
from cindra_dask.simulate import SimulationParameters, load_ground_truth, write_recording  # noqa: E402
from cindra_dask.store import RecordingStore  # noqa: E402

SIMULATION = SimulationParameters(frame_height=64, frame_width=64, frame_count=120, cell_count=10, non_cell_count=0, file_count=1, seed=1)
"""The demo test's recording (tests/test_cli.py), small enough for a run of about 20 s on 2 cores."""
TOOLS = {
    "write_configuration", "validate_configuration", "start_run", "run_status", "cancel_run", "list_runs", "store_status", "list_stores",
    "summarize_store", "roi_table", "roi_trace", "registration_offsets", "summary_image", "build_report", "export_suite2p", "export_nwb", "tracked_cells",
}
RUN_TIMEOUT_S = 240.0


def _server(root: Path, *, read_only: Path) -> StdioServerParameters:
    arguments = ["-m", "cindra_dask.cli", "mcp", "--root", str(root), "--read-only-root", str(read_only)]
    return StdioServerParameters(command=sys.executable, args=arguments, env=dict(os.environ), cwd=str(root))


async def _call(client: Client, name: str, **arguments: Any) -> Any:
    """The structured result of a tool that must succeed."""
    result = await client.call_tool(name, arguments)
    assert not result.is_error, (name, result.content)
    return result.structured_content


async def _error(client: Client, name: str, **arguments: Any) -> str:
    """The text of a tool error (a clear message, no traceback)."""
    result = await client.call_tool(name, arguments)
    assert result.is_error, (name, result.structured_content)
    (content,) = result.content
    assert "Traceback" not in content.text
    return content.text


async def _wait(client: Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = await _call(client, "run_status", run_id=run_id)
        if status["state"] != "running":
            return status
        await _sleep(0.5)
    raise AssertionError(f"run {run_id} still running after {RUN_TIMEOUT_S} s: {status['messages'][-5:]}")


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


def test_an_agent_configures_validates_runs_and_reads_results(tmp_path: Path) -> None:
    import anyio

    data = write_recording(SIMULATION, tmp_path / "data" / "rec")
    outside = tmp_path.parent / f"{tmp_path.name}_outside"
    outside.mkdir()
    (tmp_path / "escape").symlink_to(outside, target_is_directory=True)

    async def session() -> None:
        async with Client(_server(tmp_path, read_only=tmp_path / "data"), read_timeout_seconds=60) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS

            overrides = {"file_io.data_path": str(data), "file_io.output_path": str(tmp_path / "out"), "cluster.workers": 1, "cluster.dashboard_address": ":0", "runtime.display_progress_bars": False}
            written = await _call(client, "write_configuration", path="rec.yaml", overrides=overrides)
            assert written == {"path": str(tmp_path / "rec.yaml"), "unset_fields": []}
            validation = await _call(client, "validate_configuration", path="rec.yaml")
            store_path = tmp_path / "out" / "rec.zarr"
            assert validation["store_paths"] == [str(store_path)]
            assert "120 frames × 1 planes × 1 channels of 64×64" in validation["lines"][0]
            few_frames = f"warning: {data}: only 120 frames per plane; detection finds few cells in fewer than 200"
            assert validation["warnings"] == [few_frames]
            assert not store_path.exists()

            started = await _call(client, "start_run", path="rec.yaml")
            assert started["state"] == "running" and started["finished"] is None
            status = await _wait(client, started["run_id"])
            assert status["state"] == "finished" and status["errors"] == []
            assert [(outcome["name"], outcome["state"]) for outcome in status["outcomes"]] == [
                ("ingest", "ran"), ("registration/plane_0", "ran"), ("detection/plane_0", "ran"), ("extraction/plane_0", "ran"), ("combine", "ran")
            ]
            (store_status,) = status["stores"]
            store = RecordingStore(store_path)
            records = store.phase_records()
            assert store_status["lock"] is None and store_status["steps_complete"] == 5 == len(records)
            assert {step["key"]: step["duration_s"] for step in store_status["steps"] if step["state"] == "complete"} == {key: record.duration_s for key, record in records.items()}
            assert any(message.startswith("step 'extraction/plane_0': done in") for message in status["messages"])
            assert few_frames in status["messages"]  # the run's own preflight warns again, into its messages

            classification = store.read("plane_0/extraction/cell_classification")
            roi_count = len(classification)
            assert roi_count > 0
            table = await _call(client, "roi_table", store="out/rec.zarr")
            assert (table["roi_count"], table["start"], table["stop"]) == (roi_count, 0, roi_count)
            assert table["columns"]["centroids"] == store.read("plane_0/rois/centroids").tolist()
            assert table["columns"]["probability"] == classification[:, 1].tolist()
            assert table["columns"]["iscell"] == (classification[:, 0] > 0.5).tolist()
            assert table["columns"]["pixel_count"] == store.read("plane_0/rois/pixel_count").tolist()
            assert table["columns"]["skewness"] == store.read("plane_0/rois/skewness").tolist()

            trace = await _call(client, "roi_trace", store=str(store_path), roi=roi_count - 1, start=10, stop=50)
            assert trace["values"] == store.read("plane_0/extraction/subtracted_fluorescence")[roi_count - 1, 10:50].tolist()
            assert (trace["frame_count"], trace["frame_rate_hz"]) == (120, SIMULATION.plane_frame_rate_hz)
            spikes = await _call(client, "roi_trace", store="out/rec.zarr", roi=0, trace="spikes")
            assert (spikes["start"], spikes["stop"]) == (0, 120) and spikes["values"] == store.read("plane_0/extraction/spikes")[0].tolist()

            summary = await _call(client, "summarize_store", store="out/rec.zarr")
            scores = score_recording(store_path, load_ground_truth(data / "ground_truth.npz"))
            assert (summary["frames_per_plane"], summary["plane_count"], summary["rois"]) == (120, 1, roi_count)
            assert summary["cells"] == int(np.count_nonzero(classification[:, 0] > 0.5))
            assert summary["ground_truth"] == str(data / "ground_truth.npz")
            accuracy = summary["planes"][0]["accuracy"]
            assert (accuracy["detection_f1"], accuracy["matched_cells"], accuracy["rigid_offset_rms_px"]) == (scores.detection_f1, scores.matched_cells, scores.rigid_offset_rms_px)

            offsets = await _call(client, "registration_offsets", store="out/rec.zarr")
            assert offsets["dy_px"]["frame"] == list(range(120)) and offsets["dy_px"]["value"] == store.read("plane_0/registration/rigid_offsets")[:, 0].tolist()
            decimated = await _call(client, "registration_offsets", store="out/rec.zarr", max_points=10)
            assert len(decimated["dx_px"]["frame"]) <= 10

            image = await client.call_tool("summary_image", {"store": "out/rec.zarr", "image": "mean_image"})
            png = base64.b64decode(image.content[0].data)
            assert image.content[0].mime_type == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"
            assert struct.unpack(">II", png[16:24]) == (64, 64)

            report = await _call(client, "build_report", store="out/rec.zarr")
            assert report["path"] == str(tmp_path / "out" / "rec_report.html") and "<html" in Path(report["path"]).read_text()[:200].lower()
            exported = await _call(client, "export_suite2p", store="out/rec.zarr", output="suite2p")
            assert exported["file_count"] == len(exported["files"]) and str(tmp_path / "suite2p" / "plane0" / "F.npy") in exported["files"]
            np.testing.assert_array_equal(np.load(tmp_path / "suite2p" / "plane0" / "F.npy"), store.read("plane_0/extraction/cell_fluorescence"))

            nwb = await _call(client, "export_nwb", store="out/rec.zarr", output="rec.nwb", movie="external", metadata={"metadata.session_start_time": "2024-05-01T10:30:00+00:00"})
            from pynwb import NWBHDF5IO

            with NWBHDF5IO(nwb["path"], "r") as reader:
                raw = reader.read().acquisition["TwoPhotonSeriesRawPlane0"]
                assert (list(raw.external_file[:]), list(raw.starting_frame)) == ([str(path.relative_to(tmp_path)) for path in sorted(data.glob("*.tif"))], [0])
            assert "no complete tracking of dataset 'pair'" in await _error(client, "export_nwb", store="out/rec.zarr", output="tracked.nwb", tracking_dataset="pair", metadata={"metadata.session_start_time": "2024-05-01T10:30:00+00:00"})
            assert not (tmp_path / "tracked.nwb").exists()

            listed = await _call(client, "list_stores", folder=".")
            assert [(entry["path"], entry["steps_complete"]) for entry in listed["stores"]] == [(str(store_path), 5)]

            # refused and failed requests: a clear tool error each, and the server keeps serving
            assert "outside the folders this server may read" in await _error(client, "store_status", store=str(outside))
            assert "outside the folders this server may read" in await _error(client, "roi_table", store="escape/rec.zarr")
            assert "'..' is not allowed" in await _error(client, "store_status", store="out/../out/rec.zarr")
            assert "outside the folders this server may write" in await _error(client, "write_configuration", path=str(outside / "x.yaml"))
            assert "outside the folders this server may write" in await _error(client, "write_configuration", path="data/rec/x.yaml")  # inputs are never written
            assert "file_io.output_path /" in await _error(client, "validate_configuration", path="rec.yaml", overrides={"file_io.output_path": "/"})
            assert "file_io.data_path: data/rec is relative" in await _error(client, "start_run", path="rec.yaml", overrides={"file_io.data_path": "data/rec"})
            assert "not a cindra-dask store" in await _error(client, "store_status", store="out/missing.zarr")
            bad_field = await _error(client, "validate_configuration", path="rec.yaml", overrides={"registration.batch_size": 0})
            assert "registration.batch_size: Input should be greater than 0" in bad_field
            assert "registration.no_such_field: unknown key" in await _error(client, "write_configuration", path="other.yaml", overrides={"registration.no_such_field": 1})
            assert not (tmp_path / "other.yaml").exists()
            huge = await _error(client, "roi_trace", store="out/rec.zarr", roi=0, start=0, stop=10**9)
            assert "one call returns at most 20000" in huge
            assert "roi 1000: plane 0 has ROIs" in await _error(client, "roi_trace", store="out/rec.zarr", roi=1000)
            assert "no such run" in await _error(client, "run_status", run_id="nope")
            assert (await _call(client, "roi_table", store="out/rec.zarr", start=1, stop=2))["columns"]["probability"] == classification[1:2, 1].tolist()
            assert not any(path.name == "x.yaml" for path in (*outside.iterdir(), *data.iterdir()))

            # a cancelled run stops, releases the store's lock and says what happened
            cancelled = await _call(client, "start_run", path="rec.yaml", force=True)
            await _call(client, "cancel_run", run_id=cancelled["run_id"])
            status = await _wait(client, cancelled["run_id"])
            assert status["state"] == "cancelled" and status["errors"][0].startswith("cancelled on request")
            assert store.lock_holder() is None
            listed_runs = await _call(client, "list_runs")
            assert [line.split(":")[0] for line in listed_runs["result"]] == [started["run_id"], cancelled["run_id"]]

    anyio.run(session)


def test_the_server_answers_over_http_on_localhost(tmp_path: Path) -> None:
    """``--http PORT`` serves streamable HTTP on 127.0.0.1; a tool error there is one line too."""
    import socket
    import subprocess

    import anyio

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cindra_dask.cli", "mcp", "--root", str(tmp_path), "--http", str(port)], cwd=tmp_path, stderr=subprocess.PIPE, text=True)

    async def session() -> tuple[set[str], str]:
        deadline = time.monotonic() + 60
        while True:
            try:
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    return {tool.name for tool in (await client.list_tools()).tools}, await _error(client, "store_status", store="missing.zarr")
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                await _sleep(0.5)

    try:
        names, error = anyio.run(session)
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[1]
    assert names == TOOLS, log[-2000:]
    assert f"{tmp_path / 'missing.zarr'}: not a cindra-dask store" in error
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log
