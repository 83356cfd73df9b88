"""Reference HTTP service: model teams deploy workloads without touching Pulumi.

``create_app(runner, store)`` builds the FastAPI app from the module's routers.
Requests are validated and recorded, then a thread pool runs the operation
through the runner (the Pulumi Automation API or the offline plan); clients
poll ``GET /v1/operations/{id}``. Every ``/v1`` route needs
``Authorization: Bearer <GKE_INFERENCE_API_TOKEN>``.

A spec is checked completely before anything is queued (a preview without a
body checks the submitted spec again): its fields
(``parse_spec``), whether it can be deployed at all and whether the
environment enables its compute class
(:func:`~gke_inference.automation.deployability.checked_deployment`). Every
such problem is a 422 with one body shape (:class:`~.api_models.Problems`),
written by one exception handler.

Hostile input: a body is decoded strictly (depth, finite numbers, no coercion:
:mod:`~gke_inference.automation.api_models`), a body larger than
``GKE_INFERENCE_MAX_BODY_BYTES`` (1 MiB) is a 413 refused while it is read
(:class:`~.api_models.BodyLimit`), and the access log never shows the query
string of a ``/v1`` route (:class:`~.api_models.AccessLogRedactor`). The API
token is checked at start
(:class:`~gke_inference.automation.settings.ServiceSettings`).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from gke_inference.automation.api_models import (
    ACCESS_LOG_REDACTOR,
    WORKLOAD_SPEC_REF,
    BodyLimit,
    Conflict,
    EnvironmentResponse,
    HealthResponse,
    Message,
    OperationAccepted,
    OperationKind,
    OperationResponse,
    ProblemDetail,
    Problems,
    WorkloadDetailResponse,
    WorkloadResponse,
    decode_json_body,
)
from gke_inference.automation.databases import HEARTBEAT_SECONDS, STORE_ERRORS
from gke_inference.automation.deployability import checked_deployment
from gke_inference.automation.runner import PlatformStack, Runner
from gke_inference.automation.settings import MAX_JSON_DEPTH, TOKEN_ENV, ServiceSettings
from gke_inference.automation.settings import ServiceConfigError as ServiceConfigError
from gke_inference.automation.store import SQLStore, WorkloadBusyError, WorkloadRecord
from gke_inference.automation.worker import Maintenance, OperationWorker, Redactor
from gke_inference.core.errors import Problem, SettingsError, SpecError, UserInputError
from gke_inference.workloads.spec import WorkloadSpec, parse_spec

_log = logging.getLogger("gke_inference.automation.service")


@dataclass(frozen=True)
class ServiceState:
    """What the routes work with; one per app, at ``app.state.service``."""

    runner: Runner
    store: SQLStore
    worker: OperationWorker
    token: bytes


# --------------------------------------------------------------------------- dependencies


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(_state)]

_bearer = HTTPBearer(auto_error=False, description=f"the value of {TOKEN_ENV}")


def _authorized(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    given = credentials.credentials.encode() if credentials else b""
    if not (credentials and hmac.compare_digest(given, state.token)):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _environment(env: str, state: State) -> str:
    known = state.runner.environments()
    if env not in known:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"unknown environment {env!r}; known: {', '.join(known)}",
        )
    return env


Environment = Annotated[str, Depends(_environment)]


# --------------------------------------------------------------------------- request bodies


async def _json_body(request: Request, *, required: bool) -> Any:
    """The body as a spec document; :class:`~.api_models.BodyLimit` bounds it while read."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise UserInputError(
                "Invalid request", [Problem("(body)", "a workload spec is required")]
            )
        return None
    return await run_in_threadpool(_strict_document, raw)


def _strict_document(raw: bytes) -> Any:
    """Decoded strictly (depth, finite numbers); the spec model types it strictly (no
    coercion: workloads.spec)."""
    data = decode_json_body(raw, max_depth=MAX_JSON_DEPTH)
    return data


def _deployable_spec(
    state: ServiceState, env: str, data: Any, url_name: str | None
) -> WorkloadSpec:
    """The body as a spec that ``env`` can deploy; UserInputError (422) otherwise."""
    spec = parse_spec(data, "request body")
    if url_name is not None and spec.name != url_name:
        raise UserInputError(
            "Invalid request",
            [Problem("name", f"is {spec.name!r}, but the URL names {url_name!r}")],
        )
    try:
        checked_deployment(state.runner.settings.project_dir, env, spec)
    except SettingsError as exc:  # the environment's stack config, not the request
        _log.error("environment %s cannot take workloads: %s", env, exc)
        raise HTTPException(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            f"environment {env} has an invalid stack config; see the service log",
        ) from None
    return spec


def _spec_document(spec: WorkloadSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def _spec_body(*, required: bool, description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a WorkloadSpec from its raw body."""
    content = {"application/json": {"schema": {"$ref": WORKLOAD_SPEC_REF}}}
    return {"requestBody": {"required": required, "description": description, "content": content}}


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database refused a request's read or write (restarting, full): 503, retry later;
    nothing was accepted."""
    _log.warning(
        "%s %s: the store failed (%s)", request.method, request.url.path, type(exc).__name__
    )
    return JSONResponse(
        {"detail": f"the service's database is unavailable ({type(exc).__name__}); retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


async def _unprocessable(request: Request, exc: Exception) -> JSONResponse:
    """The one 422 body: ``{"detail": [{"loc", "path", "msg"[, "type": "spec"]}]}``."""
    problems = exc.problems if isinstance(exc, UserInputError) else []
    kind = "spec" if isinstance(exc, SpecError) else None
    detail = [
        ProblemDetail(
            loc=["body"] if p.path == "(body)" else ["body", *p.path.split(".")],
            path=p.path,
            msg=p.message,
            type=kind,
        ).model_dump(exclude_none=True)
        for p in problems
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


# --------------------------------------------------------------------------- routes


def _submit(
    state: ServiceState,
    response: Response,
    env: str,
    name: str,
    kind: OperationKind,
    spec: dict[str, Any] | None,
) -> OperationAccepted:
    try:
        operation = state.worker.submit(env, name, kind, spec)
    except WorkloadBusyError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, {"message": str(exc), "operation": exc.operation}
        ) from None
    response.headers["Location"] = f"/v1/operations/{operation.id}"
    return OperationAccepted(operation=operation.id, environment=env, workload=name, kind=kind)


def _existing(store: SQLStore, env: str, name: str) -> WorkloadRecord:
    record = store.get_workload(env, name)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no workload {name!r} in environment {env}")
    return record


_ACCEPTED: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {"model": Conflict},
    status.HTTP_404_NOT_FOUND: {"model": Message},
}
_ACCEPTED_WITH_SPEC: dict[int | str, dict[str, Any]] = {
    **_ACCEPTED,
    status.HTTP_413_CONTENT_TOO_LARGE: {"model": Message},
    status.HTTP_422_UNPROCESSABLE_CONTENT: {"model": Problems},
    status.HTTP_500_INTERNAL_SERVER_ERROR: {"model": Message},
}

health = APIRouter(tags=["health"])
v1 = APIRouter(
    prefix="/v1",
    dependencies=[Depends(_authorized)],
    responses={status.HTTP_401_UNAUTHORIZED: {"model": Message}},
)


@health.get("/healthz")
def healthz(state: State) -> HealthResponse:
    """The process answers (liveness)."""
    return HealthResponse(status="ok", runner=state.runner.name)


@health.get(
    "/readyz",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Message}},
)
def readyz(state: State) -> Any:
    """The process can take work: its database takes a write (readiness)."""
    try:
        state.store.heartbeat()
    except Exception as exc:  # noqa: BLE001 - any driver error means "not ready"
        return JSONResponse(
            {"detail": f"the database does not take writes ({type(exc).__name__})"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return HealthResponse(status="ok", runner=state.runner.name)


@v1.get("/environments", tags=["environments"])
def list_environments(state: State) -> list[EnvironmentResponse]:
    runner = state.runner
    return [
        EnvironmentResponse(
            name=env,
            platform_stack=runner.stack_name(PlatformStack(env)),
            workloads=len(state.store.list_workloads(env)),
        )
        for env in runner.environments()
    ]


@v1.post(
    "/environments/{env}/workloads",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["workloads"],
    responses=_ACCEPTED_WITH_SPEC,
    openapi_extra=_spec_body(required=True, description="the workload to deploy"),
)
async def create_workload(
    request: Request, response: Response, env: Environment, state: State
) -> OperationAccepted:
    """Deploy (or update) the workload of the spec in the body."""
    data = await _json_body(request, required=True)
    # Validation and the database work run in the thread pool, off the event loop.
    spec = await run_in_threadpool(_deployable_spec, state, env, data, None)
    document = _spec_document(spec)
    return await run_in_threadpool(_submit, state, response, env, spec.name, "up", document)


@v1.get("/environments/{env}/workloads", tags=["workloads"])
def list_workloads(env: Environment, state: State) -> list[WorkloadResponse]:
    return [WorkloadResponse.model_validate(w.to_json()) for w in state.store.list_workloads(env)]


@v1.get(
    "/environments/{env}/workloads/{name}",
    tags=["workloads"],
    responses={status.HTTP_404_NOT_FOUND: {"model": Message}},
)
def get_workload(name: str, env: Environment, state: State) -> WorkloadDetailResponse:
    doc = _existing(state.store, env, name).to_json()
    doc["activeOperation"] = state.store.active_operation(env, name)
    return WorkloadDetailResponse.model_validate(doc)


@v1.post(
    "/environments/{env}/workloads/{name}/preview",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["workloads"],
    responses=_ACCEPTED_WITH_SPEC,
    openapi_extra=_spec_body(
        required=False, description="a changed spec to preview (default: the submitted one)"
    ),
)
async def preview_workload(
    name: str, request: Request, response: Response, env: Environment, state: State
) -> OperationAccepted:
    """Preview the submitted spec, or the spec in the body (a change to review first)."""
    data = await _json_body(request, required=False)
    if data is None:
        record = await run_in_threadpool(_existing, state.store, env, name)
        data = record.spec
    # The submitted spec is checked again: the environment may no longer take it (a
    # compute class removed from its stack config) and that is a 422 now, not a
    # preview accepted (202) only to fail.
    spec = await run_in_threadpool(_deployable_spec, state, env, data, name)
    return await run_in_threadpool(
        _submit, state, response, env, name, "preview", _spec_document(spec)
    )


@v1.delete(
    "/environments/{env}/workloads/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["workloads"],
    responses=_ACCEPTED,
)
def delete_workload(
    name: str, response: Response, env: Environment, state: State
) -> OperationAccepted:
    """Destroy a submitted workload's stack.

    A workload that was never submitted is a 404, as the CLI's ``workload
    destroy`` of a stack that does not exist is exit 2 ("does not exist"):
    both say there is nothing to destroy rather than pretend a destroy ran. A
    submitted workload whose stack was never created (its first ``up``
    failed) is destroyed successfully with no changes, and its record goes.
    """
    _existing(state.store, env, name)
    return _submit(state, response, env, name, "destroy", None)


@v1.get(
    "/operations/{operation_id}",
    tags=["operations"],
    responses={status.HTTP_404_NOT_FOUND: {"model": Message}},
)
def get_operation(operation_id: str, state: State) -> OperationResponse:
    operation = state.store.get_operation(operation_id)
    if operation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no operation {operation_id!r}")
    return OperationResponse.model_validate(operation.to_json())


# --------------------------------------------------------------------------- the app


class _Service(FastAPI):
    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the WorkloadSpec schema the spec routes refer to."""
        if self.openapi_schema is not None:
            return self.openapi_schema
        document = super().openapi()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        spec = WorkloadSpec.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
        schemas.update(spec.pop("$defs", {}))
        schemas["WorkloadSpec"] = spec
        return document


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.service
    failed = state.store.recover()
    if failed:
        _log.warning("marked %d interrupted operation(s) failed", len(failed))
    maintenance = Maintenance(state.store, HEARTBEAT_SECONDS, after=state.worker.flush)
    maintenance.start()
    yield
    maintenance.stop()
    state.worker.shutdown()


def create_app(
    runner: Runner,
    store: SQLStore,
    *,
    token: str | None = None,
    workers: int = 4,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """The service over ``runner`` and ``store``; refuses to exist without a strong API
    token (``token``, else ``GKE_INFERENCE_API_TOKEN``) and a valid body limit
    (``max_body_bytes``, else ``GKE_INFERENCE_MAX_BODY_BYTES``)."""
    config = ServiceSettings.from_env(token=token, max_body_bytes=max_body_bytes)
    api_token = config.token
    redact = Redactor(
        [
            api_token,
            os.environ.get("PULUMI_CONFIG_PASSPHRASE", ""),
            os.environ.get("PULUMI_ACCESS_TOKEN", ""),
        ]
    )
    worker = OperationWorker(runner, store, workers=workers, redact=redact)
    app = _Service(
        title="gke-inference",
        summary="Deploy model workloads onto the GKE inference platform",
        version="0.1.0",
        lifespan=_lifespan,
    )
    app.state.service = ServiceState(runner, store, worker, api_token.encode())
    app.add_exception_handler(UserInputError, _unprocessable)
    for store_error in STORE_ERRORS:
        app.add_exception_handler(store_error, _store_unavailable)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    logging.getLogger("uvicorn.access").addFilter(ACCESS_LOG_REDACTOR)
    app.include_router(health)
    app.include_router(v1)
    return app
