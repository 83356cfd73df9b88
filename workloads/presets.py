"""Architecture numbers of well-known models, from their published config.json.

A spec may name a preset instead of repeating these numbers. Parameters are
the total count in billions; the other fields are ``num_hidden_layers``,
``num_attention_heads``, ``num_key_value_heads``, ``head_dim`` and
``max_position_embeddings``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gke_inference.core.errors import Problem, SpecError

if TYPE_CHECKING:
    from gke_inference.workloads.spec import Architecture, WorkloadSpec

# name -> (parameters_billions, layers, attention_heads, kv_heads, head_dim, max_context)
PRESETS: dict[str, tuple[float, int, int, int, int, int]] = {
    "gemma-3-1b": (1.0, 26, 4, 1, 256, 32_768),
    "gemma-3-4b": (4.3, 34, 8, 4, 256, 131_072),
    "gemma-3-27b": (27.4, 62, 32, 16, 128, 131_072),
    "llama-3.1-8b": (8.03, 32, 32, 8, 128, 131_072),
    "llama-3.3-70b": (70.6, 80, 64, 8, 128, 131_072),
    "qwen3-32b": (32.8, 64, 64, 8, 128, 40_960),
    "qwen2.5-7b": (7.6, 28, 28, 4, 128, 32_768),
    "mistral-7b-v0.3": (7.25, 32, 32, 8, 128, 32_768),
}


def resolve_architecture(spec: WorkloadSpec, source: str = "spec") -> Architecture | None:
    """The spec's architecture, from its preset if it names one."""
    from gke_inference.workloads.spec import Architecture

    if spec.model is None:
        return None
    if spec.model.architecture is not None:
        return spec.model.architecture
    preset = spec.model.preset or ""
    if preset not in PRESETS:
        raise SpecError(
            f"Invalid workload spec {source}",
            [
                Problem(
                    "model.preset",
                    f"unknown preset {preset!r}; accepted: {', '.join(sorted(PRESETS))} "
                    "(or give model.architecture)",
                )
            ],
        )
    params, layers, heads, kv_heads, head_dim, context = PRESETS[preset]
    return Architecture(
        parameters_billions=params,
        layers=layers,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        max_context=context,
    )
