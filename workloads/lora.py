"""LoRA adapters served beside the base model (``lora``): flags, memory, mounts.

vLLM (v0.11.2) serves adapters given as ``--lora-modules name=path``: the
``name`` is what a request's ``model`` field selects, the path a local folder
holding ``adapter_config.json`` and the adapter's weights (the server reads no
Hub with ``HF_HUB_OFFLINE=1``). Each adapter folder here is a read-only Cloud
Storage FUSE mount at ``/adapters/<name>`` (``only-dir`` the adapter's prefix),
whatever ``model.loader`` says: vLLM loads adapters from a path, not a URI.

Memory: with ``--enable-lora`` vLLM preallocates, on every tensor-parallel
rank, buffers for ``--max-loras`` adapters of rank ``--max-lora-rank`` on
every linear layer (qkv, o, gate/up, down), and its memory profile runs a
dummy adapter of that rank, so the buffers come out of the KV-cache budget.
Per layer and adapter slot, in the LoRA dtype (16-bit): column-parallel layers
(qkv, gate_up) keep their A matrices whole on each rank and shard B; row-parallel
ones (o, down) shard A and keep B whole, so across the replica's ``tp`` ranks
that is ``rank x (tp x 7 x hidden + 2 x heads x head_dim + 2 x kv_heads x
head_dim + 3 x intermediate)`` values (:func:`lora_bytes`). Llama 3.1 8B at
rank 16, one slot: 84 MB; Llama 3.3 70B at rank 64, 4 slots on TP 4: 13.7 GB.
The logits processor's small buffers (vocabulary x rank) are not counted.

Routes (``lora.routes``, inference-pool only): a public name split over
adapters by weight, for adapter rollouts. The endpoint picker (GAIE v1.5.0)
reads the body's ``model``, and an ``InferenceModelRewrite`` rule that matches it
exactly picks a target by weight and writes it into the forwarded body; the
response's ``model`` is rewritten back to the name the client sent. Every
target is a ``--lora-modules`` name, so the server always knows it. Without a
route, a request naming an adapter goes to any replica (each serves every
listed adapter), preferring one that has it loaded (``lora-affinity-scorer``).
Rules always carry a match and a target: upstream, a rule without matches
matches every request, and one without targets blanks the model.

Not offered on TPUs: the pinned vllm-tpu (tpu-inference 0.11.1) refuses LoRA
in its JAX worker ("LoRA is not supported by the JAX worker yet").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gke_inference.core.errors import Problem

if TYPE_CHECKING:
    from gke_inference.workloads.spec import Architecture, WorkloadSpec
from gke_inference.workloads.serving_spec import LoraSettings

ADAPTER_MOUNT = "/adapters"
LORA_BYTES_PER_VALUE = 2  # --lora-dtype auto: the model's 16-bit dtype


def lora_bytes(arch: Architecture, lora: LoraSettings, tp: int) -> int:
    """GPU memory of the adapter slots across a replica (see the module doc)."""
    assert arch.hidden_size is not None and arch.intermediate_size is not None
    per_layer = (
        tp * 7 * arch.hidden_size
        + 2 * arch.attention_heads * arch.head_dim
        + 2 * arch.kv_heads * arch.head_dim
        + 3 * arch.intermediate_size
    )
    return lora.max_loras * lora.max_rank * arch.layers * per_layer * LORA_BYTES_PER_VALUE


def lora_args(lora: LoraSettings | None) -> list[str]:
    """The server's LoRA flags: one ``--lora-modules`` value per adapter."""
    if lora is None:
        return []
    modules = [f"{a.name}={ADAPTER_MOUNT}/{a.name}" for a in lora.adapters]
    return [
        "--enable-lora",
        f"--max-lora-rank={lora.max_rank}",
        f"--max-loras={lora.max_loras}",
        "--lora-modules",
        *modules,
    ]


def lora_problems(spec: WorkloadSpec, arch: Architecture) -> list[Problem]:
    if spec.lora is None:
        return []
    if spec.accelerator_info.kind == "tpu":
        return [
            Problem(
                "lora",
                "the pinned vllm-tpu (tpu-inference 0.11.1) refuses LoRA in its JAX worker "
                '("LoRA is not supported by the JAX worker yet"); serve adapters on GPUs',
            )
        ]
    missing = [
        field
        for field, value in (
            ("hiddenSize", arch.hidden_size),
            ("intermediateSize", arch.intermediate_size),
        )
        if value is None
    ]
    if missing:
        return [
            Problem(
                "model.architecture",
                f"LoRA adapters are sized from the model's {' and '.join(missing)} "
                "(config.json hidden_size, intermediate_size); add them",
            )
        ]
    return []


def lora_span_problems(spec: WorkloadSpec, nodes: int) -> list[Problem]:
    """Adapters are folders every worker process reads: one node only."""
    if spec.lora is None or nodes == 1:
        return []
    return [
        Problem(
            "lora",
            f"adapters are for replicas on one node; this one spans {nodes} nodes, whose "
            "pipeline-stage workers would each need the adapter folders",
        )
    ]


def lora_rows(lora: LoraSettings | None, gib: float) -> list[tuple[str, str]]:
    """The `size` row of the adapter slots."""
    if lora is None:
        return []
    names = ", ".join(a.name for a in lora.adapters)
    return [
        (
            "LoRA adapters",
            f"{gib:.2f} GiB: {lora.max_loras} slot(s) of rank {lora.max_rank} ({names})",
        )
    ]


def rewrite_rules(lora: LoraSettings | None) -> list[dict[str, object]]:
    """``InferenceModelRewrite`` rules of the routes: one exact match each."""
    if lora is None:
        return []
    return [
        {
            "matches": [{"model": {"type": "Exact", "value": route.model}}],
            "targets": [{"modelRewrite": t.adapter, "weight": t.weight} for t in route.targets],
        }
        for route in lora.routes
    ]
