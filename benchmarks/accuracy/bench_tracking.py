"""Where does multi-recording tracking lose its links?  Issue 24, item 4.

Two sources of sessions that our own simulator's tests were not tuned on:

(a) ``sim``: `cindra_dask.simulate.simulate_sessions` with harder settings than the tests use
    (``SIM_CASES``: 4 sessions, deformations up to 5–7 px on 48–64-px knot grids, 20–25 % turnover
    per session, dim and quiet cells (brightness log-SD 0.6–0.7, 0.25–0.3 Hz), other seeds), each
    session processed by ``run_single_recording`` with the defaults and the true ``main.tau``; the
    ROIs tracked are the pipeline's (``combined/rois``), the images its enhanced mean images.
(b) ``cellreg``: real footprints (one session of zivlab/CellReg's ``SampleData``, 598 cells on
    255 × 324 px; ``fetch_cellreg.py``) as the true cells; `cellreg_sessions` makes 4–5 sessions by a
    known smooth deformation each (up to 4–6 px, 48–64-px knots, translation included), 20–30 %
    turnover, per-session detection misses (15–20 %), footprint jitter (a per-ROI threshold and sub-pixel shift)
    and 3 % spurious blobs; the demons register images rendered from the footprints.

Scoring. Detected ROIs are matched to the session's true somata (Hungarian, IoU ≥ 0.3). A *link* is
a pair of ROIs of two sessions sharing a track id; it is correct when both are matched to the same
cell. A *true link* is a pair of detected ROIs matched to one cell; recall = correct / true links
(every detected ROI counts, also those ``roi_selection`` drops), precision = correct / links between
matched ROIs. ``detection bound`` = true links / pairs of sessions in which a cell is present in
both (what tracking could recover given the detector).

Loss ladder (`LADDER`; each rung changes one thing, so a recall difference is that source's loss):
selection rule (``roi``: ROIs below ``roi_selection.probability_threshold`` dropped before tracking,
as cindra does and this project did; ``track``: a tracked cell kept when one member passes, now the
pipeline's; ``none``), the map into the common space (the demons' or the planted one), and the
tracking options (defaults; ``minimum_size`` 1; ``threshold`` 0.9; cindra's fixed ``minimum_size`` 25 px
instead of the default quarter of the median template). On the simulator cases the
pipeline's own discover is scored too (it equals the ``track`` rung). Border cells (centroid within
``BORDER_PX`` of an edge) and turnover cells (absent from some session) get their own recall; the
last column is the share of tracked ROIs that match no true cell. The simulator places cells away
from the edges, so only the CellReg cases have border cells.

Writes ``benchmarks/accuracy/results/tracking.md``::

    python benchmarks/accuracy/bench_tracking.py [--scratch DIR] [--cellreg-cache DIR] [--skip-sim]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
from scipy import ndimage

from cindra_dask.evaluate import match_rois
from cindra_dask.multirecording.demons import invert_field
from cindra_dask.multirecording.projection import warp_rois
from cindra_dask.multirecording.tracking import UNTRACKED, track_rois
from cindra_dask.rois import RaggedRois

HERE = Path(__file__).resolve().parent
RESULT_PATH = HERE / "results" / "tracking.md"
BORDER_PX = 10
"""A link's cell is a border cell when its true centroid lies within this many px of an edge in either session."""
MATCH_IOU = 0.3


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------


class SessionTruth(NamedTuple):
    """What scoring needs about one session.

    Attributes
    ----------
    identity : (n,) int64 true cell of each detected ROI (−1: matched to none).
    present : (k,) int64 cells present in the session (its true somata).
    border : (k,) bool ``present`` cells within `BORDER_PX` of an edge.
    """

    identity: np.ndarray
    present: np.ndarray
    border: np.ndarray


def session_truth(detected: RaggedRois, truth: RaggedRois, truth_identity: np.ndarray, *, frame_shape: tuple[int, int]) -> SessionTruth:
    """Match ``detected`` to the session's true cells (Hungarian on IoU ≥ `MATCH_IOU`)."""
    matching = match_rois(detected, truth, frame_shape=frame_shape, iou_threshold=MATCH_IOU)
    identity = np.full(detected.count, -1, np.int64)
    identity[matching.detected_index] = truth_identity[matching.true_index]
    centroids = np.array([[ypix.mean(), xpix.mean()] for ypix, xpix, _ in (truth.roi(index) for index in range(truth.count))]).reshape(-1, 2)
    near = (centroids.min(axis=1) < BORDER_PX) | (frame_shape[0] - 1 - centroids[:, 0] < BORDER_PX) | (frame_shape[1] - 1 - centroids[:, 1] < BORDER_PX)
    return SessionTruth(identity, np.asarray(truth_identity, np.int64), near)


class LinkScores(NamedTuple):
    """Link counts over every pair of sessions (see the module docstring)."""

    predicted: int
    correct: int
    true: int
    possible: int
    border_correct: int
    border_true: int
    turnover_correct: int
    turnover_true: int

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.true if self.true else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.precision * self.recall / (self.precision + self.recall) if self.precision + self.recall else 0.0


def link_scores(truths: Sequence[SessionTruth], tracks: Sequence[np.ndarray]) -> LinkScores:
    """Links made (``tracks``: per session, (n,) track id of each detected ROI, −1 untracked) against the truth."""
    everywhere = set.intersection(*(set(truth.present.tolist()) for truth in truths))
    counts = np.zeros(8, np.int64)
    for first in range(len(truths)):
        for second in range(first + 1, len(truths)):
            a, b = truths[first], truths[second]
            border = set(a.present[a.border].tolist()) | set(b.present[b.border].tolist())
            linked = (tracks[first][:, None] >= 0) & (tracks[first][:, None] == tracks[second][None, :])
            known = (a.identity[:, None] >= 0) & (b.identity[None, :] >= 0)
            same = known & (a.identity[:, None] == b.identity[None, :])
            cell = np.where(same, a.identity[:, None], -1)
            is_border = np.isin(cell, list(border)) & same
            is_turnover = same & ~np.isin(cell, list(everywhere))
            counts += [
                (linked & known).sum(),
                (linked & same).sum(),
                same.sum(),
                np.intersect1d(a.present, b.present).size,
                (linked & is_border).sum(),
                is_border.sum(),
                (linked & is_turnover).sum(),
                is_turnover.sum(),
            ]
    return LinkScores(*(int(count) for count in counts))


# ---------------------------------------------------------------------------------------------
# tracking on ROI sets (the discover kernels after the demons)
# ---------------------------------------------------------------------------------------------


class TrackingInput(NamedTuple):
    """One session as tracking sees it: every detected ROI, what selection thinks of it, its map."""

    rois: RaggedRois
    candidates: np.ndarray  # (m,) int64 indices passing roi_selection's size and MROI limits
    confident: np.ndarray  # (n,) bool cell probability ≥ roi_selection.probability_threshold
    forward: np.ndarray  # (2, H, W) float32 common(c) = recording(c + forward(c))


SELECTION_RULES = ("roi", "track", "none")
"""``roi``: unconfident ROIs dropped before tracking (cindra, and this project before issue 24);
``track``: a tracked cell is kept when one member is confident (`confident_tracks`, now the pipeline's);
``none``: every candidate tracked, no probability used."""


def tracked_ids(sessions: Sequence[TrackingInput], *, frame_shape: tuple[int, int], options: dict[str, Any], selection: str) -> list[np.ndarray]:
    """Per session, (n,) track id of every detected ROI (−1: untracked): selection → warp → `track_rois`."""
    from cindra_dask.multirecording.select import confident_tracks
    from cindra_dask.multirecording.tracking import keep_tracks

    chosen = [session.candidates[session.confident[session.candidates]] if selection == "roi" else session.candidates for session in sessions]
    deformed = [warp_rois(session.rois.select(indices), sampling_field=session.forward, source_shape=frame_shape) for session, indices in zip(sessions, chosen)]
    tracking = track_rois(deformed, frame_shape=frame_shape, **options)
    if selection == "track":
        confident = [session.confident[indices] for session, indices in zip(sessions, chosen)]
        tracking = keep_tracks(tracking, confident_tracks(tracking.track_ids, confident, track_count=tracking.templates.count))
    ids = []
    for session, indices, selected_ids in zip(sessions, chosen, tracking.track_ids):
        full = np.full(session.rois.count, UNTRACKED, np.int64)
        full[indices] = selected_ids
        ids.append(full)
    return ids


def tracking_options(settings: Any) -> dict[str, Any]:
    """`track_rois` keyword options from a ``roi_tracking`` section."""
    return {
        "threshold": settings.threshold,
        "mask_prevalence_percent": settings.mask_prevalence,
        "pixel_prevalence_percent": settings.pixel_prevalence,
        "step_px": settings.step_sizes[0],
        "bin_margin_px": settings.bin_size,
        "maximum_distance_px": settings.maximum_distance,
        "minimum_size_px": settings.minimum_size,
    }


# ---------------------------------------------------------------------------------------------
# (a) our simulator, harder than the tests, through the whole pipeline
# ---------------------------------------------------------------------------------------------


class SimCase(NamedTuple):
    """One seeded multi-session scenario of `cindra_dask.simulate.simulate_sessions`."""

    name: str
    parameters: dict[str, Any]
    deformation_px: float
    deformation_spacing_px: float
    turnover_fraction: float


SIM_CASES = (
    SimCase(
        "sim-dim",
        dict(frame_height=192, frame_width=192, frame_count=800, cell_count=70, non_cell_count=15, brightness_jitter=0.7, spike_rate_hz=0.3, silent_fraction=0.15, rigid_shift_px=3.0, file_count=1, seed=31),
        deformation_px=7.0,
        deformation_spacing_px=64.0,
        turnover_fraction=0.25,
    ),
    SimCase(
        "sim-quiet",
        dict(frame_height=160, frame_width=224, frame_count=600, cell_count=65, non_cell_count=10, cell_diameter_px=10.0, brightness_jitter=0.6, spike_rate_hz=0.25, silent_fraction=0.1, rigid_shift_px=2.0, file_count=1, seed=57),
        deformation_px=5.0,
        deformation_spacing_px=48.0,
        turnover_fraction=0.2,
    ),
)
SIM_SESSIONS = 4
DATASET = "bench"


def _process_case(case: SimCase, scratch: Path, client: Any) -> list[Path]:
    """Simulate, write and process the case's sessions once (kept in ``scratch`` for reruns); their stores."""
    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.simulate import SimulationParameters, write_sessions

    root = scratch / case.name
    data = [root / "data" / f"session_{index:03d}" for index in range(SIM_SESSIONS)]
    stores = [root / "stores" / f"{directory.name}.zarr" for directory in data]
    if not all((directory / "ground_truth.npz").exists() for directory in data):
        parameters = SimulationParameters(**case.parameters)
        write_sessions(parameters, root / "data", session_count=SIM_SESSIONS, deformation_px=case.deformation_px, deformation_spacing_px=case.deformation_spacing_px, turnover_fraction=case.turnover_fraction)
    for directory in data:
        configuration = configuration_from_mapping(
            {
                "runtime": {"display_progress_bars": False},
                "main": {"tau": 1.0},
                "file_io": {"data_path": str(directory), "output_path": str(root / "stores")},
                "registration": {"registration_metric_principal_components": 0},
            },
            source="bench",
        )
        run_single_recording(configuration, client=client)
    return stores


def _reference_offset_px(store: Any, truth: Any) -> np.ndarray:
    """(2,) px by which the registered frames show the ideal scene moved (the reference's own offset)."""
    good = ~truth.bad_frames[0]
    return np.median(truth.rigid_offsets[0][good] - store.read("plane_0/registration/rigid_offsets")[good], axis=0)


def _true_forward(truth: Any, offset_px: np.ndarray) -> np.ndarray:
    """(2, H, W) planted map from the shared field of view into the registered session.

    registered(p) = ideal(p − r), ideal(y) = shared(y − D(y)): the registered session samples the
    shared scene at p − r − D(p − r); the forward map is that sampling field's inverse.
    """
    shape = truth.session_deformation.shape[1:]
    grid = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")).astype(np.float64)
    ideal = grid - offset_px[:, None, None]
    deformation = np.stack([ndimage.map_coordinates(component, ideal, order=1, mode="nearest") for component in truth.session_deformation])
    return invert_field((-offset_px[:, None, None] - deformation).astype(np.float32))


class CaseInputs(NamedTuple):
    """A case ready for the loss ladder."""

    name: str
    frame_shape: tuple[int, int]
    truths: list[SessionTruth]
    estimated: list[TrackingInput]  # demons' maps, the configured selection
    true_forward: list[np.ndarray]
    pipeline_tracks: list[np.ndarray] | None
    detection_recall: float


def sim_inputs(case: SimCase, scratch: Path, client: Any) -> CaseInputs:
    """Process the case, run the configured discover on it, and collect what the ladder needs."""
    from cindra_dask.config import MultiRecordingConfiguration, configuration_from_mapping
    from cindra_dask.pipeline import run_multi_recording
    from cindra_dask.multirecording.select import SelectionLimits, select_rois
    from cindra_dask.simulate import load_ground_truth
    from cindra_dask.store import RecordingStore, multi_recording_path

    paths = _process_case(case, scratch, client)
    configuration = configuration_from_mapping(
        {"pipeline_type": "multi-recording", "runtime": {"display_progress_bars": False}, "recording_io": {"recording_directories": [str(path) for path in paths], "dataset_name": DATASET}},
        source="bench",
        model=MultiRecordingConfiguration,
    )
    run_multi_recording(configuration, client=client, phases=["discover"])
    selection = configuration.roi_selection
    limits = SelectionLimits(selection.probability_threshold, selection.maximum_size, selection.mroi_region_margin)
    root = multi_recording_path(DATASET)
    truths, inputs, forwards, pipeline_tracks, recalls = [], [], [], [], []
    for path in paths:
        store = RecordingStore(path)
        truth = load_ground_truth(path.parent.parent / "data" / path.stem / "ground_truth.npz")
        frame_shape = truth.illumination.shape
        rois = store.read_rois("combined/rois")
        somata = np.flatnonzero(truth.is_cell)
        scored = session_truth(rois, truth.rois().select(somata), truth.cell_identity[somata], frame_shape=frame_shape)
        truths.append(scored)
        recalls.append(np.count_nonzero(scored.identity >= 0) / somata.size)
        probability = store.read("combined/extraction/cell_classification")[:, 1]
        candidates = select_rois(store.read("combined/rois/pixel_count"), store.read("combined/rois/centroids"), limits=limits, region_borders_px=np.zeros(0))
        inputs.append(TrackingInput(rois, candidates, probability >= limits.probability_threshold, store.read(f"{root}/deformation_forward")))
        forwards.append(_true_forward(truth, _reference_offset_px(store, truth)))
        tracks = np.full(rois.count, UNTRACKED, np.int64)
        tracks[store.read(f"{root}/rois/source_roi_index")] = store.read(f"{root}/rois/track_id")
        pipeline_tracks.append(tracks)
    return CaseInputs(case.name, frame_shape, truths, inputs, forwards, pipeline_tracks, float(np.mean(recalls)))


# ---------------------------------------------------------------------------------------------
# (b) semi-synthetic sessions from real CellReg footprints
# ---------------------------------------------------------------------------------------------

CELLREG_SESSION = 1
"""The CellReg sample session whose footprints are the true cells."""


class SemiSyntheticSession(NamedTuple):
    """One made session.

    Attributes
    ----------
    rois : the "detected" ROIs (session space): present cells not missed, jittered, plus spurious blobs.
    truth : the present cells' footprints, seen through the session's deformation.
    truth_identity : (k,) cell (index into the source footprints) of each ``truth`` mask.
    image : (H, W) float32 the session's image (every present cell, missed or not, plus background and noise).
    true_forward : (2, H, W) float32 common(c) = session(c + true_forward(c)), common = the source session.
    """

    rois: RaggedRois
    truth: RaggedRois
    truth_identity: np.ndarray
    image: np.ndarray
    true_forward: np.ndarray


def smooth_deformation(rng: np.random.Generator, frame_shape: tuple[int, int], *, amplitude_px: float, spacing_px: float) -> np.ndarray:
    """(2, H, W) float32 smooth random sampling field with a translation; largest |component| = ``amplitude_px``."""
    knots = (int(np.ceil(frame_shape[0] / spacing_px)) + 2, int(np.ceil(frame_shape[1] / spacing_px)) + 2)
    zoom = ((frame_shape[0] + 2 * spacing_px) / knots[0], (frame_shape[1] + 2 * spacing_px) / knots[1])
    crop = int(spacing_px)
    field = np.stack([ndimage.zoom(rng.standard_normal(knots), zoom, order=3)[crop : crop + frame_shape[0], crop : crop + frame_shape[1]] for _ in range(2)])
    field += rng.uniform(-1.0, 1.0, (2, 1, 1))
    return (field * amplitude_px / np.abs(field).max()).astype(np.float32)


def _warp_mask(ypix: np.ndarray, xpix: np.ndarray, lam: np.ndarray, field: np.ndarray, *, shift_px: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One footprint seen at p: source(p + field(p) + shift) (bilinear), pixels ≥ ``floor`` · its peak."""
    height, width = field.shape[1:]
    reach = int(np.ceil(np.abs(field).max() + np.abs(shift_px).max())) + 2
    top, left = max(int(ypix.min()) - reach, 0), max(int(xpix.min()) - reach, 0)
    bottom, right = min(int(ypix.max()) + reach + 1, height), min(int(xpix.max()) + reach + 1, width)
    crop = np.zeros((int(ypix.max()) - int(ypix.min()) + 1 + 2, int(xpix.max()) - int(xpix.min()) + 1 + 2), np.float32)
    crop[ypix - ypix.min() + 1, xpix - xpix.min() + 1] = lam
    rows, columns = np.mgrid[top:bottom, left:right]
    sample_rows = rows + field[0, top:bottom, left:right] + shift_px[0] - ypix.min() + 1
    sample_columns = columns + field[1, top:bottom, left:right] + shift_px[1] - xpix.min() + 1
    values = ndimage.map_coordinates(crop, [sample_rows, sample_columns], order=1, mode="constant", cval=0.0)
    keep = values >= floor * lam.max()
    return rows[keep].astype(np.int32), columns[keep].astype(np.int32), values[keep].astype(np.float32)


def cellreg_sessions(
    footprints: RaggedRois,
    *,
    frame_shape: tuple[int, int],
    session_count: int,
    present_fraction: float,
    turnover_fraction: float,
    miss_fraction: float,
    spurious_fraction: float,
    deformation_px: float,
    deformation_spacing_px: float,
    seed: int,
) -> list[SemiSyntheticSession]:
    """Sessions of one field made from real footprints (module docstring, source (b)).

    Session 0 holds ``present_fraction`` of the cells; each later one replaces ``turnover_fraction``
    of the previous one's cells by absent ones (cells may come back). Each session sees the field
    through its own `smooth_deformation`; its true masks are the warped footprints above 15 % of
    their peak, its "detected" ROIs the present cells minus ``miss_fraction`` of them, each warped
    with a sub-pixel shift (±0.75 px) and cut at a random 5–50 % of its peak, plus
    ``spurious_fraction`` · (present cells) disks of radius 3–5 px anywhere.
    """
    rng = np.random.default_rng(seed)
    count = footprints.count
    present = np.sort(rng.choice(count, int(round(present_fraction * count)), replace=False))
    turnover = int(round(turnover_fraction * present.size))
    brightness = np.exp(rng.normal(0.0, 0.5, count))
    background = ndimage.gaussian_filter(rng.standard_normal(frame_shape), 25.0)
    background *= 0.4 / max(float(np.abs(background).max()), 1e-12)
    sessions = []
    for session in range(session_count):
        if session:
            dropped = rng.choice(present, turnover, replace=False)
            added = rng.choice(np.setdiff1d(np.arange(count), present), turnover, replace=False)
            present = np.sort(np.concatenate([np.setdiff1d(present, dropped), added]))
        field = smooth_deformation(rng, frame_shape, amplitude_px=deformation_px, spacing_px=deformation_spacing_px)
        truth, detected, identity = [], [], []
        image = np.zeros(frame_shape, np.float64)
        session_brightness = brightness * np.exp(rng.normal(0.0, 0.2, count))
        for cell in present:
            ypix, xpix, lam = footprints.roi(int(cell))
            mask = _warp_mask(ypix, xpix, lam, field, shift_px=np.zeros(2), floor=0.15)
            if mask[0].size == 0:
                continue
            truth.append(mask)
            identity.append(int(cell))
            image[mask[0], mask[1]] += session_brightness[cell] * mask[2] / lam.max()
            if rng.random() >= miss_fraction:
                jittered = _warp_mask(ypix, xpix, lam, field, shift_px=rng.uniform(-0.75, 0.75, 2), floor=rng.uniform(0.05, 0.5))
                if jittered[0].size:
                    detected.append(jittered)
        rows, columns = np.mgrid[0 : frame_shape[0], 0 : frame_shape[1]]
        for _ in range(int(round(spurious_fraction * present.size))):
            centre, radius = rng.uniform((0, 0), frame_shape), rng.uniform(3.0, 5.0)
            inside = (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius**2
            detected.append((rows[inside].astype(np.int32), columns[inside].astype(np.int32), np.ones(int(inside.sum()), np.float32)))
        shared_background = ndimage.map_coordinates(background, [rows + field[0], columns + field[1]], order=1, mode="nearest")
        image += shared_background + rng.normal(0.0, 0.05, frame_shape)
        order = rng.permutation(len(detected))  # detection order carries no identity
        sessions.append(
            SemiSyntheticSession(
                rois=RaggedRois.from_masks([detected[index] for index in order]),
                truth=RaggedRois.from_masks(truth),
                truth_identity=np.asarray(identity, np.int64),
                image=image.astype(np.float32),
                true_forward=invert_field(field),
            )
        )
    return sessions


class CellRegCase(NamedTuple):
    """One seeded semi-synthetic scenario (`cellreg_sessions` options)."""

    name: str
    options: dict[str, Any]


CELLREG_CASES = (
    CellRegCase("cellreg-6px", dict(session_count=4, present_fraction=0.8, turnover_fraction=0.2, miss_fraction=0.15, spurious_fraction=0.03, deformation_px=6.0, deformation_spacing_px=64.0, seed=5)),
    CellRegCase("cellreg-4px-5s", dict(session_count=5, present_fraction=0.75, turnover_fraction=0.3, miss_fraction=0.2, spurious_fraction=0.03, deformation_px=4.0, deformation_spacing_px=48.0, seed=9)),
)


def demons_forward(images: Sequence[np.ndarray], *, diameter_px: float, settings: Any) -> list[np.ndarray]:
    """Each image's forward map into the common space, from `deformation_graph` as discover runs it."""
    import dask

    from cindra_dask.multirecording.graph import CONTRAST_SIGMA_DIAMETERS, deformation_graph

    groups = deformation_graph(images, valid_masks=[np.ones(image.shape, bool) for image in images], contrast_sigmas_px=[CONTRAST_SIGMA_DIAMETERS * diameter_px] * len(images), settings=settings)
    return [group.forward for group in dask.compute(*groups, scheduler="threads")]


def cellreg_inputs(case: CellRegCase, footprints: RaggedRois, frame_shape: tuple[int, int]) -> CaseInputs:
    """Make the case's sessions, register their images with the demons, collect what the ladder needs (no classifier: every ROI is selected)."""
    from cindra_dask.config import DiffeomorphicRegistrationSettings

    sessions = cellreg_sessions(footprints, frame_shape=frame_shape, **case.options)
    diameter_px = 2.0 * float(np.sqrt(np.median(footprints.pixel_counts()) / np.pi))
    forwards = demons_forward([session.image for session in sessions], diameter_px=diameter_px, settings=DiffeomorphicRegistrationSettings())
    truths = [session_truth(session.rois, session.truth, session.truth_identity, frame_shape=frame_shape) for session in sessions]
    inputs = [TrackingInput(session.rois, np.arange(session.rois.count), np.ones(session.rois.count, bool), forward) for session, forward in zip(sessions, forwards)]
    recall = float(np.mean([np.count_nonzero(truth.identity >= 0) / truth.present.size for truth in truths]))
    return CaseInputs(case.name, frame_shape, truths, inputs, [session.true_forward for session in sessions], None, recall)


# ---------------------------------------------------------------------------------------------
# the loss ladder and the report
# ---------------------------------------------------------------------------------------------


class Rung(NamedTuple):
    """One row of the ladder: which selection rule, which map, which tracking options differ from the defaults."""

    label: str
    selection: str
    true_deformation: bool
    overrides: dict[str, Any]


LADDER = (
    Rung("before: ROI-level selection, demons, defaults", "roi", False, {}),
    Rung("ROI-level selection, true deformation", "roi", True, {}),
    Rung("no selection, demons", "none", False, {}),
    Rung("after: track-level selection, demons, defaults", "track", False, {}),
    Rung("track-level, true deformation", "track", True, {}),
    Rung("track-level, true deformation, minimum_size 1", "track", True, {"minimum_size_px": 1}),
    Rung("… and threshold 0.9 (IoU ≥ 0.1)", "track", True, {"minimum_size_px": 1, "threshold": 0.9}),
    Rung("track-level, demons, cindra's fixed minimum_size 25", "track", False, {"minimum_size_px": 25}),
)


def unmatched_tracked(truths: Sequence[SessionTruth], tracks: Sequence[np.ndarray]) -> float:
    """Share of tracked ROIs that match no true cell (spurious or non-somatic ROIs in tracks)."""
    tracked = np.concatenate([ids >= 0 for ids in tracks])
    matched = np.concatenate([truth.identity >= 0 for truth in truths])
    return float(np.count_nonzero(tracked & ~matched) / max(np.count_nonzero(tracked), 1))


def ladder(inputs: CaseInputs, settings: Any) -> list[tuple[str, LinkScores, float]]:
    """(label, scores, unmatched share) per rung, plus the pipeline's own discover where it ran."""
    base = tracking_options(settings)
    rows = []
    if inputs.pipeline_tracks is not None:
        rows.append(("pipeline discover (this commit)", link_scores(inputs.truths, inputs.pipeline_tracks), unmatched_tracked(inputs.truths, inputs.pipeline_tracks)))
    for rung in LADDER:
        sessions = [session._replace(forward=forward) if rung.true_deformation else session for session, forward in zip(inputs.estimated, inputs.true_forward)]
        tracks = tracked_ids(sessions, frame_shape=inputs.frame_shape, options={**base, **rung.overrides}, selection=rung.selection)
        rows.append((rung.label, link_scores(inputs.truths, tracks), unmatched_tracked(inputs.truths, tracks)))
    return rows


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.3f}" if denominator else "—"


def case_table(inputs: CaseInputs, rows: list[tuple[str, LinkScores, float]]) -> list[str]:
    """Markdown lines of one case."""
    first = rows[0][1]
    lines = [
        f"### {inputs.name}",
        "",
        f"{len(inputs.truths)} sessions, {inputs.frame_shape[0]}×{inputs.frame_shape[1]} px; per-session detection recall {inputs.detection_recall:.3f}; "
        f"true links among detected ROIs {first.true} of {first.possible} cell pairs present in two sessions (detection bound {_ratio(first.true, first.possible)}).",
        "",
        "| rung | links | precision | recall | F1 | border recall | turnover recall | tracked ROIs matching no cell |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, scores, unmatched in rows:
        lines.append(
            f"| {label} | {scores.predicted} | {scores.precision:.3f} | {scores.recall:.3f} | {scores.f1:.3f} | {_ratio(scores.border_correct, scores.border_true)} ({scores.border_true}) "
            f"| {_ratio(scores.turnover_correct, scores.turnover_true)} ({scores.turnover_true}) | {unmatched:.3f} |"
        )
    return lines + [""]


def loss_summary(results: Sequence[tuple[CaseInputs, list[tuple[str, LinkScores, float]]]]) -> list[str]:
    """Recall lost per source, per case: before (ROI-level selection) and after (track-level)."""
    lines = [
        "| case | detection bound | before: recall | selection loss | deformation loss (before) | after: recall (precision) | deformation loss | template minimum_size loss | Jaccard-threshold loss | cindra's fixed 25 px instead (after) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for inputs, rows in results:
        recall = {label: scores.recall for label, scores, _ in rows}
        labels = [rung.label for rung in LADDER]
        after = dict((label, scores) for label, scores, _ in rows)[labels[3]]
        lines.append(
            f"| {inputs.name} | {_ratio(rows[0][1].true, rows[0][1].possible)} | {recall[labels[0]]:.3f} | {recall[labels[2]] - recall[labels[0]]:+.3f} | {recall[labels[1]] - recall[labels[0]]:+.3f} "
            f"| {after.recall:.3f} ({after.precision:.3f}) | {recall[labels[4]] - recall[labels[3]]:+.3f} | {recall[labels[5]] - recall[labels[4]]:+.3f} | {recall[labels[6]] - recall[labels[5]]:+.3f} | {recall[labels[7]] - recall[labels[3]]:+.3f} |"
        )
    return lines


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the simulated sessions and their stores (reused when present; default: a temporary folder)")
    parser.add_argument("--cellreg-cache", type=Path, default=None, help="folder of fetch_cellreg.py's files (default: its cache)")
    parser.add_argument("--skip-sim", action="store_true", help="only the CellReg cases")
    options = parser.parse_args(arguments)
    from cindra_dask.config import ROITrackingSettings
    from fetch_cellreg import cache_directory, footprint_path, load_footprints

    settings = ROITrackingSettings()
    results = []
    path = footprint_path(CELLREG_SESSION, options.cellreg_cache or cache_directory())
    if path.exists():
        footprints, frame_shape = load_footprints(path)
        for case in CELLREG_CASES:
            inputs = cellreg_inputs(case, footprints, frame_shape)
            results.append((inputs, ladder(inputs, settings)))
    else:
        print(f"{path} not found: CellReg cases skipped (run fetch_cellreg.py)", file=sys.stderr)
    if not options.skip_sim:
        from distributed import Client
        from threadpoolctl import threadpool_limits

        with tempfile.TemporaryDirectory() as temporary, threadpool_limits(limits=1, user_api="blas"), Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
            for case in SIM_CASES:
                inputs = sim_inputs(case, options.scratch or Path(temporary), client)
                results.append((inputs, ladder(inputs, settings)))
    lines = [
        "# Tracking: where links are lost",
        "",
        "Generated by `benchmarks/accuracy/bench_tracking.py` (its docstring defines every term). *Before*: ROIs below",
        "`roi_selection.probability_threshold` dropped before tracking (cindra's rule); *after*: a tracked cell is kept",
        "when one member passes (`cindra_dask.multirecording.select.confident_tracks`). A loss is the recall gained by",
        "removing that source alone (selection: no probability used; deformation: the planted map; template size:",
        "`minimum_size` 1; Jaccard threshold: 0.9 instead of 0.75). The default template minimum is a quarter of the median",
        "template's pixel count; the last column is the recall lost by cindra's fixed 25 px instead.",
        "",
        "## Recall lost per source",
        "",
    ]
    lines += loss_summary(results) + ["", "## Per case", ""]
    for inputs, rows in results:
        lines += case_table(inputs, rows)
    RESULT_PATH.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
