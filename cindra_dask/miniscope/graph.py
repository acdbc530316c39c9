"""Plan of the miniscope step of a plane: detrending, dF/F, events, Hilbert phase and multi-taper
spectrogram of every ROI's CNMF-E component (accepted or not: ``extraction/cell_classification`` says which) (`cindra_dask.miniscope.traces`, `.events`, `.spectral`).

Chunking: one task per ROI chunk of the component fluorescence (roi_chunk, T), roi_chunk from
``runtime.max_chunk_memory`` for the larger of a trace row (T values) and a spectrogram row (W · F);
``median`` detrending takes the mean trace over every ROI first (one tree reduction). The dense
outputs are stored chunk by chunk; the events (a few per ROI) are gathered and written by the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from cindra_dask.chunking import roi_chunk_size
from cindra_dask.miniscope.events import CalciumEvents, detect_calcium_events
from cindra_dask.miniscope.spectral import instantaneous_phase, multitaper_spectrogram, spectrogram_layout
from cindra_dask.miniscope.traces import detrend_traces, footprint_background, miniscope_delta_f_over_f
from cindra_dask.runner.plans import Compute, StepPlan
from cindra_dask.store import CNMF, MINISCOPE, ROIS, stage_path

if TYPE_CHECKING:
    from cindra_dask.config import MiniscopeAnalysisSettings
    from cindra_dask.runner.context import RecordingContext

DENSE_OUTPUTS = ("detrended_fluorescence", "delta_f_over_f", "instantaneous_phase", "spectrogram", "power_spectrum", "dominant_frequency")
"""The per-ROI arrays of ``plane_k/miniscope/`` written chunk by chunk, in `MiniscopeBlock` order."""


class MiniscopeBlock(NamedTuple):
    """The miniscope analysis of a block of n ROIs (shapes as in the store contract)."""

    detrended_fluorescence: np.ndarray
    delta_f_over_f: np.ndarray
    instantaneous_phase: np.ndarray
    spectrogram: np.ndarray
    power_spectrum: np.ndarray
    dominant_frequency: np.ndarray
    events: CalciumEvents


def miniscope_kernel_options(settings: MiniscopeAnalysisSettings, *, frame_rate_hz: float, tau_s: float) -> dict[str, Any]:
    """Keyword options of `analyse_block` from the ``miniscope_analysis`` section at ``frame_rate_hz`` (Hz), indicator decay ``tau_s`` (``main.tau``, s)."""
    return {
        "event_method": settings.event_method,
        "tau_s": tau_s,
        "detrend_method": settings.detrend_method,
        "window_frames": int(settings.secs_window * frame_rate_hz),
        "quantile_min": settings.quantile_min,
        "df_over_f_method": settings.df_over_f_method,
        "derivative_for_estimates": settings.derivative_for_estimates,
        "event_height": settings.event_height,
        "minimum_event_interval_frames": max(1, int(round(settings.minimum_event_interval * frame_rate_hz))),
        "frame_rate_hz": frame_rate_hz,
        "filter_order": settings.filter_order,
        "filter_cut_hz": tuple(settings.filter_cut) if settings.filter_miniscope_data else None,
        "window_length_s": settings.window_length,
        "window_step_s": settings.window_step,
        "freq_lims_hz": tuple(settings.freq_lims),
        "time_bandwidth": settings.time_bandwidth,
    }


def analyse_block(
    fluorescence: np.ndarray,
    mean_trace: np.ndarray,
    *,
    detrend_method: str | None,
    window_frames: int,
    quantile_min: float,
    df_over_f_method: str,
    event_method: str,
    tau_s: float,
    derivative_for_estimates: str,
    event_height: float,
    minimum_event_interval_frames: int,
    frame_rate_hz: float,
    filter_order: int,
    filter_cut_hz: tuple[float, float] | None,
    window_length_s: float,
    window_step_s: float,
    freq_lims_hz: tuple[float, float],
    time_bandwidth: float,
) -> MiniscopeBlock:
    """`MiniscopeBlock` of (n, T) float32 component fluorescence; ``mean_trace`` (T,) is the mean over every ROI of the plane."""
    detrended = detrend_traces(fluorescence, detrend_method=detrend_method, mean_trace=mean_trace)
    dff = miniscope_delta_f_over_f(detrended, window_frames=window_frames, quantile_min=quantile_min, df_over_f_method=df_over_f_method)
    events = detect_calcium_events(
        dff,
        event_method=event_method,
        derivative_for_estimates=derivative_for_estimates,
        event_height=event_height,
        minimum_event_interval_frames=minimum_event_interval_frames,
        tau_s=tau_s,
        frame_rate_hz=frame_rate_hz,
    )
    phase = instantaneous_phase(dff, frame_rate_hz=frame_rate_hz, filter_order=filter_order, filter_cut_hz=filter_cut_hz)
    spectrogram = multitaper_spectrogram(dff, frame_rate_hz=frame_rate_hz, window_length_s=window_length_s, window_step_s=window_step_s, freq_lims_hz=freq_lims_hz, time_bandwidth=time_bandwidth)
    return MiniscopeBlock(detrended, dff, phase, spectrogram.power, spectrogram.power_spectrum, spectrogram.dominant_frequency_hz, events)


def plan_miniscope_step(context: RecordingContext, *, plane: int) -> StepPlan:
    """Plan of the miniscope step of one plane (``miniscope_analysis.enabled``, ``method: cnmf_e``).

    Reads ``plane_k/rois/source_component``, ``plane_k/cnmf/{raw_traces, background_mean}`` and the
    ``cnmf`` footprints; writes ``plane_k/miniscope/*`` (store contract), one row per ROI. Zero ROIs
    give zero-row arrays. Idempotent (every output is replaced). Preflight has checked ``filter_cut``
    against the frame rate.
    """
    import dask
    import dask.array as da

    store, configuration = context.store, context.configuration
    settings = configuration.miniscope_analysis
    frame_rate_hz = context.acquisition.plane_frame_rate_hz
    cnmf_group, group = stage_path(plane, CNMF), stage_path(plane, MINISCOPE)
    source_component = store.read(f"{stage_path(plane, ROIS)}/source_component").astype(np.int64)
    raw_traces = da.from_zarr(store.array(f"{cnmf_group}/raw_traces"))
    roi_count, frame_count = len(source_component), int(raw_traces.shape[1])
    background = footprint_background(store.read_rois(cnmf_group).select(source_component), store.read(f"{cnmf_group}/background_mean"))
    layout = spectrogram_layout(frame_count=frame_count, frame_rate_hz=frame_rate_hz, window_length_s=settings.window_length, window_step_s=settings.window_step, freq_lims_hz=tuple(settings.freq_lims))
    window_count, frequency_count = len(layout.window_starts), len(layout.frequencies_hz)
    roi_chunk = roi_chunk_size(
        frame_count=max(frame_count, window_count * frequency_count), roi_count=roi_count, max_chunk_bytes=configuration.runtime.max_chunk_bytes, upper_bound=configuration.signal_extraction.batch_size
    )
    shapes = {
        "detrended_fluorescence": (roi_count, frame_count),
        "delta_f_over_f": (roi_count, frame_count),
        "instantaneous_phase": (roi_count, frame_count),
        "spectrogram": (roi_count, window_count, frequency_count),
        "power_spectrum": (roi_count, frequency_count),
        "dominant_frequency": (roi_count,),
    }
    targets = {name: store.create_array(f"{group}/{name}", shape=shape, dtype=np.float32, chunks=(roi_chunk, *shape[1:])) for name, shape in shapes.items()}
    store.write_array(f"{group}/footprint_background", background)
    store.write_array(f"{group}/spectrogram_times", layout.window_times_s.astype(np.float64))
    store.write_array(f"{group}/spectrogram_frequencies", layout.frequencies_hz.astype(np.float64))
    events: list[CalciumEvents] = []
    if roi_count:
        fluorescence = (raw_traces[source_component] + background[:, None]).astype(np.float32).rechunk((roi_chunk, frame_count))
        mean_trace = fluorescence.mean(axis=0)
        options = miniscope_kernel_options(settings, frame_rate_hz=frame_rate_hz, tau_s=configuration.main.tau)
        analyse = dask.delayed(analyse_block, pure=True)
        blocks = [analyse(block, mean_trace, **options) for block in fluorescence.to_delayed().ravel()]
        row_counts = fluorescence.chunks[0]
        sources = [
            da.concatenate([da.from_delayed(block[index], shape=(rows, *shapes[name][1:]), dtype=np.float32) for block, rows in zip(blocks, row_counts)])
            for index, name in enumerate(DENSE_OUTPUTS)
        ]
        stored = da.store(sources, [targets[name] for name in DENSE_OUTPUTS], lock=False, compute=False)
        results = yield Compute([stored, *(block[len(DENSE_OUTPUTS)] for block in blocks)], f"miniscope plane {plane}")
        events = list(results[1:])
    offsets = np.concatenate([[0], np.cumsum([len(item.event_frames) for item in events], dtype=np.int64)])
    row_offsets = np.concatenate([[0], *((item.event_offsets[1:] + start) for item, start in zip(events, offsets[:-1]))]).astype(np.int64)
    store.write_array(f"{group}/event_offsets", row_offsets)
    store.write_array(f"{group}/event_frames", np.concatenate([np.zeros(0, np.int64), *(item.event_frames for item in events)]))
    store.write_array(f"{group}/event_amplitudes", np.concatenate([np.zeros(0, np.float32), *(item.event_amplitudes for item in events)]))
    store.write_array(f"{group}/event_noise_sigma", np.concatenate([np.zeros(0, np.float32), *(item.noise_sigma for item in events)]))
    store.update_group_attributes(group, {"frame_rate_hz": frame_rate_hz, "event_count": int(row_offsets[-1])})
