#!/usr/bin/env bash
# The project's checks: lint, format, types, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
V=.venv/bin
$V/ruff check .
$V/ruff format --check .
$V/mypy
$V/mypy --strict worker/gke_inference_worker
$V/python -m pytest "$@"
