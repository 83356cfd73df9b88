"""Request and result formats shared by the streaming and batch workers.

Request (one Pub/Sub message body or one JSONL line)::

    {"id": "r1", "prompt": "Hello"}                          -> POST /v1/completions
    {"id": "r2", "messages": [{"role": "user", "content": "Hi"}]} -> POST /v1/chat/completions

optionally with ``max_tokens`` (int >= 1) and ``temperature`` (0..2).

Result::

    {"id": "r1", "model": "...", "output": "...", "usage": {...}, "latency_ms": 123.4}
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class MalformedRequest(ValueError):
    """The input is not a valid request; ``request_id`` is set when it could be read."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: str = Field(min_length=1)
    content: str | list[Any]


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    # Pub/Sub attribute values are limited to 1024 bytes.
    id: str = Field(min_length=1, max_length=512)
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    def openai_path(self) -> str:
        return "/v1/chat/completions" if self.is_chat else "/v1/completions"

    def openai_body(self, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model}
        if self.messages is not None:
            body["messages"] = [m.model_dump() for m in self.messages]
        else:
            body["prompt"] = self.prompt
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body


def parse_request(data: bytes | str) -> InferenceRequest:
    """Parse and validate one request, or raise :class:`MalformedRequest`."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequest(f"invalid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedRequest(f"expected a JSON object, got {type(raw).__name__}")
    rid = raw.get("id")
    request_id = rid if isinstance(rid, str) and rid else None
    try:
        request = InferenceRequest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise MalformedRequest(f"invalid request: {problems}", request_id) from None
    if (request.prompt is None) == (request.messages is None):
        raise MalformedRequest(
            "invalid request: exactly one of 'prompt' or 'messages' is required", request_id
        )
    return request


def extract_output(request: InferenceRequest, response: dict[str, Any]) -> str:
    """The generated text from an OpenAI-style response (first choice)."""
    try:
        choice = response["choices"][0]
        content = choice["message"]["content"] if request.is_chat else choice["text"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"unexpected model response shape: missing {exc}") from None
    return "" if content is None else str(content)


def build_result(
    request: InferenceRequest, model: str, response: dict[str, Any], latency_s: float
) -> dict[str, Any]:
    served = response.get("model")
    return {
        "id": request.id,
        "model": served if isinstance(served, str) and served else model,
        "output": extract_output(request, response),
        "usage": response.get("usage"),
        "latency_ms": round(latency_s * 1000, 3),
    }
