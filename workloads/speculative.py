"""Speculative decoding (``speculative``): the server's config, the draft's memory and mount.

vLLM v0.11.2 takes ``--speculative-config`` as JSON (``SpeculativeConfig``,
vllm/config/speculative.py). Its V1 engine proposes tokens with ``ngram``
(prompt lookup on the CPU: no GPU memory), ``eagle`` / ``eagle3`` (a small
draft head that runs on the target's hidden states), ``medusa``, ``mtp`` and
``suffix``; a separate ``draft_model`` is refused ("Draft model speculative
decoding is not supported yet", engine/arg_utils.py). This module offers
``ngram`` and the EAGLE heads, whose checkpoints are published for the
Llama, Qwen and similar families.

- ngram: ``prompt_lookup_min``/``prompt_lookup_max`` are always rendered
  (vLLM fills a missing one from the other, or both with 5).
- eagle/eagle3: the head's folder (``draft.path``, gs://) is a read-only FUSE
  mount at ``/draft``, given as ``model``. ``eagle3`` is refused by vLLM for
  targets outside ``["llama", "qwen", "minicpm", "gpt_oss"]``
  (``_verify_args``): refused here for the Gemma and Mistral presets.
- On TPUs the pinned tpu-inference 0.11.1 proposes with ngram and eagle3 only.
- Memory (eagle): the head's weights (``draft.parametersBillions`` x 2
  bytes, bf16) and the KV cache of its one decoder layer for every sequence
  (the target's KV heads and head size), both out of the KV budget.

Speculation trades compute for latency: it helps when the server is
memory-bound (small batches, interactive traffic) and costs throughput at
large batches, so it is an option, not a default.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gke_inference.core.errors import Problem

if TYPE_CHECKING:
    from gke_inference.workloads.serving_spec import SpeculativeSettings
    from gke_inference.workloads.spec import Architecture, WorkloadSpec

DRAFT_MOUNT = "/draft"
EAGLE3_TARGETS = ("llama", "qwen", "minicpm", "gpt_oss")  # vLLM 0.11.2 _verify_args
DRAFT_BYTES_PER_PARAMETER = 2  # bf16 heads
DRAFT_LAYERS = 1  # an EAGLE head is one decoder layer
TPU_METHODS = ("ngram", "eagle3")  # what tpu-inference 0.11.1 proposes with


def speculative_config(settings: SpeculativeSettings) -> dict[str, object]:
    config: dict[str, object] = {
        "method": settings.method,
        "num_speculative_tokens": settings.tokens,
    }
    if settings.method == "ngram":
        config["prompt_lookup_min"] = settings.lookup_min
        config["prompt_lookup_max"] = settings.lookup_max
    else:
        config["model"] = DRAFT_MOUNT
    return config


def speculative_args(settings: SpeculativeSettings | None) -> list[str]:
    if settings is None:
        return []
    text = json.dumps(speculative_config(settings), separators=(",", ":"), sort_keys=True)
    return [f"--speculative-config={text}"]


def draft_bytes(
    arch: Architecture, settings: SpeculativeSettings | None, kv_cache_dtype: str, tokens: int
) -> float:
    """GPU memory of an EAGLE head across the replica: its weights and its one layer's
    KV cache for ``tokens`` (concurrency x context); 0 for ngram."""
    if settings is None or settings.draft is None:
        return 0.0
    weights = settings.draft.parameters_billions * 1e9 * DRAFT_BYTES_PER_PARAMETER
    kv_per_token = 2 * DRAFT_LAYERS * arch.kv_heads * arch.head_dim
    kv_per_token *= 1 if kv_cache_dtype == "fp8" else 2
    return weights + kv_per_token * tokens


def speculative_problems(spec: WorkloadSpec, preset: str | None) -> list[Problem]:
    settings = spec.speculative
    if settings is None:
        return []
    if spec.accelerator_info.kind == "tpu" and settings.method not in TPU_METHODS:
        return [
            Problem(
                "speculative.method",
                f"the pinned vllm-tpu (tpu-inference 0.11.1 speculative_decoding_manager) runs "
                f"{' and '.join(TPU_METHODS)} only, not {settings.method!r}",
            )
        ]
    if settings.method == "eagle3" and preset is not None:
        family = preset.split("-", 1)[0]
        if not family.startswith(EAGLE3_TARGETS):
            return [
                Problem(
                    "speculative.method",
                    f"vLLM 0.11.2 runs eagle3 only for {', '.join(EAGLE3_TARGETS)} targets, "
                    f"not {preset!r}; use eagle or ngram",
                )
            ]
    return []


def speculative_rows(settings: SpeculativeSettings | None, gib: float) -> list[tuple[str, str]]:
    if settings is None:
        return []
    what = (
        f"ngram (lookup {settings.lookup_min}-{settings.lookup_max} tokens, CPU)"
        if settings.method == "ngram"
        else f"{settings.method} head at {DRAFT_MOUNT}: {gib:.2f} GiB"
    )
    return [("speculative decoding", f"{settings.tokens} tokens a step, {what}")]


def speculative_span_problems(spec: WorkloadSpec, nodes: int) -> list[Problem]:
    """One node only: vLLM 0.11's V1 engine with pipeline stages on a Ray cluster and
    speculation is not rehearsed here, and a head folder would be needed on every node."""
    if spec.speculative is None or nodes == 1:
        return []
    return [
        Problem(
            "speculative",
            f"speculative decoding is for replicas on one node; this one spans {nodes} nodes "
            "(pipeline stages)",
        )
    ]
