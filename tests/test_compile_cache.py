"""``server.compileCache``: where vLLM's compilation cache lives (workloads.compile_cache).

The mount, env and grant are rehearsed in tests/test_runtime_filesystem.py
(an artifact written where vLLM writes it lands under the granted prefix); here:
the cache key covers what vLLM's own hash does not, and `size` says where it is.
"""

from __future__ import annotations

from typing import Any

import pytest

from gke_inference.core.errors import SpecError
from gke_inference.workloads.sizing import size
from gke_inference.workloads.sizing_table import sizing_table
from gke_inference.workloads.spec import parse_spec


def spec(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "llama",
        "kind": "online",
        "model": {"id": "meta-llama/Llama-3.1-8B-Instruct", "preset": "llama-3.1-8b"},
        "accelerator": "l4",
    }
    data.update(changes)
    return data


def prefix(**changes: Any) -> str:
    cache = size(parse_spec(spec(**changes))).compile_cache
    assert cache is not None
    return cache.prefix("v0.11.2")


def test_the_prefix_is_keyed_by_model_version_machine_and_devices() -> None:
    # 8B in bf16 on L4s: a tensor-parallel pair of a g2-standard-24
    assert prefix() == "vllm-cache/meta-llama--llama-3.1-8b-instruct/v0.11.2/g2-standard-24-tp2"
    # Triton kernels are built for the GPU: another machine never loads them
    assert prefix(accelerator="a100-40gb").endswith("/a2-highgpu-1g-tp1")
    assert prefix(tensorParallel=4).endswith("-tp4")
    cache = size(parse_spec(spec())).compile_cache
    assert cache is not None and cache.prefix("v0.11.1") != cache.prefix("v0.11.2")


def test_tpus_key_their_xla_cache_by_topology() -> None:
    tpu = spec(
        model={"id": "Qwen/Qwen3-32B", "preset": "qwen3-32b"},
        accelerator="tpu-v6e",
        server={"type": "vllm-tpu"},
    )
    cache = size(parse_spec(tpu)).compile_cache
    assert cache is not None
    assert (cache.env, cache.mount_path) == ("VLLM_XLA_CACHE_PATH", "/xla-cache")
    assert cache.prefix("v0.11.1").startswith("xla-cache/qwen--qwen3-32b/v0.11.1/")


def test_size_says_where_the_cache_is() -> None:
    text = sizing_table(size(parse_spec(spec())))
    assert "vllm-cache/meta-llama--llama-3.1-8b-instruct/<vllm>/g2-standard-24-tp2/" in text
    local = sizing_table(size(parse_spec(spec(server={"compileCache": "pod"}))))
    assert "every pod compiles" in local


def test_an_unknown_mode_is_a_spec_error_naming_the_field() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec(server={"compileCache": "shared"}))
    assert "server.compileCache" in str(info.value) and "'bucket'" in str(info.value)
