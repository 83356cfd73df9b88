"""Persistence for the service: operations, their log lines, and submitted workloads.

:class:`SQLStore` holds what is stored and the SQL that reads and writes it;
the two databases it runs on (SQLite for one process, PostgreSQL for
replicas: schema, connections, locks, recovery) are in
:mod:`~gke_inference.automation.databases`, which also opens a store from a
path or URL (:func:`~gke_inference.automation.databases.open_store`).

A partial unique index allows at most one ``queued``/``running`` operation
per workload: a second submission fails atomically with
:class:`WorkloadBusyError` (HTTP 409), whichever replica receives it.
"""

from __future__ import annotations

import abc
import contextlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

INTERRUPTED = "the service stopped while this operation was queued or running"


def replica_gone(owner: str) -> str:
    """The error recorded on an operation whose replica stopped while running it."""
    return f"{INTERRUPTED} (replica {owner} stopped; failed by a live replica)"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_id() -> str:
    return uuid.uuid4().hex


class StoreUnavailableError(Exception):
    """The database cannot be used by this process (in use by another, not writable)."""


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


# The workload record after its operation ends, only while it still names that operation.
_WORKLOAD_AFTER = {
    "deleted": "DELETE FROM workloads WHERE last_operation = ?",
    "deployed": "UPDATE workloads SET status = 'deployed', outputs = ?, updated_at = ? "
    "WHERE last_operation = ?",
    "failed": "UPDATE workloads SET status = 'failed', updated_at = ? WHERE last_operation = ?",
}


def _after_params(workload: str, outputs: dict[str, Any] | None, operation: str) -> tuple[Any, ...]:
    if workload == "deployed":
        return (_dump(outputs or {}), now(), operation)
    if workload == "failed":
        return (now(), operation)
    return (operation,)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _load(value: Any) -> Any:
    return None if value is None else json.loads(value)


class SQLStore(abc.ABC):
    """The SQL both databases share; subclasses provide connections and locks."""

    placeholder = "?"
    schema: Sequence[str] = ()

    def __init__(self) -> None:
        self.instance_id = new_id()

    # -- provided by each database --------------------------------------------

    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Any]:
        """A connection in a transaction: committed when the block ends, else rolled back."""

    @abc.abstractmethod
    def _is_unique_violation(self, exc: Exception) -> bool: ...

    @abc.abstractmethod
    def workload_lock(
        self, environment: str, workload: str, wait_seconds: float = 0.0
    ) -> contextlib.AbstractContextManager[bool]:
        """Held while an operation of the workload runs; yields False when another holds it
        (after retrying for ``wait_seconds``)."""

    @abc.abstractmethod
    def recover(self, message: str | None = None) -> list[str]:
        """Fail the operations interrupted by a stopped process; their ids."""

    def close(self) -> None:
        return None

    # -- helpers -------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _execute(self, conn: Any, text: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self._sql(text), tuple(params))

    def init(self) -> None:
        """The schema, then this replica's first heartbeat (a write: a database that takes
        none is refused at start)."""
        with self._transaction() as conn:
            for statement in self.schema:
                conn.execute(statement)
        self.heartbeat()

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
        workload: str | None = None,
        outputs: dict[str, Any] | None = None,
    ) -> bool:
        """Record the end of an operation that is still active; False if it no longer is.

        ``workload`` (``deployed``, ``failed`` or ``deleted``) updates the workload's record in the
        same transaction, and only while the record still names this operation as its
        last: the next request sees the operation finished and its record written
        together, and a later operation's record is never overwritten or deleted."""
        if workload is not None and workload not in _WORKLOAD_AFTER:
            raise ValueError(f"workload must be one of {sorted(_WORKLOAD_AFTER)}, got {workload!r}")
        with self._transaction() as conn:
            cursor = self._execute(
                conn,
                "UPDATE operations SET status = ?, finished_at = ?, result = ?, error = ?, "
                "violations = ? WHERE id = ? AND status IN ('queued', 'running')",
                (status, now(), _dump(result), error, _dump(violations), operation_id),
            )
            if cursor.rowcount != 1:
                return False
            if workload is not None:
                self._execute(
                    conn, _WORKLOAD_AFTER[workload], _after_params(workload, outputs, operation_id)
                )
            return True

    # -- liveness of replicas ---------------------------------------------------

    def heartbeat(self) -> None:
        """Record that this replica is alive (and that the database takes writes)."""
        with self._transaction() as conn:
            self._execute(
                conn,
                "INSERT INTO replicas (id, heartbeat_at) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (self.instance_id, now()),
            )

    def heartbeats(self) -> dict[str, datetime]:
        with self._transaction() as conn:
            rows = self._execute(conn, "SELECT id, heartbeat_at FROM replicas").fetchall()
        return {str(r[0]): datetime.fromisoformat(str(r[1])) for r in rows}

    def maintain(self) -> list[str]:
        """What a live replica does periodically: its heartbeat, then the recovery of the
        operations of replicas that are gone (their ids; none where one process owns the
        database)."""
        self.heartbeat()
        return []

    def forget_heartbeat(self) -> None:
        """A replica that stops cleanly says so: its work is recovered at once."""
        with self._transaction() as conn:
            self._execute(conn, "DELETE FROM replicas WHERE id = ?", (self.instance_id,))

    def forget_stale_heartbeats(self, older_than: str) -> None:
        with self._transaction() as conn:
            self._execute(conn, "DELETE FROM replicas WHERE heartbeat_at < ?", (older_than,))

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
