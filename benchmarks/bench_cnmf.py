"""CNMF side by side: cindra-dask (``source_extraction.method: cnmf``) and CaImAn built from source, on the
same simulated two-photon TIFFs, same cores, one run.

Each tool runs as the user runs it, as one process tree sampled from outside (`common.run_sampled`):
``cindra-dask run`` with a YAML file (a LocalCluster of 2 single-threaded workers), CaImAn's demo
pipeline (`run_caiman.py`, a multiprocessing pool of 2). Both get the true decay time, the cell radius
as ``gSig`` and the same patches (``rf``, ``stride``, ``K``). Scores against the planted truth, active
somata only, IoU ≥ 0.3 on footprint masks (pixels above 10 % of the footprint's maximum for both):
recall, precision, F1 of the accepted components (CaImAn's evaluation, ours the same rules), median
trace r (C vs the planted calcium) and spike r (S vs the planted spikes, both smoothed σ = 2 frames)
of the matched ones; ours also as classified cells (the cells of ``extraction/cell_classification``, which
the evaluation labels, traces F − c·Fneu). Writes ``results/cnmf.md`` and ``results/cnmf.json``.

Usage::

    bash benchmarks/setup_caiman.sh <CaImAn checkout>   # once
    .venv/bin/python benchmarks/bench_cnmf.py [--scenarios default strong_neuropil] [--processes 2] [--without-caiman]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csc_matrix

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
import common  # noqa: E402

CAIMAN_PYTHON = BENCHMARKS / ".caiman-venv" / "bin" / "python"
SCRATCH = common.SCRATCH / "cnmf"
FOOTPRINT_THRESHOLD = 0.1
BANK_PATH = Path.home() / ".cache" / "cindra-dask" / "cascade" / "cascade_bank.npz"
"""The CASCADE activity bank the real-dynamics presets plant (`accuracy/fetch_cascade.py` builds it)."""


def _masks_from_caiman(result: Any) -> tuple[Any, np.ndarray]:
    """RaggedRois of CaImAn's footprints (Fortran pixel order y + x·H) above 10 % of their maximum, and the (K,) accepted flags."""
    from cindra_dask.rois import RaggedRois

    height, width = (int(value) for value in result["dims"])
    footprints = csc_matrix((result["A_data"], result["A_indices"], result["A_indptr"]), shape=tuple(result["A_shape"]))
    masks = []
    for column in range(footprints.shape[1]):
        start, stop = footprints.indptr[column], footprints.indptr[column + 1]
        pixels, values = footprints.indices[start:stop], footprints.data[start:stop]
        kept = values > FOOTPRINT_THRESHOLD * values.max() if values.size else np.zeros(0, bool)
        xs, ys = np.divmod(pixels[kept], height)
        masks.append((ys.astype(np.int32), xs.astype(np.int32), values[kept].astype(np.float32)))
    return RaggedRois.from_masks(masks), result["accepted"].astype(bool)


def component_scores(rois: Any, accepted: np.ndarray, calcium: np.ndarray, spikes: np.ndarray, truth: Any) -> dict[str, Any]:
    """Recall, precision, F1 of the accepted components vs active somata; median trace and spike r of the matched ones."""
    from cindra_dask.evaluate import match_rois, row_correlations, smoothed_spike_correlations

    sources = np.flatnonzero((truth.plane_index == 0) & truth.is_cell & truth.active)
    chosen = np.flatnonzero(accepted)
    matching = match_rois(rois.select(chosen), truth.rois().select(sources), frame_shape=truth.illumination.shape)
    detected, true_sources = chosen[matching.detected_index], sources[matching.true_index]
    trace_r = row_correlations(calcium[detected], truth.calcium[true_sources]) if len(detected) else np.zeros(0)
    spike_r = smoothed_spike_correlations(spikes[detected], truth.spikes[true_sources]) if len(detected) else np.zeros(0)
    median = lambda values: float(np.nanmedian(values)) if len(values) else float("nan")  # noqa: E731
    return {"components": int(len(accepted)), "accepted": int(len(chosen)), "recall": matching.recall, "precision": matching.precision, "f1": matching.f1,
            "trace_r": median(trace_r), "spike_r": median(spike_r)}


def stored_component_scores(store: Any, truth: Any, *, tau_s: float, frame_rate_hz: float) -> dict[str, Any]:
    """`component_scores` of a store's CNMF components: footprints above `FOOTPRINT_THRESHOLD` of their maximum, OASIS on ``cnmf/temporal``."""
    from cindra_dask.extraction.oasis import deconvolve_oasis
    from cindra_dask.rois import RaggedRois

    components = store.read_rois("plane_0/cnmf")
    thresholded = []
    for index in range(components.count):
        ypix, xpix, lam = components.roi(index)
        kept = lam > FOOTPRINT_THRESHOLD * lam.max() if lam.size else np.zeros(0, bool)
        thresholded.append((ypix[kept], xpix[kept], lam[kept]))
    temporal = store.read("plane_0/cnmf/temporal")
    spikes = deconvolve_oasis(temporal, tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0).spikes
    return component_scores(RaggedRois.from_masks(thresholded), store.read("plane_0/cnmf/accepted"), temporal, spikes, truth)


def run_ours(data: Path, out: Path, *, tau_s: float, cnmf: dict[str, Any], log_dir: Path, sections: dict[str, Any] | None = None) -> dict[str, Any]:
    """``cindra-dask run`` on a YAML file (``cnmf`` into ``source_extraction``, ``method`` cnmf unless it says; ``sections`` added), sampled."""
    import shutil

    import yaml

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    configuration = {"file_io": {"data_path": str(data), "output_path": str(out)}, "main": {"tau": tau_s}, "source_extraction": {"method": "cnmf", **cnmf},
                     "registration": {"registration_metric_principal_components": 0}, "runtime": {"display_progress_bars": False},
                     "cluster": {"workers": 2, "threads_per_worker": 1, "dashboard_address": ":0"}, **(sections or {})}
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(configuration))
    common.ensure_compiled()
    common.warm_page_cache(data)
    started = time.time()
    sampler, cpu_s, other_cpu_s = common.run_sampled([common.PROJECT_PYTHON, "-m", "cindra_dask.cli", "run", path], log_path=log_dir / f"{out.name}-cindra.log")
    return {"wall_s": time.time() - started, "peak_rss_mib": sampler.peak(total=True), "cpu_s": cpu_s, "other_cpu_s": other_cpu_s, "store": str(next(out.glob("*.zarr")))}


def run_caiman(data: Path, out: Path, *, tau_s: float, frame_rate_hz: float, cnmf: dict[str, Any], processes: int, log_dir: Path) -> dict[str, Any]:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    common.warm_page_cache(data)
    started = time.time()
    command = [CAIMAN_PYTHON, BENCHMARKS / "run_caiman.py", data, out, "--fs", frame_rate_hz, "--tau", tau_s, "--gsig", cnmf["gSig"][0], "--rf", cnmf["rf"], "--stride", cnmf["stride"],
               "--k", cnmf["K"], "--processes", processes]
    sampler, cpu_s, other_cpu_s = common.run_sampled(command, log_path=log_dir / f"{out.name}-caiman.log", cwd=BENCHMARKS, env={"PYTHONPATH": str(BENCHMARKS)})
    return {"wall_s": time.time() - started, "peak_rss_mib": sampler.peak(total=True), "cpu_s": cpu_s, "other_cpu_s": other_cpu_s, "result": str(out / "caiman_result.npz")}


def measure(name: str, *, processes: int, with_caiman: bool) -> dict[str, Any]:
    from cindra_dask.scenarios import SCENARIOS, scenario_parameters, write_scenario
    from cindra_dask.simulate import load_ground_truth
    from cindra_dask.store import RecordingStore

    data = SCRATCH / "data" / name
    if not (data / "ground_truth.npz").exists():
        write_scenario(name, data, bank_path=BANK_PATH)
    truth = load_ground_truth(data / "ground_truth.npz")
    parameters = scenario_parameters(name, activity_bank_path=BANK_PATH)
    scenario = SCENARIOS[name]
    radius = round(parameters.cell_diameter_px / 2)
    cnmf = {"gSig": [radius, radius], "rf": 4 * radius, "stride": 2 * radius, "K": 6}
    log_dir = SCRATCH / "logs"
    ours = run_ours(data, SCRATCH / "runs" / f"{name}-cindra", tau_s=scenario.true_tau_s, cnmf=cnmf, log_dir=log_dir)
    store = RecordingStore(ours["store"])
    from cindra_dask.evaluate import score_recording

    ours["components"] = stored_component_scores(store, truth, tau_s=scenario.true_tau_s, frame_rate_hz=parameters.plane_frame_rate_hz)
    ours["classified"] = score_recording(store.path, truth)._asdict()
    if not with_caiman:
        return {"scenario": name, "cnmf": cnmf, "cindra": ours, "caiman": None}
    peer = run_caiman(data, SCRATCH / "runs" / f"{name}-caiman", tau_s=scenario.true_tau_s, frame_rate_hz=parameters.plane_frame_rate_hz, cnmf=cnmf, processes=processes, log_dir=log_dir)
    with np.load(peer["result"]) as result:
        rois, accepted = _masks_from_caiman(result)
        peer["components"] = component_scores(rois, accepted, result["C"], result["S"], truth)
    return {"scenario": name, "cnmf": cnmf, "cindra": ours, "caiman": peer}


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["default", "strong_neuropil"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--without-caiman", action="store_true", help="run and score ours only")
    options = parser.parse_args(arguments)
    if not options.without_caiman and not CAIMAN_PYTHON.exists():
        print(f"CaImAn is not installed: run bash benchmarks/setup_caiman.sh <CaImAn checkout> (missing {CAIMAN_PYTHON})", file=sys.stderr)
        return 2
    records = [measure(name, processes=options.processes, with_caiman=not options.without_caiman) for name in options.scenarios]
    results = BENCHMARKS / "results"
    results.mkdir(exist_ok=True)
    (results / "cnmf.json").write_text(json.dumps({"machine": common.machine(), "code": common.code_version(), "records": records}, indent=1, default=float))
    rows = []
    for record in records:
        ours, peer = record["cindra"], record["caiman"]
        runs = [("cindra-dask cnmf, accepted components", ours["components"], ours)]
        if peer is not None:
            runs.insert(0, ("CaImAn 1.12.1 (built from source)", peer["components"], peer))
        for label, scores, run in runs:
            rows.append([record["scenario"], label, scores["accepted"], common.fmt(scores["recall"], 3), common.fmt(scores["precision"], 3), common.fmt(scores["f1"], 3),
                         common.fmt(scores["trace_r"], 3), common.fmt(scores["spike_r"], 3), common.fmt(run["wall_s"], 1), common.fmt(run["peak_rss_mib"], 0)])
        classified = ours["classified"]
        rows.append([record["scenario"], "cindra-dask cnmf, classified cells (F − c·Fneu)", "—", common.fmt(classified["detection_recall"], 3), common.fmt(classified["detection_precision"], 3),
                     common.fmt(classified["detection_f1"], 3), common.fmt(classified["trace_correlation"], 3), common.fmt(classified["spike_correlation"], 3), "", ""])
        if peer is not None:
            rows.append([record["scenario"], "wall-time ratio cindra-dask / CaImAn", "", "", "", "", "", "", common.fmt(ours["wall_s"] / peer["wall_s"], 2), common.fmt(ours["peak_rss_mib"] / peer["peak_rss_mib"], 2)])
    common.write_table(results / "cnmf.md", "CNMF: cindra-dask vs CaImAn on the same simulated two-photon TIFFs",
                       ["scenario", "run", "accepted", "recall", "precision", "F1", "trace r", "spike r", "wall s", "peak RSS MiB (all processes)"], rows,
                       notes=["patches: rf = 4·gSig, stride = 2·gSig, K = 6 per patch, gSig = the planted cell radius; the true decay time to both; 2 single-threaded workers (ours) and a pool of 2 processes (CaImAn), one run, same machine",
                              "spike r of our accepted components: OASIS (AR(1), the true tau) on their refitted activity C; CaImAn: its S (constrained foopsi, p = 1)"])
    print((results / "cnmf.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
