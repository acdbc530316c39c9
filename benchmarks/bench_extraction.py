"""Extraction + deconvolution (issue 6): cindra-dask vs suite2p 1.1.0 — wall time, peak memory, trace and spike accuracy.

One full run of each tool per dataset (the same runs as ``bench_detection.py``; ``--reuse``
takes them from the cache). Stage: ours = the ``extraction/plane_0`` step (cell and neuropil
masks, traces, skewness, classification, maximin baseline, OASIS); suite2p = ``plane_times``
extraction + deconvolution + classification (the same work). Memory: RSS sampled every 0.5 s
during the step.

Accuracy, over each tool's cells matched to active true somata (IoU ≥ 0.3): median Pearson r of
F − c·Fneu vs the true calcium (ours: each ROI's estimated c, as stored; suite2p: 0.7), and of the inferred spikes vs the true spikes (both smoothed,
σ = 2 frames); also over the true somata that *both* tools matched (same cells for both).

Usage (repository root)::

    .venv/bin/python benchmarks/bench_extraction.py [--size 256] [--frames 2000] [--variants default] [--quick] [--reuse]

Writes ``benchmarks/results/extraction.md``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from common import VARIANTS, add_common_arguments, measure, settings_from, stage_comparison, stage_comparison_cells, variant, write_table


def common_medians(first: dict, second: dict) -> tuple[int, float, float, float, float]:
    """(n, trace r first, trace r second, spike r first, spike r second) medians over true sources both matched."""
    index_first = {source: position for position, source in enumerate(first["true_index"])}
    index_second = {source: position for position, source in enumerate(second["true_index"])}
    shared = sorted(set(index_first) & set(index_second))
    if not shared:
        return 0, float("nan"), float("nan"), float("nan"), float("nan")
    pick = lambda per_source, index, key: np.nanmedian([per_source[key][index[source]] for source in shared])  # noqa: E731
    return (len(shared), float(pick(first, index_first, "trace_r")), float(pick(second, index_second, "trace_r")),
            float(pick(first, index_first, "spike_r")), float(pick(second, index_second, "spike_r")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, frames=[2000], sizes=[256])
    parser.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    arguments = parser.parse_args()
    settings = settings_from(arguments)
    table = []
    for size in arguments.size:
        for frames in arguments.frames:
            for name in arguments.variants:
                record = measure(variant(name, size, frames), stage="full", settings=settings)
                ours, theirs = record["cindra"], record["suite2p"]
                split = theirs["plane_times"]
                shared = common_medians(ours["scores"]["per_source"], theirs["scores"]["per_source"])
                row = {"variant": name, "size": size, "frames": frames, **stage_comparison(record, "extraction"),
                       "suite2p_split_s": {key: split.get(key) for key in ("extraction", "deconvolution", "classification")},
                       "ours_trace_r": ours["scores"]["trace_r"], "suite2p_trace_r": theirs["scores"]["trace_r"], "ours_spike_r": ours["scores"]["spike_r"], "suite2p_spike_r": theirs["scores"]["spike_r"],
                       "ours_matched": ours["scores"]["matched"], "suite2p_matched": theirs["scores"]["matched"], "shared": shared}
                print(json.dumps(row), flush=True)
                cells = stage_comparison_cells(row)
                table.append([VARIANTS[name][0], f"{size}² × {frames}", row["ours_s"], row["suite2p_s"], row["ratio"], cells["cpu"], cells["other_cpu"],
                              " + ".join(f"{value:.2f}" for value in row["suite2p_split_s"].values() if value is not None), cells["ours_mib"], cells["suite2p_mib"],
                              f"{row['ours_trace_r']:.3f} / {row['suite2p_trace_r']:.3f} ({row['ours_matched']} / {row['suite2p_matched']})",
                              f"{row['ours_spike_r']:.3f} / {row['suite2p_spike_r']:.3f}",
                              f"{shared[1]:.3f} / {shared[2]:.3f}, {shared[3]:.3f} / {shared[4]:.3f} ({shared[0]})"])
    header = ["dataset", "frames", "ours extraction s", "suite2p extraction s", "ratio ours/suite2p", "CPU s ours / suite2p", "other processes' CPU s ours / suite2p", "suite2p split s (extraction + deconvolution + classification)",
              "ours RSS MiB: worker / client+scheduler / all", "suite2p RSS MiB", "trace r ours / suite2p (cells matched)", "spike r ours / suite2p",
              "on somata both matched: trace r ours / suite2p, spike r ours / suite2p (n)"]
    notes = [f"One full run per tool and dataset; cindra-dask: LocalCluster {settings.workers} workers × {settings.threads} thread; suite2p: CPU torch, {settings.suite2p_threads} threads.",
             "Ours: masks, traces, skewness, classification, baseline, OASIS in one step; suite2p's three plane_times summed for the same work.",
             "CPU s: user + system of the tool's processes during the step; other processes' CPU s: contention from other work on the shared machine.",
             "RSS: largest sample (every 0.5 s) during the step. r: medians; traces F − c·Fneu vs true calcium (c: ours per ROI as estimated, suite2p 0.7), spikes smoothed σ = 2 frames vs true spikes."]
    print(write_table(arguments.out / "extraction.md", "Extraction + deconvolution: cindra-dask vs suite2p", header, table, notes))


if __name__ == "__main__":
    main()
