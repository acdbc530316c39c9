"""HTML QC report: one self-contained file, one outline per ROI, right counts, decodable PNGs."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cindra_dask.errors import OutputError
from cindra_dask.runner.maintenance import reset_store
from cindra_dask.export.report import axis_ticks, decimate, encode_png, roi_outline_path, to_uint8, write_report
from cindra_dask.rois import RaggedRois
from cindra_dask.store import RecordingStore
from tests.test_manifest import FRAMES, HEIGHT, PLANES, WIDTH, SyntheticStore, write_synthetic_store

PNG_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticStore, str]:
    synthetic = write_synthetic_store(tmp_path_factory.mktemp("report"))
    store = RecordingStore(synthetic.path)
    rois = RaggedRois.from_masks([(np.array([1, 1]), np.array([2, 3]), np.ones(2)), (np.array([5]), np.array([5]), np.ones(1)), (np.array([9]), np.array([9]), np.ones(1))])
    store.write_rois("multi_recording/day_pair/rois", rois, track_id=np.array([4, -1, 7]), track_confidence=np.array([0.9, 0.0, 0.8], np.float32))
    store.write_rois("multi_recording/day_pair/templates", rois.select(np.array([0, 2])), template_track_id=np.array([4, 7]), recording_count=np.array([2, 1]))
    import zarr

    zarr.open_group(str(store.path / "multi_recording/day_pair"), mode="r+").attrs.update(recording_names=["day1", "day2"], recording_paths=[str(store.path), str(store.path.parent / "day2.zarr")])
    for plane in range(PLANES):
        count = synthetic.rois[plane].count
        store.write_array(f"plane_{plane}/extraction/delta_f_over_f", (0.1 * np.arange(count)[:, None] + np.sin(np.arange(FRAMES) / 5.0)[None]).astype(np.float32))
    path = write_report(synthetic.path)
    return synthetic, path.read_text()


def _effective_fill(element: str, style: str) -> str | None:
    """The fill a browser gives an SVG ``<text>`` element: its inline style, else the last simple CSS
    rule (``.a``, ``text.a``) of the stylesheet matching its classes, else its fill attribute."""
    inline = re.search(r'style="[^"]*fill:\s*([^;"]+)', element)
    if inline:
        return inline.group(1).strip()
    classes = set((re.search(r'class="([^"]*)"', element) or re.search("()", "")).group(1).split())
    fill = None
    for selectors, declarations in re.findall(r"([^{}]+)\{([^}]*)\}", style):
        declared = re.search(r"(?:^|;)\s*fill:\s*([^;]+)", declarations)
        for selector in selectors.split(","):
            selector = selector.strip()
            if declared and re.fullmatch(r"(text)?(\.[\w-]+)+", selector) and set(selector.split(".")[1:]) <= classes:
                fill = declared.group(1).strip()
    if fill is not None:
        return fill
    attribute = re.search(r' fill="([^"]+)"', element)
    return attribute.group(1) if attribute else None


def _decode(payload: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))


def test_report_is_one_file_beside_the_store_with_no_external_resources(report: tuple[SyntheticStore, str]) -> None:
    synthetic, text = report
    assert (synthetic.path.parent / "synthetic_report.html").is_file()
    assert text.startswith("<!DOCTYPE html>")
    for forbidden in ("http://", "https://", "<script", "<link", "url(", "@import", "<iframe"):
        assert forbidden not in text, forbidden
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)


def test_one_outline_per_roi_coloured_by_class(report: tuple[SyntheticStore, str]) -> None:
    synthetic, text = report
    for plane in range(PLANES):
        for image in ("mean_image", "enhanced_mean_image"):
            figure = re.search(rf'<svg class="roi-image" data-plane="{plane}" data-image="{image}".*?</svg>', text, re.S)
            assert figure is not None
            paths = re.findall(r'<path class="roi ([a-z-]+)" data-roi="(\d+)" d="([^"]+)"', figure.group(0))
            assert sorted(int(index) for _, index, _ in paths) == list(range(synthetic.rois[plane].count))
            kinds = {int(index): kind for kind, index, _ in paths}
            assert [kinds[index] == "cell" for index in range(len(kinds))] == synthetic.is_cell[plane].tolist()
            assert all(kinds[index] == "non-cell" for index in np.flatnonzero(~synthetic.is_cell[plane]))


def test_counts_timings_and_registration_plots(report: tuple[SyntheticStore, str]) -> None:
    synthetic, text = report
    for plane in range(PLANES):
        assert f'<td id="plane-{plane}-rois">{synthetic.rois[plane].count}</td>' in text
        assert f'<td id="plane-{plane}-cells">{int(synthetic.is_cell[plane].sum())}</td>' in text
    assert '<td id="total-rois">9</td>' in text and '<td id="total-cells">6</td>' in text
    for key in ("ingest", "registration/plane_0", "detection/plane_1", "extraction/plane_1", "combine"):
        assert f"<td>{key}</td><td>complete</td>" in text
    offsets = re.search(r'<polyline class="series" data-label="dy \(rows\)"[^>]*points="([^"]+)"', text)
    assert offsets is not None and len(offsets.group(1).split()) == FRAMES  # one point per frame (short recording)
    assert text.count('class="mark"') == 2 * 2 * PLANES  # two bad frames marked on two charts per plane
    assert "pc_shift_metrics" in text and text.count("<tr><td>0</td><td>0.500</td>") == PLANES
    assert text.count('class="chart trace"') == sum(min(6, rois.count) for rois in synthetic.rois)
    assert '(total <span id="combined-rois">9</span>)' in text


def test_multi_recording_section_counts_tracks_and_templates(report: tuple[SyntheticStore, str]) -> None:
    _, text = report
    assert "<h3>day_pair</h3>" in text
    assert '<td id="mr-day_pair-rois">3</td>' in text and '<td id="mr-day_pair-tracks">2</td>' in text and '<td id="mr-day_pair-templates">2</td>' in text
    assert "<td>templates by number of recordings they span</td><td>1: 1, 2: 1</td>" in text
    assert '<td>day1 (this recording)</td><td>3</td><td>2</td><td id="mr-day_pair-recording-0-templates">2</td>' in text
    assert "<td>day2</td><td>not reachable</td>" in text


def test_embedded_pngs_decode_to_the_images(report: tuple[SyntheticStore, str]) -> None:
    synthetic, text = report
    store = RecordingStore(synthetic.path)
    payloads = PNG_URI.findall(text)
    assert len(payloads) == PLANES * (4 + 2 * 2)  # four detection images and two PC pairs per plane
    first = _decode(payloads[0])
    assert first.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(first, to_uint8(store.read("plane_0/detection/mean_image")))
    for payload in payloads:
        assert _decode(payload).shape in ((HEIGHT, WIDTH), (HEIGHT - 6, WIDTH - 6))


def test_png_encoder_round_trips_grey_and_rgb() -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (7, 13), dtype=np.uint8)
    rgb = rng.integers(0, 256, (5, 3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(grey)))), grey)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgb)))), rgb)
    with pytest.raises(ValueError):
        encode_png(np.zeros((0, 4), np.uint8))


def test_outline_encloses_exactly_the_roi_pixels() -> None:
    yy, xx = np.mgrid[10:14, 20:23]
    path = roi_outline_path(yy.ravel(), xx.ravel())
    points = np.array([[float(value) for value in point.split(",")] for point in re.findall(r"-?\d+\.\d,-?\d+\.\d", path)])
    assert path.count("M") == 1 and path.endswith("Z")
    assert points[:, 0].min() >= 20 and points[:, 0].max() <= 23 and points[:, 1].min() >= 10 and points[:, 1].max() <= 14
    assert roi_outline_path(np.zeros(0, int), np.zeros(0, int)) == ""


def test_decimation_keeps_extremes() -> None:
    values = np.sin(np.linspace(0, 40, 100_000))
    values[54_321] = 9.0
    xs, ys = decimate(values, max_points=400)
    assert len(xs) <= 400 and ys.max() == 9.0 and xs[np.argmax(ys)] == 54_321


def test_report_of_an_ingest_only_store_and_a_bad_output(tmp_path: Path, report: tuple[SyntheticStore, str]) -> None:
    synthetic, _ = report
    shutil.copytree(synthetic.path, tmp_path / "ingested.zarr")
    with pytest.warns(UserWarning, match="multi-recording dataset"):
        reset_store(tmp_path / "ingested.zarr", phase="process")  # the stale multi-recording group is only warned about
    assert (tmp_path / "ingested.zarr" / "multi_recording" / "day_pair").is_dir()
    text = write_report(tmp_path / "ingested.zarr", tmp_path / "out" / "r.html").read_text()
    assert 'data-image="raw_mean"' in text and '<td id="plane-0-rois">–</td>' in text
    with pytest.raises(OutputError, match="inside the store"):
        write_report(synthetic.path, synthetic.path / "report.html")
    with pytest.raises(OutputError, match="not a cindra-dask store"):
        write_report(tmp_path / "absent.zarr")


def test_legend_labels_take_their_series_colours(report: tuple[SyntheticStore, str]) -> None:
    """Every legend label is drawn in its series' colour (a `.legend{fill:#555}` rule made them all grey)."""
    _, text = report
    style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    charts = re.findall(r'<svg class="chart.*?</svg>', text, re.S)
    pairs = 0
    for chart in charts:
        strokes = dict(re.findall(r'<polyline class="series" data-label="([^"]*)" fill="none" stroke="([^"]+)"', chart))
        legends = re.findall(r'(<text [^>]*class="legend"[^>]*>)([^<]*)</text>', chart)
        assert [label for _, label in legends] == list(strokes)
        for element, label in legends:
            assert _effective_fill(element, style) == strokes[label], label
            pairs += 1
        assert len(set(strokes.values())) == len(strokes)  # dy/dx, F/Fneu: different colours
    sampled = [min(6, rois.count) for rois in report[0].rois]
    assert pairs == sum(2 + 1 + 2 + 2 * count + count for count in sampled)  # offsets, correlation, nonrigid; F and Fneu per ROI; dF/F


def test_roi_numbers_sit_on_their_rois(report: tuple[SyntheticStore, str]) -> None:
    synthetic, text = report
    for plane in range(PLANES):
        figure = re.search(rf'<svg class="roi-image" data-plane="{plane}" data-image="mean_image".*?</svg>', text, re.S).group(0)
        labels = re.findall(r'<text class="roi-label ([a-z-]+)" data-roi="(\d+)" x="([\d.]+)" y="([\d.]+)"[^>]*>(\d+)</text>', figure)
        assert [int(number) for *_, number in labels] == list(range(synthetic.rois[plane].count))
        for kind, index, x, y, number in labels:
            ypix, xpix, _ = synthetic.rois[plane].roi(int(number))
            assert (float(x), float(y)) == (round(float(xpix.mean()) + 0.5, 1), round(float(ypix.mean()) + 0.5, 1))
            assert kind == ("cell" if synthetic.is_cell[plane][int(number)] else "non-cell")
        plain = re.search(rf'<svg class="roi-image" data-plane="{plane}" data-image="correlation_map".*?</svg>', text, re.S).group(0)
        assert "<text class=\"roi-label" not in plain


def test_time_axes_are_in_seconds(report: tuple[SyntheticStore, str]) -> None:
    """60 frames per plane at 30 Hz over 2 planes: 15 Hz, 3.93 s; ticks every 0.5 s at their frame's x."""
    _, text = report
    chart = re.search(r'<svg class="chart".*?data-label="dy \(rows\)".*?</svg>', text, re.S).group(0)
    ticks = re.findall(r'<text x="([\d.]+)" y="\d+" text-anchor="middle" class="tick x-tick" data-value="([\d.]+)">', chart)
    assert [float(value) for _, value in ticks] == [0.5 * step for step in range(8)]
    left, plot_width = 52, 900 - 52 - 10
    for x, value in ticks:
        assert float(x) == pytest.approx(left + float(value) * 15.0 * plot_width / (FRAMES - 1), abs=0.06)
    assert 'class="tick x-unit">s</text>' in chart
    assert axis_ticks(59.0) == [(float(value), str(value)) for value in range(0, 60, 10)]
    assert axis_ticks(0.0) == [(0.0, "0")]


def test_delta_f_over_f_panel_shows_the_sampled_rois(report: tuple[SyntheticStore, str]) -> None:
    synthetic, text = report
    store = RecordingStore(synthetic.path)
    panels = re.findall(r'<svg class="chart delta-f-over-f".*?</svg>', text, re.S)
    assert len(panels) == PLANES
    for plane, panel in enumerate(panels):
        labels = re.findall(r'<polyline class="series" data-label="ROI (\d+)"[^>]*points="([^"]+)"', panel)
        assert [int(label) for label, _ in labels] == list(range(min(6, synthetic.rois[plane].count)))
        assert all(len(points.split()) == FRAMES for _, points in labels)
        values = store.read(f"plane_{plane}/extraction/delta_f_over_f")
        assert f'text-anchor="end" class="tick">{float(values.max()):.3g}</text>' in panel


def test_a_plane_without_rois_gets_a_note(tmp_path: Path, report: tuple[SyntheticStore, str]) -> None:
    synthetic, text = report
    assert 'class="note"' not in text
    shutil.copytree(synthetic.path, tmp_path / "empty.zarr")
    store = RecordingStore(tmp_path / "empty.zarr")
    store.write_rois("plane_1/rois", RaggedRois.empty())
    for name in ("cell_fluorescence", "neuropil_fluorescence", "spikes"):
        store.delete(f"plane_1/extraction/{name}")
        store.create_array(f"plane_1/extraction/{name}", shape=(0, FRAMES), dtype=np.float32, chunks=(1, FRAMES))
    store.write_array("plane_1/extraction/cell_classification", np.zeros((0, 2), np.float32))
    empty = write_report(store.path, tmp_path / "empty.html").read_text()
    assert empty.count('class="note"') == 1
    assert f'<p class="note" id="plane-1-no-rois">Detection found no ROIs in plane 1 ({FRAMES} frames).' in empty
    assert '<td id="plane-1-rois">0</td>' in empty
