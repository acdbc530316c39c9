#!/usr/bin/env bash
# Build CaImAn (the CNMF peer) from its public source into its own virtual environment,
# benchmarks/.caiman-venv, never the project's. CaImAn is not on the package registry under its
# name, so the source comes from a snapshot of flatironinstitute/CaImAn (argument: a checkout).
# What CNMF imports is installed (the CNN evaluation is not used; no Qt GUI).
set -euo pipefail
SOURCE=${1:?usage: setup_caiman.sh <CaImAn checkout>}
cd "$(dirname "$0")"
VENV=.caiman-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
# caiman's modules import tensorflow (CPU build, CaImAn's range), bokeh, holoviews and ipywidgets at
# module level even where CNMF does not use them; scipy < 1.14: later scipy.linalg.toeplitz batches
# 2-D inputs, which breaks CaImAn's AR estimate (estimate_time_constant)
"$VENV/bin/pip" install -q "numpy>=1.26,<2" "scipy>=1.10.1,<1.14" "scikit-image>=0.19" "scikit-learn>=1.2" opencv-python-headless tifffile h5py psutil \
  "peakutils>=1.3.5" cython setuptools wheel tqdm matplotlib pims av zarr pynwb ipyparallel ipywidgets certifi "bokeh>=3.1.1" "holoviews>=1.16.2" \
  "tensorflow-cpu>=2.4,<2.16"
# setup.py installs example movies, test data and models that a repository snapshot lacks (files of
# 4 MiB and more are absent): empty placeholders where they are missing (CNMF reads none of them)
( cd "$SOURCE" && mkdir -p model && python3 - <<'PYTHON'
import re, pathlib
text = pathlib.Path("setup.py").read_text()
for name in re.findall(r"'((?:example_movies|testdata)/[^']+)'", text):
    path = pathlib.Path(name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
PYTHON
)
"$VENV/bin/pip" install -q --no-deps --no-build-isolation "$SOURCE"
"$VENV/bin/python" -c "import caiman, caiman.motion_correction; from caiman.source_extraction.cnmf import cnmf, params"
echo "CaImAn installed in benchmarks/$VENV"
