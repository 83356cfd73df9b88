"""`gke-inference-worker streaming|batch` - the container entrypoint.

Exit codes: 0 done / drained, 1 runtime failure (batch: failure fraction above
MAX_FAILURE_FRACTION), 2 configuration error, 3 model server not ready in time,
143 batch interrupted by SIGTERM before the shard was complete.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence

from . import __version__, jsonlog
from .config import BatchConfig, ConfigError, StreamingConfig

EXIT_CONFIG = 2
EXIT_MODEL_NOT_READY = 3

log = jsonlog.get_logger("gke_inference_worker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gke-inference-worker",
        description="Inference workers for an OpenAI-compatible model server. "
        "Configured by environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="mode", required=True)
    for name, help_text in (
        ("streaming", "consume INPUT_SUBSCRIPTION, publish results to OUTPUT_TOPIC"),
        ("batch", "process shard JOB_COMPLETION_INDEX from INPUT_DIR into OUTPUT_DIR"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--wait-for-model",
            type=float,
            metavar="SECONDS",
            default=None,
            help="wait up to SECONDS for MODEL_ENDPOINT/health to answer 200 before starting "
            "(default: MODEL_READY_TIMEOUT_S; 0 disables)",
        )
    return parser


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def _run(config: StreamingConfig | BatchConfig) -> int:
    """Serve metrics and run the worker of ``config``'s mode until it is done or drained."""
    from .metrics import WorkerMetrics

    stop = asyncio.Event()
    _install_signal_handlers(stop)
    metrics = WorkerMetrics()
    metrics.serve(config.metrics_port)
    if isinstance(config, StreamingConfig):
        from .streaming import StreamingWorker  # imports the Pub/Sub client: streaming only

        return await StreamingWorker(config, metrics).run(stop)
    from .batch import BatchWorker

    return await BatchWorker(config, metrics).run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    jsonlog.configure(level if level in {"DEBUG", "INFO", "WARNING", "ERROR"} else "INFO")
    config: StreamingConfig | BatchConfig
    try:
        config = (StreamingConfig if args.mode == "streaming" else BatchConfig).from_env(os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error(f"invalid configuration: {problem}", **problem.model_dump())
        return EXIT_CONFIG

    from .model_client import wait_for_model

    timeout = config.model_ready_timeout_s if args.wait_for_model is None else args.wait_for_model
    if not wait_for_model(config.model_endpoint, timeout):
        return EXIT_MODEL_NOT_READY

    try:
        return asyncio.run(_run(config))
    except Exception:  # last resort: one structured line, not a traceback dump
        log.exception("worker crashed", mode=args.mode)
        return 1
