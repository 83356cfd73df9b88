"""What the service's routes accept and answer, as pydantic models (so ``/openapi.json`` says it).

Keys are camelCase on the wire (field aliases). Response models forbid extra
keys: a record whose JSON drifts from its model fails loudly instead of being
trimmed. The request body of the workload routes is the
:class:`~gke_inference.workloads.spec.WorkloadSpec` itself, described under
``#/components/schemas/WorkloadSpec`` (see ``service.py``); it is parsed by
``parse_spec`` rather than by FastAPI, so every spec error has the same
problem-list shape (:class:`Problems`).

A request body is read strictly (:func:`decode_json_body`): JSON nested deeper
than ``max_depth`` levels is refused before it is parsed, and a number must be
finite (``NaN``, ``Infinity`` and ``1e999`` are refused with their path); the
spec model itself coerces nothing (``true`` or ``"16"`` for an integer, ``"5"``
for a number, ``1`` for a boolean). Each is a 422 with the path, the value and
what is accepted.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import unquote_plus

import pydantic
from pydantic.alias_generators import to_camel
from pydantic.json_schema import WithJsonSchema
from starlette import status
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from gke_inference.automation.settings import MAX_BODY_ENV
from gke_inference.core.contract import SECRET_MASK
from gke_inference.core.errors import Problem, UserInputError
from gke_inference.core.validation import format_path

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


# --------------------------------------------------------------------------- request bodies

BODY = "(body)"
_SPECIAL = re.compile(r'[\[\]{}"\\]')


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether JSON ``text`` opens more than ``limit`` arrays/objects inside one another.

    One linear pass over the brackets, quotes and backslashes (brackets inside
    strings do not count), so a hostile body never reaches the recursive parser.
    """
    depth = 0
    in_string = False
    escaped_at = -1
    for match in _SPECIAL.finditer(text):
        position = match.start()
        if position == escaped_at:
            continue
        char = match.group()
        if in_string:
            if char == "\\":
                escaped_at = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


class _NonFinite:
    """Where the decoder met ``NaN``, ``Infinity`` or a number beyond a double."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _non_finite(value: Any, loc: list[int | str], found: list[Problem]) -> None:
    if isinstance(value, _NonFinite):
        path = format_path("", loc) if loc else BODY
        found.append(Problem(path, f"must be a finite number (got {value.text})"))
    elif isinstance(value, dict):
        for key, item in value.items():
            _non_finite(item, [*loc, key], found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _non_finite(item, [*loc, index], found)


def decode_json_body(raw: bytes, *, max_depth: int) -> Any:
    """The JSON document in ``raw``; UserInputError (422) when it is not one, nests
    deeper than ``max_depth``, or holds a number that is not finite (every such
    number listed with its path)."""

    def invalid(message: str) -> UserInputError:
        return UserInputError("Invalid request", [Problem(BODY, message)])

    encoding = json.detect_encoding(raw)
    try:
        text = raw.decode(encoding, "surrogatepass")
    except UnicodeDecodeError as exc:
        raise invalid(
            f"invalid JSON: not {encoding} text ({exc.reason} at byte {exc.start}); send UTF-8"
        ) from None
    if nesting_exceeds(text, max_depth):
        raise invalid(
            f"JSON nested more than {max_depth} levels (arrays and objects inside one "
            f"another); at most {max_depth} are accepted"
        )
    try:
        data = json.loads(text, parse_float=_parse_float, parse_constant=_NonFinite)
    except ValueError as exc:
        raise invalid(f"invalid JSON: {exc}") from None
    problems: list[Problem] = []
    _non_finite(data, [], problems)
    if problems:
        raise UserInputError("Invalid request", problems)
    return data


# --------------------------------------------------------------------------- body limit, access log


class _BodyTooLarge(Exception):
    """Raised by the ``receive`` of :class:`BodyLimit` once a body outgrows the limit."""


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413, refused while it is read.

    A declared ``Content-Length`` over the limit is answered before any of the body
    is read. Otherwise the bytes are counted as they arrive (chunked, or a
    Content-Length that lies) and reading stops at the limit, so a request never
    holds more than the limit plus one chunk.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = (
            f"the request body is larger than {self.max_bytes} bytes, the most this "
            f"service accepts ({MAX_BODY_ENV})"
        )
        response = JSONResponse({"detail": detail}, status_code=status.HTTP_413_CONTENT_TOO_LARGE)
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and (len(declared) > 19 or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)  # before a byte of the body is read
            return
        received = 0
        started = False

        async def limited_receive() -> ASGIMessage:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracked_send(message: ASGIMessage) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)


# A query parameter whose name says it carries a credential.
_TOKEN_LIKE = re.compile(
    r"token|secret|pass(word|wd)?|pwd|key|auth|credential|signature|sig|session|code", re.I
)
_AUTHENTICATED = re.compile(r"(^|/)v1(/|$)")  # every route under /v1 needs the token


def redact_request_target(target: str) -> str:
    """A request target (``/path?query``) as it may be logged: the query of a ``/v1``
    route is dropped, token-like parameters of the others are masked."""
    path, mark, query = target.partition("?")
    if not mark or not target.startswith("/"):
        return target
    if _AUTHENTICATED.search(path):
        return f"{path}?[redacted]"
    params = []
    for param in query.split("&"):
        name, equals, value = param.partition("=")
        if equals and _TOKEN_LIKE.search(unquote_plus(name)):
            value = SECRET_MASK
        params.append(f"{name}{equals}{value}")
    return f"{path}?{'&'.join(params)}"


class AccessLogRedactor(logging.Filter):
    """On the ``uvicorn.access`` logger: request targets pass :func:`redact_request_target`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_request_target(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


ACCESS_LOG_REDACTOR = AccessLogRedactor()
