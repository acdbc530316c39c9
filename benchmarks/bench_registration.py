"""Registration (issue 4): cindra-dask vs suite2p 1.1.0 on the same simulated TIFFs, same cores, one run each.

Per case (frame side × frames; default simulator settings, rigid + nonrigid motion):
- wall time of registration: ours = the ``registration/plane_0`` step (reference image, rigid +
  nonrigid offsets, warp, writing the registered movie; PC metrics off as in suite2p's run);
  suite2p = ``plane_times["registration"]``; the ratio ours / suite2p. Ingest (TIFF → Zarr) and
  suite2p's TIFF → binary conversion are reported apart.
- accuracy vs the planted motion: rigid offset RMS and dense (rigid + nonrigid) displacement RMS.
- memory: RSS of every process sampled every 0.5 s during registration (ours: each worker and the
  client/scheduler process; suite2p: its one process) and the workers' lifetime peak
  (``VmHWM``; session 5's table: ``ru_maxrss`` of a cluster started after ingest).

Targets (issue 4): ratio ≤ 0.5; our errors below suite2p's; worker peak ≤ 1 GiB and flat in T.

Usage (repository root)::

    .venv/bin/python benchmarks/bench_registration.py [--size 256 512] [--frames 2000 20000]
        [--cases 256x2000 256x20000 512x2000 512x8000] [--quick] [--reuse]

``--cases`` replaces the size × frames grid; cases of the target grid (256², 512² × 2 000, 20 000)
that were not run are listed under the table. Writes ``benchmarks/results/registration.md``.
"""

from __future__ import annotations

import argparse
import json

from common import add_common_arguments, fmt, measure, settings_from, variant, write_table

TARGET_CASES = [(256, 2000), (256, 20000), (512, 2000), (512, 20000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, frames=[2000, 20000], sizes=[256, 512])
    parser.add_argument("--cases", nargs="+", default=None, help="SIZExFRAMES cases instead of the --size × --frames grid")
    arguments = parser.parse_args()
    settings = settings_from(arguments)
    if arguments.cases and not arguments.quick:
        cases = [tuple(int(part) for part in case.split("x")) for case in arguments.cases]
    else:
        cases = [(size, frames) for size in arguments.size for frames in arguments.frames]
    cases = sorted(cases, key=lambda case: case[0] ** 2 * case[1])
    rows = []
    for size, frames in cases:
        record = measure(variant("default", size, frames), stage="registration", settings=settings)
        ours, theirs = record["cindra"], record["suite2p"]
        ours_s, theirs_s = ours["stages"]["registration"]["s"], theirs["stages"]["registration"]["s"]
        row = {
            "size": size, "frames": frames, "ours_s": ours_s, "suite2p_s": theirs_s, "ratio": ours_s / theirs_s,
            "ours_frames_per_s": frames / ours_s, "suite2p_frames_per_s": frames / theirs_s,
            "ours_ingest_s": ours["stages"]["ingest"]["s"], "suite2p_conversion_s": theirs["stages"].get("ingest", {}).get("s"),
            "ours_rigid_rms_px": ours["scores"]["rigid_rms_px"], "suite2p_rigid_rms_px": theirs["scores"]["rigid_rms_px"],
            "ours_displacement_rms_px": ours["scores"]["displacement_rms_px"], "suite2p_displacement_rms_px": theirs["scores"]["displacement_rms_px"],
            "ours_worker_sampled_mib": ours["stages"]["registration"]["worker_rss_mib"], "ours_worker_lifetime_mib": max(ours["worker_lifetime_peak_mib"]),
            "ours_main_sampled_mib": ours["stages"]["registration"]["main_rss_mib"], "ours_total_sampled_mib": ours["stages"]["registration"]["total_rss_mib"],
            "suite2p_sampled_mib": theirs["stages"]["registration"]["main_rss_mib"], "suite2p_lifetime_mib": theirs["main_lifetime_peak_mib"],
            "ours_cpu_s": ours["stages"]["registration"]["cpu_s"], "suite2p_cpu_s": theirs["stages"]["registration"]["cpu_s"],
            "ours_other_cpu_s": ours["stages"]["registration"]["other_cpu_s"], "suite2p_other_cpu_s": theirs["stages"]["registration"]["other_cpu_s"],
            "suite2p_offset_sign_r": (theirs["scores"]["offset_sign_r_y"], theirs["scores"]["offset_sign_r_x"]), "chunk_frames": ours["chunk_frames"],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    header = ["frame", "frames", "ours registration s", "suite2p registration s", "ratio ours/suite2p", "frames/s ours / suite2p", "CPU s ours / suite2p", "other processes' CPU s meanwhile ours / suite2p", "ingest s ours / suite2p TIFF→binary",
              "rigid RMS px ours / suite2p", "displacement RMS px ours / suite2p", "ours worker RSS MiB: sampled / lifetime peak", "ours client+scheduler MiB", "ours all processes MiB",
              "suite2p RSS MiB: sampled / lifetime peak"]
    table = [[f"{row['size']}²", f"{row['frames']:,}".replace(",", " "), row["ours_s"], row["suite2p_s"], row["ratio"],
              f"{row['ours_frames_per_s']:.0f} / {row['suite2p_frames_per_s']:.0f}", f"{row['ours_cpu_s']:.0f} / {row['suite2p_cpu_s']:.0f}",
              f"{row['ours_other_cpu_s']:.0f} / {row['suite2p_other_cpu_s']:.0f}", f"{fmt(row['ours_ingest_s'], 1)} / {fmt(row['suite2p_conversion_s'], 1)}",
              f"{row['ours_rigid_rms_px']:.3f} / {row['suite2p_rigid_rms_px']:.3f}", f"{row['ours_displacement_rms_px']:.3f} / {row['suite2p_displacement_rms_px']:.3f}",
              f"{row['ours_worker_sampled_mib']:.0f} / {row['ours_worker_lifetime_mib']:.0f}", f"{row['ours_main_sampled_mib']:.0f}", f"{row['ours_total_sampled_mib']:.0f}",
              f"{row['suite2p_sampled_mib']:.0f} / {row['suite2p_lifetime_mib']:.0f}"] for row in rows]
    measured = {(row["size"], row["frames"]) for row in rows}
    missing = [f"{size}² × {frames}" for size, frames in TARGET_CASES if (size, frames) not in measured]
    notes = [
        f"cindra-dask: LocalCluster {settings.workers} workers × {settings.threads} thread; suite2p 1.1.0: CPU torch, {settings.suite2p_threads} threads; run one after the other on the same TIFFs (page cache warmed before each).",
        "Registration = reference image + rigid + nonrigid (128² blocks) + writing the registered movie; PC metrics off in both.",
        "RMS vs the planted motion over good frames, up to a constant (the reference's own position); displacement: 100 frames, 8 px border excluded. suite2p's dense field is rebuilt from its yoff/xoff + block offsets yoff1/xoff1 with our bilinear interpolation on its (identical) block grid.",
        "suite2p offset sign checked numerically: r(yoff, planted dy), r(xoff, planted dx) = "
        + ", ".join(f"{row['size']}²×{row['frames']}: {row['suite2p_offset_sign_r'][0]:.3f}, {row['suite2p_offset_sign_r'][1]:.3f}" for row in rows)
        + " (same convention as ours: frame t shows the reference moved by +dy, +dx).",
        "CPU s: user + system of all the tool's processes during the step (sampled with the RSS); other processes' CPU s = contention from other work on the shared machine (2 cores = 2 CPU s per s).",
        "RSS sampled every 0.5 s during the registration step; lifetime peak = VmHWM of each worker (one cluster runs ingest, then registration).",
    ]
    if missing and not arguments.quick:
        notes.append("Not run (time budget on this 2-core machine): " + ", ".join(missing) + ".")
    text = write_table(arguments.out / "registration.md", "Registration: cindra-dask vs suite2p", header, table, notes)
    print(text)


if __name__ == "__main__":
    main()
