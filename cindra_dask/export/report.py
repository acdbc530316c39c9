"""A self-contained HTML quality-control report of a recording store.

One HTML file, no external resources: images are base64 PNGs (encoded here with zlib, no imaging
library), plots are inline SVG polylines, ROI outlines are SVG paths over the images. Sections:
summary counts per plane with the configured vs estimated indicator tau, step timings from the phase records, per plane the mean and enhanced
mean images with numbered ROI outlines coloured by class (or a note that detection found none),
registration offsets/correlations over time (in seconds where the frame rate is known), nonrigid
block offsets, PC metrics, a sample of traces with their spikes and their dF/F; the combined ROIs
and ``multi_recording/<dataset>/`` groups when present; the configuration.

Memory stays bounded: only images, per-frame vectors and a few trace rows are read.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import struct
import zlib
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from cindra_dask.errors import OutputError
from cindra_dask.runner.status import indicator_tau_line, plane_roi_counts
from cindra_dask.store import COMBINED, DETECTION, EXTRACTION, MULTI_RECORDING, RAW, REGISTRATION, ROIS, RecordingStore, array_shape, arrays_under, frames_path, open_existing_store, plane_indices, stage_path

CELL_COLOUR = "#39d353"
NON_CELL_COLOUR = "#ff4fd8"
UNCLASSIFIED_COLOUR = "#ffd23f"
SERIES_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
IMAGE_DISPLAY_WIDTH_PX = 460
CHART_WIDTH_PX, CHART_HEIGHT_PX = 900, 170
MAX_CHART_POINTS = 1500
TRACE_SAMPLE_COUNT = 6
KNOWN_REGISTRATION_ARRAYS = {"reference_image", "rigid_offsets", "rigid_correlations", "bad_frames", "nonrigid_offsets", "nonrigid_correlations", "block_centers"}


# ---------------------------------------------------------------------------------------------
# images (pure)
# ---------------------------------------------------------------------------------------------


def encode_png(image: np.ndarray) -> bytes:
    """PNG file bytes of an 8-bit image.

    Parameters
    ----------
    image : (H, W) uint8 grey or (H, W, 3) uint8 RGB.
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected a non-empty (H, W) or (H, W, 3) image, got shape {image.shape}")
    height, width = image.shape[:2]
    colour_type = 0 if image.ndim == 2 else 2
    rows = image.reshape(height, -1)
    scanlines = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter type 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)) + chunk(b"IEND", b"")


def to_uint8(image: np.ndarray, *, low_percentile: float = 1.0, high_percentile: float = 99.0) -> np.ndarray:
    """(H, W) float image → uint8, clipped to its [low, high] percentiles (NaN → 0)."""
    values = np.nan_to_num(np.asarray(image, np.float64))
    low, high = np.percentile(values, [low_percentile, high_percentile]) if values.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    return np.round(255 * np.clip((values - low) / (high - low), 0, 1)).astype(np.uint8)


def png_data_uri(image: np.ndarray) -> str:
    """``data:image/png;base64,...`` of a float image (percentile-scaled)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(to_uint8(image))).decode("ascii")


def roi_outline_path(ypix: np.ndarray, xpix: np.ndarray) -> str:
    """SVG path data outlining an ROI's pixels (pixel (y, x) covers [x, x+1] × [y, y+1]).

    Contours at level 0.5 of the padded mask (`skimage.measure.find_contours`), one closed subpath
    per contour; "" for an empty ROI.
    """
    from skimage.measure import find_contours

    if len(ypix) == 0:
        return ""
    y0, x0 = int(np.min(ypix)) - 1, int(np.min(xpix)) - 1
    mask = np.zeros((int(np.max(ypix)) - y0 + 2, int(np.max(xpix)) - x0 + 2), np.float32)
    mask[np.asarray(ypix) - y0, np.asarray(xpix) - x0] = 1.0
    parts = []
    for contour in find_contours(mask, 0.5):
        points = " ".join(f"{x + x0 + 0.5:.1f},{y + y0 + 0.5:.1f}" for y, x in contour)
        parts.append(f"M{points}Z")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# charts (pure)
# ---------------------------------------------------------------------------------------------


def decimate(values: np.ndarray, *, max_points: int = MAX_CHART_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a min/max envelope of ``values`` with at most about ``max_points`` points."""
    values = np.asarray(values, np.float64)
    count = values.shape[0]
    if count <= max_points:
        return np.arange(count, dtype=np.float64), values
    bins = max_points // 2
    edges = np.linspace(0, count, bins + 1).astype(int)
    xs, ys = [], []
    for start, stop in zip(edges[:-1], edges[1:]):
        segment = values[start:stop]
        low, high = int(np.argmin(segment)), int(np.argmax(segment))
        for index in sorted({low, high}):
            xs.append(start + index)
            ys.append(segment[index])
    return np.asarray(xs, np.float64), np.asarray(ys, np.float64)


def _number(value: float) -> str:
    return f"{value:.3g}"


def line_chart(
    series: Sequence[tuple[str, np.ndarray]],
    *,
    title: str,
    sample_rate_hz: float | None = None,
    marks: np.ndarray | None = None,
    mark_label: str = "",
    spikes: np.ndarray | None = None,
    width: int = CHART_WIDTH_PX,
    height: int = CHART_HEIGHT_PX,
    css_class: str = "chart",
) -> str:
    """Inline SVG line chart of one or more series over their index.

    Parameters
    ----------
    series : (label, (T,) values) pairs, drawn as polylines in `SERIES_COLOURS`, each legend label in its series' colour.
    sample_rate_hz : samples per second: the x axis in seconds; None: in samples ("frame").
    marks : (T,) bool, frames drawn as faint vertical red lines (e.g. bad frames).
    spikes : (T,) non-negative amplitudes drawn as ticks rising from the bottom axis.
    """
    left, right, top, bottom = 52, 10, 22, 24
    plot_width, plot_height = width - left - right, height - top - bottom
    finite = [np.asarray(values, np.float64) for _, values in series if len(values)]
    length = max((len(values) for _, values in series), default=0)
    parts = [f'<svg class="{css_class}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">', f'<text x="{left}" y="14" class="chart-title">{html.escape(title)}</text>']
    if not finite or length == 0:
        parts.append(f'<text x="{left}" y="{top + plot_height / 2:.0f}">no data</text></svg>')
        return "".join(parts)
    stacked = np.concatenate([values[np.isfinite(values)] for values in finite]) if finite else np.zeros(1)
    low, high = (float(stacked.min()), float(stacked.max())) if stacked.size else (0.0, 1.0)
    if high <= low:
        low, high = low - 1.0, high + 1.0
    x_scale = plot_width / max(1, length - 1)

    def x_of(index: np.ndarray | float) -> Any:
        return left + np.asarray(index) * x_scale

    def y_of(value: np.ndarray | float) -> Any:
        return top + plot_height - (np.asarray(value) - low) / (high - low) * plot_height

    parts.append(f'<rect x="{left}" y="{top}" width="{plot_width}" height="{plot_height}" class="plot-area"/>')
    if marks is not None and np.any(marks):
        for index in np.flatnonzero(marks)[:2000]:
            x = float(x_of(index))
            parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_height}" class="mark"/>')
    if spikes is not None and np.any(np.asarray(spikes) > 0):
        amplitudes = np.asarray(spikes, np.float64)
        xs, ys = decimate(amplitudes)
        scale = 0.35 * plot_height / max(float(amplitudes.max()), 1e-12)
        ticks = [f"M{float(x_of(x)):.1f},{top + plot_height:.1f}v{-y * scale:.1f}" for x, y in zip(xs, ys) if y > 0]
        parts.append(f'<path class="spikes" d="{"".join(ticks)}"/>')
    legend_x = left + 8
    for position, (label, values) in enumerate(series):
        values = np.asarray(values, np.float64)
        if not len(values):
            continue
        xs, ys = decimate(np.where(np.isfinite(values), values, low))
        points = " ".join(f"{float(x_of(x)):.1f},{float(y_of(y)):.1f}" for x, y in zip(xs, ys))
        colour = SERIES_COLOURS[position % len(SERIES_COLOURS)]
        parts.append(f'<polyline class="series" data-label="{html.escape(label)}" fill="none" stroke="{colour}" stroke-width="1" points="{points}"/>')
        parts.append(f'<text x="{legend_x}" y="{top + 12}" style="fill:{colour}" class="legend">{html.escape(label)}</text>')
        legend_x += 16 + 6 * len(label)
    if marks is not None and np.any(marks) and mark_label:
        parts.append(f'<text x="{left + plot_width - 4}" y="{top + 12}" text-anchor="end" class="legend mark-label">{html.escape(mark_label)}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" class="tick">{_number(high)}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + plot_height}" text-anchor="end" class="tick">{_number(low)}</text>')
    unit = "s" if sample_rate_hz else "frame"
    for value, label in axis_ticks((length - 1) / sample_rate_hz if sample_rate_hz else length - 1):
        x = float(x_of(value * sample_rate_hz if sample_rate_hz else value))
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_height}" x2="{x:.1f}" y2="{top + plot_height + 3}" class="axis"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" class="tick x-tick" data-value="{value:g}">{label}</text>')
    parts.append(f'<text x="{left + plot_width}" y="{height - 8}" text-anchor="end" class="tick x-unit">{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def axis_ticks(span: float, *, most: int = 8) -> list[tuple[float, str]]:
    """(value, label) ticks at a 1-2-5 step from 0 to ``span`` (at most ``most`` + 1 ticks)."""
    if span <= 0:
        return [(0.0, "0")]
    magnitude = 10.0 ** np.floor(np.log10(span / most))
    step = next(factor * magnitude for factor in (1, 2, 5, 10) if span / (factor * magnitude) <= most)
    values = np.arange(0, span + step * 1e-9, step)
    return [(float(value), f"{value:.10g}") for value in np.round(values, 10)]


# ---------------------------------------------------------------------------------------------
# store access helpers
# ---------------------------------------------------------------------------------------------


def _optional(store: RecordingStore, array_path: str) -> np.ndarray | None:
    return store.read(array_path) if array_path in store else None


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(cell if isinstance(cell, _Raw) else f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class _Raw(str):
    """Table cell HTML inserted as is."""


def _cell(value: Any, *, element_id: str) -> _Raw:
    return _Raw(f'<td id="{element_id}">{html.escape(str(value))}</td>')


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------


class RoiOutline(NamedTuple):
    """What an image shows of one ROI: its class (``cell``, ``non-cell``, ``unclassified``), its
    outline (SVG path data, image px) and where its number goes (its pixels' mean, image px)."""

    kind: str
    path: str
    label_x: float
    label_y: float


ROI_LABEL_DISPLAY_PX = 9
"""Height of the ROI numbers on the displayed image (screen px)."""


def _roi_image(image: np.ndarray, *, plane: int, name: str, title: str, outlines: Sequence[RoiOutline]) -> str:
    """An SVG figure: the image as a base64 PNG with one ``<path class="roi ...">`` and one numbered ``<text class="roi-label ...">`` per ROI."""
    height, width = image.shape
    display_height = IMAGE_DISPLAY_WIDTH_PX * height / width
    order = sorted(range(len(outlines)), key=lambda index: outlines[index].kind == "cell")  # cells drawn last, on top
    paths = "".join(f'<path class="roi {outlines[index].kind}" data-roi="{index}" d="{outlines[index].path}"/>' for index in order)
    font_size = ROI_LABEL_DISPLAY_PX * width / IMAGE_DISPLAY_WIDTH_PX
    labels = "".join(
        f'<text class="roi-label {outline.kind}" data-roi="{index}" x="{outline.label_x:.1f}" y="{outline.label_y:.1f}" font-size="{font_size:.2f}">{index}</text>'
        for index, outline in enumerate(outlines)
    )
    return (
        f'<figure class="image"><figcaption>{html.escape(title)}</figcaption>'
        f'<svg class="roi-image" data-plane="{plane}" data-image="{name}" width="{IMAGE_DISPLAY_WIDTH_PX}" height="{display_height:.0f}" viewBox="0 0 {width} {height}">'
        f'<image href="{png_data_uri(image)}" x="0" y="0" width="{width}" height="{height}" preserveAspectRatio="none"/>'
        f'<g class="outlines">{paths}</g><g class="roi-labels">{labels}</g></svg></figure>'
    )


def _plane_counts(store: RecordingStore, plane: int) -> dict[str, Any]:
    roi_count, cell_count = plane_roi_counts(store, plane)
    bad = _optional(store, f"{stage_path(plane, REGISTRATION)}/bad_frames")
    frames = None
    for kind in (RAW, "registered"):
        if frames_path(plane, 0, kind=kind) in store:  # type: ignore[arg-type]
            frames = array_shape(store, frames_path(plane, 0, kind=kind))  # type: ignore[arg-type]
            break
    registration = store.group_attributes(stage_path(plane, REGISTRATION))
    return {
        "frames": frames[0] if frames else None,
        "frame_shape": f"{frames[1]}×{frames[2]}" if frames else "",
        "rois": roi_count,
        "cells": cell_count,
        "bad_frames": int(np.count_nonzero(bad)) if bad is not None else None,
        "valid": f"y {registration.get('valid_y_range', '')} x {registration.get('valid_x_range', '')}" if registration.get("valid_y_range") is not None else "",
    }


def _dash(value: Any) -> Any:
    return "–" if value is None else value


def _summary_section(store: RecordingStore, planes: Sequence[int]) -> str:
    rows, total_rois, total_cells = [], 0, 0
    for plane in planes:
        counts = _plane_counts(store, plane)
        total_rois += counts["rois"] or 0
        total_cells += counts["cells"] or 0
        rows.append([
            f"plane {plane}",
            _dash(counts["frames"]),
            counts["frame_shape"],
            _cell(_dash(counts["rois"]), element_id=f"plane-{plane}-rois"),
            _cell(_dash(counts["cells"]), element_id=f"plane-{plane}-cells"),
            _dash(counts["bad_frames"]),
            counts["valid"],
        ])
    rows.append(["all planes", "", "", _cell(total_rois, element_id="total-rois"), _cell(total_cells, element_id="total-cells"), "", ""])
    taus = [(plane, line) for plane in planes if (line := indicator_tau_line(store, plane)) is not None]
    tau_lines = "".join(f'<p class="indicator-tau" id="plane-{plane}-indicator-tau">plane {plane}: {html.escape(line)}</p>' for plane, line in taus)
    return "<section><h2>Summary</h2>" + _table(["plane", "frames", "frame (px)", "ROIs", "cells", "bad frames", "valid crop"], rows, css_class="summary") + tau_lines + "</section>"


def _timings_section(store: RecordingStore) -> str:
    records = store.phase_records()
    if not records:
        return "<section><h2>Steps</h2><p>No phase records (nothing has run).</p></section>"
    longest = max((record.duration_s or 0.0 for record in records.values()), default=0.0) or 1.0
    rows = []
    for key, record in records.items():
        duration = record.duration_s
        bar = _Raw(f'<td><div class="bar" style="width:{200 * (duration or 0) / longest:.0f}px"></div></td>')
        rows.append([key, record.status, "–" if duration is None else f"{duration:.2f}", bar, record.finished or "", ", ".join(f"{name} {version}" for name, version in sorted(record.versions.items()) if name in ("cindra_dask", "dask", "zarr"))])
    total = sum(record.duration_s or 0.0 for record in records.values() if record.complete)
    return f'<section><h2>Steps</h2><p>Total of complete steps: <span id="total-duration">{total:.2f}</span> s.</p>' + _table(["step", "status", "duration (s)", "", "finished", "versions"], rows, css_class="timings") + "</section>"


def _outlines(store: RecordingStore, plane: int) -> list[RoiOutline]:
    group = stage_path(plane, ROIS)
    if f"{group}/pixel_offsets" not in store:
        return []
    rois = store.read_rois(group)
    classification = _optional(store, f"{stage_path(plane, EXTRACTION)}/cell_classification")
    outlines = []
    for index in range(rois.count):
        ypix, xpix, _ = rois.roi(index)
        if classification is not None and classification.shape[0] == rois.count:
            kind = "cell" if classification[index, 0] > 0.5 else "non-cell"
        else:
            kind = "unclassified"
        centre_x, centre_y = (float(np.mean(xpix)) + 0.5, float(np.mean(ypix)) + 0.5) if len(ypix) else (0.0, 0.0)
        outlines.append(RoiOutline(kind, roi_outline_path(ypix, xpix), centre_x, centre_y))
    return outlines


def _images_block(store: RecordingStore, plane: int) -> str:
    detection = stage_path(plane, DETECTION)
    outlines = _outlines(store, plane)
    figures = []
    for name, title in (("mean_image", "mean image"), ("enhanced_mean_image", "enhanced mean image")):
        image = _optional(store, f"{detection}/{name}")
        if image is not None:
            figures.append(_roi_image(image, plane=plane, name=name, title=f"{title} with {len(outlines)} ROI outlines", outlines=outlines))
    for name, title in (("maximum_projection", "maximum projection"), ("correlation_map", "correlation map")):
        image = _optional(store, f"{detection}/{name}")
        if image is not None:
            figures.append(_roi_image(image, plane=plane, name=name, title=title, outlines=()))
    if not figures:
        raw = frames_path(plane, 0)
        reference = _optional(store, f"{stage_path(plane, REGISTRATION)}/reference_image")
        if reference is not None:
            figures.append(_roi_image(reference, plane=plane, name="reference_image", title="registration reference image", outlines=()))
        elif raw in store:
            array = store.array(raw)
            first = store.read_selection(raw, slice(0, min(array.shape[0], array.chunks[0]))).astype(np.float32).mean(axis=0)
            figures.append(_roi_image(first, plane=plane, name="raw_mean", title=f"mean of the first {min(array.shape[0], array.chunks[0])} raw frames", outlines=()))
    if not figures:
        return ""
    note = ""
    if f"{stage_path(plane, ROIS)}/pixel_offsets" in store and not outlines:
        frames = _plane_counts(store, plane)["frames"]
        note = (
            f'<p class="note" id="plane-{plane}-no-rois">Detection found no ROIs in plane {plane} ({_dash(frames)} frames). Check that the mean image shows cells; '
            "then try main.tau set to the indicator's decay time, a lower roi_detection.threshold_scaling (finds more), or a longer recording.</p>"
        )
    legend = (
        f'<p class="legend-row"><span class="swatch" style="background:{CELL_COLOUR}"></span>cell '
        f'<span class="swatch" style="background:{NON_CELL_COLOUR}"></span>not a cell '
        f'<span class="swatch" style="background:{UNCLASSIFIED_COLOUR}"></span>unclassified</p>'
    )
    return "<h3>Images</h3>" + note + (legend if outlines else "") + '<div class="images">' + "".join(figures) + "</div>"


def plane_rate_hz(store: RecordingStore) -> float | None:
    """Frames per second of one plane (the acquisition's volume rate / planes); None when not recorded."""
    acquisition = store.attributes().get("acquisition") or {}
    if not acquisition.get("frame_rate") or not acquisition.get("plane_number"):
        return None
    return float(acquisition["frame_rate"]) / int(acquisition["plane_number"])


def _registration_block(store: RecordingStore, plane: int) -> str:
    group = stage_path(plane, REGISTRATION)
    if not (store.path / group).is_dir():
        return ""
    rate = plane_rate_hz(store)
    parts = ["<h3>Registration</h3>"]
    bad = _optional(store, f"{group}/bad_frames")
    bad = bad.astype(bool) if bad is not None else None
    offsets = _optional(store, f"{group}/rigid_offsets")
    if offsets is not None and offsets.ndim == 2:
        parts.append(line_chart([("dy (rows)", offsets[:, 0]), ("dx (columns)", offsets[:, 1])], title="rigid offsets (px): frame t shows the reference moved by (+dy, +dx)", sample_rate_hz=rate, marks=bad, mark_label="bad frames"))
    correlations = _optional(store, f"{group}/rigid_correlations")
    if correlations is not None:
        parts.append(line_chart([("correlation", correlations)], title="rigid phase-correlation peak", sample_rate_hz=rate, marks=bad, mark_label="bad frames"))
    nonrigid = _optional(store, f"{group}/nonrigid_offsets")
    if nonrigid is not None and nonrigid.ndim == 3 and nonrigid.shape[1]:
        magnitude = np.hypot(nonrigid[..., 0], nonrigid[..., 1])
        parts.append(line_chart([("mean |block offset|", magnitude.mean(axis=1)), ("max |block offset|", magnitude.max(axis=1))], title=f"nonrigid block offsets relative to rigid (px), {nonrigid.shape[1]} blocks", sample_rate_hz=rate))
    attributes = store.group_attributes(group)
    if attributes:
        parts.append("<h4>Registration attributes</h4>" + _table(["name", "value"], [[name, json.dumps(value)[:200]] for name, value in sorted(attributes.items())], css_class="attributes"))
    parts.append(_pc_metrics_block(store, group))
    return "".join(parts)


def _pc_metrics_block(store: RecordingStore, group: str) -> str:
    """Principal-component metrics: every array under registration that is not a per-frame basic output."""
    extra = [path for path in arrays_under(store, group) if path[len(group) + 1 :] not in KNOWN_REGISTRATION_ARRAYS]
    if not extra:
        return ""
    parts = ['<h4>PC metrics and other registration outputs</h4><div class="pc-metrics">']
    for path in extra:
        name = path[len(group) + 1 :]
        shape = array_shape(store, path)
        if len(shape) == 2 and shape[1] == 3 and shape[0] <= 50:
            values = store.read(path)
            rows = [[index, *(f"{value:.3f}" for value in row)] for index, row in enumerate(values)]
            parts.append(f"<p>{html.escape(name)} (px per principal component):</p>" + _table(["PC", "rigid", "mean nonrigid", "max nonrigid"], rows, css_class="pc-table"))
        elif len(shape) <= 2 and 0 < np.prod(shape) <= 12:
            parts.append(f"<p>{html.escape(name)}: {html.escape(np.array2string(store.read(path), precision=3))}</p>")
        else:
            parts.append(f"<p>{html.escape(name)}: shape {shape}</p>")
    parts.append("</div>")
    low, high = f"{group}/pc_low_images", f"{group}/pc_high_images"
    if low in store and high in store and len(array_shape(store, low)) == 3:
        low_images, high_images = store.read(low), store.read(high)
        figures = []
        for component in range(min(len(low_images), len(high_images), 5)):
            for label, image in (("low", low_images[component]), ("high", high_images[component])):
                figures.append(f'<figure class="pc"><figcaption>PC {component} {label}</figcaption><img class="pc-image" alt="PC {component} {label}" src="{png_data_uri(image)}"></figure>')
        parts.append("<p>Mean of the frames with the lowest and highest projection on each principal component; residual motion shows as a shift between them.</p>")
        parts.append('<div class="images">' + "".join(figures) + "</div>")
    return "".join(parts)


def _traces_block(store: RecordingStore, plane: int) -> str:
    group = stage_path(plane, EXTRACTION)
    if f"{group}/cell_fluorescence" not in store:
        return ""
    fluorescence = store.array(f"{group}/cell_fluorescence")
    count = fluorescence.shape[0]
    if count == 0:
        return "<h3>Traces</h3><p>No ROIs.</p>"
    classification = _optional(store, f"{group}/cell_classification")
    if classification is not None and classification.shape[0] == count:
        order = np.lexsort((-classification[:, 1], ~(classification[:, 0] > 0.5)))  # cells first, most probable first
    else:
        order = np.arange(count)
    sample = sorted(int(index) for index in order[:TRACE_SAMPLE_COUNT])
    rate = plane_rate_hz(store)
    charts = []
    for index in sample:
        series = [("F", store.read_selection(f"{group}/cell_fluorescence", index))]
        if f"{group}/neuropil_fluorescence" in store:
            series.append(("Fneu", store.read_selection(f"{group}/neuropil_fluorescence", index)))
        label = ""
        if classification is not None and classification.shape[0] == count:
            label = f" — {'cell' if classification[index, 0] > 0.5 else 'not a cell'}, p = {classification[index, 1]:.2f}"
        spikes = store.read_selection(f"{group}/spikes", index) if f"{group}/spikes" in store else None
        charts.append(line_chart(series, title=f"ROI {index}{label}; ticks: deconvolved spikes", sample_rate_hz=rate, spikes=spikes, height=140, css_class="chart trace"))
    if f"{group}/delta_f_over_f" in store:
        series = [(f"ROI {index}", store.read_selection(f"{group}/delta_f_over_f", index)) for index in sample]
        charts.append(line_chart(series, title="dF/F of the sampled ROIs: (F − c·Fneu − F0) / F0", sample_rate_hz=rate, css_class="chart delta-f-over-f"))
    return f"<h3>Traces (sample of {len(sample)} of {count} ROIs, cells first)</h3>" + "".join(charts)


def _plane_section(store: RecordingStore, plane: int) -> str:
    blocks = [_images_block(store, plane), _registration_block(store, plane), _traces_block(store, plane)]
    return f'<section class="plane" id="plane-{plane}"><h2>Plane {plane}</h2>' + "".join(blocks) + "</section>"


def _combined_section(store: RecordingStore) -> str:
    if not (store.path / COMBINED).is_dir():
        return ""
    arrays = arrays_under(store, COMBINED)
    rows = [[path, str(array_shape(store, path))] for path in arrays]
    plane_index = _optional(store, f"{COMBINED}/rois/plane_index")
    counts = ""
    if plane_index is not None:
        planes, per_plane = np.unique(plane_index, return_counts=True)
        counts = "<p>ROIs per plane: " + ", ".join(f"plane {plane}: {count}" for plane, count in zip(planes, per_plane)) + f' (total <span id="combined-rois">{plane_index.size}</span>)</p>'
    return "<section><h2>Combined planes</h2>" + counts + _table(["array", "shape"], rows, css_class="arrays") + "</section>"


def _multi_recording_section(store: RecordingStore) -> str:
    root = store.path / MULTI_RECORDING
    if not root.is_dir():
        return ""
    datasets = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    parts = ["<section><h2>Multi-recording datasets</h2>"]
    for dataset in datasets:
        group = f"{MULTI_RECORDING}/{dataset}"
        track_ids = _optional(store, f"{group}/rois/track_id")
        rows = []
        if f"{group}/rois/pixel_offsets" in store:
            rows.append(["selected ROIs", _cell(array_shape(store, f"{group}/rois/pixel_offsets")[0] - 1, element_id=f"mr-{dataset}-rois")])
        if track_ids is not None:
            tracked = track_ids[track_ids >= 0]
            rows.append(["tracked ROIs", int(tracked.size)])
            rows.append(["untracked ROIs (track_id −1)", int(np.count_nonzero(track_ids < 0))])
            rows.append(["distinct track ids", _cell(int(np.unique(tracked).size), element_id=f"mr-{dataset}-tracks")])
        template_ids = _optional(store, f"{group}/templates/template_track_id")
        if template_ids is not None:
            template_count = int(template_ids.shape[0])
        elif f"{group}/templates/pixel_offsets" in store:
            template_count = array_shape(store, f"{group}/templates/pixel_offsets")[0] - 1
        else:
            template_count = None
        if template_count is not None:
            rows.append(["templates projected into this recording", _cell(template_count, element_id=f"mr-{dataset}-templates")])
        confidence = _optional(store, f"{group}/rois/track_confidence")
        if confidence is not None and track_ids is not None and np.any(track_ids >= 0):
            rows.append(["median confidence of tracked ROIs", f"{float(np.median(confidence[track_ids >= 0])):.3f}"])
        spans = _optional(store, f"{group}/templates/recording_count")
        if spans is not None and spans.size:
            counts = ", ".join(f"{int(value)}: {int(count)}" for value, count in zip(*np.unique(spans, return_counts=True)))
            rows.append(["templates by number of recordings they span", counts])
        if f"{group}/extraction/cell_fluorescence" in store:
            rows.append(["extracted traces (templates × frames)", "×".join(map(str, array_shape(store, f"{group}/extraction/cell_fluorescence")))])
        arrays = [[path[len(group) + 1 :], str(array_shape(store, path))] for path in arrays_under(store, group)]
        parts.append(f"<h3>{html.escape(dataset)}</h3>" + _table(["", "value"], rows, css_class="multi") + _recordings_table(store, dataset) + "<details><summary>arrays</summary>" + _table(["array", "shape"], arrays, css_class="arrays") + "</details>")
    parts.append("</section>")
    return "".join(parts)


def _recordings_table(store: RecordingStore, dataset: str) -> str:
    """Per recording of a dataset (group attributes ``recording_names``/``recording_paths``): selected, tracked ROIs and templates."""
    group = f"{MULTI_RECORDING}/{dataset}"
    attributes = store.group_attributes(group)
    paths = [str(path) for path in attributes.get("recording_paths") or []]
    names = [str(name) for name in attributes.get("recording_names") or []] or [Path(path).name for path in paths]
    if not paths:
        return ""
    rows = []
    for index, (name, path) in enumerate(zip(names, paths)):
        other = RecordingStore(path)
        if not (other.path / group).is_dir():
            rows.append([name, "not reachable", "", ""])
            continue
        selected = array_shape(other, f"{group}/rois/pixel_offsets")[0] - 1 if f"{group}/rois/pixel_offsets" in other else "–"
        track_ids = _optional(other, f"{group}/rois/track_id")
        templates = array_shape(other, f"{group}/templates/pixel_offsets")[0] - 1 if f"{group}/templates/pixel_offsets" in other else "–"
        label = f"{name} (this recording)" if other.path.resolve() == store.path.resolve() else name
        rows.append([label, selected, int(np.count_nonzero(track_ids >= 0)) if track_ids is not None else "–", _cell(templates, element_id=f"mr-{dataset}-recording-{index}-templates")])
    return "<p>Recordings of the dataset:</p>" + _table(["recording", "selected ROIs", "tracked ROIs", "templates"], rows, css_class="multi-recordings")


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1b1f24;background:#fafafa;max-width:1340px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;border-bottom:1px solid #ccd;padding-bottom:4px;margin-top:28px}
h3{font-size:15px;margin:18px 0 6px}h4{font-size:13px;margin:12px 0 4px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border:1px solid #d6d9de;padding:3px 8px;text-align:left}
th{background:#eef0f3}.meta{color:#555;font-size:13px}section p{font-size:13px}
.images{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:12px;color:#444;margin-bottom:3px}
svg.roi-image image{image-rendering:pixelated}
path.roi{fill:none;stroke-width:1.1;vector-effect:non-scaling-stroke}path.roi.non-cell{stroke-opacity:.75}
#hide-non-cells:checked ~ section path.roi.non-cell{display:none}label.toggle{font-size:13px}
img.pc-image{width:110px;image-rendering:pixelated}
path.roi.cell{stroke:%s}path.roi.non-cell{stroke:%s}path.roi.unclassified{stroke:%s}
text.roi-label{fill:#fff;paint-order:stroke;stroke:#000;stroke-width:.15;text-anchor:middle;dominant-baseline:central}
#hide-non-cells:checked ~ section text.roi-label.non-cell{display:none}p.note{background:#fff4d6;border:1px solid #e6c35c;padding:6px 10px}
.swatch{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:-1px}
svg.chart{display:block;margin:6px 0;background:#fff}.plot-area{fill:#fff;stroke:#c8ccd2}
.chart-title{font-size:12px;fill:#333}.tick{font-size:10px;fill:#555}.legend{font-size:10px;font-weight:600}line.axis{stroke:#888}
line.mark{stroke:#e4572e;stroke-opacity:.35;stroke-width:1}.mark-label{fill:#e4572e}
path.spikes{stroke:#111;stroke-width:1;fill:none}
.bar{height:10px;background:#4c78a8}pre{background:#fff;border:1px solid #d6d9de;padding:8px;font-size:12px;overflow:auto}
""" % (CELL_COLOUR, NON_CELL_COLOUR, UNCLASSIFIED_COLOUR)


def default_report_path(store_path: Path | str) -> Path:
    """``<output>/<recording>_report.html`` beside ``<output>/<recording>.zarr``."""
    path = Path(store_path)
    return path.with_name(path.name.removesuffix(".zarr") + "_report.html")


def render_report(store_path: Path | str) -> str:
    """The report's HTML text (see `write_report`)."""
    store = open_existing_store(store_path)
    attributes = store.attributes()
    acquisition = attributes.get("acquisition") or {}
    planes = plane_indices(store)
    from cindra_dask.store import versions

    generated = dt.datetime.now(tz=dt.timezone.utc).isoformat(timespec="seconds")
    meta = [
        f"store {html.escape(str(store.path))}",
        f"generated {generated}",
        f"acquisition: {acquisition.get('frame_rate', '?')} Hz volume rate, {acquisition.get('plane_number', '?')} plane(s), {acquisition.get('channel_number', '?')} channel(s)" if acquisition else "",
        "versions: " + ", ".join(f"{name} {version}" for name, version in versions().items()),
    ]
    removed = attributes.get("removed_intermediates") or {}
    if removed:
        meta.append("removed intermediates: " + ", ".join(f"{name} ({when})" for name, when in removed.items()))
    body = [
        f"<h1>cindra-dask QC report — {html.escape(store.path.name)}</h1>",
        '<p class="meta">' + "<br>".join(line for line in meta if line) + "</p>",
        '<input type="checkbox" id="hide-non-cells"><label class="toggle" for="hide-non-cells"> hide the outlines of ROIs classified as not a cell</label>',
        _summary_section(store, planes),
        _timings_section(store),
        *(_plane_section(store, plane) for plane in planes),
        _combined_section(store),
        _multi_recording_section(store),
        "<section><h2>Configuration</h2><details><summary>YAML</summary><pre>" + html.escape(str(attributes.get("configuration", "(none recorded)"))) + "</pre></details></section>",
    ]
    return f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>cindra-dask report: {html.escape(store.path.name)}</title><style>{STYLE}</style></head><body>' + "".join(body) + "</body></html>\n"


def write_report(store_path: Path | str, output_html: Path | str | None = None) -> Path:
    """Write the QC report of a store as one self-contained HTML file.

    Parameters
    ----------
    store_path : the recording store (``<recording>.zarr``).
    output_html : the file to write (default `default_report_path`, beside the store; not inside it).

    Returns
    -------
    The HTML file's path.
    """
    store_path = Path(store_path).expanduser()
    target = Path(output_html).expanduser() if output_html is not None else default_report_path(store_path)
    if store_path.absolute() in target.absolute().parents:
        raise OutputError(f"{target}: inside the store {store_path}; write the report outside it")
    text = render_report(store_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
