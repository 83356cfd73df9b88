"""scripts/streaming_local.py against the real emulator: the resources a streaming stack
creates, and a worker that runs on them with the environment the platform gives it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fake_vllm import FakeVLLM

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "workloads" / "examples" / "streaming-gemma-l4.yaml"
PROJECT = "streaming-local-test"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "streaming_local", REPO / "scripts" / "streaming_local.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


streaming_local = _load_script()


@pytest.fixture(scope="module")
def resources(emulator_host: str):
    created = streaming_local.StreamingResources.from_spec(SPEC, PROJECT)
    streaming_local.create_resources(created)
    streaming_local.create_resources(created)  # a second run against the same emulator
    return created


def test_names_are_the_platforms(resources) -> None:
    """Names as workloads/streaming.py creates them: <name>-input, -output, -dead-letter."""
    assert resources.name == "gemma-stream"
    base = f"projects/{PROJECT}"
    assert resources.input_topic == f"{base}/topics/gemma-stream-input"
    assert resources.output_topic == f"{base}/topics/gemma-stream-output"
    assert resources.dead_letter_topic == f"{base}/topics/gemma-stream-dead-letter"
    assert resources.input_subscription == f"{base}/subscriptions/gemma-stream-input"
    assert resources.dead_letter_subscription == f"{base}/subscriptions/gemma-stream-dead-letter"


def test_topics_and_subscriptions_exist_with_the_specs_settings(resources) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        topics = {t.name for t in publisher.list_topics(request={"project": f"projects/{PROJECT}"})}
        assert {
            resources.input_topic,
            resources.output_topic,
            resources.dead_letter_topic,
        } <= topics

        sub = subscriber.get_subscription(request={"subscription": resources.input_subscription})
        assert sub.topic == resources.input_topic
        assert sub.ack_deadline_seconds == 300  # streaming.ackDeadlineSeconds of the example
        assert sub.dead_letter_policy.dead_letter_topic == resources.dead_letter_topic
        assert sub.dead_letter_policy.max_delivery_attempts == 5

        dead = subscriber.get_subscription(
            request={"subscription": resources.dead_letter_subscription}
        )
        assert dead.topic == resources.dead_letter_topic
    finally:
        publisher.stop()
        subscriber.close()


def test_worker_runs_on_them_with_the_platforms_environment(
    resources, fake_vllm: FakeVLLM, start_worker
) -> None:
    env = resources.worker_env(fake_vllm.url, "fake-model", metrics_port=0)
    assert env["INPUT_SUBSCRIPTION"] == resources.input_subscription
    assert env["MAX_CONCURRENCY"] == "16"  # streaming.workerConcurrency of the example
    start_worker({**env, "MODEL_READY_TIMEOUT_S": "10", "SHUTDOWN_GRACE_S": "10"})

    code = streaming_local.main(
        ["publish", "--spec", str(SPEC), "--project", PROJECT, '{"id": "local-1", "prompt": "p1"}']
    )
    assert code == 0

    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    try:
        got = []
        for _ in range(60):
            response = subscriber.pull(
                request={"subscription": resources.output_subscription, "max_messages": 10},
                timeout=5,
            )
            got += [json.loads(m.message.data) for m in response.received_messages]
            if response.received_messages:
                subscriber.acknowledge(
                    request={
                        "subscription": resources.output_subscription,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
            if got:
                break
    finally:
        subscriber.close()
    assert [(body["id"], body["model"]) for body in got] == [("local-1", "fake-model")]
