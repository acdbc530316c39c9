"""Multi-recording tracking end to end: four simulated sessions of one field of view (smooth
deformation up to 4 px, 20 % turnover per session) processed by the single-recording pipeline, then
``discover`` and ``extract`` on the ROIs the pipeline detected. Accuracy against the planted truth:
deformations, track links, traces; then resume, bad inputs, the export and kernel/graph parity."""

from __future__ import annotations

import csv
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from scipy import ndimage

from cindra_dask.config import MultiRecordingConfiguration, configuration_from_mapping
from cindra_dask.errors import ConfigurationError, InputError, PhaseUnavailableError
from cindra_dask.evaluate import match_rois, row_correlations
from cindra_dask.extraction.baseline import subtract_neuropil
from cindra_dask.extraction.masks import build_extraction_masks
from cindra_dask.export.tracked import export_tracked_traces
from cindra_dask.pipeline import RunReport, run_multi_recording, run_single_recording
from cindra_dask.simulate import GroundTruth, SimulationParameters, simulate_sessions, write_recording
from cindra_dask.store import RecordingStore, multi_recording_path

from tests.conftest import single_configuration

SESSION_COUNT = 4
DATASET = "sessions"
MARGIN_PX = 16
DEFORMATION_PX = 4.0


class TrackedSessions(NamedTuple):
    """Processed sessions, their truth and the first multi-recording run."""

    root: Path
    stores: list[RecordingStore]
    truths: list[GroundTruth]
    configuration: MultiRecordingConfiguration
    report: RunReport


def multi_configuration(stores: list[Path], **sections: dict[str, Any]) -> MultiRecordingConfiguration:
    """The test's multi-recording configuration: cindra's defaults but a 32-px finest B-spline grid
    (the planted deformation is smooth on a 96-px grid)."""
    payload: dict[str, Any] = {
        "pipeline_type": "multi-recording",
        "runtime": {"display_progress_bars": False},
        "recording_io": {"recording_directories": [str(path) for path in stores], "dataset_name": DATASET},
        "diffeomorphic_registration": {"final_grid_sampling": 32.0},
    }
    for name, values in sections.items():
        payload.setdefault(name, {}).update(values)
    return configuration_from_mapping(payload, source="test", model=MultiRecordingConfiguration)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def tracked_sessions(tmp_path_factory: pytest.TempPathFactory, client: Any) -> TrackedSessions:
    """4 × 1000 frames of 128², written in parallel on the test client, processed by ``run_single_recording``
    (ingest, process, combine; two recordings at a time), then tracked (discover + extract) once."""
    root = tmp_path_factory.mktemp("multirecording")
    parameters = SimulationParameters(
        frame_height=128, frame_width=128, frame_count=1000, cell_count=30, non_cell_count=10, rigid_shift_px=2.0, nonrigid_shift_px=0.0, file_count=1, seed=4
    )
    sessions = simulate_sessions(parameters, session_count=SESSION_COUNT, deformation_px=DEFORMATION_PX, turnover_fraction=0.2)
    directories = [root / "data" / f"session_{index:03d}" for index in range(SESSION_COUNT)]
    client.gather([client.submit(write_recording, session.parameters, directory, truth=session.truth, pure=False) for session, directory in zip(sessions, directories)])

    def process(directory: Path) -> RunReport:
        single = single_configuration(directory, root / "stores", runtime={"max_chunk_memory": "8MiB"}, main={"tau": parameters.tau_s}, registration={"registration_metric_principal_components": 0})
        return run_single_recording(single, client=client)

    with ThreadPoolExecutor(2) as pool:  # two runs at a time keep both worker threads busy through their client-side steps
        list(pool.map(process, directories))
    stores = [root / "stores" / f"{directory.name}.zarr" for directory in directories]
    configuration = multi_configuration(stores)
    report = run_multi_recording(configuration, client=client)
    return TrackedSessions(root, [RecordingStore(path) for path in stores], [session.truth for session in sessions], configuration, report)


def reference_offset_px(store: RecordingStore, truth: GroundTruth) -> np.ndarray:
    """(2,) px by which a session's registered frames show its ideal scene moved (its reference's own offset)."""
    good = ~truth.bad_frames[0]
    return np.median(truth.rigid_offsets[0][good] - store.read("plane_0/registration/rigid_offsets")[good], axis=0)


def true_correspondence(first: tuple[GroundTruth, np.ndarray], second: tuple[GroundTruth, np.ndarray]) -> np.ndarray:
    """(2, H, W) true u with first_registered(p) = second_registered(p + u(p)).

    A registered session shows its ideal scene moved by its reference offset r; the ideal scene is
    the shared field of view seen through ``session_deformation`` D: ideal(y) = shared(y − D(y)).
    """
    (first_truth, first_offset), (second_truth, second_offset) = first, second
    shape = first_truth.session_deformation.shape[1:]
    grid = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")).astype(np.float64)

    def sample(field: np.ndarray, points: np.ndarray) -> np.ndarray:
        return np.stack([ndimage.map_coordinates(component, points, order=1, mode="nearest") for component in field])

    ideal = grid - first_offset[:, None, None]
    shared = ideal - sample(first_truth.session_deformation, ideal)
    target = shared.copy()
    for _ in range(50):  # target − D₂(target) = shared
        target = shared + sample(second_truth.session_deformation, target)
    return target + second_offset[:, None, None] - grid


def rms_px(field: np.ndarray) -> float:
    """RMS length (px) of a (2, H, W) field inside the margin."""
    inner = field[:, MARGIN_PX:-MARGIN_PX, MARGIN_PX:-MARGIN_PX]
    return float(np.sqrt(np.mean(np.sum(inner**2, axis=0))))


def identities(store: RecordingStore, truth: GroundTruth, group: str) -> np.ndarray:
    """(n,) true soma identity of each ROI of ``group`` (Hungarian on IoU ≥ 0.3; −1: none)."""
    rois = store.read_rois(group)
    somata = np.flatnonzero(truth.is_cell)
    matching = match_rois(rois, truth.rois().select(somata), frame_shape=truth.illumination.shape)
    identity = np.full(rois.count, -1, np.int64)
    identity[matching.detected_index] = truth.cell_identity[somata[matching.true_index]]
    return identity


# --------------------------------------------------------------------------------------- accuracy


def test_discover_and_extract_ran_and_wrote_the_design_layout(tracked_sessions: TrackedSessions) -> None:
    assert [outcome.state for outcome in tracked_sessions.report.outcomes] == ["ran"] * (1 + SESSION_COUNT)
    shape = tracked_sessions.truths[0].illumination.shape
    root = multi_recording_path(DATASET)
    counts = set()
    for store in tracked_sessions.stores:
        for name in ("deformation_forward", "deformation_backward"):
            field = store.array(f"{root}/{name}")
            assert field.shape == (2, *shape) and field.dtype == np.float32
        rois = store.read_rois(f"{root}/rois")
        assert store.read(f"{root}/rois/track_id").dtype == np.int64 and store.read(f"{root}/rois/track_confidence").shape == (rois.count,)
        templates = store.read_rois(f"{root}/templates")
        counts.add(templates.count)
        assert sorted(store.read(f"{root}/templates/template_track_id").tolist()) == list(range(templates.count))
        for name in ("cell_fluorescence", "neuropil_fluorescence", "subtracted_fluorescence", "spikes"):
            assert store.array(f"{root}/extraction/{name}").shape == (templates.count, 1000)
    assert len(counts) == 1 and counts.pop() >= 15


def test_demons_recovers_the_planted_deformations(tracked_sessions: TrackedSessions) -> None:
    """Every ordered pair of sessions: the common-space maps carry session i's pixels to session j's
    within 0.3 px RMS of the planted deformation (16 px border excluded)."""
    stores, truths = tracked_sessions.stores, tracked_sessions.truths
    root = multi_recording_path(DATASET)
    offsets = [reference_offset_px(store, truth) for store, truth in zip(stores, truths)]
    backward = [store.read(f"{root}/deformation_backward").astype(np.float64) for store in stores]
    forward = [store.read(f"{root}/deformation_forward").astype(np.float64) for store in stores]
    shape = backward[0].shape[1:]
    grid = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")).astype(np.float64)
    errors, planted = [], []
    for first in range(SESSION_COUNT):
        common = grid + backward[first]
        for second in range(SESSION_COUNT):
            if first == second:
                continue
            estimated = common + np.stack([ndimage.map_coordinates(component, common, order=1, mode="nearest") for component in forward[second]]) - grid
            truth = true_correspondence((truths[first], offsets[first]), (truths[second], offsets[second]))
            errors.append(rms_px(estimated - truth))
            planted.append(rms_px(truth))
    assert max(planted) > 2.5  # the sessions really are deformed
    assert max(errors) <= 0.3, np.round(errors, 3)


def test_tracking_links_detected_rois_precisely(tracked_sessions: TrackedSessions) -> None:
    """Link = two selected ROIs of different sessions sharing a track id; a true link joins two ROIs
    matched to the same planted soma. Precision ≥ 0.95 and recall ≥ 0.85 over the scored ROIs."""
    root = multi_recording_path(DATASET)
    identity = [identities(store, truth, f"{root}/rois") for store, truth in zip(tracked_sessions.stores, tracked_sessions.truths)]
    tracks = [store.read(f"{root}/rois/track_id") for store in tracked_sessions.stores]
    predicted = correct = true = 0
    for first in range(SESSION_COUNT):
        assert np.unique(tracks[first][tracks[first] >= 0]).size == np.count_nonzero(tracks[first] >= 0)  # one ROI per session per track
        for second in range(first + 1, SESSION_COUNT):
            linked = (tracks[first][:, None] >= 0) & (tracks[first][:, None] == tracks[second][None, :])
            known = (identity[first][:, None] >= 0) & (identity[second][None, :] >= 0)
            same = known & (identity[first][:, None] == identity[second][None, :])
            predicted += int((linked & known).sum())
            correct += int((linked & same).sum())
            true += int(same.sum())
    assert true >= 40
    assert correct / predicted >= 0.95, (correct, predicted)
    assert correct / true >= 0.85, (correct, true)
    confidence = np.concatenate([store.read(f"{root}/rois/track_confidence") for store in tracked_sessions.stores])
    tracked = np.concatenate(tracks) >= 0
    assert np.all(confidence[~tracked] == 0) and 0.4 < np.median(confidence[tracked]) <= 1.0


def test_template_traces_match_the_single_recording_extraction(tracked_sessions: TrackedSessions) -> None:
    """For the cells both extractions found, the median correlation of F − 0.7·Fneu with the true
    calcium is within 0.03 of the single-recording extraction's, in every session."""
    root = multi_recording_path(DATASET)
    for store, truth in zip(tracked_sessions.stores, tracked_sessions.truths):
        template_identity = identities(store, truth, f"{root}/templates")
        roi_identity = identities(store, truth, "combined/rois")
        common = np.intersect1d(template_identity[template_identity >= 0], roi_identity[roi_identity >= 0])
        assert common.size >= 10
        source = {identity: index for index, identity in enumerate(truth.cell_identity)}
        calcium = truth.calcium[[source[identity] for identity in common]]

        def correlation(group: str, identity: np.ndarray) -> float:
            rows = [int(np.flatnonzero(identity == cell)[0]) for cell in common]
            cell, neuropil = store.read(f"{group}/cell_fluorescence")[rows], store.read(f"{group}/neuropil_fluorescence")[rows]
            return float(np.nanmedian(row_correlations(subtract_neuropil(cell, neuropil, neuropil_coefficient=0.7), calcium)))

        single, multi = correlation("combined/extraction", roi_identity), correlation(f"{root}/extraction", template_identity)
        assert single > 0.85 and multi >= single - 0.03, (single, multi)


def test_extraction_equals_dense_masks_times_the_movie(tracked_sessions: TrackedSessions) -> None:
    """Graph vs kernel: session 1's template traces equal dense (overlap-allowed) masks × registered movie."""
    store = tracked_sessions.stores[1]
    root = multi_recording_path(DATASET)
    templates = store.read_rois(f"{root}/templates")
    masks = build_extraction_masks(
        templates,
        frame_shape=(128, 128),
        roi_radii_px=store.read(f"{root}/templates/radius_px"),
        allow_overlap=True,
        extract_neuropil=True,
        cell_probability_percentile=50.0,
        inner_neuropil_border_radius_px=2,
        minimum_neuropil_pixels=350,
    )
    movie = store.read("plane_0/registered/channel_0").reshape(1000, -1).T.astype(np.float64)
    np.testing.assert_allclose(store.read(f"{root}/extraction/cell_fluorescence"), masks.cell_weights.toarray() @ movie, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(store.read(f"{root}/extraction/neuropil_fluorescence"), masks.neuropil_weights.toarray() @ movie, rtol=1e-4, atol=1e-2)


# --------------------------------------------------------------------------------------- resume and errors


def test_second_run_skips_both_phases_and_extract_needs_a_current_discover(tracked_sessions: TrackedSessions, client: Any) -> None:
    configuration = tracked_sessions.configuration
    again = run_multi_recording(configuration, client=client)
    assert [outcome.state for outcome in again.outcomes] == ["skipped"] * (1 + SESSION_COUNT)
    one = run_multi_recording(configuration, client=client, phases=["extract"], target_recording="session_002", force=True)
    assert [(outcome.name, outcome.state) for outcome in one.outcomes] == [("extract/session_002", "ran")]
    changed = multi_configuration([store.path for store in tracked_sessions.stores], roi_tracking={"threshold": 0.5})
    with pytest.raises(PhaseUnavailableError, match="run the 'discover' phase first"):
        run_multi_recording(changed, client=client, phases=["extract"])
    with pytest.raises(ConfigurationError, match="target_recording session_9"):
        run_multi_recording(configuration, client=client, target_recording="session_9")
    with pytest.raises(ConfigurationError, match="unknown phase combine"):
        run_multi_recording(configuration, client=client, phases=["combine"])
    assert [outcome.state for outcome in run_multi_recording(configuration, client=client).outcomes] == ["skipped"] * (1 + SESSION_COUNT)


def test_a_recording_whose_outputs_are_missing_or_incomplete_is_rebuilt(tracked_sessions: TrackedSessions, client: Any) -> None:
    """Removed traces of one recording and an interrupted extract of another: the rerun extracts those
    two again (discover and the other recordings skipped), to the same traces; a removed deformation
    field reruns discover, then every extract."""
    configuration, stores = tracked_sessions.configuration, tracked_sessions.stores
    root = multi_recording_path(DATASET)
    spikes = [store.read(f"{root}/extraction/spikes") for store in stores]
    backward = stores[3].read(f"{root}/deformation_backward")
    shutil.rmtree(stores[1].path / root / "extraction" / "spikes")
    stores[2].mark_phase_started(f"{root}/extract", config_hash=stores[2].phase_record(f"{root}/extract").config_hash)
    report = run_multi_recording(configuration, client=client)
    assert {outcome.name: outcome.state for outcome in report.outcomes} == {
        "discover": "skipped",
        "extract/session_000": "skipped",
        "extract/session_001": "ran",
        "extract/session_002": "ran",
        "extract/session_003": "skipped",
    }
    for store, before in zip(stores, spikes):
        np.testing.assert_array_equal(store.read(f"{root}/extraction/spikes"), before)
    shutil.rmtree(stores[3].path / root / "deformation_backward")
    assert [outcome.state for outcome in run_multi_recording(configuration, client=client).outcomes] == ["ran"] * (1 + SESSION_COUNT)
    np.testing.assert_array_equal(stores[3].read(f"{root}/deformation_backward"), backward)
    assert [outcome.state for outcome in run_multi_recording(configuration, client=client).outcomes] == ["skipped"] * (1 + SESSION_COUNT)


def test_bad_configurations_and_inputs_name_the_field_before_writing(tracked_sessions: TrackedSessions, client: Any) -> None:
    stores = [store.path for store in tracked_sessions.stores]
    root = tracked_sessions.root
    with pytest.raises(ConfigurationError, match="recording_io.dataset_name: not set"):
        run_multi_recording(multi_configuration(stores, recording_io={"dataset_name": ""}), client=client)
    with pytest.raises(ConfigurationError, match=r"recording_io.recording_directories: 1 recording\(s\) given"):
        run_multi_recording(multi_configuration(stores[:1]), client=client)
    with pytest.raises(ConfigurationError, match="listed more than once"):
        run_multi_recording(multi_configuration([stores[0], stores[0]]), client=client)
    with pytest.raises(InputError, match=r"recording_directories\[1\]: .*missing.zarr is not a cindra-dask store"):
        run_multi_recording(multi_configuration([stores[0], root / "missing.zarr"]), client=client)
    # a recording that was only ingested: no detection, no combine
    ingested = single_configuration(root / "data" / "session_000", root / "ingested", runtime={"max_chunk_memory": "8MiB"})
    run_single_recording(ingested, client=client, phases=["ingest"])
    with pytest.raises(InputError, match=r"recording_directories\[1\]: .*no complete 'combine' phase"):
        run_multi_recording(multi_configuration([stores[0], root / "ingested" / "session_000.zarr"]), client=client)
    # a recording of another canvas size
    other = root / "other" / "session_003.zarr"
    shutil.copytree(stores[3], other)
    import zarr

    zarr.open_group(str(other / "combined"), mode="r+").attrs["combined_width"] = 160
    with pytest.raises(InputError, match=r"differ in size \(session_000 128×128, .*session_003 128×160\)"):
        run_multi_recording(multi_configuration([stores[0], other]), client=client)
    new_dataset = multi_configuration(stores[:2], recording_io={"dataset_name": "never_written"})
    with pytest.raises(InputError):
        run_multi_recording(new_dataset.model_copy(update={"recording_io": new_dataset.recording_io.model_copy(update={"recording_directories": (stores[0], root / "missing.zarr")})}), client=client)
    assert not (stores[0] / multi_recording_path("never_written")).exists()


# --------------------------------------------------------------------------------------- export


def test_export_writes_one_table_of_tracked_cells(tracked_sessions: TrackedSessions) -> None:
    import zarr

    exported = export_tracked_traces(tracked_sessions.configuration, output_path=tracked_sessions.root / "export")
    group = zarr.open_group(str(exported.zarr_path), mode="r")
    roi_index = np.asarray(group["roi_index"][...])
    assert roi_index.shape == (exported.track_count, SESSION_COUNT)
    root = multi_recording_path(DATASET)
    for column, store in enumerate(tracked_sessions.stores):
        traces = np.asarray(group[f"traces/{store.path.stem}"][...])
        stored = store.read(f"{root}/extraction/subtracted_fluorescence")
        np.testing.assert_array_equal(traces[store.read(f"{root}/templates/template_track_id")], stored)
        track_ids = store.read(f"{root}/rois/track_id")
        sources = store.read(f"{root}/rois/source_roi_index")
        for track in range(exported.track_count):
            members = sources[track_ids == track]
            assert roi_index[track, column] == (members[0] if members.size else -1)
    assert np.all((roi_index >= 0).sum(axis=1) == np.asarray(group["recording_count"][...]))
    with open(exported.csv_path) as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["track_id", "track_confidence", "recording_count", *(store.path.stem for store in tracked_sessions.stores)]
    assert len(rows) == 1 + exported.track_count and [int(value) for value in rows[1][3:]] == roi_index[0].tolist()
    with pytest.raises(InputError, match="trace_name"):
        export_tracked_traces(tracked_sessions.configuration, output_path=tracked_sessions.root / "export", trace_name="dff")


def test_the_mcp_tool_reads_the_tracked_cells_the_export_writes(tracked_sessions: TrackedSessions) -> None:
    """`cindra-dask mcp`'s tracked_cells (in-process client) gives the exported table's ids, confidences and ROIs, paged."""
    pytest.importorskip("mcp")
    import anyio
    import zarr
    from mcp import Client

    from cindra_dask.config import save_configuration
    from cindra_dask.mcp.roots import PathRoots
    from cindra_dask.mcp.server import build_server

    root = tracked_sessions.root
    config_path = save_configuration(tracked_sessions.configuration, root / "multi.yaml")
    exported = export_tracked_traces(tracked_sessions.configuration, output_path=root / "export_for_mcp")
    group = zarr.open_group(str(exported.zarr_path), mode="r")

    async def read() -> tuple[Any, Any]:
        async with Client(build_server(roots=PathRoots.of(writable=(root,), read_only=()))) as client:
            whole = await client.call_tool("tracked_cells", {"path": str(config_path)})
            page = await client.call_tool("tracked_cells", {"path": "multi.yaml", "start": 1, "stop": 3})
            return whole.structured_content, page.structured_content

    whole, page = anyio.run(read)
    assert whole["dataset_name"] == DATASET and whole["track_count"] == exported.track_count == whole["stop"]
    assert whole["recording_names"] == [store.path.stem for store in tracked_sessions.stores]
    assert whole["roi_index"] == np.asarray(group["roi_index"][...]).tolist()
    assert whole["track_confidence"] == np.asarray(group["track_confidence"][...]).astype(np.float64).tolist()
    assert whole["recording_count"] == np.asarray(group["recording_count"][...]).tolist()
    assert (page["track_id"], page["roi_index"]) == ([1, 2], whole["roi_index"][1:3])


def test_template_extraction_spans_planes_with_their_own_frames(tmp_path: Path) -> None:
    """Graph vs kernel on a two-plane canvas: each template is read from its plane's registered frames
    (shifted to plane coordinates, trimmed to the combined frame count), odd frame and ROI chunks."""
    import dask
    import dask.array as da

    from cindra_dask.canvas import PlaneTile
    from cindra_dask.multirecording.graph import recording_extraction_writes
    from cindra_dask.runner.multi_context import RecordingSource
    from cindra_dask.rois import RaggedRois

    rng = np.random.default_rng(12)
    store = RecordingStore(tmp_path / "two_planes.zarr")
    movies = [rng.normal(100, 10, (60, 40, 48)).astype(np.float32) for _ in range(2)]
    for plane, movie in enumerate(movies):
        store.create_array(f"plane_{plane}/registered/channel_0", shape=movie.shape, dtype=movie.dtype, chunks=(17, 40, 48))[...] = movie
    tiles = (PlaneTile(0, 0, 0, 40, 48), PlaneTile(1, 0, 48, 40, 48))

    def disk(center: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, columns = np.mgrid[0:40, 0:96]
        inside = (rows - center[0]) ** 2 + (columns - center[1]) ** 2 <= 16
        return rows[inside], columns[inside], rng.uniform(0.5, 1.5, int(inside.sum())).astype(np.float32)

    templates = RaggedRois.from_masks([disk((10, 10)), disk((25, 30)), disk((20, 70))])
    root = multi_recording_path("two")
    store.write_rois(f"{root}/templates", templates, plane_index=np.array([0, 0, 1], np.int32), radius_px=np.full(3, 4.0, np.float32), template_track_id=np.array([2, 0, 1]))
    source = RecordingSource("two_planes", store, (40, 96), 50, tiles, 0, 10.0, 1.0, 8.0, np.zeros(0), "hash")
    configuration = MultiRecordingConfiguration.model_validate({"recording_io": {"dataset_name": "two"}, "runtime": {"max_chunk_memory": "200B"}, "signal_extraction": {"minimum_neuropil_pixels": 100}})
    sources, targets = zip(*recording_extraction_writes(source, configuration))
    dask.compute(da.store(list(sources), list(targets), lock=False, compute=False), scheduler="sync")
    cell = store.read(f"{root}/extraction/cell_fluorescence")
    assert cell.shape == (3, 50)
    for plane, rows in ((0, [0, 1]), (1, [2])):
        local = templates.select(np.array(rows))
        local = local._replace(xpix=(local.xpix - tiles[plane].x_offset).astype(np.int32))
        masks = build_extraction_masks(local, frame_shape=(40, 48), roi_radii_px=np.full(len(rows), 4.0), allow_overlap=True, extract_neuropil=True, cell_probability_percentile=50.0, inner_neuropil_border_radius_px=2, minimum_neuropil_pixels=100)
        pixels_by_time = movies[plane][:50].reshape(50, -1).T.astype(np.float64)
        np.testing.assert_allclose(cell[rows], masks.cell_weights.toarray() @ pixels_by_time, rtol=1e-5)
        np.testing.assert_allclose(store.read(f"{root}/extraction/neuropil_fluorescence")[rows], masks.neuropil_weights.toarray() @ pixels_by_time, rtol=1e-5)
    assert store.array(f"{root}/extraction/spikes").chunks[0] < 3  # several ROI chunks
