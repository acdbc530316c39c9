"""ScanImage TIFFs: the acquisition (frame rate, planes, channels, MROI strips) read from the first file's header,
every other file's header checked to give the same (`recording_scanimage_acquisition`).

Where ScanImage keeps it (read with tifffile's parsers; the first page of each TIFF):

- SI 2016 and later: the non-varying frame data (``SI.*`` keys, MATLAB syntax) in the ScanImage
  BigTIFF header (`tifffile.read_scanimage_metadata`, through ``TiffFile.scanimage_metadata``) or,
  as in every page, in the Software tag; the ROI groups (JSON ``RoiGroups``) in the header or the
  Artist tag.
- SI 3.x: ``state.*`` keys (``key=value`` lines) in the ImageDescription.
- SI 4 and 5.0 (``scanimage.SI*`` keys in the ImageDescription) are recognised and refused.

What is inferred (`scanimage_2016_acquisition`, `scanimage_3_acquisition`):

- planes: 1 without fast z; with fast z (``SI.hFastZ.enable``, or ``SI.hStackManager.enable`` with
  ``stackMode`` ``fast``) the imaging slices ``SI.hStackManager.actualNumSlices`` (else
  ``numSlices``), the flyback frames (``SI.hFastZ.numDiscardFlybackFrames`` while
  ``discardFlybackFrames``) not counted: ScanImage does not log them. A slow stack (several slices
  without fast z) or an SI 3 z-stack is refused: its slices follow one another, they are not
  volumes in time.
- ``frame_rate`` (cindra: planes × volume rate): ``SI.hRoiManager.scanFrameRate`` × planes /
  (planes + flyback frames) / ``SI.hScan2D.logAverageFactor``; SI 3: ``state.acq.frameRate``.
- channels: the saved ones, ``SI.hChannels.channelSave`` (SI 3: ``state.acq.savingChannel1..4``);
  1 or 2.
- MROI (``SI.hRoiManager.mroiEnable``): one region per enabled ROI of
  ``RoiGroups.imagingRoiGroup.rois``, in scan order, stacked along the page rows; region k's
  height is its scanfield's ``pixelResolutionXY[1]`` lines, the gaps between regions (the
  fly-to lines) are equal and fill the rest of the page; its position in the combined field of
  view is its scanfield's top-left corner (``centerXY − sizeXY / 2``, scan degrees) relative to
  the leftmost/topmost region, in pixels at the regions' median pixels per degree. A ROI with one
  scanfield per z uses its first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from cindra_dask.config import ACQUISITION_FILE_NAME, AcquisitionParameters
from cindra_dask.errors import InputError
from cindra_dask.io.acquisition import SCANIMAGE, AcquisitionSource

SCANIMAGE_2016 = "SI 2016+"
SCANIMAGE_3 = "SI 3.x"
ARTIST_TAG = 315
SI3_CHANNELS = (1, 2, 3, 4)
"""ScanImage 3's channel numbers (``state.acq.savingChannel1`` ... ``4``)."""


class ScanImageHeader(NamedTuple):
    """The ScanImage metadata of one TIFF.

    Attributes
    ----------
    version : `SCANIMAGE_2016` or `SCANIMAGE_3`.
    values : the non-varying frame data ({``SI.*`` key: value}) or ({``state.*`` key: value}).
    roi_groups : the ``RoiGroups`` JSON ({} when none).
    location : where it was found (``BigTIFF header``, ``Software/Artist tags``, ``ImageDescription``).
    """

    version: str
    values: dict[str, Any]
    roi_groups: dict[str, Any]
    location: str


def _parse_state(description: str) -> dict[str, Any]:
    """SI 3's ``state.a.b=value`` lines (CR or LF separated) → {key: value}, values parsed as MATLAB."""
    from tifffile.tifffile import matlabstr2py

    values = {}
    for line in description.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        key, separator, value = line.partition("=")
        if separator and key.startswith("state."):
            values[key.strip()] = matlabstr2py(value.strip()) if value.strip() else ""
    return values


def read_scanimage_header(path: Path) -> ScanImageHeader | None:
    """The ScanImage metadata of ``path``'s first page, or None when it has none.

    Raises :class:`InputError` naming the file when the header is damaged (unparsable ROI JSON)
    or from ScanImage 4/5.0, whose keys are not read.
    """
    import tifffile
    from tifffile.tifffile import matlabstr2py

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if not page.is_scanimage:
                return None
            static = tif.scanimage_metadata or {}
            software, description = page.software, page.description
            artist = page.tags.valueof(ARTIST_TAG) or ""
    except Exception as error:  # tifffile raises many types for damaged files; inspect_tiff reports those
        raise InputError(f"{path}: not a readable TIFF ({error.__class__.__name__}: {error}); replace or remove the file (or list its stem in file_io.ignored_file_names)") from error
    if static.get("FrameData"):
        return ScanImageHeader(SCANIMAGE_2016, dict(static["FrameData"]), dict(static.get("RoiGroups") or {}), "BigTIFF header")
    if software.startswith("SI."):
        try:
            roi_groups = json.loads(artist).get("RoiGroups") or {} if artist else {}
        except (ValueError, AttributeError) as error:
            raise InputError(f"{path}: the ScanImage ROI groups (Artist tag) are not valid JSON ({error}); write {ACQUISITION_FILE_NAME} beside the files instead") from error
        values = matlabstr2py(software)
        return ScanImageHeader(SCANIMAGE_2016, values if isinstance(values, dict) else {}, dict(roi_groups), "Software/Artist tags")
    if description.startswith("state."):
        return ScanImageHeader(SCANIMAGE_3, _parse_state(description), {}, "ImageDescription")
    raise InputError(f"{path}: a ScanImage 4/5.0 header (scanimage.SI keys in the ImageDescription), which is not read; write {ACQUISITION_FILE_NAME} beside the files")


def _flat_integers(value: Any) -> list[int]:
    """MATLAB ``[1;2]`` / ``[1 2]`` / ``1`` as parsed by tifffile → ``[1, 2]`` / ``[1]``."""
    if isinstance(value, list):
        return [number for item in value for number in _flat_integers(item)]
    return [int(value)]


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, (int, float)) and value != 0) or value == "true"


def _channel_count(saved: list[int], *, key: str) -> int:
    if len(saved) not in (1, 2):
        raise ValueError(f"{key} saves {len(saved)} channels ({saved}); cindra-dask processes 1 or 2: save at most two channels, or split the files")
    return len(saved)


def _first_scanfield(roi: dict[str, Any]) -> dict[str, Any]:
    scanfields = roi.get("scanfields")
    scanfield = scanfields[0] if isinstance(scanfields, list) and scanfields else scanfields
    if not isinstance(scanfield, dict) or not {"pixelResolutionXY", "centerXY", "sizeXY"} <= scanfield.keys():
        raise ValueError(f"RoiGroups ROI '{roi.get('name', '?')}' has no scanfield with pixelResolutionXY, centerXY and sizeXY")
    return scanfield


def mroi_layout(roi_groups: dict[str, Any], *, page_height: int) -> dict[str, Any]:
    """MROI regions of the ``RoiGroups`` JSON laid along ``page_height``-row pages (see the module docstring).

    Returns ``roi_number``, ``roi_lines`` (every row of each region), ``roi_x_coordinates``,
    ``roi_y_coordinates`` (px), and ``fly_to_lines`` and the ROIs read (name, scanfield geometry).
    Raises ``ValueError`` when the strips and equal gaps do not fill the page.
    """
    rois = (roi_groups.get("imagingRoiGroup") or {}).get("rois")
    rois = [rois] if isinstance(rois, dict) else list(rois or [])
    rois = [roi for roi in rois if _truthy(roi.get("enable", True))]
    if not rois:
        raise ValueError("SI.hRoiManager.mroiEnable is set but RoiGroups.imagingRoiGroup lists no enabled ROI")
    scanfields = [_first_scanfield(roi) for roi in rois]
    heights = [int(field["pixelResolutionXY"][1]) for field in scanfields]
    gap_total = page_height - sum(heights)
    gaps = len(rois) - 1
    if gap_total < 0 or (gaps and gap_total % gaps) or (not gaps and gap_total):
        raise ValueError(f"the {len(rois)} RoiGroups regions of {heights} lines and {gaps} equal fly-to gaps do not fill the {page_height}-row pages")
    fly_to = gap_total // gaps if gaps else 0
    starts = np.concatenate([[0], np.cumsum(np.array(heights[:-1]) + fly_to)]).astype(int)
    size = np.array([field["sizeXY"] for field in scanfields], dtype=float)
    corner = np.array([field["centerXY"] for field in scanfields], dtype=float) - size / 2
    pixels_per_degree = np.median(np.array([field["pixelResolutionXY"] for field in scanfields], dtype=float) / size, axis=0)
    position = np.round((corner - corner.min(axis=0)) * pixels_per_degree)
    return {
        "roi_number": len(rois),
        "roi_lines": [list(range(int(start), int(start) + height)) for start, height in zip(starts, heights)],
        "roi_x_coordinates": [float(value) for value in position[:, 0]],
        "roi_y_coordinates": [float(value) for value in position[:, 1]],
        "fly_to_lines": fly_to,
        "rois": [{"name": roi.get("name", ""), **{key: field[key] for key in ("centerXY", "sizeXY", "pixelResolutionXY")}} for roi, field in zip(rois, scanfields)],
    }


def scanimage_2016_acquisition(values: dict[str, Any], roi_groups: dict[str, Any], *, page_height: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """SI 2016+ frame data (and ROI groups) → (acquisition parameter fields, the raw values read). ``ValueError`` names the key at fault."""
    read: dict[str, Any] = {}

    def value(key: str, default: Any = None) -> Any:
        if key in values:
            read[key] = values[key]
            return values[key]
        if default is None:
            raise ValueError(f"{key} is missing from the ScanImage header")
        return default

    scan_frame_rate = float(value("SI.hRoiManager.scanFrameRate"))
    fast_z = _truthy(value("SI.hFastZ.enable", False)) or (_truthy(value("SI.hStackManager.enable", False)) and value("SI.hStackManager.stackMode", "") == "fast")
    slices = int(value("SI.hStackManager.actualNumSlices", 0)) or int(value("SI.hStackManager.numSlices", 1))
    if not fast_z and slices > 1:
        raise ValueError(f"SI.hStackManager.numSlices is {slices} without fast z: a slow stack (slices one after another), not volumes in time; it cannot be split into planes")
    planes = slices if fast_z else 1
    flyback = int(value("SI.hFastZ.numDiscardFlybackFrames", 0)) if fast_z and _truthy(value("SI.hFastZ.discardFlybackFrames", False)) else 0
    average = int(value("SI.hScan2D.logAverageFactor", 1)) or 1
    channels = _channel_count(_flat_integers(value("SI.hChannels.channelSave")), key="SI.hChannels.channelSave")
    fields: dict[str, Any] = {"frame_rate": scan_frame_rate * planes / (planes + flyback) / average, "plane_number": planes, "channel_number": channels}
    if _truthy(value("SI.hRoiManager.mroiEnable", False)):
        layout = mroi_layout(roi_groups, page_height=page_height)
        read["RoiGroups.imagingRoiGroup.rois"], read["fly_to_lines"] = layout.pop("rois"), layout.pop("fly_to_lines")
        fields.update(layout)
    return fields, read


def scanimage_3_acquisition(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """SI 3.x ``state.*`` values → (acquisition parameter fields, the raw values read). ``ValueError`` names the key at fault."""
    keys = ["state.acq.frameRate", "state.acq.numberOfZSlices", "state.acq.averaging", *(f"state.acq.savingChannel{channel}" for channel in SI3_CHANNELS)]
    read = {key: values[key] for key in keys if key in values}
    if "state.acq.frameRate" not in read:
        raise ValueError("state.acq.frameRate is missing from the ScanImage 3 header")
    slices = int(read.get("state.acq.numberOfZSlices", 1))
    if slices > 1:
        raise ValueError(f"state.acq.numberOfZSlices is {slices}: a ScanImage 3 z-stack (slices one after another), not volumes in time; it cannot be split into planes")
    if _truthy(read.get("state.acq.averaging", 0)):
        raise ValueError("state.acq.averaging is on: the saved frames are averages, not a time series")
    saved = [channel for channel in SI3_CHANNELS if _truthy(read.get(f"state.acq.savingChannel{channel}", 0))]
    channels = _channel_count(saved, key="state.acq.savingChannel1..4")
    return {"frame_rate": float(read["state.acq.frameRate"]), "plane_number": 1, "channel_number": channels}, read


def scanimage_acquisition(path: Path, *, page_height: int) -> AcquisitionSource | None:
    """The acquisition described by ``path``'s ScanImage header (None: no ScanImage header).

    Raises :class:`InputError`, one line naming the file and the header key, when the header
    cannot describe a recording cindra-dask can split (see the module docstring).
    """
    header = read_scanimage_header(path)
    if header is None:
        return None
    try:
        if header.version == SCANIMAGE_2016:
            fields, read = scanimage_2016_acquisition(header.values, header.roi_groups, page_height=page_height)
        else:
            fields, read = scanimage_3_acquisition(header.values)
        parameters = AcquisitionParameters.model_validate(fields)
    except (ValueError, TypeError, KeyError, IndexError) as error:
        message = error.errors()[0]["msg"] if hasattr(error, "errors") else str(error)
        raise InputError(f"{path}: ScanImage header ({header.version}): {message}; write {ACQUISITION_FILE_NAME} beside the files (it is used instead)") from error
    return AcquisitionSource(SCANIMAGE, path, parameters, read, f"{header.version}, {header.location}")


def recording_scanimage_acquisition(paths: Sequence[Path], *, page_height: int) -> AcquisitionSource | None:
    """`scanimage_acquisition` of the first of one recording's files, after checking that every other
    file's header gives the same acquisition (a file of another session copied into the folder would
    otherwise be split with the wrong rate, planes or channels). None: the first file has no header.

    Raises :class:`InputError`, one line per file that differs (or has no header), naming it, the
    field and both values.
    """
    first = scanimage_acquisition(paths[0], page_height=page_height)
    if first is None:
        return None
    expected = first.parameters.model_dump()
    problems = []
    for path in paths[1:]:
        other = scanimage_acquisition(path, page_height=page_height)
        if other is None:
            problems.append(f"{path}: no ScanImage header, while {paths[0].name} has one; move it out of the recording folder (or add '{path.stem}' to file_io.ignored_file_names)")
            continue
        differing = [(name, value, expected[name]) for name, value in other.parameters.model_dump().items() if value != expected[name]]
        if differing:
            name, value, first_value = differing[0]
            problems.append(
                f"{path}: its ScanImage header gives {name} {value}, {paths[0].name}'s {first_value}; the files of one recording share their acquisition:"
                f" move it to its own recording folder (or add '{path.stem}' to file_io.ignored_file_names)"
            )
    if problems:
        raise InputError(*problems)
    return first

