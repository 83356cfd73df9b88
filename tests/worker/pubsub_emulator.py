"""Start and stop the real Cloud Pub/Sub emulator on 127.0.0.1, by PID.

Shared by the worker tests (``conftest.py``), ``bench/worker_throughput.py`` and
``scripts/streaming_local.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
PROJECT = "worker-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


def stop_process_group(proc: subprocess.Popen[Any], timeout_s: float = 10) -> None:
    """Stop a process started with ``start_new_session=True`` and its children, by PID."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout_s)
    else:
        # The leader is gone; make sure no child (the JVM) outlived it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_emulator(
    log_path: Path, port: int | None = None, timeout_s: float = 60
) -> Iterator[str]:
    """Run the emulator on 127.0.0.1 (``port``, or a free one) for the duration of the
    block; yields ``host:port``."""
    if not EMULATOR.exists():
        raise FileNotFoundError(
            f"no Pub/Sub emulator at {EMULATOR}: gcloud components install pubsub-emulator"
        )
    port = port or free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(EMULATOR), "--host=127.0.0.1", f"--port={port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, timeout_s, proc)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process_group(proc)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class PubSubAdmin:
    """Creates topics and subscriptions in the emulator (``PUBSUB_EMULATOR_HOST`` must be set)."""

    def __init__(self, project: str = PROJECT) -> None:
        from google.cloud import pubsub_v1

        self.project = project
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def topic(self, name: str | None = None) -> str:
        path = self.publisher.topic_path(self.project, name or unique("topic"))
        self.publisher.create_topic(name=path)
        return str(path)

    def subscription(
        self,
        topic: str,
        name: str | None = None,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int = 5,
        ack_deadline_s: int = 10,
    ) -> str:
        path = self.subscriber.subscription_path(self.project, name or unique("sub"))
        request: dict[str, Any] = {
            "name": path,
            "topic": topic,
            "ack_deadline_seconds": ack_deadline_s,
        }
        if dead_letter_topic:
            request["dead_letter_policy"] = {
                "dead_letter_topic": dead_letter_topic,
                "max_delivery_attempts": max_delivery_attempts,
            }
        self.subscriber.create_subscription(request=request)
        return str(path)

    def publish(self, topic: str, payloads: list[bytes]) -> None:
        futures = [self.publisher.publish(topic, p) for p in payloads]
        for f in futures:
            f.result(timeout=30)

    def pull(self, subscription: str, expected: int, timeout_s: float) -> list[Any]:
        """Unary-pull and ack until ``expected`` messages arrived or ``timeout_s`` passed.

        Used as "the next consumer" after a worker stopped: the emulator does not
        act on nacks sent after their streaming pull closed (real Pub/Sub does) and
        redelivers those messages only when the stream ack deadline expires; in our
        probes a fresh *streaming* pull did not reliably receive them even then,
        while a unary pull did.
        """
        from google.api_core import exceptions

        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            try:
                resp = self.subscriber.pull(
                    request={"subscription": subscription, "max_messages": 100}, timeout=2
                )
            except exceptions.DeadlineExceeded:
                continue
            if resp.received_messages:
                self.subscriber.acknowledge(
                    request={
                        "subscription": subscription,
                        "ack_ids": [m.ack_id for m in resp.received_messages],
                    }
                )
                got.extend(m.message for m in resp.received_messages)
            else:
                time.sleep(0.1)
        return got

    def collect(self, subscription: str) -> Collector:
        """Start acking and recording every message of ``subscription`` in the background."""
        return Collector(self.subscriber, subscription)

    def close(self) -> None:
        self.publisher.stop()
        self.subscriber.close()


class Collector:
    """Streaming-pulls a subscription, acks everything and keeps the messages."""

    def __init__(self, subscriber: Any, subscription: str) -> None:
        self.messages: list[Any] = []
        self._cond = threading.Condition()
        self._future = subscriber.subscribe(subscription, callback=self._on_message)

    def _on_message(self, message: Any) -> None:
        message.ack()
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout_s: float) -> list[Any]:
        """Wait until at least ``count`` messages arrived (or the timeout); return them all."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout_s)
            return list(self.messages)

    def settle(self, quiet_s: float = 1.0, timeout_s: float = 30) -> list[Any]:
        """Wait until no new message arrived for ``quiet_s``; return them all."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while time.monotonic() < deadline:
                seen = len(self.messages)
                self._cond.wait(quiet_s)
                if len(self.messages) == seen:
                    break
            return list(self.messages)

    def stop(self) -> None:
        self._future.cancel()
        with contextlib.suppress(Exception):
            self._future.result(timeout=10)
