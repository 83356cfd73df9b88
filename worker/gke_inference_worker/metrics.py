"""Prometheus metrics, in a registry owned by one worker instance.

Each worker gets its own :class:`CollectorRegistry` so several workers (for
example in tests) never collide; the HTTP endpoint serves that registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "gke_inference_worker"

# Seconds; inference calls range from tens of milliseconds to minutes.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.processed = Counter(
            f"{PREFIX}_messages_processed",
            "Requests whose model result was published/written and acknowledged.",
            registry=r,
        )
        self.failed = Counter(
            f"{PREFIX}_messages_failed",
            "Requests that failed after all retries (nacked in streaming, error record in batch).",
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{PREFIX}_messages_dead_lettered",
            "Messages published to DEAD_LETTER_TOPIC by the worker.",
            ["reason"],
            registry=r,
        )
        self.model_retries = Counter(
            f"{PREFIX}_model_retries",
            "Model calls retried after a retryable error (5xx, 429, timeout, connection).",
            registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_latency_seconds",
            "Time from the start of a request's model call to its result, retries included.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight",
            "Requests currently being processed (model call or publish).",
            registry=r,
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scraped in-cluster
        """Expose /metrics on ``port`` in a daemon thread (no-op for port 0)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)
