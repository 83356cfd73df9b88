#!/usr/bin/env bash
# Create .venv and install the project, its worker and every dev tool, with
# the exact versions of constraints.txt. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
  -e ".[dev]" -e ./worker
echo "setup: .venv ready ($(.venv/bin/python --version))" >&2
