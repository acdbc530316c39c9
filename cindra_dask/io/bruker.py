"""Bruker / PrairieView folders: the XML names the TIFFs in acquisition order and describes the acquisition.

A PrairieView T-series folder holds one ``.xml`` file (root element ``PVScan``) and the TIFFs it
names: ``<Sequence>`` elements (cycles) of ``<Frame>`` elements, each with one ``<File channel=..
filename=.. [page=..]>`` per channel. What is read (`read_prairie_xml`):

- order: sequences, then frames, then files, as listed; this is the plane-major / channel-minor
  page cycle of ``io/tiff.py`` (``TSeries ZSeries Element`` sequences are volumes whose frames are
  the planes; any other sequence type is a plain time series, 1 plane). Most versions write one
  single-page TIFF per frame and channel; a ``page`` attribute (1-based) addresses pages of
  multi-page TIFFs, each file's pages named in order.
- ``frame_rate``: 1 / ``framePeriod`` (s) of the scan-wide ``PVStateShard``; the channels: those of
  the first frame's files (every frame must list the same); ``micronsPerPixel`` X/Y and the
  PrairieView version are recorded.

Files are read by the TIFF reader (IFD offsets recorded per file); nothing is read from the TIFFs'
own OME metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from cindra_dask.config import AcquisitionParameters
from cindra_dask.errors import InputError
from cindra_dask.io.acquisition import BRUKER, AcquisitionSource
from cindra_dask.io.arrays import listed_names
from cindra_dask.io.tiff import FrameReader, read_tiff_pages

PRAIRIE_ROOT = "PVScan"
VOLUME_SEQUENCE = "ZSeries"
"""Sequence types containing this word hold one volume each (their frames are the planes)."""


class PrairieScan(NamedTuple):
    """What a PrairieView XML says.

    Attributes
    ----------
    path : the XML file.
    frame_period_s : ``framePeriod``, s per frame.
    plane_count : frames per volume sequence (1 for a plain time series).
    channels : channel numbers of every frame's files, in file order.
    pixel_size_um : ``micronsPerPixel`` (x, y), µm, or None.
    sequence_type : the first sequence's ``type``.
    version : the PVScan ``version``.
    pages : (file name, 0-based page) of every frame of every channel, acquisition order.
    """

    path: Path
    frame_period_s: float
    plane_count: int
    channels: tuple[int, ...]
    pixel_size_um: tuple[float, float] | None
    sequence_type: str
    version: str
    pages: tuple[tuple[str, int], ...]


def _root_tag(path: Path) -> str:
    """The root element's tag of an XML file ("" when it is not well-formed XML)."""
    import xml.etree.ElementTree as ElementTree

    try:
        for _, element in ElementTree.iterparse(path, events=("start",)):
            return element.tag
    except ElementTree.ParseError:
        return ""
    return ""


def find_prairie_xml(directory: Path, *, ignored_file_names: Sequence[str]) -> Path | None:
    """The PrairieView XML directly in ``directory`` (None when there is none); two are refused."""
    ignored = set(ignored_file_names)
    found = sorted(path for path in directory.glob("*") if path.suffix.lower() == ".xml" and path.is_file() and path.stem not in ignored and _root_tag(path) == PRAIRIE_ROOT)
    if len(found) > 1:
        raise InputError(f"{directory}: {len(found)} PrairieView XML files ({', '.join(path.name for path in found)}); keep one recording per folder or list the others' stems in file_io.ignored_file_names")
    return found[0] if found else None


def read_prairie_xml(path: Path) -> PrairieScan:
    """Parse a PrairieView XML (streamed: frames are cleared once read). Raises :class:`InputError` naming the file."""
    import xml.etree.ElementTree as ElementTree

    state: dict[str, Any] = {}
    stack: list[str] = []
    sequences: list[tuple[str, int]] = []  # (type, frame count)
    frame_channels: list[tuple[int, ...]] = []
    pages: list[tuple[str, int]] = []
    version = ""
    try:
        for event, element in ElementTree.iterparse(path, events=("start", "end")):
            if event == "start":
                stack.append(element.tag)
                if element.tag == PRAIRIE_ROOT:
                    version = element.get("version", "")
                elif element.tag == "Sequence":
                    sequences.append((element.get("type", ""), 0))
                continue
            stack.pop()
            if element.tag == "PVStateValue" and stack == [PRAIRIE_ROOT, "PVStateShard"]:
                indexed = {child.get("index", ""): child.get("value", "") for child in element.iter("IndexedValue")}
                state[element.get("key", "")] = element.get("value") if element.get("value") is not None else indexed
            elif element.tag == "Frame" and sequences:
                files = element.findall("File")
                frame_channels.append(tuple(int(file.get("channel", "1")) for file in files))
                pages.extend((file.get("filename", ""), int(file.get("page", "1")) - 1) for file in files)
                kind, count = sequences[-1]
                sequences[-1] = (kind, count + 1)
                element.clear()
    except (ElementTree.ParseError, ValueError) as error:
        raise InputError(f"{path}: not a readable PrairieView XML ({error}); copy the file again or write cindra_parameters.json and set file_io.input_format to 'tiff'") from error
    if not frame_channels or not all(frame_channels[0]):
        raise InputError(f"{path}: the PrairieView XML lists no frames with files; point file_io.data_path at a T-series folder")
    if any(channels != frame_channels[0] for channels in frame_channels):
        raise InputError(f"{path}: frames list different channels ({sorted(set(frame_channels))}); every frame must save the same channels")
    try:
        frame_period_s = float(state["framePeriod"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: no framePeriod in the scan's PVStateShard; write cindra_parameters.json beside the files") from error
    volumes = VOLUME_SEQUENCE in sequences[0][0]
    plane_count = sequences[0][1] if volumes else 1
    if volumes and any(count != plane_count for _, count in sequences):
        counts = sorted({count for _, count in sequences})
        raise InputError(f"{path}: volume sequences hold different frame counts ({counts}); remove the incomplete volume's files and its Sequence, or write cindra_parameters.json")
    microns = state.get("micronsPerPixel")
    pixel_size = (float(microns["XAxis"]), float(microns["YAxis"])) if isinstance(microns, dict) and {"XAxis", "YAxis"} <= microns.keys() else None
    return PrairieScan(path, frame_period_s, plane_count, frame_channels[0], pixel_size, sequences[0][0], version, tuple(pages))


def prairie_files(scan: PrairieScan) -> tuple[list[Path], list[int]]:
    """The TIFFs the XML names, in acquisition order, and how many pages of each it names.

    Raises :class:`InputError` (nothing is read or written) when files are missing or a file's
    pages are not named in order, in one run.
    """
    directory = scan.path.parent
    names: list[str] = []
    counts: dict[str, int] = {}
    problems = []
    for name, page in scan.pages:
        if not names or names[-1] != name:
            if name in counts:
                problems.append(f"{scan.path}: {name} is named in two separate runs of frames; each file's pages must be consecutive in acquisition order")
                break
            names.append(name)
            counts[name] = 0
        if page != counts[name]:
            problems.append(f"{scan.path}: {name} page {page + 1} is named where page {counts[name] + 1} is due; each file's pages must be named in order")
            break
        counts[name] += 1
    listed = set(os.listdir(directory))  # one listing, not a stat per file (a folder holds one file per frame)
    missing = [name for name in names if name not in listed and not (directory / name).is_file()]
    if missing:
        problems.insert(0, f"{scan.path}: {len(missing)} of the {len(names)} TIFF files it names are missing from {directory} ({listed_names(missing)}); copy them beside the XML or point file_io.data_path at the complete folder")
    if problems:
        raise InputError(*problems)
    return [directory / name for name in names], [counts[name] for name in names]


def prairie_acquisition(scan: PrairieScan) -> AcquisitionSource:
    """The acquisition the XML describes (see the module docstring)."""
    if len(scan.channels) > 2:
        raise InputError(f"{scan.path}: frames save {len(scan.channels)} channels ({list(scan.channels)}); cindra-dask processes 1 or 2")
    parameters = AcquisitionParameters(frame_rate=1.0 / scan.frame_period_s, plane_number=scan.plane_count, channel_number=len(scan.channels))
    read = {
        "framePeriod": scan.frame_period_s,
        "channels": list(scan.channels),
        "sequence_type": scan.sequence_type,
        "frames_per_sequence": scan.plane_count,
        "micronsPerPixel": list(scan.pixel_size_um) if scan.pixel_size_um else None,
        "version": scan.version,
    }
    return AcquisitionSource(BRUKER, scan.path, parameters, read, f"PrairieView {scan.version}".strip())


BRUKER_READER = FrameReader("bruker", "Bruker TIFF", "pages", read_tiff_pages)
"""The reader of a Bruker folder's TIFFs (the TIFF reader; the files in the XML's order)."""
