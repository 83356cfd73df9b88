"""A throwaway PostgreSQL server on 127.0.0.1 for the store and service tests.

The server binaries come from the machine (``/usr/lib/postgresql/*/bin`` or
PATH). PostgreSQL refuses to run as root, so when the tests run as root (CI
does) ``initdb`` and ``postgres`` are started with ``subprocess.Popen(user=,
group=)`` as the ``postgres`` system user (or ``nobody``), in a temp
directory owned by that user. The server listens on a free port on 127.0.0.1
only (no Unix socket), trusts local connections, and is stopped by the PID of
the postmaster (SIGINT = fast shutdown), then its directory is removed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_postgres_bin() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (Path(candidate) / "postgres").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account to run the server as when we are root (None when we are not)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and there is no postgres or nobody user")


@dataclass
class PostgresServer:
    bin_dir: Path
    base_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    user: str = "gke"
    launch: dict[str, Any] | None = None  # Popen arguments, to start it again

    def restart(self, down_seconds: float = 0.0, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown: every session ends), stay down for
        ``down_seconds``, start it again on the same port and data."""
        import psycopg

        assert self.launch is not None
        os.kill(self.postmaster_pid(), signal.SIGINT)
        self.process.wait(timeout=20)
        time.sleep(down_seconds)
        with open(self.base_dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(**self.launch, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError("postgres did not come back in time") from None
                time.sleep(0.1)

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        """A fresh database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def postmaster_pid(self) -> int:
        pid_file = self.base_dir / "data" / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.postmaster_pid(), signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def start_postgres(timeout: float = 30.0) -> PostgresServer:
    import psycopg

    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable("no PostgreSQL server binaries (initdb, postgres) found")
    account = _unprivileged_user()
    # Not pytest's tmp_path: its parents are 0700 root, which the server user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="gke-inference-pg-", dir="/tmp"))
    run_as: dict[str, Any] = {}
    if account is not None:
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"}
    data = base / "data"
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "gke",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        cwd=base,
        env=env,
        check=True,
        capture_output=True,
        **run_as,
    )
    log = open(base / "server.log", "wb")  # noqa: SIM115 - kept open for the server's lifetime
    port = _free_port()
    launch: dict[str, Any] = {
        "args": [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        "cwd": base,
        "env": env,
        **run_as,
    }
    process = subprocess.Popen(**launch, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    server = PostgresServer(bin_dir, base, port, process, launch=launch)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = (base / "server.log").read_text(errors="replace")
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{output}")
        try:
            with psycopg.connect(server.admin_url, connect_timeout=2):
                return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("postgres did not accept connections in time") from None
            time.sleep(0.1)


_shared: PostgresServer | None = None


def shared_postgres() -> PostgresServer:
    """One server per test process, stopped at exit."""
    global _shared
    if _shared is None or _shared.process.poll() is not None:
        import atexit

        _shared = start_postgres()
        atexit.register(_shared.stop)
    return _shared


def required_postgres(start: Any = None) -> PostgresServer:
    """A server for a test (``start``: how, default the shared one): skipped on a machine
    without the server binaries, a failure in CI (``CI`` set)."""
    import pytest

    try:
        return (start or shared_postgres)()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))
