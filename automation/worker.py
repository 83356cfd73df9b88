"""The service's operations: queued in the store, run through a runner in a thread pool.

Each operation records its progress (log lines, with known secrets removed)
and its end (result, or the error and policy violations) in the store, and
keeps the workload's record in step: ``deployed`` with its outputs after an
``up``, gone after a ``destroy``, ``failed`` when either fails.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

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
        with self.store.workload_lock(env, name) as acquired:
            if not acquired:
                self.store.finish(
                    operation.id,
                    "failed",
                    error=f"workload {name} in {env} is busy on another replica",
                )
                return
            if not self.store.mark_running(operation.id):
                return  # failed by recovery or shutdown in the meantime
            self._execute(operation)

    def _execute(self, operation: Operation) -> None:
        from gke_inference.workloads.spec import parse_spec

        env, name, kind = operation.environment, operation.workload, operation.kind

        def log(line: str) -> None:
            self.store.append_log(operation.id, self.redact(line))

        try:
            if kind == "destroy":
                try:
                    result = self.runner.run("destroy", WorkloadStack(env, name), log)
                except NotDeployedError:
                    log(f"{name} has no stack in {env}: nothing to destroy")
                    self.store.delete_workload(env, name)
                    self.store.finish(operation.id, "succeeded", result={"changes": {}})
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
            if not self.store.finish(operation.id, "succeeded", result=doc):
                return  # recovery failed it meanwhile: the record stays as recovery left it
            if kind == "up":
                self.store.set_workload(env, name, "deployed", doc.get("outputs", {}))
            elif kind == "destroy":
                self.store.delete_workload(env, name)

    def _failed(
        self, operation: Operation, error: str, violations: list[dict[str, str]] | None = None
    ) -> None:
        message = self.redact(error)
        self.store.append_log(operation.id, f"error: {message}")
        finished = self.store.finish(
            operation.id,
            "failed",
            error=message,
            violations=[dict(v) for v in violations] if violations else None,
        )
        if finished and operation.kind in ("up", "destroy"):
            self.store.set_workload(operation.environment, operation.workload, "failed")

    def shutdown(self) -> None:
        """Stop taking work; queued operations that never started are failed now."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        for operation_id, future in list(self.futures.items()):
            if future.cancelled():
                self.store.finish(
                    operation_id, "failed", error="the service stopped before it started"
                )
