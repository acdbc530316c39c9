"""Issue 20, "The first run": configuration friction, status, progress lines and the demo's output,
each reproduced through the command line first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.store import RecordingStore, frames_path
from tests.conftest import write_tiff_recording

runner = CliRunner()
TWO_CHANNELS = {"frame_rate": 30.0, "plane_number": 1, "channel_number": 2}


def _two_channel_recording(root: Path) -> Path:
    pages = np.random.default_rng(3).integers(0, 200, size=(2 * 60, 16, 18)).astype(np.int16)
    write_tiff_recording(root / "data" / "rec", pages, file_page_counts=(120,), acquisition=TWO_CHANNELS)
    return root / "data" / "rec"


def _configure(root: Path, data: Path, *extra: str) -> Path:
    config = root / "rec.yaml"
    result = runner.invoke(app, ["configure", str(config), "--overwrite", "--set", f"file_io.data_path={data}", "--set", f"file_io.output_path={root / 'out'}", *extra])
    assert result.exit_code == 0, result.output
    return config


def test_two_channels_follows_the_acquisition_file_unless_set(tmp_path: Path) -> None:
    """channel_number 2 in cindra_parameters.json and main.two_channels left unset: the run follows the file and says so."""
    data = _two_channel_recording(tmp_path)
    config = _configure(tmp_path, data, "--set", "runtime.display_progress_bars=false", "--set", "cluster.workers=1")
    assert yaml.safe_load(config.read_text())["main"]["two_channels"] is None
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    note = f"note: main.two_channels: not set, so it follows {data / 'cindra_parameters.json'} (channel_number 2): both channels are ingested and registered"
    assert note in result.output
    result = runner.invoke(app, ["run", str(config), "--phase", "ingest"])
    assert result.exit_code == 0, result.output
    assert note in result.output
    store = RecordingStore(tmp_path / "out" / "rec.zarr")
    assert store.read(frames_path(0, 1)).shape == (60, 16, 18)
    assert yaml.safe_load(store.attributes()["configuration"])["main"]["two_channels"] is True

    result = runner.invoke(app, ["validate", str(config), "--set", "main.two_channels=false"])
    assert result.exit_code == 2
    assert f"error: main.two_channels is false but {data / 'cindra_parameters.json'} has channel_number 2; remove the line to follow it, or make them agree" in result.output
    result = runner.invoke(app, ["validate", str(config), "--set", "main.second_channel_functional=true", "--set", "acquisition={frame_rate: 30.0, plane_number: 1, channel_number: 1}"])
    assert result.exit_code == 2
    assert "error: main.second_channel_functional is true but the configuration's acquisition section has channel_number 1" in result.output


def test_a_multi_recording_file_without_pipeline_type(tmp_path: Path) -> None:
    template = tmp_path / "multi.yaml"
    assert runner.invoke(app, ["configure", str(template), "--pipeline", "multi-recording"]).exit_code == 0
    without = tmp_path / "without.yaml"
    without.write_text("".join(line for line in template.read_text().splitlines(keepends=True) if not line.startswith("pipeline_type:")))
    result = runner.invoke(app, ["validate", str(without)])
    assert result.exit_code == 2
    assert "unknown key" not in result.output
    assert "error: recording_io.dataset_name: not set" in result.output  # read as the multi-recording file it is
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(without.read_text() + "main:\n  tau: 1.0\n")
    result = runner.invoke(app, ["validate", str(mixed)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {mixed}: pipeline_type: the line is missing and the file has sections of both pipelines (single-recording: main; "
        "multi-recording: recording_io, roi_selection, diffeomorphic_registration, roi_tracking); "
        "add 'pipeline_type: single-recording' or 'pipeline_type: multi-recording' and remove the other pipeline's sections"
    )


def test_configure_asks_only_for_what_is_still_unset(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    result = runner.invoke(app, ["configure", str(config), "--set", "file_io.data_path=/data/rec1", "--set", "file_io.output_path=/results"])
    assert result.output.strip() == f"wrote {config}; run `cindra-dask validate {config}`"
    result = runner.invoke(app, ["configure", str(config), "--overwrite", "--set", "file_io.data_path=/data/rec1"])
    assert result.output.strip() == f"wrote {config}; set file_io.output_path in it (or with --set), then run `cindra-dask validate {config}`"
    result = runner.invoke(app, ["configure", str(config), "--overwrite", "--pipeline", "multi-recording"])
    assert result.output.strip() == f"wrote {config}; set recording_io.dataset_name and recording_io.recording_directories in it (or with --set), then run `cindra-dask validate {config}`"
    result = runner.invoke(app, ["configure", str(config), "--overwrite", "-p", "multi-recording", "--set", "recording_io.dataset_name=days", "--set", "recording_io.recording_directories=[a.zarr, b.zarr]"])
    assert result.output.strip() == f"wrote {config}; run `cindra-dask validate {config}`"


def test_acquisition_overrides_are_accepted_and_never_silent(tmp_path: Path) -> None:
    data = _two_channel_recording(tmp_path)
    config = _configure(tmp_path, data)
    result = runner.invoke(app, ["validate", str(config), "--set", "acquisition.frame_rate=15"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --set acquisition: an acquisition section replaces cindra_parameters.json entirely, so it needs plane_number, channel_number too "
        "(required: frame_rate, plane_number, channel_number); add them, or drop the section to read the file"
    )
    result = runner.invoke(app, ["validate", str(config), "--set", "acquisition.frame_rate=15", "--set", "acquisition.plane_number=1", "--set", "acquisition.channel_number=2"])
    assert result.exit_code == 0, result.output
    assert f"warning: acquisition: the configuration's acquisition section replaces {data / 'cindra_parameters.json'}: frame_rate 15.0 instead of 30.0" in result.output
    in_yaml = tmp_path / "inline.yaml"
    payload = yaml.safe_load(config.read_text())
    payload["acquisition"] = {"frame_rate": 15.0, "plane_number": 1, "channel_number": 2}
    in_yaml.write_text(yaml.safe_dump(payload))
    result = runner.invoke(app, ["validate", str(in_yaml)])
    assert result.exit_code == 0 and "frame_rate 15.0 instead of 30.0" in result.output  # the same warning for the same override
    same = {**payload, "acquisition": TWO_CHANNELS}
    in_yaml.write_text(yaml.safe_dump(same))
    assert "warning: acquisition" not in runner.invoke(app, ["validate", str(in_yaml)]).output


def test_unknown_set_keys_are_errors_of_the_set_option(tmp_path: Path) -> None:
    data = _two_channel_recording(tmp_path)
    config = _configure(tmp_path, data)
    result = runner.invoke(app, ["validate", str(config), "--set", "main.no_such_field=1", "--set", "registration.batch_size=0"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "error: --set main.no_such_field: unknown key; remove it or check its spelling (see `cindra-dask configure`)",
        "error: --set registration.batch_size: Input should be greater than 0",
    ]
    text = config.read_text().replace("  first_channel_functional: true", "  first_channel_functional: true\n  typo_in_file: 1")
    config.write_text(text)
    result = runner.invoke(app, ["validate", str(config), "--set", "main.tau.x=1"])
    assert result.output.strip() == "error: --set main.tau.x: main.tau is a field (0.4), not a section; use --set main.tau=VALUE"
    result = runner.invoke(app, ["validate", str(config)])
    assert result.output.strip() == f"error: {config}: main.typo_in_file: unknown key; remove it or check its spelling (see `cindra-dask configure`)"
    result = runner.invoke(app, ["configure", str(tmp_path / "new.yaml"), "--set", "nosection.x=1"])
    assert result.exit_code == 2 and result.output.strip() == "error: --set nosection: unknown key; remove it or check its spelling (see `cindra-dask configure`)"


def _computation(client: object, task_count: int) -> object:
    import time

    import dask

    def pause(index: int) -> int:
        time.sleep(0.03)
        return index

    return client.compute(dask.delayed(sum)([dask.delayed(pause)(index) for index in range(task_count)]))  # type: ignore[attr-defined]


def test_progress_in_a_log_is_one_line_per_step(client: object, capsys: pytest.CaptureFixture[str]) -> None:
    """Standard error not a terminal (a SLURM log): lines with the percentage and the time, no carriage returns."""
    import re

    from cindra_dask.cli import TerminalEvents

    future = _computation(client, 60)
    TerminalEvents(progress_bars=True).computing("work", future, client)
    assert future.result() == sum(range(60))  # type: ignore[attr-defined]
    output = capsys.readouterr().err
    assert "\r" not in output and "\x1b" not in output
    lines = output.splitlines()
    final = re.fullmatch(r"work: 100% of (\d+) tasks in (\d+\.\d) s", lines[-1])
    assert final is not None and int(final.group(1)) == 61  # 60 pauses and their sum
    steps = [re.fullmatch(r"work: (\d+)% of 61 tasks, (\d+) s", line) for line in lines[:-1]]
    assert steps and all(steps), lines
    percents = [int(step.group(1)) for step in steps if step]
    assert percents == sorted(set(percents)) and all(percent < 100 for percent in percents)
    assert len(lines) <= 100 // TerminalEvents.LINE_PERCENT_STEP + 2


def test_progress_in_a_terminal_is_a_bar_redrawn_in_place(client: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from cindra_dask.cli import TerminalEvents

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    future = _computation(client, 20)
    TerminalEvents(progress_bars=True).computing("work", future, client)
    output = capsys.readouterr().err
    assert output.count("\n") == 1 and output.endswith("work: 100% of 21 tasks in " + output.rsplit(" in ", 1)[1])
    assert "\rwork: [" in output and "%" in output
    TerminalEvents(progress_bars=False).computing("work", _computation(client, 5), client)
    assert capsys.readouterr().err == ""


def test_status_counts_rois_and_cells_and_flags_a_stale_lock(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    from tests.test_manifest import write_synthetic_store

    store = RecordingStore(write_synthetic_store(tmp_path).path)
    result = runner.invoke(app, ["status", str(store.path)])
    assert result.exit_code == 0, result.output
    assert "plane 0: 5 ROIs, 3 classified as cells" in result.output.splitlines()
    assert "plane 1: 4 ROIs, 3 classified as cells" in result.output.splitlines()
    assert "lock:" not in result.output
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    store.lock_path.write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00"}))
    lines = runner.invoke(app, ["status", str(store.path)]).output.splitlines()
    assert lines[1] == (
        f"lock: STALE — held by process {dead_pid} on {socket.gethostname()} since 2026-01-01T00:00:00+00:00, which is no longer running "
        f"(a run that was killed); the next `cindra-dask run` replaces it, or delete {store.lock_path}"
    )
    store.lock_path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00"}))
    lines = runner.invoke(app, ["status", str(store.path)]).output.splitlines()
    assert lines[1].startswith(f"lock: held by process {os.getpid()} on {socket.gethostname()} since 2026-01-01T00:00:00+00:00 (a run in progress;")


def _numba_dispatchers() -> dict[str, object]:
    """Every ``numba.njit`` dispatcher defined in the package, by ``module:name``."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import cindra_dask

    found = {}
    for info in pkgutil.walk_packages(cindra_dask.__path__, "cindra_dask."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
                found[f"{module.__name__}:{name}"] = value
    return found


def test_every_kernel_is_cached_on_disk() -> None:
    """A kernel without cache=True compiles again in every process of every run."""
    from numba.core.caching import NullCache

    dispatchers = _numba_dispatchers()
    assert len(dispatchers) >= 30
    assert [name for name, dispatcher in dispatchers.items() if isinstance(dispatcher._cache, NullCache)] == []  # type: ignore[attr-defined]


def test_recorded_signatures_are_the_kernels_a_default_run_compiles(tmp_path: Path) -> None:
    """The signature list (`cindra_dask.kernel_cache`) holds what the pipeline compiles; regenerate it with
    `benchmarks/bench_cold_start.py --record` when a kernel's types change."""
    import subprocess
    import sys

    from cindra_dask.kernel_cache import load_recorded_kernels, uncached_kernels

    recorded = load_recorded_kernels()
    assert uncached_kernels([kernel._replace(function="cindra_dask.no_such_module:kernel") for kernel in recorded[:1]]) == []  # skipped, not an error
    dispatchers = _numba_dispatchers()
    assert {kernel.function for kernel in recorded} <= set(dispatchers)
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cold_start", Path(__file__).parents[1] / "benchmarks" / "bench_cold_start.py")
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    completed = subprocess.run([sys.executable, "-c", bench._RECORD_RUN, str(tmp_path), "64", "120"], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    used = {(function, text) for function, text, _ in json.loads(completed.stdout.strip().splitlines()[-1])}
    assert len(used) >= 25
    assert used - {(kernel.function, kernel.signature) for kernel in recorded} == set()


def test_cluster_start_compiles_missing_kernels_once_on_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cache empty: the kernels are compiled at cluster start, each on one worker, after a message with
    the estimate; the next cluster finds them in the cache and says nothing."""
    from cindra_dask import kernel_cache
    from cindra_dask.config import ClusterSettings
    from cindra_dask.runner.execution import Executor

    cheap = [kernel for kernel in kernel_cache.load_recorded_kernels() if kernel.function.startswith(("cindra_dask.pixel_regions:", "cindra_dask.extraction.masks:_box"))]
    chosen = [*cheap, kernel_cache.RecordedKernel("cindra_dask.no_such_module:kernel", "()", cheap[0].pickled_signature, 1.0)]
    signatures = kernel_cache.save_recorded_kernels(chosen, tmp_path / "signatures.json")
    monkeypatch.setattr(kernel_cache, "KERNEL_SIGNATURES_FILE", signatures)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba_cache"))  # read by the worker processes as they start

    class Recorded:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def message(self, text: str) -> None:
            self.lines.append(text)

        def computing(self, label: str, future: object, client: object) -> None:
            self.lines.append(f"computing {label}")

    for attempt in ("cold", "warm"):
        events = Recorded()
        executor = Executor(ClusterSettings(workers=2, threads_per_worker=1, memory_limit_per_worker="1GiB", dashboard_address=":0"), events=events)
        try:
            executor.client
        finally:
            executor.close()
        assert events.lines[0].startswith("Dask cluster: 2 workers")
        if attempt == "cold":
            estimate = kernel_cache.assign_to_workers(cheap, ["first", "second"]).estimate_s
            assert events.lines[1] == f"compiling {len(cheap)} numba kernels for this machine (once; about {estimate:.0f} s on 2 workers)"
            assert events.lines[2] == "computing compiling kernels" and events.lines[3].startswith("kernels compiled in ")
            indexes = sorted(path.name.split("-")[0] for path in (tmp_path / "numba_cache").rglob("*.nbi"))
            assert indexes == sorted(kernel.function.split(":")[0].rsplit(".", 1)[1] + "." + kernel.function.split(":")[1] for kernel in cheap)
        else:
            assert events.lines[1:] == []


def test_kernels_go_longest_first_to_the_least_loaded_worker() -> None:
    from cindra_dask.kernel_cache import RecordedKernel, assign_to_workers

    kernels = [RecordedKernel(f"m:k{seconds}", "()", "", float(seconds)) for seconds in (3, 10, 6, 5, 7)]
    plan = assign_to_workers(kernels, ["tcp://a", "tcp://b"])
    assert {worker: [kernel.compile_s for kernel in assigned] for worker, assigned in plan.assignments.items()} == {"tcp://a": [10.0, 5.0], "tcp://b": [7.0, 6.0, 3.0]}
    assert plan.estimate_s == 16.0
    assert assign_to_workers(kernels[:1], ["tcp://a", "tcp://b"]).assignments == {"tcp://a": kernels[:1]}
