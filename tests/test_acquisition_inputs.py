"""Acquisition from the files' own metadata (ScanImage headers, PrairieView XML, NWB) and Bruker / NWB / Zarr movie inputs (issue 19).

ScanImage files are written with tifffile carrying ScanImage 2016+'s layout: the non-varying frame
data (``SI.*`` keys, MATLAB syntax) in the Software tag, the ROI groups JSON in the Artist tag, the
varying frame data in the ImageDescription, on every page; also with the ScanImage BigTIFF header
block (magic 0x07030301 after the BigTIFF header) that tifffile's `read_scanimage_metadata` reads.
Every inferred acquisition is compared with the one written, every ingest byte for byte with the
ingest of the same pages as plain TIFFs with a hand-written ``cindra_parameters.json``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
import shutil
import struct
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.config import AcquisitionParameters, configuration_from_mapping, save_configuration
from cindra_dask.io.scanimage import scanimage_acquisition
from cindra_dask.pipeline import run_single_recording
from cindra_dask.store import RecordingStore, frames_path
from tests.conftest import single_configuration, write_tiff_recording

HEIGHT, WIDTH = 40, 30
SIM_HEIGHT, SIM_WIDTH = 48, 52
"""Frame size of the simulated recordings."""

# -- ScanImage 2016+ files ------------------------------------------------------------------------


def _matlab(value: Any) -> str:
    """A value in the MATLAB syntax ScanImage writes (true/false, 'text', [1;2] column vectors, [0 10 20] rows)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, tuple):  # column vector
        return "[" + ";".join(_matlab(item) for item in value) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_matlab(item) for item in value) + "]"
    return repr(value)


def si2016_frame_data(*, scan_frame_rate: float, slices: int, flyback: int, saved_channels: tuple[int, ...], mroi: bool, fast_z: bool | None = None) -> str:
    """Non-varying frame data as ScanImage 2016b writes them (a subset of its ~500 keys, in its order and syntax)."""
    fast_z = slices > 1 if fast_z is None else fast_z
    values = {
        "SI.LINE_FORMAT_VERSION": 1,
        "SI.VERSION_MAJOR": "2016b",
        "SI.VERSION_MINOR": "0",
        "SI.acqsPerLoop": 1,
        "SI.hChannels.channelSave": saved_channels if len(saved_channels) > 1 else saved_channels[0],
        "SI.hChannels.channelsActive": saved_channels if len(saved_channels) > 1 else saved_channels[0],
        "SI.hFastZ.discardFlybackFrames": flyback > 0,
        "SI.hFastZ.enable": fast_z,
        "SI.hFastZ.flybackTime": 0.015,
        "SI.hFastZ.numDiscardFlybackFrames": flyback,
        "SI.hFastZ.numFramesPerVolume": slices + flyback,
        "SI.hFastZ.numVolumes": 100,
        "SI.hFastZ.waveformType": "sawtooth",
        "SI.hRoiManager.linePeriod": 6.3e-05,
        "SI.hRoiManager.linesPerFrame": HEIGHT,
        "SI.hRoiManager.mroiEnable": mroi,
        "SI.hRoiManager.pixelsPerLine": WIDTH,
        "SI.hRoiManager.scanFrameRate": scan_frame_rate,
        "SI.hRoiManager.scanVolumeRate": scan_frame_rate / (slices + flyback),
        "SI.hRoiManager.scanZoomFactor": 2,
        "SI.hScan2D.bidirectional": True,
        "SI.hScan2D.flytoTimePerScanfield": 0.00025,
        "SI.hScan2D.logAverageFactor": 1,
        "SI.hStackManager.actualNumSlices": slices,
        "SI.hStackManager.framesPerSlice": 1,
        "SI.hStackManager.numSlices": slices,
        "SI.hStackManager.stackZStepSize": 10,
        "SI.hStackManager.zs": [10 * index for index in range(slices)] if slices > 1 else 0,
        "SI.objectiveResolution": 15,
    }
    return "\n".join(f"{key} = {_matlab(value)}" for key, value in values.items()) + "\n"


def roi_groups(strips: list[dict[str, Any]]) -> str:
    """The Artist tag's JSON: an imaging ROI group with one single-scanfield ROI per strip, as ScanImage 2016b writes it."""
    rois = [
        {
            "ver": 1,
            "classname": "scanimage.mroi.Roi",
            "name": f"ROI {index + 1}",
            "UserData": None,
            "roiUuid": f"6A5D3C4B{index:08X}",
            "zs": 0,
            "scanfields": {
                "ver": 1,
                "classname": "scanimage.mroi.scanfield.fields.RotatedRectangle",
                "name": f"ROI {index + 1}",
                "centerXY": strip["center"],
                "sizeXY": strip["size"],
                "rotationDegrees": 0,
                "enable": 1,
                "pixelResolutionXY": strip["pixels"],
                "pixelToRefTransform": [[strip["size"][0] / strip["pixels"][0], 0, 0], [0, strip["size"][1] / strip["pixels"][1], 0], [0, 0, 1]],
                "affine": [[strip["size"][0], 0, 0], [0, strip["size"][1], 0], [0, 0, 1]],
            },
            "discretePlaneMode": 0,
            "powers": 20,
            "pzAdjust": 0,
            "Lzs": None,
            "interlaceDecimation": None,
            "interlaceOffset": None,
            "enable": 1,
        }
        for index, strip in enumerate(strips)
    ]
    group = {"ver": 1, "classname": "scanimage.mroi.RoiGroup", "name": "MROI Imaging ROI Group", "UserData": None, "roiUuid": "E6D8F1A2B3C4D5E6", "rois": rois}
    return json.dumps({"RoiGroups": {"imagingRoiGroup": group, "photostimRoiGroups": None, "integrationRoiGroup": {"ver": 1, "classname": "scanimage.mroi.RoiGroup", "name": "", "rois": []}}})


def _varying_frame_data(page: int) -> str:
    return (
        f"frameNumbers = {page + 1}\nacquisitionNumbers = 1\nframeNumberAcquisition = {page + 1}\nframeTimestamps_sec = {page / 40:.6f}\n"
        "acqTriggerTimestamps_sec = \nnextFileMarkerTimestamps_sec = \nendOfAcquisition = 0\nendOfAcquisitionMode = 0\ndcOverVoltage = 0\nepoch = [2016 12 1 10 20 30.5]\n"
    )


def write_scanimage_recording(directory: Path, pages: np.ndarray, *, file_page_counts: tuple[int, ...], frame_data: str, artist: str = "") -> list[Path]:
    """``pages`` into ScanImage-style BigTIFFs (Software, Artist and ImageDescription tags on every page)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for index, count in enumerate(file_page_counts):
        path = directory / f"file_{index + 1:05d}.tif"
        with tifffile.TiffWriter(path, bigtiff=True) as tif:  # ScanImage 2016b+ writes BigTIFF (tifffile guesses page offsets in classic ScanImage TIFFs)
            for page in range(start, start + count):
                extratags = [(315, "s", 0, artist, True)] if artist else []
                tif.write(pages[page], software=frame_data, description=_varying_frame_data(page), extratags=extratags, photometric="minisblack", metadata=None, contiguous=False)
        paths.append(path)
        start += count
    return paths


def with_scanimage_header_block(path: Path, *, frame_data: str, artist: str) -> None:
    """Rewrite the BigTIFF ``path`` as ScanImage 2019+ writes it: the static metadata block (magic 0x07030301, version 3,
    the frame data and ROI JSON) right after the 16-byte BigTIFF header, every offset of the file moved past it."""
    data = bytearray(path.read_bytes())
    frame_bytes, roi_bytes = frame_data.encode() + b"\0", artist.encode() + b"\0"
    block = struct.pack("<IIII", 0x07030301, 3, len(frame_bytes), len(roi_bytes)) + frame_bytes + roi_bytes
    shift = len(block)
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        patches = []  # (byte position of an 8-byte offset, old value)
        for page in tif.pages:
            entry_count = struct.unpack_from("<Q", data, page.offset)[0]
            for tag in page.tags.values():
                inline = tag.valueoffset == tag.offset + 12
                if not inline:
                    patches.append((tag.offset + 12, tag.valueoffset))
                if tag.code in (273, 324):  # strip / tile offsets: the values are offsets
                    start = tag.valueoffset
                    patches.extend((start + 8 * item, struct.unpack_from("<Q", data, start + 8 * item)[0]) for item in range(tag.count))
            next_position = page.offset + 8 + 20 * entry_count
            patches.append((next_position, struct.unpack_from("<Q", data, next_position)[0]))
    patches.append((8, struct.unpack_from("<Q", data, 8)[0]))
    for position, value in patches:
        if value:
            struct.pack_into("<Q", data, position, value + shift)
    path.write_bytes(bytes(data[:16]) + block + bytes(data[16:]))


MROI_STRIPS = [  # 10 px per scan degree in x and y; tops 0, 14, 30 with 4 fly-to lines between strips
    {"center": [-3.0, 0.5], "size": [3.0, 1.0], "pixels": [WIDTH, 10]},
    {"center": [0.0, 0.6], "size": [3.0, 1.2], "pixels": [WIDTH, 12]},
    {"center": [3.0, 1.5], "size": [3.0, 1.0], "pixels": [WIDTH, 10]},
]

SCANIMAGE_CASES: dict[str, dict[str, Any]] = {
    # scanFrameRate 40 Hz with 3 slices + 1 flyback frame per volume: volumes at 10 Hz, cindra's frame_rate 3 × 10 = 30 Hz
    "multi_plane": {
        "frame_data": si2016_frame_data(scan_frame_rate=40.0, slices=3, flyback=1, saved_channels=(1,), mroi=False),
        "artist": "",
        "expected": {"frame_rate": 30.0, "plane_number": 3, "channel_number": 1},
        "pages": 3 * 1 * 20,
        "sections": {},
    },
    "two_channel": {
        "frame_data": si2016_frame_data(scan_frame_rate=30.0, slices=1, flyback=0, saved_channels=(1, 2), mroi=False),
        "artist": "",
        "expected": {"frame_rate": 30.0, "plane_number": 1, "channel_number": 2},
        "pages": 2 * 30,
        "sections": {"main": {"two_channels": True}},
    },
    "mroi": {
        "frame_data": si2016_frame_data(scan_frame_rate=16.0, slices=2, flyback=0, saved_channels=(2,), mroi=True),
        "artist": roi_groups(MROI_STRIPS),
        "expected": {
            "frame_rate": 16.0,
            "plane_number": 2,
            "channel_number": 1,
            "roi_number": 3,
            "roi_lines": [list(range(0, 10)), list(range(14, 26)), list(range(30, 40))],
            "roi_x_coordinates": [0.0, 30.0, 60.0],
            "roi_y_coordinates": [0.0, 0.0, 10.0],
        },
        "pages": 2 * 1 * 25,
        "sections": {},
    },
}


SCAN_FRAME_RATES = {"multi_plane": 40.0, "two_channel": 30.0, "mroi": 16.0}
"""``SI.hRoiManager.scanFrameRate`` written per case."""


def _pages(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 30_000, size=(count, HEIGHT, WIDTH)).astype(np.int16)


def _split(total: int) -> tuple[int, ...]:
    """Three files of unequal page counts, boundaries inside volumes."""
    first, second = total // 3 + 1, total // 3 - 1
    return (first, second, total - first - second)


@pytest.mark.parametrize("case", sorted(SCANIMAGE_CASES))
@pytest.mark.parametrize("layout", ["tags", "header_block"])
def test_scanimage_header_gives_the_written_acquisition(tmp_path: Path, case: str, layout: str) -> None:
    spec = SCANIMAGE_CASES[case]
    (path,) = write_scanimage_recording(tmp_path, _pages(6, 0), file_page_counts=(6,), frame_data=spec["frame_data"], artist=spec["artist"])
    if layout == "header_block":
        with_scanimage_header_block(path, frame_data=spec["frame_data"], artist=spec["artist"] or "{}")
        with tifffile.TiffFile(path) as tif:
            assert tif.scanimage_metadata["version"] == 3 and tif.scanimage_metadata["FrameData"]["SI.hRoiManager.scanFrameRate"] == SCAN_FRAME_RATES[case]
        np.testing.assert_array_equal(tifffile.imread(path).reshape(6, HEIGHT, WIDTH), _pages(6, 0))  # pages intact after the move
    source = scanimage_acquisition(path, page_height=HEIGHT)
    assert source is not None
    assert source.parameters == AcquisitionParameters.model_validate(spec["expected"])
    assert source.detail == ("SI 2016+, BigTIFF header" if layout == "header_block" else "SI 2016+, Software/Artist tags")
    assert source.read["SI.hChannels.channelSave"] == {"multi_plane": 1, "two_channel": [[1], [2]], "mroi": 2}[case]
    if case == "mroi":
        assert source.read["fly_to_lines"] == 4
        assert [roi["pixelResolutionXY"] for roi in source.read["RoiGroups.imagingRoiGroup.rois"]] == [[WIDTH, 10], [WIDTH, 12], [WIDTH, 10]]


@pytest.fixture(scope="module")
def scanimage_twins(tmp_path_factory: pytest.TempPathFactory, client: Any) -> dict[str, tuple[RecordingStore, RecordingStore]]:
    """Per case: the ScanImage folder (no JSON) and the same pages as plain TIFFs with a hand-written JSON, both ingested."""
    root = tmp_path_factory.mktemp("scanimage")
    stores = {}
    for seed, (case, spec) in enumerate(sorted(SCANIMAGE_CASES.items())):
        pages = _pages(spec["pages"], seed)
        write_scanimage_recording(root / case / "scanimage" / "session", pages, file_page_counts=_split(len(pages)), frame_data=spec["frame_data"], artist=spec["artist"])
        write_tiff_recording(root / case / "plain" / "session", pages, file_page_counts=_split(len(pages)), acquisition=spec["expected"])
        pair = []
        for kind in ("scanimage", "plain"):
            configuration = single_configuration(root / case / kind / "session", root / case / f"out_{kind}", registration={"batch_size": 4}, **spec["sections"])
            pair.append(RecordingStore(run_single_recording(configuration, client=client, phases=["ingest"]).store_path))
        stores[case] = (pair[0], pair[1])
    return stores


@pytest.mark.parametrize("case", sorted(SCANIMAGE_CASES))
def test_scanimage_ingest_equals_the_hand_written_parameters_ingest(scanimage_twins: dict[str, tuple[RecordingStore, RecordingStore]], case: str) -> None:
    from_header, from_json = scanimage_twins[case]
    expected = AcquisitionParameters.model_validate(SCANIMAGE_CASES[case]["expected"])
    raw = [path for path in from_json.array_paths() if "/raw/" in path]
    assert len(raw) == expected.virtual_plane_count * expected.channel_number
    assert from_header.array_paths() == from_json.array_paths()
    for path in raw:
        assert from_header.read(path).tobytes() == from_json.read(path).tobytes()
    header_attributes, json_attributes = from_header.attributes(), from_json.attributes()
    assert header_attributes["acquisition"] == json_attributes["acquisition"] == expected.model_dump(mode="json")
    assert header_attributes["planes"] == json_attributes["planes"]
    source = header_attributes["acquisition_source"]
    assert source["kind"] == "scanimage" and Path(source["file"]).name == "file_00001.tif" and source["metadata"] is None and source["disagreements"] == []
    assert source["read"]["SI.hRoiManager.scanFrameRate"] == SCAN_FRAME_RATES[case]
    assert json_attributes["acquisition_source"]["kind"] == "parameters_file" and json_attributes["acquisition_source"]["metadata"] is None


def _config(root: Path, data: Path, **sections: Any) -> Path:
    payload: dict[str, Any] = {"runtime": {"display_progress_bars": False}, "file_io": {"data_path": str(data), "output_path": str(root / "out")}, "cluster": {"workers": 1}}
    for name, values in sections.items():
        payload.setdefault(name, {}).update(values)
    return save_configuration(configuration_from_mapping(payload, source="test"), root / "config.yaml")


def test_validate_says_what_it_inferred_and_from_which_file(tmp_path: Path) -> None:
    spec = SCANIMAGE_CASES["multi_plane"]
    data = tmp_path / "data"
    paths = write_scanimage_recording(data, _pages(3 * 60, 1), file_page_counts=(90, 90), frame_data=spec["frame_data"])
    result = CliRunner().invoke(app, ["validate", str(_config(tmp_path, data))])
    assert result.exit_code == 0, result.output
    assert f"acquisition: 30 Hz, 3 planes, 1 channel — inferred from the ScanImage header (SI 2016+, Software/Artist tags) of {paths[0]}" in result.output
    assert "60 frames × 3 planes × 1 channels" in result.output


def test_an_explicit_parameters_file_wins_and_the_disagreement_is_reported(tmp_path: Path, client: Any) -> None:
    spec = SCANIMAGE_CASES["multi_plane"]
    data = tmp_path / "data"
    paths = write_scanimage_recording(data, _pages(3 * 60, 2), file_page_counts=(180,), frame_data=spec["frame_data"])
    (data / "cindra_parameters.json").write_text(json.dumps({"frame_rate": 7.5, "plane_number": 1, "channel_number": 1}))
    result = CliRunner().invoke(app, ["validate", str(_config(tmp_path, data))])
    assert result.exit_code == 0, result.output
    assert f"acquisition: 7.5 Hz, 1 plane, 1 channel — from {data / 'cindra_parameters.json'}" in result.output
    header = f"the ScanImage header (SI 2016+, Software/Artist tags) of {paths[0]}"
    assert f"warning: acquisition frame_rate: 7.5 in {data / 'cindra_parameters.json'} but 30 in {header}; using the former" in result.output
    assert f"warning: acquisition plane_number: 1 in {data / 'cindra_parameters.json'} but 3 in {header}; using the former" in result.output
    with pytest.warns(UserWarning) as caught:
        store = RecordingStore(run_single_recording(single_configuration(data, tmp_path / "out"), client=client, phases=["ingest"]).store_path)
    reported = [str(warning.message) for warning in caught if str(warning.message).startswith("acquisition ")]
    assert [message.split(":")[0] for message in reported] == ["acquisition frame_rate", "acquisition plane_number"]
    source = store.attributes()["acquisition_source"]
    assert source["kind"] == "parameters_file" and source["parameters"]["plane_number"] == 1
    assert source["metadata"]["kind"] == "scanimage" and source["metadata"]["parameters"]["plane_number"] == 3
    assert len(source["disagreements"]) == 2
    assert store.read(frames_path(0, 0)).shape == (180, HEIGHT, WIDTH)


def test_real_scanimage_3_file(tmp_path: Path, client: Any) -> None:
    """jefferis/scanimage's SI 3.8 file (``benchmarks/accuracy/fetch_scanimage.py``): the header's rate and channel, the pages ingested as they are."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy" / "fetch_scanimage.py"
    if str(script.parent) not in sys.path:
        sys.path.insert(0, str(script.parent))  # the script imports its sibling data_cache
    spec = importlib.util.spec_from_file_location("fetch_scanimage", script)
    assert spec is not None and spec.loader is not None
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)
    (entry,) = fetch.FILES
    cached = fetch.cached_file(entry)
    if not cached.is_file():
        pytest.skip(f"real ScanImage file not cached at {cached}; run python benchmarks/accuracy/fetch_scanimage.py --scanimage <jefferis/scanimage git dir>")
    source = scanimage_acquisition(cached, page_height=entry.page_shape[0])
    assert source is not None and source.detail == "SI 3.x, ImageDescription"
    assert source.parameters == AcquisitionParameters(frame_rate=entry.frame_rate_hz, plane_number=1, channel_number=1)
    assert source.read[f"state.acq.savingChannel{entry.saved_channel}"] == 1 and source.read["state.acq.numberOfZSlices"] == 1
    data = tmp_path / "si38"
    data.mkdir()
    shutil.copy(cached, data)
    store = RecordingStore(run_single_recording(single_configuration(data, tmp_path / "out"), client=client, phases=["ingest"]).store_path)
    pages = tifffile.imread(cached)
    assert pages.shape == (entry.page_count, *entry.page_shape)
    assert store.read(frames_path(0, 0)).tobytes() == pages.tobytes()
    assert store.attributes()["acquisition_source"]["read"]["state.acq.frameRate"] == entry.frame_rate_hz


# -- Bruker / PrairieView ------------------------------------------------------------------------


def write_bruker_folder(directory: Path, pages: np.ndarray, *, planes: int, channels: int, frame_period_s: float, stem: str = "TSeries-12012025-1200-001") -> list[str]:
    """A PrairieView T-series folder: the XML and one single-page OME-TIFF per frame and channel (names as PrairieView writes them)."""
    directory.mkdir(parents=True, exist_ok=True)
    root = ElementTree.Element("PVScan", version="5.6.64.400", date="12/1/2025 12:00:00 PM", notes="")
    shard = ElementTree.SubElement(root, "PVStateShard")
    for key, value in (("activeMode", "ResonantGalvo"), ("framePeriod", repr(frame_period_s)), ("linesPerFrame", str(pages.shape[1])), ("pixelsPerLine", str(pages.shape[2]))):
        ElementTree.SubElement(shard, "PVStateValue", key=key, value=value)
    microns = ElementTree.SubElement(shard, "PVStateValue", key="micronsPerPixel")
    for axis, value in (("XAxis", "1.1"), ("YAxis", "1.2"), ("ZAxis", "5")):
        ElementTree.SubElement(microns, "IndexedValue", index=axis, value=value)
    volumes = len(pages) // (planes * channels)
    names, page = [], 0
    sequences = range(volumes) if planes > 1 else range(1)
    for cycle in sequences:
        sequence = ElementTree.SubElement(root, "Sequence", type="TSeries ZSeries Element" if planes > 1 else "TSeries Timed Element", cycle=str(cycle + 1), time="12:00:00.0", bidirectionalZ="False")
        for index in range(planes if planes > 1 else volumes):
            frame = ElementTree.SubElement(sequence, "Frame", relativeTime=f"{page * frame_period_s:.4f}", absoluteTime=f"{page * frame_period_s + 1:.4f}", index=str(index + 1), parameterSet="CurrentSettings")
            for channel in range(channels):
                name = f"{stem}_Cycle{cycle + 1:05d}_Ch{channel + 1}_{index + 1:06d}.ome.tif"
                ElementTree.SubElement(frame, "File", channel=str(channel + 1), channelName=f"Ch{channel + 1}", filename=name)
                tifffile.imwrite(directory / name, pages[page], photometric="minisblack")
                names.append(name)
                page += 1
            ElementTree.SubElement(frame, "ExtraParameters", validData="True")
            frame_shard = ElementTree.SubElement(frame, "PVStateShard")
            ElementTree.SubElement(frame_shard, "PVStateValue", key="framePeriod", value="99")  # per-frame values are not the scan's
    ElementTree.ElementTree(root).write(directory / f"{stem}.xml", xml_declaration=True, encoding="utf-8")
    (directory / f"{stem}.env").write_text("<Environment/>")  # PrairieView writes one; it is not read
    return names


@pytest.fixture(scope="module")
def simulated_pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A simulated 2-plane, 2-channel recording (TIFFs + cindra_parameters.json) and its pages in order."""
    from cindra_dask.simulate import SimulationParameters, write_recording

    parameters = SimulationParameters(frame_height=SIM_HEIGHT, frame_width=SIM_WIDTH, frame_count=24, plane_count=2, channel_count=2, cell_count=4, non_cell_count=1, cell_diameter_px=8.0, file_count=3, seed=7)
    folder = write_recording(parameters, tmp_path_factory.mktemp("simulated") / "session")
    pages = np.concatenate([tifffile.imread(path) for path in sorted(folder.glob("recording_*.tif"))])
    return folder, pages


def test_bruker_folder_ingests_like_the_tiffs(tmp_path: Path, simulated_pages: tuple[Path, np.ndarray], client: Any) -> None:
    tiffs, pages = simulated_pages
    bruker = tmp_path / "bruker" / "session"
    names = write_bruker_folder(bruker, pages, planes=2, channels=2, frame_period_s=1 / 30)
    assert len(names) == len(pages) == 2 * 2 * 24
    stores = []
    for data in (tiffs, bruker):
        configuration = single_configuration(data, tmp_path / f"out_{data.parent.name}", main={"two_channels": True}, registration={"batch_size": 5})
        stores.append(RecordingStore(run_single_recording(configuration, client=client, phases=["ingest"]).store_path))
    from_tiff, from_bruker = stores
    assert from_bruker.array_paths() == from_tiff.array_paths()
    for plane in range(2):
        for channel in range(2):
            assert from_bruker.read(frames_path(plane, channel)).tobytes() == from_tiff.read(frames_path(plane, channel)).tobytes()
            np.testing.assert_array_equal(from_bruker.read(frames_path(plane, channel)), pages[plane * 2 + channel :: 4])
    attributes = from_bruker.attributes()
    assert attributes["input_format"] == "bruker" and attributes["tiff_files"] == names
    assert attributes["acquisition"] == AcquisitionParameters(frame_rate=30.0, plane_number=2, channel_number=2).model_dump(mode="json")
    source = attributes["acquisition_source"]
    assert source["kind"] == "bruker" and Path(source["file"]).name == "TSeries-12012025-1200-001.xml"
    assert source["read"]["framePeriod"] == 1 / 30 and source["read"]["micronsPerPixel"] == [1.1, 1.2] and source["read"]["channels"] == [1, 2]


# -- NWB and Zarr movies -------------------------------------------------------------------------


def write_nwb(path: Path, series: dict[str, np.ndarray], *, rate_hz: float) -> None:
    """An NWB file with one TwoPhotonSeries per entry of ``series`` ((T, y, x) frames, stored (T, x, y) as NWB wants)."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ophys import OpticalChannel, TwoPhotonSeries

    nwbfile = NWBFile(session_description="test", identifier=path.stem, session_start_time=dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc))
    device = nwbfile.create_device(name="Microscope")
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane", optical_channel=OpticalChannel(name="green", description="green", emission_lambda=510.0), description="plane", device=device,
        excitation_lambda=920.0, imaging_rate=rate_hz, indicator="GCaMP6f", location="V1",
    )
    for name, frames in series.items():
        data = frames.transpose(0, 2, 1) if frames.ndim == 3 else frames
        nwbfile.add_acquisition(TwoPhotonSeries(name=name, data=data, imaging_plane=plane, rate=rate_hz, unit="n.a."))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


@pytest.fixture(scope="module")
def single_plane(tmp_path_factory: pytest.TempPathFactory, client: Any) -> tuple[Path, np.ndarray, RecordingStore]:
    """A simulated 1-plane recording (TIFFs + JSON), its frames, and its TIFF ingest."""
    from cindra_dask.simulate import SimulationParameters, write_recording

    root = tmp_path_factory.mktemp("single_plane")
    parameters = SimulationParameters(frame_height=SIM_HEIGHT, frame_width=SIM_WIDTH, frame_count=60, cell_count=4, non_cell_count=1, cell_diameter_px=8.0, file_count=3, frame_rate_hz=15.0, seed=8)
    folder = write_recording(parameters, root / "session")
    frames = np.concatenate([tifffile.imread(path) for path in sorted(folder.glob("recording_*.tif"))])
    store = RecordingStore(run_single_recording(single_configuration(folder, root / "out_tiff", registration={"batch_size": 7}), client=client, phases=["ingest"]).store_path)
    return folder, frames, store


def test_nwb_movies_ingest_like_the_tiffs_with_the_rate_from_the_series(tmp_path: Path, single_plane: tuple[Path, np.ndarray, RecordingStore], client: Any) -> None:
    _, frames, from_tiff = single_plane
    data = tmp_path / "nwb" / "session"
    data.mkdir(parents=True)
    write_nwb(data / "part_1.nwb", {"TwoPhotonSeries": frames[:25]}, rate_hz=15.0)
    write_nwb(data / "part_2.nwb", {"TwoPhotonSeries": frames[25:]}, rate_hz=15.0)
    store = RecordingStore(run_single_recording(single_configuration(data, tmp_path / "out", registration={"batch_size": 7}), client=client, phases=["ingest"]).store_path)
    assert store.read(frames_path(0, 0)).tobytes() == from_tiff.read(frames_path(0, 0)).tobytes()
    attributes = store.attributes()
    assert attributes["input_format"] == "nwb" and attributes["hdf5_files"] == ["part_1.nwb", "part_2.nwb"] and attributes["hdf5_dataset"] == "acquisition/TwoPhotonSeries/data"
    assert attributes["acquisition"] == from_tiff.attributes()["acquisition"] == AcquisitionParameters(frame_rate=15.0, plane_number=1, channel_number=1).model_dump(mode="json")
    assert attributes["acquisition_source"]["kind"] == "nwb" and attributes["acquisition_source"]["read"]["series"] == "TwoPhotonSeries"


def test_nwb_series_chosen_by_name(tmp_path: Path, single_plane: tuple[Path, np.ndarray, RecordingStore]) -> None:
    from cindra_dask.io.nwb import inspect_nwb
    from cindra_dask.io.tiff import build_ingest_plan, read_plane_frames

    _, frames, _ = single_plane
    path = tmp_path / "two.nwb"
    write_nwb(path, {"Raw": frames, "Denoised": (frames // 2).astype(frames.dtype)}, rate_hz=15.0)
    from cindra_dask.errors import InputError

    with pytest.raises(InputError, match=r"2 TwoPhotonSeries \(Denoised, Raw\); set file_io.nwb_series"):
        inspect_nwb(path, series=None)
    movie = inspect_nwb(path, series="Denoised")
    assert movie.info.dataset == "acquisition/Denoised/data" and movie.info.frame_axes == "txy" and movie.info.page_shape == (SIM_HEIGHT, SIM_WIDTH) and movie.rate_hz == 15.0
    from cindra_dask.io.nwb import NWB_READER

    plan = build_ingest_plan([movie.info], AcquisitionParameters(frame_rate=15.0, plane_number=1, channel_number=1), chunk_frames=8, reader=NWB_READER)
    np.testing.assert_array_equal(read_plane_frames(plan, plane=plan.virtual_planes[0], channel=0, frame_start=3, frame_stop=19), frames[3:19] // 2)


def test_zarr_movies_ingest_like_the_tiffs(tmp_path: Path, simulated_pages: tuple[Path, np.ndarray], client: Any) -> None:
    import zarr

    tiffs, pages = simulated_pages
    data = tmp_path / "zarr" / "session"
    data.mkdir(parents=True)
    root_array = zarr.create_array(store=str(data / "movie_1.zarr"), shape=(37, SIM_HEIGHT, SIM_WIDTH), chunks=(5, 16, SIM_WIDTH), dtype=pages.dtype)
    root_array[:] = pages[:37]  # a store that is the array; 37 pages: a volume split between stores
    group = zarr.open_group(str(data / "movie_2.zarr"), mode="w")
    group.create_array("data", shape=(len(pages) - 37, SIM_HEIGHT, SIM_WIDTH), chunks=(7, SIM_HEIGHT, 12), dtype=pages.dtype)[:] = pages[37:]
    shutil.copy(tiffs / "cindra_parameters.json", data)
    from_tiff = RecordingStore(run_single_recording(single_configuration(tiffs, tmp_path / "out_tiff", main={"two_channels": True}, registration={"batch_size": 5}), client=client, phases=["ingest"]).store_path)
    from_zarr = RecordingStore(run_single_recording(single_configuration(data, tmp_path / "out_zarr", main={"two_channels": True}, registration={"batch_size": 5}), client=client, phases=["ingest"]).store_path)
    assert from_zarr.array_paths() == from_tiff.array_paths()
    for path in (path for path in from_tiff.array_paths() if "/raw/" in path):
        assert from_zarr.read(path).tobytes() == from_tiff.read(path).tobytes()
    attributes = from_zarr.attributes()
    assert attributes["input_format"] == "zarr" and attributes["zarr_files"] == ["movie_1.zarr", "movie_2.zarr"] and attributes["zarr_dataset"] == ""
    assert "hdf5_files" not in attributes and "tiff_files" not in attributes


# -- bad input: one line naming the file and what to do, nothing written ----------------------------


def _scanimage_pages_not_divisible(root: Path) -> tuple[Path, str]:
    data = root / "data"
    write_scanimage_recording(data, _pages(3 * 50 + 2, 3), file_page_counts=(80, 72), frame_data=SCANIMAGE_CASES["multi_plane"]["frame_data"])
    return _config(root, data), (
        f"{data}: 152 pages in 2 files is not a multiple of plane_number × channel_number = 3 (2 pages left over); check plane_number/channel_number in "
        f"the ScanImage header (SI 2016+, Software/Artist tags) of {data / 'file_00001.tif'} or remove incomplete files"
    )


def _scanimage_slow_stack(root: Path) -> tuple[Path, str]:
    data = root / "data"
    write_scanimage_recording(data, _pages(150, 3), file_page_counts=(150,), frame_data=si2016_frame_data(scan_frame_rate=30.0, slices=5, flyback=0, saved_channels=(1,), mroi=False, fast_z=False))
    return _config(root, data), "file_00001.tif: ScanImage header (SI 2016+): SI.hStackManager.numSlices is 5 without fast z: a slow stack"


def _scanimage_mroi_does_not_fill_the_page(root: Path) -> tuple[Path, str]:
    data = root / "data"
    strips = [{**strip, "pixels": [WIDTH, 11]} for strip in MROI_STRIPS]
    write_scanimage_recording(data, _pages(100, 3), file_page_counts=(100,), frame_data=SCANIMAGE_CASES["mroi"]["frame_data"], artist=roi_groups(strips))
    return _config(root, data), "the 3 RoiGroups regions of [11, 11, 11] lines and 2 equal fly-to gaps do not fill the 40-row pages"


def _scanimage_files_disagree(root: Path) -> tuple[Path, str]:
    """A file of another session (15 Hz) copied into a 30-Hz recording's folder: every file's header is read."""
    data, other = root / "data", root / "other_session"
    write_scanimage_recording(data, _pages(120, 3), file_page_counts=(60, 60), frame_data=si2016_frame_data(scan_frame_rate=30.0, slices=1, flyback=0, saved_channels=(1,), mroi=False))
    write_scanimage_recording(other, _pages(120, 4), file_page_counts=(60, 60), frame_data=si2016_frame_data(scan_frame_rate=15.0, slices=1, flyback=0, saved_channels=(1,), mroi=False))
    (other / "file_00002.tif").replace(data / "file_00002.tif")
    return _config(root, data), (
        "file_00002.tif: its ScanImage header gives frame_rate 15.0, file_00001.tif's 30.0; the files of one recording share their acquisition:"
        " move it to its own recording folder (or add 'file_00002' to file_io.ignored_file_names)"
    )


def _bruker_missing_files(root: Path) -> tuple[Path, str]:
    data = root / "data"
    names = write_bruker_folder(data, _pages(2 * 60, 4), planes=2, channels=1, frame_period_s=0.05)
    for name in names[7:9]:
        (data / name).unlink()
    return _config(root, data), f"TSeries-12012025-1200-001.xml: 2 of the 120 TIFF files it names are missing from {data} ({names[7]}, {names[8]}); copy them beside the XML"


def _nwb_wrong_rank(root: Path) -> tuple[Path, str]:
    data = root / "data"
    data.mkdir()
    write_nwb(data / "volume.nwb", {"Volume": np.zeros((60, 12, 14, 3), np.int16)}, rate_hz=10.0)
    return _config(root, data), "volume.nwb: TwoPhotonSeries 'Volume' data has shape (60, 12, 14, 3) (4-D); expected a 3-D (frames, x, y) movie, one series per plane"


def _zarr_wrong_rank(root: Path) -> tuple[Path, str]:
    import zarr

    data = root / "data"
    data.mkdir()
    zarr.open_group(str(data / "movie.zarr"), mode="w").create_array("data", shape=(120, 12), dtype="i2")
    (data / "cindra_parameters.json").write_text(json.dumps({"frame_rate": 30.0, "plane_number": 1, "channel_number": 1}))
    return _config(root, data), "movie.zarr: array 'data' has shape (120, 12) (2-D); expected a 3-D (frames, height, width) movie"


def _hdf5_wrong_rank(root: Path) -> tuple[Path, str]:
    import h5py

    data = root / "data"
    data.mkdir()
    with h5py.File(data / "movie.h5", "w") as handle:
        handle.create_dataset("data", data=np.zeros((120, 12, 14, 2), np.int16))
    (data / "cindra_parameters.json").write_text(json.dumps({"frame_rate": 30.0, "plane_number": 1, "channel_number": 1}))
    return _config(root, data), "movie.h5: dataset 'data' has shape (120, 12, 14, 2) (4-D); expected a 3-D (frames, height, width) movie"


def _not_scanimage(root: Path) -> tuple[Path, str]:
    data = root / "data"
    write_tiff_recording(data, _pages(120, 5), file_page_counts=(120,), acquisition={"frame_rate": 30.0, "plane_number": 1, "channel_number": 1})
    return _config(root, data, file_io={"input_format": "scanimage"}), "recording_1.tif: no ScanImage header (file_io.input_format is 'scanimage'); set file_io.input_format to 'tiff'"


CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    function.__name__.strip("_"): function
    for function in (_scanimage_pages_not_divisible, _scanimage_slow_stack, _scanimage_files_disagree, _scanimage_mroi_does_not_fill_the_page, _bruker_missing_files, _nwb_wrong_rank, _zarr_wrong_rank, _hdf5_wrong_rank, _not_scanimage)
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_acquisition_input_gives_one_clear_line_and_writes_nothing(tmp_path: Path, case: str, command: str) -> None:
    config_path, expected = CASES[case](tmp_path)
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, [command, str(config_path)])
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0], result.output
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before
