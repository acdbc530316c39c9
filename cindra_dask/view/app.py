"""The viewer's bokeh document, one per browser session: an ROIs tab, a registration tab and (multi-recording stores) a tracking tab.

ROIs: a detection image (mean, enhanced mean, maximum projection or correlation map) with every ROI
outlined and filled in its class colour (fill opacity rising with the classifier's probability);
tap or box-select ROIs to plot their F and neuropil, dF/F and spikes below; hide ROIs outside a
range of any per-ROI statistic; "cell" / "not cell" relabel the selected ROIs in the store
(`cindra_dask.export.curation.label_rois`: history kept, picked up by `export suite2p`).
Registration: rigid offsets, correlations, nonrigid block offsets and bad frames over time, the PC
metrics, and the raw and registered frame at the slider's time point side by side. Tracking (stores
with ``multi_recording/<dataset>/``): the dataset's tracked cells in a table sortable by confidence;
choosing one outlines it in every recording's mean image (each in its own canvas, the template
back-projected there) and plots its trace in each recording.

`build_viewer` is the application function (`bokeh.application.handlers.FunctionHandler`); the
`Viewer` it returns names the models the callbacks read and write, which the tests drive.
"""

from __future__ import annotations

import html
from typing import Any, NamedTuple

import numpy as np
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import BooleanFilter, Button, CDSView, ColumnDataSource, DataTable, Div, HoverTool, LinearColorMapper, NumberFormatter, Range1d, RangeSlider, Select, Slider, Span, TableColumn, TabPanel, Tabs
from bokeh.palettes import Category10_10, Greys256
from bokeh.plotting import figure

from cindra_dask.errors import CindraError
from cindra_dask.export.curation import label_rois
from cindra_dask.export.report import CELL_COLOUR, NON_CELL_COLOUR, UNCLASSIFIED_COLOUR, display_range, plane_rate_hz
from cindra_dask.store import RecordingStore, multi_recording_datasets, plane_indices
from cindra_dask.view.data import DETECTION_IMAGES, FrameReader, PlaneRois, TrackedRecording, detection_images, plane_rois, read_classification, registration_series, roi_traces, track_table, tracked_recordings

MAX_TRACE_ROIS = 10
"""Selected ROIs whose traces are plotted (the first ones, by index)."""
MAX_TRACKED_RECORDINGS = 8
"""Recordings of a dataset shown side by side in the tracking tab (the first ones)."""
TRACKED_IMAGE_WIDTH_PX = 300
MAX_WINDOW_FRAMES = 1000
"""Longest window of frames the registration tab averages (read chunk by chunk)."""
IMAGE_WIDTH_PX = 520
TRACE_WIDTH_PX, TRACE_HEIGHT_PX = 900, 170
SELECTED_COLOUR = "#00e5ff"
TRACE_COLUMNS = {"cell_fluorescence": "f", "neuropil_fluorescence": "fneu", "delta_f_over_f": "dff", "spikes": "spikes"}
"""The trace source's column of each `cindra_dask.view.data.TRACE_ARRAYS` array."""


class Viewer(NamedTuple):
    """The models of one viewer document (the tests drive these).

    Attributes
    ----------
    layout : the root (the plane above the tabs).
    plane_select : the plane shown (value "0", "1", ...).
    image_select : the detection image under the outlines (a `DETECTION_IMAGES` name).
    image_source : column ``image``: [(Ly, Lx) f4].
    roi_source : one row per ROI: ``roi``, ``xs``, ``ys`` (outline, image px), ``is_cell``, ``probability``, ``label``, ``colour``, ``alpha``; its selection is the ROIs shown below.
    roi_filter : which ROIs are drawn (the statistic filter).
    statistic_select, statistic_range : the statistic filtered on and its [low, high] range.
    trace_source : one row per plotted ROI: ``roi``, ``colour``, ``t`` (s, or frames when the rate is unknown) and ``f``, ``fneu``, ``dff``, ``spikes`` (T,) f4.
    cell_button, not_cell_button : relabel the selected ROIs in the store.
    message : what the last action did.
    frame_slider : the frame shown in the registration tab.
    window_slider : frames averaged from the slider's on (1: the frame itself).
    frame_sources : ``raw`` / ``registered`` → column ``image``: [frame, or mean of the window, (Ly, Lx) f4].
    registration_source : per frame: ``t``, ``dy``, ``dx``, ``correlation``, ``block_mean``, ``block_max`` (NaN where not stored).
    dataset_select : the multi-recording dataset of the tracking tab ("" when the store has none).
    track_source : one row per tracked cell: ``track_id``, ``confidence``, ``recording_count``; its selection is the cell shown.
    track_highlights : per recording shown, the chosen cell's outline there: ``xs``, ``ys`` (one row, or none when it has no template there).
    tracking_trace_source : one row per recording holding the cell: ``recording``, ``colour``, ``t``, ``trace`` (T,) f4.
    """

    layout: Any
    plane_select: Select
    image_select: Select
    image_source: ColumnDataSource
    roi_source: ColumnDataSource
    roi_filter: BooleanFilter
    statistic_select: Select
    statistic_range: RangeSlider
    trace_source: ColumnDataSource
    cell_button: Button
    not_cell_button: Button
    message: Div
    frame_slider: Slider
    window_slider: Slider
    frame_sources: dict[str, ColumnDataSource]
    registration_source: ColumnDataSource
    dataset_select: Select
    track_source: ColumnDataSource
    track_highlights: list[ColumnDataSource]
    tracking_trace_source: ColumnDataSource


def _colours(classification: np.ndarray | None, count: int) -> dict[str, list[Any]]:
    """The class columns of the ROI source: ``is_cell``, ``probability``, ``label``, ``colour``, ``alpha``."""
    if classification is None:
        return {"is_cell": [False] * count, "probability": [float("nan")] * count, "label": ["unclassified"] * count, "colour": [UNCLASSIFIED_COLOUR] * count, "alpha": [0.25] * count}
    is_cell = classification[:, 0] > 0.5
    probability = np.clip(np.nan_to_num(classification[:, 1]), 0.0, 1.0)
    return {
        "is_cell": is_cell.tolist(),
        "probability": classification[:, 1].astype(float).tolist(),
        "label": ["cell" if cell else "not cell" for cell in is_cell],
        "colour": [CELL_COLOUR if cell else NON_CELL_COLOUR for cell in is_cell],
        "alpha": (0.1 + 0.5 * probability).tolist(),
    }


def _image_data(image: np.ndarray) -> dict[str, list[Any]]:
    """An image source's columns: ``image`` [(Ly, Lx)], its width ``dw`` and height ``dh`` (px)."""
    return {"image": [image], "dw": [image.shape[1]], "dh": [image.shape[0]]}


def _image_figure(*, name: str, title: str, shape: tuple[int, int], tools: str) -> Any:
    """A figure showing an (Ly, Lx) image the right way up: row 0 at the top, pixel (y, x) over [x, x+1] × [y, y+1]."""
    height, width = shape
    plot = figure(name=name, title=title, width=IMAGE_WIDTH_PX, height=max(120, round(IMAGE_WIDTH_PX * height / width)), x_range=Range1d(0, width), y_range=Range1d(height, 0), tools=tools, match_aspect=True)
    plot.xaxis.axis_label, plot.yaxis.axis_label = "x (px)", "y (px)"
    return plot


class _Session:
    """The state behind one document: the plane shown, its ROIs and frame reader; every callback."""

    def __init__(self, store: RecordingStore) -> None:
        self.store = store
        self.planes = plane_indices(store)
        self.plane = self.planes[0] if self.planes else 0
        self.rate_hz = plane_rate_hz(store)
        self.rois = PlaneRois([], [], None, {}, 0)
        self.frames = FrameReader(store, plane=self.plane)
        self.images = detection_images(store, plane=self.plane)
        shape = self._shape()
        self.viewer = Viewer(
            layout=None,
            plane_select=Select(name="plane", title="plane", value=str(self.plane), options=[str(plane) for plane in self.planes] or ["0"]),
            image_select=Select(name="image", title="image", value="mean_image", options=[(name, title) for name, title in DETECTION_IMAGES.items()]),
            image_source=ColumnDataSource(_image_data(np.zeros(shape, np.float32)), name="detection_image"),
            roi_source=ColumnDataSource({"roi": [], "xs": [], "ys": [], **_colours(None, 0)}, name="rois"),
            roi_filter=BooleanFilter(booleans=[]),
            statistic_select=Select(name="statistic", title="filter ROIs by", value="", options=[""]),
            statistic_range=RangeSlider(name="statistic_range", title="range", start=0.0, end=1.0, value=(0.0, 1.0), step=0.01),
            trace_source=ColumnDataSource({"roi": [], "colour": [], "t": [], **{column: [] for column in TRACE_COLUMNS.values()}}, name="traces"),
            cell_button=Button(name="mark_cell", label="cell", button_type="success", width=110),
            not_cell_button=Button(name="mark_not_cell", label="not cell", button_type="danger", width=110),
            message=Div(name="message", text="Outlines: green cell, magenta not a cell, fill opacity the probability. Tap an ROI, or box-select several (shift adds).", width=300),
            frame_slider=Slider(name="frame", title="frame", start=0, end=1, value=0, step=1, width=TRACE_WIDTH_PX),
            window_slider=Slider(name="window", title="mean of frames (from the frame on)", start=1, end=2, value=1, step=1, width=300),
            frame_sources={kind: ColumnDataSource(_image_data(np.zeros(shape, np.float32)), name=f"{kind}_frame") for kind in ("raw", "registered")},
            registration_source=ColumnDataSource({"t": [], "dy": [], "dx": [], "correlation": [], "block_mean": [], "block_max": []}, name="registration"),
            dataset_select=Select(name="dataset", title="dataset", value="", options=[""]),
            track_source=ColumnDataSource({"track_id": [], "confidence": [], "recording_count": []}, name="tracks"),
            track_highlights=[],
            tracking_trace_source=ColumnDataSource({"recording": [], "colour": [], "t": [], "trace": []}, name="tracked_traces"),
        )
        self.grey = LinearColorMapper(palette=Greys256, low=0.0, high=1.0)
        self.frame_greys = {kind: LinearColorMapper(palette=Greys256, low=0.0, high=1.0) for kind in ("raw", "registered")}
        self.bad_source = ColumnDataSource({"t": [], "dy": []})
        self.time_marks = [Span(location=0, dimension="height", line_color="#888888", line_dash="dashed") for _ in range(3)]
        self.frame_info = Div(name="frame_info", text="")
        self.pc_table = Div(name="pc_metrics", text="")
        self.image_plot = _image_figure(name="roi_image", title="", shape=shape, tools="tap,box_select,pan,wheel_zoom,reset")
        self.frame_plots = {kind: _image_figure(name=f"{kind}_frame_image", title=f"{kind} frame", shape=shape, tools="pan,wheel_zoom,reset") for kind in ("raw", "registered")}
        self.frame_plots["registered"].x_range = self.frame_plots["raw"].x_range
        self.frame_plots["registered"].y_range = self.frame_plots["raw"].y_range
        panels = [TabPanel(title="ROIs", child=self._roi_tab()), TabPanel(title="Registration", child=self._registration_tab())]
        self.datasets = multi_recording_datasets(store)
        self.recordings: list[TrackedRecording] = []
        if self.datasets:
            panels.append(TabPanel(title="Tracking", child=self._tracking_tab()))
        tabs = Tabs(tabs=panels, name="tabs")
        heading = Div(text=f"<b>{html.escape(store.path.name)}</b> ({html.escape(str(store.path.parent))})")
        self.viewer = self.viewer._replace(layout=column(row(self.viewer.plane_select, heading), tabs))
        self.load_plane()
        if self.datasets:
            self.load_dataset()
        viewer = self.viewer
        viewer.plane_select.on_change("value", lambda attribute, old, new: self.select_plane(int(new)))
        viewer.image_select.on_change("value", lambda attribute, old, new: self.show_image())
        viewer.roi_source.selected.on_change("indices", lambda attribute, old, new: self.show_traces())
        viewer.statistic_select.on_change("value", lambda attribute, old, new: self.reset_filter())
        viewer.statistic_range.on_change("value", lambda attribute, old, new: self.apply_filter())
        viewer.cell_button.on_click(lambda: self.label(is_cell=True))
        viewer.not_cell_button.on_click(lambda: self.label(is_cell=False))
        viewer.frame_slider.on_change("value", lambda attribute, old, new: self.show_frame())
        viewer.window_slider.on_change("value", lambda attribute, old, new: self.show_frame())
        viewer.dataset_select.on_change("value", lambda attribute, old, new: self.load_dataset())
        viewer.track_source.selected.on_change("indices", lambda attribute, old, new: self.show_track())

    # -- layout -------------------------------------------------------------------------
    def _roi_tab(self) -> Any:
        viewer = self.viewer
        self.image_plot.image(image="image", x=0, y=0, dw="dw", dh="dh", source=viewer.image_source, color_mapper=self.grey)
        outlines = self.image_plot.patches(
            xs="xs", ys="ys", source=viewer.roi_source, view=CDSView(filter=viewer.roi_filter), fill_color="colour", fill_alpha="alpha", line_color="colour", line_width=1.5,
            selection_line_color=SELECTED_COLOUR, selection_line_width=3, nonselection_fill_alpha="alpha", nonselection_line_alpha=0.8,
        )
        self.image_plot.add_tools(HoverTool(renderers=[outlines], tooltips=[("ROI", "@roi"), ("class", "@label"), ("probability", "@probability{0.00}")]))
        time_range = Range1d(0, 1)
        plots = []
        for column_name, title in (("f", "F (solid) and neuropil (dashed)"), ("dff", "dF/F"), ("spikes", "deconvolved spikes")):
            plot = figure(name=f"trace_{column_name}", title=title, width=TRACE_WIDTH_PX, height=TRACE_HEIGHT_PX, x_range=time_range, tools="xpan,xwheel_zoom,reset")
            plot.multi_line(xs="t", ys=column_name, line_color="colour", source=viewer.trace_source)
            if column_name == "f":
                plot.multi_line(xs="t", ys="fneu", line_color="colour", line_dash="dashed", line_alpha=0.7, source=viewer.trace_source)
            plot.xaxis.axis_label = "time (s)" if self.rate_hz else "frame"
            plots.append(plot)
        self.trace_range = time_range
        controls = column(viewer.image_select, viewer.statistic_select, viewer.statistic_range, row(viewer.cell_button, viewer.not_cell_button), viewer.message, width=300)
        return column(row(self.image_plot, controls), *plots)

    def _registration_tab(self) -> Any:
        viewer = self.viewer
        time_range = Range1d(0, 1)
        unit = "time (s)" if self.rate_hz else "frame"
        plots = []
        for index, (title, series) in enumerate(
            (("rigid offsets (px): dy blue, dx red; × bad frames", (("dy", "#1f77b4"), ("dx", "#d62728"))), ("rigid phase-correlation peak", (("correlation", "#2ca02c"),)), ("nonrigid |block offset| (px): mean, max", (("block_mean", "#9467bd"), ("block_max", "#ff7f0e"))))
        ):
            plot = figure(name=f"registration_{index}", title=title, width=TRACE_WIDTH_PX, height=TRACE_HEIGHT_PX, x_range=time_range, tools="xpan,xwheel_zoom,reset")
            for name, colour in series:
                plot.line(x="t", y=name, line_color=colour, source=viewer.registration_source)
            if index == 0:
                plot.scatter(x="t", y="dy", marker="x", size=9, line_color="#000000", source=self.bad_source)
            plot.add_layout(self.time_marks[index])
            plot.xaxis.axis_label = unit
            plots.append(plot)
        self.registration_range = time_range
        for kind, plot in self.frame_plots.items():
            plot.image(image="image", x=0, y=0, dw="dw", dh="dh", source=viewer.frame_sources[kind], color_mapper=self.frame_greys[kind])
        return column(self.frame_info, row(viewer.frame_slider, viewer.window_slider), row(*self.frame_plots.values()), *plots, self.pc_table)

    # -- loading a plane ------------------------------------------------------------------
    def _shape(self) -> tuple[int, int]:
        """(Ly, Lx) of the plane: its detection images', else its frames'."""
        if self.images:
            return next(iter(self.images.values())).shape
        kinds = self.frames.kinds()
        return self.frames.frame(kinds[0], 0).shape if kinds else (1, 1)

    def select_plane(self, plane: int) -> None:
        self.plane = plane
        self.frames = FrameReader(self.store, plane=plane)
        self.images = detection_images(self.store, plane=plane)
        self.load_plane()

    def load_plane(self) -> None:
        """Read the plane's ROIs, images and registration series into the sources."""
        viewer = self.viewer
        shape = self._shape()
        for plot in (self.image_plot, self.frame_plots["raw"]):
            plot.x_range.update(start=0, end=shape[1])
            plot.y_range.update(start=shape[0], end=0)
        self.rois = plane_rois(self.store, plane=self.plane)
        count = self.rois.count
        viewer.roi_source.selected.indices = []
        viewer.roi_source.data = {"roi": list(range(count)), "xs": self.rois.outline_xs, "ys": self.rois.outline_ys, **_colours(self.rois.classification, count)}
        viewer.roi_filter.booleans = [True] * count
        names = list(self.rois.statistics)
        viewer.statistic_select.options = ["", *names]
        viewer.statistic_select.value = ""
        viewer.image_select.options = [(name, DETECTION_IMAGES[name]) for name in self.images] or [("mean_image", "no detection images")]
        viewer.image_select.value = next(iter(self.images), "mean_image")
        self.show_image()
        self.show_traces()
        self.load_registration()

    def show_image(self) -> None:
        name = self.viewer.image_select.value
        image = self.images.get(name, np.zeros(self._shape(), np.float32))
        self.grey.update(**dict(zip(("low", "high"), display_range(image))))
        self.viewer.image_source.data = _image_data(image)
        self.image_plot.title.text = f"plane {self.plane}: {DETECTION_IMAGES.get(name, name)}, {self.rois.count} ROIs"

    # -- ROIs ---------------------------------------------------------------------------
    def _time(self, frame_count: int) -> np.ndarray:
        frames = np.arange(frame_count, dtype=np.float64)
        return frames / self.rate_hz if self.rate_hz else frames

    def show_traces(self) -> None:
        """Plot the traces of the selected ROIs (the first `MAX_TRACE_ROIS`) and describe them."""
        viewer = self.viewer
        selected = sorted(int(index) for index in viewer.roi_source.selected.indices)
        shown = selected[:MAX_TRACE_ROIS]
        data: dict[str, list[Any]] = {"roi": [], "colour": [], "t": [], **{column_name: [] for column_name in TRACE_COLUMNS.values()}}
        for position, roi in enumerate(shown):
            traces = roi_traces(self.store, plane=self.plane, roi=roi)
            frame_count = len(next(iter(traces.values()))) if traces else 0
            data["roi"].append(roi)
            data["colour"].append(Category10_10[position % len(Category10_10)])
            data["t"].append(self._time(frame_count))
            for name, column_name in TRACE_COLUMNS.items():
                data[column_name].append(traces.get(name, np.full(frame_count, np.nan, np.float32)))
        viewer.trace_source.data = data
        if data["t"] and len(data["t"][0]):
            self.trace_range.update(start=0.0, end=float(data["t"][0][-1]) or 1.0)
        if not selected:
            return
        rows = []
        for roi in shown:
            label = viewer.roi_source.data["label"][roi]
            probability = viewer.roi_source.data["probability"][roi]
            values = ", ".join(f"{name} {self.rois.statistics[name][roi]:.3g}" for name in list(self.rois.statistics)[:6])
            rows.append(f"<li>ROI {roi}: {label}, p = {probability:.2f}; {html.escape(values)}</li>")
        more = f"<p>{len(selected) - len(shown)} more selected (traces of the first {MAX_TRACE_ROIS} shown).</p>" if len(selected) > len(shown) else ""
        viewer.message.text = f"<p>{len(selected)} selected (plane {self.plane}):</p><ul>{''.join(rows)}</ul>{more}"

    def reset_filter(self) -> None:
        viewer = self.viewer
        values = self.rois.statistics.get(viewer.statistic_select.value)
        if values is None or not len(values) or not np.isfinite(values).any():
            viewer.roi_filter.booleans = [True] * self.rois.count
            return
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        high = high if high > low else low + 1.0
        viewer.statistic_range.update(start=low, end=high, step=(high - low) / 200, value=(low, high), title=viewer.statistic_select.value)
        self.apply_filter()

    def apply_filter(self) -> None:
        """Draw only the ROIs whose statistic lies in the range (NaN: hidden)."""
        viewer = self.viewer
        values = self.rois.statistics.get(viewer.statistic_select.value)
        if values is None:
            return
        low, high = viewer.statistic_range.value
        inside = (values >= low) & (values <= high)
        viewer.roi_filter.booleans = inside.tolist()
        viewer.message.text = f"{int(inside.sum())} of {self.rois.count} ROIs with {html.escape(viewer.statistic_select.value)} in [{low:.3g}, {high:.3g}]"

    def label(self, *, is_cell: bool) -> None:
        """Relabel the selected ROIs that are drawn (in the store, history kept) and recolour them."""
        viewer = self.viewer
        drawn = viewer.roi_filter.booleans
        rows = sorted(int(index) for index in viewer.roi_source.selected.indices if drawn[int(index)])
        if not rows:
            viewer.message.text = "Select ROIs first (tap, or box-select)."
            return
        try:
            curation = label_rois(self.store, plane=self.plane, rows=rows, is_cell=is_cell)
        except CindraError as error:
            viewer.message.text = f"<b>not saved</b>: {html.escape(str(error))}"
            return
        classification, history = read_classification(self.store, plane=self.plane, roi_count=self.rois.count)
        self.rois = self.rois._replace(classification=classification, curation_count=history)
        viewer.roi_source.data.update(_colours(classification, self.rois.count))
        changed = ", ".join(map(str, curation.changed_rows)) or "none (already so)"
        viewer.message.text = f"plane {self.plane}: ROIs {', '.join(map(str, rows))} marked {'cell' if is_cell else 'not cell'}; changed: {changed}; saved in the store ({history} curation entries)"

    # -- registration -------------------------------------------------------------------------
    def load_registration(self) -> None:
        viewer = self.viewer
        series = registration_series(self.store, plane=self.plane)
        frame_count = self.frames.frame_count() or (len(series.rigid_offsets) if series.rigid_offsets is not None else 0)
        nan = np.full(frame_count, np.nan, np.float32)

        def column_of(values: np.ndarray | None) -> np.ndarray:
            return values.astype(np.float32) if values is not None and len(values) == frame_count else nan

        offsets = series.rigid_offsets if series.rigid_offsets is not None and series.rigid_offsets.shape == (frame_count, 2) else None
        times = self._time(frame_count)
        viewer.registration_source.data = {
            "t": times,
            "dy": column_of(offsets[:, 0] if offsets is not None else None),
            "dx": column_of(offsets[:, 1] if offsets is not None else None),
            "correlation": column_of(series.rigid_correlations),
            "block_mean": column_of(series.block_offset_mean),
            "block_max": column_of(series.block_offset_max),
        }
        bad = series.bad_frames if series.bad_frames is not None and len(series.bad_frames) == frame_count else np.zeros(frame_count, bool)
        self.bad_source.data = {"t": times[bad], "dy": column_of(offsets[:, 0] if offsets is not None else None)[bad]}
        self.registration_range.update(start=0.0, end=float(times[-1]) if frame_count > 1 else 1.0)
        self.pc_table.text = (
            "<b>PC metrics</b> (px per principal component: rigid, nonrigid mean, nonrigid max): "
            + "; ".join(f"PC {index}: {' / '.join(f'{value:.3f}' for value in values)}" for index, values in enumerate(series.pc_shift_metrics))
            if series.pc_shift_metrics is not None and series.pc_shift_metrics.ndim == 2
            else ""
        )
        self.registration = (series, bad)
        viewer.window_slider.update(start=1, end=max(2, min(frame_count, MAX_WINDOW_FRAMES)), value=1)
        viewer.frame_slider.update(start=0, end=max(frame_count - 1, 1), value=0)
        self.show_frame()

    def show_frame(self) -> None:
        """Show frame t (or the mean of the window from t) of each movie present, read chunk by chunk."""
        viewer = self.viewer
        t = int(viewer.frame_slider.value)
        kinds = self.frames.kinds()
        frame_count = self.frames.frame_count()
        if not kinds or t >= frame_count:
            self.frame_info.text = f"plane {self.plane}: no raw or registered frames in the store" if not kinds else ""
            return
        stop = min(t + int(viewer.window_slider.value), frame_count)
        for kind in ("raw", "registered"):
            plot = self.frame_plots[kind]
            if kind in kinds:
                image = self.frames.frame(kind, t) if stop - t == 1 else self.frames.mean(kind, start=t, stop=stop)
                self.frame_greys[kind].update(**dict(zip(("low", "high"), display_range(image))))  # each frame on its own grey scale
                viewer.frame_sources[kind].data = _image_data(image)
                plot.title.text = f"{kind} frame {t}" if stop - t == 1 else f"{kind}: mean of frames {t}–{stop - 1}"
            else:
                plot.title.text = f"{kind} frames not in the store (removed by `cindra-dask clean`, or not yet written)"
        time = self._time(frame_count)[t]
        for mark in self.time_marks:
            mark.location = float(time)
        series, bad = self.registration
        parts = [f"frame {t}" + (f" ({time:.2f} s)" if self.rate_hz else "")]
        if series.rigid_offsets is not None and t < len(series.rigid_offsets):
            parts.append(f"dy {series.rigid_offsets[t, 0]:.2f} px, dx {series.rigid_offsets[t, 1]:.2f} px")
        if series.rigid_correlations is not None and t < len(series.rigid_correlations):
            parts.append(f"correlation {series.rigid_correlations[t]:.3f}")
        if bad[t]:
            parts.append("<b>bad frame</b>")
        self.frame_info.text = f"plane {self.plane}: " + "; ".join(parts)

    # -- tracking -------------------------------------------------------------------------
    def _tracking_tab(self) -> Any:
        viewer = self.viewer
        viewer.dataset_select.update(options=self.datasets, value=self.datasets[0])
        columns = [
            TableColumn(field="track_id", title="track"),
            TableColumn(field="confidence", title="confidence", formatter=NumberFormatter(format="0.000")),
            TableColumn(field="recording_count", title="recordings"),
        ]
        table = DataTable(name="track_table", source=viewer.track_source, columns=columns, width=300, height=420, sortable=True, selectable=True)
        self.tracking_images = row(name="tracked_images")
        self.tracking_info = Div(name="tracking_info", text="Choose a tracked cell in the table (click a header to sort).", width=TRACE_WIDTH_PX)
        traces = figure(name="tracked_trace", title="F − c·Fneu of the cell in each recording", width=TRACE_WIDTH_PX, height=TRACE_HEIGHT_PX + 40, tools="xpan,xwheel_zoom,reset")
        traces.multi_line(xs="t", ys="trace", line_color="colour", legend_field="recording", source=viewer.tracking_trace_source)
        traces.xaxis.axis_label = "time (s)" if self.rate_hz else "frame"
        return column(row(column(viewer.dataset_select, table), column(self.tracking_info, self.tracking_images)), traces)

    def load_dataset(self) -> None:
        """Read the dataset's track table and every recording's image and template outlines."""
        viewer = self.viewer
        dataset = viewer.dataset_select.value
        tracks = track_table(self.store, dataset=dataset)
        viewer.track_source.selected.indices = []
        viewer.track_source.data = {"track_id": tracks.track_id.tolist(), "confidence": tracks.confidence.astype(float).tolist(), "recording_count": tracks.recording_count.tolist()}
        self.recordings = tracked_recordings(self.store, dataset=dataset)[:MAX_TRACKED_RECORDINGS]
        viewer.track_highlights.clear()
        plots = []
        for index, recording in enumerate(self.recordings):
            shape = recording.image.shape if recording.image is not None else (1, 1)
            plot = _image_figure(name=f"tracked_image_{index}", title=recording.name if recording.store is not None else f"{recording.name}: not reachable", shape=shape, tools="pan,wheel_zoom,reset")
            plot.width, plot.height = TRACKED_IMAGE_WIDTH_PX, max(120, round(TRACKED_IMAGE_WIDTH_PX * shape[0] / shape[1]))
            if recording.image is not None:
                low, high = display_range(recording.image)
                plot.image(image="image", x=0, y=0, dw="dw", dh="dh", source=ColumnDataSource(_image_data(recording.image)), color_mapper=LinearColorMapper(palette=Greys256, low=low, high=high))
            plot.patches(xs="xs", ys="ys", source=ColumnDataSource({"xs": recording.outline_xs, "ys": recording.outline_ys}), fill_alpha=0.0, line_color="#ffd23f", line_alpha=0.5, line_width=1)
            highlight = ColumnDataSource({"xs": [], "ys": []}, name=f"tracked_highlight_{index}")
            plot.patches(xs="xs", ys="ys", source=highlight, fill_color=SELECTED_COLOUR, fill_alpha=0.3, line_color=SELECTED_COLOUR, line_width=3)
            viewer.track_highlights.append(highlight)
            plots.append(plot)
        self.tracking_images.children = plots
        viewer.tracking_trace_source.data = {"recording": [], "colour": [], "t": [], "trace": []}

    def show_track(self) -> None:
        """Outline the chosen tracked cell in every recording and plot its trace in each."""
        viewer = self.viewer
        selected = viewer.track_source.selected.indices
        if not selected:
            return
        row_index = int(selected[0])
        track = int(viewer.track_source.data["track_id"][row_index])
        dataset = viewer.dataset_select.value
        data: dict[str, list[Any]] = {"recording": [], "colour": [], "t": [], "trace": []}
        present = []
        for index, (recording, highlight) in enumerate(zip(self.recordings, viewer.track_highlights)):
            rows = np.flatnonzero(recording.track_id == track)
            highlight.data = {"xs": [recording.outline_xs[int(rows[0])]], "ys": [recording.outline_ys[int(rows[0])]]} if rows.size else {"xs": [], "ys": []}
            trace = recording.trace(dataset=dataset, track=track)
            if rows.size:
                present.append(recording.name)
            if trace is not None:
                rate = plane_rate_hz(recording.store) if recording.store is not None else None
                data["recording"].append(recording.name)
                data["colour"].append(Category10_10[index % len(Category10_10)])
                data["t"].append(np.arange(len(trace)) / rate if rate else np.arange(len(trace), dtype=np.float64))
                data["trace"].append(trace)
        viewer.tracking_trace_source.data = data
        confidence = viewer.track_source.data["confidence"][row_index]
        self.tracking_info.text = f"track {track}: confidence {confidence:.3f}; outlined in {len(present)} of {len(self.recordings)} recordings ({html.escape(', '.join(present))})"


def build_viewer(document: Document, *, store: RecordingStore) -> Viewer:
    """Fill ``document`` with the viewer of ``store`` and return its models (the application function)."""
    session = _Session(store)
    document.add_root(session.viewer.layout)
    document.title = f"cindra-dask view: {store.path.name}"
    return session.viewer
