"""The Zarr layout of a recording store (DESIGN §3): the one place that knows paths and names.

This docstring is the store contract: every group, array and attribute the code writes. Shapes use
n ROIs, T frames per plane, (Ly, Lx) a plane's frame, (vh, vw) its valid crop, k principal
components, s sampled frames, Σ the ROI pixels over all ROIs; "ragged masks" are ``pixel_offsets``
(n+1,) i8 (ROI i owns entries [offsets[i], offsets[i+1])), ``ypix``, ``xpix`` (Σ,) i4 and ``lam``
(Σ,) f4, dims (roi_boundary,), (pixel,); "dims" are the arrays' ``dimension_names``, which every
array carries (`ARRAY_DIMENSIONS`, `dimension_names_for`): names unique within an array, one size
per name within a group, so ``xarray.open_zarr(store, group=…)`` opens every group; a per-ROI array
(n,) is (roi,), per-pixel (Σ,) is (pixel,), unless said otherwise. Stores written before every
array had them get them from the next `cindra-dask run` that finishes, even one that skips every
step (`RecordingStore.add_missing_dimension_names`: metadata only, no chunk rewritten). Planes and
channels are numbered from 0 (``plane_k`` is a virtual plane in MROI mode).

OME-NGFF 0.5: every group holding arrays with dims (t, y, x) (the movies ``raw/``, ``registered/``)
or (y, x) (``reference_image``, the ``detection/`` images, ``corrected_structural_mean_image``,
``combined/detection/``) carries the group attribute ``ome`` = {``version``: "0.5",
``multiscales``: one entry per such array, named after it, with one dataset whose ``path`` is the
array's name (the arrays stay where they are; readers that show one image show the first:
``channel_0``, ``mean_image``, ``reference_image``)}. Axes: t (time, second), y and x (space,
micrometer); ``coordinateTransformations`` one scale (frame interval s = 1 / per-plane rate, pixel
size µm, pixel size µm), or (pixel size, pixel size) for an image. The pixel size is the run's
``metadata.pixel_size_um``; unknown (None): scale 1.0 and no unit on y and x (pixels). Written by
the runner at the end of every single-recording run that finishes (`RecordingStore.write_ome_metadata`),
after the arrays, so a rerun with a new pixel size updates it while every step is skipped; other
groups carry no ``ome``.

Layout of ``<output_path>/<recording_name>.zarr`` (Zarr v3, Blosc-zstd):

``/`` attrs
    ``acquisition`` (acquisition parameters), ``configuration`` (YAML text of the run),
    ``frames_per_plane``, ``planes`` (one record per virtual plane: index, physical_plane,
    row_start, row_stop, y_offset, x_offset), ``bad_frame_indices`` (the user's ``bad_frames.npy``),
    ``phases`` (phase records, see :class:`PhaseRecord`, each with the package ``versions``; keys
    ``ingest``, ``registration/plane_k``, ``detection/plane_k`` or ``cnmf/plane_k``, ``extraction/plane_k``, ``miniscope/plane_k``, ``combine``
    and ``multi_recording/<dataset>/{discover, extract}``), ``removed_intermediates`` (group →
    UTC time of `cindra-dask clean`); the input: ``input_format`` (``tiff`` | ``bruker`` | ``hdf5``
    | ``nwb`` | ``zarr`` | ``avi``; absent in stores ingested before HDF5 input: TIFF; ScanImage TIFFs are
    ``tiff``) with the files, by `INPUT_FILE_KINDS`: ``tiff_directory``, ``tiff_files`` (names,
    ingest order: natural order, or a Bruker XML's acquisition order); ``hdf5_directory``,
    ``hdf5_files``, ``hdf5_dataset`` (for NWB the series' data path, e.g.
    ``acquisition/TwoPhotonSeries/data``, frames stored (T, x, y)); or ``zarr_directory``,
    ``zarr_files`` (store names), ``zarr_dataset`` (the array's path, "" for a store that is the
    array); or ``avi_directory``, ``avi_files`` (Miniscope AVI names, natural order), ``avi_dataset``
    (""); a store re-ingested from another kind holds the other kinds' keys as null.
    ``acquisition_source`` (absent in stores ingested before it): where the acquisition came from and
    what was read, ``kind`` (``configuration`` | ``parameters_file`` | ``scanimage`` | ``bruker`` |
    ``nwb`` | ``miniscope``), ``file`` (the file read, null for the configuration), ``detail`` (e.g. ``SI 2016+,
    Software/Artist tags``), ``parameters`` (the acquisition it gives), ``read`` (the raw header/XML
    values behind them, e.g. ``SI.hRoiManager.scanFrameRate``, ``RoiGroups.imagingRoiGroup.rois``,
    ``fly_to_lines``, ``framePeriod``, ``micronsPerPixel``), ``metadata`` (the movie files' own
    metadata, same keys, when an explicit source was used beside them; else null) and
    ``disagreements`` (one line per field where the two differ).
``plane_k/raw/channel_c``
    ingested frames (T, Ly, Lx), source integer dtype, chunks (chunk_frames, Ly, Lx), dims (t, y, x);
    attrs ``physical_plane``, ``row_start``, ``row_stop``, ``y_offset``, ``x_offset``. The group
    ``plane_k/raw`` carries ``ome`` (OME-NGFF, one multiscale per channel).
``plane_k/registered/channel_c``
    motion-corrected frames, same shape, dtype, chunks and dims; ``plane_k/registered`` carries ``ome``.
``plane_k/registration/``
    ``reference_image`` (Ly, Lx) f4 dims (y, x); ``rigid_offsets`` (T, 2) f4 dims (t, axis) = (dy,
    dx) px: frame t shows the reference moved by +dy rows and +dx columns (registration moves it by
    −dy, −dx); ``rigid_correlations`` (T,) f4 dims (t,); ``bad_frames`` (T,) bool dims (t,);
    ``nonrigid_offsets`` (T, n_blocks, 2) f4 dims (t, block, axis) and ``nonrigid_correlations`` (T,
    n_blocks) f4 dims (t, block) (n_blocks 0 without nonrigid); ``block_centers`` (n_blocks, 2) f4 px
    dims (block, axis); both offset arrays carry the attr ``sign``. PC metrics (absent when
    ``registration_metric_principal_components`` is 0): ``pc_shift_metrics`` (k, 3) f4 px dims (pc,
    metric), attr ``columns`` = [rigid_px, nonrigid_mean_px, nonrigid_max_px]; ``pc_low_images``,
    ``pc_high_images`` (k, vh, vw) f4 dims (pc, valid_y, valid_x); ``pc_projections`` (s, k) f4 dims
    (sample, pc). ``ome`` (OME-NGFF, of ``reference_image``). Group attrs ``valid_y_range``,
    ``valid_x_range`` ([start, stop) of the crop every frame covers), ``alignment_channel``,
    ``bidirectional_offset_px``, ``bad_frame_count``, ``offsets_sign``.
``plane_k/detection/``
    ``mean_image``, ``enhanced_mean_image``, ``maximum_projection``, ``correlation_map`` (Ly, Lx) f4
    dims (y, x); ``ome`` (OME-NGFF, the four images).
``plane_k/rois/``
    ragged masks; ``centroids`` (n, 2) i4 (y, x) px dims (roi, axis); ``footprint`` (n,) i1 pyramid
    scale of the seed; ``detection_source`` (n,) i1: which detector found each ROI, 0 = activity
    (sparse detection only), 1 = anatomy (a soma of the mean image no activity ROI covers; mask and weights from the mean
    image), 2 = both (an activity ROI that a soma of the mean image confirms; mask and weights from
    the activity); all 0 unless ``roi_detection.anatomical`` is on. Statistics (n,): ``mean_radius``,
    ``baseline_mean_radius``, ``compactness``, ``solidity``, ``normalized_pixel_count``,
    ``radius_px``, ``aspect_ratio`` f4, ``pixel_count``, ``soma_pixel_count`` i8; per pixel (Σ,)
    bool: ``soma_mask``, ``overlap_mask``; ``skewness`` (n,) f4 (written by extraction). Group attrs
    ``diameter_px``, ``bin_size``, ``binned_frame_count``, ``functional_channel``,
    ``detection_exhausted``. With ``source_extraction.method: cnmf`` the ROIs are CNMF's components,
    accepted and rejected, most probable first, less those overlap removal drops (masks: footprint
    pixels above ``footprint_threshold`` of its maximum, ``lam`` the footprint), ``footprint`` is −1, and ``source_component`` (n,) i8 is each ROI's row in ``cnmf/``;
    ``bin_size`` and ``binned_frame_count`` describe the binning of the detection images only.
``plane_k/cnmf/``
    written by the CNMF step only: ragged masks of every component K (the whole non-negative
    footprint; unit L2 norm), ``snr`` (K,) f4 (event exceptionality), ``r_values`` (K,) f4 (spatial
    consistency), ``accepted`` (K,) bool, ``cell_probability`` (K,) f4 (the logistic of the acceptance
    margin, ≥ 0.5 exactly when accepted: `cindra_dask.cnmf.evaluation`), all dims (roi,) (a component is a row); ``temporal`` (K, T)
    f4 (the activity C refitted over the field) and ``raw_traces`` (K, T) f4 (C plus each
    component's share of the residual), dims (roi, t); ``background_spatial`` (nb, Ly, Lx) f4 dims (component, y, x) (0 outside the valid crop) and
    ``background_temporal`` (nb, T) f4 dims (component, t). With ``method: cnmf_e`` nb = 0 and the
    ring-model background is stored instead (B_p(t) = b0_p + Σ_q W_pq (Y_q(t) − (A·C)_q(t) − b0_q)):
    ``background_mean`` (Ly, Lx) f4 dims (y, x) b0 (0 outside the valid crop), and W as a CSR matrix
    over the Ly·Lx frame pixels (row-major): ``ring_weight_offsets`` (Ly·Lx + 1,) i8 dims
    (pixel_boundary,) (row p's entries are [offsets[p], offsets[p+1])), ``ring_weight_pixels`` (Σ,)
    i4 and ``ring_weights`` (Σ,) f4 dims (ring_entry,). Group attrs ``patch_count``,
    ``merged_group_count``, ``event_frames``.
``plane_k/extraction/``
    ``cell_fluorescence``, ``neuropil_fluorescence``, ``subtracted_fluorescence``, ``spikes`` (n, T)
    f4 chunks (roi_chunk, T) dims (roi, t) (``subtracted_fluorescence`` and ``spikes`` all zeros
    when ``spike_deconvolution.extract_spikes`` is off); ``neuropil_coefficient`` (n,) f4 chunks
    (roi_chunk,) dims (roi,): the c of F − c·Fneu (fixed or estimated per ROI);
    ``delta_f_over_f`` (n, T) f4 chunks (roi_chunk, T), like the other traces: each ROI's dF/F,
    (F_c − F0) / F0 with F_c = ``cell_fluorescence`` − ``neuropil_coefficient`` ×
    ``neuropil_fluorescence`` and F0 the ``spike_deconvolution.baseline_method`` baseline of F_c taken
    per ROI (``maximin``: the baseline ``subtracted_fluorescence`` removes; ``constant``: the ROI's
    minimum of its smoothed F_c, not cindra's one scalar over all ROIs; ``constant_percentile``: the
    ROI's percentile); dimensionless, NaN where F0 ≤ 0; written whether or not spikes are extracted.
    Stores processed before it existed lack it (rerun the process phase with ``--force``).
    ``estimated_tau_s`` (n,) f4 chunks (roi_chunk,) dims (roi,): each ROI's indicator decay time
    constant estimated from its ``subtracted_fluorescence``, s (NaN: not estimated), with the attrs
    ``recording_tau_s`` (median over the ROIs classified as cells, s; null when none), ``cell_count``
    (ROIs in that median) and ``configured_tau_s`` (the run's ``main.tau``, s).
    ``cell_classification`` (n, 2) f4 [is_cell 0/1, probability] dims (roi, column) (with CNMF, the
    component's [``cnmf/accepted``, ``cnmf/cell_probability``], not the classifier's) may carry the attr
    ``curation_history``: one entry per `cindra-dask import-curation` that changed it, or per change
    of labels in `cindra-dask view` (``imported`` UTC time of the change, ``source`` the file read or
    ``"cindra-dask view"``, ``rows`` changed, ``previous`` their [is_cell, probability] before; the
    entry is written before the rows, `RecordingStore.update_rows`).
    With a structural channel 2: ``cell_fluorescence_channel_2``, ``neuropil_fluorescence_channel_2``
    (n, T) f4 like the traces, ``cell_colocalization`` (n, 2) f4 [colocalized 0/1, probability] dims
    (roi, column), ``corrected_structural_mean_image`` (Ly, Lx) f4 dims (y, x) (channel-2 mean minus
    bleed-through; then the group carries ``ome``, of this image).
``plane_k/miniscope/``
    written by the miniscope step (``miniscope_analysis.enabled``, ``method: cnmf_e``), one row per ROI
    (the ROIs' components, ``rois/source_component``): ``footprint_background`` (n,) f4 dims (roi,)
    b_k = a_kᵀ ``cnmf/background_mean`` (movie units); ``detrended_fluorescence`` (n, T) f4 the
    component's fluorescence b_k + ``cnmf/raw_traces`` after ``detrend_method``; ``delta_f_over_f``
    (n, T) f4 its dF/F (or dF/√F, ``df_over_f_method``; NaN where F0 ≤ 0); ``instantaneous_phase``
    (n, T) f4 radians, all dims (roi, t) chunks (roi_chunk, T); events as ragged rows:
    ``event_offsets`` (n+1,) i8 dims (roi_boundary,), ``event_frames`` (E,) i8 and
    ``event_amplitudes`` (E,) f4 (the derivative at the event, or its OASIS spike with
    ``event_method: deconvolution``, dF/F) dims (event,),
    ``event_noise_sigma`` (n,) f4 dims (roi,); ``spectrogram`` (n, W, F) f4 PSD, (dF/F)²/Hz, dims
    (roi, window, frequency) chunks (roi_chunk, W, F); ``spectrogram_times`` (W,) f8 s dims
    (window,); ``spectrogram_frequencies`` (F,) f8 Hz dims (frequency,); ``power_spectrum`` (n, F) f4
    dims (roi, frequency); ``dominant_frequency`` (n,) f4 Hz dims (roi,). Group attrs ``frame_rate_hz``,
    ``event_count``.
``combined/``
    the planes tiled into one canvas (Hc, Wc): ``detection/`` the same images pasted, dims (y, x),
    with ``ome``; ``rois/`` the same arrays concatenated over the included planes (masks and
    ``centroids`` moved to canvas coordinates) plus ``plane_index`` (n,) i4 dims (roi,);
    ``extraction/`` the same arrays concatenated, with the same dims (traces trimmed to the shortest
    plane, chunks (roi_chunk, T), dims (roi, t)), its
    ``cell_classification`` with its own ``curation_history``. Group attrs ``combined_height``,
    ``combined_width``, ``frame_count``, ``plane_frame_counts``, ``plane_y_offsets``,
    ``plane_x_offsets``, ``plane_heights``, ``plane_widths``, ``included_planes``, ``tau`` (s),
    ``sampling_rate`` (Hz per plane).
``multi_recording/<dataset>/``
    written in every tracked recording's store. ``rois/``: ragged masks of this recording's selected
    ROIs (canvas coordinates) with ``track_id`` (n,) i8 (−1 = untracked), ``track_confidence`` (n,)
    f4, ``source_roi_index`` (n,) i8 (row in ``combined/rois``), ``centroids`` (n, 2) i4 dims (roi,
    axis); ``deformation_forward``, ``deformation_backward`` (2, Hc, Wc) f4 px dims (axis, y, x);
    ``templates/``: ragged masks of every tracked cell (m rows, ordered by plane) back-projected into
    this recording, with ``template_track_id`` (m,) i8, ``track_confidence`` (m,) f4,
    ``recording_count`` (m,) i4, ``plane_index`` (m,) i4, ``centroids`` (m, 2) i4 dims (roi, axis),
    ``radius_px`` (m,) f4 and ``skewness`` (m,) f4 (written by extract), per template dims (roi,);
    ``extraction/``: ``cell_fluorescence``,
    ``neuropil_fluorescence``, ``subtracted_fluorescence``, ``spikes`` (m, T) f4 chunks (roi_chunk, T)
    dims (roi, t) and ``neuropil_coefficient`` (m,) f4 dims (roi,), one row per template. Group attrs
    ``recording_names``, ``recording_paths``, ``recording_index``, ``template_diameter_px``.

Beside the hierarchy: the manifest ``datapackage.json`` inside the store (`cindra_dask.manifest`: a
Frictionless data package with one resource per array, path, shape, dtype, chunks, dimension
names and a SHA-256 over the stored chunk bytes, plus the configuration, acquisition, versions,
phase records, ``total_duration_s`` and the ``history`` of resets and cleans), and the store's lock,
the file ``<recording_name>.zarr.lock`` next to the store (files inside a Zarr v3 hierarchy that are
not nodes make Zarr warn), and, for runs started with `cindra-dask submit`, the folder
``<recording_name>.zarr.runs/`` next to it with one ``<run_id>.json`` per submitted run (see
:class:`SubmittedRunRecord`; each run writes only its own file). Inputs are never opened for writing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple

import numpy as np

from cindra_dask.errors import OutputError
from cindra_dask.rois import RaggedRois

STORE_SUFFIX = ".zarr"
LOCK_SUFFIX = ".lock"
RUNS_SUFFIX = ".runs"
FRAME_DIMENSIONS = ("t", "y", "x")
"""Dimension names of a movie: frames, rows, columns."""
IMAGE_DIMENSIONS = ("y", "x")
"""Dimension names of a 2-D image of a plane (or of the combined canvas)."""
TRACE_DIMENSIONS = ("roi", "t")
"""Dimension names of per-ROI traces."""
ROI_DIMENSIONS = ("roi",)
"""Dimension names of a per-ROI (per-component, per-template) value."""
PIXEL_DIMENSIONS = ("pixel",)
"""Dimension names of a per-pixel value of ragged masks (Σ entries)."""
RAW = "raw"
REGISTERED = "registered"
REGISTRATION = "registration"
DETECTION = "detection"
ROIS = "rois"
CNMF = "cnmf"
EXTRACTION = "extraction"
MINISCOPE = "miniscope"
COMBINED = "combined"
MULTI_RECORDING = "multi_recording"
ROI_ARRAYS = ("pixel_offsets", "ypix", "xpix", "lam")
INPUT_FILE_KINDS = {"tiff": "tiff", "bruker": "tiff", "hdf5": "hdf5", "nwb": "hdf5", "zarr": "zarr", "avi": "avi"}
"""By ``input_format``: the prefix of the root attributes listing the input files (``<prefix>_directory``, ``<prefix>_files``, ``<prefix>_dataset``)."""


ARRAY_DIMENSIONS: dict[str, tuple[str, ...]] = {
    # ragged masks and their per-pixel flags
    "pixel_offsets": ("roi_boundary",),
    "ypix": PIXEL_DIMENSIONS,
    "xpix": PIXEL_DIMENSIONS,
    "lam": PIXEL_DIMENSIONS,
    "soma_mask": PIXEL_DIMENSIONS,
    "overlap_mask": PIXEL_DIMENSIONS,
    "centroids": ("roi", "axis"),
    # per-ROI values written outside `RecordingStore.write_rois`
    "skewness": ROI_DIMENSIONS,
    "source_component": ROI_DIMENSIONS,
    "plane_index": ROI_DIMENSIONS,
    "neuropil_coefficient": ROI_DIMENSIONS,
    "estimated_tau_s": ROI_DIMENSIONS,
    # registration
    "reference_image": IMAGE_DIMENSIONS,
    "rigid_offsets": ("t", "axis"),
    "rigid_correlations": ("t",),
    "bad_frames": ("t",),
    "nonrigid_offsets": ("t", "block", "axis"),
    "nonrigid_correlations": ("t", "block"),
    "block_centers": ("block", "axis"),
    "pc_shift_metrics": ("pc", "metric"),
    "pc_low_images": ("pc", "valid_y", "valid_x"),
    "pc_high_images": ("pc", "valid_y", "valid_x"),
    "pc_projections": ("sample", "pc"),
    # detection images (and the structural channel's corrected mean image)
    "mean_image": IMAGE_DIMENSIONS,
    "enhanced_mean_image": IMAGE_DIMENSIONS,
    "maximum_projection": IMAGE_DIMENSIONS,
    "correlation_map": IMAGE_DIMENSIONS,
    "corrected_structural_mean_image": IMAGE_DIMENSIONS,
    # CNMF
    "temporal": TRACE_DIMENSIONS,
    "raw_traces": TRACE_DIMENSIONS,
    "background_spatial": ("component", "y", "x"),
    "background_temporal": ("component", "t"),
    "background_mean": IMAGE_DIMENSIONS,
    "ring_weight_offsets": ("pixel_boundary",),
    "ring_weight_pixels": ("ring_entry",),
    "ring_weights": ("ring_entry",),
    # extraction
    "cell_fluorescence": TRACE_DIMENSIONS,
    "neuropil_fluorescence": TRACE_DIMENSIONS,
    "subtracted_fluorescence": TRACE_DIMENSIONS,
    "spikes": TRACE_DIMENSIONS,
    "delta_f_over_f": TRACE_DIMENSIONS,
    "cell_fluorescence_channel_2": TRACE_DIMENSIONS,
    "neuropil_fluorescence_channel_2": TRACE_DIMENSIONS,
    "cell_classification": ("roi", "column"),
    "cell_colocalization": ("roi", "column"),
    # miniscope
    "footprint_background": ROI_DIMENSIONS,
    "detrended_fluorescence": TRACE_DIMENSIONS,
    "instantaneous_phase": TRACE_DIMENSIONS,
    "event_offsets": ("roi_boundary",),
    "event_frames": ("event",),
    "event_amplitudes": ("event",),
    "event_noise_sigma": ROI_DIMENSIONS,
    "spectrogram": ("roi", "window", "frequency"),
    "spectrogram_times": ("window",),
    "spectrogram_frequencies": ("frequency",),
    "power_spectrum": ("roi", "frequency"),
    "dominant_frequency": ROI_DIMENSIONS,
    # multi-recording
    "deformation_forward": ("axis", "y", "x"),
    "deformation_backward": ("axis", "y", "x"),
}
"""``dimension_names`` of the store's arrays by array name (see the module docstring); the frames
``raw/channel_c`` and ``registered/channel_c`` are `FRAME_DIMENSIONS`, and any other 1-D array of
a ROI group (`ROI_GROUPS`) is per ROI. Names are unique within an array (xarray needs that) and a
name has one size within a group, so `xarray.open_zarr` opens every group."""

ROI_GROUPS = (ROIS, CNMF, "templates")
"""Groups holding ragged masks, where every 1-D array not in `ARRAY_DIMENSIONS` is per ROI (row)."""

FRAME_ARRAY_PATTERN = re.compile(r"^channel_\d+$")
"""Names of the frame arrays inside ``raw/`` and ``registered/``."""

OME_VERSION = "0.5"
"""The OME-NGFF (OME-Zarr) version of the ``ome`` group attributes."""

OME_IMAGE_ORDER = ("mean_image", "enhanced_mean_image", "maximum_projection", "correlation_map", "reference_image")
"""Order of the images in a group's ``ome.multiscales`` (then by name): readers that show one image show the first."""


def dimension_names_for(array_path: str, *, ndim: int) -> tuple[str, ...]:
    """The ``dimension_names`` of the store array at ``array_path`` with ``ndim`` dimensions.

    Frames (``…/raw/channel_c``, ``…/registered/channel_c``) are (t, y, x); other names come from
    `ARRAY_DIMENSIONS`; a 1-D array of a ROI group (`ROI_GROUPS`) not listed there is (roi,).

    Raises
    ------
    ValueError : the name is not in the store's layout (give ``dimension_names`` explicitly, or add
        it to `ARRAY_DIMENSIONS` and the module docstring), or its dims do not match ``ndim``.
    """
    parts = array_path.strip("/").split("/")
    name, parent = parts[-1], (parts[-2] if len(parts) > 1 else "")
    if parent in (RAW, REGISTERED) and FRAME_ARRAY_PATTERN.match(name):
        dimensions = FRAME_DIMENSIONS
    elif name in ARRAY_DIMENSIONS:
        dimensions = ARRAY_DIMENSIONS[name]
    elif parent in ROI_GROUPS and ndim == 1:
        dimensions = ROI_DIMENSIONS
    else:
        raise ValueError(f"{array_path}: no dimension names known for this array; pass dimension_names, or add {name!r} to cindra_dask.store.ARRAY_DIMENSIONS (and the store contract)")
    if len(dimensions) != ndim:
        raise ValueError(f"{array_path}: {ndim}-D array, but its dimension names are {dimensions}")
    return dimensions


READ_ERRORS = (RuntimeError, ValueError, OSError)
"""What reading a damaged array raises (a chunk Blosc cannot decode, truncated JSON metadata, an unreadable file)."""

PLANE_GROUP_PATTERN = re.compile(r"^plane_(\d+)$")
"""Names of the ``plane_k`` groups."""


def plane_path(plane: int) -> str:
    """Group of plane ``plane`` (0-based; a virtual plane in MROI mode)."""
    return f"plane_{plane}"


def frames_path(plane: int, channel: int, *, kind: Literal["raw", "registered"] = RAW) -> str:
    """Array of raw or registered frames of one plane and channel (both 0-based)."""
    return f"{plane_path(plane)}/{kind}/channel_{channel}"


def stage_path(plane: int, stage: str) -> str:
    """Group of a stage's outputs in a plane: registration, detection, rois, extraction."""
    return f"{plane_path(plane)}/{stage}"


def multi_recording_path(dataset_name: str) -> str:
    """Group of one tracking dataset inside a recording store."""
    return f"{MULTI_RECORDING}/{dataset_name}"


def store_path(output_path: Path, recording_name: str) -> Path:
    """``<output_path>/<recording_name>.zarr``."""
    return Path(output_path) / f"{recording_name}{STORE_SUFFIX}"


def versions() -> dict[str, str]:
    """Versions of the packages that shape the results."""
    import dask
    import numba
    import scipy
    import zarr

    from cindra_dask import __version__

    return {"cindra_dask": __version__, "numpy": np.__version__, "scipy": scipy.__version__, "numba": numba.__version__, "dask": dask.__version__, "zarr": zarr.__version__}


def blosc_zstd() -> Any:
    """The compressor of every array: Blosc with zstd, level 1, bit shuffle.

    Level 1 compresses noisy int16 frames as well as level 3 (ratio ≈ 1.2 on shot-noise-limited
    data) at 1.5× the speed (≈ 450 vs 300 MB/s on one core); ingest is bound by it.
    """
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")


class PhaseRecord(NamedTuple):
    """What the store remembers of one phase run (root attrs ``phases[name]``)."""

    status: Literal["running", "complete"]
    config_hash: str
    started: str
    finished: str | None
    duration_s: float | None
    versions: dict[str, str]

    @property
    def complete(self) -> bool:
        """True when every output of the phase was written."""
        return self.status == "complete"


class SubmittedRunRecord(NamedTuple):
    """What the store remembers of a run `cindra-dask submit` started (``<store>.runs/<run_id>.json``).

    ``state`` is "submitted" (written by the submitting client), "running" (written by the run as it
    starts on a worker, with that worker process's ``host`` and ``pid``), then "complete" or "failed"
    (``error``: one line); ``outcomes`` lists "step: ran|skipped" when complete. Times are UTC ISO 8601.
    """

    run_id: str
    state: Literal["submitted", "running", "complete", "failed"]
    scheduler_address: str
    submitted: str
    started: str | None = None
    finished: str | None = None
    host: str | None = None
    pid: int | None = None
    error: str | None = None
    outcomes: tuple[str, ...] = ()


class RecordingStore:
    """A recording's Zarr store on the local filesystem.

    Parameters
    ----------
    path : the ``.zarr`` directory.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RecordingStore({str(self.path)!r})"

    # -- opening --------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        """True when the store holds a root group."""
        return (self.path / "zarr.json").is_file()

    def root(self, mode: Literal["r", "r+", "a"] = "r") -> Any:
        """The root ``zarr.Group``."""
        import zarr

        if mode == "a":
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.exists:
            raise OutputError(f"{self.path}: not a cindra-dask store (no zarr.json); run `cindra-dask run` first")
        return zarr.open_group(str(self.path), mode=mode)

    def __contains__(self, array_path: str) -> bool:
        return (self.path / array_path / "zarr.json").is_file()

    # -- arrays ---------------------------------------------------------------------------
    def create_array(
        self,
        array_path: str,
        *,
        shape: tuple[int, ...],
        dtype: Any,
        chunks: tuple[int, ...],
        dimension_names: tuple[str, ...] | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Any:
        """Create (replacing any old one) an empty compressed array for chunk-aligned writes.

        Every array gets ``dimension_names``: the ones given, else those of the store's layout
        (`dimension_names_for`; a :class:`ValueError` for a name outside it, before anything is written).
        """
        dimension_names = tuple(dimension_names) if dimension_names is not None else dimension_names_for(array_path, ndim=len(shape))
        if len(dimension_names) != len(shape) or len(set(dimension_names)) != len(dimension_names):
            raise ValueError(f"{array_path}: dimension names {dimension_names} must be unique, one per dimension of shape {tuple(shape)}")
        root = self.root("a")
        if array_path in self:
            self.delete(array_path)
        return root.create_array(
            array_path,
            shape=shape,
            dtype=dtype,
            chunks=tuple(max(1, chunk) for chunk in chunks),
            compressors=blosc_zstd(),
            dimension_names=dimension_names,
            fill_value=0,
            attributes=attributes or {},
        )

    def write_array(self, array_path: str, data: np.ndarray, *, dimension_names: tuple[str, ...] | None = None, attributes: dict[str, Any] | None = None) -> None:
        """Write a small array in one piece (one chunk); ``dimension_names`` as in `create_array`."""
        data = np.asarray(data)
        array = self.create_array(array_path, shape=data.shape, dtype=data.dtype, chunks=data.shape or (1,), dimension_names=dimension_names, attributes=attributes)
        array[...] = data

    def array(self, array_path: str, mode: Literal["r", "r+"] = "r") -> Any:
        """Open an existing ``zarr.Array``; :class:`OutputError` naming it if it is missing or its metadata is damaged."""
        import zarr

        if array_path not in self:
            raise OutputError(f"{self.path}: array {array_path!r} is missing; run the phase that writes it")
        try:
            return zarr.open_array(str(self.path / array_path), mode=mode)
        except READ_ERRORS as error:
            raise self.damaged(array_path, error) from None

    def update_rows(self, array_path: str, rows: np.ndarray, values: np.ndarray, *, history_attribute: str, history_entry: dict[str, Any]) -> None:
        """Replace rows of an existing array, keeping what they held in a history attribute.

        ``history_entry`` plus ``rows`` and ``previous`` (those rows' values before) is appended to the
        array's attribute ``history_attribute`` first (an atomic replace of its ``zarr.json``), then the
        rows are written, each chunk file replaced atomically (Zarr's local store writes a temporary
        file and renames it): a crash leaves the old rows or the new ones (in a one-chunk array such as
        ``cell_classification``, all of them), never a change its history lacks. The caller holds the lock.

        Parameters
        ----------
        array_path : an array of n rows.
        rows : (r,) int row indices.
        values : (r, ...) their new values, the array's row shape.
        history_attribute : the attribute holding the list of entries.
        history_entry : JSON-serialisable keys of the entry (e.g. time and source of the change).
        """
        rows = np.asarray(rows, np.int64)
        current = self.read(array_path)
        metadata_path = self.path / array_path / "zarr.json"
        metadata = _read_metadata(metadata_path)
        if metadata is None:
            raise self.damaged(array_path, ValueError("zarr.json is not valid JSON"))
        attributes = metadata.setdefault("attributes", {})
        entry = {**history_entry, "rows": rows.tolist(), "previous": current[rows].astype(float).tolist()}
        attributes[history_attribute] = [*attributes.get(history_attribute, []), json.loads(json.dumps(entry, default=str))]
        write_json_atomically(metadata_path, metadata)
        current[rows] = values
        self.array(array_path, mode="r+")[...] = current

    def read(self, array_path: str) -> np.ndarray:
        """A whole (small) array as numpy."""
        return self.read_selection(array_path, Ellipsis)

    def read_selection(self, array_path: str, selection: Any) -> np.ndarray:
        """``array[selection]`` as numpy; :class:`OutputError` naming the array if a chunk cannot be decoded."""
        array = self.array(array_path)
        try:
            return np.asarray(array[selection])
        except READ_ERRORS as error:
            raise self.damaged(array_path, error) from None

    def damaged(self, array_path: str, error: BaseException) -> OutputError:
        """The error for an array whose stored chunks or metadata cannot be read."""
        return OutputError(
            f"{self.path / array_path}: cannot be read ({type(error).__name__}: {error}); the store is damaged there. "
            f"`cindra-dask verify {self.path}` lists every damaged array; `cindra-dask run` with the same configuration rebuilds damaged outputs"
        )

    def delete(self, group_or_array_path: str) -> None:
        """Remove a group or array (never the root, never inputs)."""
        target = (self.path / group_or_array_path).resolve()
        if target == self.path.resolve() or self.path.resolve() not in target.parents:
            raise ValueError(f"refusing to delete {target}: not inside {self.path}")
        shutil.rmtree(target, ignore_errors=True)

    def array_paths(self) -> list[str]:
        """Every array in the store (relative paths, sorted); nodes with unreadable metadata are left out (`damaged_nodes`)."""
        return [path for path, metadata in self._nodes() if metadata is not None and metadata.get("node_type") == "array"]

    def damaged_nodes(self) -> list[str]:
        """Groups or arrays whose ``zarr.json`` is not readable JSON (relative paths, sorted; the root is ``.``)."""
        return [path for path, metadata in self._nodes() if metadata is None]

    def _nodes(self) -> list[tuple[str, dict[str, Any] | None]]:
        """(relative path, parsed ``zarr.json`` or None when unreadable) of every node, sorted."""
        return [(metadata.parent.relative_to(self.path).as_posix(), _read_metadata(metadata)) for metadata in sorted(self.path.rglob("zarr.json"))]

    # -- ragged ROIs ----------------------------------------------------------------------
    def write_rois(self, group_path: str, rois: RaggedRois, **per_roi: np.ndarray) -> None:
        """Write ragged masks plus one (n, ...) array per statistic under ``group_path``.

        Dimension names: the masks' from `ARRAY_DIMENSIONS` (``pixel_offsets`` (roi_boundary,),
        ``ypix``, ``xpix``, ``lam`` (pixel,)); a statistic's from `ARRAY_DIMENSIONS` when listed
        there (``centroids`` (roi, axis)), else (roi,) for a 1-D one; any other statistic is refused.
        """
        for name, values in per_roi.items():
            values = np.asarray(values)
            if values.shape[:1] != (rois.count,):
                raise ValueError(f"{name}: expected {rois.count} rows, got shape {values.shape}")
            if name not in ARRAY_DIMENSIONS and values.ndim != 1:
                raise ValueError(f"{name}: a {values.ndim}-D per-ROI array needs its dimension names in cindra_dask.store.ARRAY_DIMENSIONS")
        if (self.path / group_path).exists():
            self.delete(group_path)
        for name in ROI_ARRAYS:
            self.write_array(f"{group_path}/{name}", getattr(rois, name), dimension_names=ARRAY_DIMENSIONS[name])
        for name, values in per_roi.items():
            values = np.asarray(values)
            self.write_array(f"{group_path}/{name}", values, dimension_names=ARRAY_DIMENSIONS.get(name, ROI_DIMENSIONS))

    def add_missing_dimension_names(self) -> list[str]:
        """Give every array without ``dimension_names`` those of the layout (`dimension_names_for`), in place.

        For stores written before every array carried them: only the array's ``zarr.json`` changes
        (atomically), never a chunk, so checksums stay valid. Arrays outside the layout are left
        as they are. Returns the arrays changed (relative paths, sorted).
        """
        changed = []
        for path, metadata in self._nodes():
            if metadata is None or metadata.get("node_type") != "array" or metadata.get("dimension_names"):
                continue
            try:
                names = dimension_names_for(path, ndim=len(metadata.get("shape", ())))
            except ValueError:
                continue
            write_json_atomically(self.path / path / "zarr.json", {**metadata, "dimension_names": list(names)})
            changed.append(path)
        return changed

    # -- OME-NGFF metadata of movies and images ------------------------------------------
    def write_ome_metadata(self, *, frame_interval_s: float, pixel_size_um: float | None) -> list[str]:
        """Describe every movie and image of the store as OME-NGFF 0.5 images, in place.

        Each group holding arrays whose dimension names are (t, y, x) or (y, x) gets the group
        attribute ``ome`` = `ome_image_attributes` of those arrays: one single-level entry of
        ``multiscales`` per array, whose dataset path is the array's name, so no array moves. A group
        that no longer holds any loses its ``ome``. Groups whose ``ome`` is already current are not
        rewritten. Call it after the arrays are written (the runner does, at the end of every run).

        Parameters
        ----------
        frame_interval_s : time between two frames of a plane, s (1 / the per-plane rate).
        pixel_size_um : side of one pixel in the sample, µm; None (unknown): the space axes get scale
            1.0 and no unit (pixels).

        Returns
        -------
        The groups whose ``ome`` attribute was written or removed (relative paths, sorted).
        """
        import zarr

        images: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        groups_with_ome = []
        for path, metadata in self._nodes():
            if metadata is None or path == ".":
                continue
            if metadata.get("node_type") == "group" and "ome" in metadata.get("attributes", {}):
                groups_with_ome.append(path)
            dimensions = tuple(metadata.get("dimension_names") or ())
            if metadata.get("node_type") == "array" and dimensions in (FRAME_DIMENSIONS, IMAGE_DIMENSIONS) and "/" in path:
                group, name = path.rsplit("/", 1)
                images.setdefault(group, []).append((name, dimensions))
        changed = []
        for group in sorted(set(images) | set(groups_with_ome)):
            attributes = self.group_attributes(group)
            wanted = ome_image_attributes(images[group], frame_interval_s=frame_interval_s, pixel_size_um=pixel_size_um) if group in images else None
            if attributes.get("ome") == wanted:
                continue
            handle = zarr.open_group(str(self.path / group), mode="r+")
            if wanted is None:
                handle.attrs.put({key: value for key, value in attributes.items() if key != "ome"})
            else:
                handle.attrs.update({"ome": wanted})
            changed.append(group)
        return changed

    def read_rois(self, group_path: str) -> RaggedRois:
        """Ragged masks written by :meth:`write_rois`."""
        return RaggedRois(*(self.read(f"{group_path}/{name}") for name in ROI_ARRAYS))

    def group_attributes(self, group_path: str) -> dict[str, Any]:
        """Attributes of the group or array at ``group_path`` (empty if it does not exist)."""
        metadata = self.path / group_path / "zarr.json"
        if not metadata.is_file():
            return {}
        parsed = _read_metadata(metadata)
        if parsed is None:
            raise OutputError(f"{metadata}: not valid JSON (damaged); `cindra-dask run` with the same configuration rebuilds damaged outputs")
        return dict(parsed.get("attributes", {}))

    def update_group_attributes(self, group_path: str, updates: dict[str, Any]) -> None:
        """Merge ``updates`` into the attributes of the (existing) group at ``group_path``."""
        import zarr

        zarr.open_group(str(self.path / group_path), mode="r+").attrs.update(updates)

    # -- root attributes, written atomically ----------------------------------------------
    def attributes(self) -> dict[str, Any]:
        """The root attributes (empty if the store does not exist)."""
        if not self.exists:
            return {}
        return dict(self._root_metadata().get("attributes", {}))

    def _root_metadata(self) -> dict[str, Any]:
        """The parsed root ``zarr.json``; :class:`OutputError` when it is damaged (it holds the phase records)."""
        metadata_path = self.path / "zarr.json"
        metadata = _read_metadata(metadata_path)
        if metadata is None:
            raise OutputError(
                f"{metadata_path}: the store's root metadata is damaged (not valid JSON); it holds the configuration and the phase records, "
                f"so nothing in {self.path} can be trusted or resumed: restore the file from a backup, or move the store away and run again"
            )
        return metadata

    def recorded_configuration(self) -> Any:
        """The `cindra_dask.config.SingleRecordingConfiguration` recorded in the root attributes,
        validated (a field the text lacks takes the model's default); the default configuration when
        none is recorded. Raises ``yaml.YAMLError`` or `cindra_dask.errors.ConfigurationError` for a
        recorded text that is not a configuration."""
        import yaml

        from cindra_dask.config import SingleRecordingConfiguration, configuration_from_mapping

        payload = yaml.safe_load(self.attributes().get("configuration") or "") or {}
        return configuration_from_mapping(payload, source=f"{self.path} (recorded configuration)", model=SingleRecordingConfiguration)

    def update_attributes(self, **updates: Any) -> None:
        """Merge ``updates`` into the root attributes with an atomic file replace.

        A crash while writing leaves the previous ``zarr.json`` intact (never a truncated file).
        """
        self.root("a")
        metadata_path = self.path / "zarr.json"
        metadata = self._root_metadata()
        metadata.setdefault("attributes", {}).update(json.loads(json.dumps(updates, default=str)))
        write_json_atomically(metadata_path, metadata)

    # -- phase records --------------------------------------------------------------------
    def phase_records(self) -> dict[str, PhaseRecord]:
        """Every phase record, by phase name."""
        return {name: PhaseRecord(**record) for name, record in self.attributes().get("phases", {}).items()}

    def phase_record(self, name: str) -> PhaseRecord | None:
        """The record of phase ``name``, or None if it never started."""
        return self.phase_records().get(name)

    def _write_phase(self, name: str, record: PhaseRecord | None) -> None:
        phases = dict(self.attributes().get("phases", {}))
        if record is None:
            phases.pop(name, None)
        else:
            phases[name] = record._asdict()
        self.update_attributes(phases=phases)

    def mark_phase_started(self, name: str, *, config_hash: str) -> float:
        """Record that phase ``name`` is running (incomplete); returns the start time (s)."""
        started = time.time()
        self._write_phase(name, PhaseRecord("running", config_hash, utc_timestamp(started), None, None, versions()))
        return started

    def mark_phase_complete(self, name: str, *, config_hash: str, started: float) -> PhaseRecord:
        """Record that every output of phase ``name`` is written. Call only after the last write."""
        finished = time.time()
        record = PhaseRecord("complete", config_hash, utc_timestamp(started), utc_timestamp(finished), round(finished - started, 3), versions())
        self._write_phase(name, record)
        return record

    def forget_phase(self, name: str) -> None:
        """Drop the record of phase ``name`` (its outputs are removed by the caller)."""
        if self.exists:
            self._write_phase(name, None)

    # -- submitted runs -------------------------------------------------------------------
    @property
    def runs_path(self) -> Path:
        """``<store>.runs/`` beside the store: one record per submitted run."""
        return self.path.with_name(self.path.name + RUNS_SUFFIX)

    def write_run_record(self, record: SubmittedRunRecord) -> None:
        """Write (replace atomically) the record of submitted run ``record.run_id``."""
        self.runs_path.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.runs_path / f"{record.run_id}.json", record._asdict())

    def run_records(self) -> list[SubmittedRunRecord]:
        """Every submitted run's record, oldest submission first (unreadable files skipped)."""
        records = []
        for path in sorted(self.runs_path.glob("*.json")):
            try:
                payload = json.loads(path.read_text())
                records.append(SubmittedRunRecord(**{**payload, "outcomes": tuple(payload.get("outcomes", ()))}))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(records, key=lambda record: record.submitted)

    # -- lock -----------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        """``<store>.lock`` beside the store."""
        return self.path.with_name(self.path.name + LOCK_SUFFIX)

    def lock_holder(self) -> dict[str, Any] | None:
        """The lock's owner (pid, host, started) if a lock file exists."""
        try:
            return json.loads(self.lock_path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"pid": -1, "host": "?", "started": "?"}

    def check_unlocked(self) -> None:
        """Raise :class:`OutputError` if a live run holds the lock (a stale lock only warns)."""
        holder = self.lock_holder()
        if holder is None:
            return
        if lock_is_stale(holder):
            warnings.warn(
                f"{self.lock_path}: stale lock of process {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')}), which is no longer running; it will be replaced",
                stacklevel=2,
            )
            return
        raise OutputError(
            f"{self.path}: locked by another run (process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}); "
            f"wait for it to finish, or delete {self.lock_path} if that run is gone"
        )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock for the duration of a run; a second run is refused."""
        self.check_unlocked()
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path.unlink(missing_ok=True)  # absent, or stale (check_unlocked passed)
        payload = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": utc_timestamp(time.time())})
        try:
            handle = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self.check_unlocked()
            raise OutputError(f"{self.path}: another run took the lock just now; try again later") from None
        try:
            with os.fdopen(handle, "w") as stream:
                stream.write(payload)
        except OSError:  # a full disk: no empty lock file is left to refuse the rerun
            self.lock_path.unlink(missing_ok=True)
            raise
        try:
            yield
        finally:
            self.lock_path.unlink(missing_ok=True)


# -- OME-NGFF 0.5 -----------------------------------------------------------------------


def ome_image_attributes(arrays: list[tuple[str, tuple[str, ...]]], *, frame_interval_s: float, pixel_size_um: float | None) -> dict[str, Any]:
    """The OME-NGFF 0.5 ``ome`` attribute of a group whose child arrays ``arrays`` are images.

    Parameters
    ----------
    arrays : (name, dimension names) of each child array, dims (t, y, x) or (y, x).
    frame_interval_s : scale of the t axis, s per frame.
    pixel_size_um : scale of the y and x axes, µm per pixel; None: 1.0 and no unit.

    Returns
    -------
    ``{"version": "0.5", "multiscales": [...]}``: one multiscale per array (ordered by
    `OME_IMAGE_ORDER`, then by name), named after it, with its axes (t: time, second; y, x: space,
    micrometer, or no unit when the pixel size is unknown) and one dataset, the array itself
    (path = its name), whose ``coordinateTransformations`` is one scale (frame interval, pixel
    size, pixel size) or (pixel size, pixel size).
    """
    def order(item: tuple[str, tuple[str, ...]]) -> tuple[int, str]:
        name = item[0]
        return (OME_IMAGE_ORDER.index(name) if name in OME_IMAGE_ORDER else len(OME_IMAGE_ORDER), name)

    space_unit = {"unit": "micrometer"} if pixel_size_um is not None else {}
    space_scale = float(pixel_size_um) if pixel_size_um is not None else 1.0
    axis_of = {"t": {"name": "t", "type": "time", "unit": "second"}, "y": {"name": "y", "type": "space", **space_unit}, "x": {"name": "x", "type": "space", **space_unit}}
    scale_of = {"t": float(frame_interval_s), "y": space_scale, "x": space_scale}
    multiscales = [
        {
            "name": name,
            "axes": [axis_of[dimension] for dimension in dimensions],
            "datasets": [{"path": name, "coordinateTransformations": [{"type": "scale", "scale": [scale_of[dimension] for dimension in dimensions]}]}],
        }
        for name, dimensions in sorted(arrays, key=order)
    ]
    return {"version": OME_VERSION, "multiscales": multiscales}


# -- reading a store's layout (the export, the report, status and maintenance) -----------


def open_existing_store(path: RecordingStore | Path | str) -> RecordingStore:
    """The store at ``path``; :class:`OutputError` naming the path if it holds no store."""
    store = path if isinstance(path, RecordingStore) else RecordingStore(Path(path).expanduser())
    if not store.exists:
        raise OutputError(f"{store.path}: not a cindra-dask store (no zarr.json); give the <recording>.zarr folder that `cindra-dask run` wrote")
    store.attributes()  # OutputError now, before anything is read or removed, if the root metadata is damaged
    return store

def plane_indices(store: RecordingStore) -> list[int]:
    """Indices k of the ``plane_k`` groups present, ascending."""
    return sorted(int(match.group(1)) for entry in store.path.iterdir() if entry.is_dir() and (match := PLANE_GROUP_PATTERN.match(entry.name)))

def multi_recording_datasets(store: RecordingStore) -> list[str]:
    """Names of the ``multi_recording/<dataset>`` groups present, sorted."""
    folder = store.path / MULTI_RECORDING
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir()) if folder.is_dir() else []

def arrays_under(store: RecordingStore, group_path: str) -> list[str]:
    """Paths of the arrays below a group (any depth), sorted; empty if the group does not exist."""
    folder = store.path / group_path
    if not folder.is_dir():
        return []
    found = [metadata.parent.relative_to(store.path).as_posix() for metadata in folder.rglob("zarr.json") if metadata.parent != folder and (_read_metadata(metadata) or {}).get("node_type") == "array"]
    return sorted(found)

def is_recording_store(path: Path) -> bool:
    """True when ``path`` is a cindra-dask recording store (its root attributes hold ``phases``), so never a movie input."""
    metadata = _read_metadata(Path(path) / "zarr.json") or {}
    return "phases" in metadata.get("attributes", {})


def open_input_zarr(path: Path | str) -> Any:
    """A Zarr movie input's root node (array or group), read-only: inputs are never opened for writing."""
    import zarr

    return zarr.open(str(path), mode="r")


def input_file_attributes(input_format: str) -> str:
    """The prefix of the root attributes that list a store's input files (see the module docstring): ``tiff``, ``hdf5``, ``zarr`` or ``avi``."""
    return INPUT_FILE_KINDS.get(input_format, "tiff")


def array_shape(store: RecordingStore, array_path: str) -> tuple[int, ...]:
    """Shape of an array from its metadata (no data read)."""
    metadata = _read_metadata(store.path / array_path / "zarr.json")
    if metadata is None:
        raise store.damaged(array_path, ValueError("zarr.json is not valid JSON"))
    return tuple(int(size) for size in metadata["shape"])


def _read_metadata(path: Path) -> dict[str, Any] | None:
    """A parsed ``zarr.json``; None when it is not a readable JSON object."""
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return metadata if isinstance(metadata, dict) else None


def lock_is_stale(holder: dict[str, Any]) -> bool:
    """True when the lock's process is on this host and no longer alive (or the file is unreadable)."""
    pid = int(holder.get("pid", -1))
    if pid < 0:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def write_json_atomically(path: Path, payload: dict[str, Any], *, indent: int = 2) -> None:
    """Write ``payload`` as the JSON file ``path`` (values JSON lacks as strings) with an atomic
    replace: a crash or a full disk leaves the old file intact and no temporary file (a failed write's
    ``OSError`` names ``path``)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream, indent=indent, default=str)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)
        raise


def utc_timestamp(seconds: float) -> str:
    """``seconds`` since the epoch as UTC ISO 8601 to the second (the times of the records)."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).isoformat(timespec="seconds")
