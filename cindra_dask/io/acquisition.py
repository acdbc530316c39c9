"""Where a recording's acquisition parameters come from: explicit sources and the movie files' own metadata.

Precedence: the configuration's ``acquisition`` section, else ``cindra_parameters.json`` (the
explicit sources), else what the movie files describe (a ScanImage TIFF header:
``io/scanimage.py``; a PrairieView XML: ``io/bruker.py``; an NWB TwoPhotonSeries: ``io/nwb.py``;
Miniscope AVIs' frame timestamps: ``io/miniscope.py``).
The files' metadata are read whenever the format has them, so that, beside an explicit source, every
field where the two differ is reported (the explicit source is used). The record of what was used
and read is kept in the store's root attributes (``acquisition_source``, see ``cindra_dask.store``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

from cindra_dask.config import ACQUISITION_FILE_NAME, AcquisitionParameters
from cindra_dask.errors import InputError

CONFIGURATION = "configuration"
PARAMETERS_FILE = "parameters_file"
SCANIMAGE = "scanimage"
BRUKER = "bruker"
NWB = "nwb"
MINISCOPE = "miniscope"
FILE_METADATA_KINDS = (SCANIMAGE, BRUKER, NWB, MINISCOPE)
"""Kinds of source that are the movie files' own metadata (inferred, not given)."""
FRAME_RATE_TOLERANCE = 1e-3
"""Relative difference of two frame rates reported as a disagreement."""
COORDINATE_TOLERANCE_PX = 0.5
"""Difference of two MROI region positions (px) reported as a disagreement."""


class AcquisitionSource(NamedTuple):
    """Acquisition parameters and where they were read.

    Attributes
    ----------
    kind : ``configuration``, ``parameters_file`` (``cindra_parameters.json``), ``scanimage``, ``bruker``, ``nwb`` or ``miniscope`` (AVI timestamps).
    path : the file read (None for the configuration).
    parameters : the parameters it gives.
    read : the raw values behind them (JSON-able), e.g. ``{"SI.hRoiManager.scanFrameRate": 30.0}``.
    detail : how it was read, for messages (``SI 2016+, Software/Artist tags``); may be empty.
    """

    kind: str
    path: Path | None
    parameters: AcquisitionParameters
    read: dict[str, Any]
    detail: str

    def describe(self) -> str:
        """Where the parameters come from, in words (``the ScanImage header (SI 2016+ ...) of /data/a.tif``)."""
        detail = f" ({self.detail})" if self.detail else ""
        return {
            CONFIGURATION: "the configuration's acquisition section",
            PARAMETERS_FILE: str(self.path),
            SCANIMAGE: f"the ScanImage header{detail} of {self.path}",
            BRUKER: f"the PrairieView XML{detail} {self.path}",
            NWB: f"the NWB TwoPhotonSeries{detail} of {self.path}",
            MINISCOPE: f"the Miniscope frame timestamps {self.path}",
        }[self.kind]

    def attributes(self) -> dict[str, Any]:
        """JSON-able record: kind, file, detail, parameters, raw values read."""
        return {"kind": self.kind, "file": str(self.path) if self.path else None, "detail": self.detail, "parameters": self.parameters.model_dump(mode="json"), "read": self.read}


class AcquisitionRecord(NamedTuple):
    """The acquisition in force and what else was read.

    Attributes
    ----------
    used : the source whose parameters are used.
    metadata : the movie files' own metadata when an explicit source was used beside them (else None).
    disagreements : one line per field where ``metadata`` differs from ``used`` (or why the
        metadata could not be read), naming both sources.
    """

    used: AcquisitionSource
    metadata: AcquisitionSource | None
    disagreements: tuple[str, ...]

    @property
    def parameters(self) -> AcquisitionParameters:
        """The acquisition parameters in force."""
        return self.used.parameters

    def attributes(self) -> dict[str, Any]:
        """The store's ``acquisition_source`` root attribute."""
        return {**self.used.attributes(), "metadata": self.metadata.attributes() if self.metadata else None, "disagreements": list(self.disagreements)}


def summary(parameters: AcquisitionParameters) -> str:
    """``30 Hz, 3 planes, 2 channels, 4 MROI regions`` (the last only in MROI mode)."""
    text = f"{parameters.frame_rate:g} Hz, {parameters.plane_number} plane{'s' * (parameters.plane_number != 1)}, {parameters.channel_number} channel{'s' * (parameters.channel_number != 1)}"
    return text + (f", {parameters.roi_number} MROI regions" if parameters.is_mroi else "")


def _region_extents(parameters: AcquisitionParameters) -> list[tuple[int, int]]:
    return [(int(lines[0]), int(lines[-1])) for lines in parameters.roi_lines]


def disagreements(explicit: AcquisitionSource, metadata: AcquisitionSource) -> list[str]:
    """One line per acquisition field where ``metadata`` differs from ``explicit`` (MROI rows compared by first and last row)."""
    first, second = explicit.parameters, metadata.parameters
    found = []
    if not math.isclose(first.frame_rate, second.frame_rate, rel_tol=FRAME_RATE_TOLERANCE):
        found.append(("frame_rate", f"{first.frame_rate:g}", f"{second.frame_rate:g}"))
    for name in ("plane_number", "channel_number", "roi_number"):
        if getattr(first, name) != getattr(second, name):
            found.append((name, str(getattr(first, name)), str(getattr(second, name))))
    if first.roi_number == second.roi_number and first.is_mroi:
        if _region_extents(first) != _region_extents(second):
            found.append(("roi_lines (first, last)", str(_region_extents(first)), str(_region_extents(second))))
        for name in ("roi_x_coordinates", "roi_y_coordinates"):
            if any(abs(a - b) > COORDINATE_TOLERANCE_PX for a, b in zip(getattr(first, name), getattr(second, name))):
                found.append((name, str(list(getattr(first, name))), str(list(getattr(second, name)))))
    return [f"acquisition {name}: {value} in {explicit.describe()} but {other} in {metadata.describe()}; using the former" for name, value, other in found]


def settle_acquisition(explicit: AcquisitionSource | None, metadata: AcquisitionSource | None, *, metadata_problems: list[str], directory: Path, label: str) -> AcquisitionRecord:
    """The acquisition in force: ``explicit`` if given (compared with ``metadata``), else the files' ``metadata``.

    ``metadata_problems`` are why the files' metadata could not be read; beside an explicit source
    they become disagreement lines, without one they are the error. Raises :class:`InputError`
    when neither source exists (``label`` names the files, e.g. ``TIFF``).
    """
    if explicit is not None:
        notes = [f"{problem} (not needed: using {explicit.describe()})" for problem in metadata_problems]
        return AcquisitionRecord(explicit, metadata, tuple(notes + (disagreements(explicit, metadata) if metadata is not None else [])))
    if metadata_problems:
        raise InputError(*metadata_problems)
    if metadata is None:
        raise InputError(
            f"{directory}: no {ACQUISITION_FILE_NAME} found (searched recursively) and the {label} files carry no acquisition metadata (ScanImage header, PrairieView XML, NWB rate, Miniscope timestamps); "
            "write one beside the movie files (frame_rate, plane_number, channel_number) or add an 'acquisition' section to the configuration"
        )
    return AcquisitionRecord(metadata, None, ())
