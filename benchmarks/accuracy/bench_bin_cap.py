"""Capped detection bins × cell classifiers (issue 24): each scenario preset with the true tau, through
the whole pipeline once per ``roi_detection.maximum_bin_duration``, then classified by each training set.

Classification is the last step and changes nothing upstream (with ``preclassification_threshold`` 0,
the default), so each store is run once per cap and reclassified here with every ``--classifier``
exactly as the extraction step does it (`classify` on ``normalized_pixel_count``, ``compactness`` and
the skewness of F − c·Fneu, c the stored per-ROI coefficient; threshold 0.5). The bundled training
set's reclassification is checked against the stored ``cell_classification``. Scored with
`common.cell_scores` (classified cells and all ROIs vs the active true somata, IoU 0.3), as
``bench_scenarios.py`` scores. A cap at or above the true tau gives cindra's bins (the no-cap run)
and is not rerun.

What is measured is the importable ``cindra_dask`` (run it with ``PYTHONPATH`` at the commit you
mean); the table names ``git describe --dirty`` of this checkout. Stores are kept under
``benchmarks/results/scratch/bin_cap/`` and reused when their ``done.json`` is there (``--fresh``
reruns).

    .venv/bin/python benchmarks/accuracy/bench_bin_cap.py --caps 0 0.4 0.7 \\
        --classifier old=<training set .npz> [--classifier new=<.npz> ...] [--scenarios NAME ...]

Writes ``benchmarks/accuracy/results/bin_cap.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import common  # noqa: E402

RESULT_PATH = HERE / "results" / "bin_cap.md"
SCRATCH = common.SCRATCH / "bin_cap"
CLASSIFICATION_THRESHOLD = 0.5  # signal_extraction.classification_threshold's default
COLUMNS = ("rois", "all_precision", "cells", "recall", "precision", "f1", "trace_r", "spike_r")
HEADER = ("scenario", "cap s", "bin frames", "classifier", "ROIs", "precision (all)", "cells", "recall (cells)", "precision (cells)", "F1 (cells)", "trace r", "spike r")


def run_store(name: str, cap_s: float, *, data: Path, client: Any, fresh: bool) -> Path:
    """The finished store of one scenario with the true tau and the cap (run once, kept)."""
    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.scenarios import SCENARIOS

    folder = SCRATCH / "stores" / f"{name}-cap{cap_s:g}"
    done = folder / "done.json"
    if done.exists() and not fresh:
        return Path(json.loads(done.read_text())["store"])
    shutil.rmtree(folder, ignore_errors=True)
    configuration = configuration_from_mapping(
        {
            "runtime": {"display_progress_bars": False},
            "file_io": {"data_path": str(data), "output_path": str(folder)},
            "main": {"tau": SCENARIOS[name].true_tau_s},
            "roi_detection": {"maximum_bin_duration": cap_s},
            "registration": {"registration_metric_principal_components": 0},
        },
        source=f"{name}/cap {cap_s:g}",
    )
    report = run_single_recording(configuration, client=client, force=True)
    done.write_text(json.dumps({"store": str(report.store_path)}))
    return Path(report.store_path)


def classified_scores(store_path: Path, truth: Any, classifiers: dict[str, Any], *, bundled: str | None) -> tuple[int, dict[str, dict[str, float]]]:
    """(bin frames, {classifier: scores}) of one store, each classifier applied as the extraction step applies it."""
    from cindra_dask.detection.classify import classify
    from cindra_dask.extraction.baseline import neuropil_corrected_skewness
    from cindra_dask.store import RecordingStore

    store = RecordingStore(store_path)
    extraction = "plane_0/extraction"
    cell_f, neuropil_f, spikes, coefficient = (store.read(f"{extraction}/{key}") for key in ("cell_fluorescence", "neuropil_fluorescence", "spikes", "neuropil_coefficient"))
    rois = store.read_rois("plane_0/rois")
    features = {key: np.asarray(store.read(f"plane_0/rois/{key}"), np.float32) for key in ("normalized_pixel_count", "compactness")}
    features["skewness"] = neuropil_corrected_skewness(cell_f, neuropil_f, neuropil_coefficient=coefficient)
    every = common.cell_scores(rois, np.ones(rois.count, bool), cell_f, neuropil_f, spikes, truth, neuropil_coefficient=coefficient)
    results = {}
    for label, classifier in classifiers.items():
        is_cell = classify(features, classifier=classifier, threshold=CLASSIFICATION_THRESHOLD)[:, 0] == 1
        if label == bundled and not np.array_equal(is_cell, store.read(f"{extraction}/cell_classification")[:, 0] == 1):
            raise AssertionError(f"{store_path}: reclassification with the bundled training set differs from the stored cell_classification")
        scores = common.cell_scores(rois, is_cell, cell_f, neuropil_f, spikes, truth, neuropil_coefficient=coefficient)
        results[label] = {"rois": every["rois"], "all_precision": every["precision"], **{key: scores[key] for key in COLUMNS[2:]}}
    return int(store.group_attributes("plane_0/rois").get("bin_size", 0)), results


def main(arguments: list[str] | None = None) -> int:
    from distributed import Client

    import bench_scenarios
    from cindra_dask.detection.classify import bundled_classifier_path, load_classifier
    from cindra_dask.scenarios import SCENARIOS
    from cindra_dask.simulate import load_ground_truth

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--caps", nargs="+", type=float, default=[0.0, 0.4], help="roi_detection.maximum_bin_duration values, s (0: no cap)")
    parser.add_argument("--classifier", action="append", default=[], metavar="LABEL=PATH", help="a training set to classify with (repeatable; default: the bundled one)")
    parser.add_argument("--bank", type=Path, default=None, help="CASCADE bank (default: the fetch_cascade.py cache)")
    parser.add_argument("--fresh", action="store_true", help="rerun the pipeline even where a store is kept")
    options = parser.parse_args(arguments)
    paths = dict(item.split("=", 1) for item in options.classifier) or {"bundled": str(bundled_classifier_path())}
    classifiers = {label: load_classifier(path) for label, path in paths.items()}
    bundled = next((label for label, path in paths.items() if Path(path).resolve() == bundled_classifier_path().resolve()), None)
    bank_path = options.bank or bench_scenarios.default_bank_path()
    rows: list[list[Any]] = []
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=":0") as client:
        for name in options.scenarios:
            scenario = SCENARIOS[name]
            if scenario.bank_datasets and not bank_path.exists():
                print(f"[{name}] skipped: CASCADE bank not found at {bank_path}", file=sys.stderr)
                continue
            data = bench_scenarios.ensure_scenario(name, bank_path)
            truth = load_ground_truth(data / "ground_truth.npz")
            for cap_s in options.caps:
                effective = cap_s if 0 < cap_s < scenario.true_tau_s else 0.0
                bin_frames, results = classified_scores(run_store(name, effective, data=data, client=client, fresh=options.fresh), truth, classifiers, bundled=bundled)
                for label, scores in results.items():
                    rows.append([name, f"{cap_s:g}" + ("" if effective == cap_s else " (= none)"), bin_frames, label] + [scores[key] for key in COLUMNS])
                    print(f"[{name}] cap {cap_s:g} {label}: cells {scores['cells']} recall {scores['recall']:.3f} precision {scores['precision']:.3f} F1 {scores['f1']:.3f}", file=sys.stderr, flush=True)
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=common.ROOT, capture_output=True, text=True).stdout.strip()
    body = ["| " + " | ".join(cell if isinstance(cell, str) else common.fmt(cell, 3) for cell in row) + " |" for row in rows]
    text = "\n".join(
        [
            "# Capped detection bins × cell classifiers (issue 24)",
            "",
            "Generated by `benchmarks/accuracy/bench_bin_cap.py`; every preset with the true tau, `roi_detection.maximum_bin_duration` = cap.",
            "",
            "| " + " | ".join(HEADER) + " |",
            "|" + "---|" * len(HEADER),
            *body,
            "",
            f"- cindra-dask at `{described}`, a LocalCluster of 2 workers × 1 thread; classifiers: " + ", ".join(f"{label} = `{path}`" for label, path in paths.items()) + ".",
            "- Detection at IoU ≥ 0.3 (one-to-one) against the active true somata; 'all' = every ROI; trace r / spike r over matched classified cells, as in `results/scenarios.md`.",
            "",
        ]
    )
    RESULT_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULT_PATH.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
