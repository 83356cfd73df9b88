"""Async client for an OpenAI-compatible model server (vLLM) with bounded retries."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sys
import time
from typing import Any

import httpx

from .config import ModelSettings
from .jsonlog import get_logger
from .messages import InferenceRequest, build_result
from .metrics import WorkerMetrics

log = get_logger(__name__)

# 408 and 429 are "try again later"; other 4xx mean the request itself is bad.
_RETRYABLE_4XX = frozenset({408, 429})


def _remember_missing_sniffio() -> None:
    """Make httpcore's per-request ``import sniffio`` fail fast when it is not installed.

    httpcore 1.0 runs ``import sniffio`` each time it sets up an async lock, event
    or cancellation shield (several times per request) and falls back to asyncio
    when that fails. anyio 4.x no longer depends on sniffio (the pinned set has
    none), so every attempt was a full, failing search of ``sys.path``: in the
    streaming benchmark, remembering the failure took the event loop thread from
    2.1-2.2 to 1.5 ms of CPU per message at MAX_CONCURRENCY 64. A ``None`` entry
    in ``sys.modules`` is Python's documented way to make an import fail at once;
    it is only set when the module cannot be found anyway.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_remember_missing_sniffio()


class ModelError(Exception):
    """Base class for model call failures."""


class ModelUnavailable(ModelError):
    """Retryable errors (5xx, 429, timeouts, connection errors) persisted past the retry bound."""


class ModelRejected(ModelError):
    """The server refused the request with a non-retryable 4xx; retrying cannot help."""


class _Retryable(Exception):
    pass


class ModelClient:
    """Model calls over at most ``MAX_CONCURRENCY`` kept-alive HTTP connections.

    Each connection is its own single-connection ``httpx.AsyncClient``, lent to
    one attempt at a time (most recently used first). One shared client with a
    pool of ``MAX_CONCURRENCY`` connections would do the same, but httpcore's
    pool rescans its connections for every waiting request whenever a request
    starts or ends (``_assign_requests_to_connections``), which is quadratic in the
    concurrency: in the streaming benchmark at MAX_CONCURRENCY 64 the shared
    pool cost the event loop thread 6.0-6.4 ms of CPU per message (126-129 msg/s),
    one client per connection 1.4-1.8 ms (375-530 msg/s); at 8 they were equal.
    """

    def __init__(
        self,
        settings: ModelSettings,
        metrics: WorkerMetrics,
        stop: asyncio.Event | None = None,
    ) -> None:
        self._s = settings
        self._metrics = metrics
        self._stop = stop
        self._timeout = httpx.Timeout(
            settings.request_timeout_s, connect=min(10.0, settings.request_timeout_s)
        )
        # Built once: an AsyncClient of its own loads the CA bundle (~60 ms each).
        self._tls = httpx.create_ssl_context()
        self._connections = asyncio.Semaphore(settings.max_concurrency)
        self._idle: list[httpx.AsyncClient] = []
        self._clients: list[httpx.AsyncClient] = []

    def _client(self) -> httpx.AsyncClient:
        if self._idle:
            return self._idle.pop()
        client = httpx.AsyncClient(
            base_url=self._s.model_endpoint,
            timeout=self._timeout,
            verify=self._tls,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self._clients.append(client)
        return client

    async def aclose(self) -> None:
        clients, self._clients, self._idle = self._clients, [], []
        for client in clients:
            await client.aclose()

    def backoff_s(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): exponential, capped, jittered."""
        s = self._s
        delay = min(s.backoff_max_s, s.backoff_initial_s * s.backoff_multiplier ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

    async def complete(self, request: InferenceRequest) -> dict[str, Any]:
        """Call the model and return the result record; raises :class:`ModelError`."""
        started = time.monotonic()
        last_error = ""
        for attempt in range(1, self._s.max_attempts + 1):
            try:
                response = await self._attempt(request)
                elapsed = time.monotonic() - started
                result = build_result(request, self._s.model_name, response, elapsed)
            except _Retryable as exc:
                last_error = str(exc)
            except ValueError as exc:  # 2xx with an unexpected body
                last_error = str(exc)
            else:
                self._metrics.latency.observe(time.monotonic() - started)
                return result
            if attempt == self._s.max_attempts:
                break
            if self._stop is not None and self._stop.is_set():
                last_error += " (shutting down: no further retries)"
                break
            delay = self.backoff_s(attempt)
            self._metrics.model_retries.inc()
            log.warning(
                "model call failed, retrying",
                request_id=request.id,
                attempt=attempt,
                error=last_error,
                retry_in_s=round(delay, 3),
            )
            if await self._sleep_or_stop(delay):
                last_error += " (shutting down: no further retries)"
                break
        raise ModelUnavailable(f"after {attempt} attempt(s): {last_error}")

    async def _sleep_or_stop(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; return True early if a shutdown was requested."""
        if self._stop is None:
            await asyncio.sleep(delay)
            return False
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True

    async def _post(self, request: InferenceRequest) -> httpx.Response:
        async with self._connections:
            client = self._client()
            try:
                return await client.post(
                    request.openai_path(),
                    json=request.openai_body(self._s.model_name),
                    # vLLM echoes this as its request id (--enable-request-id-headers).
                    headers={"X-Request-Id": request.id},
                )
            finally:
                self._idle.append(client)

    async def _attempt(self, request: InferenceRequest) -> dict[str, Any]:
        try:
            resp = await self._post(request)
        except httpx.TimeoutException as exc:
            raise _Retryable(
                f"timeout after {self._s.request_timeout_s}s: {type(exc).__name__}"
            ) from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection error: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 500 or resp.status_code in _RETRYABLE_4XX:
            raise _Retryable(f"HTTP {resp.status_code}: {resp.text[:200]}")
        if resp.status_code >= 400:
            raise ModelRejected(f"HTTP {resp.status_code}: {resp.text[:500]}")
        try:
            body = resp.json()
        except ValueError:
            raise _Retryable(f"HTTP {resp.status_code} with a non-JSON body") from None
        if not isinstance(body, dict):
            raise _Retryable("model response is not a JSON object")
        return body


def wait_for_model(endpoint: str, timeout_s: float, poll_s: float = 1.0) -> bool:
    """Poll ``{endpoint}/health`` until it answers 200 or ``timeout_s`` passes."""
    if timeout_s <= 0:
        return True
    deadline = time.monotonic() + timeout_s
    url = f"{endpoint}/health"
    last = "no answer yet"
    with httpx.Client(timeout=min(5.0, max(timeout_s, 0.1))) as client:
        while True:
            try:
                resp = client.get(url)
                if resp.status_code == 200:
                    log.info("model server is ready", url=url)
                    return True
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error("model server not ready in time", url=url, timeout_s=timeout_s, last=last)
                return False
            time.sleep(min(poll_s, remaining))
