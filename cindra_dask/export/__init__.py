"""Exports of a recording store to other tools' file layouts: suite2p folders, NWB (optional pynwb; one file per store, or per recording of a tracked dataset), the QC report, tracked tables."""

from __future__ import annotations

from cindra_dask.export.nwb import export_nwb, export_tracked_nwb
from cindra_dask.export.suite2p import export_suite2p

__all__ = ["export_nwb", "export_suite2p", "export_tracked_nwb"]
