"""What the viewer reads from a store: small arrays whole, traces one ROI row at a time, frames one chunk at a time.

Nothing here holds a whole movie: `FrameReader` decodes the one chunk of frames that holds the
frame asked for (and keeps the last chunk of each movie, so scrubbing within a chunk reads nothing),
and sums a window of frames one chunk at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from cindra_dask.export.curation import CLASSIFICATION, HISTORY_ATTRIBUTE
from cindra_dask.export.report import roi_contours
from cindra_dask.rois import RaggedRois
from cindra_dask.store import COMBINED, DETECTION, EXTRACTION, REGISTRATION, ROI_ARRAYS, ROIS, RecordingStore, array_shape, arrays_under, frames_path, multi_recording_path, stage_path

DETECTION_IMAGES = {"mean_image": "mean image", "enhanced_mean_image": "enhanced mean image", "maximum_projection": "maximum projection", "correlation_map": "correlation map"}
"""The detection images the ROIs panel shows, by array name, with their titles."""
TRACE_ARRAYS = ("cell_fluorescence", "neuropil_fluorescence", "delta_f_over_f", "spikes")
TRACKED_TRACE = "subtracted_fluorescence"
"""The trace of a tracked cell shown per recording (``multi_recording/<dataset>/extraction/``, F − c·Fneu)."""
"""The per-ROI traces shown below the images (``extraction/`` arrays, (n, T))."""
PER_PIXEL_ARRAYS = (*ROI_ARRAYS, "soma_mask", "overlap_mask")
"""Arrays of ``rois/`` that are not per-ROI statistics."""
MovieKind = Literal["raw", "registered"]


class PlaneRois(NamedTuple):
    """The ROIs of one plane as the viewer draws and filters them.

    Attributes
    ----------
    outline_xs, outline_ys : per ROI, the (m,) x and y of its longest contour, image px (pixel
        (y, x) covers [x, x+1] × [y, y+1]).
    classification : (n, 2) f4 [is_cell 0/1, probability]; None before extraction classified them.
    statistics : name → (n,) f8: every 1-D per-ROI array of ``rois/`` and ``probability``.
    curation_count : entries in the classification's ``curation_history``.
    """

    outline_xs: list[np.ndarray]
    outline_ys: list[np.ndarray]
    classification: np.ndarray | None
    statistics: dict[str, np.ndarray]
    curation_count: int

    @property
    def count(self) -> int:
        """Number of ROIs."""
        return len(self.outline_xs)


def read_classification(store: RecordingStore, *, plane: int, roi_count: int) -> tuple[np.ndarray | None, int]:
    """(n, 2) f4 ``cell_classification`` of a plane (None when absent or not one row per ROI) and its history length."""
    array_path = f"{stage_path(plane, EXTRACTION)}/{CLASSIFICATION}"
    if array_path not in store:
        return None, 0
    classification = store.read(array_path).astype(np.float32).reshape(-1, 2)
    history = store.group_attributes(array_path).get(HISTORY_ATTRIBUTE, [])
    return (classification if len(classification) == roi_count else None), len(history)


def outlines(rois: RaggedRois) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per ROI the (m,) x and y of its longest `roi_contours` contour, image px (empty for an empty ROI)."""
    xs, ys = [], []
    for index in range(rois.count):
        ypix, xpix, _ = rois.roi(index)
        contours = roi_contours(ypix, xpix)
        outline = max(contours, key=len) if contours else np.zeros((0, 2))
        xs.append(outline[:, 0])
        ys.append(outline[:, 1])
    return xs, ys


def plane_rois(store: RecordingStore, *, plane: int) -> PlaneRois:
    """The ROIs of ``plane`` (none when detection has not run)."""
    group = stage_path(plane, ROIS)
    if f"{group}/pixel_offsets" not in store:
        return PlaneRois([], [], None, {}, 0)
    rois = store.read_rois(group)
    xs, ys = outlines(rois)
    statistics = {
        path.rsplit("/", 1)[1]: store.read(path).astype(np.float64)
        for path in arrays_under(store, group)
        if path.rsplit("/", 1)[1] not in PER_PIXEL_ARRAYS and array_shape(store, path) == (rois.count,)
    }
    classification, curation_count = read_classification(store, plane=plane, roi_count=rois.count)
    if classification is not None:
        statistics["probability"] = classification[:, 1].astype(np.float64)
    return PlaneRois(xs, ys, classification, dict(sorted(statistics.items())), curation_count)


def detection_images(store: RecordingStore, *, plane: int) -> dict[str, np.ndarray]:
    """The plane's `DETECTION_IMAGES` present, (Ly, Lx) f4 each, in that order."""
    group = stage_path(plane, DETECTION)
    return {name: store.read(f"{group}/{name}").astype(np.float32) for name in DETECTION_IMAGES if f"{group}/{name}" in store}


def roi_traces(store: RecordingStore, *, plane: int, roi: int) -> dict[str, np.ndarray]:
    """Row ``roi`` of each `TRACE_ARRAYS` array present, (T,) f4 each (one ROI chunk read per array)."""
    group = stage_path(plane, EXTRACTION)
    return {name: store.read_selection(f"{group}/{name}", roi).astype(np.float32) for name in TRACE_ARRAYS if f"{group}/{name}" in store}


class RegistrationSeries(NamedTuple):
    """Per-frame registration outputs of a plane (absent arrays are None).

    Attributes
    ----------
    rigid_offsets : (T, 2) f4 (dy, dx) px: frame t shows the reference moved by (+dy, +dx).
    rigid_correlations : (T,) f4 phase-correlation peak.
    bad_frames : (T,) bool.
    block_offset_mean, block_offset_max : (T,) f4 mean and max over blocks of |nonrigid offset| px.
    pc_shift_metrics : (k, 3) f4 px [rigid, nonrigid mean, nonrigid max] per principal component.
    """

    rigid_offsets: np.ndarray | None
    rigid_correlations: np.ndarray | None
    bad_frames: np.ndarray | None
    block_offset_mean: np.ndarray | None
    block_offset_max: np.ndarray | None
    pc_shift_metrics: np.ndarray | None


def registration_series(store: RecordingStore, *, plane: int) -> RegistrationSeries:
    """The `RegistrationSeries` of ``plane`` (all None before registration)."""
    group = stage_path(plane, REGISTRATION)

    def optional(name: str) -> np.ndarray | None:
        return store.read(f"{group}/{name}") if f"{group}/{name}" in store else None

    nonrigid = optional("nonrigid_offsets")
    magnitude = np.hypot(nonrigid[..., 0], nonrigid[..., 1]) if nonrigid is not None and nonrigid.ndim == 3 and nonrigid.shape[1] else None
    bad = optional("bad_frames")
    return RegistrationSeries(
        optional("rigid_offsets"),
        optional("rigid_correlations"),
        bad.astype(bool) if bad is not None else None,
        magnitude.mean(axis=1).astype(np.float32) if magnitude is not None else None,
        magnitude.max(axis=1).astype(np.float32) if magnitude is not None else None,
        optional("pc_shift_metrics"),
    )


class FrameReader:
    """Frames of one plane's raw and registered movies (channel 0), read one stored chunk at a time.

    Parameters
    ----------
    store : the recording store.
    plane : the plane.
    """

    def __init__(self, store: RecordingStore, *, plane: int) -> None:
        self.store = store
        self.paths = {kind: frames_path(plane, 0, kind=kind) for kind in ("raw", "registered")}
        self._chunks: dict[str, tuple[int, np.ndarray]] = {}

    def kinds(self) -> list[MovieKind]:
        """The movies present (``raw`` is gone after `cindra-dask clean --raw`, ``registered`` after ``--registered``)."""
        return [kind for kind, path in self.paths.items() if path in self.store]  # type: ignore[misc]

    def frame_count(self) -> int:
        """T of the first movie present (0 when none is)."""
        kinds = self.kinds()
        return array_shape(self.store, self.paths[kinds[0]])[0] if kinds else 0

    def frame(self, kind: MovieKind, t: int) -> np.ndarray:
        """Frame ``t`` of movie ``kind``, (Ly, Lx) f4; decodes the chunk holding it unless it is the one kept."""
        path = self.paths[kind]
        chunk_frames = int(self.store.array(path).chunks[0])
        start = (t // chunk_frames) * chunk_frames
        kept = self._chunks.get(kind)
        if kept is None or kept[0] != start:
            kept = (start, self.store.read_selection(path, slice(start, start + chunk_frames)))
            self._chunks[kind] = kept
        return kept[1][t - start].astype(np.float32)

    def mean(self, kind: MovieKind, *, start: int, stop: int) -> np.ndarray:
        """Mean of frames [start, stop) of movie ``kind``, (Ly, Lx) f4, summed one stored chunk at a time."""
        if stop <= start:
            raise ValueError(f"empty window of frames [{start}, {stop})")
        path = self.paths[kind]
        chunk_frames = int(self.store.array(path).chunks[0])
        total = np.zeros(array_shape(self.store, path)[1:], np.float64)
        for chunk_start in range((start // chunk_frames) * chunk_frames, stop, chunk_frames):
            total += self.store.read_selection(path, slice(max(start, chunk_start), min(stop, chunk_start + chunk_frames))).sum(axis=0, dtype=np.float64)
        return (total / (stop - start)).astype(np.float32)


class TrackTable(NamedTuple):
    """The tracked cells of a multi-recording dataset, one row per template of the store viewed.

    Attributes
    ----------
    track_id : (m,) i8 track of each template.
    confidence : (m,) f4 the track's confidence.
    recording_count : (m,) i4 recordings the track has a member in.
    """

    track_id: np.ndarray
    confidence: np.ndarray
    recording_count: np.ndarray


def track_table(store: RecordingStore, *, dataset: str) -> TrackTable:
    """The `TrackTable` of ``dataset`` from ``multi_recording/<dataset>/templates/`` (empty before discover)."""
    group = f"{multi_recording_path(dataset)}/templates"
    if f"{group}/template_track_id" not in store:
        return TrackTable(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int32))
    track_id = store.read(f"{group}/template_track_id").astype(np.int64)
    confidence = store.read(f"{group}/track_confidence") if f"{group}/track_confidence" in store else np.full(len(track_id), np.nan, np.float32)
    count = store.read(f"{group}/recording_count") if f"{group}/recording_count" in store else np.zeros(len(track_id), np.int32)
    return TrackTable(track_id, confidence.astype(np.float32), count.astype(np.int32))


class TrackedRecording(NamedTuple):
    """One recording of a multi-recording dataset, as the tracking tab shows it (in its own canvas).

    Attributes
    ----------
    name : the recording's name.
    store : its store (None when ``recording_paths`` names a folder that holds none).
    image : (Hc, Wc) f4 mean image of its canvas (``combined/detection/mean_image``, else plane 0's); None if absent.
    outline_xs, outline_ys : per template (the dataset's tracked cells back-projected into it), its outline, canvas px.
    track_id : (m,) i8 track of each template.
    """

    name: str
    store: RecordingStore | None
    image: np.ndarray | None
    outline_xs: list[np.ndarray]
    outline_ys: list[np.ndarray]
    track_id: np.ndarray

    def trace(self, *, dataset: str, track: int) -> np.ndarray | None:
        """(T,) f4 `TRACKED_TRACE` of the template of ``track`` in this recording; None when it has none (or no traces)."""
        rows = np.flatnonzero(self.track_id == track)
        array_path = f"{multi_recording_path(dataset)}/{EXTRACTION}/{TRACKED_TRACE}"
        if self.store is None or not rows.size or array_path not in self.store:
            return None
        return self.store.read_selection(array_path, int(rows[0])).astype(np.float32)


def tracked_recordings(store: RecordingStore, *, dataset: str) -> list[TrackedRecording]:
    """Every recording of ``dataset`` (group attributes ``recording_names``, ``recording_paths``), in their order."""
    group = multi_recording_path(dataset)
    attributes = store.group_attributes(group)
    paths = [Path(path) for path in attributes.get("recording_paths") or [store.path]]
    names = [str(name) for name in attributes.get("recording_names") or []] or [path.stem for path in paths]
    recordings = []
    for name, path in zip(names, paths):
        other = RecordingStore(path)
        templates = f"{group}/templates"
        if not other.exists or f"{templates}/pixel_offsets" not in other:
            recordings.append(TrackedRecording(name, None, None, [], [], np.zeros(0, np.int64)))
            continue
        image = next((other.read(candidate).astype(np.float32) for candidate in (f"{COMBINED}/{DETECTION}/mean_image", f"{stage_path(0, DETECTION)}/mean_image") if candidate in other), None)
        xs, ys = outlines(other.read_rois(templates))
        recordings.append(TrackedRecording(name, other, image, xs, ys, other.read(f"{templates}/template_track_id").astype(np.int64)))
    return recordings
