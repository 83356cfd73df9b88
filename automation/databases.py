"""The databases a :class:`~gke_inference.automation.store.SQLStore` runs on, and how to open one.

- :class:`SQLiteStore` (stdlib ``sqlite3``, one file): one service process per
  file. On start every operation still ``queued``/``running`` belonged to a
  process that stopped, so :meth:`~SQLiteStore.recover` marks it failed.
- :class:`PostgresStore` (psycopg 3): several replicas behind a load balancer.
  Each replica holds a session advisory lock on its own id while it lives, and
  an operation records the replica that runs it; :meth:`~PostgresStore.recover`
  fails only the operations whose replica no longer holds its lock. While an
  operation runs, its worker holds ``pg_try_advisory_lock`` on a hash of
  ``env/workload`` (:meth:`~PostgresStore.workload_lock`), so one operation per
  workload runs across replicas.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gke_inference.automation.store import INTERRUPTED, SQLStore


def advisory_key(*parts: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock`` from a namespaced name.

    The namespace is a fixed string, not the project name: replicas of two
    versions must compute the same keys.
    """
    digest = hashlib.sha256("/".join(("gke-inference", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _schema(log_id: str) -> tuple[str, ...]:
    """The tables and indexes; ``log_id`` is the dialect's auto-incrementing key column."""
    return (
        """CREATE TABLE IF NOT EXISTS operations (
        id TEXT PRIMARY KEY, environment TEXT NOT NULL, workload TEXT NOT NULL,
        kind TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
        started_at TEXT, finished_at TEXT, owner TEXT NOT NULL, spec TEXT, result TEXT,
        error TEXT, violations TEXT)""",
        """CREATE UNIQUE INDEX IF NOT EXISTS one_active_operation_per_workload
        ON operations (environment, workload) WHERE status IN ('queued', 'running')""",
        f"""CREATE TABLE IF NOT EXISTS operation_logs (
        id {log_id}, operation_id TEXT NOT NULL, line TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS operation_logs_by_operation ON operation_logs (operation_id, id)",
        """CREATE TABLE IF NOT EXISTS workloads (
        environment TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
        outputs TEXT NOT NULL, last_operation TEXT, updated_at TEXT NOT NULL,
        PRIMARY KEY (environment, name))""",
    )


# --------------------------------------------------------------------------- SQLite


class SQLiteStore(SQLStore):
    """One file, one service process."""

    schema = _schema("INTEGER PRIMARY KEY AUTOINCREMENT")

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._locks_guard = threading.Lock()
        self._held: set[tuple[str, str]] = set()
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    @contextlib.contextmanager
    def workload_lock(self, environment: str, workload: str) -> Iterator[bool]:
        key = (environment, workload)
        with self._locks_guard:
            acquired = key not in self._held
            self._held.add(key)
        try:
            yield acquired
        finally:
            if acquired:
                with self._locks_guard:
                    self._held.discard(key)

    def recover(self, message: str = INTERRUPTED) -> list[str]:
        with self._transaction() as conn:
            return self._fail_active(conn, None, message)


# --------------------------------------------------------------------------- PostgreSQL


class PostgresStore(SQLStore):
    """Shared by replicas; advisory locks coordinate them."""

    placeholder = "%s"
    schema = (
        # Serialize schema creation across replicas starting together.
        f"SELECT pg_advisory_xact_lock({advisory_key('schema')})",
        *_schema("BIGSERIAL PRIMARY KEY"),
    )

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        import psycopg

        super().__init__()
        self.url = url
        self._connect_timeout = connect_timeout
        # Held for this store's lifetime: other replicas see that we are alive.
        self._liveness = psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout)
        self._liveness.execute(
            "SELECT pg_advisory_lock(%s)", (advisory_key("replica", self.instance_id),)
        )

    def _connect(self, *, autocommit: bool = False) -> Any:
        import psycopg

        return psycopg.connect(
            self.url, autocommit=autocommit, connect_timeout=self._connect_timeout
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._connect() as conn:  # commits on success, rolls back on error
            yield conn

    def _is_unique_violation(self, exc: Exception) -> bool:
        import psycopg.errors

        return isinstance(exc, psycopg.errors.UniqueViolation)

    @contextlib.contextmanager
    def workload_lock(self, environment: str, workload: str) -> Iterator[bool]:
        """``pg_try_advisory_lock`` on ``env/workload`` for as long as the block runs."""
        key = advisory_key("workload", environment, workload)
        with self._connect(autocommit=True) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            acquired = bool(row and row[0])
            try:
                yield acquired
            finally:
                if acquired:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def replica_alive(self, owner: str) -> bool:
        if owner == self.instance_id:
            return True
        key = advisory_key("replica", owner)
        with self._connect(autocommit=True) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row and row[0]:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                return False
            return True

    def recover(self, message: str = INTERRUPTED) -> list[str]:
        """Fail the active operations of replicas that are gone (not those of live ones)."""
        with self._transaction() as conn:
            owners = [
                str(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT owner FROM operations WHERE status IN ('queued', 'running')"
                ).fetchall()
            ]
        failed: list[str] = []
        for owner in owners:
            if self.replica_alive(owner):
                continue
            with self._transaction() as conn:
                failed += self._fail_active(conn, owner, message)
        return failed

    def close(self) -> None:
        self._liveness.close()


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgres://", "postgresql://"))


def open_store(target: str | Path) -> SQLStore:
    """A PostgreSQL URL or a SQLite file path; the schema is created if missing."""
    text = str(target)
    store: SQLStore = PostgresStore(text) if is_postgres_url(text) else SQLiteStore(text)
    store.init()
    return store


def redact_url(target: str) -> str:
    """A database URL without its password, for messages."""
    if not is_postgres_url(target) or "@" not in target:
        return target
    scheme, rest = target.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
