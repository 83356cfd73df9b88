"""The endpoint picker's scheduling configuration, written out instead of left to defaults.

The pinned picker (gateway-api-inference-extension v1.5.0) reads an
``EndpointPickerConfig`` (``--config-file``; without one it builds
``loadDefaultConfig()``: queue-scorer 2, kv-cache-utilization-scorer 2,
prefix-cache-scorer 3). This module renders that document from the spec
(``routing.scorers``, defaulting to the same weights) and the sizing, so what
the picker does is reviewable in the plan and tunable per workload.

What the v1.5.0 source does with it (``pkg/epp/config/loader``,
``pkg/epp/framework/plugins/requestcontrol/dataproducer/approximateprefix``):

- The document is decoded strictly (an unknown top-level field fails the
  picker's start), but a plugin's ``parameters`` are ``json.Unmarshal``-ed:
  an unknown key is ignored without a word. So the parameter names are kept
  to :data:`PREFIX_PARAMETERS`, the JSON tags of the producer's config.
- The prefix-cache-scorer's parameters configure the approximate prefix
  index the loader creates beside it (``approx-prefix-cache-producer``).
  ``autoTune`` (default true) takes the block size and each pod's index
  capacity from the server's ``vllm:cache_config_info`` (``block_size``,
  ``num_gpu_blocks``), which the pinned vLLM exports. ``lruCapacityPerServer``
  is not rendered: in v1.5.0 a pod without that metric gets the built-in
  31,250 entries (``makeserver`` passes the constant), so the parameter never
  reaches the index.
- ``maxPrefixTokensToMatch`` is the server's ``--max-model-len``: the
  default (256 blocks of 16 tokens, 4,096 tokens) makes prompts that share
  their first 4,096 tokens indistinguishable, which is exactly the long
  system prompts and RAG contexts prefix routing is for; hashing a whole
  context is one hash per 16 tokens.
- ``blockSizeTokens`` is the sizing's ``--block-size`` (16 on GPUs), the
  fallback until the pod's metric is read; TPUs use the picker's 16.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from gke_inference.workloads.serving_spec import ScorerWeights
from gke_inference.workloads.sizing import Sizing

API_VERSION = "inference.networking.x-k8s.io/v1alpha1"
KIND = "EndpointPickerConfig"
# spec field -> the v1.5.0 plugin type (registered in cmd/epp/runner registerInTreePlugins)
SCORERS = {
    "queue": "queue-scorer",
    "kv_cache": "kv-cache-utilization-scorer",
    "prefix_cache": "prefix-cache-scorer",
}
PROFILE = "default"
LORA_SCORER = "lora-affinity-scorer"
LORA_WEIGHT = 1.0  # the picker's DefaultScorerWeight
# the JSON tags of approximateprefix.config (types.go), the only keys it reads
PREFIX_PARAMETERS = {
    "autoTune": bool,
    "blockSizeTokens": int,
    "blockSize": int,  # deprecated (characters): never rendered
    "maxPrefixBlocksToMatch": int,
    "maxPrefixTokensToMatch": int,
    "lruCapacityPerServer": int,
}
PICKER_BLOCK_SIZE = 16  # the picker's defaultBlockSizeTokens
CONFIG_FILE = "config.yaml"
CONFIG_DIR = "/etc/epp"


def prefix_parameters(sizing: Sizing) -> dict[str, Any]:
    return {
        "autoTune": True,
        "blockSizeTokens": sizing.block_size or PICKER_BLOCK_SIZE,
        "maxPrefixTokensToMatch": sizing.max_model_len,
    }


def picker_config(weights: ScorerWeights, sizing: Sizing) -> dict[str, Any]:
    """The EndpointPickerConfig document (see the module doc)."""
    plugins: list[dict[str, Any]] = []
    profile: list[dict[str, Any]] = []
    for field, plugin in SCORERS.items():
        weight = float(getattr(weights, field))
        if weight == 0:
            continue  # a scorer at weight 0 only costs its scoring
        spec: dict[str, Any] = {"type": plugin}
        if plugin == "prefix-cache-scorer":
            spec["parameters"] = prefix_parameters(sizing)
        plugins.append(spec)
        profile.append({"pluginRef": plugin, "weight": weight})
    if sizing.lora is not None:
        # prefer replicas where the request's adapter is already in a GPU slot, or one is
        # free (vllm:lora_requests_info); no weight is spec'd for it: the picker's 1
        plugins.append({"type": LORA_SCORER})
        profile.append({"pluginRef": LORA_SCORER, "weight": LORA_WEIGHT})
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "plugins": plugins,
        "schedulingProfiles": [{"name": PROFILE, "plugins": profile}],
    }


def config_text(weights: ScorerWeights, sizing: Sizing) -> str:
    return yaml.safe_dump(picker_config(weights, sizing), sort_keys=False)


def digest(text: str) -> str:
    """A pod-template annotation value: a changed config rolls the picker."""
    return hashlib.sha256(text.encode()).hexdigest()
