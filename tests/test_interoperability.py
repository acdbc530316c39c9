"""Stores other tools open: every group through xarray, every movie and image as an OME-NGFF 0.5 image.

Three small finished stores cover every group the pipeline writes: a two-plane, two-channel sparse
run with a known pixel size (raw, registered, registration with PC metrics and nonrigid blocks,
detection, ROIs, extraction with the structural channel, combined), and a pair of sessions without
a pixel size, one processed by CNMF (``cnmf/``), both tracked (``multi_recording/<dataset>/``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import zarr

from cindra_dask.config import MultiRecordingConfiguration, configuration_from_mapping
from cindra_dask.pipeline import run_multi_recording, run_single_recording
from cindra_dask.rois import RaggedRois
from cindra_dask.simulate import SimulationParameters, simulate_sessions, write_recording
from cindra_dask.store import (
    ARRAY_DIMENSIONS,
    FRAME_DIMENSIONS,
    IMAGE_DIMENSIONS,
    RecordingStore,
    dimension_names_for,
    ome_image_attributes,
)
from tests.conftest import single_configuration

PIXEL_SIZE_UM = 0.8
PLANES = SimulationParameters(frame_height=80, frame_width=80, frame_count=300, plane_count=2, channel_count=2, cell_count=12, non_cell_count=2, cell_diameter_px=10, file_count=2, seed=5)
SESSIONS = SimulationParameters(frame_height=96, frame_width=96, frame_count=400, cell_count=14, non_cell_count=3, cell_diameter_px=10, rigid_shift_px=2.0, nonrigid_shift_px=0.0, file_count=1, seed=8)
CNMF = {"method": "cnmf", "gSig": [5, 5], "rf": 24, "stride": 10, "K": 6}
DATASET = "pair"


class Stores(NamedTuple):
    planes: RecordingStore  # 2 planes × 2 channels, sparse, pixel size known
    planes_configuration: Any
    sessions: tuple[RecordingStore, RecordingStore]  # CNMF and sparse, tracked together, pixel size unknown


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, client: Any) -> Stores:
    root = tmp_path_factory.mktemp("interoperability")
    data = write_recording(PLANES, root / "planes")
    planes_configuration = single_configuration(
        data, root / "stores", runtime={"max_chunk_memory": "1MiB"}, main={"tau": PLANES.tau_s, "two_channels": True},
        nonrigid_registration={"block_size": [48, 48]}, metadata={"pixel_size_um": PIXEL_SIZE_UM},
    )
    planes = RecordingStore(run_single_recording(planes_configuration, client=client).store_path)
    sessions = simulate_sessions(SESSIONS, session_count=2, deformation_px=2.0, turnover_fraction=0.2)
    paths = []
    for index, session in enumerate(sessions):
        directory = write_recording(session.parameters, root / "sessions" / f"session_{index}", truth=session.truth)
        extra = {"source_extraction": CNMF} if index == 0 else {}
        configuration = single_configuration(directory, root / "stores", runtime={"max_chunk_memory": "1MiB"}, main={"tau": SESSIONS.tau_s}, nonrigid_registration={"block_size": [64, 64]}, **extra)
        paths.append(run_single_recording(configuration, client=client).store_path)
    tracking = configuration_from_mapping(
        {"pipeline_type": "multi-recording", "runtime": {"display_progress_bars": False}, "recording_io": {"recording_directories": [str(path) for path in paths], "dataset_name": DATASET},
         "diffeomorphic_registration": {"final_grid_sampling": 32.0}},
        source="test", model=MultiRecordingConfiguration,
    )
    run_multi_recording(tracking, client=client)
    return Stores(planes, planes_configuration, (RecordingStore(paths[0]), RecordingStore(paths[1])))


def all_stores(stores: Stores) -> list[RecordingStore]:
    return [stores.planes, *stores.sessions]


def nodes(store: RecordingStore, node_type: str) -> list[str]:
    """Relative paths of the store's groups or arrays ("" is the root), sorted."""
    found = []
    for metadata_file in sorted(store.path.rglob("zarr.json")):
        if json.loads(metadata_file.read_text())["node_type"] == node_type:
            relative = metadata_file.parent.relative_to(store.path).as_posix()
            found.append("" if relative == "." else relative)
    return found


def children(store: RecordingStore, group: str) -> list[str]:
    """Names of the arrays directly inside ``group``."""
    prefix = f"{group}/" if group else ""
    return sorted(path[len(prefix):] for path in nodes(store, "array") if path.startswith(prefix) and "/" not in path[len(prefix):])


def image_groups(store: RecordingStore) -> dict[str, list[str]]:
    """Groups holding arrays with dims (t, y, x) or (y, x), with those arrays' names."""
    found: dict[str, list[str]] = {}
    for path in nodes(store, "array"):
        if tuple(store.array(path).metadata.dimension_names) in (FRAME_DIMENSIONS, IMAGE_DIMENSIONS):
            group, name = path.rsplit("/", 1)
            found.setdefault(group, []).append(name)
    return found


# ------------------------------------------------------------------------------ dimension names


def test_the_stores_hold_every_group_the_pipeline_writes(stores: Stores) -> None:
    groups = {group for store in all_stores(stores) for group in nodes(store, "group")}
    for plane in (0, 1):
        assert {f"plane_{plane}/{name}" for name in ("raw", "registered", "registration", "detection", "rois", "extraction")} <= groups
    assert {"plane_0/cnmf", "combined/detection", "combined/rois", "combined/extraction"} <= groups
    assert {f"multi_recording/{DATASET}", f"multi_recording/{DATASET}/rois", f"multi_recording/{DATASET}/templates", f"multi_recording/{DATASET}/extraction"} <= groups
    arrays = {path.rsplit("/", 1)[1] for store in all_stores(stores) for path in nodes(store, "array")}
    assert {"pc_low_images", "block_centers", "nonrigid_offsets", "cell_colocalization", "corrected_structural_mean_image", "background_spatial", "deformation_forward"} <= arrays


def test_every_array_has_unique_dimension_names_from_the_store_layout(stores: Stores) -> None:
    for store in all_stores(stores):
        for path in nodes(store, "array"):
            array = store.array(path)
            names = array.metadata.dimension_names
            assert names is not None, path
            assert len(names) == array.ndim and len(set(names)) == array.ndim, (path, names)
            assert tuple(names) == dimension_names_for(path, ndim=array.ndim), path
    registration = "plane_0/registration"
    expected = {
        "block_centers": ("block", "axis"), "nonrigid_offsets": ("t", "block", "axis"), "pc_low_images": ("pc", "valid_y", "valid_x"),
        "pc_shift_metrics": ("pc", "metric"), "pc_projections": ("sample", "pc"), "reference_image": ("y", "x"), "rigid_offsets": ("t", "axis"),
    }
    for name, dimensions in expected.items():
        assert stores.planes.array(f"{registration}/{name}").metadata.dimension_names == dimensions
    assert stores.planes.array("plane_0/rois/pixel_offsets").metadata.dimension_names == ("roi_boundary",)
    assert stores.planes.array("plane_0/rois/ypix").metadata.dimension_names == ("pixel",)
    assert stores.planes.array("plane_0/rois/centroids").metadata.dimension_names == ("roi", "axis")
    assert stores.planes.array("combined/extraction/cell_classification").metadata.dimension_names == ("roi", "column")
    assert stores.sessions[0].array("plane_0/cnmf/background_spatial").metadata.dimension_names == ("component", "y", "x")


def test_xarray_opens_every_group_with_the_stores_values(stores: Stores) -> None:
    import xarray as xr

    opened = 0
    for store in all_stores(stores):
        for group in nodes(store, "group"):
            dataset = xr.open_zarr(str(store.path), group=group or None, consolidated=False, zarr_format=3, chunks=None)
            names = children(store, group)
            assert sorted(dataset.variables) == names, group
            for name in names:
                path = f"{group}/{name}" if group else name
                variable = dataset[name]
                assert variable.dims == tuple(store.array(path).metadata.dimension_names), path
                expected = store.read(path)
                assert variable.dtype == expected.dtype, path
                np.testing.assert_array_equal(variable.values, expected, err_msg=path)
            assert dict(dataset.attrs) == store.group_attributes(group or "."), group
            opened += 1
    assert opened >= 40


# ------------------------------------------------------------------------------ OME-NGFF 0.5


def test_ome_zarr_models_validates_every_movie_and_image_group(stores: Stores) -> None:
    import ome_zarr_models
    from ome_zarr_models.v05.image import Image

    expected_groups = {f"plane_{plane}/{name}" for plane in (0, 1) for name in ("raw", "registered", "registration", "detection", "extraction")} | {"combined/detection"}
    assert set(image_groups(stores.planes)) == expected_groups
    for store in all_stores(stores):
        groups = image_groups(store)
        for group, names in groups.items():
            image = Image.from_zarr(zarr.open_group(str(store.path / group), mode="r"))
            assert isinstance(ome_zarr_models.open_ome_zarr(store.path / group, version="0.5"), Image), group
            multiscales = image.ome_attributes.multiscales
            assert sorted(multiscale.name for multiscale in multiscales) == sorted(names), group
            assert all(len(multiscale.datasets) == 1 and multiscale.datasets[0].path == multiscale.name for multiscale in multiscales), group
        others = set(nodes(store, "group")) - set(groups)
        assert not [group for group in others if "ome" in store.group_attributes(group or ".")]
    detection = Image.from_zarr(zarr.open_group(str(stores.planes.path / "plane_0/detection"), mode="r"))
    assert [multiscale.name for multiscale in detection.ome_attributes.multiscales] == ["mean_image", "enhanced_mean_image", "maximum_projection", "correlation_map"]


def test_the_registered_movie_is_scaled_by_frame_interval_and_pixel_size(stores: Stores) -> None:
    from ome_zarr_models.v05.image import Image

    plane_rate_hz = PLANES.frame_rate_hz / PLANES.plane_count
    for plane in (0, 1):
        image = Image.from_zarr(zarr.open_group(str(stores.planes.path / f"plane_{plane}/registered"), mode="r"))
        for channel, multiscale in enumerate(image.ome_attributes.multiscales):
            assert multiscale.name == f"channel_{channel}"
            assert [(axis.name, axis.type, axis.unit) for axis in multiscale.axes] == [("t", "time", "second"), ("y", "space", "micrometer"), ("x", "space", "micrometer")]
            (scale,) = multiscale.datasets[0].coordinateTransformations
            assert scale.type == "scale"
            np.testing.assert_allclose(scale.scale, (1.0 / plane_rate_hz, PIXEL_SIZE_UM, PIXEL_SIZE_UM), rtol=1e-12)
    mean_image = stores.planes.group_attributes("combined/detection")["ome"]["multiscales"][0]
    assert mean_image["datasets"][0]["coordinateTransformations"] == [{"type": "scale", "scale": [PIXEL_SIZE_UM, PIXEL_SIZE_UM]}]


def test_an_unknown_pixel_size_leaves_the_space_axes_in_pixels(stores: Stores) -> None:
    for store in stores.sessions:
        for multiscale in store.group_attributes("plane_0/registered")["ome"]["multiscales"]:
            assert multiscale["axes"] == [{"name": "t", "type": "time", "unit": "second"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
            np.testing.assert_allclose(multiscale["datasets"][0]["coordinateTransformations"][0]["scale"], (1.0 / SESSIONS.frame_rate_hz, 1.0, 1.0))


def test_a_rerun_updates_the_pixel_size_and_gives_an_old_store_its_dimension_names(stores: Stores, client: Any, tmp_path: Path) -> None:
    """Every step is skipped; the OME scale takes the new pixel size, and arrays written without
    dimension names (as before they were required) get the layout's, listed in the manifest."""
    import xarray as xr

    from cindra_dask.manifest import read_manifest, verify_store

    copy = RecordingStore(tmp_path / stores.planes.path.name)
    shutil.copytree(stores.planes.path, copy.path)
    stripped = ["plane_0/registration/block_centers", "plane_0/registration/pc_shift_metrics", "plane_0/rois/ypix", "plane_0/rois/centroids", "plane_0/extraction/cell_classification", "combined/rois/plane_index"]
    for path in stripped:
        metadata_path = copy.path / path / "zarr.json"
        metadata_path.write_text(json.dumps({**json.loads(metadata_path.read_text()), "dimension_names": None}))
    with pytest.raises(KeyError, match="dimension_names"):  # the issue: xarray could not open such groups
        xr.open_zarr(str(copy.path), group="plane_0/registration", consolidated=False, zarr_format=3)
    records = copy.phase_records()
    changed = stores.planes_configuration.model_copy(
        update={"file_io": stores.planes_configuration.file_io.model_copy(update={"output_path": tmp_path}), "metadata": stores.planes_configuration.metadata.model_copy(update={"pixel_size_um": 1.25})}
    )
    report = run_single_recording(changed, client=client)
    assert {outcome.state for outcome in report.outcomes} == {"skipped"}
    assert copy.phase_records() == records
    for multiscale in copy.group_attributes("plane_1/registered")["ome"]["multiscales"]:
        assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"][1:] == [1.25, 1.25]
    resources = {resource["path"]: resource for resource in read_manifest(copy)["resources"]}
    for path in stripped:
        assert copy.array(path).metadata.dimension_names == stores.planes.array(path).metadata.dimension_names, path
        assert resources[path]["dimension_names"] == list(stores.planes.array(path).metadata.dimension_names), path
        np.testing.assert_array_equal(copy.read(path), stores.planes.read(path))
    xr.open_zarr(str(copy.path), group="plane_0/registration", consolidated=False, zarr_format=3)
    assert verify_store(copy.path) == []


# ------------------------------------------------------------------------------ napari


def test_napari_opens_the_registered_movie_lazily_without_a_window(stores: Stores, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """napari's viewer model (napari without Qt or a screen) opens ``plane_1/registered`` through the
    napari-ome-zarr plugin as one lazy dask image layer, reading at most two of the movie's chunks
    (its contrast-limit sample and the displayed frame), with our axes, units and scale."""
    pytest.importorskip("napari_ome_zarr")
    monkeypatch.setenv("NAPARI_CONFIG", str(tmp_path / "napari-settings.yaml"))  # never the user's settings
    import dask.array as da
    import npe2
    from napari.components import ViewerModel

    movie_path = "plane_1/registered/channel_0"  # the group's first multiscale, the one napari-ome-zarr shows
    expected = stores.planes.read(movie_path)
    frames_per_chunk = stores.planes.array(movie_path).chunks[0]
    chunk_count = -(-expected.shape[0] // frames_per_chunk)
    assert chunk_count >= 4
    read_chunks: set[str] = set()
    original_get = zarr.storage.LocalStore.get

    async def counting_get(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith(f"{movie_path}/c/") or key.startswith("channel_0/c/"):
            read_chunks.add(key)
        return await original_get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting_get)
    npe2.PluginManager.instance().discover()  # what napari's launcher does; a bare ViewerModel skips it
    viewer = ViewerModel()
    (layer,) = viewer.open(str(stores.planes.path / "plane_1/registered"), plugin="napari-ome-zarr")
    assert layer._type_string == "image" and not layer.multiscale and isinstance(layer.data, da.Array)
    assert layer.data.shape == expected.shape and layer.data.dtype == expected.dtype
    assert layer.data.chunks[0][0] == frames_per_chunk  # one dask chunk per Zarr chunk
    assert 1 <= len(read_chunks) <= 2 < chunk_count, sorted(read_chunks)  # opened, not loaded
    assert layer.axis_labels == ("t", "y", "x") and [str(unit) for unit in layer.units] == ["second", "micrometer", "micrometer"]
    np.testing.assert_allclose(layer.scale, (PLANES.plane_count / PLANES.frame_rate_hz, PIXEL_SIZE_UM, PIXEL_SIZE_UM), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(layer.data), expected)


# ------------------------------------------------------------------------------ NWB of a tracked pair


def test_the_tracked_pair_exports_one_nwb_per_recording_with_its_track_ids(stores: Stores, tmp_path: Path) -> None:
    """The pipeline's tracked pair (CNMF + sparse), with ``--movie external``: each file's track_id
    column is the store's ``multi_recording/pair/rois`` assignment (−1 elsewhere), the ids shared by
    both files name the ROIs `tracked_cells` pairs, and the raw series links the recording's TIFF,
    whose pages are the store's raw frames."""
    pytest.importorskip("pynwb")
    import tifffile
    from pynwb import NWBHDF5IO

    from cindra_dask.export.nwb import export_tracked_nwb
    from cindra_dask.export.tracked import tracked_cells

    tracking = configuration_from_mapping(
        {"pipeline_type": "multi-recording", "recording_io": {"recording_directories": [str(store.path) for store in stores.sessions], "dataset_name": DATASET}},
        source="test", model=MultiRecordingConfiguration,
    )
    with pytest.warns(UserWarning, match="not set: the NWB file gets"):  # the sessions record no subject or microscope
        exported = export_tracked_nwb(tracking, tmp_path, movie="external", overrides=["metadata.session_start_time=2024-05-01T10:30:00+00:00"])
    assert [result.tracking_dataset for result in exported] == [DATASET, DATASET]
    columns = []
    for store, result in zip(stores.sessions, exported):
        expected = np.full(store.array("plane_0/extraction/cell_fluorescence").shape[0], -1, np.int64)  # one plane: combined row = plane ROI
        expected[store.read(f"multi_recording/{DATASET}/rois/source_roi_index")] = store.read(f"multi_recording/{DATASET}/rois/track_id")
        with NWBHDF5IO(str(result.path), mode="r") as io:
            nwbfile = io.read()
            column = nwbfile.processing["ophys"]["ImageSegmentation"]["PlaneSegmentationPlane0"]["track_id"][:]
            raw = nwbfile.acquisition["TwoPhotonSeriesRawPlane0"]
            links, starts = list(raw.external_file[:]), list(raw.starting_frame)
        np.testing.assert_array_equal(column, expected)
        assert starts == [0] and len(links) == SESSIONS.file_count and not Path(links[0]).is_absolute()
        pages = tifffile.imread(tmp_path / links[0])
        assert len(pages) == store.attributes()["frames_per_plane"] == SESSIONS.frame_count
        np.testing.assert_array_equal(pages, store.read("plane_0/raw/channel_0"))
        columns.append(column)
    cells = tracked_cells(tracking)
    shared = np.flatnonzero((cells.roi_index >= 0).all(axis=1))
    assert len(shared) >= 1, len(shared)  # 2 of 14 cells today: the CNMF and the sparse session find few of the same ROIs
    for track in shared:
        assert columns[0][cells.roi_index[track, 0]] == columns[1][cells.roi_index[track, 1]] == track


# ------------------------------------------------------------------------------ the store's rules


def test_ome_image_attributes_order_units_and_scales() -> None:
    attributes = ome_image_attributes([("correlation_map", IMAGE_DIMENSIONS), ("mean_image", IMAGE_DIMENSIONS), ("zeta", IMAGE_DIMENSIONS)], frame_interval_s=0.5, pixel_size_um=2.0)
    assert attributes["version"] == "0.5"
    assert [multiscale["name"] for multiscale in attributes["multiscales"]] == ["mean_image", "correlation_map", "zeta"]
    assert attributes["multiscales"][0]["axes"] == [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}]
    movie = ome_image_attributes([("channel_0", FRAME_DIMENSIONS)], frame_interval_s=0.5, pixel_size_um=None)["multiscales"][0]
    assert movie["datasets"] == [{"path": "channel_0", "coordinateTransformations": [{"type": "scale", "scale": [0.5, 1.0, 1.0]}]}]


def test_arrays_outside_the_layout_need_dimension_names(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="no dimension names known"):
        store.write_array("plane_0/extraction/unknown_trace", np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="2-D array"):
        store.write_array("plane_0/registration/rigid_correlations", np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="unique"):
        store.write_array("plane_0/extraction/other", np.zeros((2, 2), np.float32), dimension_names=("roi", "roi"))
    assert "plane_0/extraction/unknown_trace" not in store
    store.write_array("plane_0/extraction/unknown_trace", np.zeros((2, 3), np.float32), dimension_names=("roi", "t"))
    assert store.array("plane_0/extraction/unknown_trace").metadata.dimension_names == ("roi", "t")
    rois = RaggedRois.from_masks([(np.array([0, 1]), np.array([0, 0]), np.ones(2, np.float32))])
    store.write_rois("plane_0/rois", rois, radius_px=np.ones(1, np.float32), centroids=np.zeros((1, 2), np.int32))
    assert store.array("plane_0/rois/radius_px").metadata.dimension_names == ("roi",)
    with pytest.raises(ValueError, match="ARRAY_DIMENSIONS"):
        store.write_rois("plane_0/rois", rois, boxes=np.zeros((1, 4), np.int32))
    assert "plane_0/rois/radius_px" in store  # refused before anything was removed
    assert all(len(set(dimensions)) == len(dimensions) for dimensions in ARRAY_DIMENSIONS.values())
