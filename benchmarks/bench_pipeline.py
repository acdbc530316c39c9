"""Full pipeline (issue 7): cindra-dask (ingest → process → combine) vs a full suite2p 1.1.0 run.

Simulated 256² recordings with rigid + nonrigid motion, default noise and many non-cell sources
(``non_cell_count`` = 90; the ``noncell`` variant of ``bench_detection.py``, whose 2 000-frame run
this shares with ``--reuse``), 2 000 and 6 000 frames. Per recording, one run of each tool on
the same TIFFs and cores: wall time and its ratio (ours: the phase calls, excluding the two
LocalCluster starts, listed below; suite2p: ``run_s2p`` including its TIFF → binary conversion),
per-stage times, CPU seconds of every process, peak RSS of all processes together and per
process (sampled every 0.5 s; lifetime peaks from ``VmHWM``, `peak_memory`), and accuracy of both against the
truth (`cindra_dask.evaluate` scorers).

Usage (repository root)::

    .venv/bin/python benchmarks/bench_pipeline.py [--size 256] [--frames 2000 6000] [--quick] [--reuse]

Writes ONE table, ``benchmarks/results/pipeline.md``.
"""

from __future__ import annotations

import argparse
import json

from common import VARIANTS, add_common_arguments, fmt, measure, settings_from, variant, write_table

VARIANT = "noncell"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, frames=[2000, 6000], sizes=[256])
    arguments = parser.parse_args()
    settings = settings_from(arguments)
    table, starts, contention = [], [], []
    for size in arguments.size:
        for frames in arguments.frames:
            record = measure(variant(VARIANT, size, frames), stage="full", settings=settings)
            ours, theirs = record["cindra"], record["suite2p"]
            so, st = ours["scores"], theirs["scores"]
            stage_s = lambda run, names: " / ".join(fmt(run["stages"].get(name, {}).get("s"), 1) for name in names)  # noqa: E731
            row = {"size": size, "frames": frames, "ours_wall_s": ours["wall_s"], "suite2p_wall_s": theirs["wall_s"], "ratio": ours["wall_s"] / theirs["wall_s"],
                   "ours_stages": {name: value["s"] for name, value in ours["stages"].items()}, "suite2p_stages": {name: value["s"] for name, value in theirs["stages"].items()},
                   "ours_cpu_s": ours.get("cpu_s"), "suite2p_cpu_s": theirs.get("cpu_s"), "ours_total_mib": ours["total_rss_mib"], "suite2p_total_mib": theirs["total_rss_mib"],
                   "ours_worker_mib": ours["worker_rss_mib"], "ours_worker_lifetime_mib": max(ours["worker_lifetime_peak_mib"]),
                   "ours_main_mib": ours["main_rss_mib"], "ours_main_lifetime_mib": ours["main_lifetime_peak_mib"], "suite2p_lifetime_mib": theirs["main_lifetime_peak_mib"],
                   "ours_scores": {key: value for key, value in so.items() if key != "per_source"}, "suite2p_scores": {key: value for key, value in st.items() if key != "per_source"}}
            print(json.dumps(row), flush=True)
            starts.append(f"{size}²×{frames}: {ours['cluster_start_s']:.1f} s")
            contention.append(f"{size}²×{frames}: {ours.get('other_cpu_s', float('nan')):.0f} / {theirs.get('other_cpu_s', float('nan')):.0f} s")
            table.append([
                f"{size}² × {frames}", row["ours_wall_s"], row["suite2p_wall_s"], row["ratio"],
                stage_s(ours, ["ingest", "registration", "detection", "extraction", "combine"]), stage_s(theirs, ["ingest", "registration", "detection", "extraction"]),
                f"{fmt(row['ours_cpu_s'], 0)} / {fmt(row['suite2p_cpu_s'], 0)}",
                f"{row['ours_total_mib']:.0f} / {row['suite2p_total_mib']:.0f}",
                f"{row['ours_worker_mib']:.0f} ({row['ours_worker_lifetime_mib']:.0f}) / {row['ours_main_mib']:.0f} ({row['ours_main_lifetime_mib']:.0f})",
                f"{row['suite2p_lifetime_mib']:.0f}",
                f"{so['rigid_rms_px']:.3f} / {st['rigid_rms_px']:.3f}", f"{so['displacement_rms_px']:.3f} / {st['displacement_rms_px']:.3f}",
                f"{so['f1']:.3f} / {st['f1']:.3f}", f"{so['precision']:.2f}, {so['recall']:.2f} / {st['precision']:.2f}, {st['recall']:.2f}",
                f"{so['trace_r']:.3f} / {st['trace_r']:.3f}", f"{so['spike_r']:.3f} / {st['spike_r']:.3f}",
            ])
    header = ["recording", "ours wall s", "suite2p wall s", "ratio ours/suite2p", "ours s: ingest / registration / detection / extraction / combine",
              "suite2p s: TIFF→binary / registration / detection / extraction+deconv+classif", "CPU s ours / suite2p", "peak RSS all processes MiB ours / suite2p",
              "ours peak MiB: worker (lifetime) / client+scheduler (lifetime)", "suite2p lifetime peak MiB", "rigid RMS px ours / suite2p", "displacement RMS px ours / suite2p",
              "F1 ours / suite2p", "P, R ours / suite2p", "trace r ours / suite2p", "spike r ours / suite2p"]
    notes = [f"Dataset: {VARIANTS[VARIANT][0]}, 120 somata, default noise, rigid (≤ 4 px) + nonrigid (≤ 1.5 px) motion, tau 1 s, 30 Hz.",
             f"cindra-dask: LocalCluster {settings.workers} workers × {settings.threads} thread (one cluster for the whole run, as `cindra-dask run`; its start is not in the wall time: "
             + "; ".join(starts) + "); suite2p 1.1.0: CPU torch, " + f"{settings.suite2p_threads} threads, nonrigid, no PC metrics (ours off too).",
             "Imports: each tool's stage modules are imported before its timer (suite2p: `import suite2p`; ours: the client's imports; our workers still import theirs inside the run).",
             "Peak RSS: largest sum over the process tree, sampled every 0.5 s; lifetime = VmHWM of each process (ru_maxrss would include the benchmark parent's size at fork). Ours' client+scheduler process also hosts the nannies.",
             "Accuracy: rigid/displacement RMS vs planted motion; F1 of cell-classified ROIs vs active true somata (IoU ≥ 0.3); median r of matched cells.",
             "CPU s used meanwhile by other processes on the machine (contention), ours / suite2p: " + "; ".join(contention) + "."]
    print(write_table(arguments.out / "pipeline.md", "Full pipeline: cindra-dask vs suite2p", header, table, notes))


if __name__ == "__main__":
    main()
