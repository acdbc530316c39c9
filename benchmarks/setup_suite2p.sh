#!/usr/bin/env bash
# Install suite2p 1.1.0 (the reference we benchmark against) into its own virtual environment,
# never into the project's: benchmarks/.suite2p-venv. CPU-only torch first, then suite2p pinned
# to that torch so pip does not pull the CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.suite2p-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q torch==2.13.0
echo "torch==2.13.0" > "$VENV/torch-constraint.txt"
"$VENV/bin/pip" install -q suite2p==1.1.0 tifffile psutil -c "$VENV/torch-constraint.txt"
echo "suite2p installed in benchmarks/$VENV"
