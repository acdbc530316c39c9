"""The viewer (issue 23): the bokeh document's callbacks against the store (no browser), the server
behind its token, and the served app driven in a real headless Chromium (skipped without one)."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.events import ButtonClick
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.export import export_suite2p
from cindra_dask.export.curation import HISTORY_ATTRIBUTE, VIEWER_SOURCE
from cindra_dask.export.report import CELL_COLOUR, NON_CELL_COLOUR
from cindra_dask.manifest import verify_store, write_manifest
from cindra_dask.rois import RaggedRois
from cindra_dask.store import RecordingStore
from cindra_dask.view.app import Viewer, build_viewer
from cindra_dask.view.data import FrameReader
from tests.test_manifest import CHUNK_FRAMES, FRAMES, PLANES, ROI_CENTERS, SyntheticStore, _disc, write_synthetic_store

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PLANE_RATE_HZ = 15.0
"""The synthetic store's 30 Hz over 2 planes."""
CLASSIFICATION = "plane_0/extraction/cell_classification"
TRACES = {"f": "cell_fluorescence", "fneu": "neuropil_fluorescence", "dff": "delta_f_over_f", "spikes": "spikes"}
TRACKED = {"day1": {4: (6, 6), 7: (20, 30), 9: (14, 20)}, "day2": {9: (16, 22), 4: (8, 5)}}
"""Per recording, track id → centre (y, x) of its template there, in this row order (track 7 is not in day2)."""
TRACK_CONFIDENCE = {4: 0.9, 7: 0.4, 9: 0.75}


def _copy(synthetic: SyntheticStore, destination: Path) -> RecordingStore:
    shutil.copytree(synthetic.path, destination / synthetic.path.name)
    return RecordingStore(destination / synthetic.path.name)


@pytest.fixture(scope="module")
def viewer_store(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStore:
    """The synthetic store with dF/F and registered frames that differ from frame to frame (its own are all the reference)."""
    synthetic = write_synthetic_store(tmp_path_factory.mktemp("viewer"))
    store = RecordingStore(synthetic.path)
    for plane in range(PLANES):
        registered = store.array(f"plane_{plane}/registered/channel_0", mode="r+")
        registered[...] = (store.read(f"plane_{plane}/registered/channel_0") + 3 * np.arange(FRAMES)[:, None, None]).astype(np.int16)
        count = synthetic.rois[plane].count
        store.write_array(f"plane_{plane}/extraction/delta_f_over_f", (0.1 * np.arange(count)[:, None] + np.sin(np.arange(FRAMES) / 5.0)[None]).astype(np.float32))
    return synthetic


@pytest.fixture(scope="module")
def tracked_pair(viewer_store: SyntheticStore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RecordingStore]:
    """Two recordings of a multi-recording dataset ``pair`` (`TRACKED`), each with templates and their traces."""
    folder = tmp_path_factory.mktemp("tracked")
    stores = {name: _copy(viewer_store, folder / name) for name in TRACKED}
    for index, (name, store) in enumerate(stores.items()):
        tracks = list(TRACKED[name])
        group = "multi_recording/pair"
        store.write_rois(
            f"{group}/templates", RaggedRois.from_masks([_disc(TRACKED[name][track], 2) for track in tracks]),
            template_track_id=np.array(tracks, np.int64), track_confidence=np.array([TRACK_CONFIDENCE[track] for track in tracks], np.float32), recording_count=np.array([1 if track == 7 else 2 for track in tracks], np.int32),
        )
        store.write_array(f"{group}/extraction/subtracted_fluorescence", (100 * index + 10 * np.array(tracks)[:, None] + np.cos(np.arange(FRAMES) / 4.0)[None]).astype(np.float32))
        store.update_group_attributes(group, {"recording_names": list(TRACKED), "recording_paths": [str(other.path) for other in stores.values()], "recording_index": index})
    return stores


@pytest.fixture()
def private_store(viewer_store: SyntheticStore, tmp_path: Path) -> RecordingStore:
    """A copy the test may curate."""
    return _copy(viewer_store, tmp_path)


def _viewer(store: RecordingStore) -> Viewer:
    return build_viewer(Document(), store=store)


def _click(button: Any) -> None:
    button._trigger_event(ButtonClick(button))


# ---------------------------------------------------------------------------------------------
# the document, without a browser
# ---------------------------------------------------------------------------------------------


def test_outlines_are_coloured_by_class_and_probability(viewer_store: SyntheticStore) -> None:
    store = RecordingStore(viewer_store.path)
    viewer = _viewer(store)
    data = viewer.roi_source.data
    classification = store.read(CLASSIFICATION)
    assert data["roi"] == list(range(len(ROI_CENTERS)))
    assert data["colour"] == [CELL_COLOUR if cell else NON_CELL_COLOUR for cell in viewer_store.is_cell[0]]
    np.testing.assert_allclose(data["alpha"], 0.1 + 0.5 * classification[:, 1], rtol=1e-6)
    for roi, (centre_y, centre_x) in enumerate(ROI_CENTERS):  # each outline surrounds its disc (radius 3 or 2) and nothing else
        xs, ys = np.asarray(data["xs"][roi]), np.asarray(data["ys"][roi])
        radius = 3 - roi % 2
        assert xs.min() == pytest.approx(centre_x - radius + 0.5, abs=0.51) and xs.max() == pytest.approx(centre_x + radius + 0.5, abs=0.51)
        assert ys.min() == pytest.approx(centre_y - radius + 0.5, abs=0.51) and ys.max() == pytest.approx(centre_y + radius + 0.5, abs=0.51)
    np.testing.assert_array_equal(viewer.image_source.data["image"][0], store.read("plane_0/detection/mean_image"))
    viewer.image_select.value = "correlation_map"
    np.testing.assert_array_equal(viewer.image_source.data["image"][0], store.read("plane_0/detection/correlation_map"))


def test_selecting_rois_shows_the_store_traces(viewer_store: SyntheticStore) -> None:
    store = RecordingStore(viewer_store.path)
    viewer = _viewer(store)
    viewer.roi_source.selected.indices = [3, 1]  # a box selection
    data = viewer.trace_source.data
    assert data["roi"] == [1, 3]
    for column, name in TRACES.items():
        expected = store.read(f"plane_0/extraction/{name}")
        for position, roi in enumerate([1, 3]):
            np.testing.assert_array_equal(data[column][position], expected[roi])
    np.testing.assert_allclose(data["t"][0], np.arange(FRAMES) / PLANE_RATE_HZ)
    assert "ROI 1: cell, p = 0.90" in viewer.message.text and "ROI 3: cell" in viewer.message.text
    viewer.plane_select.value = "1"  # plane 1: 4 ROIs, its own traces
    assert viewer.roi_source.data["roi"] == [0, 1, 2, 3] and viewer.trace_source.data["roi"] == []
    viewer.roi_source.selected.indices = [2]
    np.testing.assert_array_equal(viewer.trace_source.data["f"][0], store.read("plane_1/extraction/cell_fluorescence")[2])


def test_filtering_by_a_statistic_hides_the_rois_outside_its_range(viewer_store: SyntheticStore) -> None:
    viewer = _viewer(RecordingStore(viewer_store.path))
    assert "skewness" in viewer.statistic_select.options and "probability" in viewer.statistic_select.options
    viewer.statistic_select.value = "skewness"  # 0.5, 0.875, 1.25, 1.625, 2.0
    assert viewer.statistic_range.value == pytest.approx((0.5, 2.0))
    viewer.statistic_range.value = (1.0, 1.7)
    assert viewer.roi_filter.booleans == [False, False, True, True, False]
    viewer.statistic_select.value = "probability"
    assert viewer.roi_filter.booleans == [True] * 5
    viewer.statistic_range.value = (0.5, 1.0)
    assert viewer.roi_filter.booleans == [bool(cell) for cell in viewer_store.is_cell[0]]


def test_marking_writes_the_store_with_history_and_export_takes_it(private_store: RecordingStore, tmp_path: Path) -> None:
    write_manifest(private_store)
    before = private_store.read(CLASSIFICATION)
    viewer = _viewer(private_store)
    viewer.roi_source.selected.indices = [2, 4]  # both not cells (p 0.2)
    _click(viewer.cell_button)
    after = private_store.read(CLASSIFICATION)
    np.testing.assert_array_equal(after[:, 1], before[:, 1])  # probabilities stay
    np.testing.assert_array_equal(after[:, 0], [1, 1, 1, 1, 1])
    (entry,) = private_store.group_attributes(CLASSIFICATION)[HISTORY_ATTRIBUTE]
    assert entry["source"] == VIEWER_SOURCE and entry["rows"] == [2, 4]
    np.testing.assert_allclose(entry["previous"], before[[2, 4]])
    assert viewer.roi_source.data["colour"][2] == CELL_COLOUR and "changed: 2, 4" in viewer.message.text
    viewer.roi_source.selected.indices = [4]
    _click(viewer.not_cell_button)
    _click(viewer.not_cell_button)  # already so: nothing written
    history = private_store.group_attributes(CLASSIFICATION)[HISTORY_ATTRIBUTE]
    assert [item["rows"] for item in history] == [[2, 4], [4]] and history[1]["previous"] == [[1.0, pytest.approx(0.2)]]
    assert verify_store(private_store) == []  # the manifest was rewritten for the changed array
    export_suite2p(private_store.path, tmp_path / "suite2p")
    np.testing.assert_array_equal(np.load(tmp_path / "suite2p" / "plane0" / "iscell.npy")[:, 0], [1, 1, 1, 1, 0])


def test_marking_while_a_run_holds_the_lock_writes_nothing(private_store: RecordingStore) -> None:
    viewer = _viewer(private_store)
    viewer.roi_source.selected.indices = [0]
    with private_store.locked():
        _click(viewer.not_cell_button)
    assert "not saved" in viewer.message.text and "locked" in viewer.message.text
    np.testing.assert_array_equal(private_store.read(CLASSIFICATION)[0], [1.0, np.float32(0.9)])
    assert HISTORY_ATTRIBUTE not in private_store.group_attributes(CLASSIFICATION)


def test_the_slider_shows_the_store_frames_and_registration_series(viewer_store: SyntheticStore) -> None:
    store = RecordingStore(viewer_store.path)
    viewer = _viewer(store)
    series = viewer.registration_source.data
    np.testing.assert_array_equal(series["dy"], store.read("plane_0/registration/rigid_offsets")[:, 0])
    np.testing.assert_array_equal(series["correlation"], store.read("plane_0/registration/rigid_correlations"))
    blocks = store.read("plane_0/registration/nonrigid_offsets")
    np.testing.assert_allclose(series["block_max"], np.hypot(blocks[..., 0], blocks[..., 1]).max(axis=1), rtol=1e-6)
    assert viewer.frame_slider.end == FRAMES - 1
    for t in (0, 40, FRAMES - 1):
        viewer.frame_slider.value = t
        for kind in ("raw", "registered"):
            np.testing.assert_array_equal(viewer.frame_sources[kind].data["image"][0], store.read(f"plane_0/{kind}/channel_0")[t])
    viewer.window_slider.value = 20  # the mean of frames 10-29, summed chunk by chunk (chunks of 16 frames)
    viewer.frame_slider.value = 10
    for kind in ("raw", "registered"):
        np.testing.assert_allclose(viewer.frame_sources[kind].data["image"][0], store.read(f"plane_0/{kind}/channel_0")[10:30].mean(axis=0), rtol=1e-6)
    viewer.window_slider.value = 1
    viewer.frame_slider.value = 40  # a planted bad frame
    assert "bad frame" in viewer.layout.select_one({"name": "frame_info"}).text
    assert "PC 1: 0.100 / 0.050 / 0.100" in viewer.layout.select_one({"name": "pc_metrics"}).text


def test_a_store_after_ingest_only_shows_its_raw_frames(private_store: RecordingStore) -> None:
    for group in ("rois", "extraction", "detection", "registration", "registered"):
        private_store.delete(f"plane_0/{group}")
    viewer = _viewer(private_store)
    assert viewer.roi_source.data["roi"] == [] and viewer.statistic_select.options == [""]
    viewer.frame_slider.value = 5
    np.testing.assert_array_equal(viewer.frame_sources["raw"].data["image"][0], private_store.read("plane_0/raw/channel_0")[5])
    assert "not in the store" in viewer.layout.select_one({"name": "registered_frame_image"}).title.text
    assert np.isnan(viewer.registration_source.data["dy"]).all()
    _click(viewer.cell_button)
    assert "Select ROIs first" in viewer.message.text


def test_frames_are_read_one_stored_chunk_at_a_time(viewer_store: SyntheticStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RecordingStore(viewer_store.path)
    movie = store.read("plane_0/registered/channel_0")
    reads: list[Any] = []
    original = store.read_selection
    monkeypatch.setattr(store, "read_selection", lambda path, selection: reads.append(selection) or original(path, selection))
    frames = FrameReader(store, plane=0)
    for t in (20, 21, 31, 32):
        np.testing.assert_array_equal(frames.frame("registered", t), movie[t])
    assert reads == [slice(16, 32), slice(32, 48)] and CHUNK_FRAMES == 16  # one chunk per chunk entered, never the movie


def test_view_refuses_a_folder_that_is_not_a_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["view", str(tmp_path), "--port", "0"])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "not a cindra-dask store" in result.output


def _surrounds(xs: Any, ys: Any, centre: tuple[int, int], *, radius: int) -> bool:
    """Whether an outline is the one around a disc of ``radius`` px at ``centre`` (y, x)."""
    xs, ys = np.asarray(xs), np.asarray(ys)
    return bool(np.allclose([xs.min(), xs.max(), ys.min(), ys.max()], [centre[1] - radius + 0.5, centre[1] + radius + 0.5, centre[0] - radius + 0.5, centre[0] + radius + 0.5], atol=0.51))


def test_the_tracking_tab_outlines_the_chosen_cell_in_every_recording(tracked_pair: dict[str, RecordingStore]) -> None:
    viewer = _viewer(tracked_pair["day1"])
    assert viewer.dataset_select.value == "pair"
    assert viewer.track_source.data["track_id"] == [4, 7, 9]
    np.testing.assert_allclose(viewer.track_source.data["confidence"], [0.9, 0.4, 0.75], rtol=1e-6)
    viewer.track_source.selected.indices = [2]  # track 9: row 2 in day1, row 0 in day2
    for name, highlight in zip(TRACKED, viewer.track_highlights):
        (xs,), (ys,) = highlight.data["xs"], highlight.data["ys"]
        assert _surrounds(xs, ys, TRACKED[name][9], radius=2)
    data = viewer.tracking_trace_source.data
    assert data["recording"] == ["day1", "day2"]
    np.testing.assert_array_equal(data["trace"][0], tracked_pair["day1"].read("multi_recording/pair/extraction/subtracted_fluorescence")[2])
    np.testing.assert_array_equal(data["trace"][1], tracked_pair["day2"].read("multi_recording/pair/extraction/subtracted_fluorescence")[0])
    np.testing.assert_allclose(data["t"][1], np.arange(FRAMES) / PLANE_RATE_HZ)
    viewer.track_source.selected.indices = [1]  # track 7: not in day2
    assert _surrounds(viewer.track_highlights[0].data["xs"][0], viewer.track_highlights[0].data["ys"][0], TRACKED["day1"][7], radius=2)
    assert viewer.track_highlights[1].data["xs"] == [] and viewer.tracking_trace_source.data["recording"] == ["day1"]
    assert "track 7: confidence 0.400; outlined in 1 of 2 recordings (day1)" in viewer.layout.select_one({"name": "tracking_info"}).text


def test_a_store_without_tracking_has_no_tracking_tab(viewer_store: SyntheticStore) -> None:
    viewer = _viewer(RecordingStore(viewer_store.path))
    assert [panel.title for panel in viewer.layout.select_one({"name": "tabs"}).tabs] == ["ROIs", "Registration"]


# ---------------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tracked_pair: dict[str, RecordingStore]) -> Iterator[tuple[str, RecordingStore]]:
    """``cindra-dask view`` of the first tracked recording, in its own process: (URL, the store)."""
    store = tracked_pair["day1"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "cindra_dask.cli", "view", str(store.path), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    output, deadline, url = "", time.monotonic() + 60, None
    while url is None and time.monotonic() < deadline and process.poll() is None:
        if select.select([process.stdout], [], [], 1.0)[0]:
            output += process.stdout.readline()  # type: ignore[union-attr]
            url = (re.search(r"(http://localhost:\d+/\S+)", output) or [None, None])[1]
    try:
        assert url is not None, output
        yield url, store
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_viewer_is_served_on_localhost_behind_its_token(served: tuple[str, RecordingStore]) -> None:
    url, _ = served
    root, token = url.rsplit("/", 1)
    assert len(token) >= 32
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200 and "cindra-dask view: synthetic.zarr" in response.read().decode()
    assert _status(root + "/") == 404  # no index page listing the token
    assert _status(root + "/" + token[:-1]) == 404


# ---------------------------------------------------------------------------------------------
# the served app in a headless Chromium
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, RecordingStore, Path]]:
    """A headless Chromium on the served page, once it has rendered: (driver, the store, screenshot folder)."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(f"no {CHROMIUM} or {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver): the viewer is not driven in a browser")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install 'selenium>=4.20,<5')")
    from selenium.webdriver.chrome.service import Service

    served: tuple[str, RecordingStore] = request.getfixturevalue("served")  # only once a browser is there

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1300"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    url, store = served
    try:
        driver.get(url)
        _wait(driver, "return window.Bokeh !== undefined && Bokeh.documents.length > 0 && Bokeh.documents[0].get_model_by_name('rois') !== null && Bokeh.documents[0].get_model_by_name('rois').data.roi.length > 0")
        yield driver, store, tmp_path_factory.mktemp("screenshots")
    finally:
        driver.quit()


def _wait(driver: Any, script: str, *, timeout_s: float = 30.0) -> Any:
    """Poll a JavaScript expression until it is truthy; its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def _wait_for(condition: Callable[[], bool], *, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


MODEL = "Bokeh.documents[0].get_model_by_name({name!r})"


def _click_at(driver: Any, name: str, *, x: float | None = None, y: float | None = None) -> None:
    """A real pointer click on the model ``name``: at data (x, y) of a plot, or the centre of a widget."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    script = f"const view = Bokeh.index.find_one({MODEL.format(name=name)}); const box = view.el.getBoundingClientRect();"
    if x is None:
        script += "return [box.left + box.width / 2, box.top + box.height / 2];"
    else:
        script += f"return [box.left + view.frame.x_scale.compute({x}), box.top + view.frame.y_scale.compute({y})];"
    left, top = driver.execute_script(script)
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(round(left)), int(round(top)))
    actions.pointer_action.click()
    actions.perform()


def _browser_column(driver: Any, source: str, column: str) -> list[list[float]]:
    return driver.execute_script(f"return Array.from({MODEL.format(name=source)}.data[{column!r}], (row) => Array.from(row));")


def test_clicking_an_roi_in_the_browser_shows_its_store_traces(browser: tuple[Any, RecordingStore, Path]) -> None:
    driver, store, screenshots = browser
    centre_y, centre_x = ROI_CENTERS[2]
    _click_at(driver, "roi_image", x=centre_x + 0.5, y=centre_y + 0.5)
    _wait(driver, f"const roi = {MODEL.format(name='traces')}.data.roi; return roi.length === 1 && roi[0] === 2;")
    for column, name in TRACES.items():
        (shown,) = _browser_column(driver, "traces", column)
        np.testing.assert_array_equal(np.asarray(shown, np.float32), store.read(f"plane_0/extraction/{name}")[2])
    driver.save_screenshot(str(screenshots / "rois.png"))


def test_marking_in_the_browser_writes_the_store(browser: tuple[Any, RecordingStore, Path]) -> None:
    driver, store, screenshots = browser
    centre_y, centre_x = ROI_CENTERS[0]  # a cell
    _click_at(driver, "roi_image", x=centre_x + 0.5, y=centre_y + 0.5)
    _wait(driver, f"const roi = {MODEL.format(name='traces')}.data.roi; return roi.length === 1 && roi[0] === 0;")
    _click_at(driver, "mark_not_cell")
    _wait_for(lambda: HISTORY_ATTRIBUTE in store.group_attributes(CLASSIFICATION))
    (entry,) = store.group_attributes(CLASSIFICATION)[HISTORY_ATTRIBUTE]
    assert entry["source"] == VIEWER_SOURCE and entry["rows"] == [0] and entry["previous"] == [[1.0, pytest.approx(0.9)]]
    assert store.read(CLASSIFICATION)[0, 0] == 0.0
    _wait(driver, f"return {MODEL.format(name='rois')}.data.colour[0] === {NON_CELL_COLOUR!r};")
    driver.save_screenshot(str(screenshots / "curated.png"))


def test_the_registration_slider_in_the_browser_shows_the_store_frame(browser: tuple[Any, RecordingStore, Path]) -> None:
    driver, store, screenshots = browser
    driver.execute_script(f"{MODEL.format(name='tabs')}.active = 1;")
    t = 37
    driver.execute_script(f"{MODEL.format(name='frame')}.value = {t};")  # what dragging the slider sends
    expected = {kind: store.read(f"plane_0/{kind}/channel_0")[t].astype(np.float32) for kind in ("raw", "registered")}
    for kind, frame in expected.items():
        _wait(driver, f"const image = {MODEL.format(name=kind + '_frame')}.data.image[0]; return image.length === {frame.size} && image[0] === {float(frame.flat[0])} && image[{frame.size - 1}] === {float(frame.flat[-1])};")
        (shown,) = _browser_column(driver, f"{kind}_frame", "image")
        np.testing.assert_array_equal(np.asarray(shown, np.float32).reshape(frame.shape), frame)
    assert json.dumps(driver.execute_script(f"return {MODEL.format(name='frame_info')}.text;")).find(f"frame {t}") >= 0
    driver.save_screenshot(str(screenshots / "registration.png"))


def test_the_tracking_tab_in_the_browser_outlines_the_cell_in_both_recordings(browser: tuple[Any, RecordingStore, Path]) -> None:
    driver, _, screenshots = browser
    driver.execute_script(f"{MODEL.format(name='tabs')}.active = 2; {MODEL.format(name='tracks')}.selected.indices = [0];")  # track 4, as a click on its row
    for index, name in enumerate(TRACKED):
        (xs,) = _wait(driver, f"const xs = {MODEL.format(name=f'tracked_highlight_{index}')}.data.xs; return xs.length === 1 && xs[0].length > 0 ? [Array.from(xs[0])] : null;")
        (ys,) = driver.execute_script(f"return [Array.from({MODEL.format(name=f'tracked_highlight_{index}')}.data.ys[0])];")
        assert _surrounds(xs, ys, TRACKED[name][4], radius=2)
    driver.save_screenshot(str(screenshots / "tracking.png"))
