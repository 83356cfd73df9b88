"""ModelClient connections, and the FakeVLLM stand-in under many simultaneous connections."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
from fake_vllm import FakeVLLM, model_env

from gke_inference_worker.config import ModelSettings
from gke_inference_worker.messages import parse_request
from gke_inference_worker.metrics import WorkerMetrics
from gke_inference_worker.model_client import ModelClient


def _complete_all(url: str, requests: int, **env: str) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        client = ModelClient(ModelSettings.from_env(model_env(url, **env)), WorkerMetrics())
        try:
            calls = [
                client.complete(parse_request(f'{{"id": "r{i}", "prompt": "p{i}"}}'))
                for i in range(requests)
            ]
            return list(await asyncio.gather(*calls))
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_model_calls_keep_at_most_max_concurrency_connections_alive(fake_vllm: FakeVLLM):
    fake_vllm.delay_s = 0.05
    before = fake_vllm.connections

    results = _complete_all(fake_vllm.url, 40, MAX_CONCURRENCY="4")

    assert sorted(r["id"] for r in results) == sorted(f"r{i}" for i in range(40))
    assert all(r["output"] == f"echo:p{r['id'][1:]}" for r in results)
    # Concurrent up to the bound, never above it, over connections that are reused.
    assert fake_vllm.max_concurrent == 4
    assert fake_vllm.connections - before == 4


def test_missing_sniffio_is_remembered_and_httpcore_still_runs_on_asyncio():
    from httpcore._synchronization import current_async_library

    # httpcore imports sniffio on every lock/event set-up: it must fail fast when absent.
    assert "sniffio" in sys.modules

    async def library() -> str:
        return current_async_library()

    assert asyncio.run(library()) == "asyncio"


def test_stand_in_accepts_far_more_simultaneous_connections_than_the_stdlib_backlog(
    fake_vllm: FakeVLLM,
):
    # socketserver's default listen backlog is 5; with it, 13-15 of 64 connections
    # opened at once were reset (httpx.ReadError) in two bursts out of three.
    fake_vllm.delay_s = 0.05

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=fake_vllm.url, limits=limits, timeout=30) as http:
            responses = await asyncio.gather(
                *(
                    http.post(
                        "/v1/completions",
                        json={"model": "m", "prompt": str(i)},
                        headers={"X-Request-Id": str(i)},
                    )
                    for i in range(64)
                )
            )
        return [r.status_code for r in responses]

    for _ in range(3):
        assert asyncio.run(burst()) == [200] * 64
    assert fake_vllm.max_concurrent > 5
