"""FakeVLLM: a test double for an OpenAI-compatible vLLM server, on 127.0.0.1.

Serves ``GET /health``, ``POST /v1/completions`` and ``POST /v1/chat/completions``
from a thread (stdlib ``ThreadingHTTPServer``, one thread per request). Tests
steer it through attributes:

* ``delay_s`` - every completion takes this long;
* ``fail_next`` - the next N completions answer HTTP 500;
* ``fail_ids`` - completions for these request ids (``X-Request-Id``) answer 500;
* ``reject_ids`` - completions for these ids answer 400 (a non-retryable error);
* ``healthy`` - ``/health`` answers 200 when true, 503 otherwise.

It records every completion's request id (``calls``) and the highest number of
completions it was serving at the same time (``max_concurrent``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

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
