"""Persistence for the service: operations, their log lines, and submitted workloads.

Two backends, one interface:

- :class:`SQLiteStore` (stdlib ``sqlite3``, one file): one service process per
  file. On start every operation still ``queued``/``running`` belonged to a
  process that stopped, so :meth:`recover` marks it failed.
- :class:`PostgresStore` (psycopg 3): several replicas behind a load balancer.
  Each replica holds a session advisory lock on its own id while it lives, and
  an operation records the replica that runs it; :meth:`recover` fails only the
  operations whose replica no longer holds its lock. While an operation runs,
  its worker holds ``pg_try_advisory_lock`` on a hash of ``env/workload``
  (:meth:`workload_lock`), so one operation per workload runs across replicas.

In both, a partial unique index allows at most one ``queued``/``running``
operation per workload: a second submission fails atomically with
:class:`WorkloadBusyError` (HTTP 409), whichever replica receives it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ACTIVE = ("queued", "running")
INTERRUPTED = "the service stopped while this operation was queued or running"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_id() -> str:
    return uuid.uuid4().hex


class WorkloadBusyError(Exception):
    def __init__(self, environment: str, workload: str, operation: str | None) -> None:
        self.environment = environment
        self.workload = workload
        self.operation = operation
        super().__init__(
            f"workload {workload} in {environment} already has an operation in progress"
            + (f" ({operation})" if operation else "")
        )


@dataclass
class Operation:
    id: str
    environment: str
    workload: str
    kind: str  # up | preview | destroy
    status: str = "queued"  # queued | running | succeeded | failed
    created_at: str = field(default_factory=now)
    started_at: str | None = None
    finished_at: str | None = None
    owner: str = ""
    spec: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    violations: list[dict[str, Any]] | None = None
    log: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        result = self.result or {}
        return {
            "id": self.id,
            "environment": self.environment,
            "workload": self.workload,
            "kind": self.kind,
            "status": self.status,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "log": self.log,
            "outputs": result.get("outputs", {}),
            "changes": result.get("changes", {}),
            "policy": result.get("policy"),
            "error": self.error,
            "violations": self.violations or [],
        }


@dataclass
class WorkloadRecord:
    environment: str
    name: str
    spec: dict[str, Any]
    status: str  # deploying | deployed | failed | destroying
    outputs: dict[str, Any]
    last_operation: str | None
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "name": self.name,
            "status": self.status,
            "spec": self.spec,
            "outputs": self.outputs,
            "lastOperation": self.last_operation,
            "updatedAt": self.updated_at,
        }


def advisory_key(*parts: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock`` from a namespaced name."""
    digest = hashlib.sha256("/".join(("gke-inference", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_INSERT_OPERATION = (
    "INSERT INTO operations (id, environment, workload, kind, status, created_at, started_at, "
    "finished_at, owner, spec, result, error, violations) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_OPERATION = (
    "SELECT id, environment, workload, kind, status, created_at, started_at, finished_at, "
    "owner, spec, result, error, violations FROM operations WHERE id = ?"
)
_ACTIVE_OPERATIONS = "SELECT id FROM operations WHERE status IN ('queued', 'running')"
_ACTIVE_OPERATIONS_OF = (
    "SELECT id FROM operations WHERE status IN ('queued', 'running') AND owner = ?"
)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _load(value: Any) -> Any:
    return None if value is None else json.loads(value)


class SQLStore:
    """The SQL both backends share; subclasses provide connections and locks."""

    placeholder = "?"
    schema: Sequence[str] = ()

    def __init__(self) -> None:
        self.instance_id = new_id()

    # -- subclass hooks ------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:  # pragma: no cover - overridden
        raise NotImplementedError
        yield

    def _is_unique_violation(self, exc: Exception) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def workload_lock(
        self, environment: str, workload: str
    ) -> contextlib.AbstractContextManager[bool]:
        raise NotImplementedError  # pragma: no cover - overridden

    def recover(self, message: str = INTERRUPTED) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        return None

    # -- helpers -------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _execute(self, conn: Any, text: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self._sql(text), tuple(params))

    def init(self) -> None:
        with self._transaction() as conn:
            for statement in self.schema:
                conn.execute(statement)

    # -- operations ----------------------------------------------------------

    def submit(self, operation: Operation, workload_spec: dict[str, Any] | None = None) -> None:
        """Queue ``operation``; with ``workload_spec`` also record the submitted workload.

        Raises :class:`WorkloadBusyError` when the workload already has a
        queued or running operation (checked atomically by the unique index).
        """
        operation.owner = operation.owner or self.instance_id
        try:
            with self._transaction() as conn:
                self._execute(
                    conn,
                    _INSERT_OPERATION,
                    (
                        operation.id,
                        operation.environment,
                        operation.workload,
                        operation.kind,
                        operation.status,
                        operation.created_at,
                        operation.started_at,
                        operation.finished_at,
                        operation.owner,
                        _dump(operation.spec),
                        _dump(operation.result),
                        operation.error,
                        _dump(operation.violations),
                    ),
                )
                if workload_spec is not None:
                    self._execute(
                        conn,
                        "INSERT INTO workloads (environment, name, spec, status, outputs, "
                        "last_operation, updated_at) VALUES (?, ?, ?, 'deploying', '{}', ?, ?) "
                        "ON CONFLICT (environment, name) DO UPDATE SET spec = excluded.spec, "
                        "status = excluded.status, last_operation = excluded.last_operation, "
                        "updated_at = excluded.updated_at",
                        (
                            operation.environment,
                            operation.workload,
                            _dump(workload_spec),
                            operation.id,
                            now(),
                        ),
                    )
                elif operation.kind == "destroy":
                    self._execute(
                        conn,
                        "UPDATE workloads SET status = 'destroying', last_operation = ?, "
                        "updated_at = ? WHERE environment = ? AND name = ?",
                        (operation.id, now(), operation.environment, operation.workload),
                    )
        except Exception as exc:
            if self._is_unique_violation(exc):
                active = self.active_operation(operation.environment, operation.workload)
                raise WorkloadBusyError(operation.environment, operation.workload, active) from None
            raise

    def active_operation(self, environment: str, workload: str) -> str | None:
        with self._transaction() as conn:
            row = self._execute(
                conn,
                "SELECT id FROM operations WHERE environment = ? AND workload = ? "
                "AND status IN ('queued', 'running')",
                (environment, workload),
            ).fetchone()
        return str(row[0]) if row else None

    def get_operation(self, operation_id: str) -> Operation | None:
        with self._transaction() as conn:
            row = self._execute(conn, _SELECT_OPERATION, (operation_id,)).fetchone()
            if row is None:
                return None
            lines = self._execute(
                conn,
                "SELECT line FROM operation_logs WHERE operation_id = ? ORDER BY id",
                (operation_id,),
            ).fetchall()
        return Operation(
            id=row[0],
            environment=row[1],
            workload=row[2],
            kind=row[3],
            status=row[4],
            created_at=row[5],
            started_at=row[6],
            finished_at=row[7],
            owner=row[8],
            spec=_load(row[9]),
            result=_load(row[10]),
            error=row[11],
            violations=_load(row[12]),
            log=[str(line[0]) for line in lines],
        )

    def mark_running(self, operation_id: str) -> bool:
        with self._transaction() as conn:
            cursor = self._execute(
                conn,
                "UPDATE operations SET status = 'running', started_at = ? "
                "WHERE id = ? AND status = 'queued'",
                (now(), operation_id),
            )
            return bool(cursor.rowcount == 1)

    def append_log(self, operation_id: str, line: str) -> None:
        with self._transaction() as conn:
            self._execute(
                conn,
                "INSERT INTO operation_logs (operation_id, line) VALUES (?, ?)",
                (operation_id, line),
            )

    def finish(
        self,
        operation_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        violations: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Record the end of an operation that is still active; False if it no longer is."""
        with self._transaction() as conn:
            cursor = self._execute(
                conn,
                "UPDATE operations SET status = ?, finished_at = ?, result = ?, error = ?, "
                "violations = ? WHERE id = ? AND status IN ('queued', 'running')",
                (status, now(), _dump(result), error, _dump(violations), operation_id),
            )
            return bool(cursor.rowcount == 1)

    def _fail_active(self, conn: Any, owner: str | None, message: str) -> list[str]:
        """Fail the active operations (of ``owner``, or all of them)."""
        if owner is None:
            rows = self._execute(conn, _ACTIVE_OPERATIONS).fetchall()
        else:
            rows = self._execute(conn, _ACTIVE_OPERATIONS_OF, (owner,)).fetchall()
        ids = [str(r[0]) for r in rows]
        for operation_id in ids:
            self._execute(
                conn,
                "UPDATE operations SET status = 'failed', finished_at = ?, error = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (now(), message, operation_id),
            )
            self._execute(
                conn,
                "UPDATE workloads SET status = 'failed', updated_at = ? "
                "WHERE last_operation = ? AND status IN ('deploying', 'destroying')",
                (now(), operation_id),
            )
        return ids

    # -- workloads -----------------------------------------------------------

    def _workload(self, row: Sequence[Any]) -> WorkloadRecord:
        return WorkloadRecord(
            environment=row[0],
            name=row[1],
            spec=_load(row[2]) or {},
            status=row[3],
            outputs=_load(row[4]) or {},
            last_operation=row[5],
            updated_at=row[6],
        )

    def get_workload(self, environment: str, name: str) -> WorkloadRecord | None:
        with self._transaction() as conn:
            row = self._execute(
                conn,
                "SELECT environment, name, spec, status, outputs, last_operation, updated_at "
                "FROM workloads WHERE environment = ? AND name = ?",
                (environment, name),
            ).fetchone()
        return self._workload(row) if row else None

    def list_workloads(self, environment: str) -> list[WorkloadRecord]:
        with self._transaction() as conn:
            rows = self._execute(
                conn,
                "SELECT environment, name, spec, status, outputs, last_operation, updated_at "
                "FROM workloads WHERE environment = ? ORDER BY name",
                (environment,),
            ).fetchall()
        return [self._workload(r) for r in rows]

    def set_workload(
        self,
        environment: str,
        name: str,
        status: str,
        outputs: dict[str, Any] | None = None,
    ) -> None:
        with self._transaction() as conn:
            if outputs is None:
                self._execute(
                    conn,
                    "UPDATE workloads SET status = ?, updated_at = ? "
                    "WHERE environment = ? AND name = ?",
                    (status, now(), environment, name),
                )
            else:
                self._execute(
                    conn,
                    "UPDATE workloads SET status = ?, outputs = ?, updated_at = ? "
                    "WHERE environment = ? AND name = ?",
                    (status, _dump(outputs), now(), environment, name),
                )

    def delete_workload(self, environment: str, name: str) -> None:
        with self._transaction() as conn:
            self._execute(
                conn,
                "DELETE FROM workloads WHERE environment = ? AND name = ?",
                (environment, name),
            )


# --------------------------------------------------------------------------- SQLite

_SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS operations (
        id TEXT PRIMARY KEY, environment TEXT NOT NULL, workload TEXT NOT NULL,
        kind TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
        started_at TEXT, finished_at TEXT, owner TEXT NOT NULL, spec TEXT, result TEXT,
        error TEXT, violations TEXT)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS one_active_operation_per_workload
        ON operations (environment, workload) WHERE status IN ('queued', 'running')""",
    """CREATE TABLE IF NOT EXISTS operation_logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, operation_id TEXT NOT NULL, line TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS operation_logs_by_operation ON operation_logs (operation_id, id)",
    """CREATE TABLE IF NOT EXISTS workloads (
        environment TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
        outputs TEXT NOT NULL, last_operation TEXT, updated_at TEXT NOT NULL,
        PRIMARY KEY (environment, name))""",
)


class SQLiteStore(SQLStore):
    """One file, one service process."""

    schema = _SQLITE_SCHEMA

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

_POSTGRES_SCHEMA = (
    # Serialize schema creation across replicas starting together.
    f"SELECT pg_advisory_xact_lock({advisory_key('schema')})",
    """CREATE TABLE IF NOT EXISTS operations (
        id TEXT PRIMARY KEY, environment TEXT NOT NULL, workload TEXT NOT NULL,
        kind TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
        started_at TEXT, finished_at TEXT, owner TEXT NOT NULL, spec TEXT, result TEXT,
        error TEXT, violations TEXT)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS one_active_operation_per_workload
        ON operations (environment, workload) WHERE status IN ('queued', 'running')""",
    """CREATE TABLE IF NOT EXISTS operation_logs (
        id BIGSERIAL PRIMARY KEY, operation_id TEXT NOT NULL, line TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS operation_logs_by_operation ON operation_logs (operation_id, id)",
    """CREATE TABLE IF NOT EXISTS workloads (
        environment TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
        outputs TEXT NOT NULL, last_operation TEXT, updated_at TEXT NOT NULL,
        PRIMARY KEY (environment, name))""",
)


class PostgresStore(SQLStore):
    """Shared by replicas; advisory locks coordinate them."""

    placeholder = "%s"
    schema = _POSTGRES_SCHEMA

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
