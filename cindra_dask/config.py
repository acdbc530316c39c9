"""Configuration: one frozen pydantic model per section, YAML load/save and the commented template.

Section and field names, meanings and defaults follow cindra 2.0 (``cindra configure``), so a cindra
user recognises them. cindra-dask adds the ``cluster`` section, ``runtime.max_chunk_memory`` (the
memory budget from which chunk sizes are derived), ``runtime.seed``, ``file_io.recording_name`` and
an optional inline ``acquisition`` section (otherwise ``cindra_parameters.json`` beside the movie files is
read, or else the acquisition the files' own metadata describe: ``io/acquisition.py``). Everything else
(the YAML template, ``--help`` text, the field tables in the docs) is generated from these models;
nothing is written twice. `roi_detection_options` turns the ``roi_detection`` section into the
detection kernels' options. A field added after stores were written carries `added_later` with the
value that reproduces the steps from before it, so upgrading does not rerun finished steps.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cindra_dask.errors import ConfigurationError, InputError

if TYPE_CHECKING:
    from cindra_dask.detection.plane import DetectionOptions

SCHEMA_VERSION = 1
ACQUISITION_FILE_NAME = "cindra_parameters.json"


class Section(BaseModel):
    """Base of every configuration section: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def _parse_memory(value: str) -> str:
    from dask.utils import parse_bytes

    try:
        parsed = parse_bytes(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{value!r} is not a memory size such as '32MiB' or '2GB'") from error
    if parsed <= 0:
        raise ValueError("must be a positive memory size")
    return value


def added_later(value_before: Any) -> dict[str, Any]:
    """``json_schema_extra`` of a field added after stores were written: ``value_before`` reproduces what the
    steps did before the field existed, so at that value the field is left out of the step hashes
    (`hashable_sections`) and a store written before it resumes instead of rerunning its steps."""
    return {"value_before_it_existed": value_before}


MemorySize = Annotated[str, Field(pattern=r"^\s*\d+(\.\d+)?\s*[A-Za-z]*\s*$")]

# ----------------------------------------------------------------------------------------------
# Acquisition parameters (cindra_parameters.json)
# ----------------------------------------------------------------------------------------------


class AcquisitionParameters(Section):
    """How the frames in the TIFFs were acquired (cindra's ``cindra_parameters.json``)."""

    frame_rate: float = Field(gt=0, description="Volume rate in Hz (all planes); per-plane rate = frame_rate / plane_number.")
    plane_number: int = Field(ge=1, le=64, description="Number of physical z-planes interleaved in the TIFF pages.")
    channel_number: int = Field(ge=1, le=2, description="Number of channels interleaved per plane (1 or 2).")
    roi_number: int = Field(default=1, ge=1, le=64, description="MROI regions per plane; more than 1 enables MROI mode.")
    roi_lines: tuple[tuple[int, ...], ...] = Field(
        default=(), description="Per MROI region, the raw-frame row indices it occupies (first and last are used, inclusive)."
    )
    roi_x_coordinates: tuple[float, ...] = Field(default=(), description="Per MROI region, its left edge in the combined field of view (px).")
    roi_y_coordinates: tuple[float, ...] = Field(default=(), description="Per MROI region, its top edge in the combined field of view (px).")

    @model_validator(mode="after")
    def _check_mroi(self) -> "AcquisitionParameters":
        if self.roi_number > 1:
            for name in ("roi_lines", "roi_x_coordinates", "roi_y_coordinates"):
                count = len(getattr(self, name))
                if count != self.roi_number:
                    raise ValueError(f"{name} has {count} entries but roi_number is {self.roi_number}: give one entry per MROI region")
            for region, lines in enumerate(self.roi_lines):
                if len(lines) == 0:
                    raise ValueError(f"roi_lines[{region}] is empty: list the raw-frame rows of region {region}")
                if min(lines) < 0 or lines[-1] < lines[0]:
                    raise ValueError(f"roi_lines[{region}] must be non-negative and ascending (first row ≤ last row)")
        return self

    @property
    def plane_frame_rate_hz(self) -> float:
        """Sampling rate of one plane in Hz."""
        return self.frame_rate / self.plane_number

    @property
    def is_mroi(self) -> bool:
        """True when frames hold several MROI regions stacked along the rows."""
        return self.roi_number > 1

    @property
    def virtual_plane_count(self) -> int:
        """Planes as processed: physical planes × MROI regions."""
        return self.plane_number * self.roi_number


def load_acquisition_parameters(path: Path) -> AcquisitionParameters:
    """Read and validate ``cindra_parameters.json``; errors name the file and field."""
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise InputError(f"{path}: not found; write cindra_parameters.json beside the TIFFs or add an 'acquisition' section to the configuration") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        line = getattr(error, "lineno", "?")
        raise InputError(f"{path}: not valid JSON (line {line}): {getattr(error, 'msg', error)}; fix the file's syntax") from error
    if not isinstance(payload, dict):
        raise InputError(f"{path}: expected a JSON object with frame_rate, plane_number, channel_number")
    try:
        return AcquisitionParameters.model_validate(payload)
    except ValidationError as error:
        raise InputError(*_describe_validation_error(error, source=str(path))) from error


# ----------------------------------------------------------------------------------------------
# Single-recording sections
# ----------------------------------------------------------------------------------------------


class RuntimeSettings(Section):
    """Execution settings shared by every phase."""

    display_progress_bars: bool = Field(default=True, description="Show a progress bar for long Dask computations (the dashboard link is always printed).")
    max_chunk_memory: MemorySize = Field(
        default="32MiB",
        description="Memory budget of one chunk of float32 frames; frame chunks (and so task sizes) are derived from it. A task peaks at a few times this.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of every random choice (frame samples, PCA); per-block generators derive from it.")

    _memory = field_validator("max_chunk_memory")(_parse_memory)

    @property
    def max_chunk_bytes(self) -> int:
        """``max_chunk_memory`` in bytes."""
        from dask.utils import parse_bytes

        return int(parse_bytes(self.max_chunk_memory))


class Indicator(str, enum.Enum):
    """Calcium indicators whose kinetics `INDICATOR_KINETICS` holds (measured on CASCADE's ground truth)."""

    OGB1 = "OGB-1"
    GCAMP6F = "GCaMP6f"
    GCAMP6S = "GCaMP6s"
    JGCAMP7F = "jGCaMP7f"
    JGCAMP8F = "jGCaMP8f"
    JGCAMP8M = "jGCaMP8m"
    JGCAMP8S = "jGCaMP8s"


INDICATOR_KINETICS: dict[Indicator, tuple[float, float]] = {
    Indicator.OGB1: (1.0, 0.06),
    Indicator.GCAMP6F: (0.7, 0.06),
    Indicator.GCAMP6S: (1.7, 0.09),
    Indicator.JGCAMP7F: (0.6, 0.03),
    Indicator.JGCAMP8F: (0.3, 0.01),
    Indicator.JGCAMP8M: (0.4, 0.0),
    Indicator.JGCAMP8S: (0.8, 0.01),
}
"""(``main.tau`` s, ``spike_deconvolution.rise_time`` s) per indicator: the decay CASCADE's datasets of that indicator
are deconvolved with, and the onset lag of their measured response kernels (benchmarks/accuracy/results/spike_timing.md §3)."""


class MainSettings(Section):
    """What the recording holds."""

    two_channels: bool | None = Field(
        default=None, description="Two interleaved channels per plane; None follows channel_number of the acquisition parameters (true or false must agree with it)."
    )
    first_channel_functional: bool = Field(default=True, description="The first channel carries activity (is detected and extracted).")
    second_channel_functional: bool = Field(default=False, description="The second channel carries activity too: it is detected and extracted independently.")
    tau: float = Field(default=0.4, gt=0, le=10, description="Indicator decay time constant in seconds; sets the temporal bin size and the OASIS decay (main.indicator sets it for the indicators it knows).")
    indicator: Indicator | None = Field(
        default=None,
        json_schema_extra=added_later(None),
        description=(
            "Not in cindra: the calcium indicator; sets main.tau, spike_deconvolution.rise_time and metadata.indicator where they are not written"
            " (a tau or rise time written beside it wins, with a warning): "
            + ", ".join(f"{name.value} {tau:g} s / {rise:g} s" for name, (tau, rise) in INDICATOR_KINETICS.items())
            + " (measured on CASCADE: median spike r of real traces at 30 Hz 0.684 with cindra's tau 0.4 s and no rise time, 0.809 with these)."
        ),
    )
    ignored_flyback_planes: tuple[int, ...] = Field(default=(), description="Plane indices ingested but never registered or processed (flyback frames).")
    custom_classifier_path: Path | None = Field(default=None, description="A cindra .npz classifier (training_labels plus feature columns, ≥100 samples); None uses the bundled one.")

    @model_validator(mode="after")
    def _check_functional(self) -> "MainSettings":
        if not (self.first_channel_functional or self.second_channel_functional):
            raise ValueError("first_channel_functional and second_channel_functional are both false: at least one channel must be functional")
        if self.second_channel_functional and self.two_channels is False:
            raise ValueError("second_channel_functional needs two channels; set two_channels: true or remove the line")
        return self


class InputFormat(str, enum.Enum):
    """What the movie files are."""

    AUTO = "auto"
    TIFF = "tiff"
    SCANIMAGE = "scanimage"
    BRUKER = "bruker"
    HDF5 = "hdf5"
    NWB = "nwb"
    ZARR = "zarr"
    AVI = "avi"


class FileIOSettings(Section):
    """Where the data are and where results go."""

    data_path: Path | None = Field(
        default=None,
        description=(
            "Directory searched (recursively) for cindra_parameters.json; the movie files sit in that same directory (or, without the file, in this one, "
            "and the acquisition is read from their ScanImage header, Bruker XML or NWB series)."
        ),
    )
    output_path: Path | None = Field(default=None, description="Directory that receives <recording_name>.zarr.")
    recording_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]+$", description="Store name; default: the name of the directory holding the movie files.")
    input_format: InputFormat = Field(
        default=InputFormat.AUTO,
        description=(
            "Kind of movie files: 'tiff' (.tif/.tiff, one frame per page), 'scanimage' (ScanImage TIFFs: the acquisition must be in their header), "
            "'bruker' (a PrairieView .xml and the TIFFs it names), 'hdf5' (.h5/.hdf5, one 3-D (frames, height, width) dataset per file), "
            "'nwb' (.nwb files, one TwoPhotonSeries each), 'zarr' (.zarr stores, one 3-D array each), "
            "'avi' (a UCLA Miniscope V3/V4 folder: msCam1.avi… or 0.avi… with timestamp.dat / timeStamps.csv; 8-bit grey frames, the rate from the timestamps), "
            "or 'auto': whichever the folder holds (a Bruker XML wins over its TIFFs; a folder holding two other kinds is refused)."
        ),
    )
    hdf5_dataset: str = Field(
        default="data",
        min_length=1,
        description=(
            "Path of the movie dataset inside each HDF5 file (suite2p's h5py_key), e.g. 'data' or 'acquisition/frames'; frames of several planes and "
            "channels are interleaved along its first axis like TIFF pages."
        ),
    )
    nwb_series: str | None = Field(
        default=None, min_length=1, description="Name of the TwoPhotonSeries read from each NWB file; None: the file's only one (several are refused, listed by name)."
    )
    zarr_array: str | None = Field(
        default=None,
        min_length=1,
        description="Path of the movie array inside each Zarr store, e.g. 'data' or '0'; None: the store itself when it is an array, else its only array.",
    )
    ignored_file_names: tuple[str, ...] = Field(default=(), description="Movie file stems (names without extension) to skip.")
    crop_coords: tuple[int, int, int, int] | None = Field(
        default=None,
        description=(
            "The miniscope pipeline's crop at ingest, (x0, y0, x1, y1) px in its crop GUI's convention (as in its analysis_parameters.csv, e.g."
            " (67, 503, 555, 61)): columns from min(x0, x1) to max(x0, x1), y counted up from the bottom edge, so rows from height − max(y0, y1)"
            " to height − min(y0, y1) (ends exclusive); only these pixels are stored and processed. None: whole frames. Not with MROI."
        ),
    )
    repeat_binarization: bool = Field(default=False, description="Ingest the movie files again even if the store holds a complete ingest (drops every later result).")


    @field_validator("crop_coords")
    @classmethod
    def _crop_not_negative(cls, value: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if value is not None and min(value) < 0:
            raise ValueError(f"coordinates must be non-negative pixels, got {value}")
        return value


class RegistrationSettings(Section):
    """Rigid motion correction and what it shares with nonrigid."""

    repeat_registration: bool = Field(default=False, description="Register again even if registration is complete.")
    align_by_first_channel: bool = Field(default=True, description="Compute offsets on the first channel (else the second); the other channel gets the same offsets.")
    reference_frame_count: int = Field(default=500, gt=0, le=100_000, description="Evenly spaced frames sampled to build the reference image.")
    batch_size: int = Field(default=100, gt=0, le=100_000, description="cindra's frames per registration batch; here an upper bound on frames per task (chunks also follow max_chunk_memory).")
    maximum_offset_fraction: float = Field(default=0.1, gt=0, le=1, description="Largest rigid offset as a fraction of the smaller frame side; also the bad-frame cutoff.")
    spatial_smoothing_sigma: float = Field(default=1.15, ge=0, le=20, description="Gaussian sigma (px) applied to the phase-correlation kernel.")
    temporal_smoothing_sigma: float = Field(default=0.0, ge=0, le=100, description="Gaussian sigma (frames) smoothing correlation surfaces over time; chunks get halos so results do not depend on chunking.")
    two_step_registration: bool = Field(default=False, description="Register twice, the second time against a reference built from registered frames.")
    gpu_batch_size: int = Field(default=0, ge=0, description="Accepted for cindra compatibility; cindra-dask registers on CPU workers and ignores it.")
    bad_frame_threshold: float = Field(default=1.0, gt=0, le=100, description="Outlier-metric cutoff (×100) above which a frame is marked bad.")
    normalize_frames: bool = Field(default=True, description="Clip reference and frames to the reference's 1st/99th percentiles before correlating.")
    registration_metric_principal_components: int = Field(default=5, ge=0, le=50, description="Principal components for the registration quality metrics; 0 disables.")
    compute_bidirectional_phase_offset: bool = Field(default=False, description="Estimate the odd/even line (bidirectional scanning) offset.")
    bidirectional_phase_offset_override: int = Field(default=0, ge=-50, le=50, description="Non-zero: use this odd/even line offset (px) instead of estimating it.")


class OnePhotonRegistrationSettings(Section):
    """Pre-filtering of the correlation copies for one-photon data."""

    enabled: bool = Field(default=False, description="High-pass (and optionally smooth) frames before correlating; for one-photon/widefield data.")
    spatial_highpass_window: int = Field(default=42, gt=0, le=1000, description="Box high-pass window in px (even).")
    pre_smoothing_sigma: int = Field(default=0, ge=0, le=100, description="Box pre-smoothing window in px (even); 0 disables.")
    edge_taper_pixels: float = Field(default=40.0, ge=0, le=1000, description="Sigmoid edge-taper slope (px) used instead of 3×spatial_smoothing_sigma.")

    @field_validator("spatial_highpass_window", "pre_smoothing_sigma")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"must be even, got {value}")
        return value


class NonrigidRegistrationSettings(Section):
    """Block-wise (piecewise rigid) motion correction after the rigid step."""

    enabled: bool = Field(default=True, description="Correct nonrigid motion with overlapping blocks.")
    block_size: tuple[int, int] = Field(default=(128, 128), description="Block height and width in px; a side ≥ the frame side gives one block.")
    signal_to_noise_threshold: float = Field(default=1.2, gt=0, le=100, description="Blocks with a weaker correlation peak borrow from their neighbours.")
    maximum_block_offset: float = Field(default=5.0, gt=0, le=100, description="Largest block offset (px) relative to the rigid result.")

    @field_validator("block_size")
    @classmethod
    def _positive_blocks(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 16:
            raise ValueError("block sides must be at least 16 px")
        return value


class ROIDetectionSettings(Section):
    """Sparse ROI detection on the temporally binned movie."""

    enabled: bool = Field(default=True, description="False skips detection and extraction for the plane.")
    preclassification_threshold: float = Field(default=0.0, ge=0, le=1, description=">0 removes ROIs whose shape-only cell probability is not above it.")
    threshold_scaling: float = Field(default=1.0, gt=0, le=100, description="Multiplies the detection threshold; higher finds fewer ROIs.")
    spatial_highpass_window: int = Field(default=25, gt=0, le=1000, description="Box size (px) of the spatial high-pass (neuropil removal) in detection.")
    maximum_overlap: float = Field(default=0.75, gt=0, le=1, description="Largest fraction of an ROI's pixels shared with others before it is dropped.")
    temporal_highpass_window: int = Field(default=100, gt=0, le=100_000, description="Temporal high-pass window in binned frames (<10: Gaussian sigma).")
    maximum_iterations: int = Field(default=50, gt=0, le=10_000, description="Detection loop limit is 250 × this.")
    residual_motion_window: int = Field(
        default=64,
        json_schema_extra=added_later(0),
        ge=0,
        le=10_000,
        description=(
            "Not in cindra: before detection, the change a small local shift of the mean image explains is fitted per binned frame over boxes of this"
            " side (px) and removed, so motion registration leaves (finer than its blocks, subpixel) does not make the edges of bright somata and vessels"
            " look active; 0 turns it off, as in cindra. On the 12 scenario presets with the true tau, classified-cell recall rises on 11 and stays on one"
            " (default 0.868 -> 0.915, dim_quiet 0.183 -> 0.226, strong_neuropil 0.324 -> 0.378, real GCaMP6f dynamics 0.611 -> 0.667) and precision of all"
            " ROIs rises on all; 100-frame 7 Hz clips of silent somata: 106-122 ROIs -> 1-59 (benchmarks/accuracy/README.md)."
        ),
    )
    maximum_bin_duration: float = Field(
        default=0.0,
        json_schema_extra=added_later(0.0),
        ge=0,
        le=100,
        description=(
            "Not in cindra: detection's temporal bins last main.tau (cindra's rule), but at most this long (s); 0 (default): no cap, as in cindra."
            " 0.4 (cindra's default tau) keeps the detection of the default tau while a longer true tau still drives the deconvolution."
            " Classified-cell F1 with the true tau, no cap -> 0.4 s: default 0.937 -> 0.962, dim_quiet 0.365 -> 0.628, strong_neuropil"
            " 0.545 -> 0.920, slow_tau_1p5 0.839 -> 0.938, fast_60hz 0.893 -> 0.943, real GCaMP6s dynamics 0.912 -> 0.943, real GCaMP6f"
            " 0.774 both; but large_cells_18px 0.936 -> 0.887 (precision 0.927 -> 0.836) and precision over all ROIs falls (default"
            " 0.824 -> 0.574), so it is not the default. A 0.7-s cap also loses there (0.909), a classifier retrained on capped bins does"
            " not recover it (0.887 either way), and on the real Allen crop (tau 0.7 s) 0.4 s turns 2 classified cells into none"
            " (benchmarks/accuracy/README.md, 'Capped bins x classifier')."
        ),
    )
    maximum_binned_frames: int = Field(default=5000, gt=0, le=1_000_000, description="Cap on the number of temporal bins (sets the bin size for long recordings).")
    tile_size: int = Field(
        default=0,
        json_schema_extra=added_later(0),
        ge=0,
        le=100_000,
        multiple_of=16,
        description=(
            "Not in cindra: side (px, a multiple of 16) of the spatial tiles sparse detection runs on, one task each, so that no task holds a large field's"
            " whole binned movie; tiles overlap by a halo (half the widest detection filter plus 48 px), the field's cell scale comes from the brightest"
            " peaks of every tile, and an ROI is kept by the tile whose core holds its centroid. ROIs away from tile borders are the whole field's (on a"
            " simulated 256² field with 128-px tiles: 113 of 116 ROIs identical, the others reaching within 15 px of a border; F1 against the"
            " planted somata within 0.01). 0 (default), or a field no larger than one tile: one task on the whole field."
        ),
    )
    denoise: bool = Field(default=False, description="Block-PCA denoise the binned movie before detection.")
    crop_to_soma: bool = Field(default=True, description="Crop ROIs to the soma for statistics and classifier features.")
    minimum_area_fraction: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description=(
            "Not in cindra: ROIs with fewer pixels than this fraction of the expected cell area π·(d/2)² (d: the detected cell diameter, 3·2^scale px)"
            " are dropped after detection (hot pixels and noise specks on real data); 0 keeps every ROI as cindra does."
        ),
    )
    anatomical: bool = Field(
        default=False,
        description=(
            "Not in cindra: also find somata in the mean image (Laplacian-of-Gaussian blobs of the enhanced mean image grown by a seeded watershed)"
            " and add those no activity ROI covers (rois/detection_source: 0 activity, 1 anatomy, 2 both). Finds silent and quiet cells: on 8 scenarios"
            " of our simulator recall of all somata rises in every one (+0.04 to +0.49, e.g. dim_quiet 0.16 -> 0.57) but precision falls where"
            " neuropil is strong or cells dim (strong_neuropil 1.00 -> 0.73, dim_quiet 1.00 -> 0.86), and it is unchecked on real movies; so off."
        ),
    )
    anatomical_diameter_px: int = Field(default=0, ge=0, le=1000, description="Expected soma diameter (px) for anatomical detection; 0 uses the activity detection's diameter.")
    anatomical_threshold: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description=(
            "An anatomical soma no activity ROI found is added when its relative contrast (mean-image brightness over its surrounding ring, minus 1)"
            " is at least this times the median relative contrast of the somata that activity ROIs confirm; higher adds fewer."
        ),
    )
    anatomical_match_fraction: float = Field(
        default=0.5, gt=0, le=1, description="An anatomical soma and an activity ROI are one cell when they share at least this fraction of the smaller one's pixels."
    )
    anatomical_maximum_elongation: float = Field(
        default=2.0, ge=1, le=100, description="Anatomical masks longer than this many times their width (second-moment axes) are dropped (dendrite and process fragments)."
    )


class SourceExtractionMethod(str, enum.Enum):
    """How sources are found: cindra's sparse detection, CaImAn's CNMF (two-photon) or CNMF-E (one-photon)."""

    SPARSE = "sparse"
    CNMF = "cnmf"
    CNMF_E = "cnmf_e"


class SourceExtractionSettings(Section):
    """Which source extraction runs, and CaImAn's CNMF parameters (names and defaults as CaImAn's ``CNMFParams``).

    ``sparse`` is cindra's detection (``roi_detection``). ``cnmf`` models each patch of the registered
    movie as footprints × activity + a low-rank background (CaImAn's greedy initialisation, HALS
    refinement, merging), merges the patches' components on the client, refits the activity over
    the whole field and keeps the components CaImAn's evaluation accepts; its ROIs then go through
    the same extraction, classification and deconvolution as sparse detection's. ``cnmf_e`` (one-photon,
    microendoscopic data) runs the same graph with CNMF-E's initialisation from the correlation ×
    peak-to-noise image (``min_corr``, ``min_pnr``) and the ring-model background
    (``ring_size_factor``) instead of the ``nb`` low-rank one (``nb`` is then unused).
    """

    method: SourceExtractionMethod = Field(
        default=SourceExtractionMethod.SPARSE, description="sparse (cindra's detection), cnmf (CaImAn's CNMF on patches, two-photon) or cnmf_e (CaImAn's CNMF-E on patches, one-photon)."
    )
    K: int = Field(default=4, ge=1, le=1000, description="Components initialised per patch (CaImAn's demo value for patches; its whole-field default is 30).")
    gSig: tuple[float, float] = Field(default=(4.0, 4.0), description="Expected half-size (radius) of a cell, (y, x) px: the Gaussian of the greedy initialisation.")
    gSiz: tuple[int, int] | None = Field(default=None, description="Window of the initialisation kernel and of a first footprint, (y, x) px; None: 2·gSig + 1.")
    rf: int = Field(default=15, ge=4, le=4096, description="Half-size of a patch, px (patches are 2·rf square; CaImAn's demo value, its library default None is one whole-field patch).")
    stride: int = Field(default=6, ge=0, le=4096, description="Overlap between neighbouring patches, px (CaImAn's demo value).")
    nb: int = Field(default=1, ge=0, le=20, description="Background components per patch and of the whole field.")
    merge_thr: float = Field(default=0.8, gt=0, le=1, description="Activity correlation above which overlapping components merge.")
    nIter: int = Field(default=5, ge=1, le=100, description="Power iterations of each component's greedy initialisation.")
    maxIter: int = Field(default=5, ge=1, le=100, description="HALS alternations (activity, then footprints) before and after merging in a patch.")
    bSiz: int = Field(default=3, ge=1, le=50, description="Box (px) by which a footprint may grow in each HALS footprint update.")
    min_SNR: float = Field(default=2.5, ge=0, le=100, description="A component whose trace SNR (event exceptionality) reaches this is accepted.")
    rval_thr: float = Field(default=0.8, ge=-1, le=1, description="A component whose spatial consistency r reaches this is accepted.")
    SNR_lowest: float = Field(default=0.5, ge=0, le=100, description="A component whose SNR is below this is rejected whatever its r.")
    rval_lowest: float = Field(default=-1.0, ge=-1, le=1, description="A component whose r is below this is rejected whatever its SNR.")
    footprint_threshold: float = Field(
        default=0.1, ge=0, lt=1, description="ROI mask of a footprint: its pixels above this fraction of its maximum (CaImAn's maxthr of threshold_components)."
    )
    min_corr: float = Field(
        default=0.85, ge=-1, le=1, description="cnmf_e: a seed pixel's mean correlation with its 8 neighbours (filtered data, samples < 3 σ zeroed) must exceed this (unitless; CaImAn's default 0.85)."
    )
    min_pnr: float = Field(
        default=20.0, ge=0, le=1000, description="cnmf_e: a seed pixel's peak-to-noise ratio, max of the filtered trace / its noise σ, must exceed this (unitless; CaImAn's default 20)."
    )
    ring_size_factor: float = Field(
        default=1.5, gt=0, le=10, description="cnmf_e: radius of the background ring around each pixel, in units of gSiz (radius = ring_size_factor · gSiz px; CaImAn's default 1.5)."
    )

    def window_px(self) -> tuple[int, int]:
        """``gSiz``, or 2·gSig + 1 rounded, (y, x) px."""
        return self.gSiz if self.gSiz is not None else (int(round(2 * self.gSig[0] + 1)), int(round(2 * self.gSig[1] + 1)))

    def patch_fit_options(self) -> dict[str, Any]:
        """Keyword options of `cindra_dask.cnmf.patch.fit_patch`."""
        return {
            "component_count": self.K,
            "gaussian_sigma_px": tuple(self.gSig),
            "gaussian_size_px": self.window_px(),
            "background_count": self.nb,
            "merge_threshold": self.merge_thr,
            "refinement_rounds": self.maxIter,
            "support_dilation_px": self.bSiz,
            "initialization_iterations": self.nIter,
        }

    def one_photon_patch_options(self) -> dict[str, Any]:
        """Keyword options of `cindra_dask.cnmf.patch.fit_patch_one_photon`."""
        window = self.window_px()
        return {
            "component_count": self.K,
            "gaussian_sigma_px": tuple(self.gSig),
            "gaussian_size_px": window,
            "min_correlation": self.min_corr,
            "min_peak_to_noise": self.min_pnr,
            "ring_radius_px": self.ring_size_factor * (2 * (window[0] // 2) + 1),
            "merge_threshold": self.merge_thr,
            "refinement_rounds": self.maxIter,
            "support_dilation_px": self.bSiz,
        }

    def acceptance_options(self) -> dict[str, float]:
        """Keyword options of `cindra_dask.cnmf.evaluation.acceptance_margin`."""
        return {"min_SNR": self.min_SNR, "rval_thr": self.rval_thr, "SNR_lowest": self.SNR_lowest, "rval_lowest": self.rval_lowest}


CNMF_E_PRESET: dict[str, dict[str, Any]] = {
    "source_extraction": {"method": "cnmf_e", "gSig": [2.5, 2.5], "gSiz": [11, 11], "rf": 20, "stride": 12, "K": 10, "min_corr": 0.8, "min_pnr": 8},
    "one_photon_registration": {"enabled": True},
    "nonrigid_registration": {"enabled": False},
    "miniscope_analysis": {"enabled": True},
}
"""Configuration sections for one-photon (miniscope) data with cells about 10 px across (the one-photon
simulator's, `cindra_dask.simulate.one_photon_parameters`): CNMF-E with gSig a quarter of the cell
diameter and gSiz about the diameter, patches of 40 px overlapping by 12, lower seed thresholds than
CaImAn's defaults (its demo's 0.8 / 10 band), one-photon registration, rigid only, and the miniscope
step (detrending, dF/F, events, phase, spectrogram of the traces). Merge it into a
configuration mapping; scale gSig, gSiz, rf and stride with the cell size."""


class SignalExtractionSettings(Section):
    """Fluorescence and neuropil extraction."""

    extract_neuropil: bool = Field(default=True, description="Extract neuropil traces (False: neuropil fluorescence is zero).")
    allow_overlap: bool = Field(default=False, description="Keep pixels shared by several ROIs (False drops them from every ROI).")
    minimum_neuropil_pixels: int = Field(default=350, gt=0, le=1_000_000, description="Smallest neuropil mask in px.")
    inner_neuropil_border_radius: int = Field(default=2, ge=0, le=100, description="Dilations (px) of the ROI excluded from its neuropil.")
    cell_probability_percentile: float = Field(default=50, ge=0, le=100, description="Percentile rule marking 'cell' pixels excluded from neuropil masks.")
    classification_threshold: float = Field(default=0.5, ge=0, le=1, description="An ROI is a cell when its probability is above this.")
    batch_size: int = Field(default=500, gt=0, le=1_000_000, description="cindra's frames per extraction batch and ROIs per OASIS batch; here an upper bound on ROIs per trace chunk.")
    colocalization_threshold: float = Field(default=0.65, ge=0, le=1, description="Channel-2 colocalization cutoff (intensity ratio or overlap fraction).")


class BaselineMethod(str, enum.Enum):
    """How the slow baseline is estimated before deconvolution."""

    MAXIMIN = "maximin"
    CONSTANT = "constant"
    CONSTANT_PERCENTILE = "constant_percentile"


class SpikeDeconvolutionSettings(Section):
    """Neuropil subtraction, baseline and OASIS deconvolution."""

    extract_spikes: bool = Field(default=True, description="Run baseline subtraction and OASIS (False: subtracted fluorescence and spikes are zero).")
    neuropil_coefficient: float = Field(
        default=0.7,
        ge=0,
        le=2,
        description="F_corrected = F − coefficient × F_neuropil; with estimate_neuropil_coefficient, where each ROI's estimate starts and its value when its neuropil is flat.",
    )
    estimate_neuropil_coefficient: bool = Field(
        default=True,
        description=(
            "Not in cindra: estimate each ROI's coefficient as the slope of F on F_neuropil over its quiet frames (the lowest neuropil_quiet_fraction of"
            " F − coefficient × F_neuropil, iterated until it converges), clipped to [0, 1.5]; stored as extraction/neuropil_coefficient. False uses"
            " neuropil_coefficient for every ROI, as cindra does. True raises the median correlation of F_corrected with the true calcium on our simulator (0.968 → 0.978)"
            " and with planted real GCaMP6f/6s dynamics (0.983/0.977 → 0.987/0.981; spike r within ±0.004); not yet checked on real neuropil."
        ),
    )
    neuropil_quiet_fraction: float = Field(default=0.2, gt=0, le=1, description="Share of each ROI's frames taken as quiet (cell at rest) when estimating its neuropil coefficient.")
    baseline_method: BaselineMethod = Field(default=BaselineMethod.MAXIMIN, description="maximin, constant or constant_percentile.")
    baseline_window: float = Field(default=60.0, gt=0, le=100_000, description="Maximin window in seconds.")
    baseline_sigma: float = Field(default=10.0, ge=0, le=10_000, description="Gaussian pre-smoothing (frames) for maximin and constant baselines.")
    baseline_percentile: float = Field(default=8.0, ge=0, le=100, description="Percentile for the constant_percentile baseline.")
    minimum_spike_size: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description=(
            "OASIS spikes smaller than this many noise standard deviations (robust, from frame-to-frame differences) are set to 0; 0 keeps every spike,"
            " as cindra does. 2 helps on our own simulator (spike r 0.948 → 0.955) but costs on real dynamics (CASCADE traces with noise at 7.5 Hz"
            " 0.828 → 0.780; whole pipeline on planted real GCaMP6f/6s 0.54/0.59 → 0.48/0.50; an independent simulator 0.950 → 0.918), so 0 is the default."
        ),
    )
    rise_time: float = Field(
        default=0.0,
        json_schema_extra=added_later(0.0),
        ge=0,
        le=1,
        description=(
            "Not in cindra: the indicator's rise in seconds (the time constant τ_rise of a response exp(−t/tau) − exp(−t/τ_rise) to one spike, plus any latency)."
            " OASIS's AR(1) model rises instantaneously, so it spreads each spike over the rising phase, centred rise_time after the action potential;"
            " every spike is moved rise_time earlier (split between the two nearest frames). 0 keeps OASIS's placement, as cindra does."
            " main.indicator sets it for yours: OGB-1 0.06, GCaMP6f 0.06, GCaMP6s 0.09, jGCaMP7f 0.03, jGCaMP8f/8s 0.01, jGCaMP8m 0 (measured on CASCADE's"
            " ground truth: benchmarks/accuracy/results/spike_timing.md); with these the median spike r of real traces at 30 Hz goes 0.684 → 0.809."
            " No single value is the default: any rise costs where the calcium rises within a frame (jGCaMP8, our simulator)."
        ),
    )


class MiniscopeAnalysisSettings(Section):
    """What a miniscope lab runs after CNMF-E (the miniscope pipeline on CaImAn: ``MiniscopePreprocessor``'s
    detrending and dF/F, ``MiniscopePostprocessor``'s event detection, Hilbert phase and multi-taper
    spectrogram; names and defaults as there), on each accepted component's fluorescence: its CNMF-E trace
    plus the mean background under its footprint. Writes ``plane_k/miniscope/``; needs ``source_extraction.method: cnmf_e``."""

    enabled: bool = Field(default=False, description="Run the miniscope step after extraction (config.CNMF_E_PRESET turns it on).")
    detrend_method: Literal["linear", "median"] | None = Field(
        default=None,
        description=(
            "Photobleaching correction of the traces before dF/F: 'linear' removes each trace's least-squares line (keeping its mean), 'median' subtracts"
            " the mean trace of all components minus its median (the source's median detrending of its movie's mean); None: none, the source's default."
        ),
    )
    df_over_f_method: Literal["delta_f_over_f", "delta_f_over_sqrt_f"] = Field(
        default="delta_f_over_sqrt_f", description="(F − F0) / F0 or the source's default (F − F0) / √F0, F0 the windowed percentile baseline (CaImAn's computeDFF)."
    )
    secs_window: float = Field(default=5.0, gt=0, le=10_000, description="Length of the blocks whose percentile is the dF/F baseline, s (CaImAn's computeDFF secsWindow).")
    quantile_min: float = Field(default=8.0, ge=0, le=100, description="Percentile of each block taken as the baseline F0 (CaImAn's computeDFF quantilMin).")
    event_method: Literal["derivative", "deconvolution"] = Field(
        default="derivative",
        description=(
            "How events are found: 'derivative' (the source's default, find_calcium_events_with_derivatives: peaks of derivative_for_estimates of the dF/F)"
            " or 'deconvolution' (its find_calcium_events_with_deconvolution: OASIS AR(1) spikes of the dF/F with main.tau, here those above event_height σ)."
        ),
    )
    derivative_for_estimates: Literal["zeroth", "first", "second"] = Field(
        default="first", description="Events are peaks of this derivative of the dF/F: zeroth (the trace), first (frame-to-frame change: transient onsets) or second."
    )
    event_height: float = Field(
        default=5.0,
        gt=0,
        le=1000,
        description=(
            "Smallest peak of the derivative (or OASIS spike) that is an event, in the robust noise σ of the derivative (of the dF/F's frame-to-frame"
            " difference for deconvolution); the source's threshold is in trace units, σ units make it independent of brightness."
        ),
    )
    minimum_event_interval: float = Field(
        default=0.5, ge=0, le=10_000, description="Not in the source: least time between two events of a component, s (the larger peak wins; 0: adjacent frames allowed)."
    )
    filter_miniscope_data: bool = Field(default=True, description="Band-pass the dF/F (filter_order, filter_cut) before its Hilbert phase; false: the phase of the unfiltered dF/F.")
    filter_order: int = Field(default=2, ge=1, le=10, description="Order of the Butterworth band-pass, applied forward and backward (the source's n).")
    filter_cut: tuple[float, float] = Field(default=(0.1, 1.5), description="Band-pass edges (low, high), Hz; high must be below half the frame rate (the source's cut).")
    window_length: float = Field(default=30.0, gt=0, le=100_000, description="Spectrogram window, s (one window of the whole trace when the recording is shorter).")
    window_step: float = Field(default=3.0, gt=0, le=100_000, description="Spectrogram step between windows, s.")
    freq_lims: tuple[float, float] = Field(default=(0.0, 15.0), description="Frequencies kept in the spectrogram, (low, high) Hz (at most half the frame rate is there).")
    time_bandwidth: float = Field(default=2.0, ge=1, le=50, description="Time-bandwidth product TW of the multi-taper spectrogram; 2·TW − 1 DPSS tapers.")

    @field_validator("filter_cut", "freq_lims")
    @classmethod
    def _ascending(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] < value[1]:
            raise ValueError(f"must be (low, high) with 0 ≤ low < high, got {value}")
        return value


class JobqueueKind(str, enum.Enum):
    """Batch systems supported through dask-jobqueue."""

    SLURM = "slurm"
    PBS = "pbs"
    LSF = "lsf"
    SGE = "sge"


class AdaptiveScaling(Section):
    """Workers started while tasks wait and stopped when idle (``distributed``'s adaptive scaling), between two counts."""

    minimum: int = Field(default=1, ge=0, le=10_000, description="Fewest workers kept, idle or not (a LocalCluster starts with these; 0: all may stop).")
    maximum: int = Field(ge=1, le=10_000, description="Most workers running at once (jobqueue: worker processes, not jobs).")

    @model_validator(mode="after")
    def _minimum_within_maximum(self) -> "AdaptiveScaling":
        if self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum}) exceeds maximum ({self.maximum}); give minimum ≤ maximum")
        return self


class ClusterSettings(Section):
    """Where the Dask graph runs: a LocalCluster (default), a running scheduler, or a batch queue."""

    scheduler_address: str | None = Field(default=None, description="Address of a running scheduler (tcp://host:8786); overrides the local and jobqueue settings.")
    workers: int = Field(default=0, ge=0, le=10_000, description="Local worker processes (0: one per core) or jobqueue jobs to start; unused with adaptive.")
    adaptive: AdaptiveScaling | None = Field(
        default=None, description="Scale a local or jobqueue cluster with the load between {minimum, maximum} workers (e.g. {minimum: 1, maximum: 16}); null: a fixed cluster of `workers`."
    )
    threads_per_worker: int = Field(default=1, ge=1, le=256, description="Threads per worker; kernels are single-threaded, so parallelism comes from workers × threads.")
    memory_limit_per_worker: MemorySize | Literal["auto"] = Field(default="auto", description="Memory limit of each local worker ('auto': RAM / workers).")
    dashboard_address: str = Field(default=":8787", description="Where the local dashboard listens (':0' picks a free port).")
    jobqueue: JobqueueKind | None = Field(default=None, description="Start workers through dask-jobqueue on slurm, pbs, lsf or sge (needs the 'hpc' extra).")
    jobqueue_options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the dask-jobqueue cluster class (cores, memory, queue, walltime, ...).")

    @field_validator("memory_limit_per_worker")
    @classmethod
    def _memory_or_auto(cls, value: str) -> str:
        return value if value == "auto" else _parse_memory(value)


_DURATION = r"P(?!$)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?"
AGE_PATTERN = rf"^{_DURATION}(/({_DURATION})?)?$"
"""ISO 8601 duration (P90D, P12W, P1Y2M), optionally a range (P90D/P120D) or open range (P90D/), as NWB and DANDI read ages."""

SPECIES_PATTERN = r"^([A-Z][a-z]* [a-z]+.*|http://purl\.obolibrary\.org/obo/NCBITaxon_\d+)$"
"""Latin binomial (Mus musculus) or an NCBI taxonomy IRI, as nwbinspector requires."""


class MetadataSettings(Section):
    """Who, what and where of the recording, for exports that carry it (NWB: `cindra-dask export nwb`).

    Nothing here changes processing (no step's hash covers it). Every field is optional for a run;
    `cindra-dask validate` notes the ones an NWB export needs (`NWB_REQUIRED_METADATA`). The NWB
    file's ``identifier`` is not a field: every export draws a fresh UUID.
    """

    session_start_time: dt.datetime | None = Field(
        default=None, description="Start of the recording session, ISO 8601 with its UTC offset (2024-05-01T10:30:00+02:00); NWB's session_start_time, required by every NWB file."
    )
    session_description: str | None = Field(default=None, min_length=1, description="What this session is (NWB's session_description); None: generated from the recording name, planes, frames and rate.")
    experiment_description: str | None = Field(default=None, min_length=1, description="The experiment this session belongs to (NWB's experiment_description).")
    experimenter: tuple[str, ...] = Field(default=(), description="Who recorded, as 'Last, First' names (NWB's experimenter).")
    institution: str | None = Field(default=None, min_length=1, description="Institution where the data were recorded.")
    lab: str | None = Field(default=None, min_length=1, description="Lab where the data were recorded.")
    keywords: tuple[str, ...] = Field(default=(), description="Terms to search the file by (NWB's keywords).")
    subject_id: str | None = Field(default=None, min_length=1, pattern=r"^[^/]+$", description="Identifier of the animal (no '/'; DANDI builds paths from it).")
    species: str | None = Field(default=None, description="Species as a Latin binomial (Mus musculus) or an NCBI taxonomy IRI.")
    sex: Literal["M", "F", "U", "O"] | None = Field(default=None, description="Sex of the animal: M, F, U (unknown) or O (other).")
    age: str | None = Field(default=None, description="Age of the animal at the session as an ISO 8601 duration: P90D = 90 days, P12W = 12 weeks (a range: P90D/P120D).")
    strain: str | None = Field(default=None, min_length=1, description="Strain of the animal (C57BL/6J).")
    genotype: str | None = Field(default=None, min_length=1, description="Genetic line of the animal (Ai148; Slc17a7-IRES2-Cre).")
    subject_description: str | None = Field(default=None, min_length=1, description="Anything else about the animal (surgery, window, virus).")
    indicator: str | None = Field(default=None, min_length=1, description="Calcium indicator imaged in the functional channel (GCaMP6s, jGCaMP8m).")
    location: str | None = Field(
        default=None, min_length=1, description="Brain area imaged; for a mouse a term of the Allen Mouse Brain CCF (VISp or 'Primary visual area'), as nwbinspector expects."
    )
    excitation_wavelength_nm: float | None = Field(default=None, gt=10, le=5000, description="Excitation wavelength of the laser, nm (920 for GCaMP two-photon).")
    emission_wavelength_nm: float | None = Field(default=None, gt=10, le=5000, description="Centre of the emission filter of the functional channel, nm (510 for GCaMP).")
    device: str | None = Field(default=None, min_length=1, pattern=r"^[^/]+$", description="Name of the microscope (the NWB Device; no '/').")
    device_manufacturer: str | None = Field(default=None, min_length=1, description="Maker of the microscope.")
    pixel_size_um: float | None = Field(default=None, gt=0, le=1000, description="Side of one (square) pixel in the sample, µm (NWB ImagingPlane grid_spacing; the OME-NGFF scale of the store's movies and images, which are in pixels while it is unknown).")

    @field_validator("species")
    @classmethod
    def _binomial(cls, value: str | None) -> str | None:
        if value is not None and re.fullmatch(SPECIES_PATTERN, value) is None:
            raise ValueError(f"{value!r} is neither a Latin binomial nor an NCBI taxonomy IRI; write e.g. 'Mus musculus' or 'Rattus norvegicus'")
        return value

    @field_validator("age")
    @classmethod
    def _iso_duration(cls, value: str | None) -> str | None:
        if value is not None and re.fullmatch(AGE_PATTERN, value) is None:
            raise ValueError(f"{value!r} is not an ISO 8601 duration; write P90D for 90 days, P12W for 12 weeks, P90D/P120D for a range")
        return value

    @field_validator("session_start_time")
    @classmethod
    def _with_time_zone(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()} has no UTC offset; add one, e.g. {value.isoformat()}+00:00")
        return value


NWB_REQUIRED_METADATA = (
    "session_start_time",
    "subject_id",
    "species",
    "sex",
    "age",
    "indicator",
    "location",
    "excitation_wavelength_nm",
    "emission_wavelength_nm",
    "device",
)
"""`MetadataSettings` fields an NWB export needs: the file's start time (NWB requires it), the subject
that nwbinspector and DANDI require, and the imaging plane's indicator, location, wavelengths and device
(NWB requires them; an export without them writes 'unknown' / NaN and warns)."""


def missing_nwb_metadata(metadata: MetadataSettings) -> list[str]:
    """``metadata.<field>`` of every `NWB_REQUIRED_METADATA` field that is not set, in that order."""
    return [f"metadata.{name}" for name in NWB_REQUIRED_METADATA if getattr(metadata, name) in (None, "", ())]


class SingleRecordingConfiguration(Section):
    """Everything `cindra-dask run` needs for one recording."""

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Configuration schema version.")
    pipeline_type: Literal["single-recording"] = Field(default="single-recording", description="Which pipeline this file configures.")
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings, description="Execution settings.")
    main: MainSettings = Field(default_factory=MainSettings, description="What the recording holds.")
    file_io: FileIOSettings = Field(default_factory=FileIOSettings, description="Inputs and outputs.")
    acquisition: AcquisitionParameters | None = Field(
        default=None,
        description="Acquisition parameters; None reads cindra_parameters.json beside the movie files, or else their ScanImage header, Bruker XML or NWB series; a section here replaces them entirely.",
    )
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings, description="Rigid registration.")
    one_photon_registration: OnePhotonRegistrationSettings = Field(default_factory=OnePhotonRegistrationSettings, description="One-photon pre-filtering.")
    nonrigid_registration: NonrigidRegistrationSettings = Field(default_factory=NonrigidRegistrationSettings, description="Nonrigid registration.")
    roi_detection: ROIDetectionSettings = Field(default_factory=ROIDetectionSettings, description="ROI detection.")
    source_extraction: SourceExtractionSettings = Field(default_factory=SourceExtractionSettings, description="Sparse detection, CNMF or CNMF-E.")
    signal_extraction: SignalExtractionSettings = Field(default_factory=SignalExtractionSettings, description="Signal extraction.")
    spike_deconvolution: SpikeDeconvolutionSettings = Field(default_factory=SpikeDeconvolutionSettings, description="Baseline and deconvolution.")
    miniscope_analysis: MiniscopeAnalysisSettings = Field(default_factory=MiniscopeAnalysisSettings, description="Detrending, dF/F, events, phase and spectrogram of CNMF-E traces.")
    cluster: ClusterSettings = Field(default_factory=ClusterSettings, description="Dask cluster.")
    metadata: MetadataSettings = Field(default_factory=MetadataSettings, description="Session, subject and microscope, for the NWB export (changes no result).")

    @model_validator(mode="before")
    @classmethod
    def _indicator_kinetics(cls, data: Any) -> Any:
        """``main.indicator`` fills ``main.tau``, ``spike_deconvolution.rise_time`` and ``metadata.indicator`` where the
        mapping does not set them; a tau or rise time written beside it wins, with a warning when it differs."""
        if not isinstance(data, dict) or not isinstance(data.get("main"), dict) or data["main"].get("indicator") is None:
            return data
        deconvolution = data.get("spike_deconvolution") or {}
        try:
            indicator = Indicator(data["main"]["indicator"])
        except ValueError:
            return data  # the field's own validation names the allowed values
        if not isinstance(deconvolution, dict):
            return data
        tau_s, rise_time_s = INDICATOR_KINETICS[indicator]
        for section, name, value, written in (("main", "tau", tau_s, data["main"]), ("spike_deconvolution", "rise_time", rise_time_s, deconvolution)):
            if name in written and written[name] != value:
                warnings.warn(f"{section}.{name} {written[name]} is used, not main.indicator {indicator.value}'s {value:g} s; remove the {section}.{name} line to use the indicator's", stacklevel=2)
        metadata = data.get("metadata") or {}
        if isinstance(metadata, dict):
            metadata = {"indicator": indicator.value, **{name: value for name, value in metadata.items() if not (name == "indicator" and value is None)}}
        return {**data, "main": {"tau": tau_s, **data["main"]}, "spike_deconvolution": {"rise_time": rise_time_s, **deconvolution}, "metadata": metadata}

    @model_validator(mode="after")
    def _miniscope_needs_cnmf_e(self) -> "SingleRecordingConfiguration":
        if self.miniscope_analysis.enabled and self.source_extraction.method is not SourceExtractionMethod.CNMF_E:
            raise ValueError("miniscope_analysis.enabled needs source_extraction.method: cnmf_e (it analyses CNMF-E traces); set the method or turn it off")
        return self

    @field_validator("acquisition", mode="before")
    @classmethod
    def _complete_acquisition(cls, value: Any) -> Any:
        if isinstance(value, dict):
            missing = [name for name, field in AcquisitionParameters.model_fields.items() if field.is_required() and name not in value]
            if missing:
                raise ValueError(
                    f"an acquisition section replaces {ACQUISITION_FILE_NAME} entirely, so it needs {', '.join(missing)} too "
                    f"(required: {', '.join(name for name, field in AcquisitionParameters.model_fields.items() if field.is_required())}); add them, or drop the section to read the file"
                )
        return value


def roi_detection_options(configuration: SingleRecordingConfiguration) -> DetectionOptions:
    """The detection kernels' options (`cindra_dask.detection.plane.DetectionOptions`) from ``roi_detection``;
    the denoising blocks are half the ``nonrigid_registration`` blocks (at least 1 px)."""
    from cindra_dask.detection.plane import DetectionOptions

    settings = configuration.roi_detection
    return DetectionOptions(
        temporal_highpass_window_frames=settings.temporal_highpass_window,
        spatial_highpass_window_px=settings.spatial_highpass_window,
        threshold_scaling=settings.threshold_scaling,
        maximum_iterations=settings.maximum_iterations,
        residual_motion_window_px=settings.residual_motion_window,
        maximum_overlap=settings.maximum_overlap,
        crop_to_soma=settings.crop_to_soma,
        minimum_area_fraction=settings.minimum_area_fraction,
        denoise_block_shape_px=tuple(max(1, side // 2) for side in configuration.nonrigid_registration.block_size) if settings.denoise else None,
        preclassification_threshold=settings.preclassification_threshold,
        anatomical_diameter_px=settings.anatomical_diameter_px,
        anatomical_maximum_elongation=settings.anatomical_maximum_elongation,
        anatomical_match_fraction=settings.anatomical_match_fraction,
        anatomical_contrast_fraction=settings.anatomical_threshold,
    )


# ----------------------------------------------------------------------------------------------
# Multi-recording sections
# ----------------------------------------------------------------------------------------------


class RecordingIOSettings(Section):
    """Which processed recordings are tracked together."""

    recording_directories: tuple[Path, ...] = Field(default=(), description="Recording stores (<name>.zarr) to track across; at least two; the first is the main one.")
    dataset_name: str = Field(default="", pattern=r"^[a-z0-9_\-]*$", description="Name of this tracking dataset (lower case); results go to multi_recording/<dataset_name>/ in every store.")
    repeat_selection: bool = Field(default=False, description="Select ROIs again even if a selection exists.")


class ROISelectionSettings(Section):
    """Which ROIs of each recording take part in tracking."""

    probability_threshold: float = Field(default=0.85, ge=0, le=1, description="Minimum cell probability of a tracked cell's most confident member (every ROI within the size limits is tracked).")
    maximum_size: int = Field(default=1000, gt=0, le=1_000_000, description="Largest ROI in px.")
    mroi_region_margin: int = Field(default=30, ge=0, le=10_000, description="Minimum distance (px) of a centroid from an MROI region border.")
    probability_threshold_channel_2: float | None = Field(default=None, ge=0, le=1, description="Channel 2 value; None inherits probability_threshold.")
    maximum_size_channel_2: int | None = Field(default=None, gt=0, le=1_000_000, description="Channel 2 value; None inherits maximum_size.")
    mroi_region_margin_channel_2: int | None = Field(default=None, ge=0, le=10_000, description="Channel 2 value; None inherits mroi_region_margin.")


class ReferenceImageType(str, enum.Enum):
    """Detection image used for cross-recording registration."""

    MEAN = "mean"
    ENHANCED_MEAN = "enhanced_mean"
    MAXIMUM_PROJECTION = "maximum_projection"


class DiffeomorphicRegistrationSettings(Section):
    """Groupwise diffeomorphic demons registration into a common space."""

    image_type: ReferenceImageType = Field(default=ReferenceImageType.ENHANCED_MEAN, description="Which detection image is registered.")
    grid_sampling_factor: float = Field(default=1.0, gt=0, le=1, description="Growth of the B-spline knot spacing with scale.")
    final_grid_sampling: float = Field(default=16.0, gt=0, le=1000, description="Knot spacing (px) at the finest scale.")
    scale_sampling: int = Field(default=30, gt=0, le=10_000, description="Iterations per pyramid level.")
    speed_factor: float = Field(default=3.0, gt=0, le=100, description="Demons force gain (1–5 is sensible).")
    repeat_registration: bool = Field(default=False, description="Register again (also redoes tracking and projection).")


class ROITrackingSettings(Section):
    """Clustering of registered ROIs into cells tracked across recordings."""

    threshold: float = Field(default=0.75, ge=0, le=1, description="Jaccard-distance cut of the complete-linkage clustering.")
    mask_prevalence: float = Field(default=50, ge=0, le=100, description="Minimum percentage of recordings a tracked cell must appear in.")
    pixel_prevalence: float = Field(default=50, ge=0, le=100, description="Minimum percentage of a cell's members holding a pixel for the template.")
    step_sizes: tuple[int, int] = Field(default=(200, 200), description="Spatial bin size (px); both equal.")
    bin_size: int = Field(default=50, gt=0, le=10_000, description="Margin (px) added around each bin when collecting ROIs.")
    maximum_distance: float = Field(default=20, gt=0, le=10_000, description="Largest centroid distance (px) of candidate pairs.")
    minimum_size: int | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description=(
            "Smallest number of non-overlapping template pixels. None (not cindra's 25): a quarter of the median "
            "template's pixel count, about 27 px for 12-px two-photon cells and 11 px for 46-px one-photon cells, "
            "where the fixed 25 px drops a quarter of the links (benchmarks/accuracy/results/tracking.md)."
        ),
    )

    @field_validator("step_sizes")
    @classmethod
    def _square(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] != value[1] or value[0] <= 0:
            raise ValueError("step_sizes must be two equal positive integers")
        return value


class MultiRecordingConfiguration(Section):
    """Everything `cindra-dask run` needs to track cells across recordings."""

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Configuration schema version.")
    pipeline_type: Literal["multi-recording"] = Field(default="multi-recording", description="Which pipeline this file configures.")
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings, description="Execution settings.")
    recording_io: RecordingIOSettings = Field(default_factory=RecordingIOSettings, description="Recordings and dataset name.")
    roi_selection: ROISelectionSettings = Field(default_factory=ROISelectionSettings, description="ROI selection.")
    diffeomorphic_registration: DiffeomorphicRegistrationSettings = Field(default_factory=DiffeomorphicRegistrationSettings, description="Demons registration.")
    roi_tracking: ROITrackingSettings = Field(default_factory=ROITrackingSettings, description="Tracking.")
    signal_extraction: SignalExtractionSettings = Field(default_factory=SignalExtractionSettings, description="Signal extraction (overlap is always allowed).")
    spike_deconvolution: SpikeDeconvolutionSettings = Field(default_factory=SpikeDeconvolutionSettings, description="Baseline and deconvolution.")
    cluster: ClusterSettings = Field(default_factory=ClusterSettings, description="Dask cluster.")


Configuration = SingleRecordingConfiguration | MultiRecordingConfiguration
ConfigurationT = TypeVar("ConfigurationT", SingleRecordingConfiguration, MultiRecordingConfiguration)
PIPELINE_MODELS: dict[str, type[Section]] = {
    "single-recording": SingleRecordingConfiguration,
    "multi-recording": MultiRecordingConfiguration,
}


def unset_fields(configuration: Configuration) -> list[str]:
    """'<section.field>: <what to give>' for each field a run needs and the configuration leaves unset."""
    if isinstance(configuration, SingleRecordingConfiguration):
        return [
            *(["file_io.data_path: not set; give the folder holding the movie files (and cindra_parameters.json, unless their metadata describe the acquisition)"] if configuration.file_io.data_path is None else []),
            *(["file_io.output_path: not set; give the folder that receives the results"] if configuration.file_io.output_path is None else []),
        ]
    recording_io = configuration.recording_io
    return [
        *(["recording_io.dataset_name: not set; name the tracking dataset (lower case, digits, '_' or '-')"] if not recording_io.dataset_name else []),
        *(
            [f"recording_io.recording_directories: {len(recording_io.recording_directories)} recording(s) given; list at least two recording stores (<name>.zarr)"]
            if len(recording_io.recording_directories) < 2
            else []
        ),
    ]


# ----------------------------------------------------------------------------------------------
# YAML
# ----------------------------------------------------------------------------------------------


def _describe_validation_error(error: ValidationError, *, source: str, overridden: Callable[[str], bool] = lambda location: False) -> list[str]:
    """One line per problem: '<source>: <field.path>: <what is wrong>', or '--set <field.path>: ...'
    where ``overridden(field.path)`` says a ``--set`` gave it."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "<top level>"
        kind = item["type"]
        message = item["msg"]
        if kind == "extra_forbidden":
            message = "unknown key; remove it or check its spelling (see `cindra-dask configure`)"
        elif kind == "missing":
            message = "required field is missing"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        lines.append(f"--set {location}: {message}" if overridden(location) else f"{source}: {location}: {message}")
    return lines


def _yaml_mapping(text: str, *, source: str) -> dict[str, Any]:
    try:
        payload = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown line"
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigurationError(f"{source}: YAML syntax error at {where}: {problem}; fix the file's syntax") from error
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ConfigurationError(f"{source}: expected a mapping of sections (runtime:, main:, ...) at the top level")
    return payload


def _field_default(parts: list[str]) -> Any:
    """The default at ``section.field...`` in the first pipeline model that has one there (None: none)."""
    for model in PIPELINE_MODELS.values():
        node: Any = model().model_dump(mode="json")
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


def _set_dotted(payload: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``section.field`` in ``payload``; a section given as null (``acquisition: null``) starts empty.
    A field taken for a section is refused whether the file writes it or leaves it to its default."""
    parts = dotted.split(".")
    node = payload
    for depth, part in enumerate(parts[:-1]):
        if node.get(part) is None:
            default = _field_default(parts[: depth + 1]) if depth else None
            node[part] = default if default is not None and not isinstance(default, dict) else {}
        child = node[part]
        if not isinstance(child, dict):
            field = ".".join(parts[: depth + 1])
            raise ConfigurationError(f"--set {dotted}: {field} is a field ({child!r}), not a section; use --set {field}=VALUE")
        node = child
    node[parts[-1]] = value


def _given_by(location: str, overrides: list[tuple[str, Any]], file_payload: dict[str, Any]) -> bool:
    """Whether a ``--set`` gave the field at ``location``: one set it (or a value it lies in), or set a
    field under it where the file has none (``--set acquisition.frame_rate=…`` making the section)."""
    node: Any = file_payload
    for part in location.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return any(dotted == location or location.startswith(dotted + ".") or (dotted.startswith(location + ".") and node in (None, {})) for dotted, _ in overrides)


def _pipeline_type(payload: dict[str, Any], *, source: str) -> str:
    """``pipeline_type`` of a mapping, or, when the line is missing, the pipeline whose own sections
    (those the other pipeline's model lacks) it holds."""
    if "pipeline_type" in payload:
        if payload["pipeline_type"] not in PIPELINE_MODELS:
            raise ConfigurationError(f"{source}: pipeline_type: must be one of {sorted(PIPELINE_MODELS)}, got {payload['pipeline_type']!r}")
        return str(payload["pipeline_type"])
    found = {
        pipeline: [name for name in model.model_fields if name in payload and all(name not in other.model_fields for other in PIPELINE_MODELS.values() if other is not model)]
        for pipeline, model in PIPELINE_MODELS.items()
    }
    if found["single-recording"] and found["multi-recording"]:
        raise ConfigurationError(
            f"{source}: pipeline_type: the line is missing and the file has sections of both pipelines "
            f"(single-recording: {', '.join(found['single-recording'])}; multi-recording: {', '.join(found['multi-recording'])}); "
            "add 'pipeline_type: single-recording' or 'pipeline_type: multi-recording' and remove the other pipeline's sections"
        )
    return "multi-recording" if found["multi-recording"] else "single-recording"


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """Parse ``section.field=value`` strings; values are read as YAML scalars/lists."""
    parsed = []
    for item in overrides:
        key, separator, raw_value = item.partition("=")
        if not separator or not key.strip():
            raise ConfigurationError(f"--set {item!r}: expected section.field=value")
        try:
            value = yaml.safe_load(raw_value) if raw_value.strip() else None
        except yaml.YAMLError as error:
            raise ConfigurationError(f"--set {item!r}: value is not valid YAML") from error
        parsed.append((key.strip(), value))
    return parsed


def configuration_from_mapping(
    payload: dict[str, Any],
    *,
    source: str,
    overrides: list[tuple[str, Any]] | None = None,
    model: type[ConfigurationT] | None = None,
) -> Configuration:
    """Validate a mapping (plus dotted overrides) into the right configuration model: ``model``, the
    file's ``pipeline_type``, or the pipeline its sections belong to (`_pipeline_type`). Problems of
    fields an override gave are reported as ``--set`` problems."""
    file_payload = json.loads(json.dumps(payload, default=str))  # deep copy; paths/enums as text
    payload = json.loads(json.dumps(file_payload))
    overrides = list(overrides or [])
    for dotted, value in overrides:
        _set_dotted(payload, dotted, value)
    if model is None:
        model = PIPELINE_MODELS[_pipeline_type(payload, source=source)]  # type: ignore[assignment]
    try:
        return model.model_validate(payload)  # type: ignore[union-attr, return-value]
    except ValidationError as error:
        problems = _describe_validation_error(error, source=source, overridden=lambda location: _given_by(location, overrides, file_payload))
        raise ConfigurationError(*problems) from error


def load_configuration(path: Path | str, *, overrides: list[str] | tuple[str, ...] = ()) -> Configuration:
    """Read a YAML configuration file; errors name the file, the line or the field path."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as error:
        raise ConfigurationError(f"{path}: configuration file not found; create one with `cindra-dask configure`") from error
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"{path}: cannot read the configuration file ({error.__class__.__name__})") from error
    return configuration_from_mapping(_yaml_mapping(text, source=str(path)), source=str(path), overrides=parse_overrides(overrides))


def configuration_to_yaml(configuration: Section) -> str:
    """The configuration as plain YAML (no comments); reloading it gives an equal model."""
    return yaml.safe_dump(configuration.model_dump(mode="json"), sort_keys=False, default_flow_style=False, width=120)


def save_configuration(configuration: Section, path: Path | str) -> Path:
    """Write :func:`configuration_to_yaml` to ``path``."""
    path = Path(path)
    path.write_text(configuration_to_yaml(configuration))
    return path


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def indicator_filled_fields(values: Section) -> frozenset[str]:
    """The ``section.field`` names ``main.indicator`` fills (`SingleRecordingConfiguration._indicator_kinetics`)
    whose value in ``values`` is the one a file that leaves them out gets: the indicator's, or without
    one the field's default. The template comments them out, so that an indicator set later in the
    file is not overridden by a written default."""
    if not isinstance(values, SingleRecordingConfiguration):
        return frozenset()
    indicator = values.main.indicator
    tau_s, rise_time_s = INDICATOR_KINETICS[indicator] if indicator is not None else (MainSettings.model_fields["tau"].default, SpikeDeconvolutionSettings.model_fields["rise_time"].default)
    filled = {
        "main.tau": values.main.tau == tau_s,
        "spike_deconvolution.rise_time": values.spike_deconvolution.rise_time == rise_time_s,
        "metadata.indicator": indicator is not None and values.metadata.indicator == indicator.value,
    }
    return frozenset(name for name, same in filled.items() if same)


def _section_template(model: type[BaseModel], values: BaseModel, indent: str, *, prefix: str = "", commented: frozenset[str] = frozenset(), note: str = "") -> list[str]:
    """The template lines of one model: each field's description, bounds and value; the ``commented``
    ``section.field`` names as comments, followed by ``note``."""
    lines: list[str] = []
    for name, field in model.model_fields.items():
        value = getattr(values, name)
        description = field.description or ""
        if isinstance(value, BaseModel):
            lines += ["", f"{indent}# {description}", f"{indent}{name}:"]
            lines += _section_template(type(value), value, indent + "  ", prefix=f"{prefix}{name}.", commented=commented, note=note)
            continue
        bounds = [f"{label} {getattr(meta, attribute)}" for meta in field.metadata for attribute, label in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")) if getattr(meta, attribute, None) is not None]
        suffix = f" [{', '.join(bounds)}]" if bounds else ""
        lines.append(f"{indent}# {description}{suffix}")
        dumped = json.loads(json.dumps(value, default=lambda item: item.value if isinstance(item, enum.Enum) else str(item)))
        if f"{prefix}{name}" in commented:
            lines.append(f"{indent}# {name}: {_yaml_value(dumped)}  ({note})")
            continue
        lines.append(f"{indent}{name}: {_yaml_value(dumped)}")
        if name == "acquisition":
            lines += [f"{indent}# for example:", *(f"{indent}#   {line}" for line in _ACQUISITION_EXAMPLE)]
    return lines


_ACQUISITION_EXAMPLE = ("acquisition:", "  frame_rate: 30.0", "  plane_number: 1", "  channel_number: 1")


def configuration_template(pipeline_type: Literal["single-recording", "multi-recording"] = "single-recording", *, values: Section | None = None) -> str:
    """A commented YAML file with every field (at its default, or at ``values``); it loads back unchanged.
    The fields ``main.indicator`` would fill with the same values are comments (`indicator_filled_fields`)."""
    model = PIPELINE_MODELS[pipeline_type]
    default = values if values is not None else model()
    header = [
        f"# cindra-dask {pipeline_type} configuration (schema_version {SCHEMA_VERSION}).",
        "# Generated from the configuration models: every field, its meaning, bounds and default.",
        "# Run it with: cindra-dask run THIS_FILE.yaml  (check first with: cindra-dask validate THIS_FILE.yaml)",
    ]
    indicator = getattr(getattr(default, "main", None), "indicator", None)
    note = f"main.indicator {indicator.value}'s value" if indicator is not None else "the default unless main.indicator sets it"
    body = _section_template(model, default, "", commented=indicator_filled_fields(default), note=f"{note}; uncomment to override the indicator")
    return "\n".join(header + body) + "\n"


def write_configuration_file(path: Path | str, *, pipeline_type: Literal["single-recording", "multi-recording"], overrides: list[str] | tuple[str, ...], overwrite: bool) -> list[str]:
    """Write the commented template (`configuration_template`) of ``pipeline_type`` with ``section.field=value``
    overrides to ``path``; the `unset_fields` lines of what a run still needs. Refuses an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigurationError(f"{path}: exists; pass --overwrite to replace it")
    values = configuration_from_mapping({}, source="defaults", overrides=parse_overrides(overrides), model=PIPELINE_MODELS[pipeline_type])
    path.write_text(configuration_template(pipeline_type, values=values))
    return unset_fields(values)


def cluster_overrides(*, workers: int | None, scheduler_address: str | None) -> list[str]:
    """``--set`` overrides of ``cluster.workers`` and ``cluster.scheduler_address`` (None: not overridden)."""
    return [*([f"cluster.workers={workers}"] if workers is not None else []), *([f"cluster.scheduler_address={scheduler_address}"] if scheduler_address is not None else [])]


def section_hash(configuration: Section, sections: tuple[str, ...], *, extra: Any = None) -> str:
    """SHA-256 (hex, 16 chars) of the named sections' values plus ``extra``: a phase's identity."""
    dumped = configuration.model_dump(mode="json")
    payload = {name: dumped.get(name) for name in sections}
    payload["__extra__"] = extra
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hashable_sections(configuration: Section, sections: tuple[str, ...]) -> dict[str, Any]:
    """Sections' values without the force flags (``repeat_*``), which must not change a hash, and without the
    fields at the value they had before they existed (`added_later`)."""
    dumped = configuration.model_dump(mode="json")
    hashable: dict[str, Any] = {}
    for name in sections:
        fields = type(getattr(configuration, name)).model_fields if getattr(configuration, name, None) is not None else {}
        hashable[name] = {
            key: value
            for key, value in (dumped.get(name) or {}).items()
            if not key.startswith("repeat_") and not (key in fields and _at_value_before_it_existed(fields[key].json_schema_extra, value))
        }
    return hashable


def _at_value_before_it_existed(extra: Any, value: Any) -> bool:
    return isinstance(extra, dict) and "value_before_it_existed" in extra and value == extra["value_before_it_existed"]
