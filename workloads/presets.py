"""Architecture numbers of well-known models, from their published config.json.

A spec may name a preset instead of repeating these numbers. Parameters are
the total count in billions; the other fields are ``num_hidden_layers``,
``num_attention_heads``, ``num_key_value_heads``, ``head_dim``,
``max_position_embeddings``, ``sliding_window`` and ``sliding_window_pattern``,
and (for LoRA slots, workloads.lora) ``hidden_size`` and ``intermediate_size``
(Gemma 3 4B and 27B: of their ``text_config``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gke_inference.core.errors import Problem, SpecError

if TYPE_CHECKING:
    from gke_inference.workloads.spec import Architecture, WorkloadSpec


def _arch(
    parameters_billions: float,
    layers: int,
    attention_heads: int,
    kv_heads: int,
    head_dim: int,
    max_context: int,
    sliding_window: int | None = None,
    sliding_window_pattern: int | None = None,
    *,
    hidden: int,
    intermediate: int,
) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "parameters_billions": parameters_billions,
        "layers": layers,
        "attention_heads": attention_heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "max_context": max_context,
        "sliding_window": sliding_window,
        "sliding_window_pattern": sliding_window_pattern,
    }


# name -> Architecture fields. Gemma 3: five local (sliding) layers per global
# one (sliding_window_pattern 6), windows 512 (1B) and 1024 (4B, 27B); Gemma 2:
# local and global layers alternate (pattern 2), window 4096. The others use
# full attention in every layer (Qwen2.5 and Mistral v0.3 ship
# use_sliding_window false / sliding_window null).
PRESETS: dict[str, dict[str, Any]] = {
    "gemma-2-9b": _arch(9.24, 42, 16, 8, 256, 8_192, 4_096, 2, hidden=3_584, intermediate=14_336),
    "gemma-3-1b": _arch(1.0, 26, 4, 1, 256, 32_768, 512, 6, hidden=1_152, intermediate=6_912),
    "gemma-3-4b": _arch(4.3, 34, 8, 4, 256, 131_072, 1_024, 6, hidden=2_560, intermediate=10_240),
    "gemma-3-27b": _arch(
        27.4, 62, 32, 16, 128, 131_072, 1_024, 6, hidden=5_376, intermediate=21_504
    ),
    "llama-3.1-8b": _arch(8.03, 32, 32, 8, 128, 131_072, hidden=4_096, intermediate=14_336),
    "llama-3.3-70b": _arch(70.6, 80, 64, 8, 128, 131_072, hidden=8_192, intermediate=28_672),
    "qwen3-32b": _arch(32.8, 64, 64, 8, 128, 40_960, hidden=5_120, intermediate=25_600),
    "qwen2.5-7b": _arch(7.6, 28, 28, 4, 128, 32_768, hidden=3_584, intermediate=18_944),
    "mistral-7b-v0.3": _arch(7.25, 32, 32, 8, 128, 32_768, hidden=4_096, intermediate=14_336),
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
    return Architecture(**PRESETS[preset])
