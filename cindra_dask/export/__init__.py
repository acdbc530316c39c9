"""Exports of a recording store to other tools' file layouts (suite2p now; NWB later)."""

from __future__ import annotations

from cindra_dask.export.suite2p import export_suite2p

__all__ = ["export_suite2p"]
