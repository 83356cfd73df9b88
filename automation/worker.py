"""The service's operations: queued in the store, run through a runner in a thread pool.

Each operation records its progress (log lines, with known secrets removed)
and its end (result, or the error and policy violations) in the store, and
keeps the workload's record in step: ``deployed`` with its outputs after an
``up``, gone after a ``destroy``, ``failed`` when either fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from gke_inference.automation.errors import (
    AutomationError,
    NotDeployedError,
    PolicyViolationError,
)
from gke_inference.automation.runner import Runner, WorkloadStack
from gke_inference.automation.store import Operation, SQLStore, new_id
from gke_inference.core.contract import SECRET_MASK
from gke_inference.core.errors import UserInputError

OperationKind = Literal["up", "preview", "destroy"]

_log = logging.getLogger("gke_inference.automation.service")

#: How long an operation waits for its workload's lock; only a finishing operation
#: holds it past the end of its record.
LOCK_WAIT_SECONDS = 60.0
#: How long a store write is retried (backing off) through a database restart or a
#: full disk before the worker gives up on it: a log line is then dropped, an
#: operation's end is kept and recorded by the maintenance loop once the store is back.
STORE_RETRY_SECONDS = 30.0

T = TypeVar("T")


class Redactor:
    """Removes known secret values (the API token, passphrases) from text we store or log."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, SECRET_MASK)
        return text


class OperationWorker:
    """Runs queued operations in a thread pool and records their progress in the store."""

    def __init__(self, runner: Runner, store: SQLStore, *, workers: int, redact: Redactor) -> None:
        self.runner = runner
        self.store = store
        self.redact = redact
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="operation")
        self.futures: dict[str, Future[None]] = {}
        self.retry_seconds = STORE_RETRY_SECONDS
        # operation id -> its end, when the store could not take it (see flush)
        self.unrecorded: dict[str, dict[str, Any]] = {}
        self._unrecorded_guard = threading.Lock()

    def _retrying(self, what: str, call: Callable[[], T], seconds: float | None = None) -> T:
        """``call()``, retried with backoff for ``seconds``; the last error is raised."""
        deadline = time.monotonic() + (self.retry_seconds if seconds is None else seconds)
        pause = 0.05
        while True:
            try:
                return call()
            except Exception as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                _log.warning("store %s failed (%s); retrying", what, type(exc).__name__)
                time.sleep(min(pause, left))
                pause = min(pause * 2, 5.0)

    def _finish(self, operation_id: str, status: str, **details: Any) -> bool:
        """Record an operation's end; when the store cannot take it, keep it for
        :meth:`flush` (the operation must not stay active forever)."""
        try:
            return self._retrying(
                "finish", lambda: self.store.finish(operation_id, status, **details)
            )
        except Exception as exc:  # noqa: BLE001 - the store is down: keep the end
            _log.error(
                "operation %s ended (%s) but the store refused it (%s); recorded later",
                operation_id,
                status,
                type(exc).__name__,
            )
            with self._unrecorded_guard:
                self.unrecorded[operation_id] = {"status": status, **details}
            return False

    def flush(self) -> int:
        """Record the ends the store refused earlier (the maintenance loop calls this);
        how many are still waiting."""
        with self._unrecorded_guard:
            waiting = dict(self.unrecorded)
        for operation_id, end in waiting.items():
            try:
                self.store.finish(operation_id, **end)
            except Exception:  # noqa: BLE001 - still down: the next tick tries again
                break
            with self._unrecorded_guard:
                self.unrecorded.pop(operation_id, None)
        return len(self.unrecorded)

    def submit(
        self, environment: str, workload: str, kind: OperationKind, spec: dict[str, Any] | None
    ) -> Operation:
        operation = Operation(new_id(), environment, workload, kind, spec=spec)
        self.store.submit(operation, workload_spec=spec if kind == "up" else None)
        future = self.executor.submit(self.run, operation)
        self.futures[operation.id] = future
        future.add_done_callback(self._forget)
        return operation

    def _forget(self, future: Future[None]) -> None:
        """Drop finished futures; cancelled ones stay for :meth:`shutdown` to record."""
        if future.cancelled():
            return
        for operation_id, known in list(self.futures.items()):
            if known is future:
                self.futures.pop(operation_id, None)

    def run(self, operation: Operation) -> None:
        env, name = operation.environment, operation.workload
        # The store admits one active operation per workload, so whoever still holds
        # the lock is finishing (its end is recorded, its lock not yet released):
        # wait for it, bounded, instead of failing the next operation.
        try:
            with self.store.workload_lock(env, name, wait_seconds=LOCK_WAIT_SECONDS) as acquired:
                if not acquired:
                    self._finish(
                        operation.id,
                        "failed",
                        error=f"workload {name} in {env} is busy on another replica",
                    )
                    return
                running = self._retrying(
                    "mark_running", lambda: self.store.mark_running(operation.id)
                )
                if not running:
                    return  # failed by recovery or shutdown in the meantime
                self._execute(operation)
        except Exception as exc:  # noqa: BLE001 - the store failed around the operation
            _log.error("operation %s: store unavailable (%s)", operation.id, type(exc).__name__)
            self._finish(
                operation.id,
                "failed",
                error=f"the service's database was unavailable ({type(exc).__name__})",
                workload="failed" if operation.kind in ("up", "destroy") else None,
            )

    def _execute(self, operation: Operation) -> None:
        from gke_inference.workloads.spec import parse_spec

        env, name, kind = operation.environment, operation.workload, operation.kind

        def log(line: str) -> None:
            text = self.redact(line)
            try:
                self._retrying("log", lambda: self.store.append_log(operation.id, text), 5.0)
            except Exception:  # noqa: BLE001 - a lost log line must not fail the operation
                _log.warning("operation %s: dropped a log line (store unavailable)", operation.id)

        try:
            if kind == "destroy":
                try:
                    result = self.runner.run("destroy", WorkloadStack(env, name), log)
                except NotDeployedError:
                    log(f"{name} has no stack in {env}: nothing to destroy")
                    self._finish(
                        operation.id, "succeeded", result={"changes": {}}, workload="deleted"
                    )
                    return
            else:
                spec = parse_spec(operation.spec or {}, f"operation {operation.id}")
                deploy: Literal["up", "preview"] = "up" if kind == "up" else "preview"
                result = self.runner.run(deploy, WorkloadStack(env, name, spec), log)
        except PolicyViolationError as exc:
            self._failed(operation, str(exc).splitlines()[0], exc.violations)
        except (AutomationError, UserInputError) as exc:
            self._failed(operation, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: record it, keep details out of the API
            _log.exception("operation %s (%s %s/%s) crashed", operation.id, kind, env, name)
            self._failed(operation, f"internal error ({type(exc).__name__}); see the service log")
        else:
            doc = result.to_json()
            after = {"up": "deployed", "destroy": "deleted"}.get(kind)
            # One transaction: if recovery failed it meanwhile, nothing changes.
            self._finish(
                operation.id, "succeeded", result=doc, workload=after, outputs=doc.get("outputs")
            )

    def _failed(
        self, operation: Operation, error: str, violations: list[dict[str, str]] | None = None
    ) -> None:
        message = self.redact(error)
        try:
            self._retrying("log", lambda: self.store.append_log(operation.id, f"error: {message}"))
        except Exception:  # noqa: BLE001 - the error is also in the record
            _log.warning("operation %s: could not log its error", operation.id)
        self._finish(
            operation.id,
            "failed",
            error=message,
            violations=[dict(v) for v in violations] if violations else None,
            workload="failed" if operation.kind in ("up", "destroy") else None,
        )

    def shutdown(self) -> None:
        """Stop taking work; queued operations that never started are failed now."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        for operation_id, future in list(self.futures.items()):
            if future.cancelled():
                self.store.finish(
                    operation_id, "failed", error="the service stopped before it started"
                )


class Maintenance:
    """The replica's heartbeat and the recovery of gone replicas' work, every ``interval``
    seconds on a thread of its own (:meth:`SQLStore.maintain`). A database that is
    briefly unreachable is logged and retried at the next tick; the loop never dies."""

    def __init__(
        self, store: SQLStore, interval: float, after: Callable[[], object] | None = None
    ) -> None:
        self.store = store
        self.interval = interval
        self.after = after  # e.g. OperationWorker.flush
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                failed = self.store.maintain()
                if self.after is not None:
                    self.after()
            except Exception as exc:  # noqa: BLE001 - the database may be restarting
                _log.warning("store maintenance failed (retrying): %s", type(exc).__name__)
                continue
            if failed:
                _log.warning("failed %d operation(s) of stopped replicas", len(failed))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
