"""When do deconvolved spikes fall, relative to the action potentials, and does
``spike_deconvolution.rise_time`` put them back?  Issue 24, item 5 (spike defaults on real dynamics).

Every recording of the CASCADE bank (``fetch_cascade.py``; DS09–DS11 are never used) is resampled
(`cindra_dask.simulate.bank`: box average of dF/F over each frame, spikes counted in the frame they
fall in) to 7.5, 15, 30 and 60 Hz and cut into 100 s segments; each segment goes through the
pipeline's kernels as ``extraction/graph.py`` runs them (`subtract_baseline` with the default
maximin baseline, `deconvolve_oasis` with the indicator's tau, ``TAU_S`` of
``bench_spike_defaults.py``, minimum spike size 0) and is scored with the smoothed spike r
(σ = 2 frames) of ``evaluate.smoothed_spike_correlations``. A recording is not used at a rate above
its own (× 1.05): that would be sample-and-hold upsampling, not imaging at that rate.

1. Lag: r of the inferred spikes moved δ ms earlier (the smoothed train shifted by δ·fs frames,
   cubic interpolation), δ on a 5 ms grid; per dataset and per indicator the δ of the highest
   median r.
2. Sampling control: each recording's own spike train with an instantaneous-rise AR(1) response
   (the indicator's tau, plus white noise), point-sampled at the recording's own sample centres and
   then resampled like the bank ("bank"), or point-sampled at the target frame centres directly
   ("direct"); same kernels, same lag scan. Any lag here comes from frame sampling alone.
3. Response kernels: per recording, the least-squares linear response of dF/F to one spike at its
   own rate (spike counts at lags −0.3 … 3 s; normal equations by FFT, Toeplitz solve), averaged per
   dataset and fitted with A·(exp(−(t−t0)/τ_d) − exp(−(t−t0)/τ_r)) for t > t0. The onset lag
   t0 + τ_r is where AR(1) OASIS puts the centre of each spike (its inverse of that response is
   ∝ exp(−(t−t0)/τ_r)); the per-indicator median, rounded to 10 ms, is the recommended rise_time.
4. The fix: ``rise_time`` (`advance_spikes`: every spike moved rise_time earlier) per indicator
   and as one value for all; against the per-dataset best lag of (1), and against an AR(2) model
   with fixed roots (rise and decay; Friedrich et al. 2017) solved as AR(1) OASIS on
   y_t − exp(−1/(τ_r fs))·y_{t−1} (exact without noise). As recorded and with white noise of
   twice each segment's `difference_noise` added; and two-fold by recording (rise times from the
   kernels of the other half).
5. Simulator: the effect of one rise_time for every cell on the simulator's scenarios (their
   calcium rises instantaneously) and on the two presets planting real GCaMP6f/6s dynamics, through
   the whole pipeline (true tau): the stored F and F_neu of the matched cells re-run through the
   kernels with each rise_time.

Writes ``benchmarks/accuracy/results/spike_timing.md``. About three minutes on two cores
(``--skip-pipeline``: about one).

    python benchmarks/accuracy/bench_spike_timing.py [--bank PATH] [--skip-pipeline]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.ndimage import shift as shift_image

from cindra_dask.config import SpikeDeconvolutionSettings
from cindra_dask.evaluate import row_correlations, smoothed_spike_correlations
from cindra_dask.extraction.baseline import subtract_baseline
from cindra_dask.extraction.oasis import advance_spikes, deconvolve_oasis, difference_noise
from cindra_dask.simulate.bank import load_activity_bank, resample_recording

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_spike_defaults import TAU_S, default_bank_path  # noqa: E402  (the sibling module)

RESULT_PATH = HERE / "results" / "spike_timing.md"
FRAME_RATES_HZ = (7.5, 15.0, 30.0, 60.0)
SEGMENT_S = 100.0
SIGMA_FRAMES = 2.0
LAGS_MS = np.arange(-100, 401, 5)
UPSAMPLING_TOLERANCE = 1.05
NOISE_MULTIPLE = 2.0
SEED = 24
KERNEL_WINDOW_S = (-0.3, 3.0)
KERNEL_GRID_S = np.arange(KERNEL_WINDOW_S[0], KERNEL_WINDOW_S[1], 0.002)
GLOBAL_RISE_TIMES_S = (0.01, 0.03, 0.05, 0.1)
SHARED_RISE_TIME_S = 0.03
"""The one value that wins at every rate on the bank (section 4); its cost per indicator and on the simulator."""
SIMULATOR_RISE_TIMES_S = (0.0, 0.01, 0.03, 0.05, 0.1)
SIMULATOR_SCENARIOS = ("default", "fast_60hz", "short_7hz", "real_dynamics_gcamp6f", "real_dynamics_gcamp6s")
CONTROL_NOISE_DFF = 0.02
CONTROL_DURATION_S = 300.0


# ---------------------------------------------------------------------------------------------
# the kernels as the pipeline runs them
# ---------------------------------------------------------------------------------------------


def infer_spikes(traces: np.ndarray, *, tau_s: float, frame_rate_hz: float) -> np.ndarray:
    """(k, T) default baseline subtraction + OASIS (minimum spike size 0)."""
    settings = SpikeDeconvolutionSettings()
    subtracted = subtract_baseline(
        traces,
        baseline_method=settings.baseline_method.value,
        baseline_window_s=settings.baseline_window,
        baseline_sigma_frames=settings.baseline_sigma,
        baseline_percentile=settings.baseline_percentile,
        frame_rate_hz=frame_rate_hz,
    )
    return deconvolve_oasis(subtracted, tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0).spikes


def infer_spikes_fixed_ar2(traces: np.ndarray, *, tau_s: float, rise_time_s: float, frame_rate_hz: float) -> np.ndarray:
    """AR(2) with fixed roots exp(−1/(τ fs)), exp(−1/(τ_r fs)): AR(1) OASIS of y_t − r·y_{t−1}."""
    settings = SpikeDeconvolutionSettings()
    subtracted = subtract_baseline(
        traces,
        baseline_method=settings.baseline_method.value,
        baseline_window_s=settings.baseline_window,
        baseline_sigma_frames=settings.baseline_sigma,
        baseline_percentile=settings.baseline_percentile,
        frame_rate_hz=frame_rate_hz,
    )
    if rise_time_s > 0:
        root = np.float32(np.exp(-1.0 / (rise_time_s * frame_rate_hz)))
        subtracted[:, 1:] = subtracted[:, 1:] - root * subtracted[:, :-1]
    return deconvolve_oasis(subtracted, tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0).spikes


def lag_scores(inferred: np.ndarray, truth: np.ndarray, *, frame_rate_hz: float) -> np.ndarray:
    """(k, len(LAGS_MS)) smoothed spike r with the inferred train moved each lag earlier."""
    smoothed = gaussian_filter1d(np.asarray(inferred, np.float64), SIGMA_FRAMES, axis=1)
    true_smoothed = gaussian_filter1d(np.asarray(truth, np.float64), SIGMA_FRAMES, axis=1)
    return np.stack(
        [row_correlations(shift_image(smoothed, (0.0, -lag * frame_rate_hz / 1000.0), order=3, mode="nearest"), true_smoothed) for lag in LAGS_MS], axis=1
    )


class LagSummary(NamedTuple):
    best_lag_ms: float
    r_at_zero: float
    r_at_best: float


def summarise(scores: np.ndarray) -> LagSummary:
    """Best lag of the median curve of (k, lags) scores, and the median r at 0 and there."""
    median = np.nanmedian(scores, axis=0)
    best = int(np.nanargmax(median))
    return LagSummary(float(LAGS_MS[best]), float(median[LAGS_MS == 0][0]), float(median[best]))


class Bank(NamedTuple):
    """The bank at one frame rate: segments, their truth, and which ones are imaged at ≥ this rate."""

    dff: np.ndarray
    spikes: np.ndarray
    dataset: np.ndarray
    indicator: np.ndarray
    recording_index: np.ndarray
    native: np.ndarray
    frame_rate_hz: float


def load_bank(bank_path: Path, frame_rate_hz: float) -> Bank:
    bank = load_activity_bank(bank_path, frame_rate_hz=frame_rate_hz, segment_frames=int(round(SEGMENT_S * frame_rate_hz)))
    with np.load(bank_path, allow_pickle=False) as archive:
        source_rate = archive["source_rate_hz"]
    native = source_rate[bank.recording_index] * UPSAMPLING_TOLERANCE >= frame_rate_hz
    return Bank(bank.dff, bank.spikes, bank.dataset, bank.indicator, bank.recording_index, native, frame_rate_hz)


def infer_bank(bank: Bank, traces: np.ndarray | None = None) -> np.ndarray:
    traces = bank.dff if traces is None else traces
    inferred = np.empty_like(traces)
    for indicator in np.unique(bank.indicator):
        rows = bank.indicator == indicator
        inferred[rows] = infer_spikes(traces[rows], tau_s=TAU_S[str(indicator)], frame_rate_hz=bank.frame_rate_hz)
    return inferred


def indicator_order(names: np.ndarray) -> list[str]:
    return [name for name in TAU_S if name in set(names.tolist())]


# ---------------------------------------------------------------------------------------------
# 1. the lag
# ---------------------------------------------------------------------------------------------


def dataset_order(names: list[str]) -> list[str]:
    """Datasets by indicator (the order of ``TAU_S``), then name."""
    return sorted(names, key=lambda name: (list(TAU_S).index(name.split("-")[1]), name))


def lag_section(banks: dict[float, Bank], inferred: dict[float, np.ndarray], bank_path: Path) -> tuple[list[str], dict[tuple[str, float], LagSummary]]:
    scores = {rate: lag_scores(inferred[rate], banks[rate].spikes, frame_rate_hz=rate) for rate in FRAME_RATES_HZ}
    rates = " | ".join(f"{rate:g} Hz" for rate in FRAME_RATES_HZ)
    lines = [
        "## 1. The lag that maximises spike r",
        "",
        "Best lag δ (ms; the inferred spikes moved δ earlier), median r at δ = 0 → at the best δ; segments imaged at ≥ the frame rate only"
        " (— : the recording's own rate is lower). Half a frame is 67 / 33 / 17 / 8 ms at 7.5 / 15 / 30 / 60 Hz (section 2).",
        "",
        f"| dataset (source Hz) | {rates} |",
        "|---|" + "---|" * len(FRAME_RATES_HZ),
    ]
    by_dataset: dict[tuple[str, float], LagSummary] = {}
    datasets = dataset_order(np.unique(banks[FRAME_RATES_HZ[0]].dataset).tolist())

    def cell(rows: np.ndarray, rate: float) -> str:
        if not rows.any():
            return "—"
        summary = summarise(scores[rate][rows])
        return f"{summary.best_lag_ms:.0f} ms: {summary.r_at_zero:.3f} → {summary.r_at_best:.3f}"

    with np.load(bank_path, allow_pickle=False) as archive:
        source_rates = {name: sorted({round(float(rate)) for rate in archive["source_rate_hz"][archive["dataset"] == name]}) for name in datasets}
    for dataset in datasets:
        cells = []
        for rate in FRAME_RATES_HZ:
            rows = (banks[rate].dataset == dataset) & banks[rate].native
            cells.append(cell(rows, rate))
            if rows.any():
                by_dataset[(dataset, rate)] = summarise(scores[rate][rows])
        lines.append(f"| {dataset} ({'/'.join(str(rate) for rate in source_rates[dataset])}) | " + " | ".join(cells) + " |")
    lines += ["", "Per indicator (its datasets pooled):", "", f"| indicator (tau s) | {rates} |", "|---|" + "---|" * len(FRAME_RATES_HZ)]
    for indicator in indicator_order(banks[FRAME_RATES_HZ[0]].indicator):
        lines.append(f"| {indicator} ({TAU_S[indicator]}) | " + " | ".join(cell((banks[rate].indicator == indicator) & banks[rate].native, rate) for rate in FRAME_RATES_HZ) + " |")
    lines.append("| **all segments imaged at ≥ the rate** | " + " | ".join(cell(banks[rate].native, rate) for rate in FRAME_RATES_HZ) + " |")
    lines.append("| all segments (upsampled ones too) | " + " | ".join(cell(np.ones(len(banks[rate].dff), bool), rate) for rate in FRAME_RATES_HZ) + " |")
    return lines + [""], by_dataset


# ---------------------------------------------------------------------------------------------
# 2. the sampling control
# ---------------------------------------------------------------------------------------------


def instantaneous_response(spike_times_s: np.ndarray, sample_times_s: np.ndarray, *, tau_s: float) -> np.ndarray:
    """Σ exp(−(t − s)/τ) over the spikes s ≤ t, at each of the regularly spaced sample times t (an instantaneous rise)."""
    from scipy.signal import lfilter

    interval_s = float(sample_times_s[1] - sample_times_s[0])
    first_sample = np.searchsorted(sample_times_s, spike_times_s, side="left")  # the first sample at or after each spike
    seen = first_sample < len(sample_times_s)
    increments = np.bincount(
        first_sample[seen], weights=np.exp(-(sample_times_s[first_sample[seen]] - spike_times_s[seen]) / tau_s), minlength=len(sample_times_s)
    )
    return lfilter([1.0], [1.0, -np.exp(-interval_s / tau_s)], increments)


def control_section(bank_path: Path) -> list[str]:
    rng = np.random.default_rng(SEED)
    with np.load(bank_path, allow_pickle=False) as archive:
        bank = {name: archive[name] for name in archive.files}
    scores: dict[tuple[str, float, str], list[np.ndarray]] = {}
    for row in range(len(bank["dataset"])):
        dataset, source_rate_hz = str(bank["dataset"][row]), float(bank["source_rate_hz"][row])
        tau_s = TAU_S[str(bank["indicator"][row])]
        sample_count = min(int(bank["dff_offsets"][row + 1] - bank["dff_offsets"][row]), int(CONTROL_DURATION_S * source_rate_hz))
        duration_s = sample_count / source_rate_hz
        times = bank["spike_times_s"][bank["spike_offsets"][row] : bank["spike_offsets"][row + 1]]
        times = np.sort(times[times < duration_s])
        source = instantaneous_response(times, (np.arange(sample_count) + 0.5) / source_rate_hz, tau_s=tau_s)
        source += CONTROL_NOISE_DFF * rng.standard_normal(sample_count)
        for rate in FRAME_RATES_HZ:
            if source_rate_hz * UPSAMPLING_TOLERANCE < rate:
                continue
            resampled = resample_recording(source, times, source_rate_hz=source_rate_hz, frame_rate_hz=rate)
            frame_count = len(resampled.dff)
            direct = instantaneous_response(times, (np.arange(frame_count) + 0.5) / rate, tau_s=tau_s) + CONTROL_NOISE_DFF * rng.standard_normal(frame_count)
            for label, trace in (("bank", resampled.dff), ("direct", direct.astype(np.float32))):
                inferred = infer_spikes(trace[None].astype(np.float32), tau_s=tau_s, frame_rate_hz=rate)
                scores.setdefault((dataset, rate, label), []).append(lag_scores(inferred, resampled.spikes[None], frame_rate_hz=rate)[0])
    rates = " | ".join(f"{rate:g} Hz" for rate in FRAME_RATES_HZ)
    lines = [
        "## 2. Sampling control: an instantaneous rise",
        "",
        f"Each recording's own spikes (first {CONTROL_DURATION_S:g} s) with exp(−t/tau) responses, white noise σ {CONTROL_NOISE_DFF} dF/F; best lag: median r at 0 → best."
        " 'bank': sampled at the recording's own sample centres, then resampled like the bank; 'direct': sampled at the target frame centres.",
        "",
        f"| dataset | path | {rates} |",
        "|---|---|" + "---|" * len(FRAME_RATES_HZ),
    ]
    for dataset in dataset_order(sorted({key[0] for key in scores})):
        for label in ("bank", "direct"):
            cells = []
            for rate in FRAME_RATES_HZ:
                if (dataset, rate, label) not in scores:
                    cells.append("—")
                    continue
                summary = summarise(np.stack(scores[(dataset, rate, label)]))
                cells.append(f"{summary.best_lag_ms:.0f} ms: {summary.r_at_zero:.3f} → {summary.r_at_best:.3f}")
            lines.append(f"| {dataset} | {label} | " + " | ".join(cells) + " |")
    return lines + [""]


# ---------------------------------------------------------------------------------------------
# 3. response kernels
# ---------------------------------------------------------------------------------------------


def response_kernel(dff: np.ndarray, spike_times_s: np.ndarray, *, source_rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """(lags s, response per spike) of the least-squares fit dF/F ≈ Σ_k h_k · spikes_{t−k}."""
    from scipy.linalg import solve_toeplitz

    sample_count = len(dff)
    first, last = int(round(KERNEL_WINDOW_S[0] * source_rate_hz)), int(round(KERNEL_WINDOW_S[1] * source_rate_hz))
    counts = np.bincount(np.floor(spike_times_s * source_rate_hz).astype(np.int64), minlength=sample_count)[:sample_count].astype(np.float64)
    counts -= counts.mean()
    signal = np.asarray(dff, np.float64) - np.mean(dff)
    size = 1 << int(np.ceil(np.log2(2 * sample_count)))
    counts_spectrum = np.fft.rfft(counts, size)
    autocorrelation = np.fft.irfft(counts_spectrum * np.conj(counts_spectrum), size)[: last - first + 1]
    cross = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(counts_spectrum), size)
    lags = np.arange(first, last + 1)
    autocorrelation[0] *= 1.001  # a whisper of ridge
    return lags / source_rate_hz, solve_toeplitz(autocorrelation, cross[lags % size])


def difference_of_exponentials(time_s: np.ndarray, amplitude: float, onset_s: float, rise_s: float, decay_s: float) -> np.ndarray:
    elapsed = np.clip(time_s - onset_s, 0.0, None)
    return amplitude * (np.exp(-elapsed / decay_s) - np.exp(-elapsed / rise_s))


class KernelFit(NamedTuple):
    recordings: int
    peak_ms: float
    half_rise_ms: float
    onset_ms: float
    rise_ms: float
    decay_s: float

    @property
    def onset_lag_ms(self) -> float:
        return self.onset_ms + self.rise_ms


def kernel_fits(bank_path: Path, *, recordings: set[int] | None = None) -> dict[str, KernelFit]:
    """Per dataset: the mean response kernel of its recordings (``recordings``: only these rows) and its fit."""
    from scipy.optimize import curve_fit

    with np.load(bank_path, allow_pickle=False) as archive:
        bank = {name: archive[name] for name in archive.files}
    fits = {}
    for dataset in np.unique(bank["dataset"]):
        kernels = []
        for row in np.flatnonzero(bank["dataset"] == dataset):
            if recordings is not None and int(row) not in recordings:
                continue
            times = bank["spike_times_s"][bank["spike_offsets"][row] : bank["spike_offsets"][row + 1]]
            if len(times) < 20:
                continue
            lags_s, kernel = response_kernel(bank["dff"][bank["dff_offsets"][row] : bank["dff_offsets"][row + 1]], times, source_rate_hz=float(bank["source_rate_hz"][row]))
            kernels.append(np.interp(KERNEL_GRID_S, lags_s, kernel))
        if not kernels:
            continue
        mean = np.mean(kernels, axis=0)
        parameters, _ = curve_fit(
            difference_of_exponentials, KERNEL_GRID_S, mean, p0=[1.5 * mean.max(), 0.0, 0.05, 1.0], bounds=([0.0, -0.2, 0.001, 0.05], [100.0, 0.3, 1.0, 10.0]), maxfev=20_000
        )
        half = KERNEL_GRID_S[np.argmax(mean >= 0.5 * mean.max())]
        fits[str(dataset)] = KernelFit(len(kernels), 1000 * KERNEL_GRID_S[np.argmax(mean)], 1000 * half, 1000 * parameters[1], 1000 * parameters[2], parameters[3])
    return fits


def recommended_rise_times(fits: dict[str, KernelFit]) -> dict[str, float]:
    """Per indicator: the median onset lag of its datasets, s, rounded to 10 ms, at least 0."""
    by_indicator: dict[str, list[float]] = {}
    for dataset, fit in fits.items():
        by_indicator.setdefault(dataset.split("-")[1], []).append(fit.onset_lag_ms)
    return {indicator: max(0.0, round(float(np.median(lags)) / 10.0) / 100.0) for indicator, lags in by_indicator.items()}


def kernel_section(fits: dict[str, KernelFit], recommended: dict[str, float]) -> list[str]:
    lines = [
        "## 3. Response kernels (at each recording's own rate)",
        "",
        "Least-squares dF/F response to one spike, mean over the dataset's recordings; peak and half-rise times from it; t0, τ_r, τ_d from the"
        " difference-of-exponentials fit; onset lag t0 + τ_r = where AR(1) OASIS centres each spike.",
        "",
        "| dataset | recordings | peak ms | half-rise ms | t0 ms | τ_r ms | τ_d s (configured tau) | onset lag ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset in dataset_order(list(fits)):
        fit = fits[dataset]
        lines.append(
            f"| {dataset} | {fit.recordings} | {fit.peak_ms:.0f} | {fit.half_rise_ms:.0f} | {fit.onset_ms:.0f} | {fit.rise_ms:.0f} | {fit.decay_s:.2f} ({TAU_S[dataset.split('-')[1]]}) | {fit.onset_lag_ms:.0f} |"
        )
    lines += ["", "Recommended `rise_time` per indicator (median onset lag of its datasets, 10 ms steps, ≥ 0): "
              + ", ".join(f"{indicator} {recommended[indicator]:g} s" for indicator in TAU_S if indicator in recommended) + ".", ""]
    return lines


# ---------------------------------------------------------------------------------------------
# 4. the fix on the bank
# ---------------------------------------------------------------------------------------------


def advanced_scores(bank: Bank, inferred: np.ndarray, rise_time_s: dict[str, float] | float) -> np.ndarray:
    scores = np.empty(len(inferred))
    for indicator in np.unique(bank.indicator):
        rows = bank.indicator == indicator
        rise = rise_time_s if isinstance(rise_time_s, float) else rise_time_s[str(indicator)]
        scores[rows] = smoothed_spike_correlations(advance_spikes(inferred[rows], rise_time_s=rise, frame_rate_hz=bank.frame_rate_hz), bank.spikes[rows], sigma_frames=SIGMA_FRAMES)
    return scores


def ar2_scores(bank: Bank, traces: np.ndarray, rise_time_s: dict[str, float]) -> np.ndarray:
    scores = np.empty(len(traces))
    for indicator in np.unique(bank.indicator):
        rows = bank.indicator == indicator
        spikes = infer_spikes_fixed_ar2(traces[rows], tau_s=TAU_S[str(indicator)], rise_time_s=rise_time_s[str(indicator)], frame_rate_hz=bank.frame_rate_hz)
        scores[rows] = smoothed_spike_correlations(spikes, bank.spikes[rows], sigma_frames=SIGMA_FRAMES)
    return scores


def oracle_scores(bank: Bank, inferred: np.ndarray, best: dict[tuple[str, float], LagSummary]) -> np.ndarray:
    scores = np.full(len(inferred), np.nan)
    for dataset in np.unique(bank.dataset):
        rows = bank.dataset == dataset
        summary = best.get((str(dataset), bank.frame_rate_hz))
        if summary is None:
            continue
        scores[rows] = smoothed_spike_correlations(advance_spikes(inferred[rows], rise_time_s=max(summary.best_lag_ms, 0.0) / 1000, frame_rate_hz=bank.frame_rate_hz), bank.spikes[rows])
    return scores


def fold_rise_times(bank_path: Path) -> list[tuple[set[int], dict[str, float]]]:
    """Two folds by recording (alternate recordings of each dataset): (the fold's rows, rise times from the other fold's kernels)."""
    with np.load(bank_path, allow_pickle=False) as archive:
        datasets = archive["dataset"]
    folds: list[set[int]] = [set(), set()]
    for dataset in np.unique(datasets):
        for position, row in enumerate(np.flatnonzero(datasets == dataset)):
            folds[position % 2].add(int(row))
    return [(folds[index], recommended_rise_times(kernel_fits(bank_path, recordings=folds[1 - index]))) for index in (0, 1)]


def fix_section(
    banks: dict[float, Bank], inferred: dict[float, np.ndarray], recommended: dict[str, float], best: dict[tuple[str, float], LagSummary], bank_path: Path
) -> tuple[list[str], dict[str, float]]:
    rng = np.random.default_rng(SEED)
    folds = fold_rise_times(bank_path)
    rates = " | ".join(f"{rate:g} Hz" for rate in FRAME_RATES_HZ)
    lines = [
        "## 4. `rise_time` on the bank",
        "",
        "Median smoothed spike r over the segments imaged at ≥ the frame rate (in brackets: every segment, upsampled ones too, as"
        " `bench_spike_defaults.py` and `tests/test_real_dynamics.py` count them).",
        "",
        f"| traces | method | {rates} |",
        "|---|---|" + "---|" * len(FRAME_RATES_HZ),
    ]
    headline: dict[str, float] = {}
    for condition in ("as is", "noisy"):
        rows: dict[str, list[str]] = {}
        for rate in FRAME_RATES_HZ:
            bank = banks[rate]
            traces = bank.dff
            spikes = inferred[rate]
            if condition == "noisy":
                traces = bank.dff + NOISE_MULTIPLE * difference_noise(bank.dff)[:, None] * rng.standard_normal(bank.dff.shape).astype(np.float32)
                spikes = infer_bank(bank, traces)
            fold_scores = np.empty(len(spikes))
            for fold_rows, rise in folds:
                members = np.isin(bank.recording_index, list(fold_rows))
                fold_scores[members] = advanced_scores(bank._replace(indicator=bank.indicator[members], spikes=bank.spikes[members]), spikes[members], rise)
            methods = {
                "rise_time 0 (cindra, default)": advanced_scores(bank, spikes, 0.0),
                "rise_time per indicator (section 3)": advanced_scores(bank, spikes, recommended),
                "rise_time per indicator, two-fold by recording": fold_scores,
                **{f"rise_time {value:g} s for every indicator": advanced_scores(bank, spikes, value) for value in GLOBAL_RISE_TIMES_S},
                "fixed-root AR(2), τ_r per indicator": ar2_scores(bank, traces, {name: max(value, 0.001) for name, value in recommended.items()}),
            }
            if condition == "as is":
                methods["best lag per dataset (section 1, an oracle)"] = oracle_scores(bank, spikes, best)
            for label, scores in methods.items():
                value, everything = np.nanmedian(scores[bank.native]), np.nanmedian(scores)
                rows.setdefault(label, []).append("—" if np.isnan(value) else f"{value:.3f} ({everything:.3f})")
                if condition == "as is":
                    headline[f"{label} @ {rate:g}"] = float(everything)
        for label, cells in rows.items():
            lines.append(f"| {condition} | {label} | " + " | ".join(cells) + " |")
    shared = SHARED_RISE_TIME_S
    lines += ["", "Per indicator at 30 Hz, as recorded (segments imaged at ≥ 30 Hz; OGB-1, imaged at 11.6 Hz, at 7.5 Hz): median r with rise_time 0, the indicator's value,"
              f" and {shared:g} s for every indicator (the best shared value).", "",
              f"| indicator | rise_time s | r, 0 | r, rise_time | r, {shared:g} s | r at 7.5 / 15 / 60 Hz, 0 → rise_time |", "|---|---|---|---|---|---|"]
    for indicator in indicator_order(banks[30.0].indicator):
        def pair(rate: float, rise: dict[str, float] | float = recommended) -> str:
            bank = banks[rate]
            rows = (bank.indicator == indicator) & bank.native
            if not rows.any():
                return "—"
            sub = bank._replace(indicator=bank.indicator[rows], spikes=bank.spikes[rows])
            return f"{np.nanmedian(advanced_scores(sub, inferred[rate][rows], 0.0)):.3f} → {np.nanmedian(advanced_scores(sub, inferred[rate][rows], rise)):.3f}"

        main_rate = 30.0 if ((banks[30.0].indicator == indicator) & banks[30.0].native).any() else 7.5
        before, after = pair(main_rate).split(" → ")
        others = " / ".join(pair(rate) for rate in FRAME_RATES_HZ if rate != main_rate)
        with_shared = pair(main_rate, shared).split(" → ")[1]
        lines.append(f"| {indicator}{'' if main_rate == 30.0 else ' (7.5 Hz)'} | {recommended[indicator]:g} | {before} | {after} | {with_shared} | {others} |")
    return lines + [""], headline


# ---------------------------------------------------------------------------------------------
# the per-indicator summary (also section (c) of results/spike_defaults.md)
# ---------------------------------------------------------------------------------------------


def indicator_summary(banks: dict[float, Bank], inferred: dict[float, np.ndarray], recommended: dict[str, float]) -> list[str]:
    """Per indicator and frame rate: the best lag and r at 0 → at it; r with the indicator's rise_time."""
    rates = " | ".join(f"{rate:g} Hz" for rate in FRAME_RATES_HZ)
    lines = [
        "Per indicator (its datasets pooled; segments imaged at ≥ the frame rate): best lag δ* (ms, spikes moved δ* earlier), median spike r"
        " at 0 → at δ*; then r with the indicator's `rise_time` (from the response kernels, not from these scores).",
        "",
        f"| indicator (tau s) | rise_time s | {rates} |",
        "|---|---|" + "---|" * len(FRAME_RATES_HZ),
    ]

    def cell(rate: float, rows: np.ndarray, rise: dict[str, float]) -> str:
        bank = banks[rate]
        if not rows.any():
            return "—"
        summary = summarise(lag_scores(inferred[rate][rows], bank.spikes[rows], frame_rate_hz=rate))
        sub = bank._replace(indicator=bank.indicator[rows], spikes=bank.spikes[rows])
        return f"{summary.best_lag_ms:.0f} ms: {summary.r_at_zero:.3f} → {summary.r_at_best:.3f}; {np.nanmedian(advanced_scores(sub, inferred[rate][rows], rise)):.3f}"

    for indicator in indicator_order(banks[FRAME_RATES_HZ[0]].indicator):
        cells = [cell(rate, (banks[rate].indicator == indicator) & banks[rate].native, recommended) for rate in FRAME_RATES_HZ]
        lines.append(f"| {indicator} ({TAU_S[indicator]}) | {recommended[indicator]:g} | " + " | ".join(cells) + " |")
    lines.append("| **all** | per indicator | " + " | ".join(cell(rate, banks[rate].native, recommended) for rate in FRAME_RATES_HZ) + " |")
    return lines + [""]


def summary_for_spike_defaults(bank_path: Path) -> list[str]:
    """The per-indicator summary, computed afresh (``bench_spike_defaults.py`` section (c))."""
    banks = {rate: load_bank(bank_path, rate) for rate in FRAME_RATES_HZ}
    inferred = {rate: infer_bank(banks[rate]) for rate in FRAME_RATES_HZ}
    return indicator_summary(banks, inferred, recommended_rise_times(kernel_fits(bank_path)))


# ---------------------------------------------------------------------------------------------
# 5. the simulator
# ---------------------------------------------------------------------------------------------


def simulator_rows(name: str, bank_path: Path, work: Path, recommended: dict[str, float]) -> str:
    """One scenario through the pipeline (true tau); spike r of its matched cells for each rise_time."""
    from distributed import Client

    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.evaluate import match_rois
    from cindra_dask.extraction.baseline import estimate_neuropil_coefficients, subtract_neuropil
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.scenarios import SCENARIOS, scenario_parameters, write_scenario
    from cindra_dask.simulate import load_ground_truth
    from cindra_dask.store import RecordingStore

    scenario = SCENARIOS[name]
    data = write_scenario(name, work / "data", bank_path=bank_path)
    parameters = scenario_parameters(name, activity_bank_path=data / "activity_bank.npz" if scenario.bank_datasets else None)
    truth = load_ground_truth(data / "ground_truth.npz")
    configuration = configuration_from_mapping(
        {"runtime": {"display_progress_bars": False}, "file_io": {"data_path": str(data), "output_path": str(work / "output")}, "main": {"tau": scenario.true_tau_s}},
        source="bench_spike_timing",
    )
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        run_single_recording(configuration, client=client)
    store = RecordingStore(next((work / "output").glob("*.zarr")))
    rois = store.read_rois("plane_0/rois")
    cells = np.flatnonzero(store.read("plane_0/extraction/cell_classification")[:, 0] == 1)
    sources = np.flatnonzero(truth.is_cell & truth.active)
    matching = match_rois(rois.select(cells), truth.rois().select(sources), frame_shape=(parameters.frame_height, parameters.frame_width))
    detected, true_sources = cells[matching.detected_index], sources[matching.true_index]
    settings = configuration.spike_deconvolution
    cell_f = store.read("plane_0/extraction/cell_fluorescence")[detected]
    neuropil_f = store.read("plane_0/extraction/neuropil_fluorescence")[detected]
    coefficient = estimate_neuropil_coefficients(cell_f, neuropil_f, initial_coefficient=settings.neuropil_coefficient, quiet_fraction=settings.neuropil_quiet_fraction)
    frame_rate_hz = parameters.plane_frame_rate_hz
    spikes = infer_spikes(subtract_neuropil(cell_f, neuropil_f, neuropil_coefficient=coefficient), tau_s=scenario.true_tau_s, frame_rate_hz=frame_rate_hz)
    stored = np.nanmedian(smoothed_spike_correlations(store.read("plane_0/extraction/spikes")[detected], truth.spikes[true_sources]))
    values = [np.nanmedian(smoothed_spike_correlations(advance_spikes(spikes, rise_time_s=rise, frame_rate_hz=frame_rate_hz), truth.spikes[true_sources])) for rise in SIMULATOR_RISE_TIMES_S]
    indicator = {"real_dynamics_gcamp6f": "GCaMP6f", "real_dynamics_gcamp6s": "GCaMP6s"}.get(name)
    own = "—"
    if indicator is not None:
        own = f"{recommended[indicator]:g} s: " + f"{np.nanmedian(smoothed_spike_correlations(advance_spikes(spikes, rise_time_s=recommended[indicator], frame_rate_hz=frame_rate_hz), truth.spikes[true_sources])):.3f}"
    return f"| {name} | {frame_rate_hz:g} | {scenario.true_tau_s} | {len(detected)} | {stored:.3f} | " + " | ".join(f"{value:.3f}" for value in values) + f" | {own} |"


def simulator_section(bank_path: Path, recommended: dict[str, float]) -> list[str]:
    lines = [
        "## 5. The simulator's scenarios through the pipeline (true tau)",
        "",
        "Median smoothed spike r of the matched classified cells; the stored spikes (rise_time 0) and the stored F, F_neu re-run with each rise_time"
        " for every cell; the real-dynamics presets also with their indicator's value from section 3.",
        "",
        "| scenario | fs Hz | tau s | matched cells | stored | " + " | ".join(f"rise {value:g} s" for value in SIMULATOR_RISE_TIMES_S) + " | indicator's rise_time |",
        "|---|---|---|---|---|" + "---|" * len(SIMULATOR_RISE_TIMES_S) + "---|",
    ]
    for name in SIMULATOR_SCENARIOS:
        with tempfile.TemporaryDirectory() as work:
            lines.append(simulator_rows(name, bank_path, Path(work), recommended))
            print(lines[-1], flush=True)
    return lines + [""]


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, default=None, help="bank file (default: the fetch_cascade.py cache)")
    parser.add_argument("--skip-pipeline", action="store_true", help="sections 1–4 only (no pipeline runs)")
    options = parser.parse_args(arguments)
    bank_path = options.bank or default_bank_path()
    if not bank_path.exists():
        raise SystemExit(f"CASCADE bank not found at {bank_path}; run benchmarks/accuracy/fetch_cascade.py")
    banks = {rate: load_bank(bank_path, rate) for rate in FRAME_RATES_HZ}
    inferred = {rate: infer_bank(banks[rate]) for rate in FRAME_RATES_HZ}
    lag_lines, best = lag_section(banks, inferred, bank_path)
    fits = kernel_fits(bank_path)
    recommended = recommended_rise_times(fits)
    fix_lines, _ = fix_section(banks, inferred, recommended, best, bank_path)
    report = [
        "# Spike timing on real dynamics: `spike_deconvolution.rise_time` (issue 24, item 5)",
        "",
        "Generated by `benchmarks/accuracy/bench_spike_timing.py` (method in its docstring); smoothed spike r (σ = 2 frames), default baseline,"
        " OASIS with the indicator's tau, minimum spike size 0. CASCADE datasets DS09–DS11 are not used.",
        "",
        "## Summary",
        "",
        *indicator_summary(banks, inferred, recommended),
        *lag_lines,
        *control_section(bank_path),
        *kernel_section(fits, recommended),
        *fix_lines,
    ]
    if not options.skip_pipeline:
        report += simulator_section(bank_path, recommended)
    RESULT_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULT_PATH.write_text("\n".join(report) + "\n")
    print(RESULT_PATH.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
