"""Does ``spike_deconvolution.minimum_spike_size`` (ours: 2 noise SD; cindra: none, i.e. 0) earn its
default on real dynamics?  Issue 24, item 5.

(a) Real traces. Every recording of the CASCADE bank (``fetch_cascade.py``) is resampled to 30 Hz
    and to 7.5 Hz (`cindra_dask.simulate.bank`, box average) and cut into 100 s segments; each
    segment's dF/F goes through the pipeline's own kernels as ``extraction/graph.py`` runs them:
    `subtract_baseline` (the configuration's default maximin baseline) then `deconvolve_oasis`
    with the indicator's tau (``TAU_S``) and ``minimum_spike_noise_multiple`` 0, 1, 2. Scored with
    `smoothed_spike_correlations` (σ = 2 frames) against the ephys spikes counted per frame.
    Once as recorded ("as is") and once with white Gaussian noise of twice each segment's own
    `difference_noise` added ("noisy", seeded), a dimmer recording of the same cells; then the
    overall medians again with OASIS given a tau 30 % too short and too long.
(b) Whole pipeline. Per indicator in ``PIPELINE_CASES`` (GCaMP6f: DS06 + DS27, tau 0.7 s;
    GCaMP6s: DS13–DS15, tau 1.7 s) a 128² × 1 500-frame, 30 Hz recording simulated with that
    bank's real dynamics planted (``activity_bank_path``) is processed once with the defaults and
    the indicator's ``main.tau``; the stored F and F_neu of the detected cells matched to true
    somata are then put through the same kernels for every (neuropil coefficient: estimated /
    fixed 0.7) × (minimum_spike_size 0, 1, 2), and scored against the planted spikes and dF/F.
    The stored spikes reproduce the (estimated, 2) cell: checked.

(c) Spike timing: per indicator, the best lag of the inferred spikes and the spike r with the
    indicator's ``rise_time`` (`bench_spike_timing.indicator_summary`; its report is
    ``results/spike_timing.md``).

Writes ``benchmarks/accuracy/results/spike_defaults.md``. About two minutes on two cores.

    python benchmarks/accuracy/bench_spike_defaults.py [--bank PATH] [--skip-pipeline]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from cindra_dask.config import SpikeDeconvolutionSettings
from cindra_dask.evaluate import row_correlations, smoothed_spike_correlations
from cindra_dask.extraction.baseline import estimate_neuropil_coefficients, subtract_baseline, subtract_neuropil
from cindra_dask.extraction.oasis import deconvolve_oasis, difference_noise
from cindra_dask.simulate.bank import load_activity_bank, write_bank_subset

HERE = Path(__file__).resolve().parent
RESULT_PATH = HERE / "results" / "spike_defaults.md"
MINIMUM_SPIKE_SIZES = (0.0, 1.0, 2.0)
FRAME_RATES_HZ = (30.0, 7.5)
SEGMENT_S = 100.0
NOISE_MULTIPLE = 2.0
SEED = 24

# Decay time constant per indicator, s (single-exponential fits to in vivo transients: Chen et al.
# 2013 (GCaMP6), Dana et al. 2019 (jGCaMP7), Zhang et al. 2023 (jGCaMP8), Kerr et al. 2005 (OGB-1);
# round figures, as a user would set main.tau)
TAU_S = {"OGB1": 1.0, "GCaMP6f": 0.7, "GCaMP6s": 1.7, "GCaMP7f": 0.6, "GCaMP8f": 0.3, "GCaMP8m": 0.4, "GCaMP8s": 0.8}

# (b): (indicator, bank datasets planted, main.tau s)
PIPELINE_CASES = (
    ("GCaMP6f", ("DS06-GCaMP6f-zf-aDp", "DS27-GCaMP6f-m-PV-vivo-V1"), 0.7),
    ("GCaMP6s", ("DS13-GCaMP6s-m-V1-neuropil-corrected", "DS14-GCaMP6s-m-V1", "DS15-GCaMP6s-m-V1"), 1.7),
)


def default_bank_path() -> Path:
    sys.path.insert(0, str(HERE))
    from fetch_cascade import BANK_FILE_NAME, cache_directory

    return cache_directory() / BANK_FILE_NAME


def spike_scores(traces: np.ndarray, truth: np.ndarray, *, tau_s: float, frame_rate_hz: float, minimum_spike_size: float) -> np.ndarray:
    """(k,) smoothed spike r of the default baseline + OASIS on (k, T) traces against (k, T) true counts."""
    settings = SpikeDeconvolutionSettings()
    subtracted = subtract_baseline(
        traces,
        baseline_method=settings.baseline_method.value,
        baseline_window_s=settings.baseline_window,
        baseline_sigma_frames=settings.baseline_sigma,
        baseline_percentile=settings.baseline_percentile,
        frame_rate_hz=frame_rate_hz,
    )
    spikes = deconvolve_oasis(subtracted, tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=minimum_spike_size).spikes
    return smoothed_spike_correlations(spikes, truth)


def real_trace_table(bank_path: Path, *, tau_scale: float = 1.0) -> list[str]:
    """Markdown rows of (a): per dataset, rate and noise condition, median r for each minimum size
    (OASIS given ``tau_scale`` × the indicator's tau)."""
    rng = np.random.default_rng(SEED)
    lines = [
        "| dataset | indicator (tau s) | fs Hz | segments | noise | r, min 0 | r, min 1 | r, min 2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for frame_rate_hz in FRAME_RATES_HZ:
        bank = load_activity_bank(bank_path, frame_rate_hz=frame_rate_hz, segment_frames=int(round(SEGMENT_S * frame_rate_hz)))
        noisy = bank.dff + NOISE_MULTIPLE * difference_noise(bank.dff)[:, None] * rng.standard_normal(bank.dff.shape).astype(np.float32)
        for condition, traces in (("as is", bank.dff), ("noisy", noisy)):
            scores = np.full((len(MINIMUM_SPIKE_SIZES), len(bank.dff)), np.nan)
            for dataset in np.unique(bank.dataset):
                rows = np.flatnonzero(bank.dataset == dataset)
                indicator = str(bank.indicator[rows[0]])
                for position, size in enumerate(MINIMUM_SPIKE_SIZES):
                    scores[position, rows] = spike_scores(traces[rows], bank.spikes[rows], tau_s=tau_scale * TAU_S[indicator], frame_rate_hz=frame_rate_hz, minimum_spike_size=size)
                medians = " | ".join(f"{np.nanmedian(scores[position, rows]):.3f}" for position in range(len(MINIMUM_SPIKE_SIZES)))
                lines.append(f"| {dataset} | {indicator} ({TAU_S[indicator]}) | {frame_rate_hz:g} | {len(rows)} | {condition} | {medians} |")
            dataset_medians = [[np.nanmedian(scores[position, bank.dataset == dataset]) for dataset in np.unique(bank.dataset)] for position in range(len(MINIMUM_SPIKE_SIZES))]
            lines.append(
                f"| **all segments** | | {frame_rate_hz:g} | {len(bank.dff)} | {condition} | "
                + " | ".join(f"**{np.nanmedian(scores[position]):.3f}**" for position in range(len(MINIMUM_SPIKE_SIZES)))
                + " |"
            )
            lines.append(
                f"| median of dataset medians | | {frame_rate_hz:g} | | {condition} | " + " | ".join(f"{np.median(values):.3f}" for values in dataset_medians) + " |"
            )
    return lines


def pipeline_table(bank_path: Path, work: Path, *, indicator: str, datasets: tuple[str, ...], tau_s: float) -> list[str]:
    """Markdown rows of (b): one simulated recording with real dynamics of ``datasets`` through the pipeline."""
    from distributed import Client

    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.evaluate import match_rois, score_recording
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.simulate import SimulationParameters, write_recording
    from cindra_dask.store import RecordingStore

    subset = write_bank_subset(bank_path, datasets, work / f"{indicator}_bank.npz")
    parameters = SimulationParameters(
        frame_height=128, frame_width=128, frame_count=1500, cell_count=40, non_cell_count=5, tau_s=tau_s, file_count=2, seed=SEED, activity_bank_path=str(subset)
    )
    data = write_recording(parameters, work / "data")
    from cindra_dask.simulate import load_ground_truth

    truth = load_ground_truth(data / "ground_truth.npz")
    configuration = configuration_from_mapping(
        {
            "runtime": {"display_progress_bars": False},
            "file_io": {"data_path": str(data), "output_path": str(work / "output")},
            "main": {"tau": tau_s},
        },
        source="bench_spike_defaults",
    )
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        run_single_recording(configuration, client=client)
    store_path = next((work / "output").glob("*.zarr"))
    store = RecordingStore(store_path)
    scores = score_recording(store_path, truth)
    rois = store.read_rois("plane_0/rois")
    cells = np.flatnonzero(store.read("plane_0/extraction/cell_classification")[:, 0] == 1)
    sources = np.flatnonzero(truth.is_cell & truth.active)
    matching = match_rois(rois.select(cells), truth.rois().select(sources), frame_shape=(parameters.frame_height, parameters.frame_width))
    detected, true_sources = cells[matching.detected_index], sources[matching.true_index]
    cell_f = store.read("plane_0/extraction/cell_fluorescence")[detected]
    neuropil_f = store.read("plane_0/extraction/neuropil_fluorescence")[detected]
    settings = configuration.spike_deconvolution
    stored_spike_r = np.nanmedian(smoothed_spike_correlations(store.read("plane_0/extraction/spikes")[detected], truth.spikes[true_sources]))
    lines = [
        f"**{indicator}**: 128² × 1 500 frames at 30 Hz, 40 somata + 5 non-somatic sources, real dF/F + spikes from {', '.join(datasets)}"
        f" planted, `main.tau` {tau_s}; detection recall {scores.detection_recall:.3f}, precision {scores.detection_precision:.3f},"
        f" {len(detected)} matched cells; stored spikes (defaults) median r {stored_spike_r:.3f} (score_recording: {scores.spike_correlation:.3f}).",
        "",
        "| neuropil coefficient | median c | trace r | r, min 0 | r, min 1 | r, min 2 |",
        "|---|---|---|---|---|---|",
    ]
    for label, estimate in (("estimated per ROI (ours, default)", True), ("fixed 0.7 (cindra)", False)):
        if estimate:
            coefficient = estimate_neuropil_coefficients(cell_f, neuropil_f, initial_coefficient=settings.neuropil_coefficient, quiet_fraction=settings.neuropil_quiet_fraction)
        else:
            coefficient = np.full(len(detected), settings.neuropil_coefficient, np.float32)
        corrected = subtract_neuropil(cell_f, neuropil_f, neuropil_coefficient=coefficient)
        trace_r = np.nanmedian(row_correlations(corrected, truth.calcium[true_sources]))
        spike_r = [
            np.nanmedian(spike_scores(corrected, truth.spikes[true_sources], tau_s=tau_s, frame_rate_hz=parameters.plane_frame_rate_hz, minimum_spike_size=size))
            for size in MINIMUM_SPIKE_SIZES
        ]
        lines.append(f"| {label} | {np.median(coefficient):.2f} | {trace_r:.3f} | " + " | ".join(f"{value:.3f}" for value in spike_r) + " |")
    return lines + [""]


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, default=None, help="bank file (default: the fetch_cascade.py cache)")
    parser.add_argument("--skip-pipeline", action="store_true", help="only (a), the real traces")
    options = parser.parse_args(arguments)
    bank_path = options.bank or default_bank_path()
    if not bank_path.exists():
        raise SystemExit(f"CASCADE bank not found at {bank_path}; run benchmarks/accuracy/fetch_cascade.py")
    report = [
        "# Spike defaults on real dynamics (issue 24, item 5)",
        "",
        "Generated by `benchmarks/accuracy/bench_spike_defaults.py`; median smoothed spike r (σ = 2 frames). CASCADE datasets DS09–DS11 are not used.",
        "",
        "## (a) Real CASCADE traces through baseline + OASIS",
        "",
        *real_trace_table(bank_path),
        "",
        "Tau 30 % wrong (OASIS given 0.7× and 1.3× the table's tau), all segments:",
        "",
        "| tau given | fs Hz | noise | r, min 0 | r, min 1 | r, min 2 |",
        "|---|---|---|---|---|---|",
    ]
    for tau_scale in (0.7, 1.3):
        for line in real_trace_table(bank_path, tau_scale=tau_scale):
            if line.startswith("| **all segments**"):
                cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
                report.append(f"| {tau_scale}× | {cells[2]} | {cells[4]} | " + " | ".join(cells[5:]) + " |")
    if not options.skip_pipeline:
        report += ["", "## (b) Simulated recordings with planted real dynamics, whole pipeline", ""]
        for indicator, datasets, tau_s in PIPELINE_CASES:
            with tempfile.TemporaryDirectory() as work:
                report += pipeline_table(bank_path, Path(work), indicator=indicator, datasets=datasets, tau_s=tau_s)
    from bench_spike_timing import summary_for_spike_defaults  # the sibling module (it imports this one)

    report += [
        "",
        "## (c) Spike timing: `rise_time` per indicator",
        "",
        "AR(1) OASIS centres each spike on the indicator's rising phase; `spike_deconvolution.rise_time` moves it back"
        " (`benchmarks/accuracy/bench_spike_timing.py`, full report in `results/spike_timing.md`).",
        "",
        *summary_for_spike_defaults(bank_path),
    ]
    RESULT_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULT_PATH.write_text("\n".join(report) + "\n")
    print(RESULT_PATH.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
