"""Throughput of the streaming worker through the Pub/Sub emulator (run by hand).

    .venv/bin/python bench/worker_throughput.py [--messages N] [--latency-ms MS]

Starts the real Pub/Sub emulator and the FakeVLLM test double (fixed latency),
then for MAX_CONCURRENCY 1, 8 and 64 publishes N messages, runs one in-process
streaming worker and reports messages per second from its first output to the
last one collected (publish time excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

# The emulator helpers and the vLLM test double live with the worker tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "worker"))

from fake_vllm import FakeVLLM
from pubsub_emulator import PROJECT, PubSubAdmin, running_emulator

from gke_inference_worker import jsonlog
from gke_inference_worker.config import StreamingConfig
from gke_inference_worker.streaming import StreamingWorker


def run_once(admin: PubSubAdmin, fake: FakeVLLM, concurrency: int, messages: int) -> float:
    input_topic, output_topic, dead_letter_topic = admin.topic(), admin.topic(), admin.topic()
    subscription = admin.subscription(input_topic, ack_deadline_s=60)
    outputs = admin.collect(admin.subscription(output_topic))
    payloads = [json.dumps({"id": str(i), "prompt": f"p{i}"}).encode() for i in range(messages)]
    admin.publish(input_topic, payloads)

    config = StreamingConfig.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "INPUT_SUBSCRIPTION": subscription,
            "OUTPUT_TOPIC": output_topic,
            "DEAD_LETTER_TOPIC": dead_letter_topic,
            "MODEL_ENDPOINT": fake.url,
            "MODEL_NAME": "bench",
            "MAX_CONCURRENCY": str(concurrency),
            "METRICS_PORT": "0",
        }
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    worker = StreamingWorker(config)
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(stop),))
    started = time.monotonic()
    thread.start()
    try:
        got = outputs.wait_for(messages, timeout_s=600)
    finally:
        elapsed = time.monotonic() - started
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()
        outputs.stop()
    if len({json.loads(m.data)["id"] for m in got}) < messages:
        raise RuntimeError(f"only {len(got)} of {messages} outputs arrived")
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    args = parser.parse_args()
    jsonlog.configure("WARNING")

    fake = FakeVLLM().start()
    fake.delay_s = args.latency_ms / 1000
    with tempfile.TemporaryDirectory() as tmp, running_emulator(Path(tmp) / "emulator.log") as host:
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        admin = PubSubAdmin()
        print(f"{args.messages} messages, model latency {args.latency_ms:g} ms")
        print(f"{'MAX_CONCURRENCY':>15}  {'msg/s':>8}  {'bound (1000/latency*c)':>22}")
        for concurrency in args.concurrency:
            rate = run_once(admin, fake, concurrency, args.messages)
            bound = 1000 / args.latency_ms * concurrency
            print(f"{concurrency:>15}  {rate:>8.1f}  {bound:>22.0f}", flush=True)
        admin.close()
    fake.stop()


if __name__ == "__main__":
    main()
