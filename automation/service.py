"""Reference HTTP service: model teams deploy workloads without touching Pulumi.

``create_app(runner, store)`` builds the FastAPI app. Requests are validated and
recorded, then a thread pool runs the operation through the runner (the
Pulumi Automation API or the offline plan); clients poll
``GET /v1/operations/{id}``. Every ``/v1`` route needs
``Authorization: Bearer <GKE_INFERENCE_API_TOKEN>``.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from gke_inference.automation.runners import (
    AutomationError,
    NotDeployedError,
    PolicyViolationError,
    Runner,
)
from gke_inference.automation.store import (
    Operation,
    SQLStore,
    WorkloadBusyError,
    new_id,
)
from gke_inference.core.errors import UserInputError

TOKEN_ENV = "GKE_INFERENCE_API_TOKEN"
SECRET_MASK = "[secret]"

_log = logging.getLogger("gke_inference.automation.service")


class ServiceConfigError(Exception):
    """The service cannot start (no token, bad database)."""


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

    def __init__(
        self, runner: Runner, store: SQLStore, *, workers: int, redact: Callable[[str], str]
    ) -> None:
        self.runner = runner
        self.store = store
        self.redact = redact
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="operation")
        self.futures: dict[str, Future[None]] = {}

    def submit(
        self, environment: str, workload: str, kind: str, spec: dict[str, Any] | None
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
                    result = self.runner.workload_destroy(env, name, log)
                except NotDeployedError:
                    log(f"{name} has no stack in {env}: nothing to destroy")
                    self.store.delete_workload(env, name)
                    self.store.finish(operation.id, "succeeded", result={"changes": {}})
                    return
            else:
                spec = parse_spec(operation.spec or {}, f"operation {operation.id}")
                if kind == "up":
                    result = self.runner.workload_up(env, spec, log)
                else:
                    result = self.runner.workload_preview(env, spec, log)
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


def _problems(exc: UserInputError) -> list[dict[str, Any]]:
    return [
        {"loc": ["body", *p.path.split(".")], "path": p.path, "msg": p.message, "type": "spec"}
        for p in exc.problems
    ]


def _validate_spec(data: Any) -> Any:
    """A workload spec from a JSON body, sized (so a spec that cannot fit is a 422 too)."""
    from gke_inference.workloads.sizing import size
    from gke_inference.workloads.spec import parse_spec

    try:
        spec = parse_spec(data, "request body")
        if spec.kind != "comfyui":
            size(spec)
    except UserInputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _problems(exc)) from None
    return spec


async def _json_body(request: Request, *, required: bool) -> Any:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [{"loc": ["body"], "path": "(body)", "msg": "a workload spec is required"}],
            )
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body"], "path": "(body)", "msg": f"invalid JSON: {exc}"}],
        ) from None


_SPEC_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A workload spec (workloads/examples/*.yaml as JSON)",
                }
            }
        }
    }
}


def create_app(
    runner: Runner,
    store: SQLStore,
    *,
    token: str | None = None,
    workers: int = 4,
) -> FastAPI:
    """The service over ``runner`` and ``store``; refuses to exist without an API token."""
    api_token = token if token is not None else os.environ.get(TOKEN_ENV, "")
    if not api_token:
        raise ServiceConfigError(
            f"set {TOKEN_ENV} to the bearer token clients must send; refusing to start without it"
        )
    expected = api_token.encode()
    redact = Redactor(
        [
            api_token,
            os.environ.get("PULUMI_CONFIG_PASSPHRASE", ""),
            os.environ.get("PULUMI_ACCESS_TOKEN", ""),
        ]
    )
    worker = OperationWorker(runner, store, workers=workers, redact=redact)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        failed = store.recover()
        if failed:
            _log.warning("marked %d interrupted operation(s) failed", len(failed))
        yield
        worker.shutdown()

    app = FastAPI(
        title="gke-inference",
        summary="Deploy model workloads onto the GKE inference platform",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.state.store = store
    app.state.runner = runner

    bearer = HTTPBearer(auto_error=False, description=f"the value of {TOKEN_ENV}")

    def authorized(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        given = credentials.credentials.encode() if credentials else b""
        if not (credentials and hmac.compare_digest(given, expected)):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def environment(env: str) -> str:
        known = runner.environments()
        if env not in known:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"unknown environment {env!r}; known: {', '.join(known)}",
            )
        return env

    def submit(env: str, name: str, kind: str, spec: dict[str, Any] | None) -> JSONResponse:
        try:
            operation = worker.submit(env, name, kind, spec)
        except WorkloadBusyError as exc:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                {"message": str(exc), "operation": exc.operation},
            ) from None
        return JSONResponse(
            {"operation": operation.id, "environment": env, "workload": name, "kind": kind},
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/v1/operations/{operation.id}"},
        )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "runner": runner.name}

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])

    @v1.get("/environments", tags=["environments"])
    def list_environments() -> list[dict[str, Any]]:
        return [
            {
                "name": env,
                "platformStack": f"{runner.settings.organization}/gke-inference/{env}",
                "workloads": len(store.list_workloads(env)),
            }
            for env in runner.environments()
        ]

    @v1.post(
        "/environments/{env}/workloads",
        status_code=status.HTTP_202_ACCEPTED,
        tags=["workloads"],
        openapi_extra=_SPEC_BODY,
    )
    async def create_workload(request: Request, env: str = Depends(environment)) -> JSONResponse:
        data = await _json_body(request, required=True)
        # Validation and the database work run in the thread pool, off the event loop.
        spec = await run_in_threadpool(_validate_spec, data)
        body = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        return await run_in_threadpool(submit, env, spec.name, "up", body)

    @v1.get("/environments/{env}/workloads", tags=["workloads"])
    def list_workloads(env: str = Depends(environment)) -> list[dict[str, Any]]:
        return [w.to_json() for w in store.list_workloads(env)]

    def existing(env: str, name: str) -> Any:
        record = store.get_workload(env, name)
        if record is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no workload {name!r} in environment {env}"
            )
        return record

    @v1.get("/environments/{env}/workloads/{name}", tags=["workloads"])
    def get_workload(name: str, env: str = Depends(environment)) -> dict[str, Any]:
        doc: dict[str, Any] = existing(env, name).to_json()
        doc["activeOperation"] = store.active_operation(env, name)
        return doc

    @v1.post(
        "/environments/{env}/workloads/{name}/preview",
        status_code=status.HTTP_202_ACCEPTED,
        tags=["workloads"],
        openapi_extra=_SPEC_BODY,
    )
    async def preview_workload(
        name: str, request: Request, env: str = Depends(environment)
    ) -> JSONResponse:
        """Preview the submitted spec, or the spec in the body (a change to review first)."""
        data = await _json_body(request, required=False)
        if data is None:
            record = await run_in_threadpool(existing, env, name)
            spec_doc: dict[str, Any] = record.spec
        else:
            spec = await run_in_threadpool(_validate_spec, data)
            if spec.name != name:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    [
                        {
                            "loc": ["body", "name"],
                            "path": "name",
                            "msg": f"is {spec.name!r}, but the URL names {name!r}",
                        }
                    ],
                )
            spec_doc = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        return await run_in_threadpool(submit, env, name, "preview", spec_doc)

    @v1.delete(
        "/environments/{env}/workloads/{name}",
        status_code=status.HTTP_202_ACCEPTED,
        tags=["workloads"],
    )
    def delete_workload(name: str, env: str = Depends(environment)) -> JSONResponse:
        existing(env, name)
        return submit(env, name, "destroy", None)

    @v1.get("/operations/{operation_id}", tags=["operations"])
    def get_operation(operation_id: str) -> dict[str, Any]:
        operation = store.get_operation(operation_id)
        if operation is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no operation {operation_id!r}")
        return operation.to_json()

    app.include_router(v1)
    return app
