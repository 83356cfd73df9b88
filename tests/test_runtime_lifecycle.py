"""Rehearsal: serving containers drain before SIGTERM, within the pod's grace period.

The preStop hook is run as rendered (``python3 -c <script>``) against a local
HTTP server standing in for vLLM's /metrics, with short bounds through the
environment variables the script reads.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.test_runtime_cases import CASES, case, container

METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="google/gemma 3"}} {running}
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="google/gemma 3"}} {waiting}
vllm:num_requests_running_total_ignored 7.0
"""


def pre_stop(c: dict[str, Any]) -> list[str]:
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python3", "-c"]  # the one interpreter the vLLM images promise
    return list(command)


def baked(script: str, variable: str) -> float:
    match = re.search(rf'env\("{variable}", "([0-9.]+)"\)', script)
    assert match, variable
    return float(match.group(1))


@pytest.mark.parametrize("name", CASES)
def test_every_server_drains_within_the_grace_period(name: str) -> None:
    for pod in case(name).serving_pods():
        script = pre_stop(container(pod, "server"))[-1]
        bound = baked(script, "DRAIN_PROPAGATION_S") + baked(script, "DRAIN_TIMEOUT_S")
        assert pod["terminationGracePeriodSeconds"] > bound
        assert "vllm:num_requests_running" in script


def test_online_servers_wait_out_endpoint_propagation_batch_does_not() -> None:
    online = container(case("gemma-3-1b-l4").serving_pods()[0], "server")
    assert baked(pre_stop(online)[-1], "DRAIN_PROPAGATION_S") >= 15
    batch = container(case("batch-llama-8b-l4").serving_pods()[0], "server")
    assert baked(pre_stop(batch)[-1], "DRAIN_PROPAGATION_S") == 0  # only localhost calls it


class Gauges:
    """What /metrics answers: (running, waiting) per request, the last one repeated."""

    def __init__(self, values: list[tuple[int, int]]) -> None:
        self.values = values
        self.times: list[float] = []

    def next(self) -> tuple[int, int]:
        self.times.append(time.monotonic())
        return self.values[min(len(self.times), len(self.values)) - 1]


@contextmanager
def metrics_server(gauges: Gauges) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            running, waiting = gauges.next()
            body = METRICS.format(running=float(running), waiting=float(waiting)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def run_drain(url: str, **bounds: float) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """The rendered preStop command with ``bounds``: (result, start, seconds it took)."""
    command = pre_stop(container(case("gemma-3-1b-l4").serving_pods()[0], "server"))
    env = {"DRAIN_METRICS_URL": url, **{k: str(v) for k, v in bounds.items()}}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, *command[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, start, time.monotonic() - start


def test_drain_returns_when_in_flight_requests_reach_zero() -> None:
    gauges = Gauges([(2, 1), (2, 0), (1, 0), (0, 0)])
    with metrics_server(gauges) as url:
        result, start, took = run_drain(
            url, DRAIN_PROPAGATION_S=0.3, DRAIN_POLL_S=0.05, DRAIN_TIMEOUT_S=10
        )
    assert result.returncode == 0, result.stderr
    assert "no requests in flight" in result.stdout
    assert "3 requests in flight" in result.stdout  # running + waiting
    assert len(gauges.times) == 4  # it stopped polling at 0
    assert took < 5
    # Endpoint propagation first: no poll before the propagation wait is over.
    assert gauges.times[0] - start >= 0.3


def test_drain_gives_up_at_its_bound_when_requests_never_finish() -> None:
    gauges = Gauges([(2, 0)])
    with metrics_server(gauges) as url:
        result, _, took = run_drain(
            url, DRAIN_PROPAGATION_S=0, DRAIN_POLL_S=0.05, DRAIN_TIMEOUT_S=0.5
        )
    assert result.returncode == 0, result.stderr
    assert "still in flight" in result.stdout
    assert 0.5 <= took < 3
    assert len(gauges.times) >= 3


def test_drain_returns_at_once_when_the_server_is_gone() -> None:
    result, _, took = run_drain(
        "http://127.0.0.1:9/metrics", DRAIN_PROPAGATION_S=0, DRAIN_POLL_S=0.05, DRAIN_TIMEOUT_S=10
    )
    assert result.returncode == 0 and "nothing to wait for" in result.stdout
    assert took < 5
