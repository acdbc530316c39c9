"""CNMF-E on simulated one-photon recordings: cindra-dask (``source_extraction.method: cnmf_e``) at the
sizes the issue asks for, scored against the planted truth as `bench_cnmf` scores CNMF.

The recording is `cindra_dask.simulate.one_photon_parameters` (glow ≈ 20× a spike's dF, blurred
footprints, 8-bit frames) at ``--size``² × ``--frames``; ``cindra-dask run`` (a LocalCluster of 2
single-threaded workers) with one-photon registration, sampled from outside. Scores: recall,
precision, F1 @ IoU 0.3 of the accepted components vs the active somata, median trace r (C vs the
planted calcium) and spike r (OASIS of C, true tau, vs the planted spikes, σ = 2 frames) of the
matched ones, wall time and peak RSS of the process tree. CaImAn's CNMF-E is not run here (see the
README's CNMF section). Writes ``results/cnmf_e.md`` and ``results/cnmf_e.json``.

Usage::

    .venv/bin/python benchmarks/bench_cnmf_e.py [--size 256] [--frames 2000] [--cells 120]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
import common  # noqa: E402
from bench_cnmf import run_ours, stored_component_scores  # noqa: E402

SCRATCH = common.SCRATCH / "cnmf_e"
CNMF_E = {"method": "cnmf_e", "gSig": [2.5, 2.5], "gSiz": [11, 11], "rf": 24, "stride": 12, "K": 10, "min_corr": 0.8, "min_pnr": 8}
"""The extraction parameters: gSig a quarter of the 10 px cell diameter, gSiz ≈ the diameter, patches of 48 px."""
SECTIONS = {"one_photon_registration": {"enabled": True}, "nonrigid_registration": {"enabled": False}}


def measure(*, size: int, frames: int, cells: int) -> dict[str, Any]:
    from cindra_dask.simulate import load_ground_truth, one_photon_parameters, write_recording
    from cindra_dask.store import RecordingStore

    parameters = one_photon_parameters(frame_height=size, frame_width=size, frame_count=frames, cell_count=cells, seed=7)
    data = SCRATCH / "data" / f"{size}x{frames}"
    if not (data / "ground_truth.npz").exists():
        write_recording(parameters, data)
    truth = load_ground_truth(data / "ground_truth.npz")
    ours = run_ours(data, SCRATCH / "runs" / f"{size}x{frames}", tau_s=parameters.tau_s, cnmf=CNMF_E, log_dir=SCRATCH / "logs", sections=SECTIONS)
    store = RecordingStore(ours["store"])
    ours["components"] = stored_component_scores(store, truth, tau_s=parameters.tau_s, frame_rate_hz=parameters.plane_frame_rate_hz)
    ours["step_s"] = {name: record.duration_s for name, record in store.phase_records().items()}
    return {"size": size, "frames": frames, "cells": cells, "cnmf_e": CNMF_E, "cindra": ours}


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=120)
    options = parser.parse_args(arguments)
    record = measure(size=options.size, frames=options.frames, cells=options.cells)
    results = BENCHMARKS / "results"
    results.mkdir(exist_ok=True)
    (results / "cnmf_e.json").write_text(json.dumps({"machine": common.machine(), "code": common.code_version(), "records": [record]}, indent=1, default=str))
    scores, run = record["cindra"]["components"], record["cindra"]
    rows = [[f"{record['size']}² × {record['frames']}", scores["accepted"], common.fmt(scores["recall"], 3), common.fmt(scores["precision"], 3), common.fmt(scores["f1"], 3),
             common.fmt(scores["trace_r"], 3), common.fmt(scores["spike_r"], 3), common.fmt(run["wall_s"], 1), common.fmt(run["peak_rss_mib"], 0)]]
    common.write_table(results / "cnmf_e.md", "CNMF-E: cindra-dask on a simulated one-photon recording",
                       ["recording", "accepted", "recall", "precision", "F1", "trace r", "spike r", "wall s", "peak RSS MiB (all processes)"], rows,
                       notes=[f"source_extraction: {json.dumps(CNMF_E)}; one-photon registration; 2 single-threaded workers; one run"])
    print((results / "cnmf_e.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
