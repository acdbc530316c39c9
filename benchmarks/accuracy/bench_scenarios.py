"""The scenario sweep (issue 24, item 1): every preset of `cindra_dask.scenarios` through
suite2p 1.1.0 and cindra-dask, scored against the planted truth.

For each scenario the TIFFs are written once (`cindra_dask.scenarios.write_scenario`), then:

(a) cindra-dask with its defaults: only ``file_io`` set, so ``main.tau`` is cindra's 0.4 s
    (``run_cindra.py`` also turns the PC registration metrics off, which no score uses);
(b) cindra-dask with ``main.tau`` = the true tau (skipped where that is 0.4: same as (a));
(c) cindra-dask with the tau 30 % too long (1.3 × true), for the scenarios in ``--wrong-tau``;
(d) suite2p 1.1.0 with the true tau, when ``benchmarks/.suite2p-venv`` exists (``setup_suite2p.sh``).

The tools run one after the other through ``benchmarks/common.py`` (`run_cindra`: 2 workers × 1
thread; `run_suite2p`: 2 torch threads, CPU) and are scored with its scorers: `score_cindra`
(which checks itself against `cindra_dask.evaluate.score_recording`) and `score_suite2p`, i.e.
detection recall / precision / F1 at IoU 0.3 of the ROIs classified as cells against the active
true somata, median trace r and smoothed spike r of the matched pairs, rigid offset RMS. The same
`common.cell_scores` with every ROI kept gives the "all ROIs" columns.

What is measured is a commit, not the working tree: ``--code-ref`` (default HEAD) is exported with
``git archive`` under the scratch folder and put first on the tools' ``PYTHONPATH``, so edits made
meanwhile cannot change a run; the table names the commit. Each run is cached as JSON under
``benchmarks/results/scratch/scenarios/runs/`` keyed by scenario, run and commit (``--fresh``
ignores the cache).

    .venv/bin/python benchmarks/accuracy/bench_scenarios.py [--scenarios NAME ...] [--no-suite2p]
        [--suite2p-scenarios NAME ...] [--wrong-tau NAME ...] [--code-ref REF]

Writes ``benchmarks/accuracy/results/scenarios.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import common  # noqa: E402

RESULT_PATH = HERE / "results" / "scenarios.md"
SCRATCH = common.SCRATCH / "scenarios"
DEFAULT_TAU_S = 0.4  # cindra's main.tau default (cindra_dask.config)
DEFAULT_WRONG_TAU = ("default", "short_7hz", "slow_tau_1p5")
RUN_LABELS = {"suite2p": "suite2p 1.1.0, true tau", "defaults": "cindra-dask, defaults (tau 0.4)", "true_tau": "cindra-dask, true tau", "wrong_tau": "cindra-dask, tau 1.3× true"}


def default_bank_path() -> Path:
    from fetch_cascade import BANK_FILE_NAME, cache_directory

    return cache_directory() / BANK_FILE_NAME


def export_code(reference: str) -> tuple[str, Path]:
    """(short commit, folder) of ``git archive <reference>`` under the scratch folder (made once per commit)."""
    commit = subprocess.run(["git", "rev-parse", "--short", reference], cwd=common.ROOT, capture_output=True, text=True, check=True).stdout.strip()
    folder = SCRATCH / "code" / commit
    if not (folder / "cindra_dask" / "__init__.py").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit, "cindra_dask"], cwd=common.ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return commit, folder


def compile_exported(folder: Path) -> None:
    """Fill numba's cache of the exported code with a tiny demo run, once per export.

    Replaces `common.ensure_compiled`, whose marker follows the working tree's digest (which
    changes whenever someone edits it) rather than the code measured.
    """
    marker = folder / "compiled"
    if marker.exists():
        return
    print("compiling numba kernels of the exported code (a tiny demo run)", file=sys.stderr)
    demo = SCRATCH / "demo"
    shutil.rmtree(demo, ignore_errors=True)
    subprocess.run([common.PROJECT_PYTHON, "-m", "cindra_dask.cli", "demo", demo, "--frames", "300", "--size", "128"], cwd=folder, check=True, capture_output=True)
    shutil.rmtree(demo, ignore_errors=True)
    marker.touch()


def all_roi_scores(rois: Any, cell_f: np.ndarray, neuropil_f: np.ndarray, spikes: np.ndarray, truth: Any, coefficient: Any) -> dict[str, float]:
    """`common.cell_scores` with every ROI kept (not only the classified cells)."""
    scores = common.cell_scores(rois, np.ones(rois.count, bool), cell_f, neuropil_f, spikes, truth, neuropil_coefficient=coefficient)
    return {f"all_{key}": scores[key] for key in ("rois", "precision", "recall", "f1")}


def score_cindra_run(store_path: Path, truth: Any) -> dict[str, Any]:
    from cindra_dask.store import RecordingStore

    scores = common.score_cindra(store_path, truth, stage="full")
    store = RecordingStore(store_path)
    extraction = "plane_0/extraction"
    scores.update(all_roi_scores(store.read_rois("plane_0/rois"), store.read(f"{extraction}/cell_fluorescence"), store.read(f"{extraction}/neuropil_fluorescence"),
                                 store.read(f"{extraction}/spikes"), truth, store.read(f"{extraction}/neuropil_coefficient")))
    estimated = f"{extraction}/estimated_tau_s"
    if estimated in store:
        scores["estimated_tau_s"] = float(np.nanmedian(store.read(estimated)))
    return scores


def score_suite2p_run(run: dict[str, Any], truth: Any) -> dict[str, Any]:
    from cindra_dask.rois import RaggedRois

    scores = common.score_suite2p(run, truth, stage="full")
    plane = Path(run["plane_path"])
    stat = np.load(plane / "stat.npy", allow_pickle=True)
    rois = RaggedRois.from_masks([(roi["ypix"], roi["xpix"], roi["lam"]) for roi in stat])
    scores.update(all_roi_scores(rois, np.load(plane / "F.npy"), np.load(plane / "Fneu.npy"), np.load(plane / "spks.npy"), truth, 0.7))
    return scores


def measure(name: str, run: str, *, data: Path, tau_s: float, frame_rate_hz: float, commit: str, fresh: bool) -> dict[str, Any]:
    """One tool run on one scenario's TIFFs, scored; cached under ``runs/<name>-<run>.json``."""
    from cindra_dask.simulate import load_ground_truth

    cache = SCRATCH / "runs" / f"{name}-{run}.json"
    key = {"scenario": name, "run": run, "tau_s": tau_s, "commit": commit if run != "suite2p" else "suite2p 1.1.0",
           "parameters": (data / "simulation_parameters.json").read_text()}
    if not fresh and cache.exists():
        record = json.loads(cache.read_text())
        if record["key"] == key:
            return record
    truth = load_ground_truth(data / "ground_truth.npz")
    outputs, logs = SCRATCH / "outputs" / f"{name}-{run}", SCRATCH / "logs"
    started = time.perf_counter()
    if run == "suite2p":
        result = common.run_suite2p(data, outputs / "suite2p", stage="full", tau=tau_s, frame_rate_hz=frame_rate_hz, threads=2, log_dir=logs)
        scores = score_suite2p_run(result, truth)
    else:
        result = common.run_cindra(data, outputs / "cindra", stage="full", tau=tau_s, workers=2, threads=1, log_dir=logs)
        scores = score_cindra_run(Path(result["store_path"]), truth)
    shutil.rmtree(outputs, ignore_errors=True)
    scores.pop("per_source", None)
    record = {"key": key, "scores": scores, "wall_s": result["wall_s"], "elapsed_s": time.perf_counter() - started, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(record, indent=1))
    return record


def ensure_scenario(name: str, bank_path: Path) -> Path:
    """The scenario's recording folder, written once per parameter set."""
    from cindra_dask.scenarios import SCENARIOS, scenario_parameters, write_scenario

    directory = SCRATCH / "data" / name
    scenario = SCENARIOS[name]
    stamp_text = json.dumps({"parameters": json.loads(scenario_parameters(name, activity_bank_path=directory / "activity_bank.npz" if scenario.bank_datasets else None).model_dump_json()),
                             "uint16_offset_counts": scenario.uint16_offset_counts})
    stamp = directory / "simulation_parameters.json"
    if stamp.exists() and stamp.read_text() == stamp_text and (directory / "ground_truth.npz").exists():
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    write_scenario(name, directory, bank_path=bank_path)
    stamp.write_text(stamp_text)
    return directory


COLUMNS = ("all_rois", "all_recall", "all_precision", "all_f1", "cells", "recall", "precision", "f1", "trace_r", "spike_r", "rigid_rms_px")
HEADER = ("scenario", "run", "ROIs", "recall (all)", "precision (all)", "F1 (all)", "cells", "recall (cells)", "precision (cells)", "F1 (cells)", "trace r", "spike r", "rigid RMS px")


def table_rows(name: str, records: dict[str, dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for run in ("suite2p", "defaults", "true_tau", "wrong_tau"):
        if run not in records:
            continue
        record = records[run]
        if isinstance(record, str):
            rows.append([name, RUN_LABELS[run], record] + [""] * (len(COLUMNS) - 1))
            continue
        scores = record["scores"]
        rows.append([name, RUN_LABELS[run]] + [scores.get(column) for column in COLUMNS])
    return rows


def main(arguments: list[str] | None = None) -> int:
    from cindra_dask.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--suite2p-scenarios", nargs="+", default=None, help="run suite2p on these only (default: every scenario)")
    parser.add_argument("--no-suite2p", action="store_true")
    parser.add_argument("--wrong-tau", nargs="*", default=list(DEFAULT_WRONG_TAU), help="scenarios that also get run (c), tau 1.3× true")
    parser.add_argument("--code-ref", default="HEAD", help="the commit whose cindra_dask is measured")
    parser.add_argument("--bank", type=Path, default=None, help="CASCADE bank (default: the fetch_cascade.py cache)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached runs")
    options = parser.parse_args(arguments)
    bank_path = options.bank or default_bank_path()
    commit, code = export_code(options.code_ref)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])])
    common.ensure_compiled = lambda: compile_exported(code)  # run_cindra calls it before each run
    have_suite2p = common.SUITE2P_PYTHON.exists() and not options.no_suite2p
    suite2p_scenarios = set(options.suite2p_scenarios if options.suite2p_scenarios is not None else options.scenarios)
    rows: list[list[Any]] = []
    notes: list[str] = []
    for name in options.scenarios:
        scenario = SCENARIOS[name]
        if scenario.bank_datasets and not bank_path.exists():
            message = f"skipped: CASCADE bank not found at {bank_path} (run benchmarks/accuracy/fetch_cascade.py)"
            print(f"[{name}] {message}", file=sys.stderr)
            rows.append([name, "—", message] + [""] * (len(COLUMNS) - 1))
            continue
        started = time.perf_counter()
        data = ensure_scenario(name, bank_path)
        print(f"[{name}] data ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        from cindra_dask.simulate import load_ground_truth

        frame_rate_hz = load_ground_truth(data / "ground_truth.npz").parameters.plane_frame_rate_hz
        runs: dict[str, float] = {"defaults": DEFAULT_TAU_S}
        if not np.isclose(scenario.true_tau_s, DEFAULT_TAU_S):
            runs["true_tau"] = scenario.true_tau_s
        if name in options.wrong_tau:
            runs["wrong_tau"] = scenario.wrong_tau_s
        if have_suite2p and name in suite2p_scenarios:
            runs["suite2p"] = scenario.true_tau_s
        records: dict[str, Any] = {}
        for run, tau_s in runs.items():
            try:
                records[run] = measure(name, run, data=data, tau_s=tau_s, frame_rate_hz=frame_rate_hz, commit=commit, fresh=options.fresh)
                scores = records[run]["scores"]
                print(f"[{name}/{run}] tau {tau_s}: {records[run]['elapsed_s']:.0f} s; recall {scores['recall']:.3f} precision {scores['precision']:.3f} "
                      f"trace r {scores['trace_r']:.3f} spike r {scores['spike_r']:.3f}", file=sys.stderr, flush=True)
            except Exception as error:  # one failing run must not lose the table
                records[run] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
                print(f"[{name}/{run}] {records[run]}", file=sys.stderr, flush=True)
        if np.isclose(scenario.true_tau_s, DEFAULT_TAU_S):
            notes.append(f"{name}: the true tau is cindra's default 0.4 s, so the defaults row is also the true-tau row.")
        rows += table_rows(name, records)
    if not have_suite2p:
        notes.append("suite2p rows missing: benchmarks/.suite2p-venv not found (benchmarks/setup_suite2p.sh)" if not options.no_suite2p else "suite2p not run (--no-suite2p)")
    elif options.suite2p_scenarios is not None:
        notes.append(f"suite2p run on {', '.join(sorted(suite2p_scenarios))} only.")
    notes += [
        f"cindra-dask measured at commit {commit} (`git archive`, not the working tree); suite2p 1.1.0 on CPU torch (2 threads), cindra-dask on a LocalCluster of 2 workers × 1 thread.",
        "Detection at IoU ≥ 0.3 (one-to-one matching) against the active true somata; 'all' = every ROI, 'cells' = ROIs classified as cells. Non-somatic sources are not in the truth set, so ROIs on them count against precision.",
        "trace r: median Pearson r of neuropil-subtracted F (ours: per-ROI coefficient; suite2p: 0.7) with the planted dF/F over matched classified cells; spike r: median r of deconvolved vs planted spikes, both smoothed (σ 2 frames); rigid RMS over good frames.",
        "Runs cached per scenario, run and commit in benchmarks/results/scratch/scenarios/runs/.",
    ]
    header = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    body = ["| " + " | ".join(common.fmt(cell, 3) if not isinstance(cell, str) else cell for cell in row) + " |" for row in rows]
    info = common.machine()
    from cindra_dask.scenarios import SCENARIO_BASE

    text = "\n".join(
        [
            "# Scenario sweep (issue 24, item 1)",
            "",
            "Generated by `benchmarks/accuracy/bench_scenarios.py`; presets in `cindra_dask/scenarios.py` (table in `benchmarks/accuracy/README.md`).",
            f"Measured {info['date']} on {info['cpus']} cores (shared), Python {info['python']}; base of every preset: {dict(SCENARIO_BASE)}.",
            "",
            *header,
            *body,
            "",
            *[f"- {note}" for note in notes],
        ]
    )
    RESULT_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULT_PATH.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
