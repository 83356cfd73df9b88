"""Batch worker: one JSONL shard per Indexed Job completion index.

Input ``INPUT_DIR/<INPUT_PATTERN>`` holds one request per line (same shape as
the streaming messages). Every finished request is appended to a journal
``OUTPUT_DIR/.<output name>.progress`` and fsynced, so a restarted pod skips
requests that already succeeded; failed requests are retried on a restart.
When all requests are done, ``OUTPUT_DIR/<OUTPUT_PATTERN>`` is written
atomically (temporary file in the same directory, fsync, ``os.replace``) in
input order, one line per request: a result, or ``{"id", "error"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import BatchConfig
from .files import Journal, read_jsonl, write_atomic
from .jsonlog import get_logger
from .messages import InferenceRequest, MalformedRequest, parse_request
from .metrics import WorkerMetrics
from .model_client import ModelClient, ModelError

log = get_logger(__name__)

EXIT_OK = 0
EXIT_TOO_MANY_FAILURES = 1
EXIT_INTERRUPTED = 143  # 128 + SIGTERM: the Job retries the pod, which resumes


@dataclass
class Shard:
    """The parsed input: keys in input order, valid requests and parse failures."""

    order: list[str] = field(default_factory=list)
    requests: dict[str, InferenceRequest] = field(default_factory=dict)
    malformed: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0


def read_shard(path: Path) -> Shard:
    shard = Shard()
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                request = parse_request(raw)
                key = request.id
            except MalformedRequest as bad:
                key = bad.request_id or f"line:{line_no}"
                if key in shard.requests or key in shard.malformed:
                    shard.duplicates += 1
                    continue
                shard.order.append(key)
                shard.malformed[key] = {"id": key, "error": bad.reason, "line": line_no}
                continue
            if key in shard.requests or key in shard.malformed:
                shard.duplicates += 1
                log.warning("duplicate id in input, skipped", request_id=key, line=line_no)
                continue
            shard.order.append(key)
            shard.requests[key] = request
    return shard


def _is_success(record: dict[str, Any]) -> bool:
    return isinstance(record.get("id"), str) and "output" in record and "error" not in record


class BatchWorker:
    def __init__(self, config: BatchConfig, metrics: WorkerMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or WorkerMetrics()
        out_dir = Path(config.output_dir)
        self.input_path = Path(config.input_dir) / config.input_name
        self.output_path = out_dir / config.output_name
        self.progress_path = out_dir / f".{config.output_name}.progress"

    async def run(self, stop: asyncio.Event) -> int:
        cfg = self.config
        if not self.input_path.is_file():
            log.error("input shard not found", path=str(self.input_path))
            return EXIT_TOO_MANY_FAILURES
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        shard = read_shard(self.input_path)

        # Successes survive restarts: from a previous final output and from the journal.
        done: dict[str, dict[str, Any]] = {}
        failed: dict[str, dict[str, Any]] = {}
        for record in (*read_jsonl(self.output_path), *read_jsonl(self.progress_path)):
            if _is_success(record) and record["id"] in shard.requests:
                done[record["id"]] = record
        pending = deque(k for k in shard.order if k in shard.requests and k not in done)
        log.info(
            "batch shard started",
            input=str(self.input_path),
            output=str(self.output_path),
            records=len(shard.order),
            already_done=len(done),
            malformed=len(shard.malformed),
            duplicates_skipped=shard.duplicates,
            pending=len(pending),
        )

        io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        journal = Journal(self.progress_path)
        model = ModelClient(cfg, self.metrics, stop=stop)
        loop = asyncio.get_running_loop()

        async def worker() -> None:
            while pending and not stop.is_set():
                key = pending.popleft()
                request = shard.requests[key]
                self.metrics.in_flight.inc()
                try:
                    try:
                        record = await model.complete(request)
                    except ModelError as exc:
                        record = {"id": key, "error": str(exc)}
                    await loop.run_in_executor(io, journal.append, record)
                finally:
                    self.metrics.in_flight.dec()
                if "error" in record:
                    failed[key] = record
                    self.metrics.failed.inc()
                    log.warning("request failed", request_id=key, error=record["error"])
                else:
                    done[key] = record
                    self.metrics.processed.inc()

        workers = [asyncio.create_task(worker()) for _ in range(cfg.max_concurrency)]
        all_done = asyncio.gather(*workers)
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        await asyncio.wait([all_done, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if stop.is_set() and not all_done.done():
            log.info("stop requested: finishing in-flight requests", grace_s=cfg.shutdown_grace_s)
            try:
                await asyncio.wait_for(asyncio.shield(all_done), timeout=cfg.shutdown_grace_s)
            except TimeoutError:
                all_done.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await all_done
        else:
            await all_done  # re-raise unexpected errors
        await model.aclose()
        journal.close()
        io.shutdown(wait=True)

        if stop.is_set() and (pending or len(done) + len(failed) < len(shard.requests)):
            log.warning(
                "interrupted before the shard was complete; a restart resumes from the journal",
                done=len(done),
                remaining=len(shard.requests) - len(done) - len(failed),
            )
            return EXIT_INTERRUPTED
        return self._finish(shard, done, failed)

    def _finish(
        self,
        shard: Shard,
        done: dict[str, dict[str, Any]],
        failed: dict[str, dict[str, Any]],
    ) -> int:
        def lines() -> Any:
            for key in shard.order:
                record = done.get(key) or failed.get(key) or shard.malformed.get(key)
                if record is None:  # cannot happen: every key was processed
                    record = {"id": key, "error": "not processed"}
                yield json.dumps(record, ensure_ascii=False)

        write_atomic(self.output_path, lines())
        with contextlib.suppress(FileNotFoundError):
            self.progress_path.unlink()
        total = len(shard.order)
        failures = total - sum(1 for k in shard.order if k in done)
        fraction = failures / total if total else 0.0
        summary = {
            "output": str(self.output_path),
            "total": total,
            "succeeded": total - failures,
            "failed": failures,
            "failure_fraction": round(fraction, 6),
            "max_failure_fraction": self.config.max_failure_fraction,
        }
        if fraction > self.config.max_failure_fraction:
            log.error("batch shard failed: too many failed requests", **summary)
            return EXIT_TOO_MANY_FAILURES
        log.info("batch shard complete", **summary)
        return EXIT_OK
