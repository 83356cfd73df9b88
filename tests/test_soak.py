"""The soak and fault test in its short form (scripts/soak.py --short).

Two service replicas on one PostgreSQL under concurrent up/preview/destroy
requests while a replica is killed with SIGKILL and PostgreSQL restarts; then one
replica on a SQLite file whose disk fills up. The script checks that every
accepted operation finished, no workload is left busy, the store agrees with the
offline state, no secret leaks into logs or responses and memory stayed bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import PostgresUnavailable, find_postgres_bin

REPO = Path(__file__).resolve().parents[1]


def test_the_short_soak_passes() -> None:
    if find_postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is required in CI for the soak")
        pytest.skip(str(PostgresUnavailable("no PostgreSQL server binaries")))
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "soak.py"), "--short"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert done.returncode == 0, "\n".join(summary) + done.stderr[-3000:]
    assert "[postgres] ok" in summary and "[sqlite] ok" in summary
    faults = "\n".join(summary)
    assert "SIGKILL replica-0" in faults and "PostgreSQL restarted" in faults
    assert "disk full" in faults
