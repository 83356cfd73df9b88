"""Sizing: from a model and an accelerator to devices, parallelism and vLLM flags.

Memory model per replica (all in bytes, shown in GiB):

- weights  = parameters x bytes per parameter (bf16/fp16 2, fp8/int8 1, int4 0.5)
- KV cache per token = 2 (K and V) x layers x KV heads x head dim x KV dtype bytes
- KV cache needed = context length x concurrent sequences x KV per token
- usable per device = device memory x gpu-memory-utilization - runtime overhead
  (CUDA/XLA context, activations, graphs)

The smallest device count whose usable memory holds weights + KV cache wins,
with a tensor-parallel degree that divides the attention heads. When one node
of the accelerator is not enough, layers are split across nodes (pipeline
parallelism) up to MAX_PIPELINE_STAGES. A spec that fits nowhere is an error
with the numbers and the nearest shapes that would fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gke_inference.core.errors import Problem, SpecError
from gke_inference.inference import catalog
from gke_inference.inference.compute_classes import COST_OPTIMIZED_SUFFIX
from gke_inference.workloads.presets import resolve_architecture
from gke_inference.workloads.spec import Architecture, WorkloadSpec

GIB = 1024**3
BYTES_PER_PARAMETER = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
RUNTIME_OVERHEAD_GIB = {"gpu": 2.0, "tpu": 1.0}
MAX_PIPELINE_STAGES = 4
MAX_NUM_SEQS_CAP = 256  # vLLM's own default ceiling
GPU_BLOCK_SIZE = 16  # tokens per paged-attention block on CUDA
MODEL_MOUNT = "/models"

DEFAULT_QUANTIZATION = {"fp8": "fp8", "int8": "compressed-tensors", "int4": "awq"}
ACCEPTED_METHODS = {
    "fp8": {"fp8"},
    "int8": {"compressed-tensors", "gptq", "bitsandbytes"},
    "int4": {"awq", "gptq", "compressed-tensors", "bitsandbytes"},
}


def memory_utilization(acc: catalog.Accelerator) -> float:
    """Small devices keep more headroom: fragmentation hurts them most."""
    return 0.90 if acc.memory_gib < 32 else 0.95


def usable_bytes_per_device(acc: catalog.Accelerator) -> float:
    return (acc.memory_gib * memory_utilization(acc) - RUNTIME_OVERHEAD_GIB[acc.kind]) * GIB


def kv_bytes_per_token(arch: Architecture, kv_cache_dtype: str) -> int:
    dtype_bytes = 1 if kv_cache_dtype == "fp8" else 2
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * dtype_bytes


def weights_bytes(arch: Architecture, precision: str) -> float:
    return arch.parameters_billions * 1e9 * BYTES_PER_PARAMETER[precision]


@dataclass(frozen=True)
class Sizing:
    accelerator: catalog.Accelerator
    shape: catalog.MachineShape
    tensor_parallel: int
    pipeline_parallel: int
    weights_gib: float
    kv_bytes_per_token: int
    kv_cache_gib: float
    usable_gib: float  # across the whole replica
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    quantization: str | None
    kv_cache_dtype: str
    block_size: int | None
    compute_class: str
    model_path: str
    served_model_name: str
    extra_args: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> int:
        return self.pipeline_parallel

    @property
    def headroom_gib(self) -> float:
        return self.usable_gib - self.weights_gib - self.kv_cache_gib

    def vllm_args(self, port: int = 8000) -> list[str]:
        args = [
            f"--model={self.model_path}",
            f"--served-model-name={self.served_model_name}",
            f"--port={port}",
            f"--tensor-parallel-size={self.tensor_parallel}",
            f"--max-model-len={self.max_model_len}",
            f"--gpu-memory-utilization={self.gpu_memory_utilization:.2f}",
            f"--max-num-seqs={self.max_num_seqs}",
            "--enable-prefix-caching",
        ]
        if self.pipeline_parallel > 1:
            args.append(f"--pipeline-parallel-size={self.pipeline_parallel}")
        if self.quantization:
            args.append(f"--quantization={self.quantization}")
        if self.kv_cache_dtype != "auto":
            args.append(f"--kv-cache-dtype={self.kv_cache_dtype}")
        if self.block_size:
            args.append(f"--block-size={self.block_size}")
        return args + self.extra_args

    def table(self) -> str:
        acc = self.accelerator
        rows = [
            ("accelerator", f"{acc.display_name} ({acc.gke_label})"),
            ("machine type", f"{self.shape.machine_type} ({self.shape.count} per node)"),
            ("compute class", self.compute_class),
            ("devices per replica", f"{self.shape.count * self.pipeline_parallel}"),
            ("tensor / pipeline parallel", f"{self.tensor_parallel} / {self.pipeline_parallel}"),
            ("weights", f"{self.weights_gib:.1f} GiB"),
            ("KV cache per token", f"{self.kv_bytes_per_token / 1024:.1f} KiB"),
            ("KV cache for context x concurrency", f"{self.kv_cache_gib:.1f} GiB"),
            ("usable accelerator memory", f"{self.usable_gib:.1f} GiB"),
            ("headroom", f"{self.headroom_gib:.1f} GiB"),
            ("--gpu-memory-utilization", f"{self.gpu_memory_utilization:.2f}"),
            ("--max-model-len", str(self.max_model_len)),
            ("--max-num-seqs", str(self.max_num_seqs)),
            ("--quantization", self.quantization or "none"),
            ("--kv-cache-dtype", self.kv_cache_dtype),
            ("--block-size", str(self.block_size) if self.block_size else "server default"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _quantization(spec: WorkloadSpec, acc: catalog.Accelerator) -> list[Problem]:
    problems: list[Problem] = []
    if acc.kind == "tpu" and spec.precision not in ("bf16", "fp16"):
        problems.append(
            Problem(
                "precision", f"{spec.precision!r} is not served on TPU here; accepted: bf16, fp16"
            )
        )
    if spec.precision == "fp8" and not acc.fp8:
        fp8 = ", ".join(a.key for a in catalog.CATALOG if a.fp8)
        problems.append(
            Problem("precision", f"{acc.key} has no FP8 support; use int8/int4, or one of: {fp8}")
        )
    if spec.kv_cache_dtype == "fp8" and not acc.fp8:
        problems.append(Problem("kvCacheDtype", f"{acc.key} has no FP8 support; accepted: auto"))
    method = spec.quantization_method
    if method is not None:
        accepted = ACCEPTED_METHODS.get(spec.precision, set())
        if method not in accepted:
            problems.append(
                Problem(
                    "quantizationMethod",
                    f"{method!r} does not produce {spec.precision} weights; accepted: "
                    + (", ".join(sorted(accepted)) or f"none (precision {spec.precision})"),
                )
            )
    return problems


def _candidates(acc: catalog.Accelerator, arch: Architecture) -> list[catalog.MachineShape]:
    """One shape per device count, smallest count first, TP dividing the heads."""
    by_count: dict[int, catalog.MachineShape] = {}
    for shape in acc.shapes:
        if arch.attention_heads % shape.count == 0:
            by_count.setdefault(shape.count, shape)
    return [by_count[c] for c in sorted(by_count)]


def _fit(
    acc: catalog.Accelerator,
    arch: Architecture,
    need: float,
    devices: int | None,
) -> tuple[catalog.MachineShape, int] | None:
    """(shape, pipeline stages) holding ``need`` bytes, or None."""
    per_device = usable_bytes_per_device(acc)
    shapes = _candidates(acc, arch)
    if devices is not None:
        shapes = [s for s in shapes if s.count == devices]
    for shape in shapes:
        if need <= shape.count * per_device:
            return shape, 1
    if devices is None and shapes and acc.kind == "gpu":
        largest = shapes[-1]
        for stages in range(2, MAX_PIPELINE_STAGES + 1):
            if arch.layers % stages == 0 and need <= stages * largest.count * per_device:
                return largest, stages
    return None


def nearest_fits(spec: WorkloadSpec, arch: Architecture, limit: int = 5) -> list[str]:
    """Shapes on other accelerators or precisions that would hold the same model."""
    options: list[tuple[float, str]] = []
    context = spec.context_length
    for acc in catalog.CATALOG:
        for precision in BYTES_PER_PARAMETER:
            if precision == "fp16":
                continue
            if acc.kind == "tpu" and precision != "bf16":
                continue
            if precision == "fp8" and not acc.fp8:
                continue
            kv_dtype = spec.kv_cache_dtype if acc.fp8 else "auto"
            need = weights_bytes(arch, precision) + context * spec.concurrency * kv_bytes_per_token(
                arch, kv_dtype
            )
            found = _fit(acc, arch, need, None)
            if found is None or found[1] > 1:
                continue
            shape, _ = found
            total = shape.count * acc.memory_gib
            options.append(
                (total, f"{shape.machine_type} ({shape.count}x {acc.key}) in {precision}")
            )
    return [text for _, text in sorted(options)[:limit]]


def size(spec: WorkloadSpec, devices: int | None = None) -> Sizing:
    """Size a model-serving spec; SpecError (with the numbers) if it cannot fit."""
    acc = spec.accelerator_info
    arch = resolve_architecture(spec)
    if arch is None or spec.model is None:
        raise SpecError(f"Cannot size workload {spec.name!r}", [Problem("model", "is required")])
    problems = _quantization(spec, acc)
    if spec.context_length > arch.max_context:
        problems.append(
            Problem(
                "contextLength",
                f"{spec.context_length} exceeds the model's maximum context {arch.max_context}",
            )
        )
    if devices is not None and devices not in {s.count for s in acc.shapes}:
        problems.append(
            Problem(
                "devices",
                f"{devices} is not a {acc.key} node size; accepted: "
                + ", ".join(str(c) for c in sorted({s.count for s in acc.shapes})),
            )
        )
    if problems:
        raise SpecError(f"Cannot size workload {spec.name!r}", problems)

    weights = weights_bytes(arch, spec.precision)
    per_token = kv_bytes_per_token(arch, spec.kv_cache_dtype)
    kv_needed = spec.context_length * spec.concurrency * per_token
    found = _fit(acc, arch, weights + kv_needed, devices)
    if found is None:
        count = devices or max(s.count for s in acc.shapes)
        usable = count * usable_bytes_per_device(acc)
        util = memory_utilization(acc)
        numbers = (
            f"weights {weights / GIB:.1f} GiB ({arch.parameters_billions:g}B x "
            f"{BYTES_PER_PARAMETER[spec.precision]:g} bytes, {spec.precision}) + KV cache "
            f"{kv_needed / GIB:.1f} GiB ({spec.context_length} tokens x {spec.concurrency} sequences "
            f"x {per_token / 1024:.0f} KiB/token) = {(weights + kv_needed) / GIB:.1f} GiB, but "
            f"{count}x {acc.key} give {usable / GIB:.1f} GiB usable ({acc.memory_gib:g} GiB x "
            f"{util:.2f} - {RUNTIME_OVERHEAD_GIB[acc.kind]:g} GiB runtime, per device)"
        )
        hints = nearest_fits(spec, arch)
        suggestion = (
            "; shapes that would fit: " + ", ".join(hints)
            if hints
            else "; lower contextLength or concurrency"
        )
        raise SpecError(
            f"Workload {spec.name!r} does not fit", [Problem("accelerator", numbers + suggestion)]
        )
    shape, stages = found
    usable_total = shape.count * stages * usable_bytes_per_device(acc)
    kv_capacity = usable_total - weights
    seqs_at_full_context = int(kv_capacity // (spec.context_length * per_token))
    max_num_seqs = max(spec.concurrency, min(MAX_NUM_SEQS_CAP, seqs_at_full_context))
    quantization = spec.quantization_method or DEFAULT_QUANTIZATION.get(spec.precision)
    class_name = class_for(spec, shape)
    model = spec.model
    return Sizing(
        accelerator=acc,
        shape=shape,
        tensor_parallel=shape.count,
        pipeline_parallel=stages,
        weights_gib=weights / GIB,
        kv_bytes_per_token=per_token,
        kv_cache_gib=kv_needed / GIB,
        usable_gib=usable_total / GIB,
        gpu_memory_utilization=memory_utilization(acc),
        max_model_len=spec.context_length,
        max_num_seqs=max_num_seqs,
        quantization=quantization,
        kv_cache_dtype=spec.kv_cache_dtype,
        block_size=GPU_BLOCK_SIZE if acc.kind == "gpu" else None,
        compute_class=class_name,
        model_path=f"{MODEL_MOUNT}/{model.bucket_path}".rstrip("/"),
        served_model_name=model.id if not model.in_bucket else spec.name,
        extra_args=list(spec.server.extra_args),
    )


def single_device_class(spec: WorkloadSpec) -> str:
    """The class of one device of the spec's accelerator, for kinds that are not sized
    (ComfyUI): ``gpu-<accelerator>-x1``, ``-co`` when cost-optimized."""
    acc = spec.accelerator_info
    shape = next((s for s in acc.shapes if s.count == 1), None)
    if shape is None:
        raise SpecError(
            f"Workload {spec.name!r} cannot be sized",
            [Problem("accelerator", f"{acc.key} has no single-device machine shape")],
        )
    return class_for(spec, shape)


def class_for(spec: WorkloadSpec, shape: catalog.MachineShape) -> str:
    """The compute class of a shape of the spec's accelerator (``-co``: Spot first)."""
    suffix = COST_OPTIMIZED_SUFFIX if spec.cost_optimized else ""
    return catalog.class_name(spec.accelerator_info, shape) + suffix


def startup_seconds(sizing: Sizing) -> int:
    """Budget for loading weights through GCS FUSE and warming up (probe thresholds).

    Assumes a conservative 0.5 GiB/s per replica from Cloud Storage on a cold
    file cache, plus five minutes for CUDA graph capture / XLA compilation.
    """
    return int(300 + math.ceil(sizing.weights_gib / 0.5))
