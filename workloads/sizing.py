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

Where the weights are: the model's folder (``ModelSettings.bucket_path``) of
its bucket (the platform's model bucket, or the bucket a ``gs://`` id names)
is mounted with GCS FUSE ``only-dir:<folder>`` at MODEL_MOUNT, so the folder's
``config.json`` is ``/models/config.json`` and the server is given
``--model=/models`` (gcsfuse: "--only-dir: mount only a specific directory
within a bucket", the directory becomes the mount root).

Quantization (``--quantization``), checked against vLLM's loaders (v0.11):

- ``model.prequantized: true`` (an AWQ, GPTQ, compressed-tensors, FP8 or
  bitsandbytes checkpoint): no flag. vLLM reads ``quantization_config`` from
  config.json and picks the fast kernel itself (awq_marlin / gptq_marlin);
  forcing ``awq``/``gptq`` picks the slow kernels and ``fp8`` on a
  compressed-tensors FP8 checkpoint is rejected. A quantizationMethod the user
  names explicitly is passed through when it matches the precision.
- not pre-quantized: only what vLLM quantizes while loading a 16-bit
  checkpoint: ``fp8`` (online dynamic W8A8, GPUs with FP8 support) and
  ``bitsandbytes`` (in-flight, always 4-bit NF4: the loader's unquantized
  path calls ``quantize_4bit``). AWQ, GPTQ and compressed-tensors need a
  checkpoint produced by their tools, and vLLM has no general online int8 for
  dense models on GPUs, so int8 of a 16-bit checkpoint is an error.
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
GPU_BLOCK_SIZE = 16  # tokens per paged-attention block on CUDA
MODEL_MOUNT = "/models"  # the model's folder is the mount root (only-dir)
XLA_CACHE_MOUNT = "/xla-cache"  # TPU: persisted XLA compilation cache (VLLM_XLA_CACHE_PATH)
XLA_CACHE_PREFIX = (
    "xla-cache"  # ... in the platform model bucket: xla-cache/<model>/<vllm>/<topology>
)

# vLLM's own --max-num-seqs default for its OpenAI server
# (EngineArgs._set_default_args / get_batch_defaults, v0.10-v0.11): 256, and
# 1024 on GPUs with >= 70 GiB that are not A100s (H100, H200, RTX PRO 6000).
# TPU overrides only the batched-token budget, so 256 there too.
VLLM_DEFAULT_MAX_NUM_SEQS = 256
VLLM_LARGE_GPU_MAX_NUM_SEQS = 1024
VLLM_LARGE_GPU_GIB = 70

# Methods vLLM can apply while loading a 16-bit checkpoint, per precision.
ONLINE_METHODS = {"fp8": {"fp8"}, "int4": {"bitsandbytes"}}
DEFAULT_ONLINE_METHOD = {"fp8": "fp8", "int4": "bitsandbytes"}
# Methods that describe a pre-quantized checkpoint of each precision.
ACCEPTED_METHODS = {
    "fp8": {"fp8", "compressed-tensors"},
    "int8": {"compressed-tensors", "gptq", "bitsandbytes"},
    "int4": {"awq", "gptq", "compressed-tensors", "bitsandbytes"},
}

# Startup budget (startup probe, worker MODEL_READY_TIMEOUT_S): see startup_seconds.
FUSE_READ_GIB_PER_SECOND = 0.25
STARTUP_MARGIN_SECONDS = 120
WARMUP_SECONDS = {"gpu": 180, "tpu": 1800}


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
    """The sized replica and its vLLM flags.

    ``max_num_seqs`` is vLLM's own default for the accelerator (256; 1024 on
    GPUs of >= 70 GiB other than A100, as vLLM itself picks), never below the
    spec's concurrency. It is not capped at what fits at full context: the KV
    budget (``--gpu-memory-utilization`` with weights and ``--max-model-len``)
    already holds concurrency x contextLength, and vLLM's scheduler admits only
    what the free KV blocks hold, so a smaller cap would only refuse the short
    requests that do fit. HPA targets are checked against it
    (``kinds.deployment_for``): a running-requests target above it never triggers.
    """

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
    model_path: str  # what the server is given: the mount root (MODEL_MOUNT)
    served_model_name: str
    model_bucket: str | None = None  # the gs:// id's bucket; None: the platform's model bucket
    model_dir: str = ""  # the weights' folder in that bucket (the FUSE only-dir)
    model_key: str = ""  # a path-safe name of the model, for cache prefixes
    extra_args: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> int:
        """Pods (one per node) that serve one replica: 1, or the pipeline stages."""
        return self.pipeline_parallel

    @property
    def devices_per_pod(self) -> int:
        """Accelerators each pod of a replica requests (its tensor-parallel group)."""
        return self.tensor_parallel

    @property
    def devices(self) -> int:
        """Accelerators of one replica, across its nodes."""
        return self.devices_per_pod * self.nodes

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
            ("devices per replica", str(self.devices)),
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
    prequantized = spec.model is not None and spec.model.prequantized
    quantized = spec.precision not in ("bf16", "fp16")
    if prequantized and not quantized:
        problems.append(
            Problem(
                "model.prequantized",
                f"a pre-quantized checkpoint is not served at precision {spec.precision}; "
                "set precision to the checkpoint's (fp8, int8, int4) or prequantized: false",
            )
        )
    elif method is not None and prequantized:
        accepted = ACCEPTED_METHODS.get(spec.precision, set())
        if method not in accepted:
            problems.append(
                Problem(
                    "quantizationMethod",
                    f"{method!r} does not describe a {spec.precision} checkpoint; accepted: "
                    + ", ".join(sorted(accepted))
                    + " (or leave it unset: vLLM reads the checkpoint's quantization_config)",
                )
            )
    elif quantized and not prequantized:
        online = ONLINE_METHODS.get(spec.precision, set())
        if not online:
            problems.append(
                Problem(
                    "precision",
                    f"{spec.precision} of a 16-bit checkpoint (model.prequantized: false) cannot "
                    "be quantized by vLLM while loading; serve a pre-quantized checkpoint "
                    "(model.prequantized: true, e.g. GPTQ or compressed-tensors W8A8), or use "
                    "fp8 (FP8 GPUs) or int4 (bitsandbytes)",
                )
            )
        elif method is not None and method not in online:
            problems.append(
                Problem(
                    "quantizationMethod",
                    f"{method!r} cannot quantize a 16-bit checkpoint while loading "
                    f"(model.prequantized: false); accepted for {spec.precision}: "
                    + ", ".join(sorted(online))
                    + f", or set model.prequantized: true for a {method} checkpoint",
                )
            )
    elif method is not None:
        problems.append(
            Problem(
                "quantizationMethod",
                f"{method!r} does not apply to precision {spec.precision}; accepted: none",
            )
        )
    return problems


def quantization_flag(spec: WorkloadSpec) -> str | None:
    """``--quantization`` for a spec that passed :func:`_quantization` (see the module doc)."""
    if spec.model is not None and spec.model.prequantized:
        return spec.quantization_method  # None: vLLM detects the checkpoint's method
    return spec.quantization_method or DEFAULT_ONLINE_METHOD.get(spec.precision)


def vllm_default_max_num_seqs(acc: catalog.Accelerator) -> int:
    """vLLM's own --max-num-seqs default on ``acc`` (see VLLM_DEFAULT_MAX_NUM_SEQS)."""
    if acc.kind == "gpu" and acc.memory_gib >= VLLM_LARGE_GPU_GIB and "a100" not in acc.key:
        return VLLM_LARGE_GPU_MAX_NUM_SEQS
    return VLLM_DEFAULT_MAX_NUM_SEQS


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
    # vLLM's default batch width: the scheduler admits a sequence only when the
    # KV blocks for its prompt are free and preempts the newest when decoding
    # runs out, so the KV budget sized above (concurrency x contextLength fits
    # without preemption) is what protects against thrash, not a smaller cap;
    # shorter requests use the width. Never below the spec's concurrency.
    max_num_seqs = max(spec.concurrency, vllm_default_max_num_seqs(acc))
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
        quantization=quantization_flag(spec),
        kv_cache_dtype=spec.kv_cache_dtype,
        block_size=GPU_BLOCK_SIZE if acc.kind == "gpu" else None,
        compute_class=class_name,
        model_path=MODEL_MOUNT,
        served_model_name=model.id if not model.in_bucket else spec.name,
        model_bucket=model.bucket,
        model_dir=model.bucket_path.strip("/"),
        model_key=model_key(model.bucket_path, model.bucket),
        extra_args=list(spec.server.extra_args),
    )


def single_device_shape(spec: WorkloadSpec) -> catalog.MachineShape:
    """The one-device machine shape of the spec's accelerator (kinds that are not sized)."""
    acc = spec.accelerator_info
    shape = next((s for s in acc.shapes if s.count == 1), None)
    if shape is None:
        raise SpecError(
            f"Workload {spec.name!r} cannot be sized",
            [Problem("accelerator", f"{acc.key} has no single-device machine shape")],
        )
    return shape


def single_device_class(spec: WorkloadSpec) -> str:
    """The class of one device of the spec's accelerator, for kinds that are not sized
    (ComfyUI): ``gpu-<accelerator>-x1``, ``-co`` when cost-optimized."""
    return class_for(spec, single_device_shape(spec))


def class_for(spec: WorkloadSpec, shape: catalog.MachineShape) -> str:
    """The compute class of a shape of the spec's accelerator (``-co``: Spot first)."""
    suffix = COST_OPTIMIZED_SUFFIX if spec.cost_optimized else ""
    return catalog.class_name(spec.accelerator_info, shape) + suffix


def model_key(bucket_path: str, bucket: str | None) -> str:
    """A path-safe name of the model for cache prefixes (``google--gemma-3-1b-it``)."""
    key = "--".join(part for part in bucket_path.strip("/").split("/") if part)
    return key or (bucket or "model")


def startup_seconds(sizing: Sizing) -> int:
    """Budget from pod start to a healthy server on a cold node (startup probe).

    ``STARTUP_MARGIN_SECONDS + weights / FUSE_READ_GIB_PER_SECOND +
    WARMUP_SECONDS[kind]``:

    - weights / 0.25 GiB/s: the cold read of every shard through GCS FUSE into
      its file cache (parallel downloads, the prefetch sidecar's 16 readers).
      gcsfuse's published FIO benchmark (docs/benchmarks.md: n2-standard-96,
      100 Gbps, 128 readers) reaches ~7.5 GiB/s on 1 GiB files; one sequential
      reader measures ~0.15 GiB/s (its sequential_read benchmark). Accelerator
      nodes have 16-200 Gbps NICs and the FUSE sidecar shares their CPUs, and
      the server reads each shard a second time from the cache, so 0.25 GiB/s
      per node is the conservative figure: 70B in bf16 (131.5 GiB) gets 527 s.
    - warm-up: 180 s on GPUs (torch.compile and CUDA graph capture, whose
      cache lives in the pod's /tmp), 1800 s on TPUs (vLLM TPU precompiles
      every padded batch/sequence shape with XLA: tens of minutes on a cold
      cache for 30B-70B models). The XLA cache is persisted in the model bucket
      (``xla-cache/<model>/<vllm>/<topology>``), so only the first pod of a
      model, server version and topology pays it; the probe must still allow it.
    - 120 s margin: image pull from the regional remote repository, FUSE
      sidecar start, device plugin and the server's own process start.
    """
    load = math.ceil(sizing.weights_gib / FUSE_READ_GIB_PER_SECOND)
    return STARTUP_MARGIN_SECONDS + load + WARMUP_SECONDS[sizing.accelerator.kind]
