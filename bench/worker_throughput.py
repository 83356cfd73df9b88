"""Throughput of the streaming worker through the Pub/Sub emulator, against a floor (run by hand).

    .venv/bin/python bench/worker_throughput.py [--messages N] [--latency-ms MS]
        [--concurrency 1 8 64] [--repeat R] [--profile DIR]

Starts the real Pub/Sub emulator and the FakeVLLM test double (fixed latency, in
its own process, as vLLM is in a pod). Then, for each MAX_CONCURRENCY, it runs
two consumers on the same emulator and stand-in, each on a fresh input
subscription holding the same N messages:

* **worker**: one in-process ``StreamingWorker`` (its own event loop thread);
* **floor**: the plain client libraries doing the same work: the library's own
  ``SubscriberClient.subscribe`` with ``FlowControl(max_messages=C)`` and a
  ``ThreadScheduler`` of C threads (the library's default pool has 10), whose
  callback parses the JSON, POSTs the same request to the stand-in with one
  shared pooled ``httpx.Client``, publishes the result with a ``PublisherClient``,
  waits for the publish future and acks.

Both are timed from the start of the consumer until the collector on the output
topic has every id (publishing the input is excluded). The floor and the worker
alternate (floor first) ``--repeat`` times; the table shows the median msg/s of
each and worker/floor (the target is >= 1/1.3 = 0.77, i.e. the worker takes at
most 1.3x the floor's time). ``model-bound`` is 1000 / latency * C. Also per
message: the CPU time of this process, and of the worker's event loop thread
alone; and how many cores the whole machine kept busy (every process: the
emulator, the stand-in, this one and anything else running).

``--profile DIR`` also writes a cProfile file of the worker's event loop thread
per worker run (``DIR/worker-c<C>.prof``; the client libraries' threads are not
in it). The profiler slows the worker down: do not compare those runs' figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# The emulator helpers and the vLLM test double live with the worker tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "worker"))

from pubsub_emulator import PROJECT, PubSubAdmin, running_emulator, stop_process_group

from gke_inference_worker import jsonlog
from gke_inference_worker.config import StreamingConfig
from gke_inference_worker.streaming import StreamingWorker

TESTS = Path(__file__).resolve().parents[1] / "tests" / "worker"
MODEL = "bench"


@contextmanager
def stand_in(latency_ms: float) -> Iterator[str]:
    """Run tests/worker/fake_vllm.py in its own process; yields its URL; stopped by PID."""
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "fake_vllm.py"), "--delay-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the stand-in did not start (exit code {proc.poll()})")
        yield url
    finally:
        stop_process_group(proc)


def stand_in_round_trip_ms(url: str, requests: int = 50) -> float:
    """Median time of one completion, sequential, over one kept-alive connection."""
    times = []
    with httpx.Client(base_url=url) as http:
        for _ in range(requests):
            started = time.perf_counter()
            http.post("/v1/completions", json={"model": MODEL, "prompt": "p"}).raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def stand_in_stats(url: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(f"{url}/stats").json()
    return stats


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (all processes, all cores) since boot."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(v) for v in stat.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Run:
    """Fresh topics and an input subscription holding ``messages`` requests."""

    def __init__(self, admin: PubSubAdmin, messages: int) -> None:
        self.messages = messages
        input_topic, self.output_topic = admin.topic(), admin.topic()
        self.dead_letter_topic = admin.topic()
        self.subscription = admin.subscription(input_topic, ack_deadline_s=60)
        self.outputs = admin.collect(admin.subscription(self.output_topic))
        payloads = [json.dumps({"id": str(i), "prompt": f"p{i}"}).encode() for i in range(messages)]
        admin.publish(input_topic, payloads)

    def timed(self, start: Callable[[], None], stop: Callable[[], None]) -> Result:
        """msg/s from ``start()`` until every id arrived on the output topic."""
        started, cpu, busy = time.monotonic(), time.process_time(), busy_cpu_s()
        start()
        try:
            got = self.outputs.wait_for(self.messages, timeout_s=600)
            elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
            busy = busy_cpu_s() - busy
        finally:
            stop()
            self.outputs.stop()
        if len({json.loads(m.data)["id"] for m in got}) < self.messages:
            raise RuntimeError(f"only {len(got)} of {self.messages} outputs arrived")
        return Result(self.messages / elapsed, cpu * 1000 / self.messages, busy / elapsed)


@dataclass
class Result:
    rate: float  # messages per second
    cpu_ms: float  # CPU time of this process (all threads) per message
    busy_cores: float  # the whole machine: busy CPU seconds per second
    loop_cpu_ms: float | None = None  # the worker's event loop thread, per message


def run_worker(
    admin: PubSubAdmin, url: str, concurrency: int, messages: int, profile: Path | None
) -> Result:
    run = Run(admin, messages)
    config = StreamingConfig.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "INPUT_SUBSCRIPTION": run.subscription,
            "OUTPUT_TOPIC": run.output_topic,
            "DEAD_LETTER_TOPIC": run.dead_letter_topic,
            "MODEL_ENDPOINT": url,
            "MODEL_NAME": MODEL,
            "MAX_CONCURRENCY": str(concurrency),
            "METRICS_PORT": "0",
        }
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    worker = StreamingWorker(config)
    loop_cpu: list[float] = []
    # CPU time of the loop thread only (not wall time: no GIL waits in it).
    profiler = cProfile.Profile(time.thread_time) if profile else None

    def main() -> None:
        cpu = time.thread_time()
        if profiler:
            profiler.enable()
        try:
            loop.run_until_complete(worker.run(stop))
        finally:
            if profiler:
                profiler.disable()
            loop_cpu.append(time.thread_time() - cpu)

    thread = threading.Thread(target=main)

    def halt() -> None:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()

    result = run.timed(thread.start, halt)
    result.loop_cpu_ms = loop_cpu[0] * 1000 / messages if loop_cpu else None
    if profiler and profile:
        profiler.dump_stats(profile / f"worker-c{concurrency}.prof")
    return result


def run_floor(admin: PubSubAdmin, url: str, concurrency: int, messages: int) -> Result:
    """The plain google-cloud-pubsub subscriber doing the worker's work."""
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

    run = Run(admin, messages)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    http = httpx.Client(
        base_url=url,
        timeout=120,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )

    def callback(message: Any) -> None:
        request = json.loads(message.data)
        started = time.monotonic()
        response = http.post(
            "/v1/completions",
            json={"model": MODEL, "prompt": request["prompt"]},
            headers={"X-Request-Id": request["id"]},
        )
        response.raise_for_status()
        body = response.json()
        result = {
            "id": request["id"],
            "model": body.get("model") or MODEL,
            "output": body["choices"][0]["text"],
            "usage": body.get("usage"),
            "latency_ms": round((time.monotonic() - started) * 1000, 3),
        }
        data = json.dumps(result).encode()
        publisher.publish(run.output_topic, data, request_id=request["id"]).result()
        message.ack()

    executor = ThreadPoolExecutor(max_workers=concurrency)
    streaming: Any = None

    def start() -> None:
        nonlocal streaming
        streaming = subscriber.subscribe(
            run.subscription,
            callback=callback,
            flow_control=pubsub_v1.types.FlowControl(max_messages=concurrency),
            scheduler=ThreadScheduler(executor),
        )

    def halt() -> None:
        streaming.cancel()
        streaming.result(timeout=60)
        executor.shutdown(wait=True)
        publisher.stop()
        subscriber.close()
        http.close()

    return run.timed(start, halt)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    jsonlog.configure("WARNING")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    with (
        tempfile.TemporaryDirectory() as tmp,
        running_emulator(Path(tmp) / "emulator.log") as host,
        stand_in(args.latency_ms) as url,
    ):
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        admin = PubSubAdmin()
        print(
            f"{args.messages} messages per run, model latency {args.latency_ms:g} ms, "
            f"{os.cpu_count()} CPUs, median of {args.repeat}",
            flush=True,
        )
        # The emulator's JVM compiles its hot paths during the first thousand or so
        # messages: without a warm-up the first run measured is the slowest.
        run_floor(admin, url, 8, min(1000, args.messages))
        print(
            f"stand-in: one completion takes {stand_in_round_trip_ms(url):.1f} ms "
            f"(median of 50 in a row; its latency setting is {args.latency_ms:g} ms)",
            flush=True,
        )
        print(
            f"{'MAX_CONCURRENCY':>15}  {'worker msg/s':>12}  {'floor msg/s':>11}  "
            f"{'worker/floor':>12}  {'model-bound':>11}  {'CPU ms/msg w/f (loop)':>21}  "
            f"{'busy cores w/f':>14}  {'connections w/f':>15}",
            flush=True,
        )
        for concurrency in args.concurrency:
            workers: list[Result] = []
            floors: list[Result] = []
            connections: tuple[int, int] = (0, 0)
            for _ in range(args.repeat):
                before = stand_in_stats(url)["connections"]
                floors.append(run_floor(admin, url, concurrency, args.messages))
                middle = stand_in_stats(url)["connections"]
                workers.append(run_worker(admin, url, concurrency, args.messages, args.profile))
                # Each stats request is one connection of its own.
                connections = (stand_in_stats(url)["connections"] - middle - 1, middle - before - 1)
            worker = statistics.median(r.rate for r in workers)
            floor = statistics.median(r.rate for r in floors)
            bound = 1000 / args.latency_ms * concurrency
            cpu_w = statistics.median(r.cpu_ms for r in workers)
            cpu_f = statistics.median(r.cpu_ms for r in floors)
            cpu_loop = statistics.median(r.loop_cpu_ms or 0.0 for r in workers)
            cpu = f"{cpu_w:.2f}/{cpu_f:.2f} ({cpu_loop:.2f})"
            busy_w = statistics.median(r.busy_cores for r in workers)
            busy_f = statistics.median(r.busy_cores for r in floors)
            busy = f"{busy_w:.2f}/{busy_f:.2f}"
            print(
                f"{concurrency:>15}  {worker:>12.1f}  {floor:>11.1f}  {worker / floor:>12.2f}  "
                f"{bound:>11.0f}  {cpu:>21}  {busy:>14}  {connections[0]:>7}/{connections[1]:<7}",
                flush=True,
            )
            if args.repeat > 1:
                runs = ", ".join(
                    f"{w.rate:.0f}/{f.rate:.0f}" for w, f in zip(workers, floors, strict=True)
                )
                print(f"{'':>15}  each run, worker/floor msg/s: {runs}", flush=True)
        admin.close()


if __name__ == "__main__":
    main()
