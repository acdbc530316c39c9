"""Detection (issue 5): cindra-dask vs suite2p 1.1.0 — wall time, peak memory and F1 vs active true somata.

One full run of each tool per dataset (the same runs as ``bench_extraction.py`` and, for the
``noncell`` dataset, ``bench_pipeline.py``; ``--reuse`` takes them from the cache). Datasets
(simulator defaults otherwise, rigid + nonrigid motion):

- ``default``: the simulator's defaults (120 somata, 30 non-cell sources per 256²);
- ``noisy``: doubled noise: ``baseline_photons`` and ``neuropil_photons`` halved (30, 15);
- ``noncell``: many non-cell (dendrite-like, irregular) sources: ``non_cell_count`` = 90.

Detection time: ours = the ``detection/plane_0`` step (binning, summary images, sparse detection,
ROI statistics); suite2p = ``plane_times["detection"]`` (binning, sparsery, ROI statistics; its
classifier runs after extraction). Memory: RSS sampled every 0.5 s during the step. F1: ROIs
classified as cells (ours: ``cell_classification``; suite2p: ``iscell``) vs active true somata,
Hungarian matching at IoU ≥ 0.3 (`cindra_dask.evaluate.match_rois`).

Usage (repository root)::

    .venv/bin/python benchmarks/bench_detection.py [--size 256] [--frames 2000] [--variants default noisy noncell] [--quick] [--reuse]

Writes ``benchmarks/results/detection.md``.
"""

from __future__ import annotations

import argparse
import json

from common import VARIANTS, add_common_arguments, measure, settings_from, stage_comparison, stage_comparison_cells, variant, write_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, frames=[2000], sizes=[256])
    parser.add_argument("--variants", nargs="+", default=["default", "noisy", "noncell"], choices=sorted(VARIANTS))
    arguments = parser.parse_args()
    settings = settings_from(arguments)
    rows, table = [], []
    for size in arguments.size:
        for frames in arguments.frames:
            for name in arguments.variants:
                record = measure(variant(name, size, frames), stage="full", settings=settings)
                ours, theirs = record["cindra"], record["suite2p"]
                row = {"variant": name, "size": size, "frames": frames, **stage_comparison(record, "detection"),
                       "ours": {key: ours["scores"][key] for key in ("rois", "cells", "true_cells", "precision", "recall", "f1")},
                       "suite2p": {key: theirs["scores"][key] for key in ("rois", "cells", "true_cells", "precision", "recall", "f1")}}
                print(json.dumps(row), flush=True)
                rows.append(row)
                cells = stage_comparison_cells(row)
                table.append([VARIANTS[name][0], f"{size}² × {frames}", row["ours_s"], row["suite2p_s"], row["ratio"], cells["cpu"], cells["other_cpu"], cells["ours_mib"], cells["suite2p_mib"],
                              f"{row['ours']['f1']:.3f} ({row['ours']['precision']:.2f} / {row['ours']['recall']:.2f})",
                              f"{row['suite2p']['f1']:.3f} ({row['suite2p']['precision']:.2f} / {row['suite2p']['recall']:.2f})",
                              f"{row['ours']['rois']} / {row['ours']['cells']}", f"{row['suite2p']['rois']} / {row['suite2p']['cells']}", row["ours"]["true_cells"]])
    header = ["dataset", "frames", "ours detection s", "suite2p detection s", "ratio ours/suite2p", "CPU s ours / suite2p", "other processes' CPU s ours / suite2p", "ours RSS MiB: worker / client+scheduler / all", "suite2p RSS MiB",
              "F1 ours (P / R)", "F1 suite2p (P / R)", "ROIs / cells ours", "ROIs / cells suite2p", "active true somata"]
    notes = [f"One full run per tool and dataset; cindra-dask: LocalCluster {settings.workers} workers × {settings.threads} thread (detection itself is one task); suite2p: CPU torch, {settings.suite2p_threads} threads.",
             "RSS: largest sample (every 0.5 s) during the detection step; suite2p is one process. CPU s: user + system of the tool's processes during the step; other processes' CPU s: contention from other work on the shared machine.",
             "F1: ROIs classified as cells vs active true somata, IoU ≥ 0.3; each tool's own classifier (ours: bundled cindra classifier; suite2p: its built-in classifier)."]
    print(write_table(arguments.out / "detection.md", "Detection: cindra-dask vs suite2p", header, table, notes))


if __name__ == "__main__":
    main()
