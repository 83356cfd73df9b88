#!/usr/bin/env bash
# Create .venv and install the project, its worker and every dev tool, with
# the exact versions of constraints.txt. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
echo "setup: installing the project and its dev tools into .venv; this takes a few minutes the first time (the Pulumi provider SDKs are large)..." >&2
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
  -e ".[dev]" -e ./worker
echo "setup: .venv ready ($(.venv/bin/python --version))" >&2
