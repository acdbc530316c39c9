"""Helpers shared by the suite2p comparison benchmarks (bench_registration/detection/extraction/pipeline).

One measurement = one dataset, both tools, one run each, on the same TIFFs and the same cores:

1. `ensure_recording`: simulate the dataset (or reuse it when its parameters are unchanged).
2. `run_cindra` then `run_suite2p`: ``run_cindra.py`` (project venv), ``run_suite2p.py`` (suite2p venv), each as a
   subprocess, one after the other, never concurrently. A `ProcessTreeSampler` in this process
   samples RSS and CPU time of the subprocess and all its children (our LocalCluster workers) every 0.5 s;
   the tools report their own stage windows (our phase records; suite2p's log lines plus
   ``plane_times``), so every stage gets a wall time, CPU seconds (the tool's and everyone
   else's: contention) and a sampled peak RSS per process role.
   The TIFFs are read once (page cache) before each tool, so neither pays for a cold cache.
3. Scoring against the simulator's truth with `cindra_dask.evaluate`: ours with `score_recording`;
   suite2p's outputs with `score_suite2p` (`registration_scores` + `cell_scores`: the same
   selection and scorers), which `score_cindra` checks to reproduce `score_recording` on our store.
4. `measure` caches the whole record as JSON under ``<scratch>/runs/`` so the issue tables can be
   views over the same runs (``--reuse``), and deletes the tools' outputs.

Stage names in records: ``ingest`` (ours: TIFF → Zarr; suite2p: TIFF → binary conversion),
``registration``, ``detection``, ``extraction`` (ours: the extraction step = traces,
classification, baseline, OASIS; suite2p: extraction + deconvolution + classification),
``combine`` (ours only).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
SCRATCH = RESULTS / "scratch"
PROJECT_PYTHON = ROOT / ".venv" / "bin" / "python"
SUITE2P_PYTHON = BENCHMARKS / ".suite2p-venv" / "bin" / "python"
SAMPLE_INTERVAL_S = 0.5
MIB = 2**20


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A simulated recording: ``size``² frames, ``frames`` long, simulator overrides on top of defaults.

    Cell and non-cell counts scale with the frame area (120 and 30 per 256², the simulator's
    defaults) unless given in ``overrides``.
    """

    label: str
    size: int
    frames: int
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.label}-{self.size}-{self.frames}"

    def parameters(self) -> Any:
        from cindra_dask.simulate import SimulationParameters

        area = (self.size / 256) ** 2
        values: dict[str, Any] = {"frame_height": self.size, "frame_width": self.size, "frame_count": self.frames, "seed": 1,
                                  "cell_count": round(120 * area), "non_cell_count": round(30 * area), "file_count": max(1, self.frames // 2000)}
        values.update(dict(self.overrides))
        return SimulationParameters(**values)


VARIANTS: dict[str, tuple[str, dict[str, float]]] = {
    "default": ("default", {}),
    "noisy": ("doubled noise (baseline 30, neuropil 15 photons)", {"baseline_photons": 30.0, "neuropil_photons": 15.0}),
    "noncell": ("many non-cells (90 per 256²)", {"non_cell_count": 90}),
}
"""Dataset variants: (description, simulator overrides per 256²; counts scale with the frame area)."""


def variant(name: str, size: int, frames: int) -> Dataset:
    """The named `VARIANTS` dataset at ``size``² × ``frames``."""
    area = (size / 256) ** 2
    overrides = {key: round(value * area) if key.endswith("_count") else value for key, value in VARIANTS[name][1].items()}
    return Dataset(name, size, frames, tuple(sorted(overrides.items())))


def ensure_recording(dataset: Dataset, root: Path = SCRATCH) -> tuple[Path, float]:
    """The dataset's folder (TIFFs, cindra_parameters.json, ground_truth.npz) and simulation seconds (0 if reused)."""
    from cindra_dask.simulate import write_recording

    directory = root / "data" / dataset.name
    parameters_json = dataset.parameters().model_dump_json()
    stamp = directory / "simulation_parameters.json"
    if (directory / "ground_truth.npz").exists() and stamp.exists() and stamp.read_text() == parameters_json:
        return directory, 0.0
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    write_recording(dataset.parameters(), directory)
    stamp.write_text(parameters_json)
    return directory, time.perf_counter() - started


def warm_page_cache(directory: Path) -> None:
    """Read every TIFF once so the tool that runs first does not pay for a cold cache alone."""
    for path in sorted(directory.glob("*.tif")):
        with open(path, "rb") as handle:
            while handle.read(64 * MIB):
                pass


# ---------------------------------------------------------------------------------------------
# memory sampling
# ---------------------------------------------------------------------------------------------


class ProcessTreeSampler(threading.Thread):
    """Samples RSS and CPU time of a process and all its descendants every ``interval_s``.

    ``samples`` holds ``(epoch_s, system_busy_cpu_s, {pid: (rss_bytes, cpu_s)})`` per tick; `peak`
    and `cpu` reduce them over a time window and a set of pids.
    """

    def __init__(self, pid: int, *, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[tuple[float, float, dict[int, tuple[int, float]]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._halt.is_set():
            tick: dict[int, tuple[int, float]] = {}
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for process in processes:
                try:
                    with process.oneshot():
                        times = process.cpu_times()
                        tick[process.pid] = (process.memory_info().rss, times.user + times.system)
                except psutil.Error:
                    pass
            if tick:
                self.samples.append((time.time(), _system_busy_cpu_s(), tick))
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peak(self, *, pids: Sequence[int] | None = None, start: float = -np.inf, end: float = np.inf, total: bool = False) -> float:
        """Largest RSS (MiB) in [start, end] of any one of ``pids`` (all if None), or of their sum if ``total``."""
        best = 0.0
        for when, _, tick in self.samples:
            if start <= when <= end:
                values = [rss for pid, (rss, _) in tick.items() if pids is None or pid in pids]
                if values:
                    best = max(best, sum(values) if total else max(values))
        return best / MIB

    def timeline(self, *, pids: Sequence[int] | None = None) -> list[tuple[float, float]]:
        """(epoch_s, largest RSS MiB among ``pids``) per tick: where in a run the peak happened."""
        return [(round(when, 2), round(max((rss for pid, (rss, _) in tick.items() if pids is None or pid in pids), default=0) / MIB, 1)) for when, _, tick in self.samples]

    def cpu(self, *, start: float = -np.inf, end: float = np.inf) -> tuple[float, float]:
        """(CPU s of the tree, CPU s of every other process on the machine) between the ticks nearest ``start`` and ``end``."""
        inside = [sample for sample in self.samples if sample[0] <= end]
        before = [sample for sample in inside if sample[0] <= start]
        if not inside:
            return 0.0, 0.0
        first, last = (before[-1] if before else None), inside[-1]
        tree = sum(cpu for _, cpu in last[2].values()) - (sum(cpu for pid, (_, cpu) in first[2].items() if pid in last[2]) if first else 0.0)
        busy = last[1] - (first[1] if first else self.samples[0][1])
        return tree, max(0.0, busy - tree)


def _system_busy_cpu_s() -> float:
    import psutil

    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sampled(command: Sequence[str], *, log_path: Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> tuple[ProcessTreeSampler, float, float]:
    """Run ``command`` to completion with its tree sampled; stdout+stderr to ``log_path``; raises on failure.

    Returns the sampler, the CPU seconds (user + system) of the command and its waited-for
    descendants (our LocalCluster's workers included), and the CPU seconds every other process on
    the machine used meanwhile (contention from other work).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cpu_before, busy_before = _children_cpu_s(), _system_busy_cpu_s()
    with open(log_path, "w") as log:
        process = subprocess.Popen(list(map(str, command)), stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {})})
        sampler = ProcessTreeSampler(process.pid)
        sampler.start()
        code = process.wait()
        sampler.stop()
    if code != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(map(str, command))} exited with {code}; log {log_path}:\n{tail}")
    cpu_s = _children_cpu_s() - cpu_before
    return sampler, cpu_s, max(0.0, _system_busy_cpu_s() - busy_before - cpu_s)


# ---------------------------------------------------------------------------------------------
# the two tools
# ---------------------------------------------------------------------------------------------

OURS_STAGES = {"ingest": ["ingest"], "registration": ["registration/plane_0"], "detection": ["detection/plane_0"], "extraction": ["extraction/plane_0"], "combine": ["combine"]}
SUITE2P_STAGES = {"registration": ["registration"], "detection": ["detection"], "extraction": ["extraction", "deconvolution", "classification"]}


def _stage_record(windows: list[tuple[float, float]], sampler: ProcessTreeSampler, roles: dict[str, list[int] | None]) -> dict[str, Any]:
    """Wall time of a stage (sum of its parts) and the sampled peak RSS of each role and of the whole tree."""
    start, end = min(window[0] for window in windows), max(window[1] for window in windows)
    record: dict[str, Any] = {"s": sum(window[1] - window[0] for window in windows), "start": start, "end": end}
    record["cpu_s"], record["other_cpu_s"] = (sum(values) for values in zip(*(sampler.cpu(start=window[0], end=window[1]) for window in windows)))
    for role, pids in roles.items():
        record[f"{role}_rss_mib"] = sampler.peak(pids=pids, start=start, end=end)
    record["total_rss_mib"] = sampler.peak(start=start, end=end, total=True)
    return record


def _phase_window(phase: dict[str, float]) -> tuple[float, float]:
    """(start, end) epoch s of a phase record: its start and finish are stored as whole seconds, its duration exactly.

    The true start lies in [start, start + 1) and in [finished − d, finished + 1 − d); the middle of
    their intersection is used.
    """
    duration = phase["duration_s"]
    low = max(phase["start"], phase.get("finished", phase["start"] + duration) - duration)
    high = min(phase["start"] + 1.0, phase.get("finished", phase["start"] + duration) + 1.0 - duration)
    start = (low + high) / 2 if high > low else phase["start"] + 0.5
    return start, start + duration


def ensure_compiled() -> None:
    """Compile (and cache) our numba kernels before the first timed run of this package version.

    numba caches compiled kernels beside the sources; in a fresh checkout the first run compiles
    them (≈ 15 s of the first run's detection and extraction, measured). A tiny demo run does it
    once per package digest; the marker lives in the package's ``__pycache__``, beside numba's
    cache, so a new checkout of the same code (a git worktree) compiles again.
    """
    marker = ROOT / "cindra_dask" / "__pycache__" / f"benchmark-compiled-{code_version()['package_digest']}"  # beside numba's cache
    if marker.exists():
        return
    print("compiling numba kernels (a tiny demo run, once per package version)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as directory:
        subprocess.run([PROJECT_PYTHON, "-m", "cindra_dask.cli", "demo", directory, "--frames", "300", "--size", "128"], cwd=ROOT, check=True, capture_output=True)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def run_cindra(data: Path, out: Path, *, stage: str, tau: float, workers: int, threads: int, log_dir: Path) -> dict[str, Any]:
    """Our pipeline in a subprocess; returns wall time, per-stage time and memory, lifetime peaks, store path."""
    ensure_compiled()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    warm_page_cache(data)
    sampler, cpu_s, other_cpu_s = run_sampled([PROJECT_PYTHON, BENCHMARKS / "run_cindra.py", data, out, "--tau", tau, "--stage", stage, "--workers", workers, "--threads", threads], log_path=log_dir / f"{out.parent.name}-cindra.log")
    result = json.loads((out / "cindra_result.json").read_text())
    workers_pids = result["worker_pids"]
    roles = {"main": [result["pid"]], "worker": workers_pids}
    stages = {}
    for stage_name, keys in OURS_STAGES.items():
        windows = [_phase_window(result["phases"][key]) for key in keys if key in result["phases"]]
        if windows:
            stages[stage_name] = _stage_record(windows, sampler, roles)
    return {
        "wall_s": result["wall_s"],
        "stages": stages,
        "worker_rss_timeline": sampler.timeline(pids=workers_pids),
        "main_rss_mib": sampler.peak(pids=roles["main"]),
        "worker_rss_mib": sampler.peak(pids=workers_pids),
        "total_rss_mib": sampler.peak(total=True),
        "main_lifetime_peak_mib": result["main_peak_rss_mib"],
        "worker_lifetime_peak_mib": result["worker_peak_rss_mib"],
        "chunk_frames": result["chunk_frames"],
        "cluster_start_s": result["cluster_start_s"],
        "store_path": result["store_path"],
        "cpu_s": cpu_s,
        "other_cpu_s": other_cpu_s,
    }


def run_suite2p(data: Path, out: Path, *, stage: str, tau: float, frame_rate_hz: float, threads: int, log_dir: Path) -> dict[str, Any]:
    """suite2p in its own venv in a subprocess; same record layout as `run_cindra`."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    warm_page_cache(data)
    sampler, cpu_s, other_cpu_s = run_sampled([SUITE2P_PYTHON, BENCHMARKS / "run_suite2p.py", data, out, "--fs", frame_rate_hz, "--tau", tau, "--stage", stage, "--threads", threads],
                          log_path=log_dir / f"{out.parent.name}-suite2p.log", cwd=BENCHMARKS, env={"PYTHONPATH": str(BENCHMARKS)})
    result = json.loads((out / "suite2p_result.json").read_text())
    times, marks = result["plane_times"], result["stage_started"]
    stages = {}
    if "registration" in marks:
        stages["ingest"] = _stage_record([(result["started"], marks["registration"])], sampler, {"main": None})
    for stage_name, parts in SUITE2P_STAGES.items():
        windows = [(marks[part], marks[part] + times[part]) for part in parts if part in marks and part in times]
        if windows:
            stages[stage_name] = _stage_record(windows, sampler, {"main": None})
    return {
        "wall_s": result["wall_s"],
        "stages": stages,
        "plane_times": times,
        "main_rss_mib": sampler.peak(),
        "total_rss_mib": sampler.peak(total=True),
        "main_lifetime_peak_mib": result["peak_rss_mib"],
        "plane_path": str(out / "suite2p" / "plane0"),
        "offsets_path": str(out / "suite2p_offsets.npz"),
        "cpu_s": cpu_s,
        "other_cpu_s": other_cpu_s,
    }


# ---------------------------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------------------------


def scored_frames(truth: Any, plane: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(good, frames): the truly good frames and up to 100 evenly spaced ones among them (as `score_recording`)."""
    good = ~np.asarray(truth.bad_frames[plane], bool)
    frames = np.flatnonzero(good)[np.linspace(0, good.sum(), 1 + min(100, int(good.sum())))[:-1].astype(np.int64)]
    return good, frames


def registration_scores(rigid: np.ndarray, nonrigid: np.ndarray, block_centers: np.ndarray, truth: Any, *, block_size_px: tuple[int, int] = (128, 128), plane: int = 0) -> dict[str, float]:
    """Rigid offset RMS (good frames) and dense displacement RMS (100 frames, 8 px margin) vs truth, as `score_recording`."""
    from cindra_dask.evaluate import displacement_rms_error, offset_rms_error, registration_displacement
    from cindra_dask.simulate import nonrigid_displacement

    good, frames = scored_frames(truth, plane)
    frame_shape = truth.illumination.shape
    estimated = registration_displacement(rigid_offsets=rigid[frames], nonrigid_offsets=nonrigid[frames], block_centers=block_centers, frame_shape=frame_shape, block_size_px=block_size_px)
    planted = nonrigid_displacement(truth, plane, frames) + truth.rigid_offsets[plane][frames][:, :, None, None]
    return {"rigid_rms_px": offset_rms_error(rigid, truth.rigid_offsets[plane], valid=good), "displacement_rms_px": displacement_rms_error(estimated, planted, margin_px=8)}


def cell_scores(
    rois: Any, is_cell: np.ndarray, cell_fluorescence: np.ndarray, neuropil_fluorescence: np.ndarray, spikes: np.ndarray, truth: Any, *, neuropil_coefficient: float | np.ndarray = 0.7, plane: int = 0
) -> dict[str, float]:
    """Detection P/R/F1 of the ROIs classified as cells vs active true somata; median trace and spike r of matched pairs.

    ``neuropil_coefficient``: one c for every ROI (suite2p: 0.7) or (n_rois,) per ROI (ours, as stored).
    """
    from cindra_dask.evaluate import match_rois, row_correlations, smoothed_spike_correlations
    from cindra_dask.extraction.baseline import subtract_neuropil

    frame_shape = truth.illumination.shape
    sources = np.flatnonzero((truth.plane_index == plane) & truth.is_cell & truth.active)
    cells = np.flatnonzero(is_cell)
    matching = match_rois(rois.select(cells), truth.rois().select(sources), frame_shape=frame_shape)
    detected, true_sources = cells[matching.detected_index], sources[matching.true_index]
    coefficient = np.broadcast_to(np.asarray(neuropil_coefficient, np.float32), (len(cell_fluorescence),))[detected]
    corrected = subtract_neuropil(cell_fluorescence[detected], neuropil_fluorescence[detected], neuropil_coefficient=coefficient)
    trace_r = row_correlations(corrected, truth.calcium[true_sources]) if len(detected) else np.zeros(0)
    spike_r = smoothed_spike_correlations(spikes[detected], truth.spikes[true_sources]) if len(detected) else np.zeros(0)
    median = lambda values: float(np.nanmedian(values)) if len(values) else float("nan")  # noqa: E731
    return {"rois": int(rois.count), "cells": int(len(cells)), "true_cells": int(len(sources)), "precision": matching.precision, "recall": matching.recall,
            "f1": matching.f1, "trace_r": median(trace_r), "spike_r": median(spike_r), "matched": int(len(detected)),
            "per_source": {"true_index": true_sources.tolist(), "trace_r": np.asarray(trace_r).tolist(), "spike_r": np.asarray(spike_r).tolist()}}


def score_cindra(store_path: Path, truth: Any, *, stage: str) -> dict[str, float]:
    """Our store: `score_recording` for a full run (cross-checked against `registration_scores` + `cell_scores`), registration scores otherwise."""
    from cindra_dask.store import RecordingStore

    store = RecordingStore(store_path)
    registration = "plane_0/registration"
    scores = registration_scores(store.read(f"{registration}/rigid_offsets"), store.read(f"{registration}/nonrigid_offsets"), store.read(f"{registration}/block_centers"), truth)
    if stage != "full":
        return scores
    from cindra_dask.evaluate import score_recording

    official = score_recording(store_path, truth)
    extraction = "plane_0/extraction"
    scores.update(cell_scores(store.read_rois("plane_0/rois"), store.read(f"{extraction}/cell_classification")[:, 0] == 1, store.read(f"{extraction}/cell_fluorescence"),
                              store.read(f"{extraction}/neuropil_fluorescence"), store.read(f"{extraction}/spikes"), truth,
                              neuropil_coefficient=store.read(f"{extraction}/neuropil_coefficient")))
    mine = (scores["rigid_rms_px"], scores["displacement_rms_px"], scores["f1"], scores["trace_r"], scores["spike_r"])
    theirs = (official.rigid_offset_rms_px, official.displacement_rms_px, official.detection_f1, official.trace_correlation, official.spike_correlation)
    if not np.allclose(mine, theirs, equal_nan=True):
        raise AssertionError(f"benchmark scorers disagree with score_recording: {mine} vs {theirs}")
    return scores


def suite2p_offset_sign(offsets: dict[str, np.ndarray], truth: Any) -> dict[str, float]:
    """Correlation of suite2p's (yoff, xoff) with the planted (dy, dx): +1-like means our sign convention."""
    good = ~np.asarray(truth.bad_frames[0], bool)
    planted = truth.rigid_offsets[0][good]
    return {"y": float(np.corrcoef(offsets["yoff"][good], planted[:, 0])[0, 1]), "x": float(np.corrcoef(offsets["xoff"][good], planted[:, 1])[0, 1])}


def score_suite2p(run: dict[str, Any], truth: Any, *, stage: str) -> dict[str, float]:
    """suite2p's outputs with the same scorers; the offset sign is measured, not assumed."""
    from cindra_dask.rois import RaggedRois
    from cindra_dask.registration.nonrigid import block_layout

    offsets = dict(np.load(run["offsets_path"]))
    sign = suite2p_offset_sign(offsets, truth)
    if min(sign.values()) < 0.5:
        raise AssertionError(f"suite2p offsets do not follow the truth's sign convention (r = {sign}); check before scoring")
    rigid = np.stack([offsets["yoff"], offsets["xoff"]], axis=1).astype(np.float32)
    nonrigid = np.stack([offsets["yoff1"], offsets["xoff1"]], axis=-1).astype(np.float32) if "yoff1" in offsets else np.zeros((len(rigid), 0, 2), np.float32)
    block_size_px = tuple(int(side) for side in offsets.get("block_size", (128, 128)))  # what run_suite2p gave suite2p
    layout = block_layout(frame_shape=truth.illumination.shape, block_size_px=block_size_px)
    suite2p_starts = (np.unique(offsets["yblock"][:, 0]) if "yblock" in offsets else None, np.unique(offsets["xblock"][:, 0]) if "xblock" in offsets else None)
    if suite2p_starts[0] is not None and not (np.array_equal(suite2p_starts[0], layout.y_starts) and np.array_equal(suite2p_starts[1], layout.x_starts)):
        raise AssertionError(f"suite2p's blocks {suite2p_starts} differ from ours ({layout.y_starts}, {layout.x_starts})")
    scores = registration_scores(rigid, nonrigid, layout.centers if nonrigid.shape[1] else np.zeros((0, 2)), truth, block_size_px=block_size_px)
    scores["offset_sign_r_y"], scores["offset_sign_r_x"] = sign["y"], sign["x"]
    if stage != "full":
        return scores
    plane = Path(run["plane_path"])
    stat = np.load(plane / "stat.npy", allow_pickle=True)
    rois = RaggedRois.from_masks([(roi["ypix"], roi["xpix"], roi["lam"]) for roi in stat])
    iscell = np.load(plane / "iscell.npy")
    scores.update(cell_scores(rois, iscell[:, 0] == 1, np.load(plane / "F.npy"), np.load(plane / "Fneu.npy"), np.load(plane / "spks.npy"), truth))
    return scores


# ---------------------------------------------------------------------------------------------
# one measurement
# ---------------------------------------------------------------------------------------------


@dataclass
class Settings:
    """How the tools run: ``workers`` × ``threads`` for ours, ``suite2p_threads`` torch threads for suite2p."""

    workers: int = 2
    threads: int = 1
    suite2p_threads: int = 2
    scratch: Path = SCRATCH
    reuse: bool = False
    keep_outputs: bool = False
    keep_data: bool = True


def machine() -> dict[str, Any]:
    """The machine in a few fields (for the tables' captions)."""
    import psutil

    return {"cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def code_version() -> dict[str, str]:
    """The commit and a digest of the package's working tree (other engineers edit it while benchmarks run)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "cindra_dask").rglob("*.py")):
        digest.update(path.read_bytes())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"commit": commit, "package_digest": digest.hexdigest()[:12], "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def measure(dataset: Dataset, *, stage: str, settings: Settings) -> dict[str, Any]:
    """Both tools on one dataset, one run each; cached under ``<scratch>/runs/<name>-<stage>.json``."""
    from cindra_dask.simulate import load_ground_truth

    cache = settings.scratch / "runs" / f"{dataset.name}-{stage}.json"
    description = {"dataset": dataset.name, "parameters": json.loads(dataset.parameters().model_dump_json()), "stage": stage,
                   "workers": settings.workers, "threads": settings.threads, "suite2p_threads": settings.suite2p_threads}
    if settings.reuse and cache.exists():
        record = json.loads(cache.read_text())
        if record["description"] == description:
            print(f"[{dataset.name}/{stage}] reusing {cache}", file=sys.stderr)
            return record
    data, simulation_s = ensure_recording(dataset, settings.scratch)
    truth = load_ground_truth(data / "ground_truth.npz")
    parameters = dataset.parameters()
    outputs, logs = settings.scratch / "outputs" / f"{dataset.name}-{stage}", settings.scratch / "logs"
    version = code_version()
    print(f"[{dataset.name}/{stage}] simulated in {simulation_s:.0f} s; running cindra-dask", file=sys.stderr)
    ours = run_cindra(data, outputs / "cindra", stage=stage, tau=parameters.tau_s, workers=settings.workers, threads=settings.threads, log_dir=logs)
    ours["scores"] = score_cindra(Path(ours["store_path"]), truth, stage=stage)
    if not settings.keep_outputs:
        shutil.rmtree(outputs / "cindra", ignore_errors=True)
    print(f"[{dataset.name}/{stage}] cindra-dask {ours['wall_s']:.0f} s; running suite2p", file=sys.stderr)
    theirs = run_suite2p(data, outputs / "suite2p", stage=stage, tau=parameters.tau_s, frame_rate_hz=parameters.plane_frame_rate_hz, threads=settings.suite2p_threads, log_dir=logs)
    theirs["scores"] = score_suite2p(theirs, truth, stage=stage)
    if not settings.keep_outputs:
        shutil.rmtree(outputs / "suite2p", ignore_errors=True)
    if not settings.keep_data:
        shutil.rmtree(data, ignore_errors=True)
    record = {"description": description, "machine": machine(), "code": version, "simulation_s": simulation_s, "cindra": ours, "suite2p": theirs}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(record, indent=1))
    print(json.dumps({"dataset": dataset.name, "stage": stage, "cindra_wall_s": ours["wall_s"], "suite2p_wall_s": theirs["wall_s"],
                      "cindra_stages": ours["stages"], "suite2p_stages": theirs["stages"], "cindra_scores": ours["scores"], "suite2p_scores": theirs["scores"]}), flush=True)
    return record


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------


def stage_comparison(record: dict[str, Any], stage: str) -> dict[str, Any]:
    """One stage of a measured run, both tools: wall s, ratio, CPU s, other processes' CPU s, RSS MiB."""
    ours, theirs = record["cindra"]["stages"][stage], record["suite2p"]["stages"][stage]
    return {"ours_s": ours["s"], "suite2p_s": theirs["s"], "ratio": ours["s"] / theirs["s"], "ours_cpu_s": ours["cpu_s"], "suite2p_cpu_s": theirs["cpu_s"],
            "ours_other_cpu_s": ours["other_cpu_s"], "suite2p_other_cpu_s": theirs["other_cpu_s"], "ours_worker_mib": ours["worker_rss_mib"],
            "ours_main_mib": ours["main_rss_mib"], "ours_total_mib": ours["total_rss_mib"], "suite2p_mib": theirs["main_rss_mib"]}


def stage_comparison_cells(row: dict[str, Any]) -> dict[str, Any]:
    """Table cells of a `stage_comparison` row, by column."""
    return {"cpu": f"{row['ours_cpu_s']:.1f} / {row['suite2p_cpu_s']:.1f}", "other_cpu": f"{row['ours_other_cpu_s']:.1f} / {row['suite2p_other_cpu_s']:.1f}",
            "ours_mib": f"{row['ours_worker_mib']:.0f} / {row['ours_main_mib']:.0f} / {row['ours_total_mib']:.0f}", "suite2p_mib": f"{row['suite2p_mib']:.0f}"}


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: floats to ``digits`` decimals, large numbers without, missing as —."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_table(path: Path, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], notes: Sequence[str] = ()) -> str:
    """Write a markdown table (with a caption: date, machine, notes) to ``path``; returns its text."""
    info = machine()
    lines = [f"### {title}", "", f"Measured {info['date']} on {info['cpus']} cores, {info['ram_gib']} GiB RAM (Python {info['python']}).", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(cell) if not isinstance(cell, str) else cell for cell in row) + " |" for row in rows]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def add_common_arguments(parser: Any, *, frames: Sequence[int], sizes: Sequence[int]) -> None:
    """``--frames``, ``--size``, ``--quick``, ``--reuse``, ``--workers``, ``--threads``, ``--scratch``, ``--out``."""
    parser.add_argument("--frames", type=int, nargs="+", default=list(frames), help="recording lengths (frames)")
    parser.add_argument("--size", type=int, nargs="+", default=list(sizes), help="frame sides (px)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 160² and 600 frames, results to <out>/quick")
    parser.add_argument("--reuse", action="store_true", help="reuse cached runs of the same dataset and stage (from any of the scripts)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--suite2p-threads", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=SCRATCH)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--drop-data", action="store_true", help="delete each simulated recording after its runs (default: keep for reuse)")


def settings_from(arguments: Any) -> Settings:
    """`Settings` from parsed arguments (``--quick`` puts scratch and results under ``quick/``)."""
    if arguments.quick:
        arguments.frames, arguments.size = [600], [160]
        arguments.out = arguments.out / "quick"
        arguments.scratch = arguments.scratch / "quick"
    return Settings(workers=arguments.workers, threads=arguments.threads, suite2p_threads=arguments.suite2p_threads, scratch=arguments.scratch, reuse=arguments.reuse, keep_data=not arguments.drop_data)
