"""Issue 21 item 5: a scaling model from the real task graph of a whole single-recording run.

Measure: the whole `run_single_recording` (preflight → ingest → process → combine → manifest) of a
simulated recording on a fresh LocalCluster of P worker processes × 1 thread, for each P in
``--measure-workers``, whose workers preload the kernels first as `cindra-dask run`'s do. A scheduler plugin (`GraphRecorder`: what distributed's task stream records,
plus each task's dependencies, output size and ``dask.order`` priority) keeps every task's compute
time, output bytes, dependencies and worker, and which graph submission it came with; the runner's
events give each step's end. Client time = the run's wall time not covered by any graph
(preflight, plan building, gathers, records, manifest) plus each graph's lead (its submission to
its first task computing: graph transfer, task deserialisation with the imports it triggers),
counted serial and unchanged with workers.

Model (`simulate`): graphs whose [submitted, done] intervals overlap form one segment (a persisted
collection and the graph that reads it); each segment's DAG is list-scheduled on W single-thread
workers: ready tasks in ``dask.order`` priority, each on the worker where it can start first, a
dependency on another worker arriving ``latency + bytes / bandwidth`` after it finished (no link
contention; data stays where it was computed, across segments too); a task's duration is its measured
compute time plus the median gap between consecutive tasks of one worker (dispatch overhead). Predicted
wall(W) = client time + Σ segments' makespan(W). Critical path = the longest duration path of each
segment (the makespan with unlimited workers and free transfers).

Projection (`scale_graph`) to ``--project-size``² × ``--project-frames``: P = pixel ratio, F = frame
ratio, target / measured. Task groups with one task per frame chunk of the measured movie (as many
tasks as its n_m frame chunks, or a first key index taking all n_m values) are replicated k = n_t / n_m
times (n_t: the target's frame chunks, from the project's own chunk planner with the default
``max_chunk_memory``), each copy P·F / k times the measured duration and output bytes; dependencies
between per-chunk tasks stay within a copy, every other task depends on all copies. Every other task
stays one task, P·F^e times longer, e ∈ {0, 1} per group from a second, shorter run
(``--growth-frames``, default half; the measured exponent rounded), except where the plan fixes it:
0 for the reference image's task functions (`reference_sample_functions`: its 500-frame sample does
not grow) and for `FIXED_COST_GROUPS`, and the registration metrics, whose frame sample the chunk planner caps by memory
(`METRICS_GROUP`). As a bracket, the projection is also given with e = 1 for every group the plan
does not fix (``pessimistic_graph_s``). Client time is
bracketed: constant, or the part after the last step (manifest checksums of every stored byte) × P·F
and the rest × F.

Run from the repository root: ``.venv/bin/python benchmarks/scaling.py --size 128 --frames 1000``;
writes ``benchmarks/results/scaling.json`` and ``scaling.md``.
"""

from __future__ import annotations

import argparse
import heapq
import math
import shutil
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
WORKER_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
FIXED_COST_GROUPS = frozenset({"load_classifier"})
"""Task groups whose work does not depend on the recording (reading the classifier file): e = 0."""
METRICS_GROUP = "registration_metrics"
"""The registration metrics' task: its frame sample is planned from memory (`cindra_dask.chunking.metrics_sample_frames`),
so its growth comes from that plan, not from the two measured lengths."""


class Task(NamedTuple):
    """One measured task: ``group`` (dask key prefix), ``chunk`` (first index of a tuple key, else None)."""

    key: str
    group: str
    chunk: int | None
    graph: int
    dependencies: tuple[str, ...]
    duration_s: float
    nbytes: int
    priority: tuple[Any, ...]
    worker: str
    start_s: float
    stop_s: float


def graph_recorder(scheduler: Any) -> Any:
    """A `GraphRecorder` added to ``scheduler`` (in this process: a LocalCluster's)."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    recorder = type("GraphRecorder", (GraphRecorder, SchedulerPlugin), {})(scheduler)
    scheduler.add_plugin(recorder)
    return recorder


def reference_sample_functions() -> set[str]:
    """Names of the reference image's task functions: they work on its ``reference_frame_count`` sample, which does not grow with the recording."""
    import inspect

    import cindra_dask.registration.reference as reference

    return {name for name, member in vars(reference).items() if inspect.isfunction(member) and member.__module__ == reference.__name__}


def task_from_json(payload: dict[str, Any]) -> Task:
    """A `Task` from its JSON object (lists back to tuples)."""
    return Task(**{**payload, "dependencies": tuple(payload["dependencies"]), "priority": tuple(payload["priority"])})


class GraphRecorder:
    """Scheduler plugin (mixed with distributed's `SchedulerPlugin` by `graph_recorder`): every finished task (`Task`) and every graph submission's time."""

    name = "cindra-dask-scaling-recorder"

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.graph_of: dict[str, int] = {}
        self.submitted_s: list[float] = []
        self.tasks: dict[str, Task] = {}

    def update_graph(self, scheduler: Any, *, tasks: Sequence[Any] = (), **kwargs: Any) -> None:
        index = len(self.submitted_s)
        self.submitted_s.append(time.time())
        for key in tasks:
            self.graph_of.setdefault(str(key), index)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if not (start == "processing" and finish == "memory"):
            return
        from dask.utils import key_split

        state = self.scheduler.tasks.get(key)
        computes = [item for item in kwargs.get("startstops", ()) if item["action"] == "compute"]
        if state is None or not computes:
            return
        chunk = key[1] if isinstance(key, tuple) and len(key) > 1 and isinstance(key[1], int) else None
        self.tasks[str(key)] = Task(
            str(key),
            key_split(key),
            chunk,
            self.graph_of.get(str(key), len(self.submitted_s) - 1),
            tuple(str(dependency.key) for dependency in state.dependencies),
            sum(item["stop"] - item["start"] for item in computes),
            int(kwargs.get("nbytes", 0) or 0),
            tuple(state.priority or ()),
            str(kwargs.get("worker")),
            min(item["start"] for item in computes),
            max(item["stop"] for item in computes),
        )


class TimedEvents:
    """Run events with their times: each step's end ("step 'x': done in ...")."""

    def __init__(self) -> None:
        self.step_ends: list[tuple[str, float]] = []

    def message(self, text: str) -> None:
        if text.startswith("step '") and "': done in" in text:
            self.step_ends.append((text.split("'")[1], time.time()))

    def computing(self, label: str, future: Any, client: Any) -> None:
        pass


class Segment(NamedTuple):
    """Graphs whose intervals overlap, run as one DAG: its tasks, step, measured span."""

    step: str
    tasks: tuple[Task, ...]
    start_s: float
    stop_s: float


class Measurement(NamedTuple):
    """One measured run: its wall time, segments, client time by step, dispatch overhead, load average (1, 5, 15 min)."""

    workers: int
    wall_s: float
    segments: tuple[Segment, ...]
    client_s: dict[str, float]
    dispatch_s: float
    load: str


class RawRun(NamedTuple):
    """What one run recorded: its tasks, each graph submission's time, each step's end, the run's start and stop, the load."""

    workers: int
    tasks: tuple[Task, ...]
    submitted_s: tuple[float, ...]
    step_ends: tuple[tuple[str, float], ...]
    started_s: float
    stopped_s: float
    load: str


def measure(data: Path, tau_s: float, output: Path, *, workers: int) -> RawRun:
    """The whole single-recording run on a fresh LocalCluster of ``workers`` processes, recorded."""
    from distributed import Client, LocalCluster

    from cindra_dask.cluster import PreloadKernels
    from cindra_dask.config import ClusterSettings, FileIOSettings, RuntimeSettings, SingleRecordingConfiguration
    from cindra_dask.kernel_cache import load_recorded_kernels
    from cindra_dask.pipeline import run_single_recording

    configuration = SingleRecordingConfiguration(
        runtime=RuntimeSettings(display_progress_bars=False), main={"tau": tau_s}, file_io=FileIOSettings(data_path=data, output_path=output), cluster=ClusterSettings(workers=workers)
    )
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.register_plugin(PreloadKernels(load_recorded_kernels()))  # as `cindra-dask run`'s cluster: modules imported, kernels loaded
        recorder = graph_recorder(cluster.scheduler)
        events = TimedEvents()
        started = time.time()
        run_single_recording(configuration, client=client, events=events)
        stopped = time.time()
        load = open("/proc/loadavg").read().split()[:3]
    return RawRun(workers, tuple(recorder.tasks.values()), tuple(recorder.submitted_s), tuple(events.step_ends), started, stopped, " ".join(load))


def measurement(run: RawRun) -> Measurement:
    """A recorded run cut into segments, with its client time by step and its dispatch overhead (module docstring)."""
    by_graph: dict[int, list[Task]] = defaultdict(list)
    for task in run.tasks:
        by_graph[task.graph].append(task)
    step_ends, started_s, stopped_s = run.step_ends, run.started_s, run.stopped_s

    def step_at(moment: float) -> str:
        return next((name for name, end in step_ends if moment <= end), "after the last step")

    intervals = sorted((run.submitted_s[graph], max(task.stop_s for task in tasks), tasks) for graph, tasks in by_graph.items() if run.submitted_s[graph] >= started_s)
    merged: list[list[Any]] = []
    for start, stop, tasks in intervals:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
            merged[-1][2] = merged[-1][2] + tasks
            merged[-1][3] = list(dict.fromkeys([*merged[-1][3], step_at(start)]))
        else:
            merged.append([start, stop, list(tasks), [step_at(start)]])
    segments = tuple(Segment(" + ".join(steps), tuple(tasks), start, stop) for start, stop, tasks, steps in merged)
    client: dict[str, float] = defaultdict(float)
    previous = started_s
    for segment in segments:
        client[segment.step] += segment.start_s - previous + min(task.start_s for task in segment.tasks) - segment.start_s  # and its lead: submitted → first task computing
        previous = segment.stop_s
    client["after the last step"] += stopped_s - previous
    gaps = []
    per_worker: dict[str, list[Task]] = defaultdict(list)
    for segment in segments:
        for task in segment.tasks:
            per_worker[task.worker].append(task)
    for tasks in per_worker.values():
        tasks.sort(key=lambda task: task.start_s)
        gaps += [later.start_s - earlier.stop_s for earlier, later in zip(tasks, tasks[1:]) if 0 <= later.start_s - earlier.stop_s < 0.05]
    return Measurement(run.workers, stopped_s - started_s, segments, dict(client), statistics.median(gaps) if gaps else 0.0, run.load)


def simulate(segments: Sequence[Segment], *, workers: int, dispatch_s: float, bandwidth_bytes_s: float, latency_s: float) -> dict[str, float]:
    """Predicted makespan of each step's segments on ``workers`` (list scheduling, see the module docstring), by step."""
    location: dict[str, int] = {}
    sizes = {task.key: task.nbytes for segment in segments for task in segment.tasks}
    spans: dict[str, float] = defaultdict(float)
    for segment in segments:
        tasks = {task.key: task for task in segment.tasks}
        waiting = {key: sum(1 for dependency in task.dependencies if dependency in tasks) for key, task in tasks.items()}
        dependents: dict[str, list[str]] = defaultdict(list)
        for key, task in tasks.items():
            for dependency in task.dependencies:
                if dependency in tasks:
                    dependents[dependency].append(key)
        ready = [(tasks[key].priority, key) for key, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        free = np.zeros(workers)
        finish: dict[str, float] = {}
        while ready:
            _, key = heapq.heappop(ready)
            task = tasks[key]
            candidates = {int(np.argmin(free)), *(location[dependency] for dependency in task.dependencies if dependency in location)}
            best = None
            for worker in candidates:
                arrival = 0.0
                for dependency in task.dependencies:
                    done = finish.get(dependency, 0.0)
                    if location.get(dependency, worker) != worker:
                        done += latency_s + sizes.get(dependency, 0) / bandwidth_bytes_s
                    arrival = max(arrival, done)
                start = max(free[worker], arrival)
                if best is None or start < best[0]:
                    best = (start, worker)
            start, worker = best
            finish[key] = start + task.duration_s + dispatch_s
            free[worker] = finish[key]
            location[key] = worker
            for dependent in dependents[key]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    heapq.heappush(ready, (tasks[dependent].priority, dependent))
        spans[segment.step] += max(finish.values(), default=0.0)
    return dict(spans)


def critical_path(segments: Sequence[Segment], *, dispatch_s: float) -> dict[str, tuple[float, list[str]]]:
    """Per step: Σ over its segments of the longest path (s) and the task groups on the longest segment path."""
    totals: dict[str, float] = defaultdict(float)
    longest_segment: dict[str, tuple[float, list[str]]] = {}
    for segment in segments:
        tasks = {task.key: task for task in segment.tasks}
        longest: dict[str, tuple[float, str | None]] = {}
        for task in sorted(tasks.values(), key=lambda task: task.stop_s):
            best = max(((longest[dependency][0], dependency) for dependency in task.dependencies if dependency in longest), default=(0.0, None))
            longest[task.key] = (best[0] + task.duration_s + dispatch_s, best[1])
        end = max(longest, key=lambda key: longest[key][0])
        length, chain = longest[end][0], []
        key: str | None = end
        while key is not None:
            chain.append(tasks[key].group)
            key = longest[key][1]
        totals[segment.step] += length
        if length > longest_segment.get(segment.step, (-1.0, []))[0]:
            longest_segment[segment.step] = (length, list(dict.fromkeys(reversed(chain))))
    return {step: (total, longest_segment[step][1]) for step, total in totals.items()}


def per_chunk_groups(segment: Segment, *, chunks: int) -> set[str]:
    """The task groups of ``segment`` with one task per frame chunk: ``chunks`` tasks (delayed keys), or a first key index taking all ``chunks`` values."""
    seen: dict[str, set[int]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for task in segment.tasks:
        counts[task.group] += 1
        if task.chunk is not None:
            seen[task.group].add(task.chunk)
    return {group for group, count in counts.items() if chunks > 1 and (count == chunks or len(seen[group]) == chunks)}


def other_group_seconds(segments: Sequence[Segment], *, chunks: int) -> dict[str, float]:
    """Σ compute seconds of each task group that is not per frame chunk."""
    totals: dict[str, float] = defaultdict(float)
    for segment in segments:
        per_chunk = per_chunk_groups(segment, chunks=chunks)
        for task in segment.tasks:
            if task.group not in per_chunk:
                totals[task.group] += task.duration_s
    return dict(totals)


def frame_exponents(long: dict[str, float], short: dict[str, float], *, frames_ratio: float) -> dict[str, float]:
    """Per task group, e = 1 (its seconds grow with the frames) or 0 (they do not): the measured exponent of its seconds at
    two lengths rounded (a group absent from the short run: 1), as a noisy machine gives fractional exponents to both kinds."""
    return {group: float(math.log(seconds / short[group]) / math.log(frames_ratio) >= 0.5) if short.get(group, 0) > 0 and seconds > 0 else 1.0 for group, seconds in long.items()}


def scale_graph(segments: Sequence[Segment], *, measured_chunks: int, target_chunks: int, pixel_ratio: float, frames_ratio: float, exponents: dict[str, float]) -> tuple[Segment, ...]:
    """The measured segments grown to a recording ``pixel_ratio`` × larger frames and ``frames_ratio`` × more frames
    in ``target_chunks`` frame chunks: per-chunk groups replicated, the others grown by their frame exponent (module docstring)."""
    copies = max(1, round(target_chunks / measured_chunks))
    per_copy = pixel_ratio * frames_ratio / copies
    scaled = []
    for segment in segments:
        per_chunk = per_chunk_groups(segment, chunks=measured_chunks)
        replicated = {task.key for task in segment.tasks if task.group in per_chunk}
        out = []
        for task in segment.tasks:
            if task.key in replicated:
                for copy in range(copies):
                    dependencies = tuple(f"{dependency}#{copy}" if dependency in replicated else dependency for dependency in task.dependencies)
                    out.append(task._replace(key=f"{task.key}#{copy}", dependencies=dependencies, duration_s=task.duration_s * per_copy, nbytes=int(task.nbytes * per_copy), priority=(copy, *task.priority)))
            else:
                growth = pixel_ratio * frames_ratio ** exponents.get(task.group, 1.0)
                dependencies = tuple(f"{dependency}#{copy}" for dependency in task.dependencies if dependency in replicated for copy in range(copies))
                dependencies += tuple(dependency for dependency in task.dependencies if dependency not in replicated)
                out.append(task._replace(duration_s=task.duration_s * growth, nbytes=int(task.nbytes * growth), priority=(copies if any(d in replicated for d in task.dependencies) else 0, *task.priority)))
        scaled.append(segment._replace(tasks=tuple(out)))
    return tuple(scaled)


def step_table(measured: Measurement, predictions: dict[int, dict[str, float]], client_s: dict[str, float], paths: dict[str, tuple[float, list[str]]]) -> list[str]:
    """Markdown rows: per step, graph time by workers (speed-up, efficiency vs 1 worker), client time, critical path."""
    steps = list(dict.fromkeys([segment.step for segment in measured.segments] + list(client_s)))
    header = "| step | client s | " + " | ".join(f"W={workers}" for workers in predictions) + " | critical path s (groups) |"
    rows = [header, "|" + "---|" * (len(predictions) + 3)]
    for step in steps:
        one = predictions[min(predictions)].get(step, 0.0)
        cells = []
        for workers, spans in predictions.items():
            span = spans.get(step, 0.0)
            cells.append(f"{span:.1f} s ({one / span:.1f}×, {one / span / workers:.2f})" if span > 0 else "—")
        length, groups = paths.get(step, (0.0, []))
        rows.append(f"| {step} | {client_s.get(step, 0.0):.1f} | " + " | ".join(cells) + f" | {length:.1f} ({' → '.join(groups[:6])}) |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--measure-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model-from", type=int, default=2, help="The measured run whose graph the model uses.")
    parser.add_argument("--bandwidth-gb-s", type=float, default=1.0, help="Network bandwidth of the projection (GB/s per transfer).")
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--project-size", type=int, default=512)
    parser.add_argument("--project-frames", type=int, default=50_000)
    parser.add_argument("--growth-frames", type=int, default=None, help="Length of a second run (model-from workers) that gives each non-chunked task group's growth with frames (default: half of --frames).")
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="Model the runs measured before in --scratch instead of measuring again.")
    arguments = parser.parse_args()

    from cindra_dask.chunking import ingest_chunk_frames, metrics_sample_frames
    from cindra_dask.config import SingleRecordingConfiguration
    from cindra_dask.simulate import SimulationParameters, write_recording

    scratch = arguments.scratch or Path(tempfile.mkdtemp(prefix="cindra-scaling-"))
    growth_frames = arguments.growth_frames or arguments.frames // 2

    def recording(frames: int) -> tuple[Path, float]:
        parameters = SimulationParameters(frame_height=arguments.size, frame_width=arguments.size, frame_count=frames, cell_count=max(10, arguments.size**2 // 550), seed=1)
        data = scratch / "data" / f"scaling_{frames}"
        if not (data / "ground_truth.npz").exists():
            write_recording(parameters, data)
        return data, parameters.tau_s

    def measured(frames: int, workers: int) -> RawRun:
        output = scratch / f"out_{frames}_{workers}"
        shutil.rmtree(output, ignore_errors=True)
        result = measure(*recording(frames), output, workers=workers)
        print(json.dumps({"frames": frames, "workers": workers, "wall_s": round(result.stopped_s - result.started_s, 2), "load": result.load}), flush=True)
        return result

    cache = scratch / "runs.json"
    if arguments.reuse and cache.is_file():
        raw = json.loads(cache.read_text())
        runs = [
            RawRun(run["workers"], tuple(task_from_json(task) for task in run["tasks"]), tuple(run["submitted_s"]), tuple(map(tuple, run["step_ends"])), run["started_s"], run["stopped_s"], run["load"])
            for run in raw
        ]
    else:
        runs = [measured(growth_frames, arguments.model_from)]  # first: it also imports what every run's client imports once
        runs += [measured(arguments.frames, workers) for workers in arguments.measure_workers]
        cache.write_text(json.dumps([run._asdict() | {"tasks": [task._asdict() for task in run.tasks]} for run in runs], default=str))
    short = measurement(runs[0])
    measurements = {run.workers: measurement(run) for run in runs[1:]}
    source = measurements[arguments.model_from]
    bandwidth, latency = arguments.bandwidth_gb_s * 1e9, arguments.latency_ms / 1e3
    client_total = sum(source.client_s.values())
    predictions = {workers: simulate(source.segments, workers=workers, dispatch_s=source.dispatch_s, bandwidth_bytes_s=bandwidth, latency_s=latency) for workers in WORKER_COUNTS}
    validation = {}
    for graph_workers, graph in measurements.items():
        for workers, measured in measurements.items():
            spans = simulate(graph.segments, workers=workers, dispatch_s=graph.dispatch_s, bandwidth_bytes_s=bandwidth, latency_s=latency)
            predicted = sum(graph.client_s.values()) + sum(spans.values())
            validation[f"graph of W={graph_workers} -> W={workers}"] = {"measured_s": round(measured.wall_s, 2), "predicted_s": round(predicted, 2), "error": round(predicted / measured.wall_s - 1, 3), "load": measured.load}

    defaults = SingleRecordingConfiguration()
    chunk = lambda size: ingest_chunk_frames(frame_height=size, frame_width=size, max_chunk_bytes=defaults.runtime.max_chunk_bytes, batch_size=defaults.registration.batch_size)  # noqa: E731
    measured_chunks = -(-arguments.frames // chunk(arguments.size))
    target_chunks = -(-arguments.project_frames // chunk(arguments.project_size))
    frames_ratio, pixel_ratio = arguments.project_frames / arguments.frames, (arguments.project_size / arguments.size) ** 2
    work = frames_ratio * pixel_ratio
    exponents = frame_exponents(
        other_group_seconds(source.segments, chunks=measured_chunks), other_group_seconds(short.segments, chunks=-(-growth_frames // chunk(arguments.size))), frames_ratio=arguments.frames / growth_frames
    )
    sample = lambda size, frames: min(frames, metrics_sample_frames(frame_height=size, frame_width=size, max_chunk_bytes=defaults.runtime.max_chunk_bytes)) * size**2  # noqa: E731
    planned = {METRICS_GROUP: math.log(sample(arguments.project_size, arguments.project_frames) / sample(arguments.size, arguments.frames) / pixel_ratio) / math.log(frames_ratio)}
    planned |= {group: 0.0 for group in exponents if group.split("-")[0] in reference_sample_functions() | FIXED_COST_GROUPS}
    exponents |= planned
    scaled = scale_graph(source.segments, measured_chunks=measured_chunks, target_chunks=target_chunks, pixel_ratio=pixel_ratio, frames_ratio=frames_ratio, exponents=exponents)
    pessimistic = scale_graph(source.segments, measured_chunks=measured_chunks, target_chunks=target_chunks, pixel_ratio=pixel_ratio, frames_ratio=frames_ratio, exponents=planned)
    pessimistic_graph_s = {workers: sum(simulate(pessimistic, workers=workers, dispatch_s=source.dispatch_s, bandwidth_bytes_s=bandwidth, latency_s=latency).values()) for workers in (1, 64)}
    projected = {workers: simulate(scaled, workers=workers, dispatch_s=source.dispatch_s, bandwidth_bytes_s=bandwidth, latency_s=latency) for workers in (1, 16, 64, 256)}
    client_scaled = source.client_s.get("after the last step", 0.0) * work + (client_total - source.client_s.get("after the last step", 0.0)) * frames_ratio
    projection = {}
    for workers, spans in projected.items():
        graph = sum(spans.values())
        projection[workers] = {"graph_s": round(graph, 1), "wall_constant_client_s": round(graph + client_total, 1), "wall_scaled_client_s": round(graph + client_scaled, 1)}
    one = projection[1]
    for workers, record in projection.items():
        for name in ("wall_constant_client_s", "wall_scaled_client_s"):
            record[name.replace("wall", "efficiency")] = round(one[name] / record[name] / workers, 3)
        record["graph_efficiency"] = round(one["graph_s"] / record["graph_s"] / workers, 3)
    scaled_paths = critical_path(scaled, dispatch_s=source.dispatch_s)
    summary = {
        "measured_recording": f"{arguments.size}² × {arguments.frames} frames, 1 plane",
        "model_from_workers": arguments.model_from,
        "tasks": sum(len(segment.tasks) for segment in source.segments),
        "segments": len(source.segments),
        "dispatch_overhead_ms": round(source.dispatch_s * 1e3, 2),
        "bandwidth_gb_s": arguments.bandwidth_gb_s,
        "latency_ms": arguments.latency_ms,
        "client_s": {step: round(value, 2) for step, value in source.client_s.items()},
        "validation": validation,
        "projection": {"recording": f"{arguments.project_size}² × {arguments.project_frames} frames, 1 plane", "work_factor": round(work, 1), "measured_chunks": measured_chunks, "target_chunks": target_chunks, "client_scaled_s": round(client_scaled, 1), "by_workers": projection},
        "pessimistic_graph_s": {"every other non-chunked group e=1": {workers: round(value, 1) for workers, value in pessimistic_graph_s.items()}, "efficiency_64": round(pessimistic_graph_s[1] / pessimistic_graph_s[64] / 64, 3)},
        "frame_exponents": {group: round(value, 2) for group, value in sorted(exponents.items(), key=lambda item: -other_group_seconds(source.segments, chunks=measured_chunks)[item[0]])},
        "projection_critical_path_s": {step: [round(length, 1), groups[:8]] for step, (length, groups) in scaled_paths.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(summary, indent=2))
    lines = [f"# Scaling model ({summary['measured_recording']}, graph of the {arguments.model_from}-worker run)", "", "Graph time per step (speed-up vs 1 worker, efficiency):", ""]
    lines += step_table(source, predictions, source.client_s, critical_path(source.segments, dispatch_s=source.dispatch_s))
    lines += ["", "Projection, graph time per step:", ""]
    lines += step_table(source._replace(segments=scaled), projected, {}, scaled_paths)
    (RESULTS / "scaling.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(summary, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
