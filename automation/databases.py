"""The databases a :class:`~gke_inference.automation.store.SQLStore` runs on, and how to open one.

- :class:`SQLiteStore` (stdlib ``sqlite3``, one file): one service process per
  file, enforced: the store holds an exclusive ``flock`` on ``<file>.lock`` for
  its lifetime, so a second service on the same file is refused before it
  touches anything, and the kernel releases the lock when the process dies
  (kill -9 included). Only the lock's holder recovers, so on start every
  operation still ``queued``/``running`` provably belonged to a stopped process,
  and :meth:`~SQLiteStore.recover` marks it failed.
- :class:`PostgresStore` (psycopg 3): several replicas behind a load balancer.
  An operation records the replica that runs it. A replica is alive while it
  holds a session advisory lock on its own id **or** its heartbeat (the
  ``replicas`` table, written every :data:`HEARTBEAT_SECONDS`) is younger than
  :data:`LEASE_SECONDS`. The lock goes the moment a replica's session ends
  (kill -9); the heartbeat survives a database restart, which drops every
  session and lock while the replicas live on (they retake their lock when
  they reconnect). Every replica runs :meth:`~PostgresStore.maintain`
  periodically: heartbeat, retake the lock if the database lost it, and fail
  the operations of replicas that are neither locked nor heartbeating, so a
  dead replica's work is released within about a lease, and an operation a
  live replica still runs is never failed. While an operation runs, its worker
  holds ``pg_try_advisory_lock`` on a hash of ``env/workload``
  (:meth:`~PostgresStore.workload_lock`), so one operation per workload runs
  across replicas.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from gke_inference.automation.settings import redact_error as redact_error
from gke_inference.automation.settings import redact_url as redact_url
from gke_inference.automation.store import (
    INTERRUPTED,
    SQLStore,
    StoreUnavailableError,
    replica_gone,
)

#: A live replica writes its heartbeat this often (the service's maintenance loop).
HEARTBEAT_SECONDS = 5.0
#: A replica whose heartbeat is older, and who holds no liveness lock, is gone.
LEASE_SECONDS = 30.0
LEASE_ENV = "GKE_INFERENCE_REPLICA_LEASE_SECONDS"


def lease_seconds(environ: Mapping[str, str] | None = None) -> float:
    """The lease: LEASE_ENV, else LEASE_SECONDS; at least three heartbeats."""
    text = (os.environ if environ is None else environ).get(LEASE_ENV, "").strip()
    if not text:
        return LEASE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 3 * HEARTBEAT_SECONDS or value == float("inf"):
        raise StoreUnavailableError(
            f"{LEASE_ENV} must be a number of seconds from {3 * HEARTBEAT_SECONDS:g} "
            f"(three heartbeats), got {text[:40]!r}"
        )
    return value


#: Pooled PostgreSQL sessions per replica: the worker threads and the request threads
#: that touch the store at once (bench/store_throughput.py).
POOL_SIZE = 16


def _wait_for(try_once: Callable[[], bool], wait_seconds: float) -> bool:
    """``try_once()`` until it is true or ``wait_seconds`` have passed (backing off)."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.02
    while True:
        if try_once():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.5)


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
        """CREATE TABLE IF NOT EXISTS replicas (
        id TEXT PRIMARY KEY, heartbeat_at TEXT NOT NULL)""",
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
        self._process_lock = self._claim()
        try:
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            self.close()
            readonly = "readonly" in str(exc)
            problem = "is not writable" if readonly else "cannot be opened"
            raise StoreUnavailableError(f"{self.path} {problem}: {exc}") from None

    def _claim(self) -> IO[str]:
        """The exclusive lock of ``<file>.lock``: one service process per file."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            handle = open(lock_path, "a+")  # noqa: SIM115 - held for the store's lifetime
        except OSError as exc:
            raise StoreUnavailableError(f"{lock_path} cannot be opened: {exc}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreUnavailableError(
                f"{self.path} is in use by another gke-inference service (one process per "
                "SQLite file; run replicas on PostgreSQL)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    def init(self) -> None:
        """The schema and a first write: a database this process cannot write is refused
        now, not at the first request."""
        try:
            super().init()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"{self.path} is not writable: {exc}") from None

    def close(self) -> None:
        lock = getattr(self, "_process_lock", None)
        if lock is not None and not lock.closed:
            lock.close()  # releases the flock

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
    def workload_lock(
        self, environment: str, workload: str, wait_seconds: float = 0.0
    ) -> Iterator[bool]:
        key = (environment, workload)

        def take() -> bool:
            with self._locks_guard:
                if key in self._held:
                    return False
                self._held.add(key)
                return True

        acquired = _wait_for(take, wait_seconds)
        try:
            yield acquired
        finally:
            if acquired:
                with self._locks_guard:
                    self._held.discard(key)

    def recover(self, message: str | None = None) -> list[str]:
        """Every active operation: this process holds the file's lock, so whoever ran them
        has stopped."""
        with self._transaction() as conn:
            return self._fail_active(conn, None, message or INTERRUPTED)


# --------------------------------------------------------------------------- PostgreSQL


class PostgresStore(SQLStore):
    """Shared by replicas; advisory locks coordinate them."""

    placeholder = "%s"
    schema = (
        # Serialize schema creation across replicas starting together.
        f"SELECT pg_advisory_xact_lock({advisory_key('schema')})",
        *_schema("BIGSERIAL PRIMARY KEY"),
    )

    def __init__(self, url: str, *, connect_timeout: int = 10, pool_size: int = POOL_SIZE) -> None:
        from psycopg_pool import ConnectionPool

        super().__init__()
        self.lease = timedelta(seconds=lease_seconds())  # before any session is opened
        self.url = url
        self._connect_timeout = connect_timeout
        # Transactions borrow a pooled session (one new session per statement cost more
        # than the statement); a session that died with a database restart is checked
        # and replaced on checkout. Locks held for an operation's length use sessions
        # of their own (workload_lock, the liveness lock).
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"connect_timeout": connect_timeout},
            check=ConnectionPool.check_connection,
            timeout=connect_timeout + 20,
            name="gke-inference-store",
            open=True,
        )
        # Held for this store's lifetime (retaken after the database restarts): other
        # replicas see that we are alive.
        self._liveness: Any = None
        self._liveness_guard = threading.Lock()
        self._take_liveness()

    def _take_liveness(self) -> None:
        with self._liveness_guard:
            if self._liveness is not None and not self._liveness.closed:
                try:
                    self._liveness.execute("SELECT 1")
                    return
                except Exception:  # noqa: BLE001 - the session is gone: open a new one
                    with contextlib.suppress(Exception):
                        self._liveness.close()
            conn = self._connect(autocommit=True)
            conn.execute(
                "SELECT pg_advisory_lock(%s)", (advisory_key("replica", self.instance_id),)
            )
            self._liveness = conn

    def _connect(self, *, autocommit: bool = False) -> Any:
        import psycopg

        return psycopg.connect(
            self.url, autocommit=autocommit, connect_timeout=self._connect_timeout
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._pool.connection() as conn:  # commits on success, rolls back on error
            yield conn

    def _is_unique_violation(self, exc: Exception) -> bool:
        import psycopg.errors

        return isinstance(exc, psycopg.errors.UniqueViolation)

    @contextlib.contextmanager
    def workload_lock(
        self, environment: str, workload: str, wait_seconds: float = 0.0
    ) -> Iterator[bool]:
        """``pg_try_advisory_lock`` on ``env/workload`` for as long as the block runs
        (retried for up to ``wait_seconds``)."""
        key = advisory_key("workload", environment, workload)
        with self._connect(autocommit=True) as conn:

            def take() -> bool:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                return bool(row and row[0])

            acquired = _wait_for(take, wait_seconds)
            try:
                yield acquired
            finally:
                if acquired:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _holds_liveness_lock(self, owner: str) -> bool:
        key = advisory_key("replica", owner)
        with self._connect(autocommit=True) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row and row[0]:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                return False
            return True

    def replica_alive(self, owner: str, heartbeats: dict[str, datetime] | None = None) -> bool:
        """Its liveness lock is held, or its heartbeat is younger than the lease."""
        if owner == self.instance_id or self._holds_liveness_lock(owner):
            return True
        beat = (heartbeats if heartbeats is not None else self.heartbeats()).get(owner)
        return beat is not None and datetime.now(UTC) - beat < self.lease

    def recover(self, message: str | None = None) -> list[str]:
        """Fail the active operations of replicas that are gone (not those of live ones);
        the record says which replica stopped."""
        with self._transaction() as conn:
            owners = [
                str(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT owner FROM operations WHERE status IN ('queued', 'running')"
                ).fetchall()
            ]
        heartbeats = self.heartbeats()
        failed: list[str] = []
        for owner in owners:
            if self.replica_alive(owner, heartbeats):
                continue
            with self._transaction() as conn:
                failed += self._fail_active(conn, owner, message or replica_gone(owner))
        return failed

    def maintain(self) -> list[str]:
        """Heartbeat, retake the liveness lock if the database lost it, recover, and drop
        heartbeats of replicas long gone."""
        self.heartbeat()
        self._take_liveness()
        failed = self.recover()
        stale = datetime.now(UTC) - 10 * self.lease
        self.forget_stale_heartbeats(stale.isoformat(timespec="milliseconds"))
        return failed

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the database may be gone: nothing to say
            self.forget_heartbeat()
        with self._liveness_guard:
            if self._liveness is not None:
                self._liveness.close()
        self._pool.close()


def _store_errors() -> tuple[type[Exception], ...]:
    import psycopg

    return (sqlite3.Error, psycopg.Error, StoreUnavailableError)


#: What a database that is down, restarting or full raises through the store.
STORE_ERRORS = _store_errors()


#: Keywords that make a keyword/value string a PostgreSQL connection string.
_DSN_KEYWORDS = frozenset({"host", "hostaddr", "port", "dbname", "user", "service"})


def is_postgres_url(target: str) -> bool:
    """A ``postgres[ql]://`` URL, or a libpq keyword/value string (``host=db dbname=x``);
    anything else is a SQLite path."""
    if target.startswith(("postgres://", "postgresql://")):
        return True
    if "=" not in target:
        return False
    from psycopg.conninfo import conninfo_to_dict

    try:
        keys = set(conninfo_to_dict(target))
    except Exception:  # noqa: BLE001 - not a connection string: a (strange) file name
        return False
    return bool(keys & _DSN_KEYWORDS)


def open_store(target: str | Path) -> SQLStore:
    """A PostgreSQL URL or a SQLite file path; the schema is created if missing."""
    text = str(target)
    store: SQLStore = PostgresStore(text) if is_postgres_url(text) else SQLiteStore(text)
    store.init()
    return store
