"""Streaming worker: Pub/Sub subscription -> model server -> Pub/Sub topic.

Threads and the event loop:

* The Pub/Sub streaming pull delivers each message to :meth:`_on_message` on a
  callback thread from a pool of ``MAX_CONCURRENCY`` threads, with flow control
  ``max_messages=MAX_CONCURRENCY``. The callback hands the message to the
  asyncio loop and *blocks* until it is handled, so the number of messages being
  processed is bounded three ways (flow control, thread pool, semaphore).
* Blocking callbacks also make shutdown exact: the stream is closed with
  ``await_callbacks_on_shutdown=True``, so the client stops pulling, nacks the
  messages it holds but has not dispatched, waits for the in-flight callbacks
  (whose acks/nacks still go out), and only then stops its dispatcher.

A message is acked only after its result (or its dead-letter copy) has been
published and the publish future has resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.cloud import pubsub_v1  # type: ignore[import-untyped]
from google.cloud.pubsub_v1.subscriber.message import (  # type: ignore[import-untyped]
    Message,
)
from google.cloud.pubsub_v1.subscriber.scheduler import (  # type: ignore[import-untyped]
    ThreadScheduler,
)

from .config import StreamingConfig
from .jsonlog import get_logger
from .messages import MalformedRequest, parse_request
from .metrics import WorkerMetrics
from .model_client import ModelClient, ModelRejected, ModelUnavailable

log = get_logger(__name__)

# Pub/Sub attribute values are limited to 1024 bytes.
_MAX_ATTRIBUTE = 1000
# Time kept in reserve at the end of the grace period for nacks and cleanup.
_SHUTDOWN_RESERVE_S = 2.0


def _attr(value: str) -> str:
    raw = value.encode()
    if len(raw) <= _MAX_ATTRIBUTE:
        return value
    return raw[: _MAX_ATTRIBUTE - 3].decode(errors="ignore") + "..."


class StreamingWorker:
    def __init__(
        self,
        config: StreamingConfig,
        metrics: WorkerMetrics | None = None,
        publisher: pubsub_v1.PublisherClient | None = None,
        subscriber: pubsub_v1.SubscriberClient | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or WorkerMetrics()
        self._publisher = publisher or pubsub_v1.PublisherClient()
        self._subscriber = subscriber or pubsub_v1.SubscriberClient()
        self._stopping = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._model: ModelClient | None = None
        self._slots: asyncio.Semaphore | None = None

    async def run(self, stop: asyncio.Event) -> int:
        """Process messages until ``stop`` is set; return the process exit code."""
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._model = ModelClient(cfg, self.metrics, stop=stop)
        self._slots = asyncio.Semaphore(cfg.max_concurrency)
        executor = ThreadPoolExecutor(
            max_workers=cfg.max_concurrency, thread_name_prefix="pubsub-callback"
        )
        pull_ended = asyncio.Event()
        streaming = self._subscriber.subscribe(
            cfg.input_subscription,
            callback=self._on_message,
            flow_control=pubsub_v1.types.FlowControl(
                max_messages=cfg.max_concurrency,
                # Also the stream's ack deadline: how soon the messages of a
                # vanished worker are redelivered.
                max_duration_per_lease_extension=cfg.max_lease_extension_s,
            ),
            scheduler=ThreadScheduler(executor),
            await_callbacks_on_shutdown=True,
        )
        streaming.add_done_callback(
            lambda _f: self._loop.call_soon_threadsafe(pull_ended.set) if self._loop else None
        )
        log.info(
            "streaming worker started",
            subscription=cfg.input_subscription,
            output_topic=cfg.output_topic,
            dead_letter_topic=cfg.dead_letter_topic,
            max_concurrency=cfg.max_concurrency,
        )
        stop_wait = asyncio.create_task(stop.wait())
        pull_wait = asyncio.create_task(pull_ended.wait())
        await asyncio.wait({stop_wait, pull_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        pull_wait.cancel()

        exit_code = 0
        if not stop.is_set():
            # The stream ended by itself: a permanent error such as a missing subscription.
            exc = streaming.exception() if not streaming.cancelled() else None
            log.error("streaming pull ended unexpectedly", error=repr(exc))
            exit_code = 1
            stop.set()
        await self._shutdown(streaming)
        executor.shutdown(wait=False, cancel_futures=True)
        return exit_code

    async def _shutdown(self, streaming: pubsub_v1.subscriber.futures.StreamingPullFuture) -> None:
        assert self._loop is not None and self._model is not None
        grace = self.config.shutdown_grace_s
        self._stopping.set()
        log.info(
            "shutting down: stopped pulling, draining in-flight messages",
            in_flight=len(self._tasks),
            grace_s=grace,
        )

        def close_stream() -> None:
            streaming.cancel()
            with contextlib.suppress(Exception):
                streaming.result()

        closed = asyncio.ensure_future(self._loop.run_in_executor(None, close_stream))
        drain_s = max(grace - _SHUTDOWN_RESERVE_S, grace / 2)
        try:
            await asyncio.wait_for(asyncio.shield(closed), timeout=drain_s)
        except TimeoutError:
            log.warning(
                "grace period ending: nacking unfinished messages", in_flight=len(self._tasks)
            )
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(closed), timeout=_SHUTDOWN_RESERVE_S / 2)
        await self._loop.run_in_executor(None, self._publisher.stop)
        # Closing the channel also tells the server that this stream is gone.
        await self._loop.run_in_executor(None, self._subscriber.close)
        await self._model.aclose()
        log.info("shutdown complete")

    # --- per message -------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        """Pub/Sub callback thread: run the handler on the loop and wait for it."""
        if self._stopping.is_set() or self._loop is None:
            message.nack()
            return
        try:
            done = asyncio.run_coroutine_threadsafe(self._handle(message), self._loop)
        except RuntimeError:  # loop already closed
            message.nack()
            return
        try:
            done.result()
        except (asyncio.CancelledError, FutureCancelledError):
            pass  # the handler nacked before it was cancelled
        except Exception:  # the handler nacks; keep the callback thread alive
            log.exception("message handler crashed", message_id=message.message_id)

    async def _handle(self, message: Message) -> None:
        assert self._model is not None and self._slots is not None
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        request_id: str | None = None
        try:
            try:
                request = parse_request(message.data)
            except MalformedRequest as bad:
                request_id = bad.request_id
                await self._dead_letter(message, bad.reason, request_id, kind="malformed")
                message.ack()
                return
            request_id = request.id
            async with self._slots:
                self.metrics.in_flight.inc()
                try:
                    await self._process(message, request_id, request)
                finally:
                    self.metrics.in_flight.dec()
        except asyncio.CancelledError:
            message.nack()
            log.warning("nacked unfinished message at shutdown", request_id=request_id)
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure: let Pub/Sub redeliver
            message.nack()
            self.metrics.failed.inc()
            log.error("message failed, nacked", request_id=request_id, error=repr(exc))
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _process(self, message: Message, request_id: str, request: Any) -> None:
        assert self._model is not None
        try:
            result = await self._model.complete(request)
        except ModelRejected as exc:
            await self._dead_letter(
                message, f"model rejected request: {exc}", request_id, kind="model_rejected"
            )
            message.ack()
            return
        except ModelUnavailable as exc:
            message.nack()
            self.metrics.failed.inc()
            log.warning(
                "model unavailable, nacked for redelivery",
                request_id=request_id,
                delivery_attempt=message.delivery_attempt,
                error=str(exc),
            )
            return
        data = json.dumps(result, ensure_ascii=False).encode()
        await asyncio.wrap_future(
            self._publisher.publish(self.config.output_topic, data, request_id=_attr(request_id))
        )
        message.ack()
        self.metrics.processed.inc()
        log.debug("processed", request_id=request_id, latency_ms=result["latency_ms"])

    async def _dead_letter(
        self, message: Message, reason: str, request_id: str | None, kind: str
    ) -> None:
        attributes = {"reason": _attr(reason), "source_message_id": message.message_id}
        if request_id is not None:
            attributes["request_id"] = _attr(request_id)
        await asyncio.wrap_future(
            self._publisher.publish(self.config.dead_letter_topic, message.data, **attributes)
        )
        self.metrics.dead_lettered.labels(reason=kind).inc()
        log.warning("dead-lettered message", request_id=request_id, reason=reason, kind=kind)
