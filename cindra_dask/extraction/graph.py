"""Graph builder of the extraction step (cindra §3.6–3.7): registered frames → traces, spikes, labels.

One plane's graph::

    plane_k/rois/* ──► ExtractionMasks (one task; a dependency every worker fetches once)
    registered frame chunks ──blockwise──► (2, n, chunk_T) [cell; neuropil] per chunk
        ──concatenate on t, rechunk once──► (1, roi_chunk, T) ──► cell_fluorescence, neuropil_fluorescence
    ROI chunks ──► neuropil_coefficient c (n,) ──► F − c·Fneu ──► skewness (n,) ──► cell_classification (one task;
                                                          │   with CNMF the components' evaluation instead: `evaluation_classification`)
                                                          ├──► baseline subtraction ──► OASIS (spikes moved rise_time earlier) ──► subtracted_fluorescence, spikes
                                                          └──► per-ROI baseline F0 ──► (F_c − F0) / F0 ──► delta_f_over_f
                                                                              └──► decay fit ──► estimated_tau_s (n,)
    structural channel 2 ──► traces with the same masks; good-frame mean images ──► colocalization

Every output is a dask array, and the step writes all of them with one ``da.store``: a single
collection type, because computing Arrays together with Delayed objects returns the results in
the wrong order in the installed dask (2026.8.0).

Memory: a frame task holds one registered chunk plus its (2, n, chunk_T) float32 traces; every task
after the rechunk holds a few (roi_chunk, T) float32 blocks, with roi_chunk chosen by
`cindra_dask.chunking.roi_chunk_size` so that one block fits ``runtime.max_chunk_memory``. Nothing
holds the whole movie; only the (roi_chunk, T) blocks grow with T.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from cindra_dask.chunking import roi_chunk_size
from cindra_dask.config import BaselineMethod, MultiRecordingConfiguration, SignalExtractionSettings, SingleRecordingConfiguration, SourceExtractionMethod, SpikeDeconvolutionSettings
from cindra_dask.detection.classify import CellClassifier, classify, load_classifier
from cindra_dask.extraction.baseline import (
    estimate_neuropil_coefficients,
    neuropil_corrected_delta_f_over_f,
    neuropil_corrected_skewness,
    smoothed_minima,
    subtract_baseline,
    subtract_neuropil,
)
from cindra_dask.extraction.colocalization import correct_bleedthrough, good_frame_sum, structural_colocalization
from cindra_dask.extraction.decay import estimate_decay_time_constants, recording_decay_time_constant
from cindra_dask.extraction.masks import ExtractionMasks, build_extraction_masks
from cindra_dask.extraction.oasis import advance_spikes, deconvolve_oasis
from cindra_dask.extraction.traces import extract_traces
from cindra_dask.rois import RaggedRois
from cindra_dask.runner.plans import Compute, StepPlan
from cindra_dask.store import CNMF, EXTRACTION, REGISTRATION, ROIS, frames_path, stage_path

if TYPE_CHECKING:
    from cindra_dask.runner.context import RecordingContext

TRACE_DIMENSIONS = ("roi", "t")
TRACE_DTYPE = np.dtype(np.float32)
ROI_RADIUS = "radius_px"
"""ROI statistic (``plane_k/rois/``) giving the radii of the cell-pixel percentile window."""

SHAPE_FEATURES = ("normalized_pixel_count", "compactness")
"""Classifier inputs that are ROI statistics written by detection (the third is ``skewness``)."""

CELL_FLUORESCENCE = "cell_fluorescence"
NEUROPIL_FLUORESCENCE = "neuropil_fluorescence"
SUBTRACTED_FLUORESCENCE = "subtracted_fluorescence"
DELTA_F_OVER_F = "delta_f_over_f"
NEUROPIL_COEFFICIENT = "neuropil_coefficient"
SPIKES = "spikes"
SKEWNESS = "skewness"
CELL_CLASSIFICATION = "cell_classification"
CELL_COLOCALIZATION = "cell_colocalization"
CORRECTED_STRUCTURAL_MEAN_IMAGE = "corrected_structural_mean_image"
ESTIMATED_TAU = "estimated_tau_s"
TAU_MINIMUM_SIGNAL_TO_NOISE = 0.5
"""Least calcium/noise standard deviation ratio of a trace whose decay is estimated (silent and
few-event cells fall below it)."""
STRUCTURAL_SUFFIX = "_channel_2"
"""cindra's suffix of the structural (second) channel's trace files."""


class ExtractionGraph(NamedTuple):
    """Lazy outputs of one plane's functional channel (float32 dask arrays; nothing computed).

    Attributes
    ----------
    cell_fluorescence, neuropil_fluorescence : (n, T), chunks (roi_chunk, T).
    neuropil_coefficient : (n,), chunks (roi_chunk,), the c of F − c·Fneu of every ROI.
    subtracted_fluorescence, spikes : (n, T), chunks (roi_chunk, T); None when spikes are not
        extracted (the stored arrays are then all zeros).
    skewness : (n,) one chunk, skewness of F − c·Fneu.
    cell_classification : (n, 2) one chunk, [is_cell (0/1), probability] (the classifier's, or the given evaluation).
    estimated_tau_s : (n,), chunks (roi_chunk,), each ROI's indicator decay estimated from its
        subtracted fluorescence, s (NaN: not estimated; all NaN when spikes are not extracted).
    delta_f_over_f : (n, T), chunks (roi_chunk, T), dF/F of F − c·Fneu (see `deconvolution_graph`).
    """

    cell_fluorescence: Any
    neuropil_fluorescence: Any
    neuropil_coefficient: Any
    subtracted_fluorescence: Any | None
    spikes: Any | None
    skewness: Any
    cell_classification: Any
    estimated_tau_s: Any
    delta_f_over_f: Any


class DeconvolutionGraph(NamedTuple):
    """Lazy outputs of `deconvolution_graph` (float32 dask arrays; nothing computed).

    Attributes
    ----------
    neuropil_coefficient : (n,), chunks (roi_chunk,), c of every ROI.
    skewness : (n,), chunks (roi_chunk,), skewness of F − c·Fneu.
    subtracted_fluorescence, spikes : (n, T), chunks (roi_chunk, T); None when spikes are not extracted.
    delta_f_over_f : (n, T), chunks (roi_chunk, T), (F_c − F0) / F0 of F_c = F − c·Fneu with F0 its
        per-ROI baseline (`cindra_dask.extraction.baseline.neuropil_corrected_delta_f_over_f`);
        computed whether or not spikes are extracted.
    """

    neuropil_coefficient: Any
    skewness: Any
    subtracted_fluorescence: Any | None
    spikes: Any | None
    delta_f_over_f: Any


class StructuralGraph(NamedTuple):
    """Lazy outputs of a structural channel 2 (float32 dask arrays; nothing computed).

    Attributes
    ----------
    cell_fluorescence, neuropil_fluorescence : (n, T), chunks (roi_chunk, T): channel-2 traces
        through the functional channel's masks (None without ROIs).
    cell_colocalization : (n, 2) one chunk, [colocalized (0/1), p] (None without ROIs).
    corrected_structural_mean_image : (Ly, Lx) one chunk, channel-2 mean minus bleed-through.
    """

    cell_fluorescence: Any | None
    neuropil_fluorescence: Any | None
    cell_colocalization: Any | None
    corrected_structural_mean_image: Any


# ---------------------------------------------------------------------------------------------
# block functions (run inside tasks)
# ---------------------------------------------------------------------------------------------


def _meta(ndim: int) -> np.ndarray:
    """Empty float32 array of ``ndim`` dimensions: the ``meta`` of a block function's output (never call kernels to infer it)."""
    return np.empty((0,) * ndim, TRACE_DTYPE)


def _trace_block(frames: np.ndarray, masks: ExtractionMasks) -> np.ndarray:
    """(2, n, chunk_T) float32 [cell; neuropil] fluorescence of one frame chunk."""
    traces = extract_traces(frames, masks=masks)
    return np.stack([traces.cell_fluorescence, traces.neuropil_fluorescence])


def _corrected_block(cell_fluorescence: np.ndarray, neuropil_fluorescence: np.ndarray, neuropil_coefficient: np.ndarray) -> np.ndarray:
    """(r, T) float32 F − c·Fneu of one ROI chunk, c (r,)."""
    return subtract_neuropil(cell_fluorescence, neuropil_fluorescence, neuropil_coefficient=neuropil_coefficient)


def _delta_f_over_f_block(cell_fluorescence: np.ndarray, neuropil_fluorescence: np.ndarray, neuropil_coefficient: np.ndarray, **baseline_options: Any) -> np.ndarray:
    """(r, T) float32 dF/F of F − c·Fneu of one ROI chunk, c (r,)."""
    return neuropil_corrected_delta_f_over_f(cell_fluorescence, neuropil_fluorescence, neuropil_coefficient=neuropil_coefficient, **baseline_options)


def _skewness_block(cell_fluorescence: np.ndarray, neuropil_fluorescence: np.ndarray, neuropil_coefficient: np.ndarray) -> np.ndarray:
    """(r,) float32 skewness of F − c·Fneu of one ROI chunk, c (r,)."""
    return neuropil_corrected_skewness(cell_fluorescence, neuropil_fluorescence, neuropil_coefficient=neuropil_coefficient)


def _constant_baseline_block(traces: np.ndarray, constant_baseline: np.ndarray, **baseline_options: Any) -> np.ndarray:
    """`subtract_baseline` with the plane's global ``constant`` baseline (a 0-d array)."""
    return subtract_baseline(traces, constant_baseline=float(constant_baseline), **baseline_options)


def _spike_block(traces: np.ndarray, *, tau_s: float, frame_rate_hz: float, minimum_spike_noise_multiple: float, rise_time_s: float) -> np.ndarray:
    """(r, T) float32 OASIS spikes of one ROI chunk, moved ``rise_time_s`` earlier."""
    spikes = deconvolve_oasis(traces, tau_s=tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=minimum_spike_noise_multiple).spikes
    return advance_spikes(spikes, rise_time_s=rise_time_s, frame_rate_hz=frame_rate_hz) if rise_time_s > 0 else spikes


def _classification_block(skewness: np.ndarray, classifier: CellClassifier, *, shape_features: dict[str, np.ndarray], threshold: float) -> np.ndarray:
    """(n, 2) float32 [is_cell, probability] of the fitted classifier."""
    return classify({**shape_features, SKEWNESS: skewness}, classifier=classifier, threshold=threshold)


def _colocalization_block(functional_mean_image: np.ndarray, structural_mean_image: np.ndarray, masks: ExtractionMasks, *, colocalization_threshold: float) -> np.ndarray:
    """(n, 2) float32 `structural_colocalization` flags and probabilities."""
    return structural_colocalization(functional_mean_image, structural_mean_image, masks=masks, colocalization_threshold=colocalization_threshold).cell_colocalization


# ---------------------------------------------------------------------------------------------
# graph builders (lazy, pure)
# ---------------------------------------------------------------------------------------------


def trace_roi_chunk(*, frame_count: int, roi_count: int, configuration: SingleRecordingConfiguration | MultiRecordingConfiguration) -> int:
    """ROIs per (roi_chunk, T) trace chunk of n = ``roi_count`` ROIs: `roi_chunk_size` within
    ``runtime.max_chunk_memory``, at most ``signal_extraction.batch_size`` and n (at least 1)."""
    return roi_chunk_size(frame_count=frame_count, roi_count=roi_count, max_chunk_bytes=configuration.runtime.max_chunk_bytes, upper_bound=configuration.signal_extraction.batch_size)


def extraction_masks(rois: RaggedRois, *, frame_shape: tuple[int, int], roi_radii_px: np.ndarray, signal_extraction: SignalExtractionSettings) -> Any:
    """One delayed `ExtractionMasks` of the plane.

    Chunking: a single task; every frame task depends on its key, so a worker fetches the masks
    once and reuses them for all its chunks (they are never embedded in the tasks).
    """
    import dask

    return dask.delayed(build_extraction_masks, pure=True)(
        rois,
        frame_shape=tuple(frame_shape),
        roi_radii_px=np.asarray(roi_radii_px, np.float32),
        allow_overlap=signal_extraction.allow_overlap,
        extract_neuropil=signal_extraction.extract_neuropil,
        cell_probability_percentile=signal_extraction.cell_probability_percentile,
        inner_neuropil_border_radius_px=signal_extraction.inner_neuropil_border_radius,
        minimum_neuropil_pixels=signal_extraction.minimum_neuropil_pixels,
    )


def masked_traces(frames: Any, masks: Any, *, roi_count: int, roi_chunk: int, max_chunk_bytes: int) -> Any:
    """Cell and neuropil fluorescence of every ROI, rechunked to whole-time ROI blocks.

    Parameters
    ----------
    frames : (T, Ly, Lx) dask array of registered frames (any real dtype).
    masks : delayed `ExtractionMasks` with n rows (`extraction_masks`).
    roi_count : n.
    roi_chunk : ROIs per output chunk.
    max_chunk_bytes : memory budget of one intermediate block of the rechunk.

    Returns
    -------
    (2, n, T) float32 dask array [cell; neuropil], chunks (1, roi_chunk, T).

    Chunking: one task per frame chunk (spatial chunks are concatenated into whole frames) gives
    (2, n, chunk_T); the chunks are concatenated along t and rechunked once to (1, roi_chunk, T).
    """
    import dask.array as da

    per_frame_chunk = da.blockwise(
        _trace_block,
        "cnt",
        frames,
        "tyx",
        masks,
        None,
        new_axes={"c": 2, "n": roi_count},
        concatenate=True,
        token="masked-traces",
        dtype=TRACE_DTYPE,
        meta=_meta(3),
    )
    frame_count = frames.shape[0]
    block_limit = max(max_chunk_bytes, roi_chunk * frame_count * TRACE_DTYPE.itemsize)
    return per_frame_chunk.rechunk((1, roi_chunk, frame_count), method="tasks", block_size_limit=block_limit)


def deconvolution_graph(
    cell_fluorescence: Any,
    neuropil_fluorescence: Any,
    *,
    spike_deconvolution: SpikeDeconvolutionSettings,
    tau_s: float,
    frame_rate_hz: float,
) -> DeconvolutionGraph:
    """Neuropil coefficients, skewness, baseline-subtracted fluorescence and OASIS spikes over ROI chunks.

    Parameters
    ----------
    cell_fluorescence, neuropil_fluorescence : (n, T) float32 dask arrays, chunks (roi_chunk, T).
    spike_deconvolution : neuropil, baseline and OASIS options (``extract_spikes`` False gives None
        subtracted fluorescence and spikes).
    tau_s : indicator decay (``main.tau``), s.
    frame_rate_hz : per-plane sampling rate.

    Returns
    -------
    `DeconvolutionGraph` of float32 dask arrays.

    Chunking: every step is one task per ROI chunk; the ``constant`` baseline adds a reduction of
    per-chunk minima to one scalar that every chunk task receives (cindra's global minimum; dF/F's
    ``constant`` baseline is per ROI and needs no reduction).
    """
    import dask.array as da

    if spike_deconvolution.estimate_neuropil_coefficient:
        coefficients = da.map_blocks(
            estimate_neuropil_coefficients,
            cell_fluorescence,
            neuropil_fluorescence,
            initial_coefficient=spike_deconvolution.neuropil_coefficient,
            quiet_fraction=spike_deconvolution.neuropil_quiet_fraction,
            drop_axis=1,
            dtype=TRACE_DTYPE,
            meta=_meta(1),
        )
    else:
        coefficients = da.full(cell_fluorescence.shape[:1], spike_deconvolution.neuropil_coefficient, chunks=cell_fluorescence.chunks[:1], dtype=TRACE_DTYPE)
    skewness = da.blockwise(_skewness_block, "n", cell_fluorescence, "nt", neuropil_fluorescence, "nt", coefficients, "n", concatenate=True, dtype=TRACE_DTYPE, meta=_meta(1))
    baseline_options = {
        "baseline_method": spike_deconvolution.baseline_method.value,
        "baseline_window_s": spike_deconvolution.baseline_window,
        "baseline_sigma_frames": spike_deconvolution.baseline_sigma,
        "baseline_percentile": spike_deconvolution.baseline_percentile,
        "frame_rate_hz": frame_rate_hz,
    }
    delta_f_over_f = da.blockwise(
        _delta_f_over_f_block, "nt", cell_fluorescence, "nt", neuropil_fluorescence, "nt", coefficients, "n", dtype=TRACE_DTYPE, meta=_meta(2), **baseline_options
    )
    if not spike_deconvolution.extract_spikes:
        return DeconvolutionGraph(coefficients, skewness, None, None, delta_f_over_f)
    corrected = da.blockwise(_corrected_block, "nt", cell_fluorescence, "nt", neuropil_fluorescence, "nt", coefficients, "n", dtype=TRACE_DTYPE, meta=_meta(2))
    if spike_deconvolution.baseline_method is BaselineMethod.CONSTANT:
        global_minimum = corrected.map_blocks(smoothed_minima, baseline_sigma_frames=spike_deconvolution.baseline_sigma, drop_axis=1, dtype=TRACE_DTYPE, meta=_meta(1)).min()
        subtracted = da.map_blocks(_constant_baseline_block, corrected, global_minimum, dtype=TRACE_DTYPE, meta=_meta(2), **baseline_options)
    else:
        subtracted = corrected.map_blocks(subtract_baseline, dtype=TRACE_DTYPE, meta=_meta(2), **baseline_options)
    spikes = subtracted.map_blocks(
        _spike_block,
        tau_s=tau_s,
        frame_rate_hz=frame_rate_hz,
        minimum_spike_noise_multiple=spike_deconvolution.minimum_spike_size,
        rise_time_s=spike_deconvolution.rise_time,
        dtype=TRACE_DTYPE,
        meta=_meta(2),
    )
    return DeconvolutionGraph(coefficients, skewness, subtracted, spikes, delta_f_over_f)


def extraction_graph(
    frames: Any,
    masks: Any,
    *,
    roi_count: int,
    shape_features: dict[str, np.ndarray],
    evaluation: np.ndarray | None,
    configuration: SingleRecordingConfiguration,
    frame_rate_hz: float,
) -> ExtractionGraph:
    """The functional channel's extraction of one plane, lazily.

    Parameters
    ----------
    frames : (T, Ly, Lx) dask array of the functional channel's registered frames.
    masks : the plane's delayed `ExtractionMasks` (`extraction_masks`), n ≥ 1 rows.
    roi_count : n.
    shape_features : (n,) ``normalized_pixel_count`` and ``compactness`` (ROI statistics).
    evaluation : (n, 2) float32 [is_cell, probability] of the source extraction's own evaluation
        (CNMF: `evaluation_classification`), the classification as it is; None: the fitted classifier's.
    configuration : ``signal_extraction``, ``spike_deconvolution``, ``main.tau``,
        ``main.custom_classifier_path`` and ``runtime.max_chunk_memory`` are used.
    frame_rate_hz : per-plane sampling rate.

    Chunking: see `masked_traces` (frame chunks → (roi_chunk, T) blocks, roi_chunk from
    `trace_roi_chunk`) and `deconvolution_graph` (one task per ROI chunk); the decay fit is one more
    task per ROI chunk of the subtracted fluorescence. Skewness is gathered into one chunk for the
    single classification task.
    """
    import dask
    import dask.array as da

    roi_chunk = trace_roi_chunk(frame_count=frames.shape[0], roi_count=roi_count, configuration=configuration)
    traces = masked_traces(frames, masks, roi_count=roi_count, roi_chunk=roi_chunk, max_chunk_bytes=configuration.runtime.max_chunk_bytes)
    cell_fluorescence, neuropil_fluorescence = traces[0], traces[1]
    deconvolution = deconvolution_graph(
        cell_fluorescence,
        neuropil_fluorescence,
        spike_deconvolution=configuration.spike_deconvolution,
        tau_s=configuration.main.tau,
        frame_rate_hz=frame_rate_hz,
    )
    skewness = deconvolution.skewness.rechunk(roi_count)
    if evaluation is not None:
        classification = da.from_array(np.asarray(evaluation, TRACE_DTYPE), chunks=(roi_count, 2))
    else:
        # the fit (scikit-learn: ≈ 0.8 s in a fresh worker) depends on nothing, so with a high priority
        # it runs beside the first frame reads instead of at the end, after every trace
        with dask.annotate(priority=100):
            classifier = dask.delayed(load_classifier, pure=True)(configuration.main.custom_classifier_path)
        classification = da.blockwise(
            _classification_block,
            "nc",
            skewness,
            "n",
            classifier,
            None,
            new_axes={"c": 2},
            shape_features={name: np.asarray(shape_features[name], np.float32) for name in SHAPE_FEATURES},
            threshold=configuration.signal_extraction.classification_threshold,
            dtype=TRACE_DTYPE,
            meta=_meta(2),
        )
    if deconvolution.subtracted_fluorescence is None:
        estimated_tau = da.full((roi_count,), np.nan, chunks=cell_fluorescence.chunks[:1], dtype=TRACE_DTYPE)
    else:
        estimated_tau = deconvolution.subtracted_fluorescence.map_blocks(
            estimate_decay_time_constants, frame_rate_hz=frame_rate_hz, minimum_signal_to_noise=TAU_MINIMUM_SIGNAL_TO_NOISE, drop_axis=1, dtype=TRACE_DTYPE, meta=_meta(1)
        )
    return ExtractionGraph(
        cell_fluorescence,
        neuropil_fluorescence,
        deconvolution.neuropil_coefficient,
        deconvolution.subtracted_fluorescence,
        deconvolution.spikes,
        skewness,
        classification,
        estimated_tau,
        deconvolution.delta_f_over_f,
    )


def good_frame_mean(frames: Any, good_frames: np.ndarray) -> Any:
    """(Ly, Lx) float32 dask array (one chunk): mean of the good frames.

    Chunking: one partial sum per frame chunk, then a tree reduction.
    """
    import dask.array as da

    good = da.from_array(np.asarray(good_frames, bool), chunks=(frames.chunks[0],))
    partial_sums = da.blockwise(good_frame_sum, "tyx", frames, "tyx", good, "t", adjust_chunks={"t": 1}, dtype=np.float64, meta=np.empty((0, 0, 0), np.float64), concatenate=True)
    return (partial_sums.sum(axis=0) / max(1, int(np.count_nonzero(good_frames)))).astype(np.float32).rechunk(-1)


def structural_graph(
    functional_frames: Any,
    structural_frames: Any,
    masks: Any,
    colocalization_masks: Any,
    *,
    roi_count: int,
    good_frames: np.ndarray,
    configuration: SingleRecordingConfiguration,
) -> StructuralGraph:
    """Channel-2 traces through the functional masks and intensity colocalization (cindra §3.7).

    Parameters
    ----------
    functional_frames, structural_frames : (T, Ly, Lx) dask arrays of the registered channels.
    masks : the plane's delayed `ExtractionMasks` (None when n = 0).
    colocalization_masks : delayed `ExtractionMasks` with neuropil rows, whose neuropil means give
        the "outside" intensities (``masks`` itself unless ``extract_neuropil`` is False).
    roi_count : n.
    good_frames : (T,) bool frames entering the mean images (registration's bad frames excluded).
    configuration : ``signal_extraction`` and ``runtime.max_chunk_memory`` are used.

    Chunking: traces as in `masked_traces`; the mean images reuse the frame chunks that the trace
    tasks read (same keys) and reduce them to two (Ly, Lx) images for the colocalization tasks.
    """
    functional_mean, structural_mean = good_frame_mean(functional_frames, good_frames), good_frame_mean(structural_frames, good_frames)
    corrected = functional_mean.map_blocks(correct_bleedthrough, structural_mean, dtype=TRACE_DTYPE, meta=_meta(2))
    if roi_count == 0:
        return StructuralGraph(None, None, None, corrected)
    roi_chunk = trace_roi_chunk(frame_count=structural_frames.shape[0], roi_count=roi_count, configuration=configuration)
    traces = masked_traces(structural_frames, masks, roi_count=roi_count, roi_chunk=roi_chunk, max_chunk_bytes=configuration.runtime.max_chunk_bytes)
    colocalization = functional_mean.map_blocks(
        _colocalization_block,
        structural_mean,
        colocalization_masks,
        colocalization_threshold=configuration.signal_extraction.colocalization_threshold,
        chunks=((roi_count,), (2,)),
        dtype=TRACE_DTYPE,
        meta=_meta(2),
    )
    return StructuralGraph(traces[0], traces[1], colocalization, corrected)


# ---------------------------------------------------------------------------------------------
# the step
# ---------------------------------------------------------------------------------------------


def evaluation_classification(store: Any, *, plane: int) -> np.ndarray:
    """(n, 2) float32 [accepted, cell probability] of each ROI's CNMF component (``rois/source_component`` rows of
    ``cnmf/accepted`` and ``cnmf/cell_probability``, `cindra_dask.cnmf.evaluation.acceptance_probability`)."""
    component = store.read(f"{stage_path(plane, ROIS)}/source_component").astype(np.int64)
    accepted, probability = store.read(f"{stage_path(plane, CNMF)}/accepted").astype(bool), store.read(f"{stage_path(plane, CNMF)}/cell_probability")
    return np.stack([accepted[component], probability[component]], axis=1).astype(TRACE_DTYPE)


def plan_extraction_step(context: RecordingContext, *, plane: int) -> StepPlan:
    """Plan of the extraction step of one plane: masks, traces, skewness, classification, baseline, OASIS.

    Reads ``plane_k/registered/channel_c`` (c = the functional channel), ``plane_k/rois/*``
    (masks, ``radius_px``, ``normalized_pixel_count``, ``compactness``) and, with a structural
    channel 2, ``plane_k/registration/bad_frames``. Writes ``plane_k/extraction/{cell_fluorescence,
    neuropil_fluorescence, subtracted_fluorescence, spikes, delta_f_over_f}`` (n, T) f4 chunks (roi_chunk, T),
    ``neuropil_coefficient`` and ``estimated_tau_s`` (n,) f4 chunks (roi_chunk,), ``cell_classification``
    (n, 2) f4 and ``plane_k/rois/skewness`` (n,) f4; then, from the stored ``estimated_tau_s`` and
    classification, the attributes of ``estimated_tau_s``: ``recording_tau_s`` (median over cells,
    s, null when none), ``cell_count`` (cells in it) and ``configured_tau_s`` (``main.tau``); with a
    structural channel 2 also ``{cell,neuropil}_fluorescence_channel_2`` (n, T), ``cell_colocalization`` (n, 2) and
    ``corrected_structural_mean_image`` (Ly, Lx). ``spike_deconvolution.extract_spikes`` False
    leaves ``subtracted_fluorescence`` and ``spikes`` all zeros; zero ROIs give (0, T) arrays.
    Two functional channels: only the first is extracted. Idempotent (every output is replaced).
    """
    import dask.array as da
    from dask import is_dask_collection

    store, configuration = context.store, context.configuration
    main = configuration.main
    functional_channel = 0 if main.first_channel_functional else 1
    structural = main.two_channels and not (main.first_channel_functional and main.second_channel_functional)
    frames = da.from_zarr(store.array(frames_path(plane, functional_channel, kind="registered")))
    frame_count, frame_shape = frames.shape[0], frames.shape[1:]
    rois_group, extraction_group = stage_path(plane, ROIS), stage_path(plane, EXTRACTION)
    rois = store.read_rois(rois_group)
    roi_count = rois.count
    roi_chunk = trace_roi_chunk(frame_count=frame_count, roi_count=roi_count, configuration=configuration)

    def create(array_path: str, shape: tuple[int, ...], chunks: tuple[int, ...], dimension_names: tuple[str, ...] | None = None) -> Any:
        return store.create_array(array_path, shape=shape, dtype=TRACE_DTYPE, chunks=chunks, dimension_names=dimension_names)

    trace_names = [CELL_FLUORESCENCE, NEUROPIL_FLUORESCENCE, SUBTRACTED_FLUORESCENCE, SPIKES, DELTA_F_OVER_F]
    if structural:
        trace_names += [CELL_FLUORESCENCE + STRUCTURAL_SUFFIX, NEUROPIL_FLUORESCENCE + STRUCTURAL_SUFFIX]
    traces = {name: create(f"{extraction_group}/{name}", (roi_count, frame_count), (roi_chunk, frame_count), TRACE_DIMENSIONS) for name in trace_names}
    skewness_target = create(f"{rois_group}/{SKEWNESS}", (roi_count,), (roi_count,))
    coefficient_target = create(f"{extraction_group}/{NEUROPIL_COEFFICIENT}", (roi_count,), (roi_chunk,), TRACE_DIMENSIONS[:1])
    tau_target = create(f"{extraction_group}/{ESTIMATED_TAU}", (roi_count,), (roi_chunk,), TRACE_DIMENSIONS[:1])
    classification_target = create(f"{extraction_group}/{CELL_CLASSIFICATION}", (roi_count, 2), (roi_count, 2))
    writes: list[tuple[Any, Any]] = []  # (source, target); zero-filled targets stay zero
    masks = None
    if roi_count:
        masks = extraction_masks(rois, frame_shape=frame_shape, roi_radii_px=store.read(f"{rois_group}/{ROI_RADIUS}"), signal_extraction=configuration.signal_extraction)
        graph = extraction_graph(
            frames,
            masks,
            roi_count=roi_count,
            shape_features={name: store.read(f"{rois_group}/{name}") for name in SHAPE_FEATURES},
            evaluation=None if configuration.source_extraction.method is SourceExtractionMethod.SPARSE else evaluation_classification(store, plane=plane),
            configuration=configuration,
            frame_rate_hz=context.acquisition.plane_frame_rate_hz,
        )
        writes += [(graph.cell_fluorescence, traces[CELL_FLUORESCENCE]), (graph.neuropil_fluorescence, traces[NEUROPIL_FLUORESCENCE]), (graph.neuropil_coefficient, coefficient_target)]
        writes += [(graph.skewness, skewness_target), (graph.cell_classification, classification_target), (graph.estimated_tau_s, tau_target)]
        writes.append((graph.delta_f_over_f, traces[DELTA_F_OVER_F]))
        if graph.spikes is not None:
            writes += [(graph.subtracted_fluorescence, traces[SUBTRACTED_FLUORESCENCE]), (graph.spikes, traces[SPIKES])]
    if structural:
        structural_frames = da.from_zarr(store.array(frames_path(plane, 1 - functional_channel, kind="registered")))
        good_frames = ~store.read(f"{stage_path(plane, REGISTRATION)}/bad_frames").astype(bool)
        colocalization_target = create(f"{extraction_group}/{CELL_COLOCALIZATION}", (roi_count, 2), (roi_count, 2))
        image_target = create(f"{extraction_group}/{CORRECTED_STRUCTURAL_MEAN_IMAGE}", frame_shape, frame_shape, ("y", "x"))
        colocalization_masks = masks
        if roi_count and not configuration.signal_extraction.extract_neuropil:
            with_neuropil = configuration.signal_extraction.model_copy(update={"extract_neuropil": True})
            colocalization_masks = extraction_masks(rois, frame_shape=frame_shape, roi_radii_px=store.read(f"{rois_group}/{ROI_RADIUS}"), signal_extraction=with_neuropil)
        channel_2 = structural_graph(frames, structural_frames, masks, colocalization_masks, roi_count=roi_count, good_frames=good_frames, configuration=configuration)
        writes.append((channel_2.corrected_structural_mean_image, image_target))
        if roi_count:
            writes += [(channel_2.cell_fluorescence, traces[CELL_FLUORESCENCE + STRUCTURAL_SUFFIX]), (channel_2.neuropil_fluorescence, traces[NEUROPIL_FLUORESCENCE + STRUCTURAL_SUFFIX])]
            writes.append((channel_2.cell_colocalization, colocalization_target))
    if writes:
        sources, targets = zip(*writes)
        stored = da.store(list(sources), list(targets), lock=False, compute=False)
        yield Compute([stored] if is_dask_collection(stored) else list(stored), f"extraction plane {plane}")
    decay = recording_decay_time_constant(tau_target[...], is_cell=classification_target[...][:, 0] > 0.5)
    tau_target.attrs.update({"recording_tau_s": decay.tau_s, "cell_count": decay.cell_count, "configured_tau_s": main.tau})
