"""FakeVLLM: a test double for an OpenAI-compatible vLLM server, on 127.0.0.1.

Serves ``GET /health``, ``POST /v1/completions`` and ``POST /v1/chat/completions``
from a thread (stdlib ``ThreadingHTTPServer``, one thread per connection, HTTP/1.1
keep-alive). Two settings keep the test double from setting the pace:

* its listen backlog is 1024, not the ``socketserver`` default of 5, which a
  client opening tens of connections at once overflows;
* its sockets have ``TCP_NODELAY``: the stdlib handler writes a response's
  headers and body separately, and with Nagle's algorithm the body waited for
  the client's delayed ACK, about 40 ms per response on Linux.

Tests steer it through attributes:

* ``delay_s`` - every completion takes this long;
* ``fail_next`` - the next N completions answer HTTP 500;
* ``fail_ids`` - completions for these request ids (``X-Request-Id``) answer 500;
* ``reject_ids`` - completions for these ids answer 400 (a non-retryable error);
* ``healthy`` - ``/health`` answers 200 when true, 503 otherwise.

It records every completion's request id (``calls``), the highest number of
completions it was serving at the same time (``max_concurrent``) and the number of
TCP connections it accepted (``connections``); ``GET /stats`` returns the counts.

``python tests/worker/fake_vllm.py --delay-ms 20`` runs it as its own process,
beside the code under test as vLLM is (``bench/worker_throughput.py`` does: in
the measured process its threads took 10-20 % off both the worker and the floor
at MAX_CONCURRENCY 64); it prints its URL on stdout and serves until SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Listen backlog: far above any MAX_CONCURRENCY the tests and the benchmark use.
LISTEN_BACKLOG = 1024


def model_env(url: str, **overrides: Any) -> dict[str, str]:
    """The model settings of a worker under test: the model at ``url``, small limits, fast retries."""
    env = {
        "MODEL_ENDPOINT": url,
        "MODEL_NAME": "fake-model",
        "MAX_CONCURRENCY": "4",
        "REQUEST_TIMEOUT_S": "10",
        "MAX_ATTEMPTS": "3",
        "BACKOFF_INITIAL_S": "0.05",
        "BACKOFF_MAX_S": "0.2",
        "MODEL_READY_TIMEOUT_S": "0",
    }
    return {**env, **{k: str(v) for k, v in overrides.items()}}


class _Server(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.connections = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1  # only the serve_forever thread accepts
        super().process_request(request, client_address)


class FakeVLLM:
    def __init__(self) -> None:
        self.delay_s = 0.0
        self.fail_next = 0
        self.fail_ids: set[str] = set()
        self.reject_ids: set[str] = set()
        self.healthy = True
        self.calls: list[str] = []
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def connections(self) -> int:
        """TCP connections accepted since the server started."""
        return self._server.connections

    def start(self) -> FakeVLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.delay_s = 0.0
            self.fail_next = 0
            self.fail_ids = set()
            self.reject_ids = set()
            self.healthy = True
            self.calls = []
            # `concurrent` is not reset: requests of a previous test may still be running.
            self.max_concurrent = 0

    def call_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.calls)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "calls": len(self.calls),
                "max_concurrent": self.max_concurrent,
                "connections": self.connections,
            }

    # --- request handling --------------------------------------------------

    def _complete(self, path: str, body: dict[str, Any], request_id: str) -> tuple[int, Any]:
        with self._lock:
            self.calls.append(request_id)
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            fail = self.fail_next > 0 or request_id in self.fail_ids
            if self.fail_next > 0:
                self.fail_next -= 1
            reject = request_id in self.reject_ids
            delay = self.delay_s
        try:
            if delay:
                time.sleep(delay)
            if reject:
                return 400, {"object": "error", "message": "prompt too long", "code": 400}
            if fail:
                return 500, {"object": "error", "message": "injected failure", "code": 500}
            model = body.get("model", "")
            if path == "/v1/chat/completions":
                text = "echo:" + " ".join(str(m.get("content", "")) for m in body["messages"])
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            else:
                text = f"echo:{body['prompt']}"
                choice = {"index": 0, "text": text, "finish_reason": "stop"}
            usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            return 200, {
                "id": f"cmpl-{request_id}",
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        finally:
            with self._lock:
                self.concurrent -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(200 if fake.healthy else 503, {})
                elif self.path == "/stats":
                    self._send(200, fake.stats())
                else:
                    self._send(404, {"message": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path not in ("/v1/completions", "/v1/chat/completions"):
                    self._send(404, {"message": "not found"})
                    return
                request_id = self.headers.get("X-Request-Id", "")
                status, payload = fake._complete(self.path, body, request_id)
                self._send(status, payload)

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the vLLM test double until SIGTERM/SIGINT.")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="latency of every completion")
    args = parser.parse_args()
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # also blocked in the server's threads
    fake = FakeVLLM()
    fake.delay_s = args.delay_ms / 1000
    fake.start()
    print(fake.url, flush=True)
    signal.sigwait(signals)
    fake.stop()


if __name__ == "__main__":
    main()
