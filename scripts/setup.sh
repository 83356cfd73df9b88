#!/usr/bin/env bash
# Create .venv and install the project, its worker and every dev tool, with
# the exact versions of constraints.txt, and promtool into .venv/bin. Safe to
# run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# promtool (Prometheus' rule checker and rule unit tester) rehearses the latency
# recording rules (tests/test_latency_autoscaling.py). Debian ships it in the
# prometheus package; only the one binary is unpacked (no service is installed).
PROMETHEUS_DEB="prometheus=2.42.0+ds-5+deb12u1"
echo "setup: installing the project and its dev tools into .venv; this takes a few minutes the first time (the Pulumi provider SDKs are large)..." >&2
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
  -e ".[dev]" -e ./worker

install_promtool() {
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && { apt-get download -qq "$PROMETHEUS_DEB" 2>/dev/null \
    || { apt-get update -qq >/dev/null 2>&1 || true; apt-get download -qq "$PROMETHEUS_DEB" 2>/dev/null; } \
    || { echo "setup: $PROMETHEUS_DEB is gone from the archive; taking its current version" >&2;
         apt-get download -qq prometheus; }; }) >/dev/null
  dpkg -x "$tmp"/prometheus_*.deb "$tmp/unpacked"
  install -m 0755 "$tmp/unpacked/usr/bin/promtool" .venv/bin/promtool
}
if [ ! -x .venv/bin/promtool ]; then
  if command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
    install_promtool
  elif command -v promtool >/dev/null; then
    ln -sf "$(command -v promtool)" .venv/bin/promtool
  else
    echo "setup: no apt-get and no promtool on PATH: install Prometheus' promtool, or the latency rule tests fail" >&2
  fi
fi
echo "setup: .venv ready ($(.venv/bin/python --version), $(.venv/bin/promtool --version 2>&1 | head -1))" >&2
