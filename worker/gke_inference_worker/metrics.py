"""Prometheus metrics, in a registry owned by one worker instance.

Each worker gets its own :class:`CollectorRegistry` so several workers (for
example in tests) never collide; the HTTP endpoint serves that registry.
"""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "gke_inference_worker"

# Seconds; inference calls range from tens of milliseconds to minutes.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

#: Every metric (its name after the ``gke_inference_worker_`` prefix) and the help /metrics shows.
HELP = {
    "messages_processed": "Requests whose model result was published/written and acknowledged.",
    "messages_failed": "Requests that failed after all retries (nacked in streaming, error record in batch).",
    "messages_dead_lettered": "Messages published to DEAD_LETTER_TOPIC by the worker.",
    "model_retries": "Model calls retried after a retryable error (5xx, 429, timeout, connection).",
    "request_latency_seconds": "Time from the start of a request's model call to its result, retries included.",
    "in_flight": "Requests currently being processed (model call or publish).",
}

Metric = TypeVar("Metric", Counter, Gauge, Histogram)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.processed = self._new(Counter, "messages_processed")
        self.failed = self._new(Counter, "messages_failed")
        self.dead_lettered = self._new(Counter, "messages_dead_lettered", labelnames=["reason"])
        self.model_retries = self._new(Counter, "model_retries")
        self.latency = self._new(Histogram, "request_latency_seconds", buckets=LATENCY_BUCKETS)
        self.in_flight = self._new(Gauge, "in_flight")

    def _new(self, kind: type[Metric], name: str, **options: Any) -> Metric:
        return kind(name, HELP[name], namespace=PREFIX, registry=self.registry, **options)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scraped in-cluster
        """Expose /metrics on ``port`` in a daemon thread (no-op for port 0)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)
