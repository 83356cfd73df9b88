"""What the service's routes accept and answer, as pydantic models (so ``/openapi.json`` says it).

Keys are camelCase on the wire (field aliases). Response models forbid extra
keys: a record whose JSON drifts from its model fails loudly instead of being
trimmed. The request body of the workload routes is the
:class:`~gke_inference.workloads.spec.WorkloadSpec` itself, described under
``#/components/schemas/WorkloadSpec`` (see ``service.py``); it is parsed by
``parse_spec`` rather than by FastAPI, so every spec error has the same
problem-list shape (:class:`Problems`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic.alias_generators import to_camel
from pydantic.json_schema import WithJsonSchema

WORKLOAD_SPEC_REF = "#/components/schemas/WorkloadSpec"

OperationKind = Literal["up", "preview", "destroy"]
OperationStatus = Literal["queued", "running", "succeeded", "failed"]
WorkloadStatus = Literal["deploying", "deployed", "failed", "destroying"]
# A spec as stored (by alias, without nulls). allOf: pydantic resolves a bare $ref itself.
SpecDocument = Annotated[dict[str, Any], WithJsonSchema({"allOf": [{"$ref": WORKLOAD_SPEC_REF}]})]


class ApiModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid"
    )


class HealthResponse(ApiModel):
    status: Literal["ok"]
    runner: str


class EnvironmentResponse(ApiModel):
    name: str
    platform_stack: str = pydantic.Field(description="<org>/gke-inference/<env>")
    workloads: int = pydantic.Field(description="workloads submitted to this environment")


class OperationAccepted(ApiModel):
    """202: the operation is queued; poll ``GET /v1/operations/{operation}``."""

    operation: str
    environment: str
    workload: str
    kind: OperationKind


class WorkloadResponse(ApiModel):
    environment: str
    name: str
    status: WorkloadStatus
    spec: SpecDocument
    outputs: dict[str, Any]
    last_operation: str | None
    updated_at: str


class WorkloadDetailResponse(WorkloadResponse):
    active_operation: str | None = pydantic.Field(
        description="the queued or running operation of the workload, if any"
    )


class OperationResponse(ApiModel):
    id: str
    environment: str
    workload: str
    kind: OperationKind
    status: OperationStatus
    created_at: str
    started_at: str | None
    finished_at: str | None
    log: list[str]
    outputs: dict[str, Any]
    changes: dict[str, int]
    policy: dict[str, Any] | None
    error: str | None
    violations: list[dict[str, Any]]


class ProblemDetail(ApiModel):
    """One problem with the request; ``path`` as the spec writes it (camelCase, ``a.b``)."""

    loc: list[str]
    path: str
    msg: str
    type: Literal["spec"] | None = pydantic.Field(
        default=None, description="'spec' when the spec itself is invalid or undeployable"
    )


class Problems(ApiModel):
    """422: every problem found, none left for later."""

    detail: list[ProblemDetail]


class Message(ApiModel):
    """401, 404 (and 500): what went wrong."""

    detail: str


class ConflictDetail(ApiModel):
    message: str
    operation: str | None


class Conflict(ApiModel):
    """409: the workload already has an operation in progress."""

    detail: ConflictDetail
