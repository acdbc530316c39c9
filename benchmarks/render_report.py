"""Render a cindra-dask QC report in headless Chromium and save a screenshot (a visual check).

Usage::

    .venv/bin/python benchmarks/render_report.py [STORE_OR_HTML] [--output benchmarks/results/report.png]

With a store (``*.zarr``) the report is written first (`cindra_dask.export.report.write_report`); without
an argument a small store is simulated and run through every available phase (or, when the
pipeline cannot process it yet, a synthetic store from the tests is used). Needs the Debian
package ``chromium`` (/usr/bin/chromium). Chromium runs with networking features off, so the
screenshot also shows that the report needs nothing from outside the file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium_path() -> str:
    """The Chromium executable, or exit with how to install it."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    sys.exit("chromium not found: install the Debian package (apt-get install -y chromium)")


def screenshot(html_path: Path, png_path: Path, *, width: int = 1400, height: int = 3000) -> None:
    """Render ``html_path`` headless and write a ``width``×``height`` PNG screenshot."""
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png_path}", f"--window-size={width},{height}", html_path.absolute().as_uri()]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if completed.returncode != 0 or not png_path.is_file():
        sys.exit(f"chromium failed ({completed.returncode}):\n{completed.stderr[-2000:]}")


def demo_store(directory: Path) -> Path:
    """A small store: a real run (simulated 96², 300 frames) if the pipeline processes it, else synthetic."""
    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.simulate import SimulationParameters, write_recording

    data = directory / "data" / "report_demo"
    write_recording(SimulationParameters(frame_height=96, frame_width=96, frame_count=300, cell_count=18, seed=3), data)
    configuration = configuration_from_mapping(
        {"runtime": {"display_progress_bars": False}, "main": {"tau": 0.7}, "file_io": {"data_path": str(data), "output_path": str(directory / "results")}, "cluster": {"workers": 1, "dashboard_address": ":0"}},
        source="render_report",
    )
    report = run_single_recording(configuration)
    if any(outcome.name.startswith("extraction/") and outcome.state in ("ran", "skipped") for outcome in report.outcomes):
        return report.store_path
    print("the pipeline does not process yet; using the synthetic store of tests/test_manifest.py", file=sys.stderr)
    sys.path.insert(0, str(ROOT))
    from tests.test_manifest import write_synthetic_store

    return write_synthetic_store(directory / "synthetic").path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", type=Path, help="a store (*.zarr) or a report (*.html); default: simulate one")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "report.png")
    parser.add_argument("--html", type=Path, default=None, help="where to keep the HTML (default: a temporary folder, or beside the store)")
    arguments = parser.parse_args()

    from cindra_dask.export.report import write_report

    with tempfile.TemporaryDirectory(prefix="cindra-report-") as scratch:
        source = arguments.source or demo_store(Path(scratch))
        if source.suffix == ".html":
            html_path = source
        else:
            html_path = write_report(source, arguments.html or Path(scratch) / "report.html")
        screenshot(html_path, arguments.output)
        size = html_path.stat().st_size
        print(f"report {html_path} ({size / 1024:.0f} KiB) rendered to {arguments.output}")


if __name__ == "__main__":
    main()
