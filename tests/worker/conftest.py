"""Fixtures for the worker tests: the real Pub/Sub emulator and the FakeVLLM test double."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Helper modules next to this file (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))

from fake_vllm import FakeVLLM, model_env
from pubsub_emulator import PROJECT, Collector, PubSubAdmin, running_emulator


@pytest.fixture(scope="session")
def emulator_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    with running_emulator(log) as host:
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        try:
            yield host
        finally:
            if previous is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def admin(emulator_host: str) -> Iterator[PubSubAdmin]:
    client = PubSubAdmin()
    yield client
    client.close()


@pytest.fixture(scope="session")
def fake_vllm_server() -> Iterator[FakeVLLM]:
    server = FakeVLLM().start()
    yield server
    server.stop()


@pytest.fixture
def fake_vllm(fake_vllm_server: FakeVLLM) -> FakeVLLM:
    fake_vllm_server.reset()
    return fake_vllm_server


@dataclass
class PubSubSetup:
    """Fresh topics/subscriptions for one test, plus collectors on the outputs."""

    admin: PubSubAdmin
    input_topic: str
    input_subscription: str
    output_topic: str
    dead_letter_topic: str
    outputs: Collector
    dead_letters: Collector
    _collectors: list[Collector] = field(default_factory=list)

    def env(self, model_url: str, **overrides: Any) -> dict[str, str]:
        streaming = {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            # one id and two full paths: both spellings are exercised
            "INPUT_SUBSCRIPTION": self.input_subscription.rsplit("/", 1)[1],
            "OUTPUT_TOPIC": self.output_topic,
            "DEAD_LETTER_TOPIC": self.dead_letter_topic,
            "METRICS_PORT": "0",
            "SHUTDOWN_GRACE_S": "10",
            # Short lease extensions: unacked messages of a stopped worker expire sooner.
            "MAX_LEASE_EXTENSION_S": "10",
        }
        return model_env(model_url, **{**streaming, **overrides})


@pytest.fixture
def pubsub(admin: PubSubAdmin) -> Iterator[PubSubSetup]:
    input_topic = admin.topic()
    output_topic = admin.topic()
    dead_letter_topic = admin.topic()
    setup = PubSubSetup(
        admin=admin,
        input_topic=input_topic,
        # The input subscription dead-letters to the same topic the worker uses for
        # malformed messages, as the platform configures it.
        input_subscription=admin.subscription(
            input_topic, dead_letter_topic=dead_letter_topic, max_delivery_attempts=5
        ),
        output_topic=output_topic,
        dead_letter_topic=dead_letter_topic,
        outputs=admin.collect(admin.subscription(output_topic)),
        dead_letters=admin.collect(admin.subscription(dead_letter_topic)),
    )
    yield setup
    setup.outputs.stop()
    setup.dead_letters.stop()


class WorkerThread:
    """Runs a StreamingWorker in this process on its own event loop thread."""

    def __init__(self, env: dict[str, str]) -> None:
        from gke_inference_worker.config import StreamingConfig
        from gke_inference_worker.streaming import StreamingWorker

        self.worker = StreamingWorker(StreamingConfig.from_env(env))
        self.exit_code: int | None = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self.exit_code = self._loop.run_until_complete(self.worker.run(self._stop))
        self._loop.close()

    def start(self) -> WorkerThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30) -> int | None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "worker did not stop in time"
        return self.exit_code


@pytest.fixture
def start_worker() -> Iterator[Any]:
    """``start_worker(env)`` runs a streaming worker in-process; stopped after the test."""
    workers: list[WorkerThread] = []

    def start(env: dict[str, str]) -> WorkerThread:
        worker = WorkerThread(env).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
