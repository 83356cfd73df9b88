"""The memory model of one replica, and the smallest layout that holds it.

All figures are bytes (shown in GiB). Device memory is the catalog's
``memory_mib``, as the device reports it.

- weights = parameters x bytes per parameter (bf16/fp16 2, fp8/int8 1, int4 0.5),
  sharded evenly over tensor-parallel ranks and pipeline stages.
- usable per device = device memory x ``--gpu-memory-utilization`` - runtime
  reserve. vLLM caps its whole footprint at utilization x total; inside that
  cap it keeps what its profiling run measured (activations of a full
  ``max_num_batched_tokens`` step, the sampler, CUDA graphs on GPUs) and gives
  the rest to the KV cache. RUNTIME_RESERVE_GIB stands for that measured part.
- KV per token, across the replica = 2 (K and V) x layers x KV heads held x
  head dim x KV dtype bytes, where every tensor-parallel rank holds
  ``max(1, kv_heads / tp)`` heads: when TP exceeds the KV-head count, vLLM
  replicates KV heads (``get_num_kv_heads``), so the replica stores
  ``max(tp, kv_heads)`` heads' worth per layer, not ``kv_heads``.
- KV per sequence: full-attention layers keep every token of the context;
  sliding-window layers keep at most the window (+ one paged block being
  filled) - vLLM's hybrid KV-cache manager frees blocks that fall out of the
  window and is on by default for such models on GPUs. TPU serving is sized
  as if every layer were full attention (no hybrid allocator there).

The layout: the smallest tensor-parallel degree that divides the attention
heads, divides or is a multiple of the KV heads, and whose devices hold
weights + KV for ``concurrency`` sequences of ``contextLength`` tokens. Its
pods request exactly that many devices, on the smallest machine shape with at
least that many (GPUs: an 8-GPU machine can hold several replicas; TPU slices
are scheduled whole, so the shape must have exactly that many chips). When no
single node holds it, GPU replicas span whole nodes: TP = the largest node's
devices within a node, pipeline stages across nodes (up to MAX_PIPELINE_STAGES).
"""

from __future__ import annotations

from dataclasses import dataclass

from gke_inference.inference import catalog
from gke_inference.workloads.lora import lora_bytes
from gke_inference.workloads.serving_spec import LoraSettings, SpeculativeSettings
from gke_inference.workloads.spec import Architecture
from gke_inference.workloads.speculative import draft_bytes

GIB = 1024**3
BYTES_PER_PARAMETER = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
# What vLLM's profiling run keeps per device outside the KV cache (CUDA/XLA
# context, activations of one max_num_batched_tokens step, the sampler, CUDA
# graphs); measured figures for 7-8B models on L4/H100 are 1-2 GiB.
RUNTIME_RESERVE_GIB = {"gpu": 2.0, "tpu": 1.0}
MAX_PIPELINE_STAGES = 4
TENSOR_PARALLEL_DEGREES = (1, 2, 4, 8, 16)
GPU_BLOCK_SIZE = 16  # tokens per paged-attention block on CUDA


def memory_utilization(acc: catalog.Accelerator) -> float:
    """``--gpu-memory-utilization``: small devices keep more headroom (fragmentation)."""
    return 0.90 if acc.memory_gib < 32 else 0.95


def usable_bytes_per_device(acc: catalog.Accelerator) -> float:
    return (acc.memory_gib * memory_utilization(acc) - RUNTIME_RESERVE_GIB[acc.kind]) * GIB


def weights_bytes(arch: Architecture, precision: str) -> float:
    return arch.parameters_billions * 1e9 * BYTES_PER_PARAMETER[precision]


def tensor_parallel_problem(arch: Architecture, tp: int) -> str | None:
    """Why vLLM rejects ``tp`` for this model (its parallel-config checks), or None."""
    if arch.attention_heads % tp:
        return f"{tp} does not divide the {arch.attention_heads} attention heads"
    if tp < arch.kv_heads and arch.kv_heads % tp:
        return f"{tp} does not divide the {arch.kv_heads} KV heads"
    if tp > arch.kv_heads and tp % arch.kv_heads:
        return f"{tp} is not a multiple of the {arch.kv_heads} KV heads"
    return None


def kv_replication(arch: Architecture, tp: int) -> int:
    """How many copies of each KV head the replica stores (1 unless TP > KV heads)."""
    return max(1, tp // arch.kv_heads)


def kv_bytes_per_token(arch: Architecture, kv_cache_dtype: str, tp: int = 1) -> int:
    """KV bytes one token takes in one layer-complete replica (every layer full attention)."""
    dtype_bytes = 1 if kv_cache_dtype == "fp8" else 2
    heads_held = arch.kv_heads * kv_replication(arch, tp)
    return 2 * arch.layers * heads_held * arch.head_dim * dtype_bytes


def kv_bytes_per_sequence(
    arch: Architecture, kv_cache_dtype: str, tp: int, tokens: int, kind: str
) -> int:
    """KV bytes of one sequence of ``tokens`` tokens (sliding layers keep their window)."""
    per_layer_token = kv_bytes_per_token(arch, kv_cache_dtype, tp) // arch.layers
    if arch.sliding_window is None or kind != "gpu":
        return per_layer_token * arch.layers * tokens
    window_tokens = min(tokens, arch.sliding_window + GPU_BLOCK_SIZE)
    return per_layer_token * (
        arch.full_attention_layers * tokens + arch.sliding_layers * window_tokens
    )


@dataclass(frozen=True)
class Need:
    """What one replica must hold."""

    arch: Architecture
    precision: str
    kv_cache_dtype: str
    context: int
    concurrency: int
    lora: LoraSettings | None = None  # adapter slots (workloads.lora)
    speculative: SpeculativeSettings | None = None  # a draft head (workloads.speculative)

    @property
    def weights(self) -> float:
        return weights_bytes(self.arch, self.precision)

    def adapters(self, tp: int) -> float:
        """GPU memory of the LoRA adapter slots across the replica (0 without LoRA)."""
        return 0.0 if self.lora is None else float(lora_bytes(self.arch, self.lora, tp))

    def kv(self, tp: int, kind: str) -> float:
        return self.concurrency * kv_bytes_per_sequence(
            self.arch, self.kv_cache_dtype, tp, self.context, kind
        )

    @property
    def draft(self) -> float:
        """GPU memory of a speculative draft head across the replica (0 without one)."""
        tokens = self.concurrency * self.context
        return draft_bytes(self.arch, self.speculative, self.kv_cache_dtype, tokens)

    def extras(self, tp: int) -> float:
        """What the replica holds besides weights and KV: LoRA slots, a draft head."""
        return self.adapters(tp) + self.draft

    def total(self, tp: int, kind: str) -> float:
        return self.weights + self.extras(tp) + self.kv(tp, kind)


@dataclass(frozen=True)
class Layout:
    shape: catalog.MachineShape
    tensor_parallel: int
    pipeline_parallel: int

    @property
    def devices(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel


def shape_for(acc: catalog.Accelerator, tp: int) -> catalog.MachineShape | None:
    """The machine a ``tp``-device pod runs on: exact count first, else the smallest
    larger GPU machine (several pods share it); TPU slices only exactly."""
    exact = [s for s in acc.shapes if s.count == tp]
    if exact:
        return exact[0]  # the catalog lists the preferred shape of a count first
    if acc.kind == "tpu":
        return None
    larger = sorted((s for s in acc.shapes if s.count > tp), key=lambda s: s.count)
    return larger[0] if larger else None


def fit_layout(acc: catalog.Accelerator, need: Need, tp: int | None = None) -> Layout | None:
    """The smallest layout of ``acc`` holding ``need`` (``tp`` pins the TP degree)."""
    per_device = usable_bytes_per_device(acc)
    degrees = [tp] if tp is not None else list(TENSOR_PARALLEL_DEGREES)
    for degree in degrees:
        shape = shape_for(acc, degree)
        if shape is None or tensor_parallel_problem(need.arch, degree):
            continue
        if need.total(degree, acc.kind) <= degree * per_device:
            return Layout(shape, degree, 1)
    if acc.kind != "gpu":
        return None
    largest = max(acc.shapes, key=lambda s: s.count)
    degree = largest.count
    if (tp is not None and tp != degree) or tensor_parallel_problem(need.arch, degree):
        return None
    for stages in range(2, min(MAX_PIPELINE_STAGES, need.arch.layers) + 1):
        if need.total(degree, acc.kind) <= stages * degree * per_device:
            return Layout(largest, degree, stages)
    return None


def nearest_fits(need: Need, limit: int = 5) -> list[str]:
    """Single-node shapes on any accelerator or precision that would hold the same model:
    the spec's own precision first, then lower ones; fewest GiB of devices first."""
    options: list[tuple[bool, float, str]] = []
    for acc in catalog.CATALOG:
        for precision in BYTES_PER_PARAMETER:
            if precision == "fp16" or (acc.kind == "tpu" and precision != "bf16"):
                continue
            if precision == "fp8" and not acc.fp8:
                continue
            kv_dtype = need.kv_cache_dtype if acc.fp8 else "auto"
            other = Need(
                need.arch,
                precision,
                kv_dtype,
                need.context,
                need.concurrency,
                need.lora,
                need.speculative,
            )
            layout = fit_layout(acc, other)
            if layout is None or layout.pipeline_parallel > 1:
                continue
            total = layout.devices * acc.memory_gib
            options.append(
                (
                    precision != need.precision,
                    total,
                    f"{layout.shape.machine_type} ({layout.devices}x {acc.key}, "
                    f"TP {layout.tensor_parallel}) in {precision}",
                )
            )
    return [text for _, _, text in sorted(options)[:limit]]
