"""Run the streaming worker locally against the Pub/Sub emulator and a model endpoint.

Starts the Cloud Pub/Sub emulator that ships with gcloud on 127.0.0.1 (Java 17),
creates what a ``kind: streaming`` workload stack creates (``workloads/streaming.py``):
topics ``<name>-input``, ``<name>-output`` and ``<name>-dead-letter``, the
subscription ``<name>-input`` with the spec's dead-letter policy, retry backoff
and ack deadline, and the subscription ``<name>-dead-letter``; then runs
``gke-inference-worker streaming`` against an OpenAI-compatible endpoint with
the environment the platform gives it. Ctrl-C stops the worker (it drains), then
the emulator, each by its PID.

    .venv/bin/python scripts/streaming_local.py run \\
        --spec workloads/examples/streaming-gemma-l4.yaml \\
        --endpoint http://127.0.0.1:8000 --model google/gemma-3-4b-it
    # in another shell, with the PUBSUB_EMULATOR_HOST that `run` prints:
    .venv/bin/python scripts/streaming_local.py publish --name gemma-stream \\
        '{"id": "r-1", "prompt": "Write a haiku", "max_tokens": 64}'
    .venv/bin/python scripts/streaming_local.py pull --name gemma-stream   # results
    .venv/bin/python scripts/streaming_local.py pull --name gemma-stream --dead-letters

``run --setup-only`` starts the emulator and creates the resources but no
worker (run the worker yourself with the printed environment).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PROJECT = "local-streaming"
REPO = Path(__file__).resolve().parents[1]
# How the emulator is started and stopped (by PID) is shared with the worker tests.
sys.path.insert(0, str(REPO / "tests" / "worker"))
from pubsub_emulator import (  # noqa: E402
    free_port,
    running_emulator,
    stop_process_group,
)


@dataclass(frozen=True)
class StreamingResources:
    """Names and settings of a streaming workload's Pub/Sub resources."""

    project: str
    name: str
    ack_deadline_seconds: int = 600
    max_delivery_attempts: int = 10
    message_retention_seconds: int = 86_400
    min_backoff_seconds: int = 10
    max_backoff_seconds: int = 600
    worker_concurrency: int = 16

    @property
    def input_topic(self) -> str:
        return f"projects/{self.project}/topics/{self.name}-input"

    @property
    def output_topic(self) -> str:
        return f"projects/{self.project}/topics/{self.name}-output"

    @property
    def dead_letter_topic(self) -> str:
        return f"projects/{self.project}/topics/{self.name}-dead-letter"

    @property
    def input_subscription(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.name}-input"

    @property
    def dead_letter_subscription(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.name}-dead-letter"

    @property
    def output_subscription(self) -> str:
        """Local only (the platform creates none): where `pull` reads the results."""
        return f"projects/{self.project}/subscriptions/{self.name}-output-local"

    @classmethod
    def from_spec(cls, path: str | Path, project: str = DEFAULT_PROJECT) -> StreamingResources:
        """The resources of a spec, with its ``streaming`` settings (or their defaults)."""
        from gke_inference.workloads.spec import StreamingSettings, load_spec

        spec = load_spec(path)
        if spec.kind != "streaming":
            raise SystemExit(f"{path}: kind is {spec.kind!r}, not 'streaming'")
        s = spec.streaming or StreamingSettings()
        return cls(
            project=project,
            name=spec.name,
            ack_deadline_seconds=s.ack_deadline_seconds,
            max_delivery_attempts=s.max_delivery_attempts,
            message_retention_seconds=s.message_retention_seconds,
            min_backoff_seconds=s.min_backoff_seconds,
            max_backoff_seconds=s.max_backoff_seconds,
            worker_concurrency=s.worker_concurrency,
        )

    def worker_env(self, endpoint: str, model: str, metrics_port: int = 9090) -> dict[str, str]:
        """The worker's environment, as ``workloads/streaming.py`` sets it."""
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "INPUT_SUBSCRIPTION": self.input_subscription,
            "OUTPUT_TOPIC": self.output_topic,
            "DEAD_LETTER_TOPIC": self.dead_letter_topic,
            "MODEL_ENDPOINT": endpoint,
            "MODEL_NAME": model,
            "MAX_CONCURRENCY": str(self.worker_concurrency),
            "METRICS_PORT": str(metrics_port),
        }


def create_resources(resources: StreamingResources) -> None:
    """Create the topics and subscriptions (``PUBSUB_EMULATOR_HOST`` must be set);
    existing ones are kept, so a second `run` against the same emulator works."""
    from google.api_core import exceptions
    from google.cloud import pubsub_v1
    from google.protobuf import duration_pb2

    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        raise SystemExit("PUBSUB_EMULATOR_HOST is not set: refusing to create real resources")
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    r = resources
    try:
        for topic in (r.input_topic, r.output_topic, r.dead_letter_topic):
            with contextlib.suppress(exceptions.AlreadyExists):
                publisher.create_topic(name=topic)
        subscriptions: list[dict[str, Any]] = [
            {
                "name": r.input_subscription,
                "topic": r.input_topic,
                "ack_deadline_seconds": r.ack_deadline_seconds,
                "message_retention_duration": duration_pb2.Duration(
                    seconds=r.message_retention_seconds
                ),
                "dead_letter_policy": {
                    "dead_letter_topic": r.dead_letter_topic,
                    "max_delivery_attempts": r.max_delivery_attempts,
                },
                "retry_policy": {
                    "minimum_backoff": duration_pb2.Duration(seconds=r.min_backoff_seconds),
                    "maximum_backoff": duration_pb2.Duration(seconds=r.max_backoff_seconds),
                },
            },
            {"name": r.dead_letter_subscription, "topic": r.dead_letter_topic},
            {"name": r.output_subscription, "topic": r.output_topic},
        ]
        for request in subscriptions:
            with contextlib.suppress(exceptions.AlreadyExists):
                subscriber.create_subscription(request=request)
    finally:
        publisher.stop()
        subscriber.close()


# --------------------------------------------------------------------------- processes


def worker_command() -> list[str]:
    local = Path(sys.executable).with_name("gke-inference-worker")
    if local.exists():
        return [str(local), "streaming"]
    found = shutil.which("gke-inference-worker")
    if found:
        return [found, "streaming"]
    return [sys.executable, "-m", "gke_inference_worker", "streaming"]


def run_worker(env: Mapping[str, str]) -> int:
    """Run the worker in the foreground until it exits or Ctrl-C (which it drains on)."""
    proc = subprocess.Popen(worker_command(), env={**os.environ, **env}, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        return proc.wait()
    finally:
        stop_process_group(proc)


# --------------------------------------------------------------------------- commands


def _resources(args: argparse.Namespace) -> StreamingResources:
    if getattr(args, "spec", None):
        return StreamingResources.from_spec(args.spec, args.project)
    return StreamingResources(project=args.project, name=args.name)


def cmd_run(args: argparse.Namespace) -> int:
    resources = _resources(args)
    log = Path(args.emulator_log)
    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(
                running_emulator(log, args.port or free_port(), timeout_s=90)
            )
        except (OSError, RuntimeError) as exc:  # no emulator, exited early, never listened
            raise SystemExit(f"the Pub/Sub emulator did not start: {exc} (log: {log})") from None
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        create_resources(resources)
        env = {"PUBSUB_EMULATOR_HOST": host}
        if args.endpoint:
            env.update(resources.worker_env(args.endpoint, args.model, args.metrics_port))
        print(f"Pub/Sub emulator on {host} (log: {log}); created:", file=sys.stderr)
        for path in (
            resources.input_topic,
            resources.output_topic,
            resources.dead_letter_topic,
            resources.input_subscription,
            resources.dead_letter_subscription,
            resources.output_subscription,
        ):
            print(f"  {path}", file=sys.stderr)
        print("environment:", file=sys.stderr)
        for key, value in env.items():
            print(f"  export {key}={value}", file=sys.stderr)
        if args.setup_only or not args.endpoint:
            print("setup only: Ctrl-C stops the emulator", file=sys.stderr)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
            return 0
        return run_worker(env)


def cmd_publish(args: argparse.Namespace) -> int:
    from google.cloud import pubsub_v1

    resources = _resources(args)
    publisher = pubsub_v1.PublisherClient()
    try:
        for message in args.messages:
            if not args.raw:  # a typo fails here, not as a dead letter
                try:
                    json.loads(message)
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"not JSON ({exc}): {message!r}; --raw sends it") from None
            future = publisher.publish(resources.input_topic, message.encode())
            print(future.result(timeout=30))
    finally:
        publisher.stop()
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from google.cloud import pubsub_v1

    resources = _resources(args)
    subscription = (
        resources.dead_letter_subscription if args.dead_letters else resources.output_subscription
    )
    subscriber = pubsub_v1.SubscriberClient()
    try:
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": args.max}, timeout=10
        )
        for received in response.received_messages:
            attributes = dict(received.message.attributes)
            print(json.dumps({"data": received.message.data.decode(), "attributes": attributes}))
        if response.received_messages:
            subscriber.acknowledge(
                request={
                    "subscription": subscription,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
    finally:
        subscriber.close()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(cmd: argparse.ArgumentParser) -> None:
        which = cmd.add_mutually_exclusive_group(required=True)
        which.add_argument("--spec", help="a kind: streaming workload spec (name and settings)")
        which.add_argument("--name", help="the workload name (default settings)")
        cmd.add_argument("--project", default=DEFAULT_PROJECT, help="emulator project id")

    run = sub.add_parser("run", help="start the emulator, create the resources, run the worker")
    common(run)
    run.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000")
    run.add_argument("--model", default="", help="MODEL_NAME the endpoint serves")
    run.add_argument("--port", type=int, default=8085, help="emulator port (0: any free one)")
    run.add_argument("--metrics-port", type=int, default=9090, help="worker /metrics (0: off)")
    run.add_argument(
        "--emulator-log", default=str(Path(tempfile.gettempdir()) / "pubsub-emulator.log")
    )
    run.add_argument("--setup-only", action="store_true", help="no worker; keep the emulator")
    run.set_defaults(func=cmd_run)

    publish = sub.add_parser("publish", help="publish JSON requests to <name>-input")
    common(publish)
    publish.add_argument("messages", nargs="+", help="request JSON, one per argument")
    publish.add_argument("--raw", action="store_true", help="send non-JSON (to dead-letter it)")
    publish.set_defaults(func=cmd_publish)

    pull = sub.add_parser("pull", help="print (and ack) results from <name>-output")
    common(pull)
    pull.add_argument("--dead-letters", action="store_true", help="read <name>-dead-letter")
    pull.add_argument("--max", type=int, default=100)
    pull.set_defaults(func=cmd_pull)
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":  # SIGTERM stops like Ctrl-C: worker drained, emulator stopped
        signal.signal(signal.SIGTERM, _interrupt)
    if args.command == "run" and args.endpoint and not args.model:
        parser().error("--model is required with --endpoint (the MODEL_NAME it serves)")
    if args.command != "run" and not os.environ.get("PUBSUB_EMULATOR_HOST"):
        os.environ["PUBSUB_EMULATOR_HOST"] = "127.0.0.1:8085"  # run's default port
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
